"""Separation of waveforms and files with any audiomask model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from audiomask.audio import AudioError, audio_info, check_waveform, read_audio, resample, write_audio


CHUNK_MODES = ("auto", "always", "never")
CHUNK_ABOVE_S = 30.0  # "auto" chunks inputs longer than this


@torch.inference_mode()
def separate(model: torch.nn.Module, mix: torch.Tensor, sample_rate: int | None = None,
             chunk: str = "auto", progress: bool = False) -> torch.Tensor:
    """Separate a mono mixture ``[T]`` or ``[batch, T]`` recorded at ``sample_rate``.

    The mixture is resampled to ``model.sample_rate`` when the rates differ and the
    estimates are resampled back, so the output has the input's rate and length:
    ``[n_src, T]`` / ``[batch, n_src, T]``. NaN/Inf or empty input raises ``AudioError``.

    ``chunk``: ``"auto"`` runs inputs longer than 30 s window by window
    (:func:`audiomask.streaming.separate_chunked`: memory bounded by the window, sources
    aligned across windows), ``"always"`` / ``"never"`` force it either way.
    """
    from audiomask.streaming.chunked import DEFAULT_WINDOW_S, separate_chunked

    if chunk not in CHUNK_MODES:
        raise ValueError(f"chunk must be one of {CHUNK_MODES}, got {chunk!r}")
    check_waveform(mix, "mixture")
    rate = sample_rate or model.sample_rate
    length = mix.shape[-1]
    device = next(model.parameters()).device
    x = resample(mix, rate, model.sample_rate) if rate != model.sample_rate else mix
    seconds = x.shape[-1] / model.sample_rate
    if chunk == "always" or (chunk == "auto" and seconds > max(CHUNK_ABOVE_S, DEFAULT_WINDOW_S)):
        est = separate_chunked(model, x, progress=progress)
    else:
        est = model(x.to(device)).cpu()
    if rate != model.sample_rate:
        est = resample(est, model.sample_rate, rate)
        est = est[..., :length] if est.shape[-1] >= length else torch.nn.functional.pad(
            est, (0, length - est.shape[-1]))
    return est


def output_paths(path: str | os.PathLike, out_dir: str | os.PathLike, n_src: int, ext: str = ".wav") -> list[Path]:
    """Where the sources of ``path`` go: ``OUT/<stem>_s1.wav``, ``OUT/<stem>_s2.wav``, …"""
    stem = Path(path).stem
    return [Path(out_dir) / f"{stem}_s{i + 1}{ext}" for i in range(n_src)]


@dataclass
class SeparatedFile:
    """What :func:`separate_file` did: the input, the files written, and the signals at ``sample_rate``
    (``mixture [T]``, ``estimates [n_src, T]``)."""

    input: Path
    paths: list[Path]
    mixture: torch.Tensor
    estimates: torch.Tensor
    sample_rate: int


def separate_file(model: torch.nn.Module, path: str | os.PathLike, out_dir: str | os.PathLike,
                  downmix: bool = False, ext: str = ".wav", chunk: str = "auto",
                  progress: bool = False) -> SeparatedFile:
    """Separate one file; write one file per source at the input's sample rate.

    Nothing is written when reading or separating fails; if writing one source fails,
    the sources already written for this input are removed, so an input has all its
    outputs or none.
    """
    info = audio_info(path)
    wav, rate = read_audio(path, channels=1, downmix=downmix)
    est = separate(model, wav[0], rate, chunk=chunk, progress=progress)
    targets = output_paths(path, out_dir, est.shape[0], ext)
    if any(t.resolve() == Path(path).resolve() for t in targets):
        raise AudioError(path, "an output would overwrite the input; choose another --out")
    written: list[Path] = []
    try:
        for target, source in zip(targets, est):
            written.append(write_audio(target, source, info.sample_rate))
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return SeparatedFile(Path(path), written, wav[0], est, rate)


def separate_files(model: torch.nn.Module, paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                   downmix: bool = False, progress: bool = True, chunk: str = "auto"
                   ) -> tuple[list[SeparatedFile], list[str]]:
    """Separate many files; returns (one result per separated input, one-line error messages
    of the inputs that failed)."""
    from tqdm import tqdm

    written, errors = [], []
    for path in tqdm(paths, desc="separating", unit="file", disable=not progress or len(paths) < 2):
        try:
            written.append(separate_file(model, path, out_dir, downmix, chunk=chunk, progress=progress))
        except AudioError as e:
            errors.append(str(e))
    return written, errors
