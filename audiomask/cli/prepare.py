"""The ``audiomask prepare`` subcommand: its arguments, help text and run function.

Kept here (not in :mod:`audiomask.cli`) so that the corpus list, layouts and generation links
live next to the preparers they describe; :mod:`audiomask.cli` only registers it.
"""

from __future__ import annotations

import argparse
import logging

from audiomask.corpora import PREPARERS, prepare
from audiomask.corpora.common import PrepareError

_log = logging.getLogger(__name__)


def _epilog() -> str:
    lines = ["corpora (ROOT is your copy; nothing is downloaded or generated):"]
    for name, p in PREPARERS.items():
        lines.append(f"  {name:<14} {p.title}")
        lines.append(f"  {'':<14}   layout: {p.layout}")
        rates = "/".join(f"{r // 1000}k" for r in p.rates)
        modes = f"; --mode {'|'.join(p.modes)}" if p.modes else ""
        lines.append(f"  {'':<14}   --sample-rate {rates}{modes}")
        for t, d in p.tasks.items():
            lines.append(f"  {'':<14}   --task {t}: {d}{'  (default)' if t == p.default_task else ''}")
        if p.train_splits:
            lines.append(f"  {'':<14}   --train-split {'|'.join(p.train_splits)} (default {p.default_train_split})")
    lines += ["", "writes OUT/<split>.csv (id,mix,s1,s2[,s3][,noise]; AEC: id,mic,far,near,echo; paths relative",
              "to OUT) and OUT/prepare.json (which split is train/valid/test, counts, hours, warnings).",
              "", "examples:",
              "  audiomask prepare wsj0-2mix /corpora/wsj0-mix/2speakers --out data/wsj0-2mix",
              "  audiomask prepare libri2mix /corpora/Libri2Mix --out data/libri2mix --sample-rate 16000 \\",
              "      --task sep_noisy",
              "  audiomask prepare whamr /corpora/whamr --out data/whamr --task sep_reverb_noisy",
              "  audiomask prepare aec-challenge AEC-Challenge/datasets/synthetic --out data/aec"]
    return "\n".join(lines)


def add_prepare_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``prepare`` on the ``audiomask`` subparsers; sets ``func=run_prepare``."""
    p = sub.add_parser("prepare", help="validate a benchmark corpus copy and write its manifests",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Scan your copy of a benchmark corpus, check it (every mixture has all its "
                                   "targets, no stray files,\nreadable mono files at the expected sample rate, "
                                   "equal lengths, the metadata agree) and write one\nmanifest per split for "
                                   "`audiomask train` / `audiomask evaluate`. Problems are reported in one line\n"
                                   "naming the files and their count. File headers are read, not the audio, "
                                   "so large corpora take\nseconds to minutes.",
                       epilog=_epilog())
    p.add_argument("dataset", choices=list(PREPARERS), metavar="DATASET", help=", ".join(PREPARERS))
    p.add_argument("root", metavar="ROOT", help="your copy of the corpus (its folder, or the folder holding it)")
    p.add_argument("--out", required=True, help="output folder for the manifests and prepare.json")
    p.add_argument("--sample-rate", type=int, choices=[8000, 16000], help="which rate folder to use "
                   "(default: 8000; 16000 for echoset and aec-challenge)")
    p.add_argument("--mode", choices=["min", "max"], help="mixture length version (default: min; "
                   "not for echoset and aec-challenge)")
    p.add_argument("--task", help="which mixtures and targets (default: the corpus' benchmark task; see below)")
    p.add_argument("--train-split", help="LibriMix training split: train-100 (default) or train-360")
    p.add_argument("--jobs", type=int, default=8, help="threads reading file headers (default: 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_prepare)
    return p


def run_prepare(args: argparse.Namespace) -> int:
    """Run ``audiomask prepare``; problems become ``audiomask: error: …`` and exit code 2."""
    from audiomask.cli.common import CLIError

    try:
        result = prepare(args.dataset, args.root, args.out, sample_rate=args.sample_rate, mode=args.mode,
                         task=args.task, train_split=args.train_split, jobs=args.jobs, progress=not args.quiet)
    except PrepareError as e:
        raise CLIError(str(e)) from None
    for warning in result.warnings:
        _log.warning("%s", warning)
    print(result.table())
    return 0
