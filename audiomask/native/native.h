/* Shared macros and helpers of audiomask's C kernels (passes.c, tcn_stream.c, team.c). */
#ifndef AUDIOMASK_NATIVE_H
#define AUDIOMASK_NATIVE_H

#include <stdint.h>

#if defined(_WIN32)
#define AM_EXPORT __declspec(dllexport)
#else
#define AM_EXPORT __attribute__((visibility("default")))
#endif

/* Loops compiled for AVX-512, AVX2 and baseline x86-64, picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AM_CLONES
#endif

/* A team of threads for one call (team.c): fn(arg, id, T) on T threads. */
#define AM_MAX_TEAM 64
typedef void (*am_team_fn)(void *arg, int id, int threads);
void am_team_run(am_team_fn fn, void *arg, int threads);

#define AM_LANES 16

/* Σ u and Σ u² of one frame's C values: AM_LANES independent float partial sums (so the loop
 * vectorises instead of waiting on one serial double chain), added up in double. */
static inline void am_frame_moments(const float *u, int64_t C, double *sum, double *sumsq) {
    float ps[AM_LANES] = {0}, pq[AM_LANES] = {0};
    int64_t c = 0;
    for (; c + AM_LANES <= C; c += AM_LANES)
        for (int j = 0; j < AM_LANES; ++j) { ps[j] += u[c + j]; pq[j] += u[c + j] * u[c + j]; }
    double s = 0.0, q = 0.0;
    for (; c < C; ++c) { s += u[c]; q += (double)u[c] * u[c]; }
    for (int j = 0; j < AM_LANES; ++j) { s += ps[j]; q += pq[j]; }
    *sum = s;
    *sumsq = q;
}

#endif
