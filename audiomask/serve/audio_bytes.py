"""Audio in and out of memory for the server: uploads are decoded and results encoded without
any file on disk.

Decoding goes through :func:`audiomask.audio.read_audio` — the same checks as every command
(undecodable, truncated WAV/AIFF, empty, NaN/Inf, channel count) — on an anonymous in-memory
file (``memfd_create``, Linux), which has no name in any folder and is gone when closed. Where
``memfd_create`` does not exist the bytes are decoded from a ``BytesIO`` with the same checks
except the WAV/AIFF header walk that tells a truncated file from a short one.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from audiomask.audio import AudioError, read_audio


@dataclass(frozen=True)
class Decoded:
    """A decoded upload: ``wav [channels, T]`` float32 at ``sample_rate``."""

    wav: torch.Tensor
    sample_rate: int


# How the files libsndfile reads begin: WAV, RF64, Wave64, AIFF, FLAC, Ogg, CAF, AU, NIST, MP3
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"riff", b"FORM", b"fLaC", b"OggS", b"caff", b".snd",
                b"NIST_1A", b"ID3")


def looks_like_audio(data: bytes) -> bool:
    """Whether ``data`` starts like an audio file (a magic number above, or an MPEG audio frame
    sync): a sniff that tells audio from a form, not a promise that it decodes."""
    return data.startswith(_AUDIO_MAGIC) or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def probe_duration(data: bytes, name: str) -> tuple[float, int]:
    """``(seconds, sample_rate)`` from the header, without decoding (to refuse long uploads
    before spending memory on them). :class:`AudioError` when there is no readable header."""
    if not data:
        raise AudioError(name, "empty (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            return f.frames / f.samplerate, f.samplerate
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        raise AudioError(name, f"cannot decode ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    """libsndfile's reason, without the "Error opening <_io.BytesIO object at 0x…>:" prefix."""
    return re.sub(r"^Error opening <[^>]*>:\s*", "", " ".join(str(e).split()))


def decode_audio(data: bytes, name: str, downmix: bool = False) -> Decoded:
    """Decode ``data`` (any format libsndfile reads) to mono; :class:`AudioError` names ``name``."""
    if not data:
        raise AudioError(name, "empty (0 bytes)")
    if not hasattr(os, "memfd_create"):
        return _decode_bytesio(data, name, downmix)
    fd = os.memfd_create("audiomask-upload", getattr(os, "MFD_CLOEXEC", 0))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        try:
            wav, rate = read_audio(f"/proc/self/fd/{fd}", channels=1, downmix=downmix)
        except AudioError as e:
            raise AudioError(name, _user_words(e.problem)) from None
    finally:
        os.close(fd)
    return Decoded(wav, rate)


def _user_words(problem: str) -> str:
    """``read_audio``'s advice speaks Python; the server's option is the ``downmix`` parameter."""
    return problem.replace("pass downmix=True", "add ?downmix=true")


def _decode_bytesio(data: bytes, name: str, downmix: bool) -> Decoded:
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            frames, channels, rate = f.frames, f.channels, f.samplerate
            array = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        raise AudioError(name, f"cannot decode ({_reason(e)})") from None
    if len(array) < frames:
        raise AudioError(name, f"truncated (header declares {frames} frames, only {len(array)} decodable)")
    if len(array) == 0:
        raise AudioError(name, "empty (0 samples)")
    if not np.isfinite(array).all():
        raise AudioError(name, f"contains NaN or Inf samples ({int(array.size - np.isfinite(array).sum())} "
                               f"of {array.size})")
    if channels > 1 and not downmix:
        raise AudioError(name, f"has {channels} channels, expected 1 (add ?downmix=true to average them)")
    array = array.mean(axis=1, keepdims=True) if channels > 1 else array
    return Decoded(torch.from_numpy(np.ascontiguousarray(array.T)), rate)


def wav_bytes(wav: torch.Tensor, sample_rate: int) -> bytes:
    """``[T]`` float samples as a 32-bit float WAV (exact: the numbers the model gave)."""
    buf = io.BytesIO()
    sf.write(buf, wav.detach().cpu().numpy().astype(np.float32), sample_rate, subtype="FLOAT", format="WAV")
    return buf.getvalue()


def zip_sources(estimates: torch.Tensor, sample_rate: int, stem: str) -> bytes:
    """``[n_src, T]`` → a zip of ``<stem>_s1.wav``, ``<stem>_s2.wav``, … (stored, not deflated:
    float samples hardly compress)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for i, source in enumerate(estimates):
            archive.writestr(f"{stem}_s{i + 1}.wav", wav_bytes(source, sample_rate))
    return buf.getvalue()


def safe_stem(filename: str | None) -> str:
    """A file-name stem safe to put in a zip and a header: the upload's base name without its
    extension, other characters than letters, digits, ``-``, ``_`` and ``.`` replaced."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(base)[0]).strip("._")
    return stem[:100] or "audio"
