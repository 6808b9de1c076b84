"""The trained models shipped with the package: they load, and reach the model card's numbers
on mixtures of speakers never seen in training."""

import pytest
import torch

import audiomask
from audiomask.data import DynamicMixingDataset, find_audio, split_by_speaker
from audiomask.metrics import pit, si_sdr
from audiomask.models.checkpoint import pretrained_models, read_metadata
from conftest import LIBRI

#: bundled separators: name → (causal, sample rate)
SHIPPED = {"convtasnet-mini2mix": (False, 8000), "convtasnet-mini2mix-causal": (True, 8000),
           "convtasnet-robust16k": (False, 16000), "convtasnet-robust16k-causal": (True, 16000)}


@pytest.fixture(scope="module")
def validation_mixtures():
    """The 100 validation mixtures of egs/mini2mix (run.seed 0 + 10000): 25 held-out speakers."""
    if not LIBRI.is_dir():
        pytest.skip(f"real speech not found at {LIBRI}")
    _, valid = split_by_speaker(find_audio(LIBRI), 25, seed=0)  # the split the training used
    return DynamicMixingDataset(valid, 8000, 4.0, 2, length=100, sir_db=5.0, seed=10_000)


def test_shipped_models_are_bundled_and_small():
    bundled = pretrained_models()
    assert set(SHIPPED) <= set(bundled)
    assert sum(p.stat().st_size for p in bundled.values()) <= 40 * 2**20  # issue 20: ≤ 40 MB in all
    for name, (causal, rate) in SHIPPED.items():
        model = audiomask.load(name)
        assert model.causal == causal and model.sample_rate == rate and model.n_src == 2
        assert float(read_metadata(bundled[name])["valid_si_sdri"]) > 0


def mean_si_sdri(model, data) -> float:
    gains = []
    with torch.inference_mode():
        for i in range(len(data)):
            mix, src = data[i]
            scores = pit(model(mix[None]), src[None])[2]
            gains.append((scores - si_sdr(mix.expand_as(src)[None], src[None])).mean().item())
    return sum(gains) / len(gains)


@pytest.mark.slow  # re-measures the card on 100 validation mixtures (minutes); CI runs it with -m slow
@pytest.mark.parametrize("name,floor_db", [("convtasnet-mini2mix", 8.0), ("convtasnet-mini2mix-causal", 2.0)])
def test_shipped_models_reach_their_card_on_unseen_speakers(name, floor_db, validation_mixtures):
    """The SI-SDRi in each checkpoint's metadata (and MODEL_CARD.md) is what it measures."""
    gain = mean_si_sdri(audiomask.load(name), validation_mixtures)
    claimed = float(read_metadata(pretrained_models()[name])["valid_si_sdri"])
    assert abs(gain - claimed) < 0.02, (gain, claimed)
    assert gain >= floor_db, gain


def load_bench(script: str):
    """A ``bench/`` script as a module (its fixed validation sets and scoring); skips the test
    when the real speech it draws from is not beside the project."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not (module.DATA / "librispeech-mini").is_dir():
        pytest.skip(f"real speech not found at {module.DATA}")
    return module


@pytest.fixture(scope="module")
def quality_bench():
    """bench/quality.py, whose fixed sets of held-out speakers the robust model's card is measured on."""
    return load_bench("quality")


#: the models whose cards carry bench/quality.py's conditions, with today's floors (dB SI-SDRi).
#: Issue 20's targets are not all reached yet: offline ≥ 6 noisy-reverberant, ≥ 10 clean 16 kHz,
#: ≥ 9 clean 8 kHz; causal ≥ 3 noisy-reverberant (reached on these 30 mixtures), ≥ 6 clean.
ROBUST_FLOORS = {
    "convtasnet-robust16k": {"clean-8k": 6.7, "clean-16k": 7.5, "noisy-reverb-16k": 4.5, "noisy-reverb-8k": 3.1},
    "convtasnet-robust16k-causal": {"clean-8k": 2.6, "clean-16k": 3.6,
                                    "noisy-reverb-16k": 3.0, "noisy-reverb-8k": 2.1},
}


def test_defaults_are_the_robust_models():
    from audiomask.cli.common import DEFAULT_CAUSAL_MODEL
    from audiomask.separation import DEFAULT_MODEL

    assert (DEFAULT_MODEL, DEFAULT_CAUSAL_MODEL) == ("convtasnet-robust16k", "convtasnet-robust16k-causal")


@pytest.mark.slow  # four sets of 30 mixtures, with room simulation (about a minute each); CI runs it with -m slow
@pytest.mark.parametrize("name", ROBUST_FLOORS)
def test_robust_models_reach_their_card_on_unseen_speakers(name, quality_bench, tmp_path):
    """The defaults of ``separate`` and ``stream``: every ``bench/quality.py`` condition in the
    checkpoint's metadata (the model card's table) re-measured within 0.05 dB, at least
    today's floors — which beat the 8 kHz cards in noise and reverberation
    (``convtasnet-mini2mix`` 2.22 dB at 16 kHz, 0.71 dB at 8 kHz; ``convtasnet-mini2mix-causal``
    1.75 dB at 16 kHz)."""
    meta = read_metadata(pretrained_models()[name])
    model = audiomask.load(name).eval()
    _, valid = split_by_speaker(find_audio(LIBRI), quality_bench.VALID_SPEAKERS, seed=quality_bench.SPLIT_SEED)
    n = int(meta["valid_mixtures"])
    measured = {}
    for cond, floor_db in ROBUST_FLOORS[name].items():
        data, rate = quality_bench.build_set(cond, valid, n, 4.0, tmp_path, 0.0)
        measured[cond] = quality_bench.evaluate_set(model, data, rate, None)["summary"]["si_sdri"]["mean"]
        claimed = float(meta[f"quality_{cond.replace('-', '_')}_si_sdri"])
        assert abs(measured[cond] - claimed) < 0.05, (cond, measured[cond], claimed)
        assert measured[cond] >= floor_db, (cond, measured[cond], floor_db)
    assert abs(measured["noisy-reverb-16k"] - float(meta["valid_si_sdri"])) < 0.05


@pytest.mark.parametrize("name", ["convtasnet-mini2mix-causal", "convtasnet-robust16k-causal"])
def test_causal_models_stream_exactly(name):
    """10 ms blocks through the stateful session equal the offline forward."""
    model = audiomask.load(name)
    rate, block = model.sample_rate, model.sample_rate // 100
    x = torch.randn(rate * 3, generator=torch.Generator().manual_seed(0)) * 0.1
    session = model.stream()
    out = torch.cat([session.process(x[i : i + block]) for i in range(0, len(x), block)] + [session.flush()], -1)
    with torch.inference_mode():
        assert (out - model(x)).abs().max().item() <= 1e-5


def _turn_taking(voices, seconds=60, turn=4.0, overlap=1.0, rate=8000, seed=0):
    """Two speakers taking turns: each turn `turn` s, neighbours overlapping by `overlap` s."""
    gen = torch.Generator().manual_seed(seed)
    n, t, o = seconds * rate, int(turn * rate), int(overlap * rate)
    src = torch.zeros(2, n)
    pos, who = 0, 0
    while pos < n:
        voice = voices[who]
        start = int(torch.randint(0, len(voice) - t - o, (1,), generator=gen))
        piece = voice[start : start + t + o]
        end = min(pos + len(piece), n)
        src[who, pos:end] += piece[: end - pos]
        pos, who = pos + t, 1 - who
    return src, t, o


@pytest.mark.slow  # separates long validation recordings (about a minute); CI runs it with -m slow
def test_chunked_inference_never_swaps_speakers_and_matches_full_quality(validation_mixtures):
    from audiomask.audio import read_audio
    from audiomask.streaming import separate_chunked

    model = audiomask.load("convtasnet-mini2mix")
    _, valid = split_by_speaker(find_audio(LIBRI), 25, seed=0)
    voices = [read_audio(valid[i], 8000, 1)[0][0] for i in (0, 1)]
    voices = [v / v.std() * 0.05 for v in voices]
    src, turn, overlap = _turn_taking(voices)
    est = separate_chunked(model, src.sum(0), window=8000 * 10, overlap=8000 * 2)
    channel_of = {0: set(), 1: set()}
    for start in range(0, src.shape[-1] - turn, turn):
        seg = slice(start + overlap, start + turn)  # one talker only
        talker = int(src[1, seg].abs().sum() > src[0, seg].abs().sum())
        corr = [abs(float(torch.dot(est[c, seg], src[talker, seg]))) for c in (0, 1)]
        channel_of[talker].add(corr.index(max(corr)))
    assert channel_of[0] and channel_of[1] and len(channel_of[0]) == len(channel_of[1]) == 1
    assert channel_of[0] != channel_of[1]
    # 30 s of two speakers talking at once: chunked within 0.5 dB of the full-signal pass
    voices = [read_audio(valid[i], 8000, 1)[0][0] for i in (2, 3)]
    src30 = torch.stack([torch.cat([v / v.std() * 0.05] * 4)[: 30 * 8000] for v in voices])
    with torch.inference_mode():
        full = pit(model(src30.sum(0)[None]), src30[None])[2].mean().item()
    chunked = pit(separate_chunked(model, src30.sum(0))[None], src30[None])[2].mean().item()
    assert full - chunked <= 0.5, (full, chunked)


def test_shipped_echo_canceller_removes_echo_of_unseen_speakers():
    """The bundled d3net-aec-small (egs/aec, 27,200 CPU steps): causal, 16 kHz, ≤ 5 MB, and on
    far-end single-talk scenes of held-out speakers it removes > 15 dB of echo (ERLE; the
    card's 25.06 dB is the mean of bench/aec.py's 40 clips), where doing nothing scores 0 dB."""
    from audiomask.data import EchoSimulationDataset
    from audiomask.metrics import erle

    path = pretrained_models()["d3net-aec-small"]
    assert path.stat().st_size <= 5 * 2**20
    model = audiomask.load("d3net-aec-small")
    assert model.causal and model.sample_rate == 16000
    if not LIBRI.is_dir():
        pytest.skip(f"real speech not found at {LIBRI}")
    _, valid = split_by_speaker(find_audio(LIBRI), 25, seed=0)
    scenes = EchoSimulationDataset(valid, 16000, 4.0, length=6, seed=20_000, scenario_probs=(0, 1, 0),
                                   rir_files=LIBRI.parent / "rir", ser_db=(-10.0, 10.0), delay_ms=(0.0, 200.0))
    scores = []
    with torch.inference_mode():
        for i in range(len(scenes)):
            mic, far, _ = scenes.draw(i)
            scores.append(float(erle(mic, model(mic[None], far[None])[0])))
    assert sum(scores) / len(scores) > 15.0, scores


@pytest.fixture(scope="module")
def aec_bench():
    """bench/aec.py, whose fixed echo scenes of held-out speakers the echo canceller's card is measured on."""
    return load_bench("aec")


#: floors of the bundled echo canceller on bench/aec.py's clips (dB): issue 21's targets, ERLE
#: (far-end single talk) ≥ 25, double-talk SI-SDRi ≥ +4 and noisy near-end single talk not worse
#: than −0.5; and at least 80 % of the double-talk clips improved (AEC_DT_IMPROVED).
AEC_FLOORS = {"erle_db": 25.0, "dt_si_sdri_db": 4.0, "ns_si_sdri_db": -0.5}
AEC_DT_IMPROVED = 0.8


@pytest.mark.slow  # 120 clips of 8 s with room simulation (a minute or two); CI runs it with -m slow
def test_echo_canceller_reaches_its_card_on_unseen_speakers(aec_bench):
    """The default of ``audiomask aec``: ERLE (far-end single talk) and double-talk SI-SDRi of
    ``bench/aec.py``'s 40 + 40 clips re-measured within 0.05 dB of the checkpoint's metadata
    (the model card), and issue 21's targets."""
    from audiomask.cli.common import DEFAULT_AEC_MODEL

    meta = read_metadata(pretrained_models()[DEFAULT_AEC_MODEL])
    far_single, double, near_single = aec_bench.clips(40, 8.0, 20_000)  # bench/aec.py's defaults
    make, _ = aec_bench.make_model(DEFAULT_AEC_MODEL)
    result = aec_bench.score(DEFAULT_AEC_MODEL, make, far_single, double, near_single, None)
    for key, floor_db in AEC_FLOORS.items():
        assert abs(result[key] - float(meta[key])) < 0.05, (key, result[key], meta[key])
        assert result[key] >= floor_db, (key, result[key], floor_db)
    assert result["dt_improved"] >= AEC_DT_IMPROVED * result["dt_clips"], (result["dt_improved"], result["dt_clips"])
    assert f"{result['dt_improved']}/{result['dt_clips']}" == meta["dt_improved"], (result["dt_improved"], meta["dt_improved"])
