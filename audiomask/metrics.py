"""Separation metrics and permutation-invariant assignment.

All functions operate on :class:`torch.Tensor` with **time on the last axis** and
any number of leading (batch / source) dimensions.  Everything that produces a
score is differentiable with respect to the estimate (and the reference); the
permutation search in :func:`pit` is discrete and therefore not differentiated,
but the permuted estimates and the returned scores keep their autograd graph,
so ``-pit(est, ref, reduction="mean")[2]`` is a ready-to-use PIT loss.

Metrics
-------
``si_sdr``
    Scale-invariant SDR (Le Roux et al., "SDR - half-baked or well done?",
    ICASSP 2019).
``sdr``
    BSS-Eval v4 SDR: the "filtered" SDR of ``mir_eval.separation.bss_eval_sources``
    / ``museval`` / ``fast_bss_eval.sdr`` where the estimate is projected on the
    span of ``filter_length`` delayed copies of its own reference.
``si_sdr_improvement``
    SI-SDR of the estimate minus SI-SDR of the unprocessed mixture.
``pairwise_si_sdr`` / ``pairwise_sdr``
    All-pairs matrices ``[..., n_est, n_ref]`` used by :func:`pit`.
``erle`` / ``segmental_erle``
    Echo return loss enhancement of an echo canceller, global and segmental (dB), for
    far-end single talk.

Silence convention
------------------
All metrics use the same regularised ratio

    10 * log10((E_target + eps) / (E_noise + eps))

with energies ``E`` in the (squared) units of the input signals and, when the
reference is all-zero, the projection/target defined as zero.  This gives the
following finite values (``eps`` is the keyword argument, default ``1e-8``):

=====================  ======================  ==========================================
reference              estimate                returned value (dB)
=====================  ======================  ==========================================
all-zero               all-zero                ``0``
non-zero               all-zero                ``0``  (target = noise = 0)
all-zero               non-zero                ``10*log10(eps / (||est||^2 + eps))``
=====================  ======================  ==========================================

(for ``zero_mean=True``, "all-zero" means "constant" and ``est`` is the
mean-removed estimate).  Gradients are finite in all three cases.

For non-silent signals the ``eps`` terms shift the result by
``10 log10((1 + eps/E_target) / (1 + eps/E_noise))`` dB, which only matters when
an energy approaches ``eps`` (absolute, in signal units): for 2 s of LibriSpeech
at its native level it is < 1e-5 dB at 20 dB SDR and ~7e-4 dB at 55 dB SDR.
Pass ``eps=0`` for the exact, unregularised value (silence then gives +-inf/NaN).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "si_sdr",
    "si_sdr_improvement",
    "pairwise_si_sdr",
    "sdr",
    "pairwise_sdr",
    "pit",
    "erle",
    "segmental_erle",
]

PairwiseMetric = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _ratio_db(target_energy: Tensor, noise_energy: Tensor, eps: float) -> Tensor:
    """``10 log10((target + eps) / (noise + eps))``; finite for non-negative inputs."""
    return 10.0 * (torch.log10(target_energy + eps) - torch.log10(noise_energy + eps))


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0`` and ``0`` elsewhere, with finite gradients."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def _check_time(est: Tensor, ref: Tensor) -> None:
    if est.shape[-1] != ref.shape[-1]:
        raise ValueError(
            f"est and ref must have the same number of samples on the last axis, "
            f"got {est.shape[-1]} and {ref.shape[-1]}"
        )


def _result_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.result_type(*tensors)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return dtype


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
    _check_time(est, ref)
    out_dtype = _result_dtype(est, ref)
    if out_dtype in (torch.float16, torch.bfloat16):  # energies would overflow / lose precision
        est, ref = est.float(), ref.float()
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    ref_energy = (ref * ref).sum(dim=-1, keepdim=True)
    alpha = _safe_div((est * ref).sum(dim=-1, keepdim=True), ref_energy)
    target = alpha * ref
    noise = est - target
    return _ratio_db((target * target).sum(dim=-1), (noise * noise).sum(dim=-1), eps).to(out_dtype)


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
    _check_time(est, ref)
    out_dtype = _result_dtype(est, ref)
    est64 = est.to(torch.float64)
    ref64 = ref.to(torch.float64)
    if zero_mean:
        est64 = est64 - est64.mean(dim=-1, keepdim=True)
        ref64 = ref64 - ref64.mean(dim=-1, keepdim=True)
    dot = est64 @ ref64.transpose(-1, -2)  # [..., n_est, n_ref]
    est_energy = (est64 * est64).sum(dim=-1).unsqueeze(-1)  # [..., n_est, 1]
    ref_energy = (ref64 * ref64).sum(dim=-1).unsqueeze(-2)  # [..., 1, n_ref]
    target = _safe_div(dot * dot, ref_energy)
    noise = (est_energy - target).clamp_min(0.0)
    return _ratio_db(target, noise, eps).to(out_dtype)


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
    _check_time(est, ref)
    if filter_length < 1:
        raise ValueError(f"filter_length must be >= 1, got {filter_length}")
    out_dtype = _result_dtype(est, ref)
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
    return _ratio_db(proj_energy, noise_energy, eps).to(out_dtype)


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


# --------------------------------------------------------------------------- #
# Assignment
# --------------------------------------------------------------------------- #
def _finite_scores(scores: Tensor) -> Tensor:
    """Make ``[B, n, n]`` score matrices finite for the assignment search.

    NaN and -inf become a value so low (and +inf one so high) that they decide the
    optimum before any finite entry does; finite entries are unchanged.
    """
    finite = torch.isfinite(scores)
    if bool(finite.all()):
        return scores
    inf = torch.tensor(math.inf, dtype=scores.dtype, device=scores.device)
    lo = torch.where(finite, scores, inf).amin(dim=(-2, -1), keepdim=True)
    hi = torch.where(finite, scores, -inf).amax(dim=(-2, -1), keepdim=True)
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
    span = scores.shape[-1] * (hi - lo + hi.abs() + lo.abs() + 1.0)
    scores = torch.where(torch.isnan(scores) | torch.isneginf(scores), lo - span, scores)
    return torch.where(torch.isposinf(scores), hi + span, scores)


_PERMS_CACHE: dict = {}


def _all_perms(n: int, device: torch.device) -> Tensor:
    key = (n, str(device))
    if key not in _PERMS_CACHE:
        _PERMS_CACHE[key] = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long, device=device)
    return _PERMS_CACHE[key]


def _best_perm(matrix: Tensor, method: str) -> Tensor:
    """``matrix [B, n_est, n_ref]`` (higher is better) -> ``perm [B, n_ref]`` maximising
    ``sum_i matrix[b, perm[b, i], i]``."""
    batch, n, _ = matrix.shape
    if method == "auto":
        method = "exhaustive" if n <= 4 else "hungarian"
    if method == "exhaustive":
        perms = _all_perms(n, matrix.device)  # [P, n]
        m = _finite_scores(matrix.detach().to(torch.float64))
        # total[b, p] = sum_i m[b, perms[p, i], i]
        total = m[:, perms, torch.arange(n, device=m.device)].sum(dim=-1)  # [B, P]
        return perms[total.argmax(dim=-1)]
    if method == "hungarian":
        from scipy.optimize import linear_sum_assignment

        scores = _finite_scores(matrix.detach().to(device="cpu", dtype=torch.float64)).numpy()
        out = np.empty((batch, n), dtype=np.int64)
        for b in range(batch):
            # rows = references, columns = estimates: the estimate given to each reference
            out[b] = linear_sum_assignment(scores[b].T, maximize=True)[1]
        return torch.from_numpy(out).to(matrix.device)
    raise ValueError(f"unknown method {method!r}; use 'auto', 'exhaustive' or 'hungarian'")


def pit(
    est: Tensor,
    ref: Tensor,
    metric: Union[str, PairwiseMetric] = "si_sdr",
    reduction: str = "none",
    method: str = "auto",
    maximize: bool = True,
    **metric_kwargs,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Permutation-invariant evaluation / training helper.

    For every example, finds the permutation of the estimates that maximises the
    mean metric over sources.

    Args:
        est: estimates ``[B, n_src, T]`` (any leading dims ``[..., n_src, T]``).
        ref: references, same shape as ``est``.
        metric: ``"si_sdr"`` (:func:`pairwise_si_sdr`), ``"sdr"``
            (:func:`pairwise_sdr`) or a callable ``f(est, ref) -> [..., n_est, n_ref]``
            with ``f(...)[..., i, j]`` the score of estimate ``i`` against reference ``j``.
        reduction: ``"none"`` -> scores ``[..., n_src]``; ``"mean"`` -> scalar mean
            over all examples and sources.
        method: ``"auto"`` (exhaustive search over the ``n_src!`` permutations for
            ``n_src <= 4``, Hungarian assignment beyond), ``"exhaustive"`` or
            ``"hungarian"``.  Both give the same optimum (up to ties).
        maximize: ``True`` if larger metric values are better (the two built-in
            metrics).  Set ``False`` for a callable returning a loss.
        **metric_kwargs: forwarded to the metric (e.g. ``zero_mean``, ``eps``,
            ``filter_length``).

    Returns:
        ``(perm, est_permuted, scores)`` where

        * ``perm``: ``[..., n_src]`` long; ``est_permuted[b, i] = est[b, perm[b, i]]``
          is the estimate matched with ``ref[b, i]``;
        * ``est_permuted``: ``[..., n_src, T]``, differentiable w.r.t. ``est``;
        * ``scores``: ``[..., n_src]`` metric of each matched pair
          (``scores[b, i] = metric(est[b, perm[b, i]], ref[b, i])``), or their
          mean if ``reduction="mean"``; differentiable.

    The permutation search itself runs on detached values (exhaustive search
    vectorised on the input device, Hungarian by scipy on CPU).
    """
    _check_time(est, ref)
    if est.shape != ref.shape:
        raise ValueError(f"est and ref must have the same shape, got {tuple(est.shape)} and {tuple(ref.shape)}")
    if est.dim() < 2:
        raise ValueError("pit expects [..., n_src, T] inputs")
    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")
    if isinstance(metric, str):
        if metric == "si_sdr":
            fn: PairwiseMetric = pairwise_si_sdr
        elif metric == "sdr":
            fn = pairwise_sdr
        else:
            raise ValueError(f"unknown metric {metric!r}; use 'si_sdr', 'sdr' or a callable")
    else:
        fn = metric

    lead = est.shape[:-2]
    n_src, n_samples = est.shape[-2:]
    est_f = est.reshape(-1, n_src, n_samples)
    ref_f = ref.reshape(-1, n_src, n_samples)
    matrix = fn(est_f, ref_f, **metric_kwargs)
    if matrix.shape != (est_f.shape[0], n_src, n_src):
        raise ValueError(f"pairwise metric returned shape {tuple(matrix.shape)}, expected {(est_f.shape[0], n_src, n_src)}")
    perm = _best_perm(matrix if maximize else -matrix, method)  # [B, n_src]
    est_perm = torch.gather(est_f, 1, perm.unsqueeze(-1).expand(-1, -1, n_samples))
    scores = torch.gather(matrix, 1, perm.unsqueeze(1)).squeeze(1)  # matrix[b, perm[b, i], i]
    perm = perm.reshape(*lead, n_src)
    est_perm = est_perm.reshape(*lead, n_src, n_samples)
    scores = scores.reshape(*lead, n_src)
    if reduction == "mean":
        scores = scores.mean()
    return perm, est_perm, scores


# --------------------------------------------------------------------------- #
# echo cancellation
# --------------------------------------------------------------------------- #
def erle(mic: Tensor, est: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Echo return loss enhancement (dB) over the whole signal.

    ``10 log10((Σ mic² + eps) / (Σ est² + eps))``: how much quieter the canceller's output
    ``est`` is than its microphone input ``mic``. Meaningful in **far-end single talk**,
    where everything in ``mic`` is echo (and noise) to be removed. An identity "canceller"
    scores exactly 0 dB; perfect removal of a noiseless echo scores
    ``10 log10(Σ mic² / eps)``. Shapes: ``[..., T]`` (broadcastable) → ``[...]``.
    """
    _check_time(est, mic)
    dtype = _result_dtype(mic, est)
    mic, est = mic.to(dtype), est.to(dtype)
    return _ratio_db(mic.square().sum(-1), est.square().sum(-1), eps)


def segmental_erle(mic: Tensor, est: Tensor, frame: int = 320, hop: int | None = None,
                   active_db: float = 40.0, eps: float = 1e-8) -> Tensor:
    r"""Segmental ERLE (dB): the mean of per-frame ERLEs over the frames that carry echo.

    The signals are cut into frames of ``frame`` samples every ``hop`` (default
    ``frame // 2``; 320/160 is 20/10 ms at 16 kHz), the ERLE of each frame is
    ``10 log10((Σ mic² + eps) / (Σ est² + eps))``, and the mean is taken over the frames whose
    microphone energy is within ``active_db`` dB of the loudest frame (the silent frames have
    no echo to remove; averaging their 0 dB in would dilute the score). A global ERLE is
    dominated by the loud frames; the segmental one weighs every active frame the same, so it
    also shows how well quiet echo tails are removed. Identity: 0 dB. Signals shorter than a
    frame are one frame. Shapes: ``[..., T]`` → ``[...]``.
    """
    _check_time(est, mic)
    hop = hop or frame // 2
    if frame < 1 or hop < 1:
        raise ValueError(f"frame and hop must be >= 1, got {frame} and {hop}")
    dtype = _result_dtype(mic, est)
    mic, est = torch.broadcast_tensors(mic.to(dtype), est.to(dtype))
    if mic.shape[-1] < frame:
        frame = mic.shape[-1]
    e_mic = mic.unfold(-1, frame, hop).square().sum(-1)  # [..., frames]
    e_est = est.unfold(-1, frame, hop).square().sum(-1)
    per_frame = _ratio_db(e_mic, e_est, eps)
    loudest = e_mic.amax(-1, keepdim=True)
    active = (e_mic > loudest * 10 ** (-active_db / 10)) & (e_mic > 0)
    count = active.sum(-1)
    total = torch.where(active, per_frame, torch.zeros_like(per_frame)).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
