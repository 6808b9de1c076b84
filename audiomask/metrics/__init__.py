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

from audiomask.metrics.echo import erle, segmental_erle
from audiomask.metrics.permutation import pit
from audiomask.metrics.sdr import pairwise_sdr, pairwise_si_sdr, sdr, si_sdr, si_sdr_improvement

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
