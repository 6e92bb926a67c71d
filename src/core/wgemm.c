// wgemm.c: frozen-weight GEMMs of either storage (wgemm.h).
#include "core/wgemm.h"
#include "core/bf16.h"
#include "core/dnnl.h"
#include "core/util.h"

#include <cblas.h>
#include <stdlib.h>

// The bf16 copy of a GEMM's input: one workspace, grown to the largest (N, K) seen, so a
// step allocates nothing after its first iteration.
static uint16_t *ws;
static size_t ws_cap;

static uint16_t *workspace(size_t n) {
    if (n > ws_cap) {
        free(ws);
        ws = lmp_malloc(n * sizeof *ws);
        ws_cap = n;
    }
    return ws;
}

void lmp_wgemm(const lmp_param *w, int w_oi, int back, float *y, int ldy, const float *x, int ldx,
               int N, float beta) {
    int in_l = (int)w->local_shape[w_oi ? 1 : 0], out_l = (int)w->local_shape[w_oi ? 0 : 1];
    int K = back ? out_l : in_l, M = back ? in_l : out_l;  // y (N, M) = x (N, K) . B (K, M)
    // B's storage: (K, M) row-major, or (M, K) row-major (transposed) when exactly one of
    // "stored (out, in)" and "backward" holds.
    int trans = w_oi ^ back;
    if (!w->h) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans, N, M, K, 1.0f, x,
                    ldx, w->data, trans ? K : M, beta, y, ldy);
        return;
    }
    LMP_CHECK(beta == 0.0f || beta == 1.0f, "internal: bf16 GEMM of %s with beta %g", w->name, (double)beta);
    if (N == 0 || M == 0) return;
    uint16_t *xb = workspace((size_t)N * K);
    lmp_bf16_from_f32(xb, (size_t)K, x, (size_t)ldx, (size_t)N, (size_t)K);
    lmp_dnnl_matmul_bf16(y, ldy, xb, w->h, N, K, M, trans, beta == 1.0f);
}

void lmp_wgemm_release(void) {
    free(ws);
    ws = NULL;
    ws_cap = 0;
}
