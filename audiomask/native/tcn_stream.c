/* am_tcn_stream_f32: every block of a causal (cLN) Conv-TasNet TCN for the next F frames of a
 * stream, in one call (see audiomask/maskers/tcn/stream_step_c.py).
 *
 * A 10 ms block at 8 kHz is F = 10 frames. Per TCN block i the work is
 *   h = b̃ᵢₙ + x Wᵢₙ                         1×1 conv Bn → H (x: the residual path, [M, Bn])
 *   u = cLN₁(prelu(h, a1)) → history          cumulative LN with running sums state1
 *   v = b_dw + Σ_k taps[k] · history[f + k·d] causal dilated depthwise conv
 *   z = cLN₂(prelu(v, a2))                    running sums state2
 *   [x | skip] += z Wₒᵤₜ                      residual and skip 1×1 convs, one accumulator
 * with M = B·F rows. The 1×1 convs are GEMMs of ten rows: weight-bandwidth bound, done here by a
 * register-tiled kernel that reads each weight once per call. The call runs on a team of
 * `threads` threads (am_team_run: PyTorch's OpenMP team) that split the channels; four spin
 * barriers per TCN block order the phases:
 *   A  own columns of h, PReLU, partial Σ u, Σ u² of each row        | barrier
 *   B  cLN₁ of own channels → history, depthwise conv, PReLU, Σ of z  | barrier
 *   C  cLN₂ of own channels of z                                      | barrier
 *   D  own columns of [x | skip] += z Wₒᵤₜ                            | barrier
 * Every thread sums the partial moments in the same order, so all use identical statistics.
 *
 * The history of block i holds, per batch element, `cap` frames of H channels; its last
 * `context` = (P−1)·d frames end at `end`. The new frames are appended; when they do not fit,
 * the context moves to the front first. The caller guarantees context + F <= cap.
 */
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

typedef struct {
    const float *w_in;      /* the 1×1 conv Bn → H, transposed and packed: [H/16, Bn, 16] */
    const float *b_in;      /* [H]: its bias plus Wᵢₙ · (residual biases of the blocks before) */
    const float *n1w, *n1b; /* [H]: cLN₁ affine */
    const float *taps;      /* [P, H]: depthwise taps, k-major */
    const float *dw_b;      /* [H] */
    const float *n2w, *n2b; /* [H]: cLN₂ affine */
    const float *w_out;     /* residual (Bn) and skip (W − Bn) 1×1 convs, packed: [W/16, H, 16] */
    float *buffer;          /* [B, cap, H]: history of cLN₁'s output */
    double *state1, *state2;/* [B, 3]: running (Σ, Σ², count) of the two norms */
    int64_t cap, end, context, P, d;
    float a1, a2;
} am_tcn_block;

typedef struct {
    am_tcn_block *blocks;
    int64_t nblocks, B, F, Bn, H, W;
    double eps;
    float *acc, *h, *z;     /* [M, W], [M, H], [M, H] */
    double *partial;        /* [threads, 4, M]: Σ u, Σ u², Σ z, Σ z² over each thread's channels */
    double *next;           /* [2, B, 3]: the states after this call, published by thread 0 */
    int threads;
    int count, sense;       /* the barrier */
} am_tcn_ctx;

static void am_barrier(am_tcn_ctx *c, int *local_sense) {
    if (c->threads == 1) return;
    int s = !*local_sense;
    *local_sense = s;
    if (__atomic_add_fetch(&c->count, 1, __ATOMIC_ACQ_REL) == c->threads) {
        __atomic_store_n(&c->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&c->sense, s, __ATOMIC_RELEASE);
        return;
    }
    for (unsigned spin = 0; __atomic_load_n(&c->sense, __ATOMIC_ACQUIRE) != s; ++spin) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (spin > 256) sched_yield(); /* the other thread lost its core: let it run */
    }
}

/* ---- C[M, n0:n1] (= bias +) A[M, K] · B[K, n0:n1] ----------------------------------------------
 * B is packed in panels of 16 columns, each [K, 16] contiguous (panel p at Bp + p·K·16), so that
 * a panel streams through the prefetchers line after line; n0, n1 and the width are multiples
 * of 16. Each panel is read once for all M rows (tiles of up to AM_TILE rows in registers). */
typedef float am_v16 __attribute__((vector_size(64), aligned(4)));
#define AM_TILE 12

static inline __attribute__((always_inline)) void am_panel(const int R, const float *A, int64_t lda,
                                                          const float *Bp, int64_t K, float *C,
                                                          int64_t ldc, const float *bias) {
    am_v16 acc[AM_TILE];
    for (int r = 0; r < R; ++r) acc[r] = bias ? *(const am_v16 *)bias : *(const am_v16 *)(C + r * ldc);
    for (int64_t k = 0; k < K; ++k) {
        const am_v16 b = *(const am_v16 *)(Bp + 16 * k);
        for (int r = 0; r < R; ++r) acc[r] += A[r * lda + k] * b;
    }
    for (int r = 0; r < R; ++r) *(am_v16 *)(C + r * ldc) = acc[r];
}

#define AM_PANEL(R) \
    case R: am_panel(R, A + m * lda, lda, Bp + n * K, K, C + m * ldc + n, ldc, bias ? bias + n : NULL); break;

AM_CLONES static void am_gemm_cols(const float *A, int64_t lda, int64_t M, const float *Bp, int64_t K,
                                   float *C, int64_t ldc, const float *bias, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n += 16)
        for (int64_t m = 0; m < M; m += AM_TILE) {
            switch (M - m < AM_TILE ? (int)(M - m) : AM_TILE) {
                AM_PANEL(1) AM_PANEL(2) AM_PANEL(3) AM_PANEL(4) AM_PANEL(5) AM_PANEL(6)
                AM_PANEL(7) AM_PANEL(8) AM_PANEL(9) AM_PANEL(10) AM_PANEL(11) AM_PANEL(12)
            }
        }
}

/* ---- the phases of one TCN block on channels [c0, c1) ---------------------------------------- */
AM_CLONES static void am_phase_a(am_tcn_ctx *c, const am_tcn_block *k, int id, int64_t c0, int64_t c1) {
    const int64_t M = c->B * c->F, H = c->H;
    am_gemm_cols(c->acc, c->W, M, k->w_in, c->Bn, c->h, H, k->b_in, c0, c1);
    double *ps = c->partial + (size_t)id * 4 * M;
    for (int64_t m = 0; m < M; ++m) {
        float *u = c->h + m * H;
        for (int64_t ch = c0; ch < c1; ++ch) u[ch] = u[ch] < 0.0f ? u[ch] * k->a1 : u[ch];
        am_frame_moments(u + c0, c1 - c0, ps + m, ps + M + m);
    }
}

/* the cumulative statistics of row m: running sums (s, q, n) advanced by the row's partials */
static inline void am_cumulate(const am_tcn_ctx *c, int which, int64_t m, double *s, double *q, double *n,
                               float *mean, float *inv) {
    const int64_t M = c->B * c->F;
    for (int t = 0; t < c->threads; ++t) {
        const double *ps = c->partial + (size_t)t * 4 * M + (size_t)which * 2 * M;
        *s += ps[m];
        *q += ps[M + m];
    }
    *n += (double)c->H;
    double mu = *s / *n, var = *q / *n - mu * mu;
    if (var < 0.0) var = 0.0;
    *mean = (float)mu;
    *inv = (float)(1.0 / sqrt(var + c->eps));
}

AM_CLONES static void am_phase_b(am_tcn_ctx *c, const am_tcn_block *k, int id, int64_t c0, int64_t c1) {
    const int64_t F = c->F, H = c->H, M = c->B * F, ctx = k->context;
    const int64_t start = k->end + F > k->cap ? ctx : k->end;
    double *ps = c->partial + (size_t)id * 4 * M + 2 * M;
    for (int64_t b = 0; b < c->B; ++b) {
        float *buf = k->buffer + b * k->cap * H;
        if (start != k->end) /* no room: the context moves to the front (rows ascending) */
            for (int64_t r = 0; r < ctx; ++r)
                memmove(buf + r * H + c0, buf + (k->end - ctx + r) * H + c0, (size_t)(c1 - c0) * sizeof(float));
        double s = k->state1[3 * b], q = k->state1[3 * b + 1], n = k->state1[3 * b + 2];
        for (int64_t f = 0; f < F; ++f) {
            const int64_t m = b * F + f;
            float mean, inv;
            am_cumulate(c, 0, m, &s, &q, &n, &mean, &inv);
            const float *u = c->h + m * H;
            float *row = buf + (start + f) * H;
            for (int64_t ch = c0; ch < c1; ++ch) row[ch] = (u[ch] - mean) * inv * k->n1w[ch] + k->n1b[ch];
        }
        if (id == 0) {
            c->next[3 * b] = s;
            c->next[3 * b + 1] = q;
            c->next[3 * b + 2] = n;
        }
        for (int64_t f = 0; f < F; ++f) {
            const int64_t m = b * F + f;
            float *v = c->z + m * H;
            for (int64_t ch = c0; ch < c1; ++ch) v[ch] = k->dw_b[ch];
            for (int64_t t = 0; t < k->P; ++t) {
                const float *row = buf + (start - ctx + f + t * k->d) * H, *w = k->taps + t * H;
                for (int64_t ch = c0; ch < c1; ++ch) v[ch] += w[ch] * row[ch];
            }
            for (int64_t ch = c0; ch < c1; ++ch) v[ch] = v[ch] < 0.0f ? v[ch] * k->a2 : v[ch];
            am_frame_moments(v + c0, c1 - c0, ps + m, ps + M + m);
        }
    }
}

AM_CLONES static void am_phase_c(am_tcn_ctx *c, const am_tcn_block *k, int id, int64_t c0, int64_t c1) {
    const int64_t F = c->F, H = c->H;
    for (int64_t b = 0; b < c->B; ++b) {
        double s = k->state2[3 * b], q = k->state2[3 * b + 1], n = k->state2[3 * b + 2];
        for (int64_t f = 0; f < F; ++f) {
            const int64_t m = b * F + f;
            float mean, inv;
            am_cumulate(c, 1, m, &s, &q, &n, &mean, &inv);
            float *v = c->z + m * H;
            for (int64_t ch = c0; ch < c1; ++ch) v[ch] = (v[ch] - mean) * inv * k->n2w[ch] + k->n2b[ch];
        }
        if (id == 0) {
            double *next = c->next + 3 * c->B + 3 * b;
            next[0] = s;
            next[1] = q;
            next[2] = n;
        }
    }
}

/* [lo, hi) of n columns (a multiple of 16) for thread id of T, in whole panels of 16 */
static void am_split(int64_t n, int id, int T, int64_t *lo, int64_t *hi) {
    *lo = n / 16 * id / T * 16;
    *hi = n / 16 * (id + 1) / T * 16;
}

static void am_tcn_run(am_tcn_ctx *c, int id, int T) {
    int sense = 0;
    int64_t c0, c1, w0, w1;
    am_split(c->H, id, T, &c0, &c1);
    am_split(c->W, id, T, &w0, &w1);
    const int64_t M = c->B * c->F;
    for (int64_t i = 0; i < c->nblocks; ++i) {
        am_tcn_block *k = c->blocks + i;
        am_phase_a(c, k, id, c0, c1);
        am_barrier(c, &sense);
        am_phase_b(c, k, id, c0, c1);
        am_barrier(c, &sense);
        if (id == 0) memcpy(k->state1, c->next, 3 * (size_t)c->B * sizeof(double)); /* all have read it */
        am_phase_c(c, k, id, c0, c1);
        am_barrier(c, &sense);
        if (id == 0) {
            memcpy(k->state2, c->next + 3 * c->B, 3 * (size_t)c->B * sizeof(double));
            k->end = (k->end + c->F > k->cap ? k->context : k->end) + c->F;
        }
        am_gemm_cols(c->z, c->H, M, k->w_out, c->H, c->acc, c->W, NULL, w0, w1);
        am_barrier(c, &sense);
    }
}

static void am_tcn_member(void *arg, int id, int T) {
    am_tcn_ctx *c = (am_tcn_ctx *)arg;
    __atomic_store_n(&c->threads, T, __ATOMIC_RELAXED); /* every member stores the same team size */
    am_tcn_run(c, id, T);
}

/* Runs all `nblocks` blocks over acc [B·F, W] = [x | skip] (x: the bottleneck output, skip: zeros
 * or the sums so far), updating acc, the histories, the norm states and each block's `end`.
 * h, z: [B·F, H] scratch. Returns 0; −1 when a history has no room for F frames (the caller
 * grows it first) or scratch memory cannot be had. */
AM_EXPORT int am_tcn_stream_f32(am_tcn_block *blocks, int64_t nblocks, float *acc, int64_t B, int64_t F,
                                int64_t Bn, int64_t H, int64_t W, double eps, float *h, float *z,
                                int32_t threads) {
    if (H % 16 || W % 16) return -1;
    for (int64_t i = 0; i < nblocks; ++i)
        if (blocks[i].context + F > blocks[i].cap) return -1;
    int T = threads < 1 ? 1 : threads;
    if (T > AM_MAX_TEAM) T = AM_MAX_TEAM;
    if (T > W / 16) T = (int)(W / 16);
    const int64_t M = B * F;
    am_tcn_ctx c = {blocks, nblocks, B, F, Bn, H, W, eps, acc, h, z, NULL, NULL, T, 0, 0};
    c.partial = malloc(sizeof(double) * (4 * (size_t)T * (size_t)M + 6 * (size_t)B));
    if (!c.partial) return -1;
    c.next = c.partial + 4 * (size_t)T * (size_t)M;
    am_team_run(am_tcn_member, &c, T); /* PyTorch's OpenMP team, or threads of our own */
    free(c.partial);
    return 0;
}
