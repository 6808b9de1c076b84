"""What every metric shares: energy ratios in dB with the silence convention of
:mod:`audiomask.metrics`, the time-axis check, the result dtype."""

from __future__ import annotations


import torch
from torch import Tensor


def ratio_db(target_energy: Tensor, noise_energy: Tensor, eps: float) -> Tensor:
    """``10 log10((target + eps) / (noise + eps))``; finite for non-negative inputs."""
    return 10.0 * (torch.log10(target_energy + eps) - torch.log10(noise_energy + eps))


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0`` and ``0`` elsewhere, with finite gradients."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def check_time(est: Tensor, ref: Tensor) -> None:
    if est.shape[-1] != ref.shape[-1]:
        raise ValueError(
            f"est and ref must have the same number of samples on the last axis, "
            f"got {est.shape[-1]} and {ref.shape[-1]}"
        )


def result_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.result_type(*tensors)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return dtype
