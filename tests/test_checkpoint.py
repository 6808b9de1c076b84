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
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable PyTorch or safetensors checkpoint"):
        audiomask.load(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.safetensors: unknown format: no known release layout"):
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


def _write_config(path, config: dict, model: str = "convtasnet", sample_rate: str | None = None,
                  tensors: dict | None = None):
    """A safetensors checkpoint with audiomask metadata saying ``config`` (no model is built)."""
    meta = {"format": "audiomask", "model": model, "config": json.dumps(config),
            "sample_rate": sample_rate if sample_rate is not None else str(config.get("sample_rate", 8000))}
    save_file(tensors or {"w": torch.zeros(1)}, path, metadata=meta)
    return path


def test_huge_config_is_refused_before_allocation(tmp_path):
    import resource
    import time

    path = _write_config(tmp_path / "huge.safetensors", {"n_blocks": 1_000_000})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"huge.safetensors: .*n_blocks: 1000000 is out of range"):
        audiomask.load(path)
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no GBs allocated
    # within every field's bounds but too big as a whole: the parameter count is the ceiling
    big = _write_config(tmp_path / "big.safetensors", {"n_blocks": 16, "n_repeats": 64, "hid_chan": 8192})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"big.safetensors: bad convtasnet config: parameters: the config describes 3,297,202,305, above"):
        audiomask.load(big)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("field, value, message", [
    ("n_filters", True, "n_filters: expected an integer, got bool True"),
    ("n_filters", "512", "n_filters: expected an integer, got str '512'"),
    ("n_filters", 32.5, "n_filters: expected an integer, got float 32.5"),
    ("n_filters", -5, r"n_filters: -5 is out of range \[1, 8192\]"),
    ("norm", "batch", "norm: 'batch' is not one of 'gLN', 'cLN', 'chanLN'"),
    ("sample_rate", 0, r"sample_rate: 0 is out of range"),
    ("causal", 1, "causal: expected true or false, got 1"),
    ("colour", "red", "colour: unknown config field of convtasnet"),
])
def test_bad_config_fields_are_named(tmp_path, field, value, message):
    path = _write_config(tmp_path / "bad.safetensors", {field: value}, sample_rate="8000")
    with pytest.raises(CheckpointError, match=message) as err:
        audiomask.load(path)
    assert str(err.value).startswith(f"{path}: bad convtasnet config: ") and "\n" not in str(err.value)


def test_unknown_model_and_bad_json_are_named(tmp_path):
    path = _write_config(tmp_path / "what.safetensors", {}, model="wavenet")
    with pytest.raises(CheckpointError, match=r"what.safetensors: model: unknown model 'wavenet'"):
        audiomask.load(path)
    bad = tmp_path / "json.safetensors"
    save_file({"w": torch.zeros(1)}, bad, metadata={"format": "audiomask", "model": "convtasnet", "config": "{"})
    with pytest.raises(CheckpointError, match=r"json.safetensors: config: not valid JSON"):
        audiomask.load(bad)
    listed = _write_config(tmp_path / "list.safetensors", [1, 2], sample_rate="8000")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=r"list.safetensors: .*expected a JSON object"):
        audiomask.load(listed)


def test_nan_and_inf_weights_are_refused_naming_the_checkpoint(tmp_path):
    model = audiomask.build("convtasnet", preset="tiny")
    for bad in (float("nan"), float("inf")):
        state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
        state["masker.bottleneck.weight"][0, 0, 0] = bad
        path = tmp_path / "poisoned.safetensors"
        meta = {"format": "audiomask", "model": "convtasnet", "config": json.dumps(model.config.__dict__),
                "sample_rate": str(model.sample_rate)}
        save_file(state, path, metadata=meta)
        with pytest.raises(CheckpointError, match=r"poisoned.safetensors: non-finite weights \(NaN or Inf\) in "
                                                  r"\['masker.bottleneck.weight'\]"):
            audiomask.load(path)


def test_checkpoint_loader_fuzz(tmp_path):
    """Random bytes and random headers: always a one-line CheckpointError naming the file."""
    import random

    rng = random.Random(0)
    model = audiomask.build("convtasnet", preset="tiny")
    good = tmp_path / "good.safetensors"
    model.save(good)
    blob = good.read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + header_len])
    values = [None, True, -1, 0, 3, 2**63, 1e308, float("nan"), "x", "gLN", [], {}, [1, 2], {"a": 1}]
    cases = 0
    for i in range(160):
        kind = i % 4
        if kind == 0:  # random bytes
            data = rng.randbytes(rng.randrange(0, 300))
        elif kind == 1:  # a real file cut short or with flipped bytes
            data = bytearray(blob[: rng.randrange(0, len(blob))])
            for _ in range(rng.randrange(0, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:  # a valid header with random metadata / config / tensor entries
            h = json.loads(json.dumps(header))
            meta = h["__metadata__"]
            config = json.loads(meta["config"])
            for _ in range(rng.randrange(1, 4)):
                target = rng.choice(["config", "meta", "tensor"])
                if target == "config":
                    config[rng.choice(list(config) + ["extra"])] = rng.choice(values)
                elif target == "meta":
                    meta[rng.choice(["model", "sample_rate", "format", "config"])] = rng.choice(
                        ["convtasnet", "tiger", "nope", "", "8000", "0", "{"])
                else:
                    name = rng.choice([k for k in h if k != "__metadata__"])
                    field = rng.choice(["dtype", "shape", "data_offsets"])
                    h[name][field] = rng.choice([[0, 10**12], [5, 1], [3], "F16", "I8", [1, 2, 3], [-1]])
            if "config" in meta and meta["config"] != "{":
                meta["config"] = json.dumps(config)
            text = json.dumps(h).encode()
            data = len(text).to_bytes(8, "little") + text + blob[8 + header_len:]
        path = tmp_path / f"case{i}.safetensors"
        path.write_bytes(data)
        try:
            audiomask.load(path)
        except CheckpointError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
            cases += 1
    assert cases >= 150  # a few random configs are valid models, and load


def test_average_checkpoints_is_the_mean_of_the_weights(tmp_path):
    from audiomask.models.checkpoint import average_checkpoints

    paths = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = audiomask.build("d3net-aec", preset="small")
        model.train()(torch.randn(2, 4000), torch.randn(2, 4000))  # moves the BatchNorm statistics
        paths.append(tmp_path / f"m{seed}.safetensors")
        model.save(paths[-1])
    states = [audiomask.load(p).state_dict() for p in paths]
    average = average_checkpoints(paths).state_dict()
    for key, value in average.items():
        if value.is_floating_point():
            expected = sum(s[key].double() for s in states) / 3
            torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-7)
        else:
            assert torch.equal(value, max(s[key] for s in states))
    assert any(not torch.equal(states[0][k], states[1][k]) for k in average if "running_mean" in k)


def test_average_checkpoints_refuses_other_configs_and_existing_outputs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    a, b, out = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "out.safetensors"
    audiomask.build("convtasnet", preset="tiny").save(a)
    audiomask.build("convtasnet", preset="tiny", n_src=3).save(b)
    from audiomask.models.checkpoint import average_checkpoints

    with pytest.raises(CheckpointError, match="b.safetensors: convtasnet .* cannot be averaged with"):
        average_checkpoints([a, b])
    tool = Path(__file__).resolve().parents[1] / "tools" / "average_checkpoints.py"
    done = subprocess.run([sys.executable, str(tool), str(out), str(a), str(a)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read_metadata(out)["averaged_from"] == f"{a}, {a}"
    again = subprocess.run([sys.executable, str(tool), str(out), str(a), str(a)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists; not overwriting it" in again.stderr
