"""Noise synthesised from training data: spectra, babble speaker exclusion, dataset wiring."""

import numpy as np
import pytest
import torch

from audiomask.data import DynamicMixingDataset, NoiseSynthesizer, coloured_noise, split_by_speaker
from conftest import SHARED_DATA


def _slope_db_per_decade(noise: np.ndarray, rate: int) -> float:
    """Least-squares slope of the power spectrum (dB) against log10 frequency, 100 Hz-3 kHz."""
    spec = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(len(noise), 1 / rate)
    band = (f > 100) & (f < 3000)
    return float(np.polyfit(np.log10(f[band]), 10 * np.log10(spec[band] + 1e-20), 1)[0])


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_has_the_power_law_it_is_asked_for(exponent):
    rng = np.random.default_rng(0)
    noise = coloured_noise(rng, 16000 * 4, 16000, exponent)
    # f^-beta in power is -10*beta dB per decade.
    assert _slope_db_per_decade(noise, 16000) == pytest.approx(-10 * exponent, abs=1.0)


def test_envelope_and_modulation_change_the_noise_as_documented():
    n, rate = 16000 * 4, 16000
    flat = coloured_noise(np.random.default_rng(1), n, rate, 0.0)
    tilted = coloured_noise(np.random.default_rng(1), n, rate, 0.0, band_gains_db=[-20, 0, 20])
    assert _slope_db_per_decade(tilted, rate) > _slope_db_per_decade(flat, rate) + 10
    modulated = coloured_noise(np.random.default_rng(1), n, rate, 0.0, modulation=(0.8, 1.0))
    frame_rms = np.sqrt((modulated.reshape(-1, 800) ** 2).mean(1))
    assert frame_rms.max() / frame_rms.min() > 3  # 1 ± 0.8 envelope: ~9x between peak and trough


def test_babble_never_uses_the_excluded_speakers():
    pool = [[np.full(100, float(s + 1))] for s in range(6)]  # speaker s is the constant s + 1
    synth = NoiseSynthesizer(pool, 8000, babble_prob=1.0, babble_talkers=(3, 3))
    for seed in range(20):
        noise, meta = synth.sample(np.random.default_rng(seed), 50, exclude=[0, 1])
        assert meta["noise_kind"] == "babble" and len(meta["babble_speakers"]) == 3
        assert not {0, 1} & set(meta["babble_speakers"])
        assert noise == pytest.approx(np.full(50, 3.0))  # three unit-RMS constants


def test_dataset_with_synthetic_noise_mixes_at_the_drawn_snr(speech_files):  # skipped without ../shared/data
    files, _ = split_by_speaker(speech_files, 25, seed=0)
    ds = DynamicMixingDataset(files[:20], 8000, segment=1.0, length=8, seed=3, synthetic_noise=1.0,
                              snr_db=(0.0, 10.0))
    kinds = set()
    for i in range(8):
        mix, src, _, meta = ds.draw(i, with_meta=True)
        speech = meta["images"].sum(0)
        snr = 10 * torch.log10(speech.pow(2).mean() / meta["noise"].pow(2).mean())
        assert float(snr) == pytest.approx(meta["snr_db"], abs=1e-3)
        assert torch.allclose(mix, speech + meta["noise"], atol=1e-6)
        kinds.add(meta["noise_kind"])
    assert kinds == {"babble", "coloured"}
    again = DynamicMixingDataset(files[:20], 8000, segment=1.0, length=8, seed=3, synthetic_noise=1.0,
                                 snr_db=(0.0, 10.0))
    assert torch.equal(again[5][0], ds[5][0])  # resumable: a function of (seed, index)


def test_noise_prob_and_span_and_defaults_unchanged(speech_files):  # skipped without ../shared/data
    files, _ = split_by_speaker(speech_files, 25, seed=0)
    noise_dir = SHARED_DATA / "noise"
    plain = DynamicMixingDataset(files[:10], 8000, segment=1.0, length=4, seed=1, noise_files=noise_dir)
    explicit = DynamicMixingDataset(files[:10], 8000, segment=1.0, length=4, seed=1, noise_files=noise_dir,
                                    synthetic_noise=0.0, noise_prob=1.0, noise_span=(0.0, 1.0))
    for i in range(4):
        assert torch.equal(plain[i][0], explicit[i][0])
    some = DynamicMixingDataset(files[:10], 8000, segment=1.0, length=40, seed=1, noise_files=noise_dir,
                                noise_prob=0.5)
    noisy = [some.draw(i, with_meta=True)[3]["snr_db"] is not None for i in range(40)]
    assert 10 <= sum(noisy) <= 30
    tail = DynamicMixingDataset(files[:10], 8000, segment=1.0, length=4, seed=1, noise_files=noise_dir,
                                noise_span=(0.8, 1.0))
    full = DynamicMixingDataset(files[:10], 8000, segment=1.0, length=4, seed=1, noise_files=noise_dir)
    for a, b in zip(tail.noise.recordings, full.noise.recordings):
        assert len(a) == pytest.approx(0.2 * len(b), abs=2)
        np.testing.assert_array_equal(a, b[int(0.8 * len(b)):])
    with pytest.raises(ValueError, match="noise_span"):
        DynamicMixingDataset(files[:10], 8000, noise_files=noise_dir, noise_span=(0.9, 0.1))



def test_background_noise_crops_its_span_and_names_bad_input(tmp_path):
    import soundfile as sf

    from audiomask.data import BackgroundNoise, noise_spans

    rec = np.arange(8000, dtype=np.float64) / 8000  # a ramp: a crop's values say where it came from
    sf.write(tmp_path / "ramp.wav", rec, 8000, subtype="DOUBLE")
    tail = BackgroundNoise(tmp_path / "ramp.wav", 8000, span=noise_spans(0.25)[1])
    assert len(tail.recordings[0]) == 2000
    for seed in range(20):
        crop, meta = tail.draw(np.random.default_rng(seed), 500)
        assert crop.shape == (500,) and crop.min() >= 0.75 and meta["noise_file"].endswith("ramp.wav")
        np.testing.assert_allclose(crop, rec[6000 + meta["noise_start"]: 6500 + meta["noise_start"]])
    looped, meta = tail.draw(np.random.default_rng(0), 5000)  # longer than the span: wraps within it
    assert looped.shape == (5000,) and looped.min() >= 0.75
    assert noise_spans(0.0) == ((0.0, 1.0), (0.0, 1.0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        BackgroundNoise(tmp_path / "empty", 8000)
    with pytest.raises(ValueError, match="no noise recordings in"):
        BackgroundNoise([], 8000)
    with pytest.raises(ValueError, match="no background noise configured"):
        BackgroundNoise(None, 8000).draw(np.random.default_rng(0), 10)
    with pytest.raises(ValueError, match="data.noise_split"):
        noise_spans(1.0)
