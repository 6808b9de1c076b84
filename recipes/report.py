#!/usr/bin/env python3
"""Stage 4 of the recipes: one markdown results row from an evaluation folder.

Reads ``per_utterance.csv`` (written by ``audiomask evaluate`` or
:mod:`audiomask.corpora.aec_eval`), the preparation record ``prepare.json`` and the
checkpoint's metadata (training steps), prints the row and keeps it in a results file
(``RESULTS.md`` of the experiment folder): a row for the same experiment is replaced, so
re-running the stage does not duplicate it. Standard library only (it runs in a second,
without importing torch).

    python recipes/report.py --eval exp/wham/mossformer/eval_tt \\
        --prepare data/wham/prepare.json --checkpoint exp/wham/mossformer/best.safetensors \\
        --name mossformer --results exp/wham/RESULTS.md --command "./run.sh --root …"
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import struct
import sys
import tempfile
from pathlib import Path
from typing import Sequence

__all__ = ["results_row", "update_results", "main"]

SEPARATION_COLUMNS = ("si_sdri", "sdri", "pesq_nb", "pesq_wb", "stoi")
AEC_COLUMNS = ("si_sdri", "pesq_wb", "erle")
LABELS = {"si_sdri": "SI-SDRi (dB)", "sdri": "SDRi (dB)", "pesq_nb": "PESQ NB", "pesq_wb": "PESQ WB",
          "stoi": "STOI", "erle": "ERLE (dB)"}


def _means(csv_path: Path) -> tuple[dict[str, float], int]:
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    means = {}
    for column in (rows[0].keys() if rows else []):
        values = []
        for r in rows:
            try:
                v = float(r[column])
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                values.append(v)
        if values:
            means[column] = sum(values) / len(values)
    return means, len(rows)


def _steps(checkpoint: Path | None) -> str:
    """The ``steps`` metadata of a safetensors checkpoint (its header: 8-byte length, JSON)."""
    if checkpoint is None or not checkpoint.is_file():
        return ""
    try:
        with checkpoint.open("rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(size))
        return str(header.get("__metadata__", {}).get("steps", ""))
    except (OSError, ValueError, struct.error):  # an unreadable checkpoint only costs the steps cell
        return ""


def results_row(eval_dir: Path, prepare: dict, name: str, checkpoint: Path | None,
                command: str = "") -> tuple[str, str]:
    """``(header, row)``: markdown table lines for one evaluated experiment (the command that
    made it in the last cell)."""
    means, n = _means(eval_dir / "per_utterance.csv")
    columns = AEC_COLUMNS if prepare.get("kind") == "aec" else SEPARATION_COLUMNS
    shown = [c for c in columns if c in means]
    version = f"{prepare['sample_rate'] // 1000} kHz" + (f" {prepare['mode']}" if prepare.get("mode") else "")
    header = "| experiment | dataset | task | data | test | " + " | ".join(LABELS[c] for c in shown) + \
             " | examples | steps | command |"
    cells = [name, prepare["dataset"], prepare.get("task") or "", version, prepare.get("test", ""),
             *(f"{means[c]:.2f}" for c in shown), str(n), _steps(checkpoint),
             f"`{command.replace('|', chr(92) + '|')}`" if command else ""]
    return header, "| " + " | ".join(cells) + " |"


def update_results(path: Path, header: str, row: str) -> None:
    """Keep ``row`` in the markdown file ``path``, replacing the row of the same experiment
    and dataset (a new header starts a new table when the columns differ)."""
    key = row.split("|")[1:3]
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    lines = [ln for ln in lines if not (ln.startswith("|") and ln.split("|")[1:3] == key)]
    if header not in lines:
        lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    at = lines.index(header) + 2
    lines.insert(at, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines).strip("\n") + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recipes/report.py",
                                     description="Markdown results row of an evaluated recipe experiment.")
    parser.add_argument("--eval", required=True, type=Path, help="evaluation folder (per_utterance.csv)")
    parser.add_argument("--prepare", required=True, type=Path, help="prepare.json of the data")
    parser.add_argument("--name", required=True, help="experiment name (model and tag)")
    parser.add_argument("--checkpoint", type=Path, help="the evaluated checkpoint (for its step count)")
    parser.add_argument("--results", type=Path, help="markdown file keeping the rows")
    parser.add_argument("--command", default="", help="the command that produced it (the row's last cell)")
    args = parser.parse_args(argv)
    csv_path = args.eval / "per_utterance.csv"
    if not csv_path.is_file() or not args.prepare.is_file():
        missing = csv_path if not csv_path.is_file() else args.prepare
        print(f"audiomask: error: {missing}: not found (run the evaluate stage first)", file=sys.stderr)
        return 2
    header, row = results_row(args.eval, json.loads(args.prepare.read_text()), args.name, args.checkpoint,
                              args.command)
    print(header)
    print(row)
    if args.results:
        update_results(args.results, header, row)
        print(f"results: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
