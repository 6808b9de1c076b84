/* audiomask._native: small CPU kernels for the streaming fast path, called through ctypes
 * (see audiomask/native.py). Built by setup.py as an optional extension: without a C compiler
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

#if defined(_WIN32)
#define AM_EXPORT __declspec(dllexport)
#else
#define AM_EXPORT __attribute__((visibility("default")))
#endif

AM_EXPORT void am_cln_step_f32(const float *x, double *state, const float *weight, const float *bias,
                               float *out, int64_t B, int64_t F, int64_t C, double eps,
                               int32_t has_slope, float slope) {
    for (int64_t b = 0; b < B; ++b) {
        double s = state[3 * b], q = state[3 * b + 1], n = state[3 * b + 2];
        for (int64_t f = 0; f < F; ++f) {
            const float *xr = x + (b * F + f) * C;
            float *yr = out + (b * F + f) * C;
            double fs = 0.0, fq = 0.0;
            for (int64_t c = 0; c < C; ++c) {
                float u = xr[c];
                if (has_slope && u < 0.0f) u *= slope;
                yr[c] = u;
                double v = u;
                fs += v;
                fq += v * v;
            }
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
AM_EXPORT void am_dwconv_f32(const float *y, int64_t y_bstride, const float *taps, const float *bias,
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

static struct PyModuleDef native_module = {PyModuleDef_HEAD_INIT, "_native",
                                           "CPU kernels of audiomask's streaming fast path (ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
