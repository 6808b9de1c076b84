"""PyTorch references of the fused kernels: the exact math of the modules they replace.

Each function is what the module code computes (same ops, same order), so the model's
output on the reference path is bit-identical to the module path; the Triton kernels are
tested against these (forward and gradients) and must equal them to float32 rounding.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

NORMS = ("gLN", "cLN", "chanLN")


def reference_norm(a: Tensor, weight: Tensor, bias: Tensor, norm: str, eps: float) -> Tensor:
    """The TCN norms of :mod:`audiomask.nn.norms` on ``a [B, C, T]``:

    * ``gLN``: ``nn.GroupNorm(1, C)`` — statistics over channels and frames per example;
    * ``cLN``: :func:`~audiomask.nn.norms.cumulative_norm` from a zero state — frame ``t``
      uses channels × frames ``0..t`` (running sums in float64);
    * ``chanLN``: each frame over its channels (biased variance); ``eps`` inside the root.
    """
    if norm == "gLN":
        return F.group_norm(a, 1, weight, bias, eps)
    if norm == "cLN":
        from audiomask.nn.norms import cumulative_norm

        state = torch.zeros(a.shape[0], 3, dtype=torch.float64, device=a.device)
        return cumulative_norm(a, state, weight, bias, eps, 1)[0]
    if norm == "chanLN":
        mean = a.mean(1, keepdim=True)
        var = a.var(1, keepdim=True, unbiased=False)
        shape = (1, a.shape[1]) + (1,) * (a.dim() - 2)
        return (a - mean) / (var + eps).sqrt() * weight.view(shape) + bias.view(shape)
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


def reference_prelu_norm(x: Tensor, prelu_weight: Tensor, norm_weight: Tensor, norm_bias: Tensor,
                         norm: str, eps: float) -> Tensor:
    """``norm(prelu(x))`` on ``x [B, C, T]`` — the TCN block's ``in_norm(in_act(·))``.
    ``prelu_weight``: 1 slope or one per channel."""
    return reference_norm(F.prelu(x, prelu_weight), norm_weight, norm_bias, norm, eps)


def reference_dwconv_prelu_norm(x: Tensor, dw_weight: Tensor, dw_bias: Optional[Tensor], dilation: int,
                                padding: Tuple[int, int], prelu_weight: Tensor, norm_weight: Tensor,
                                norm_bias: Tensor, norm: str, eps: float) -> Tensor:
    """``norm(prelu(conv(pad(x))))`` — the TCN block's ``dw_norm(dw_act(dw_conv(F.pad(y, ·))))``.

    ``x [B, C, T]``; ``dw_weight [C, 1, P]`` (depthwise, dilation ``d``); ``padding``
    ``(left, right)`` zero frames: ``((P-1)d, 0)`` causal, ``((P-1)d/2,)*2`` non-causal.
    Output ``[B, C, T + left + right - (P-1)d]``.
    """
    z = F.conv1d(F.pad(x, padding), dw_weight, dw_bias, dilation=dilation, groups=x.shape[1])
    return reference_prelu_norm(z, prelu_weight, norm_weight, norm_bias, norm, eps)


def reference_depthwise_conv1d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, dilation: int = 1,
                               padding: Tuple[int, int] = (0, 0), channels_last: bool = False,
                               residual: bool = False) -> Tensor:
    """Grouped depthwise conv: ``weight [C, G, P]``, output channel ``c`` reads input channels
    ``c·G … c·G+G-1`` (``G = 1``: depthwise; MossFormer2's dense FSMN layer ``i`` has
    ``G = i+1``) — ``F.conv1d(F.pad(x, padding), weight, bias, dilation, groups=C)``.

    ``x [B, C·G, T]``, or ``[B, T, C·G]`` with ``channels_last`` (output in the same layout).
    ``residual``: return ``x + conv(x)`` (FFConvM; needs ``G = 1`` and "same" padding).
    """
    c = x.transpose(1, 2) if channels_last else x
    y = F.conv1d(F.pad(c, padding), weight, bias, dilation=dilation, groups=weight.shape[0])
    if channels_last:
        y = y.transpose(1, 2)
    return x + y if residual else y
