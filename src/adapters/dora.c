// dora.c: DoRA on a (tensor-parallel) linear layer, as PEFT's LoRA with use_dora:
//    y = g ⊙ (W0 x + s B A x) + b,   g = m / ||W0 + s B A||_row  (per output feature),
// the norm over the input features of each output row, treated as a constant in backward
// (PEFT detaches it, as the DoRA paper suggests). m (out) starts at the row norms of W0 and
// B at 0, so g = 1 exactly and the layer is unchanged bit for bit. A, B, m are replicated.
// The hook adds to the base product y0 = W0 x the layer computed (bias removed):
//    y += (g - 1) ⊙ y0 + g ⊙ s (x A^T) B^T
// TP rule of the norms: column-parallel, a rank holds whole rows of W0 (its output
// columns; x whole), so its norms are local; row-parallel, a rank holds the input features
// [a0, a0 + in_l) of every row, so each norm's square is a sum over the tp group: one
// all-reduce of `out` floats per module and forward (B A changes every step), before the
// layer's own all-reduce of y (y0 is partial there too: g ⊙ partial rides on it).
// Backward (dy on this rank's columns; the base backward already added dy W0^T):
//    dm_j += Σ_n dy_nj pre_nj / ||.||_j,  pre = y0 + s (x A^T) B^T   (partial: TP_SUM)
//    LoRA's backward with dy ⊙ g                                      (dA, dB, dx)
//    dx += (dy ⊙ (g - 1)) W0^T
// With dropout (training), as PEFT: the base product stays W0 x, the DoRA terms see the
// dropped-out input xd (LoRA's mask): y += (g - 1) ⊙ W0 xd + g ⊙ s (xd A^T) B^T, so y0 above
// is W0 xd and the dx of the last line passes the mask.
#include "adapters/dora.h"
#include "adapters/lora.h"
#include "core/util.h"
#include "core/wgemm.h"

#include "core/sgemm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int lmp_dora_freeze_norms = 0;

typedef struct {
    lmp_adapter base;
    lmp_lora l;           // A, B, scale and the segments (lora.h)
    lmp_param *m, *w, *b;
    int w_oi, row_parallel, out_l, bias_cols, k_cols, qoff[LMP_VIEW_MAX_SEG];
    lmp_comm *comm;
    float *nrm;           // (k_cols) ||W0 + s B A|| of this rank's adapted columns
    float *D;             // (max cnt, in_l) scratch: s B_seg A_l
} dora_adapter;

static lmp_adapter *dora_add_linear(lmp_registry *reg, const lmp_adapter_rec *rec,
                                    const lmp_linear_view *v, const lmp_adapter_opts *o) {
    // No weight: a registry without a model (export); else the base weight must be frozen.
    LMP_CHECK(!v->w || !v->w->trainable, "dora on %s: the base weight must be frozen", rec->name);
    lmp_adapter *lo = lmp_lora_method.add_linear(reg, rec, v, o);  // A, B and the record
    dora_adapter *a = lmp_calloc(sizeof *a);
    a->l = *lmp_lora_of(lo);
    a->base = *lo;
    a->base.method = &lmp_dora_method;
    lmp_lora_method.free(lo);
    lmp_adapter_rec *x = &reg->rec[a->base.rec];
    char name[LMP_NAME_MAX + 32];
    int64_t shape[1] = {rec->out};
    a->m = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.lora_magnitude_vector", rec->name), 1,
                            shape, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(reg, x, a->m);
    a->w = v->w;
    a->b = v->b;
    a->w_oi = v->w_oi;
    a->row_parallel = v->row_parallel;
    a->out_l = v->out_l;
    a->bias_cols = v->b && !v->row_parallel;  // column-parallel: y holds the bias already
    a->comm = v->comm;
    int maxc = 0;
    for (int s = 0; s < v->nseg; s++) {
        a->qoff[s] = a->k_cols;
        a->k_cols += v->cnt[s];
        maxc = v->cnt[s] > maxc ? v->cnt[s] : maxc;
    }
    a->nrm = lmp_calloc((size_t)a->k_cols * sizeof(float));
    a->D = lmp_calloc((size_t)maxc * v->in_l * sizeof(float));
    return &a->base;
}

// ||W0 + s B A||² over this rank's input features, for its adapted columns (q order).
static void local_sq(dora_adapter *a, float *sq) {
    const lmp_lora *l = &a->l;
    const lmp_param *W = a->w;  // either storage: widened element by element
    for (int s = 0; s < l->nseg; s++) {
        // D (cnt, in_l) = s B_seg (cnt, r) . A_l (r, in_l)
        lmp_sgemm(0, 0, l->cnt[s], l->in_l, l->r, l->scale, l->B->data + (size_t)l->brow[s] * l->r,
                  l->r, l->A->data + l->a0, l->in, 0.0f, a->D, l->in_l);
        for (int k = 0; k < l->cnt[s]; k++) {
            int c = l->ycol[s] + k;
            double acc = 0;
            for (int i = 0; i < l->in_l; i++) {
                float w = lmp_param_at(W, a->w_oi ? (size_t)c * l->in_l + i : (size_t)i * a->out_l + c);
                float v = w + a->D[(size_t)k * l->in_l + i];
                acc += (double)v * v;
            }
            sq[a->qoff[s] + k] = (float)acc;
        }
    }
}

// a->nrm: the norms of this rank's adapted columns (row-parallel: reduced over tp).
static void local_norms(dora_adapter *a) {
    local_sq(a, a->nrm);
    if (a->row_parallel && a->comm && a->comm->tp_size > 1)
        lmp_allreduce_f(a->comm, a->nrm, (size_t)a->k_cols, a->comm->tp);
    for (int q = 0; q < a->k_cols; q++) a->nrm[q] = sqrtf(a->nrm[q]);
}

void lmp_dora_norms(lmp_adapter *ad, float *out) {
    dora_adapter *a = (dora_adapter *)ad;
    local_norms(a);
    memset(out, 0, (size_t)a->l.out * sizeof(float));
    for (int s = 0; s < a->l.nseg; s++)
        for (int k = 0; k < a->l.cnt[s]; k++) out[a->l.brow[s] + k] = a->nrm[a->qoff[s] + k];
    // Column-parallel: each rank has its own rows (disjoint; the others add zeros).
    if (!a->row_parallel && a->comm && a->comm->tp_size > 1)
        lmp_allreduce_f(a->comm, out, (size_t)a->l.out, a->comm->tp);
}

static void dora_init(lmp_adapter *ad, const lmp_registry *reg, uint64_t seed, int gaussian) {
    (void)reg;
    dora_adapter *a = (dora_adapter *)ad;
    lmp_lora_init_params(&a->l, gaussian, seed);
    lmp_dora_norms(ad, a->m->data);  // B = 0: the norms of W0, so g = 1 exactly
}

// u = x A^T (N, r), then pre (N, k_cols) for dm.
static size_t dora_saved(const lmp_adapter *ad) {
    const dora_adapter *a = (const dora_adapter *)ad;
    return (size_t)a->l.r + (size_t)a->k_cols;
}

// Forward: the LoRA part (N, k_cols), W0 xd (N, out_l), xd (N, in_l). Backward: dy ⊙ g
// (N, k_cols), dy ⊙ (g - 1) (N, out_l), du (N, r), xd (N, in_l), (dy ⊙ (g - 1)) W0^T (N, in_l).
static size_t dora_scratch(const lmp_adapter *ad) {
    const dora_adapter *a = (const dora_adapter *)ad;
    return (size_t)a->k_cols + (size_t)a->out_l + (size_t)a->l.r + 2 * (size_t)a->l.in_l;
}

// c (N, out_l) = xd (N, in_l) . W0_l, or (back) c (N, in_l) = beta c + g (N, out_l) . W0_l^T.
// W0 of either storage (fp32, or bf16 through oneDNN: wgemm.h).
static void w0_times(const dora_adapter *a, float *c, const float *in, float beta, int back, int N) {
    int in_l = a->l.in_l, out_l = a->out_l;
    if (!back) lmp_wgemm(a->w, a->w_oi, 0, c, out_l, in, in_l, N, 0.0f);
    else lmp_wgemm(a->w, a->w_oi, 1, c, in_l, in, out_l, N, beta);
}

static void dora_fwd(lmp_adapter *ad, float *y, int ldy, const float *x, float *saved,
                     float *Z, int N, const lmp_rng_ctx *rc) {
    dora_adapter *a = (dora_adapter *)ad;
    const lmp_lora *l = &a->l;
    int K = a->k_cols, r = l->r;
    if (!lmp_dora_freeze_norms) local_norms(a);
    float *u = saved, *pre = saved + (size_t)N * r, *V = Z + (size_t)N * K;
    const float *xd = lmp_lora_dropped(l, x, V + (size_t)N * a->out_l, N, rc);
    int drop = xd != x;  // PEFT: W0 applied to the dropped-out input
    if (drop) w0_times(a, V, xd, 0.0f, 0, N);
    lmp_sgemm(0, 1, N, r, l->in_l, 1.0f, xd, l->in_l, l->A->data + l->a0, l->in, 0.0f, u, r);
    for (int s = 0; s < l->nseg; s++)  // Z[:, seg] = s u B_seg^T
        lmp_sgemm(0, 1, N, l->cnt[s], r, l->scale, u, r, l->B->data + (size_t)l->brow[s] * r, r,
                  0.0f, Z + a->qoff[s], K);
    const float *m = a->m->data;
    for (int n = 0; n < N; n++)
        for (int s = 0; s < l->nseg; s++)
            for (int k = 0; k < l->cnt[s]; k++) {
                int c = l->ycol[s] + k, q = a->qoff[s] + k;
                size_t nq = (size_t)n * K + q;
                float *yc = y + (size_t)n * ldy + c;
                float y0 = drop ? V[(size_t)n * a->out_l + c] : *yc - (a->bias_cols ? a->b->data[c] : 0.0f);
                float g = m[l->brow[s] + k] / a->nrm[q];
                pre[nq] = y0 + Z[nq];
                *yc += (g - 1.0f) * y0 + g * Z[nq];
            }
}

static void dora_bwd(lmp_adapter *ad, float *dx, const float *dy, int ldy, const float *x,
                     const float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    dora_adapter *a = (dora_adapter *)ad;
    const lmp_lora *l = &a->l;
    int K = a->k_cols, r = l->r;
    const float *u = saved, *pre = saved + (size_t)N * r, *m = a->m->data;
    float *dyg = scratch, *gm = dyg + (size_t)N * K, *du = gm + (size_t)N * a->out_l;
    float *xd = du + (size_t)N * r, *dm = a->m->grad;
    memset(gm, 0, (size_t)N * a->out_l * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int s = 0; s < l->nseg; s++)
            for (int k = 0; k < l->cnt[s]; k++) {
                int c = l->ycol[s] + k, q = a->qoff[s] + k, j = l->brow[s] + k;
                size_t nq = (size_t)n * K + q;
                float d = dy[(size_t)n * ldy + c], g = m[j] / a->nrm[q];
                if (dm) dm[j] += d * pre[nq] / a->nrm[q];
                dyg[nq] = d * g;
                gm[(size_t)n * a->out_l + c] = d * (g - 1.0f);
            }
    lmp_lora lc = *l;  // LoRA's backward on dy ⊙ g, laid out (N, k_cols)
    for (int s = 0; s < l->nseg; s++) lc.ycol[s] = a->qoff[s];
    lmp_lora_backward(&lc, dx, dyg, K, x, u, du, xd, N, rc);
    if (!dx) return;
    if (!(l->dropout > 0.0f && rc->training)) {
        w0_times(a, dx, gm, 1.0f, 1, N);  // dx += gm W0^T
        return;
    }
    float *t = xd + (size_t)N * l->in_l;  // through the dropout mask
    w0_times(a, t, gm, 0.0f, 1, N);
    lmp_lora_dropout_add(l, dx, t, N, rc);
}

static void dora_free(lmp_adapter *ad) {
    dora_adapter *a = (dora_adapter *)ad;
    free(a->nrm);
    free(a->D);
    free(a);
}

const lmp_adapter_method lmp_dora_method = {
    .name = "dora",
    .hooks = LMP_HOOK_LINEAR,
    .add_linear = dora_add_linear,
    .init = dora_init,
    .saved_per_row = dora_saved,
    .scratch_per_row = dora_scratch,
    .linear_forward = dora_fwd,
    .linear_backward = dora_bwd,
    .free = dora_free,
};
