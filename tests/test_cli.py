"""The ``audiomask`` command, driven as a user would (in-process and as a subprocess)."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomask
from audiomask.cli import main
from audiomask.evaluate import evaluate


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
