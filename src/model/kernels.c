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

// Causal attention in row blocks of ATT_TB queries: block [t0, t1) attends to keys [0, t1)
// only, so the products skip most of the masked upper triangle (T = 256: 62.5% of the
// full T x T work). Entries past t1 are zeros that the full products would have added.
#define ATT_TB 64

// Rows [t0, t1) of one head's probabilities a (T,T): the scores q[t0:t1] . k[0:t1]^T
// (t1 - t0, t1) softmaxed, zeros above the diagonal. The forward and the recompute (lmp_sdpa_probs) both
// call it, so [train] recompute = attn gives the same bits.
static void probs_rows(float *a, const float *qb, const float *kb, int ld, int t0, int t1, int T,
                       int hs, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t1 - t0, t1, hs, scale,
                qb + (size_t)t0 * ld, ld, kb, ld, 0.0f, a + (size_t)t0 * T, T);
    for (int t = t0; t < t1; t++) {
        float *row = a + (size_t)t * T;
        lmp_softmax_inplace(row, t + 1);
        for (int j = t + 1; j < T; j++) row[j] = 0.0f;
    }
}

// One head: scores (T,T) in a (zeros above the diagonal), out (T,hs) = softmax . v.
static void attention_forward_head(float *out, int ldo, float *a, const float *qb,
                                   const float *kb, const float *vb, int ld, int T, int hs,
                                   float scale) {
    for (int t0 = 0; t0 < T; t0 += ATT_TB) {
        int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T, tb = t1 - t0;
        float *ab = a + (size_t)t0 * T;
        probs_rows(a, qb, kb, ld, t0, t1, T, hs, scale);
        // out[t0:t1] (tb, hs) = att[t0:t1, 0:t1] . v[0:t1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hs, t1, 1.0f, ab, T, vb, ld,
                    0.0f, out + (size_t)t0 * ldo, ldo);
    }
}

// Query head h of a rank's NH reads key/value head h / (NH / KVH). The loops run over
// (b, kv head) pairs and the query heads of a group inside, so the backward's dk/dv sums of
// a group stay in one thread in a fixed order.
void lmp_sdpa_forward(float *out, float *att, const float *q, const float *k,
                           const float *v, int ld, int B, int T, int NH, int KVH, int hs) {
    int grp = NH / KVH, C = NH * hs;
    float scale = 1.0f / sqrtf((float)hs);
    // The sgemm calls inside run single-threaded because OpenMP OpenBLAS does not nest
    // inside our parallel region.
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) {
        int b = bk / KVH, kh = bk % KVH;
        const float *kb = k + (size_t)b * T * ld + kh * hs, *vb = v + (size_t)b * T * ld + kh * hs;
        for (int h = kh * grp; h < (kh + 1) * grp; h++) {
            const float *qb = q + (size_t)b * T * ld + h * hs;
            float *a = att + ((size_t)b * NH + h) * T * T;
            attention_forward_head(out + (size_t)b * T * C + h * hs, C, a, qb, kb, vb, ld, T, hs,
                                   scale);
        }
    }
}

void lmp_sdpa_probs(float *att, const float *q, const float *k, int ld, int B, int T, int NH,
                    int KVH, int hs) {
    int grp = NH / KVH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) {
        int b = bk / KVH, kh = bk % KVH;
        const float *kb = k + (size_t)b * T * ld + kh * hs;
        for (int h = kh * grp; h < (kh + 1) * grp; h++)
            for (int t0 = 0; t0 < T; t0 += ATT_TB)
                probs_rows(att + ((size_t)b * NH + h) * T * T, q + (size_t)b * T * ld + h * hs, kb,
                           ld, t0, t0 + ATT_TB < T ? t0 + ATT_TB : T, T, hs, scale);
    }
}

// One (b, h) pair of the backward: datt, then the softmax backward in place, then dq, dk, dv.
static void attention_backward_head(float *dq, float *dk, float *dv, int ld, float *da,
                                    const float *dy, const float *q, const float *k,
                                    const float *v, const float *a, int T, int hs, int C) {
    float scale = 1.0f / sqrtf((float)hs);
    // Row blocks [t0, t1) need datt only in columns < t1; column blocks [j0, j1) of dv, dk
    // sum over rows t >= j0 only (att and dscore are zero above the diagonal).
    for (int t0 = 0; t0 < T; t0 += ATT_TB) {
        int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T, tb = t1 - t0;
        // datt[t0:t1, 0:t1] = dy[t0:t1] . v[0:t1]^T ;  dv[t0:t1] += att[t0:T, t0:t1]^T . dy[t0:T]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, t1, hs, 1.0f, dy + (size_t)t0 * C,
                    C, v, ld, 0.0f, da + (size_t)t0 * T, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, tb, hs, T - t0, 1.0f,
                    a + (size_t)t0 * T + t0, T, dy + (size_t)t0 * C, C, 1.0f, dv + (size_t)t0 * ld, ld);
    }
    // softmax backward, in place: dscore = att * (datt - sum_j att*datt)
    for (int t = 0; t < T; t++) {
        const float *ar = a + (size_t)t * T;
        float *dr = da + (size_t)t * T;
        double dot = 0.0;
        for (int j = 0; j <= t; j++) dot += (double)ar[j] * dr[j];
        float d = (float)dot;
        for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - d);
        for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
    }
    // dq[t0:t1] += scale * dscore[t0:t1, 0:t1] . k[0:t1] ;
    // dk[t0:t1] += scale * dscore[t0:T, t0:t1]^T . q[t0:T]
    for (int t0 = 0; t0 < T; t0 += ATT_TB) {
        int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T, tb = t1 - t0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hs, t1, scale,
                    da + (size_t)t0 * T, T, k, ld, 1.0f, dq + (size_t)t0 * ld, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, tb, hs, T - t0, scale,
                    da + (size_t)t0 * T + t0, T, q + (size_t)t0 * ld, ld, 1.0f, dk + (size_t)t0 * ld, ld);
    }
}

void lmp_sdpa_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                            const float *q, const float *k, const float *v, const float *att,
                            int ld, int B, int T, int NH, int KVH, int hs) {
    int grp = NH / KVH, C = NH * hs;
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) {
        int b = bk / KVH, kh = bk % KVH;
        size_t kv = (size_t)b * T * ld + kh * hs;
        for (int h = kh * grp; h < (kh + 1) * grp; h++) {
            size_t qo = (size_t)b * T * ld + h * hs, bh = (size_t)b * NH + h;
            attention_backward_head(dq + qo, dk + kv, dv + kv, ld, datt + bh * T * T,
                                    dout + (size_t)b * T * C + h * hs, q + qo, k + kv, v + kv,
                                    att + bh * T * T, T, hs, C);
        }
    }
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
