"""The recurrent module of MossFormer2: a gated, dilated, densely connected FSMN.

Zhao et al., "MossFormer2: Combining Transformer and RNN-Free Recurrent Network for Enhanced
Time-Domain Monaural Speech Separation", ICASSP 2024, Fig. 2; layout and numerics follow the
authors' code (ClearerVoice ``mossformer2_block.py`` ``Gated_FSMN_Block_Dilated`` and
``fsmn.py`` ``UniDeepFsmn_dilated`` / ``DilatedDenseNet``).

All modules work on ``[B, T, C]`` sequences.

* :class:`DilatedDenseFSMN` — ``x + DenseNet(Wp · relu(Wl x + b))``: a memory block of
  ``depth`` depthwise convs (kernel ``2·lorder − 1``, dilation ``2^i``), each followed by
  InstanceNorm and PReLU, layer ``i`` reading the concatenation of all earlier outputs.
* :class:`GatedFSMN` — gated convolutional unit: ``FFConvM_v(x) ⊙ FSMN(FFConvM_u(x)) + x``.
* :class:`GatedFSMNBlock` — bottleneck ``D → I`` + PReLU, LayerNorm, :class:`GatedFSMN`,
  LayerNorm, projection ``I → D``, residual.

Causality: the memory convs are symmetric in the authors' model (each sees ``(lorder-1)·d``
frames ahead) and InstanceNorm uses statistics of the whole sequence. ``causal=True`` pads
the convs on the left only and makes the InstanceNorm cumulative (:class:`InstanceNorm`, same
parameters), so that frame ``t`` only depends on frames ``0 … t``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomask import kernels
from audiomask.nn.ffconv import FFConvM


class InstanceNorm(nn.Module):
    """Per-channel normalisation over time with a per-channel affine (``weight``, ``bias``
    ``[C]``, eps 1e-5, biased variance) — the authors' ``InstanceNorm2d(C, affine=True)``.

    ``causal=False``: statistics of the whole sequence (``F.instance_norm``; a one-frame input
    normalises to 0 instead of failing). ``causal=True``: frame ``t`` uses the statistics of
    frames ``0 … t`` (running sums in float64) — same parameters, only the past.

    Shapes: ``[B, C, T]`` → same.
    """

    def __init__(self, channels: int, eps: float = 1e-5, causal: bool = False) -> None:
        super().__init__()
        self.eps, self.causal = eps, causal
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.causal:
            if x.shape[-1] > 1:
                return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
            return torch.zeros_like(x) * self.weight[:, None] + self.bias[:, None]
        count = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64)
        xd = x.double()
        mean = xd.cumsum(-1) / count
        var = (xd.pow(2).cumsum(-1) / count - mean.pow(2)).clamp_min(0.0)
        y = ((xd - mean) * (var + self.eps).rsqrt()).to(x.dtype)
        return y * self.weight[:, None] + self.bias[:, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, causal={self.causal}"


class DilatedDenseFSMN(nn.Module):
    """The authors' ``UniDeepFsmn_dilated`` with its ``DilatedDenseNet``.

    Args:
        channels: C, width of input, output and memory.
        hidden: width of the ReLU layer before the memory (the authors use ``C``).
        lorder: memory order; kernel ``2·lorder − 1`` (the authors' 20 → 39).
        depth: dense layers; layer ``i`` has dilation ``2^i`` and reads ``(i+1)·C`` channels
            grouped ``C`` ways (so each output channel mixes ``i+1`` consecutive channels of
            the concatenation ``[out_{i-1}, …, out_0, p]``, exactly as the authors' Conv2d).
        causal: left padding and a cumulative :class:`InstanceNorm`.

    Shapes: ``[B, T, C]`` → ``[B, T, C]``.
    """

    def __init__(self, channels: int, hidden: int | None = None, lorder: int = 20, depth: int = 2,
                 causal: bool = False) -> None:
        super().__init__()
        hidden = hidden or channels
        self.lorder, self.depth, self.causal = lorder, depth, causal
        self.linear = nn.Linear(channels, hidden)
        self.project = nn.Linear(hidden, channels, bias=False)
        kernel = 2 * lorder - 1
        self.convs = nn.ModuleList(
            nn.Conv1d(channels * (i + 1), channels, kernel, dilation=2**i, groups=channels, bias=False)
            for i in range(depth))
        self.norms = nn.ModuleList(InstanceNorm(channels, causal=causal) for _ in range(depth))
        self.acts = nn.ModuleList(nn.PReLU(channels) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.project(F.relu(self.linear(x))).transpose(1, 2)  # [B, C, T]
        out = skip
        for i, (conv, norm, act) in enumerate(zip(self.convs, self.norms, self.acts)):
            reach = (self.lorder - 1) * 2**i  # frames seen on each side
            pads = (2 * reach, 0) if self.causal else (reach, reach)
            if kernels.use_triton(skip):  # CUDA: padding by masked loads, no padded copy
                out = act(norm(kernels.depthwise_conv1d(skip, conv.weight, None, conv.dilation[0], pads)))
            else:
                out = act(norm(conv(F.pad(skip, pads))))
            skip = torch.cat((out, skip), dim=1)
        return x + out.transpose(1, 2)


class GatedFSMN(nn.Module):
    """Gated convolutional unit around the FSMN: ``v ⊙ FSMN(u) + x`` with
    ``u = FFConvM_u(x)``, ``v = FFConvM_v(x)`` (LayerNorm pre-norms). ``[B, T, C]`` → same."""

    def __init__(self, channels: int, lorder: int = 20, depth: int = 2, conv_kernel_size: int = 17,
                 dropout: float = 0.1, causal: bool = False) -> None:
        super().__init__()
        self.to_u = FFConvM(channels, channels, nn.LayerNorm(channels), conv_kernel_size, dropout, causal)
        self.to_v = FFConvM(channels, channels, nn.LayerNorm(channels), conv_kernel_size, dropout, causal)
        self.fsmn = DilatedDenseFSMN(channels, channels, lorder, depth, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_v(x) * self.fsmn(self.to_u(x)) + x


class GatedFSMNBlock(nn.Module):
    """The recurrent module of one MossFormer2 layer (``Gated_FSMN_Block_Dilated``).

    ``x + W_o · LN(GatedFSMN(LN(PReLU(W_i x + b_i)))) + b_o``.

    Args:
        dim: D, model width.
        channels: I, bottleneck width (the authors' 256).
        lorder, depth: of the :class:`DilatedDenseFSMN` (20, 2).
        conv_kernel_size, dropout: of the FFConvM branches (17, 0.1).
        causal: see :class:`DilatedDenseFSMN`; the LayerNorms are per frame already.

    Shapes: ``[B, T, D]`` → ``[B, T, D]``.
    """

    def __init__(self, dim: int, channels: int = 256, lorder: int = 20, depth: int = 2,
                 conv_kernel_size: int = 17, dropout: float = 0.1, causal: bool = False) -> None:
        super().__init__()
        self.in_conv = nn.Linear(dim, channels)
        self.in_act = nn.PReLU()
        self.norm1 = nn.LayerNorm(channels)
        self.gated = GatedFSMN(channels, lorder, depth, conv_kernel_size, dropout, causal)
        self.norm2 = nn.LayerNorm(channels)
        self.out_conv = nn.Linear(channels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.in_act(self.in_conv(x)))
        return x + self.out_conv(self.norm2(self.gated(h)))
