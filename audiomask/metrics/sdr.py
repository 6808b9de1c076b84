"""SI-SDR (Le Roux et al., ICASSP 2019) and BSS-Eval v4 SDR, per pair and as all-pairs matrices."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from audiomask.metrics.energy import check_time, ratio_db, result_dtype, safe_div

PairwiseMetric = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------- #
# SI-SDR
# --------------------------------------------------------------------------- #
def si_sdr(est: Tensor, ref: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    r"""Scale-invariant signal-to-distortion ratio in dB.

    Args:
        est: estimate, shape ``[..., T]``.
        ref: reference, shape ``[..., T]`` (broadcastable with ``est``).
        zero_mean: subtract the temporal mean of ``est`` and ``ref`` first.
        eps: regulariser added to both energies (see module docstring).

    Returns:
        Tensor of shape ``broadcast(est, ref).shape[:-1]`` in the inputs' dtype
        (float16/bfloat16 inputs are computed in float32).

    Formula (Le Roux et al. 2019)::

        alpha  = <est, ref> / ||ref||^2          (alpha = 0 if ref == 0)
        target = alpha * ref
        noise  = est - target
        si_sdr = 10 log10((||target||^2 + eps) / (||noise||^2 + eps))

    Silence: both zero -> 0 dB; est zero -> 0 dB;
    ref zero -> ``10 log10(eps / (||est||^2 + eps))``.  Never NaN/Inf, and the
    gradients are finite.
    """
    check_time(est, ref)
    out_dtype = result_dtype(est, ref)
    if out_dtype in (torch.float16, torch.bfloat16):  # energies would overflow / lose precision
        est, ref = est.float(), ref.float()
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    ref_energy = (ref * ref).sum(dim=-1, keepdim=True)
    alpha = safe_div((est * ref).sum(dim=-1, keepdim=True), ref_energy)
    target = alpha * ref
    noise = est - target
    return ratio_db((target * target).sum(dim=-1), (noise * noise).sum(dim=-1), eps).to(out_dtype)


def si_sdr_improvement(
    est: Tensor, ref: Tensor, mix: Tensor, zero_mean: bool = True, eps: float = 1e-8
) -> Tensor:
    r"""SI-SDR improvement ``si_sdr(est, ref) - si_sdr(mix, ref)`` in dB.

    Args:
        est: estimates, shape ``[..., n_src, T]`` (or ``[..., T]``).
        ref: references, same shape as ``est``.
        mix: the input mixture.  If it has one dimension less than ``est``
            (shape ``[..., T]``) it is broadcast over the source axis ``-2``;
            otherwise it must broadcast against ``est`` directly.
        zero_mean, eps: as in :func:`si_sdr`.

    Returns:
        Tensor of shape ``est.shape[:-1]``.
    """
    if mix.dim() == est.dim() - 1:
        mix = mix.unsqueeze(-2)
    mix = mix.expand_as(torch.broadcast_tensors(mix, est)[0])
    return si_sdr(est, ref, zero_mean=zero_mean, eps=eps) - si_sdr(mix, ref, zero_mean=zero_mean, eps=eps)


def pairwise_si_sdr(est: Tensor, ref: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    r"""SI-SDR for every (estimate, reference) pair.

    Args:
        est: ``[..., n_est, T]``.
        ref: ``[..., n_ref, T]`` (leading dims broadcastable with ``est``).
        zero_mean, eps: as in :func:`si_sdr`.

    Returns:
        ``[..., n_est, n_ref]`` with ``out[..., i, j] = si_sdr(est[..., i, :], ref[..., j, :])``.

    Computed with one batched matmul: with ``d = <est_i, ref_j>``,
    ``||target||^2 = d^2 / ||ref_j||^2`` and ``||noise||^2 = ||est_i||^2 - ||target||^2``.
    The inner products are accumulated in float64 (and the result cast back) so
    that the subtraction stays accurate at high SDR.
    """
    check_time(est, ref)
    out_dtype = result_dtype(est, ref)
    est64 = est.to(torch.float64)
    ref64 = ref.to(torch.float64)
    if zero_mean:
        est64 = est64 - est64.mean(dim=-1, keepdim=True)
        ref64 = ref64 - ref64.mean(dim=-1, keepdim=True)
    dot = est64 @ ref64.transpose(-1, -2)  # [..., n_est, n_ref]
    est_energy = (est64 * est64).sum(dim=-1).unsqueeze(-1)  # [..., n_est, 1]
    ref_energy = (ref64 * ref64).sum(dim=-1).unsqueeze(-2)  # [..., 1, n_ref]
    target = safe_div(dot * dot, ref_energy)
    noise = (est_energy - target).clamp_min(0.0)
    return ratio_db(target, noise, eps).to(out_dtype)


# --------------------------------------------------------------------------- #
# BSS-Eval SDR
# --------------------------------------------------------------------------- #
def _sdr_core(
    est: Tensor,
    ref: Tensor,
    filter_length: int,
    zero_mean: bool,
    eps: float,
    load_diag: float,
    pairwise: bool,
) -> Tensor:
    """Shared implementation of :func:`sdr` and :func:`pairwise_sdr` (float64)."""
    check_time(est, ref)
    if filter_length < 1:
        raise ValueError(f"filter_length must be >= 1, got {filter_length}")
    out_dtype = result_dtype(est, ref)
    est = est.to(torch.float64)
    ref = ref.to(torch.float64)
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    if not pairwise:
        est, ref = torch.broadcast_tensors(est, ref)
    n_samples = est.shape[-1]
    L = int(filter_length)

    # Correlations via FFT.  n_fft >= T + L - 1 makes lags 0..L-1 free of
    # circular wrap-around, i.e. identical to the linear correlations.
    n_fft = 2 ** math.ceil(math.log2(n_samples + L - 1))
    R = torch.fft.rfft(ref, n=n_fft, dim=-1)
    E = torch.fft.rfft(est, n=n_fft, dim=-1)
    # acf[k]   = sum_n ref[n] ref[n + k]
    acf = torch.fft.irfft(R.real.square() + R.imag.square(), n=n_fft, dim=-1)[..., :L]
    if pairwise:
        # xcorr[..., j, k, i] = sum_n ref_j[n] est_i[n + k]   -> [..., n_ref, L, n_est]
        cross = R.conj().unsqueeze(-2) * E.unsqueeze(-3)  # [..., n_ref, n_est, F]
        xcorr = torch.fft.irfft(cross, n=n_fft, dim=-1)[..., :L].transpose(-1, -2)
    else:
        xcorr = torch.fft.irfft(R.conj() * E, n=n_fft, dim=-1)[..., :L].unsqueeze(-1)  # [..., L, 1]

    ref_energy = acf[..., :1]  # ||ref||^2, [..., 1]
    silent = ref_energy <= 0
    if load_diag > 0:
        acf = torch.cat([acf[..., :1] * (1.0 + load_diag), acf[..., 1:]], dim=-1)
    # Toeplitz autocorrelation matrix; an all-zero reference gets the identity
    # (its cross-correlation is zero too, so the projection is zero).
    idx = torch.arange(L, device=acf.device)
    idx = (idx[:, None] - idx[None, :]).abs()
    toep = acf[..., idx]  # [..., L, L]
    eye = torch.eye(L, dtype=toep.dtype, device=toep.device)
    toep = torch.where(silent.unsqueeze(-1), eye, toep)
    xcorr = torch.where(silent.unsqueeze(-1), torch.zeros_like(xcorr), xcorr)

    if toep.device.type == "cpu" and toep.dim() > 2:
        # one matrix at a time: torch 2.13's MKL fails batched LU solves ("DLASWP parameter
        # 6", "Pivots given to lu_solve ...") once torch.set_num_threads has been called
        flat = zip(toep.reshape(-1, L, L), xcorr.reshape(-1, L, xcorr.shape[-1]))
        sol = torch.stack([torch.linalg.solve(a, b) for a, b in flat]).reshape(xcorr.shape)
    else:
        sol = torch.linalg.solve(toep, xcorr)
    proj_energy = (xcorr * sol).sum(dim=-2)  # [..., n_est] or [..., 1]
    est_energy = (est * est).sum(dim=-1)
    if pairwise:
        proj_energy = proj_energy.transpose(-1, -2).clamp_min(0.0)  # [..., n_est, n_ref]
        est_energy = est_energy.unsqueeze(-1)
    else:
        proj_energy = proj_energy.squeeze(-1).clamp_min(0.0)
    proj_energy = torch.minimum(proj_energy, est_energy)
    noise_energy = est_energy - proj_energy
    return ratio_db(proj_energy, noise_energy, eps).to(out_dtype)


def sdr(
    est: Tensor,
    ref: Tensor,
    filter_length: int = 512,
    zero_mean: bool = False,
    eps: float = 1e-8,
    load_diag: float = 0.0,
) -> Tensor:
    r"""BSS-Eval (v4) signal-to-distortion ratio in dB.

    This is the SDR of ``mir_eval.separation.bss_eval_sources`` (matched pairs),
    ``museval`` v4 and ``fast_bss_eval.sdr(..., filter_length=512)`` (without
    its ``clamp_db`` / ``load_diag`` options).

    Args:
        est: estimate, shape ``[..., T]``.
        ref: reference, shape ``[..., T]`` (broadcastable with ``est``).
        filter_length: number ``L`` of delayed copies of the reference (delays
            ``0 .. L-1``) spanning the allowed distortion subspace.
            ``filter_length=1`` gives ``si_sdr(..., zero_mean=False)``.
        zero_mean: subtract the temporal means first (BSS-Eval does not).
        eps: regulariser added to both energies (see module docstring).
        load_diag: optional Tikhonov loading, the Toeplitz diagonal becomes
            ``(1 + load_diag) * ||ref||^2``.  Default ``0``: the exact system
            is solved (in float64), which matches the reference implementations
            on real speech; set e.g. ``1e-10`` for pathological references
            (pure tones, heavily band-limited signals) whose Toeplitz matrix is
            numerically singular.

    Returns:
        Tensor of shape ``broadcast(est, ref).shape[:-1]`` in the result dtype
        of the inputs (internally float64).

    Formula: with ``Rss[k, l] = acf_ref[|k - l|]`` (``L x L`` Toeplitz, linear
    autocorrelation of ``ref``) and ``c[k] = sum_n ref[n] est[n + k]``
    (cross-correlation, computed with an FFT of size ``>= T + L - 1``)::

        h     = Rss^{-1} c                       (distortion filter)
        proj  = h * ref                          (projection, ||proj||^2 = c^T h)
        sdr   = 10 log10((||proj||^2 + eps) / (||est - proj||^2 + eps))

    Silence values as for :func:`si_sdr`: both zero -> 0 dB; est zero -> 0 dB;
    ref zero -> ``10 log10(eps / (||est||^2 + eps))``.

    Cost: one ``L x L`` float64 solve per (broadcast) pair.
    """
    return _sdr_core(est, ref, filter_length, zero_mean, eps, load_diag, pairwise=False)


def pairwise_sdr(
    est: Tensor,
    ref: Tensor,
    filter_length: int = 512,
    zero_mean: bool = False,
    eps: float = 1e-8,
    load_diag: float = 0.0,
) -> Tensor:
    r"""BSS-Eval SDR (see :func:`sdr`) for every (estimate, reference) pair.

    Args:
        est: ``[..., n_est, T]``.
        ref: ``[..., n_ref, T]`` (leading dims broadcastable with ``est``).

    Returns:
        ``[..., n_est, n_ref]``, ``out[..., i, j] = sdr(est[..., i, :], ref[..., j, :])``.

    One Toeplitz system per reference is solved with ``n_est`` right-hand sides.
    """
    return _sdr_core(est, ref, filter_length, zero_mean, eps, load_diag, pairwise=True)
