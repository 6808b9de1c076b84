"""Permutation-invariant scoring (:func:`pit`): the best assignment of estimates to references,
exhaustive up to 4 sources, Hungarian (scipy) beyond."""

from __future__ import annotations

import itertools
import math
from typing import Tuple, Union

import numpy as np
import torch
from torch import Tensor

from audiomask.metrics.energy import check_time
from audiomask.metrics.sdr import PairwiseMetric, pairwise_sdr, pairwise_si_sdr


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
    check_time(est, ref)
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
