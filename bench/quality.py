"""Separation quality of a model on fixed validation sets of unseen speakers.

Every set is built from the 25 speakers that ``audiomask train`` holds out for validation
(``split_by_speaker(..., 25, seed=0)``, as in ``egs/mini2mix/conf*.yaml``; never seen in
training) with seeds of its own (not the training validation seed), so it is the same on
every machine:

* ``clean-8k`` — ``--mixtures`` dry two-speaker mixtures of ``--seconds`` s at 8 kHz
  (:class:`audiomask.data.DynamicMixingDataset`, levels within ±2.5 dB);
* ``clean-16k`` — the same construction at 16 kHz;
* ``noisy-reverb-16k`` — reverberant speakers plus real noise at 16 kHz: one image-source
  room per mixture (pyroomacoustics, the ranges of :class:`audiomask.data.RoomSimulator`, drawn
  with this bench's seed) and a crop of the **held-out part** of a recording in
  ``shared/data/noise`` (its last quarter, :data:`NOISE_VALID_FRACTION`) at −5…+15 dB SNR; the
  references are the reverberant sources (WHAMR! convention);
* ``noisy-reverb-8k`` — the same construction at 8 kHz (telephone-band input), its own seed;
* ``turn-taking-16k`` — ``--conversations`` recordings of ``--conversation-s`` s (default 3 min)
  in which two speakers take turns with pauses and some overlap
  (:class:`audiomask.data.conversation.ConversationDataset`), separated as
  ``audiomask separate`` does (chunked above 30 s).

Each mixture is separated by :func:`audiomask.separate` at the set's rate (a model at another
rate resamples there and back, as the CLI does) and scored at the set's rate by
:func:`audiomask.evaluate.score_mixture` (SI-SDRi and SDRi, PIT over the whole mixture) and,
when ``pesq`` and ``pystoi`` import, PESQ (narrow-band at 8 kHz, wide-band at 16 kHz) and
STOI. The table gives mean, median and the 95% CI of the mean (Student t, as
``audiomask evaluate``).

    python bench/quality.py convtasnet-mini2mix convtasnet-mini2mix-causal \\
        --json bench/results/quality.json --markdown bench/results/quality.md
    python bench/quality.py exp/run/best.safetensors --quick     # a few small mixtures
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiomask.audio import read_audio, write_audio  # noqa: E402
from audiomask.data import DynamicMixingDataset, find_audio, split_by_speaker  # noqa: E402
from audiomask.data.conversation import ConversationDataset  # noqa: E402
from audiomask.evaluate import _pesq_stoi, _pesq_stoi_modules, _stats, score_mixture  # noqa: E402
from audiomask.separation import ShiftAveraged, separate  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
VALID_SPEAKERS, SPLIT_SEED = 25, 0  # as egs/mini2mix/conf*.yaml and audiomask train
NOISE_VALID_FRACTION = 0.25  # the last quarter of each noise recording is held out
SNR_DB = (-5.0, 15.0)
SEEDS = {"clean-8k": 20_008, "clean-16k": 20_016, "noisy-reverb-16k": 20_116, "turn-taking-16k": 20_216,
         "noisy-reverb-8k": 20_108}
CONDITIONS = tuple(SEEDS)
METRICS = ("si_sdri", "sdri", "pesq", "stoi")


def held_out_noise(noise_dir: Path, dest: Path) -> list[Path]:
    """Write the held-out tail (:data:`NOISE_VALID_FRACTION`) of every recording in
    ``noise_dir`` to ``dest``; returns the files."""
    out = []
    for f in find_audio(noise_dir):
        wav, rate = read_audio(f, downmix=True)
        start = int(round(wav.shape[-1] * (1 - NOISE_VALID_FRACTION)))
        out.append(write_audio(dest / f.name, wav[:, start:], rate, subtype="FLOAT"))
    return out


def build_set(condition: str, valid_files: list[Path], n: int, seconds: float, workdir: Path,
              conversation_s: float):
    """The dataset of ``condition`` (items ``(mix, sources)``) and its sample rate."""
    seed = SEEDS[condition]
    if condition == "clean-8k":
        return DynamicMixingDataset(valid_files, 8000, seconds, length=n, seed=seed), 8000
    if condition == "clean-16k":
        return DynamicMixingDataset(valid_files, 16000, seconds, length=n, seed=seed), 16000
    if condition.startswith("noisy-reverb-"):
        rate = 16000 if condition.endswith("16k") else 8000
        noise = held_out_noise(DATA / "noise", workdir)
        return DynamicMixingDataset(valid_files, rate, seconds, length=n, seed=seed, noise_files=noise,
                                    snr_db=SNR_DB, simulate_rooms=True, reverberant_target=True), rate
    if condition == "turn-taking-16k":
        return ConversationDataset(valid_files, 16000, duration=conversation_s, length=n, seed=seed), 16000
    raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")


def evaluate_set(model: torch.nn.Module, dataset, rate: int, pesq_stoi) -> dict[str, Any]:
    """Scores of every mixture and their summary (mean, median, 95% CI of the mean)."""
    rows = []
    for i in range(len(dataset)):
        mix, sources = dataset[i]
        est = separate(model, mix, rate)
        scores, matched = score_mixture(est, sources, mix)
        if pesq_stoi is not None:
            scores["pesq"], scores["stoi"] = _pesq_stoi(pesq_stoi, matched.float(), sources.float(), rate)
        rows.append(scores)
    summary = {}
    for m in METRICS:
        if m in rows[0]:
            s = _stats([r[m] for r in rows])
            summary[m] = {"mean": s.mean, "median": s.median, "ci95": [s.ci_low, s.ci_high], "n": s.n}
    return {"per_mixture": rows, "summary": summary}


def markdown(results: dict[str, Any]) -> str:
    """One table per model: a row per condition, mean / median / 95% CI per metric."""
    lines = []
    for model, conds in results["models"].items():
        lines += [f"### `{model}`", "",
                  "| condition | n | SI-SDRi mean | median | 95% CI | SDRi mean | median | 95% CI | PESQ | STOI |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for cond, r in conds.items():
            s = r["summary"]
            cells = [cond, str(s["si_sdri"]["n"])]
            for m in ("si_sdri", "sdri"):
                lo, hi = s[m]["ci95"]
                ci = f"[{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else "—"
                cells += [f"{s[m]['mean']:.2f}", f"{s[m]['median']:.2f}", ci]
            cells += [f"{s[m]['mean']:.2f}" if m in s else "—" for m in ("pesq", "stoi")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="bundled name, checkpoint file or NAME:PRESET")
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--mixtures", type=int, default=50, help="mixtures per short condition (default 50)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of a short mixture (default 4 s)")
    p.add_argument("--conversations", type=int, default=3, help="turn-taking recordings (default 3)")
    p.add_argument("--conversation-s", type=float, default=180.0, help="their length (default 180 s)")
    p.add_argument("--quick", action="store_true",
                   help="3 mixtures of 2 s per condition and one 40 s conversation (smoke test)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--shifts", type=int, default=1,
                   help="test-time shift averaging: separate N shifted copies of each input and "
                        "average (audiomask.separation.ShiftAveraged; default 1: off)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--markdown", type=Path, help="write the tables here")
    args = p.parse_args(argv)
    if args.quick:
        args.mixtures, args.seconds, args.conversations, args.conversation_s = 3, 2.0, 1, 40.0
    if args.threads:
        torch.set_num_threads(args.threads)

    from audiomask.cli import load_model_arg

    _, valid_files = split_by_speaker(find_audio(DATA / "librispeech-mini"), VALID_SPEAKERS, seed=SPLIT_SEED)
    found = _pesq_stoi_modules()
    pesq_stoi = None if isinstance(found, str) else found
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "date": time.strftime("%Y-%m-%d"),
        "sets": {"speakers": f"{VALID_SPEAKERS} held-out speakers (split_by_speaker seed {SPLIT_SEED})",
                 "mixtures": args.mixtures, "seconds": args.seconds, "conversations": args.conversations,
                 "conversation_s": args.conversation_s, "seeds": SEEDS, "snr_db": SNR_DB,
                 "noise": f"last {NOISE_VALID_FRACTION:.0%} of each shared/data/noise recording"},
        "pesq_stoi": "computed" if pesq_stoi else f"skipped: {found}",
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for cond in args.conditions:
            long = cond.startswith("turn-taking")
            sets[cond] = build_set(cond, valid_files, args.conversations if long else args.mixtures,
                                   args.seconds, Path(tmp), args.conversation_s)
        for spec in args.models:
            model = load_model_arg(spec).eval()
            if getattr(model, "task", "separation") != "separation":
                print(f"{spec}: not a separation model, skipped", file=sys.stderr)
                continue
            if args.shifts != 1:
                model = ShiftAveraged(model, args.shifts)
                spec = f"{spec} (shifts={args.shifts})"
            results["models"][spec] = {}
            for cond, (dataset, rate) in sets.items():
                t0 = time.perf_counter()
                r = evaluate_set(model, dataset, rate, pesq_stoi)
                r["seconds"] = round(time.perf_counter() - t0, 1)
                results["models"][spec][cond] = r
                s = r["summary"]["si_sdri"]
                print(f"{spec:<28} {cond:<18} SI-SDRi {s['mean']:6.2f} dB (median {s['median']:.2f}, "
                      f"n={s['n']})  SDRi {r['summary']['sdri']['mean']:6.2f} dB  [{r['seconds']:.0f} s]",
                      flush=True)
    table = markdown(results)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    return results


if __name__ == "__main__":
    main()
