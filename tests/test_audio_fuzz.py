"""Bounded fuzzing of read_audio (issue 24): random bytes, random WAV headers and mutated real
files must each load or raise AudioError — never another exception, never a hang."""

import io
import signal
import struct

import numpy as np
import pytest
import soundfile as sf

from audiomask.audio import AudioError, read_audio

CASES = 200
SEED = 24


def random_wav_header(rng: np.random.Generator) -> bytes:
    """RIFF/WAVE with a fmt chunk of random (often absurd) fields and a data chunk whose
    declared size need not match what follows."""
    tag = int(rng.choice([1, 3, 0xFFFE, 6, 7, int(rng.integers(0, 1 << 16))]))
    channels = int(rng.choice([0, 1, 2, 8, int(rng.integers(0, 1 << 16))]))
    rate = int(rng.choice([0, 1, 8000, 44100, 2_000_000_000, int(rng.integers(0, 1 << 32))]))
    bits = int(rng.choice([0, 8, 16, 24, 32, 64, int(rng.integers(0, 1 << 16))]))
    align = int(rng.choice([max(1, channels * bits // 8) & 0xFFFF, 0, int(rng.integers(0, 1 << 16))]))
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    if tag == 0xFFFE:
        fmt += struct.pack("<HHI16s", 22, bits, 0, rng.bytes(16))
    payload = rng.bytes(int(rng.integers(0, 4000)))
    declared = int(rng.choice([len(payload), 0, 0xFFFFFFFF, int(rng.integers(0, 1 << 32))]))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + payload
    return b"RIFF" + struct.pack("<I", int(rng.choice([len(body), int(rng.integers(0, 1 << 32))]))) + body


def real_file(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    fmt, subtype = [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("AIFF", "PCM_24")][rng.integers(4)]
    sf.write(buf, rng.standard_normal((int(rng.integers(1, 3000)), int(rng.integers(1, 3)))) * 0.1,
             int(rng.choice([8000, 16000, 44100])), format=fmt, subtype=subtype)
    return buf.getvalue()


def mutated(rng: np.random.Generator) -> bytes:
    data = bytearray(real_file(rng))
    kind = rng.integers(3)
    if kind == 0:  # flip random bytes, more often in the header
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(0, min(len(data), 64) if rng.random() < 0.7 else len(data)))
            data[i] = int(rng.integers(256))
        return bytes(data)
    if kind == 1:  # cut anywhere
        return bytes(data[: int(rng.integers(0, len(data)))])
    return bytes(data) + rng.bytes(int(rng.integers(1, 500)))  # trailing garbage


def case(rng: np.random.Generator) -> bytes:
    kind = rng.integers(4)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 2000)))
    if kind == 1:
        return random_wav_header(rng)
    if kind == 2:
        return b"RIFF" + rng.bytes(int(rng.integers(0, 100)))
    return mutated(rng)


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM for the hang guard")
def test_read_audio_survives_random_bytes_and_headers(tmp_path):
    rng = np.random.default_rng(SEED)
    path = tmp_path / "fuzz.wav"
    loaded = refused = 0

    def hang(signum, frame):
        raise TimeoutError("read_audio hung")

    old = signal.signal(signal.SIGALRM, hang)
    try:
        for i in range(CASES):
            path.write_bytes(case(rng))
            for kwargs in ({}, {"sample_rate": 8000, "channels": 1, "downmix": True}):
                signal.alarm(10)
                try:
                    wav, rate = read_audio(path, **kwargs)
                    assert wav.ndim == 2 and wav.shape[-1] > 0 and rate > 0 and bool(wav.isfinite().all())
                    loaded += 1
                except AudioError as e:
                    assert "\n" not in str(e) and str(e).startswith(str(path)), (i, str(e))
                    refused += 1
                except Exception as e:  # noqa: BLE001 - any other exception is the failure under test
                    raise AssertionError(f"case {i} {kwargs}: {type(e).__name__}: {e}") from e
                finally:
                    signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert loaded + refused == 2 * CASES
    assert loaded > 20 and refused > 100, (loaded, refused)  # the cases reach both outcomes
