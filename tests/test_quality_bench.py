"""bench/quality.py: fixed validation sets of held-out speakers, and the table it writes."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomask.data import split_by_speaker, speaker_of
from audiomask.data.conversation import ConversationDataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not (module.DATA / "librispeech-mini").is_dir():
        pytest.skip(f"real speech not found at {module.DATA}")
    return module


@pytest.fixture(scope="module")
def split(speech_files):
    return split_by_speaker(speech_files, 25, seed=0)  # as egs/mini2mix/conf.yaml


def test_sets_hold_only_unseen_speakers_and_are_fixed(quality, split, tmp_path):
    train, valid = split
    train_speakers = {speaker_of(f) for f in train}
    for cond in ("clean-8k", "turn-taking-16k"):
        a, rate = quality.build_set(cond, valid, 2, 1.0, tmp_path, conversation_s=20.0)
        b, _ = quality.build_set(cond, valid, 2, 1.0, tmp_path, conversation_s=20.0)
        assert rate == (8000 if cond == "clean-8k" else 16000)
        assert len(a.speakers) == 25 and not set(a.speakers) & train_speakers
        assert torch.equal(a[1][0], b[1][0])  # the same mixture on every run


def test_noise_is_the_held_out_tail_of_each_recording(quality, tmp_path):
    files = quality.held_out_noise(quality.DATA / "noise", tmp_path)
    assert len(files) == 3
    for f in files:
        full, rate = sf.read(quality.DATA / "noise" / f.name, dtype="float32")
        tail, tail_rate = sf.read(f, dtype="float32")
        start = int(round(len(full) * (1 - quality.NOISE_VALID_FRACTION)))
        assert tail_rate == rate and np.array_equal(tail, full[start:])


def test_quick_run_writes_the_table(quality, tmp_path):
    out_json, out_md = tmp_path / "q.json", tmp_path / "q.md"
    res = quality.main(["convtasnet:tiny", "--quick", "--conditions", "clean-8k", "turn-taking-16k",
                        "--json", str(out_json), "--markdown", str(out_md)])
    assert json.loads(out_json.read_text())["models"].keys() == {"convtasnet:tiny"}
    conds = res["models"]["convtasnet:tiny"]
    assert list(conds) == ["clean-8k", "turn-taking-16k"]
    assert conds["clean-8k"]["summary"]["si_sdri"]["n"] == 3
    assert conds["turn-taking-16k"]["summary"]["sdri"]["n"] == 1
    s = conds["clean-8k"]["summary"]["si_sdri"]
    assert s["ci95"][0] < s["mean"] < s["ci95"][1]
    assert all(math.isfinite(r["si_sdri"]) for r in conds["clean-8k"]["per_mixture"])
    table = out_md.read_text()
    assert "| clean-8k | 3 |" in table and "| turn-taking-16k | 1 |" in table


def test_conversation_takes_turns(split):
    ds = ConversationDataset(split[1], 8000, duration=60, length=1, seed=3)
    mix, src, speakers, meta = ds.draw(0, with_meta=True)
    assert mix.shape == (60 * 8000,) and src.shape == (2, 60 * 8000) and len(set(speakers)) == 2
    assert torch.allclose(src.sum(0), mix)
    turns = meta["turns"]
    assert all(a[0] != b[0] for a, b in zip(turns, turns[1:]))  # speakers alternate
    active = src.abs() > 1e-4
    both = (active[0] & active[1]).float().mean().item()
    alone = (active[0] ^ active[1]).float().mean().item()
    assert alone > 0.5 and 0 < both < 0.3  # mostly one speaker at a time, some overlap
