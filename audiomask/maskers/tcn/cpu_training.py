"""CPU training path of the non-causal (gLN) TCN: one autograd function per block that keeps
only the block's input and its 1×1 conv output and recomputes the rest in the backward pass.

PyTorch's autograd keeps about eight ``[batch, H, frames]`` tensors per TCN block for the
backward pass (the 1×1 conv output, PReLU, gLN, padded input, depthwise conv, PReLU, gLN, …):
for the paper configuration and a batch of 4 × 4 s that is ~4.7 GB, and its depthwise conv
and norms run at memory speed in many separate passes. :class:`FusedTCNBlock` computes the
block frames-major (``[B, T, ·]``) with the C kernels of :mod:`audiomask.native` (the
inference path's :mod:`~audiomask.maskers.tcn.cpu_inference` passes, plus four backward passes) and
matmuls (oneDNN's inner product, :mod:`audiomask.nn.onednn`, for those of the forward pass and
the input gradients; ``torch.mm`` for the weight gradients), saves only its input ``x [B, T, B]``, the 1×1 conv output ``h [B, T, H]`` and the
per-example gLN statistics (recomputing ``h`` would cost a tenth of the step's matmuls), and
in the backward pass recomputes the depthwise pass (one C pass) before going back through it.
Gradients equal autograd's through the module to float32 rounding (tests: ≤ 1e-4 relative).

Per block (symbols of the paper; ``r = 1/sqrt(var + eps)``)::

    h = x Wᵢₙᵀ + bᵢₙ;  u = prelu(h, a₁);  n = γ₁ (u − μ₁) r₁ + β₁
    v = dwconv(n) + b_d;  g = prelu(v, a₂);  m = γ₂ (g − μ₂) r₂ + β₂
    y = m Wₒᵤₜᵀ + bₒᵤₜ      (Wₒᵤₜ = [Wᵣₑₛ; W_skip], y = [residual | skip])
"""

from __future__ import annotations


import torch
from torch import Tensor

from audiomask import native
from audiomask.maskers.tcn.dispatch import tcn_weights
from audiomask.nn import onednn


def _middle(h: Tensor, stats: list[tuple[float, float, float, float]] | None, a1: float, g1: Tensor,
            be1: Tensor, taps: Tensor, dw_b: Tensor, dilation: int, pad: int, a2: float, eps1: float,
            eps2: float, g: Tensor, v: Tensor | None = None) -> list[tuple[float, float, float, float]]:
    """``g = prelu(dwconv(gLN(prelu(h))))`` per example into ``g`` (and the pre-activation into
    ``v``); returns the per-example statistics ``(μ₁, r₁, μ₂, r₂)`` (computed unless given)."""
    batch, frames, hidden = h.shape
    count, out = frames * hidden, []
    for b in range(batch):
        mu1, r1 = stats[b][:2] if stats else native.moments([native.prelu_stats(h[b], a1)], count, eps1)
        scale = g1 * r1
        sums = native.norm_dwconv_prelu(h[b], a1, scale, be1 - scale * mu1, taps, dw_b, dilation, pad,
                                        a2, g[b], None if v is None else v[b])
        out.append((mu1, r1) + (stats[b][2:] if stats else native.moments([sums], count, eps2)))
    return out


class FusedTCNBlock(torch.autograd.Function):
    """``y = [residual | skip]`` of one gLN TCN block for frames-major ``x [B, T, Bc]`` →
    ``[B, T, Bc + Sc]``; the arguments after ``x`` are the fields of the block's
    :class:`~audiomask.maskers.tcn.dispatch.BlockWeights`, in order."""

    @staticmethod
    def forward(ctx, x: Tensor, w_in: Tensor, b_in: Tensor, a1: Tensor, g1: Tensor, be1: Tensor,
                taps: Tensor, dw_b: Tensor, a2: Tensor, g2: Tensor, be2: Tensor, w_out: Tensor,
                b_out: Tensor, dilation: int, pad: int, eps1: float, eps2: float) -> Tensor:
        x = x.contiguous()
        batch, frames, _ = x.shape
        taps, sa1, sa2 = taps.contiguous(), float(a1), float(a2)
        h = onednn.linear(x.view(batch * frames, -1), w_in, b_in).view(batch, frames, -1)
        g = torch.empty_like(h)
        stats = _middle(h, None, sa1, g1, be1, taps, dw_b, dilation, pad, sa2, eps1, eps2, g)
        mu2, r2 = (torch.tensor([s[i] for s in stats]) for i in (2, 3))
        y = onednn.linear(g.view(batch * frames, -1), w_out * g2).view(batch, frames, -1)
        const = b_out + w_out @ be2 - (w_out @ g2) * (mu2 * r2)[:, None]  # [B, Bc + Sc]
        y.mul_(r2.view(batch, 1, 1)).add_(const.unsqueeze(1))
        ctx.save_for_backward(x, h, w_in, g1, be1, taps, dw_b, g2, be2, w_out)
        ctx.stats, ctx.consts = stats, (sa1, sa2, dilation, pad, eps1, eps2)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, h, w_in, g1, be1, taps, dw_b, g2, be2, w_out = ctx.saved_tensors
        sa1, sa2, dilation, pad, eps1, eps2 = ctx.consts
        stats = ctx.stats
        batch, frames, _ = dy.shape
        hidden, n_taps = w_in.shape[0], taps.shape[0]
        count = frames * hidden
        dy = dy.contiguous()
        x_rows = x.view(batch * frames, -1)
        g, v = torch.empty_like(h), torch.empty_like(h)
        _middle(h, stats, sa1, g1, be1, taps, dw_b, dilation, pad, sa2, eps1, eps2, g, v)
        dm = onednn.linear(dy.view(batch * frames, -1), w_out.t().contiguous()).view(batch, frames, hidden)
        dv, dh = torch.empty(frames, hidden), torch.empty_like(h)
        acc = torch.zeros(n_taps + 8, hidden, dtype=torch.float64)
        d_taps, d_dwb, d_a2, d_g2, d_be2, d_g1, d_be1, d_bin, d_a1 = (
            acc[:n_taps], *acc[n_taps:].unbind(0))
        g1d, g2d = g1.double(), g2.double()
        for b, (mu1, r1, mu2, r2) in enumerate(stats):
            sums2 = native.gln_bwd_sums(dm[b], v[b], sa2, mu2, r2)  # Σ dm, Σ dm·m̂
            d_be2 += sums2[0]
            d_g2 += sums2[1]
            scale = g1 * r1
            parts = native.dwconv_bwd(dm[b], v[b], h[b], sa1, scale, be1 - scale * mu1, taps, dilation,
                                      pad, sa2, g2, mu2, r2, float(g2d @ sums2[0]) / count,
                                      float(g2d @ sums2[1]) / count, dv)
            d_taps += parts[:n_taps]
            d_dwb += parts[n_taps]
            d_a2 += parts[n_taps + 1]
            sums1 = native.dwconv_bwd_input(dv, h[b], sa1, mu1, r1, taps, dilation, pad, dh[b])
            d_be1 += sums1[0]
            d_g1 += sums1[1]
            parts = native.gln_prelu_bwd(dh[b], h[b], sa1, g1, mu1, r1, float(g1d @ sums1[0]) / count,
                                         float(g1d @ sums1[1]) / count, dh[b])
            d_bin += parts[0]
            d_a1 += parts[1]
        mu2, r2 = (torch.tensor([s[i] for s in stats]) for i in (2, 3))
        per_example = dy.sum(1)  # Σ_t dy: [B, Bc + Sc]
        # ∂/∂Wₒᵤₜ of Σ dy · m with m = γ₂ (g − μ₂) r₂ + β₂, without materialising m
        scaled = torch.mm((dy * r2.view(batch, 1, 1)).view(batch * frames, -1).t(), g.view(batch * frames, -1))
        d_w_out = ((scaled - (per_example * (mu2 * r2)[:, None]).sum(0)[:, None]) * g2
                   + per_example.sum(0)[:, None] * be2)
        dh_rows = dh.view(batch * frames, hidden)
        dx = onednn.linear(dh_rows, w_in.t().contiguous()).view_as(x)
        return (dx, torch.mm(dh_rows.t(), x_rows), d_bin.float(), d_a1.sum().float().view(1),
                d_g1.float(), d_be1.float(), d_taps.float(), d_dwb.float(),
                d_a2.sum().float().view(1), d_g2.float(), d_be2.float(), d_w_out, per_example.sum(0),
                None, None, None, None)


def tcn_features(masker, rep: Tensor) -> Tensor:
    """The summed skip connections (or the residual path without skips) ``[B, ·, T]`` for
    ``rep [B, N, T]``, through the fused blocks."""
    x = masker.bottleneck(masker.input_norm(rep)).transpose(1, 2).contiguous()  # [B, T, Bc]
    n_bn, skip = x.shape[-1], None
    for w in tcn_weights(masker)[1]:
        y = FusedTCNBlock.apply(x, *w)
        x = x + y[..., :n_bn]
        if y.shape[-1] > n_bn:
            skip = y[..., n_bn:] if skip is None else skip + y[..., n_bn:]
    return (x if skip is None else skip).transpose(1, 2)
