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
signal (to float32 rounding).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from audiomask import native
from audiomask.maskers.tcn.dispatch import BlockWeights, HeadWeights, MASK_ACTIVATIONS
from audiomask.nn.history import history_push
from audiomask.nn.norms import causal_norm_channels_last


def tcn_step(rep: Tensor, head: HeadWeights, blocks: List[BlockWeights], norm: str, n_src: int, mask_act: str,
             norm_states: List[Tensor], buffers: List[Tensor], ends: List[int]
             ) -> Tuple[Tensor, List[Tensor], List[Tensor], List[int]]:
    """Masks ``[B, C, N, F]`` for the next frames ``rep [B, N, F]``.

    Args:
        head, blocks: the masker's weights (:mod:`audiomask.maskers.tcn.dispatch`).
        norm: ``"cLN"`` or ``"chanLN"`` (every norm of the masker; ε is ``head.eps``).
        n_src: C. mask_act: the mask activation (:data:`~.dispatch.MASK_ACTIVATIONS`).
        norm_states: the input norm's, then two per block. buffers/ends: each block's
            depthwise-conv history (:func:`~audiomask.nn.history.history_push`); with ``ends``
            empty, each buffer is exactly the last ``(P-1)·d`` frames ``[B, (P-1)·d, H]`` and is
            replaced by the new last frames (state shapes that never change, as an exported
            streaming graph needs).

    Returns ``(masks, norm_states, buffers, ends)`` (the state lists are updated in place
    and returned).
    """
    eps = head.eps
    x, norm_states[0] = causal_norm_channels_last(norm, rep.transpose(1, 2), norm_states[0],
                                                  head.norm_w, head.norm_b, eps)
    x = F.linear(x, head.w_bn, head.b_bn)  # [B, F, B_chan]
    bn_chan = x.shape[-1]
    skip_sum: Optional[Tensor] = None
    for i, w in enumerate(blocks):
        y, norm_states[2 * i + 1] = causal_norm_channels_last(
            norm, F.linear(x, w.w_in, w.b_in), norm_states[2 * i + 1], w.g1, w.be1, eps, w.a1)
        taps, d, context = w.taps, w.dilation, w.context
        if len(ends) > 0:
            buffers[i], ends[i], y = history_push(buffers[i], ends[i], context, y)
        else:  # no ends: histories of exactly `context` frames (fixed shapes, for exported graphs)
            y = torch.cat([buffers[i], y], 1)
            buffers[i] = y[:, y.shape[1] - context :]
        if native.can_dwconv(y):  # the C kernel, when built
            z = native.dwconv(y, taps, w.b_dw, d)
        else:
            frames = y.shape[1] - context
            z = torch.addcmul(w.b_dw, y[:, :frames], taps[0])
            for k in range(1, taps.shape[0]):
                z.addcmul_(y[:, k * d : k * d + frames], taps[k])
        z, norm_states[2 * i + 2] = causal_norm_channels_last(
            norm, z, norm_states[2 * i + 2], w.g2, w.be2, eps, w.a2)
        out = F.linear(z, w.w_out, w.b_out)  # [B, F, B_chan + Sc]: residual, then skip
        x = x + out[..., :bn_chan]
        if out.shape[-1] > bn_chan:
            skip_sum = out[..., bn_chan:] if skip_sum is None else skip_sum + out[..., bn_chan:]
    features = x if skip_sum is None else skip_sum
    scores = F.linear(F.prelu(features, head.slope), head.w_mask, head.b_mask)  # [B, F, C·N]
    batch, frames, n_filters = rep.shape[0], rep.shape[2], rep.shape[1]
    scores = scores.view(batch, frames, n_src, n_filters).permute(0, 2, 3, 1)
    return MASK_ACTIVATIONS[mask_act](scores), norm_states, buffers, ends
