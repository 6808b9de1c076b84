"""Pseudo-complex layers: complex-valued feature maps carried as real tensors.

A complex map ``z = x + iy`` with ``C`` channels over ``F`` frequency bins and ``T`` frames is
held as the real tensor ``[B, 2, C, F, T]`` (index 0 of the second axis: real part, 1:
imaginary part), so that ``view(B, 2C, F, T)`` puts all real channels before all imaginary
ones — the layout a single real convolution with a block weight needs (see
:class:`ComplexConv2d`). Concatenating complex maps is ``torch.cat(..., dim=2)``.

"Pseudo-complex" (as in the complex D3Net of Watcharasupat et al., ICASSP 2022): the
convolutions are true complex products done with pairs of real weights; norms and
activations act on the real and imaginary parts separately.

Every time axis here is causal: a layer that looks back ``ctx`` frames takes them from a
``history`` tensor (zeros offline, the previous block's last frames when streaming), so an
offline pass and a block-by-block stream compute the same numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("batch", "frame")
MASK_ACTIVATIONS = ("tanh", "linear")


def to_pseudo(z: Tensor) -> Tensor:
    """Complex ``[B, C, F, T]`` → real ``[B, 2, C, F, T]`` (real part, imaginary part)."""
    return torch.stack((z.real, z.imag), dim=1)


def to_complex(x: Tensor) -> Tensor:
    """Real ``[B, 2, C, F, T]`` → complex ``[B, C, F, T]``."""
    return torch.complex(x[:, 0], x[:, 1])


def compress(z: Tensor, power: float, eps: float = 1e-8) -> Tensor:
    """Magnitude compression keeping the phase: ``z · |z|^(power-1)`` (``power = 1``: ``z``).

    Spectra of speech span a large dynamic range; a network sees ``|z|^0.3`` far better than
    ``|z|`` (compressed magnitudes, as in most STFT-domain enhancement networks). Per bin and
    frame, so causal.
    """
    if power == 1.0:
        return z
    return z * (z.real.square() + z.imag.square() + eps).pow((power - 1.0) / 2)


def compress_pairs(x: Tensor, power: float, eps: float = 1e-8) -> Tensor:
    """:func:`compress` of a pseudo-complex ``x [B, 2, …]`` (the same numbers, for graphs
    without a complex type)."""
    if power == 1.0:
        return x
    return x * (x[:, 0].square() + x[:, 1].square() + eps).pow((power - 1.0) / 2).unsqueeze(1)


def bounded_mask(x: Tensor, kind: str = "tanh") -> Tensor:
    """Complex mask from a pseudo-complex map ``x [B, 2, C, F, T]`` → complex ``[B, C, F, T]``.

    * ``"tanh"`` (DCCRN's bounded "E" mask): magnitude ``tanh(|x|)`` ≤ 1, phase of ``x``;
      written as ``x · tanh(r)/r``, which is smooth at ``r = 0``.
    * ``"linear"``: ``x`` itself (unbounded).
    """
    return to_complex(bounded_mask_pairs(x, kind))


def bounded_mask_pairs(x: Tensor, kind: str = "tanh") -> Tensor:
    """:func:`bounded_mask` kept pseudo-complex: ``[B, 2, C, F, T]`` → ``[B, 2, C, F, T]``."""
    if kind == "linear":
        return x
    if kind != "tanh":
        raise ValueError(f"unknown mask activation {kind!r}; choose one of {MASK_ACTIVATIONS}")
    r = (x[:, 0].square() + x[:, 1].square() + 1e-12).sqrt()
    return x * (torch.tanh(r) / r).unsqueeze(1)


class ComplexConv2d(nn.Module):
    """Complex 2-D convolution over ``(frequency, time)``, causal in time.

    ``(W_r + iW_i) ⊛ (x + iy) = (W_r⊛x − W_i⊛y) + i(W_r⊛y + W_i⊛x)``, computed as one real
    convolution of ``[x; y]`` (``2·C_in`` channels) with the block weight
    ``[[W_r, −W_i], [W_i, W_r]]``. Parameters: ``2·C_in·C_out·k_f·k_t`` (+ ``2·C_out`` bias).

    Args:
        in_chan: C_in complex channels. out_chan: C_out.
        kernel: ``(k_f, k_t)``; ``k_f`` odd (frequency is padded symmetrically).
        dilation: d, in both axes.
        bias: a complex bias per output channel.

    Shapes: ``x [B, 2, C_in, F, T]`` and ``history [B, 2, C_in, F, (k_t-1)·d]`` (``None``:
    zeros, the offline left padding) → ``(y [B, 2, C_out, F, T], new history)``.
    """

    def __init__(self, in_chan: int, out_chan: int, kernel: tuple[int, int] = (3, 3), dilation: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        k_f, k_t = kernel
        if k_f % 2 == 0:
            raise ValueError(f"the frequency kernel size must be odd (symmetric padding), got {k_f}")
        self.in_chan, self.out_chan, self.kernel, self.dilation = in_chan, out_chan, (k_f, k_t), dilation
        self.real_weight = nn.Parameter(torch.empty(out_chan, in_chan, k_f, k_t))
        self.imag_weight = nn.Parameter(torch.empty(out_chan, in_chan, k_f, k_t))
        self.bias = nn.Parameter(torch.zeros(2, out_chan)) if bias else None
        # Complex He-style init: each of W_r, W_i gets half the variance of a real conv's.
        bound = math.sqrt(3.0 / (in_chan * k_f * k_t)) / math.sqrt(2.0)
        nn.init.uniform_(self.real_weight, -bound, bound)
        nn.init.uniform_(self.imag_weight, -bound, bound)

    @property
    def context(self) -> int:
        """Frames of left context: ``(k_t - 1)·d``."""
        return (self.kernel[1] - 1) * self.dilation

    def block_weight(self) -> Tensor:
        """The real weight ``[2·C_out, 2·C_in, k_f, k_t]`` of the equivalent real convolution."""
        wr, wi = self.real_weight, self.imag_weight
        return torch.cat([torch.cat([wr, -wi], dim=1), torch.cat([wi, wr], dim=1)], dim=0)

    def forward(self, x: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch, _, chan, n_freq, n_frames = x.shape
        if chan != self.in_chan:
            raise ValueError(f"ComplexConv2d expects {self.in_chan} complex channels, got {chan}")
        ctx = self.context
        if history is None:
            history = x.new_zeros(batch, 2, chan, n_freq, ctx)
        full = torch.cat([history, x], dim=-1) if ctx else x
        pad_f = (self.kernel[0] - 1) * self.dilation // 2
        bias = self.bias.reshape(-1) if self.bias is not None else None
        y = F.conv2d(full.reshape(batch, 2 * chan, n_freq, -1), self.block_weight(), bias,
                     padding=(pad_f, 0), dilation=self.dilation)
        return y.view(batch, 2, self.out_chan, n_freq, n_frames), full[..., full.shape[-1] - ctx :]

    def extra_repr(self) -> str:
        return (f"{self.in_chan}, {self.out_chan}, kernel={self.kernel}, dilation={self.dilation}, "
                f"bias={self.bias is not None}")


class ComplexNorm(nn.Module):
    """Pseudo-complex normalisation of ``[B, 2, C, F, T]``: real and imaginary parts are
    normalised as separate channels (``2C`` of them), each with its own gain and bias.

    * ``"batch"`` (D3Net's choice): ``BatchNorm2d(2C)``. It uses batch statistics only in
      training; at inference it is a fixed per-channel affine map, which looks at no other
      frame — causal, and exactly streamable. Streaming therefore needs ``model.eval()``.
    * ``"frame"``: each frame normalised over its ``2 × C × F`` values (mean and variance of
      that frame only), then a per-channel affine — causal in training too, no running
      statistics.
    """

    def __init__(self, chan: int, kind: str = "batch", eps: float = 1e-5) -> None:
        super().__init__()
        if kind not in NORMS:
            raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")
        self.chan, self.kind, self.eps = chan, kind, eps
        if kind == "batch":
            self.bn = nn.BatchNorm2d(2 * chan, eps=eps)
        else:
            self.weight = nn.Parameter(torch.ones(2, chan))
            self.bias = nn.Parameter(torch.zeros(2, chan))

    def forward(self, x: Tensor) -> Tensor:
        batch, _, chan, n_freq, n_frames = x.shape
        if self.kind == "batch":
            return self.bn(x.reshape(batch, 2 * chan, n_freq, n_frames)).view_as(x)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = x.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight[None, :, :, None, None] + self.bias[None, :, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.chan}, kind={self.kind!r}"
