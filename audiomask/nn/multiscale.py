"""Multi-scale selective attention (MSA): a 1-D encoder–fusion–decoder over several resolutions.

The MSA module of TIGER (Xu, Li, Chen & Hu, "TIGER: Time-frequency Interleaved Gain Extraction
and Reconstruction for Efficient Speech Separation", ICLR 2025), a descendant of the U-shaped
conv blocks of A-FRCNN/TDANet. Layout and numerics follow the authors' look2hear code
(``UConvBlock``, ``InjectionMultiSum``, ``Mlp``): every norm is a global layer norm
(``GroupNorm(1, C, eps=1e-8)``), every conv uses ``(k - 1) // 2`` padding.

Shapes: ``[batch, C, L]`` → ``[batch, C, L]`` along any axis ``L`` (TIGER runs it along the
sub-band axis in the frequency path and along frames in the frame path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomask.nn.norms import GlobalLayerNorm


class ConvNorm(nn.Module):
    """``Conv1d`` (padding ``(k-1)//2``) → gLN, optionally → PReLU.

    Shapes: ``[batch, in_chan, L]`` → ``[batch, out_chan, ceil(L / stride)]`` (odd ``k``).
    """

    def __init__(self, in_chan: int, out_chan: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, bias: bool = True, act: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_chan, out_chan, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups, bias=bias)
        self.norm = GlobalLayerNorm(out_chan)
        self.act = nn.PReLU() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        return self.act(y) if self.act is not None else y


class SelectiveFusion(nn.Module):
    """Inject a coarse (global) feature into a fine (local) one:
    ``local_conv(x_l) · σ(gate_conv(x_g))↑ + global_conv(x_g)↑``, where ``↑`` is nearest-
    neighbour resampling to the local length. All three convs are depthwise, without bias,
    each followed by gLN (the authors' ``InjectionMultiSum``).

    Shapes: ``x_local [batch, C, L]``, ``x_global [batch, C, L']`` → ``[batch, C, L]``.
    """

    def __init__(self, channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.local_conv = ConvNorm(channels, channels, kernel_size, groups=channels, bias=False)
        self.global_conv = ConvNorm(channels, channels, kernel_size, groups=channels, bias=False)
        self.gate_conv = ConvNorm(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x_local: torch.Tensor, x_global: torch.Tensor) -> torch.Tensor:
        length = x_local.shape[-1]
        gate = F.interpolate(torch.sigmoid(self.gate_conv(x_global)), size=length, mode="nearest")
        inject = F.interpolate(self.global_conv(x_global), size=length, mode="nearest")
        return self.local_conv(x_local) * gate + inject


class GlobalMLP(nn.Module):
    """The global-context MLP: 1×1 conv + gLN → depthwise conv (kernel 5) → ReLU → dropout →
    1×1 conv + gLN → dropout (the authors' ``Mlp``; the 1×1 convs have no bias).

    Shapes: ``[batch, C, L]`` → ``[batch, C, L]``.
    """

    def __init__(self, channels: int, kernel_size: int = 5, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = ConvNorm(channels, channels, 1, bias=False)
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2,
                                groups=channels)
        self.fc2 = ConvNorm(channels, channels, 1, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(F.relu(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class MultiScaleSelectiveAttention(nn.Module):
    """MSA block: project up, analyse at ``depth`` resolutions, fuse, project back, residual.

    1. ``in_proj``: 1×1 conv ``C → H`` + gLN + PReLU.
    2. Encoder: ``down[0]`` depthwise conv (kernel 5) + gLN at full resolution, then
       ``down[1..depth-1]`` the same with stride 2, each applied to the previous level.
    3. Global context: every level average-pooled to the coarsest length and summed, then
       :class:`GlobalMLP`.
    4. Selective attention: ``fuse[i]`` (1×1 :class:`SelectiveFusion`) injects the global
       context into level ``i``.
    5. Decoder: ``up[i]`` (kernel-5 :class:`SelectiveFusion`) merges coarser into finer levels,
       from level ``depth - 2`` up to level 0.
    6. ``out_proj``: 1×1 conv ``H → C``, plus the block input.

    Args:
        channels: C, input/output channels (TIGER's N, the authors' ``out_channels``).
        hidden: H, channels inside the block (the authors' ``in_channels``).
        depth: D, number of resolutions (the authors' ``upsampling_depth``).
        kernel_size: depthwise kernel of the encoder, the global MLP and the decoder.
        dropout: dropout inside the global MLP.

    The decoder follows the authors' code exactly, including that its first step fuses level
    ``depth - 2`` with level ``depth - 3`` (not the coarsest level): the coarsest level enters
    only through the global context, and ``fuse[depth - 1]`` — present in the authors' weights
    and counted in the parameters — never reaches the output, so it is not evaluated.

    Shapes: ``[batch, C, L]`` → ``[batch, C, L]``.
    """

    def __init__(self, channels: int, hidden: int, depth: int = 5, kernel_size: int = 5,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"MSA depth must be at least 3 (the authors' decoder), got {depth}")
        self.depth = depth
        self.in_proj = ConvNorm(channels, hidden, 1, act=True)
        self.down = nn.ModuleList(
            ConvNorm(hidden, hidden, kernel_size, stride=1 if i == 0 else 2, groups=hidden)
            for i in range(depth)
        )
        self.fuse = nn.ModuleList(SelectiveFusion(hidden, 1) for _ in range(depth))
        self.out_proj = nn.Conv1d(hidden, channels, 1)
        self.global_mlp = GlobalMLP(hidden, kernel_size, dropout)
        self.up = nn.ModuleList(SelectiveFusion(hidden, kernel_size) for _ in range(depth - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = [self.down[0](self.in_proj(x))]
        for down in self.down[1:]:
            levels.append(down(levels[-1]))
        coarsest = levels[-1].shape[-1]
        context = levels[0].new_zeros(levels[-1].shape)
        for level in levels:
            context = context + F.adaptive_avg_pool1d(level, coarsest)
        context = self.global_mlp(context)
        # fuse[depth - 1] is never used by the decoder below (see the class docstring)
        fused = [self.fuse[i](levels[i], context) for i in range(self.depth - 1)]
        top = self.depth - 2
        out = self.up[top](fused[top], fused[top - 1])
        for i in range(top - 1, -1, -1):
            out = self.up[i](fused[i], out)
        return self.out_proj(out) + x
