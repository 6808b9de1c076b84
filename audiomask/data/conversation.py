"""Long two-speaker recordings in which the speakers take turns (a conversation).

Speaker A and speaker B alternate: each turn is a crop of one of the speaker's utterances;
the next turn starts after a pause or, with probability ``overlap_prob``, before the current
one ends (the speakers talk over each other briefly). Unlike
:class:`~audiomask.data.DynamicMixingDataset`, whose every example is two speakers talking
at once, most of a conversation has one speaker or none, which is what chunked separation
of long files meets in practice.

Example ``i`` is drawn from ``numpy.random.default_rng((seed, i))``: the same index always
gives the same recording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from audiomask.data.dynamic_mixing import DynamicMixingDataset


class ConversationDataset(DynamicMixingDataset):
    """Turn-taking two-speaker recordings of ``duration`` seconds from a list of utterances.

    Args:
        files: utterances (speaker id from the file name); two distinct speakers per example.
        sample_rate: rate of the returned signals.
        duration: length of each recording (seconds).
        length: number of recordings.
        turn_s: ``(low, high)`` length of a turn (seconds, uniform; shorter when the
            utterance is shorter).
        pause_s: ``(low, high)`` silence between turns (seconds, uniform).
        overlap_prob: probability that a turn starts before the previous one ends.
        overlap_s: ``(low, high)`` length of such an overlap (seconds, uniform).
        sir_db: each speaker's level is drawn uniformly in ``[-sir_db/2, sir_db/2]`` dB
            (the level of a speaker's active speech, the same in all their turns).
        seed: base seed.

    Items: ``(mix [T], sources [2, T])`` float32, ``mix = sources.sum(0)``, scaled so that
    ``max |mix|`` is drawn in ``[0.25, 0.9]``. :meth:`draw` also returns the two speaker ids.
    """

    def __init__(self, files: Sequence[str | Path], sample_rate: int = 8000, duration: float = 180.0,
                 length: int = 3, turn_s: tuple[float, float] = (2.0, 8.0),
                 pause_s: tuple[float, float] = (0.2, 1.5), overlap_prob: float = 0.3,
                 overlap_s: tuple[float, float] = (0.3, 1.5), sir_db: float = 5.0, seed: int = 0) -> None:
        super().__init__(files, sample_rate=sample_rate, segment=duration, n_src=2, length=length,
                         sir_db=sir_db, seed=seed)
        for name, (lo, hi) in (("turn_s", turn_s), ("pause_s", pause_s), ("overlap_s", overlap_s)):
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")
        if not 0.0 <= overlap_prob <= 1.0:
            raise ValueError(f"overlap_prob must be in [0, 1], got {overlap_prob}")
        self.turn_s, self.pause_s, self.overlap_s = tuple(turn_s), tuple(pause_s), tuple(overlap_s)
        self.overlap_prob = float(overlap_prob)

    def _turn(self, utts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """One turn: a crop of ``turn_s`` seconds of a random utterance (all of it if shorter)."""
        wav = utts[rng.integers(len(utts))]
        n = min(len(wav), int(rng.uniform(*self.turn_s) * self.sample_rate))
        start = int(rng.integers(0, len(wav) - n + 1))
        return wav[start : start + n]

    def draw(self, index: int, *, with_meta: bool = False):
        """Recording ``index``: ``(mix, sources, speakers)`` (``with_meta``: plus a dict with
        ``turns``, a list of ``(speaker index, start sample, end sample)``)."""
        rng = np.random.default_rng((self.seed, index))
        chosen = rng.choice(len(self.speakers), size=2, replace=False)
        gains = 10 ** (rng.uniform(-self.sir_db / 2, self.sir_db / 2, size=2) / 20)
        rate, total = self.sample_rate, self.segment_samples
        src = np.zeros((2, total), dtype=np.float64)
        turns, t, who = [], 0, int(rng.integers(2))
        while t < total:
            wav = self._turn(self.utterances[chosen[who]], rng)
            end = min(total, t + len(wav))
            rms = np.sqrt(np.mean(wav.astype(np.float64) ** 2)) + 1e-8
            src[who, t:end] += wav[: end - t] / rms * gains[who]
            turns.append((who, t, end))
            if rng.random() < self.overlap_prob:
                gap = -int(min(rng.uniform(*self.overlap_s) * rate, len(wav) // 2))
            else:
                gap = int(rng.uniform(*self.pause_s) * rate)
            t, who = max(t + 1, end + gap), 1 - who
        scale = rng.uniform(0.25, 0.9) / (np.abs(src.sum(0)).max() + 1e-8)
        sources = torch.from_numpy((src * scale).astype(np.float32))
        mix = sources.sum(0)
        speakers = [self.speakers[s] for s in chosen]
        if with_meta:
            return mix, sources, speakers, {"turns": turns, "scale": float(scale)}
        return mix, sources, speakers
