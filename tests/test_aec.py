"""Echo cancellation: the complex D3Net model, exact streaming, echo-scene simulation, the AEC
Challenge layout, ERLE, the trainer's AEC task and the `audiomask aec` command."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomask
from audiomask.cli import main
from audiomask.data import AECChallengeDataset, EchoSimulationDataset, loudspeaker_nonlinearity
from audiomask.filterbanks import ISTFTDecoder, STFTEncoder
from audiomask.losses import aec_loss
from audiomask.metrics import erle, segmental_erle, si_sdr
from audiomask.models.aec import D3NetAEC
from audiomask.streaming import StreamingSession

from conftest import SHARED_DATA

RIR_DIR, NOISE_DIR = SHARED_DATA / "rir", SHARED_DATA / "noise"


def random_blocks(length: int, max_block: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    sizes, total = [], 0
    while total < length:
        n = min(int(torch.randint(0, max_block + 1, (1,), generator=gen)), length - total)
        sizes.append(n)
        total += n
    return sizes


def with_running_stats(model: D3NetAEC, seed: int = 0) -> D3NetAEC:
    """Give batch norm non-trivial running statistics (a few training-mode passes), then eval."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 4000) * 0.3, torch.randn(2, 4000) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def scenes(speech_files):
    """Echo scenes from 12 real speakers, measured RIRs and real noise (no simulated rooms:
    fast)."""
    return EchoSimulationDataset(speech_files[:12], 16000, 2.0, length=1000, seed=7, rir_files=RIR_DIR,
                                 noise_files=NOISE_DIR, noise_prob=1.0, path_change_prob=0.5)


# ----------------------------------------------------------------------------- model


def test_paper_preset_has_354k_parameters():
    model = D3NetAEC.preset("paper")
    assert abs(model.n_params() - 354_000) <= 0.05 * 354_000
    assert model.n_params() == 354_052
    assert model.causal and model.receptive_field == 88 * 160 + 320  # 89 frames of 10 ms, all past


def test_outputs_split_the_microphone_signal():
    model = with_running_stats(audiomask.build("d3net-aec", "tiny"))
    mic, far = torch.randn(2, 3001) * 0.3, torch.randn(2, 3001) * 0.3
    with torch.no_grad():
        near = model(mic, far)
        parts = model(mic, far, return_all=True)
        single = model(mic[0], far[0])
    assert near.shape == (2, 3001) and parts.shape == (2, 3, 3001) and single.shape == (3001,)
    assert torch.allclose(parts[:, 0], near)
    assert torch.allclose(parts.sum(1), mic, atol=1e-5)  # near + echo + noise = microphone
    assert torch.allclose(single, near[0], atol=1e-5)


def test_model_is_causal():
    model = with_running_stats(audiomask.build("d3net-aec", "tiny"))
    mic, far = torch.randn(1, 4000), torch.randn(1, 4000)
    mic2, far2 = mic.clone(), far.clone()
    mic2[:, 3000:] += 1.0
    far2[:, 3000:] -= 1.0
    with torch.no_grad():
        a, b = model(mic, far), model(mic2, far2)
    # the STFT's look-ahead is its window: samples before 3000 - win are untouched
    win = model.encoder.win
    assert torch.equal(a[:, : 3000 - win], b[:, : 3000 - win])


@pytest.mark.parametrize("preset,chunk", [("tiny", 1), ("tiny", 7), ("small", 50), ("small", 64)])
def test_eval_forward_in_chunks_equals_one_pass(preset, chunk):
    """In eval mode the masker runs its frames ``infer_chunk`` at a time (bounded memory); the
    result is the one-pass result, also when the chunk does not divide the frames."""
    model = with_running_stats(audiomask.build("d3net-aec", preset), 5)
    mic, far = torch.randn(2, 3 * 16000 + 77) * 0.3, torch.randn(2, 3 * 16000 + 77) * 0.3
    with torch.no_grad():
        model.masker.infer_chunk = 10**9
        one_pass = model(mic, far, return_all=True)
        model.masker.infer_chunk = chunk
        chunked = model(mic, far, return_all=True)
    frames = model.encoder(mic).shape[-1]
    assert frames > 2 * chunk and (chunk == 1 or frames % chunk != 0)
    assert (chunked - one_pass).abs().max().item() <= 1e-5


def test_cancel_echo_streams_long_inputs_with_the_one_pass_result(monkeypatch):
    from audiomask import echo_cancellation

    model = with_running_stats(audiomask.build("d3net-aec", "tiny"), 6)
    mic, far = torch.randn(40_000) * 0.3, torch.randn(40_000) * 0.3
    short = echo_cancellation.cancel_echo(model, mic, far, return_all=True)
    monkeypatch.setattr(echo_cancellation, "LONG_INPUT_BLOCK_S", 0.37)  # 5,920 samples: 7 blocks
    long = echo_cancellation.cancel_echo(model, mic, far, return_all=True)
    assert long.shape == short.shape == (3, 40_000)
    assert (long - short).abs().max().item() <= 1e-5


@pytest.mark.parametrize("preset,max_block,length,seed", [
    ("tiny", 1, 700, 0), ("tiny", 37, 3000, 1), ("tiny", 900, 9001, 2),
    ("small", 300, 16000 + 123, 3), ("small", 5000, 3 * 16000, 4)])
def test_stream_equals_offline(preset, max_block, length, seed):
    model = with_running_stats(audiomask.build("d3net-aec", preset), seed)
    model.masker.infer_chunk = 10**9  # offline = one pass over all frames
    gen = torch.Generator().manual_seed(seed)
    mic, far = torch.randn(2, length, generator=gen) * 0.3, torch.randn(2, length, generator=gen) * 0.3
    with torch.no_grad():
        offline = model(mic, far, return_all=True)
    session = model.stream(batch=2, return_all=True)
    outs, i = [], 0
    for n in random_blocks(length, max_block, seed):
        outs.append(session.process(mic[:, i : i + n], far[:, i : i + n]))
        i += n
    outs.append(session.flush())
    streamed = torch.cat(outs, dim=-1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= 1e-5


@pytest.mark.parametrize("overrides", [{"norm": "frame", "mask_act": "linear"},
                                       {"pad_mode": "reflect", "window": "hann", "win": 256, "hop": 64}])
def test_stream_equals_offline_for_other_configs(overrides):
    model = with_running_stats(audiomask.build("d3net-aec", "tiny", **overrides))
    mic, far = torch.randn(1, 5001) * 0.3, torch.randn(1, 5001) * 0.3
    with torch.no_grad():
        offline = model(mic, far)
    session = model.stream()
    outs, i = [], 0
    for n in random_blocks(5001, 500, 9):
        outs.append(session.process(mic[:, i : i + n], far[:, i : i + n]))
        i += n
    streamed = torch.cat(outs + [session.flush()], dim=-1)
    assert (streamed - offline).abs().max().item() <= 1e-5


def test_stream_outputs_come_after_the_stft_lookahead():
    model = with_running_stats(audiomask.build("d3net-aec", "tiny"))
    session = model.stream()
    win, hop = model.encoder.win, model.encoder.hop
    assert session.latency_samples == win
    assert session.process(torch.randn(win // 2 - 1), torch.randn(win // 2 - 1)).shape == (0,)
    out = session.process(torch.randn(10 * hop), torch.randn(10 * hop))
    # every sample but the last window's worth is final
    assert win // 2 - 1 + 10 * hop - win <= out.shape[-1] <= win // 2 - 1 + 10 * hop


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_stft_encoder_and_decoder_steps_match_offline(pad_mode):
    enc = STFTEncoder(320, 160, window="sqrt_hann", pad_mode=pad_mode)
    dec = ISTFTDecoder.like(enc)
    for length, seed in [(1, 0), (160, 1), (161, 2), (5000, 3)]:
        x = torch.randn(2, length)
        spec_state, wav_state = enc.init_state(2), dec.init_state((2,))
        specs, wavs, i = [], [], 0
        for n in random_blocks(length, 400, seed):
            spec, spec_state = enc.step(x[:, i : i + n], spec_state)
            wav, wav_state = dec.step(spec, wav_state)
            specs.append(spec)
            wavs.append(wav)
            i += n
        spec, spec_state = enc.flush(spec_state)
        wav, wav_state = dec.step(spec, wav_state)
        rest, wav_state = dec.flush(wav_state, length)
        specs.append(spec)
        wavs += [wav, rest]
        assert (torch.cat(specs, -1) - enc(x)).abs().max() < 1e-4
        assert (torch.cat(wavs, -1) - dec(enc(x), length)).abs().max() < 1e-5


def test_save_and_load_round_trip(tmp_path):
    model = with_running_stats(audiomask.build("d3net-aec", "tiny"))
    path = tmp_path / "aec.safetensors"
    model.save(path)
    loaded = audiomask.load(path)
    assert isinstance(loaded, D3NetAEC) and loaded.config == model.config
    mic, far = torch.randn(1, 2000), torch.randn(1, 2000)
    with torch.no_grad():
        assert torch.equal(loaded(mic, far), model(mic, far))


def test_bad_inputs_are_refused_with_clear_errors():
    model = audiomask.build("d3net-aec", "tiny").eval()
    with pytest.raises(ValueError, match="far-end"):
        model(torch.randn(1000))
    with pytest.raises(ValueError, match="same shape"):
        model(torch.randn(1, 1000), torch.randn(1, 999))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(torch.full((1, 1000), float("nan")), torch.randn(1, 1000))
    with pytest.raises(ValueError, match=r"\[T\] or \[batch, T\]"):
        model(torch.randn(1, 2, 3, 100), torch.randn(1, 2, 3, 100))
    session = model.stream()
    with pytest.raises(ValueError, match="same shape"):
        session.process(torch.randn(160), torch.randn(150))
    with pytest.raises(ValueError, match="eval mode"):  # model.stream() switches to eval itself
        StreamingSession(audiomask.build("d3net-aec", "tiny").train())
    with pytest.raises(ValueError, match="n_src must be 1"):
        audiomask.build("d3net-aec", "tiny", n_src=2)
    with pytest.raises(ValueError, match="aec_loss expects"):
        aec_loss(torch.randn(1, 2, 100), torch.randn(1, 2, 100))


# ----------------------------------------------------------------------------- simulation


def test_simulation_obeys_sampled_ser_and_snr(scenes):
    checked = 0
    for i in range(40):
        mic, far, targets, meta = scenes.draw(i, with_meta=True)
        near, echo, noise = targets.double()
        assert torch.equal(mic, targets.sum(0))
        assert meta["speakers"][0] != meta["speakers"][1]
        if meta["scenario"] != "double_talk":
            continue
        ser = 10 * torch.log10(near.square().mean() / echo.square().mean()).item()
        snr = 10 * torch.log10(near.square().mean() / noise.square().mean()).item()
        assert abs(ser - meta["ser_db"]) < 0.5 and -10 <= meta["ser_db"] <= 10
        assert abs(snr - meta["snr_db"]) < 0.5 and 5 <= meta["snr_db"] <= 40
        checked += 1
    assert checked >= 10


def test_scenarios_delays_and_determinism(scenes):
    seen = set()
    for i in range(40):
        mic, far, targets, meta = scenes.draw(i, with_meta=True)
        seen.add(meta["scenario"])
        assert 0 <= meta["delay_samples"] <= 0.2 * 16000
        if meta["scenario"] == "farend_single":
            assert not targets[0].any() and targets[1].any()
        if meta["scenario"] == "nearend_single":
            assert not far.any() and not targets[1].any() and targets[0].any()
    assert seen == {"double_talk", "farend_single", "nearend_single"}
    a, b = scenes[3], scenes[3]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_echo_path_is_delayed_nonlinear_far_end_with_a_path_change(speech_files):
    ds = EchoSimulationDataset(speech_files[:4], 16000, 1.0, length=50, seed=1, delay_ms=(50, 50),
                               nonlinear_prob=0.0, path_change_prob=1.0, scenario_probs=(0, 1, 0))
    mic, far, targets, meta = ds.draw(0, with_meta=True)
    d, change = meta["delay_samples"], meta["path_change_at"]
    assert d == 800 and meta["echo_path"]["kind"] == "delay only"
    echo = targets[1].double()
    ref = torch.zeros_like(echo)
    ref[d:] = far.double()[:-d]
    # no RIR: before the change the echo is the delayed far end times one gain, after it another
    g1 = (echo[d:change] @ ref[d:change]) / (ref[d:change] @ ref[d:change])
    g2 = (echo[change:] @ ref[change:]) / (ref[change:] @ ref[change:])
    assert torch.allclose(echo[:change], g1 * ref[:change], atol=1e-6)
    assert torch.allclose(echo[change:], g2 * ref[change:], atol=1e-6)
    assert abs(g1 - g2) > 1e-3 * abs(g1)


def test_loudspeaker_nonlinearity():
    x = np.sin(np.linspace(0, 20, 1000))
    assert np.array_equal(loudspeaker_nonlinearity(x, 0.0), x)
    y = loudspeaker_nonlinearity(x, 1.0)
    assert np.abs(y).max() <= 0.4 + 1e-9 and np.all(np.diff(np.sign(y)) == np.diff(np.sign(x)))
    small = loudspeaker_nonlinearity(1e-3 * x * 0 + x, 0.5)[np.abs(x) < 0.01]
    assert np.allclose(small, x[np.abs(x) < 0.01], rtol=1e-3)  # gain 1 near zero
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loudspeaker_nonlinearity(x, 1.5)


def test_simulated_rooms_give_echo_paths(speech_files):
    pytest.importorskip("pyroomacoustics")
    ds = EchoSimulationDataset(speech_files[:4], 16000, 1.0, length=5, seed=2, simulate_rooms=True,
                               path_change_prob=1.0, scenario_probs=(0, 1, 0))
    mic, far, targets, meta = ds.draw(0, with_meta=True)
    assert meta["echo_path"]["kind"] == "simulated" and len(meta["echo_path"]["rirs"]) == 2
    assert targets[1].any()


def test_simulation_refuses_bad_settings(speech_files):
    with pytest.raises(ValueError, match="at least 2 speakers"):
        EchoSimulationDataset(speech_files[:1], 16000)
    with pytest.raises(ValueError, match="scenario_probs"):
        EchoSimulationDataset(speech_files[:3], 16000, scenario_probs=(1, 0))
    with pytest.raises(ValueError, match="ser_db"):
        EchoSimulationDataset(speech_files[:3], 16000, ser_db=(5, -5))


# ----------------------------------------------------------------------------- metrics


def test_erle_of_identity_is_zero_and_of_oracle_subtraction_large(speech_files):
    ds = EchoSimulationDataset(speech_files[:6], 16000, 2.0, length=20, seed=3, rir_files=RIR_DIR,
                               scenario_probs=(0, 1, 0))  # far-end single talk, no noise
    mic, far, targets = ds[0]
    echo = targets[1]
    assert erle(mic, mic).item() == 0.0
    assert segmental_erle(mic, mic).item() == 0.0
    assert erle(mic, mic - echo).item() > 60.0
    assert segmental_erle(mic, mic - echo).item() > 60.0
    half = erle(mic, 0.5 * mic).item()
    assert abs(half - 20 * np.log10(2)) < 1e-6
    batch = erle(torch.stack([mic, mic]), torch.stack([mic, 0.1 * mic]))
    assert batch.shape == (2,) and abs(batch[1].item() - 20.0) < 1e-4


def test_segmental_erle_weighs_active_frames_equally():
    mic = torch.cat([torch.ones(3200), 0.01 * torch.ones(3200), torch.zeros(3200)])
    est = torch.cat([0.1 * torch.ones(3200), 0.01 * torch.ones(3200), torch.zeros(3200)])
    # loud part: 20 dB, quiet part: 0 dB, silent part excluded; global ERLE follows the loud part
    seg = segmental_erle(mic, est, frame=320, hop=320).item()
    assert abs(seg - 10.0) < 0.5
    assert abs(erle(mic, est).item() - 20.0) < 0.1


# ----------------------------------------------------------------------------- AEC Challenge layout


def fake_aec_challenge(root, n=4, length=4000, rate=16000):
    """A folder in the AEC Challenge synthetic layout, with ``mic = near + echo + noise``."""
    gen = np.random.default_rng(0)
    for sub in ("farend_speech", "nearend_mic_signal", "nearend_speech", "echo_signal"):
        (root / sub).mkdir(parents=True)
    rows = []
    for i in range(n):
        near, far, noise = (0.1 * gen.standard_normal(length) for _ in range(3))
        echo = 0.5 * np.roll(far, 100)
        sf.write(root / "farend_speech" / f"farend_speech_fileid_{i}.wav", far, rate, subtype="FLOAT")
        sf.write(root / "nearend_speech" / f"nearend_speech_fileid_{i}.wav", near, rate, subtype="FLOAT")
        sf.write(root / "echo_signal" / f"echo_fileid_{i}.wav", echo, rate, subtype="FLOAT")
        sf.write(root / "nearend_mic_signal" / f"nearend_mic_fileid_{i}.wav", near + echo + noise, rate,
                 subtype="FLOAT")
        rows.append({"fileid": i, "split": "train" if i < n - 1 else "test", "ser": 0})
    with (root / "meta.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["fileid", "split", "ser"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_aec_challenge_layout_loads(tmp_path):
    root = fake_aec_challenge(tmp_path / "synthetic")
    ds = AECChallengeDataset(root)
    assert len(ds) == 4 and ds.fileids == [0, 1, 2, 3]
    mic, far, targets = ds[2]
    assert mic.shape == far.shape == (4000,) and targets.shape == (3, 4000)
    assert torch.allclose(targets.sum(0), mic, atol=1e-6)
    assert torch.allclose(targets[1], 0.5 * torch.roll(far, 100), atol=1e-6)
    assert AECChallengeDataset(root, split="train").fileids == [0, 1, 2]
    test = AECChallengeDataset(root, split="test")
    assert test.fileids == [3] and test.meta(0)["split"] == "test"
    crops = AECChallengeDataset(root, split="train", segment=0.1, length=10)
    assert len(crops) == 10 and crops[7][0].shape == (1600,)
    assert torch.equal(crops[7][0], crops[7][0])


def test_aec_challenge_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        AECChallengeDataset(tmp_path / "nowhere")
    root = fake_aec_challenge(tmp_path / "synthetic")
    (root / "farend_speech" / "farend_speech_fileid_1.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"far-end file missing for file id\(s\) \[1\]"):
        AECChallengeDataset(root)
    sf.write(root / "echo_signal" / "echo_fileid_0.wav", np.zeros(10), 16000)
    with pytest.raises(ValueError, match="echo_fileid_0.wav: 10 samples"):
        AECChallengeDataset(root, fileids=[0])[0]


# ----------------------------------------------------------------------------- training


def test_trainer_trains_an_aec_model(tmp_path, speech_files):
    from audiomask.training import load_config
    from audiomask.training.trainer import Trainer

    speech = tmp_path / "speech"
    speech.mkdir()
    for f in speech_files[:8]:
        (speech / f.name).symlink_to(f)
    cfg = load_config(None, [
        "model.name=d3net-aec", "model.preset=tiny", f"data.speech_dir={speech}", f"data.rir_dir={RIR_DIR}",
        f"data.noise_dir={NOISE_DIR}", "data.segment=0.5", "data.valid_segment=0.5", "data.valid_speakers=2",
        "data.valid_mixtures=3", "optim.steps=3", "optim.batch_size=2", f"run.out_dir={tmp_path / 'run'}",
        "run.valid_every=3", "run.checkpoint_every=3"])
    trainer = Trainer(cfg, progress=False)
    assert trainer.task.name == "aec" and trainer.task.inputs == ("microphone", "far_end")
    assert {s for s in trainer.train_set.speakers}.isdisjoint(trainer.valid_set.speakers)
    summary = trainer.train()
    assert summary["steps"] == 3 and np.isfinite(summary["best_si_sdri"])
    assert isinstance(audiomask.load(tmp_path / "run" / "best.safetensors"), D3NetAEC)


@pytest.mark.slow
def test_small_model_overfits_one_double_talk_clip(speech_files):
    torch.manual_seed(0)
    ds = EchoSimulationDataset(speech_files[:10], 16000, 2.0, length=10, seed=3, rir_files=RIR_DIR,
                               noise_files=NOISE_DIR, snr_db=(20, 30), scenario_probs=(1, 0, 0))
    mic, far, targets, meta = ds.draw(0, with_meta=True)
    assert meta["scenario"] == "double_talk"
    model = audiomask.build("d3net-aec", "small")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(250):
        loss = aec_loss(model(mic[None], far[None], return_all=True), targets[None])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        est = model(mic, far)
    before, after = si_sdr(mic, targets[0]).item(), si_sdr(est, targets[0]).item()
    assert after > 15.0 and after - before > 20.0, (before, after)


# ----------------------------------------------------------------------------- CLI


def test_cli_aec_offline_and_stream(tmp_path, speech_files):
    ds = EchoSimulationDataset(speech_files[:4], 16000, 1.0, length=5, seed=4, scenario_probs=(1, 0, 0))
    mic, far, _ = ds[0]
    sf.write(tmp_path / "mic.wav", mic.numpy(), 16000, subtype="FLOAT")
    sf.write(tmp_path / "far.wav", far.numpy(), 16000, subtype="FLOAT")
    model = with_running_stats(audiomask.build("d3net-aec", "tiny"))
    model.save(tmp_path / "aec.safetensors")
    args = ["aec", "--mic", str(tmp_path / "mic.wav"), "--far", str(tmp_path / "far.wav"),
            "--model", str(tmp_path / "aec.safetensors"), "-q"]
    assert main(args + ["--out", str(tmp_path / "near.wav"), "--all"]) == 0
    assert main(args + ["--out", str(tmp_path / "near_stream.wav"), "--stream", "--block-ms", "10"]) == 0
    offline, rate = sf.read(tmp_path / "near.wav", dtype="float32")
    streamed, _ = sf.read(tmp_path / "near_stream.wav", dtype="float32")
    assert rate == 16000 and offline.shape == (16000,)
    assert np.abs(offline - streamed).max() <= 2e-4  # equal up to 16-bit output rounding
    parts = [sf.read(tmp_path / f"near{s}.wav", dtype="float32")[0] for s in ("", "_echo", "_noise")]
    assert np.abs(sum(parts) - mic.numpy()).max() < 1e-3


def test_cli_aec_errors(tmp_path, capsys):
    sf.write(tmp_path / "mic.wav", np.zeros(1600), 16000)
    sf.write(tmp_path / "far8k.wav", np.zeros(800), 8000)
    sf.write(tmp_path / "short.wav", np.zeros(1000), 16000)
    base = ["aec", "--mic", str(tmp_path / "mic.wav"), "--out", str(tmp_path / "o.wav")]
    assert main(base + ["--far", str(tmp_path / "far8k.wav"), "--model", "d3net-aec:tiny"]) == 1
    assert "at 8000 Hz but the microphone file" in capsys.readouterr().err
    assert main(base + ["--far", str(tmp_path / "short.wav"), "--model", "d3net-aec:tiny"]) == 1
    assert "has 1000 samples but the microphone file" in capsys.readouterr().err
    assert main(base + ["--far", str(tmp_path / "short.wav"), "--model", "convtasnet:tiny"]) == 2
    assert "is not an echo canceller" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()
    assert main(["separate", str(tmp_path / "mic.wav"), "--model", "d3net-aec:tiny", "--out", str(tmp_path)]) == 2
    assert "is an echo canceller" in capsys.readouterr().err
