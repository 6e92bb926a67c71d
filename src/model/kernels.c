// kernels.c: forward/backward pairs of the GPT-2 building blocks.
// Parallel loops use static schedules and each output element is reduced in a fixed order,
// so results are bitwise reproducible for a given thread count.
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

// expf that the compiler vectorises (glibc's expf is a call per element, and without
// -ffast-math no vector variant is used): exp(x) = 2^k exp(r), k = round(x / ln 2),
// r = x - k ln 2 in two parts, exp(r) by Cephes' degree-7 polynomial; relative error
// <= 2 ulp against glibc's. Overflow gives inf, underflow below -87.3 gives 0 (no
// subnormals), NaN stays NaN (the comparisons are false for NaN, so NaN checks still fire).
static inline float vexpf(float x) {
    float xc = x > 88.0f ? 88.0f : (x < -87.0f ? -87.0f : x);
    // round to nearest by the 1.5 * 2^23 trick (no -ffast-math, so it is not folded away)
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    // 2^k from the exponent bits; k is in [-126, 127] after the clamp, but a NaN x leaves k NaN
    // (its int conversion undefined): use 0 there, p already carries the NaN.
    int32_t ki = k == k ? (int32_t)k : 0;
    union { uint32_t i; float f; } sc = {.i = (uint32_t)(ki + 127) << 23};
    float y = p * sc.f;
    y = x > 88.7228391f ? INFINITY : y;
    return x < -87.3365448f ? 0.0f : y;
}

#define LANES 16

// max over x[0..n): lanes of 16 (max is exact, so any order gives the same value).
static float max_lanes(const float *x, int n) {
    float m[LANES];
    int j = 0;
    for (int u = 0; u < LANES; u++) m[u] = -INFINITY;
    for (; j + LANES <= n; j += LANES)
        for (int u = 0; u < LANES; u++) m[u] = x[j + u] > m[u] ? x[j + u] : m[u];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    float mx = m[0];
    for (int u = 1; u < LANES; u++) mx = m[u] > mx ? m[u] : mx;
    return mx;
}

// e[j] = exp(x[j] - mx) for j < n (e may be x) and their sum in double: 16 lanes in a fixed
// order, so the sum does not depend on the thread count.
static double exp_sum_lanes(float *e, const float *x, float mx, int n) {
    double acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES) {
        float t[LANES];
        for (int u = 0; u < LANES; u++) t[u] = vexpf(x[j + u] - mx);
        for (int u = 0; u < LANES; u++) {
            if (e) e[j + u] = t[u];
            acc[u] += t[u];
        }
    }
    for (; j < n; j++) {
        float t = vexpf(x[j] - mx);
        if (e) e[j] = t;
        acc[0] += t;
    }
    double s = 0.0;
    for (int u = 0; u < LANES; u++) s += acc[u];
    return s;
}

void lmp_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        // Row statistics in double: C is up to 12288 and float sums lose digits there.
        double m = 0.0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        double v = 0.0;
        for (int i = 0; i < C; i++) { double d = x[i] - m; v += d * d; }
        v /= C;
        float s = (float)(1.0 / sqrt(v + eps));
        float mf = (float)m;
        float *o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) o[i] = (s * (x[i] - mf)) * w[i] + b[i];
        mean[n] = mf;
        rstd[n] = s;
    }
}

void lmp_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < (dinp ? N : 0); n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        double sum_dn = 0.0, sum_dn_xn = 0.0;
        for (int i = 0; i < C; i++) {
            float xn = (x[i] - m) * s;
            float dn = w[i] * dy[i];
            sum_dn += dn;
            sum_dn_xn += (double)dn * xn;
        }
        float a = (float)(sum_dn / C), c = (float)(sum_dn_xn / C);
        float *dx = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float xn = (x[i] - m) * s;
            dx[i] += s * (w[i] * dy[i] - a - xn * c);
        }
    }
    // Parameter gradients reduce over rows: loop over columns so each column's sum over n
    // has a fixed order independent of the thread count.
    if (dw || db) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < C; i++) {
            double sw = 0.0, sb = 0.0;
            for (int n = 0; n < N; n++) {
                float dy = dout[(size_t)n * C + i];
                sw += (double)dy * ((inp[(size_t)n * C + i] - mean[n]) * rstd[n]);
                sb += dy;
            }
            if (dw) dw[i] += (float)sw;
            if (db) db[i] += (float)sb;
        }
    }
}

void lmp_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                        int N, int IC, int OC, int accumulate) {
    // out (N,OC) = inp (N,IC) . w (IC,OC): NN, the fastest OpenBLAS layout.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, w, OC,
                accumulate ? 1.0f : 0.0f, out, OC);
    if (bias) lmp_add_bias(out, bias, N, OC);
}

void lmp_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, int N, int IC, int OC) {
    if (dinp)  // (N,IC) += dout (N,OC) . w^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, IC, OC, 1.0f, dout, OC, w, OC,
                    1.0f, dinp, IC);
    if (dw)    // (IC,OC) += inp^T (IC,N) . dout (N,OC)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, OC, N, 1.0f, inp, IC, dout, OC,
                    1.0f, dw, OC);
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int j = 0; j < OC; j++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + j];
            dbias[j] += (float)s;
        }
    }
}

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

// tanh through one expf: glibc's tanhf goes through expm1f and was the single largest
// non-matmul cost of a step (37M calls per GPT-2 124M step). Saturates correctly for large
// |u| (expf -> inf gives 1, expf -> 0 gives -1); absolute error ~1e-7.
static inline float fast_tanhf(float u) { return 1.0f - 2.0f / (vexpf(2.0f * u) + 1.0f); }

void lmp_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + fast_tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void lmp_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float t = fast_tanhf(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        float g = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        dinp[i] += g * dout[i];
    }
}

void lmp_softmax_inplace(float *x, int n) {
    float mx = max_lanes(x, n);
    double sum = exp_sum_lanes(x, x, mx, n);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) x[j] *= inv;
}

void lmp_add_bias(float *y, const float *bias, int N, int OC) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *o = y + (size_t)n * OC;
        for (int j = 0; j < OC; j++) o[j] += bias[j];
    }
}

void lmp_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void lmp_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe,
                           int B, int T, int C, int v0, int Vl) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B * T; n++) {
        float *o = out + (size_t)n * C;
        int v = tokens[n] - v0;
        const float *p = wpe ? wpe + (size_t)(n % T) * C : NULL;
        if (v >= 0 && v < Vl) {
            const float *e = wte + (size_t)v * C;
            for (int i = 0; i < C; i++) o[i] = e[i] + (p ? p[i] : 0.0f);
        } else {
            for (int i = 0; i < C; i++) o[i] = p ? p[i] : 0.0f;
        }
    }
}

void lmp_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens,
                            int B, int T, int C, int v0, int Vl) {
    // Serial over rows: two rows with the same token add into one wte row, and a fixed
    // order keeps the sum reproducible. Parallel over the C columns instead.
    if (dwte) {
        for (int n = 0; n < B * T; n++) {
            int v = tokens[n] - v0;
            if (v < 0 || v >= Vl) continue;
            float *d = dwte + (size_t)v * C;
            const float *g = dout + (size_t)n * C;
            for (int i = 0; i < C; i++) d[i] += g[i];
        }
    }
    if (dwpe) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            float *d = dwpe + (size_t)t * C;
            for (int b = 0; b < B; b++) {
                const float *g = dout + ((size_t)b * T + t) * C;
                for (int i = 0; i < C; i++) d[i] += g[i];
            }
        }
    }
}

void lmp_xent_stats(double *rowmax, double *sumexp, double *tgt, const float *logits,
                    int ld, const int *targets, int n_rows, int Vl, int v0) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < n_rows; n++) {
        const float *l = logits + (size_t)n * ld;
        float mx = max_lanes(l, Vl);
        // exp on float differences (<= 0), summed in double: the sum keeps its digits and
        // the exponentials run at float (vector) speed over the 50k-wide vocabulary.
        double s = exp_sum_lanes(NULL, l, mx, Vl);
        rowmax[n] = mx;
        sumexp[n] = s;
        int t = targets[n] - v0;
        tgt[n] = (t >= 0 && t < Vl) ? l[t] : 0.0;
    }
}

void lmp_xent_grad(float *logits, int ld, const int *targets, const double *rowmax,
                   const double *logsumexp, const float *scale, int n_rows, int Vl, int v0) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < n_rows; n++) {
        float *l = logits + (size_t)n * ld;
        float s = scale[n];
        if (s == 0.0f) { memset(l, 0, (size_t)Vl * sizeof(float)); continue; }
        float mx = (float)rowmax[n], lse = (float)logsumexp[n];
        for (int j = 0; j < Vl; j++) l[j] = s * vexpf((l[j] - mx) - lse);
        int t = targets[n] - v0;
        if (t >= 0 && t < Vl) l[t] -= s;
    }
}
