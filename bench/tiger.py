"""TIGER on the CPU: real-time factor, peak memory and MACs of the "small" and "large" presets
at 16 kHz, on a real two-speaker mixture, next to the paper's figures.

Each preset runs in its own child process (so that its peak RSS is its own): build the model,
separate the mixture once to warm up, then ``--repeats`` timed passes; RTF = median pass time /
audio duration. MACs are counted per second of audio with :func:`audiomask.macs.count_macs`
for 1 s of input (the paper's convention; attention over all frames makes longer inputs cost a
little more per second) and for the benchmark input; with ptflops installed, also with the
tool the authors used (it adds element-wise work).

    python bench/tiger.py --threads 2 --seconds 4 --json bench/results/tiger.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LIBRI = ROOT.parent / "shared" / "data" / "librispeech-mini"

# Xu et al., ICLR 2025, Table (EchoSet): parameters (M) and MACs (G/s) measured by the authors
# with ptflops on 1 s of 16 kHz audio.
PAPER = {"small": {"params_m": 0.82, "macs_g_per_s": 7.65},
         "large": {"params_m": 0.82, "macs_g_per_s": 15.27}}

CHILD = r"""
import json, resource, statistics, sys, time
import soundfile as sf, torch
import audiomask
from audiomask.macs import count_macs
audiomask.tune_allocator()

preset, threads, seconds, repeats = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
files = sys.argv[5:]
torch.set_num_threads(threads)
model = audiomask.build("tiger", preset).eval()
rate = model.sample_rate
n = int(seconds * rate)
sources = []
for f in files:
    wav, r = sf.read(f, dtype="float32", frames=n, start=rate // 2)
    assert r == rate, (f, r)
    wav = torch.from_numpy(wav)
    sources.append(wav / wav.abs().max() * 0.4)
mix = torch.stack(sources).sum(0)[None]

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20

rss_model = rss_mb()
times = []
with torch.inference_mode():
    model(mix)  # warm-up
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(mix)
        times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result = {
    "preset": preset, "parameters": model.n_params(), "n_iter": model.config.n_iter,
    "threads": threads, "seconds": seconds, "repeats": repeats,
    "median_s": statistics.median(times), "min_s": min(times),
    "rtf": statistics.median(times) / seconds,
    "rss_after_build_mb": rss_model, "peak_rss_mb": peak, "peak_rss_over_model_mb": peak - rss_model,
    "macs_g_per_s_1s": count_macs(model, 1.0) / 1e9,
    "macs_g_per_s_input": count_macs(model, seconds) / 1e9,
}
try:
    from ptflops import get_model_complexity_info
    macs, _ = get_model_complexity_info(model, (rate,), as_strings=False, print_per_layer_stat=False,
                                        verbose=False)
    result["ptflops_macs_g_per_s_1s"] = macs / 1e9
except ImportError:
    pass
print(json.dumps(result))
"""


def run_preset(preset: str, threads: int, seconds: float, repeats: int, files: list[str]) -> dict:
    args = [preset, str(threads), str(seconds), str(repeats), *files]
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["paper"] = PAPER[preset]
    result["macs_ours_over_paper"] = result["macs_g_per_s_1s"] / PAPER[preset]["macs_g_per_s"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small", "large"], choices=sorted(PAPER))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0, help="length of the real test mixture")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    files = sorted(str(f) for f in LIBRI.glob("*.flac"))[:2]
    if len(files) < 2:
        sys.exit(f"real speech not found at {LIBRI}")
    machine = {"processor": platform.processor() or platform.machine(), "torch": torch.__version__,
               "python": platform.python_version()}
    print(f"torch {machine['torch']}, {args.threads} threads, {machine['processor']}, "
          f"{args.seconds:g} s real mixture at 16 kHz")
    results = []
    for preset in args.presets:
        r = run_preset(preset, args.threads, args.seconds, args.repeats, files)
        results.append(r)
        ptflops = f", ptflops {r['ptflops_macs_g_per_s_1s']:.2f}" if "ptflops_macs_g_per_s_1s" in r else ""
        print(f"{preset:6s} {r['parameters']:,} params  RTF {r['rtf']:.3f} (median of {args.repeats})  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (+{r['peak_rss_over_model_mb']:.0f} over the model)  "
              f"MACs {r['macs_g_per_s_1s']:.2f} G/s{ptflops} (paper {r['paper']['macs_g_per_s']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
