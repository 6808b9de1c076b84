"""Exact stateful streaming: the concatenated outputs equal the offline causal forward pass."""

import pytest
import torch

import audiomask
from audiomask.models.registry import MODELS, list_models


def random_blocks(length: int, max_block: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    sizes, total = [], 0
    while total < length:
        n = int(torch.randint(0, max_block + 1, (1,), generator=gen))
        n = min(n, length - total)
        sizes.append(n)
        total += n
    return sizes


def stream_through(model, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    session = model.stream(batch=x.shape[0] if x.dim() == 2 else 1)
    outs, i = [], 0
    for n in sizes:
        outs.append(session.process(x[..., i : i + n]))
        i += n
    outs.append(session.flush())
    return torch.cat(outs, dim=-1)


def causal_presets(streaming: bool = True):
    """Causal presets whose masker has (``streaming=True``) or lacks a streaming step."""
    found = []
    for name, presets in list_models().items():
        for preset in presets:
            if MODELS[name].presets[preset].get("causal"):
                model = MODELS[name].preset(preset)
                if hasattr(model.masker, "step") == streaming:
                    found.append((name, preset))
    return found


def test_causal_models_without_a_streaming_step_say_so():
    """Causal MossFormer/MossFormer2 are causal offline but cannot stream block by block yet:
    ``stream()`` must refuse clearly (chunked inference still works for them)."""
    missing = causal_presets(streaming=False)
    assert {name for name, _ in missing} <= {"mossformer", "mossformer2"}
    for name, preset in missing:
        with pytest.raises(ValueError, match="no streaming step"):
            MODELS[name].preset(preset).stream()


@pytest.mark.parametrize("name,preset", causal_presets())
@pytest.mark.parametrize("seed,max_block", [(0, 1), (1, 37), (2, 800), (3, 8000)])
def test_stream_equals_offline_for_every_causal_preset(name, preset, seed, max_block):
    torch.manual_seed(seed)
    model = audiomask.build(name, preset).eval()
    length = {1: 600, 37: 3000}.get(max_block, 8000 * 2 + 123)  # tiny blocks: keep it short
    x = torch.randn(length) * 0.3
    with torch.no_grad():
        offline = model(x)
    streamed = stream_through(model, x, random_blocks(length, max_block, seed))
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= 1e-5


@pytest.mark.parametrize("overrides", [{"norm": "chanLN"}, {"norm": "chanLN", "framing": "valid"},
                                       {"norm": "cLN", "n_src": 3, "kernel_size": 32, "stride": 8}])
def test_stream_equals_offline_for_other_causal_configs(overrides):
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", "tiny", causal=True, **overrides).eval()
    x = torch.randn(2, 5001)
    with torch.no_grad():
        offline = model(x)
    streamed = stream_through(model, x, random_blocks(5001, 700, 5))
    assert (streamed - offline).abs().max().item() <= 1e-5


def test_stream_of_a_long_signal_stays_exact():
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", "small-causal").eval()
    x = torch.randn(8000 * 20) * 0.3
    with torch.no_grad():
        offline = model(x)
    streamed = stream_through(model, x, [8000] * 20)
    assert (streamed - offline).abs().max().item() <= 1e-5


def test_outputs_arrive_as_frames_complete():
    model = audiomask.build("convtasnet", "tiny", causal=True, norm="cLN").eval()
    session = model.stream()
    L, S = model.encoder.kernel_size, model.encoder.stride
    assert session.latency_samples == L
    assert session.process(torch.randn(S - 1)).shape == (2, 0)  # no frame is complete yet
    out = session.process(torch.randn(1))  # first frame: [S zeros of padding, S samples]
    assert out.shape == (2, 0)  # its first S decoded samples are the padding, dropped
    out = session.process(torch.randn(S))
    assert out.shape == (2, S)  # every further hop releases S final samples
    assert session.flush().shape == (2, S)  # 2S received, S emitted: the last S on flush


def test_non_causal_models_are_refused():
    with pytest.raises(ValueError, match="not causal"):
        audiomask.build("convtasnet", "tiny").stream()


def test_flushed_stream_is_closed():
    session = audiomask.build("convtasnet", "tiny", causal=True, norm="cLN").stream()
    session.process(torch.randn(100))
    session.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        session.process(torch.randn(10))


def test_realtime_simulation_equals_offline_and_reports_latency():
    from audiomask.streaming import simulate

    torch.manual_seed(0)
    model = audiomask.build("convtasnet", "tiny", causal=True, norm="cLN").eval()
    x = torch.randn(8000 * 2 + 37) * 0.3
    est, report = simulate(model, x, block_size=80)
    with torch.no_grad():
        assert (est - model(x)).abs().max().item() <= 1e-5
    assert report.algorithmic_latency_samples == 16 and report.algorithmic_latency_ms == 2.0
    assert report.blocks == len(x) // 80 and report.deadline_ms == 10.0
    assert report.p99_block_ms >= report.mean_block_ms > 0
    assert report.underruns == report.overruns == 0


def test_stream_from_another_thread_like_a_sound_card():
    import time

    import numpy as np

    from audiomask.streaming import Stream

    torch.manual_seed(0)
    model = audiomask.build("convtasnet", "tiny", causal=True, norm="cLN").eval()
    x = (torch.randn(8000) * 0.3).numpy()
    got = []
    with Stream(model, block_size=80) as stream:
        for start in range(0, len(x), 80):
            stream.push(x[start : start + 80])
        deadline = time.time() + 30
        while stream.report().blocks < 100 and time.time() < deadline:
            time.sleep(0.01)
        got.append(stream.pull(len(stream.outbox)))
    out = np.concatenate(got, axis=-1)
    with torch.no_grad():
        offline = model(torch.from_numpy(x)).numpy()
    # everything up to the last complete frame has come out, equal to the offline pass
    assert out.shape[-1] == 8000 - 8
    assert np.abs(out - offline[:, : out.shape[-1]]).max() <= 1e-5


def test_ring_buffer_wraps_and_reports_under_and_overruns():
    import numpy as np

    from audiomask.streaming.realtime import RingBuffer

    ring = RingBuffer(1, 8)
    assert ring.write(np.arange(6, dtype=np.float32)[None]) == 0
    out = np.empty((1, 4), dtype=np.float32)
    assert ring.read_into(out) == 0 and out.tolist() == [[0, 1, 2, 3]]
    assert ring.write(np.arange(6, 12, dtype=np.float32)[None]) == 0  # wraps around
    assert ring.write(np.ones((1, 3), dtype=np.float32)) == 3  # full: dropped
    out = np.empty((1, 10), dtype=np.float32)
    assert ring.read_into(out) == 2  # 8 available, 2 missing → zeros
    assert out.tolist() == [[4, 5, 6, 7, 8, 9, 10, 11, 0, 0]]


def test_stream_cli_simulates_and_writes_sources(tmp_path, capsys):
    import soundfile as sf

    from audiomask.cli import main

    path = tmp_path / "causal.safetensors"
    audiomask.build("convtasnet", "tiny", causal=True, norm="cLN").save(path)
    wav = tmp_path / "in.wav"
    sf.write(wav, (torch.randn(16000) * 0.2).numpy(), 16000)
    assert main(["stream", "--input", str(wav), "--model", str(path), "--out", str(tmp_path / "o"),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "algorithmic lat. 16 samples (2.00 ms)" in out and "deadline misses" in out
    assert sf.info(tmp_path / "o" / "in_s1.wav").frames == 16000
    assert main(["stream", "--input", str(wav), "--model", "convtasnet:tiny", "--out", str(tmp_path)]) == 2


def test_history_push_matches_concatenation():
    """Blocks of any length (0, small, longer than the spare room) give the same context +
    block view as concatenating the whole past."""
    from audiomask.nn.history import history_buffer, history_push

    torch.manual_seed(0)
    context, channels = 6, 3
    buffer, end = history_buffer(2, context, channels, spare=8)
    past = torch.zeros(2, context, channels)
    for n in [3, 0, 5, 1, 20, 2, 7, 7, 7, 1, 40, 3]:
        block = torch.randn(2, n, channels)
        buffer, end, view = history_push(buffer, end, context, block)
        past = torch.cat([past, block], dim=1)
        assert torch.equal(view, past[:, past.shape[1] - context - n :])
        assert torch.equal(buffer[:, end - context : end], past[:, -context:])
