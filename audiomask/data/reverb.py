"""Room impulse responses for dynamic mixing: measured RIRs, simulated rooms, convolution.

Conventions shared by every RIR this module hands out (an :class:`RIR`):

* ``rir`` is 1-D float64 at the dataset's rate, scaled so that its **direct path has unit
  gain** (measured: divided by the signed direct-path tap; simulated: multiplied by the
  source–microphone distance, undoing pyroomacoustics' 1/r law), so the direct sound in a
  reverberant image has the level and polarity of the dry source.
* ``direct`` is the index of the direct-path tap. :func:`convolve` drops the samples
  before it, so a reverberant image is **time-aligned with the dry source**: its direct
  sound sits at lag 0 and only reflections come later.

Measured RIRs: :class:`MeasuredRIRs` loads files (any rate, resampled once; a
multi-channel file, e.g. a binaural BRIR, offers each channel as a separate mono RIR) and
finds the direct path with :func:`direct_path_index`.

Simulated rooms: :class:`RoomSimulator` draws a shoebox room, an RT60, one microphone and one
position per source from documented ranges, and runs the image-source method of
pyroomacoustics (an optional extra: ``pip install audiomask[simulate]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from audiomask.audio import read_audio
from audiomask.data.speakers import audio_files

SIMULATE_HINT = "pip install audiomask[simulate]"


@dataclass
class RIR:
    """One room impulse response: ``rir`` (float64, direct path at unit gain), ``direct``
    (index of the direct-path tap) and ``info`` (where it came from)."""

    rir: np.ndarray
    direct: int
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- basics


def direct_path_index(rir: np.ndarray, sample_rate: int, threshold: float = 0.5,
                      window_ms: float = 1.0) -> int:
    """Index of the direct-path tap of a measured RIR.

    The direct sound is the first strong arrival, not always the largest tap (a BRIR's
    shadowed ear or a clap's ringing can make a reflection larger). So: the onset is the
    first sample with ``|h| >= threshold · max|h|``, and the direct path is the largest
    ``|h|`` in the ``window_ms`` after the onset (the peak of the band-limited pulse).
    """
    a = np.abs(np.asarray(rir, dtype=np.float64))
    peak = a.max()
    if not peak > 0:
        raise ValueError("RIR is all zeros")
    onset = int(np.argmax(a >= threshold * peak))
    stop = onset + max(1, int(round(window_ms * 1e-3 * sample_rate))) + 1
    return onset + int(np.argmax(a[onset:stop]))


def convolve(source: np.ndarray, rir: np.ndarray, direct: int = 0) -> np.ndarray:
    """Reverberant image of ``source``: FFT convolution with ``rir``, trimmed to
    ``len(source)`` and aligned on the direct path (output ``t`` = full convolution
    ``t + direct``), so the direct sound lines up with the dry ``source``. float64."""
    source = np.asarray(source, dtype=np.float64)
    rir = np.asarray(rir, dtype=np.float64)
    n = len(source)
    if not 0 <= direct < len(rir):
        raise ValueError(f"direct-path index {direct} outside the RIR (length {len(rir)})")
    from scipy.signal import fftconvolve

    return fftconvolve(source, rir)[direct : direct + n]


# ----------------------------------------------------------------------------- measured


class MeasuredRIRs:
    """Measured RIRs from files or a folder, resampled to ``sample_rate``.

    Args:
        files: a folder (every audio file under it), one file, or a list of files.
        sample_rate: rate of the returned RIRs.
        channel: channel to use from multi-channel files; ``None`` = a random channel per
            draw (each channel of a binaural RIR is a valid mono RIR). Mono files always
            give channel 0.

    :meth:`sample` picks a file uniformly, then a channel.
    """

    def __init__(self, files: str | Path | Sequence[str | Path], sample_rate: int,
                 channel: int | None = None) -> None:
        self.files = audio_files(files)
        if not self.files:
            raise ValueError("no RIR files given")
        self.sample_rate, self.channel = sample_rate, channel
        self.rirs: list[list[RIR]] = []
        for f in self.files:
            wav, _ = read_audio(f, sample_rate=sample_rate)
            per_channel = []
            for c, h in enumerate(wav.double().numpy()):
                if not np.any(h):
                    raise ValueError(f"{f}: channel {c} of the RIR is all zeros")
                d = direct_path_index(h, sample_rate)
                per_channel.append(RIR(h / h[d], d, {"file": str(f), "channel": c}))
            self.rirs.append(per_channel)

    def __len__(self) -> int:
        return len(self.rirs)

    def sample(self, rng: np.random.Generator) -> RIR:
        chans = self.rirs[rng.integers(len(self.rirs))]
        if len(chans) == 1:
            return chans[0]
        if self.channel is None:
            return chans[rng.integers(len(chans))]
        return chans[min(self.channel, len(chans) - 1)]


# ----------------------------------------------------------------------------- simulated


def require_pyroomacoustics():
    """Import pyroomacoustics or raise an ImportError that says how to install it."""
    try:
        import pyroomacoustics
    except ImportError as e:
        raise ImportError(
            f"simulated rooms need pyroomacoustics, an optional extra: {SIMULATE_HINT} "
            f"(or pip install 'pyroomacoustics>=0.7') [{e}]") from e
    return pyroomacoustics


@dataclass
class RoomSimulator:
    """Image-source shoebox rooms (pyroomacoustics), one room per mixture.

    Every draw is uniform in these ranges (metres, seconds):

    * ``room_dim``: length 4–10, width 4–8, height 2.5–4;
    * ``rt60``: 0.2–0.6 s, the nominal (Sabine) reverberation time: wall absorption from
      Sabine's formula for that room (``pyroomacoustics.inverse_sabine``), one material on
      all walls (the T30 measured on the simulated RIRs is 0.75–1.5× this, median 1.1×);
    * ``mic``: ``wall_margin`` (0.5 m) from every wall, height 1.0–1.8;
    * each source: ``wall_margin`` from every wall, height 1.2–1.9, distance to the
      microphone 0.5–3.0 m (rejection sampling; sources may be anywhere around the mic).

    The image-source order is Sabine's order capped at ``max_order`` (60) to bound the
    cost (≤ ~0.25 s per two-source room on one core); the cap only bites in small, very
    reverberant rooms and keeps their T30 at or above the nominal RT60. Air absorption is
    off; the simulation has no randomness of its own, so a draw depends only on ``rng``. RIRs come back with unit direct-path gain (``× distance``)
    and ``direct`` = the geometric delay plus pyroomacoustics' fractional-delay offset.
    """

    sample_rate: int
    room_dim: tuple[tuple[float, float], ...] = ((4.0, 10.0), (4.0, 8.0), (2.5, 4.0))
    rt60: tuple[float, float] = (0.2, 0.6)
    mic_height: tuple[float, float] = (1.0, 1.8)
    source_height: tuple[float, float] = (1.2, 1.9)
    distance: tuple[float, float] = (0.5, 3.0)
    wall_margin: float = 0.5
    max_order: int = 60

    def __post_init__(self) -> None:
        require_pyroomacoustics()  # fail early, with the install hint (no module kept: picklable)

    def _position(self, rng: np.random.Generator, dims: np.ndarray, height: tuple[float, float]
                  ) -> np.ndarray:
        m = self.wall_margin
        lo_z, hi_z = max(m, height[0]), min(dims[2] - m, height[1])
        return np.array([rng.uniform(m, dims[0] - m), rng.uniform(m, dims[1] - m),
                         rng.uniform(lo_z, hi_z)])

    def sample(self, rng: np.random.Generator, n_src: int) -> tuple[list[RIR], dict[str, Any]]:
        """A room, a microphone and ``n_src`` source positions; one RIR per source."""
        pra = require_pyroomacoustics()
        dims = np.array([rng.uniform(lo, hi) for lo, hi in self.room_dim])
        rt60 = rng.uniform(*self.rt60)
        mic = self._position(rng, dims, self.mic_height)
        sources = []
        for _ in range(n_src):
            for _ in range(1000):
                pos = self._position(rng, dims, self.source_height)
                if self.distance[0] <= np.linalg.norm(pos - mic) <= self.distance[1]:
                    break
            sources.append(pos)
        c = pra.constants.get("c")
        e_abs, order = pra.inverse_sabine(rt60, dims.tolist(), c=c)
        order = min(order, self.max_order)
        room = pra.ShoeBox(dims.tolist(), fs=self.sample_rate, materials=pra.Material(e_abs),
                           max_order=order, air_absorption=False)
        for pos in sources:
            room.add_source(pos.tolist())
        room.add_microphone(mic.tolist())
        room.compute_rir()
        offset = pra.constants.get("frac_delay_length") // 2
        rirs = []
        for k, pos in enumerate(sources):
            dist = float(np.linalg.norm(pos - mic))
            h = np.asarray(room.rir[0][k], dtype=np.float64) * dist
            direct = int(round(dist / c * self.sample_rate)) + offset
            rirs.append(RIR(h, direct, {"distance": dist, "position": pos.tolist()}))
        info = {"room_dim": dims.tolist(), "rt60": rt60, "max_order": order, "mic": mic.tolist()}
        return rirs, info


def make_room_simulator(simulate_rooms: "bool | RoomSimulator", sample_rate: int,
                        **defaults) -> "RoomSimulator | None":
    """The simulator a dataset uses: ``None`` for ``False``, a :class:`RoomSimulator` at
    ``sample_rate`` with ``defaults`` for ``True``, or the given one (its rate must match)."""
    if isinstance(simulate_rooms, RoomSimulator):
        if simulate_rooms.sample_rate != sample_rate:
            raise ValueError(f"RoomSimulator rate {simulate_rooms.sample_rate} != dataset rate {sample_rate}")
        return simulate_rooms
    return RoomSimulator(sample_rate, **defaults) if simulate_rooms else None
