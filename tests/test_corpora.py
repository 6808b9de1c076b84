"""Recipes: `audiomask prepare` on fake corpora laid out exactly like the real ones, and the
recipes' run.sh end to end (prepare → train 2 steps → evaluate → report) with tiny models.

The fake trees copy each corpus' folder structure, file naming and metadata files (LibriMix's
mixture CSVs with their columns, the AEC Challenge's meta.csv) with short random audio.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audiomask.cli import main as cli_main
from audiomask.data.manifest import MixtureDataset
from audiomask.models.registry import build, get_model_class, list_models
from audiomask.corpora import PREPARERS, PrepareError, prepare
from audiomask.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SECONDS = 0.3


def _wav(path: Path, rate: int, seed: int, seconds: float = SECONDS, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (int(seconds * rate),) + ((channels,) if channels > 1 else ())
    sf.write(path, (0.1 * rng.standard_normal(shape)).astype(np.float32), rate, subtype="PCM_16")


def _wsj_name(i: int, n_src: int) -> str:
    """wsj0-mix file names: <utt>_<snr> per speaker (create_wav_2speakers.m)."""
    utts = ["01aa010b", "209a010p", "40ho030k", "22ga010c", "011c0217", "420c020e"]
    gains = ["0.97482", "-0.97482", "1.2754"]
    return "_".join(f"{utts[(i + k) % len(utts)]}{i}_{gains[k]}" for k in range(n_src)) + ".wav"


def fake_wsj0mix(root: Path, n_src: int, rate: int = 8000, mode: str = "min",
                 counts: dict[str, int] | None = None) -> Path:
    """ROOT/<n>speakers/wav8k/min/{tr,cv,tt}/{mix,s1,s2[,s3]}/NAME.wav."""
    base = root / f"{n_src}speakers" / f"wav{rate // 1000}k" / mode
    for split, n in (counts or {"tr": 3, "cv": 2, "tt": 2}).items():
        for i in range(n):
            name = _wsj_name(i, n_src)
            for k, folder in enumerate(["mix"] + [f"s{j + 1}" for j in range(n_src)]):
                _wav(base / split / folder / name, rate, seed=i * 10 + k)
    return root


WHAM_FOLDERS = ["mix_clean", "mix_both", "mix_single", "s1", "s2", "noise"]
WHAMR_FOLDERS = [f"mix_{m}_{r}" for m in ("clean", "both", "single") for r in ("anechoic", "reverb")] + \
                [f"s{i}_{r}" for i in (1, 2) for r in ("anechoic", "reverb")] + ["noise"]


def fake_wham(root: Path, folders: list[str], rate: int = 8000) -> Path:
    """ROOT/wav8k/min/{tr,cv,tt}/<folders>/NAME.wav (wham_scripts / whamr_scripts output)."""
    for split, n in {"tr": 3, "cv": 2, "tt": 2}.items():
        for i in range(n):
            for k, folder in enumerate(folders):
                _wav(root / f"wav{rate // 1000}k" / "min" / split / folder / _wsj_name(i, 2), rate, seed=i * 20 + k)
    return root


def fake_librimix(root: Path, n_src: int, rate: int = 8000, mode: str = "min") -> Path:
    """ROOT/Libri<n>Mix/wav8k/min/{train-100,dev,test}/{mix_clean,mix_both,mix_single,s*,noise} and
    metadata/mixture_<split>_<type>.csv as create_librimix_from_metadata.py writes them."""
    base = root / f"Libri{n_src}Mix" / f"wav{rate // 1000}k" / mode
    sources = [f"s{j + 1}" for j in range(n_src)]
    for split, n in {"train-100": 3, "dev": 2, "test": 2}.items():
        ids = ["_".join(f"{100 * (i + k) + 19}-{198 + k}-{i:04d}" for k in range(n_src)) for i in range(n)]
        for i, mid in enumerate(ids):
            for k, folder in enumerate(["mix_clean", "mix_both", "mix_single", *sources, "noise"]):
                _wav(base / split / folder / f"{mid}.wav", rate, seed=i * 30 + k)
        for mix_type in ("mix_clean", "mix_both", "mix_single"):
            columns = ["mixture_ID", "mixture_path"]
            srcs = ["s1"] if mix_type == "mix_single" else sources
            columns += [f"source_{j + 1}_path" for j in range(len(srcs))]
            columns += ["noise_path"] if mix_type != "mix_clean" else []
            columns += ["length"]
            path = base / "metadata" / f"mixture_{split}_{mix_type}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(columns)
                for mid in ids:  # absolute paths of the generating machine, as in the real files
                    cells = [mid, f"/gen/Libri{n_src}Mix/wav8k/min/{split}/{mix_type}/{mid}.wav"]
                    cells += [f"/gen/Libri{n_src}Mix/wav8k/min/{split}/{s}/{mid}.wav" for s in srcs]
                    if mix_type != "mix_clean":
                        cells.append(f"/gen/Libri{n_src}Mix/wav8k/min/{split}/noise/{mid}.wav")
                    w.writerow(cells + [int(SECONDS * rate)])
    return root


def fake_echoset(root: Path, rate: int = 16000) -> Path:
    """ROOT/{train,val,test}/<scene>/<room>/<spk1>_<spk2>/{mix,spk1_reverb,spk2_reverb}.wav."""
    for split, n in {"train": 3, "val": 2, "test": 2}.items():
        for i in range(n):
            folder = root / split / f"17DRP5sb8fy{i % 2}" / f"room{i}" / f"{1089 + i}_{260 + i}"
            for k, name in enumerate(["mix.wav", "spk1_reverb.wav", "spk2_reverb.wav"]):
                _wav(folder / name, rate, seed=i * 40 + k)
    return root


AEC_META = ["nearend_speaker", "nearend_wav_path", "nearend_wav_path_noisy", "farend_speaker", "farend_wav_path",
            "farend_wav_path_noisy", "ser", "is_farend_nonlinear", "is_farend_noisy", "is_nearend_noisy", "split",
            "fileid", "nearend_scale"]


def fake_aec_challenge(root: Path, rate: int = 16000) -> Path:
    """microsoft/AEC-Challenge datasets/synthetic: four folders of <kind>_fileid_N.wav + meta.csv.
    Clip 4 is far-end single talk (silent near end)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for fid, split in enumerate(["train", "train", "train", "test", "test"]):
        rng = np.random.default_rng(fid)
        n = int(SECONDS * rate)
        near = np.zeros(n) if fid == 4 else 0.1 * rng.standard_normal(n)
        echo = 0.1 * rng.standard_normal(n)
        far = 0.1 * rng.standard_normal(n)
        for folder, name, x in [("nearend_speech", "nearend_speech", near), ("echo_signal", "echo", echo),
                                ("farend_speech", "farend_speech", far),
                                ("nearend_mic_signal", "nearend_mic", near + echo)]:
            (root / folder).mkdir(exist_ok=True)
            sf.write(root / folder / f"{name}_fileid_{fid}.wav", x.astype(np.float32), rate, subtype="PCM_16")
        rows.append([f"reader_{fid:05d}", f"clean_fileid_{fid}.wav", "n.wav", "reader_00001", "f.wav", "fn.wav",
                     -5, 1, 0, 1, split, fid, 0.7])
    with (root / "meta.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(AEC_META)
        w.writerows(rows)
    return root


def _build(dataset: str, tmp: Path) -> Path:
    root = tmp / "corpus"
    if dataset.startswith("wsj0"):
        return fake_wsj0mix(root, int(dataset[5]))
    if dataset.startswith("libri"):
        return fake_librimix(root, int(dataset[5]))
    if dataset == "wham":
        return fake_wham(root, WHAM_FOLDERS)
    if dataset == "whamr":
        return fake_wham(root, WHAMR_FOLDERS)
    if dataset == "echoset":
        return fake_echoset(root)
    return fake_aec_challenge(root / "datasets" / "synthetic")


EXPECTED = {  # dataset -> (splits and counts, manifest columns)
    "wsj0-2mix": ({"tr": 3, "cv": 2, "tt": 2}, ["mix", "s1", "s2"]),
    "wsj0-3mix": ({"tr": 3, "cv": 2, "tt": 2}, ["mix", "s1", "s2", "s3"]),
    "libri2mix": ({"train-100": 3, "dev": 2, "test": 2}, ["mix", "s1", "s2"]),
    "libri3mix": ({"train-100": 3, "dev": 2, "test": 2}, ["mix", "s1", "s2", "s3"]),
    "wham": ({"tr": 3, "cv": 2, "tt": 2}, ["mix", "s1", "s2", "noise"]),
    "whamr": ({"tr": 3, "cv": 2, "tt": 2}, ["mix", "s1", "s2", "noise"]),
    "echoset": ({"train": 3, "val": 2, "test": 2}, ["mix", "s1", "s2"]),
    "aec-challenge": ({"train": 3, "test": 2}, ["mic", "far", "near", "echo"]),
}


# ----------------------------------------------------------------------------- prepare
@pytest.mark.parametrize("dataset", list(PREPARERS))
def test_prepare_writes_manifests_of_every_split(dataset, tmp_path):
    assert set(EXPECTED) == set(PREPARERS)
    root = _build(dataset, tmp_path)
    result = prepare(dataset, tmp_path / "corpus", tmp_path / "data", progress=False)
    counts, columns = EXPECTED[dataset]
    assert result.counts == counts
    summary = json.loads((tmp_path / "data" / "prepare.json").read_text())
    assert summary["dataset"] == dataset and summary["columns"] == columns
    assert {summary["train"], summary["valid"], summary["test"]} <= set(counts)
    for split, n in counts.items():
        with (tmp_path / "data" / f"{split}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and list(rows[0]) == ["id", *columns]
        for row in rows:  # relative paths that lead back into the corpus, to files of one example
            files = [(tmp_path / "data" / row[c]).resolve() for c in columns]
            assert all(p.is_file() and str(p).startswith(str(root.resolve())) for p in files)
            assert not Path(row[columns[0]]).is_absolute()
        if dataset != "aec-challenge":  # the manifests are what audiomask train/evaluate read
            ds = MixtureDataset(tmp_path / "data" / f"{split}.csv")
            n_src = sum(c.startswith("s") for c in columns)
            mix, sources = ds[0]
            assert ds.n_src == n_src and sources.shape == (n_src, mix.shape[-1])
            assert mix.shape[-1] == int(SECONDS * summary["sample_rate"])
    assert result.hours[summary["test"]] == pytest.approx(counts[summary["test"]] * SECONDS / 3600, rel=1e-6)
    assert summary["splits"][summary["test"]]["examples"] == counts[summary["test"]]


def test_prepare_ids_and_layout_details(tmp_path):
    fake_librimix(tmp_path / "libri", 2)
    prepare("libri2mix", tmp_path / "libri" / "Libri2Mix", tmp_path / "l", task="sep_noisy", progress=False)
    rows = {r["id"]: r for r in csv.DictReader((tmp_path / "l" / "test.csv").open())}
    assert set(rows) == {"19-198-0000_119-199-0000", "119-198-0001_219-199-0001"}  # mixture_ID of the metadata
    row = rows["19-198-0000_119-199-0000"]
    assert row["mix"].endswith("test/mix_both/19-198-0000_119-199-0000.wav") and row["noise"].endswith(
        "test/noise/19-198-0000_119-199-0000.wav")
    fake_echoset(tmp_path / "echo")
    prepare("echoset", tmp_path / "echo", tmp_path / "e", progress=False)
    ids = [r["id"] for r in csv.DictReader((tmp_path / "e" / "val.csv").open())]
    assert ids == ["17DRP5sb8fy0/room0/1089_260/mix", "17DRP5sb8fy1/room1/1090_261/mix"]
    fake_wham(tmp_path / "whamr", WHAMR_FOLDERS)
    for task, mix in [("sep_reverb_noisy", "mix_both_reverb"), ("sep_clean", "mix_clean_anechoic")]:
        prepare("whamr", tmp_path / "whamr", tmp_path / task, task=task, progress=False)
        row = next(csv.DictReader((tmp_path / task / "tt.csv").open()))
        assert f"/{mix}/" in row["mix"] and "/s1_anechoic/" in row["s1"]
        assert bool(row.get("noise")) == (task == "sep_reverb_noisy")


def test_prepare_cli_reports_and_warns(tmp_path, capsys):
    fake_wsj0mix(tmp_path / "wsj", 2)
    assert cli_main(["prepare", "wsj0-2mix", str(tmp_path / "wsj"), "--out", str(tmp_path / "d"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "tt" in out and "prepare.json" in out
    assert "warning: wsj0-2mix: tr has 3 examples, the standard corpus has 20000" in err
    # the same command on a 16 kHz request: the copy has no wav16k folder
    assert cli_main(["prepare", "wsj0-2mix", str(tmp_path / "wsj"), "--out", str(tmp_path / "d2"),
                     "--sample-rate", "16000", "-q"]) == 2
    assert "audiomask: error: wsj0-2mix: split folder wav16k/min/tr/ not found under" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad copies
def _error(dataset: str, root: Path, tmp_path: Path, **kw) -> str:
    with pytest.raises(PrepareError) as info:
        prepare(dataset, root, tmp_path / "out", progress=False, **kw)
    message = str(info.value)
    assert "\n" not in message and not (tmp_path / "out" / "prepare.json").exists()
    return message


def test_missing_source_files_are_named_with_their_count(tmp_path):
    root = fake_wham(tmp_path / "wham", WHAM_FOLDERS)
    tt = root / "wav8k" / "min" / "tt"
    names = sorted(p.name for p in (tt / "s2").iterdir())
    for name in names:
        (tt / "s2" / name).unlink()
    message = _error("wham", root, tmp_path)
    assert message == f"wham: 2 files missing in wav8k/min/tt/s2: {names[0]}, {names[1]}"


def test_stray_and_missing_files_in_wsj0_3mix(tmp_path):
    root = fake_wsj0mix(tmp_path / "w", 3)
    cv = root / "3speakers" / "wav8k" / "min" / "cv"
    victim = sorted((cv / "s3").iterdir())[0]
    victim.unlink()
    _wav(cv / "s1" / "stray.wav", 8000, seed=1)
    message = _error("wsj0-3mix", root, tmp_path)
    assert f"1 file missing in 3speakers/wav8k/min/cv/s3: {victim.name}" in message
    assert "1 file in 3speakers/wav8k/min/cv/s1 not in 3speakers/wav8k/min/cv/mix: stray.wav" in message


def test_wrong_sample_rate_names_the_file_and_both_rates(tmp_path):
    root = fake_wsj0mix(tmp_path / "w", 2)
    bad = sorted((root / "2speakers" / "wav8k" / "min" / "tt" / "s1").iterdir())[1]
    _wav(bad, 16000, seed=3, seconds=SECONDS / 2)  # the same number of samples, at another rate
    message = _error("wsj0-2mix", root, tmp_path)
    assert message == (f"wsj0-2mix: 1 file not at the expected 8000 Hz (wav8k): "
                       f"2speakers/wav8k/min/tt/s1/{bad.name} (16000 Hz)")


def test_length_channels_and_unreadable_files(tmp_path):
    root = fake_wham(tmp_path / "r", WHAMR_FOLDERS)
    tr = root / "wav8k" / "min" / "tr"
    name = sorted((tr / "noise").iterdir())[0].name
    _wav(tr / "s2_anechoic" / name, 8000, seed=5, seconds=0.2)
    _wav(tr / "mix_both_reverb" / sorted((tr / "noise").iterdir())[1].name, 8000, seed=6, channels=2)
    (tr / "noise" / sorted((tr / "noise").iterdir())[2].name).write_bytes(b"not audio")
    message = _error("whamr", root, tmp_path)
    assert "1 file unreadable: wav8k/min/tr/noise/" in message
    assert "1 file not mono: wav8k/min/tr/mix_both_reverb/" in message and "(2 channels)" in message
    assert f"1 file differs in length from their mixture: wav8k/min/tr/s2_anechoic/{name} (1600 samples" in message


def test_librimix_is_checked_against_its_metadata(tmp_path):
    root = fake_librimix(tmp_path / "l", 2)
    base = root / "Libri2Mix" / "wav8k" / "min"
    meta = base / "metadata" / "mixture_dev_mix_clean.csv"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(lines + [lines[-1].replace("0001", "0009")]) + "\n")  # a listed mixture not on disk
    message = _error("libri2mix", root, tmp_path)
    missing = "119-198-0009_219-199-0009.wav"
    assert message.startswith(f"libri2mix: 1 file missing in Libri2Mix/wav8k/min/dev/mix_clean: {missing}")
    assert "1 file missing in Libri2Mix/wav8k/min/dev/s2" in message
    meta.write_text("\n".join(lines[:-1] + [lines[-1].rsplit(",", 1)[0] + ",1234"]) + "\n")  # wrong length
    message = _error("libri2mix", root, tmp_path)
    assert "1 file differs in length from the metadata: Libri2Mix/wav8k/min/dev/mix_clean/" in message
    assert "(2400 samples, the metadata say 1234)" in message
    meta.unlink()
    assert "metadata file Libri2Mix/wav8k/min/metadata/mixture_dev_mix_clean.csv not found" in \
        _error("libri2mix", root, tmp_path)


def test_echoset_and_aec_challenge_problems(tmp_path):
    root = fake_echoset(tmp_path / "e")
    victim = next((root / "test").rglob("spk2_reverb.wav"))
    victim.unlink()
    message = _error("echoset", root, tmp_path)
    assert message == f"echoset: 1 file missing next to their mixtures: {victim.relative_to(root).as_posix()}"
    aec = fake_aec_challenge(tmp_path / "a")
    (aec / "echo_signal" / "echo_fileid_3.wav").unlink()
    _wav(aec / "farend_speech" / "farend_speech_fileid_1.wav", 8000, seed=2, seconds=2 * SECONDS)
    message = _error("aec-challenge", aec, tmp_path)
    assert message == "aec-challenge: 1 file listed in meta.csv missing in echo_signal: echo_fileid_3.wav"
    _wav(aec / "echo_signal" / "echo_fileid_3.wav", 16000, seed=2)
    assert _error("aec-challenge", aec, tmp_path) == ("aec-challenge: 1 file not at the expected 16000 Hz (the AEC "
                                                      "Challenge is 16 kHz): farend_speech/farend_speech_fileid_1.wav "
                                                      "(8000 Hz)")


def test_options_are_checked(tmp_path):
    root = fake_wham(tmp_path / "w", WHAM_FOLDERS)
    assert "choose one of sep_clean, sep_noisy, enh_single" in _error("wham", root, tmp_path, task="sep_reverb")
    assert _error("echoset", root, tmp_path, mode="max") == \
        "echoset: --mode does not apply (the corpus has one version)"
    assert "not found" in _error("wham", tmp_path / "nowhere", tmp_path)
    with pytest.raises(PrepareError, match="unknown dataset 'timit'"):
        prepare("timit", root, tmp_path / "o")


# ----------------------------------------------------------------------------- configs
CONFIGS = sorted(RECIPES.glob("*/*.yaml"))


def test_every_recipe_has_run_sh_readme_and_configs():
    for dataset in PREPARERS:
        folder = RECIPES / dataset
        assert os.access(folder / "run.sh", os.X_OK), folder
        assert list(folder.glob("*.yaml")), folder
        readme = (folder / "README.md").read_text()
        assert "| model |" in readme and "./run.sh" in readme and "paper" in readme.lower()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_configs_load_and_match_the_prepared_manifests(config):
    cfg = load_config(config)
    models = list_models()
    assert cfg.model.name in models and cfg.model.preset in models[cfg.model.name]
    dataset = config.parent.name
    splits, columns = EXPECTED[dataset]
    if cfg.data.aec_dir is None:  # separation: the manifests prepare writes for train and valid
        summary_roles = {"tr", "cv", "train-100", "dev", "train", "val"}
        train, valid = Path(cfg.data.train_manifest), Path(cfg.data.valid_manifest)
        assert train.parent == valid.parent == config.parent / "data"
        assert {train.stem, valid.stem} <= summary_roles & set(splits)
        n_src = cfg.model.overrides.get("n_src", 2)
        assert n_src == sum(c.startswith("s") for c in columns)
    else:
        assert cfg.model.name == "d3net-aec"
    text = config.read_text()
    assert "Paper:" in text and "Where the settings come from" in text


FAMILIES = ("convtasnet", "mossformer", "mossformer2", "tiger")  # one config each in every separation recipe
SEPARATION = sorted(name for name, preparer in PREPARERS.items() if preparer.kind == "separation")
SMALL = {  # family -> (preset, shrinking overrides): the config's overrides on a model that builds fast
    "convtasnet": ("tiny", {}),
    "mossformer": ("small", {"n_layers": 1}),
    "mossformer2": ("small", {"n_layers": 1}),
    "tiger": (None, {}),  # the config's own preset: TIGER is 0.7-0.8 M parameters at full size
}


def _recipe_rate(dataset: str, model: str) -> int:
    """The sample rate run.sh prepares for ``model``: its ``model_sample_rates`` entry, else the
    recipe's ``default_sample_rate``."""
    text = (RECIPES / dataset / "run.sh").read_text()
    rate = int(re.search(r"^default_sample_rate=(\d+)", text, re.M).group(1))
    pairs = re.search(r'^model_sample_rates="([^"]*)"', text, re.M)
    for pair in pairs.group(1).split() if pairs else []:
        name, _, value = pair.partition(":")
        if name == model:
            rate = int(value)
    return rate


def test_every_separation_recipe_has_a_config_per_model_family():
    assert SEPARATION == sorted(["wsj0-2mix", "wsj0-3mix", "libri2mix", "libri3mix", "wham", "whamr", "echoset"])
    for dataset in SEPARATION:
        present = {p.stem for p in (RECIPES / dataset).glob("*.yaml")}
        assert set(FAMILIES) <= present, f"{dataset}: no config for {sorted(set(FAMILIES) - present)}"
    assert (RECIPES / "aec-challenge" / "d3net-aec.yaml").is_file()


@pytest.mark.parametrize("dataset, family", [(d, f) for d in SEPARATION for f in FAMILIES],
                         ids=lambda v: v)
def test_family_config_builds_its_model_for_the_corpus(dataset, family):
    """Each family's config builds its model config (preset + overrides) with the corpus' number of
    sources at the rate run.sh prepares; the same overrides on a small preset (TIGER: the config's
    own) give a model that separates a short mixture; the README has the config's row and command, and a row whose paper
    value is "not reported" goes with a config that marks its inferred settings."""
    config = RECIPES / dataset / f"{family}.yaml"
    cfg = load_config(config)
    assert cfg.model.name == family
    model_config = get_model_class(family).make_config(cfg.model.preset, **cfg.model.overrides)
    n_src = sum(c.startswith("s") for c in EXPECTED[dataset][1])
    rate = _recipe_rate(dataset, family)
    assert (model_config.n_src, model_config.sample_rate) == (n_src, rate), config
    preset, shrink = SMALL[family]
    fields = {**cfg.model.overrides, "n_src": n_src, "sample_rate": rate, **shrink}
    model = build(family, preset or cfg.model.preset, **fields).eval()
    mix = torch.randn(1, rate // 10)
    with torch.no_grad():
        assert model(mix).shape == (1, n_src, mix.shape[-1])
    readme = (RECIPES / dataset / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("|") and f"`{family}.yaml" in line]
    assert rows, f"{dataset}/README.md has no results row for {family}.yaml"
    assert all(f"--model {family}" in row for row in rows)
    if any("not reported" in row for row in rows):
        assert "inferred" in config.read_text()


# ----------------------------------------------------------------------------- run.sh end to end
TINY = ["optim.steps=2", "optim.batch_size=1", "optim.warmup_steps=0", "data.segment=0.25", "data.num_workers=0",
        "run.valid_every=2", "run.checkpoint_every=2", "run.threads=1", "run.log_every=1"]
RUNS = {  # family -> (dataset, model config, overrides)
    "wsj0-mix": ("wsj0-3mix", "convtasnet", ["model.preset=tiny"]),
    "librimix": ("libri2mix", "convtasnet", ["model.preset=tiny"]),
    "wham": ("whamr", "mossformer", ["model.preset=small", "model.overrides.n_layers=1"]),
    "echoset": ("echoset", "tiger", ["model.preset=tiny"]),
    "aec": ("aec-challenge", "d3net-aec", ["model.preset=tiny", "data.valid_segment=0.3", "data.segment=0.25"]),
}


def _run_sh(dataset: str, args: list[str], tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "AUDIOMASK": str(bindir / "audiomask") if (bindir / "audiomask").exists() else "audiomask",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", **env_extra}
    return subprocess.run(["bash", str(RECIPES / dataset / "run.sh"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(RUNS))
def test_run_sh_prepares_trains_evaluates_and_reports(family, tmp_path):
    dataset, model, overrides = RUNS[family]
    root = _build(dataset, tmp_path)
    if dataset == "aec-challenge":
        root = tmp_path / "corpus"  # the repository checkout: datasets/synthetic is found below it
    common = ["--root", str(root), "--model", model, "--data-dir", str(tmp_path / "data"),
              "--exp-dir", str(tmp_path / "exp"), "--no-pesq"]
    done = _run_sh(dataset, [*common, "--stop-stage", "4", *TINY, *overrides], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "data" / "prepare.json").read_text())
    exp = tmp_path / "exp" / model
    assert (exp / "best.safetensors").is_file() and (exp / "train.csv").is_file()
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["optim"]["steps"] == 2 and config["run"]["device"] == "cpu"
    with (exp / f"eval_{summary['test']}" / "per_utterance.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == EXPECTED[dataset][0][summary["test"]]
    assert all(np.isfinite(float(r["si_sdri"])) for r in rows if r["si_sdri"])
    if dataset == "aec-challenge":  # clip 4 has a silent near end: scored by ERLE, the others by SI-SDRi
        assert [r["scenario"] for r in rows] == ["nearend", "farend_single"]
        assert np.isfinite(float(rows[1]["erle"])) and rows[1]["si_sdri"] == "" and rows[0]["erle"] == ""
    results = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert f"| {model} | {dataset} |" in results and "| 2 | `" in results and f"--model {model}" in results
    if family != "wsj0-mix":
        return
    # resumable: every stage again skips or continues, and the results row is replaced, not repeated
    again = _run_sh(dataset, [*common, *TINY, *overrides], tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "already records this preparation; skipping" in again.stdout
    assert "newer than the checkpoint; skipping" in again.stdout
    assert (tmp_path / "exp" / "RESULTS.md").read_text().count(f"| {model} | {dataset} |") == 1


def test_run_sh_refuses_bad_arguments(tmp_path):
    done = _run_sh("wham", ["--model", "nosuchmodel"], tmp_path)
    assert done.returncode == 2 and "no config" in done.stderr and "mossformer2" in done.stderr
    done = _run_sh("wham", ["--stage", "2", "--data-dir", str(tmp_path / "d"), "--exp-dir", str(tmp_path / "e")],
                   tmp_path)
    assert done.returncode == 2 and "run stage 1 first" in done.stderr
    done = _run_sh("wham", ["--ngpu", "2", "--gpus", "0"], tmp_path)
    assert done.returncode == 2 and "--ngpu 2 but --gpus 0 names 1 GPU(s)" in done.stderr
    done = _run_sh("wham", ["--help"], tmp_path)
    assert done.returncode == 0 and "--stop-stage" in done.stdout


def test_missing_file_fails_run_sh_stage_1_with_its_name(tmp_path):
    root = fake_wsj0mix(tmp_path / "corpus", 2)
    victim = sorted((root / "2speakers" / "wav8k" / "min" / "cv" / "s2").iterdir())[0]
    victim.unlink()
    done = _run_sh("wsj0-2mix", ["--root", str(root), "--stop-stage", "1", "--data-dir", str(tmp_path / "d"),
                                 "--exp-dir", str(tmp_path / "e")], tmp_path)
    assert done.returncode == 2
    assert f"audiomask: error: wsj0-2mix: 1 file missing in 2speakers/wav8k/min/cv/s2: {victim.name}" in done.stderr


@pytest.mark.slow
def test_run_sh_trains_with_torchrun_when_ngpu_above_1(tmp_path):
    """--ngpu 2 launches torchrun with two ranks (on a machine without GPUs they run on the
    CPU with gloo: run.device=cpu), which write one checkpoint."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to this Python")
    wrapper = tmp_path / "torchrun"  # records how run.sh launches it
    wrapper.write_text(f'#!/usr/bin/env bash\necho "$@" > {tmp_path}/torchrun.args\nexec {torchrun} "$@"\n')
    wrapper.chmod(0o755)
    root = fake_wsj0mix(tmp_path / "corpus", 2, counts={"tr": 4, "cv": 2, "tt": 2})
    done = _run_sh("wsj0-2mix", ["--root", str(root), "--model", "convtasnet", "--stop-stage", "2",
                                 "--ngpu", "2", "--gpus", "0,1", "--data-dir", str(tmp_path / "data"),
                                 "--exp-dir", str(tmp_path / "exp"), *TINY, "model.preset=tiny", "run.device=cpu"],
                   tmp_path, TORCHRUN=str(wrapper))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    launched = (tmp_path / "torchrun.args").read_text().split()
    assert launched[:6] == ["--standalone", "--nproc-per-node", "2", "-m", "audiomask", "train"]
    assert "[rank1]" in done.stderr or done.stdout.count("best validation SI-SDRi") == 2  # a second rank ran
    assert (tmp_path / "exp" / "convtasnet" / "best.safetensors").is_file()
