"""Output planning, level rule, clipping guard, thread policy and memory-light scoring (no model runs)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomask.audio import AudioError
from audiomask.evaluate import score_si_sdr
from audiomask.metrics import pit, si_sdr
from audiomask.outputs import (LIMITED_PEAK, check_output_file, check_output_folder, expand_inputs,
                               limit_peak, match_mixture_level, plan_separation, write_outputs)
from audiomask.runtime import choose_threads


def touch_wav(path, n=160):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(n, dtype=np.float32), 16000)
    return path


def test_colliding_names_get_the_parent_folder(tmp_path):
    a, b = touch_wav(tmp_path / "in" / "a" / "mix.wav"), touch_wav(tmp_path / "in" / "b" / "mix.wav")
    plans, errors = plan_separation([a, b], tmp_path / "o", 2)
    assert errors == []
    assert [[t.name for t in p.targets] for p in plans] == [["a_mix_s1.wav", "a_mix_s2.wav"],
                                                          ["b_mix_s1.wav", "b_mix_s2.wav"]]


def test_collisions_that_the_parent_does_not_resolve_are_errors_before_work(tmp_path):
    a, b = touch_wav(tmp_path / "x" / "a" / "mix.wav"), touch_wav(tmp_path / "y" / "a" / "mix.wav")
    c = touch_wav(tmp_path / "x" / "a" / "other.wav")
    plans, errors = plan_separation([a, b, c], tmp_path / "o", 2)
    assert [p.input for p in plans] == [c]
    assert len(errors) == 2 and all("a_mix_s1.wav would also be written for" in e for e in errors)


def test_outputs_never_replace_an_input_or_an_existing_file(tmp_path):
    mix, s1 = touch_wav(tmp_path / "d" / "mix.wav"), touch_wav(tmp_path / "d" / "mix_s1.wav")
    for overwrite in (False, True):
        plans, errors = plan_separation([mix, s1], None, 2, overwrite=overwrite)
        assert [p.input for p in plans] == [s1]
        assert len(errors) == 1 and "mix_s1.wav is an input of this command" in errors[0]
    existing = touch_wav(tmp_path / "e" / "x_s2.wav")
    x = touch_wav(tmp_path / "e" / "x.wav")
    plans, errors = plan_separation([x], None, 2)
    assert plans == [] and f"{existing} exists; pass --overwrite" in errors[0]
    plans, errors = plan_separation([x], None, 2, overwrite=True)
    assert errors == [] and plans[0].targets[1] == existing


def test_output_folder_problems_name_the_path(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(AudioError, match="is a file; --out must be a folder"):
        check_output_folder(f)
    with pytest.raises(AudioError, match=f"is under {f}, which is a file"):
        check_output_folder(f / "sub")
    with pytest.raises(AudioError, match="cannot write in this folder"):
        check_output_folder("/proc/audiomask-test")  # refused even for root
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(AudioError, match="cannot write in this folder"):
            check_output_folder(ro)


def test_output_file_checks(tmp_path):
    mic = touch_wav(tmp_path / "mic.wav")
    (tmp_path / "f").write_text("x")
    cases = {tmp_path / "f" / "y.wav": "which is a file", tmp_path / "noext": "needs an audio file name extension",
             tmp_path / "x.xyz": "needs an audio file name extension", mic: "is an input",
             tmp_path / "x.flac": "FLAC files cannot hold FLOAT samples; use --format pcm16 or pcm24"}
    for path, problem in cases.items():
        with pytest.raises(AudioError, match=problem):
            check_output_file(path, [mic], "FLOAT")
    assert check_output_file(tmp_path / "x.flac", [mic], "PCM_16") == tmp_path / "x.flac"


def test_folders_expand_to_sorted_audio_files_without_earlier_outputs(tmp_path):
    d = tmp_path / "d"
    for name in ["b.wav", "a.flac", "a_s1.wav", "a_s2.wav", "s1_s1x.wav"]:
        touch_wav(d / name) if name.endswith(".wav") else sf.write(d / name, np.zeros(10), 16000)
    (d / "notes.txt").write_text("x")
    files, errors, notes = expand_inputs([d, d / "b.wav", tmp_path / "empty"])
    assert [f.name for f in files] == ["a.flac", "b.wav", "s1_s1x.wav", "empty"]  # b.wav once
    assert notes == [f"{d}: 3 audio files (left out 2 earlier outputs)"]
    assert errors == []  # a missing path is kept as a file: reading it names the problem
    (tmp_path / "empty").mkdir()
    assert "no audio files in this folder" in expand_inputs([tmp_path / "empty"])[1][0]


def test_level_rule_restores_each_source_scale_and_polarity():
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(2, 8000, generator=g) * torch.tensor([[0.3], [0.1]])
    mix = sources.sum(0)
    est = torch.stack([-3.0 * sources[0], 5.0 * sources[1]])  # arbitrary scale and sign, as SI-SDR training gives
    scaled, gains = match_mixture_level(est, mix)
    assert torch.allclose(scaled, sources, atol=0.02 * sources.abs().max())
    assert gains[0] < 0 < gains[1]
    assert match_mixture_level(torch.zeros(2, 10), torch.ones(10))[1].tolist() == [1.0, 1.0]


def test_clipping_guard_scales_all_outputs_together_and_pcm16_round_trips(tmp_path):
    x = torch.stack([torch.linspace(-2.0, 2.0, 1000), torch.linspace(0.5, -0.5, 1000)])
    limited, scale = limit_peak(x)
    assert scale == pytest.approx(LIMITED_PEAK / 2.0) and torch.allclose(limited, x * scale)
    assert limit_peak(x * 0.4)[1] == 1.0
    paths = write_outputs([tmp_path / "a.wav", tmp_path / "b.wav"], limited, 16000, "PCM_16")
    for p, ref in zip(paths, limited):
        data, _ = sf.read(p, dtype="float32")
        assert sf.info(p).subtype == "PCM_16" and np.abs(data - ref.numpy()).max() < 1e-4


def test_failed_write_leaves_no_partial_set(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(AudioError, match="cannot write"):
        write_outputs([tmp_path / "a.wav", tmp_path / "blocker" / "b.wav"], torch.zeros(2, 100), 16000, "FLOAT")
    assert not (tmp_path / "a.wav").exists()


def test_thread_policy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert choose_threads() == 8 and choose_threads(work="stream", block_ms=10) == 1
    assert choose_threads(work="stream", block_ms=100) == 8
    monkeypatch.setattr(os, "getloadavg", lambda: (5.6, 0.0, 0.0))  # a busy machine: only the idle cores
    assert choose_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (20.0, 0.0, 0.0))
    assert choose_threads() == 1
    assert choose_threads(3, work="stream", block_ms=10) == 3  # --threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert choose_threads() == 4 and choose_threads(2) == 2
    with pytest.raises(ValueError):
        choose_threads(0)


def test_memory_light_si_sdr_equals_the_metric():
    g = torch.Generator().manual_seed(1)
    refs = torch.randn(3, 5000, generator=g) + 0.1
    est = refs[[2, 0, 1]] + 0.5 * torch.randn(3, 5000, generator=g)
    mix = refs.sum(0)
    matched, base = score_si_sdr(est, refs, mix, chunk=777)
    _, _, expected = pit(est.double()[None], refs.double()[None], metric="si_sdr")
    assert torch.allclose(matched, expected[0], atol=1e-9)
    assert torch.allclose(base, si_sdr(mix.double().expand_as(refs), refs.double()), atol=1e-9)


SCORE_3_MIN = """
import resource, torch
from audiomask.evaluate import score_si_sdr
T = 180 * 8000
refs = torch.randn(2, T); mix = refs.sum(0); est = refs + 0.3 * torch.randn(2, T)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
score_si_sdr(est, refs, mix)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_scoring_a_3_minute_file_adds_little_memory():
    """Issue 26 item 7: --ref raised a 3-minute file's peak memory from 386 MB to 1.15 GB
    (PIT + BSS-Eval on float64 copies); the Gram-matrix scorer adds a few MB."""
    out = subprocess.run([sys.executable, "-c", SCORE_3_MIN], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert float(out.stdout.strip()) < 20.0
