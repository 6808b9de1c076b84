"""Average the weights of checkpoints of one model and config into a new checkpoint ("model
soup", :func:`audiomask.models.checkpoint.average_checkpoints`). The output's metadata is the
first input's, plus ``averaged_from``; an existing output is never overwritten.

    python tools/average_checkpoints.py exp/stage8.safetensors \\
        exp/aec-s8A/last.safetensors exp/aec-s8C/last.safetensors      # egs/aec, stage 8

A checkpoint named k times among n weighs k/n (egs/aec stage 11: stage 10 three times, its two
fine-tunes once each, 3 : 1 : 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiomask.models.checkpoint import CheckpointError, average_checkpoints, read_metadata, save_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the averaged checkpoint to write (must not exist)")
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints of one model and config")
    args = p.parse_args(argv)
    if args.out.exists():
        print(f"error: {args.out} exists; not overwriting it", file=sys.stderr)
        return 2
    try:
        model = average_checkpoints(args.checkpoints)
        meta = read_metadata(args.checkpoints[0])
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta["averaged_from"] = ", ".join(str(c) for c in args.checkpoints)
    save_model(model, args.out, meta)
    print(f"{args.out}: the average of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
