"""The TCN's weights in the one layout every implementation reads.

:func:`tcn_weights` unpacks a whole masker: :func:`block_weights` each a :class:`~audiomask.maskers.tcn.DepthwiseTCNBlock` into a
:class:`BlockWeights` and :func:`head_weights` the masker's input norm, bottleneck and mask
head into a :class:`HeadWeights` — the only places that know the modules' attribute names
and parameter shapes. The CPU inference path (:mod:`.cpu_inference`, which folds the norms
into them), the CPU training path (:mod:`.cpu_training`), the streaming steps
(:mod:`.stream_step`, :mod:`.stream_step_c`) and the exported streaming graph
(:mod:`audiomask.export.graphs`) all start from these. The tensors are views of (or, for the
stacked output convs and the transposed taps, differentiable functions of) the parameters,
so gradients reach the modules. :data:`MASK_ACTIVATIONS`, the head's last step, is here for the
same reason: every path applies it.

Symbols: B (bottleneck), H (block channels), Sc (skip channels, 0 without skips), P (taps),
d (dilation), N (encoder filters), C (sources).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

#: the mask activations a TCN masker offers, by name: each maps scores with the source axis at
#: dim 1 (``[B, C, N, F]`` or frames-major ``[T, C, N]``) to masks — ``"softmax"`` across
#: sources, the others element-wise (``"linear"``: the scores as they are)
MASK_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu,
                    "softmax": functools.partial(torch.softmax, dim=1), "linear": torch.nn.Identity()}


class BlockWeights(NamedTuple):
    """One TCN block ``y = [Wᵣₑₛ; W_skip] norm₂(prelu(dwconv(norm₁(prelu(Wᵢₙ x + bᵢₙ, a₁))), a₂)) + b``."""

    w_in: Tensor   # Wᵢₙ, 1×1 conv B → H: [H, B]
    b_in: Tensor   # bᵢₙ [H]
    a1: Tensor     # PReLU slope after it: [1] or [H]
    g1: Tensor     # first norm's gain γ₁ [H]
    be1: Tensor    # and bias β₁ [H]
    taps: Tensor   # depthwise conv taps [P, H] (tap k reads frame t + k·d − pad), contiguous
    b_dw: Tensor   # depthwise conv bias [H]
    a2: Tensor     # PReLU slope after it: [1] or [H]
    g2: Tensor     # second norm's gain γ₂ [H]
    be2: Tensor    # and bias β₂ [H]
    w_out: Tensor  # [Wᵣₑₛ; W_skip], residual then skip 1×1 convs: [B + Sc, H]
    b_out: Tensor  # [bᵣₑₛ; b_skip] [B + Sc]
    dilation: int  # d
    pad: int       # frames of zero padding on the left: (P−1)·d causal, (P−1)·d/2 otherwise
    eps1: float    # the norms' ε
    eps2: float

    @property
    def context(self) -> int:
        """Frames of left context the depthwise conv needs: ``(P − 1) · d``."""
        return (self.taps.shape[0] - 1) * self.dilation


class HeadWeights(NamedTuple):
    """The masker around its blocks: input norm → bottleneck → … → PReLU → mask conv."""

    norm_w: Tensor   # input norm's gain [N]
    norm_b: Tensor   # and bias [N]
    w_bn: Tensor     # bottleneck 1×1 conv N → B: [B, N]
    b_bn: Tensor     # [B]
    slope: Tensor    # PReLU slope before the mask conv: [1] or [Sc or B]
    w_mask: Tensor   # mask 1×1 conv (Sc or B) → C·N: [C·N, Sc or B]
    b_mask: Tensor   # [C·N]
    eps: float       # the input norm's ε


def tensors_of(weights: BlockWeights | HeadWeights) -> tuple[Tensor, ...]:
    """The tensor fields of ``weights``, in order (an exported graph keeps them as initializers)."""
    return tuple(w for w in weights if isinstance(w, Tensor))


def with_tensors(weights, tensors) -> BlockWeights | HeadWeights:
    """``weights`` with its tensor fields replaced, in order, by ``tensors``."""
    new = iter(tensors)
    return type(weights)(*(next(new) if isinstance(w, Tensor) else w for w in weights))


def block_weights(block) -> BlockWeights:
    """The weights of a :class:`~audiomask.maskers.tcn.DepthwiseTCNBlock`."""
    outs = [block.res_conv] + ([block.skip_conv] if block.skip_conv is not None else [])
    return BlockWeights(
        w_in=block.in_conv.weight[:, :, 0], b_in=block.in_conv.bias, a1=block.in_act.weight,
        g1=block.in_norm.weight, be1=block.in_norm.bias,
        taps=block.dw_conv.weight[:, 0].t().contiguous(), b_dw=block.dw_conv.bias, a2=block.dw_act.weight,
        g2=block.dw_norm.weight, be2=block.dw_norm.bias,
        w_out=torch.cat([c.weight[:, :, 0] for c in outs]), b_out=torch.cat([c.bias for c in outs]),
        dilation=block.dilation, pad=block.padding[0],
        eps1=float(block.in_norm.eps), eps2=float(block.dw_norm.eps))


def tcn_weights(masker) -> tuple[HeadWeights, list[BlockWeights]]:
    """A :class:`~audiomask.maskers.tcn.TCNMasker`'s head and every block's weights, read
    once (a path reads them before its loop over blocks, not inside it)."""
    return head_weights(masker), [block_weights(b) for b in masker.blocks]


def head_weights(masker) -> HeadWeights:
    """The input norm, bottleneck and mask head of a :class:`~audiomask.maskers.tcn.TCNMasker`."""
    norm = masker.input_norm
    return HeadWeights(norm_w=norm.weight, norm_b=norm.bias, w_bn=masker.bottleneck.weight[:, :, 0],
                       b_bn=masker.bottleneck.bias, slope=masker.out_act.weight,
                       w_mask=masker.out_conv.weight[:, :, 0], b_mask=masker.out_conv.bias, eps=float(norm.eps))
