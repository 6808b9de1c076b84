"""Released checkpoints as published: each format's file layout built from random weights, read
through every entry point (audiomask.load, --model, convert, hf: from a local hub cache), and
the errors a user can meet. Nothing here touches the network."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

import audiomask
from audiomask.cli import main
from audiomask.interop import convert
from audiomask.interop.mossformer import to_clearervoice_mossformer2, to_modelscope_mossformer
from audiomask.interop.tiger import look2hear_key
from audiomask.models.checkpoint import CheckpointError, read_metadata

from test_interop import reference_state_dict

# Asteroid's get_model_args() of its paper-size ConvTasNet (filterbank + masker config).
ASTEROID_ARGS = {"fb_name": "free", "n_filters": 512, "kernel_size": 16, "stride": 8, "sample_rate": 8000.0,
                 "in_chan": 512, "out_chan": None, "bn_chan": 128, "hid_chan": 512, "skip_chan": 128,
                 "conv_kernel_size": 3, "n_blocks": 8, "n_repeats": 3, "n_src": 2, "norm_type": "gLN",
                 "mask_act": "sigmoid", "causal": False, "encoder_activation": None}


def _asteroid_release(folder: Path) -> tuple[Path, torch.nn.Module]:
    """pytorch_model.bin as Asteroid's hub publisher writes it (BaseModel.serialize + license note)."""
    state = reference_state_dict("convtasnet_asteroid.keys.txt", seed=1)
    package = {"model_name": "ConvTasNet", "state_dict": state, "model_args": dict(ASTEROID_ARGS),
               "infos": {"software_versions": {"torch_version": "2.0", "asteroid_version": "0.7.0"},
                         "license_note": "This work is licensed under CC BY-SA 3.0"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pytorch_model.bin"
    torch.save(package, path)
    return path, convert("asteroid-convtasnet", package)


def _clearervoice_release(folder: Path) -> tuple[Path, torch.nn.Module]:
    """checkpoints/MossFormer2_SS_16K/: last_best_checkpoint (a text pointer) and the .pt dict."""
    torch.manual_seed(2)
    source = audiomask.build("mossformer2", preset="small", group_size=256, sample_rate=16000).eval()
    state = {"module." + k: v for k, v in to_clearervoice_mossformer2(source).items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": 42, "step": 1000}, folder / "last_best_checkpoint.pt")
    (folder / "last_best_checkpoint").write_text("last_best_checkpoint.pt\n")
    return folder, source


def _modelscope_release(folder: Path) -> tuple[Path, torch.nn.Module]:
    """encoder.bin, decoder.bin, masknet.bin and configuration.json, as ModelScope ships them."""
    torch.manual_seed(3)
    source = audiomask.build("mossformer", preset="small", group_size=256).eval()
    theirs = to_modelscope_mossformer(source)
    folder.mkdir(parents=True, exist_ok=True)
    for part, prefix in (("encoder", "encoder."), ("decoder", "decoder."), ("masknet", "mask_net.")):
        torch.save({k[len(prefix):]: v for k, v in theirs.items() if k.startswith(prefix)}, folder / f"{part}.bin")
    (folder / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "speech-separation",
        "model": {"type": "speech_mossformer_separation_temporal_8k", "num_spks": 2, "group_size": 256,
                  "causal": False, "kernel_size": 16, "stride": 8, "in_channels": 256, "out_channels": 128,
                  "num_blocks": 4, "d_model": 128, "query_key_dim": 64, "expansion_factor": 4.0,
                  "attn_dropout": 0.1, "norm": "ln", "bias": False}}))
    return folder, source


def _tiger_release(folder: Path, with_config: bool = True) -> tuple[Path, torch.nn.Module]:
    """model.safetensors + config.json, as huggingface_hub's PyTorchModelHubMixin saves look2hear TIGER."""
    torch.manual_seed(4)
    source = audiomask.build("tiger", preset="tiny").eval()
    state = {look2hear_key(k): (v.reshape(1, -1, 1, 1) if look2hear_key(k).endswith((".gamma", ".beta")) else v)
             for k, v in source.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors", metadata={"format": "pt"})
    c = source.config
    if with_config:
        (folder / "config.json").write_text(json.dumps({
            "out_channels": c.feature_dim, "in_channels": c.hidden_dim, "num_blocks": c.n_iter,
            "upsampling_depth": c.depth, "att_n_head": c.n_heads, "att_hid_chan": c.qk_dim, "att_kernel_size": 8,
            "att_stride": 1, "win": c.win, "stride": c.hop, "num_sources": 2, "sample_rate": c.sample_rate}))
    return folder / "model.safetensors", source


RELEASES = {
    "asteroid-convtasnet": lambda d: _asteroid_release(d / "ConvTasNet_Libri2Mix_sepclean_8k"),
    "clearervoice-mossformer2": lambda d: _clearervoice_release(d / "checkpoints" / "MossFormer2_SS_16K"),
    "modelscope-mossformer": lambda d: _modelscope_release(d / "speech_mossformer_separation_temporal_8k"),
    "look2hear-tiger": lambda d: _tiger_release(d / "TIGER-speech"),
}


@pytest.mark.parametrize("fmt", sorted(RELEASES))
def test_release_loads_through_every_entry_point(tmp_path, fmt):
    release, source = RELEASES[fmt](tmp_path / "release")
    x = torch.randn(1, source.sample_rate // 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(x)
        loaded = audiomask.load(release)
        assert type(loaded) is type(source) and loaded.config == source.config
        assert torch.equal(loaded(x), expected)

    # audiomask convert, then the native file gives the same model and keeps the provenance
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(release), "--out", str(out), "-q"]) == 0
    meta = read_metadata(out)
    assert meta["source_format"] == fmt and meta["origin"].startswith(str(tmp_path))
    with torch.no_grad():
        assert torch.equal(audiomask.load(out)(x), expected)
    if fmt == "asteroid-convtasnet":
        assert meta["license"] == "This work is licensed under CC BY-SA 3.0"

    # --model on separate: the released file and the converted file write the same sources
    wav = tmp_path / "mix.wav"
    sf.write(wav, x[0].numpy(), source.sample_rate, subtype="FLOAT")
    for name, model in (("foreign", release), ("native", out)):
        assert main(["separate", str(wav), "--model", str(model), "--out", str(tmp_path / name), "-q"]) == 0
    for i in range(1, source.n_src + 1):
        a, _ = sf.read(tmp_path / "foreign" / f"mix_s{i}.wav")
        b, _ = sf.read(tmp_path / "native" / f"mix_s{i}.wav")
        assert np.array_equal(a, b) and np.abs(a).max() > 0


def test_info_shows_provenance_and_bundled_metadata(tmp_path, capsys):
    release, _ = _asteroid_release(tmp_path / "asteroid")
    assert main(["info", str(release)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"source_format\s+asteroid-convtasnet", text) and "CC BY-SA 3.0" in text
    assert main(["info", "convtasnet-mini2mix", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert float(info["metadata"]["valid_si_sdri"]) > 5 and int(info["metadata"]["steps"]) > 0
    assert "librispeech" in info["metadata"]["data"]


def test_convert_refuses_to_overwrite(tmp_path, capsys):
    release, _ = _tiger_release(tmp_path / "tiger")
    out = tmp_path / "tiger.safetensors"
    out.write_bytes(b"keep me")
    assert main(["convert", str(release), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["convert", str(release), "--out", str(out), "--overwrite", "-q"]) == 0
    assert read_metadata(out)["source_format"] == "look2hear-tiger"
    assert main(["convert", str(release), "--out", str(tmp_path / "x.pt")]) == 2


class _Marker:
    """Unpickling this would create a file (the stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"model_name": "ConvTasNet", "state_dict": {}, "payload": _Marker(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: refused: the file needs arbitrary code"):
        audiomask.load(path)
    assert main(["separate", str(path), "--model", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err
    assert not marker.exists()


def _one_line(fn, *args):
    with pytest.raises(CheckpointError) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_broken_releases_give_one_line_naming_file_and_problem(tmp_path):
    release, _ = _asteroid_release(tmp_path / "a")
    package = torch.load(release, weights_only=True)
    # wrong shape
    bad = dict(package, state_dict=dict(package["state_dict"]))
    bad["state_dict"]["masker.bottleneck.1.weight"] = torch.zeros(3, 3, 1)
    torch.save(bad, tmp_path / "shape.bin")
    msg = _one_line(audiomask.load, tmp_path / "shape.bin")
    assert msg.startswith(str(tmp_path / "shape.bin")) and "masker.bottleneck.weight has shape (3, 3, 1)" in msg
    # missing key
    bad = dict(package, state_dict={k: v for k, v in package["state_dict"].items() if "skip_conv" not in k})
    torch.save(bad, tmp_path / "missing.bin")
    msg = _one_line(audiomask.load, tmp_path / "missing.bin")
    assert msg.startswith(str(tmp_path / "missing.bin")) and "missing" in msg and "skip_conv" in msg
    # unknown format
    torch.save({"weights": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.bin")
    msg = _one_line(audiomask.load, tmp_path / "other.bin")
    assert msg.startswith(str(tmp_path / "other.bin")) and "unknown format" in msg
    torch.save([torch.zeros(2)], tmp_path / "list.bin")
    assert "unknown format" in _one_line(audiomask.load, tmp_path / "list.bin")
    # truncated file
    data = release.read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    msg = _one_line(audiomask.load, tmp_path / "cut.bin")
    assert msg.startswith(str(tmp_path / "cut.bin")) and "not a readable PyTorch or safetensors checkpoint" in msg
    # an Asteroid model this toolkit does not have
    torch.save(dict(package, model_name="DPRNNTasNet"), tmp_path / "dprnn.bin")
    assert "unsupported model 'DPRNNTasNet'" in _one_line(audiomask.load, tmp_path / "dprnn.bin")
    # NaN weights in a foreign file
    bad = dict(package, state_dict=dict(package["state_dict"]))
    bad["state_dict"]["encoder.filterbank._filters"] = torch.full((512, 1, 16), float("nan"))
    torch.save(bad, tmp_path / "nan.bin")
    assert "non-finite weights" in _one_line(audiomask.load, tmp_path / "nan.bin")
    # a config in the package that would allocate gigabytes
    torch.save(dict(package, model_args=dict(ASTEROID_ARGS, n_repeats=10**6)), tmp_path / "huge.bin")
    assert "n_repeats" in _one_line(audiomask.load, tmp_path / "huge.bin")


def test_tiger_without_its_config_names_the_missing_file(tmp_path):
    weights, _ = _tiger_release(tmp_path / "t", with_config=False)
    msg = _one_line(audiomask.load, weights)
    assert msg.startswith(str(weights)) and "config.json" in msg


def test_modelscope_folder_missing_a_part(tmp_path):
    folder, _ = _modelscope_release(tmp_path / "ms")
    (folder / "decoder.bin").unlink()
    msg = _one_line(audiomask.load, folder / "encoder.bin")
    assert "decoder.bin: missing" in msg


# -- the hub, from a local cache only ---------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay out ``files`` as huggingface_hub's cache does: blobs, snapshots/<commit>, refs/main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (root / "blobs").mkdir()
    for name, src in files.items():
        blob = root / "blobs" / f"blob-{name}"
        blob.write_bytes(src.read_bytes())
        (snap / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_release_from_the_local_cache(tmp_path, offline_hub, capsys):
    weights, source = _tiger_release(tmp_path / "tiger")
    _hub_cache(offline_hub, "JusperLee/TIGER-speech",
               {"model.safetensors": weights, "config.json": weights.parent / "config.json"})
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(audiomask.load("hf:JusperLee/TIGER-speech")(x), source(x))
    converted = offline_hub / "audiomask" / "JusperLee--TIGER-speech" / f"{COMMIT}.safetensors"
    meta = read_metadata(converted)
    assert meta["origin"] == f"hf:JusperLee/TIGER-speech@{COMMIT}" and meta["license"] == "Apache-2.0"
    stamp = converted.stat().st_mtime_ns
    wav = tmp_path / "mix.wav"
    sf.write(wav, x[0].numpy(), 16000, subtype="FLOAT")
    assert main(["separate", str(wav), "--model", "hf:JusperLee/TIGER-speech", "--out", str(tmp_path / "o"), "-q"]) == 0
    assert converted.stat().st_mtime_ns == stamp  # the cached conversion is reused
    assert (tmp_path / "o" / "mix_s2.wav").is_file()


def test_hub_offline_without_cached_files_says_what_to_download(offline_hub, capsys):
    assert main(["info", "hf:alibabasglab/MossFormer2_SS_16K"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot fetch last_best_checkpoint.pt" in err
    assert "https://huggingface.co/alibabasglab/MossFormer2_SS_16K" in err
    assert main(["info", "hf:someone/unknown"]) == 2
    assert "not a known release layout" in capsys.readouterr().err


def test_hub_without_the_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["info", "hf:JusperLee/TIGER-speech"]) == 2
    assert "pip install 'audiomask[hub]'" in capsys.readouterr().err


def test_list_published_and_descriptions(capsys):
    from audiomask.published import RELEASES

    assert main(["list", "--published"]) == 0
    text = capsys.readouterr().out
    for release in RELEASES:
        assert release.name in text and release.format in text
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "Conv-TasNet: learned filterbank" in text and re.search(r"convtasnet-mini2mix\s+convtasnet, 8 kHz; "
                                                                   r"validation SI-SDRi \d+\.\d+ dB", text)
    assert re.search(r"convtasnet:paper-causal\s+8 kHz; causal; the paper's configuration", text)
    assert re.search(r"tiger:small\s+16 kHz; n_iter=4", text)


def test_convert_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert", "--help"])
    assert e.value.code == 0 and "--overwrite" in capsys.readouterr().out


def test_asteroid_package_written_as_asteroid_does_and_read_back_by_asteroid(tmp_path):
    """The package dict of BaseModel.serialize (without its pytorch_lightning import): Asteroid's
    own from_pretrained reads the file, and audiomask's output equals Asteroid's."""
    from conftest import require_peer

    asteroid = require_peer("asteroid")
    torch.manual_seed(6)
    peer = asteroid.models.ConvTasNet(n_src=2, n_filters=64, kernel_size=16, n_blocks=3, n_repeats=2,
                                      bn_chan=32, hid_chan=64, skip_chan=32, sample_rate=8000).eval()
    package = {"model_name": type(peer).__name__, "state_dict": peer.get_state_dict(),
               "model_args": peer.get_model_args(), "infos": {"software_versions": {}}}
    path = tmp_path / "pytorch_model.bin"
    torch.save(package, path)
    again = asteroid.models.ConvTasNet.from_pretrained(str(path)).eval()
    x = torch.randn(1, 4000, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = audiomask.load(path)(x)
        assert torch.allclose(ours, peer(x), atol=1e-5) and torch.allclose(again(x), peer(x))


def _naplab(folder):
    state = reference_state_dict("convtasnet_naplab.keys.txt", seed=8)
    folder.mkdir(parents=True)
    torch.save(state, folder / "final.pth.tar")
    return folder / "final.pth.tar", convert("naplab-convtasnet", state)


def _modelscope_combined(folder):
    ms_folder, source = _modelscope_release(folder)
    parts = {p: torch.load(ms_folder / f"{p}.bin", weights_only=True) for p in ("encoder", "decoder", "masknet")}
    combined = {f"{'mask_net' if p == 'masknet' else p}.{k}": v for p, sd in parts.items() for k, v in sd.items()}
    for p in ("encoder", "decoder", "masknet"):
        (ms_folder / f"{p}.bin").unlink()
    torch.save(combined, ms_folder / "pytorch_model.bin")
    return ms_folder / "pytorch_model.bin", source


def _look2hear_package(folder):
    weights, source = _tiger_release(folder)
    config = json.loads((weights.parent / "config.json").read_text())
    from safetensors.torch import load_file

    state = {"audio_model." + k: v for k, v in load_file(weights).items()}  # Lightning's module prefix
    path = folder / "tiger_package.pth"
    torch.save({"model_name": "TIGER", "state_dict": state, "model_args": config}, path)
    (weights.parent / "config.json").unlink()
    return path, source


def _asteroid_bare_dataparallel(folder):
    state = reference_state_dict("convtasnet_asteroid.keys.txt", seed=9)
    folder.mkdir(parents=True)
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, folder / "best.ckpt")
    return folder / "best.ckpt", convert("asteroid-convtasnet", state)


@pytest.mark.parametrize("make", [_naplab, _modelscope_combined, _look2hear_package, _asteroid_bare_dataparallel],
                         ids=["naplab", "modelscope-combined", "look2hear-package", "asteroid-module-prefix"])
def test_other_published_layouts(tmp_path, make):
    path, source = make(tmp_path / "release")
    x = torch.randn(1, 4000, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        assert torch.equal(audiomask.load(path)(x), source(x))


def test_release_reader_fuzz(tmp_path):
    """Packages with random shapes, random model_args values and random bytes: each loads or
    gives one CheckpointError line naming the file, never another exception."""
    import random

    rng = random.Random(1)
    release, _ = _asteroid_release(tmp_path / "a")
    package = torch.load(release, weights_only=True)
    keys = list(package["state_dict"])
    values = [None, True, -1, 0, 3, 10**9, 0.5, float("nan"), "x", "cLN", [], {}, [1, 2]]
    shapes = [(), (0,), (3,), (0, 1, 16), (2, 2), (512, 1, 16, 1), (1,)]
    failures = 0
    for i in range(60):
        path = tmp_path / f"case{i}.bin"
        if i % 3 == 0:
            path.write_bytes(rng.randbytes(rng.randrange(0, 400)))
        else:
            state = dict(package["state_dict"])
            for key in rng.sample(keys, rng.randrange(1, 4)):
                state[key] = torch.zeros(rng.choice(shapes))
            args = dict(package["model_args"])
            for _ in range(rng.randrange(0, 3)):
                args[rng.choice(list(args))] = rng.choice(values)
            torch.save({**package, "state_dict": state, "model_args": args}, path)
        try:
            audiomask.load(path)  # a mutation can leave a valid model (a PReLU weight of shape (1,))
        except CheckpointError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
            failures += 1
    assert failures >= 50


def test_import_and_cli_list_never_touch_the_hub():
    import subprocess

    code = ("import sys, audiomask, audiomask.loading, audiomask.published; "
            "from audiomask.cli import main; main(['list', '--published']); "
            "print('huggingface_hub' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "False"
