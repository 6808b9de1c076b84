"""Dynamic mixing: a fresh mixture of different speakers for every example.

Each example ``i`` is drawn from its own random generator seeded by ``(seed, i)``, so a
dataset index always gives the same mixture (resumable, identical across DDP ranks and
workers) while the pool of possible mixtures is effectively unbounded.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from audiomask.audio import read_audio
from audiomask.data.speakers import speaker_of


class DynamicMixingDataset(Dataset):
    """Mixtures of ``n_src`` distinct speakers drawn from a list of utterances.

    Args:
        files: utterances (speaker id from the file name, see :func:`speaker_of`).
        sample_rate: rate of the returned signals; files are resampled once, at load.
        segment: length of each example in seconds (shorter utterances are zero-padded
            at a random offset).
        n_src: speakers per mixture (all different).
        length: examples per epoch (``len(dataset)``).
        sir_db: each source's level is drawn uniformly in ``[-sir_db/2, sir_db/2]`` dB
            around the others (so pairwise SIR lies within ±``sir_db``).
        seed: base seed; example ``i`` uses ``numpy.random.default_rng((seed, i))``.

    Items: ``(mix [T], sources [n_src, T])`` float32 with ``mix = sources.sum(0)``.
    """

    def __init__(self, files: Sequence[str | Path], sample_rate: int = 8000, segment: float = 3.0,
                 n_src: int = 2, length: int = 10_000, sir_db: float = 5.0, seed: int = 0) -> None:
        self.sample_rate, self.n_src, self.length, self.seed = sample_rate, n_src, length, seed
        self.segment_samples = int(round(segment * sample_rate))
        self.sir_db = sir_db
        by_speaker: dict[str, list[np.ndarray]] = defaultdict(list)
        for f in files:
            wav, _ = read_audio(f, sample_rate=sample_rate, channels=1, downmix=True)
            by_speaker[speaker_of(f)].append(wav[0].numpy())
        self.speakers = sorted(by_speaker)
        if len(self.speakers) < n_src:
            raise ValueError(f"need at least {n_src} speakers for {n_src}-speaker mixtures, got {len(self.speakers)}")
        self.utterances = [by_speaker[s] for s in self.speakers]

    def __len__(self) -> int:
        return self.length

    def _crop(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = self.segment_samples
        if len(wav) >= n:
            start = rng.integers(0, len(wav) - n + 1)
            return wav[start : start + n]
        out = np.zeros(n, dtype=np.float32)
        start = rng.integers(0, n - len(wav) + 1)
        out[start : start + len(wav)] = wav
        return out

    def draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Example ``index`` and the speaker ids it mixes."""
        rng = np.random.default_rng((self.seed, index))
        chosen = rng.choice(len(self.speakers), size=self.n_src, replace=False)
        sources = []
        for s in chosen:
            utts = self.utterances[s]
            wav = self._crop(utts[rng.integers(len(utts))], rng)
            rms = np.sqrt(np.mean(wav**2)) + 1e-8
            gain_db = rng.uniform(-self.sir_db / 2, self.sir_db / 2)
            sources.append(wav / rms * 10 ** (gain_db / 20))
        src = np.stack(sources).astype(np.float32)
        peak = np.abs(src.sum(0)).max() + 1e-8
        src *= rng.uniform(0.25, 0.9) / peak
        src_t = torch.from_numpy(src)
        return src_t.sum(0), src_t, [self.speakers[s] for s in chosen]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        mix, src, _ = self.draw(index)
        return mix, src
