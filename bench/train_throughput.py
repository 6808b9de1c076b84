"""Training throughput of Conv-TasNet presets on this machine: steps/s and samples/s.

A name of a bundled model (``convtasnet-mini2mix``) measures that model's architecture, built
from its stored config and weights.

One optimizer step = forward + PIT SI-SDR loss + backward + Adam on a batch of
``--batch`` × ``--seconds`` s mixtures at 8 kHz. Presets are measured one after the other in
one run, after ``--warmup`` untimed steps each.

    python bench/train_throughput.py --presets paper small --batch 4 --seconds 2 --threads 2
    python bench/train_throughput.py --presets paper convtasnet-mini2mix
    python bench/train_throughput.py --presets small paper --threads 1 --paths   # fused vs module

``--paths`` measures each preset twice in one run: the fused CPU training blocks
(``audiomask.maskers.tcn.cpu_training``) forced, then autograd through the modules forced, and prints
their ratio: the measurement behind ``accel.fuse_on_cpu``'s rule (which CPUs take the C paths).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time

import torch

import audiomask
from audiomask import accel
from audiomask.losses import pit_si_sdr_loss
from audiomask.models.checkpoint import pretrained_models


def measure(preset: str, batch: int, seconds: float, steps: int, warmup: int, path: str = "auto") -> dict:
    """One preset's training steps; ``path``: ``auto`` (the policy's choice), ``fused`` or
    ``module`` (forced)."""
    if path != "auto":
        with _forced(path):
            return {**measure(preset, batch, seconds, steps, warmup), "path": path}
    torch.manual_seed(0)
    if preset in pretrained_models():
        model = audiomask.load(preset).train().requires_grad_(True)
    else:
        model = audiomask.build("convtasnet", preset)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = int(seconds * model.sample_rate)
    src = torch.randn(batch, model.n_src, n) * 0.1
    mix = src.sum(1)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        loss = pit_si_sdr_loss(model(mix), src)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step_s = sum(times) / len(times)
    return {"preset": preset, "parameters": model.n_params(), "batch": batch, "seconds": seconds,
            "s_per_step": round(step_s, 3), "steps_per_s": round(1 / step_s, 3),
            "samples_per_s": round(batch / step_s, 2), "audio_s_per_s": round(batch * seconds / step_s, 2)}


@contextlib.contextmanager
def _forced(path: str):
    """The fused CPU blocks (``triton`` mode: the C paths on any CPU) or the module path."""
    with accel.force("triton" if path == "fused" else "reference"):
        yield


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["paper", "small"],
                   help="Conv-TasNet presets or bundled model names (default: paper small)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--paths", action="store_true", help="each preset with the fused blocks, then the module path")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    paths = ["fused", "module"] if args.paths else ["auto"]
    rows = [measure(pr, args.batch, args.seconds, args.steps, args.warmup, path) for pr in args.presets
            for path in paths]
    if args.paths:
        for fused, module in zip(rows[::2], rows[1::2]):
            print(f"{fused['preset']:<22} fused {fused['s_per_step']:.3f} s/step, module {module['s_per_step']:.3f} "
                  f"s/step: fused/module speed {module['s_per_step'] / fused['s_per_step']:.2f}x")
    print(f"{'preset':<22}{'params':>11}{'s/step':>9}{'steps/s':>9}{'samples/s':>11}{'audio s/s':>11}")
    for r in rows:
        print(f"{r['preset'] + (' ' + r['path'] if 'path' in r else ''):<22}{r['parameters']:>11,}{r['s_per_step']:>9.3f}{r['steps_per_s']:>9.3f}"
              f"{r['samples_per_s']:>11.2f}{r['audio_s_per_s']:>11.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
