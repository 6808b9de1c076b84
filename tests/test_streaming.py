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


def causal_presets():
    return [(name, preset) for name, presets in list_models().items() for preset in presets
            if MODELS[name].presets[preset].get("causal")]


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
