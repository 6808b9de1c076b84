"""MAC counting: equal to hand computations for convs, matmuls, recurrent layers, attention,
and a whole Conv-TasNet; TIGER within a few percent of the paper's figures."""

import pytest
import torch
from torch import nn

import audiomask
from audiomask.macs import count_macs, macs_by_module, macs_of


def test_layers_are_counted_as_by_hand():
    x = torch.randn(2, 8, 11)
    assert macs_of(nn.Conv1d(8, 6, 3, padding=1), x) == 2 * 11 * 6 * 8 * 3
    assert macs_of(nn.Conv1d(8, 8, 5, stride=2, padding=2, groups=8), x) == 2 * 6 * 8 * 5  # depthwise
    assert macs_of(nn.ConvTranspose1d(8, 1, 4, stride=2, bias=False), x) == 2 * 11 * 8 * 4
    assert macs_of(nn.Conv2d(8, 4, 1), x[:, :, None]) == 2 * 11 * 4 * 8
    assert macs_of(nn.Linear(11, 5), x) == 2 * 8 * 11 * 5
    a, b = torch.randn(3, 4, 6), torch.randn(3, 6, 5)
    einsum = lambda u, v: torch.einsum("bij,bjk->bik", u, v)  # noqa: E731
    assert macs_of(torch.matmul, a, b) == macs_of(einsum, a, b) == 3 * 4 * 6 * 5
    lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True, batch_first=True)
    steps = 3 * 7
    assert macs_of(lstm, torch.randn(3, 7, 10)) == steps * 2 * 4 * 20 * ((10 + 20) + (40 + 20))
    gru = nn.GRU(10, 20, batch_first=True)
    assert macs_of(gru, torch.randn(3, 7, 10)) == steps * 3 * 20 * (10 + 20)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()  # native fast path
    q = torch.randn(2, 5, 16)
    assert macs_of(mha, q, q, q) == 2 * (4 * 5 * 16 * 16 + 2 * 5 * 5 * 16)
    h = torch.randn(1, 2, 5, 8)
    assert macs_of(nn.functional.scaled_dot_product_attention, h, h, h) == 2 * 5 * 5 * (8 + 8)


def convtasnet_macs_by_hand(model, length: int) -> int:
    c = model.config
    frames = model.encoder.framing.n_frames(length)
    N, L, B, H, Sc, P = c.n_filters, c.kernel_size, c.bn_chan, c.hid_chan, c.skip_chan, c.conv_kernel_size
    encoder = frames * N * L
    bottleneck = frames * N * B
    block = frames * (B * H + H * P + H * B + H * Sc)  # 1x1 in, depthwise, residual, skip
    masks = frames * Sc * c.n_src * N
    decoder = c.n_src * frames * N * L
    return encoder + bottleneck + c.n_blocks * c.n_repeats * block + masks + decoder


@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_convtasnet_macs_equal_a_hand_computation(preset):
    model = audiomask.build("convtasnet", preset)
    for length in (400, 1003):
        assert macs_of(model.eval(), torch.randn(1, length)) == convtasnet_macs_by_hand(model, length)
    # per second of audio: 0.05 s at 8 kHz
    assert count_macs(model, seconds=0.05) == round(convtasnet_macs_by_hand(model, 400) / 0.05)
    assert count_macs(model, seconds=0.05, batch=3) == count_macs(model, seconds=0.05)


def test_tiger_macs_near_the_paper():
    # The paper (ptflops, 1 s at 16 kHz) gives 7.65 G/s (small) and 15.27 G/s (large); that tool
    # also counts element-wise work (norms, activations), which this count leaves out.
    small = count_macs(audiomask.build("tiger", "small")) / 1e9
    large = count_macs(audiomask.build("tiger", "large")) / 1e9
    assert 7.65 * 0.9 < small < 7.65 and 15.27 * 0.9 < large < 15.27
    assert small == pytest.approx(7.2023, abs=1e-3) and large == pytest.approx(14.3806, abs=1e-3)
    parts = macs_by_module(audiomask.build("tiger", "small").eval(), torch.randn(1, 16000))
    assert parts["TIGER.masker.separator"] > 0.99 * parts["TIGER"]


def test_count_macs_needs_a_rate_and_restores_training_mode():
    with pytest.raises(ValueError, match="sample_rate"):
        count_macs(nn.Conv1d(1, 1, 3))
    model = audiomask.build("convtasnet", "tiny").train()
    count_macs(model, seconds=0.01)
    assert model.training
