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
    The running sums are accumulated in float64, so long signals and block-wise streaming
    (:meth:`step`, whose state is those sums) agree to float32 precision.
    """

    causal = True

    def initial_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """Streaming state ``[B, 3]`` (float64): Σx, Σx² and the number of frames seen."""
        return torch.zeros(batch, 3, dtype=torch.float64, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, self.initial_state(x.shape[0], x.device))[0]

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise the next frames ``x [B, C, F]`` given the sums of all earlier frames."""
        channels, frames = x.shape[1], x.shape[-1]
        # running Σx and Σx² over channels and frames so far: [B, 2, F], float64
        sums = torch.stack((x.sum(1), x.pow(2).sum(1)), 1).double().cumsum_(-1).add_(state[:, :2, None])
        seen = state[:, 2:3] + torch.arange(1, frames + 1, dtype=torch.float64, device=x.device)
        count = seen * channels
        mean = sums[:, 0] / count
        inv_std = (sums[:, 1] / count - mean * mean).clamp_min_(0.0).add_(self.eps).rsqrt_()
        # (x - mean) * inv_std as one fused multiply-add per element
        y = torch.addcmul((-mean * inv_std).to(x.dtype).unsqueeze(1), x, inv_std.to(x.dtype).unsqueeze(1))
        if frames:
            state = torch.cat((sums[:, :, -1], seen[:, -1:]), dim=1)
        return self._affine(y), state


class ChannelLayerNorm(_ChannelAffineNorm):
    """chanLN: each frame normalised over its channels only. Shape ``[B, C, *]`` → same."""

    causal = True

    def initial_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """No memory: an empty state, so every causal norm has the same streaming interface."""
        return torch.zeros(batch, 0, device=device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(x), state

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
