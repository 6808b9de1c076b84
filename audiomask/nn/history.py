"""Left context of a streamed, frames-major feature sequence, kept without re-copying.

A causal convolution with kernel ``P`` and dilation ``d`` needs the ``(P-1)·d`` frames
before each new block. Concatenating that context to every block copies it every time —
for Conv-TasNet's dilations up to 128 that is most of the work of a 10 ms block. Instead
each block is appended to a buffer with spare room and the caller gets a view of
``context + block`` consecutive frames; the context is moved to the front only when the
spare room runs out (once every ``spare / block`` calls).

The state is a plain ``(buffer, end)`` pair so that TorchScript'ed steps can carry it.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor


def history_buffer(batch: int, context: int, channels: int, device: Optional[torch.device] = None,
                   dtype: torch.dtype = torch.float32, spare: int = -1) -> Tuple[Tensor, int]:
    """A fresh history ``(buffer [B, context + spare, C], end)``: ``context`` zero frames (a
    causal conv's left padding) end at ``end``. ``spare`` defaults to ``max(2·context, 32)``."""
    spare = max(2 * context, 32) if spare < 0 else spare
    return torch.zeros(batch, context + spare, channels, device=device, dtype=dtype), context


def history_grow(buffer: Tensor, end: int, context: int, frames: int) -> Tuple[Tensor, int]:
    """``(buffer, end)`` with room for ``frames`` more frames after the context: unchanged when
    ``context + frames`` fit, else a larger buffer (``context + 2·frames``) holding the last
    ``context`` frames at its front."""
    if context + frames <= buffer.shape[1]:
        return buffer, end
    grown = buffer.new_zeros([buffer.shape[0], context + 2 * frames, buffer.shape[2]])
    grown[:, :context] = buffer[:, end - context : end]
    return grown, context


def history_push(buffer: Tensor, end: int, context: int, block: Tensor) -> Tuple[Tensor, int, Tensor]:
    """Append ``block [B, F, C]``: ``(buffer, end, view)`` where ``view [B, context + F, C]`` is
    the ``context`` frames before the block followed by the block (valid until the next push)."""
    frames = block.shape[1]
    buffer, end = history_grow(buffer, end, context, frames)
    if end + frames > buffer.shape[1]:  # no spare room left: the context moves to the front
        buffer[:, :context] = buffer[:, end - context : end].clone()
        end = context
    buffer[:, end : end + frames] = block
    end += frames
    return buffer, end, buffer[:, end - context - frames : end]
