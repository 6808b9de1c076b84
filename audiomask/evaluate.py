"""Evaluate a separation model on fixed mixtures with reference sources.

For every mixture the model's estimates are matched to the references by PIT on SI-SDR
(exhaustive search up to 4 sources, Hungarian beyond), then these are computed, each the
mean over the sources:

* ``si_sdr``  — SI-SDR of the matched estimates (dB, zero-mean, :func:`audiomask.metrics.si_sdr`);
* ``si_sdri`` — ``si_sdr`` minus the SI-SDR of the unprocessed mixture against each reference;
* ``sdr``     — BSS-Eval v4 SDR (512-tap filter, :func:`audiomask.metrics.sdr`) of the same pairs;
* ``sdri``    — ``sdr`` minus the SDR of the mixture against each reference;
* ``pesq_nb`` / ``pesq_wb`` and ``stoi`` — only when the ``pesq`` and ``pystoi`` packages import
  (``pip install 'audiomask[metrics]'``): narrow-band PESQ for 8 kHz models, wide-band PESQ
  (at 16 kHz, resampled if needed) otherwise; STOI at the model's rate.

Everything is computed at the model's sample rate (the data are resampled to it), in float64.
Outputs in ``out_dir``: ``per_utterance.csv`` (written atomically) and ``si_sdri_hist.png``
(needs matplotlib, the ``plot`` extra). The summary table gives, per metric, the mean, the
median and a 95% confidence interval of the mean from Student's t distribution with
``n - 1`` degrees of freedom (``mean ± t₀.₉₇₅,ₙ₋₁ · s / √n``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from audiomask.audio import resample
from audiomask.fileio import atomic_write_bytes
from audiomask.metrics import pit, sdr, si_sdr

__all__ = ["evaluate", "score_mixture", "score_si_sdr", "EvaluationError", "EvaluationSummary", "MetricStats", "t_critical",
           "METRIC_LABELS"]

METRIC_LABELS = {
    "si_sdr": "SI-SDR (dB)",
    "si_sdri": "SI-SDRi (dB)",
    "sdr": "SDR (dB)",
    "sdri": "SDRi (dB)",
    "pesq_nb": "PESQ NB",
    "pesq_wb": "PESQ WB",
    "stoi": "STOI",
}
CSV_NAME = "per_utterance.csv"
PLOT_NAME = "si_sdri_hist.png"
CI_METHOD = "Student t (n-1 degrees of freedom)"


class EvaluationError(ValueError):
    """Model and data that cannot be evaluated together (one-line message)."""


@dataclass
class MetricStats:
    """Summary of one metric over utterances (NaN values, e.g. failed PESQ, are left out)."""

    n: int
    mean: float
    median: float
    ci_low: float  # 95% CI of the mean (Student t); NaN when n < 2
    ci_high: float
    std: float  # sample standard deviation (ddof=1); NaN when n < 2


@dataclass
class EvaluationSummary:
    """What :func:`evaluate` returns.

    ``rows``: one dict per utterance (``id`` and every metric). ``stats``: metric name →
    :class:`MetricStats`. ``notes``: lines about skipped parts (PESQ/STOI, the plot).
    """

    n_utterances: int
    n_src: int
    sample_rate: int
    metrics: list[str]
    rows: list[dict[str, Any]]
    stats: dict[str, MetricStats]
    csv_path: Path
    plot_path: Path | None
    pesq_stoi: bool
    ci_method: str = CI_METHOD
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The printed summary: one row per metric with mean, median and 95% CI of the mean."""
        lines = [f"evaluated {self.n_utterances} mixture{'s' * (self.n_utterances != 1)}, {self.n_src} sources, "
                 f"at {self.sample_rate} Hz (PIT on SI-SDR; improvements over the unprocessed mixture)"]
        head = f"{'metric':<14}{'mean':>9}{'median':>9}   95% CI of the mean"
        lines += [head, "-" * len(head)]
        for name in self.metrics:
            s = self.stats[name]
            ci = f"[{s.ci_low:.2f}, {s.ci_high:.2f}]" if math.isfinite(s.ci_low) else "n/a (needs 2+ values)"
            dropped = self.n_utterances - s.n
            extra = f"  ({dropped} failed)" if dropped else ""
            lines.append(f"{METRIC_LABELS.get(name, name):<14}{s.mean:>9.2f}{s.median:>9.2f}   {ci}{extra}")
        lines.append(f"95% CI: {self.ci_method}, mean ± t(0.975, n-1) · s/√n")
        lines += self.notes
        lines.append(f"per-utterance scores: {self.csv_path}")
        if self.plot_path is not None:
            lines.append(f"SI-SDRi histogram: {self.plot_path}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- #
# statistics
# --------------------------------------------------------------------------- #
def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided critical value ``t`` with ``P(|T_df| < t) = confidence`` (``df >= 1``), e.g.
    ``t_critical(2) = 4.3027``, ``t_critical(30) = 2.0423`` (``scipy.stats.t``)."""
    from scipy.stats import t as student_t

    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(student_t.ppf(0.5 + confidence / 2, int(df)))


def _stats(values: Sequence[float]) -> MetricStats:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return MetricStats(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean, median = float(x.mean()), float(np.median(x))
    if n < 2:
        return MetricStats(n, mean, median, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = t_critical(n - 1) * std / math.sqrt(n)
    return MetricStats(n, mean, median, mean - half, mean + half, std)


# --------------------------------------------------------------------------- #
# outputs
# --------------------------------------------------------------------------- #
def _write_csv(path: Path, rows: list[dict[str, Any]], metrics: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *metrics])
    for row in rows:
        writer.writerow([row["id"], *(f"{row[m]:.6f}" if math.isfinite(row[m]) else "nan" for m in metrics)])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _write_histogram(path: Path, values: Sequence[float], stats: MetricStats) -> str | None:
    """Save the SI-SDRi histogram (Agg, no pyplot state touched); returns a note when skipped."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return "SI-SDRi histogram: skipped, matplotlib is not installed (pip install 'audiomask[plot]')"
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(x, bins=min(30, max(5, int(math.ceil(math.sqrt(len(x)))))) if len(x) else 5,
            color="#4c72b0", edgecolor="white")
    if math.isfinite(stats.mean):
        ax.axvline(stats.mean, color="#c44e52", linestyle="--", label=f"mean {stats.mean:.2f} dB")
        ax.axvline(stats.median, color="#55a868", linestyle=":", label=f"median {stats.median:.2f} dB")
        ax.legend()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("SI-SDR improvement (dB)")
    ax.set_ylabel("mixtures")
    ax.set_title(f"SI-SDRi over {len(x)} mixture{'s' * (len(x) != 1)}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return None


# --------------------------------------------------------------------------- #
# PESQ / STOI
# --------------------------------------------------------------------------- #
def _pesq_stoi_modules() -> tuple[Any, Any] | str:
    """``(pesq_fn, stoi_fn)``, or the reason they are unavailable."""
    missing = []
    try:
        from pesq import pesq as pesq_fn
    except ImportError:
        pesq_fn, missing = None, missing + ["pesq"]
    try:
        from pystoi import stoi as stoi_fn
    except ImportError:
        stoi_fn, missing = None, missing + ["pystoi"]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install 'audiomask[metrics]')"
    return pesq_fn, stoi_fn


def _pesq_stoi(fns: tuple[Any, Any], est: torch.Tensor, ref: torch.Tensor, rate: int) -> tuple[float, float]:
    """Mean PESQ and STOI over matched sources (NaN where the package raises)."""
    pesq_fn, stoi_fn = fns
    if rate == 8000:
        p_rate, mode, p_est, p_ref = 8000, "nb", est, ref
    else:
        p_rate, mode = 16000, "wb"
        p_est, p_ref = resample(est, rate, 16000), resample(ref, rate, 16000)
    p_scores, s_scores = [], []
    for i in range(est.shape[0]):
        try:
            p_scores.append(float(pesq_fn(p_rate, p_ref[i].numpy(), p_est[i].numpy(), mode)))
        except Exception:  # pesq raises its own errors for silence / too short signals
            p_scores.append(math.nan)
        try:
            s_scores.append(float(stoi_fn(ref[i].numpy(), est[i].numpy(), rate, extended=False)))
        except Exception:
            s_scores.append(math.nan)
    return float(np.mean(p_scores)), float(np.mean(s_scores))


# --------------------------------------------------------------------------- #
# evaluation
# --------------------------------------------------------------------------- #
def _as_dataset(data: Any, sample_rate: int):
    from audiomask.data.manifest import MixtureDataset, MixtureEntry

    if isinstance(data, (str, os.PathLike)) or (isinstance(data, (list, tuple)) and data
                                                  and isinstance(data[0], MixtureEntry)):
        return MixtureDataset(data, sample_rate=sample_rate)
    if isinstance(data, MixtureDataset) and data.sample_rate != sample_rate:
        return data.with_sample_rate(sample_rate)
    return data  # any dataset of (mix [T], sources [n_src, T]) at the model's rate


def _source_name(dataset: Any, index: int, source: int) -> str:
    """The file of reference ``source`` of mixture ``index`` when the dataset knows it, else its id."""
    entries = getattr(dataset, "entries", None)
    try:
        return str(entries[index].sources[source])
    except (TypeError, IndexError, AttributeError):
        return dataset.utterance_id(index) if hasattr(dataset, "utterance_id") else str(index)


def score_mixture(est: torch.Tensor, sources: torch.Tensor, mix: torch.Tensor
                  ) -> tuple[dict[str, float], torch.Tensor]:
    """SI-SDR, SI-SDRi, SDR, SDRi (dB, means over sources) of ``est [n_src, T]`` against
    ``sources [n_src, T]`` after PIT on SI-SDR; the mixture ``[T]`` is the baseline.
    Returns ``(scores, est_matched)`` with ``est_matched[i]`` the estimate of source ``i``
    (float64)."""
    est64, ref64, mix64 = est.double(), sources.double(), mix.double()
    _, est_perm, si = pit(est64.unsqueeze(0), ref64.unsqueeze(0), metric="si_sdr")
    est_perm, si = est_perm[0], si[0]
    mix_b = mix64.expand_as(ref64)
    si_mix = si_sdr(mix_b, ref64)
    sd = sdr(est_perm, ref64)
    sd_mix = sdr(mix_b, ref64)
    scores = {"si_sdr": float(si.mean()), "si_sdri": float((si - si_mix).mean()),
              "sdr": float(sd.mean()), "sdri": float((sd - sd_mix).mean())}
    return scores, est_perm


def score_si_sdr(est: torch.Tensor, refs: torch.Tensor, mix: torch.Tensor, eps: float = 1e-8,
                 chunk: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """SI-SDR (dB) of ``est [n, T]`` against ``refs [n, T]`` after PIT, and of ``mix [T]`` against
    each reference: ``(matched [n], mixture [n])``, equal to :func:`score_mixture`'s SI-SDR terms
    (zero-mean, the same ``eps``).

    Memory-light for long recordings: only the signals' Gram matrix is formed, accumulated
    ``chunk`` samples at a time in float64 (no float64 copy of whole signals)."""
    n, length = refs.shape
    rows = [est, refs, mix[None]]
    gram = torch.zeros(2 * n + 1, 2 * n + 1, dtype=torch.float64)
    sums = torch.zeros(2 * n + 1, dtype=torch.float64)
    for start in range(0, length, chunk):
        y = torch.cat([r[:, start:start + chunk] for r in rows]).double()
        gram += y @ y.T
        sums += y.sum(-1)
    gram -= torch.outer(sums, sums) / length  # zero-mean signals
    ref_energy = gram.diagonal()[n:2 * n]

    def ratio(dot: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        target = torch.where(ref_energy > 0, dot * dot / ref_energy.clamp_min(1e-300), torch.zeros_like(dot))
        noise = (energy - target).clamp_min(0.0)
        return 10 * torch.log10((target + eps) / (noise + eps))

    pairwise = ratio(gram[:n, n:2 * n], gram.diagonal()[:n, None])  # [est i, ref j]
    _, _, matched = pit(est[None, :, :1], refs[None, :, :1], metric=lambda e, r: pairwise[None])
    return matched[0], ratio(gram[2 * n, n:2 * n], gram[2 * n, 2 * n])


def evaluate(model: torch.nn.Module, data: Any, out_dir: str | os.PathLike,
             compute_pesq_stoi: bool | str = "auto", progress: bool = True,
             print_summary: bool = True) -> EvaluationSummary:
    """Evaluate ``model`` on mixtures with references; write the CSV and histogram.

    Args:
        model: a separation model (``model.sample_rate``, ``model.n_src``; any device).
        data: manifest path (CSV/JSON), folder with ``mix/ s1/ s2/ …``, a
            :class:`~audiomask.data.MixtureDataset` (resampled to the model's rate if it is
            at another), or any dataset of ``(mix [T], sources [n_src, T])`` already at the
            model's rate (ids from ``utterance_id(i)`` when it has one, else the index).
        out_dir: created if missing; receives ``per_utterance.csv`` and ``si_sdri_hist.png``.
        compute_pesq_stoi: ``"auto"`` — when ``pesq`` and ``pystoi`` import, else skipped
            with a note; ``True`` — required (``ImportError`` when missing); ``False`` — never.
        progress: tqdm progress bar (stderr).
        print_summary: print :meth:`EvaluationSummary.table` to stdout.

    Raises:
        ManifestError / AudioError: bad data (one-line messages naming the file).
        EvaluationError: the data's source count differs from the model's, no mixtures, or a
            silent (all-zero) reference.
        AudioError: ``out_dir`` cannot be created or written (checked before any work).
    """
    from tqdm import tqdm

    if compute_pesq_stoi not in ("auto", True, False):
        raise ValueError(f"compute_pesq_stoi must be 'auto', True or False, got {compute_pesq_stoi!r}")
    from audiomask.outputs import check_output_folder

    out = check_output_folder(out_dir)  # a file in its place fails now, not after the whole run
    rate = int(model.sample_rate)
    dataset = _as_dataset(data, rate)
    n_items = len(dataset)
    if n_items == 0:
        raise EvaluationError("no mixtures to evaluate")
    n_src_data = getattr(dataset, "n_src", None)
    if n_src_data is not None and n_src_data != model.n_src:
        raise EvaluationError(f"the model separates {model.n_src} sources but the data has {n_src_data} "
                              "references per mixture")

    notes: list[str] = []
    fns = None
    if compute_pesq_stoi is False:
        notes.append("PESQ/STOI: skipped (turned off)")
    else:
        found = _pesq_stoi_modules()
        if isinstance(found, str):
            if compute_pesq_stoi is True:
                raise ImportError(f"PESQ/STOI requested but {found}")
            notes.append(f"PESQ/STOI: skipped, {found}")
        else:
            fns = found
    metrics = ["si_sdr", "si_sdri", "sdr", "sdri"]
    if fns is not None:
        metrics += ["pesq_nb" if rate == 8000 else "pesq_wb", "stoi"]

    from audiomask.separation import separate

    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        for i in tqdm(range(n_items), desc="evaluating", unit="mix", disable=not progress):
            mix, sources = dataset[i]
            uid = dataset.utterance_id(i) if hasattr(dataset, "utterance_id") else str(i)
            if sources.shape[0] != model.n_src:
                raise EvaluationError(f"{uid}: the model separates {model.n_src} sources but the mixture "
                                      f"has {sources.shape[0]} references")
            silent = [k for k in range(sources.shape[0]) if not bool(sources[k].any())]
            if silent:
                raise EvaluationError(f"{_source_name(dataset, i, silent[0])}: reference s{silent[0] + 1} is "
                                      "silent (all zeros); SI-SDR against it is undefined")
            est = separate(model, mix, rate)
            scores, est_perm = score_mixture(est, sources, mix)
            if fns is not None:
                p, s = _pesq_stoi(fns, est_perm.float(), sources.float(), rate)
                scores[metrics[4]], scores["stoi"] = p, s
            rows.append({"id": uid, **scores})
    finally:
        model.train(was_training)

    stats = {m: _stats([r[m] for r in rows]) for m in metrics}
    csv_path = out / CSV_NAME
    _write_csv(csv_path, rows, metrics)
    plot_path: Path | None = out / PLOT_NAME
    note = _write_histogram(plot_path, [r["si_sdri"] for r in rows], stats["si_sdri"])
    if note:
        notes.append(note)
        plot_path = None
    summary = EvaluationSummary(n_items, int(model.n_src), rate, metrics, rows, stats, csv_path, plot_path,
                                fns is not None, CI_METHOD, notes)
    if print_summary:
        print(summary.table(), flush=True)
    return summary
