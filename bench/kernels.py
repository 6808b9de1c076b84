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
show where the time goes. Columns of each row (all timed alternately in the same rounds):

* ``ref``: the PyTorch reference (``AUDIOMASK_KERNELS=reference``);
* ``fused``: the Triton kernels wherever they apply (``triton`` mode; ``speedup`` = ref/fused);
* ``auto``: the default dispatch — the policy of :mod:`audiomask.kernels` (a rule, else the
  faster of fused/reference measured once per shape class); ``auto×`` = ref/auto, which the
  policy should keep ≥ ~1 (never slower);
* ``compile``: ``torch.compile`` of the module on the reference path (inductor's own fusion)
  — the baseline a hand-written kernel must beat;
* ``graph``: CUDA-graph replay of the ``auto`` path (inference rows only: it removes the
  launch overhead that dominates at batch 1; training rows print ``-``).

``compile`` and ``graph`` need a CUDA GPU: under ``--interpret`` they are not run and the
script says which rows are unmeasured. Choose them with ``--baselines``. Without a CUDA GPU
there is nothing to time: the script says so and exits 0; ``--interpret`` runs every case
once at tiny sizes on the CPU under Triton's interpreter and checks that the paths agree (a
check of this script and the kernels, no timing).

    python bench/kernels.py                                           # on a GPU machine
    python bench/kernels.py --json bench/results/kernels-h100.json    # also write the rows
    python bench/kernels.py --interpret                               # no GPU: agreement only
    python bench/kernels.py --baselines auto                          # skip torch.compile / CUDA graphs
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
from audiomask import accel, kernels  # noqa: E402
from audiomask.maskers.tcn import DepthwiseTCNBlock  # noqa: E402


BASELINES = ("auto", "compile", "graph")
GPU_ONLY = ("compile", "graph")


@dataclass
class Case:
    name: str
    run_ref: Callable[[], Any]     # one call of the reference path; returns tensors to compare
    run_fused: Callable[[], Any]   # one call of the fused path (Triton forced)
    target: Optional[float] = None  # required speedup (reference time / fused time)
    note: str = ""
    row: dict = field(default_factory=dict)
    #: baseline name -> builder of its one-call closure (built only when asked: compiling and
    #: capturing take time); a builder may raise, and the row then records why
    variants: dict = field(default_factory=dict)


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


def time_many(fns: dict[str, Callable], iters: int, rounds: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per call of each function, timed in turn within every round (CUDA
    events), so that all of them see the same clocks."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            times[name].append(start.elapsed_time(end) / iters)
    return {name: statistics.median(t) for name, t in times.items()}


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


def _path(kind: str):
    """``"reference"``, ``"triton"`` (the kernels wherever they apply) or ``"auto"`` (the policy)."""
    return accel.force(kind)


def _fwd_bwd(module: torch.nn.Module, inputs: tuple, kind: str, grads: list, leaves: tuple = ()):
    """Closure: forward + backward of ``module(*inputs)`` on path ``kind`` against fixed output
    gradients (``grads``, filled on the first call and shared by every path); returns the
    outputs and the gradients of the inputs, ``leaves`` and the module's parameters."""
    wanted = [t for t in inputs if torch.is_tensor(t) and t.requires_grad] + list(leaves)
    wanted += [p for p in module.parameters() if p.requires_grad]

    def run():
        with _path(kind):
            outs = _tensors(module(*inputs))
            if not grads:
                torch.manual_seed(0)
                grads.extend(torch.randn_like(o) for o in outs)
            got = torch.autograd.grad(outs, wanted, grads, allow_unused=True)
        return [o.detach() for o in outs] + [g for g in got if g is not None]
    return run


def _infer(model: torch.nn.Module, x: torch.Tensor, kind: str):
    def run():
        with torch.inference_mode(), _path(kind):
            return model(x)
    return run


def _graphed_infer(model: torch.nn.Module, x: torch.Tensor, kind: str = "auto") -> Callable[[], Any]:
    """CUDA-graph replay of ``model(x)`` on path ``kind``: warmed up on a side stream (the
    policy measures its shape classes there), captured once, then each call is one replay."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), _path(kind):
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model(static_x)

    def run():
        graph.replay()
        return out
    return run


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` of ``module`` (the kernels' dispatch steps aside while compiling, so
    inductor fuses the reference)."""
    return torch.compile(module)


def fwd_bwd_case(name: str, module: torch.nn.Module, inputs: tuple, leaves: tuple = (), **kw) -> Case:
    """A forward + backward row: reference, fused, and the ``auto`` / ``compile`` baselines."""
    grads: list = []
    variants = {"auto": lambda: _fwd_bwd(module, inputs, "auto", grads, leaves),
                "compile": lambda: _fwd_bwd(_compiled(module), inputs, "reference", grads, leaves)}
    return Case(name, _fwd_bwd(module, inputs, "reference", grads, leaves),
                _fwd_bwd(module, inputs, "triton", grads, leaves), variants=variants, **kw)


def infer_case(name: str, model: torch.nn.Module, x: torch.Tensor, **kw) -> Case:
    """An inference row: reference, fused, and the ``auto`` / ``compile`` / ``graph`` baselines."""
    variants = {"auto": lambda: _infer(model, x, "auto"),
                "compile": lambda: _infer(_compiled(model), x, "reference"),
                "graph": lambda: _graphed_infer(model, x, "auto")}
    return Case(name, _infer(model, x, "reference"), _infer(model, x, "triton"), variants=variants, **kw)


def _frames(s: Sizes) -> int:
    """Encoder frames of ``s.seconds`` at 8 kHz (the TCN's sequence length)."""
    encoder = audiomask.build("convtasnet", s.tcn_preset).encoder
    with torch.no_grad():
        return encoder(torch.zeros(1, int(s.seconds * 8000))).shape[-1]


class _DispatchedBlock(torch.nn.Module):
    """A TCN block as the masker runs it: the fused kernels where ``kernels.use_triton`` says
    so (its ``"triton"`` path), else the block's modules."""

    def __init__(self, block: DepthwiseTCNBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor):
        return kernels.tcn_block_forward(self.block, x) if kernels.use_triton(x) else self.block(x)


def tcn_block_cases(s: Sizes, device: str) -> list[Case]:
    frames = _frames(s)
    cases = []
    for norm, causal in (("gLN", False), ("cLN", True)):
        for d in s.dilations:
            torch.manual_seed(0)
            block = _DispatchedBlock(DepthwiseTCNBlock(s.bn, s.hid, s.bn, 3, d, norm, causal).to(device))
            x = torch.randn(s.batch, s.bn, frames, device=device, requires_grad=True)
            cases.append(fwd_bwd_case(f"tcn-block-{norm}-d{d}", block, (x,), target=2.0,
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
        cases.append(fwd_bwd_case(f"op-dwconv_prelu_norm-{norm}", DwConvPReLUNorm(norm), (x,), (w, b, slope, g, beta),
                                  note=f"fwd+bwd [{s.batch}, {C}, {frames}]"))

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
        note = f"fwd+bwd {list(inp.shape)}" + ("; auto: reference by rule" if name == "fsmn-dense" else "")
        cases.append(fwd_bwd_case(f"op-depthwise_conv1d-{name}", mod, (inp,), (weight,), note=note))
    return cases


def model_cases(s: Sizes, device: str, with_asteroid: bool) -> list[Case]:
    cases = []
    n = int(s.seconds * 8000)
    torch.manual_seed(0)
    # training step, whole Conv-TasNet (fwd + bwd)
    model = audiomask.build("convtasnet", s.tcn_preset).to(device)
    mix = torch.randn(s.batch, n, device=device) * 0.1
    cases.append(fwd_bwd_case(f"convtasnet-{s.tcn_preset}-train", model, (mix,),
                              note=f"fwd+bwd, batch {s.batch} × {s.seconds:g} s"))
    model = model.eval()
    for batch in ((s.batch,) if s.tiny else (1, s.batch)):
        x = torch.randn(batch, n, device=device) * 0.1
        cases.append(infer_case(f"convtasnet-{s.tcn_preset}-infer-b{batch}", model, x,
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
                cases.append(Case(f"convtasnet-infer-vs-asteroid-b{batch}", asteroid_run, _infer(ours, x, "triton"),
                                  target=1.5, note=f"inference, batch {batch} × {s.seconds:g} s, same weights",
                                  variants={"auto": lambda x=x: _infer(ours, x, "auto"),
                                            "compile": lambda x=x: _infer(_compiled(ours), x, "reference"),
                                            "graph": lambda x=x: _graphed_infer(ours, x, "auto")}))
    # MossFormer2 inference (its depthwise convs fused; the rest is PyTorch either way)
    mf2 = audiomask.build("mossformer2", "paper" if not s.tiny else "small", **s.mf2).to(device).eval()
    x = torch.randn(1, int(s.seconds * mf2.sample_rate), device=device) * 0.1
    cases.append(infer_case("mossformer2-infer-b1", mf2, x,
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
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=BASELINES,
                   help="extra columns: auto (the dispatch policy), compile (torch.compile of the "
                        "reference), graph (CUDA-graph replay of auto, inference rows); compile and "
                        "graph need CUDA and are reported as unmeasured otherwise (default: all)")
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

        native.BUILT = False  # as if not built: the CPU fast paths of the TCN would take the CPU tensors first
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

    baselines = [b for b in args.baselines if cuda or b not in GPU_ONLY]
    unmeasured = [b for b in args.baselines if b not in baselines]
    rows, failed = [], False
    cols = ["ref", "fused", "speedup"] + [b for b in BASELINES if b in baselines]
    print(f"{'case':<36}" + "".join(f"{c + (' ms' if c != 'speedup' else ''):>12}" for c in cols)
          + f"{'auto×':>7}{'target':>8}{'rel.err':>10}  note")
    for c in cases:
        t0 = time.perf_counter()
        ref_out = c.run_ref()
        err = agreement(ref_out, c.run_fused())
        fns = {"ref": c.run_ref, "fused": c.run_fused}
        row = {"case": c.name, "note": c.note}
        for name in baselines:
            if name not in c.variants:
                continue
            try:
                fn = c.variants[name]()
                row[f"{name}_rel_err"] = agreement(ref_out, fn())
            except Exception as e:  # a baseline that cannot be built or run: recorded, not fatal
                row[f"{name}_error"] = f"{type(e).__name__}: {e}"[:300]
                continue
            err = max(err, row[f"{name}_rel_err"])
            fns[name] = fn
        ok = err <= args.tolerance
        failed |= not ok
        row.update(rel_err=err, agree=ok)
        if cuda:
            ms = time_many(fns, args.iters, args.rounds, args.warmup)
            row.update({f"{k}_ms": round(v, 4) for k, v in ms.items()})
            row["speedup"] = round(ms["ref"] / ms["fused"], 3)
            if "auto" in ms:
                row["auto_speedup"] = round(ms["ref"] / ms["auto"], 3)
            if c.target:
                row.update(target=c.target, met=ms["ref"] / ms["fused"] >= c.target)
            cells = [f"{ms['ref']:.3f}", f"{ms['fused']:.3f}", f"{row['speedup']:.2f}×"]
            cells += [f"{ms[b]:.3f}" if b in ms else "-" for b in cols[3:]]
            auto = f"{row['auto_speedup']:.2f}×" if "auto_speedup" in row else "-"
            print(f"{c.name:<36}" + "".join(f"{x:>12}" for x in cells) + f"{auto:>7}"
                  f"{(f'{c.target:g}×' if c.target else ''):>8}{err:>10.1e}  {c.note}", flush=True)
        else:
            print(f"{c.name:<36}" + "".join(f"{'':>12}" for _ in cols) + f"{'':>7}{'':>8}{err:>10.1e}  {c.note} "
                  f"({time.perf_counter() - t0:.1f} s interpreted)", flush=True)
        for k, v in row.items():
            if k.endswith("_error"):
                print(f"    {k[:-6]} not measured: {v}")
        rows.append(row)
    if unmeasured:
        print(f"not measured in this run (need a CUDA GPU): {', '.join(unmeasured)}")
    if cuda and kernels.POLICY.choices:
        print("auto dispatch, per shape class (the policy's choice and why):")
        for key, (choice, why) in kernels.POLICY.choices.items():
            print(f"    {key[0]} {dict(key[1:])}: {choice} ({why})")
    if args.json:
        meta = {"device": dev_name, "torch": torch.__version__, "triton": triton.__version__,
                "cuda": torch.version.cuda if cuda else None, "batch": sizes.batch, "seconds": sizes.seconds,
                "iters": args.iters, "rounds": args.rounds, "baselines": baselines, "unmeasured": unmeasured,
                "policy": [{"shape_class": [str(k) for k in key], "choice": ch, "why": why}
                           for key, (ch, why) in kernels.POLICY.choices.items()]}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    if failed:
        print(f"DISAGREEMENT above {args.tolerance:g} in: {', '.join(r['case'] for r in rows if not r['agree'])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
