"""Normalisation layers for ``[batch, channels, time]`` feature maps.

The three layer norms of Conv-TasNet (Luo & Mesgarani, 2019, Sec. III-B):

* gLN  — *global* layer norm: statistics over channels **and** all frames. Non-causal.
* cLN  — *cumulative* layer norm: at frame ``k`` statistics over channels and frames ``0..k``.
  Causal; this is what the authors' code calls ``cLN``.
* chanLN — *channel-wise* layer norm: statistics over channels of each frame only. Causal.
  (Asteroid calls this one ``cLN``; the names collide, so audiomask spells it out.)

All three have a per-channel gain ``weight`` and ``bias`` of shape ``[channels]`` and use
``eps = 1e-8`` inside the square root, as the reference implementations do.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8


class _ChannelAffineNorm(nn.Module):
    """Base: learnable per-channel gain/bias applied after normalisation."""

    def __init__(self, channels: int, eps: float = EPS) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, self.channels) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


class GlobalLayerNorm(nn.GroupNorm):
    """gLN: ``(x - E[x]) / sqrt(Var[x] + eps) * gamma + beta`` over channels and time.

    Identical to ``nn.GroupNorm(1, channels, eps=1e-8)``, which is what the authors' code
    uses, so it is one. Shape: ``[B, C, *]`` → same.
    """

    def __init__(self, channels: int, eps: float = EPS) -> None:
        super().__init__(1, channels, eps=eps)

    causal = False


class CumulativeLayerNorm(_ChannelAffineNorm):
    """cLN: frame ``k`` normalised with the mean/variance of all channels over frames ``0..k``.

    Shape: ``[B, C, T]`` → same. Causal: output frame ``k`` depends on input frames ``<= k``.
    """

    causal = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, frames = x.shape[1], x.shape[-1]
        cum_sum = torch.cumsum(x.sum(1, keepdim=True), dim=-1)
        cum_pow_sum = torch.cumsum(x.pow(2).sum(1, keepdim=True), dim=-1)
        count = torch.arange(1, frames + 1, dtype=x.dtype, device=x.device) * channels
        cum_mean = cum_sum / count
        cum_var = (cum_pow_sum / count - cum_mean.pow(2)).clamp_min(0.0)
        return self._affine((x - cum_mean) / (cum_var + self.eps).sqrt())


class ChannelLayerNorm(_ChannelAffineNorm):
    """chanLN: each frame normalised over its channels only. Shape ``[B, C, *]`` → same."""

    causal = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        return self._affine((x - mean) / (var + self.eps).sqrt())


NORMS: dict[str, type[nn.Module]] = {
    "gLN": GlobalLayerNorm,
    "cLN": CumulativeLayerNorm,
    "chanLN": ChannelLayerNorm,
}


def make_norm(name: str, channels: int) -> nn.Module:
    """Build the norm called ``name`` (one of :data:`NORMS`) for ``channels`` channels."""
    try:
        return NORMS[name](channels)
    except KeyError:
        raise ValueError(f"unknown norm {name!r}; choose one of {sorted(NORMS)}") from None


def is_causal_norm(name: str) -> bool:
    """Whether the norm called ``name`` only looks at past frames."""
    return bool(getattr(NORMS[name], "causal", False)) if name in NORMS else False
