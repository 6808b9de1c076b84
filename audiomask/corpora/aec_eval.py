"""Score an echo canceller on a prepared AEC manifest (``id, mic, far, near, echo``).

``audiomask evaluate`` scores separation models; an echo canceller takes two inputs and is
judged differently, per clip:

* clips with near-end speech (double talk, near-end single talk): ``si_sdr`` of the estimate
  against the near-end speech, ``si_sdri`` over the unprocessed microphone signal, and
  ``pesq_wb`` (wide-band PESQ, 16 kHz) when the ``pesq`` package is installed — the
  quantities the AEC literature reports for double talk;
* far-end single talk (the near-end file is silent): ``erle`` (dB), how much quieter the
  output is than the microphone signal (:func:`audiomask.metrics.erle`).

Writes ``OUT/per_utterance.csv`` (``id, scenario, si_sdr, si_sdri, erle[, pesq_wb]``; a metric
that does not apply to a clip is left empty) and prints the mean, median and 95 % confidence
interval of each metric (Student t, as :mod:`audiomask.evaluate`).

    python -m audiomask.corpora.aec_eval --model exp/d3net-aec/best.safetensors \\
        --data data/aec-challenge/test.csv --out exp/d3net-aec/eval_test
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from audiomask.audio import AudioError, read_audio
from audiomask.data.manifest import ManifestError
from audiomask.evaluate import METRIC_LABELS, _stats
from audiomask.fileio import atomic_target
from audiomask.metrics import erle, si_sdr

__all__ = ["evaluate_aec", "read_aec_manifest", "main"]
_log = logging.getLogger("audiomask.corpora.aec_eval")  # by name: under `python -m` __name__ is __main__

AEC_COLUMNS = ("mic", "far", "near", "echo")
SILENT_DB = -60.0  # near-end energy this far below the microphone's: far-end single talk


def read_aec_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of an AEC manifest with paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: AEC manifest not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("id", "mic", "far", "near") if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: column(s) {', '.join(missing)} missing; expected id,mic,far,near[,echo]")
        rows = [{"id": r["id"], **{c: path.parent / r[c] for c in AEC_COLUMNS if r.get(c)}} for r in reader]
    if not rows:
        raise ManifestError(f"{path}: no clips listed")
    return rows


def _pesq_fn(rate: int) -> Any:
    try:
        from pesq import pesq
    except ImportError:
        return None
    return pesq if rate in (8000, 16000) else None


@torch.no_grad()
def evaluate_aec(model: torch.nn.Module, manifest: str | os.PathLike, out_dir: str | os.PathLike,
                 progress: bool = True, compute_pesq: bool = True) -> dict[str, Any]:
    """Score ``model`` (``model(mic, far)`` → near-end estimate) on every clip of ``manifest``.
    Returns ``{"rows": [...], "stats": {metric: MetricStats}, "csv": path}``."""
    from tqdm import tqdm

    rate = int(model.sample_rate)
    pesq = _pesq_fn(rate) if compute_pesq else None
    metrics = ["si_sdr", "si_sdri", "erle"] + (["pesq_wb"] if pesq else [])
    rows = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for clip in tqdm(read_aec_manifest(manifest), desc="evaluating", unit="clip", disable=not progress):
            mic, far, near = (read_audio(clip[k], sample_rate=rate, channels=1, downmix=True)[0][0] for k in
                              ("mic", "far", "near"))
            if not mic.shape == far.shape == near.shape:
                raise AudioError(clip["far"], f"mic, far and near of clip {clip['id']} differ in length "
                                              f"({mic.shape[-1]}, {far.shape[-1]}, {near.shape[-1]} samples)")
            est = model(mic[None].to(device), far[None].to(device))[0].cpu().double()
            mic, near = mic.double(), near.double()
            row: dict[str, Any] = {"id": clip["id"], **{m: math.nan for m in metrics}}
            near_db = 10 * math.log10((near.square().sum() + 1e-20) / (mic.square().sum() + 1e-20))
            if near_db < SILENT_DB:
                row["scenario"] = "farend_single"
                row["erle"] = float(erle(mic, est))
            else:
                row["scenario"] = "nearend"
                row["si_sdr"] = float(si_sdr(est, near))
                row["si_sdri"] = row["si_sdr"] - float(si_sdr(mic, near))
                if pesq:
                    try:
                        row["pesq_wb"] = float(pesq(rate, near.numpy(), est.numpy(), "wb"))
                    except Exception:  # pesq refuses clips without speech; leave the cell empty
                        pass
            rows.append(row)
    finally:
        model.train(was_training)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "per_utterance.csv"
    with atomic_target(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "scenario", *metrics])
        for r in rows:
            writer.writerow([r["id"], r["scenario"], *("" if math.isnan(r[m]) else f"{r[m]:.4f}" for m in metrics)])
    return {"rows": rows, "stats": {m: _stats([r[m] for r in rows]) for m in metrics}, "csv": path,
            "sample_rate": rate, "pesq": pesq is not None}


def _table(result: dict[str, Any]) -> str:
    labels = {**METRIC_LABELS, "erle": "ERLE (dB)"}
    n_far = sum(r["scenario"] == "farend_single" for r in result["rows"])
    lines = [f"evaluated {len(result['rows'])} clips at {result['sample_rate']} Hz "
             f"({len(result['rows']) - n_far} with near-end speech, {n_far} far-end single talk)",
             f"{'metric':<14}{'n':>6}{'mean':>9}{'median':>9}   95% CI of the mean"]
    for name, s in result["stats"].items():
        ci = f"[{s.ci_low:.2f}, {s.ci_high:.2f}]" if math.isfinite(s.ci_low) else "n/a"
        mean = f"{s.mean:9.2f}" if s.n else f"{'—':>9}"
        median = f"{s.median:9.2f}" if s.n else f"{'—':>9}"
        lines.append(f"{labels.get(name, name):<14}{s.n:>6}{mean}{median}   {ci}")
    if not result["pesq"]:
        lines.append("PESQ: skipped (pip install 'audiomask[metrics]')")
    lines.append(f"per-clip scores: {result['csv']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiomask.corpora.aec_eval",
                                     description="Score an echo canceller on an AEC manifest (audiomask prepare "
                                                 "aec-challenge): near-end SI-SDR(i), PESQ, far-end single-talk ERLE.")
    parser.add_argument("--model", required=True, help="AEC checkpoint, bundled model or NAME:PRESET")
    parser.add_argument("--data", required=True, help="AEC manifest (id,mic,far,near,echo)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-pesq", action="store_true", help="skip PESQ even when installed")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from audiomask.cli.common import CLIError, load_model_arg, log_to_stderr
    from audiomask.echo_cancellation import check_aec_model

    log_to_stderr()  # the package's warnings and this command's error line
    try:
        model = load_model_arg(args.model, args.device)
        check_aec_model(model, args.model)
        result = evaluate_aec(model, args.data, args.out, progress=not args.quiet, compute_pesq=not args.no_pesq)
    except (CLIError, ManifestError, AudioError, ValueError) as e:
        _log.error("%s", e)
        return 2
    print(_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
