"""Triton kernels and the ops that launch them, registered as ``torch.library`` custom ops (imported on first use by :mod:`audiomask.kernels`).

Everything works on ``[B, C, T]`` tensors given by strides, so channels-last inputs
(MossFormer's ``[B, T, C]`` sequences) and transposed views are read in place. Arithmetic is
float32 whatever the storage type; outputs take the input's dtype, weight gradients the
weight's. Cross-frame statistics (gLN, cumulative LN) are combined in float64, as the
PyTorch reference does.

Fused conv block (``dwconv_prelu_norm``; ``prelu_norm`` is the same with the conv switched
off). With ``z = conv(x) + b``, ``a = prelu(z)``, ``n = (a - mu) * rstd``,
``y = n * gamma + beta``:

forward
  1. ``_frame_stats``: per frame and channel split, mean and centred sum of squares of ``a``
     (chunks merged with Chan's formula) — one read of ``x``.
  2. ``_finish_stats``: merges the splits, then per example (gLN, Chan merge over frames in
     float64), per frame cumulative (cLN, float64 running sums) or per frame (chanLN):
     ``mu``, ``rstd``.
  3. ``_norm_apply``: recompute ``a`` (the conv is a few FMAs), write ``y`` — one read of
     ``x``, one write. Only ``x`` and the per-frame statistics are saved.

backward (``g = dy * gamma``)
  1. ``_bwd_frame_reduce``: per frame (and channel split) ``G = sum_c g``, ``H = sum_c g * n``.
  2. ``_bwd_finish``: coefficients ``P``, ``Q`` with ``da = rstd * g + P + Q * (a - mu)``.
     gLN: ``P = -rstd G / N``, ``Q = -rstd^2 H / N`` over the example; chanLN the same per
     frame; cLN: reverse cumulative sums (float64) of the per-frame ``dL/dSum x`` and
     ``dL/dSum x^2``, because frame ``s`` enters the statistics of every frame ``t >= s``.
  3. ``_bwd_elementwise``: ``dz`` (PReLU backward) and per-tile partial sums of the
     gradients of ``gamma``, ``beta``, the slope, the conv bias and the conv weight (from the
     taps the tile reads anyway).
  4. ``_dwconv_bwd_input``: the conv's input gradient from ``dz`` (shared with
     :func:`depthwise_conv1d`, whose weight gradient is ``_dwconv_bwd_weight``).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

NORM_CODES = {"gLN": 0, "cLN": 1, "chanLN": 2}

# tile sizes: elementwise kernels [BLOCK_C, BLOCK_T] = 32 x 128; frame reductions loop over
# channels in chunks of 32 with 64 frames per program
BLOCK_C, BLOCK_T = 32, 128
RED_BLOCK_C, RED_BLOCK_T = 32, 64
# frame reductions split the channels over programs (partial statistics merged afterwards),
# so a 512-channel layer gives 4x more programs than frame tiles alone
CHANNELS_PER_SPLIT = 128
FIN_BLOCK_T = 1024
NUM_WARPS = 4


# ------------------------------------------------------------------------------------------
# shared tile helper
# ------------------------------------------------------------------------------------------
@triton.jit
def _conv_prelu_tile(x_ptr, w_ptr, bias_ptr, slope_ptr, b, c, t, cmask, tmask,
                     T_in, PAD_L, DIL, sxb, sxc, sxt,
                     K: tl.constexpr, HAS_CONV: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SLOPE_PER_CHANNEL: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """``z = depthwise_conv(x)[c, t] + bias[c]`` (or ``x[c, t]`` without conv) and
    ``a = prelu(z)`` for a ``[BC, 1] x [1, BT]`` tile; float32."""
    row = x_ptr + b * sxb + c * sxc
    if HAS_CONV:
        z = tl.zeros([BC, BT], tl.float32)
        for k in tl.static_range(K):
            s = t - PAD_L + k * DIL
            m = cmask & tmask & (s >= 0) & (s < T_in)
            xv = tl.load(row + s * sxt, mask=m, other=0.0).to(tl.float32)
            wv = tl.load(w_ptr + c * K + k, mask=cmask, other=0.0).to(tl.float32)
            z += xv * wv
    else:
        z = tl.load(row + t * sxt, mask=cmask & tmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        z += tl.load(bias_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    if SLOPE_PER_CHANNEL:
        sl = tl.load(slope_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    else:
        sl = tl.load(slope_ptr).to(tl.float32)
    a = tl.where(z > 0, z, sl * z)
    return z, a, sl


# ------------------------------------------------------------------------------------------
# fused conv + PReLU + norm: forward
# ------------------------------------------------------------------------------------------
@triton.jit
def _frame_stats(x_ptr, w_ptr, bias_ptr, slope_ptr, mean_ptr, m2_ptr,
                 C, T_in, T, PAD_L, DIL, sxb, sxc, sxt, CPS,
                 K: tl.constexpr, HAS_CONV: tl.constexpr, HAS_BIAS: tl.constexpr,
                 SLOPE_PER_CHANNEL: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """Per frame and channel split ``s`` (channels ``s*CPS .. s*CPS+CPS-1``): mean and
    centred sum of squares of ``a``, written to ``[B, S, T]``."""
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)[None, :]
    tmask = t < T
    mean = tl.zeros([BT], tl.float32)
    m2 = tl.zeros([BT], tl.float32)
    c_start = pid_s * CPS
    c_end = tl.minimum(c_start + CPS, C)
    for c0 in range(c_start, c_end, BC):
        c = c0 + tl.arange(0, BC)[:, None]
        cmask = c < c_end
        z, a, sl = _conv_prelu_tile(x_ptr, w_ptr, bias_ptr, slope_ptr, b, c, t, cmask, tmask,
                                    T_in, PAD_L, DIL, sxb, sxc, sxt,
                                    K, HAS_CONV, HAS_BIAS, SLOPE_PER_CHANNEL, BC, BT)
        m = cmask & tmask
        a = tl.where(m, a, 0.0)
        nb = tl.minimum(c_end - c0, BC) * 1.0
        na = (c0 - c_start) * 1.0
        cmean = tl.sum(a, 0) / nb
        d = tl.where(m, a - cmean[None, :], 0.0)
        cm2 = tl.sum(d * d, 0)
        delta = cmean - mean
        n = na + nb
        mean += delta * (nb / n)
        m2 += cm2 + delta * delta * (na * nb / n)
    tt = pid_t * BT + tl.arange(0, BT)
    out = (b * tl.num_programs(1) + pid_s) * T + tt
    tl.store(mean_ptr + out, mean, mask=tt < T)
    tl.store(m2_ptr + out, m2, mask=tt < T)


@triton.jit
def _merge_splits(mean_ptr, m2_ptr, b, t, tm, C, T, S, CPS):
    """Chan merge of the ``S`` channel splits of frames ``t``: (mean, centred sum of squares)."""
    mean = tl.load(mean_ptr + b * S * T + t, mask=tm, other=0.0)
    m2 = tl.load(m2_ptr + b * S * T + t, mask=tm, other=0.0)
    for s in range(1, S):
        na = (s * CPS) * 1.0
        nb = tl.minimum(C - s * CPS, CPS) * 1.0
        ms = tl.load(mean_ptr + (b * S + s) * T + t, mask=tm, other=0.0)
        m2s = tl.load(m2_ptr + (b * S + s) * T + t, mask=tm, other=0.0)
        delta = ms - mean
        n = na + nb
        mean += delta * (nb / n)
        m2 += m2s + delta * delta * (na * nb / n)
    return mean, m2


@triton.jit
def _finish_stats(mean_ptr, m2_ptr, mu_ptr, rstd_ptr, C, T, S, CPS, eps,
                  NORM: tl.constexpr, BT: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    one64 = tl.full([], 1.0, tl.float64)
    Cf = C * one64
    if NORM == 0:  # gLN: one mean / variance per example (Chan merge of the frames, float64)
        acc = tl.zeros([BT], tl.float64)
        for t0 in range(0, T, BT):
            t = t0 + tl.arange(0, BT)
            mt, m2 = _merge_splits(mean_ptr, m2_ptr, b, t, t < T, C, T, S, CPS)
            acc += mt.to(tl.float64)
        mu = tl.sum(acc, 0) / (T * one64)
        acc2 = tl.zeros([BT], tl.float64)
        for t0 in range(0, T, BT):
            t = t0 + tl.arange(0, BT)
            tm = t < T
            mt, m2 = _merge_splits(mean_ptr, m2_ptr, b, t, tm, C, T, S, CPS)
            mt = mt.to(tl.float64)
            m2 = m2.to(tl.float64)
            d = mt - mu
            acc2 += tl.where(tm, m2 + Cf * d * d, 0.0)
        var = tl.sum(acc2, 0) / (Cf * (T * one64))
        rstd = 1.0 / tl.sqrt(var + eps)
        tl.store(mu_ptr + b, mu.to(tl.float32))
        tl.store(rstd_ptr + b, rstd.to(tl.float32))
    elif NORM == 1:  # cLN: running sums over channels and frames 0..t, float64
        carry1 = tl.sum(tl.zeros([BT], tl.float64), 0)
        carry2 = tl.sum(tl.zeros([BT], tl.float64), 0)
        for t0 in range(0, T, BT):
            t = t0 + tl.arange(0, BT)
            tm = t < T
            mt, m2 = _merge_splits(mean_ptr, m2_ptr, b, t, tm, C, T, S, CPS)
            mt = mt.to(tl.float64)
            m2 = m2.to(tl.float64)
            s1 = Cf * mt
            s2 = m2 + Cf * mt * mt
            cs1 = tl.cumsum(s1, 0) + carry1
            cs2 = tl.cumsum(s2, 0) + carry2
            carry1 += tl.sum(s1, 0)
            carry2 += tl.sum(s2, 0)
            count = Cf * (t + 1).to(tl.float64)
            mu = cs1 / count
            var = tl.maximum(cs2 / count - mu * mu, 0.0)
            rstd = 1.0 / tl.sqrt(var + eps)
            tl.store(mu_ptr + b * T + t, mu.to(tl.float32), mask=tm)
            tl.store(rstd_ptr + b * T + t, rstd.to(tl.float32), mask=tm)
    else:  # chanLN: each frame over its channels
        for t0 in range(0, T, BT):
            t = t0 + tl.arange(0, BT)
            tm = t < T
            mt, m2 = _merge_splits(mean_ptr, m2_ptr, b, t, tm, C, T, S, CPS)
            rstd = 1.0 / tl.sqrt(m2 / (C * 1.0) + eps)
            tl.store(mu_ptr + b * T + t, mt, mask=tm)
            tl.store(rstd_ptr + b * T + t, rstd, mask=tm)


@triton.jit
def _norm_apply(x_ptr, w_ptr, bias_ptr, slope_ptr, mu_ptr, rstd_ptr, nw_ptr, nb_ptr, y_ptr,
                C, T_in, T, PAD_L, DIL, sxb, sxc, sxt, STAT_T,
                K: tl.constexpr, HAS_CONV: tl.constexpr, HAS_BIAS: tl.constexpr,
                SLOPE_PER_CHANNEL: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = pid_c * BC + tl.arange(0, BC)[:, None]
    t = pid_t * BT + tl.arange(0, BT)[None, :]
    cmask = c < C
    tmask = t < T
    z, a, sl = _conv_prelu_tile(x_ptr, w_ptr, bias_ptr, slope_ptr, b, c, t, cmask, tmask,
                                T_in, PAD_L, DIL, sxb, sxc, sxt,
                                K, HAS_CONV, HAS_BIAS, SLOPE_PER_CHANNEL, BC, BT)
    stat = b * (T * STAT_T + 1 - STAT_T) + t * STAT_T  # [B, T] per frame, [B] per example
    mu = tl.load(mu_ptr + stat, mask=tmask, other=0.0)
    rstd = tl.load(rstd_ptr + stat, mask=tmask, other=0.0)
    gamma = tl.load(nw_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    beta = tl.load(nb_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    y = tl.fma(a - mu, rstd * gamma, beta)  # one rounding (beta is the same for a whole row)
    tl.store(y_ptr + b * C * T + c * T + t, y.to(y_ptr.dtype.element_ty), mask=cmask & tmask)


# ------------------------------------------------------------------------------------------
# fused conv + PReLU + norm: backward
# ------------------------------------------------------------------------------------------
@triton.jit
def _bwd_frame_reduce(x_ptr, w_ptr, bias_ptr, slope_ptr, mu_ptr, rstd_ptr, nw_ptr, dy_ptr,
                      g_ptr, h_ptr, C, T_in, T, PAD_L, DIL, sxb, sxc, sxt, STAT_T, CPS,
                      K: tl.constexpr, HAS_CONV: tl.constexpr, HAS_BIAS: tl.constexpr,
                      SLOPE_PER_CHANNEL: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)[None, :]
    tmask = t < T
    stat = b * (T * STAT_T + 1 - STAT_T) + t * STAT_T
    mu = tl.load(mu_ptr + stat, mask=tmask, other=0.0)
    rstd = tl.load(rstd_ptr + stat, mask=tmask, other=0.0)
    gsum = tl.zeros([BT], tl.float32)
    hsum = tl.zeros([BT], tl.float32)
    c_start = pid_s * CPS
    c_end = tl.minimum(c_start + CPS, C)
    for c0 in range(c_start, c_end, BC):
        c = c0 + tl.arange(0, BC)[:, None]
        cmask = c < c_end
        m = cmask & tmask
        z, a, sl = _conv_prelu_tile(x_ptr, w_ptr, bias_ptr, slope_ptr, b, c, t, cmask, tmask,
                                    T_in, PAD_L, DIL, sxb, sxc, sxt,
                                    K, HAS_CONV, HAS_BIAS, SLOPE_PER_CHANNEL, BC, BT)
        gamma = tl.load(nw_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + b * C * T + c * T + t, mask=m, other=0.0).to(tl.float32)
        g = dy * gamma
        n = (a - mu) * rstd
        gsum += tl.sum(g, 0)
        hsum += tl.sum(tl.where(m, g * n, 0.0), 0)
    tt = pid_t * BT + tl.arange(0, BT)
    out = (b * tl.num_programs(1) + pid_s) * T + tt
    tl.store(g_ptr + out, gsum, mask=tt < T)
    tl.store(h_ptr + out, hsum, mask=tt < T)


@triton.jit
def _sum_splits(g_ptr, h_ptr, b, t, tm, T, S):
    gs = tl.load(g_ptr + b * S * T + t, mask=tm, other=0.0)
    hs = tl.load(h_ptr + b * S * T + t, mask=tm, other=0.0)
    for s in range(1, S):
        gs += tl.load(g_ptr + (b * S + s) * T + t, mask=tm, other=0.0)
        hs += tl.load(h_ptr + (b * S + s) * T + t, mask=tm, other=0.0)
    return gs, hs


@triton.jit
def _bwd_finish(g_ptr, h_ptr, mu_ptr, rstd_ptr, p_ptr, q_ptr, C, T, S,
                NORM: tl.constexpr, BT: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    one64 = tl.full([], 1.0, tl.float64)
    Cf = C * one64
    if NORM == 0:  # gLN
        ga = tl.zeros([BT], tl.float64)
        ha = tl.zeros([BT], tl.float64)
        for t0 in range(0, T, BT):
            t = t0 + tl.arange(0, BT)
            gs, hs = _sum_splits(g_ptr, h_ptr, b, t, t < T, T, S)
            ga += gs.to(tl.float64)
            ha += hs.to(tl.float64)
        r = tl.load(rstd_ptr + b).to(tl.float64)
        count = Cf * (T * one64)
        tl.store(p_ptr + b, (-r * tl.sum(ga, 0) / count).to(tl.float32))
        tl.store(q_ptr + b, (-r * r * tl.sum(ha, 0) / count).to(tl.float32))
    elif NORM == 1:  # cLN: reverse cumulative sums, last chunk first
        carry_a = tl.sum(tl.zeros([BT], tl.float64), 0)
        carry_b = tl.sum(tl.zeros([BT], tl.float64), 0)
        n_chunks = tl.cdiv(T, BT)
        for i in range(0, n_chunks):
            t = (n_chunks - 1 - i) * BT + tl.arange(0, BT)
            tm = t < T
            gs, hs = _sum_splits(g_ptr, h_ptr, b, t, tm, T, S)
            gs = gs.to(tl.float64)
            hs = hs.to(tl.float64)
            mu = tl.load(mu_ptr + b * T + t, mask=tm, other=0.0).to(tl.float64)
            r = tl.load(rstd_ptr + b * T + t, mask=tm, other=0.0).to(tl.float64)
            count = Cf * (t + 1).to(tl.float64)
            dvar = -0.5 * r * r * hs
            ds2 = tl.where(tm, dvar / count, 0.0)  # dL / d(sum of x^2 up to t)
            ds1 = tl.where(tm, (-r * gs - 2.0 * mu * dvar) / count, 0.0)  # dL / d(sum of x)
            acc_a = tl.cumsum(ds1, 0, reverse=True) + carry_a
            acc_b = tl.cumsum(ds2, 0, reverse=True) + carry_b
            carry_a += tl.sum(ds1, 0)
            carry_b += tl.sum(ds2, 0)
            tl.store(p_ptr + b * T + t, (acc_a + 2.0 * mu * acc_b).to(tl.float32), mask=tm)
            tl.store(q_ptr + b * T + t, (2.0 * acc_b).to(tl.float32), mask=tm)
    else:  # chanLN
        for t0 in range(0, T, BT):
            t = t0 + tl.arange(0, BT)
            tm = t < T
            gs, hs = _sum_splits(g_ptr, h_ptr, b, t, tm, T, S)
            r = tl.load(rstd_ptr + b * T + t, mask=tm, other=0.0)
            inv_c = 1.0 / (C * 1.0)
            tl.store(p_ptr + b * T + t, -r * gs * inv_c, mask=tm)
            tl.store(q_ptr + b * T + t, -r * r * hs * inv_c, mask=tm)


@triton.jit
def _bwd_elementwise(x_ptr, w_ptr, bias_ptr, slope_ptr, mu_ptr, rstd_ptr, p_ptr, q_ptr,
                     nw_ptr, dy_ptr, dz_ptr, part_ptr,
                     C, T_in, T, PAD_L, DIL, sxb, sxc, sxt, STAT_T,
                     K: tl.constexpr, HAS_CONV: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SLOPE_PER_CHANNEL: tl.constexpr, NP: tl.constexpr, BC: tl.constexpr,
                     BT: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = pid_c * BC + tl.arange(0, BC)[:, None]
    t = pid_t * BT + tl.arange(0, BT)[None, :]
    cmask = c < C
    tmask = t < T
    m = cmask & tmask
    z, a, sl = _conv_prelu_tile(x_ptr, w_ptr, bias_ptr, slope_ptr, b, c, t, cmask, tmask,
                                T_in, PAD_L, DIL, sxb, sxc, sxt,
                                K, HAS_CONV, HAS_BIAS, SLOPE_PER_CHANNEL, BC, BT)
    stat = b * (T * STAT_T + 1 - STAT_T) + t * STAT_T
    mu = tl.load(mu_ptr + stat, mask=tmask, other=0.0)
    rstd = tl.load(rstd_ptr + stat, mask=tmask, other=0.0)
    p = tl.load(p_ptr + stat, mask=tmask, other=0.0)
    q = tl.load(q_ptr + stat, mask=tmask, other=0.0)
    gamma = tl.load(nw_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + b * C * T + c * T + t, mask=m, other=0.0).to(tl.float32)
    centred = a - mu
    # one rounding per term (fma): P is the same for a whole example (gLN) or frame, so
    # fl(fl(rstd g) + P) would round every element the same way, a bias that the slope's
    # sum over B*C*T elements accumulates (issue 23: 8-100x eager's error on the slope)
    da = tl.fma(rstd * gamma, dy, tl.fma(q, centred, p))
    dz = tl.where(z > 0, da, sl * da)
    tl.store(dz_ptr + b * C * T + c * T + t, dz.to(dz_ptr.dtype.element_ty), mask=m)
    # per-tile partial sums [NP, C]: d gamma, d beta, d slope, d conv bias, d conv weight (K taps)
    dz = tl.where(m, dz, 0.0)
    row = (b * tl.num_programs(0) + pid_t) * NP * C
    cc = pid_c * BC + tl.arange(0, BC)
    ccm = cc < C
    tl.store(part_ptr + row + cc, tl.sum(tl.where(m, dy * centred * rstd, 0.0), 1), mask=ccm)
    tl.store(part_ptr + row + C + cc, tl.sum(dy, 1), mask=ccm)
    tl.store(part_ptr + row + 2 * C + cc, tl.sum(tl.where(m & (z <= 0), da * z, 0.0), 1), mask=ccm)
    tl.store(part_ptr + row + 3 * C + cc, tl.sum(dz, 1), mask=ccm)
    if HAS_CONV:  # the taps this tile read to recompute z (cache hits)
        xrow = x_ptr + b * sxb + c * sxc
        for k in tl.static_range(K):
            s = t - PAD_L + k * DIL
            xv = tl.load(xrow + s * sxt, mask=m & (s >= 0) & (s < T_in), other=0.0).to(tl.float32)
            tl.store(part_ptr + row + (4 + k) * C + cc, tl.sum(dz * xv, 1), mask=ccm)


# ------------------------------------------------------------------------------------------
# (grouped) depthwise conv: out channel c reads input channels c*G .. c*G + G - 1
# ------------------------------------------------------------------------------------------
@triton.jit
def _dwconv_fwd(x_ptr, w_ptr, bias_ptr, y_ptr, C, G, T_in, T_out, PAD_L, DIL,
                sxb, sxc, sxt, syb, syc, syt,
                K: tl.constexpr, HAS_BIAS: tl.constexpr, RESIDUAL: tl.constexpr,
                BC: tl.constexpr, BT: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    c = pid_c * BC + tl.arange(0, BC)[:, None]
    t = pid_t * BT + tl.arange(0, BT)[None, :]
    cmask = c < C
    tmask = t < T_out
    acc = tl.zeros([BC, BT], tl.float32)
    for g in range(0, G):
        row = x_ptr + b * sxb + (c * G + g) * sxc
        for k in tl.static_range(K):
            s = t - PAD_L + k * DIL
            m = cmask & tmask & (s >= 0) & (s < T_in)
            xv = tl.load(row + s * sxt, mask=m, other=0.0).to(tl.float32)
            wv = tl.load(w_ptr + (c * G + g) * K + k, mask=cmask, other=0.0).to(tl.float32)
            acc += xv * wv
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    if RESIDUAL:
        acc += tl.load(x_ptr + b * sxb + c * sxc + t * sxt, mask=cmask & tmask, other=0.0).to(tl.float32)
    tl.store(y_ptr + b * syb + c * syc + t * syt, acc.to(y_ptr.dtype.element_ty), mask=cmask & tmask)


@triton.jit
def _dwconv_bwd_input(dy_ptr, w_ptr, dx_ptr, CI, G, T_in, T_out, PAD_L, DIL,
                      sdb, sdc, sdt, sxb, sxc, sxt,
                      K: tl.constexpr, RESIDUAL: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    ci = pid_c * BC + tl.arange(0, BC)[:, None]  # input channel
    s = pid_t * BT + tl.arange(0, BT)[None, :]  # input frame
    cmask = ci < CI
    smask = s < T_in
    co = ci // G
    row = dy_ptr + b * sdb + co * sdc
    acc = tl.zeros([BC, BT], tl.float32)
    for k in tl.static_range(K):
        t = s + PAD_L - k * DIL
        m = cmask & smask & (t >= 0) & (t < T_out)
        dv = tl.load(row + t * sdt, mask=m, other=0.0).to(tl.float32)
        wv = tl.load(w_ptr + ci * K + k, mask=cmask, other=0.0).to(tl.float32)
        acc += dv * wv
    if RESIDUAL:
        acc += tl.load(dy_ptr + b * sdb + ci * sdc + s * sdt, mask=cmask & smask, other=0.0).to(tl.float32)
    tl.store(dx_ptr + b * sxb + ci * sxc + s * sxt, acc.to(dx_ptr.dtype.element_ty), mask=cmask & smask)


@triton.jit
def _dwconv_bwd_weight(dy_ptr, x_ptr, part_ptr, C, G, B, T_in, T_out, PAD_L, DIL, T_SPLIT,
                       sdb, sdc, sdt, sxb, sxc, sxt,
                       K: tl.constexpr, KP: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """Partial weight gradients over the frames of one split:
    ``part[split, b, c, g, k] = sum_t dy[b, c, t] * x[b, c*G + g, t - PAD_L + k*DIL]``
    (``dy`` read once; the ``K`` shifted ``x`` tiles overlap, so they come from cache)."""
    pid_s = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_z = tl.program_id(2)  # (b, g)
    g = pid_z % G
    b = (pid_z // G).to(tl.int64)
    c = pid_c * BC + tl.arange(0, BC)[:, None]
    cmask = c < C
    kk = tl.arange(0, KP)[None, :]
    acc = tl.zeros([BC, KP], tl.float32)
    t_start = pid_s * T_SPLIT
    t_end = tl.minimum(t_start + T_SPLIT, T_out)
    xrow = x_ptr + b * sxb + (c * G + g) * sxc
    for t0 in range(t_start, t_end, BT):
        t = t0 + tl.arange(0, BT)[None, :]
        tm = t < t_end
        dv = tl.load(dy_ptr + b * sdb + c * sdc + t * sdt, mask=cmask & tm, other=0.0).to(tl.float32)
        for k in tl.static_range(K):
            s = t - PAD_L + k * DIL
            xv = tl.load(xrow + s * sxt, mask=cmask & tm & (s >= 0) & (s < T_in), other=0.0).to(tl.float32)
            acc += tl.where(kk == k, tl.sum(dv * xv, 1)[:, None], 0.0)
    out = ((pid_s * B + b) * C + c) * (G * K) + g * K + kk
    tl.store(part_ptr + out, acc, mask=cmask & (kk < K))


#: whether these kernels were decorated under TRITON_INTERPRET=1 (run on CPU tensors)
INTERPRETED = type(_norm_apply).__name__ == "InterpretedFunction"


# ------------------------------------------------------------------------------------------
# launch helpers
# ------------------------------------------------------------------------------------------
def _grid_tiles(T: int, C: int, B: int):
    return (triton.cdiv(T, BLOCK_T), triton.cdiv(C, BLOCK_C), B)


def _as_bct(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``[B, C, T]`` view of ``x`` (``[B, T, C]`` when ``channels_last``), no copy."""
    return x.transpose(1, 2) if channels_last else x


def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias, dilation: int, pad_l: int,
                 t_out: int, residual: bool, out: torch.Tensor) -> torch.Tensor:
    """``out [B, C, T_out]`` (any strides) = grouped depthwise conv of ``x [B, C*G, T_in]``."""
    B, CI, T_in = x.shape
    C, G, K = weight.shape
    _dwconv_fwd[_grid_tiles(t_out, C, B)](
        x, weight, bias if bias is not None else weight, out, C, G, T_in, t_out, pad_l, dilation,
        *x.stride(), *out.stride(), K=K, HAS_BIAS=bias is not None, RESIDUAL=residual,
        BC=BLOCK_C, BT=BLOCK_T, num_warps=NUM_WARPS)
    return out


def conv_backward_input(dy: torch.Tensor, weight: torch.Tensor, dilation: int, pad_l: int,
                        t_in: int, residual: bool, out: torch.Tensor) -> torch.Tensor:
    B, C, T_out = dy.shape
    _, G, K = weight.shape
    _dwconv_bwd_input[_grid_tiles(t_in, C * G, B)](
        dy, weight, out, C * G, G, t_in, T_out, pad_l, dilation, *dy.stride(), *out.stride(),
        K=K, RESIDUAL=residual, BC=BLOCK_C, BT=BLOCK_T, num_warps=NUM_WARPS)
    return out


def conv_backward_weight(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dilation: int,
                         pad_l: int) -> torch.Tensor:
    B, C, T_out = dy.shape
    _, G, K = weight.shape
    # enough (split, channel block, b·g·k) programs to fill a GPU; each sums T_SPLIT frames
    n_split = max(1, min(triton.cdiv(T_out, BLOCK_T), 16))
    t_split = triton.cdiv(triton.cdiv(T_out, n_split), BLOCK_T) * BLOCK_T
    n_split = triton.cdiv(T_out, t_split) if T_out else 1
    part = torch.zeros(n_split * B, C, G * K, device=dy.device, dtype=torch.float32)
    if T_out:
        _dwconv_bwd_weight[(n_split, triton.cdiv(C, BLOCK_C), B * G)](
            dy, x, part, C, G, B, x.shape[-1], T_out, pad_l, dilation, t_split,
            *dy.stride(), *x.stride(), K=K, KP=triton.next_power_of_2(K), BC=BLOCK_C, BT=BLOCK_T,
            num_warps=NUM_WARPS)
    return part.sum(0, dtype=torch.float64).view(C, G, K).to(weight.dtype)  # second stage: float64


# ------------------------------------------------------------------------------------------
# the ops, registered with torch.library (so autograd, torch.compile and torch.export see
# them as ops: a fake implementation gives their output shapes, the backward is an op too)
# ------------------------------------------------------------------------------------------
def _empty(like: torch.Tensor) -> torch.Tensor:
    """The placeholder an op returns for a gradient nobody asked for (ops return tensors)."""
    return like.new_empty(0)


def _conv_out_frames(t_in: int, weight: torch.Tensor, dilation: int, pad_l: int, pad_r: int) -> int:
    return t_in + pad_l + pad_r - (weight.shape[-1] - 1) * dilation


@torch.library.custom_op("audiomask::depthwise_conv1d", mutates_args=())
def _depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int,
                      pad_l: int, pad_r: int, channels_last: bool, residual: bool) -> torch.Tensor:
    """Grouped depthwise conv (``groups = C``, ``G`` inputs per output channel) of ``x [B, C·G,
    T]`` (``[B, T, C·G]`` with ``channels_last``), padding by masked loads (no padded copy),
    optional residual ``x + conv(x)``."""
    xv = _as_bct(x, channels_last)
    B, C = xv.shape[0], weight.shape[0]
    t_out = _conv_out_frames(xv.shape[-1], weight, dilation, pad_l, pad_r)
    y = x.new_empty((B, t_out, C) if channels_last else (B, C, t_out))
    conv_forward(xv, weight.contiguous(), bias.contiguous() if bias is not None else None, dilation, pad_l,
                 t_out, residual, _as_bct(y, channels_last))
    return y


@_depthwise_conv1d.register_fake
def _(x, weight, bias, dilation, pad_l, pad_r, channels_last, residual):
    B, C = x.shape[0], weight.shape[0]
    t_out = _conv_out_frames(x.shape[1 if channels_last else 2], weight, dilation, pad_l, pad_r)
    return x.new_empty((B, t_out, C) if channels_last else (B, C, t_out))


@torch.library.custom_op("audiomask::depthwise_conv1d_backward", mutates_args=())
def _depthwise_conv1d_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dilation: int, pad_l: int,
                               channels_last: bool, residual: bool, want_input: bool,
                               want_weight: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dx, dweight)`` of :func:`_depthwise_conv1d` (empty where not wanted)."""
    weight = weight.contiguous()
    xv, dyv = _as_bct(x, channels_last), _as_bct(dy, channels_last)
    dx, dw = _empty(x), _empty(weight)
    if want_input:
        dx = torch.empty_like(x, memory_format=torch.contiguous_format)
        conv_backward_input(dyv, weight, dilation, pad_l, xv.shape[-1], residual, _as_bct(dx, channels_last))
    if want_weight:
        dw = conv_backward_weight(dyv, xv, weight, dilation, pad_l)
    return dx, dw


@_depthwise_conv1d_backward.register_fake
def _(dy, x, weight, dilation, pad_l, channels_last, residual, want_input, want_weight):
    return (torch.empty_like(x, memory_format=torch.contiguous_format) if want_input else _empty(x),
            torch.empty_like(weight) if want_weight else _empty(weight))


def _depthwise_conv1d_setup(ctx, inputs, output):
    x, weight, bias, dilation, pad_l, pad_r, channels_last, residual = inputs
    ctx.save_for_backward(x, weight)
    ctx.conf = (dilation, pad_l, channels_last, residual)


def _depthwise_conv1d_grad(ctx, dy):
    x, weight = ctx.saved_tensors
    dilation, pad_l, channels_last, residual = ctx.conf
    want_x, want_w, want_b = ctx.needs_input_grad[:3]
    dx, dw = _depthwise_conv1d_backward(dy, x, weight, dilation, pad_l, channels_last, residual, want_x, want_w)
    db = _as_bct(dy, channels_last).sum((0, 2)) if want_b else None
    return dx if want_x else None, dw if want_w else None, db, None, None, None, None, None


_depthwise_conv1d.register_autograd(_depthwise_conv1d_grad, setup_context=_depthwise_conv1d_setup)


def depthwise_conv1d(x, weight, bias, dilation: int, pad_l: int, pad_r: int, channels_last: bool,
                     residual: bool) -> torch.Tensor:
    """``audiomask::depthwise_conv1d`` (the dispatch in :mod:`audiomask.kernels` calls this)."""
    return _depthwise_conv1d(x, weight, bias, dilation, pad_l, pad_r, channels_last, residual)


def _fused_conf(x, dw_weight, dw_bias, prelu_weight, dilation, pad_l, pad_r):
    B, C, T_in = x.shape
    has_conv = dw_weight is not None
    K = dw_weight.shape[-1] if has_conv else 1
    T = _conv_out_frames(T_in, dw_weight, dilation, pad_l, pad_r) if has_conv else T_in
    return dict(K=K, HAS_CONV=has_conv, HAS_BIAS=dw_bias is not None,
                SLOPE_PER_CHANNEL=prelu_weight.numel() > 1), B, C, T_in, T


@torch.library.custom_op("audiomask::conv_prelu_norm", mutates_args=())
def _conv_prelu_norm(x: torch.Tensor, dw_weight: Optional[torch.Tensor], dw_bias: Optional[torch.Tensor],
                     prelu_weight: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor,
                     dilation: int, pad_l: int, pad_r: int, norm: str,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mu, rstd)``: ``y = norm(prelu(depthwise_conv(x) + bias))`` on ``[B, C, T]`` and the
    norm's statistics (``[B, 1]`` for gLN, ``[B, T]`` per frame), which the backward reads. The
    conv is optional (``dw_weight=None``: :func:`prelu_norm`)."""
    x = x.contiguous()
    dw_weight = dw_weight.contiguous() if dw_weight is not None else None
    dw_bias = dw_bias.contiguous() if dw_bias is not None else None
    prelu_weight, norm_weight, norm_bias = (prelu_weight.contiguous(), norm_weight.contiguous(),
                                            norm_bias.contiguous())
    flags, B, C, T_in, T = _fused_conf(x, dw_weight, dw_bias, prelu_weight, dilation, pad_l, pad_r)
    code = NORM_CODES[norm]
    dev = x.device
    w_arg = dw_weight if dw_weight is not None else x
    b_arg = dw_bias if dw_bias is not None else x
    cps = CHANNELS_PER_SPLIT
    n_split = triton.cdiv(C, cps)
    frame_mean = torch.empty(B, n_split, T, device=dev, dtype=torch.float32)
    frame_m2 = torch.empty_like(frame_mean)
    per_frame = code != 0
    mu = torch.empty(B, T if per_frame else 1, device=dev, dtype=torch.float32)
    rstd = torch.empty_like(mu)
    common = (C, T_in, T, pad_l, dilation, *x.stride())
    _frame_stats[(triton.cdiv(T, RED_BLOCK_T), n_split, B)](
        x, w_arg, b_arg, prelu_weight, frame_mean, frame_m2, *common, cps,
        BC=RED_BLOCK_C, BT=RED_BLOCK_T, num_warps=NUM_WARPS, **flags)
    _finish_stats[(B,)](frame_mean, frame_m2, mu, rstd, C, T, n_split, cps, eps,
                        NORM=code, BT=FIN_BLOCK_T, num_warps=NUM_WARPS)
    y = torch.empty(B, C, T, device=dev, dtype=x.dtype)
    _norm_apply[_grid_tiles(T, C, B)](
        x, w_arg, b_arg, prelu_weight, mu, rstd, norm_weight, norm_bias, y, *common, int(per_frame),
        BC=BLOCK_C, BT=BLOCK_T, num_warps=NUM_WARPS, **flags)
    return y, mu, rstd


@_conv_prelu_norm.register_fake
def _(x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, dilation, pad_l, pad_r, norm, eps):
    B, C, T_in = x.shape
    T = _conv_out_frames(T_in, dw_weight, dilation, pad_l, pad_r) if dw_weight is not None else T_in
    stats = x.new_empty(B, T if NORM_CODES[norm] else 1, dtype=torch.float32)
    return x.new_empty(B, C, T), stats, torch.empty_like(stats)


@torch.library.custom_op("audiomask::conv_prelu_norm_backward", mutates_args=())
def _conv_prelu_norm_backward(dy: torch.Tensor, x: torch.Tensor, dw_weight: Optional[torch.Tensor],
                              dw_bias: Optional[torch.Tensor], prelu_weight: torch.Tensor,
                              norm_weight: torch.Tensor, norm_bias: torch.Tensor, mu: torch.Tensor,
                              rstd: torch.Tensor, dilation: int, pad_l: int, pad_r: int, norm: str,
                              want_input: bool, want_weight: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                            torch.Tensor, torch.Tensor,
                                                                            torch.Tensor, torch.Tensor]:
    """``(dx, d dw_weight, d dw_bias, d prelu_weight, d norm_weight, d norm_bias)`` of
    :func:`_conv_prelu_norm` (empty where not wanted or absent)."""
    x = x.contiguous()
    dw_weight = dw_weight.contiguous() if dw_weight is not None else None
    dw_bias = dw_bias.contiguous() if dw_bias is not None else None
    prelu_weight, norm_weight = prelu_weight.contiguous(), norm_weight.contiguous()
    code = NORM_CODES[norm]
    flags, B, C, T_in, T = _fused_conf(x, dw_weight, dw_bias, prelu_weight, dilation, pad_l, pad_r)
    dy = dy.contiguous()
    dev = x.device
    w_arg = dw_weight if dw_weight is not None else x
    b_arg = dw_bias if dw_bias is not None else x
    per_frame = code != 0
    common = (C, T_in, T, pad_l, dilation, *x.stride())
    cps = CHANNELS_PER_SPLIT
    n_split = triton.cdiv(C, cps)
    gsum = torch.empty(B, n_split, T, device=dev, dtype=torch.float32)
    hsum = torch.empty_like(gsum)
    _bwd_frame_reduce[(triton.cdiv(T, RED_BLOCK_T), n_split, B)](
        x, w_arg, b_arg, prelu_weight, mu, rstd, norm_weight, dy, gsum, hsum, *common, int(per_frame), cps,
        BC=RED_BLOCK_C, BT=RED_BLOCK_T, num_warps=NUM_WARPS, **flags)
    p = torch.empty_like(mu)
    q = torch.empty_like(mu)
    _bwd_finish[(B,)](gsum, hsum, mu, rstd, p, q, C, T, n_split, NORM=code, BT=FIN_BLOCK_T,
                      num_warps=NUM_WARPS)
    has_conv = dw_weight is not None
    K = flags["K"]
    n_part = 4 + K if has_conv else 4
    dz = torch.empty(B, C, T, device=dev, dtype=torch.float32 if has_conv else x.dtype)
    grid = _grid_tiles(T, C, B)
    part = torch.empty(B * grid[0], n_part, C, device=dev, dtype=torch.float32)
    _bwd_elementwise[grid](
        x, w_arg, b_arg, prelu_weight, mu, rstd, p, q, norm_weight, dy, dz, part, *common, int(per_frame),
        NP=n_part, BC=BLOCK_C, BT=BLOCK_T, num_warps=NUM_WARPS, **flags)
    # second stage of the two-stage reductions (float32 per tile, then float64 across
    # tiles and, for a single slope, channels): accurate over 10^7 elements
    sums = part.sum(0, dtype=torch.float64)  # [NP, C]
    d_gamma = sums[0].to(norm_weight.dtype)
    d_beta = sums[1].to(norm_bias.dtype)
    d_slope = (sums[2] if prelu_weight.numel() > 1 else sums[2].sum().view(1)).to(prelu_weight.dtype)
    d_slope = d_slope.view(prelu_weight.shape)
    dx, d_w, d_b = _empty(x), _empty(x), _empty(x)
    if has_conv:
        if want_input:
            dx = torch.empty_like(x)
            conv_backward_input(dz, dw_weight, dilation, pad_l, T_in, False, dx)
        if want_weight:
            d_w = sums[4:].t().reshape(dw_weight.shape).to(dw_weight.dtype)
        if dw_bias is not None:
            d_b = sums[3].to(dw_bias.dtype)
    else:
        dx = dz
    return dx, d_w, d_b, d_slope, d_gamma, d_beta


@_conv_prelu_norm_backward.register_fake
def _(dy, x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, mu, rstd, dilation, pad_l, pad_r,
      norm, want_input, want_weight):
    has_conv = dw_weight is not None
    dx = torch.empty_like(x, memory_format=torch.contiguous_format) if want_input or not has_conv else _empty(x)
    d_w = dw_weight.new_empty(dw_weight.shape) if has_conv and want_weight else _empty(x)
    d_b = dw_bias.new_empty(dw_bias.shape) if has_conv and dw_bias is not None else _empty(x)
    return (dx, d_w, d_b, prelu_weight.new_empty(prelu_weight.shape), norm_weight.new_empty(norm_weight.shape),
            norm_bias.new_empty(norm_bias.shape))


def _conv_prelu_norm_setup(ctx, inputs, output):
    x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, dilation, pad_l, pad_r, norm, eps = inputs
    _, mu, rstd = output
    ctx.save_for_backward(x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, mu, rstd)
    ctx.conf = (dilation, pad_l, pad_r, norm)


def _conv_prelu_norm_grad(ctx, dy, _dmu, _drstd):
    x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, mu, rstd = ctx.saved_tensors
    dilation, pad_l, pad_r, norm = ctx.conf
    need = ctx.needs_input_grad
    grads = _conv_prelu_norm_backward(dy, x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, mu, rstd,
                                      dilation, pad_l, pad_r, norm, need[0], need[1])
    wanted = (need[0], need[1] and dw_weight is not None, need[2] and dw_bias is not None) + tuple(need[3:6])
    return tuple(g if w else None for g, w in zip(grads, wanted)) + (None,) * 5


_conv_prelu_norm.register_autograd(_conv_prelu_norm_grad, setup_context=_conv_prelu_norm_setup)


def conv_prelu_norm(x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, dilation: int, pad_l: int,
                    pad_r: int, norm: str, eps: float) -> torch.Tensor:
    """``y`` of ``audiomask::conv_prelu_norm`` (the dispatch in :mod:`audiomask.kernels` calls this)."""
    return _conv_prelu_norm(x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias, dilation, pad_l, pad_r,
                            norm, eps)[0]
