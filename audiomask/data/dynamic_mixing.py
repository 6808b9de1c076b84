"""Dynamic mixing: a fresh mixture of different speakers for every example.

Each example ``i`` is drawn from its own random generator seeded by ``(seed, i)``, so a
dataset index always gives the same mixture (resumable, identical across DDP ranks and
workers) while the pool of possible mixtures is effectively unbounded.

Optional corruptions (all off by default; with them off the output is bit-identical to the
plain dry mixing): real background noise at a random SNR, and reverberation from measured
RIRs and/or image-source simulated rooms (:mod:`audiomask.data.reverb`). They draw from
their own generators, ``(seed, i, 1)`` for reverberation and ``(seed, i, 2)`` for noise, so
switching one on never changes the speech, the other corruption, or the level of example
``i`` (up to the final peak scaling).

Speed perturbation (also off by default) plays each source faster or slower by a factor drawn
from generator ``(seed, i, 3)`` — tempo and pitch change together, as in Kaldi/ESPnet's
``speed`` augmentation — which turns a small pool of speakers into many more voices.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset

from audiomask.audio import read_audio
from audiomask.data.noise import BackgroundNoise
from audiomask.data.reverb import RIR, MeasuredRIRs, RoomSimulator, convolve, make_room_simulator
from audiomask.data.speakers import speaker_of

_REVERB_STREAM, _NOISE_STREAM, _SPEED_STREAM = 1, 2, 3


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

    Keyword-only (all off by default):
        noise_files: real noise recordings (a folder, a file or a list; resampled and
            downmixed once, at load). Each example adds a random crop of a random file
            (looped when the file is shorter than the segment).
        snr_db: ``(low, high)`` (or one number): the noise's SNR is drawn uniformly in this
            range (dB), relative to the speech actually in the mixture: the sum of the
            sources, or of their reverberant images when the example is reverberated.
        rir_files: measured RIRs (a folder, a file or a list; any rate; each channel of a
            multi-channel file is a mono RIR, one chosen at random).
        simulate_rooms: ``True`` (or a configured :class:`RoomSimulator`) for image-source
            shoebox rooms via pyroomacoustics (``pip install audiomask[simulate]``); room
            size, RT60 and positions are drawn from the ranges documented in
            :class:`RoomSimulator`. With both ``rir_files`` and ``simulate_rooms``, each
            reverberated example uses one or the other with probability 1/2.
        reverb_prob: probability that an example is reverberated (when RIRs are available).
        speed_perturb: ``s`` in ``[0, 0.5)``: each source is played at a speed factor drawn
            uniformly in ``[1 - s, 1 + s]`` (a crop of ``segment * factor`` seconds resampled
            to ``segment`` seconds with soxr), independently per source. ``0`` (default)
            leaves the examples bit-identical to no perturbation.
        synthetic_noise: probability that an example's noise is synthesised from the
            training data (:class:`~audiomask.data.synthetic_noise.NoiseSynthesizer`: babble
            of other speakers of ``files``, never the mixture's own, or coloured noise with
            a random spectral envelope) instead of a crop of ``noise_files``; without
            ``noise_files``, any value > 0 makes all noise synthetic. ``0`` (default): real
            recordings only.
        noise_prob: probability that an example has noise at all (when any noise is
            configured). ``1`` (default) keeps the draws of earlier versions.
        noise_span: ``(start, end)`` fractions of each noise recording that crops come from,
            e.g. ``(0, 0.8)`` for training and ``(0.8, 1)`` for validation, so the two never
            share noise.
        reverberant_target: the target under reverberation. ``False`` (default): the
            **dry source** (direct path, time-aligned and at unit gain, see
            :mod:`audiomask.data.reverb`), so the model learns dereverberation and
            separation. ``True``: the full **reverberant image** of each source.

    Reverberation convolves each source with its own RIR (measured: drawn independently
    per source; simulated: one room and microphone, one position per source), aligned on
    the RIR's direct path and trimmed to the segment.

    Items: ``(mix [T], sources [n_src, T])`` float32. ``mix = images.sum(0) + noise``
    exactly, where ``images`` are the sources as heard in the room (the sources themselves
    when dry) and ``noise`` is zero without ``noise_files``; so ``mix = sources.sum(0)``
    exactly for dry, noiseless mixing. The whole example is scaled so that
    ``max |mix|`` is drawn in ``[0.25, 0.9]``.
    """

    def __init__(self, files: Sequence[str | Path], sample_rate: int = 8000, segment: float = 3.0,
                 n_src: int = 2, length: int = 10_000, sir_db: float = 5.0, seed: int = 0, *,
                 noise_files: str | Path | Sequence[str | Path] | None = None,
                 snr_db: tuple[float, float] | float = (0.0, 15.0),
                 rir_files: str | Path | Sequence[str | Path] | None = None,
                 simulate_rooms: bool | RoomSimulator = False,
                 reverb_prob: float = 1.0,
                 reverberant_target: bool = False,
                 speed_perturb: float = 0.0,
                 synthetic_noise: float = 0.0,
                 noise_prob: float = 1.0,
                 noise_span: tuple[float, float] = (0.0, 1.0)) -> None:
        self.sample_rate, self.n_src, self.length, self.seed = sample_rate, n_src, length, seed
        self.segment_samples = int(round(segment * sample_rate))
        self.sir_db = sir_db
        if isinstance(snr_db, (int, float)):
            snr_db = (snr_db, snr_db)
        if len(snr_db) != 2 or not snr_db[0] <= snr_db[1]:
            raise ValueError(f"snr_db must be (low, high) with low <= high, got {snr_db}")
        if not 0.0 <= reverb_prob <= 1.0:
            raise ValueError(f"reverb_prob must be in [0, 1], got {reverb_prob}")
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        if not 0.0 <= speed_perturb < 0.5:
            raise ValueError(f"speed_perturb must be in [0, 0.5), got {speed_perturb}")
        self.reverb_prob, self.reverberant_target = float(reverb_prob), bool(reverberant_target)
        self.speed_perturb = float(speed_perturb)
        if not 0.0 <= noise_prob <= 1.0:
            raise ValueError(f"noise_prob must be in [0, 1], got {noise_prob}")
        self.noise_prob = float(noise_prob)

        by_speaker: dict[str, list[np.ndarray]] = defaultdict(list)
        for f in files:
            wav, _ = read_audio(f, sample_rate=sample_rate, channels=1, downmix=True)
            by_speaker[speaker_of(f)].append(wav[0].numpy())
        self.speakers = sorted(by_speaker)
        if len(self.speakers) < n_src:
            raise ValueError(f"need at least {n_src} speakers for {n_src}-speaker mixtures, got {len(self.speakers)}")
        self.utterances = [by_speaker[s] for s in self.speakers]

        self.noise = BackgroundNoise(noise_files, sample_rate, self.utterances, synthetic_noise, noise_span)
        self.measured_rirs = MeasuredRIRs(rir_files, sample_rate) if rir_files is not None else None
        self.room_simulator = make_room_simulator(simulate_rooms, sample_rate)

    def __len__(self) -> int:
        return self.length

    def _crop(self, wav: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """A random ``n``-sample crop of ``wav`` (default: the segment), zero-padded at a random
        offset when ``wav`` is shorter."""
        n = self.segment_samples if n is None else n
        if len(wav) >= n:
            start = rng.integers(0, len(wav) - n + 1)
            return wav[start : start + n]
        out = np.zeros(n, dtype=np.float32)
        start = rng.integers(0, n - len(wav) + 1)
        out[start : start + len(wav)] = wav
        return out

    def _draw_speeds(self, index: int) -> list[float]:
        """Speed factor per source for example ``index``, from generator ``(seed, index, 3)``."""
        if self.speed_perturb == 0.0:
            return [1.0] * self.n_src
        rng = np.random.default_rng((self.seed, index, _SPEED_STREAM))
        s = self.speed_perturb
        return [float(f) for f in rng.uniform(1.0 - s, 1.0 + s, size=self.n_src)]

    def _speed_crop(self, wav: np.ndarray, rng: np.random.Generator, speed: float) -> np.ndarray:
        """A segment of ``wav`` played ``speed`` times faster: a crop of ``segment * speed``
        samples taken as sampled at ``rate * speed`` and resampled to ``rate``."""
        n = self.segment_samples
        crop = self._crop(wav, rng, int(np.ceil(n * speed)) + 1)
        out = soxr.resample(crop, self.sample_rate * speed, self.sample_rate, quality="HQ")
        if len(out) < n:
            out = np.pad(out, (0, n - len(out)))
        return np.ascontiguousarray(out[:n], dtype=np.float32)

    def _draw_rirs(self, index: int) -> tuple[list[RIR] | None, dict[str, Any]]:
        """RIRs for example ``index`` (``None``: dry), from generator ``(seed, index, 1)``."""
        if self.measured_rirs is None and self.room_simulator is None:
            return None, {}
        rng = np.random.default_rng((self.seed, index, _REVERB_STREAM))
        if not rng.random() < self.reverb_prob:
            return None, {}
        use_measured = self.room_simulator is None or (
            self.measured_rirs is not None and rng.random() < 0.5)
        if use_measured:
            rirs = [self.measured_rirs.sample(rng) for _ in range(self.n_src)]
            return rirs, {"kind": "measured"}
        rirs, room = self.room_simulator.sample(rng, self.n_src)
        return rirs, {"kind": "simulated", **room}

    @property
    def has_noise(self) -> bool:
        """Whether any noise (recorded or synthetic) is configured."""
        return self.noise.available

    def _draw_noise(self, index: int, speakers: Sequence[int] = ()
                    ) -> tuple[np.ndarray | None, float, dict[str, Any]]:
        """Unscaled noise and SNR for example ``index`` (``None``: no noise in this example),
        from generator ``(seed, index, 2)``; synthetic babble avoids ``speakers``."""
        rng = np.random.default_rng((self.seed, index, _NOISE_STREAM))
        if self.noise_prob < 1.0 and not rng.random() < self.noise_prob:
            return None, 0.0, {}
        noise, meta = self.noise.draw(rng, self.segment_samples, exclude=speakers)
        return noise, float(rng.uniform(*self.snr_db)), meta

    def draw(self, index: int, *, with_meta: bool = False):
        """Example ``index`` and the speaker ids it mixes: ``(mix, sources, speakers)``.

        With ``with_meta=True``, ``(mix, sources, speakers, meta)`` where ``meta`` holds
        ``gains_db`` (per-source level draws), ``scale`` (the final factor applied to the
        whole example), ``snr_db`` (``None`` without noise), ``reverb`` (``None`` when dry,
        else a dict with ``kind``, ``rirs`` (the :class:`~audiomask.data.reverb.RIR` per
        source) and, for simulated rooms, the room), the float32 tensors ``images``
        (``[n_src, T]``, the sources as heard in the mixture) and ``noise`` (``[T]``), and
        for noise ``noise_file``/``noise_start``.
        """
        rng = np.random.default_rng((self.seed, index))
        chosen = rng.choice(len(self.speakers), size=self.n_src, replace=False)
        speeds = self._draw_speeds(index)
        sources, gains_db = [], []
        for s, speed in zip(chosen, speeds):
            utts = self.utterances[s]
            if speed == 1.0:
                wav = self._crop(utts[rng.integers(len(utts))], rng)
            else:
                wav = self._speed_crop(utts[rng.integers(len(utts))], rng, speed)
            rms = np.sqrt(np.mean(wav**2)) + 1e-8
            gain_db = rng.uniform(-self.sir_db / 2, self.sir_db / 2)
            gains_db.append(float(gain_db))
            sources.append(wav / rms * 10 ** (gain_db / 20))
        src = np.stack(sources).astype(np.float32)
        level = rng.uniform(0.25, 0.9)
        speakers = [self.speakers[s] for s in chosen]
        rirs, reverb_meta = self._draw_rirs(index)
        meta: dict[str, Any] = {"speakers": speakers, "gains_db": gains_db, "speeds": speeds,
                                "snr_db": None, "reverb": None}

        if rirs is None and not self.has_noise:
            # Dry and noiseless: exactly the original computation (same bits).
            peak = np.abs(src.sum(0)).max() + 1e-8
            scale = level / peak
            src *= scale
            src_t = torch.from_numpy(src)
            mix = src_t.sum(0)
            meta.update(scale=float(scale), images=src_t, noise=torch.zeros_like(mix))
        else:
            dry = src.astype(np.float64)
            if rirs is None:
                images = dry.copy()
            else:
                images = np.stack([convolve(d, r.rir, r.direct) for d, r in zip(dry, rirs)])
                meta["reverb"] = {**reverb_meta, "rirs": rirs}
            speech = images.sum(0)
            noise = np.zeros_like(speech)
            if self.has_noise:
                crop, snr, noise_meta = self._draw_noise(index, chosen)
                if crop is not None:
                    p_speech, p_noise = np.mean(speech**2), np.mean(crop**2)
                    if p_noise > 0:
                        noise = crop * np.sqrt(p_speech / (p_noise * 10 ** (snr / 10)))
                    meta.update(snr_db=snr, **noise_meta)
            scale = level / (np.abs(speech + noise).max() + 1e-8)
            images_t = torch.from_numpy((images * scale).astype(np.float32))
            noise_t = torch.from_numpy((noise * scale).astype(np.float32))
            mix = images_t.sum(0) + noise_t
            src_t = images_t.clone() if self.reverberant_target else torch.from_numpy(
                (dry * scale).astype(np.float32))
            meta.update(scale=float(scale), images=images_t, noise=noise_t)

        if with_meta:
            return mix, src_t, speakers, meta
        return mix, src_t, speakers

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        mix, src, _ = self.draw(index)
        return mix, src
