// lora.c: LoRA forward/backward on one linear layer's local shard.
//
// Shapes (N rows, local input in_l, r): u = xd . A_l^T is (N,r); y[:, seg] += s u B_seg^T.
// Backward with dy on this rank's output columns:
//   dB_seg += s dy_seg^T u        du = s sum_seg dy_seg B_seg
//   dA_l   += du^T xd             dx += (du A_l) * mask/(1-p)
#include "adapters/lora.h"
#include "core/rng.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void lmp_lora_init_params(lmp_lora *l, int gaussian, uint64_t seed) {
    lmp_param *A = l->A;
    uint64_t stream = lmp_hash_str(A->name);
    // Kaiming-uniform with a = sqrt(5): gain sqrt(2/(1+a^2)) = sqrt(1/3), bound =
    // gain*sqrt(3/fan_in) = 1/sqrt(fan_in) (what torch's default Linear init and PEFT use).
    float bound = 1.0f / sqrtf((float)l->in), sd = 1.0f / sqrtf((float)l->r);
    for (size_t i = 0; i < A->numel; i++) {
        uint64_t gi = (uint64_t)lmp_param_global_index(A, i);
        A->data[i] = gaussian ? sd * lmp_rng_normal(seed, stream, gi)
                              : bound * (2.0f * lmp_rng_uniform(seed, stream, gi) - 1.0f);
    }
    memset(l->B->data, 0, l->B->numel * sizeof(float));
}

// Dropout factor of element (row n, local feature j): 0 (dropped) or 1/(1-p), drawn from
// the counter RNG keyed by the global row and global feature, so forward and backward (and
// every layout) see the same mask without storing it.
static inline float mask_at(const lmp_lora *l, const lmp_rng_ctx *rc, int n, int j) {
    uint64_t stream = l->stream ^ (rc->step * 0x9e3779b97f4a7c15ULL);
    uint64_t idx = (uint64_t)(rc->row0 + n) * (uint64_t)l->in + (uint64_t)(l->a0 + j);
    return lmp_rng_uniform(rc->seed, stream, idx) < l->dropout ? 0.0f : 1.0f / (1.0f - l->dropout);
}

// xd = x * mask / (1-p)
static void dropout_apply(const lmp_lora *l, float *xd, const float *x, int N,
                          const lmp_rng_ctx *rc) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int j = 0; j < l->in_l; j++) {
            size_t k = (size_t)n * l->in_l + j;
            xd[k] = x[k] * mask_at(l, rc, n, j);
        }
}

static const float *dropped_input(const lmp_lora *l, const float *x, float *xd_scratch, int N,
                                  const lmp_rng_ctx *rc) {
    if (l->dropout <= 0.0f || !rc->training) return x;
    dropout_apply(l, xd_scratch, x, N, rc);
    return xd_scratch;
}

void lmp_lora_forward(const lmp_lora *l, float *y, int ldy, const float *x, float *u,
                      float *xd_scratch, int N, const lmp_rng_ctx *rc) {
    const float *xd = dropped_input(l, x, xd_scratch, N, rc);
    int r = l->r;
    const float *A = l->A->data + l->a0, *B = l->B->data;
    // u (N,r) = xd (N,in_l) . A_l^T, A_l the columns [a0, a0+in_l) of A (r,in)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, l->in_l, 1.0f, xd, l->in_l, A,
                l->in, 0.0f, u, r);
    for (int s = 0; s < l->nseg; s++)  // y[:, ycol:+cnt] += scale * u . B[brow:+cnt]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, l->cnt[s], r, l->scale, u, r,
                    B + (size_t)l->brow[s] * r, r, 1.0f, y + l->ycol[s], ldy);
}

void lmp_lora_backward(const lmp_lora *l, float *dx, const float *dy, int ldy, const float *x,
                       const float *u, float *du, float *xd_scratch, int N,
                       const lmp_rng_ctx *rc) {
    int r = l->r;
    const float *A = l->A->data + l->a0, *B = l->B->data;
    float *dA = l->A->grad ? l->A->grad + l->a0 : NULL, *dB = l->B->grad;
    for (int s = 0; s < l->nseg; s++) {
        const float *dys = dy + l->ycol[s];
        const float *Bs = B + (size_t)l->brow[s] * r;
        if (dB)  // dB_seg (cnt,r) += scale * dy_seg^T (cnt,N) . u (N,r)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l->cnt[s], r, N, l->scale, dys,
                        ldy, u, r, 1.0f, dB + (size_t)l->brow[s] * r, r);
        // du (N,r) (+)= scale * dy_seg (N,cnt) . B_seg (cnt,r)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, l->cnt[s], l->scale, dys,
                    ldy, Bs, r, s ? 1.0f : 0.0f, du, r);
    }
    int drop = l->dropout > 0.0f && rc->training;
    const float *xd = dropped_input(l, x, xd_scratch, N, rc);
    if (dA)  // dA_l (r,in_l) += du^T (r,N) . xd (N,in_l)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, l->in_l, N, 1.0f, du, r, xd,
                    l->in_l, 1.0f, dA, l->in);
    if (!dx) return;
    if (!drop) {  // dx (N,in_l) += du (N,r) . A_l (r,in_l)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, l->in_l, r, 1.0f, du, r, A,
                    l->in, 1.0f, dx, l->in_l);
        return;
    }
    // With dropout the input gradient passes the same mask, d(xd)/dx = mask/(1-p): the mask
    // is redrawn from the counter RNG rather than stored (N*in bytes per module).
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, l->in_l, r, 1.0f, du, r, A, l->in,
                0.0f, xd_scratch, l->in_l);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int j = 0; j < l->in_l; j++) {
            size_t k = (size_t)n * l->in_l + j;
            dx[k] += xd_scratch[k] * mask_at(l, rc, n, j);
        }
}
