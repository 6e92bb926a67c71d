// lora.c: LoRA forward/backward on one linear layer's local shard.
//
// Shapes (N rows, local input in_l, r): u = xd . A_l^T is (N,r); y[:, seg] += s u B_seg^T.
// Backward with dy on this rank's output columns:
//   dB_seg += s dy_seg^T u        du = s sum_seg dy_seg B_seg
//   dA_l   += du^T xd             dx += (du A_l) * mask/(1-p)
#include "adapters/lora.h"
#include "core/rng.h"
#include "core/util.h"

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
                              : lmp_rng_sym(seed, stream, gi, bound);
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

// Rows [n0, n1) of xd = x * mask / (1-p).
static void dropout_rows(const lmp_lora *l, float *xd, const float *x, int n0, int n1,
                         const lmp_rng_ctx *rc) {
    for (int n = n0; n < n1; n++)
        for (int j = 0; j < l->in_l; j++) {
            size_t k = (size_t)n * l->in_l + j;
            xd[k] = x[k] * mask_at(l, rc, n, j);
        }
}

static int dropping(const lmp_lora *l, const lmp_rng_ctx *rc) {
    return l->dropout > 0.0f && rc->training;
}

const float *lmp_lora_dropped(const lmp_lora *l, const float *x, float *xd_scratch, int N,
                             const lmp_rng_ctx *rc) {
    if (!dropping(l, rc)) return x;
#pragma omp parallel
    {
        int n0, n1;
        lmp_omp_range(N, &n0, &n1);
        dropout_rows(l, xd_scratch, x, n0, n1, rc);
    }
    return xd_scratch;
}

void lmp_lora_dropout_add(const lmp_lora *l, float *dx, const float *g, int N, const lmp_rng_ctx *rc) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int j = 0; j < l->in_l; j++) {
            size_t k = (size_t)n * l->in_l + j;
            dx[k] += g[k] * mask_at(l, rc, n, j);
        }
}

// The adapter's products are skinny (r columns, r = 8 or 16): OpenBLAS's own threading of
// them was slower on 2 threads than on 1 (GPT-2, LoRA on all linear layers: 250 -> 339 ms
// per step). So each runs inside one OpenMP region over blocks of rows (or of A's/B's rows
// for the weight gradients, which sum over all N rows in one sgemm), where OpenBLAS runs
// single-threaded. Every output element is written by one thread: no partial sums to merge.

void lmp_lora_forward(const lmp_lora *l, float *y, int ldy, const float *x, float *u,
                      float *xd_scratch, int N, const lmp_rng_ctx *rc) {
    int r = l->r, drop = dropping(l, rc);
    const float *A = l->A->data + l->a0, *B = l->B->data, *xd = drop ? xd_scratch : x;
#pragma omp parallel
    {
        int n0, n1;
        lmp_omp_range(N, &n0, &n1);
        if (n1 > n0) {
            if (drop) dropout_rows(l, xd_scratch, x, n0, n1, rc);
            // u[n0:n1] (rows, r) = xd[n0:n1] (rows, in_l) . A_l^T, A_l the columns
            // [a0, a0+in_l) of A (r, in)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n1 - n0, r, l->in_l, 1.0f,
                        xd + (size_t)n0 * l->in_l, l->in_l, A, l->in, 0.0f, u + (size_t)n0 * r, r);
            for (int s = 0; s < l->nseg; s++)  // y[n0:n1, ycol:+cnt] += scale * u . B[brow:+cnt]^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n1 - n0, l->cnt[s], r,
                            l->scale, u + (size_t)n0 * r, r, B + (size_t)l->brow[s] * r, r, 1.0f,
                            y + (size_t)n0 * ldy + l->ycol[s], ldy);
        }
    }
}

// Rows [n0, n1): du = scale * sum_seg dy_seg . B_seg (rows, r), and xd's rows if dropped.
static void backward_rows(const lmp_lora *l, float *du, float *xd_scratch, const float *dy,
                          int ldy, const float *x, int n0, int n1, const lmp_rng_ctx *rc) {
    int r = l->r;
    for (int s = 0; s < l->nseg; s++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n1 - n0, r, l->cnt[s], l->scale,
                    dy + (size_t)n0 * ldy + l->ycol[s], ldy, l->B->data + (size_t)l->brow[s] * r,
                    r, s ? 1.0f : 0.0f, du + (size_t)n0 * r, r);
    if (dropping(l, rc)) dropout_rows(l, xd_scratch, x, n0, n1, rc);
}

// This thread's rows of dB (B's rows of every segment, in one global count) and columns
// of dA, each summed over all N rows by one sgemm.
static void weight_grads(const lmp_lora *l, const float *dy, int ldy, const float *u,
                         const float *du, const float *xd, int N) {
    int r = l->r, total = 0, j0, j1;
    float *dB = l->B->grad;
    for (int s = 0; s < l->nseg; s++) total += l->cnt[s];
    if (dB) {
        int c0, c1;
        lmp_omp_range(total, &c0, &c1);
        for (int s = 0, base = 0; s < l->nseg; base += l->cnt[s], s++) {
            int lo = c0 > base ? c0 - base : 0, hi = c1 - base < l->cnt[s] ? c1 - base : l->cnt[s];
            if (hi <= lo) continue;
            // dB[brow+lo : brow+hi] (rows, r) += scale * dy[:, ycol+lo : ycol+hi]^T . u (N, r)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, r, N, l->scale,
                        dy + l->ycol[s] + lo, ldy, u, r, 1.0f, dB + (size_t)(l->brow[s] + lo) * r, r);
        }
    }
    if (!l->A->grad) return;
    lmp_omp_range(l->in_l, &j0, &j1);
    if (j1 > j0)  // dA_l[:, j0:j1] (r, cols) += du^T (r, N) . xd[:, j0:j1]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, j1 - j0, N, 1.0f, du, r, xd + j0,
                    l->in_l, 1.0f, l->A->grad + l->a0 + j0, l->in);
}

// Rows [n0, n1) of dx += (du . A_l) * mask/(1-p); with dropout the product goes through
// xd_scratch's rows (the mask is redrawn from the counter RNG rather than stored).
static void input_grad_rows(const lmp_lora *l, float *dx, const float *du, float *xd_scratch,
                            int n0, int n1, const lmp_rng_ctx *rc) {
    int drop = dropping(l, rc), in_l = l->in_l;
    float *dst = drop ? xd_scratch : dx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n1 - n0, in_l, l->r, 1.0f,
                du + (size_t)n0 * l->r, l->r, l->A->data + l->a0, l->in, drop ? 0.0f : 1.0f,
                dst + (size_t)n0 * in_l, in_l);
    if (!drop) return;
    for (int n = n0; n < n1; n++)
        for (int j = 0; j < in_l; j++) {
            size_t k = (size_t)n * in_l + j;
            dx[k] += xd_scratch[k] * mask_at(l, rc, n, j);
        }
}

void lmp_lora_backward(const lmp_lora *l, float *dx, const float *dy, int ldy, const float *x,
                       const float *u, float *du, float *xd_scratch, int N,
                       const lmp_rng_ctx *rc) {
    const float *xd = dropping(l, rc) ? xd_scratch : x;
#pragma omp parallel
    {
        int n0, n1;
        lmp_omp_range(N, &n0, &n1);
        if (n1 > n0) backward_rows(l, du, xd_scratch, dy, ldy, x, n0, n1, rc);
#pragma omp barrier
        weight_grads(l, dy, ldy, u, du, xd, N);
        // xd_scratch is reused for dx's rows only after every thread has read xd.
#pragma omp barrier
        if (dx && n1 > n0) input_grad_rows(l, dx, du, xd_scratch, n0, n1, rc);
    }
}

// ---------------------------------------------------------------------------------------
// The method behind the adapter interface (adapter.h): one instance per adapted module.

#include <stdlib.h>

typedef struct {
    lmp_adapter base;
    lmp_lora l;
} lora_adapter;

const lmp_lora *lmp_lora_of(const lmp_adapter *a) { return &((const lora_adapter *)a)->l; }

float lmp_lora_scaling(float alpha, int r, int rslora) {
    return rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
}

// A (r, in) and B (out, r), replicated on every rank; their gradients are partial sums over
// the tp group (each rank sees its shard of the layer, comm.c).
static lmp_adapter *lora_add_linear(lmp_registry *reg, const lmp_adapter_rec *rec,
                                    const lmp_linear_view *v, const lmp_adapter_opts *o) {
    lora_adapter *a = lmp_calloc(sizeof *a);
    lmp_adapter_rec r = *rec;
    r.r = o->r;
    r.alpha = o->alpha;
    r.scale = lmp_lora_scaling(o->alpha, o->r, o->rslora);
    lmp_adapter_rec *x = lmp_registry_add_rec(reg, &r);
    a->base.method = &lmp_lora_method;
    a->base.rec = (int)(x - reg->rec);
    char name[LMP_NAME_MAX + 8];
    int64_t sa[2] = {o->r, rec->in}, sb[2] = {rec->out, o->r};
    lmp_param *A = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.lora_A", rec->name), 2,
                                    sa, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(reg, x, A);
    lmp_param *B = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.lora_B", rec->name), 2,
                                    sb, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(reg, x, B);
    lmp_lora *l = &a->l;
    *l = (lmp_lora){.A = A, .B = B, .in = (int)rec->in, .out = (int)rec->out, .r = o->r,
                    .scale = r.scale, .dropout = o->dropout, .a0 = v->a0, .in_l = v->in_l,
                    .nseg = v->nseg, .stream = lmp_hash_str(rec->name)};
    for (int s = 0; s < v->nseg; s++) {
        l->brow[s] = v->brow[s];
        l->ycol[s] = v->ycol[s];
        l->cnt[s] = v->cnt[s];
    }
    return &a->base;
}

static void lora_init(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian) {
    lmp_lora_init_params(&((lora_adapter *)a)->l, gaussian, seed);
}

// u (N, r) is kept for backward.
static size_t lora_saved(const lmp_adapter *a) { return (size_t)((const lora_adapter *)a)->l.r; }
// du (N, r) then xd (N, in_l), the dropped-out input.
static size_t lora_scratch(const lmp_adapter *a) {
    const lmp_lora *l = &((const lora_adapter *)a)->l;
    return (size_t)l->r + (size_t)l->in_l;
}

static void lora_fwd(lmp_adapter *a, float *y, int ldy, const float *x, float *saved,
                     float *scratch, int N, const lmp_rng_ctx *rc) {
    const lmp_lora *l = &((lora_adapter *)a)->l;
    lmp_lora_forward(l, y, ldy, x, saved, scratch + (size_t)N * l->r, N, rc);
}

static void lora_bwd(lmp_adapter *a, float *dx, const float *dy, int ldy, const float *x,
                     const float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    const lmp_lora *l = &((lora_adapter *)a)->l;
    lmp_lora_backward(l, dx, dy, ldy, x, saved, scratch, scratch + (size_t)N * l->r, N, rc);
}

static void lora_free(lmp_adapter *a) { free(a); }

const lmp_adapter_method lmp_lora_method = {
    .name = "lora",
    .hooks = LMP_HOOK_LINEAR,
    .add_linear = lora_add_linear,
    .init = lora_init,
    .saved_per_row = lora_saved,
    .scratch_per_row = lora_scratch,
    .linear_forward = lora_fwd,
    .linear_backward = lora_bwd,
    .free = lora_free,
};
