/* audiomask.native._lib: small CPU kernels (this file: the streaming cLN/depthwise steps and the gLN passes), called through ctypes
 * (see audiomask/native/__init__.py). Built by setup.py as an optional extension: without a C compiler
 * the package installs without it and the same computations run as PyTorch ops.
 *
 * am_cln_step_f32: cumulative layer norm of the next F frames of a frames-major stream
 *   x [B, F, C] float32 (contiguous), optionally through a PReLU of one slope first, given and
 *   updating the running sums state [B, 3] float64 = (sum x, sum x^2, number of values), with
 *   the per-channel affine weight/bias [C]; writes out [B, F, C]. One pass per frame: the
 *   frame's sums (float64), the running mean and 1/sqrt(var + eps), then
 *   (x - mean) * inv * weight + bias.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

AM_CLONES AM_EXPORT void am_cln_step_f32(const float *x, double *state, const float *weight,
                                         const float *bias, float *out, int64_t B, int64_t F, int64_t C,
                                         double eps, int32_t has_slope, float slope) {
    const float a = has_slope ? slope : 1.0f;
    for (int64_t b = 0; b < B; ++b) {
        double s = state[3 * b], q = state[3 * b + 1], n = state[3 * b + 2];
        for (int64_t f = 0; f < F; ++f) {
            const float *xr = x + (b * F + f) * C;
            float *yr = out + (b * F + f) * C;
            for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] < 0.0f ? xr[c] * a : xr[c];
            double fs, fq;
            am_frame_moments(yr, C, &fs, &fq);
            s += fs;
            q += fq;
            n += (double)C;
            double mean = s / n, var = q / n - mean * mean;
            if (var < 0.0) var = 0.0;
            float m = (float)mean, inv = (float)(1.0 / sqrt(var + eps));
            for (int64_t c = 0; c < C; ++c) yr[c] = (yr[c] - m) * inv * weight[c] + bias[c];
        }
        state[3 * b] = s;
        state[3 * b + 1] = q;
        state[3 * b + 2] = n;
    }
}

/* am_dwconv_f32: causal dilated depthwise conv of the next F frames, frames-major.
 *   y: frames [B, (P-1)·d + F, H] (the context, then the new frames), batch stride y_bstride
 *   (elements), rows contiguous; taps [P, H]; bias [H]; out [B, F, H] contiguous:
 *   out[b, f, h] = bias[h] + sum_k taps[k, h] · y[b, f + k·d, h].
 */
AM_CLONES AM_EXPORT void am_dwconv_f32(const float *y, int64_t y_bstride, const float *taps, const float *bias,
                             float *out, int64_t B, int64_t F, int64_t H, int64_t P, int64_t d) {
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t f = 0; f < F; ++f) {
            float *o = out + (b * F + f) * H;
            for (int64_t h = 0; h < H; ++h) o[h] = bias[h];
            for (int64_t k = 0; k < P; ++k) {
                const float *row = y + b * y_bstride + (f + k * d) * H;
                const float *t = taps + k * H;
                for (int64_t h = 0; h < H; ++h) o[h] += t[h] * row[h];
            }
        }
    }
}

/* ---- the gLN TCN block on whole signals, frames-major rows [T, H] ---------------------------
 * Offline inference and training (one example at a time). Every pass streams [T, H]
 * activations through memory once, split over `threads` POSIX threads by frame ranges, each
 * thread with its own zeroed double accumulators, summed at the end. The loops are compiled
 * for AVX-512, AVX2 and baseline x86-64 (picked at load time).
 *
 * The block, all [T, H] (r = 1/sqrt(var + eps)):
 *   u = prelu(h, a1); n = γ1 (u − μ1) r1 + β1 = u·scale + shift;
 *   v = b + Σ_k w_k n[t + k·d − pad]  (n = 0 outside [0, T)); g = prelu(v, a2);
 *   m = γ2 (g − μ2) r2 + β2.
 * Forward: am_prelu_stats_f32 (μ1, r1 from Σ u, Σ u²), am_norm_dwconv_prelu_f32 (g, Σ g, Σ g²).
 * Backward, given dm = ∂L/∂m:
 *   1. am_gln_bwd_sums_f32:   Σ_t dm and Σ_t dm·m̂ per channel (m̂ = (g − μ2) r2) → dβ2, dγ2
 *   2. am_dwconv_bwd_f32:     dv = prelu'(v) · r2 (γ2 dm − cA − m̂ cB); Σ_t dv (conv bias),
 *                             Σ_t dv[t] n[t + k·d − pad] (taps), Σ dp·v over v ≤ 0 (slope a2)
 *   3. am_dwconv_bwd_input_f32: dn[s] = Σ_k w_k dv[s − k·d + pad]; Σ_t dn and Σ_t dn·n̂ → dβ1, dγ1
 *   4. am_gln_prelu_bwd_f32:  dh = prelu'(h) · r1 (γ1 dn − cA1 − n̂ cB1); Σ_t dh (1×1 bias),
 *                             Σ du·h over h ≤ 0 (slope a1)
 * with cA = Σ_c γ_c dβ_c / (T·H), cB = Σ_c γ_c dγ_c / (T·H) (the gLN backward's two means). */
#define AM_FLUSH 64

typedef struct {
    const float *x;   /* the [T, H] input of a pass (dm, dv or dn in the backward ones) */
    int64_t ld;       /* its row stride */
    const float *v, *h, *gamma, *scale, *shift, *taps, *bias;
    float *out, *pre;
    int64_t T, H, P, d, pad, t0, t1;
    int64_t r0, r1;   /* the rows a call computes, [r0, r1) of [0, T); `out` holds row r0 first */
    float a1, a2, mu, r, cA, cB;
    double *acc;      /* this thread's accumulators */
} am_job;

static inline float am_prelu(float v, float a) { return v > 0.0f ? v : v * a; }

/* Σ u and Σ u² of one row into float accumulators, moved to acc[0], acc[1] every AM_FLUSH rows
 * (float sums vectorise; double keeps long signals exact enough). */
static inline void am_row_moments(const float *u, int64_t H, float *as, float *aq, int64_t row,
                                  int last, double *acc) {
    for (int64_t c = 0; c < H; ++c) { as[c] += u[c]; aq[c] += u[c] * u[c]; }
    if (row % AM_FLUSH == AM_FLUSH - 1 || last) {
        for (int64_t c = 0; c < H; ++c) { acc[0] += as[c]; acc[1] += aq[c]; as[c] = 0.0f; aq[c] = 0.0f; }
    }
}

/* Each pass copies the job's fields into restrict-qualified locals first: a store through an
 * output row could otherwise alias the job's own fields (floats and float pointers), and the
 * compiler would reload them in every iteration instead of vectorising the loop. */
#define AM_R __restrict__

/* Per-thread scratch of a pass: on the stack up to AM_STACK_FLOATS floats, otherwise from
 * calloc. (Requests of a few KB per call would come out of the large free blocks of a heap
 * that keeps what it frees, splitting them, so that the next large block goes elsewhere.) */
#define AM_STACK_FLOATS 6144
static inline float *am_scratch(float *stack, size_t n) {
    if (n <= AM_STACK_FLOATS) return memset(stack, 0, n * sizeof(float));
    return calloc(n, sizeof(float));
}
static inline void am_scratch_free(float *p, const float *stack) { if (p != stack) free(p); }

AM_CLONES static void am_stats_rows(am_job *j) {
    const int64_t H = j->H, ld = j->ld;
    const float a1 = j->a1, *AM_R x = j->x;
    float stack_[AM_STACK_FLOATS];
    float *AM_R buf = am_scratch(stack_, 3 * (size_t)H);
    if (!buf) { j->acc[0] = j->acc[1] = NAN; return; }
    float *AM_R u = buf + 2 * H;
    for (int64_t t = j->t0; t < j->t1; ++t) {
        const float *AM_R row = x + t * ld;
        for (int64_t c = 0; c < H; ++c) u[c] = am_prelu(row[c], a1);
        am_row_moments(u, H, buf, buf + H, t - j->t0, t == j->t1 - 1, j->acc);
    }
    am_scratch_free(buf, stack_);
}

AM_CLONES static void am_norm_dwconv_rows(am_job *j) {
    const int64_t H = j->H, ld = j->ld, P = j->P, d = j->d, pad = j->pad, T = j->T;
    const float a1 = j->a1, a2 = j->a2;
    const float *AM_R x = j->x, *AM_R scale = j->scale, *AM_R shift = j->shift, *AM_R taps = j->taps,
                *AM_R bias = j->bias;
    float *AM_R out = j->out, *AM_R pre = j->pre;
    float stack_[AM_STACK_FLOATS];
    float *AM_R buf = am_scratch(stack_, 3 * (size_t)H);  /* moments, and a row when out is NULL */
    if (!buf) { j->acc[0] = j->acc[1] = NAN; return; }
    for (int64_t t = j->t0; t < j->t1; ++t) {
        float *AM_R o = out ? out + (t - j->r0) * H : buf + 2 * H;
        for (int64_t c = 0; c < H; ++c) o[c] = bias[c];
        for (int64_t k = 0; k < P; ++k) {
            int64_t src = t + k * d - pad;
            if (src < 0 || src >= T) continue;
            const float *AM_R row = x + src * ld, *AM_R w = taps + k * H;
            for (int64_t c = 0; c < H; ++c) o[c] += w[c] * (am_prelu(row[c], a1) * scale[c] + shift[c]);
        }
        if (pre) memcpy(pre + (t - j->r0) * H, o, (size_t)H * sizeof(float));
        for (int64_t c = 0; c < H; ++c) o[c] = am_prelu(o[c], a2);
        am_row_moments(o, H, buf, buf + H, t - j->t0, t == j->t1 - 1, j->acc);
    }
    am_scratch_free(buf, stack_);
}

/* The backward passes sum per channel over frames: in float over AM_FLUSH rows (vectorised),
 * then into the thread's double accumulators. */
static inline void am_flush(float *part, double *acc, int64_t n, int64_t row, int last) {
    if (row % AM_FLUSH != AM_FLUSH - 1 && !last) return;
    for (int64_t k = 0; k < n; ++k) { acc[k] += part[k]; part[k] = 0.0f; }
}

AM_CLONES static void am_gln_bwd_sums_rows(am_job *j) {
    const int64_t H = j->H;
    const float a2 = j->a2, mu = j->mu, r = j->r, *AM_R x = j->x, *AM_R vv = j->v;
    float stack_[AM_STACK_FLOATS];
    float *AM_R part = am_scratch(stack_, 2 * (size_t)H);
    if (!part) { j->acc[0] = NAN; return; }
    float *AM_R sd = part, *AM_R sm = part + H;
    for (int64_t t = j->t0; t < j->t1; ++t) {
        const float *AM_R dm = x + t * H, *AM_R v = vv + t * H;
        for (int64_t c = 0; c < H; ++c) {
            sd[c] += dm[c];
            sm[c] += dm[c] * ((am_prelu(v[c], a2) - mu) * r);
        }
        am_flush(part, j->acc, 2 * H, t - j->t0, t == j->t1 - 1);
    }
    am_scratch_free(part, stack_);
}

AM_CLONES static void am_dwconv_bwd_rows(am_job *j) {
    const int64_t H = j->H, P = j->P, d = j->d, pad = j->pad, T = j->T;
    const float a1 = j->a1, a2 = j->a2, mu = j->mu;
    const float *AM_R x = j->x, *AM_R vv = j->v, *AM_R hh = j->h, *AM_R gamma = j->gamma,
                *AM_R scale = j->scale, *AM_R shift = j->shift;
    float *AM_R out = j->out;
    float stack_[AM_STACK_FLOATS];
    float *AM_R part = am_scratch(stack_, (size_t)((P + 2) * H));
    if (!part) { j->acc[0] = NAN; return; }
    float *AM_R dtaps = part, *AM_R dbias = part + P * H, *AM_R dslope = part + (P + 1) * H;
    const float r = j->r, rr = j->r * j->r * j->cB, cA = j->r * j->cA;
    for (int64_t t = j->t0; t < j->t1; ++t) {
        const float *AM_R dm = x + t * H, *AM_R v = vv + t * H;
        float *AM_R o = out + t * H;
        for (int64_t c = 0; c < H; ++c) {
            float vc = v[c], pos = vc > 0.0f;
            float dp = r * gamma[c] * dm[c] - cA - (am_prelu(vc, a2) - mu) * rr;
            dslope[c] += (1.0f - pos) * dp * vc;
            o[c] = dp * (pos + (1.0f - pos) * a2);
            dbias[c] += o[c];
        }
        for (int64_t k = 0; k < P; ++k) {
            int64_t src = t + k * d - pad;
            if (src < 0 || src >= T) continue;
            const float *AM_R row = hh + src * H;
            float *AM_R dt = dtaps + k * H;
            for (int64_t c = 0; c < H; ++c) dt[c] += o[c] * (am_prelu(row[c], a1) * scale[c] + shift[c]);
        }
        am_flush(part, j->acc, (P + 2) * H, t - j->t0, t == j->t1 - 1);
    }
    am_scratch_free(part, stack_);
}

AM_CLONES static void am_dwconv_bwd_input_rows(am_job *j) {
    const int64_t H = j->H, P = j->P, d = j->d, pad = j->pad, T = j->T;
    const float a1 = j->a1, mu = j->mu, r = j->r;
    const float *AM_R x = j->x, *AM_R hh = j->h, *AM_R taps = j->taps;
    float *AM_R out = j->out;
    float stack_[AM_STACK_FLOATS];
    float *AM_R part = am_scratch(stack_, 2 * (size_t)H);
    if (!part) { j->acc[0] = NAN; return; }
    float *AM_R sd = part, *AM_R sn = part + H;
    for (int64_t s = j->t0; s < j->t1; ++s) {
        float *AM_R o = out + s * H;
        for (int64_t c = 0; c < H; ++c) o[c] = 0.0f;
        for (int64_t k = 0; k < P; ++k) {
            int64_t t = s - k * d + pad;
            if (t < 0 || t >= T) continue;
            const float *AM_R dv = x + t * H, *AM_R w = taps + k * H;
            for (int64_t c = 0; c < H; ++c) o[c] += w[c] * dv[c];
        }
        const float *AM_R h = hh + s * H;
        for (int64_t c = 0; c < H; ++c) {
            sd[c] += o[c];
            sn[c] += o[c] * ((am_prelu(h[c], a1) - mu) * r);
        }
        am_flush(part, j->acc, 2 * H, s - j->t0, s == j->t1 - 1);
    }
    am_scratch_free(part, stack_);
}

AM_CLONES static void am_gln_prelu_bwd_rows(am_job *j) {
    const int64_t H = j->H;
    const float a1 = j->a1, mu = j->mu, *AM_R x = j->x, *AM_R hh = j->h, *AM_R gamma = j->gamma;
    float *AM_R out = j->out;
    float stack_[AM_STACK_FLOATS];
    float *AM_R part = am_scratch(stack_, 2 * (size_t)H);
    if (!part) { j->acc[0] = NAN; return; }
    float *AM_R dbias = part, *AM_R dslope = part + H;
    const float r = j->r, rr = j->r * j->r * j->cB, cA = j->r * j->cA;
    for (int64_t t = j->t0; t < j->t1; ++t) {
        const float *dn = x + t * H, *AM_R h = hh + t * H;
        float *o = out + t * H; /* may be dn itself: not restrict */
        for (int64_t c = 0; c < H; ++c) {
            float hc = h[c], pos = hc > 0.0f;
            float du = r * gamma[c] * dn[c] - cA - (am_prelu(hc, a1) - mu) * rr;
            dslope[c] += (1.0f - pos) * du * hc;
            o[c] = du * (pos + (1.0f - pos) * a1);
            dbias[c] += o[c];
        }
        am_flush(part, j->acc, 2 * H, t - j->t0, t == j->t1 - 1);
    }
    am_scratch_free(part, stack_);
}

typedef void (*am_pass)(am_job *);
typedef struct {
    am_pass fn;
    const am_job *base;
    double *acc;
    int64_t nacc;
} am_split_job;

static void am_split_member(void *arg, int id, int T) {
    am_split_job *s = (am_split_job *)arg;
    am_job job = *s->base;
    const int64_t rows = s->base->r1 - s->base->r0;
    job.t0 = s->base->r0 + rows * id / T;
    job.t1 = s->base->r0 + rows * (id + 1) / T;
    job.acc = s->acc + (size_t)id * (size_t)s->nacc;
    s->fn(&job);
}

/* Run `fn` over frame ranges on a team of `threads` threads (am_team_run); each gets `nacc`
 * zeroed doubles, summed into acc_out. Returns -1 when memory for the accumulators cannot be
 * had. */
static int am_parallel(am_pass fn, const am_job *base, int32_t threads, int64_t nacc, double *acc_out) {
    if (threads < 1) threads = 1;
    if (threads > AM_MAX_TEAM) threads = AM_MAX_TEAM;
    const int64_t rows = base->r1 - base->r0;
    if (threads > rows) threads = rows > 0 ? (int32_t)rows : 1;
    double *acc = calloc((size_t)threads * (size_t)nacc, sizeof(double));
    if (!acc) return -1;
    am_split_job job = {fn, base, acc, nacc};
    am_team_run(am_split_member, &job, threads);
    for (int64_t k = 0; k < nacc; ++k) {
        double total = 0.0;
        for (int32_t i = 0; i < threads; ++i) total += acc[(size_t)i * (size_t)nacc + k];
        acc_out[k] = total;
    }
    free(acc);
    return 0;
}

/* out2 = (Σ prelu(x, slope), Σ prelu(x, slope)²) over rows x [T, H] (row stride ld). */
AM_EXPORT int am_prelu_stats_f32(const float *x, int64_t ld, int64_t T, int64_t H, float slope,
                                 int32_t threads, double *out2) {
    am_job j;
    memset(&j, 0, sizeof j);
    j.x = x; j.ld = ld; j.T = T; j.H = H; j.a1 = slope; j.r1 = T;
    return am_parallel(am_stats_rows, &j, threads, 2, out2);
}

/* out = prelu(bias + Σ_k taps[k] · n[t + k·d − pad], out_slope) for rows t in [r0, r1) of
 * [0, T), with n = prelu(x, slope) · scale + shift inside [0, T), 0 outside (x [T, H], row
 * stride ld); out [r1 − r0, H] (row r0 first); out2 = (Σ out, Σ out²) over those rows; `pre`
 * (may be NULL) receives the conv output before the PReLU. With out NULL only the sums are
 * made (each row lives in a thread's buffer). */
AM_EXPORT int am_norm_dwconv_prelu_f32(const float *x, int64_t ld, int64_t T, int64_t H, float slope,
                                       const float *scale, const float *shift, const float *taps,
                                       const float *bias, int64_t P, int64_t d, int64_t pad,
                                       float out_slope, float *out, float *pre, int64_t r0, int64_t r1,
                                       int32_t threads, double *out2) {
    am_job j;
    memset(&j, 0, sizeof j);
    j.x = x; j.ld = ld; j.T = T; j.H = H; j.a1 = slope; j.scale = scale; j.shift = shift;
    j.taps = taps; j.bias = bias; j.P = P; j.d = d; j.pad = pad; j.a2 = out_slope; j.out = out; j.pre = pre;
    j.r0 = r0; j.r1 = r1;
    return am_parallel(am_norm_dwconv_rows, &j, threads, 2, out2);
}

/* acc [2, H]: Σ_t dm, Σ_t dm·m̂ with m̂ = (prelu(v, a2) − mu) r. */
AM_EXPORT int am_gln_bwd_sums_f32(const float *dm, const float *v, int64_t T, int64_t H, float a2,
                                  float mu, float r, int32_t threads, double *acc) {
    am_job j;
    memset(&j, 0, sizeof j);
    j.x = dm; j.v = v; j.T = T; j.H = H; j.a2 = a2; j.mu = mu; j.r = r; j.r1 = T;
    return am_parallel(am_gln_bwd_sums_rows, &j, threads, 2 * H, acc);
}

/* dv [T, H]; acc [P + 2, H]: taps gradient [P, H], conv bias gradient [H], slope-a2 terms [H]. */
AM_EXPORT int am_dwconv_bwd_f32(const float *dm, const float *v, const float *h, int64_t T, int64_t H,
                                float a1, const float *scale, const float *shift, const float *taps,
                                int64_t P, int64_t d, int64_t pad, float a2, const float *gamma, float mu,
                                float r, float cA, float cB, float *dv, int32_t threads, double *acc) {
    am_job j;
    memset(&j, 0, sizeof j);
    j.x = dm; j.v = v; j.h = h; j.T = T; j.H = H; j.a1 = a1; j.scale = scale; j.shift = shift;
    j.taps = taps; j.P = P; j.d = d; j.pad = pad; j.a2 = a2; j.gamma = gamma; j.mu = mu; j.r = r;
    j.cA = cA; j.cB = cB; j.out = dv; j.r1 = T;
    return am_parallel(am_dwconv_bwd_rows, &j, threads, (P + 2) * H, acc);
}

/* dn [T, H] from dv; acc [2, H]: Σ_t dn, Σ_t dn·n̂ with n̂ = (prelu(h, a1) − mu) r. */
AM_EXPORT int am_dwconv_bwd_input_f32(const float *dv, const float *h, int64_t T, int64_t H, float a1,
                                      float mu, float r, const float *taps, int64_t P, int64_t d,
                                      int64_t pad, float *dn, int32_t threads, double *acc) {
    am_job j;
    memset(&j, 0, sizeof j);
    j.x = dv; j.h = h; j.T = T; j.H = H; j.a1 = a1; j.mu = mu; j.r = r; j.taps = taps;
    j.P = P; j.d = d; j.pad = pad; j.out = dn; j.r1 = T;
    return am_parallel(am_dwconv_bwd_input_rows, &j, threads, 2 * H, acc);
}

/* dh [T, H] (may be dn itself); acc [2, H]: Σ_t dh, slope-a1 terms. */
AM_EXPORT int am_gln_prelu_bwd_f32(const float *dn, const float *h, int64_t T, int64_t H, float a1,
                                   const float *gamma, float mu, float r, float cA, float cB, float *dh,
                                   int32_t threads, double *acc) {
    am_job j;
    memset(&j, 0, sizeof j);
    j.x = dn; j.h = h; j.T = T; j.H = H; j.a1 = a1; j.gamma = gamma; j.mu = mu; j.r = r;
    j.cA = cA; j.cB = cB; j.out = dh; j.r1 = T;
    return am_parallel(am_gln_prelu_bwd_rows, &j, threads, 2 * H, acc);
}

static struct PyModuleDef native_module = {PyModuleDef_HEAD_INIT, "_lib",
                                           "CPU kernels of audiomask's streaming fast path (ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__lib(void) { return PyModule_Create(&native_module); }
