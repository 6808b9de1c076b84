"""The optional C kernels of the streaming fast path equal the PyTorch ops they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import audiomask
from audiomask import accel, native
from audiomask.nn.history import history_buffer, history_push
from audiomask.nn.norms import cumulative_norm

pytestmark = pytest.mark.skipif(not native.BUILT, reason="audiomask.native._lib not built (no C compiler)")


@pytest.mark.parametrize("batch,channels", [(1, 512), (3, 7)])
def test_cln_kernel_equals_the_torch_ops(batch, channels):
    torch.manual_seed(0)
    weight, bias = torch.randn(channels), torch.randn(channels)
    slope = torch.tensor([0.25])
    s_torch = torch.zeros(batch, 3, dtype=torch.float64)
    s_native = torch.zeros(batch, 3, dtype=torch.float64)
    for frames in [1, 10, 0, 37, 3]:
        x = torch.randn(batch, frames, channels) * 3 + 1
        ref, s_torch = cumulative_norm(F.prelu(x, slope), s_torch, weight, bias, 1e-8, 2)
        out = native.cln_step(x, s_native, weight, bias, 1e-8, float(slope))
        assert torch.allclose(out, ref, atol=2e-5, rtol=1e-5), (out - ref).abs().max()
        assert torch.allclose(s_native, s_torch, rtol=1e-6)  # torch sums each frame in float32


@pytest.mark.parametrize("dilation,taps", [(1, 3), (16, 3), (4, 5)])
def test_dwconv_kernel_equals_conv1d(dilation, taps):
    torch.manual_seed(1)
    batch, hidden = 2, 9
    weight, bias = torch.randn(hidden, 1, taps), torch.randn(hidden)
    context = (taps - 1) * dilation
    buffer, end = history_buffer(batch, context, hidden, spare=40)
    seen = torch.zeros(batch, context, hidden)
    for frames in [5, 1, 33, 60, 2]:
        block = torch.randn(batch, frames, hidden)
        buffer, end, view = history_push(buffer, end, context, block)
        assert native.can_dwconv(view)
        out = native.dwconv(view, weight[:, 0].t().contiguous(), bias, dilation)
        seen = torch.cat([seen, block], 1)
        ref = F.conv1d(seen.transpose(1, 2), weight, bias, dilation=dilation, groups=hidden)
        assert torch.allclose(out, ref.transpose(1, 2)[:, -frames:], atol=1e-5)


@pytest.mark.parametrize("posix_threads", [False, True])
def test_stream_equals_offline_with_and_without_the_kernels(posix_threads):
    torch.manual_seed(2)
    model = audiomask.build("convtasnet", "small-causal").eval()
    x = torch.randn(2, 3000) * 0.3
    with torch.inference_mode():
        ref = model(x)
    native.posix_threads(posix_threads)  # the whole-TCN kernel on PyTorch's OpenMP team, or on its own
    # reference mode runs no C code, so the thread choice cannot reach it: run it once (posix_threads=False)
    try:
        for enabled in (True, False) if not posix_threads else (True,):
            with accel.force("auto" if enabled else "reference"):
                session = model.stream(batch=2)
                assert (session.state.masker.native is not None) == enabled  # all TCN blocks in one C call
                # blocks of 97 samples, then ones longer than the histories' spare room (they grow)
                cuts = list(range(0, 1500, 97)) + [1500, 2900, 2901, 3000]
                outs = [session.process(x[:, a:b]) for a, b in zip(cuts, cuts[1:])] + [session.flush()]
            assert (torch.cat(outs, -1) - ref).abs().max() < 1e-5
    finally:
        native.posix_threads(False)
