"""Echo-cancellation training: the near-end-preserving objective and the richer simulated scenes."""

import math

import pytest
import torch

from audiomask.losses import aec_near_end_loss, thresholded_snr


def _scene(near_on: bool, seed: int = 0, t: int = 4000):
    g = torch.Generator().manual_seed(seed)
    near = torch.randn(t, generator=g) * (1.0 if near_on else 0.0)
    echo = torch.randn(t, generator=g) * 2.0
    noise = torch.randn(t, generator=g) * 0.1
    return torch.stack([near, echo, noise])[None]


def test_thresholded_snr_values():
    ref = torch.randn(2, 1000, generator=torch.Generator().manual_seed(1))
    assert thresholded_snr(ref, ref).tolist() == pytest.approx([30.0, 30.0], abs=1e-3)
    assert thresholded_snr(0.5 * ref, ref, max_db=200).tolist() == pytest.approx([10 * math.log10(4)] * 2, abs=1e-3)
    assert thresholded_snr(torch.zeros_like(ref), ref, max_db=200).tolist() == pytest.approx([0.0, 0.0], abs=1e-3)


def test_double_talk_counts_near_end_damage_and_far_end_single_talk_counts_residual_echo():
    dt = _scene(True)
    perfect = dt.clone()
    assert aec_near_end_loss(perfect, dt, echo_free_weight=0).item() == pytest.approx(-30.0, abs=1e-3)
    suppress_all = torch.zeros_like(dt)  # kills the echo and the talker: 0 dB SNR, no credit
    assert aec_near_end_loss(suppress_all, dt, echo_free_weight=0).item() == pytest.approx(10 * math.log10(1.001), abs=1e-4)
    passthrough = dt.clone()
    passthrough[:, 0] = dt.sum(1)  # the microphone itself as the near-end estimate
    assert aec_near_end_loss(passthrough, dt, echo_free_weight=0).item() > 0  # SER < 0 here

    fst = _scene(False)
    silent = torch.zeros_like(fst)
    assert aec_near_end_loss(silent, fst, echo_free_weight=0).item() == pytest.approx(-30.0, abs=1e-3)
    leak = torch.zeros_like(fst)
    leak[:, 0] = 0.1 * fst.sum(1)  # 20 dB ERLE, plus the 30 dB floor's 1e-3
    assert aec_near_end_loss(leak, fst, echo_free_weight=0).item() == pytest.approx(10 * math.log10(0.011), abs=1e-3)
    both = torch.cat([dt, fst])
    est = torch.cat([suppress_all, leak])
    expected = (10 * math.log10(1.001) + 10 * math.log10(0.011)) / 2  # the mean over the batch
    assert aec_near_end_loss(est, both, echo_free_weight=0).item() == pytest.approx(expected, abs=1e-3)


def test_echo_free_term_and_gradient_flow():
    dt = _scene(True, seed=3)
    est = dt.clone().requires_grad_(True)
    with torch.no_grad():
        est[:, 2] = 0  # noise estimate missing: only the echo-free term notices
    loss = aec_near_end_loss(est, dt, echo_free_weight=1.0)
    assert -60.0 < loss.item() < -30.0
    loss.backward()
    assert torch.isfinite(est.grad).all() and est.grad[:, 2].abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[batch, 3, T\]"):
        aec_near_end_loss(torch.zeros(2, 2, 10), torch.zeros(2, 2, 10))


# ---------------------------------------------------------------- richer simulated echo scenes
import numpy as np  # noqa: E402

from audiomask.data import EchoSimulationDataset, split_by_speaker  # noqa: E402
from audiomask.data.aec import harmonic_distortion, soft_clip  # noqa: E402
from conftest import SHARED_DATA  # noqa: E402


def test_nonlinearities_are_unit_gain_for_small_signals_and_distort_large_ones():
    t = np.linspace(0, 1, 8000, endpoint=False)
    x = np.sin(2 * np.pi * 100 * t)
    small = 1e-3 * x
    quiet_part = soft_clip(np.concatenate([small, x]), 1.0)[:8000]  # the peak is set by x
    assert np.allclose(quiet_part, small, rtol=1e-3)
    assert np.abs(soft_clip(x, 1.0)).max() < 0.3  # atan(5)/5: compressed to 27 % of the peak
    y = harmonic_distortion(x, 0.2, 0.1)
    spectrum = np.abs(np.fft.rfft(y)) / 4000
    assert spectrum[200] == pytest.approx(0.1, abs=1e-3)   # 2nd harmonic: h2/2 of sin^2
    assert spectrum[300] == pytest.approx(0.025, abs=1e-3)  # 3rd harmonic: h3/4 of sin^3


def test_richer_echo_scenes_defaults_unchanged_and_options_take_effect(speech_files):  # skipped without ../shared/data
    files, _ = split_by_speaker(speech_files, 25, seed=0)
    files = files[:12]
    rir_dir = SHARED_DATA / "rir"
    base = EchoSimulationDataset(files, 16000, segment=1.0, length=6, seed=2, rir_files=rir_dir,
                                 nonlinear_prob=1.0, noise_files=SHARED_DATA / "noise")
    same = EchoSimulationDataset(files, 16000, segment=1.0, length=6, seed=2, rir_files=rir_dir,
                                 nonlinear_prob=1.0, noise_files=SHARED_DATA / "noise",
                                 nonlinearities=("clip_tanh",), near_reverb_prob=0.0, synthetic_noise=0.0)
    for i in range(6):
        assert torch.equal(base[i][0], same[i][0])
    rich = EchoSimulationDataset(files, 16000, segment=1.0, length=24, seed=2, rir_files=rir_dir,
                                 nonlinear_prob=1.0, nonlinearities=("clip_tanh", "soft_clip", "harmonic"),
                                 near_reverb_prob=1.0, synthetic_noise=1.0, noise_prob=1.0,
                                 delay_ms=(0.0, 500.0), ser_db=(-15.0, 15.0),
                                 scenario_probs=(1, 0, 0))
    kinds, noise_kinds = set(), set()
    for i in range(24):
        mic, far, targets, meta = rich.draw(i, with_meta=True)
        assert torch.allclose(mic, targets.sum(0), atol=1e-6)
        assert meta["near_reverb"] is not None and meta["delay_samples"] <= 8000
        kinds.add(meta["nonlinearity"])
        noise_kinds.add(meta["noise_kind"])
        if meta["noise_kind"] == "babble":
            speakers = set(meta["babble_speakers"])
            assert not speakers & {rich.speakers.index(s) for s in meta["speakers"]}
    assert kinds == {"clip_tanh", "soft_clip", "harmonic"} and noise_kinds == {"babble", "coloured"}
    with pytest.raises(ValueError, match="nonlinearities"):
        EchoSimulationDataset(files, 16000, nonlinearities=("fuzz",))


def test_trainer_uses_the_configured_objective_and_richer_scenes(tmp_path, speech_files):
    from audiomask.losses import aec_near_end_loss
    from audiomask.training import load_config
    from audiomask.training.trainer import Trainer

    speech = tmp_path / "speech"
    speech.mkdir()
    for f in speech_files[:8]:
        (speech / f.name).symlink_to(f)
    args = ["model.name=d3net-aec", "model.preset=tiny", f"data.speech_dir={speech}",
            f"data.rir_dir={SHARED_DATA / 'rir'}", "data.synthetic_noise=1.0", "data.near_reverb_prob=0.5",
            "data.nonlinearities=[clip_tanh, soft_clip, harmonic]", "data.segment=0.5", "data.valid_segment=0.5",
            "data.valid_speakers=2", "data.valid_mixtures=2", "optim.steps=2", "optim.batch_size=2",
            "optim.loss=aec_near_end", f"run.out_dir={tmp_path / 'run'}", "run.valid_every=2",
            "run.checkpoint_every=2"]
    trainer = Trainer(load_config(None, args), progress=False)
    assert trainer.loss_fn is aec_near_end_loss
    assert trainer.train_set.noise.synthesizer is not None and trainer.train_set.near_reverb_prob == 0.5
    split = Trainer(load_config(None, args + [f"data.noise_dir={SHARED_DATA / 'noise'}", "data.noise_split=0.25"]),
                    progress=False)  # validation scenes hear only the last quarter of each recording
    for train_rec, valid_rec in zip(split.train_set.noise.recordings, split.valid_set.noise.recordings):
        assert len(valid_rec) == pytest.approx(len(train_rec) / 3, abs=2)
    assert trainer.train()["steps"] == 2
    with pytest.raises(ValueError, match="optim.loss"):
        load_config(None, args[:-4] + ["optim.loss=l1"])
    weighted = Trainer(load_config(None, args + ["optim.loss_args={suppression_weight: 0.5}"]), progress=False)
    assert weighted.loss_fn.func is aec_near_end_loss and weighted.loss_fn.keywords == {"suppression_weight": 0.5}
    with pytest.raises(ValueError, match="pit_si_sdr is an objective of the separation task"):
        Trainer(load_config(None, [a for a in args if not a.startswith("optim.loss")] + ["optim.loss=pit_si_sdr"]),
                progress=False)
