"""The causal (cLN) TCN's streaming step with the C kernels: three calls per block.

:func:`~audiomask.maskers.tcn_stream.tcn_step` issues about eight tensor ops per TCN block;
for a 10 ms block (ten frames) their fixed cost is most of the time. Here each block is

1. ``h = x Wᵢₙᵀ + b̃ᵢₙ`` — one ``addmm`` reading the residual path in place;
2. :func:`audiomask.native.stream_mid` — PReLU + cumulative LN, history append, dilated
   depthwise conv, PReLU + cumulative LN, in one C call;
3. ``[x | skip] += z Wₒᵤₜᵀ`` — one in-place ``addmm`` into one accumulator holding the residual
   path and the summed skips.

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
from audiomask.maskers.tcn_stream import (DW_A, DW_B, IN_A, IN_B, IN_W, N1_B, N1_W, N2_B, N2_W, OUT_B,
                                          OUT_W, TAPS, activate_masks)


class NativeStreamPlan:
    """Weights of a causal cLN TCN in the layout of :func:`native_step`, made once per stream
    from the prepared lists of :class:`~audiomask.maskers.tcn.TCNStreamState`."""

    def __init__(self, head: list[Tensor], blocks: list[list[Tensor]], dilations: list[int]) -> None:
        self.norm_w, self.norm_b, self.w_bn, self.b_bn = head[0], head[1], head[2], head[3]
        self.out_slope, self.w_mask, self.b_mask = head[4], head[5], head[6]
        n_bn = self.w_bn.shape[0]
        self.n_bn = n_bn
        offset = torch.zeros(n_bn)
        skip_const = torch.zeros(blocks[0][OUT_W].shape[0] - n_bn) if blocks else torch.zeros(0)
        self.blocks = []
        for w, d in zip(blocks, dilations):
            self.blocks.append((w[IN_W], w[IN_B] + w[IN_W] @ offset, float(w[IN_A]), w[N1_W], w[N1_B],
                                w[TAPS].contiguous(), w[DW_B].contiguous(), d, (w[TAPS].shape[0] - 1) * d,
                                float(w[DW_A]), w[N2_W], w[N2_B], w[OUT_W]))
            offset = offset + w[OUT_B][:n_bn]
            skip_const = skip_const + w[OUT_B][n_bn:]
        self.res_const, self.skip_const = offset, skip_const

    @staticmethod
    def applies(norm: str, head: list[Tensor], blocks: list[list[Tensor]]) -> bool:
        """cLN, kernels built, float32 CPU weights, one-slope PReLUs."""
        return (norm == "cLN" and native.ENABLED and head[0].device.type == "cpu"
                and head[0].dtype == torch.float32
                and all(w[IN_A].numel() == 1 and w[DW_A].numel() == 1 for w in blocks))


def native_step(rep: Tensor, plan: NativeStreamPlan, eps: float, n_src: int, mask_act: str,
                norm_states: list[Tensor], buffers: list[Tensor], ends: list[int]) -> Tensor:
    """Masks ``[B, C, N, F]`` for the next frames ``rep [B, N, F]``; the state lists (norm sums,
    histories) are updated in place."""
    batch, n_filters, frames = rep.shape
    x = native.cln_step(rep.transpose(1, 2).contiguous(), norm_states[0], plan.norm_w, plan.norm_b, eps)
    rows = x.view(batch * frames, n_filters)
    width = plan.blocks[0][12].shape[0] if plan.blocks else plan.n_bn
    acc = torch.cat([torch.addmm(plan.b_bn, rows, plan.w_bn.t()),
                     rows.new_zeros(batch * frames, width - plan.n_bn)], 1)  # [x | skip]
    residual = acc[:, : plan.n_bn]
    for i, (w_in, b_in, a1, n1w, n1b, taps, dw_b, d, context, a2, n2w, n2b, w_out) in enumerate(plan.blocks):
        h = torch.addmm(b_in, residual, w_in.t()).view(batch, frames, -1)
        z, buffers[i], ends[i] = native.stream_mid(h, a1, norm_states[2 * i + 1], n1w, n1b, buffers[i],
                                                   ends[i], context, taps, dw_b, d, a2,
                                                   norm_states[2 * i + 2], n2w, n2b, eps)
        acc.addmm_(z.view(batch * frames, -1), w_out.t())
    if width > plan.n_bn:
        features = acc[:, plan.n_bn :] + plan.skip_const
    else:
        features = residual + plan.res_const
    scores = torch.addmm(plan.b_mask, F.prelu(features, plan.out_slope), plan.w_mask.t())
    return activate_masks(scores.view(batch, frames, n_src, n_filters).permute(0, 2, 3, 1), mask_act)
