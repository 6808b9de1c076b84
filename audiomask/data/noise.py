"""Background noise for simulated scenes: crops of real recordings, or noise synthesised
from the training speech (:mod:`audiomask.data.synthetic_noise`).

One home for what the separation mixtures (:class:`~audiomask.data.DynamicMixingDataset`)
and the echo scenes (:class:`~audiomask.data.EchoSimulationDataset`) share: which recordings
there are, which stretch of each a split may use (``span``, so training and validation never
hear the same noise), and how one segment is drawn. Whether a scene has noise at all and at
what SNR stays with the dataset; every draw is a function of the generator it is given, so
datasets stay resumable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from audiomask.audio import read_audio
from audiomask.data.speakers import audio_files
from audiomask.data.synthetic_noise import NoiseSynthesizer


def noise_spans(split: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(training span, validation span)`` of every recording when the last ``split`` of
    each is kept for validation (``0``: both use all of it)."""
    if split == 0:
        return (0.0, 1.0), (0.0, 1.0)
    if not 0.0 < split < 1.0:
        raise ValueError(f"data.noise_split must be in [0, 1), got {split}")
    return (0.0, 1.0 - split), (1.0 - split, 1.0)


class BackgroundNoise:
    """Where a scene's background noise comes from.

    Args:
        files: real noise recordings (a folder, a file or a list; resampled to
            ``sample_rate`` and downmixed once, at load), or ``None``.
        sample_rate: Hz.
        utterances: per-speaker training utterances, the babble pool of the synthesiser.
        synthetic: probability that a draw is synthesised
            (:class:`~audiomask.data.synthetic_noise.NoiseSynthesizer`: babble of speakers
            other than the scene's own, or coloured noise) instead of a crop of a recording;
            without ``files`` any value > 0 makes every draw synthetic; ``0``: recordings only.
        span: ``(start, end)`` fractions of each recording that crops come from, e.g.
            ``(0, 0.75)`` for training and ``(0.75, 1)`` for validation.
    """

    def __init__(self, files: str | Path | Sequence[str | Path] | None, sample_rate: int,
                 utterances: Sequence[Sequence[np.ndarray]] = (), synthetic: float = 0.0,
                 span: tuple[float, float] = (0.0, 1.0)) -> None:
        if not 0.0 <= synthetic <= 1.0:
            raise ValueError(f"synthetic_noise must be in [0, 1], got {synthetic}")
        if len(span) != 2 or not 0.0 <= span[0] < span[1] <= 1.0:
            raise ValueError(f"noise_span must be (start, end) with 0 <= start < end <= 1, got {span}")
        self.synthetic = float(synthetic)
        self.files: list[Path] = []
        self.recordings: list[np.ndarray] = []
        if files is not None:
            self.files = audio_files(files)
            if not self.files:
                raise ValueError(f"no noise recordings in {files}")
            for f in self.files:
                wav = read_audio(f, sample_rate=sample_rate, downmix=True)[0][0].double().numpy()
                if tuple(span) != (0.0, 1.0):
                    wav = wav[int(span[0] * len(wav)) : int(span[1] * len(wav))]
                self.recordings.append(wav)
        self.synthesizer = NoiseSynthesizer(utterances, sample_rate) if synthetic > 0 else None

    @property
    def available(self) -> bool:
        """Whether there is any noise to draw (recorded or synthetic)."""
        return bool(self.recordings) or self.synthesizer is not None

    def draw(self, rng: np.random.Generator, n: int, exclude: Sequence[int] = ()
             ) -> tuple[np.ndarray, dict[str, Any]]:
        """``n`` samples of unscaled noise ``[n]`` (float64) and a description: synthetic
        (babble never of the speakers in ``exclude``) or a crop of a random recording from a
        random start, looped when the recording is shorter (``noise_file``, ``noise_start``)."""
        if not self.available:
            raise ValueError("no background noise configured (neither recordings nor synthetic_noise > 0)")
        if self.synthesizer is not None and (not self.recordings or rng.random() < self.synthetic):
            return self.synthesizer.sample(rng, n, exclude=exclude)
        k = int(rng.integers(len(self.recordings)))
        noise = self.recordings[k]
        if len(noise) >= n:
            start = int(rng.integers(0, len(noise) - n + 1))
            crop = noise[start : start + n]
        else:
            start = int(rng.integers(0, len(noise)))
            crop = np.take(noise, np.arange(start, start + n), mode="wrap")
        return crop.copy(), {"noise_file": str(self.files[k]), "noise_start": start}
