"""Training that survives its users: devices, stop signals, damaged checkpoints, non-finite
losses and wrong arguments each end in a resumable state or one clear line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import audiomask
from audiomask.cli import main
from audiomask.cli.common import log_to_stderr
from audiomask.training import Trainer, TrainingError, load_config, resolve_device
from audiomask.training.checkpoints import PREVIOUS, STATE, state_digest
from test_training import small_speech_dir, write_config  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def _log_on_stderr():
    """The Trainer logs its warnings and notices; `audiomask train` shows them on stderr, where the
    tests below read them, also for a Trainer driven directly and a test run on its own."""
    log_to_stderr()


def csv_steps(path):
    return [int(r.split(",")[0]) for r in path.read_text().splitlines()[1:]]


def weights(path):
    return audiomask.load(path).state_dict()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- run.device ------------------------------------------------------------------------------
@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("spec, local_rank, expected", [
    ("cuda", 0, "cuda:0"), ("cuda", 1, "cuda:1"), (" CUDA:1 ", 0, "cuda:1"), ("auto", 1, "cuda:1"),
    ("cpu", 1, "cpu"),
])
def test_device_specs_with_cuda(two_gpus, spec, local_rank, expected):
    assert resolve_device(spec, local_rank) == torch.device(expected)


@pytest.mark.parametrize("spec, world, message", [
    ("gpu", 1, "expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("cuda:x", 1, "got 'cuda:x'"),
    ("cuda:-1", 1, "got 'cuda:-1'"),
    ("cuda:2", 1, "GPU 2 requested, this machine has 2"),
    ("cuda:1", 2, "all 2 torchrun processes on one GPU"),
])
def test_bad_device_specs_with_cuda(two_gpus, spec, world, message):
    with pytest.raises(TrainingError, match=message):
        resolve_device(spec, world=world)


def test_device_specs_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", local_rank=3) == torch.device("cpu")
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(TrainingError, match=f"run.device={spec}: CUDA is not available"):
            resolve_device(spec)


def test_cli_bad_device_is_one_line(small_speech_dir, tmp_path, capsys):
    conf = write_config(tmp_path, small_speech_dir)
    assert main(["train", str(conf), "run.device=gpu", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("audiomask: error: run.device: expected auto")


# -- stop signals ------------------------------------------------------------------------------
class Trip(torch.utils.data.Dataset):
    """A dataset that calls ``action`` when item ``at`` is read (a signal or NaN injected mid-run)."""

    def __init__(self, base, at, action):
        self.base, self.at, self.action = base, at, action

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        return self.action(item) if i in self.at else item


def stop_signal(trainer, signum=signal.SIGINT):
    def action(item):
        trainer._signals.signum = signum
        return item
    return action


def test_stop_signal_mid_step_checkpoints_that_step_and_resumes_bit_exactly(small_speech_dir, tmp_path):
    (tmp_path / "a").mkdir()
    Trainer(load_config(write_config(tmp_path / "a", small_speech_dir, run={"log_every": 1})), progress=False).train()

    (tmp_path / "b").mkdir()
    conf = write_config(tmp_path / "b", small_speech_dir, run={"log_every": 1})
    trainer = Trainer(load_config(conf), progress=False)
    trainer.train_set = Trip(trainer.train_set, {5 * 2}, stop_signal(trainer))  # read by step 6 (batch 2)
    summary = trainer.train()
    assert summary["interrupted"] == signal.SIGINT and summary["steps"] == 6  # step 6 ends, then saved
    run = tmp_path / "b" / "run"
    assert torch.load(run / STATE, weights_only=True)["step"] == 6
    assert torch.load(run / PREVIOUS, weights_only=True)["step"] == 4
    resumed = Trainer(load_config(conf), progress=False)
    assert resumed.step == 6
    resumed.train()
    assert same_weights(weights(tmp_path / "a" / "run" / "last.safetensors"), weights(run / "last.safetensors"))
    assert csv_steps(run / "train.csv") == list(range(1, 9))
    assert (run / "train.csv").read_text().count("\n") == 9  # header and steps 1-8, once each


def test_stop_signal_during_validation_leaves_it_pending_and_resume_runs_it_first(small_speech_dir, tmp_path):
    (tmp_path / "a").mkdir()
    Trainer(load_config(write_config(tmp_path / "a", small_speech_dir)), progress=False).train()

    (tmp_path / "b").mkdir()
    conf = write_config(tmp_path / "b", small_speech_dir)
    trainer = Trainer(load_config(conf), progress=False)
    trainer.valid_set = Trip(trainer.valid_set, {1}, stop_signal(trainer, signal.SIGTERM))
    summary = trainer.train()
    assert summary["interrupted"] == signal.SIGTERM and summary["steps"] == 4
    run = tmp_path / "b" / "run"
    state = torch.load(run / STATE, weights_only=True)
    assert state["step"] == 4 and state["valid_pending"]
    assert not (run / "valid.csv").is_file() or csv_steps(run / "valid.csv") == []
    Trainer(load_config(conf), progress=False).train()
    assert csv_steps(run / "valid.csv") == [4, 8]
    assert (run / "valid.csv").read_text() == (tmp_path / "a" / "run" / "valid.csv").read_text()
    assert same_weights(weights(tmp_path / "a" / "run" / "last.safetensors"), weights(run / "last.safetensors"))


def test_rerun_of_a_run_killed_before_its_first_checkpoint_logs_each_step_once(small_speech_dir, tmp_path):
    conf = write_config(tmp_path, small_speech_dir, run={"log_every": 1})
    Trainer(load_config(conf), progress=False).train(stop_after=3)  # "killed" before the checkpoint at 4
    assert csv_steps(tmp_path / "run" / "train.csv") == [1, 2, 3] and not (tmp_path / "run" / STATE).exists()
    Trainer(load_config(conf), progress=False).train()
    assert csv_steps(tmp_path / "run" / "train.csv") == list(range(1, 9))


@pytest.mark.slow
@pytest.mark.parametrize("signum, workers", [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGINT, 1)],
                         ids=["SIGINT", "SIGTERM", "Ctrl-C-to-the-group-with-a-loader-worker"])
def test_real_signal_to_the_train_command_saves_and_the_rerun_resumes(small_speech_dir, tmp_path, capsys,
                                                                      signum, workers):
    """`audiomask train` gets SIGINT or SIGTERM mid-run (or Ctrl-C in a terminal: SIGINT to the
    whole process group, data-loader workers included): exit 128+N with a checkpoint at the
    step it reached; the same command resumes there and logs each step once."""
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 400}, data={"num_workers": workers},
                        run={"log_every": 1, "checkpoint_every": 1000, "valid_every": 1000})
    proc = subprocess.Popen([sys.executable, "-m", "audiomask", "train", str(conf), "-q"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train.csv"
    deadline = time.time() + 120
    while (not log.is_file() or len(csv_steps(log)) < 3) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signum) if workers else proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "saving a checkpoint after this step" in err
    step = torch.load(tmp_path / "run" / STATE, weights_only=True)["step"]
    assert 3 <= step < 400
    assert f"{signal.Signals(signum).name} at step {step}: checkpoint saved" in err
    assert main(["train", str(conf), f"optim.steps={step + 2}", "-q"]) == 0
    assert f"resuming {tmp_path / 'run'} from step {step}" in capsys.readouterr().err
    assert csv_steps(log) == list(range(1, step + 3))


# -- damaged checkpoints -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(small_speech_dir, tmp_path_factory):
    """A tiny run trained to step 4 with checkpoints (and validations) at steps 2 (state.prev.pt)
    and 4 (state.pt)."""
    folder = tmp_path_factory.mktemp("finished")
    conf = write_config(folder, small_speech_dir, optim={"steps": 4}, run={"checkpoint_every": 2, "valid_every": 2})
    Trainer(load_config(conf), progress=False).train()
    return folder / "run"


def copy_run(finished_run, tmp_path, small_speech_dir, **sections):
    shutil.copytree(finished_run, tmp_path / "run")
    sections.setdefault("optim", {}).setdefault("steps", 4)
    sections.setdefault("run", {}).update(checkpoint_every=2, valid_every=2)
    return write_config(tmp_path, small_speech_dir, **sections)


def damage_random_bytes(path):
    """64 random bytes in a weight of a state file that is otherwise well-formed (torch's zip
    reader checks each record's CRC, so bytes flipped in the file itself read as unreadable;
    this is the damage only the content checksum catches: a writer that stored wrong numbers)."""
    state = torch.load(path, weights_only=True)
    name, weight = max(state["model"].items(), key=lambda kv: kv[1].numel())
    raw = weight.reshape(-1).view(torch.uint8)
    raw[raw.numel() // 2 : raw.numel() // 2 + 64] = torch.randint(0, 256, (64,), generator=torch.Generator().manual_seed(0),
                                                                  dtype=torch.uint8)
    torch.save(state, path)


def damage_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_empty(path):
    path.write_bytes(b"")


DAMAGES = {"random-bytes": (damage_random_bytes, "checksum mismatch"),
           "truncated": (damage_truncate, "unreadable, truncated or not a torch file"),
           "empty": (damage_empty, "unreadable, truncated or not a torch file")}


def test_state_digest_is_the_same_after_a_save_and_load(finished_run):
    state = torch.load(finished_run / STATE, weights_only=True)
    digest = state.pop("sha256")
    assert state_digest(state) == digest
    state["model"][next(iter(state["model"]))].view(-1)[0] += 1e-7
    assert state_digest(state) != digest


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_state_falls_back_to_the_previous_checkpoint(finished_run, small_speech_dir, tmp_path, capsys,
                                                             damage):
    conf = copy_run(finished_run, tmp_path, small_speech_dir, optim={"steps": 6})
    run = tmp_path / "run"
    corrupt, problem = DAMAGES[damage]
    corrupt(run / STATE)
    trainer = Trainer(load_config(conf), progress=False)
    assert trainer.step == 2
    err = capsys.readouterr().err
    assert f"{run / STATE}: {problem}" in err and "resuming from the previous checkpoint" in err
    assert (run / "state.pt.corrupt").is_file() and not (run / STATE).exists()
    assert csv_steps(run / "valid.csv") == [2]  # rows after the checkpoint are redone, not repeated
    trainer.train()
    assert all(torch.isfinite(w).all() for w in weights(run / "last.safetensors").values())
    assert torch.load(run / STATE, weights_only=True)["step"] == 6
    assert torch.load(run / PREVIOUS, weights_only=True)["step"] == 4  # the good one was kept
    assert csv_steps(run / "valid.csv") == [2, 4, 6]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_state_without_an_earlier_checkpoint_stops_with_one_line(finished_run, small_speech_dir,
                                                                         tmp_path, capsys, damage):
    conf = copy_run(finished_run, tmp_path, small_speech_dir)
    run = tmp_path / "run"
    (run / PREVIOUS).unlink()
    corrupt, problem = DAMAGES[damage]
    corrupt(run / STATE)
    assert main(["train", str(conf), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"audiomask: error: {run / STATE}: {problem}") and "start afresh" in err
    assert (run / STATE).is_file()  # left in place for the user to inspect


def test_stale_temporary_files_are_removed(finished_run, small_speech_dir, tmp_path):
    conf = copy_run(finished_run, tmp_path, small_speech_dir)
    run = tmp_path / "run"
    stale = [run / ".state.tmp-0123abcd.pt", run / ".last.tmp-89abcdef.safetensors"]
    for p in stale:
        p.write_bytes(b"partial")
    (run / "notes.tmp-0123abcd.txt").write_text("mine")
    Trainer(load_config(conf), progress=False).train()
    assert not any(p.exists() for p in stale)
    assert (run / "notes.tmp-0123abcd.txt").is_file()


# -- non-finite losses -----------------------------------------------------------------------------
def nan_mixture(item):
    mix, *rest = item
    return (torch.full_like(mix, float("nan")), *rest)


def nan_run(small_speech_dir, tmp_path, bad_steps, **optim):
    """A trainer whose steps ``bad_steps`` (1-based) see NaN mixtures (batch 2)."""
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 6, **optim}, run={"checkpoint_every": 2})
    trainer = Trainer(load_config(conf), progress=False)
    positions = {2 * (s - 1) + j for s in bad_steps for j in (0, 1)}
    trainer.train_set = Trip(trainer.train_set, positions, nan_mixture)
    return trainer


def test_nonfinite_loss_stops_and_leaves_the_last_checkpoint_intact(small_speech_dir, tmp_path):
    trainer = nan_run(small_speech_dir, tmp_path, bad_steps=[3])
    with pytest.raises(TrainingError, match=r"^step 3: non-finite loss nan.*last checkpoint, step 2, is intact"):
        trainer.train()
    run = tmp_path / "run"
    assert torch.load(run / STATE, weights_only=True)["step"] == 2
    assert all(torch.isfinite(w).all() for w in weights(run / "last.safetensors").values())


def test_nonfinite_loss_skips_the_step_when_configured(small_speech_dir, tmp_path, capsys):
    trainer = nan_run(small_speech_dir, tmp_path, bad_steps=[3, 4], nonfinite="skip", max_nonfinite_skips=2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.train()["steps"] == 6
    assert "step 3: non-finite loss nan" in capsys.readouterr().err
    after = weights(tmp_path / "run" / "last.safetensors")
    assert all(torch.isfinite(w).all() for w in after.values())
    assert not same_weights(before, after)


def test_too_many_nonfinite_steps_in_a_row_stop(small_speech_dir, tmp_path):
    trainer = nan_run(small_speech_dir, tmp_path, bad_steps=[3, 4, 5], nonfinite="skip", max_nonfinite_skips=2)
    with pytest.raises(TrainingError, match=r"^step 5: 3 non-finite steps in a row"):
        trainer.train()


# -- wrong arguments ---------------------------------------------------------------------------------
def test_resuming_with_another_preset_says_what_differs(finished_run, small_speech_dir, tmp_path, capsys):
    conf = copy_run(finished_run, tmp_path, small_speech_dir)
    assert main(["train", str(conf), "model.preset=small", "optim.steps=6", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "the run was trained with another model config: n_filters=" in err and "model.init_from=" in err


@pytest.mark.parametrize("override, message", [
    ("optim.steps=-5", "optim.steps must be >= 1, got -5"),
    ("optim.batch_size=0", "optim.batch_size must be >= 1, got 0"),
    ("optim.lr=nan", "optim.lr must be >= 0, got nan"),
    ("run.checkpoint_every=0", "run.checkpoint_every must be >= 1, got 0"),
    ("optim.nonfinite=ignore", "optim.nonfinite must be stop or skip, got 'ignore'"),
])
def test_out_of_range_values_are_one_line_errors(small_speech_dir, tmp_path, capsys, override, message):
    conf = write_config(tmp_path, small_speech_dir)
    assert main(["train", str(conf), override]) == 2
    err = capsys.readouterr().err
    assert err == f"audiomask: error: {message}\n"


def test_steps_below_or_at_the_checkpoint(finished_run, small_speech_dir, tmp_path, capsys):
    conf = copy_run(finished_run, tmp_path, small_speech_dir)
    assert main(["train", str(conf), "optim.steps=3", "-q"]) == 1
    assert capsys.readouterr().err == (f"audiomask: error: {tmp_path / 'run'} holds a run at step 4, beyond "
                                       "optim.steps=3: raise optim.steps to continue it, or set another "
                                       "run.out_dir for a new run\n")
    log = (tmp_path / "run" / "train.csv").read_text()
    assert main(["train", str(conf), "-q"]) == 0
    assert "already trained to step 4" in capsys.readouterr().out
    assert (tmp_path / "run" / "train.csv").read_text() == log


def test_progress_bars_for_steps_and_validation(small_speech_dir, tmp_path, capsys):
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 2}, run={"valid_every": 2})
    Trainer(load_config(conf), progress=True).train()
    err = capsys.readouterr().err
    assert "train: 100%" in err and "validate:" in err


def test_rerun_of_a_run_that_stopped_early_does_nothing_and_says_so(small_speech_dir, tmp_path, capsys):
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 40, "lr": 0.0, "min_lr": 0.0},
                        run={"valid_every": 2, "early_stop": 1})
    assert main(["train", str(conf), "-q"]) == 0  # validations at 2 (best) and 4 (no better): stop
    assert torch.load(tmp_path / "run" / STATE, weights_only=True)["step"] == 4
    capsys.readouterr()
    assert main(["train", str(conf), "-q"]) == 0
    assert "already stopped early at step 4 (run.early_stop=1" in capsys.readouterr().out
    assert csv_steps(tmp_path / "run" / "valid.csv") == [2, 4]
    assert Trainer(load_config(conf, ["run.early_stop=2"]), progress=False).train()["steps"] == 6  # more patience


def test_out_dir_that_is_a_file_is_one_line(small_speech_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    conf = write_config(tmp_path, small_speech_dir, run={"out_dir": str(tmp_path / "taken")})
    assert main(["train", str(conf), "-q"]) == 1
    assert capsys.readouterr().err == f"audiomask: error: run.out_dir={tmp_path / 'taken'}: not a folder\n"


def test_state_written_before_checksums_still_resumes_and_is_still_checked(finished_run, small_speech_dir, tmp_path,
                                                                          capsys):
    conf = copy_run(finished_run, tmp_path, small_speech_dir, optim={"steps": 6})
    path = tmp_path / "run" / STATE
    state = torch.load(path, weights_only=True)
    del state["sha256"], state["model_config"], state["valid_pending"], state["nonfinite_run"]
    torch.save(state, path)
    assert Trainer(load_config(conf), progress=False).step == 4
    with pytest.raises(TrainingError, match=r"another model config: missing .*encoder.conv.weight has shape"):
        Trainer(load_config(conf, ["model.preset=small"]), progress=False)
    state["model"][next(iter(state["model"]))].view(-1)[0] = float("nan")  # no checksum: the finite check
    torch.save(state, path)
    assert Trainer(load_config(conf), progress=False).step == 2  # the previous checkpoint
    assert "state.pt: non-finite weights" in capsys.readouterr().err


@pytest.mark.slow
def test_a_stop_signal_to_one_ddp_rank_stops_every_rank_at_the_same_step(small_speech_dir, tmp_path):
    conf = write_config(tmp_path, small_speech_dir, optim={"steps": 400},
                        run={"log_every": 1, "checkpoint_every": 1000, "valid_every": 1000})
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, torch.distributed as dist
        from audiomask.training import Trainer, load_config
        trainer = Trainer(load_config({str(conf)!r}), progress=False)
        open({str(tmp_path)!r} + f"/pid{{dist.get_rank()}}", "w").write(str(os.getpid()))
        summary = trainer.train()
        open({str(tmp_path)!r} + f"/summary{{dist.get_rank()}}.json", "w").write(json.dumps(summary))
        dist.destroy_process_group()
    """))
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29519", str(script)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = tmp_path / "run" / "train.csv"
    deadline = time.time() + 180
    while (not log.is_file() or len(csv_steps(log)) < 3) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(int((tmp_path / "pid1").read_text()), signal.SIGTERM)  # rank 1 only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    s0, s1 = (json.loads((tmp_path / f"summary{r}.json").read_text()) for r in (0, 1))
    assert s0["interrupted"] == s1["interrupted"] == signal.SIGTERM
    assert s0["steps"] == s1["steps"] == torch.load(tmp_path / "run" / STATE, weights_only=True)["step"] >= 3
