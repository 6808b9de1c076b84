"""Background noise synthesised from the training data alone: babble and coloured noise.

Three real recordings are too few noise types for a separator that must survive real rooms,
and drawing noise from a held-out corpus would leak. This module makes two more kinds from
what training is allowed to see:

* **babble** — ``K`` other training talkers (never the mixture's own speakers) summed at
  equal RMS, each a random crop (looped when short): the cocktail-party background;
* **coloured noise** — Gaussian noise with a power spectrum ``∝ f^(-β)`` (β = 0 white,
  1 pink, 2 brown) times a random smooth spectral envelope (gains drawn on a few
  log-spaced bands and interpolated), optionally amplitude-modulated at a slow rate so it
  is not stationary (fans, traffic, hum-free rumble).

Every draw is a function of the generator it is given, so datasets stay resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def _loop_crop(wav: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples of ``wav`` from a random start, wrapping around when ``wav`` is short."""
    start = int(rng.integers(0, len(wav)))
    return np.take(wav, np.arange(start, start + n), mode="wrap").astype(np.float64)


def babble(talkers: Sequence[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    """Sum of one random crop of each utterance in ``talkers``, each at unit RMS: ``[n]``."""
    out = np.zeros(n)
    for wav in talkers:
        crop = _loop_crop(wav, rng, n)
        out += crop / (np.sqrt(np.mean(crop**2)) + 1e-8)
    return out


def coloured_noise(rng: np.random.Generator, n: int, sample_rate: int, exponent: float,
                   band_gains_db: Sequence[float] = (), modulation: tuple[float, float] = (0.0, 0.0)
                   ) -> np.ndarray:
    """Gaussian noise with power spectrum ``∝ f^(-exponent)`` shaped by a smooth envelope.

    Args:
        rng: the generator every random value comes from.
        n: samples.
        sample_rate: Hz; the envelope's bands are log-spaced from 50 Hz to Nyquist.
        exponent: β of the ``f^(-β)`` power law (0 white, 1 pink, 2 brown).
        band_gains_db: gains (dB) at log-spaced band centres, linearly interpolated over
            log-frequency; empty for a flat envelope.
        modulation: ``(depth, rate_hz)``: the waveform is multiplied by
            ``1 + depth · sin(2π rate t + φ)`` with a random phase φ; depth 0 keeps it
            stationary.

    Returns ``[n]`` float64 noise (unscaled: callers set the level by SNR).
    """
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    f = np.maximum(freqs, 20.0)
    shape = f ** (-exponent / 2.0)
    if len(band_gains_db):
        centres = np.geomspace(50.0, sample_rate / 2.0, len(band_gains_db))
        gain_db = np.interp(np.log(f), np.log(centres), np.asarray(band_gains_db, dtype=np.float64))
        shape = shape * 10 ** (gain_db / 20.0)
    shape[0] = 0.0  # no DC
    noise = np.fft.irfft(spec * shape, n)
    depth, rate = modulation
    if depth > 0:
        t = np.arange(n) / sample_rate
        noise = noise * (1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    return noise


@dataclass
class NoiseSynthesizer:
    """Draws babble or coloured noise; ranges are inclusive uniform draws.

    Args:
        utterances: per-speaker lists of training utterances (the babble pool).
        sample_rate: Hz.
        babble_prob: probability that a draw is babble (else coloured noise).
        babble_talkers: ``(low, high)`` number of babble talkers.
        exponent: ``(low, high)`` range of the coloured noise's β.
        band_gain_db: the envelope's band gains are drawn in ``±band_gain_db``.
        n_bands: bands of the envelope.
        modulation_prob: probability that coloured noise is amplitude-modulated, with depth
            in ``modulation_depth`` and rate in ``modulation_hz``.
    """

    utterances: Sequence[Sequence[np.ndarray]]
    sample_rate: int
    babble_prob: float = 0.5
    babble_talkers: tuple[int, int] = (3, 8)
    exponent: tuple[float, float] = (0.0, 2.0)
    band_gain_db: float = 10.0
    n_bands: int = 6
    modulation_prob: float = 0.3
    modulation_depth: tuple[float, float] = (0.2, 0.8)
    modulation_hz: tuple[float, float] = (0.1, 4.0)

    def sample(self, rng: np.random.Generator, n: int, exclude: Sequence[int] = ()
               ) -> tuple[np.ndarray, dict[str, Any]]:
        """``n`` samples of noise and a description; babble never uses speakers in ``exclude``."""
        pool = [s for s in range(len(self.utterances)) if s not in set(int(e) for e in exclude)]
        if pool and rng.random() < self.babble_prob:
            k = int(rng.integers(self.babble_talkers[0], self.babble_talkers[1] + 1))
            chosen = rng.choice(pool, size=min(k, len(pool)), replace=False)
            talkers = [self.utterances[s][int(rng.integers(len(self.utterances[s])))] for s in chosen]
            return babble(talkers, rng, n), {"noise_kind": "babble", "babble_speakers": [int(s) for s in chosen]}
        exponent = float(rng.uniform(*self.exponent))
        gains = rng.uniform(-self.band_gain_db, self.band_gain_db, size=self.n_bands)
        modulation = (0.0, 0.0)
        if rng.random() < self.modulation_prob:
            modulation = (float(rng.uniform(*self.modulation_depth)), float(rng.uniform(*self.modulation_hz)))
        noise = coloured_noise(rng, n, self.sample_rate, exponent, gains, modulation)
        return noise, {"noise_kind": "coloured", "exponent": exponent, "modulation": modulation}
