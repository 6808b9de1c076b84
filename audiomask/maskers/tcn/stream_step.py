"""The streaming step of a causal TCN masker, as one function over prepared weights.

A 10 ms block at 8 kHz is about ten encoder frames, so for Conv-TasNet the arithmetic per
block is small and the cost of issuing hundreds of small tensor ops from Python dominates.
:func:`tcn_step` runs the whole masker for a block — input norm, bottleneck, every
block, mask head — over weights laid out once per stream, with the fewest ops, in
the frames-major layout ``[B, F, channels]``: each 1×1 conv is one ``linear`` over
contiguous rows, each dilated depthwise conv is ``P`` fused multiply-adds of shifted rows
of a history buffer (:mod:`audiomask.nn.history`), and each norm is
:func:`~audiomask.nn.norms.causal_norm_channels_last`. It computes exactly what
:meth:`TCNMasker.forward <audiomask.maskers.tcn.TCNMasker.forward>` computes over the whole
signal (to float32 rounding). ``AUDIOMASK_NO_JIT=1`` runs the same function eagerly.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from audiomask import native
from audiomask.nn.history import history_push
from audiomask.nn.norms import causal_norm_channels_last

# weights of one block, in this order (see TCNMasker.stream_weights)
IN_W, IN_B, IN_A, N1_W, N1_B, TAPS, DW_B, DW_A, N2_W, N2_B, OUT_W, OUT_B = range(12)


def tcn_step(rep: Tensor, head: List[Tensor], blocks: List[List[Tensor]], dilations: List[int],
             norm: str, eps: float, n_src: int, mask_act: str, skip_chan: int,
             norm_states: List[Tensor], buffers: List[Tensor], ends: List[int]
             ) -> Tuple[Tensor, List[Tensor], List[Tensor], List[int]]:
    """Masks ``[B, C, N, F]`` for the next frames ``rep [B, N, F]``.

    Args:
        head: ``[input-norm weight, bias, bottleneck W [B_chan, N], b, output PReLU slope,
            mask conv W [C·N, Sc], b]``.
        blocks: per block the tensors indexed by ``IN_W … OUT_B``: 1×1 conv B→H, PReLU slope,
            norm, depthwise taps ``[P, H]`` and bias, PReLU slope, norm, and the residual and
            skip 1×1 convs stacked into one ``[B_chan + Sc, H]`` matrix and bias.
        dilations: d of each block. norm: ``"cLN"`` or ``"chanLN"``. skip_chan: Sc (0: none).
        norm_states: the input norm's, then two per block. buffers/ends: each block's
            depthwise-conv history (:func:`~audiomask.nn.history.history_push`); with ``ends``
            empty, each buffer is exactly the last ``(P-1)·d`` frames ``[B, (P-1)·d, H]`` and is
            replaced by the new last frames (state shapes that never change, as an exported
            streaming graph needs).

    Returns ``(masks, norm_states, buffers, ends)`` (the state lists are updated in place
    and returned).
    """
    x, norm_states[0] = causal_norm_channels_last(norm, rep.transpose(1, 2), norm_states[0],
                                                  head[0], head[1], eps)
    x = F.linear(x, head[2], head[3])  # [B, F, B_chan]
    bn_chan = x.shape[-1]
    skip_sum: Optional[Tensor] = None
    for i, w in enumerate(blocks):
        y, norm_states[2 * i + 1] = causal_norm_channels_last(
            norm, F.linear(x, w[IN_W], w[IN_B]), norm_states[2 * i + 1], w[N1_W], w[N1_B], eps, w[IN_A])
        taps, d = w[TAPS], dilations[i]
        context = d * (taps.shape[0] - 1)
        if len(ends) > 0:
            buffers[i], ends[i], y = history_push(buffers[i], ends[i], context, y)
        else:  # no ends: histories of exactly `context` frames (fixed shapes, for exported graphs)
            y = torch.cat([buffers[i], y], 1)
            buffers[i] = y[:, y.shape[1] - context :]
        if native.can_dwconv(y):  # the C kernel, when built
            z = native.dwconv(y, taps, w[DW_B], d)
        else:
            frames = y.shape[1] - context
            z = torch.addcmul(w[DW_B], y[:, :frames], taps[0])
            for k in range(1, taps.shape[0]):
                z.addcmul_(y[:, k * d : k * d + frames], taps[k])
        z, norm_states[2 * i + 2] = causal_norm_channels_last(
            norm, z, norm_states[2 * i + 2], w[N2_W], w[N2_B], eps, w[DW_A])
        out = F.linear(z, w[OUT_W], w[OUT_B])  # [B, F, B_chan + Sc]: residual, then skip
        x = x + out[..., :bn_chan]
        if skip_chan > 0:
            skip_sum = out[..., bn_chan:] if skip_sum is None else skip_sum + out[..., bn_chan:]
    features = x if skip_sum is None else skip_sum
    scores = F.linear(F.prelu(features, head[4]), head[5], head[6])  # [B, F, C·N]
    batch, frames, n_filters = rep.shape[0], rep.shape[2], rep.shape[1]
    scores = scores.view(batch, frames, n_src, n_filters).permute(0, 2, 3, 1)
    return activate_masks(scores, mask_act), norm_states, buffers, ends


def activate_masks(scores: Tensor, mask_act: str) -> Tensor:
    """The TCN's mask activation on scores with the source axis at dim 1 (``[B, C, N, F]`` or
    frames-major ``[T, C, N]``): ``"sigmoid"``, ``"relu"``, ``"softmax"`` across sources, or
    ``"linear"``."""
    if mask_act == "sigmoid":
        return torch.sigmoid(scores)
    if mask_act == "relu":
        return F.relu(scores)
    if mask_act == "softmax":
        return torch.softmax(scores, dim=1)
    return scores
