"""``audiomask evaluate`` and the manifest datasets, checked against an independent
float64 numpy computation on real speech mixtures (LibriSpeech, 8 kHz)."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import audiomask
from audiomask.cli import main
from audiomask.data import ManifestError, MixtureDataset, read_manifest, scan_mixture_dir
from audiomask.evaluate import evaluate, t_critical

from conftest import require_peer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIBRI = SHARED_DATA / "librispeech-mini"
RATE = 8000
SECONDS = 1.5
NAMES = ["utt0", "utt1", "utt2"]


# --------------------------------------------------------------------------- #
# fixtures: 3 real two-speaker mixtures, a tiny checkpoint, one CLI run
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def speech16k() -> list[np.ndarray]:
    """Six 1.5 s excerpts of six different speakers at 16 kHz (float32)."""
    if not LIBRI.is_dir():
        pytest.skip(f"real speech not found at {LIBRI}")
    files = sorted(LIBRI.glob("*.flac"))[:6]
    out = []
    for f in files:
        x, rate = sf.read(f, dtype="float32")
        assert rate == 16000
        out.append(x[8000 : 8000 + int(SECONDS * 16000)])
    return out


def _pairs(speech: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sources of mixture k: speakers 2k and 2k+1, at different levels (peaks 0.5 and 0.3·…)."""
    out = []
    for k in range(3):
        a, b = speech[2 * k], speech[2 * k + 1]
        out.append((0.5 * a / np.abs(a).max(), (0.2 + 0.1 * k) * b / np.abs(b).max()))
    return out


@pytest.fixture(scope="module")
def mix_dir(speech16k, tmp_path_factory) -> Path:
    """``root/mix``, ``root/s1``, ``root/s2`` with utt0..2.wav at 8 kHz (float WAV)."""
    root = tmp_path_factory.mktemp("mixtures8k")
    for name, (a, b) in zip(NAMES, _pairs(speech16k)):
        s1 = soxr.resample(a, 16000, RATE, quality="HQ").astype(np.float32)
        s2 = soxr.resample(b, 16000, RATE, quality="HQ").astype(np.float32)
        for folder, x in (("mix", s1 + s2), ("s1", s1), ("s2", s2)):
            (root / folder).mkdir(exist_ok=True)
            sf.write(root / folder / f"{name}.wav", x, RATE, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    audiomask.build("convtasnet", preset="tiny").save(path)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return audiomask.load(checkpoint)


def _run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def dir_run(mix_dir, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-dir")
    code, stdout, stderr = _run("evaluate", "--model", checkpoint, "--data", mix_dir, "--out", out, "--no-pesq", "-q")
    assert code == 0, stderr
    return out, stdout


# --------------------------------------------------------------------------- #
# the independent computation
# --------------------------------------------------------------------------- #
def _si_sdr64(est: np.ndarray, ref: np.ndarray) -> float:
    est = est.astype(np.float64) - est.mean()
    ref = ref.astype(np.float64) - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


def _model_estimates(model, mix: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(mix.astype(np.float32))[None])[0].numpy()


def _best_order(est: np.ndarray, refs: np.ndarray) -> tuple[int, ...]:
    """Brute force over all permutations: est[order[i]] goes with refs[i]."""
    return max(itertools.permutations(range(len(refs))),
               key=lambda p: np.mean([_si_sdr64(est[p[i]], refs[i]) for i in range(len(refs))]))


def _independent_si_sdri(model, mix: np.ndarray, refs: np.ndarray) -> float:
    est = _model_estimates(model, mix)
    order = _best_order(est, refs)
    return float(np.mean([_si_sdr64(est[order[i]], refs[i]) - _si_sdr64(mix, refs[i]) for i in range(len(refs))]))


def _read_csv(path: Path) -> dict[str, dict[str, float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["id"]: {k: float(v) for k, v in r.items() if k != "id"} for r in rows}


def _files(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    mix, _ = sf.read(root / "mix" / f"{name}.wav", dtype="float32")
    refs = np.stack([sf.read(root / s / f"{name}.wav", dtype="float32")[0] for s in ("s1", "s2")])
    return mix, refs


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #
def test_directory_si_sdri_matches_independent_computation(dir_run, mix_dir, model):
    out, stdout = dir_run
    rows = _read_csv(out / "per_utterance.csv")
    assert list(rows) == NAMES
    assert list(rows["utt0"]) == ["si_sdr", "si_sdri", "sdr", "sdri"]
    for name in NAMES:
        mix, refs = _files(mix_dir, name)
        expected = _independent_si_sdri(model, mix, refs)
        assert abs(rows[name]["si_sdri"] - expected) < 1e-3, (name, rows[name]["si_sdri"], expected)
        baseline = np.mean([_si_sdr64(mix, r) for r in refs])
        assert abs(rows[name]["si_sdr"] - rows[name]["si_sdri"] - baseline) < 1e-3
        assert abs(rows[name]["sdr"] - rows[name]["sdri"]) > 0.1  # a real mixture baseline, not 0

    # The printed summary: mean, median and the Student-t 95% CI of the mean.
    si = np.array([rows[n]["si_sdri"] for n in NAMES])
    half = 4.302652729749464 * si.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    line = next(l for l in stdout.splitlines() if l.startswith("SI-SDRi (dB)"))
    assert line.split()[2:4] == [f"{si.mean():.2f}", f"{np.median(si):.2f}"]
    assert f"[{si.mean() - half:.2f}, {si.mean() + half:.2f}]" in line
    assert "Student t" in stdout and "PESQ/STOI: skipped" in stdout and "evaluated 3 mixtures" in stdout


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_directory_sdri_matches_mir_eval(dir_run, mix_dir, model):
    mir_eval = require_peer("mir_eval")
    rows = _read_csv(dir_run[0] / "per_utterance.csv")
    for name in NAMES[:2]:
        mix, refs = _files(mix_dir, name)
        est = _model_estimates(model, mix)
        est = est[list(_best_order(est, refs))].astype(np.float64)
        sdr_est = mir_eval.separation.bss_eval_sources(refs.astype(np.float64), est, compute_permutation=False)[0]
        sdr_mix = mir_eval.separation.bss_eval_sources(
            refs.astype(np.float64), np.stack([mix, mix]).astype(np.float64), compute_permutation=False)[0]
        assert abs(rows[name]["sdr"] - sdr_est.mean()) < 1e-3
        assert abs(rows[name]["sdri"] - (sdr_est - sdr_mix).mean()) < 1e-3


def test_histogram_is_a_valid_png(dir_run):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    png = dir_run[0] / "si_sdri_hist.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not list(dir_run[0].glob(".*"))  # no temporary files left behind


def test_csv_manifest_with_relative_and_absolute_paths(mix_dir, checkpoint, model, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    rel = Path(os.path.relpath(mix_dir, lists))
    manifest = lists / "test.csv"
    lines = ["id,mix,s1,s2"]
    for k, name in enumerate(NAMES):
        base = mix_dir if k == 2 else Path(rel)  # last row absolute, the others relative
        lines.append(f"m{k},{base / 'mix' / name}.wav,{base / 's1' / name}.wav,{base / 's2' / name}.wav")
    manifest.write_text("\n".join(lines) + "\n")
    assert [e.id for e in read_manifest(manifest)] == ["m0", "m1", "m2"]

    code, _, err = _run("evaluate", "--model", checkpoint, "--data", manifest, "--out", tmp_path / "o", "-q")
    assert code == 0, err
    rows = _read_csv(tmp_path / "o" / "per_utterance.csv")
    assert list(rows) == ["m0", "m1", "m2"]
    for k, name in enumerate(NAMES):
        assert abs(rows[f"m{k}"]["si_sdri"] - _independent_si_sdri(model, *_files(mix_dir, name))) < 1e-3


def test_json_manifest_at_16k_is_resampled_to_the_model_rate(speech16k, checkpoint, model, tmp_path):
    entries = []
    for name, (a, b) in zip(NAMES, _pairs(speech16k)):
        for folder, x in (("mix", a + b), ("s1", a), ("s2", b)):
            (tmp_path / folder).mkdir(exist_ok=True)
            sf.write(tmp_path / folder / f"{name}.wav", x, 16000, subtype="FLOAT")
        entries.append({"mix": f"mix/{name}.wav", "s1": f"s1/{name}.wav", "s2": f"s2/{name}.wav"})
    manifest = tmp_path / "test.json"
    manifest.write_text(json.dumps(entries))

    summary = evaluate(model, manifest, tmp_path / "o", compute_pesq_stoi=False, progress=False,
                       print_summary=False)
    assert summary.sample_rate == RATE and summary.n_utterances == 3
    rows = _read_csv(tmp_path / "o" / "per_utterance.csv")
    assert list(rows) == NAMES  # ids from the mixture stems
    for name, (a, b) in zip(NAMES, _pairs(speech16k)):
        down = [soxr.resample(x.astype(np.float32), 16000, RATE, quality="HQ") for x in (a + b, a, b)]
        expected = _independent_si_sdri(model, down[0], np.stack(down[1:]))
        assert abs(rows[name]["si_sdri"] - expected) < 1e-3
        assert abs(summary.stats["si_sdri"].mean - np.mean([r["si_sdri"] for r in summary.rows])) < 1e-9


def test_layout_errors_name_the_files(mix_dir, checkpoint, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(mix_dir, root)
    (root / "s2" / "utt1.wav").unlink()
    shutil.copy(root / "s1" / "utt0.wav", root / "s1" / "stray.wav")
    with pytest.raises(ManifestError) as e:
        scan_mixture_dir(root)
    assert "1 missing: s2/utt1.wav" in str(e.value) and "1 without a mixture in mix/: s1/stray.wav" in str(e.value)

    out = tmp_path / "o"
    code, _, err = _run("evaluate", "--model", checkpoint, "--data", root, "--out", out, "-q")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("audiomask: error: ")
    assert "s2/utt1.wav" in err and "stray.wav" in err
    assert not out.exists()

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"mix,s1,s2\n{mix_dir}/mix/utt0.wav,{mix_dir}/s1/utt0.wav,nowhere/gone.wav\n")
    code, _, err = _run("evaluate", "--model", checkpoint, "--data", manifest, "--out", out, "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "1 listed file(s) not found" in err and "gone.wav" in err

    (root / "s2" / "utt1.wav").write_bytes(b"RIFF0000WAVEjunk" * 10)  # corrupt audio fails on read
    (root / "s1" / "stray.wav").unlink()
    code, _, err = _run("evaluate", "--model", checkpoint, "--data", root, "--out", out, "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "utt1.wav" in err
    assert not (out / "per_utterance.csv").exists()

    for text, problem in [("mix,s1,s3\na.wav,b.wav,c.wav\n", "without gaps"),
                          ("s1,s2\na.wav,b.wav\n", "no 'mix' column")]:
        manifest.write_text(text)
        code, _, err = _run("evaluate", "--model", checkpoint, "--data", manifest, "--out", out, "-q")
        assert code == 2 and problem in err and len(err.strip().splitlines()) == 1


def test_source_count_mismatch_and_three_sources(mix_dir, checkpoint, tmp_path):
    s = f"{mix_dir}/s1/utt0.wav"
    manifest = tmp_path / "three.csv"
    manifest.write_text(f"id,mix,s1,s2,s3\nx,{mix_dir}/mix/utt0.wav,{s},{s},{s}\n")
    ds = MixtureDataset(manifest)
    mix, src = ds[0]
    assert ds.n_src == 3 and src.shape == (3, mix.shape[-1]) and ds.utterance_id(0) == "x"
    code, _, err = _run("evaluate", "--model", checkpoint, "--data", manifest, "--out", tmp_path / "o", "-q")
    assert code == 2 and "separates 2 sources but the data has 3" in err

    manifest.write_text(f"mix,s1,s2,noise\n{mix_dir}/mix/utt0.wav,{s},{s},{s}\n{mix_dir}/mix/utt1.wav,{s},{s},\n")
    ds = MixtureDataset(manifest, segment=0.25)
    assert ds.ids == ["utt0", "utt1"] and ds.n_src == 2 and len(ds[0]) == 2
    ex = ds.example(0)
    assert ex.noise is not None and torch.equal(ex.noise, ex.sources[0]) and ds.example(1).noise is None


def test_dataset_crops_are_deterministic_per_index(mix_dir):
    full = MixtureDataset(mix_dir)
    a = MixtureDataset(mix_dir, segment=0.5, seed=3)
    b = MixtureDataset(mix_dir, segment=0.5, seed=3)
    assert a.ids == NAMES and full.sample_rate is None
    starts = []
    for i in range(3):
        (m1, s1), (m2, s2) = a[i], b[i]
        assert torch.equal(m1, m2) and torch.equal(s1, s2) and m1.shape == (4000,) and s1.shape == (2, 4000)
        start = int(np.random.default_rng((3, i)).integers(0, int(SECONDS * RATE) - 4000 + 1))
        fm, fs = full[i]
        assert torch.equal(m1, fm[start : start + 4000]) and torch.equal(s1, fs[:, start : start + 4000])
        starts.append(start)
    assert len(set(starts)) > 1
    long = MixtureDataset(mix_dir, segment=2.0)[0]  # longer than the 1.5 s files: zero-padded
    assert long[0].shape == (16000,) and torch.all(long[0][12000:] == 0)
    up = MixtureDataset(mix_dir, sample_rate=16000)[0]
    assert up[0].shape == (24000,) and up[1].shape == (2, 24000)


def test_pesq_stoi_when_the_packages_import(mix_dir, model, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_pesq(fs, ref, deg, mode):
        calls.append((fs, mode, len(ref)))
        return 2.5

    monkeypatch.setitem(sys.modules, "pesq", types.SimpleNamespace(pesq=fake_pesq))
    monkeypatch.setitem(sys.modules, "pystoi", types.SimpleNamespace(stoi=lambda x, y, fs, extended: 0.75))
    summary = evaluate(model, mix_dir, tmp_path / "a", progress=False)
    assert summary.pesq_stoi and summary.metrics[-2:] == ["pesq_nb", "stoi"]
    assert calls[0] == (8000, "nb", int(SECONDS * RATE)) and len(calls) == 6
    rows = _read_csv(tmp_path / "a" / "per_utterance.csv")
    assert all(r["pesq_nb"] == 2.5 and r["stoi"] == 0.75 for r in rows.values())
    assert "PESQ NB" in capsys.readouterr().out

    monkeypatch.setitem(sys.modules, "pesq", None)  # not installed: skipped, and said so
    summary = evaluate(model, mix_dir, tmp_path / "b", progress=False)
    assert not summary.pesq_stoi and "pesq" not in summary.rows[0]
    assert "PESQ/STOI: skipped, pesq not installed (pip install 'audiomask[metrics]')" in capsys.readouterr().out
    with pytest.raises(ImportError, match="pesq"):
        evaluate(model, mix_dir, tmp_path / "c", compute_pesq_stoi=True, progress=False)


def test_missing_matplotlib_skips_the_png_with_a_note(mix_dir, model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    summary = evaluate(model, mix_dir, tmp_path, compute_pesq_stoi=False, progress=False)
    assert summary.plot_path is None and not (tmp_path / "si_sdri_hist.png").exists()
    assert "pip install 'audiomask[plot]'" in capsys.readouterr().out


def test_t_critical_values():
    for df, t in [(1, 12.706204736), (2, 4.302652730), (5, 2.570581836), (30, 2.042272456), (1000, 1.962339081)]:
        assert abs(t_critical(df) - t) < 1e-8


def test_evaluate_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: audiomask evaluate" in out
    assert "--no-pesq" in out and "mix,s1,s2" in out and "per_utterance.csv" in out
