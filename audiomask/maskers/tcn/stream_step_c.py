"""The causal (cLN) TCN's streaming step with the C kernels: all TCN blocks in one call.

:func:`~audiomask.maskers.tcn.stream_step.tcn_step` issues about eight tensor ops per TCN block;
for a 10 ms block (ten frames) their fixed cost is most of the time. Here the step is

1. the input cLN (:func:`audiomask.native.cln_step`) and the bottleneck ``x = Wᵦₙ n + bᵦₙ``;
2. :func:`audiomask.native.tcn_stream` — every TCN block (1×1 conv in, PReLU + cLN, history
   append, dilated depthwise conv, PReLU + cLN, residual and skip 1×1 convs) in one C call on
   ``torch.get_num_threads()`` threads, over one accumulator ``[x | skip]``;
3. the mask head (PReLU, 1×1 conv, activation).

The residual and skip 1×1 convs' biases are not added per block: they are constants, so the
residual biases of the blocks before block ``i`` are folded into its input bias
(``b̃ᵢₙ = bᵢₙ + Wᵢₙ Σ_{j<i} bᵣₑₛ,ⱼ``) and the skip biases are added once at the end. Outputs
equal :func:`tcn_step`'s (and the offline forward's) to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from audiomask import native
from audiomask.nn.history import history_grow
from audiomask.maskers.tcn.dispatch import BlockWeights, HeadWeights, MASK_ACTIVATIONS


class NativeStreamPlan:
    """A causal cLN TCN's weights in the layout of :func:`native.tcn_stream`, made once per stream
    from the weights of :class:`~audiomask.maskers.tcn.TCNStreamState`, with the stream's
    state: the norms' running sums ``norm_states`` (``[B, 3]`` float64: the input norm's, then
    two per block) and each block's history buffer (owned here; grown when a block does not fit)."""

    def __init__(self, head: HeadWeights, blocks: list[BlockWeights], norm_states: list[Tensor],
                 buffers: list[Tensor], ends: list[int]) -> None:
        self.head = head
        self.n_bn = head.w_bn.shape[0]
        self.hidden = blocks[0].w_in.shape[0] if blocks else 0
        self.width = blocks[0].w_out.shape[0] if blocks else self.n_bn
        self.norm_states, self.buffers = norm_states, list(buffers)
        self._keep: list[Tensor] = []  # tensors the C structs point into
        self.cblocks = (native.TCNStreamBlock * len(blocks))()
        offset = torch.zeros(self.n_bn)
        skip_const = torch.zeros(self.width - self.n_bn)
        for i, w in enumerate(blocks):
            parts = {"w_in": _panels(w.w_in), "b_in": (w.b_in + w.w_in @ offset).contiguous(),
                     "n1w": w.g1.contiguous(), "n1b": w.be1.contiguous(), "taps": w.taps.contiguous(),
                     "dw_b": w.b_dw.contiguous(), "n2w": w.g2.contiguous(), "n2b": w.be2.contiguous(),
                     "w_out": _panels(w.w_out), "state1": norm_states[2 * i + 1],
                     "state2": norm_states[2 * i + 2]}
            c = self.cblocks[i]
            for name, tensor in parts.items():
                setattr(c, name, tensor.data_ptr())
                self._keep.append(tensor)
            c.P, c.d, c.context = w.taps.shape[0], w.dilation, w.context
            c.a1, c.a2 = float(w.a1), float(w.a2)
            self._set_buffer(i, buffers[i], ends[i])
            offset = offset + w.b_out[: self.n_bn]
            skip_const = skip_const + w.b_out[self.n_bn :]
        self.res_const, self.skip_const = offset, skip_const

    @staticmethod
    def applies(norm: str, head: HeadWeights, blocks: list[BlockWeights]) -> bool:
        """cLN, kernels built, float32 CPU weights, one-slope PReLUs, at least one block, and
        hidden and residual + skip widths that are multiples of 16 (the kernel's panels)."""
        return (norm == "cLN" and native.enabled() and len(blocks) > 0 and head.norm_w.device.type == "cpu"
                and head.norm_w.dtype == torch.float32 and blocks[0].w_in.shape[0] % 16 == 0
                and blocks[0].w_out.shape[0] % 16 == 0
                and all(w.a1.numel() == 1 and w.a2.numel() == 1 for w in blocks))

    def _set_buffer(self, i: int, buffer: Tensor, end: int) -> None:
        self.buffers[i] = buffer
        c = self.cblocks[i]
        c.buffer, c.cap, c.end = buffer.data_ptr(), buffer.shape[1], end

    def make_room(self, frames: int) -> None:
        """Grow the histories that cannot take ``frames`` more frames (a block longer than the
        spare room), keeping their last ``context`` frames."""
        for i, c in enumerate(self.cblocks):
            if c.context + frames > c.cap:
                self._set_buffer(i, *history_grow(self.buffers[i], c.end, c.context, frames))


def _panels(weight: Tensor) -> Tensor:
    """A 1×1 conv's weight ``[N, K]`` (N a multiple of 16) as the kernel's panels ``[N/16, K, 16]``:
    panel ``p`` holds output channels ``16p … 16p+15``, k-major."""
    n, k = weight.shape
    return weight.reshape(n // 16, 16, k).transpose(1, 2).contiguous()


def native_step(rep: Tensor, plan: NativeStreamPlan, n_src: int, mask_act: str) -> Tensor:
    """Masks ``[B, C, N, F]`` for the next frames ``rep [B, N, F]``; the plan's state (norm sums,
    histories) is updated in place."""
    batch, n_filters, frames = rep.shape
    head, eps = plan.head, plan.head.eps
    x = native.cln_step(rep.transpose(1, 2).contiguous(), plan.norm_states[0], head.norm_w, head.norm_b, eps)
    rows = x.view(batch * frames, n_filters)
    acc = rows.new_zeros(batch * frames, plan.width)  # [x | skip]
    torch.addmm(head.b_bn, rows, head.w_bn.t(), out=acc[:, : plan.n_bn])
    plan.make_room(frames)
    native.tcn_stream(plan.cblocks, acc, batch, frames, plan.n_bn, plan.hidden, eps)
    if plan.width > plan.n_bn:
        features = acc[:, plan.n_bn :] + plan.skip_const
    else:
        features = acc + plan.res_const
    scores = torch.addmm(head.b_mask, F.prelu(features, head.slope), head.w_mask.t())
    return MASK_ACTIVATIONS[mask_act](scores.view(batch, frames, n_src, n_filters).permute(0, 2, 3, 1))
