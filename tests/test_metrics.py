"""Tests for audiomask.metrics.

Reference implementations used for cross-checks:

* ``fast_bss_eval`` (numpy backend).  Its BSS-Eval v4 SDR is
  ``-sdr_loss(est, ref, filter_length=512, pairwise=True)`` with the defaults
  ``zero_mean=False`` (BSS-Eval does not remove the mean), ``clamp_db=None``
  (no clamping of the dB value), ``load_diag=None`` (no diagonal loading of the
  Toeplitz system) and ``use_cg_iter=None`` (exact solve instead of conjugate
  gradient).  We use ``pairwise=True`` and read the matrix, which is indexed
  ``[..., ref, est]``, so that no permutation search (``fast_bss_eval.sdr``
  solves one) interferes with the comparison.
* ``mir_eval.separation.bss_eval_sources(ref, est, compute_permutation=False)``:
  with ``compute_permutation=True`` mir_eval re-orders by *SIR*, so matched
  pairs are compared explicitly.  mir_eval is slow, hence short 8 kHz signals.
* float64 numpy formulas written independently in this file.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomask.metrics.permutation import _best_perm
from audiomask.metrics import (
    pairwise_sdr,
    pairwise_si_sdr,
    pit,
    sdr,
    si_sdr,
    si_sdr_improvement,
)

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "librispeech-mini"
TOL_DB = 1e-3


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def _flac_files() -> list[Path]:
    return sorted(DATA_DIR.glob("*.flac")) if DATA_DIR.is_dir() else []


@pytest.fixture(scope="module")
def speech():
    """``speech(sr, n_samples, k)`` -> float64 array ``[k, n_samples]`` of distinct utterances."""
    files = _flac_files()
    if len(files) < 6:
        pytest.skip(f"LibriSpeech mini set not found (need >= 6 .flac files in {DATA_DIR})")
    sf = pytest.importorskip("soundfile")
    soxr = pytest.importorskip("soxr")
    cache: dict = {}

    def get(sr: int, n_samples: int, k: int) -> np.ndarray:
        out = []
        for f in files[:k]:
            key = (f, sr)
            if key not in cache:
                x, fs = sf.read(str(f), dtype="float64")
                if x.ndim > 1:
                    x = x.mean(axis=1)
                if fs != sr:
                    x = soxr.resample(x, fs, sr)
                cache[key] = x
            x = cache[key]
            start = sr // 2  # skip leading silence
            assert x.shape[0] >= start + n_samples, f"{f} too short"
            out.append(x[start : start + n_samples])
        return np.stack(out)

    return get


def _mixtures(s: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two-speaker estimates of varying quality from references ``s[:2]``.

    Returns ``est, ref`` of shape ``[n_cond, 2, T]``; includes causal FIR
    distortions (which BSS-Eval SDR forgives up to 512 taps) and noise.
    """
    ref = s[:2]
    T = ref.shape[-1]
    sig = ref.std()
    fir = np.zeros(40)
    fir[[0, 3, 17, 39]] = [1.0, -0.4, 0.25, 0.1]
    ests = []
    for leak, noise, filt in [(0.3, 0.01, False), (1.0, 0.05, False), (0.03, 0.003, False), (0.1, 0.01, True), (0.0, 0.001, True)]:
        e = np.stack([ref[0] + leak * ref[1], ref[1] + leak * ref[0]])
        if filt:
            e = np.stack([np.convolve(x, fir)[:T] for x in e])
        e = e + noise * sig * rng.standard_normal(e.shape)
        ests.append(e)
    est = np.stack(ests)
    return est, np.broadcast_to(ref, est.shape).copy()


def _np_si_sdr(est: np.ndarray, ref: np.ndarray, zero_mean: bool) -> np.ndarray:
    """Textbook float64 SI-SDR (no eps)."""
    if zero_mean:
        est = est - est.mean(-1, keepdims=True)
        ref = ref - ref.mean(-1, keepdims=True)
    alpha = (est * ref).sum(-1, keepdims=True) / (ref * ref).sum(-1, keepdims=True)
    t = alpha * ref
    return 10 * np.log10((t**2).sum(-1) / ((est - t) ** 2).sum(-1))


def _fbe_pairwise_sdr(est: np.ndarray, ref: np.ndarray, filter_length: int = 512) -> np.ndarray:
    """fast_bss_eval BSS-Eval v4 SDR matrix, re-indexed to ``[..., est, ref]``."""
    fbe = pytest.importorskip("fast_bss_eval")
    neg = fbe.sdr_loss(
        est, ref, filter_length=filter_length, pairwise=True,
        zero_mean=False, clamp_db=None, load_diag=None, use_cg_iter=None,
    )
    return -np.swapaxes(neg, -1, -2)


# --------------------------------------------------------------------------- #
# SI-SDR
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("zero_mean", [True, False])
def test_si_sdr_matches_references(speech, zero_mean):
    fbe = pytest.importorskip("fast_bss_eval")
    rng = np.random.default_rng(0)
    est, ref = _mixtures(speech(16000, 48000, 2), rng)
    ours = si_sdr(torch.from_numpy(est), torch.from_numpy(ref), zero_mean=zero_mean).numpy()
    ref_np = _np_si_sdr(est, ref, zero_mean)
    fb = -np.diagonal(fbe.si_sdr_loss(est, ref, zero_mean=zero_mean, pairwise=True), axis1=-2, axis2=-1)
    assert ours.shape == (5, 2)
    assert np.isfinite(ours).all()
    assert ours.max() > 25 and ours.min() < 5  # the conditions cover a wide range
    np.testing.assert_allclose(ours, ref_np, rtol=0, atol=TOL_DB)
    np.testing.assert_allclose(ours, fb, rtol=0, atol=TOL_DB)
    ours_exact = si_sdr(torch.from_numpy(est), torch.from_numpy(ref), zero_mean=zero_mean, eps=0.0).numpy()
    np.testing.assert_allclose(ours_exact, ref_np, rtol=0, atol=1e-8)
    # float32 inputs: still close to the float64 reference
    ours32 = si_sdr(torch.from_numpy(est).float(), torch.from_numpy(ref).float(), zero_mean=zero_mean)
    assert ours32.dtype == torch.float32
    np.testing.assert_allclose(ours32.numpy(), ref_np, rtol=0, atol=1e-2)


def test_pairwise_si_sdr_matches_fast_bss_eval(speech):
    fbe = pytest.importorskip("fast_bss_eval")
    rng = np.random.default_rng(1)
    est, ref = _mixtures(speech(16000, 32000, 2), rng)
    ours = pairwise_si_sdr(torch.from_numpy(est), torch.from_numpy(ref)).numpy()
    fb = -np.swapaxes(fbe.si_sdr_loss(est, ref, zero_mean=True, pairwise=True), -1, -2)
    assert ours.shape == (5, 2, 2)
    # Some cross pairs sit below -80 dB, where the target energy is only ~1e-7 and the
    # (absolute) eps=1e-8 visibly regularises the ratio; compare those with eps=0.
    assert fb.min() < -80
    relevant = fb > -60
    np.testing.assert_allclose(ours[relevant], fb[relevant], rtol=0, atol=TOL_DB)
    ours_no_eps = pairwise_si_sdr(torch.from_numpy(est), torch.from_numpy(ref), eps=0.0).numpy()
    np.testing.assert_allclose(ours_no_eps, fb, rtol=0, atol=TOL_DB)
    # consistent with the element-wise function
    for i, j in itertools.product(range(2), range(2)):
        direct = si_sdr(torch.from_numpy(est[:, i]), torch.from_numpy(ref[:, j])).numpy()
        np.testing.assert_allclose(ours[:, i, j], direct, rtol=0, atol=TOL_DB)
    # float32 in -> float32 out, accurate thanks to float64 accumulation
    ours32 = pairwise_si_sdr(torch.from_numpy(est).float(), torch.from_numpy(ref).float())
    assert ours32.dtype == torch.float32
    np.testing.assert_allclose(ours32.numpy()[relevant], fb[relevant], rtol=0, atol=1e-2)


def test_si_sdr_scale_invariance_and_known_value():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 4000, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 4000, generator=g, dtype=torch.float64)
    # make noise exactly orthogonal to (zero-mean) ref so the SI-SDR is known in closed form
    ref = ref - ref.mean(-1, keepdim=True)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref
    noise = noise * (ref.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)) * 10 ** (-20 / 20)
    est = 0.7 * ref + noise * 0.7
    val = si_sdr(est, ref)
    torch.testing.assert_close(val, torch.full((3,), 20.0, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(si_sdr(5.0 * est, ref), val, atol=1e-6, rtol=0)
    torch.testing.assert_close(si_sdr(est, 0.01 * ref), val, atol=1e-6, rtol=0)


def test_si_sdr_improvement(speech):
    s = torch.from_numpy(speech(8000, 8000, 2))
    mix = s.sum(0)  # [T]
    est = torch.stack([s[0] + 0.1 * s[1], s[1] + 0.2 * s[0]])  # [2, T]
    ref = s
    imp = si_sdr_improvement(est, ref, mix)
    expected = si_sdr(est, ref) - si_sdr(mix.expand(2, -1), ref)
    assert imp.shape == (2,)
    torch.testing.assert_close(imp, expected, atol=1e-9, rtol=0)
    assert (imp > 5).all()
    # batched: mix [B, T] with est [B, n_src, T]
    est_b = torch.stack([est, est.flip(0)])
    ref_b = torch.stack([ref, ref.flip(0)])
    mix_b = torch.stack([mix, mix])
    imp_b = si_sdr_improvement(est_b, ref_b, mix_b)
    assert imp_b.shape == (2, 2)
    torch.testing.assert_close(imp_b[0], imp, atol=1e-9, rtol=0)
    torch.testing.assert_close(imp_b[1], imp.flip(0), atol=1e-9, rtol=0)
    # the mixture itself has zero improvement
    torch.testing.assert_close(si_sdr_improvement(mix.expand(2, -1), ref, mix), torch.zeros(2, dtype=torch.float64))


# --------------------------------------------------------------------------- #
# BSS-Eval SDR
# --------------------------------------------------------------------------- #
def test_sdr_matches_fast_bss_eval(speech):
    rng = np.random.default_rng(2)
    est, ref = _mixtures(speech(16000, 32700, 2), rng)
    fb = _fbe_pairwise_sdr(est, ref)  # [5, est, ref]
    ours = sdr(torch.from_numpy(est), torch.from_numpy(ref), filter_length=512).numpy()
    ours_pw = pairwise_sdr(torch.from_numpy(est), torch.from_numpy(ref), filter_length=512).numpy()
    assert ours.shape == (5, 2) and ours_pw.shape == (5, 2, 2)
    np.testing.assert_allclose(ours, np.diagonal(fb, axis1=-2, axis2=-1), rtol=0, atol=TOL_DB)
    np.testing.assert_allclose(ours_pw, fb, rtol=0, atol=TOL_DB)
    # Without the eps regulariser (which costs up to ~7e-4 dB at 55 dB SDR on these
    # signals) the algorithm agrees with fast_bss_eval to solver precision.
    ours_exact = pairwise_sdr(torch.from_numpy(est), torch.from_numpy(ref), eps=0.0).numpy()
    np.testing.assert_allclose(ours_exact, fb, rtol=0, atol=1e-6)
    # The FIR-filtered, otherwise clean estimate (last condition) is forgiven by SDR, not by SI-SDR.
    clean_filtered_sdr = ours[-1]
    clean_filtered_si = si_sdr(torch.from_numpy(est[-1]), torch.from_numpy(ref[-1]), zero_mean=False).numpy()
    assert (clean_filtered_sdr > 40).all()
    assert (clean_filtered_sdr - clean_filtered_si > 20).all()
    # float32 inputs (computed in float64 internally)
    ours32 = sdr(torch.from_numpy(est).float(), torch.from_numpy(ref).float())
    assert ours32.dtype == torch.float32
    np.testing.assert_allclose(ours32.numpy(), np.diagonal(fb, axis1=-2, axis2=-1), rtol=0, atol=1e-2)


def test_sdr_matches_fast_bss_eval_short_filter(speech):
    rng = np.random.default_rng(3)
    est, ref = _mixtures(speech(8000, 8000, 2), rng)
    for L in (16, 100):
        fb = _fbe_pairwise_sdr(est, ref, filter_length=L)
        ours = pairwise_sdr(torch.from_numpy(est), torch.from_numpy(ref), filter_length=L).numpy()
        np.testing.assert_allclose(ours, fb, rtol=0, atol=TOL_DB)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # mir_eval >= 0.8 deprecates bss_eval_sources
def test_sdr_matches_mir_eval(speech):
    separation = pytest.importorskip("mir_eval.separation")
    rng = np.random.default_rng(4)
    est, ref = _mixtures(speech(8000, 16200, 2), rng)
    ours = sdr(torch.from_numpy(est), torch.from_numpy(ref)).numpy()
    ours_exact = sdr(torch.from_numpy(est), torch.from_numpy(ref), eps=0.0).numpy()
    assert ours[4].min() > 40  # includes a high-SDR (FIR-filtered, nearly clean) condition
    for c in (0, 1, 3, 4):  # mir_eval is slow; four conditions are plenty
        me_sdr = separation.bss_eval_sources(ref[c], est[c], compute_permutation=False)[0]
        np.testing.assert_allclose(ours[c], me_sdr, rtol=0, atol=TOL_DB)
        np.testing.assert_allclose(ours_exact[c], me_sdr, rtol=0, atol=1e-6)


def test_sdr_filter_length_one_is_si_sdr_without_mean_removal(speech):
    rng = np.random.default_rng(5)
    est, ref = _mixtures(speech(8000, 8000, 2), rng)
    e, r = torch.from_numpy(est), torch.from_numpy(ref)
    torch.testing.assert_close(sdr(e, r, filter_length=1), si_sdr(e, r, zero_mean=False), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        sdr(e, r, filter_length=1, zero_mean=True), si_sdr(e, r, zero_mean=True), atol=1e-6, rtol=0
    )


# --------------------------------------------------------------------------- #
# PIT
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("n_src", [2, 3, 4, 5, 6])
def test_pit_recovers_known_permutation(speech, n_src):
    s = torch.from_numpy(speech(8000, 6000, n_src))
    g = torch.Generator().manual_seed(n_src)
    batch = 3
    ref = s.unsqueeze(0).repeat(batch, 1, 1)  # [B, n, T]
    true_perm = torch.stack([torch.randperm(n_src, generator=g) for _ in range(batch)])
    # est[b, true_perm[b, i]] is a noisy, leaky version of ref[b, i]
    est = torch.empty_like(ref)
    mix = ref.sum(1, keepdim=True)
    for b in range(batch):
        for i in range(n_src):
            est[b, true_perm[b, i]] = ref[b, i] + 0.15 * mix[b, 0] + 0.01 * torch.randn(ref.shape[-1], generator=g, dtype=ref.dtype)
    est = est.float().requires_grad_(True)
    ref = ref.float()
    metrics = ["si_sdr", "sdr"] if n_src <= 3 else ["si_sdr"]
    for metric in metrics:
        perm, est_perm, scores = pit(est, ref, metric=metric)
        assert perm.dtype == torch.long and perm.shape == (batch, n_src)
        assert torch.equal(perm, true_perm), metric
        for b in range(batch):
            torch.testing.assert_close(est_perm[b], est[b, perm[b]].detach(), atol=0, rtol=0)
        direct = (si_sdr if metric == "si_sdr" else sdr)(est_perm.detach(), ref)
        assert scores.shape == (batch, n_src)
        torch.testing.assert_close(scores.detach(), direct, atol=2e-3, rtol=0)
        # both search methods agree
        for method in ("exhaustive", "hungarian"):
            assert torch.equal(pit(est.detach(), ref, metric=metric, method=method)[0], true_perm)
    # usable as a loss: gradients reach the estimates
    loss = -pit(est, ref, metric="si_sdr", reduction="mean")[2]
    assert loss.dim() == 0
    loss.backward()
    assert est.grad is not None and torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_pit_callable_metric_and_maximize_flag():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(4, 3, 200, generator=g)
    perm_true = torch.stack([torch.randperm(3, generator=g) for _ in range(4)])
    est = torch.stack([ref[b][perm_true[b].argsort()] for b in range(4)]) + 0.05 * torch.randn(4, 3, 200, generator=g)
    # est[b, perm_true[b, i]] == ref[b, i] + noise
    pairwise_mse = lambda e, r: ((e.unsqueeze(-2) - r.unsqueeze(-3)) ** 2).mean(-1)  # noqa: E731
    perm, est_perm, scores = pit(est, ref, metric=pairwise_mse, maximize=False)
    assert torch.equal(perm, perm_true)
    torch.testing.assert_close(scores, ((est_perm - ref) ** 2).mean(-1))
    perm2, _, _ = pit(est, ref, metric=lambda e, r: -pairwise_mse(e, r))
    assert torch.equal(perm2, perm_true)


def test_pit_leading_dims_match_loop():
    g = torch.Generator().manual_seed(1)
    est = torch.randn(2, 3, 4, 300, generator=g)
    ref = torch.randn(2, 3, 4, 300, generator=g)
    perm, est_perm, scores = pit(est, ref)
    assert perm.shape == (2, 3, 4) and est_perm.shape == est.shape and scores.shape == (2, 3, 4)
    for a, b in itertools.product(range(2), range(3)):
        p1, e1, s1 = pit(est[a, b : b + 1], ref[a, b : b + 1])
        assert torch.equal(perm[a, b], p1[0])
        torch.testing.assert_close(est_perm[a, b], e1[0])
        torch.testing.assert_close(scores[a, b], s1[0])
        # brute force check of optimality
        m = pairwise_si_sdr(est[a, b], ref[a, b])
        best = max(itertools.permutations(range(4)), key=lambda p: sum(m[p[i], i].item() for i in range(4)))
        assert perm[a, b].tolist() == list(best)


def test_hungarian_equals_exhaustive_search():
    """The Hungarian path (scipy's solver on the transposed score matrix, maximising) picks the
    permutation the exhaustive search picks, for every size it can be checked against."""
    rng = np.random.default_rng(0)
    for n in range(2, 8):
        for scale in (0.01, 1.0, 100.0):
            scores = torch.from_numpy(rng.standard_normal((16, n, n)) * scale)
            assert torch.equal(_best_perm(scores, "hungarian"), _best_perm(scores, "exhaustive"))
    # rectangular references: the best estimates for each reference, the same both ways
    scores = torch.from_numpy(rng.integers(0, 3, size=(8, 5, 5)).astype(float))  # ties
    h, e = _best_perm(scores, "hungarian"), _best_perm(scores, "exhaustive")
    total = lambda p: scores.gather(1, p.unsqueeze(1)).squeeze(1).sum(-1)  # noqa: E731
    assert torch.equal(total(h), total(e))


def test_pit_handles_non_finite_scores():
    m = torch.tensor([[[0.0, -math.inf, 1.0], [2.0, 0.5, -math.inf], [math.nan, 3.0, 0.0]]])
    # best: est0->ref2 (1.0), est1->ref0 (2.0), est2->ref1 (3.0) => perm[ref] = [1, 2, 0]
    for method in ("exhaustive", "hungarian"):
        assert _best_perm(m, method).tolist() == [[1, 2, 0]]
    # +inf dominates, and among permutations using it the finite entries still decide
    m2 = torch.tensor([[[math.inf, 0.0, 5.0], [0.0, 1.0, 0.0], [0.0, 0.0, 4.0]]])
    # est0->ref0 forced; then est1->ref1 + est2->ref2 (5.0) beats est1->ref2 + est2->ref1 (0.0)
    for method in ("exhaustive", "hungarian"):
        assert _best_perm(m2, method).tolist() == [[0, 1, 2]]
    # mixed +inf / -inf / nan never yields NaN totals
    m3 = torch.tensor([[[math.inf, -math.inf], [math.nan, math.inf]]])
    for method in ("exhaustive", "hungarian"):
        assert _best_perm(m3, method).tolist() == [[0, 1]]


# --------------------------------------------------------------------------- #
# silence
# --------------------------------------------------------------------------- #
def _silence_cases(T: int = 800):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, generator=g, dtype=torch.float64)
    y = torch.randn(T, generator=g, dtype=torch.float64)
    z = torch.zeros(T, dtype=torch.float64)
    return x, y, z


@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (si_sdr, {}),
        (si_sdr, {"zero_mean": False}),
        (sdr, {"filter_length": 32}),
        (sdr, {"filter_length": 512}),
        (sdr, {"filter_length": 32, "zero_mean": True}),
    ],
)
def test_silence_values_and_gradients(fn, kwargs):
    eps = 1e-8
    x, _, z = _silence_cases()
    x_zm = x - x.mean() if kwargs.get("zero_mean", fn is si_sdr) else x
    expected = {
        "both_zero": 0.0,
        "est_zero": 0.0,
        "ref_zero": 10 * math.log10(eps / (float((x_zm**2).sum()) + eps)),
    }
    cases = {"both_zero": (z, z), "est_zero": (z, x), "ref_zero": (x, z)}
    for name, (e, r) in cases.items():
        e = e.clone().requires_grad_(True)
        r = r.clone().requires_grad_(True)
        val = fn(e, r, eps=eps, **kwargs)
        assert torch.isfinite(val), name
        assert val.item() == pytest.approx(expected[name], abs=1e-6), name
        val.backward()
        assert torch.isfinite(e.grad).all() and torch.isfinite(r.grad).all(), name
    # float32 too
    for name, (e, r) in cases.items():
        val = fn(e.float(), r.float(), eps=eps, **kwargs)
        assert torch.isfinite(val) and val.item() == pytest.approx(expected[name], abs=1e-3), name


def test_silence_pairwise_and_pit():
    eps = 1e-8
    x, y, z = _silence_cases()
    est = torch.stack([x, z])[None].requires_grad_(True)  # [1, 2, T]
    ref = torch.stack([z, y])[None]
    e_x = float(((x - x.mean()) ** 2).sum())
    for fn, ex in [(pairwise_si_sdr, e_x), (lambda a, b: pairwise_sdr(a, b, filter_length=16), float((x**2).sum()))]:
        m = fn(est, ref)
        assert m.shape == (1, 2, 2) and torch.isfinite(m).all()
        assert m[0, 0, 0].item() == pytest.approx(10 * math.log10(eps / (ex + eps)), abs=1e-6)  # ref zero
        assert m[0, 1, 0].item() == pytest.approx(0.0, abs=1e-9)  # both zero
        assert m[0, 1, 1].item() == pytest.approx(0.0, abs=1e-9)  # est zero
        m.sum().backward()
        assert torch.isfinite(est.grad).all()
        est.grad = None
    perm, est_perm, scores = pit(est, ref, reduction="mean")
    assert torch.isfinite(scores)
    scores.backward()
    assert torch.isfinite(est.grad).all()


# --------------------------------------------------------------------------- #
# shapes / batching / autograd
# --------------------------------------------------------------------------- #
def test_batched_shapes_match_loop():
    g = torch.Generator().manual_seed(3)
    est = torch.randn(2, 3, 2, 1000, generator=g, dtype=torch.float64)
    ref = torch.randn(2, 3, 2, 1000, generator=g, dtype=torch.float64) + 0.5 * est
    out_si = si_sdr(est, ref)
    out_sdr = sdr(est, ref, filter_length=64)
    out_pw = pairwise_si_sdr(est, ref)
    out_pw_sdr = pairwise_sdr(est, ref, filter_length=64)
    assert out_si.shape == out_sdr.shape == (2, 3, 2)
    assert out_pw.shape == out_pw_sdr.shape == (2, 3, 2, 2)
    for idx in itertools.product(range(2), range(3), range(2)):
        assert si_sdr(est[idx], ref[idx]).item() == pytest.approx(out_si[idx].item(), abs=1e-9)
        assert sdr(est[idx], ref[idx], filter_length=64).item() == pytest.approx(out_sdr[idx].item(), abs=1e-9)
    for a, b, i, j in itertools.product(range(2), range(3), range(2), range(2)):
        assert si_sdr(est[a, b, i], ref[a, b, j]).item() == pytest.approx(out_pw[a, b, i, j].item(), abs=1e-6)
        assert sdr(est[a, b, i], ref[a, b, j], filter_length=64).item() == pytest.approx(out_pw_sdr[a, b, i, j].item(), abs=1e-6)
    # broadcasting a single reference against a batch of estimates
    assert si_sdr(est[..., 0, :], ref[0, 0, 0]).shape == (2, 3)
    torch.testing.assert_close(si_sdr(est[:, :, 0], ref[0, 0, 0]), si_sdr(est[:, :, 0], ref[0, 0, 0].expand(2, 3, -1)))
    torch.testing.assert_close(
        sdr(est[:, :, 0], ref[0, 0, 0], filter_length=8), sdr(est[:, :, 0], ref[0, 0, 0].expand(2, 3, -1), filter_length=8)
    )
    with pytest.raises(ValueError):
        si_sdr(est, ref[..., :-1])


def test_gradcheck():
    g = torch.Generator().manual_seed(4)
    est = torch.randn(2, 48, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(2, 48, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e, r: si_sdr(e, r), (est, ref), fast_mode=True)
    assert torch.autograd.gradcheck(lambda e, r: sdr(e, r, filter_length=5), (est, ref), fast_mode=True)
    assert torch.autograd.gradcheck(lambda e, r: pairwise_si_sdr(e, r), (est, ref), fast_mode=True)
    assert torch.autograd.gradcheck(lambda e, r: pairwise_sdr(e, r, filter_length=5), (est, ref), fast_mode=True)


def test_sdr_after_set_num_threads():
    """Batched SDR still works once torch.set_num_threads has been called (torch 2.13's MKL
    fails batched LU solves after it; a fresh process keeps the test independent of order)."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from audiomask.metrics import sdr\n"
        "torch.set_num_threads(2)\n"
        "g = torch.Generator().manual_seed(0)\n"
        "ref = torch.randn(4, 2, 8000, generator=g)\n"
        "est = ref + 0.3 * torch.randn(4, 2, 8000, generator=g)\n"
        "batched = sdr(est, ref)\n"
        "single = torch.stack([sdr(e, r) for e, r in zip(est.reshape(-1, 8000), ref.reshape(-1, 8000))])\n"
        "assert torch.allclose(batched.reshape(-1), single, atol=1e-6), (batched, single)\n"
        "print(round(batched.mean().item(), 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert 9.0 < float(out.stdout.split()[-1]) < 12.0  # 0.3 relative noise: about 10.5 dB
