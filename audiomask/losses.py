"""Training objectives."""

from __future__ import annotations

import torch

from audiomask.metrics import pit


def pit_si_sdr_loss(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Negative SI-SDR (dB) under the best permutation of each example, averaged.

    Shapes: ``est``, ``ref`` ``[batch, n_src, T]`` → scalar.
    """
    return -pit(est, ref, metric="si_sdr", reduction="mean")[2]


def compressed_spectral_loss(est: torch.Tensor, ref: torch.Tensor, n_fft: int = 512, hop: int = 128,
                             power: float = 0.3, complex_weight: float = 0.3) -> torch.Tensor:
    """Power-law compressed spectral distance (Braun & Tashev, "A consolidated view of loss
    functions for supervised deep learning-based speech enhancement", 2021).

    With ``S^c = |S|^c · e^{i∠S}`` (``c = power``) of the STFTs (Hann ``n_fft``/``hop``)::

        L = w · mean |Ŝ^c - S^c|²  +  (1 - w) · mean (|Ŝ|^c - |S|^c)²,   w = complex_weight

    Unlike SI-SDR it is defined for silent references (it then asks for silence), which an
    echo canceller needs in far-end single talk. Shapes: ``[..., T]`` → scalar.
    """
    window = torch.hann_window(n_fft, device=est.device, dtype=est.dtype)
    spec = torch.stft(torch.cat([est, ref]).reshape(-1, est.shape[-1]), n_fft, hop, window=window,
                      return_complex=True)
    eps = 1e-8
    mag = (spec.real.square() + spec.imag.square() + eps).pow(power / 2)  # |S|^c, finite gradient at 0
    unit = spec / (spec.abs() + eps)
    est_mag, ref_mag = mag.chunk(2)
    est_c, ref_c = (mag * unit).chunk(2)
    return complex_weight * (est_c - ref_c).abs().square().mean() + \
        (1 - complex_weight) * (est_mag - ref_mag).square().mean()


def aec_loss(est: torch.Tensor, targets: torch.Tensor, echo_weight: float = 0.5) -> torch.Tensor:
    """Objective of a dual-mask echo canceller (:class:`~audiomask.models.aec.D3NetAEC`).

    ``est`` and ``targets`` ``[B, 3, T]``: near-end speech, echo, noise (estimates from
    ``model(mic, far, return_all=True)``; references from the AEC datasets). The near-end
    estimate is compared with the near-end speech, and the echo-free estimate (near-end +
    noise, i.e. what the echo mask keeps) with the echo-free microphone signal, weighted
    ``echo_weight`` — so the echo mask learns to remove the echo and only the echo, the noise
    mask the noise (:func:`compressed_spectral_loss` for both). Scalar.
    """
    if est.shape != targets.shape or est.dim() != 3 or est.shape[1] != 3:
        raise ValueError(f"aec_loss expects estimates and targets [batch, 3, T] (near-end, echo, noise), "
                         f"got {tuple(est.shape)} and {tuple(targets.shape)}")
    near = compressed_spectral_loss(est[:, 0], targets[:, 0])
    echo_free = compressed_spectral_loss(est[:, 0] + est[:, 2], targets[:, 0] + targets[:, 2])
    return near + echo_weight * echo_free
