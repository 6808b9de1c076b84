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


def thresholded_snr(est: torch.Tensor, ref: torch.Tensor, max_db: float = 30.0) -> torch.Tensor:
    """SNR (dB) of ``est`` against ``ref`` with a soft ceiling (Wisdom et al., "Unsupervised
    sound separation using mixture invariant training", 2020)::

        10·log10(‖s‖² / (‖s − ŝ‖² + τ‖s‖²)),   τ = 10^(−max_db/10)

    so no example is pushed beyond ``max_db``. Unlike SI-SDR it is not scale-invariant: the
    estimate must have the reference's level, which a user hears. Shapes ``[..., T]`` → ``[...]``.
    """
    ref_energy = ref.square().sum(-1)
    err_energy = (ref - est).square().sum(-1)
    tau = 10 ** (-max_db / 10)
    return 10 * torch.log10((ref_energy + 1e-8) / (err_energy + tau * ref_energy + 1e-8))


def aec_near_end_loss(est: torch.Tensor, targets: torch.Tensor, suppression_weight: float = 1.0,
                      echo_free_weight: float = 0.5, max_db: float = 30.0,
                      silent_db: float = -60.0) -> torch.Tensor:
    """An echo canceller's objective that weighs **near-end preservation** (double talk) and
    **echo suppression** (far-end single talk) explicitly. Lower is better; dB units.

    ``est``, ``targets`` ``[B, 3, T]`` (near-end speech, echo, noise), as for :func:`aec_loss`;
    the microphone is ``mic = targets.sum(1)``. Per example:

    * where there is near-end speech (double talk, near-end single talk): ``−SNR`` of the
      near-end estimate against the near-end speech (:func:`thresholded_snr`, capped at
      ``max_db``) — every dB of near-end damage costs, whatever the echo level;
    * where there is none (far-end single talk): the residual's level relative to the
      microphone, ``10·log10((‖ŝ‖² + τ‖mic‖²)/‖mic‖²)`` with ``τ = 10^(−max_db/10)``, i.e.
      ``−ERLE`` floored at ``−max_db``, weighted ``suppression_weight``;
    * plus, weighted ``echo_free_weight``, ``−SNR`` of the echo-free estimate (near-end +
      noise estimates) against near-end + noise, where that is not silent: it keeps the
      echo mask removing echo and only echo, the noise mask noise (the dual-mask design).

    Why not :func:`aec_loss` alone: its spectral distance is averaged over time-frequency
    bins, so in double talk at low SER the echo bins dominate and a canceller can lower the
    loss by suppressing everything loud, near-end included; an SNR per example counts the
    near-end talker's damage in proportion to the talker's own energy. A speaker is
    "present" when its energy is above ``silent_db`` relative to the microphone. Scalar.
    """
    if est.shape != targets.shape or est.dim() != 3 or est.shape[1] != 3:
        raise ValueError(f"aec_near_end_loss expects estimates and targets [batch, 3, T] (near-end, echo, "
                         f"noise), got {tuple(est.shape)} and {tuple(targets.shape)}")
    mic = targets.sum(1)
    mic_energy = mic.square().sum(-1) + 1e-8
    present = 10 ** (silent_db / 10) * mic_energy
    near, near_est = targets[:, 0], est[:, 0]
    has_near = near.square().sum(-1) > present
    tau = 10 ** (-max_db / 10)
    per_example = torch.where(
        has_near,
        -thresholded_snr(near_est, near, max_db),
        suppression_weight * 10 * torch.log10((near_est.square().sum(-1) + tau * mic_energy) / mic_energy))
    if echo_free_weight:
        free, free_est = near + targets[:, 2], near_est + est[:, 2]
        has_free = free.square().sum(-1) > present
        per_example = per_example + echo_free_weight * torch.where(
            has_free, -thresholded_snr(free_est, free, max_db), torch.zeros_like(per_example))
    return per_example.mean()
