"""Streaming benchmark: the targets of the streaming issue, measured in one run.

1. Stateful streaming of causal Conv-TasNet "paper-causal" at 8 kHz, 10 ms blocks: real-time
   factor, p99 block time, and compute per block against the naive method (re-running the
   model over the receptive field + block for every block, as frame-wise toolkits do).
2. Chunked inference of "paper" on a long 8 kHz mixture, and of an STFT model (TIGER small)
   on 10 minutes at 16 kHz: peak RSS (child process).
3. Chunked vs full-signal SI-SDR on 30 s real mixtures, and speaker swaps on a 60 s mixture
   where two speakers take turns (needs a trained model: the bundled default).

    python bench/streaming.py                      # all, ~25 min on 2 cores
    python bench/streaming.py --long-minutes 10    # shorter memory run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import audiomask
from audiomask.metrics import pit
from audiomask.streaming import separate_chunked, simulate

ROOT = Path(__file__).resolve().parents[1]
LIBRI = ROOT.parent / "shared" / "data" / "librispeech-mini"


def stateful_vs_naive(threads: int, seconds: float, naive_blocks: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", "paper-causal").eval()
    block = model.sample_rate // 100
    x = torch.randn(int(seconds * model.sample_rate)) * 0.3
    _, report = simulate(model, x, block, threads=threads)
    # naive: every block re-runs the receptive field that precedes it
    context = model.receptive_field
    times = []
    with torch.inference_mode():
        for k in range(naive_blocks):
            end = context + (k + 1) * block
            seg = x[max(0, end - context - block) : end] if end <= len(x) else x[-(context + block):]
            t0 = time.perf_counter()
            model(seg[None])[..., -block:]
            times.append(1000 * (time.perf_counter() - t0))
    naive_ms = float(np.mean(times))
    return {"threads": threads, "block_ms": 10, "rtf": report.real_time_factor,
            "mean_block_ms": report.mean_block_ms, "p99_block_ms": report.p99_block_ms,
            "deadline_misses": report.deadline_misses, "blocks": report.blocks,
            "naive_block_ms": naive_ms, "naive_over_stateful": naive_ms / report.mean_block_ms,
            "algorithmic_latency_ms": report.algorithmic_latency_ms}


def chunked_peak_rss(minutes: float, threads: int, model: str = "convtasnet", preset: str = "paper") -> dict:
    """Peak RSS of a child process that separates ``minutes`` of noise at the model's rate
    with ``model``/``preset`` through chunked inference."""
    code = f"""
import resource, time, torch, audiomask
from audiomask.streaming import separate_chunked
audiomask.tune_allocator()
torch.set_num_threads({threads})
model = audiomask.build({model!r}, {preset!r}).eval()
x = torch.randn(int({minutes} * 60 * model.sample_rate)) * 0.1
t0 = time.perf_counter()
y = separate_chunked(model, x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return {"model": f"{model}/{preset}", "minutes": minutes, "peak_rss_mb": float(out[0]),
            "wall_s": float(out[1]), "rtf": float(out[1]) / (minutes * 60)}


def chunked_quality(model_name: str) -> dict:
    model = audiomask.load(model_name)
    torch.set_num_threads(2)
    from audiomask.data import find_audio, split_by_speaker
    from audiomask.audio import read_audio

    _, valid = split_by_speaker(find_audio(LIBRI), 25, seed=0)
    voices = [read_audio(f, 8000, 1)[0][0] for f in valid]
    rng = np.random.default_rng(0)
    gaps = []
    for trial in range(3):  # 30 s mixtures: utterances of two speakers concatenated
        a, b = rng.choice(len(voices), 2, replace=False)
        s1, s2 = (voices[i].repeat(30 * 8000 // len(voices[i]) + 1)[: 30 * 8000] for i in (a, b))
        src = torch.stack([s1, s2])
        mix = src.sum(0)
        with torch.inference_mode():
            full = pit(model(mix[None]), src[None])[2].mean().item()
        chunked = pit(separate_chunked(model, mix)[None], src[None])[2].mean().item()
        gaps.append(full - chunked)
    # 60 s of turn-taking: A speaks 4 s, then B 4 s, … with 1 s of overlap at each turn
    a, b = 0, 1
    turn, over = 4 * 8000, 8000
    s1, s2 = torch.zeros(60 * 8000), torch.zeros(60 * 8000)
    pos, who = 0, 0
    while pos < 60 * 8000:
        voice = voices[(a, b)[who]]
        piece = voice[rng.integers(0, len(voice) - turn - over) :][: turn + over]
        end = min(pos + len(piece), 60 * 8000)
        (s1, s2)[who][pos:end] += piece[: end - pos]
        pos += turn
        who = 1 - who
    src = torch.stack([s1, s2])
    mix = src.sum(0)
    chunked = separate_chunked(model, mix)
    with torch.inference_mode():
        full = model(mix[None])[0]
    segments = [slice(start + over, start + turn) for start in range(0, 60 * 8000, turn)]
    talkers = [0 if s1[seg].abs().sum() > s2[seg].abs().sum() else 1 for seg in segments]
    loud = [int(full[:, seg].pow(2).sum(-1).argmax()) for seg in segments]

    def channel_changes(est: torch.Tensor, ref: torch.Tensor, ref_index: list[int]) -> int:
        """Turns after which the channel of ``est`` carrying a signal of ``ref`` changes
        (in turn ``k`` the signal ``ref[ref_index[k]]``)."""
        last: dict[int, int] = {}
        changes = 0
        for k, seg in enumerate(segments):
            r = ref_index[k]
            corr = [abs(float(torch.dot(est[c, seg], ref[r, seg]))) for c in range(2)]
            ch = int(np.argmax(corr))
            changes += int(r in last and last[r] != ch)
            last[r] = ch
        return changes

    # swaps the chunking introduces: the chunked output against the full-signal output (the
    # chunked channel that carries each full-pass channel must never change); and, for context,
    # channel changes of each talker in either output (a model may also swap by itself, in
    # one pass, when a talker stops and restarts)
    return {"si_sdr_gap_db_max": max(gaps), "si_sdr_gap_db": gaps,
            "turn_taking_swaps": channel_changes(chunked, full, loud),
            "talker_channel_changes_chunked": channel_changes(chunked, src, talkers),
            "talker_channel_changes_full": channel_changes(full, src, talkers)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0, help="audio streamed in test 1")
    p.add_argument("--naive-blocks", type=int, default=30)
    p.add_argument("--long-minutes", type=float, default=60.0, help="length of the memory run (0: skip)")
    p.add_argument("--stft-minutes", type=float, default=10.0,
                   help="length of the STFT-model (TIGER small, 16 kHz) memory run (0: skip)")
    p.add_argument("--model", default="convtasnet-mini2mix", help="trained model for test 3")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    results = {"stateful": stateful_vs_naive(args.threads, args.seconds, args.naive_blocks)}
    s = results["stateful"]
    print(f"1. paper-causal, 10 ms blocks, {args.threads} threads: RTF {s['rtf']:.3f} (target <= 0.3), "
          f"p99 {s['p99_block_ms']:.2f} ms (<= 10), misses {s['deadline_misses']}/{s['blocks']}; "
          f"naive {s['naive_block_ms']:.1f} ms/block = {s['naive_over_stateful']:.1f}x stateful (>= 20x); "
          f"algorithmic latency {s['algorithmic_latency_ms']:.1f} ms")
    if args.long_minutes:
        results["chunked_memory"] = c = chunked_peak_rss(args.long_minutes, args.threads)
        print(f"2. paper, chunked, {c['minutes']:g} min at 8 kHz: peak RSS {c['peak_rss_mb']:.0f} MB "
              f"(target <= 1536), RTF {c['rtf']:.3f}")
    if args.stft_minutes:
        results["chunked_memory_stft"] = c = chunked_peak_rss(args.stft_minutes, args.threads, "tiger", "small")
        print(f"2b. TIGER small (STFT), chunked, {c['minutes']:g} min at 16 kHz: peak RSS {c['peak_rss_mb']:.0f} MB "
              f"(target <= 4096), RTF {c['rtf']:.3f}")
    results["chunked_quality"] = q = chunked_quality(args.model)
    print(f"3. {args.model}: full minus chunked SI-SDR on 30 s mixtures {', '.join(f'{g:.2f}' for g in q['si_sdr_gap_db'])} dB "
          f"(target <= 0.5); speaker swaps introduced by chunking on 60 s of turn-taking: "
          f"{q['turn_taking_swaps']} (target 0); talker channel changes chunked/full pass: "
          f"{q['talker_channel_changes_chunked']}/{q['talker_channel_changes_full']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
