"""CPU inference fast path of the non-causal (gLN) TCN: frames-major, statistics folded away.

Conv-TasNet's masker spends its time in 1×1 convs (matmuls over ``[frames, channels]``) and
in moving 512-channel activations through memory between many small element-wise ops; PyTorch's
depthwise conv runs at about 1 GFLOP/s on this kind of CPU. This module computes exactly
:meth:`TCNMasker.forward <audiomask.maskers.tcn.TCNMasker.forward>` for ``norm="gLN"`` without
autograd, with four passes over memory per block instead of about twelve:

1. ``h = x Wᵢₙᵀ + bᵢₙ`` — one matmul, frames-major ``[T, H]``;
2. ``Σ prelu(h)``, ``Σ prelu(h)²`` — the first gLN's statistics (C kernel, one read);
3. ``g = prelu(dwconv(gLN(prelu(h))))`` and ``Σ g``, ``Σ g²`` — gLN applied as a per-channel
   affine while the dilated depthwise conv reads its taps (C kernel, one read, one write);
4. ``[x | skip] += (g (W γ)ᵀ) / σ`` — the second gLN folded into the residual/skip 1×1 convs
   (passes 3 and 4 run ``CHUNK`` frames at a time, so ``g`` never exists whole):
   ``W (γ (g − μ)/σ + β) + b = (g (W diag γ)ᵀ)/σ + (b + Wβ − (Wγ) μ/σ)``; the constant vector
   is not added to the ``[T, ·]`` activations but carried: for the residual path into the next
   block's input bias (``Wᵢₙ (x + o) = Wᵢₙ x + Wᵢₙ o``), for the skip path to the end.

The input gLN is folded into the bottleneck the same way. Outputs equal the module's forward
to float32 rounding (tests: ≤ 1e-5 relative). Used by :class:`~audiomask.maskers.tcn.TCNMasker`
when :func:`applies`; ``AUDIOMASK_NO_NATIVE=1`` (no C kernels) turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from audiomask import native
from audiomask.nn import onednn
from audiomask.nn.norms import GlobalLayerNorm


@dataclass
class _BlockWeights:
    """One block's weights in the layout of the fast path (see the module docstring)."""

    w_in: Tensor       # Wᵢₙ [H, B]
    b_in: Tensor       # bᵢₙ [H]
    slope_in: float    # PReLU after the 1×1 conv
    gamma1: Tensor     # first gLN gain/bias [H]
    beta1: Tensor
    taps: Tensor       # depthwise weights [P, H], contiguous
    dw_bias: Tensor    # [H]
    dilation: int
    pad: int           # left padding of the depthwise conv (frames)
    slope_dw: float    # PReLU after the depthwise conv
    w_out: Tensor      # [Wᵣₑₛ; W_skip] · diag(γ₂): [B + Sc, H]
    w_gamma: Tensor    # [Wᵣₑₛ; W_skip] γ₂: [B + Sc]
    b_out: Tensor      # [bᵣₑₛ; b_skip] + [Wᵣₑₛ; W_skip] β₂: [B + Sc]
    eps1: float
    eps2: float


@dataclass
class _Plan:
    key: tuple
    norm_gamma: Tensor  # input gLN [N]
    norm_beta: Tensor
    eps: float
    w_bn: Tensor        # bottleneck W diag(γ₀): [B, N]
    w_bn_gamma: Tensor  # W γ₀ [B]
    b_bn: Tensor        # b + W β₀ [B]
    blocks: list[_BlockWeights]


def applies(masker, rep: Tensor) -> bool:
    """Whether :func:`tcn_features` can replace the module forward: gLN TCN, C kernels built,
    float32 CPU input, no gradient wanted."""
    return (not masker.causal and isinstance(masker.input_norm, GlobalLayerNorm) and native.ENABLED
            and rep.device.type == "cpu" and rep.dtype == torch.float32
            and not torch.is_grad_enabled() and all(b.in_act.weight.numel() == 1 and b.dw_act.weight.numel() == 1
                                                    for b in masker.blocks))


def _slope(prelu: torch.nn.PReLU) -> float:
    return float(prelu.weight.reshape(-1)[0])


def _plan(masker) -> _Plan:
    """The folded weights of ``masker``, made once and kept until a parameter changes."""
    try:
        key = tuple((p.data_ptr(), p._version) for p in masker.parameters())
    except RuntimeError:  # parameters made under inference_mode have no version counter
        key = None
    cached = getattr(masker, "_fast_plan", None)
    if key is not None and cached is not None and cached.key == key:
        return cached
    norm, bn = masker.input_norm, masker.bottleneck
    w = bn.weight[:, :, 0]
    blocks = []
    for b in masker.blocks:
        outs = [b.res_conv] + ([b.skip_conv] if b.skip_conv is not None else [])
        w_out = torch.cat([c.weight[:, :, 0] for c in outs])
        b_out = torch.cat([c.bias for c in outs])
        g2, be2 = b.dw_norm.weight, b.dw_norm.bias
        blocks.append(_BlockWeights(
            w_in=b.in_conv.weight[:, :, 0], b_in=b.in_conv.bias, slope_in=_slope(b.in_act),
            gamma1=b.in_norm.weight, beta1=b.in_norm.bias,
            taps=b.dw_conv.weight[:, 0].t().contiguous(), dw_bias=b.dw_conv.bias.contiguous(),
            dilation=b.dilation, pad=b.dw_padding()[0], slope_dw=_slope(b.dw_act),
            w_out=w_out * g2, w_gamma=w_out @ g2, b_out=b_out + w_out @ be2,
            eps1=float(b.in_norm.eps), eps2=float(b.dw_norm.eps)))
    plan = _Plan(key=key, norm_gamma=norm.weight, norm_beta=norm.bias, eps=float(norm.eps),
                 w_bn=w * norm.weight, w_bn_gamma=w @ norm.weight, b_bn=bn.bias + w @ norm.bias,
                 blocks=blocks)
    masker._fast_plan = plan
    return plan


def _moments(sums: tuple[float, float], count: int, eps: float) -> tuple[float, float]:
    """Mean and ``1/sqrt(var + eps)`` from ``(Σx, Σx²)`` (biased variance, as gLN)."""
    mean = sums[0] / count
    var = max(sums[1] / count - mean * mean, 0.0)
    return mean, 1.0 / math.sqrt(var + eps)


#: frames per chunk of the second half of a block (depthwise pass → residual/skip 1×1 convs):
#: the ``[T, H]`` output of the depthwise pass never exists whole
CHUNK = 4096


@torch.no_grad()
def tcn_features(masker, rep: Tensor) -> Tensor:
    """What the mask head reads — the summed skip connections (or the residual path when the
    TCN has no skip path) — for one example given frames-major ``rep [T, N]``: ``[T, Sc]``
    (or ``[T, B]``). Equals the module's intermediate result to float32 rounding.
    (:func:`bottleneck` then :func:`blocks`; a caller that can drop ``rep`` in between saves
    its memory.)"""
    return blocks(masker, *bottleneck(masker, rep))


@torch.no_grad()
def bottleneck(masker, rep: Tensor) -> tuple[Tensor, Tensor]:
    """The input gLN and bottleneck of frames-major ``rep [T, N]``: ``(acc, offset)`` where
    ``acc [T, B + Sc]`` holds the residual path without its constant ``offset [B]`` and zeros
    for the skip sums."""
    p = _plan(masker)
    rep = rep.contiguous()
    n_bn = p.w_bn.shape[0]
    width = p.blocks[0].w_out.shape[0] if p.blocks else n_bn
    mean, inv = _moments(native.prelu_stats(rep, 1.0), rep.numel(), p.eps)
    acc = rep.new_zeros(rep.shape[0], width)  # [x | skip]: residual path and summed skips
    acc[:, :n_bn] = onednn.linear(rep, p.w_bn * inv)
    return acc, p.b_bn - p.w_bn_gamma * (mean * inv)


@torch.no_grad()
def blocks(masker, acc: Tensor, offset: Tensor) -> Tensor:
    """Every TCN block over :func:`bottleneck`'s ``(acc, offset)`` (``acc`` is updated in
    place); returns the features :func:`tcn_features` describes."""
    p = _plan(masker)
    frames, width = acc.shape
    n_bn = p.w_bn.shape[0]
    if not p.blocks:
        return acc.add_(offset)
    skip_offset = acc.new_zeros(width - n_bn)
    hidden = p.blocks[0].w_in.shape[0]
    g = acc.new_empty(min(frames, CHUNK), hidden)
    unscaled = acc.new_empty(frames, width)  # g (W diag γ₂)ᵀ before the second norm's 1/σ
    count = frames * hidden
    for b in p.blocks:
        h = onednn.linear(acc[:, :n_bn], b.w_in, torch.addmv(b.b_in, b.w_in, offset))
        mean, inv = _moments(native.prelu_stats(h, b.slope_in), count, b.eps1)
        scale = b.gamma1 * inv
        shift = b.beta1 - scale * mean
        total, total_sq = 0.0, 0.0
        for r0 in range(0, frames, CHUNK):
            r1 = min(frames, r0 + CHUNK)
            sums = native.norm_dwconv_prelu(h, b.slope_in, scale, shift, b.taps, b.dw_bias, b.dilation,
                                            b.pad, b.slope_dw, g[: r1 - r0], rows=(r0, r1))
            total, total_sq = total + sums[0], total_sq + sums[1]
            unscaled[r0:r1] = onednn.linear(g[: r1 - r0], b.w_out)
        del h
        mean, inv = _moments((total, total_sq), count, b.eps2)
        acc.add_(unscaled, alpha=inv)
        const = b.b_out - b.w_gamma * (mean * inv)
        offset = offset + const[:n_bn]
        skip_offset = skip_offset + const[n_bn:]
    if width > n_bn:
        return acc[:, n_bn:].add_(skip_offset)
    return acc.add_(offset)


@torch.no_grad()
def tcn_scores(masker, features: Tensor) -> Tensor:
    """Mask scores before the activation for frames-major ``features [T, ·]``: ``[T, C·N]``
    (the activation, :meth:`TCNMasker._activate`, is element-wise or across sources, so it
    applies to the ``[T, C, N]`` view as it is)."""
    out = masker.out_conv
    return onednn.linear(F.prelu(features, masker.out_act.weight), out.weight[:, :, 0], out.bias)

