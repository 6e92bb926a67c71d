// ia3.c: IA³ (Liu et al., 2022) on a (tensor-parallel) linear layer, as PEFT's IA3 Linear:
//  - a target that is not feed-forward scales the layer's OUTPUT (bias included):
//    y = (W x + b) ⊙ l, l (out) stored as PEFT's ia3_l (out, 1);
//  - a feed-forward target (PEFT's feedforward_modules) scales its INPUT:
//    y = W (x ⊙ l) + b, l (in) stored as (1, in).
// l starts at 1 (exactly neutral). It is replicated on every rank; the hook adds what the
// scaling changes to the base product the layer computed, y += f(x):
//  - output scaling: y += y0 ⊙ (l - 1), y0 the base output on this rank's columns
//    (column-parallel: its columns, bias included), or this rank's partial product
//    (row-parallel: partial over input features; the rank holding feature 0 adds the bias,
//    which the layer adds after its all-reduce: b (l - 1) rides on the all-reduce);
//  - input scaling: y += ((l - 1) ⊙ x_l) W_l on this rank's shard (row-parallel: its input
//    features, partial; column-parallel: x whole, its output columns).
// Backward (dy on this rank's output columns; the base backward already added dy W^T):
//    output:  dl_j += Σ_n dy_nj y0_nj           dx += (dy ⊙ (l - 1)) W^T
//    input:   g = dy W^T   dl_i += Σ_n g_ni x_ni   dx += g ⊙ (l - 1)
// dl is a partial sum over the tp group on either layout (LMP_GRAD_TP_SUM). The base weight
// must be frozen (its gradient would need the same correction).
#include "adapters/ia3.h"
#include "core/util.h"
#include "core/wgemm.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lmp_adapter base;
    lmp_param *l, *w, *b;
    int ff, w_oi, row_parallel, in_l, out_l, a0, bias_here, k_cols;
    int nseg, brow[LMP_VIEW_MAX_SEG], ycol[LMP_VIEW_MAX_SEG], cnt[LMP_VIEW_MAX_SEG];
} ia3_adapter;

static lmp_adapter *ia3_add_linear(lmp_registry *reg, const lmp_adapter_rec *rec,
                                   const lmp_linear_view *v, const lmp_adapter_opts *o) {
    // No weight: a registry without a model (export); else the base weight must be frozen.
    LMP_CHECK(!v->w || !v->w->trainable, "ia3 on %s: the base weight must be frozen", rec->name);
    if (o->ff && rec->slice >= 0)
        lmp_die_all("[adapter] feedforward: ia3 scales a feed-forward layer's whole input; %s is one "
                    "output block of %s", rec->target, rec->module);
    ia3_adapter *a = lmp_calloc(sizeof *a);
    lmp_adapter_rec r = *rec;
    r.r = o->ff;  // 1: feed-forward (input scaled), 0: output scaled
    r.alpha = r.scale = 1.0f;
    lmp_adapter_rec *x = lmp_registry_add_rec(reg, &r);
    a->base.method = &lmp_ia3_method;
    a->base.rec = (int)(x - reg->rec);
    char name[LMP_NAME_MAX + 8];
    int64_t shape[2] = {o->ff ? 1 : rec->out, o->ff ? rec->in : 1};
    a->l = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.ia3_l", rec->name), 2, shape, -1, 1,
                            0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(reg, x, a->l);
    *a = (ia3_adapter){.base = a->base, .l = a->l, .w = v->w, .b = v->b, .ff = o->ff,
                       .w_oi = v->w_oi, .row_parallel = v->row_parallel, .in_l = v->in_l,
                       .out_l = v->out_l, .a0 = v->a0, .nseg = v->nseg};
    // Row-parallel: the bias is added after the all-reduce; one rank scales it.
    a->bias_here = v->row_parallel && v->b && v->a0 == 0;
    for (int s = 0; s < v->nseg; s++) {
        a->brow[s] = v->brow[s];
        a->ycol[s] = v->ycol[s];
        a->cnt[s] = v->cnt[s];
        a->k_cols += v->cnt[s];
    }
    return &a->base;
}

static void ia3_init(lmp_adapter *ad, const lmp_registry *reg, uint64_t seed, int gaussian) {
    (void)reg, (void)seed, (void)gaussian;
    lmp_param *l = ((ia3_adapter *)ad)->l;
    for (size_t i = 0; i < l->numel; i++) l->data[i] = 1.0f;
}

// Output scaling keeps y0 (N, its columns); input scaling recomputes from x.
static size_t ia3_saved(const lmp_adapter *ad) {
    const ia3_adapter *a = (const ia3_adapter *)ad;
    return a->ff ? 0 : (size_t)a->k_cols;
}

// Input scaling: (l - 1) ⊙ x or dy W^T (N, in_l); output scaling: dy ⊙ (l - 1) (N, out_l).
static size_t ia3_scratch(const lmp_adapter *ad) {
    const ia3_adapter *a = (const ia3_adapter *)ad;
    return a->ff ? (size_t)a->in_l : (size_t)a->out_l;
}

// y (N, ldy) += xs (N, in_l) . W_l (this rank's shard, either storage, fp32 or bf16).
static void times_w(const ia3_adapter *a, float *y, int ldy, const float *xs, int N) {
    lmp_wgemm(a->w, a->w_oi, 0, y, ldy, xs, a->in_l, N, 1.0f);
}

// g (N, in_l) = beta g + dy (N, ldy) . W_l^T.
static void times_wt(const ia3_adapter *a, float *g, const float *dy, int ldy, float beta, int N) {
    lmp_wgemm(a->w, a->w_oi, 1, g, a->in_l, dy, ldy, N, beta);
}

static void ia3_fwd(lmp_adapter *ad, float *y, int ldy, const float *x, float *saved,
                    float *scratch, int N, const lmp_rng_ctx *rc) {
    (void)rc;
    const ia3_adapter *a = (const ia3_adapter *)ad;
    const float *l = a->l->data;
    if (a->ff) {
        for (int n = 0; n < N; n++)
            for (int i = 0; i < a->in_l; i++)
                scratch[(size_t)n * a->in_l + i] = x[(size_t)n * a->in_l + i] * (l[a->a0 + i] - 1.0f);
        times_w(a, y, ldy, scratch, N);
        return;
    }
    for (int n = 0; n < N; n++) {
        float *yn = y + (size_t)n * ldy, *sv = saved + (size_t)n * a->k_cols;
        for (int s = 0, q = 0; s < a->nseg; s++)
            for (int k = 0; k < a->cnt[s]; k++, q++) {
                int c = a->ycol[s] + k, j = a->brow[s] + k;
                float bias = a->bias_here ? a->b->data[j] : 0.0f;
                sv[q] = yn[c] + bias;
                yn[c] += sv[q] * (l[j] - 1.0f);
            }
    }
}

static void ia3_bwd(lmp_adapter *ad, float *dx, const float *dy, int ldy, const float *x,
                    const float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    (void)rc;
    const ia3_adapter *a = (const ia3_adapter *)ad;
    const float *l = a->l->data;
    float *dl = a->l->grad;
    if (a->ff) {
        times_wt(a, scratch, dy, ldy, 0.0f, N);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < a->in_l; i++) {
                size_t k = (size_t)n * a->in_l + i;
                if (dl) dl[a->a0 + i] += scratch[k] * x[k];
                if (dx) dx[k] += scratch[k] * (l[a->a0 + i] - 1.0f);
            }
        return;
    }
    memset(scratch, 0, (size_t)N * a->out_l * sizeof(float));
    for (int n = 0; n < N; n++) {
        const float *dyn = dy + (size_t)n * ldy, *sv = saved + (size_t)n * a->k_cols;
        for (int s = 0, q = 0; s < a->nseg; s++)
            for (int k = 0; k < a->cnt[s]; k++, q++) {
                int c = a->ycol[s] + k, j = a->brow[s] + k;
                if (dl) dl[j] += dyn[c] * sv[q];
                scratch[(size_t)n * a->out_l + c] = dyn[c] * (l[j] - 1.0f);
            }
    }
    if (dx) times_wt(a, dx, scratch, a->out_l, 1.0f, N);
}

static void ia3_free(lmp_adapter *a) { free(a); }

const lmp_adapter_method lmp_ia3_method = {
    .name = "ia3",
    .hooks = LMP_HOOK_LINEAR,
    .add_linear = ia3_add_linear,
    .init = ia3_init,
    .saved_per_row = ia3_saved,
    .scratch_per_row = ia3_scratch,
    .linear_forward = ia3_fwd,
    .linear_backward = ia3_bwd,
    .free = ia3_free,
};
