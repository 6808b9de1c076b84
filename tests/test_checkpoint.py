import json

import pytest
import torch
from safetensors.torch import save_file

import audiomask
from audiomask.models.checkpoint import CheckpointError, read_metadata


def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", preset="tiny", n_src=3, sample_rate=16000).eval()
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = audiomask.load(path)
    x = torch.randn(2, 5000)
    assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config and loaded.sample_rate == 16000 and loaded.n_src == 3
    meta = read_metadata(path)
    assert meta["model"] == "convtasnet" and meta["sample_rate"] == "16000"
    assert json.loads(meta["config"])["n_src"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def test_checkpoint_file_is_not_a_pickle(tmp_path):
    path = tmp_path / "m.safetensors"
    audiomask.build("convtasnet", preset="tiny").save(path)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert "__metadata__" in header  # safetensors layout: length, JSON header, raw tensors


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors: checkpoint not found"):
        audiomask.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="junk.safetensors: not a safetensors checkpoint"):
        audiomask.load(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="without audiomask metadata"):
        audiomask.load(foreign)


def test_mismatched_weights_are_named(tmp_path):
    model = audiomask.build("convtasnet", preset="tiny")
    state = model.state_dict()
    state["masker.bottleneck.weight"] = torch.zeros(3, 3, 1)
    del state["decoder.conv.weight"]
    meta = {"format": "audiomask", "model": "convtasnet",
            "config": json.dumps(model.make_config("tiny").__dict__), "sample_rate": "8000"}
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path, metadata=meta)
    with pytest.raises(CheckpointError) as err:
        audiomask.load(path)
    assert "decoder.conv.weight" in str(err.value) and "masker.bottleneck.weight" in str(err.value)
