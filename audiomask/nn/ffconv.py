"""FFConvM: the convolution-augmented feed-forward projection of MossFormer / MossFormer2.

``norm → Linear(D_in → D_out) → SiLU → (h + depthwise_conv(h)) → Dropout`` on ``[B, T, D]``
sequences (the authors' ``FFConvM`` with its ``ConvModule``: a depthwise conv of kernel 17,
no bias, "same" padding, with a residual around it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomask import kernels


class FFConvM(nn.Module):
    """Feed-forward projection with a depthwise-conv residual branch.

    Args:
        dim_in: input width.
        dim_out: output width (also the depthwise conv's channels).
        norm: the pre-norm module over ``dim_in`` (ScaleNorm in attention, LayerNorm in FSMN).
        kernel_size: depthwise kernel (odd; the authors' 17).
        dropout: dropout at the end.
        causal: pad the depthwise conv ``kernel_size - 1`` frames on the left only
            (non-causal: half on each side, as the authors do).

    Shapes: ``[B, T, dim_in]`` → ``[B, T, dim_out]``.
    """

    def __init__(self, dim_in: int, dim_out: int, norm: nn.Module, kernel_size: int = 17,
                 dropout: float = 0.1, causal: bool = False) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"FFConvM needs an odd kernel size, got {kernel_size}")
        self.causal, self.kernel_size = causal, kernel_size
        self.norm = norm
        self.linear = nn.Linear(dim_in, dim_out)
        # non-causal: "same" zero padding inside the conv (no padded copy of h)
        self.dwconv = nn.Conv1d(dim_out, dim_out, kernel_size, groups=dim_out, bias=False,
                                padding=0 if causal else kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.linear(self.norm(x)))
        if kernels.use_triton(h):  # CUDA: h + conv(h) in one kernel on [B, T, C], no transposes
            pad = (self.kernel_size - 1, 0) if self.causal else (self.kernel_size // 2,) * 2
            return self.dropout(kernels.depthwise_conv1d(h, self.dwconv.weight, None, 1, pad,
                                                         channels_last=True, residual=True))
        c = h.transpose(1, 2)
        if self.causal:
            c = F.pad(c, (self.kernel_size - 1, 0))
        conv = self.dwconv(c).transpose(1, 2)
        return self.dropout(h + conv)
