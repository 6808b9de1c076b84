"""TIGER masker: band split → iterated frequency-frame interleaved (FFI) block → per-band
complex masks.

M. Xu, K. Li, G. Chen and X. Hu, "TIGER: Time-frequency Interleaved Gain Extraction and
Reconstruction for Efficient Speech Separation", ICLR 2025. Layout and numerics follow the
authors' look2hear ``models/tiger.py`` (``TIGER``, ``Recurrent``); see
``audiomask.interop.tiger`` for the correspondence of module names.

Input: the complex STFT of the mixture ``[batch, F, T]`` (``F = n_fft // 2 + 1`` bins,
``T`` frames). Output: one complex mask per source ``[batch, n_src, F, T]``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from audiomask.nn.multiscale import MultiScaleSelectiveAttention
from audiomask.nn.norms import GlobalLayerNorm
from audiomask.nn.tf_attention import ChannelLayerNorm2d, FullAxisAttention

#: Sub-band plan of the authors: (band width in Hz, number of bands) from 0 Hz upwards —
#: 25 Hz bands to 1 kHz, 100 Hz to 2 kHz, 250 Hz to 4 kHz, 500 Hz to 8 kHz; the bins left
#: at the top form one last band.
BAND_PLAN_HZ: tuple[tuple[float, int], ...] = ((25.0, 40), (100.0, 10), (250.0, 8), (500.0, 8))

def band_widths(sample_rate: int, n_fft: int) -> list[int]:
    """Widths (in STFT bins) of TIGER's sub-bands, low to high frequency.

    A band of ``w`` Hz spans ``floor(w / (sample_rate / 2) · (n_fft // 2 + 1))`` bins, as in the
    authors' code. Bands are laid out following :data:`BAND_PLAN_HZ` until the next one would
    reach the Nyquist bin; the remaining bins form the last band. Where the whole plan fits
    (16 kHz and above) this is exactly the authors' layout:

    * 16 kHz, n_fft 640 (321 bins): 40 × 1, 10 × 4, 8 × 10, 8 × 20 bins and 1 last bin →
      **67 bands**.
    * 8 kHz, n_fft 320 (161 bins; the same 40 ms / 10 ms framing, 25 Hz per bin): 40 × 1
      (0–1 kHz), 10 × 4 (1–2 kHz), 8 × 10 (2–4 kHz) and 1 last bin (Nyquist) → **59 bands**;
      the 500 Hz bands lie above 4 kHz and are dropped. 8 kHz with n_fft 640 (12.5 Hz per
      bin) gives the same 59 bands with twice the widths (2, 8, 20; last 1).

    Raises ``ValueError`` when a 25 Hz band would be narrower than one bin
    (``n_fft // 2 + 1 < sample_rate / 50``).
    """
    n_bins = n_fft // 2 + 1
    widths: list[int] = []
    used = 0
    for hz, count in BAND_PLAN_HZ:
        width = int(math.floor(hz / (sample_rate / 2.0) * n_bins))
        if width < 1:
            raise ValueError(
                f"TIGER: n_fft={n_fft} at {sample_rate} Hz makes {hz:g} Hz sub-bands narrower than "
                f"one bin; use n_fft >= {2 * math.ceil(sample_rate / 50) - 2}"
            )
        for _ in range(count):
            if used + width >= n_bins:
                return widths + [n_bins - used]
            widths.append(width)
            used += width
    return widths + [n_bins - used]


class BandProjection(nn.Module):
    """One sub-band: GroupNorm(1, 2·w, eps = float32 machine epsilon) over its real and
    imaginary parts, then a 1×1 conv ``2·w → N``. Shapes: ``[batch, 2·w, T]`` → ``[batch, N, T]``."""

    def __init__(self, width: int, feature_dim: int) -> None:
        super().__init__()
        self.norm = GlobalLayerNorm(2 * width, eps=torch.finfo(torch.float32).eps)
        self.proj = nn.Conv1d(2 * width, feature_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class BandSplit(nn.Module):
    """Complex STFT ``[batch, F, T]`` → sub-band features ``[batch, N, K, T]``.

    Band ``k`` (bins ``start_k … start_k + w_k``) enters its :class:`BandProjection` as the
    ``2·w_k`` channels (real parts, then imaginary parts).
    """

    def __init__(self, widths: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.widths = list(widths)
        self.starts = [sum(self.widths[:k]) for k in range(len(self.widths))]
        self.bands = nn.ModuleList(BandProjection(w, feature_dim) for w in self.widths)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.from_pairs(torch.view_as_real(spec).permute(0, 3, 1, 2))

    def from_pairs(self, ri: torch.Tensor) -> torch.Tensor:
        """The same on the spectrum as real/imaginary pairs ``[batch, 2, F, T]`` (what an
        exported graph, which has no complex type, holds)."""
        batch, _, _, frames = ri.shape
        feats = [band(ri[:, :, s : s + w].reshape(batch, 2 * w, frames))
                 for band, s, w in zip(self.bands, self.starts, self.widths)]
        return torch.stack(feats, 2)


class FFIBlock(nn.Module):
    """Frequency-frame interleaved block on ``x [batch, N, K, T]``.

    Frequency path: MSA along the sub-band axis (frames as batch), full-frequency attention
    (sub-bands as tokens, ``E × T`` features), channel LayerNorm, residual. Then the frame path:
    MSA along frames (sub-bands as batch), full-frame attention (frames as tokens, ``E × K``
    features), channel LayerNorm, residual.

    Shapes: ``[batch, N, K, T]`` → same.
    """

    def __init__(self, feature_dim: int, hidden_dim: int, depth: int, n_heads: int, qk_dim: int,
                 dropout: float) -> None:
        super().__init__()
        self.freq_msa = MultiScaleSelectiveAttention(feature_dim, hidden_dim, depth, dropout=dropout)
        self.freq_attn = FullAxisAttention(feature_dim, n_heads, qk_dim)
        self.freq_norm = ChannelLayerNorm2d(feature_dim)
        self.frame_msa = MultiScaleSelectiveAttention(feature_dim, hidden_dim, depth, dropout=dropout)
        self.frame_attn = FullAxisAttention(feature_dim, n_heads, qk_dim)
        self.frame_norm = ChannelLayerNorm2d(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, bands, frames = x.shape
        y = self.freq_msa(x.permute(0, 3, 1, 2).reshape(batch * frames, n, bands))
        y = y.view(batch, frames, n, bands).permute(0, 2, 3, 1)  # [B, N, K, T]
        x = x + self.freq_norm(self.freq_attn(y))
        y = self.frame_msa(x.permute(0, 2, 1, 3).reshape(batch * bands, n, frames))
        y = y.view(batch, bands, n, frames).permute(0, 2, 3, 1)  # [B, N, T, K]
        return x + self.frame_norm(self.frame_attn(y)).transpose(2, 3)


class IterativeFFI(nn.Module):
    """The separator: one :class:`FFIBlock` applied ``n_iter`` times with the same weights.

    Iteration 1 processes the band features ``x``; iteration ``i > 1`` processes
    ``PReLU(dwconv1x1(x + previous output))`` (``fuse_conv`` is a depthwise 1×1 Conv2d).

    Shapes: ``[batch, N, K, T]`` → same.
    """

    def __init__(self, feature_dim: int, hidden_dim: int, depth: int, n_iter: int, n_heads: int,
                 qk_dim: int, dropout: float) -> None:
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"TIGER needs at least one FFI iteration, got {n_iter}")
        self.n_iter = n_iter
        self.block = FFIBlock(feature_dim, hidden_dim, depth, n_heads, qk_dim, dropout)
        self.fuse_conv = nn.Conv2d(feature_dim, feature_dim, 1, groups=feature_dim)
        self.fuse_act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        for _ in range(1, self.n_iter):
            out = self.block(self.fuse_act(self.fuse_conv(x + out)))
        return out


class BandMaskHead(nn.Module):
    """One sub-band's mask head: PReLU → grouped 1×1 conv ``N → 2·2·n_src·w`` (``n_src``
    groups). Shapes: ``[batch, N, T]`` → ``[batch, 2, 2, n_src, w, T]`` — (value, gate) ×
    (real, imaginary) × source × bin."""

    def __init__(self, width: int, feature_dim: int, n_src: int) -> None:
        super().__init__()
        self.width, self.n_src = width, n_src
        self.act = nn.PReLU()
        self.conv = nn.Conv1d(feature_dim, 4 * n_src * width, 1, groups=n_src)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.act(x))
        return out.view(x.shape[0], 2, 2, self.n_src, self.width, x.shape[-1])


class TIGERMasker(nn.Module):
    """Band split → :class:`IterativeFFI` → per-band complex masks.

    Each band's head gives ``a · σ(b)`` for the real and the imaginary part of every source's
    mask; the masks are then constrained across sources as in the authors' code: the real
    parts are shifted to sum to 1 and the imaginary parts to sum to 0 (``m_c ← m_c − (Σ_c m_c −
    1)/C``), so the masked estimates add up to the mixture STFT.

    Args:
        widths: sub-band widths in bins (:func:`band_widths`); K = ``len(widths)``.
        n_src: C, number of sources.
        feature_dim: N, channels per sub-band (the authors' ``out_channels``).
        hidden_dim: channels inside the MSA blocks (the authors' ``in_channels``).
        depth: MSA resolutions (the authors' ``upsampling_depth``).
        n_iter: FFI iterations sharing one set of weights (the authors' ``num_blocks``).
        n_heads, qk_dim: attention heads and query/key channels per head.
        dropout: dropout in the MSA global MLP.

    Shapes: complex ``[batch, F, T]`` → complex ``[batch, n_src, F, T]``.
    """

    causal = False
    receptive_field = None  # full-frame attention: every output depends on the whole input

    def __init__(self, widths: Sequence[int], n_src: int = 2, feature_dim: int = 128,
                 hidden_dim: int = 256, depth: int = 5, n_iter: int = 8, n_heads: int = 4,
                 qk_dim: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if feature_dim % n_src:
            raise ValueError(f"TIGER: feature_dim ({feature_dim}) must be divisible by n_src "
                             f"({n_src}) for the grouped mask convolutions")
        self.n_src = n_src
        self.min_frames = 2 ** (depth - 1)  # every level of the multi-scale blocks keeps > 1 frame
        self.band_widths = list(widths)
        self.band_split = BandSplit(widths, feature_dim)
        self.separator = IterativeFFI(feature_dim, hidden_dim, depth, n_iter, n_heads, qk_dim, dropout)
        self.mask_heads = nn.ModuleList(BandMaskHead(w, feature_dim, n_src) for w in widths)

    @property
    def n_bands(self) -> int:
        return len(self.band_widths)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.complex(*self.masks_from_pairs(torch.view_as_real(spec).permute(0, 3, 1, 2)))

    def masks_from_pairs(self, ri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` on the spectrum as real/imaginary pairs ``[B, 2, F, T]``: the masks'
        real and imaginary parts, each ``[B, C, F, T]`` (for graphs without a complex type)."""
        feats = self.separator(self.band_split.from_pairs(ri))  # [B, N, K, T]
        raw = torch.cat([head(feats[:, :, k]) for k, head in enumerate(self.mask_heads)], dim=4)
        masks = raw[:, 0] * torch.sigmoid(raw[:, 1])  # [B, 2, C, F, T]
        return constrain_mask_pairs(masks[:, 0], masks[:, 1])


def constrain_mask_pairs(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks ``[batch, C, F, T]`` (real and imaginary parts) whose real parts sum to 1 and
    imaginary parts to 0 over the sources (``dim=1``), by subtracting the mean excess from each
    source. Computed in float32 at least (mixed precision has no bfloat16 complex type)."""
    n_src = real.shape[1]
    dtype = torch.promote_types(real.dtype, torch.float32)
    real, imag = real.to(dtype), imag.to(dtype)
    return real - (real.sum(1, keepdim=True) - 1) / n_src, imag - imag.sum(1, keepdim=True) / n_src


def constrain_masks(real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
    """:func:`constrain_mask_pairs` as complex masks ``[batch, C, F, T]``."""
    return torch.complex(*constrain_mask_pairs(real, imag))
