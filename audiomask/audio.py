"""Audio file I/O: validated reading, soxr resampling and atomic writing.

Everything goes through libsndfile (via ``soundfile``), so any format it reads
works: WAV, FLAC, Ogg/Vorbis, Ogg/Opus, AIFF, MP3, ...  Waveforms are float
tensors shaped ``[channels, time]``; values are returned as stored, in [-1, 1]
for integer PCM files (float files may exceed it).

Bad audio raises :class:`AudioError` and nothing else, with a one-line message
``"<path>: <problem>"``.  :func:`read_audio` refuses a missing file, a file
libsndfile cannot decode, a truncated file, an empty file and NaN/Inf samples.

Truncation is detected two ways:

* WAV (RIFF/RIFX/RF64) and AIFF/AIFC: the data chunk size in the header is
  compared with the bytes actually in the file (libsndfile silently shortens
  such files to what is there, so this needs our own header walk).  A size of
  0 or >= 0x7FFFF000 is the "length unknown" marker streaming writers use
  (ffmpeg/sox to a pipe) and is accepted.
* Every format: decoding must yield as many frames as the header promised
  (catches a cut FLAC or MP3), and decoder errors are reported.

A cut Ogg file cannot always be told apart from a shorter one; libsndfile
usually reports it as 0 frames, so it is refused as empty.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from audiomask.fileio import atomic_target

__all__ = [
    "AudioError",
    "AudioInfo",
    "audio_info",
    "check_waveform",
    "read_audio",
    "resample",
    "write_audio",
]

PathLike = str | os.PathLike

# Extensions that are not libsndfile format names.
_EXT_FORMATS = {"AIF": "AIFF", "AIFC": "AIFF", "OGA": "OGG", "OPUS": "OGG"}
# Subtypes that hold values outside [-1, 1]; every other subtype would clip.
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS"}
# Data sizes written by streaming encoders that could not seek back.
_UNKNOWN_SIZE_MIN = 0x7FFFF000
#: the highest sample rate read (DXD and 768 kHz converters are the top of real audio);
#: a header claiming more is corrupt or hostile and would make resampling blow up
MAX_SAMPLE_RATE = 768_000
#: how read_audio's channel-count error suggests averaging; front ends (CLI, server) replace
#: it with their own spelling of the option
DOWNMIX_HINT = "pass downmix=True"


class AudioError(Exception):
    """Bad audio: missing, undecodable, truncated, empty, non-finite, wrong shape.

    ``str(err)`` is one line, ``"<path>: <problem>"``.  Attributes: ``path``
    (the file path, or the name given to :func:`check_waveform`, as a string)
    and ``problem`` (the text after the colon).

    ``AudioError(message)`` with a single argument is also accepted (that is
    how PyTorch DataLoader re-raises a worker's exception, so it stays an
    AudioError); then ``path`` is ``None`` and ``problem`` is the whole message.
    Instances pickle with both attributes intact.
    """

    def __init__(self, path: PathLike | None, problem: str | None = None) -> None:
        if problem is None:
            self.path, self.problem = None, str(path)
            message = self.problem
        else:
            self.path = os.fspath(path) if path is not None else None
            self.problem = " ".join(str(problem).split())  # force one line
            message = self.problem if self.path is None else f"{self.path}: {self.problem}"
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio file (what libsndfile reports)."""

    sample_rate: int  # Hz
    channels: int
    frames: int  # samples per channel
    duration: float  # seconds, frames / sample_rate
    format: str  # libsndfile major format, e.g. "WAV", "FLAC", "OGG"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS"


def check_waveform(wav: torch.Tensor | np.ndarray, name: str = "input") -> None:
    """Raise :class:`AudioError` if ``wav`` (any shape ``[..., time]``) is empty
    or contains NaN/Inf.  ``name`` is used as the "path" in the message."""
    x = torch.as_tensor(wav) if isinstance(wav, np.ndarray) else wav
    if x.numel() == 0:
        raise AudioError(name, f"empty (0 samples, shape {tuple(x.shape)})")
    if x.is_floating_point() or x.is_complex():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise AudioError(name, f"contains NaN or Inf samples ({bad} of {x.numel()})")


def _decode_reason(exc: Exception) -> str:
    reason = getattr(exc, "error_string", None) or str(exc)
    return re.sub(r"\s+", " ", reason).strip()


def _data_chunk_shortfall(path: Path) -> tuple[int, int] | None:
    """For WAV/AIFF files: ``(declared, present)`` data bytes when the header
    promises more audio data than the file holds, else ``None``.  Other
    formats, and headers this walk does not understand, give ``None``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12:
            return None
        magic, form = head[:4], head[8:12]
        if magic in (b"RIFF", b"RF64", b"BW64") and form == b"WAVE":
            endian = "<"
        elif magic == b"RIFX" and form == b"WAVE":
            endian = ">"
        elif magic == b"FORM" and form in (b"AIFF", b"AIFC"):
            endian = ">"
        else:
            return None
        pos, ds64_size = 12, None
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", f.read(8))
            body = pos + 8
            if chunk_id == b"ds64":  # RF64: 64-bit RIFF size, then data size
                raw = f.read(16)
                if len(raw) == 16:
                    ds64_size = struct.unpack("<QQ", raw)[1]
            elif chunk_id in (b"data", b"SSND"):
                declared = chunk_size
                if chunk_id == b"data" and chunk_size == 0xFFFFFFFF and ds64_size:
                    declared = ds64_size
                elif declared == 0 or declared >= _UNKNOWN_SIZE_MIN:
                    return None  # streamed file, length unknown
                present = size - body
                return (declared, present) if declared > present else None
            pos = body + chunk_size + (chunk_size & 1)
        return None


def _open(path: PathLike) -> sf.SoundFile:
    """Open ``path`` for reading after the existence and header checks."""
    p = Path(path)
    try:
        if not p.exists():
            raise AudioError(path, "file not found")
        if p.is_dir():
            raise AudioError(path, "is a directory, not an audio file")
        if p.stat().st_size == 0:
            raise AudioError(path, "empty (0 bytes)")
        shortfall = _data_chunk_shortfall(p)
    except OSError as e:  # e.g. a folder on the way that may not be searched
        raise AudioError(path, f"cannot open ({e.strerror or e})") from e
    if shortfall is not None:
        declared, present = shortfall
        raise AudioError(
            path, f"truncated (header declares {declared} bytes of audio data, file holds {present})"
        )
    try:
        f = sf.SoundFile(p)
    except sf.SoundFileError as e:
        raise AudioError(path, f"cannot decode ({_decode_reason(e)})") from e
    except OSError as e:
        raise AudioError(path, f"cannot open ({e.strerror or e})") from e
    if not 0 < f.samplerate <= MAX_SAMPLE_RATE or f.channels < 1:
        f.close()
        problem = (f"{f.channels} channels in the header" if f.channels < 1 else
                   f"sample rate {f.samplerate} Hz in the header is not plausible (at most {MAX_SAMPLE_RATE} Hz)")
        raise AudioError(path, f"corrupt header: {problem}")
    return f


def audio_info(path: PathLike) -> AudioInfo:
    """Header facts of an audio file, without decoding the samples.

    Raises :class:`AudioError` for a missing, unreadable or (WAV/AIFF)
    truncated file.  A zero-length file is reported (``frames == 0``), not
    refused; only :func:`read_audio` decodes and fully validates.
    """
    with _open(path) as f:
        return AudioInfo(
            sample_rate=f.samplerate,
            channels=f.channels,
            frames=f.frames,
            duration=f.frames / f.samplerate,
            format=f.format,
            subtype=f.subtype,
        )


def read_audio(
    path: PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    downmix: bool = False,
    dtype: torch.dtype = torch.float32,
    min_samples: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read and validate an audio file.

    Args:
        path: any file libsndfile reads.
        sample_rate: if given and different from the file's, resample with soxr
            (HQ).  The file's own rate is ``audio_info(path).sample_rate``.
        channels: required channel count (after ``downmix``); a mismatch raises
            :class:`AudioError`.  Nothing is ever up-mixed.
        downmix: average all channels into one (output has 1 channel).
        dtype: floating-point dtype of the result.
        min_samples: refuse results shorter than this many samples per channel,
            counted at the returned rate.

    Returns:
        ``(wav, sr)``: ``wav`` is ``[channels, time]`` of ``dtype`` on the CPU,
        ``sr`` the rate of ``wav`` (``sample_rate`` if given, else the file's).

    Raises:
        AudioError: missing, undecodable, truncated, empty or too short file,
            NaN/Inf samples, or the wrong number of channels.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype, got {dtype}")
    if channels is not None and channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if downmix and channels not in (None, 1):
        raise ValueError(f"downmix=True gives 1 channel, but channels={channels} was asked for")
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")

    with _open(path) as f:
        file_sr, file_channels, frames = f.samplerate, f.channels, f.frames
        if file_channels > 1 and channels == 1 and not downmix:
            raise AudioError(
                path,
                f"has {file_channels} channels, expected 1 ({DOWNMIX_HINT} to average them)",
            )
        if channels is not None and not downmix and file_channels != channels:
            raise AudioError(
                path, f"has {file_channels} channel{'s' * (file_channels != 1)}, expected {channels}"
            )
        read_dtype = "float64" if dtype == torch.float64 else "float32"
        try:
            data = f.read(dtype=read_dtype, always_2d=True)  # [time, channels]
        except sf.SoundFileError as e:
            raise AudioError(path, f"cannot decode ({_decode_reason(e)})") from e

    if len(data) < frames:
        raise AudioError(path, f"truncated (header declares {frames} frames, only {len(data)} decodable)")
    if len(data) == 0:
        raise AudioError(path, "empty (0 samples)")
    if not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise AudioError(path, f"contains NaN or Inf samples ({bad} of {data.size})")

    if downmix and file_channels > 1:
        data = data.mean(axis=1, keepdims=True, dtype=data.dtype)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))  # [channels, time]

    sr = file_sr
    if sample_rate is not None and sample_rate != file_sr:
        wav, sr = resample(wav, file_sr, sample_rate), sample_rate
    if min_samples is not None and wav.shape[-1] < min_samples:
        raise AudioError(
            path, f"too short ({wav.shape[-1]} samples at {sr} Hz, need at least {min_samples})"
        )
    return wav.to(dtype), sr


def resample(wav: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample ``[..., time]`` to ``[..., round(time * target_sr / orig_sr)]``
    (halves round up, as soxr does) with soxr's HQ filter, every leading index
    as its own channel.

    Returns ``wav`` itself when the rates match; otherwise a new tensor of the
    same dtype on the same device.  Computed on the CPU in float32 (float64
    stays float64); not differentiable (the result carries no gradient).
    """
    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if not (isinstance(rate, numbers.Real) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"{name} must be a positive number, got {rate!r}")
    if not wav.is_floating_point():
        raise TypeError(f"resample needs a floating-point tensor, got {wav.dtype}")
    if orig_sr == target_sr:
        return wav
    if wav.ndim == 0:
        raise ValueError("resample needs a [..., time] tensor, got a scalar")

    lead, n_in = wav.shape[:-1], wav.shape[-1]
    work = torch.float64 if wav.dtype == torch.float64 else torch.float32
    x = wav.detach().to("cpu", work).reshape(-1, n_in)  # [channels, time]
    if x.numel() == 0:
        n_out = int(n_in * target_sr / orig_sr + 0.5)  # soxr's output length
        return wav.new_zeros(*lead, n_out)
    y = soxr.resample(np.ascontiguousarray(x.numpy().T), orig_sr, target_sr, quality="HQ")
    y = torch.from_numpy(np.ascontiguousarray(y.reshape(y.shape[0], -1).T))
    return y.reshape(*lead, y.shape[-1]).to(wav.device, wav.dtype)


def _format_for(path: Path) -> str:
    ext = path.suffix[1:].upper()
    fmt = _EXT_FORMATS.get(ext, ext)
    if fmt not in sf.available_formats():
        raise ValueError(f"{path}: unknown audio extension {path.suffix!r} (try .wav, .flac, .ogg)")
    return fmt


def write_audio(
    path: PathLike,
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = None,
) -> Path:
    """Write ``[time]`` or ``[channels, time]`` float samples atomically.

    The format follows the extension (``.wav .flac .ogg .aiff .aif .au .w64
    .caf .opus`` ...).  Default ``subtype``: ``VORBIS`` for Ogg; otherwise
    ``PCM_16`` when all samples lie in [-1, 1], else ``FLOAT`` so nothing is
    clipped (formats without float, e.g. FLAC, then raise :class:`AudioError`).
    An integer subtype with samples outside [-1, 1] is refused the same way.

    The data goes to a hidden temporary file in the target directory
    (``.<stem>.tmp-<hex><ext>``), is fsynced and then ``os.replace``d onto
    ``path``: readers never see a partial file, and on any error the temporary
    file is removed and an existing ``path`` is left untouched.  Parent
    directories are created.  Returns ``path`` as a :class:`Path`.

    Raises:
        AudioError: empty or NaN/Inf samples, out-of-range samples for the
            subtype, or libsndfile refusing to encode.
        ValueError: bad shape, rate, extension or subtype for the format.
    """
    path = Path(path)
    fmt = _format_for(path)
    if not (isinstance(sample_rate, numbers.Integral) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    sample_rate = int(sample_rate)

    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu()
        if wav.dtype in (torch.float16, torch.bfloat16):
            wav = wav.float()
        wav = wav.numpy()
    data = np.asarray(wav)
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"{path}: expected floating-point samples, got {data.dtype}")
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float32)
    if data.ndim not in (1, 2):
        raise ValueError(f"{path}: expected [time] or [channels, time], got shape {data.shape}")
    check_waveform(data, name=os.fspath(path))
    if data.ndim == 2 and data.shape[0] > data.shape[1]:
        raise ValueError(
            f"{path}: shape {data.shape} has more channels than samples; "
            "expected [channels, time] (transpose a [time, channels] array)"
        )
    peak = float(np.abs(data).max())
    if subtype is None:
        if fmt == "OGG":
            subtype = "OPUS" if path.suffix.lower() == ".opus" else "VORBIS"
        elif peak > 1.0 and sf.check_format(fmt, "FLOAT"):
            subtype = "FLOAT"
        elif sf.check_format(fmt, "PCM_16"):
            subtype = "PCM_16"
        else:
            subtype = sf.default_subtype(fmt)
    subtype = subtype.upper()
    if not sf.check_format(fmt, subtype):
        raise ValueError(f"{path}: subtype {subtype!r} is not valid for {fmt} files")
    if peak > 1.0 and subtype not in _FLOAT_SUBTYPES:
        raise AudioError(
            path,
            f"peak {peak:.4g} exceeds 1.0 and would clip in {fmt}/{subtype} "
            "(scale the signal, or write FLOAT, e.g. to .wav)",
        )

    try:
        with atomic_target(path) as tmp:
            sf.write(tmp, np.ascontiguousarray(data.T), sample_rate, subtype=subtype, format=fmt)
    except sf.SoundFileError as e:
        raise AudioError(path, f"cannot encode ({_decode_reason(e)})") from e
    return path
