"""Peak memory of long inputs, per architecture, on a CUDA GPU or the CPU (issue 23, item 5).

Two kinds of rows, each measured in a fresh child process (its own peaks, its own allocator):

* ``long``: ``--minutes`` of 16 kHz audio (a real two-speaker LibriSpeech mixture from
  ``../shared/data``, tiled; noise when the data is absent — memory does not depend on the
  content) through what a user runs on a file: :func:`audiomask.separate` for separators
  (inputs over 30 s go window by window, 10 s windows), :func:`audiomask.echo_cancellation.cancel_echo`
  for echo cancellers (inputs over 30 s go through the exact stream in 30 s blocks; the
  far-end signal is the mixture delayed). Bounded memory means the peak does not grow with
  the input: run two lengths and compare.
* ``per-second``: one eval forward of the D3Net echo canceller over ``--seconds`` (default 10 s)
  of audio with its masker in one pass over all frames (``infer_chunk`` = ∞) and in chunks of
  ``infer_chunk`` frames (the default): peak memory per second of audio and the ratio.

Peak memory is counted from after the model and the input are in place, over the call only:
on CUDA ``torch.cuda.max_memory_allocated`` (the caching allocator's live tensors); on the CPU
the process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` before the call)
minus its RSS before the call.

    python bench/memory.py --json bench/results/memory-<device>.json               # GPU: 60 min, every architecture
    python bench/memory.py --models convtasnet-robust16k d3net-aec:paper --minutes 1 4 --threads 2   # CPU
    python bench/memory.py --rows per-second                                        # only the D3Net rows
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "librispeech-mini"

#: what a user would run on a long 16 kHz file: the bundled default and each architecture's
#: largest preset (``name`` = a bundled model, ``arch:preset`` = random weights of a preset)
MODELS = ["convtasnet-robust16k", "convtasnet:paper", "mossformer:paper", "mossformer2:paper", "tiger:large",
          "d3net-aec:paper"]

CHILD = r"""
import json, os, pathlib, sys, time, warnings
import torch, audiomask
from audiomask.tasks import ECHO_CANCELLATION, task_of
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
torch.manual_seed(0)
cuda = spec["device"] == "cuda"
name = spec["model"]
model = (audiomask.build(*name.split(":")) if ":" in name else audiomask.load(name)).eval().to(spec["device"])

def rss_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)

def signal(seconds, rate=16000):
    n = int(seconds * rate)
    files = sorted(pathlib.Path(spec["data"]).rglob("*.flac"))[:2] if spec["data"] else []
    if len(files) == 2:
        import soundfile as sf
        a, b = (torch.from_numpy(sf.read(f, dtype="float32")[0]) for f in files)
        m = min(len(a), len(b))
        mix = a[:m] + b[:m]
        return mix.repeat(n // m + 1)[:n].contiguous()
    return torch.randn(n, generator=torch.Generator().manual_seed(0)) * 0.1

def begin():
    if cuda:
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    return rss_mb("VmRSS")

def end(before):
    if cuda:
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return rss_mb("VmHWM") - before

aec = task_of(model) is ECHO_CANCELLATION
out = {"parameters": model.n_params(), "sample_rate": model.sample_rate}
if spec["row"] == "long":
    from audiomask.echo_cancellation import cancel_echo
    x = signal(spec["seconds"])
    far = torch.roll(x, 1600) * 0.5
    warnings.simplefilter("ignore")
    before = begin()
    t0 = time.perf_counter()
    y = cancel_echo(model, x + far, far) if aec else audiomask.separate(model, x, 16000)
    out["wall_s"] = time.perf_counter() - t0
    out["peak_mb"] = end(before)
    assert y.shape[-1] == x.shape[-1] and torch.isfinite(y).all()
else:  # per-second: the masker in one pass or in chunks, one forward at the model's rate
    x = signal(spec["seconds"]).unsqueeze(0).to(spec["device"])
    if spec["chunk"] is not None:
        model.masker.infer_chunk = spec["chunk"]
    with torch.inference_mode():
        model(x[:, :1600], x[:, :1600])  # warm-up (kernels, allocator)
        before = begin()
        t0 = time.perf_counter()
        y = model(x, x * 0.5)
        if cuda:
            torch.cuda.synchronize()
        out["wall_s"] = time.perf_counter() - t0
        out["peak_mb"] = end(before)
print("RESULT " + json.dumps(out))
"""


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="*", default=["long", "per-second"], choices=["long", "per-second"])
    p.add_argument("--models", nargs="*", default=MODELS, help="bundled names or arch:preset (long rows)")
    p.add_argument("--minutes", nargs="*", type=float, default=[60.0], help="input lengths of the long rows")
    p.add_argument("--seconds", type=float, default=10.0, help="input length of the per-second rows")
    p.add_argument("--aec-preset", default="paper", help="D3Net-AEC preset of the per-second rows")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each child")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev_name = torch.cuda.get_device_name() if device == "cuda" else f"{cpu_name()}, {args.threads} threads"
    kind = "max_memory_allocated" if device == "cuda" else "peak RSS over the call"
    print(f"device: {dev_name}; torch {torch.__version__}; peak memory = {kind}, MB")
    base = {"device": device, "threads": args.threads, "data": str(DATA) if DATA.is_dir() else ""}
    rows = []
    meta = {"device": dev_name, "torch": torch.__version__, "peak": kind, "threads": args.threads}

    def save() -> None:  # after every row: a run cut short keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    if "long" in args.rows:
        print(f"{'model':<24}{'minutes':>8}{'peak MB':>10}{'RTF':>8}")
        for name in args.models:
            for minutes in args.minutes:
                r = measure({**base, "row": "long", "model": name, "seconds": 60 * minutes})
                r.update(row="long", model=name, minutes=minutes)
                if "error" in r:
                    print(f"{name:<24}{minutes:>8g}  failed: {r['error']}", flush=True)
                else:
                    r["rtf"] = r["wall_s"] / (60 * minutes)
                    print(f"{name:<24}{minutes:>8g}{r['peak_mb']:>10.0f}{r['rtf']:>8.3f}", flush=True)
                rows.append(r)
                save()
    if "per-second" in args.rows:
        name = f"d3net-aec:{args.aec_preset}"
        found = {}
        for label, chunk in (("one pass", 10**9), ("chunked", None)):
            r = measure({**base, "row": "per-second", "model": name, "seconds": args.seconds, "chunk": chunk})
            r.update(row="per-second", model=name, seconds=args.seconds, masker=label)
            if "error" not in r:
                r["mb_per_s"] = r["peak_mb"] / args.seconds
                found[label] = r["mb_per_s"]
                print(f"{name} {args.seconds:g} s, masker {label}: peak {r['peak_mb']:.0f} MB "
                      f"({r['mb_per_s']:.1f} MB per second of audio), {r['wall_s']:.2f} s", flush=True)
            else:
                print(f"{name} {label}: failed: {r['error']}")
            rows.append(r)
            save()
        if len(found) == 2:
            print(f"peak per second of audio cut {found['one pass'] / found['chunked']:.1f}× (target ≥ 4×)")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
