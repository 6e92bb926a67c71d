// kernels_llama.c: forward/backward pairs of the Llama family's components (kernels.h):
// RMSNorm (also per head: Qwen3's q/k norm), rotary position embeddings, the gated SiLU,
// and linear layers whose weight is stored (out, in) as HF's nn.Linear writes it.
// Same rules as kernels.c: static schedules, fixed reduction orders (bitwise reproducible
// for a thread count), backward accumulates, a NULL gradient is skipped.
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

// Row (n, h) of a strided (N, H, C) layout: element 0 at n*ld + h*C.
static size_t row_at(int r, int H, int C, int ld) { return (size_t)(r / H) * ld + (size_t)(r % H) * C; }

void lmp_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int H,
                         int C, int ld, float eps) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N * H; r++) {
        const float *x = inp + row_at(r, H, C, ld);
        // Mean square in double (C up to 16384); HF computes it in fp32, ~1e-7 apart.
        double ms = 0.0;
        for (int i = 0; i < C; i++) ms += (double)x[i] * x[i];
        float s = (float)(1.0 / sqrt(ms / C + eps));
        float *o = out + row_at(r, H, C, ld);
        // HF: weight * (x * rsqrt(var + eps)), in that order.
        for (int i = 0; i < C; i++) o[i] = w[i] * (x[i] * s);
        rstd[r] = s;
    }
}

// y_i = w_i x_i s, s = (mean(x^2) + eps)^-1/2: dx_j = s (w_j g_j - x_j s^2 mean_i(w_i g_i x_i)),
// dw_i = sum_rows g_i x_i s.
void lmp_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, const float *rstd, int N, int H, int C, int ld) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < (dinp ? N * H : 0); r++) {
        size_t o = row_at(r, H, C, ld);
        const float *x = inp + o, *dy = dout + o;
        float s = rstd[r];
        double acc = 0.0;
        for (int i = 0; i < C; i++) acc += (double)w[i] * dy[i] * x[i];
        float c = (float)(acc / C) * s * s;
        float *dx = dinp + o;
        for (int i = 0; i < C; i++) dx[i] += s * (w[i] * dy[i] - x[i] * c);
    }
    if (!dw) return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < C; i++) {  // per column: a fixed order over rows
        double sw = 0.0;
        for (int r = 0; r < N * H; r++) {
            size_t o = row_at(r, H, C, ld) + i;
            sw += (double)dout[o] * (inp[o] * rstd[r]);
        }
        dw[i] += (float)sw;
    }
}

// Rotation of each pair (i, i + hd/2) of every head by the angle of its position (HF's
// rotate_half convention, not interleaved pairs). sign = +1 forward, -1 the transpose
// (backward: a rotation's adjoint is the rotation by minus the angle).
static void rope_apply(float *x, int ld, int N, int T, int pos0, int H, int hd, const float *cos_t,
                       const float *sin_t, float sign) {
    int half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t p = (size_t)(pos0 + n % T) * half;
        for (int h = 0; h < H; h++) {
            float *a = x + (size_t)n * ld + (size_t)h * hd, *b = a + half;
            for (int i = 0; i < half; i++) {
                float c = cos_t[p + i], s = sign * sin_t[p + i], a0 = a[i], b0 = b[i];
                a[i] = a0 * c - b0 * s;
                b[i] = b0 * c + a0 * s;
            }
        }
    }
}

void lmp_rope_forward(float *x, int ld, int N, int T, int pos0, int H, int hd, const float *cos_t,
                      const float *sin_t) {
    rope_apply(x, ld, N, T, pos0, H, hd, cos_t, sin_t, 1.0f);
}

void lmp_rope_backward(float *dx, int ld, int N, int T, int pos0, int H, int hd, const float *cos_t,
                       const float *sin_t) {
    rope_apply(dx, ld, N, T, pos0, H, hd, cos_t, sin_t, -1.0f);
}

// Inverse frequencies as transformers computes them (float32 throughout):
// 1 / theta^(2i/hd); "linear" divides by factor; "llama3" (_compute_llama3_parameters)
// divides the low frequencies by factor, keeps the high ones and interpolates between.
static float rope_inv_freq(const lmp_rope_params *rp, int i, int hd) {
    float f = (float)(1.0 / pow((double)rp->theta, (double)(float)(2 * i) / (float)hd));
    if (rp->type == LMP_ROPE_LINEAR) return f / rp->factor;
    if (rp->type != LMP_ROPE_LLAMA3) return f;
    float old = (float)rp->original_max_pos, lo_wl = old / rp->low_freq_factor;
    float hi_wl = old / rp->high_freq_factor, wl = 6.283185307179586f / f;
    float g = wl > lo_wl ? f / rp->factor : f;
    if (wl < hi_wl || wl > lo_wl) return g;
    float sm = (old / wl - rp->low_freq_factor) / (rp->high_freq_factor - rp->low_freq_factor);
    return (1.0f - sm) * g / rp->factor + sm * g;
}

void lmp_rope_tables(float *cos_t, float *sin_t, int n_pos, int hd, const lmp_rope_params *rp) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float f = rope_inv_freq(rp, i, hd);
        for (int p = 0; p < n_pos; p++) {
            float ang = (float)p * f;  // fp32 product, as HF's position . inv_freq
            cos_t[(size_t)p * half + i] = (float)cos((double)ang);
            sin_t[(size_t)p * half + i] = (float)sin((double)ang);
        }
    }
}

// h (N, 2H) holds gate | up per row (ld 2H); out (N,H) = silu(gate) * up.
void lmp_swiglu_forward(float *out, const float *h, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = h + (size_t)n * 2 * H, *u = g + H;
        float *o = out + (size_t)n * H;
        for (int i = 0; i < H; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

// dh (N, 2H) += (d gate | d up): silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
void lmp_swiglu_backward(float *dh, const float *h, const float *dout, int N, int H) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = h + (size_t)n * 2 * H, *u = g + H, *d = dout + (size_t)n * H;
        float *dg = dh + (size_t)n * 2 * H, *du = dg + H;
        for (int i = 0; i < H; i++) {
            float s = 1.0f / (1.0f + expf(-g[i]));
            dg[i] += d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
            du[i] += d[i] * g[i] * s;
        }
    }
}

void lmp_matmul_oi_forward(float *out, int ldo, const float *inp, const float *w,
                           const float *bias, int N, int IC, int OC) {
    // out (N,OC) = inp (N,IC) . w^T, w (OC,IC): NT, written with row stride ldo.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f,
                out, ldo);
    if (!bias) return;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int j = 0; j < OC; j++) out[(size_t)n * ldo + j] += bias[j];
}

void lmp_matmul_oi_backward(float *dinp, float *dw, float *dbias, const float *dout, int ldd,
                            const float *inp, const float *w, int N, int IC, int OC) {
    if (dinp)  // (N,IC) += dout (N,OC) . w (OC,IC)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, ldd, w, IC,
                    1.0f, dinp, IC);
    if (dw)    // (OC,IC) += dout^T (OC,N) . inp (N,IC)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, ldd, inp, IC,
                    1.0f, dw, IC);
    if (!dbias) return;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < OC; j++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) s += dout[(size_t)n * ldd + j];
        dbias[j] += (float)s;
    }
}
