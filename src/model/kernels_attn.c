// kernels_attn.c: causal attention, with or without P prefix keys/values (kernels.h), in tiles
// of ATT_TB query rows, so no (T, P + T) probability matrix is ever held.
//
// Per (b, query head h of kv head kh) and tile of query rows [t0, t1), S = P + t1 columns:
//   scores (tb,S) = scale q[t0:t1] [pk; k[0:t1]]^T, row t softmaxed over columns 0 .. P + t
//   out[t0:t1] = prob[:, :P] pv + prob[:, P:] v[0:t1]
// Backward, the tile's probabilities computed again by the same code (the same bits), then
// dscore = prob * (dprob - rowsum(prob * dprob)), dprob = dout[t0:t1] [pv; v[0:t1]]^T:
//   dpv += prob[:, :P]^T dout    dv[0:t1] += prob[:, P:]^T dout
//   dq[t0:t1] += scale (dscore[:, :P] pk + dscore[:, P:] k[0:t1])
//   dpk += scale dscore[:, :P]^T q    dk[0:t1] += scale dscore[:, P:]^T q
// Memory: two (ATT_TB, P + T) tiles per thread (lmp_sdpa_scratch_floats) instead of the
// (B,NH,T,P+T) probabilities and their gradient: 2 x 201 MB per GPT-2 layer at T = 2048.
// Work: the backward computes the scores once more (one more product of the five it runs);
// the tiles skip the masked upper triangle past t1 as before.
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

// Query rows per tile: products of 64 rows run near the sgemm's peak, and a tile stays
// small (64 x (P + T) floats: 512 kB at T = 2048).
#define ATT_TB 64

static int tile_rows(int T) { return T < ATT_TB ? T : ATT_TB; }

int lmp_sdpa_threads(void) { return omp_get_max_threads(); }

size_t lmp_sdpa_scratch_floats(int P, int T) {
    return (size_t)omp_get_max_threads() * 2 * tile_rows(T) * (size_t)(P + T);
}

// Everything one call works on; per (b, kv head) unit the pointers are offset by unit_at.
typedef struct {
    const float *q, *k, *v, *pk, *pv, *dy;  // dy (B,T,NH hs): the backward's dout
    float *out, *dq, *dk, *dv, *dpk, *dpv;  // dpk, dpv may be NULL (skipped)
    float *scratch;
    int ld, ldp, P, T, NH, KVH, hs;
} sdpa_args;

// The probabilities of query rows [t0, t1) of one head into pr (t1 - t0, P + t1), row stride
// ldr: scores against the prefix keys then keys 0 .. t1 - 1 (scale folded into the
// products), each row softmaxed over its P + t + 1 valid columns, zeros after. The forward
// and the backward both call it: the backward's probabilities are the forward's bits.
static void probs_tile(float *pr, int ldr, const float *qb, const float *kb, const float *pkh,
                       int ld, int ldp, int P, int t0, int t1, int hs, float scale) {
    int tb = t1 - t0;
    const float *qt = qb + (size_t)t0 * ld;
    if (P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, P, hs, scale, qt, ld, pkh, ldp,
                    0.0f, pr, ldr);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, t1, hs, scale, qt, ld, kb, ld, 0.0f,
                pr + P, ldr);
    for (int i = 0; i < tb; i++) {
        float *row = pr + (size_t)i * ldr;
        int n = P + t0 + i + 1;
        lmp_softmax_inplace(row, n);
        for (int j = n; j < P + t1; j++) row[j] = 0.0f;
    }
}

// This thread's two tiles (ATT_TB, P + T) in the scratch: probabilities, then their gradient.
static float *thread_tiles(const sdpa_args *a) {
    return a->scratch + (size_t)omp_get_thread_num() * 2 * tile_rows(a->T) * (size_t)(a->P + a->T);
}

// Unit (b, kh): every query head of kv head kh of sequence b, tile by tile.
static void unit_forward(const sdpa_args *a, int b, int kh) {
    int grp = a->NH / a->KVH, C = a->NH * a->hs, ld = a->ld, ldp = a->ldp, P = a->P, T = a->T;
    int hs = a->hs, ldr = P + T;
    float scale = 1.0f / sqrtf((float)hs), *pr = thread_tiles(a);
    const float *kb = a->k + (size_t)b * T * ld + kh * hs, *vb = a->v + (size_t)b * T * ld + kh * hs;
    const float *pkh = a->pk ? a->pk + kh * hs : NULL, *pvh = a->pv ? a->pv + kh * hs : NULL;
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
        const float *qb = a->q + (size_t)b * T * ld + h * hs;
        float *ob = a->out + (size_t)b * T * C + h * hs;
        for (int t0 = 0; t0 < T; t0 += ATT_TB) {
            int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T, tb = t1 - t0;
            probs_tile(pr, ldr, qb, kb, pkh, ld, ldp, P, t0, t1, hs, scale);
            // out[t0:t1] (tb, hs) = prob[:, :P] pv + prob[:, P:P+t1] v[0:t1]
            if (P)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hs, P, 1.0f, pr, ldr,
                            pvh, ldp, 0.0f, ob + (size_t)t0 * C, C);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hs, t1, 1.0f, pr + P, ldr,
                        vb, ld, P ? 1.0f : 0.0f, ob + (size_t)t0 * C, C);
        }
    }
}

// The softmax backward of a tile in place: dp <- pr * (dp - rowsum(pr * dp)) over each row's
// valid columns (the dot in double), zeros after.
static void softmax_tile_backward(float *dp, const float *pr, int ldr, int P, int t0, int t1) {
    for (int i = 0; i < t1 - t0; i++) {
        const float *ar = pr + (size_t)i * ldr;
        float *dr = dp + (size_t)i * ldr;
        int n = P + t0 + i + 1;
        double dot = 0.0;
        for (int j = 0; j < n; j++) dot += (double)ar[j] * dr[j];
        float d = (float)dot;
        for (int j = 0; j < n; j++) dr[j] = ar[j] * (dr[j] - d);
        for (int j = n; j < P + t1; j++) dr[j] = 0.0f;
    }
}

// The pointers of one (b, query head h) pair and its kv head.
typedef struct {
    const float *q, *k, *v, *pk, *pv, *dy;
    float *dq, *dk, *dv, *dpk, *dpv;
} head_ptrs;

// One tile [t0, t1) of one head's backward; pr, dp: this thread's tiles.
static void tile_backward(const sdpa_args *a, const head_ptrs *x, float *pr, float *dp, int t0,
                          int t1) {
    int ld = a->ld, ldp = a->ldp, P = a->P, hs = a->hs, C = a->NH * hs, ldr = P + a->T;
    int tb = t1 - t0;
    float scale = 1.0f / sqrtf((float)hs);
    const float *dyt = x->dy + (size_t)t0 * C, *qt = x->q + (size_t)t0 * ld;
    probs_tile(pr, ldr, x->q, x->k, x->pk, ld, ldp, P, t0, t1, hs, scale);
    // dprob (tb, P + t1) = dy[t0:t1] [pv; v[0:t1]]^T
    if (P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, P, hs, 1.0f, dyt, C, x->pv, ldp,
                    0.0f, dp, ldr);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, t1, hs, 1.0f, dyt, C, x->v, ld, 0.0f,
                dp + P, ldr);
    // dv[0:t1] (t1, hs) += prob[:, P:]^T dy[t0:t1] ;  dpv (P, hs) += prob[:, :P]^T dy[t0:t1]
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, hs, tb, 1.0f, pr + P, ldr, dyt, C, 1.0f,
                x->dv, ld);
    if (P && x->dpv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, hs, tb, 1.0f, pr, ldr, dyt, C, 1.0f,
                    x->dpv, ldp);
    softmax_tile_backward(dp, pr, ldr, P, t0, t1);
    // dq[t0:t1] += scale (dscore[:, :P] pk + dscore[:, P:] k[0:t1])
    if (P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hs, P, scale, dp, ldr, x->pk, ldp,
                    1.0f, x->dq + (size_t)t0 * ld, ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hs, t1, scale, dp + P, ldr, x->k, ld,
                1.0f, x->dq + (size_t)t0 * ld, ld);
    // dk[0:t1] (t1, hs) += scale dscore[:, P:]^T q[t0:t1] ;  dpk += scale dscore[:, :P]^T q[t0:t1]
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t1, hs, tb, scale, dp + P, ldr, qt, ld, 1.0f,
                x->dk, ld);
    if (P && x->dpk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, hs, tb, scale, dp, ldr, qt, ld, 1.0f,
                    x->dpk, ldp);
}

// Unit (b, kh): its query heads in order, each tile by tile in order, so the sums into dk, dv
// (and dpk, dpv) of the unit have one fixed order whatever the thread count.
static void unit_backward(const sdpa_args *a, int b, int kh) {
    int grp = a->NH / a->KVH, hs = a->hs, T = a->T, C = a->NH * hs;
    size_t kv = (size_t)b * T * a->ld + kh * hs;
    float *pr = thread_tiles(a), *dp = pr + (size_t)tile_rows(T) * (a->P + T);
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
        size_t qo = (size_t)b * T * a->ld + h * hs;
        head_ptrs x = {.q = a->q + qo, .k = a->k + kv, .v = a->v + kv,
                       .pk = a->pk ? a->pk + kh * hs : NULL, .pv = a->pv ? a->pv + kh * hs : NULL,
                       .dy = a->dy + (size_t)b * T * C + h * hs, .dq = a->dq + qo,
                       .dk = a->dk + kv, .dv = a->dv + kv,
                       .dpk = a->dpk ? a->dpk + kh * hs : NULL, .dpv = a->dpv ? a->dpv + kh * hs : NULL};
        for (int t0 = 0; t0 < T; t0 += ATT_TB)
            tile_backward(a, &x, pr, dp, t0, t0 + ATT_TB < T ? t0 + ATT_TB : T);
    }
}

// The products inside run single-threaded: OpenMP OpenBLAS does not nest inside our region.
// The plain kernels are the prefix kernels with P = 0 and no prefix gradients.
void lmp_sdpa_forward(float *out, float *scratch, const float *q, const float *k, const float *v,
                      int ld, int B, int T, int NH, int KVH, int hs) {
    lmp_sdpa_prefix_forward(out, scratch, q, k, v, ld, NULL, NULL, 0, 0, B, T, NH, KVH, hs);
}

void lmp_sdpa_prefix_forward(float *out, float *scratch, const float *q, const float *k,
                             const float *v, int ld, const float *pk, const float *pv, int ldp,
                             int P, int B, int T, int NH, int KVH, int hs) {
    sdpa_args a = {.q = q, .k = k, .v = v, .pk = pk, .pv = pv, .out = out, .scratch = scratch,
                   .ld = ld, .ldp = ldp, .P = P, .T = T, .NH = NH, .KVH = KVH, .hs = hs};
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) unit_forward(&a, bk / KVH, bk % KVH);
}

void lmp_sdpa_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                       const float *q, const float *k, const float *v, int ld, int B, int T,
                       int NH, int KVH, int hs) {
    lmp_sdpa_prefix_backward(dq, dk, dv, NULL, NULL, scratch, dout, q, k, v, ld, NULL, NULL, 0, 0,
                             B, T, NH, KVH, hs);
}

// Parallel over (b, kv head) units; with prefix gradients over kv heads only: those sum over
// the batch, in b order inside one thread (reproducible), and no two threads write the same
// columns. A unit's own sums (dk, dv) run in the same order either way.
void lmp_sdpa_prefix_backward(float *dq, float *dk, float *dv, float *dpk, float *dpv,
                              float *scratch, const float *dout, const float *q, const float *k,
                              const float *v, int ld, const float *pk, const float *pv, int ldp,
                              int P, int B, int T, int NH, int KVH, int hs) {
    sdpa_args a = {.q = q, .k = k, .v = v, .pk = pk, .pv = pv, .dy = dout, .dq = dq, .dk = dk,
                   .dv = dv, .dpk = dpk, .dpv = dpv, .scratch = scratch, .ld = ld, .ldp = ldp,
                   .P = P, .T = T, .NH = NH, .KVH = KVH, .hs = hs};
    if (P && (dpk || dpv)) {
#pragma omp parallel for schedule(static)
        for (int kh = 0; kh < KVH; kh++)
            for (int b = 0; b < B; b++) unit_backward(&a, b, kh);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * KVH; bk++) unit_backward(&a, bk / KVH, bk % KVH);
}
