"""Chunked overlap-add inference: any model, bounded memory, sources kept in order."""

import os
import subprocess
import sys

import pytest
import torch

import audiomask
from audiomask.streaming import separate_chunked
from audiomask.streaming.chunked import align_sources, window_starts


def test_windows_cover_the_signal():
    assert window_starts(50, 100, 80) == [0]
    assert window_starts(1000, 100, 80) == [0, 80, 160, 240, 320, 400, 480, 560, 640, 720, 800, 880, 900]
    for length in (100, 101, 999, 12345):
        starts = window_starts(length, 100, 80)
        assert starts[-1] + 100 == max(length, 100) and all(b - a <= 80 for a, b in zip(starts, starts[1:]))


def test_output_shape_and_equal_to_model_within_one_window():
    model = audiomask.build("convtasnet", "tiny").eval()
    x = torch.randn(2, 7000)
    with torch.no_grad():
        assert torch.allclose(separate_chunked(model, x, window=8000, overlap=1000), model(x), atol=1e-6)
    assert separate_chunked(model, x[0], window=2000, overlap=500).shape == (2, 7000)


def test_causal_model_is_exact_outside_the_cross_fades():
    # A causal model with a per-frame norm sees only its receptive field of past samples: once
    # a window is `overlap >= receptive field` samples in, its output equals the full pass
    # (speaker tracking off: it may reorder stretches, which is tested on real speech below).
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", "tiny", causal=True, norm="chanLN").eval()
    rf = model.receptive_field
    window, overlap = 4 * rf, rf + 16
    x = torch.randn(20_000)
    with torch.no_grad():
        full = model(x)
    chunked = separate_chunked(model, x, window=window, overlap=overlap, track_speakers=False)
    starts = window_starts(len(x), window, window - overlap)
    ends = [0] + [start + window for start in starts]
    for here, previous_end, nxt in zip(starts, ends, starts[1:] + [len(x)]):
        solo = slice(previous_end, nxt)  # after the cross-fade, before the next window
        assert previous_end - here >= rf or here == 0
        assert (chunked[:, solo] - full[:, solo]).abs().max().item() < 1e-5


def test_alignment_undoes_a_swap():
    torch.manual_seed(0)
    a, b = torch.randn(2, 1000)
    previous = torch.stack([a, b])[None, :, :300]
    est = torch.stack([b, a])[None]  # this window came out in the other order
    assert torch.equal(align_sources(est, previous), torch.stack([a, b])[None])


def test_swapped_windows_are_put_back_in_order():
    """A model whose output order flips from window to window still gives a consistent output."""

    class Flipper(torch.nn.Module):
        sample_rate, n_src = 8000, 2
        calls = 0

        def parameters(self):
            yield torch.zeros(1)

        def forward(self, mix):
            Flipper.calls += 1
            ramp = torch.linspace(0, 1, mix.shape[-1])
            est = torch.stack([mix * ramp, mix * (1 - ramp)], 1)
            return est.flip(1) if Flipper.calls % 2 == 0 else est

    x = torch.randn(1, 50_000)
    out = separate_chunked(Flipper(), x, window=10_000, overlap=2_000)
    # source 0 always carries the "ramp up" part of each window: never the other source
    for start in range(0, 40_000, 8_000):
        seg = slice(start + 2_500, start + 9_500)
        assert out[0, 0, seg].abs().sum() != out[0, 1, seg].abs().sum()
    assert Flipper.calls >= 5


@pytest.mark.slow
def test_memory_is_bounded_by_the_window_not_the_file():
    """Peak RSS of a child process separating 60 s and 300 s: chunked grows by the size of the
    input/output arrays only; the full-signal pass grows with every activation."""
    code = """
import sys, torch, audiomask
from audiomask.streaming import separate_chunked
torch.set_num_threads(1)
model = audiomask.build("convtasnet", "small").eval()
x = torch.randn(int(sys.argv[1]) * 8000) * 0.1
with torch.inference_mode():
    y = separate_chunked(model, x, window=80000, overlap=16000) if sys.argv[2] == "chunked" else model(x)
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's peak across exec)
print(int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) / 1024)
"""

    # a fixed mmap threshold: glibc's default one moves with the sizes freed so far, which made
    # the peak of one and the same run vary by ~150 MB on the module path (measured: 332-485 MB
    # for 60 s); fixed, repeated runs agree to 0.1 MB and the peaks are our allocations alone
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}

    def peak_mb(seconds: int, mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", code, str(seconds), mode], capture_output=True,
                             text=True, check=True, env=env)
        return float(out.stdout.split()[-1])

    chunked_growth = peak_mb(300, "chunked") - peak_mb(60, "chunked")
    io_growth = 240 * 8000 * 4 * 3 / 2**20  # input + two outputs, float32: 22 MB
    full_growth = peak_mb(120, "full") - peak_mb(60, "full")  # 60 s more through the full pass
    assert chunked_growth < io_growth + 60, chunked_growth
    # per second of audio, the full pass grows much faster (activations, not only the arrays)
    assert full_growth / 60 > 4 * (chunked_growth + 1) / 240, (full_growth, chunked_growth)


# ---------------------------------------------------------------- speakers across turns
@pytest.fixture(scope="module")
def valid_files(speech_files):
    """The 25 speakers that training holds out (as egs/mini2mix/conf.yaml)."""
    from audiomask.data import split_by_speaker

    return split_by_speaker(speech_files, 25, seed=0)[1]


def _si_sdri(est, src, mix):
    from audiomask.evaluate import score_mixture

    return score_mixture(est, src, mix)[0]["si_sdri"]


def test_keep_speakers_undoes_swaps_at_turns(valid_files):
    """Real speech of two held-out speakers taking turns (60 s), each turn put on a random
    output (what a model does with one speaker at a time): one speaker per output again."""
    import numpy as np

    from audiomask.data.conversation import ConversationDataset
    from audiomask.streaming.chunked import keep_speakers

    mix, src, _, meta = ConversationDataset(valid_files, 8000, duration=60, length=1, seed=1).draw(
        0, with_meta=True)
    rng = np.random.default_rng(0)
    flip = torch.zeros(src.shape[-1], dtype=torch.bool)
    for _, a, b in meta["turns"]:
        flip[a:b] = bool(rng.random() < 0.5)
    swapped = torch.where(flip, src.flip(0), src)
    assert _si_sdri(swapped, src, mix) < 0  # measured -2.3 dB
    assert _si_sdri(keep_speakers(swapped, 8000), src, mix) > 15  # measured 20.1 dB


def test_keep_speakers_keeps_an_order_that_is_already_right(valid_files):
    from audiomask.data.conversation import ConversationDataset
    from audiomask.streaming.chunked import keep_speakers

    _, src, _ = ConversationDataset(valid_files, 8000, duration=30, length=1, seed=2).draw(0)
    assert torch.equal(keep_speakers(src, 8000), src)


@pytest.mark.slow
def test_turn_taking_recording_keeps_each_speaker_on_one_output(valid_files):
    """A 60 s turn-taking recording of two held-out speakers through the bundled model: the
    model puts whoever talks alone on its first output, so without tracking the speakers swap
    at the turns (measured -0.99 dB SI-SDRi); with it, 9.69 dB."""
    from audiomask.data.conversation import ConversationDataset

    model = audiomask.load("convtasnet-mini2mix")
    mix, src, _ = ConversationDataset(valid_files, 8000, duration=60, length=2, seed=99).draw(1)
    plain = separate_chunked(model, mix, track_speakers=False)
    assert _si_sdri(plain, src, mix) < 2.0
    from audiomask.streaming.chunked import keep_speakers

    assert _si_sdri(keep_speakers(plain, model.sample_rate), src, mix) > 8.0


def test_keep_speakers_warns_and_keeps_the_order_when_the_voices_are_too_close(valid_files, monkeypatch):
    """Profiles closer than MIN_SEPARATION (here: any) leave the outputs as they are, with a warning."""
    from audiomask.data.conversation import ConversationDataset
    from audiomask.streaming import chunked

    mix, src, _, meta = ConversationDataset(valid_files, 8000, duration=60, length=1, seed=1).draw(
        0, with_meta=True)
    flip = torch.zeros(src.shape[-1], dtype=torch.bool)
    for n, (_, a, b) in enumerate(meta["turns"]):
        flip[a:b] = n % 3 == 0
    swapped = torch.where(flip, src.flip(0), src)
    monkeypatch.setattr(chunked, "MIN_SEPARATION", float("inf"))
    with pytest.warns(UserWarning, match="too alike"):
        assert torch.equal(chunked.keep_speakers(swapped, 8000), swapped)
