"""Separation of waveforms and files with any audiomask model: :func:`separate` for tensors,
:func:`separate_file` for files, lists and folders (the one-liner), :func:`separate_planned`
behind ``audiomask separate``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from audiomask.audio import AudioError, check_waveform, read_audio, resample
from audiomask.outputs import (DEFAULT_FORMAT, OUTPUT_FORMATS, OutputPlan, expand_inputs, limit_peak,
                               match_mixture_level, plan_separation, write_outputs)

#: the model ``separate_file`` and ``audiomask separate`` use when none is named
#: the bundled model ``separate`` uses unless told otherwise: 16 kHz, trained on noisy and
#: reverberant mixtures (``egs/robust16k``); other rates are resampled to 16 kHz and back
DEFAULT_MODEL = "convtasnet-robust16k"


CHUNK_MODES = ("auto", "always", "never")
CHUNK_ABOVE_S = 30.0  # "auto" chunks inputs longer than this


class ShiftAveraged(torch.nn.Module):
    """A separator run on ``shifts`` copies of its input delayed by offsets spread evenly over one
    encoder hop (0, hop/shifts, …), each estimate advanced back, its sources put in the order of
    the estimates before it (:func:`audiomask.streaming.chunked.align_sources`) and averaged:
    test-time shift averaging, ``shifts`` × the compute. A strided encoder is not shift-invariant,
    so the copies differ and their mean is a better estimate (``bench/quality.py --shifts``).

    ``model(mix [B, T]) → [B, n_src, T]`` as the wrapped model; other attributes (sample rate,
    number of sources, …) are the wrapped model's. Offline only: it has no ``step``.
    """

    def __init__(self, model: torch.nn.Module, shifts: int) -> None:
        super().__init__()
        if not isinstance(shifts, int) or shifts < 1:
            raise ValueError(f"shifts must be an integer >= 1, got {shifts!r}")
        hop = model.encoder.hop
        if shifts > hop:
            raise ValueError(f"shifts ({shifts}) must be at most the encoder hop ({hop} samples)")
        self.model = model
        self.offsets = [round(i * hop / shifts) for i in range(shifts)]

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def step(self, *args, **kwargs):
        raise NotImplementedError("shift averaging is offline only; stream the model itself")

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        from audiomask.streaming.chunked import align_sources

        length = mix.shape[-1]
        total = None  # [B, n_src, T]: the sum of the aligned estimates so far
        for offset in self.offsets:
            est = self.model(torch.nn.functional.pad(mix, (offset, 0)))[..., offset:offset + length]
            batched = est if est.dim() == 3 else est.unsqueeze(0)
            total = batched if total is None else total + align_sources(batched, total)
        out = total / len(self.offsets)
        return out if mix.dim() == 2 else out[0]


@torch.inference_mode()
def separate(model: torch.nn.Module, mix: torch.Tensor, sample_rate: int | None = None,
             chunk: str = "auto", progress: bool = False, shifts: int = 1) -> torch.Tensor:
    """Separate a mono mixture ``[T]`` or ``[batch, T]`` recorded at ``sample_rate``.

    The mixture is resampled to ``model.sample_rate`` when the rates differ and the
    estimates are resampled back, so the output has the input's rate and length:
    ``[n_src, T]`` / ``[batch, n_src, T]``. NaN/Inf or empty input raises ``AudioError``.

    ``chunk``: ``"auto"`` runs inputs longer than 30 s window by window
    (:func:`audiomask.streaming.separate_chunked`: memory bounded by the window, sources
    aligned across windows), ``"always"`` / ``"never"`` force it either way.

    ``shifts`` > 1 averages the estimates of that many shifted copies of the input
    (:class:`ShiftAveraged`; ``shifts`` × the compute).
    """
    from audiomask.streaming.chunked import DEFAULT_WINDOW_S, separate_chunked

    if chunk not in CHUNK_MODES:
        raise ValueError(f"chunk must be one of {CHUNK_MODES}, got {chunk!r}")
    check_waveform(mix, "mixture")
    rate = sample_rate or model.sample_rate
    length = mix.shape[-1]
    device = next(model.parameters()).device
    if shifts != 1:
        model = ShiftAveraged(model, shifts)
    x = resample(mix, rate, model.sample_rate) if rate != model.sample_rate else mix
    seconds = x.shape[-1] / model.sample_rate
    if chunk == "always" or (chunk == "auto" and seconds > max(CHUNK_ABOVE_S, DEFAULT_WINDOW_S)):
        est = separate_chunked(model, x, progress=progress)
    else:
        est = model(x.to(device)).cpu()
    return back_to_rate(est, model.sample_rate, rate, length)


def back_to_rate(est: torch.Tensor, model_rate: int, rate: int, length: int) -> torch.Tensor:
    """Estimates at the model's rate → ``[..., length]`` at the input's ``rate``."""
    if rate == model_rate:
        return est
    est = resample(est, model_rate, rate)
    return est[..., :length] if est.shape[-1] >= length else torch.nn.functional.pad(est, (0, length - est.shape[-1]))


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike, n_src: int, ext: str = ".wav") -> list[Path]:
    """Where the sources of ``path`` go: ``OUT/<stem>_s1.wav``, ``OUT/<stem>_s2.wav``, …"""
    stem = Path(path).stem
    return [Path(out_dir) / f"{stem}_s{i + 1}{ext}" for i in range(n_src)]


@dataclass
class SeparatedFile:
    """One separated input: its path, the files written (none when kept in memory), and the
    signals at the input's ``sample_rate``: ``mixture [T]`` and ``estimates [n_src, T]`` at the
    mixture's level (:func:`audiomask.outputs.match_mixture_level`), and the factor the written
    files were scaled down by to stay under full scale (``peak_scale``, 1.0 when they were not).
    ``model_estimates``: the model's output at its own rate, before resampling and scaling (what
    :mod:`audiomask.evaluate` scores)."""

    input: Path
    paths: list[Path]
    mixture: torch.Tensor
    estimates: torch.Tensor
    sample_rate: int
    model_estimates: torch.Tensor
    peak_scale: float = 1.0


def separate_one(model: torch.nn.Module, path: str | os.PathLike, downmix: bool = False, chunk: str = "auto",
                 progress: bool = False) -> SeparatedFile:
    """Read and separate one file (nothing written); estimates at the mixture's level."""
    model_rate = model.sample_rate
    wav, rate = read_audio(path, channels=1, downmix=downmix)
    at_model_rate = separate(model, resample(wav[0], rate, model_rate), model_rate, chunk=chunk, progress=progress)
    est = back_to_rate(at_model_rate, model_rate, rate, wav.shape[-1])
    est, _ = match_mixture_level(est, wav[0])
    return SeparatedFile(Path(path), [], wav[0], est, rate, at_model_rate)


def separate_planned(model: torch.nn.Module, plans: Sequence[OutputPlan], subtype: str = "FLOAT",
                     downmix: bool = False, chunk: str = "auto", progress: bool = False
                     ) -> Iterator[SeparatedFile | AudioError]:
    """Separate each planned input (:func:`audiomask.outputs.plan_separation`) and write its
    sources (all or none per input); yields its :class:`SeparatedFile`, or the
    :class:`AudioError` that stopped it, input by input, so one bad input never stops the others.

    ``progress``: one bar on stderr — over files when there are several, else over the
    windows of a chunked input."""
    from tqdm import tqdm

    many = len(plans) > 1
    for plan in tqdm(plans, desc="separating", unit="file", disable=not progress or not many):
        try:
            result = separate_one(model, plan.input, downmix, chunk, progress and not many)
            limited, result.peak_scale = limit_peak(result.estimates)
            result.paths = write_outputs(plan.targets, limited, result.sample_rate, subtype)
        except AudioError as e:
            yield e
            continue
        yield result


def separate_file(source: str | os.PathLike | Sequence[str | os.PathLike], model: str | torch.nn.Module = DEFAULT_MODEL,
                  out: str | os.PathLike | None = None, *, overwrite: bool = False, downmix: bool = False,
                  chunk: str = "auto", format: str = DEFAULT_FORMAT, device: str | None = None,
                  shifts: int = 1):
    """Separate a file, a list of files or a folder (its audio files, sorted).

    ``model``: a model, a bundled model name or a checkpoint path. With ``out=None`` nothing
    is written: one file gives its estimates ``[n_src, T]`` at the file's sample rate and at
    the mixture's level, a list or a folder gives a list of them, in order. With ``out`` (a
    folder, created if missing) the sources are written there as ``<stem>_s1.wav`` … in
    ``format`` (:data:`audiomask.outputs.OUTPUT_FORMATS`) and the paths written are returned
    (a list per input for a list or a folder). Outputs never overwrite an input or (unless
    ``overwrite``) an existing file: such a problem raises :class:`AudioError` before any work.
    ``shifts`` > 1: test-time shift averaging (:class:`ShiftAveraged`), as in :func:`separate`.
    """
    from audiomask.models.checkpoint import load_model

    if format not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {sorted(OUTPUT_FORMATS)}, got {format!r}")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, device=device or "cpu")
    elif device is not None:
        model = model.to(device)
    model.eval()
    if shifts != 1:
        model = ShiftAveraged(model, shifts)
    single = isinstance(source, (str, os.PathLike)) and not Path(source).is_dir()
    paths, errors, _ = expand_inputs([source] if isinstance(source, (str, os.PathLike)) else source)
    if errors:
        raise AudioError(None, errors[0])
    if out is None:
        results = [separate_one(model, p, downmix, chunk).estimates for p in paths]
    else:
        plans, errors = plan_separation(paths, out, model.n_src, overwrite)
        if errors:
            raise AudioError(None, errors[0])
        results = []
        for result in separate_planned(model, plans, OUTPUT_FORMATS[format], downmix, chunk):
            if isinstance(result, AudioError):
                raise result
            results.append(result.paths)
    return results[0] if single else results
