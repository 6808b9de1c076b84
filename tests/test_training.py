"""Training: learning works, resume is bit-exact, DDP ranks agree, configs are checked."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import audiomask
from audiomask.losses import pit_si_sdr_loss
from audiomask.metrics import pit
from audiomask.training import Trainer, load_config


@pytest.fixture(scope="module")
def small_speech_dir(speech_files, tmp_path_factory):
    """30 real utterances (30 speakers) linked into a folder, to keep data loading quick."""
    folder = tmp_path_factory.mktemp("speech")
    for f in speech_files[:30]:
        (folder / f.name).symlink_to(f)
    return folder


def write_config(tmp_path, speech_dir, **sections):
    cfg = {
        "model": {"name": "convtasnet", "preset": "tiny"},
        "data": {"speech_dir": str(speech_dir), "segment": 0.5, "valid_speakers": 5,
                 "valid_mixtures": 3, "valid_segment": 1.0},
        "optim": {"steps": 8, "batch_size": 2, "lr": 1e-3, "warmup_steps": 2},
        "run": {"out_dir": str(tmp_path / "run"), "checkpoint_every": 4, "valid_every": 4,
                "threads": 1, "seed": 3},
    }
    for name, values in sections.items():
        cfg[name].update(values)
    import yaml

    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow  # trains for tens of seconds; CI runs it with -m slow
def test_tiny_model_overfits_one_batch(speech_files):
    """Learning works: one fixed real two-speaker batch reaches > 20 dB SI-SDR."""
    import soundfile as sf

    torch.manual_seed(0)
    a, _ = sf.read(speech_files[2], dtype="float32", frames=16000 + 4000, start=16000)
    b, _ = sf.read(speech_files[3], dtype="float32", frames=16000 + 4000, start=16000)
    src = torch.stack([torch.from_numpy(a[::2]), torch.from_numpy(b[::2])])[None]  # 8 kHz, 1.25 s
    src = src / src.std(dim=-1, keepdim=True) * 0.1
    mix = src.sum(1)
    model = audiomask.build("convtasnet", preset="tiny", n_filters=64, hid_chan=64, bn_chan=32,
                            skip_chan=32, n_blocks=4, n_repeats=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        loss = pit_si_sdr_loss(model(mix), src)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        score = pit(model(mix), src)[2].mean().item()
    assert score > 20.0, score


def test_resume_is_bit_exact(small_speech_dir, tmp_path):
    straight = tmp_path / "straight"
    straight.mkdir()
    Trainer(load_config(write_config(straight, small_speech_dir)), progress=False).train()

    broken = tmp_path / "broken"
    broken.mkdir()
    conf = write_config(broken, small_speech_dir)
    Trainer(load_config(conf), progress=False).train(stop_after=4)  # "killed" after step 4
    resumed = Trainer(load_config(conf), progress=False)
    assert resumed.step == 4
    resumed.train()

    a = audiomask.load(straight / "run" / "last.safetensors").state_dict()
    b = audiomask.load(broken / "run" / "last.safetensors").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / "run" / "train.csv").read_text().splitlines()[1:] != []
    steps = [int(r.split(",")[0]) for r in (broken / "run" / "train.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)), "log rows must not repeat after resume"


def test_a_resumed_run_takes_the_kernel_paths_its_state_recorded(small_speech_dir, tmp_path, monkeypatch):
    """The kernel choices the policy measured (on a GPU: Triton or the reference per shape
    class) are stored with the state, and a resumed process takes them without timing again:
    the same paths, so the same float rounding as an uninterrupted run."""
    from audiomask import kernels
    from audiomask.training.checkpoints import read_state

    conf = write_config(tmp_path, small_speech_dir)
    key = kernels.shape_class("prelu_norm", torch.zeros(2, 8, 100), norm="gLN", slopes=1)
    times = iter([1.0, 2.0])  # the fused path is timed first: it wins
    measured = kernels.Policy(timer=lambda fn: next(times))
    assert measured.choose(key, lambda: None, lambda: None) == "triton"
    monkeypatch.setattr(kernels, "POLICY", measured)
    Trainer(load_config(conf), progress=False).train(stop_after=4)  # checkpoint_every: 4
    assert read_state(tmp_path / "run", warn=print)["kernel_choices"] == {repr(key): "triton"}

    fresh = kernels.Policy(timer=lambda fn: pytest.fail("timed again"))
    monkeypatch.setattr(kernels, "POLICY", fresh)
    resumed = Trainer(load_config(conf), progress=False)
    resumed.train(stop_after=5)
    assert resumed.step == 5
    assert fresh.choose(key, lambda: None, lambda: None) == "triton"


@pytest.mark.slow  # trains for tens of seconds; CI runs it with -m slow
def test_resume_after_sigkill_matches(small_speech_dir, tmp_path):
    """A real process killed mid-run and restarted with the same command ends identical."""
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 40}, run={"checkpoint_every": 5})
    cmd = [sys.executable, "-m", "audiomask", "train", str(conf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "run" / "state.pt"
    import time

    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    straight = tmp_path / "straight"
    straight.mkdir()
    conf2 = write_config(straight, small_speech_dir, optim={"steps": 40}, run={"checkpoint_every": 5})
    assert subprocess.run([sys.executable, "-m", "audiomask", "train", str(conf2)],
                          capture_output=True).returncode == 0
    a = audiomask.load(tmp_path / "run" / "last.safetensors").state_dict()
    b = audiomask.load(straight / "run" / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_gloo_ddp_ranks_end_identical(small_speech_dir, tmp_path):
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 6})
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from audiomask.training import Trainer, load_config
        trainer = Trainer(load_config({str(conf)!r}), progress=False)
        trainer.train()
        torch.save(trainer.model.state_dict(), {str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.pt")
        dist.destroy_process_group()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29517", str(script)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    start = audiomask.build("convtasnet", preset="tiny")  # weights moved away from any init
    assert any(not torch.equal(r0[k], v) for k, v in start.state_dict().items())
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_config_overrides_and_errors(tmp_path, small_speech_dir):
    conf = write_config(tmp_path, small_speech_dir)
    cfg = load_config(conf, ["optim.lr=3e-4", "model.overrides.n_src=3", "data.snr_db=[5, 15]"])
    assert cfg.optim.lr == 3e-4 and cfg.model.overrides == {"n_src": 3} and cfg.data.snr_db == [5, 15]
    with pytest.raises(ValueError, match="unknown key.*'optim'.*lrate"):
        load_config(conf, ["optim.lrate=1"])
    with pytest.raises(ValueError, match="unknown config section"):
        load_config(conf, ["trainer.lr=1"])
    with pytest.raises(ValueError, match="not section.key=value"):
        load_config(conf, ["lr"])
    with pytest.raises(ValueError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_lr_schedule_warmup_cosine(small_speech_dir, tmp_path):
    cfg = load_config(write_config(tmp_path, small_speech_dir),
                      ["optim.steps=100", "optim.warmup_steps=10", "optim.min_lr=0"])
    trainer = Trainer(cfg, progress=False)
    assert trainer.lr_at(0) == pytest.approx(1e-4 * 0.5 * (1 + 1))  # warm-up 1/10 of cosine(0)
    assert trainer.lr_at(50) == pytest.approx(0.5e-3)
    assert trainer.lr_at(99) < 1e-6


def test_config_values_get_their_field_types(tmp_path, small_speech_dir):
    conf = write_config(tmp_path, small_speech_dir)
    cfg = load_config(conf, ["optim.lr=1e-3", "optim.steps=1e3", "optim.min_lr=0"])
    assert cfg.optim.lr == 1e-3 and cfg.optim.steps == 1000 and isinstance(cfg.optim.steps, int)
    with pytest.raises(ValueError, match="optim.steps: expected int"):
        load_config(conf, ["optim.steps=2.5"])
    with pytest.raises(ValueError, match="optim.lr: expected float"):
        load_config(conf, ["optim.lr=fast"])


def test_early_stopping_and_plateau(small_speech_dir, tmp_path):
    # lr 0: validation never improves after the first round, so training stops after
    # `early_stop` stale rounds, and the plateau schedule halves the lr scale meanwhile.
    conf = write_config(tmp_path, small_speech_dir,
                        optim={"steps": 40, "lr": 0.0, "min_lr": 0.0, "schedule": "plateau",
                               "plateau_patience": 1},
                        run={"valid_every": 2, "early_stop": 2})
    trainer = Trainer(load_config(conf), progress=False)
    summary = trainer.train()
    assert summary["early_stopped"] and summary["steps"] == 6
    rows = (tmp_path / "run" / "valid.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["2", "4", "6"]
    assert [r.split(",")[3] for r in rows] == ["1", "0.5", "0.25"]
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_autocast_bf16_path_trains(small_speech_dir, tmp_path):
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 2}, run={"amp": "bf16"})
    summary = Trainer(load_config(conf), progress=False).train()
    assert summary["steps"] == 2
    weights = audiomask.load(tmp_path / "run" / "last.safetensors").state_dict()
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.slow  # TorchInductor compiles the tiny model's forward and backward: ~1 min
def test_compiled_training_follows_the_eager_run(small_speech_dir, tmp_path):
    """``run.compile``: the same seed trains to the same weights as the eager run (float32
    rounding apart) on the causal cLN TCN, the layer it is there for."""
    model = {"preset": "tiny", "overrides": {"causal": True, "norm": "cLN"}}
    weights = {}
    for compiled in (False, True):
        folder = tmp_path / str(compiled)
        folder.mkdir()
        conf = write_config(folder, small_speech_dir, model=model, optim={"steps": 3},
                            run={"compile": compiled, "valid_every": 100})
        trainer = Trainer(load_config(conf), progress=False)
        assert (trainer.train_net is not trainer.net) == compiled
        start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        assert trainer.train()["steps"] == 3
        weights[compiled] = audiomask.load(folder / "run" / "last.safetensors").state_dict()
    for k, eager in weights[False].items():
        moved = (eager - start[k]).norm()
        if moved > 0:  # both runs moved the trained weights the same way
            assert (weights[True][k] - eager).norm() <= 1e-3 * moved + 1e-6, k


def test_training_with_real_noise_and_measured_reverb(small_speech_dir, tmp_path):
    from conftest import SHARED_DATA

    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 2},
                        data={"noise_dir": str(SHARED_DATA / "noise"), "snr_db": [5, 5],
                              "rir_dir": str(SHARED_DATA / "rir"), "reverb_prob": 1.0})
    trainer = Trainer(load_config(conf), progress=False)
    mix, src = trainer.train_set[0]
    noise = mix - trainer.train_set.draw(0, with_meta=True)[3]["images"].sum(0)
    speech = mix - noise
    assert abs(10 * torch.log10(speech.pow(2).sum() / noise.pow(2).sum()).item() - 5.0) < 0.01
    assert trainer.train()["steps"] == 2


def test_init_from_checkpoint_starts_from_its_weights(small_speech_dir, tmp_path):
    start = audiomask.build("convtasnet", preset="tiny")
    torch.nn.init.normal_(start.masker.out_conv.weight)
    start.save(tmp_path / "start.safetensors")
    conf = write_config(tmp_path, small_speech_dir, model={"init_from": str(tmp_path / "start.safetensors")})
    trainer = Trainer(load_config(conf), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(),
                                                  start.state_dict().values()))
    wrong = audiomask.build("convtasnet", preset="tiny", n_filters=16)
    wrong.save(tmp_path / "wrong.safetensors")
    conf = write_config(tmp_path, small_speech_dir, model={"init_from": str(tmp_path / "wrong.safetensors")},
                        run={"out_dir": str(tmp_path / "run2")})
    with pytest.raises(ValueError, match="wrong.safetensors.*encoder.conv.weight"):
        Trainer(load_config(conf), progress=False)


def test_init_from_a_shallower_convtasnet_grows_it_without_changing_its_output(small_speech_dir, tmp_path):
    start = audiomask.build("convtasnet", preset="tiny")  # X=3, R=1
    for p in start.parameters():  # away from the initialisation, like a trained model
        torch.nn.init.normal_(p, std=0.3)
    start.save(tmp_path / "start.safetensors")
    conf = write_config(tmp_path, small_speech_dir, model={
        "init_from": str(tmp_path / "start.safetensors"), "overrides": {"n_repeats": 3}})
    trainer = Trainer(load_config(conf), progress=False)
    grown = trainer.model.eval()
    assert len(grown.masker.blocks) == 9
    # the old blocks and the encoder/decoder are copied, the added blocks' outputs are zero
    assert torch.equal(grown.masker.blocks[1].dw_conv.weight, start.masker.blocks[1].dw_conv.weight)
    assert torch.equal(grown.encoder.conv.weight, start.encoder.conv.weight)
    assert grown.masker.blocks[5].res_conv.weight.abs().sum() == 0
    assert grown.masker.blocks[5].in_conv.weight.abs().sum() > 0
    mix = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(grown(mix), start.eval()(mix), rtol=0, atol=1e-5)
    trainer.train()  # and it trains: the added blocks move away from the identity
    assert trainer.model.masker.blocks[5].res_conv.weight.abs().sum() > 0

    narrow = audiomask.build("convtasnet", preset="tiny", hid_chan=16)
    narrow.save(tmp_path / "narrow.safetensors")
    conf = write_config(tmp_path, small_speech_dir, model={
        "init_from": str(tmp_path / "narrow.safetensors"), "overrides": {"n_repeats": 2}},
        run={"out_dir": str(tmp_path / "run2")})
    with pytest.raises(ValueError, match="not a shallower TCN of the same widths.*blocks.0.in_conv.weight"):
        Trainer(load_config(conf), progress=False)


def test_init_from_a_non_causal_convtasnet_moves_its_depthwise_taps_into_the_past(small_speech_dir, tmp_path):
    start = audiomask.build("convtasnet", preset="tiny")  # gLN, non-causal, P = 3
    for p in start.parameters():
        torch.nn.init.normal_(p, std=0.3)
    start.save(tmp_path / "start.safetensors")
    conf = write_config(tmp_path, small_speech_dir, model={
        "init_from": str(tmp_path / "start.safetensors"), "overrides": {"causal": True, "norm": "cLN"}})
    trainer = Trainer(load_config(conf), progress=False)
    causal = trainer.model
    assert causal.masker.causal
    y = torch.randn(1, causal.config.hid_chan, 50)
    for old, new in zip(start.masker.blocks, causal.masker.blocks):
        w, d = old.dw_conv.weight, old.dilation
        torch.testing.assert_close(new.dw_conv.weight, torch.stack([torch.zeros_like(w[..., 0]), w[..., 0],
                                                                    w[..., 1] + w[..., 2]], -1), rtol=0, atol=0)
        # with its future tap reading the present, the non-causal conv is the causal one
        past_present = torch.nn.functional.conv1d(torch.nn.functional.pad(y, (2 * d, 0)), new.dw_conv.weight,
                                                  new.dw_conv.bias, dilation=d, groups=y.shape[1])
        shifted = torch.nn.functional.conv1d(torch.nn.functional.pad(y, (d, 0)), w[..., :2], old.dw_conv.bias,
                                             dilation=d, groups=y.shape[1]) + w[..., 2] * y
        torch.testing.assert_close(past_present, shifted, rtol=1e-5, atol=1e-5)
    assert torch.equal(causal.masker.blocks[1].in_conv.weight, start.masker.blocks[1].in_conv.weight)
    assert torch.equal(causal.masker.input_norm.weight, start.masker.input_norm.weight)
    assert trainer.train()["steps"] == 8  # and it trains as a causal model
    with pytest.raises(ValueError, match="this masker is not causal"):
        start.masker.causal_state_dict(start.masker.state_dict())
    # made causal and grown in one go: the source's blocks mapped, the added ones the identity
    conf = write_config(tmp_path, small_speech_dir, model={"init_from": str(tmp_path / "start.safetensors"),
                        "overrides": {"causal": True, "norm": "cLN", "n_repeats": 2}},
                        run={"out_dir": str(tmp_path / "run2")})
    deeper = Trainer(load_config(conf), progress=False).model
    assert len(deeper.masker.blocks) == 2 * len(start.masker.blocks)
    w = start.masker.blocks[2].dw_conv.weight
    torch.testing.assert_close(deeper.masker.blocks[2].dw_conv.weight,
                               torch.stack([torch.zeros_like(w[..., 0]), w[..., 0], w[..., 1] + w[..., 2]], -1),
                               rtol=0, atol=0)
    assert deeper.masker.blocks[4].res_conv.weight.abs().sum() == 0


def test_step_batches_run_epoch_after_epoch_in_seeded_orders():
    from audiomask.training.trainer import StepBatches

    full = list(StepBatches(0, 9, 2, 0, 1, size=6, shuffle=True, seed=3))
    flat = [i for batch in full for i in batch]
    epochs = [flat[k : k + 6] for k in range(0, 18, 6)]
    assert all(sorted(e) == list(range(6)) for e in epochs)  # every item once per epoch
    assert len({tuple(e) for e in epochs}) > 1  # in a new order each epoch
    assert list(StepBatches(4, 9, 2, 0, 1, size=6, shuffle=True, seed=3)) == full[4:]  # resume
    # two ranks split each step's positions; generated datasets are read in order
    r0, r1 = (list(StepBatches(0, 3, 2, r, 2, size=6, shuffle=True, seed=3)) for r in (0, 1))
    assert sorted(sum(r0, []) + sum(r1, [])) == sorted(list(range(6)) * 2)
    assert list(StepBatches(0, 3, 2, 0, 1, size=100)) == [[0, 1], [2, 3], [4, 5]]
