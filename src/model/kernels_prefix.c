// kernels_prefix.c: causal attention with prefix keys/values (kernels.h). Kept apart from the
// plain kernel, which runs unchanged when a model has no prefixes.
//
// Per (b, query head h of kv head kh), S = P + T columns:
//   scores (T,S) = scale q [pk; k]^T, row t softmaxed over columns 0 .. P + t (zeros after)
//   out (T,hs) = att[:, :P] pv + att[:, P:] v
// Backward, dscore = att * (datt - rowsum(att * datt)), datt = dout [pv; v]^T:
//   dpv += att[:, :P]^T dout    dv += att[:, P:]^T dout
//   dq += scale (dscore[:, :P] pk + dscore[:, P:] k)
//   dpk += scale dscore[:, :P]^T q    dk += scale dscore[:, P:]^T q
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>

// Row t of a (T,S) block over its first P + t + 1 columns, zeros after.
static void softmax_prefix(float *a, int P, int T) {
    int S = P + T;
    for (int t = 0; t < T; t++) {
        float *row = a + (size_t)t * S;
        lmp_softmax_inplace(row, P + t + 1);
        for (int j = P + t + 1; j < S; j++) row[j] = 0.0f;
    }
}

// One head's probabilities a (T,S): scores against the prefix keys, then the sequence's,
// softmaxed. The forward and the recompute (lmp_sdpa_prefix_probs) share it: the same bits.
static void prefix_probs_head(float *a, const float *qb, const float *kb, const float *pkh, int ld,
                              int ldp, int P, int T, int hs, float scale) {
    int S = P + T;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, P, hs, scale, qb, ld, pkh, ldp, 0.0f, a, S);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, qb, ld, kb, ld, 0.0f, a + P, S);
    softmax_prefix(a, P, T);
}

void lmp_sdpa_prefix_probs(float *att, const float *q, const float *k, int ld, const float *pk,
                           int ldp, int P, int B, int T, int NH, int KVH, int hs) {
    int grp = NH / KVH, S = P + T;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) {
        int b = bk / KVH, kh = bk % KVH;
        const float *kb = k + (size_t)b * T * ld + kh * hs;
        for (int h = kh * grp; h < (kh + 1) * grp; h++)
            prefix_probs_head(att + ((size_t)b * NH + h) * T * S, q + (size_t)b * T * ld + h * hs, kb,
                              pk + kh * hs, ld, ldp, P, T, hs, scale);
    }
}

void lmp_sdpa_prefix_forward(float *out, float *att, const float *q, const float *k,
                             const float *v, int ld, const float *pk, const float *pv, int ldp,
                             int P, int B, int T, int NH, int KVH, int hs) {
    int grp = NH / KVH, C = NH * hs, S = P + T;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) {
        int b = bk / KVH, kh = bk % KVH;
        const float *kb = k + (size_t)b * T * ld + kh * hs, *vb = v + (size_t)b * T * ld + kh * hs;
        const float *pkh = pk + kh * hs, *pvh = pv + kh * hs;
        for (int h = kh * grp; h < (kh + 1) * grp; h++) {
            const float *qb = q + (size_t)b * T * ld + h * hs;
            float *a = att + ((size_t)b * NH + h) * T * S, *o = out + (size_t)b * T * C + h * hs;
            prefix_probs_head(a, qb, kb, pkh, ld, ldp, P, T, hs, scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, P, 1.0f, a, S, pvh, ldp,
                        0.0f, o, C);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, a + P, S, vb, ld,
                        1.0f, o, C);
        }
    }
}

// The softmax backward of a (T,S) block in place: da <- a * (da - rowsum(a * da)).
static void softmax_prefix_backward(float *da, const float *a, int P, int T) {
    int S = P + T;
    for (int t = 0; t < T; t++) {
        const float *ar = a + (size_t)t * S;
        float *dr = da + (size_t)t * S;
        double dot = 0.0;
        for (int j = 0; j <= P + t; j++) dot += (double)ar[j] * dr[j];
        float d = (float)dot;
        for (int j = 0; j <= P + t; j++) dr[j] = ar[j] * (dr[j] - d);
        for (int j = P + t + 1; j < S; j++) dr[j] = 0.0f;
    }
}

typedef struct {
    const float *q, *k, *v, *pk, *pv, *a, *dy;
    float *dq, *dk, *dv, *dpk, *dpv, *da;
    int ld, ldp, P, T, hs, C;
} head_args;

// One (b, h) pair: datt, dv, dpv, the softmax backward, then dq, dk, dpk.
static void prefix_backward_head(const head_args *x) {
    int P = x->P, T = x->T, hs = x->hs, S = P + T, ld = x->ld, ldp = x->ldp, C = x->C;
    float scale = 1.0f / sqrtf((float)hs);
    float *da = x->da;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, P, hs, 1.0f, x->dy, C, x->pv, ldp, 0.0f, da, S);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, x->dy, C, x->v, ld, 0.0f, da + P, S);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, x->a + P, S, x->dy, C, 1.0f, x->dv, ld);
    if (x->dpv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, hs, T, 1.0f, x->a, S, x->dy, C, 1.0f, x->dpv, ldp);
    softmax_prefix_backward(da, x->a, P, T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, P, scale, da, S, x->pk, ldp, 1.0f, x->dq, ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, da + P, S, x->k, ld, 1.0f, x->dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, da + P, S, x->q, ld, 1.0f, x->dk, ld);
    if (x->dpk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, hs, T, scale, da, S, x->q, ld, 1.0f, x->dpk, ldp);
}

// Parallel over kv heads only: the prefix gradients of a kv head sum over the batch, in b
// order inside one thread (reproducible), and no two threads write the same columns.
void lmp_sdpa_prefix_backward(float *dq, float *dk, float *dv, float *dpk, float *dpv, float *datt,
                              const float *dout, const float *q, const float *k, const float *v,
                              int ld, const float *pk, const float *pv, int ldp, const float *att,
                              int P, int B, int T, int NH, int KVH, int hs) {
    int grp = NH / KVH, C = NH * hs, S = P + T;
#pragma omp parallel for schedule(static)
    for (int kh = 0; kh < KVH; kh++) {
        for (int b = 0; b < B; b++) {
            size_t kv = (size_t)b * T * ld + kh * hs;
            for (int h = kh * grp; h < (kh + 1) * grp; h++) {
                size_t qo = (size_t)b * T * ld + h * hs, bh = (size_t)b * NH + h;
                head_args x = {.q = q + qo, .k = k + kv, .v = v + kv, .pk = pk + kh * hs,
                               .pv = pv + kh * hs, .a = att + bh * T * S,
                               .dy = dout + (size_t)b * T * C + h * hs, .dq = dq + qo, .dk = dk + kv,
                               .dv = dv + kv, .dpk = dpk ? dpk + kh * hs : NULL,
                               .dpv = dpv ? dpv + kh * hs : NULL, .da = datt + bh * T * S,
                               .ld = ld, .ldp = ldp, .P = P, .T = T, .hs = hs, .C = C};
                prefix_backward_head(&x);
            }
        }
    }
}
