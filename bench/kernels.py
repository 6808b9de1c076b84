"""Fused Triton kernels (``audiomask.kernels``) vs. their PyTorch references on a CUDA GPU.

Every ratio is measured in one run on one device: the reference and the fused path are
timed alternately (CUDA events, ``--rounds`` rounds of ``--iters`` calls after a warm-up; the
median per-call time of each), and before timing each case checks that both paths agree
(largest difference relative to the largest reference value). Targets of issue 9:

* ``tcn-block-*``: one Conv-TasNet TCN block (B=128, H=512, P=3; ``paper`` sizes), forward +
  backward on a batch of 4 × 4 s at 8 kHz — fused ≥ 2× faster than eager PyTorch;
* ``convtasnet-infer-vs-asteroid``: Conv-TasNet ``paper`` inference end to end, the same
  weights in Asteroid's ``ConvTasNet`` — ours ≥ 1.5× faster (needs ``asteroid``).

The other rows (the single ops, whole-model training steps, MossFormer2's depthwise convs)
show where the time goes. Without a CUDA GPU there is nothing to time: the script says so and
exits 0; ``--interpret`` runs every case once at tiny sizes on the CPU under Triton's
interpreter and checks that both paths agree (a check of this script and the kernels, no
timing).

    python bench/kernels.py                                           # on a GPU machine
    python bench/kernels.py --json bench/results/kernels-h100.json    # also write the rows
    python bench/kernels.py --interpret                               # no GPU: agreement only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

if "--interpret" in sys.argv:  # before Triton is imported: it reads this when kernels are decorated
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

import audiomask  # noqa: E402
from audiomask import kernels  # noqa: E402
from audiomask.maskers.tcn import DepthwiseTCNBlock  # noqa: E402


@dataclass
class Case:
    name: str
    run_ref: Callable[[], Any]     # one call of the reference path; returns tensors to compare
    run_fused: Callable[[], Any]   # one call of the fused path
    target: Optional[float] = None  # required speedup (reference time / fused time)
    note: str = ""
    row: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# timing and agreement
# ------------------------------------------------------------------------------------------
def _tensors(out) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def agreement(a, b) -> float:
    """Largest |a − b| relative to the largest |a| over corresponding tensors."""
    worst = 0.0
    for x, y in zip(_tensors(a), _tensors(b), strict=True):
        x, y = x.detach().double(), y.detach().double()
        worst = max(worst, ((x - y).abs().max() / x.abs().max().clamp_min(1e-30)).item())
    return worst


def time_pair(a: Callable, b: Callable, iters: int, rounds: int, warmup: int) -> tuple[float, float]:
    """Median milliseconds per call of ``a`` and of ``b``, timed alternately with CUDA events."""
    for _ in range(warmup):
        a()
        b()
    torch.cuda.synchronize()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, out in ((a, times[0]), (b, times[1])):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            out.append(start.elapsed_time(end) / iters)
    return statistics.median(times[0]), statistics.median(times[1])


# ------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------
class Sizes:
    """Sizes of the cases: the issue's on a GPU, tiny ones under the interpreter."""

    def __init__(self, tiny: bool, batch: int, seconds: float) -> None:
        self.tiny = tiny
        self.batch = 2 if tiny else batch
        self.seconds = 0.02 if tiny else seconds
        self.tcn_preset = "tiny" if tiny else "paper"
        self.bn, self.hid = (8, 16) if tiny else (128, 512)
        self.dilations = (1, 4) if tiny else (1, 128)
        # MossFormer2 "paper": D=512, 2E = 4D = 2048 (FFConvM h), FSMN I=256, lorder 20 (P=39)
        self.ff_chan, self.fsmn_chan, self.fsmn_p = (12, 6, 7) if tiny else (2048, 256, 39)
        self.mf2 = (dict(n_filters=16, d_model=16, n_layers=1, qk_dim=8, rotary_dim=8, group_size=16,
                         fsmn_channels=8, fsmn_lorder=4) if tiny else {})


def _path(fused: bool):
    if not fused:
        return kernels.force("reference")
    return kernels.force("auto" if torch.cuda.is_available() else "triton")


def _fwd_bwd(module: torch.nn.Module, inputs: tuple, fused: bool, grads: list, leaves: tuple = ()):
    """Closure: forward + backward of ``module(*inputs)`` against fixed output gradients
    (``grads``, filled on the first call and shared by the two paths); returns the outputs and
    the gradients of the inputs, ``leaves`` and the module's parameters."""
    wanted = [t for t in inputs if torch.is_tensor(t) and t.requires_grad] + list(leaves)
    wanted += [p for p in module.parameters() if p.requires_grad]

    def run():
        with _path(fused):
            outs = _tensors(module(*inputs))
            if not grads:
                torch.manual_seed(0)
                grads.extend(torch.randn_like(o) for o in outs)
            got = torch.autograd.grad(outs, wanted, grads, allow_unused=True)
        return [o.detach() for o in outs] + [g for g in got if g is not None]
    return run


def _infer(model: torch.nn.Module, x: torch.Tensor, fused: bool):
    def run():
        with torch.inference_mode(), _path(fused):
            return model(x)
    return run


def _frames(s: Sizes) -> int:
    """Encoder frames of ``s.seconds`` at 8 kHz (the TCN's sequence length)."""
    encoder = audiomask.build("convtasnet", s.tcn_preset).encoder
    with torch.no_grad():
        return encoder(torch.zeros(1, int(s.seconds * 8000))).shape[-1]


def tcn_block_cases(s: Sizes, device: str) -> list[Case]:
    frames = _frames(s)
    cases = []
    for norm, causal in (("gLN", False), ("cLN", True)):
        for d in s.dilations:
            torch.manual_seed(0)
            block = DepthwiseTCNBlock(s.bn, s.hid, s.bn, 3, d, norm, causal).to(device)
            x = torch.randn(s.batch, s.bn, frames, device=device, requires_grad=True)
            grads: list = []
            cases.append(Case(f"tcn-block-{norm}-d{d}", _fwd_bwd(block, (x,), False, grads),
                              _fwd_bwd(block, (x,), True, grads), target=2.0,
                              note=f"fwd+bwd, [{s.batch}, {s.bn}, {frames}] → H={s.hid}"))
    return cases


def op_cases(s: Sizes, device: str) -> list[Case]:
    frames = _frames(s)
    torch.manual_seed(0)
    C = s.hid
    x = torch.randn(s.batch, C, frames, device=device, requires_grad=True)

    def leaf(*shape):
        return torch.randn(*shape, device=device).requires_grad_(True)

    w, b, slope, g, beta = leaf(C, 1, 3), leaf(C), torch.full((1,), 0.25, device=device, requires_grad=True), \
        leaf(C), leaf(C)
    cases = []

    class DwConvPReLUNorm(torch.nn.Module):
        def __init__(self, norm: str) -> None:
            super().__init__()
            self.norm = norm

        def forward(self, x):
            return kernels.dwconv_prelu_norm(x, w, b, 1, (1, 1), slope, g, beta, self.norm, 1e-8)

    for norm in ("gLN", "cLN"):
        op, grads = DwConvPReLUNorm(norm), []
        leaves = (w, b, slope, g, beta)
        cases.append(Case(f"op-dwconv_prelu_norm-{norm}", _fwd_bwd(op, (x,), False, grads, leaves),
                          _fwd_bwd(op, (x,), True, grads, leaves), note=f"fwd+bwd [{s.batch}, {C}, {frames}]"))

    # MossFormer2's depthwise convs: FFConvM (channels-last, residual, P=17) and the FSMN
    # dense memory's second layer (two inputs per channel, dilation 2, P=2·lorder−1)
    mf_frames = int(s.seconds * 16000) // 8
    h = torch.randn(1 if not s.tiny else 2, mf_frames, s.ff_chan, device=device, requires_grad=True)
    wf = leaf(s.ff_chan, 1, 17)
    m = torch.randn(1 if not s.tiny else 2, 2 * s.fsmn_chan, mf_frames, device=device, requires_grad=True)
    wm = leaf(s.fsmn_chan, 2, s.fsmn_p)
    reach = (s.fsmn_p - 1) // 2 * 2

    class FF(torch.nn.Module):
        def forward(self, h):
            return kernels.depthwise_conv1d(h, wf, None, 1, (8, 8), channels_last=True, residual=True)

    class Mem(torch.nn.Module):
        def forward(self, m):
            return kernels.depthwise_conv1d(m, wm, None, 2, (reach, reach))

    for name, mod, inp, weight in (("ffconvm", FF(), h, wf), ("fsmn-dense", Mem(), m, wm)):
        grads = []
        cases.append(Case(f"op-depthwise_conv1d-{name}", _fwd_bwd(mod, (inp,), False, grads, (weight,)),
                          _fwd_bwd(mod, (inp,), True, grads, (weight,)), note=f"fwd+bwd {list(inp.shape)}"))
    return cases


def model_cases(s: Sizes, device: str, with_asteroid: bool) -> list[Case]:
    cases = []
    n = int(s.seconds * 8000)
    torch.manual_seed(0)
    # training step, whole Conv-TasNet (fwd + bwd)
    model = audiomask.build("convtasnet", s.tcn_preset).to(device)
    mix = torch.randn(s.batch, n, device=device) * 0.1
    grads: list = []
    cases.append(Case(f"convtasnet-{s.tcn_preset}-train", _fwd_bwd(model, (mix,), False, grads),
                      _fwd_bwd(model, (mix,), True, grads), note=f"fwd+bwd, batch {s.batch} × {s.seconds:g} s"))
    model = model.eval()
    for batch in ((s.batch,) if s.tiny else (1, s.batch)):
        x = torch.randn(batch, n, device=device) * 0.1
        cases.append(Case(f"convtasnet-{s.tcn_preset}-infer-b{batch}", _infer(model, x, False), _infer(model, x, True),
                          note=f"inference, batch {batch} × {s.seconds:g} s, ours: reference vs fused"))
    if with_asteroid:
        try:
            from asteroid.models import ConvTasNet as AsteroidConvTasNet
        except ImportError as e:
            print(f"(asteroid not installed: {e}; skipping the Asteroid comparison)")
        else:
            from audiomask.interop import convert

            kw = dict(n_src=2) if not s.tiny else dict(n_src=2, n_filters=32, bn_chan=16, hid_chan=32,
                                                        skip_chan=16, n_blocks=3, n_repeats=1)
            peer = AsteroidConvTasNet(**kw).to(device).eval()
            ours = convert("asteroid-convtasnet", {k: v.cpu() for k, v in peer.state_dict().items()}).to(device).eval()
            for batch in ((s.batch,) if s.tiny else (1, s.batch)):
                x = torch.randn(batch, n, device=device) * 0.1

                def asteroid_run(x=x):
                    with torch.inference_mode():
                        return peer(x)
                cases.append(Case(f"convtasnet-infer-vs-asteroid-b{batch}", asteroid_run, _infer(ours, x, True),
                                  target=1.5, note=f"inference, batch {batch} × {s.seconds:g} s, same weights"))
    # MossFormer2 inference (its depthwise convs fused; the rest is PyTorch either way)
    mf2 = audiomask.build("mossformer2", "paper" if not s.tiny else "small", **s.mf2).to(device).eval()
    x = torch.randn(1, int(s.seconds * mf2.sample_rate), device=device) * 0.1
    cases.append(Case("mossformer2-infer-b1", _infer(mf2, x, False), _infer(mf2, x, True),
                      note=f"inference, 1 × {s.seconds:g} s at {mf2.sample_rate} Hz"))
    return cases


# ------------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interpret", action="store_true",
                   help="no GPU: run every case once at tiny sizes under TRITON_INTERPRET=1, check agreement")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--iters", type=int, default=10, help="calls per timed round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--only", nargs="*", default=[], help="run the cases whose name contains one of these")
    p.add_argument("--no-asteroid", action="store_true")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest relative disagreement accepted")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()

    cuda = torch.cuda.is_available() and not args.interpret
    if not cuda and not args.interpret:
        print("no CUDA GPU present: nothing to time (the kernels run on CUDA tensors). "
              "`--interpret` checks the Triton code against the references on the CPU.")
        return 0
    if not kernels.triton_available():
        print("triton is not installed: pip install 'audiomask[kernels]'")
        return 0 if not cuda else 1
    device = "cuda" if cuda else "cpu"
    if not cuda:
        from audiomask import native

        native.ENABLED = False  # the CPU fast paths of the TCN would take the CPU tensors first
    import triton

    dev_name = torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()}), " \
        "Triton interpreter"
    print(f"device: {dev_name}; torch {torch.__version__}, triton {triton.__version__}"
          + (f", CUDA {torch.version.cuda}" if cuda else ""))
    if not cuda:
        print("interpreter run: agreement only, no timing")
    sizes = Sizes(tiny=not cuda, batch=args.batch, seconds=args.seconds)
    cases = tcn_block_cases(sizes, device) + op_cases(sizes, device) + model_cases(sizes, device, not args.no_asteroid)
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]

    rows, failed = [], False
    header = f"{'case':<36}{'ref ms':>10}{'fused ms':>10}{'speedup':>9}{'target':>8}{'rel.err':>10}  note"
    print(header)
    for c in cases:
        t0 = time.perf_counter()
        err = agreement(c.run_ref(), c.run_fused())
        ok = err <= args.tolerance
        failed |= not ok
        row = {"case": c.name, "rel_err": err, "agree": ok, "note": c.note}
        if cuda:
            ref_ms, fused_ms = time_pair(c.run_ref, c.run_fused, args.iters, args.rounds, args.warmup)
            row.update(ref_ms=round(ref_ms, 4), fused_ms=round(fused_ms, 4), speedup=round(ref_ms / fused_ms, 3))
            if c.target:
                row.update(target=c.target, met=ref_ms / fused_ms >= c.target)
            print(f"{c.name:<36}{ref_ms:>10.3f}{fused_ms:>10.3f}{ref_ms / fused_ms:>8.2f}×"
                  f"{(f'{c.target:g}×' if c.target else ''):>8}{err:>10.1e}  {c.note}", flush=True)
        else:
            print(f"{c.name:<36}{'':>10}{'':>10}{'':>9}{'':>8}{err:>10.1e}  {c.note} "
                  f"({time.perf_counter() - t0:.1f} s interpreted)", flush=True)
        rows.append(row)
    if args.json:
        meta = {"device": dev_name, "torch": torch.__version__, "triton": triton.__version__,
                "cuda": torch.version.cuda if cuda else None, "batch": sizes.batch, "seconds": sizes.seconds,
                "iters": args.iters, "rounds": args.rounds}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    if failed:
        print(f"DISAGREEMENT above {args.tolerance:g} in: {', '.join(r['case'] for r in rows if not r['agree'])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
