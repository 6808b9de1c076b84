"""Tests for audiomask.audio: validated reading, soxr resampling, atomic writing."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from audiomask import audio
from audiomask.audio import (
    AudioError,
    AudioInfo,
    audio_info,
    check_waveform,
    read_audio,
    resample,
    write_audio,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEECH = DATA / "librispeech-mini" / "103-1240-0000.flac"
NOISE = DATA / "noise" / "running_tap.wav"
STEREO_RIR = DATA / "rir" / "brir_clap.wav"
needs_data = pytest.mark.skipif(
    not (SPEECH.is_file() and NOISE.is_file() and STEREO_RIR.is_file()),
    reason=f"real audio not found under {DATA}",
)


def _pcm_exact(n: int, channels: int, bits: int, seed: int = 0) -> np.ndarray:
    """[channels, n] float32 values exactly representable in `bits`-bit PCM."""
    rng = np.random.default_rng(seed)
    scale = 2 ** (bits - 1)
    ints = rng.integers(-scale, scale, size=(channels, n))
    return (ints / scale).astype(np.float32)


def _band_snr_db(ref: np.ndarray, est: np.ndarray, sr: int, f_max: float) -> float:
    """SNR of est against ref counting only frequencies below f_max."""
    R, E = np.fft.rfft(ref), np.fft.rfft(est)
    band = np.fft.rfftfreq(len(ref), 1 / sr) < f_max
    return 10 * np.log10(np.sum(np.abs(R[band]) ** 2) / np.sum(np.abs(R[band] - E[band]) ** 2))


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "name, subtype, bits",
    [
        ("a.wav", "PCM_16", 16),
        ("a.wav", "PCM_24", 24),
        ("a.flac", "PCM_16", 16),
        ("a.flac", "PCM_24", 24),
        ("a.aiff", "PCM_16", 16),
        ("a.aif", None, 16),
        ("a.au", "PCM_16", 16),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm_round_trip_is_bit_exact(tmp_path, name, subtype, bits, channels):
    x = _pcm_exact(4000, channels, bits)
    out = write_audio(tmp_path / name, torch.from_numpy(x), 16000, subtype=subtype)
    assert out == tmp_path / name and out.is_file()
    info = audio_info(out)
    assert (info.sample_rate, info.channels, info.frames) == (16000, channels, 4000)
    assert info.subtype == (subtype or "PCM_16")
    assert info.duration == pytest.approx(0.25)
    y, sr = read_audio(out)
    assert sr == 16000 and y.dtype == torch.float32 and y.shape == (channels, 4000)
    assert torch.equal(y, torch.from_numpy(x))
    assert _files(tmp_path) == [name]  # no temp files left behind


def test_float_wav_round_trip_exact_and_unclipped(tmp_path):
    x = torch.randn(2, 3000, dtype=torch.float64) * 3  # peak well above 1
    out = write_audio(tmp_path / "loud.wav", x, 8000)
    assert audio_info(out).subtype == "FLOAT"  # default avoids clipping
    y, _ = read_audio(out)
    assert torch.equal(y, x.float())
    y64, _ = read_audio(out, dtype=torch.float64)
    assert y64.dtype == torch.float64 and torch.equal(y64, x.float().double())


def test_default_subtypes(tmp_path):
    x = torch.linspace(-1, 1, 1000)  # peak exactly 1 fits PCM
    assert audio_info(write_audio(tmp_path / "a.wav", x, 16000)).subtype == "PCM_16"
    assert audio_info(write_audio(tmp_path / "a.flac", x, 16000)).subtype == "PCM_16"
    assert audio_info(write_audio(tmp_path / "a.ogg", x, 16000)).subtype == "VORBIS"
    assert audio_info(write_audio(tmp_path / "b.wav", x * 1.5, 16000)).subtype == "FLOAT"


@needs_data
def test_ogg_round_trip_within_tolerance(tmp_path):
    x, sr = read_audio(SPEECH)
    x = x[:, : 2 * sr]
    out = write_audio(tmp_path / "s.ogg", x, sr)
    info = audio_info(out)
    assert (info.format, info.subtype, info.sample_rate) == ("OGG", "VORBIS", sr)
    y, _ = read_audio(out)
    assert y.shape == x.shape
    snr = 10 * torch.log10(x.pow(2).sum() / (x - y).pow(2).sum())
    assert snr > 10  # lossy codec: waveform SNR is ~15 dB at default quality
    assert _band_snr_db(x[0].numpy(), y[0].numpy(), sr, 4000) > 10


def test_write_accepts_numpy_1d_and_creates_parents(tmp_path):
    x = _pcm_exact(500, 1, 16)[0]
    out = write_audio(str(tmp_path / "deep" / "er" / "x.wav"), x, 22050)
    assert isinstance(out, Path) and out.is_file()
    y, sr = read_audio(out)
    assert sr == 22050 and y.shape == (1, 500) and np.array_equal(y[0].numpy(), x)


def test_written_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_audio(tmp_path / "p.wav", torch.zeros(100), 16000)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- real speech


@needs_data
def test_read_real_librispeech_flac():
    ref = sf.info(str(SPEECH))
    wav, sr = read_audio(SPEECH)
    assert sr == ref.samplerate == 16000
    assert wav.shape == (1, ref.frames) and wav.dtype == torch.float32
    assert wav.abs().max() <= 1.0 and wav.abs().max() > 0.05
    direct, _ = sf.read(str(SPEECH), dtype="float32")
    assert np.array_equal(wav[0].numpy(), direct)
    info = audio_info(SPEECH)
    assert info == AudioInfo(16000, 1, ref.frames, ref.frames / 16000, "FLAC", "PCM_16")


@needs_data
def test_resample_real_speech_16k_8k_16k():
    wav, sr = read_audio(SPEECH)
    x = wav[0, : 5 * sr]
    down = resample(x, 16000, 8000)
    assert down.shape == (x.shape[-1] // 2,) and down.dtype == torch.float32
    # identical to calling soxr directly
    direct = soxr.resample(x.numpy(), 16000, 8000, quality="HQ")
    assert np.array_equal(down.numpy(), direct)
    back = resample(down, 8000, 16000)
    assert back.shape == x.shape
    # below the 4 kHz Nyquist of the 8 kHz signal the round trip is transparent
    assert _band_snr_db(x.numpy(), back.numpy(), 16000, 3500) > 30
    # read_audio(sample_rate=...) resamples the same way and reports the new rate
    wav8, sr8 = read_audio(SPEECH, sample_rate=8000)
    assert sr8 == 8000 and audio_info(SPEECH).sample_rate == 16000
    assert torch.equal(wav8, resample(wav, 16000, 8000))


def test_resample_shapes_dtypes_and_identity():
    x = torch.randn(2, 3, 1000, dtype=torch.float64)
    y = resample(x, 16000, 44100)
    assert y.shape == (2, 3, 2756) and y.dtype == torch.float64  # round(1000 * 44100 / 16000)
    # every leading index is an independent channel
    assert torch.equal(y[1, 2], resample(x[1, 2], 16000, 44100))
    assert resample(x, 16000, 16000) is x
    h = resample(x.half(), 16000, 8000)
    assert h.dtype == torch.float16 and h.shape == (2, 3, 500)
    assert resample(torch.zeros(0, 160), 16000, 8000).shape == (0, 80)
    # a 1 kHz tone keeps its amplitude after resampling
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t)
    tone8 = resample(tone, 16000, 8000)
    ref = torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 8000)
    assert (tone8[500:-500] - ref[500:-500]).abs().max() < 1e-3


@pytest.mark.parametrize("orig, target", [(0, 8000), (16000, -1), (16000, float("nan"))])
def test_resample_rejects_bad_rates(orig, target):
    with pytest.raises(ValueError):
        resample(torch.zeros(10), orig, target)


def test_resample_rejects_integer_tensors():
    with pytest.raises(TypeError):
        resample(torch.zeros(10, dtype=torch.int16), 16000, 8000)


# --------------------------------------------------------------------------- channels


@needs_data
def test_multichannel_refused_without_downmix():
    with pytest.raises(AudioError) as e:
        read_audio(STEREO_RIR, channels=1)
    msg = str(e.value)
    assert "brir_clap.wav" in msg and "2 channels, expected 1" in msg and "downmix=True" in msg
    assert e.value.path == str(STEREO_RIR)


@needs_data
def test_downmix_averages_channels():
    direct, sr = sf.read(str(STEREO_RIR), dtype="float32", always_2d=True)
    both, sr2 = read_audio(STEREO_RIR)
    assert sr2 == sr == 44100 and both.shape == (2, len(direct))
    assert np.array_equal(both.numpy(), direct.T)
    mono, _ = read_audio(STEREO_RIR, channels=1, downmix=True)
    assert mono.shape == (1, len(direct))
    np.testing.assert_allclose(mono[0].numpy(), direct.mean(axis=1), atol=1e-7)
    mono2, _ = read_audio(STEREO_RIR, downmix=True)  # downmix alone also gives mono
    assert torch.equal(mono, mono2)
    # downmix then resample
    m16, sr16 = read_audio(STEREO_RIR, downmix=True, sample_rate=16000)
    assert sr16 == 16000 and m16.shape == (1, round(len(direct) * 16000 / 44100))


def test_channel_count_mismatch(tmp_path):
    out = write_audio(tmp_path / "mono.wav", torch.zeros(100), 16000)
    with pytest.raises(AudioError, match="mono.wav: has 1 channel, expected 2"):
        read_audio(out, channels=2)
    with pytest.raises(ValueError):
        read_audio(out, channels=2, downmix=True)


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(AudioError) as e:
        read_audio(tmp_path / "nothere.wav")
    assert str(e.value) == f"{tmp_path / 'nothere.wav'}: file not found"
    assert e.value.problem == "file not found"
    with pytest.raises(AudioError, match="nothere.wav: file not found"):
        audio_info(tmp_path / "nothere.wav")


def test_corrupt_random_bytes(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as e:
        read_audio(p)
    msg = str(e.value)
    assert "garbage.wav: cannot decode (" in msg and "\n" not in msg
    with pytest.raises(AudioError, match="cannot decode"):
        audio_info(p)


@needs_data
def test_truncated_real_wav(tmp_path):
    raw = NOISE.read_bytes()
    p = tmp_path / "cut.wav"
    p.write_bytes(raw[: len(raw) // 2])
    # libsndfile alone does not notice: it shortens the file to what is there
    assert sf.info(str(p)).frames < sf.info(str(NOISE)).frames
    for fn in (read_audio, audio_info):
        with pytest.raises(AudioError) as e:
            fn(p)
        assert "cut.wav: truncated" in str(e.value)
        assert "header declares" in e.value.problem


@needs_data
def test_truncated_real_flac(tmp_path):
    raw = SPEECH.read_bytes()
    p = tmp_path / "cut.flac"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioError) as e:
        read_audio(p)
    assert "cut.flac" in str(e.value)
    assert "truncated" in e.value.problem or "cannot decode" in e.value.problem


@pytest.mark.parametrize("name", ["a.aiff", "a.wav"])
def test_truncated_written_file_odd_cut(tmp_path, name):
    full = write_audio(tmp_path / name, _pcm_exact(5000, 2, 16), 16000)
    raw = full.read_bytes()
    p = tmp_path / f"cut_{name}"
    p.write_bytes(raw[:-1001])  # not even a whole frame boundary
    with pytest.raises(AudioError, match=f"cut_{name}: truncated"):
        read_audio(p)


def test_streamed_wav_with_unknown_length_is_accepted(tmp_path):
    x = _pcm_exact(3000, 1, 16)
    p = write_audio(tmp_path / "s.wav", x, 16000)
    raw = bytearray(p.read_bytes())
    i = raw.find(b"data")
    raw[i + 4 : i + 8] = struct.pack("<I", 0xFFFFFFFF)  # what pipe writers emit
    p.write_bytes(bytes(raw))
    y, _ = read_audio(p)
    assert torch.equal(y, torch.from_numpy(x))


def test_zero_length_files(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(str(p), np.zeros(0, np.float32), 16000)  # valid header, no samples
    assert audio_info(p).frames == 0
    with pytest.raises(AudioError, match=r"empty.wav: empty \(0 samples\)"):
        read_audio(p)
    z = tmp_path / "zero.flac"
    z.write_bytes(b"")
    with pytest.raises(AudioError, match=r"zero.flac: empty \(0 bytes\)"):
        read_audio(z)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_file(tmp_path, bad):
    x = np.zeros(1000, np.float32)
    x[123] = bad
    p = tmp_path / "mix.wav"
    sf.write(str(p), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError) as e:
        read_audio(p)
    assert str(e.value).startswith(f"{p}: contains NaN or Inf samples")


def test_min_samples(tmp_path):
    p = write_audio(tmp_path / "short.wav", torch.zeros(800), 16000)
    assert read_audio(p, min_samples=800)[0].shape == (1, 800)
    with pytest.raises(AudioError, match="short.wav: too short"):
        read_audio(p, min_samples=801)
    with pytest.raises(AudioError, match="too short"):  # counted at the returned rate
        read_audio(p, sample_rate=8000, min_samples=500)


def test_directory_is_refused(tmp_path):
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(AudioError, match="d.wav: is a directory"):
        read_audio(tmp_path / "d.wav")


# --------------------------------------------------------------------------- AudioError / check_waveform


def test_audio_error_attributes_and_pickle():
    err = AudioError("x.wav", "has 2 channels,\nexpected 1")
    assert str(err) == "x.wav: has 2 channels, expected 1"  # always one line
    assert (err.path, err.problem) == ("x.wav", "has 2 channels, expected 1")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is AudioError and str(again) == str(err) and again.path == "x.wav"
    single = AudioError("whole message")  # how DataLoader workers re-raise
    assert str(single) == "whole message" and single.path is None


def test_check_waveform():
    check_waveform(torch.randn(2, 100))
    check_waveform(np.zeros(10, np.int16))
    x = torch.zeros(2, 100)
    x[1, 7] = float("nan")
    with pytest.raises(AudioError, match=r"^mix: contains NaN or Inf samples \(1 of 200\)$"):
        check_waveform(x, name="mix")
    with pytest.raises(AudioError, match=r"^input: empty"):
        check_waveform(torch.zeros(2, 0))
    with pytest.raises(AudioError, match="est: contains NaN"):
        check_waveform(np.array([0.0, np.inf]), name="est")


# --------------------------------------------------------------------------- atomic writing


def test_nan_write_creates_nothing(tmp_path):
    x = torch.zeros(2, 100)
    x[1, 5] = float("nan")
    with pytest.raises(AudioError, match="out.wav: contains NaN or Inf"):
        write_audio(tmp_path / "out.wav", x, 16000)
    assert _files(tmp_path) == []


def test_failed_write_does_not_clobber_existing(tmp_path):
    out = write_audio(tmp_path / "keep.flac", _pcm_exact(1000, 1, 16), 16000)
    before = out.read_bytes()
    with pytest.raises(AudioError):
        write_audio(out, torch.full((1000,), float("inf")), 16000)
    with pytest.raises(AudioError, match="peak 2 exceeds 1.0"):  # FLAC cannot hold it
        write_audio(out, torch.full((1000,), 2.0), 16000)
    with pytest.raises(AudioError, match="would clip"):  # explicit integer subtype
        write_audio(tmp_path / "x.wav", torch.full((10,), -1.5), 16000, subtype="PCM_16")
    assert out.read_bytes() == before
    assert _files(tmp_path) == ["keep.flac"]


def test_error_during_encoding_removes_temp_and_keeps_old(tmp_path, monkeypatch):
    out = write_audio(tmp_path / "keep.wav", torch.zeros(100), 16000)
    before = out.read_bytes()
    seen = []
    real_write = sf.write

    def failing_write(file, data, *args, **kwargs):
        seen.append(Path(file))
        real_write(file, data[: len(data) // 2], *args, **kwargs)  # partial output...
        raise OSError("disk full")  # ...then a failure

    monkeypatch.setattr(audio.sf, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_audio(out, torch.ones(1000) * 0.5, 16000)
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".keep.tmp-") and tmp.suffix == ".wav"
    assert not tmp.exists()
    assert out.read_bytes() == before and _files(tmp_path) == ["keep.wav"]


def test_write_goes_through_hidden_temp_and_replace(tmp_path, monkeypatch):
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((Path(src), Path(dst)))
        assert sf.info(str(src)).frames == 100  # complete before it becomes visible
        real_replace(src, dst)

    monkeypatch.setattr(audio.os, "replace", spy)
    out = write_audio(tmp_path / "mix.flac", torch.zeros(100), 16000)
    ((src, dst),) = calls
    assert dst == out and src.parent == tmp_path and src.name.startswith(".mix.tmp-")
    assert src.suffix == ".flac" and _files(tmp_path) == ["mix.flac"]


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(path="a.xyz"), ValueError),  # unknown extension
        (dict(wav=torch.zeros(100, 2)), ValueError),  # [time, channels]
        (dict(wav=torch.zeros(1, 2, 100)), ValueError),
        (dict(sample_rate=0), ValueError),
        (dict(subtype="VORBIS"), ValueError),  # not valid for WAV
        (dict(wav=np.zeros(100, np.int16)), TypeError),
        (dict(wav=torch.zeros(2, 0)), AudioError),
    ],
)
def test_write_rejects_bad_arguments(tmp_path, kwargs, exc):
    args = dict(path="a.wav", wav=torch.zeros(2, 100), sample_rate=16000, subtype=None) | kwargs
    args["path"] = tmp_path / args["path"]
    with pytest.raises(exc):
        write_audio(**args)
    assert _files(tmp_path) == []
