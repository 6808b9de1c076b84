"""Left context of a streamed, frames-major feature sequence, kept without re-copying.

A causal convolution with kernel ``P`` and dilation ``d`` needs the ``(P-1)·d`` frames
before each new block. Concatenating that context to every block copies it every time —
for Conv-TasNet's dilations up to 128 that is most of the work of a 10 ms block. A
:class:`FrameHistory` instead appends each block to a buffer with spare room and hands out
a view of ``context + block`` consecutive frames; the context is moved to the front only
when the spare room runs out (once every ``spare / block`` calls).
"""

from __future__ import annotations

import torch


class FrameHistory:
    """The last ``context`` frames of a stream ``[batch, frames, channels]`` (zeros before
    the first frame, as a causal conv's left padding).

    ``push(block [B, F, C])`` returns a view ``[B, context + F, C]``: the ``context`` frames
    before the block followed by the block itself. The view is valid until the next push.
    """

    def __init__(self, batch: int, context: int, channels: int, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32, spare: int | None = None) -> None:
        self.context = context
        spare = max(2 * context, 32) if spare is None else spare
        self.buffer = torch.zeros(batch, context + spare, channels, device=device, dtype=dtype)
        self.end = context  # frames [end - context, end) hold the history

    def push(self, block: torch.Tensor) -> torch.Tensor:
        frames = block.shape[1]
        if self.end + frames > self.buffer.shape[1]:
            history = self.buffer[:, self.end - self.context : self.end].clone()
            if self.context + frames > self.buffer.shape[1]:  # a block longer than the spare room
                batch, _, channels = self.buffer.shape
                self.buffer = self.buffer.new_empty(batch, self.context + 2 * frames, channels)
            self.buffer[:, : self.context] = history
            self.end = self.context
        self.buffer[:, self.end : self.end + frames] = block
        self.end += frames
        return self.buffer[:, self.end - self.context - frames : self.end]

    def last(self) -> torch.Tensor:
        """The current history ``[B, context, C]`` (a view)."""
        return self.buffer[:, self.end - self.context : self.end]
