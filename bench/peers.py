"""audiomask against Asteroid and SpeechBrain: Conv-TasNet inference and training
cost in one run, same weights where the architectures allow it.

The paper configuration of Conv-TasNet (Luo & Mesgarani 2019: N 512, L 16, B 128, H 512,
Sc 128, P 3, X 8, R 3, gLN, 2 sources, 8 kHz) in each toolkit:

* Asteroid ``asteroid.models.ConvTasNet`` with seeded random weights;
* audiomask: those weights through ``audiomask.interop.convert("asteroid-convtasnet", ...)``;
* SpeechBrain ``speechbrain.lobes.models.conv_tasnet.MaskNet`` between the ``dual_path``
  encoder and decoder, composed as its WSJ0-2mix recipe composes them: another architecture
  (no skip path, channel-wise input norm, ReLU encoder, ReLU masks), so its own seeded random
  weights.

torchaudio is not measured: its only release for torch 2.13 is a CUDA build whose compiled
extension cannot load on a CPU machine, and the project does not depend on it. (The
2026-11-21 results file has a torchaudio row from an earlier version of this script, which ran
its pure-Python ConvTasNet with that extension deleted.)

Every measurement runs in its own child process (``--threads`` threads), the toolkits taking
turns round-robin within each of ``--reps`` repetitions (the order rotates every repetition):
offline inference of a real two-talker LibriSpeech mixture of each ``--seconds`` length
(``torch.inference_mode``, one warm-up call, then the best of ``--calls`` timed calls), and
training steps on ``--batch`` × ``--train-seconds`` s (forward, ``audiomask.losses.
pit_si_sdr_loss`` for all, backward, Adam; one warm-up step, then the best of
``--train-steps``). Peak memory is the child's VmHWM (peak RSS of its own address space;
``ru_maxrss`` would carry the parent's peak across ``exec``); the growth over the RSS after the
model is built is given beside it, and the memory target is judged on both (a process that
has only imported torch is measured too: no PyTorch toolkit's peak can be below it). The
parent also times the model's 1×1 convs alone through oneDNN (``dense_layers_rtf``), a floor
for the compute-limit comparison.

Allocator: glibc's defaults page-fault every large activation afresh, which slows long CPU
inputs in every toolkit. Each peer runs as shipped (glibc defaults) and with the tuned
setting (``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296``);
audiomask as shipped (``audiomask.tune_allocator()``, as its CLI does) and with
``AUDIOMASK_TUNE_MALLOC=0``. Ratios are medians over repetitions of ratios within one
repetition, against each peer as shipped and tuned. The compute limit is the RTF at which
audiomask's FLOPs per second of audio (``audiomask.macs.count_macs`` × 2, counted with
the CPU fast path off) run at the speed of a 4096² float32 matmul measured in this process in
each repetition. With CUDA available, inference and training are also measured on the GPU (as
shipped).

Run it in the peers' environment (the README's "peers-command" sets it up; ~20 min on 2 cores):

    python bench/peers.py --out bench/results/peers-$(date +%F).md
    python bench/peers.py --seconds 0.5 2 --train-seconds 0.5 --reps 1     # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRI = ROOT.parent / "shared" / "data" / "librispeech-mini"
RATE = 8000
SEED = 0
TOOLKITS = ("audiomask", "asteroid", "speechbrain")
PEERS = TOOLKITS[1:]
TUNED_GLIBC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296"
# Asteroid's ConvTasNet arguments for the paper configuration (free filterbank).
ASTEROID_PAPER = dict(n_src=2, n_filters=512, kernel_size=16, stride=8, bn_chan=128, hid_chan=512,
                      skip_chan=128, conv_kernel_size=3, n_blocks=8, n_repeats=3, norm_type="gLN",
                      mask_act="sigmoid", fb_name="free", sample_rate=RATE)
# Which allocator each toolkit runs with: (label, shipped?, extra environment); as shipped first.
VARIANTS = {
    "audiomask": [("tuned", True, {}), ("glibc default", False, {"AUDIOMASK_TUNE_MALLOC": "0"})],
    **{p: [("glibc default", True, {}), ("tuned", False, {"GLIBC_TUNABLES": TUNED_GLIBC})] for p in PEERS},
}


def variants(toolkit: str, device: str) -> list[tuple]:
    """Allocator variants measured: both on the CPU, the shipped one on a GPU."""
    return VARIANTS[toolkit] if device == "cpu" else VARIANTS[toolkit][:1]


# ---------------------------------------------------------------------------------------------
# models (built in the parent once, in each child from the saved weights)

def build_speechbrain():
    """SpeechBrain's Conv-TasNet in the paper configuration, ``[B, T] → [B, C, T]``, its forward
    as in SpeechBrain's WSJ0Mix separation recipe (``compute_forward``)."""
    import torch
    from speechbrain.lobes.models.conv_tasnet import MaskNet
    from speechbrain.lobes.models.dual_path import Decoder, Encoder

    class SpeechBrainConvTasNet(torch.nn.Module):
        def __init__(self, n_src: int = 2):
            super().__init__()
            self.n_src = n_src
            self.encoder = Encoder(kernel_size=16, out_channels=512)
            self.masknet = MaskNet(N=512, B=128, H=512, P=3, X=8, R=3, C=n_src, norm_type="gLN",
                                   causal=False, mask_nonlinear="relu")
            self.decoder = Decoder(in_channels=512, out_channels=1, kernel_size=16, stride=8, bias=False)

        def forward(self, mix):
            mix_w = self.encoder(mix)
            est_mask = self.masknet(mix_w)
            sep_h = torch.stack([mix_w] * self.n_src) * est_mask
            est = torch.cat([self.decoder(sep_h[i]).unsqueeze(-1) for i in range(self.n_src)], dim=-1)
            t_mix, t_est = mix.shape[1], est.shape[1]
            est = torch.nn.functional.pad(est, (0, 0, 0, t_mix - t_est)) if t_mix > t_est else est[:, :t_mix]
            return est.permute(0, 2, 1)

    return SpeechBrainConvTasNet()


def prepare_weights(workdir: Path) -> dict:
    """Seeded Asteroid weights → the audiomask file; returns what loaded."""
    import torch
    from asteroid.models import ConvTasNet as AsteroidConvTasNet

    from audiomask.interop import convert

    torch.manual_seed(SEED)
    asteroid = AsteroidConvTasNet(**ASTEROID_PAPER).eval()
    torch.save(asteroid.state_dict(), workdir / "asteroid.pt")
    ours = convert("asteroid-convtasnet", asteroid.state_dict())
    ours.save(str(workdir / "audiomask.safetensors"))
    available = {"audiomask": None, "asteroid": None}
    try:
        build_speechbrain()
        available["speechbrain"] = None
    except Exception as e:  # noqa: BLE001
        available["speechbrain"] = f"not measured: {type(e).__name__}: {e}"
    return available


def load_model(toolkit: str, workdir: Path):
    """The toolkit's model (``[B, T] → [B, C, T]``) with the benchmark's weights."""
    import torch

    if toolkit == "audiomask":
        import audiomask
        return audiomask.load(str(workdir / "audiomask.safetensors"))
    if toolkit == "asteroid":
        from asteroid.models import ConvTasNet
        model = ConvTasNet(**ASTEROID_PAPER)
        model.load_state_dict(torch.load(workdir / "asteroid.pt", weights_only=True))
        return model
    if toolkit == "speechbrain":
        torch.manual_seed(SEED)
        return build_speechbrain()
    raise ValueError(toolkit)


# ---------------------------------------------------------------------------------------------
# data

def make_mixture(n: int) -> tuple:
    """A real two-talker mixture of ``n`` samples at 8 kHz: talker k is the concatenation of
    every other LibriSpeech utterance (starting at k), each talker at the same RMS."""
    import torch

    from audiomask.audio import read_audio

    files = sorted(LIBRI.glob("*.flac"))
    if len(files) < 4:
        sys.exit(f"real speech not found at {LIBRI}")
    talkers = []
    for k in range(2):
        parts, total = [], 0
        for f in files[k::2]:
            wav, _ = read_audio(f, sample_rate=RATE, channels=1)
            parts.append(wav[0])
            total += wav.shape[-1]
            if total >= n:
                break
        s = torch.cat(parts)[:n]
        talkers.append(s / s.pow(2).mean().sqrt() * 0.05)
    src = torch.stack(talkers)
    return src.sum(0), src


# ---------------------------------------------------------------------------------------------
# the child: one measurement

def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024


def child(spec: dict) -> dict:
    """Run one measurement described by ``spec``; returns times (s) and memory (MB)."""
    import torch

    if spec["toolkit"] == "audiomask":
        import audiomask
        audiomask.tune_allocator()  # as the CLI does; a no-op under AUDIOMASK_TUNE_MALLOC=0
    if spec["task"] == "train":
        from audiomask.losses import pit_si_sdr_loss  # imported before the RSS baseline, for all
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    workdir = Path(spec["workdir"])
    data = torch.load(workdir / "data.pt", weights_only=True)
    model = load_model(spec["toolkit"], workdir).to(device)
    rss_build = _rss_mb("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if spec["task"] == "infer":
        times = _infer(model, data["mix"][: int(spec["seconds"] * RATE)][None].to(device), spec["calls"])
    else:
        n, b = int(spec["seconds"] * RATE), spec["batch"]
        src = data["sources"][:, : b * n].reshape(2, b, n).transpose(0, 1).contiguous().to(device)
        times = _train(model, src, pit_si_sdr_loss, spec["steps"])
    result = {"time_s": min(times), "times_s": times, "rss_build_mb": rss_build,
              "peak_mb": _rss_mb("VmHWM"), "parameters": sum(p.numel() for p in model.parameters())}
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def torch_floor_mb() -> float:
    """RSS (MB) of a fresh Python process that has imported torch and nothing else."""
    code = "import torch, re; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def _sync(x) -> None:
    import torch
    if x.is_cuda:
        torch.cuda.synchronize()


def _infer(model, mix, calls: int) -> list[float]:
    import torch

    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(1 + calls):  # the first is the warm-up
            _sync(mix)
            t0 = time.perf_counter()
            est = model(mix)
            _sync(est)
            times.append(time.perf_counter() - t0)
    assert est.shape == (1, 2, mix.shape[-1]) and torch.isfinite(est).all(), est.shape
    return times[1:]


def _train(model, src, loss_fn, steps: int) -> list[float]:
    import torch

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mix = src.sum(1)
    times = []
    for _ in range(1 + steps):  # the first is the warm-up
        _sync(mix)
        t0 = time.perf_counter()
        loss = loss_fn(model(mix), src)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(mix)
        times.append(time.perf_counter() - t0)
    assert torch.isfinite(loss), loss
    return times[1:]


def run_child(spec: dict, extra_env: dict) -> dict:
    """One measurement in a fresh process with the allocator environment ``extra_env``."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "AUDIOMASK_TUNE_MALLOC")}
    env.update(extra_env)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the parent: setup, schedule, summary

def matmul_gflops(threads: int, n: int = 4096, repeats: int = 3) -> float:
    """Best fp32 ``n × n`` matmul speed in this process, GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def onednn_gflops(threads: int, n: int = 4096, repeats: int = 3) -> float:
    """Best fp32 ``n × n`` product through oneDNN's inner product (``audiomask.nn.onednn``,
    what the CPU fast path uses for its 1×1 convs), GFLOP/s; 0 where it is unavailable."""
    import torch

    from audiomask.nn import onednn

    if not onednn.enabled():
        return 0.0
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        onednn.linear(a, b)
        best = min(_timed(lambda: onednn.linear(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def dense_layers_rtf(threads: int, seconds: float, repeats: int = 3) -> tuple[float, float]:
    """The paper configuration's 1×1 convs alone (bottleneck, the 24 blocks' in and
    residual/skip convs, mask head) over the frames of ``seconds`` of 8 kHz audio, through
    oneDNN as the CPU fast path runs them (2048-frame chunks): ``(RTF, GFLOP/s)``; ``(0, 0)``
    where oneDNN is unavailable. What the 1×1 convs cost at their own shapes, below which no
    implementation that keeps them as matmuls can go."""
    import torch

    from audiomask.nn import onednn

    if not onednn.enabled():
        return 0.0, 0.0
    torch.set_num_threads(threads)
    frames, chunk = int(seconds * RATE) // 8 + 1, 2048
    shapes = [(512, 128)] + [(128, 512), (512, 256)] * 24 + [(128, 1024)]  # (in, out) channels
    weights = [torch.randn(o, i) / i**0.5 for i, o in shapes]
    inputs = {i: torch.randn(chunk, i) for i in {i for i, _ in shapes}}

    def run():
        for r0 in range(0, frames, chunk):
            rows = min(chunk, frames - r0)
            for w in weights:
                onednn.linear(inputs[w.shape[1]][:rows], w)

    with torch.inference_mode():
        run()
        best = min(_timed(run) for _ in range(repeats))
    flops = 2 * frames * sum(i * o for i, o in shapes)
    return best / seconds, flops / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def output_diffs(workdir: Path, toolkits: list[str], seconds: float) -> dict:
    """Max |difference| of each toolkit's output from audiomask's on the first benchmark input
    (whole signal and interior)."""
    import torch

    n = int(seconds * RATE)
    mix = torch.load(workdir / "data.pt", weights_only=True)["mix"][None]
    models = {t: load_model(t, workdir).eval() for t in toolkits if t != "speechbrain"}  # not under inference_mode
    with torch.inference_mode():
        outputs = {t: m(mix[:, :n]) for t, m in models.items()}
    ref = outputs.pop("audiomask")
    edge = 2 * ASTEROID_PAPER["kernel_size"]  # samples at each end where the framings differ
    diffs = {"seconds": seconds, "output_peak": ref.abs().max().item(), "edge_samples": edge}
    for t, y in outputs.items():
        diffs[t] = (y - ref).abs().max().item()
        diffs[f"{t}_interior"] = (y - ref)[..., edge:-edge].abs().max().item()
    return diffs





def flops_per_audio_second(model) -> float:
    """FLOPs per second of audio of the model's module graph: ``count_macs`` × 2 (4 s input).
    (``count_macs`` runs the modules: kernels hide work from the counter.)"""
    from audiomask.macs import count_macs

    return 2.0 * count_macs(model, seconds=4.0)


def schedule(toolkits: list[str], args, device: str) -> list[dict]:
    """The measurements of one repetition: per task, every toolkit × allocator variant."""
    tasks = [("infer", s) for s in args.seconds] + [("train", args.train_seconds)]
    specs = []
    for task, seconds in tasks:
        for toolkit in toolkits:
            for label, shipped, env in variants(toolkit, device):
                specs.append({"toolkit": toolkit, "allocator": label, "shipped": shipped, "env": env,
                              "task": task, "seconds": seconds, "device": device, "threads": args.threads,
                              "calls": args.calls, "steps": args.train_steps, "batch": args.batch})
    return specs


def key(r: dict) -> tuple:
    return (r["device"], r["toolkit"], r["allocator"], r["task"], r["seconds"])


def run_all(toolkits: list[str], devices: list[str], args, workdir: Path
            ) -> tuple[list[dict], list[float], list[float], list[tuple[float, float]]]:
    runs, gflops, dnn, dense = [], [], [], []
    total = args.reps * sum(len(schedule(toolkits, args, d)) for d in devices)
    t_start = time.time()
    for rep in range(args.reps):
        gflops.append(matmul_gflops(args.threads))
        dnn.append(onednn_gflops(args.threads))
        dense.append(dense_layers_rtf(args.threads, max(args.seconds)))
        log(f"[rep {rep + 1}/{args.reps}] matmul {gflops[-1]:.0f} GFLOP/s (oneDNN inner product {dnn[-1]:.0f}; "
            f"the model's 1×1 convs alone: RTF {dense[-1][0]:.4f} at {dense[-1][1]:.0f} GFLOP/s)")
        order = toolkits[rep % len(toolkits):] + toolkits[: rep % len(toolkits)]  # rotate each rep
        for device in devices:
            for spec in schedule(order, args, device):
                env = spec.pop("env")
                r = {**spec, "rep": rep, **run_child({**spec, "workdir": str(workdir)}, env)}
                runs.append(r)
                log(f"[{len(runs)}/{total}, {(time.time() - t_start) / 60:.1f} min] {describe(r)}")
    return runs, gflops, dnn, dense


def describe(r: dict) -> str:
    what = f"{r['device']} {r['toolkit']} ({r['allocator']}) {r['task']} {r['seconds']:g} s"
    if "error" in r:
        return f"{what}: FAILED {r['error']}"
    speed = f"RTF {r['time_s'] / r['seconds']:.3f}" if r["task"] == "infer" else f"{r['time_s']:.2f} s/step"
    mem = f"GPU peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else f"peak {r['peak_mb']:.0f} MB"
    return f"{what}: {speed}, {mem} (+{r['peak_mb'] - r['rss_build_mb']:.0f} MB over the built model)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median_of(runs: list[dict], k: tuple, field: str) -> float | None:
    values = [value(r, field) for r in runs if key(r) == k and "error" not in r]
    return statistics.median(values) if values else None


def value(r: dict, field: str) -> float:
    if field == "speed":  # RTF for inference, seconds per step for training
        return r["time_s"] / r["seconds"] if r["task"] == "infer" else r["time_s"]
    if field == "mem":  # GPU peak on CUDA, peak RSS on the CPU
        return r["cuda_peak_mb"] if r["device"] == "cuda" else r["peak_mb"]
    if field == "growth":
        return r["peak_mb"] - r["rss_build_mb"]
    return r[field]


def paired_ratio(runs: list[dict], num: tuple, den: tuple, field: str) -> float | None:
    """Median over repetitions of value(num) / value(den) within the same repetition."""
    by_rep = {}
    for r in runs:
        if "error" not in r and key(r) in (num, den):
            by_rep.setdefault(r["rep"], {})[key(r)] = value(r, field)
    ratios = [v[num] / v[den] for v in by_rep.values() if num in v and den in v]
    return statistics.median(ratios) if ratios else None


def summarize(runs, toolkits, devices, args, gflops, flops_per_s, diffs, dnn=None) -> dict:
    """Medians per toolkit × allocator, the ratios to each peer and the targets."""
    rows, ratios, targets = [], [], []
    for device in devices:
        for t in toolkits:
            for label, shipped, _ in variants(t, device):
                rows.append(row_summary(runs, (device, t, label), shipped, args, diffs))
        for peer in toolkits[1:]:
            for label, _, _ in variants(peer, device):
                ratios.append(ratio_summary(runs, (device, "audiomask", "tuned"), (device, peer, label), args))
        if device == "cpu":
            targets += cpu_targets(runs, ratios, toolkits, args, gflops, flops_per_s, diffs, dnn)
    return {"rows": rows, "ratios": ratios, "targets": targets}


def row_summary(runs, who: tuple, shipped: bool, args, diffs) -> dict:
    """Medians of one (device, toolkit, allocator)."""
    s_long, train = max(args.seconds), args.train_seconds
    device, toolkit, label = who
    return {"device": device, "toolkit": toolkit, "allocator": label, "shipped": shipped,
            "rtf": {s: median_of(runs, (*who, "infer", s), "speed") for s in args.seconds},
            "mem_long_mb": median_of(runs, (*who, "infer", s_long), "mem"),
            "growth_long_mb": median_of(runs, (*who, "infer", s_long), "growth"),
            "train_s": median_of(runs, (*who, "train", train), "speed"),
            "train_mem_mb": median_of(runs, (*who, "train", train), "mem"),
            "parameters": next((r["parameters"] for r in runs if r["toolkit"] == toolkit and "parameters" in r), None),
            "max_diff": 0.0 if toolkit == "audiomask" else diffs.get(toolkit)}


def ratio_summary(runs, ours: tuple, theirs: tuple, args) -> dict:
    """Speed-ups (peer time / ours) and memory fractions (ours / peer's), paired per repetition."""
    s_long, train = max(args.seconds), args.train_seconds
    return {"device": theirs[0], "peer": theirs[1], "allocator": theirs[2],
            **{f"speedup_{s:g}s": paired_ratio(runs, (*theirs, "infer", s), (*ours, "infer", s), "speed")
               for s in args.seconds},
            "mem_long": paired_ratio(runs, (*ours, "infer", s_long), (*theirs, "infer", s_long), "mem"),
            "growth_long": (None if theirs[0] == "cuda" else
                            paired_ratio(runs, (*ours, "infer", s_long), (*theirs, "infer", s_long), "growth")),
            "train_speedup": paired_ratio(runs, (*theirs, "train", train), (*ours, "train", train), "speed"),
            "train_mem": paired_ratio(runs, (*ours, "train", train), (*theirs, "train", train), "mem")}


def cpu_targets(runs, ratios, toolkits, args, gflops, flops_per_s, diffs, dnn=None) -> list[dict]:
    """The targets of issue 9, each against the peer as shipped and tuned."""
    s_short, s_long, train = min(args.seconds), max(args.seconds), args.train_seconds
    out = []

    def add(name, measured, goal, higher_is_better):
        met = None if measured is None else (measured >= goal if higher_is_better else measured <= goal)
        out.append({"target": name, "measured": measured, "goal": goal, "met": met})

    for r in (r for r in ratios if r["device"] == "cpu" and r["peer"] == "asteroid"):
        alloc = r["allocator"]
        add(f"inference at {s_short:g} s: ≥ 2× faster than Asteroid ({alloc})", r[f"speedup_{s_short:g}s"], 2.0, True)
        add(f"inference at {s_long:g} s: ≥ 4× faster than Asteroid ({alloc})", r[f"speedup_{s_long:g}s"], 4.0, True)
        add(f"peak memory at {s_long:g} s: ≤ ⅓ of Asteroid's ({alloc})", r["mem_long"], 1 / 3, False)
        add(f"peak memory at {s_long:g} s over the built model: ≤ ⅓ of Asteroid's ({alloc})",
            r["growth_long"], 1 / 3, False)
    if "asteroid" in diffs:
        add("same outputs as Asteroid: max abs difference / max abs output",
            diffs["asteroid"] / diffs["output_peak"], 1e-5, False)
    # the compute limit at torch.mm's speed (the issue's definition) and, stricter, at the best
    # matmul speed this machine has (oneDNN's inner product, which the fast path itself uses)
    speeds = [("torch.mm", gflops)] + ([("oneDNN", dnn)] if dnn and all(dnn) else [])
    for what, per_rep in speeds:
        limit = statistics.median(flops_per_s / (g * 1e9) for g in per_rep)
        for s in args.seconds:
            ours = [r["time_s"] / s / (flops_per_s / (per_rep[r["rep"]] * 1e9)) for r in runs
                    if key(r) == ("cpu", "audiomask", "tuned", "infer", s) and "error" not in r]
            add(f"inference at {s:g} s within 1.3× of the compute limit at {what} speed (RTF {limit:.3f})",
                statistics.median(ours) if ours else None, 1.3, False)
    for label in ("glibc default", "tuned"):
        times = {p: median_of(runs, ("cpu", p, label, "train", train), "speed") for p in toolkits[1:]}
        times = {p: v for p, v in times.items() if v is not None}
        if not times:
            continue
        fastest = min(times, key=times.get)
        r = next(r for r in ratios if r["device"] == "cpu" and r["peer"] == fastest and r["allocator"] == label)
        add(f"training step ≥ 1.5× faster than the fastest peer ({fastest}, {label})", r["train_speedup"], 1.5, True)
        add(f"training peak memory ≤ ½ of that peer's ({fastest}, {label})", r["train_mem"], 0.5, False)
    return out


# ---------------------------------------------------------------------------------------------
# reporting

def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor() or platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    cpu += " (AVX-512)" if "avx512f" in flags else " (AVX2)" if "avx2" in flags else ""
    mem = next((int(line.split()[1]) // 2**20 for line in open("/proc/meminfo") if line.startswith("MemTotal")), None)
    versions = {}
    for dist in ("torch", "asteroid", "asteroid-filterbanks", "speechbrain", "audiomask"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": mem, "python": platform.python_version(), "versions": versions,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": open("/proc/loadavg").read().split()[:3]}


def fmt(x, spec: str = ".3f", suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


def tables(summary: dict, args, diffs: dict, skipped: dict) -> str:
    s_long = max(args.seconds)
    lines = []
    for device in dict.fromkeys(r["device"] for r in summary["rows"]):
        mem = "GPU peak MB" if device == "cuda" else "peak RSS MB"
        lines += [f"### {device.upper()}: medians of {args.reps} repetition(s)", "",
                  "| toolkit | allocator | parameters | " + " | ".join(f"RTF {s:g} s" for s in args.seconds)
                  + f" | {mem} at {s_long:g} s (over model) | train s/step | train {mem} | max \\|diff\\| vs audiomask |",
                  "|---|---|---|" + "---|" * (len(args.seconds) + 4)]
        for r in (r for r in summary["rows"] if r["device"] == device):
            diff = fmt(r["max_diff"], ".1e")
            if r["toolkit"] == "speechbrain":
                diff = "different architecture"
            elif diffs.get(f"{r['toolkit']}_interior") is not None:
                diff += f" (interior {diffs[r['toolkit'] + '_interior']:.1e})"
            growth = "" if device == "cuda" else f" ({fmt(r['growth_long_mb'], ',.0f')})"
            lines.append(f"| {r['toolkit']} | {r['allocator']}{' (as shipped)' if r['shipped'] else ''} | "
                         f"{fmt(r['parameters'], ',d')} | "
                         + " | ".join(fmt(r["rtf"][s]) for s in args.seconds)
                         + f" | {fmt(r['mem_long_mb'], ',.0f')}{growth} | {fmt(r['train_s'], '.2f')} | "
                         f"{fmt(r['train_mem_mb'], ',.0f')} | {diff} |")
        lines += ["", f"audiomask (tuned, as shipped) against each peer, {device.upper()}: medians of per-repetition "
                  "ratios (speed-ups > 1 and memory fractions < 1 favour audiomask)", "",
                  "| peer | peer allocator | " + " | ".join(f"speed-up {s:g} s" for s in args.seconds)
                  + f" | memory at {s_long:g} s (over model) | training speed-up | training memory |",
                  "|---|---|" + "---|" * (len(args.seconds) + 3)]
        for r in (r for r in summary["ratios"] if r["device"] == device):
            lines.append(f"| {r['peer']} | {r['allocator']} | "
                         + " | ".join(fmt(r[f"speedup_{s:g}s"], ".2f", "×") for s in args.seconds)
                         + f" | {fmt(r['mem_long'], '.2f', '×')}"
                         + ("" if r.get("growth_long") is None else f" ({fmt(r['growth_long'], '.2f', '×')})")
                         + f" | {fmt(r['train_speedup'], '.2f', '×')} | "
                         f"{fmt(r['train_mem'], '.2f', '×')} |")
        lines.append("")
    if summary["targets"]:
        lines += ["### Targets (CPU)", "", "| target | measured | goal | met |", "|---|---|---|---|"]
        for t in summary["targets"]:
            met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
            measured = fmt(t["measured"], ".1e" if t["goal"] < 1e-3 else ".2f")
            goal = f"{t['goal']:.0e}" if t["goal"] < 1e-3 else f"{t['goal']:.2f}"
            lines.append(f"| {t['target']} | {measured} | {goal} | {met} |")
        lines.append("")
    for t, why in skipped.items():
        lines.append(f"- {t}: {why}")
    return "\n".join(lines)


def report(info: dict, summary: dict, args, diffs: dict, skipped: dict) -> str:
    m = info["machine"]
    v = ", ".join(f"{k} {x}" for k, x in m["versions"].items() if x)
    gflops = ", ".join(f"{g:.0f}" for g in info["matmul_gflops"])
    dnn = ", ".join(f"{g:.0f}" for g in info.get("onednn_gflops", [])) or "not measured"
    dense_rtf = ", ".join(f"{r:.4f}" for r, _ in info.get("dense_layers", [])) or "—"
    dense_gflops = ", ".join(f"{g:.0f}" for _, g in info.get("dense_layers", [])) or "—"
    return f"""# Conv-TasNet: audiomask against its peers ({m['date']})

Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM{', GPU ' + m['gpu'] if m['gpu'] else ''};
Python {m['python']}; {v}. {args.threads} threads per measurement; load average at start
{' '.join(m['load_average_at_start'])}.

Command: `{info['command']}`

Paper configuration (N 512, L 16, B 128, H 512, Sc 128, P 3, X 8, R 3, gLN, 2 sources,
8 kHz); audiomask and Asteroid run the same weights (seeded Asteroid weights through
`audiomask.interop.convert`); torchaudio is not measured (its only release for this torch is a
CUDA build whose extension cannot load on a CPU machine); SpeechBrain's Conv-TasNet is
another architecture (no skip path, channel-wise input norm, ReLU encoder and masks) with its
own random weights. Input: a real two-talker LibriSpeech mixture at 8 kHz. Each number comes
from its own child process; RTF is the best of {args.calls} timed call(s) after a warm-up, a
training step (batch {args.batch} × {args.train_seconds:g} s, PIT SI-SDR, Adam) the best of
{args.train_steps} after a warm-up; peak RSS is the child's VmHWM, and in brackets its growth
over the RSS of the built model. "tuned" = glibc with large blocks kept in the heap
(`audiomask.tune_allocator()` for audiomask, `GLIBC_TUNABLES={TUNED_GLIBC}`
for the peers); "glibc default" = audiomask with `AUDIOMASK_TUNE_MALLOC=0`, the peers as shipped.

Compute limit: {info['flops_per_audio_s'] / 1e9:.2f} GFLOP per second of audio
(`audiomask.macs.count_macs` × 2, CPU fast path off while counting) at the 4096² float32
matmul speed measured in each repetition: `torch.mm` (MKL) {gflops} GFLOP/s; oneDNN's inner
product, which audiomask's CPU fast path uses for its 1×1 convs, {dnn} GFLOP/s. The model's
1×1 convs alone, through oneDNN at their own shapes over the {max(args.seconds):g} s input's frames
(`dense_layers_rtf`), take RTF {dense_rtf} ({dense_gflops} GFLOP/s): a floor for any
implementation that runs them as matmuls.

Memory floor: a Python process that has only imported torch holds {info['torch_floor_mb']:.0f} MB
(RSS, measured in this run), so no PyTorch toolkit's peak can be below it; the memory targets
are therefore given on the peak and on its growth over the built model.

Output differences, on the {diffs.get('seconds', 0):g} s input (outputs peak at {diffs.get('output_peak', 0):.2g};
"interior": all but {diffs.get('edge_samples', 0)} samples at each end): Asteroid runs the same
computation in another order (float32 rounding).

{tables(summary, args, diffs, skipped)}
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", nargs="+", type=float, default=[4.0, 30.0], help="inference input lengths")
    p.add_argument("--train-seconds", type=float, default=4.0, help="length of each training example")
    p.add_argument("--batch", type=int, default=4, help="training batch size")
    p.add_argument("--reps", type=int, default=3, help="repetitions (medians are taken over them)")
    p.add_argument("--calls", type=int, default=1, help="timed inference calls per child (best taken)")
    p.add_argument("--train-steps", type=int, default=1, help="timed training steps per child (best taken)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--toolkits", nargs="+", default=list(TOOLKITS), choices=TOOLKITS)
    p.add_argument("--no-gpu", action="store_true", help="skip the CUDA measurements even where available")
    p.add_argument("--out", type=Path, help="write the markdown report here and its JSON beside it")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import torch

    toolkits = ["audiomask"] + [t for t in args.toolkits if t != "audiomask"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_gpu else [])
    info = {"machine": machine(), "command": " ".join(["python", *sys.argv]), "torch_floor_mb": torch_floor_mb()}
    log(f"{info['machine']['cpu']}, {info['machine']['cores']} cores, torch {torch.__version__}")
    load = float(info["machine"]["load_average_at_start"][0])
    if load > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load:.1f} on {os.cpu_count()} cores: other processes share the CPU, "
            "timings will be noisy")
    with tempfile.TemporaryDirectory(prefix="audiomask-peers-") as tmp:
        workdir = Path(tmp)
        available = prepare_weights(workdir)
        skipped = {t: available[t] for t in toolkits if available.get(t)}
        toolkits = [t for t in toolkits if not available.get(t)]
        mix, src = make_mixture(int(max(max(args.seconds), args.batch * args.train_seconds) * RATE))
        torch.save({"mix": mix, "sources": src}, workdir / "data.pt")
        torch.set_num_threads(args.threads)
        info["flops_per_audio_s"] = flops_per_audio_second(load_model("audiomask", workdir))
        diffs = output_diffs(workdir, toolkits, min(args.seconds))
        log(f"max |diff| vs audiomask: {diffs}; {info['flops_per_audio_s'] / 1e9:.2f} GFLOP per s of audio")
        runs, info["matmul_gflops"], info["onednn_gflops"], info["dense_layers"] = run_all(toolkits, devices, args,
                                                                                          workdir)
    summary = summarize(runs, toolkits, devices, args, info["matmul_gflops"], info["flops_per_audio_s"], diffs,
                        info["onednn_gflops"])
    text = report(info, summary, args, diffs, skipped)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {**info, "args": {k: v for k, v in vars(args).items() if k != "child"} | {"out": str(args.out)},
             "diffs": diffs, "skipped": skipped, "summary": summary, "runs": runs}, indent=2, default=str) + "\n")
        log(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
