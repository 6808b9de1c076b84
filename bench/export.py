"""Exported models on the CPU: onnxruntime real-time factor next to PyTorch's, same model, same
input, same thread count.

Each case is exported to ONNX (``audiomask.export.export_model``, verified against PyTorch to
1e-4), then timed in alternating runs — PyTorch, onnxruntime, onnxruntime, PyTorch, … — after one
warm-up each; RTF = median time / audio duration. Offline cases separate a real two-speaker
LibriSpeech mixture in one pass; streaming cases feed it in 10 ms blocks (PyTorch:
``model.stream()`` with its C kernels where built; onnxruntime: ``audiomask.export.OnnxStreamer``,
the numpy loop a deployment would run) and time the whole stream.

    python bench/export.py --threads 2 --repeats 5 --json bench/results/export.json
    python bench/export.py --quick                       # a smoke run: short inputs, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

import audiomask
from audiomask.audio import resample
from audiomask.export import OnnxStreamer, export_model
from audiomask.export.files import onnx_session

ROOT = Path(__file__).resolve().parents[1]
LIBRI = ROOT.parent / "shared" / "data" / "librispeech-mini"

# (label, model: bundled name or NAME:PRESET, seconds of audio, streaming)
CASES = [
    ("convtasnet-mini2mix 4 s", "convtasnet-mini2mix", 4.0, False),
    ("convtasnet-mini2mix 30 s", "convtasnet-mini2mix", 30.0, False),
    ("tiger small 4 s", "tiger:small", 4.0, False),
    ("mossformer2 small 4 s", "mossformer2:small", 4.0, False),
    ("convtasnet-mini2mix-causal, 10 ms blocks", "convtasnet-mini2mix-causal", 4.0, True),
    ("d3net-aec-small, 10 ms blocks", "d3net-aec-small", 4.0, True),
]


def load(spec: str) -> torch.nn.Module:
    if ":" in spec:
        name, preset = spec.split(":")
        torch.manual_seed(0)
        return audiomask.build(name, preset).eval()
    return audiomask.load(spec)


def real_mixture(rate: int, seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two LibriSpeech utterances at ``rate``, looped to ``seconds``: ``(mixture, second talker)``."""
    files = sorted(LIBRI.glob("*.flac"))[:2]
    if len(files) < 2:
        sys.exit(f"real speech not found at {LIBRI}")
    talkers = []
    for f in files:
        wav, r = sf.read(f, dtype="float32")
        wav = resample(torch.from_numpy(wav), r, rate)
        n = int(seconds * rate)
        wav = wav.repeat(n // wav.shape[-1] + 1)[:n]
        talkers.append(0.4 * wav / wav.abs().max())
    return talkers[0] + talkers[1], talkers[1]


def time_alternating(runs: dict, repeats: int) -> dict[str, list[float]]:
    """Warm each run up once, then time them in alternating order (ABBA…)."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for rep in range(repeats):
        for name in (order if rep % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def offline_runs(model, path: Path, mix: torch.Tensor, far: torch.Tensor, threads: int) -> dict:
    session = onnx_session(path, threads)
    aec = getattr(model, "task", "") == "aec"
    feed = {"mic": mix[None].numpy(), "far": far[None].numpy()} if aec else {"mix": mix[None].numpy()}
    args = (mix[None], far[None]) if aec else (mix[None],)

    def pytorch():
        with torch.inference_mode():
            model(*args)

    return {"pytorch": pytorch, "onnxruntime": lambda: session.run(None, feed)}


def streaming_runs(model, path: Path, mix: torch.Tensor, far: torch.Tensor, threads: int, block: int) -> dict:
    aec = getattr(model, "task", "") == "aec"
    n = mix.shape[-1] - mix.shape[-1] % block
    torch_blocks = [(mix[i : i + block], far[i : i + block]) if aec else (mix[i : i + block],)
                    for i in range(0, n, block)]
    numpy_blocks = [tuple(b.numpy() for b in blocks) for blocks in torch_blocks]
    streamer = OnnxStreamer(path, threads=threads)

    def pytorch():
        session = model.stream()
        for b in torch_blocks:
            session.process(*b)

    def onnxruntime():
        streamer.reset()
        for b in numpy_blocks:
            streamer.process(*b)

    return {"pytorch": pytorch, "onnxruntime": onnxruntime}


def run_case(label: str, spec: str, seconds: float, streaming: bool, threads: int, repeats: int,
             folder: Path) -> dict:
    model = load(spec)
    path = folder / f"{spec.replace(':', '_')}{'_stream' if streaming else ''}.onnx"
    t0 = time.perf_counter()
    meta = export_model(model, path, streaming=streaming, block_ms=10)
    export_s = time.perf_counter() - t0
    mix, far = real_mixture(model.sample_rate, seconds)
    if streaming:
        runs = streaming_runs(model, path, mix, far, threads, int(meta["block_size"]))
    else:
        runs = offline_runs(model, path, mix, far, threads)
    times = time_alternating(runs, repeats)
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "case": label, "model": spec, "streaming": streaming, "seconds": seconds, "threads": threads,
        "repeats": repeats, "export_s": export_s, "max_abs_error": float(meta["max_abs_error"]),
        "times_s": times,
        "rtf_pytorch": median["pytorch"] / seconds, "rtf_onnxruntime": median["onnxruntime"] / seconds,
    }
    result["ratio_onnxruntime_over_pytorch"] = result["rtf_onnxruntime"] / result["rtf_pytorch"]
    if streaming:
        blocks = int(seconds * model.sample_rate) // int(meta["block_size"])
        result["ms_per_block"] = {k: 1000 * v / blocks for k, v in median.items()}
    return result


def table(results: list[dict]) -> str:
    lines = ["| case | PyTorch RTF | onnxruntime RTF | ORT / PyTorch | max abs diff |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['rtf_pytorch']:.3f} | {r['rtf_onnxruntime']:.3f} | "
                     f"{r['ratio_onnxruntime_over_pytorch']:.2f} | {r['max_abs_error']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (default: 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each engine per case (default: 5)")
    p.add_argument("--cases", nargs="+", type=int, help="indices into the case list (default: all)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s inputs, 1 repeat, Conv-TasNet cases only")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    audiomask.tune_allocator()
    cases = [CASES[i] for i in args.cases] if args.cases else CASES
    repeats = args.repeats
    if args.quick:
        cases = [(label.replace(" 4 s", " 1 s"), spec, 1.0, streaming)
                 for label, spec, _, streaming in cases if "convtasnet" in spec][::2]
        repeats = 1
    import onnxruntime

    machine = {"processor": platform.processor() or platform.machine(), "torch": torch.__version__,
               "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    print(f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, {args.threads} threads, "
          f"{machine['processor']}, median of {repeats} alternating runs")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for label, spec, seconds, streaming in cases:
            r = run_case(label, spec, seconds, streaming, args.threads, repeats, Path(folder))
            results.append(r)
            print(f"{label}: PyTorch RTF {r['rtf_pytorch']:.3f}, onnxruntime RTF {r['rtf_onnxruntime']:.3f} "
                  f"(x{r['ratio_onnxruntime_over_pytorch']:.2f}); export {r['export_s']:.0f} s", flush=True)
    print()
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
