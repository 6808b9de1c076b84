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

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from audiomask import native

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

    def init_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """Streaming state ``[B, 3]`` (float64): Σx, Σx² and the number of values summed
        (frames × channels)."""
        return torch.zeros(batch, 3, dtype=torch.float64, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, self.init_state(x.shape[0], x.device))[0]

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise the next frames ``x [B, C, F]`` given the sums of all earlier frames."""
        return cumulative_norm(x, state, self.weight, self.bias, self.eps, 1)

    def step_channels_last(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`step` for frames-major input ``x [B, F, C]``."""
        return cumulative_norm(x, state, self.weight, self.bias, self.eps, 2)


def cumulative_norm(x: Tensor, state: Tensor, weight: Tensor, bias: Tensor, eps: float,
                    channel_dim: int) -> Tuple[Tensor, Tensor]:
    """cLN of the next frames of ``x`` given the running sums ``state [B, 3]`` (float64) of all
    earlier frames: ``(y, new state)``.

    ``channel_dim``: 1 for ``[B, C, F]`` (training, offline), 2 for frames-major ``[B, F, C]``
    (streaming). Written with few whole-tensor ops, as streaming calls it on a handful of
    frames.
    """
    frame_sum = x.sum(channel_dim)  # [B, F]
    # running (Σx, Σx², values) over channels and frames up to each frame, float64: [B, 3, F]
    running = torch.stack((frame_sum, torch.linalg.vecdot(x, x, dim=channel_dim),
                           torch.full_like(frame_sum, float(x.shape[channel_dim]))), 1).double()
    running = running.cumsum_(-1).add_(state.unsqueeze(-1))
    moments = running[:, :2] / running[:, 2:]  # E[x], E[x²]: [B, 2, F]
    mean, power = moments.unbind(1)
    inv_std = torch.addcmul(power, mean, mean, value=-1.0).clamp_min_(0.0).add_(eps).rsqrt_()
    if running.shape[-1] > 0:
        state = running[:, :, -1]
    scale, center = torch.stack((inv_std, mean)).to(x.dtype).unsqueeze(channel_dim + 1)
    y = torch.sub(x, center).mul_(scale)  # (x - mean) / std
    if channel_dim == 1:
        return torch.addcmul(bias.unsqueeze(-1), y, weight.unsqueeze(-1)), state
    return torch.addcmul(bias, y, weight), state


def causal_norm_channels_last(kind: str, x: Tensor, state: Tensor, weight: Tensor, bias: Tensor,
                              eps: float, slope: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """The streaming step of causal norm ``kind`` (``"cLN"`` or ``"chanLN"``) on frames-major
    ``x [B, F, C]`` — on ``prelu(x, slope)`` when a (one-element) PReLU ``slope`` is given.
    A cumulative norm runs the one-pass C kernel of :mod:`audiomask.native` where it is built
    (updating ``state`` in place), else :func:`cumulative_norm`."""
    if kind == "cLN" and native.can_cln_step(x, state) and (slope is None or slope.numel() == 1):
        return native.cln_step(x, state, weight, bias, eps, None if slope is None else float(slope)), state
    if slope is not None:
        x = torch.nn.functional.prelu(x, slope)
    if kind == "cLN":
        return cumulative_norm(x, state, weight, bias, eps, 2)
    return torch.nn.functional.layer_norm(x, [x.shape[-1]], weight, bias, eps), state


class ChannelLayerNorm(_ChannelAffineNorm):
    """chanLN: each frame normalised over its channels only. Shape ``[B, C, *]`` → same."""

    causal = True

    def init_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """No memory: an empty state, so every causal norm has the same streaming interface."""
        return torch.zeros(batch, 0, device=device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(x), state

    def step_channels_last(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`step` for frames-major input ``x [B, F, C]``."""
        return causal_norm_channels_last("chanLN", x, state, self.weight, self.bias, self.eps)

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
