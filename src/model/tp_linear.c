// tp_linear.c: column- and row-parallel linear layers (Megatron's f/g collectives).
#include "model/tp_linear.h"
#include "core/prof.h"
#include "core/util.h"
#include "core/wgemm.h"
#include "model/kernels.h"
#include "model/run.h"

#include <string.h>

void lmp_linear_register(lmp_linear *L, lmp_registry *reg, const char *name, int64_t in,
                         int64_t out, int groups, const int64_t *blocks, int row_parallel,
                         int bias, int train, const lmp_comm *c) {
    char full[LMP_NAME_MAX];
    int64_t along = row_parallel ? in : out;
    if (!blocks) blocks = &along;
    lmp_split ws = lmp_split_even(row_parallel ? 0 : 1, row_parallel ? 1 : groups,
                                  row_parallel ? &along : blocks, c->tp_size, c->tp_rank);
    lmp_split bs = lmp_split_even(0, groups, blocks, c->tp_size, c->tp_rank);
    lmp_param *w = lmp_add_base(reg, train, lmp_fmt(full, sizeof full, "%s.weight", name), 2, in,
                                out, &ws, LMP_GRAD_SHARD, 1), *b = NULL;
    if (bias)
        b = lmp_add_base(reg, train, lmp_fmt(full, sizeof full, "%s.bias", name), 1, out, 0,
                         row_parallel ? NULL : &bs,
                         row_parallel ? LMP_GRAD_TP_SAME : LMP_GRAD_SHARD, 0);
    w->bf16 = !train && reg->frozen_bf16;
    lmp_linear_init(L, w, b, row_parallel);
}

void lmp_linear_register_oi(lmp_linear *L, lmp_registry *reg, const char *name, int64_t in,
                            int64_t out, int row_parallel, int bias, int ldy, int train,
                            const lmp_comm *c) {
    char full[LMP_NAME_MAX];
    int64_t along = row_parallel ? in : out;
    lmp_split ws = lmp_split_even(row_parallel ? 1 : 0, 1, &along, c->tp_size, c->tp_rank);
    lmp_split bs = lmp_split_even(0, 1, &out, c->tp_size, c->tp_rank);
    lmp_param *w = lmp_add_base(reg, train, lmp_fmt(full, sizeof full, "%s.weight", name), 2, out,
                                in, &ws, LMP_GRAD_SHARD, 1), *b = NULL;
    if (bias)
        b = lmp_add_base(reg, train, lmp_fmt(full, sizeof full, "%s.bias", name), 1, out, 0,
                         row_parallel ? NULL : &bs,
                         row_parallel ? LMP_GRAD_TP_SAME : LMP_GRAD_SHARD, 0);
    w->bf16 = !train && reg->frozen_bf16;
    lmp_linear_init(L, w, b, row_parallel);
    L->w_oi = 1;
    L->in_l = (int)w->local_shape[1];
    L->out_l = (int)w->local_shape[0];
    L->ldy = ldy ? ldy : L->out_l;
}

void lmp_linear_init(lmp_linear *L, lmp_param *w, lmp_param *b, int row_parallel) {
    memset(L, 0, sizeof *L);
    L->w = w;
    L->b = b;
    L->row_parallel = row_parallel;
    L->in_l = (int)w->local_shape[0];
    L->out_l = (int)w->local_shape[1];
    L->ldy = L->out_l;
}

lmp_linear_view lmp_linear_view_of(const lmp_linear *L, int slice) {
    const lmp_param *w = L->w;
    // The view speaks of (in, out) as a linear layer, whichever way the weight is stored.
    int d_in = L->w_oi ? 1 : 0, d_out = 1 - d_in;
    lmp_linear_view v = {.in = (int)w->shape[d_in], .a0 = 0, .in_l = L->in_l, .w = L->w, .b = L->b,
                         .w_oi = L->w_oi, .row_parallel = L->row_parallel, .out_l = L->out_l};
    if (L->row_parallel) {  // this rank's input features, all of ΔW's rows
        v.out = (int)w->shape[d_out];
        if (w->split_dim == d_in) v.a0 = (int)w->goff[0];
        v.nseg = 1;
        v.cnt[0] = v.out;
        return v;
    }
    // Column-parallel: block g of the output holds, on this rank, global columns
    // [start_g + goff[g], + glen[g]) at local columns [ycol_g, ycol_g + glen[g]).
    int split = w->gsize[0] > 0, groups = split ? w->groups : 1, ycol = 0;
    for (int g = 0; g < groups; g++) {
        int64_t size = split ? w->gsize[g] : w->shape[d_out], off = split ? w->goff[g] : 0;
        int64_t len = split ? w->glen[g] : w->shape[d_out], start = split ? lmp_param_group_start(w, g) : 0;
        if (slice < 0 || slice == g) {
            LMP_CHECK(v.nseg < LMP_VIEW_MAX_SEG, "linear %s: too many blocks", w->name);
            v.brow[v.nseg] = (int)((slice < 0 ? start : 0) + off);
            v.ycol[v.nseg] = ycol;
            v.cnt[v.nseg] = (int)len;
            v.nseg++;
            v.out = slice < 0 ? (int)w->shape[d_out] : (int)size;
        }
        ycol += (int)len;
    }
    LMP_CHECK(slice < groups, "linear %s has no output block %d", w->name, slice);
    return v;
}

void lmp_linear_attach(lmp_linear *L, lmp_adapter *a) {
    LMP_CHECK(L->n_ad < LMP_LINEAR_MAX_ADAPTERS, "linear %s: more than %d adapters",
              L->w->name, LMP_LINEAR_MAX_ADAPTERS);
    L->ad[L->n_ad++] = a;
}

// A bf16 weight is frozen (full fine-tuning keeps fp32), so its GEMMs are y = x W and
// dx += dy W^T only; the bias (fp32, trainable or not) is added and reduced here.
static void bf16_forward(const lmp_linear *L, float *y, const float *x, const float *bias, int N) {
    lmp_wgemm(L->w, L->w_oi, 0, y, L->ldy, x, L->in_l, N, 0.0f);
    if (!bias) return;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int j = 0; j < L->out_l; j++) y[(size_t)n * L->ldy + j] += bias[j];
}

static void bf16_backward(const lmp_linear *L, float *dx, float *db, const float *dy, int N) {
    lmp_wgemm(L->w, L->w_oi, 1, dx, L->in_l, dy, L->ldy, N, 1.0f);
    if (!db) return;
    for (int n = 0; n < N; n++)  // fixed order: the bias gradient is bitwise reproducible
        for (int j = 0; j < L->out_l; j++) db[j] += dy[(size_t)n * L->ldy + j];
}

int lmp_tp_reduce(const lmp_run *r, float *buf, int N, int width) {
    if (r->sp) {
        lmp_reduce_scatter_rows(r->comm, buf, (size_t)N, (size_t)width);
        return N / r->comm->tp_size;
    }
    lmp_allreduce_f(r->comm, buf, (size_t)N * width, r->comm->tp);
    return N;
}

void lmp_linear_forward(lmp_linear *L, float *y, const float *x, int N, const lmp_run *r) {
    // Row-parallel: the bias is added once, after the partial products are summed.
    const float *bias = L->b && !L->row_parallel ? L->b->data : NULL;
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_GEMM);
    if (L->w->h) bf16_forward(L, y, x, bias, N);
    else if (L->w_oi) lmp_matmul_oi_forward(y, L->ldy, x, L->w->data, bias, N, L->in_l, L->out_l);
    else lmp_matmul_forward(y, x, L->w->data, bias, N, L->in_l, L->out_l, 0);
    if (lmp_prof_on) lmp_prof_pop();
    // The adapters' partial products (row-parallel: from this rank's features) are linear
    // in them, so they ride on the same all-reduce as the base product.
    for (int i = 0; i < L->n_ad; i++)
        LMP_PROF(LMP_PROF_ADAPTER, L->ad[i]->method->linear_forward(L->ad[i], y, L->ldy, x,
                                                                    L->ad[i]->saved, r->ad_scratch, N, r->rc));
    if (L->row_parallel) {
        // Row-parallel outputs are whole rows (o_proj, down_proj): ldy = out_l. Under
        // sequence parallelism this rank keeps its rows of the sum (the first N/tp).
        int rows = lmp_tp_reduce(r, y, N, L->out_l);
        if (L->b) LMP_PROF(LMP_PROF_GEMM, lmp_add_bias(y, L->b->data, rows, L->out_l));
    }
}

void lmp_linear_backward(lmp_linear *L, float *dx, const float *dy, const float *x, int N,
                         const lmp_run *r) {
    memset(dx, 0, (size_t)N * L->in_l * sizeof(float));
    lmp_linear_backward_part(L, dx, dy, x, N, r);
    if (!L->row_parallel) lmp_tp_reduce(r, dx, N, L->in_l);
}

void lmp_linear_backward_part(lmp_linear *L, float *dx, const float *dy, const float *x, int N,
                              const lmp_run *r) {
    float *db = L->b ? L->b->grad : NULL;
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_GEMM);
    if (L->w->h) bf16_backward(L, dx, db, dy, N);
    else if (L->w_oi)
        lmp_matmul_oi_backward(dx, L->w->grad, db, dy, L->ldy, x, L->w->data, N, L->in_l, L->out_l);
    else lmp_matmul_backward(dx, L->w->grad, db, dy, x, L->w->data, N, L->in_l, L->out_l);
    if (lmp_prof_on) lmp_prof_pop();
    for (int i = 0; i < L->n_ad; i++)
        LMP_PROF(LMP_PROF_ADAPTER, L->ad[i]->method->linear_backward(L->ad[i], dx, dy, L->ldy, x,
                                                                     L->ad[i]->saved, r->ad_scratch, N, r->rc));
}
