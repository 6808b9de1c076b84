"""Dynamic mixing: speakers, splits, determinism, backward compatibility, noise, reverberation.

Every test asserts numbers on real data from ``../shared/data`` (LibriSpeech speech, real
noise recordings, measured RIRs).
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomask.data import DynamicMixingDataset, split_by_speaker
from audiomask.data.reverb import MeasuredRIRs, convolve, direct_path_index

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIBRI, NOISE, RIRS = DATA / "librispeech-mini", DATA / "noise", DATA / "rir"


@pytest.fixture(scope="module")
def all_files() -> list[Path]:
    if not LIBRI.is_dir() or not NOISE.is_dir() or not RIRS.is_dir():
        pytest.skip(f"real data not found under {DATA}")
    return sorted(LIBRI.glob("*.flac"))


@pytest.fixture(scope="module")
def files(all_files) -> list[Path]:
    return all_files[:12]  # 12 speakers: enough for mixing, quick to load


def xcorr_lag(a, b, max_lag: int) -> int:
    """Lag (samples) of ``a`` relative to the dry ``b`` at the peak of their cross-correlation
    whitened by ``b``'s spectrum (GCC with Roth weighting, ``G_ab / G_bb``): for ``a = h * b``
    it is a regularised estimate of ``h``, so the peak sits at the RIR's strongest tap."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nfft = 1 << (2 * len(a)).bit_length()
    fa, fb = np.fft.rfft(a, nfft), np.fft.rfft(b, nfft)
    pb = np.abs(fb) ** 2
    xc = np.fft.irfft(fa * np.conj(fb) / (pb + 1e-3 * pb.mean()), nfft)
    xc = np.concatenate([xc[-max_lag:], xc[: max_lag + 1]])
    return int(np.argmax(np.abs(xc))) - max_lag


# ----------------------------------------------------------------------------- speakers


def test_mixtures_never_pair_a_speaker_with_itself(files):
    for n_src in (2, 3):
        ds = DynamicMixingDataset(files, 8000, segment=0.1, n_src=n_src, length=3000, seed=3)
        for i in range(1500):
            spk = ds.draw(i)[2]
            assert len(set(spk)) == n_src, (i, spk)


def test_split_by_speaker_keeps_validation_speakers_out_of_training(all_files):
    train_files, valid_files = split_by_speaker(all_files, 25)
    assert len(train_files) + len(valid_files) == len(all_files) == 251
    train = DynamicMixingDataset(train_files, 8000, segment=0.1, length=10**6, seed=1)
    valid = DynamicMixingDataset(valid_files, 8000, segment=0.1, length=100, seed=2)
    assert len(valid.speakers) == 25 and len(train.speakers) == 251 - 25
    assert set(train.speakers).isdisjoint(valid.speakers)
    used = set()
    for i in range(0, 10**6, 997):  # ~1000 draws spread over the epoch
        used.update(train.draw(i)[2])
    assert used.isdisjoint(valid.speakers)
    assert len(used) > 200  # the draws really cover the training speakers
    assert {s for i in range(100) for s in valid.draw(i)[2]} <= set(valid.speakers)


# ----------------------------------------------------------------------------- determinism


def test_same_index_same_example_across_instances(files):
    kw = dict(noise_files=NOISE, snr_db=(0, 10), rir_files=RIRS, reverb_prob=0.5)
    a = DynamicMixingDataset(files, 8000, 1.0, seed=5, **kw)
    b = DynamicMixingDataset(files, 8000, 1.0, seed=5, **kw)
    for i in (0, 1, 7, 123):
        (ma, sa), (mb, sb) = a[i], b[i]
        assert torch.equal(ma, mb) and torch.equal(sa, sb)
    m0, m1 = a[0][0], a[1][0]
    assert not torch.equal(m0, m1) and (m0 - m1).abs().max() > 0.01
    c = DynamicMixingDataset(files, 8000, 1.0, seed=6, **kw)
    assert not torch.equal(c[0][0], m0)


# Recorded with the pre-change DynamicMixingDataset (git 65323f8), before any edit:
# (config, index) -> (speakers, float64 sum of mix, float64 energy of sources).
FROZEN = {
    ("8k", 0): (["1183", "1116"], -2.3409777055248924, 164.64262115560842),
    ("8k", 1): (["1088", "1235"], -3.9786584402381777, 101.96589909480159),
    ("8k", 5): (["1116", "1081"], 0.7042591142526362, 103.03310833694948),
    ("8k", 999): (["1040", "1081"], -0.5359709351905622, 510.1289463434423),
    ("16k3", 0): (["1183", "1098", "118"], -0.519752383348532, 413.23732263015415),
    ("16k3", 1): (["1235", "1246", "118"], -6.958736156644591, 91.34146421486196),
    ("16k3", 5): (["1246", "1088", "103"], 15.153283923049457, 131.06326464562895),
    ("16k3", 999): (["1040", "1069", "1116"], 0.7089854943260434, 195.9069155363938),
}
CONFIGS = {"8k": {}, "16k3": dict(sample_rate=16000, segment=1.5, n_src=3, sir_db=3.0, seed=7)}


def reference_draw(ds: DynamicMixingDataset, index: int):
    """The pre-change ``draw``, verbatim, on the dataset's loaded utterances."""
    rng = np.random.default_rng((ds.seed, index))
    chosen = rng.choice(len(ds.speakers), size=ds.n_src, replace=False)
    sources = []
    for s in chosen:
        utts = ds.utterances[s]
        wav = utts[rng.integers(len(utts))]
        n = ds.segment_samples
        if len(wav) >= n:
            start = rng.integers(0, len(wav) - n + 1)
            wav = wav[start : start + n]
        else:
            out = np.zeros(n, dtype=np.float32)
            start = rng.integers(0, n - len(wav) + 1)
            out[start : start + len(wav)] = wav
            wav = out
        rms = np.sqrt(np.mean(wav**2)) + 1e-8
        gain_db = rng.uniform(-ds.sir_db / 2, ds.sir_db / 2)
        sources.append(wav / rms * 10 ** (gain_db / 20))
    src = np.stack(sources).astype(np.float32)
    peak = np.abs(src.sum(0)).max() + 1e-8
    src *= rng.uniform(0.25, 0.9) / peak
    src_t = torch.from_numpy(src)
    return src_t.sum(0), src_t, [ds.speakers[s] for s in chosen]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_default_arguments_reproduce_pre_change_output(files, config):
    kw = CONFIGS[config]
    ds = DynamicMixingDataset(files, **kw)
    # the old positional signature still works and means the same
    positional = DynamicMixingDataset(files, kw.get("sample_rate", 8000), kw.get("segment", 3.0),
                                      kw.get("n_src", 2), 10_000, kw.get("sir_db", 5.0), kw.get("seed", 0))
    for (cfg, i), (speakers, mix_sum, energy) in FROZEN.items():
        if cfg != config:
            continue
        mix, src, spk = ds.draw(i)
        ref_mix, ref_src, ref_spk = reference_draw(ds, i)
        assert torch.equal(mix, ref_mix) and torch.equal(src, ref_src) and spk == ref_spk  # bit-exact
        assert torch.equal(positional[i][0], mix) and torch.equal(ds[i][1], src)
        assert torch.equal(mix, src.sum(0))
        assert spk == speakers
        assert float(mix.double().sum()) == pytest.approx(mix_sum, rel=1e-5, abs=1e-5)
        assert float((src.double() ** 2).sum()) == pytest.approx(energy, rel=1e-5)
    with pytest.raises(TypeError):  # new arguments are keyword-only
        DynamicMixingDataset(files, 8000, 3.0, 2, 10, 5.0, 0, NOISE)


# ----------------------------------------------------------------------------- noise


def test_noise_at_drawn_snr_and_clean_targets(files):
    dry = DynamicMixingDataset(files, 16000, 1.0, seed=4)
    noisy = DynamicMixingDataset(files, 16000, 1.0, seed=4, noise_files=NOISE, snr_db=(-5.0, 20.0))
    noise_wavs = {str(f): sf.read(f, dtype="float64")[0] for f in sorted(NOISE.glob("*.wav"))}
    snrs, used = [], set()
    for i in range(40):
        mix, src, spk, meta = noisy.draw(i, with_meta=True)
        d_mix, d_src, d_spk = dry.draw(i)
        speech, noise = meta["images"].sum(0), meta["noise"]
        assert torch.equal(mix, speech + noise)  # mix = sum(sources) + noise, exactly
        measured = 10 * np.log10(float((speech.double() ** 2).sum() / (noise.double() ** 2).sum()))
        assert abs(measured - meta["snr_db"]) < 0.01
        assert -5.0 <= meta["snr_db"] <= 20.0
        snrs.append(meta["snr_db"])
        # targets stay clean: the same speech as without noise, up to the overall level
        assert spk == d_spk and torch.allclose(src, d_src * (src.norm() / d_src.norm()), atol=1e-6)
        assert 0.25 - 1e-6 <= float(mix.abs().max()) <= 0.9 + 1e-6
        # the noise is a crop of the recording it names, only scaled
        n = noise.double().numpy()
        ref = noise_wavs[meta["noise_file"]][meta["noise_start"] : meta["noise_start"] + len(n)]
        assert np.allclose(n, ref * (n @ ref / (ref @ ref)), atol=1e-6)
        used.add(meta["noise_file"])
    assert len(used) == 3 and np.ptp(snrs) > 15  # all files, the whole SNR range


def test_short_noise_is_looped(files, tmp_path):
    x, sr = sf.read(NOISE / "running_tap.wav", dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, x[sr : sr + 4000], sr, subtype="FLOAT")  # 0.25 s of real noise
    ds = DynamicMixingDataset(files, 16000, 1.0, noise_files=[short], snr_db=(5, 5))
    for i in range(3):
        mix, src, spk, meta = ds.draw(i, with_meta=True)
        noise = meta["noise"]
        assert torch.allclose(noise[:12000], noise[4000:], rtol=0, atol=1e-7)  # period 4000
        assert abs(noise.std() / noise[:4000].std() - 1) < 0.05  # looped, never zero-padded
        assert meta["snr_db"] == 5.0


# ----------------------------------------------------------------------------- reverb


def test_convolve_is_linear_convolution_aligned_on_the_direct_path():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(3000)
    h = np.zeros(1500)
    h[120] = 1.0
    h[140:] = 0.3 * rng.standard_normal(1360) * np.exp(-np.arange(1360) / 200)
    assert direct_path_index(h, 8000) == 120
    y = convolve(s, h, 120)
    assert np.allclose(y, np.convolve(s, h)[120:3120], atol=1e-10)
    assert xcorr_lag(y, s, 500) == 0
    assert xcorr_lag(np.convolve(s, h)[:3000], s, 500) == 120  # what the alignment removes


def test_direct_path_found_in_a_44k_rir_file(tmp_path):
    rng = np.random.default_rng(1)
    h = np.zeros(22050)  # 0.5 s at 44.1 kHz, direct path at 10 ms, a strong echo at 14 ms
    h[441] = 0.6
    h[617] = -1.0
    h[700:] += 0.1 * rng.standard_normal(22050 - 700) * np.exp(-np.arange(22050 - 700) / 4000)
    path = tmp_path / "synthetic_rir.wav"
    sf.write(path, h.astype(np.float32), 44100, subtype="FLOAT")
    for rate in (8000, 16000):
        bank = MeasuredRIRs(path, rate)
        rir = bank.sample(np.random.default_rng(0))
        assert abs(rir.direct - 0.010 * rate) <= 1  # the first arrival, not the larger echo
        assert rir.rir[rir.direct] == 1.0  # unit direct-path gain (and polarity)


def test_measured_reverb_changes_mixture_keeps_dry_targets_and_alignment(files):
    dry = DynamicMixingDataset(files, 8000, 2.0, seed=9)
    rev = DynamicMixingDataset(files, 8000, 2.0, seed=9, rir_files=RIRS)
    assert len(rev.measured_rirs) == 7
    aligned, used = 0, set()
    for i in range(16):
        mix, src, spk, meta = rev.draw(i, with_meta=True)
        d_mix, d_src, d_spk = dry.draw(i)
        images = meta["images"]
        assert meta["reverb"]["kind"] == "measured"
        assert torch.equal(mix, images.sum(0))  # mix = sum of the reverberant images, exactly
        assert spk == d_spk and torch.allclose(src, d_src * (src.norm() / d_src.norm()), atol=1e-6)
        corr = float(torch.dot(mix, src.sum(0)) / (mix.norm() * src.sum(0).norm()))
        assert corr < 0.97  # the mixture really is reverberant
        for k, r in enumerate(meta["reverb"]["rirs"]):
            used.add((r.info["file"], r.info["channel"]))
            assert r.rir[r.direct] == 1.0
            lag = xcorr_lag(images[k], src[k], 2000)
            strongest = int(np.argmax(np.abs(r.rir))) - r.direct  # >= 0: reflections come later
            # the image keeps the RIR's timing from its direct path on: the correlation peak is
            # at lag 0 when the direct path is the strongest arrival, else at that reflection
            assert abs(lag - strongest) <= 2, (r.info, lag, strongest)
            aligned += strongest == 0 and abs(lag) <= 2
    assert aligned >= 16 and len(used) >= 8


def test_reverb_prob_and_reverberant_target(files):
    rev = DynamicMixingDataset(files, 8000, 0.5, rir_files=RIRS, reverb_prob=0.5,
                               noise_files=NOISE, snr_db=(10, 10))
    flags = []
    for i in range(200):
        meta = rev.draw(i, with_meta=True)[3]
        flags.append(meta["reverb"] is not None)
    assert 70 <= sum(flags) <= 130  # Binomial(200, 0.5): ±4.2 sigma
    tgt = DynamicMixingDataset(files, 8000, 0.5, rir_files=RIRS, reverberant_target=True,
                               noise_files=NOISE, snr_db=(10, 10))
    for i in range(3):
        mix, src, spk, meta = tgt.draw(i, with_meta=True)
        assert torch.equal(src, meta["images"]) and torch.equal(mix, src.sum(0) + meta["noise"])


def test_bad_arguments(files):
    with pytest.raises(ValueError, match="snr_db"):
        DynamicMixingDataset(files, noise_files=NOISE, snr_db=(10, 0))
    with pytest.raises(ValueError, match="snr_db"):
        DynamicMixingDataset(files, noise_files=NOISE, snr_db=(1, 2, 3))
    assert DynamicMixingDataset(files, segment=0.1, noise_files=NOISE, snr_db=7).draw(0, with_meta=True)[3]["snr_db"] == 7.0
    with pytest.raises(ValueError, match="reverb_prob"):
        DynamicMixingDataset(files, rir_files=RIRS, reverb_prob=1.5)


def test_missing_pyroomacoustics_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install audiomask\[simulate\]"):
        DynamicMixingDataset(files, simulate_rooms=True)


@pytest.mark.skipif(importlib.util.find_spec("pyroomacoustics") is None,
                    reason="pyroomacoustics not installed (pip install audiomask[simulate])")
def test_simulated_rooms(files):
    kw = dict(simulate_rooms=True, noise_files=NOISE, snr_db=(5, 15))
    a = DynamicMixingDataset(files, 8000, 1.0, seed=11, **kw)
    b = DynamicMixingDataset(files, 8000, 1.0, seed=11, **kw)
    dry = DynamicMixingDataset(files, 8000, 1.0, seed=11)
    sim = a.room_simulator
    c = pickle.loads(pickle.dumps(a))  # DataLoader workers (spawn) get a pickled copy
    assert torch.equal(c[3][0], a[3][0])
    for i in range(4):
        mix, src, spk, meta = a.draw(i, with_meta=True)
        mb, sb = b[i]
        assert torch.equal(mix, mb) and torch.equal(src, sb)  # deterministic per index
        assert torch.equal(mix, meta["images"].sum(0) + meta["noise"])
        speech = meta["images"].sum(0).double()
        measured = 10 * np.log10(float((speech**2).sum() / (meta["noise"].double() ** 2).sum()))
        assert abs(measured - meta["snr_db"]) < 0.01
        d_src = dry.draw(i)[1]
        assert torch.allclose(src, d_src * (src.norm() / d_src.norm()), atol=1e-6)  # dry target
        room = meta["reverb"]
        assert room["kind"] == "simulated"
        dims, mic = np.array(room["room_dim"]), np.array(room["mic"])
        assert all(lo <= d <= hi for d, (lo, hi) in zip(dims, sim.room_dim))
        assert sim.rt60[0] <= room["rt60"] <= sim.rt60[1]
        assert np.all(mic >= 0.5 - 1e-9) and np.all(mic <= dims - 0.5 + 1e-9)
        for k, r in enumerate(room["rirs"]):
            assert 0.5 <= r.info["distance"] <= 3.0
            assert abs(int(np.argmax(np.abs(r.rir))) - r.direct) <= 1  # geometric delay = peak
            assert abs(abs(r.rir[r.direct]) - 1) < 0.4  # unit direct gain, fractional-delay filtered
            assert xcorr_lag(meta["images"][k], src[k], 2000) in (-1, 0, 1)
            # without the alignment the image would lag by the direct-path delay
            full = np.convolve(src[k].double().numpy(), r.rir)[: src.shape[1]]
            assert abs(xcorr_lag(full, src[k], 2000) - r.direct) <= 1
        corr = float(torch.dot(meta["images"].sum(0), src.sum(0)) / (meta["images"].sum(0).norm() * src.sum(0).norm()))
        assert corr < 0.97


# ----------------------------------------------------------------------------- speed perturbation


def test_speed_perturbation_scales_pitch_and_keeps_length(tmp_path):
    """Each 'speaker' is a pure tone; a source played at speed f must carry the tone at f·f0."""
    sr, tones = 8000, {"11": 300.0, "22": 500.0, "33": 700.0}
    paths = []
    for spk, f0 in tones.items():
        t = np.arange(3 * sr) / sr
        path = tmp_path / f"{spk}-1-0000.wav"
        sf.write(path, 0.5 * np.sin(2 * np.pi * f0 * t), sr)
        paths.append(path)
    ds = DynamicMixingDataset(paths, sr, segment=1.0, length=20, seed=4, speed_perturb=0.1)
    seen = []
    for i in range(20):
        mix, src, spk, meta = ds.draw(i, with_meta=True)
        assert src.shape == (2, sr) and torch.allclose(mix, src.sum(0), atol=1e-6)
        assert len(set(spk)) == 2
        for s, speaker, f in zip(src, spk, meta["speeds"]):
            assert 0.9 <= f <= 1.1
            spectrum = np.abs(np.fft.rfft(s[1000:-1000].numpy() * np.hanning(sr - 2000), 8 * sr))
            peak_hz = np.argmax(spectrum) / 8
            assert peak_hz == pytest.approx(tones[speaker] * f, abs=1.0)
            seen.append(f)
    assert np.std(seen) > 0.03  # factors really vary
    # off by default: identical to a dataset built without the argument
    plain = DynamicMixingDataset(paths, sr, segment=1.0, length=20, seed=4)
    zero = DynamicMixingDataset(paths, sr, segment=1.0, length=20, seed=4, speed_perturb=0.0)
    assert torch.equal(plain[3][0], zero[3][0])
    with pytest.raises(ValueError, match="speed_perturb"):
        DynamicMixingDataset(paths, sr, speed_perturb=0.7)
