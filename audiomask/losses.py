"""Training objectives."""

from __future__ import annotations

import torch

from audiomask.metrics import pit


def pit_si_sdr_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Negative SI-SDR (dB) under the best permutation of each example, averaged.

    Shapes: ``est``, ``ref`` ``[batch, n_src, T]`` → scalar.
    """
    return -pit(est, ref, metric="si_sdr", reduction="mean")[2]
