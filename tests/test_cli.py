"""The ``audiomask`` command, driven as a user would (in-process and as a subprocess)."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomask
from audiomask.cli import build_parser, main
from audiomask.evaluate import evaluate

QUICKSTART = Path(__file__).resolve().parents[1] / "egs" / "quickstart"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    audiomask.build("convtasnet", preset="tiny").save(path)
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "audiomask", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_separate_real_mixture_writes_one_file_per_source_at_input_rate(
        two_speaker_mixture, tiny_checkpoint, tmp_path):
    mix_path, sources, rate = two_speaker_mixture
    out = tmp_path / "out"
    result = run_cli("separate", mix_path, "--model", tiny_checkpoint, "--out", out)
    assert result.returncode == 0, result.stderr
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["mix_s1.wav", "mix_s2.wav"]
    for p in written:
        info = sf.info(p)
        assert info.samplerate == rate == 16000 and info.frames == sources.shape[-1] and info.channels == 1


def test_separate_many_files_and_other_rates(two_speaker_mixture, tiny_checkpoint, tmp_path):
    mix_path, _, rate = two_speaker_mixture
    wav, _ = sf.read(mix_path, dtype="float32")
    other = tmp_path / "at44k.flac"
    sf.write(other, np.interp(np.arange(0, len(wav), rate / 44100), np.arange(len(wav)), wav) * 0.5, 44100)
    assert main(["separate", str(mix_path), str(other), "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o"), "-q"]) == 0
    assert sf.info(tmp_path / "o" / "at44k_s2.wav").samplerate == 44100
    assert sf.info(tmp_path / "o" / "at44k_s2.wav").frames == sf.info(other).frames


def _bad_inputs(tmp_path, speech_files):
    bad = {}
    bad["missing.wav"] = (tmp_path / "missing.wav", "file not found")
    p = tmp_path / "corrupt.wav"
    p.write_bytes(np.random.default_rng(0).bytes(5000))
    bad["corrupt.wav"] = (p, "cannot")
    good = tmp_path / "good.wav"
    data, rate = sf.read(speech_files[0], dtype="float32")
    sf.write(good, data[:16000], rate)
    p = tmp_path / "truncated.wav"
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    bad["truncated.wav"] = (p, "truncated")
    p = tmp_path / "nan.wav"
    x = data[:16000].copy()
    x[100] = np.nan
    sf.write(p, x, rate, subtype="FLOAT")
    bad["nan.wav"] = (p, "NaN")
    p = tmp_path / "inf.wav"
    x[100] = np.inf
    sf.write(p, x, rate, subtype="FLOAT")
    bad["inf.wav"] = (p, "Inf")
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), rate)
    bad["empty.wav"] = (p, "empty")
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([data[:16000], data[:16000]], 1), rate)
    bad["stereo.wav"] = (p, "2 channels")
    return bad


@pytest.mark.slow  # separates many crafted inputs (~15 s); CI runs it with -m slow
def test_bad_inputs_give_one_line_errors_and_no_output(speech_files, tiny_checkpoint, tmp_path):
    for name, (path, problem) in _bad_inputs(tmp_path, speech_files).items():
        out = tmp_path / f"out-{name}"
        result = run_cli("separate", path, "--model", tiny_checkpoint, "--out", out, "-q")
        assert result.returncode != 0, name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert name in lines[0] and problem in lines[0], (name, lines[0])
        assert not out.exists() or not any(out.iterdir()), name


def test_one_bad_file_does_not_stop_the_others(two_speaker_mixture, tiny_checkpoint, tmp_path, capsys):
    mix_path, _, _ = two_speaker_mixture
    code = main(["separate", str(tmp_path / "missing.wav"), str(mix_path), "--model",
                 str(tiny_checkpoint), "--out", str(tmp_path / "o"), "-q"])
    assert code == 1
    assert "missing.wav: file not found" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["mix_s1.wav", "mix_s2.wav"]


def test_stereo_with_downmix_is_accepted(speech_files, tiny_checkpoint, tmp_path):
    path, _ = _bad_inputs(tmp_path, speech_files)["stereo.wav"]
    assert main(["separate", str(path), "--downmix", "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o"), "-q"]) == 0


def test_unknown_model_is_named(two_speaker_mixture, tmp_path):
    mix_path, _, _ = two_speaker_mixture
    result = run_cli("separate", mix_path, "--model", "wavesplit9", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "wavesplit9: unknown model" in result.stderr
    result = run_cli("separate", mix_path, "--model", tmp_path / "nope.safetensors", "--out", tmp_path / "o")
    assert result.returncode == 2 and "nope.safetensors: checkpoint not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_info_reports_config_and_parameters(tiny_checkpoint, capsys):
    assert main(["info", "convtasnet:paper"]) == 0
    out = capsys.readouterr().out
    assert "5,050,545" in out and "8000 Hz" in out and "causal           no" in out
    assert main(["info", "convtasnet:paper-causal"]) == 0
    assert "causal           yes" in capsys.readouterr().out
    assert main(["info", str(tiny_checkpoint), "--json"]) == 0
    assert '"model": "convtasnet"' in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["separate"], ["info"], ["list"]])
def test_help_on_every_command(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0 and "usage: audiomask" in result.stdout


def test_separate_with_references_scores_as_evaluate_does_and_writes_spectrogram(
        two_speaker_mixture, tiny_checkpoint, tmp_path, capsys):
    """Issue 26 item 7: --ref scored at the input's rate (16 kHz) while evaluate scores at the
    model's (8 kHz): 12.17 vs 13.67 dB for one file. Now both give the same numbers."""
    mix_path, sources, rate = two_speaker_mixture
    data = tmp_path / "data"
    refs = []
    for folder, signal in [("mix", sources.sum(0)), ("s1", sources[0]), ("s2", sources[1])]:
        (data / folder).mkdir(parents=True)
        sf.write(data / folder / "x.wav", signal.numpy(), rate, subtype="FLOAT")
        refs.append(data / folder / "x.wav")
    out = tmp_path / "o"
    assert main(["separate", str(refs[0]), "--model", str(tiny_checkpoint), "--out", str(out),
                 "--ref", *map(str, refs[1:]), "--spectrogram", "-q"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "at 8000 Hz" in printed[0]
    si_sdr_mean, si_sdri_mean = map(float, [line for line in printed if line.startswith("mean")][0].split()[1:3])
    summary = evaluate(audiomask.load(tiny_checkpoint), data, tmp_path / "eval", compute_pesq_stoi=False,
                       progress=False, print_summary=False)
    assert abs(summary.rows[0]["si_sdr"] - si_sdr_mean) < 0.02
    assert abs(summary.rows[0]["si_sdri"] - si_sdri_mean) < 0.02
    assert (out / "x_spectrogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_errors_are_clear(two_speaker_mixture, tiny_checkpoint, tmp_path, capsys):
    mix_path, _, _ = two_speaker_mixture
    assert main(["separate", str(mix_path), str(mix_path), "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o"), "--ref", str(mix_path), str(mix_path)]) == 2
    assert "exactly one IN" in capsys.readouterr().err
    assert main(["separate", str(mix_path), "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o"), "--ref", str(mix_path)]) == 2
    assert "2 sources, got 1 references" in capsys.readouterr().err


def test_unavailable_device_is_refused(two_speaker_mixture, tiny_checkpoint, tmp_path, capsys):
    mix_path, _, _ = two_speaker_mixture
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["separate", str(mix_path), "--model", str(tiny_checkpoint), "--device", "cuda",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- issue 24: never lose data


def short_wav(path, seconds=0.5, rate=16000, seed=0, peak=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)
    sf.write(path, x / np.abs(x).max() * peak, rate, subtype="FLOAT")
    return path


def test_an_output_never_overwrites_an_input_of_the_same_call(tiny_checkpoint, tmp_path, capsys):
    """Issue 24 item 1: `separate d/mix.wav d/mix_s1.wav --out d` overwrote the user's mix_s1.wav, exit 0."""
    d = tmp_path / "d"
    mix, user_file = short_wav(d / "mix.wav"), short_wav(d / "mix_s1.wav", seed=1)
    before = user_file.read_bytes()
    assert main(["separate", str(mix), str(user_file), "--out", str(d), "--model", str(tiny_checkpoint),
                 "-q", "--overwrite"]) == 1
    assert "mix_s1.wav is an input of this command" in capsys.readouterr().err
    assert user_file.read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == ["mix.wav", "mix_s1.wav", "mix_s1_s1.wav", "mix_s1_s2.wav"]


def test_same_names_from_two_folders_get_distinct_outputs(tiny_checkpoint, tmp_path):
    """Issue 24 item 1: in/a/mix.wav and in/b/mix.wav into one --out wrote one mix_s1.wav, exit 0."""
    a, b = short_wav(tmp_path / "in" / "a" / "mix.wav"), short_wav(tmp_path / "in" / "b" / "mix.wav", seed=1)
    out = tmp_path / "o"
    assert main(["separate", str(a), str(b), "--out", str(out), "--model", str(tiny_checkpoint), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_mix_s1.wav", "a_mix_s2.wav", "b_mix_s1.wav", "b_mix_s2.wav"]
    assert not np.array_equal(sf.read(out / "a_mix_s1.wav")[0], sf.read(out / "b_mix_s1.wav")[0])


def test_existing_outputs_are_kept_unless_overwrite(tiny_checkpoint, tmp_path, capsys):
    mix = short_wav(tmp_path / "mix.wav")
    args = ["separate", str(mix), "--model", str(tiny_checkpoint), "-q"]  # no --out: beside the input
    assert main(args) == 0
    first = (tmp_path / "mix_s1.wav").read_bytes()
    (tmp_path / "mix_s2.wav").write_bytes(b"user data")
    assert main(args) == 1
    assert "mix_s1.wav exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "mix_s2.wav").read_bytes() == b"user data" and (tmp_path / "mix_s1.wav").read_bytes() == first
    assert main(args + ["--overwrite"]) == 0
    assert sf.info(tmp_path / "mix_s2.wav").frames == 8000


def test_folder_input_separates_its_audio_files_and_says_how_many(tiny_checkpoint, tmp_path, capsys):
    d = tmp_path / "recordings"
    for name in ("b.wav", "a.wav"):
        short_wav(d / name)
    (d / "readme.txt").write_text("not audio")
    assert main(["separate", str(d), "--out", str(tmp_path / "o"), "--model", str(tiny_checkpoint)]) == 0
    captured = capsys.readouterr()
    assert f"{d}: 2 audio files" in captured.err
    assert captured.out.split() == [str(tmp_path / "o" / f"{s}_s{i}.wav") for s in "ab" for i in (1, 2)]


# ----------------------------------------------------------------------------- issue 24: one bad argument


def test_bad_out_folders_give_one_line_before_any_work(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """Issue 24 item 6: --out a file, under a file, or unwritable gave a traceback."""
    import audiomask.separation

    monkeypatch.setattr(audiomask.separation, "separate", lambda *a, **k: pytest.fail("separated"))
    mix = short_wav(tmp_path / "mix.wav")
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    for out, problem in [(blocker, "is a file; --out must be a folder"),
                         (blocker / "sub", f"is under {blocker}, which is a file"),
                         ("/proc/audiomask-out", "cannot write in this folder")]:
        assert main(["separate", str(mix), "--out", str(out), "--model", str(tiny_checkpoint), "-q"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"audiomask: error: {out}: {problem}"), err
    assert blocker.read_text() == "keep me"


def test_bad_inputs_do_not_stop_the_batch(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """Issue 24 item 6: an input in an unreadable folder or with a header claiming 2 GHz
    raised a traceback and later inputs were never processed."""
    import pathlib

    ghz = short_wav(tmp_path / "ghz.wav")
    data = bytearray(ghz.read_bytes())
    data[24:28] = (2_000_000_000).to_bytes(4, "little")  # the fmt chunk's sample rate
    ghz.write_bytes(bytes(data))
    locked = tmp_path / "locked" / "mix.wav"
    good = short_wav(tmp_path / "good.wav")
    real_exists = pathlib.Path.exists

    def exists(self, *a, **k):  # what a folder without search permission does (root ignores chmod)
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "exists", exists)
    assert main(["separate", str(ghz), str(locked), str(good), "--out", str(tmp_path / "o"),
                 "--model", str(tiny_checkpoint), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"audiomask: error: {ghz}: corrupt header: sample rate 2000000000 Hz")
    assert err[1] == f"audiomask: error: {locked}: cannot open (Permission denied)"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good_s1.wav", "good_s2.wav"]


def test_evaluate_checks_out_before_computing_and_refuses_a_silent_reference(tiny_checkpoint, tmp_path, capsys):
    """Issue 24 items 6 and 7: `evaluate --out FILE` failed after the whole run; an all-zero
    reference was accepted."""
    data = tmp_path / "data"
    for folder, silent in [("mix", False), ("s1", False), ("s2", True)]:
        short_wav(data / folder / "x.wav", peak=0.0 if silent else 0.5)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data), "--out", str(blocker),
                 "--no-pesq", "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"audiomask: error: {blocker}: is a file; --out must be a folder"
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data), "--out", str(tmp_path / "e"),
                 "--no-pesq", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"audiomask: error: {data / 's2' / 'x.wav'}: reference s2 is silent (all zeros); " \
                  "SI-SDR against it is undefined"


def test_aec_output_is_checked_before_computing(tmp_path, capsys, monkeypatch):
    """Issue 24 item 6: `aec --out x/y.wav` under a file, or with no or an unknown extension,
    failed only after the whole computation."""
    import audiomask.echo_cancellation

    monkeypatch.setattr(audiomask.echo_cancellation, "cancel_echo_files", lambda *a, **k: pytest.fail("computed"))
    mic, far = short_wav(tmp_path / "mic.wav"), short_wav(tmp_path / "far.wav", seed=1)
    (tmp_path / "x").write_text("a file")
    base = ["aec", "--mic", str(mic), "--far", str(far), "--model", "d3net-aec:tiny", "-q"]
    for out, problem in [(tmp_path / "x" / "y.wav", f"is under {tmp_path / 'x'}, which is a file"),
                         (tmp_path / "near", "--out needs an audio file name extension"),
                         (tmp_path / "near.xyz", "--out needs an audio file name extension"),
                         (far, "is an input of this command"),
                         (tmp_path / "near.flac", "FLAC files cannot hold FLOAT samples")]:
        assert main(base + ["--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"audiomask: error: {out}: {problem}"), err


def test_aec_refuses_a_block_length_that_is_not_a_positive_number(tmp_path, capsys):
    """Issue 24 item 6: `--block-ms nan` was taken."""
    mic, far = short_wav(tmp_path / "mic.wav"), short_wav(tmp_path / "far.wav", seed=1)
    for value in ("nan", "inf", "0", "-5", "1e9"):  # the bounds of `stream`: (0, 10 s]
        assert main(["aec", "--mic", str(mic), "--far", str(far), "--model", "d3net-aec:tiny", "--stream",
                     "--block-ms", value, "-q"]) == 2
        assert f"--block-ms must be a number of milliseconds in (0, 10000], got {float(value):g}" \
            in capsys.readouterr().err
    assert not (tmp_path / "mic_near.wav").exists()


def test_downmix_error_names_the_cli_option(tiny_checkpoint, tmp_path, capsys):
    """Issue 24 item 7: the error said `pass downmix=True` where the option is --downmix."""
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((800, 2), dtype=np.float32), 16000)
    assert main(["separate", str(stereo), "--model", str(tiny_checkpoint), "-q"]) == 1
    err = capsys.readouterr().err
    assert "has 2 channels, expected 1 (use --downmix to average them)" in err and "downmix=True" not in err


# ----------------------------------------------------------------------------- issue 26


@pytest.mark.slow
def test_outputs_keep_the_mixture_level_in_one_subtype(tmp_path):
    """Issue 26 item 3: the bundled model's estimates peaked at 2.17 for a mixture peaking at
    0.80, and the subtype depended on each file's peak (FLOAT and PCM_16 in one run)."""
    out = tmp_path / "o"
    assert main(["separate", str(QUICKSTART / "mix.wav"), "--out", str(out), "-q"]) == 0
    mix, _ = sf.read(QUICKSTART / "mix.wav")
    sources = [sf.read(QUICKSTART / f"s{i}.wav")[0] for i in (1, 2)]
    estimates = [sf.read(out / f"mix_s{i}.wav")[0] for i in (1, 2)]
    assert {sf.info(out / f"mix_s{i}.wav").subtype for i in (1, 2)} == {"FLOAT"}
    for est in estimates:  # each at the level of a source in the mixture (true peaks 0.59, 0.45)
        assert 0.3 < np.abs(est).max() < np.abs(mix).max()
        assert 0.5 < np.sqrt(np.mean(est ** 2) / np.mean(sources[0] ** 2)) < 2.0
    assert main(["separate", str(QUICKSTART / "mix.wav"), "--out", str(out), "--format", "pcm16",
                 "--overwrite", "-q"]) == 0
    assert {sf.info(out / f"mix_s{i}.wav").subtype for i in (1, 2)} == {"PCM_16"}


def test_outputs_over_full_scale_are_scaled_down_with_a_warning(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import audiomask.separation

    n = 8000
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1) for _ in range(2))
    a[4000], b[4000] = 1.5, -1.5  # each source peaks above full scale where they cancel in the mixture
    mix = tmp_path / "mix.wav"
    sf.write(mix, (a + b).numpy(), 8000, subtype="FLOAT")
    monkeypatch.setattr(audiomask.separation, "separate", lambda model, x, rate, **k: torch.stack([a, b]))
    assert main(["separate", str(mix), "--model", str(tiny_checkpoint), "--format", "pcm16", "-q"]) == 0
    assert "were scaled down by" in capsys.readouterr().err
    for i in (1, 2):
        est, _ = sf.read(tmp_path / f"mix_s{i}.wav")
        assert 0.98 < np.abs(est).max() < 0.995  # scaled to 0.99, not clipped at 1.0


def test_threads_option_and_stream_default(tiny_checkpoint, tmp_path, monkeypatch):
    """Issue 26 item 1: separate/evaluate/aec had no --threads; stream defaulted to 2 threads
    for 10 ms blocks (RTF 16.5 on a busy machine, 0.20 with 1 thread)."""
    import audiomask.streaming

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    mix = short_wav(tmp_path / "mix.wav")
    before = torch.get_num_threads()
    try:
        assert main(["separate", str(mix), "--model", str(tiny_checkpoint), "--threads", "1", "-q"]) == 0
        assert torch.get_num_threads() == 1
        seen = {}

        def fake_simulate(model, wav, block, threads=None, progress=False):
            seen["threads"] = threads
            return torch.zeros(model.n_src, wav.shape[-1]), "report"

        monkeypatch.setattr(audiomask.streaming, "simulate", fake_simulate)
        assert main(["stream", "--input", str(mix), "--model", "convtasnet:small-causal", "--block-ms", "10",
                     "--out", str(tmp_path / "s")]) == 0
        assert seen["threads"] == 1
    finally:
        torch.set_num_threads(before)
    for command in (["separate", "x"], ["evaluate", "--model", "m", "--data", "d", "--out", "o"],
                    ["aec", "--mic", "m", "--far", "f"]):
        args = build_parser().parse_args(command)
        assert args.device == "auto" and args.threads is None


def test_mistyped_model_gets_a_suggestion(tmp_path, capsys):
    assert main(["separate", str(short_wav(tmp_path / "m.wav")), "--model", "convtasnet-mini2mx"]) == 2
    assert "convtasnet-mini2mx: unknown model; did you mean convtasnet-mini2mix?" in capsys.readouterr().err


def test_progress_is_silent_when_stderr_is_not_a_terminal(tiny_checkpoint, tmp_path):
    for i in range(2):
        short_wav(tmp_path / "in" / f"{i}.wav", seed=i)
    result = run_cli("separate", tmp_path / "in", "--model", tiny_checkpoint, "--out", tmp_path / "o")
    assert result.returncode == 0 and result.stderr.strip() == f"audiomask: {tmp_path / 'in'}: 2 audio files"


# ----------------------------------------------------------------------------- issue 25: diagnostics are logged
RANDOM_WEIGHTS = "convtasnet:tiny has random weights (no checkpoint given)"


def test_a_warning_goes_through_the_audiomask_logger_and_reads_as_before(capsys, caplog):
    assert main(["info", "convtasnet:tiny"]) == 0
    [record] = [r for r in caplog.records if r.name.startswith("audiomask")]
    assert (record.name, record.levelname, record.getMessage()) == ("audiomask.cli.common", "WARNING", RANDOM_WEIGHTS)
    assert capsys.readouterr().err == f"audiomask: warning: {RANDOM_WEIGHTS}\n"


def test_main_called_again_adds_no_second_handler(capsys):
    for _ in range(3):
        assert main(["info", "convtasnet:tiny"]) == 0
        assert capsys.readouterr().err == f"audiomask: warning: {RANDOM_WEIGHTS}\n"
    assert len(logging.getLogger("audiomask").handlers) == 1


def test_importing_the_package_configures_no_logging():
    """No handler or level is set on import; unconfigured, a library warning still reaches stderr
    (Python's last-resort handler), as its bare message."""
    code = ("import logging, audiomask, audiomask.cli, audiomask.training, audiomask.corpora.aec_eval\n"
            "print(len(logging.root.handlers), len(logging.getLogger('audiomask').handlers), "
            "logging.getLogger('audiomask').level)\n"
            "audiomask.cli.load_model_arg('convtasnet:tiny')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "0"] and result.stderr == f"{RANDOM_WEIGHTS}\n"


def test_aec_eval_run_as_a_module_writes_the_commands_lines(tmp_path):
    """`python -m` runs aec_eval as __main__; its error line still comes out as `audiomask: error: …`."""
    result = subprocess.run([sys.executable, "-m", "audiomask.corpora.aec_eval", "--model", "convtasnet:tiny",
                             "--data", tmp_path / "m.csv", "--out", tmp_path / "o"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"audiomask: warning: {RANDOM_WEIGHTS}",
        "audiomask: error: convtasnet:tiny (convtasnet) is not an echo canceller; use an AEC model such as d3net-aec"]


# ----------------------------------------------------------------------------- issue 26 item 8: Python one-liners


def test_separate_file_in_memory_on_a_list_a_folder_and_to_files(tiny_checkpoint, tmp_path):
    a, b = short_wav(tmp_path / "in" / "a.wav"), short_wav(tmp_path / "in" / "b.wav", seed=1, rate=8000)
    model = audiomask.load(tiny_checkpoint)
    est = audiomask.separate_file(a, model)
    assert est.shape == (2, 8000)
    listed = audiomask.separate_file([a, b], model)
    assert [e.shape for e in listed] == [(2, 8000), (2, 4000)] and torch.allclose(listed[0], est)
    assert [e.shape for e in audiomask.separate_file(tmp_path / "in", model)] == [(2, 8000), (2, 4000)]
    paths = audiomask.separate_file(tmp_path / "in", str(tiny_checkpoint), out=tmp_path / "o", format="pcm16")
    assert [[p.name for p in ps] for ps in paths] == [["a_s1.wav", "a_s2.wav"], ["b_s1.wav", "b_s2.wav"]]
    written, _ = sf.read(paths[0][0], dtype="float32")
    assert np.abs(written - est[0].numpy()).max() < 1e-4
    with pytest.raises(audiomask.AudioError, match="exists; pass --overwrite"):
        audiomask.separate_file(a, model, out=tmp_path / "o")


@pytest.mark.slow
def test_readme_separate_python_examples_run_and_leave_nothing_behind(tmp_path, monkeypatch):
    """Issue 26 items 7 and 8: the README's Python example left a 20 MB model.safetensors in the
    working directory; the one-liners are documented with runnable examples."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Separate\n"):readme.index("## Stream in real time")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(root)
    before = set(root.iterdir())
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)
    assert set(root.iterdir()) == before
    assert namespace["est"].shape[0] == 2 and len(namespace["paper"].state_dict()) > 0

