"""Acoustic echo cancellation data: simulated echo scenes, and the ICASSP AEC Challenge layout.

Both datasets give items ``(mic [T], far [T], targets [3, T])`` (float32), with
``targets = (near-end speech, echo, noise)`` and ``mic = near + echo + noise`` — what
:func:`audiomask.losses.aec_loss` and the trainer expect.

:class:`EchoSimulationDataset` builds a fresh scene for every index, from its own seeded
generators (index ``i`` always gives the same scene):

* a **scenario**: double talk (near-end and far-end speakers both talk), far-end single talk
  (only the echo — where ERLE is measured), or near-end single talk (silent loudspeaker);
* two **different speakers**, one per end;
* the **echo path**: the far-end signal through a loudspeaker **non-linearity** (hard clipping
  then a saturating ``tanh`` curve, of a random strength), a **bulk delay** (0–200 ms), and a
  room impulse response — **measured** (files) or a **simulated room** (image-source method) —
  which may **change in the middle of the clip** (the device or the talker moves: another RIR
  from then on);
* the echo level from a sampled **signal-to-echo ratio** (SER) and background **noise** at a
  sampled **SNR**, both relative to the near-end speech.

:class:`AECChallengeDataset` reads the synthetic part of the ICASSP AEC Challenge (Microsoft,
``datasets/synthetic``): ``farend_speech/farend_speech_fileid_N.wav``,
``nearend_mic_signal/nearend_mic_fileid_N.wav``, ``nearend_speech/nearend_speech_fileid_N.wav``,
``echo_signal/echo_fileid_N.wav`` and ``meta.csv`` (its ``split`` column: train / test).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from audiomask.audio import read_audio
from audiomask.data.noise import BackgroundNoise
from audiomask.data.reverb import RIR, MeasuredRIRs, RoomSimulator, convolve, make_room_simulator
from audiomask.data.speakers import speaker_of

SCENARIOS = ("double_talk", "farend_single", "nearend_single")
_PATH_STREAM, _NOISE_STREAM, _NEAR_REVERB_STREAM = 1, 2, 3


def _driven(x: np.ndarray, strength: float) -> tuple[np.ndarray, float]:
    """``x`` as float64 and its peak, after checking a non-linearity strength in ``[0, 1]``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"non-linearity strength must be in [0, 1], got {strength}")
    x = np.asarray(x, dtype=np.float64)
    return x, float(np.abs(x).max())


def loudspeaker_nonlinearity(x: np.ndarray, strength: float) -> np.ndarray:
    """A small loudspeaker driven hard: clipping, then a saturating curve.

    ``strength`` ``s`` in ``[0, 1]``: the signal is clipped at ``(1 - 0.6·s)`` of its peak,
    then passed through ``tanh(a·x)/a`` with ``a = 3·s / clip level`` (gain 1 for small
    signals, compressing towards the clip level). ``s = 0`` returns ``x`` unchanged; at
    ``s = 1`` the peaks are clipped to 40 % and the curve reaches ``tanh(3)/3`` of it.
    """
    x, peak = _driven(x, strength)
    if strength == 0.0 or peak == 0.0:
        return x.copy()
    level = (1.0 - 0.6 * strength) * peak
    a = 3.0 * strength / level
    return np.tanh(a * np.clip(x, -level, level)) / a


def soft_clip(x: np.ndarray, strength: float) -> np.ndarray:
    """A loudspeaker's smooth compression: ``atan(a·x)/a`` — gain 1 for small signals, never
    above ``π/(2a)`` — with ``a = 5·strength / peak`` (``strength`` in ``[0, 1]``, 0 returns ``x``)."""
    x, peak = _driven(x, strength)
    if strength == 0.0 or peak == 0.0:
        return x.copy()
    a = 5.0 * strength / peak
    return np.arctan(a * x) / a


def harmonic_distortion(x: np.ndarray, h2: float, h3: float) -> np.ndarray:
    """Memoryless polynomial distortion ``x + h2·p·u² − h3·p·u³`` with ``u = x/p`` (``p`` the
    peak): second (asymmetric) and third harmonics of relative amplitude ``h2``, ``h3``."""
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.abs(x).max())
    if peak == 0.0:
        return x.copy()
    u = x / peak
    return x + peak * (h2 * u**2 - h3 * u**3)


NONLINEARITIES = ("clip_tanh", "soft_clip", "harmonic")


def delay(x: np.ndarray, samples: int) -> np.ndarray:
    """``x`` delayed by ``samples`` (zeros in front), same length."""
    if samples <= 0:
        return x.copy()
    out = np.zeros_like(x)
    if samples < len(x):
        out[samples:] = x[: len(x) - samples]
    return out


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


class EchoSimulationDataset(Dataset):
    """Simulated echo-cancellation scenes from a speech corpus (see the module docstring).

    Args:
        files: utterances (speaker id from the file name, :func:`speaker_of`); the near-end and
            far-end talkers of a scene are always two different speakers.
        sample_rate: rate of the returned signals (files are resampled once, at load).
        segment: seconds per example (shorter utterances are zero-padded at a random offset).
        length: examples per epoch.
        seed: example ``i`` draws from ``default_rng((seed, i))`` (scenario, speakers, crops,
            SER, levels), ``(seed, i, 1)`` (echo path) and ``(seed, i, 2)`` (noise).

    Keyword-only:
        rir_files: measured RIRs (folder, file or list; each channel of a multi-channel file is
            a mono RIR). simulate_rooms: ``True`` (or a :class:`RoomSimulator`) for image-source
            rooms (``audiomask[simulate]``); by default loudspeaker–microphone distances of
            0.2–1.5 m. With both, each scene uses a simulated room with probability
            ``simulate_prob``; with neither, the echo path is the bulk delay alone.
        noise_files: real noise recordings; ``noise_prob`` of the scenes get noise at an SNR
            drawn in ``snr_db`` (dB, relative to the near-end speech).
        ser_db: ``(low, high)``: the signal-to-echo ratio ``10·log10(P_near / P_echo)`` over the
            clip, drawn uniformly (dB).
        delay_ms: ``(low, high)``: bulk delay of the echo, drawn uniformly (ms).
        nonlinear_prob: probability of a loudspeaker non-linearity; its strength is then
            uniform in ``[0, 1]``.
        nonlinearities: the kinds drawn from (uniformly) when a scene has one:
            ``"clip_tanh"`` (:func:`loudspeaker_nonlinearity`, the default and only kind of
            earlier versions), ``"soft_clip"`` (:func:`soft_clip`), ``"harmonic"``
            (:func:`harmonic_distortion`, ``h2``, ``h3`` up to ``0.3·strength``).
        near_reverb_prob: probability that the near-end talker is reverberant (a RIR from the
            same sources as the echo path, drawn from generator ``(seed, i, 3)``); the near-end
            target is then the reverberant image, as the microphone hears it: an echo
            canceller removes echo and noise, it does not dereverberate.
        synthetic_noise: probability that a noisy scene's noise is synthesised from the
            training data (:class:`~audiomask.data.synthetic_noise.NoiseSynthesizer`: babble of
            speakers other than the scene's two, or coloured noise) instead of a recording;
            without ``noise_files`` any value > 0 makes all noise synthetic.
        noise_span: ``(start, end)`` fractions of each noise recording that crops come from
            (:class:`~audiomask.data.noise.BackgroundNoise`), so training and validation
            scenes need not share noise.
        path_change_prob: probability that the echo path changes at a time drawn in 30–70 %
            of the clip (a second RIR: another measured one, or another position in the
            same simulated room).
        scenario_probs: probabilities of double talk, far-end single talk, near-end single talk.

    Levels. SER and SNR are set against the near-end speech actually drawn, also in far-end
    single talk, where that speech is then left out (a "virtual" near-end talker, so the echo
    has the level distribution of the other scenarios). The microphone signal is scaled so
    that its peak is drawn in ``[0.25, 0.9]``; the far-end reference separately, its peak
    also in ``[0.25, 0.9]`` (the loudspeaker path's gain is unknown to a canceller). Near-end
    speech is dry (close talk), as in the AEC Challenge's synthetic set.

    Items: ``(mic [T], far [T], targets [3, T])``, targets = near-end speech, echo, noise, with
    ``mic = targets.sum(0)`` exactly. :meth:`draw` gives the scene's parameters too.
    """

    def __init__(self, files: Sequence[str | Path], sample_rate: int = 16000, segment: float = 4.0,
                 length: int = 10_000, seed: int = 0, *,
                 rir_files: str | Path | Sequence[str | Path] | None = None,
                 simulate_rooms: bool | RoomSimulator = False, simulate_prob: float = 0.5,
                 noise_files: str | Path | Sequence[str | Path] | None = None, noise_prob: float = 0.8,
                 snr_db: tuple[float, float] | float = (5.0, 40.0),
                 ser_db: tuple[float, float] | float = (-10.0, 10.0),
                 delay_ms: tuple[float, float] | float = (0.0, 200.0),
                 nonlinear_prob: float = 0.5, path_change_prob: float = 0.2,
                 scenario_probs: Sequence[float] = (0.5, 0.25, 0.25),
                 nonlinearities: Sequence[str] = ("clip_tanh",), near_reverb_prob: float = 0.0,
                 synthetic_noise: float = 0.0, noise_span: tuple[float, float] = (0.0, 1.0)) -> None:
        self.sample_rate, self.length, self.seed = sample_rate, length, seed
        self.segment_samples = int(round(segment * sample_rate))
        if self.segment_samples < 1:
            raise ValueError(f"segment must be positive, got {segment} s")
        self.snr_db = _range("snr_db", snr_db)
        self.ser_db = _range("ser_db", ser_db)
        self.delay_ms = _range("delay_ms", delay_ms)
        if self.delay_ms[0] < 0:
            raise ValueError(f"delay_ms must be >= 0, got {self.delay_ms}")
        for name, p in (("simulate_prob", simulate_prob), ("noise_prob", noise_prob),
                        ("nonlinear_prob", nonlinear_prob), ("path_change_prob", path_change_prob),
                        ("near_reverb_prob", near_reverb_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.simulate_prob, self.noise_prob = float(simulate_prob), float(noise_prob)
        self.nonlinear_prob, self.path_change_prob = float(nonlinear_prob), float(path_change_prob)
        probs = np.asarray(scenario_probs, dtype=np.float64)
        if probs.shape != (3,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"scenario_probs must be 3 non-negative weights (double talk, far-end single "
                             f"talk, near-end single talk), got {list(scenario_probs)}")
        self.scenario_probs = probs / probs.sum()
        unknown = [k for k in nonlinearities if k not in NONLINEARITIES]
        if unknown or not nonlinearities:
            raise ValueError(f"nonlinearities must be a non-empty list of {list(NONLINEARITIES)}, got "
                             f"{list(nonlinearities)}")
        self.nonlinearities = tuple(nonlinearities)
        self.near_reverb_prob = float(near_reverb_prob)

        by_speaker: dict[str, list[np.ndarray]] = defaultdict(list)
        for f in files:
            wav, _ = read_audio(f, sample_rate=sample_rate, channels=1, downmix=True)
            by_speaker[speaker_of(f)].append(wav[0].double().numpy())
        self.speakers = sorted(by_speaker)
        if len(self.speakers) < 2:
            raise ValueError(f"echo scenes need at least 2 speakers (near end and far end differ), "
                             f"got {len(self.speakers)}")
        self.utterances = [by_speaker[s] for s in self.speakers]

        self.measured_rirs = MeasuredRIRs(rir_files, sample_rate) if rir_files is not None else None
        self.room_simulator = make_room_simulator(simulate_rooms, sample_rate, distance=(0.2, 1.5))
        self.noise = BackgroundNoise(noise_files, sample_rate, self.utterances, synthetic_noise, noise_span)

    def __len__(self) -> int:
        return self.length

    # -- pieces ------------------------------------------------------------------------------
    def _crop(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = self.segment_samples
        if len(wav) >= n:
            start = int(rng.integers(0, len(wav) - n + 1))
            return wav[start : start + n].copy()
        out = np.zeros(n)
        start = int(rng.integers(0, n - len(wav) + 1))
        out[start : start + len(wav)] = wav
        return out

    def _draw_rirs(self, rng: np.random.Generator, count: int) -> tuple[list[RIR] | None, dict[str, Any]]:
        """``count`` echo-path RIRs (one room when simulated), or ``None`` without RIR sources."""
        if self.measured_rirs is None and self.room_simulator is None:
            return None, {"kind": "delay only"}
        simulated = self.room_simulator is not None and (
            self.measured_rirs is None or rng.random() < self.simulate_prob)
        if simulated:
            rirs, room = self.room_simulator.sample(rng, count)
            return rirs, {"kind": "simulated", **room}
        return [self.measured_rirs.sample(rng) for _ in range(count)], {"kind": "measured"}

    def _echo_path(self, index: int, far: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The far-end signal as the microphone hears it (before the SER scaling)."""
        rng = np.random.default_rng((self.seed, index, _PATH_STREAM))
        n = len(far)
        delay_samples = int(round(rng.uniform(*self.delay_ms) * self.sample_rate / 1000))
        strength = float(rng.uniform(0.0, 1.0)) if rng.random() < self.nonlinear_prob else 0.0
        kind = "clip_tanh"
        if len(self.nonlinearities) > 1 and strength > 0:  # one more draw only when there is a choice
            kind = self.nonlinearities[int(rng.integers(len(self.nonlinearities)))]
        elif strength > 0:
            kind = self.nonlinearities[0]
        change_at = int(rng.uniform(0.3, 0.7) * n) if rng.random() < self.path_change_prob else None
        rirs, info = self._draw_rirs(rng, 2 if change_at is not None else 1)
        if kind == "soft_clip":
            played = soft_clip(far, strength)
        elif kind == "harmonic":
            played = harmonic_distortion(far, *(0.3 * strength * rng.uniform(0.0, 1.0, size=2)))
        else:
            played = loudspeaker_nonlinearity(far, strength)
        images = [played.copy()] if rirs is None else [convolve(played, r.rir, r.direct) for r in rirs]
        if change_at is not None and rirs is None:  # no RIRs: the path change is a gain change
            images.append(images[0] * rng.uniform(0.3, 1.0))
        images = [delay(image, delay_samples) for image in images]
        # the path switches at change_at (microphone time): from then on the microphone hears
        # the far end (all of its past, too) through the second path
        echo = images[0] if change_at is None else np.concatenate([images[0][:change_at], images[1][change_at:]])
        meta = {"delay_samples": delay_samples, "nonlinear_strength": strength,
                "nonlinearity": kind if strength > 0 else None, "path_change_at": change_at,
                "echo_path": {**info, "rirs": rirs}}
        return echo, meta

    def _near_reverb(self, index: int, near: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        """The near-end talker as the microphone hears it (reverberant in a
        ``near_reverb_prob`` share of the scenes), from generator ``(seed, index, 3)``."""
        if self.near_reverb_prob == 0.0:
            return near, None
        rng = np.random.default_rng((self.seed, index, _NEAR_REVERB_STREAM))
        if not rng.random() < self.near_reverb_prob:
            return near, None
        rirs, info = self._draw_rirs(rng, 1)
        if rirs is None:
            return near, None
        return convolve(near, rirs[0].rir, rirs[0].direct), {**info, "rirs": rirs}

    def _draw_noise(self, index: int, speakers: Sequence[int] = ()
                    ) -> tuple[np.ndarray | None, float | None, dict[str, Any]]:
        rng = np.random.default_rng((self.seed, index, _NOISE_STREAM))
        if not self.noise.available or not rng.random() < self.noise_prob:
            return None, None, {}
        noise, meta = self.noise.draw(rng, self.segment_samples, exclude=speakers)
        return noise, float(rng.uniform(*self.snr_db)), meta

    # -- a scene -----------------------------------------------------------------------------
    def draw(self, index: int, *, with_meta: bool = False):
        """Scene ``index``: ``(mic, far, targets)``; with ``with_meta``, ``(mic, far, targets,
        meta)`` where ``meta`` holds ``scenario``, ``speakers`` (near, far), ``ser_db``,
        ``snr_db`` (``None`` without noise), ``delay_samples``, ``nonlinear_strength``,
        ``nonlinearity`` (kind or ``None``), ``near_reverb`` (``None`` or the near-end RIR),
        ``path_change_at`` (sample or ``None``), ``echo_path`` (kind, RIRs, room),
        ``mic_scale``, ``far_scale`` and for noise ``noise_file``/``noise_start``."""
        rng = np.random.default_rng((self.seed, index))
        scenario = SCENARIOS[int(rng.choice(3, p=self.scenario_probs))]
        near_spk, far_spk = rng.choice(len(self.speakers), size=2, replace=False)
        near = self._crop(self.utterances[near_spk][rng.integers(len(self.utterances[near_spk]))], rng)
        far = self._crop(self.utterances[far_spk][rng.integers(len(self.utterances[far_spk]))], rng)
        ser = float(rng.uniform(*self.ser_db))
        mic_level, far_level = rng.uniform(0.25, 0.9, size=2)

        far = far / (np.abs(far).max() + 1e-12)
        near, near_reverb = self._near_reverb(index, near)
        echo, path_meta = self._echo_path(index, far)
        p_near = _power(near)
        p_echo = _power(echo)
        if p_echo > 0 and p_near > 0:
            echo = echo * np.sqrt(p_near / (p_echo * 10 ** (ser / 10)))
        noise, snr, noise_meta = self._draw_noise(index, (near_spk, far_spk))
        if noise is None:
            noise = np.zeros_like(near)
        elif _power(noise) > 0 and p_near > 0:
            noise = noise * np.sqrt(p_near / (_power(noise) * 10 ** (snr / 10)))
        if scenario == "farend_single":
            near = np.zeros_like(near)
        elif scenario == "nearend_single":
            far, echo = np.zeros_like(far), np.zeros_like(echo)

        mic_scale = mic_level / (np.abs(near + echo + noise).max() + 1e-12)
        far_scale = far_level / (np.abs(far).max() + 1e-12) if far.any() else 1.0
        targets = torch.from_numpy((np.stack([near, echo, noise]) * mic_scale).astype(np.float32))
        mic = targets.sum(0)
        far_t = torch.from_numpy((far * far_scale).astype(np.float32))
        if not with_meta:
            return mic, far_t, targets
        meta = {"scenario": scenario, "speakers": (self.speakers[near_spk], self.speakers[far_spk]),
                "ser_db": ser, "snr_db": snr, "mic_scale": float(mic_scale), "far_scale": float(far_scale),
                "near_reverb": near_reverb,
                **path_meta, **noise_meta}
        return mic, far_t, targets, meta

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.draw(index)


def _range(name: str, value: tuple[float, float] | float) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        value = (value, value)
    if len(value) != 2 or not value[0] <= value[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value}")
    return float(value[0]), float(value[1])


# ----------------------------------------------------------------------------- AEC Challenge

AEC_CHALLENGE_DIRS = {
    "mic": ("nearend_mic_signal", "nearend_mic_fileid_{}.wav"),
    "far": ("farend_speech", "farend_speech_fileid_{}.wav"),
    "near": ("nearend_speech", "nearend_speech_fileid_{}.wav"),
    "echo": ("echo_signal", "echo_fileid_{}.wav"),
}


class AECChallengeDataset(Dataset):
    """The ICASSP AEC Challenge synthetic set (or any folder in its layout).

    Args:
        root: the folder holding ``nearend_mic_signal/``, ``farend_speech/`` and, for
            training and scoring, ``nearend_speech/`` and ``echo_signal/``; file ``N`` of each
            is ``nearend_mic_fileid_N.wav``, ``farend_speech_fileid_N.wav``,
            ``nearend_speech_fileid_N.wav``, ``echo_fileid_N.wav``.
        sample_rate: rate of the returned signals (the set is at 16 kHz; others are resampled).
        split: ``"train"`` / ``"test"`` (the ``split`` column of ``root/meta.csv``), or
            ``None`` for every file id.
        segment: seconds per example, a random crop drawn from ``default_rng((seed, i))``;
            ``None``: whole clips.
        fileids: restrict to these ids.
        length: examples per epoch (default: one per clip); index ``i`` is clip
            ``i mod (number of clips)`` with its own crop, so training can draw more examples
            than there are clips.

    Items: ``(mic, far, targets [3, T])`` like :class:`EchoSimulationDataset`: targets are
    the near-end speech, the echo and the rest of the microphone signal (``mic - near -
    echo``: the near-end noise), so ``mic = targets.sum(0)``. Without ``nearend_speech/`` or
    ``echo_signal/`` the missing targets are NaN (inference and ERLE-free scoring only).
    ``meta(i)`` gives the clip's ``meta.csv`` row.
    """

    def __init__(self, root: str | Path, sample_rate: int = 16000, split: str | None = None,
                 segment: float | None = None, seed: int = 0, fileids: Sequence[int] | None = None,
                 length: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: AEC Challenge folder not found")
        for key in ("mic", "far"):
            folder = self.root / AEC_CHALLENGE_DIRS[key][0]
            if not folder.is_dir():
                raise FileNotFoundError(f"{self.root}: no {AEC_CHALLENGE_DIRS[key][0]}/ folder "
                                        "(expected the AEC Challenge synthetic layout)")
        self.sample_rate, self.seed = sample_rate, seed
        self.segment_samples = None if segment is None else int(round(segment * sample_rate))
        self.rows = self._read_meta()
        pattern = re.compile(r"nearend_mic_fileid_(\d+)\.wav$")
        ids = sorted(int(m.group(1)) for p in (self.root / AEC_CHALLENGE_DIRS["mic"][0]).iterdir()
                     if (m := pattern.match(p.name)))
        if split is not None:
            if not self.rows:
                raise FileNotFoundError(f"{self.root}/meta.csv: needed to select split {split!r}")
            ids = [i for i in ids if self.rows.get(i, {}).get("split") == split]
        if fileids is not None:
            wanted = {int(i) for i in fileids}
            ids = [i for i in ids if i in wanted]
        missing = [i for i in ids if not self.path("far", i).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.root}: far-end file missing for file id(s) {missing[:5]} "
                                    f"(e.g. {self.path('far', missing[0])})")
        if not ids:
            raise FileNotFoundError(f"{self.root}: no nearend_mic_fileid_N.wav files"
                                    + (f" in split {split!r}" if split else ""))
        self.fileids = ids
        self.length = len(ids) if length is None else int(length)

    def _read_meta(self) -> dict[int, dict[str, str]]:
        path = self.root / "meta.csv"
        if not path.is_file():
            return {}
        with path.open(newline="") as f:
            return {int(row["fileid"]): row for row in csv.DictReader(f) if row.get("fileid", "").isdigit()}

    def path(self, kind: str, fileid: int) -> Path:
        folder, name = AEC_CHALLENGE_DIRS[kind]
        return self.root / folder / name.format(fileid)

    def meta(self, index: int) -> dict[str, str]:
        return dict(self.rows.get(self.fileids[index % len(self.fileids)], {}))

    def __len__(self) -> int:
        return self.length

    def _read(self, kind: str, fileid: int) -> torch.Tensor | None:
        path = self.path(kind, fileid)
        if not path.is_file():
            return None
        return read_audio(path, sample_rate=self.sample_rate, channels=1, downmix=True)[0][0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        fileid = self.fileids[index % len(self.fileids)]
        signals = {kind: self._read(kind, fileid) for kind in AEC_CHALLENGE_DIRS}
        mic = signals["mic"]
        for kind, x in signals.items():
            if x is not None and x.shape[-1] != mic.shape[-1]:
                raise ValueError(f"{self.path(kind, fileid)}: {x.shape[-1]} samples, but "
                                 f"{self.path('mic', fileid).name} has {mic.shape[-1]}")
        nan = torch.full_like(mic, float("nan"))
        near = signals["near"] if signals["near"] is not None else nan
        echo = signals["echo"] if signals["echo"] is not None else nan
        targets = torch.stack([near, echo, mic - near - echo])
        far = signals["far"]
        if self.segment_samples is not None:
            mic, far, targets = self._crop(index, mic, far, targets)
        return mic, far, targets

    def _crop(self, index: int, mic: torch.Tensor, far: torch.Tensor, targets: torch.Tensor):
        n, total = self.segment_samples, mic.shape[-1]
        if total < n:
            pad = (0, n - total)
            return (torch.nn.functional.pad(mic, pad), torch.nn.functional.pad(far, pad),
                    torch.nn.functional.pad(targets, pad))
        start = int(np.random.default_rng((self.seed, index)).integers(0, total - n + 1))
        return mic[start : start + n], far[start : start + n], targets[:, start : start + n]
