"""CPU inference cost of MossFormer and MossFormer2 "paper" presets: real-time factor and peak memory.

Every measurement runs in a fresh child process (so its peak RSS is its own): build the model
(random weights — cost does not depend on their values), warm up on 1 s, then separate one
mixture of ``--seconds`` (default 4 and 30 s) at the model's rate, ``--repeats`` times, and
report the best wall time. Modes:

* ``full``: the whole signal in one forward pass (the global attention is linear in length,
  so this fits in memory even for 30 s);
* ``chunked``: :func:`audiomask.streaming.separate_chunked` (10 s windows, 2 s overlap), the
  bounded-memory path ``audiomask separate`` takes for long files.

RTF = wall time / audio duration (< 1: faster than real time). Peak RSS includes the weights
(≈170 MB MossFormer, ≈225 MB MossFormer2, float32); ``rss_before_mb`` is the process after
building the model and the 1 s warm-up.

    python bench/mossformer.py --json bench/results/mossformer.json          # 4 s and 30 s, both models
    python bench/mossformer.py --seconds 1 --modes full --repeats 1          # a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, time, torch, audiomask
from audiomask.streaming import separate_chunked
audiomask.tune_allocator()
torch.set_num_threads({threads})
torch.manual_seed(0)
model = audiomask.build({model!r}, {preset!r}).eval()
rate = model.sample_rate
with torch.inference_mode():
    model(torch.randn(1, rate) * 0.1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
x = torch.randn(1, int({seconds} * rate)) * 0.1
best = float("inf")
for _ in range({repeats}):
    t0 = time.perf_counter()
    with torch.inference_mode():
        y = model(x) if {mode!r} == "full" else separate_chunked(model, x)
    best = min(best, time.perf_counter() - t0)
assert y.shape[-1] == x.shape[-1] and torch.isfinite(y).all()
print(json.dumps({{"parameters": model.n_params(), "sample_rate": rate, "wall_s": best,
                  "rss_before_mb": before,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

MODELS = {"mossformer": "paper", "mossformer2": "paper"}


def measure(model: str, preset: str, seconds: float, mode: str, threads: int, repeats: int) -> dict:
    code = CHILD.format(model=model, preset=preset, seconds=seconds, mode=mode, threads=threads,
                        repeats=repeats)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"model": model, "preset": preset, "mode": mode, "seconds": seconds, **r,
            "wall_s": round(r["wall_s"], 3), "rtf": round(r["wall_s"] / seconds, 3),
            "rss_before_mb": round(r["rss_before_mb"], 1), "peak_rss_mb": round(r["peak_rss_mb"], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seconds", nargs="+", type=float, default=[4.0, 30.0])
    p.add_argument("--modes", nargs="+", default=["full", "chunked"], choices=["full", "chunked"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="also write the results here (e.g. bench/results/mossformer.json)")
    args = p.parse_args()
    import torch

    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    print(machine)
    print(f"{'model':<12}{'preset':<8}{'mode':<9}{'audio s':>8}{'wall s':>9}{'RTF':>8}{'peak MB':>9}{'before MB':>10}")
    rows = []
    for model in args.models:
        for seconds in args.seconds:
            for mode in args.modes:
                if mode == "chunked" and seconds <= 10:
                    continue  # one window: identical to "full"
                r = measure(model, MODELS[model], seconds, mode, args.threads, args.repeats)
                rows.append(r)
                print(f"{r['model']:<12}{r['preset']:<8}{r['mode']:<9}{seconds:>8.1f}{r['wall_s']:>9.2f}"
                      f"{r['rtf']:>8.3f}{r['peak_rss_mb']:>9.0f}{r['rss_before_mb']:>10.0f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
