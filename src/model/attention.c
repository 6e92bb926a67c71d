// attention.c: a block's self-attention (attention.h).
#include "model/attention.h"
#include "core/prof.h"
#include "core/util.h"
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>

#include <string.h>

// Llama family: q_proj, k_proj, v_proj (out, in) writing into one q|k|v row of width
// qkv_l; the per-head q/k norm weights.
static void register_parts(lmp_attention *at, const lmp_arch *a, lmp_registry *reg, int l,
                           const lmp_comm *c, int train, const int64_t *blocks) {
    static const lmp_site SITE[3] = {LMP_SITE_Q, LMP_SITE_K, LMP_SITE_V};
    char name[LMP_NAME_MAX];
    at->parts = 3;
    for (int k = 0; k < 3; k++)
        lmp_linear_register_oi(&at->part[k], reg, lmp_fmt(name, sizeof name, a->site[SITE[k]], l),
                               a->n_embd, blocks[k], 0, a->qkv_bias, at->qkv_l, train, c);
    if (!a->qk_norm) return;
    at->norm_eps = a->norm_eps;
    at->q_norm = lmp_add_base(reg, train, lmp_fmt(name, sizeof name, a->q_norm, l), 1, at->hd, 0,
                              NULL, LMP_GRAD_TP_SUM, 0);
    at->k_norm = lmp_add_base(reg, train, lmp_fmt(name, sizeof name, a->k_norm, l), 1, at->hd, 0,
                              NULL, LMP_GRAD_TP_SUM, 0);
}

void lmp_attention_register(lmp_attention *at, const lmp_arch *a, lmp_registry *reg, int l,
                            const lmp_comm *c, int train) {
    int C = a->n_embd, hd = a->head_dim, tp = c->tp_size;
    at->NH_l = a->n_head / tp;
    at->KVH_l = a->n_kv_head / tp;
    at->hd = hd;
    at->qkv_l = (at->NH_l + 2 * at->KVH_l) * hd;
    int64_t blocks[3] = {(int64_t)a->n_head * hd, (int64_t)a->n_kv_head * hd, (int64_t)a->n_kv_head * hd};
    char name[LMP_NAME_MAX];
    if (a->hf_linear) {
        register_parts(at, a, reg, l, c, train, blocks);
        lmp_linear_register_oi(&at->out, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_ATTN_OUT], l),
                               blocks[0], C, 1, a->attn_out_bias, 0, train, c);
        return;
    }
    lmp_linear_register(&at->qkv, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_QKV], l), C,
                        blocks[0] + blocks[1] + blocks[2], 3, blocks, 0, a->qkv_bias, train, c);
    lmp_linear_register(&at->out, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_ATTN_OUT], l),
                        blocks[0], C, 1, NULL, 1, a->attn_out_bias, train, c);
}

void lmp_attention_acts(lmp_attention *at, lmp_acts *t, int B, int T) {
    size_t N = (size_t)B * T;
    lmp_acts_add(t, &at->qkv_buf, N * at->qkv_l);
    lmp_acts_add(t, &at->y, N * at->NH_l * at->hd);
    lmp_acts_add(t, &at->raw, at->q_norm ? N * at->qkv_l : 0);
    lmp_acts_add(t, &at->qk_rstd, at->q_norm ? N * (at->NH_l + at->KVH_l) : 0);
}

// qkv_buf (N,qkv_l) = this rank's q|k|v heads of x, rows at positions pos0 + n % T: the
// projection(s), then (Llama family) the q/k norm and the rotary embedding of q and k.
static void project(lmp_attention *at, const float *x, int N, int T, int pos0, lmp_run *r) {
    if (!at->parts) {
        lmp_linear_forward(&at->qkv, at->qkv_buf, x, N, r);
        return;
    }
    int q = at->NH_l * at->hd, kv = at->KVH_l * at->hd, off[3] = {0, q, q + kv};
    float *dst = at->q_norm ? at->raw : at->qkv_buf;
    for (int k = 0; k < 3; k++)
        lmp_linear_forward(&at->part[k], dst + off[k], x, N, r);
    if (at->q_norm) {  // v passes unchanged; q and k heads normalised from raw
        memcpy(at->qkv_buf, at->raw, (size_t)N * at->qkv_l * sizeof(float));
        lmp_rmsnorm_forward(at->qkv_buf, at->qk_rstd, at->raw, at->q_norm->data, N, at->NH_l,
                            at->hd, at->qkv_l, at->norm_eps);
        lmp_rmsnorm_forward(at->qkv_buf + q, at->qk_rstd + (size_t)N * at->NH_l, at->raw + q,
                            at->k_norm->data, N, at->KVH_l, at->hd, at->qkv_l, at->norm_eps);
    }
    // q and k are adjacent heads of hd in the row: one rotation over NH_l + KVH_l heads.
    if (at->rope_cos)
        lmp_rope_forward(at->qkv_buf, at->qkv_l, N, T, pos0, at->NH_l + at->KVH_l, at->hd,
                         at->rope_cos, at->rope_sin);
}

// The tiles in r->att_scratch were sized for the thread count of the time (model.c).
static void check_threads(const lmp_run *r) {
    LMP_CHECK(lmp_sdpa_threads() <= r->att_threads,
              "attention: %d OpenMP threads, but its tiles were sized for %d", lmp_sdpa_threads(),
              r->att_threads);
}

void lmp_attention_forward(lmp_attention *at, float *out, const float *x, lmp_run *r) {
    int N = r->B * r->T, q = at->NH_l * at->hd, kv = at->KVH_l * at->hd;
    project(at, x, N, r->T, r->pos0, r);
    const float *Q = at->qkv_buf;
    check_threads(r);
    if (at->kv) {
        at->kv->method->kv_forward(at->kv, &at->pf);
        LMP_PROF(LMP_PROF_ATTN, lmp_sdpa_prefix_forward(at->y, r->att_scratch, Q, Q + q, Q + q + kv, at->qkv_l,
                                                        at->pf.k, at->pf.v, at->pf.ld, at->pf.p, r->B,
                                                        r->T, at->NH_l, at->KVH_l, at->hd));
    } else {
        LMP_PROF(LMP_PROF_ATTN, lmp_sdpa_forward(at->y, r->att_scratch, Q, Q + q, Q + q + kv, at->qkv_l,
                                                 r->B, r->T, at->NH_l, at->KVH_l, at->hd));
    }
    lmp_linear_forward(&at->out, out, at->y, N, r);
}

// project's backward from dq|dk|dv (r->dqkv, after the rotation): dx (N,C), reduced over tp.
static void project_backward(lmp_attention *at, float *dx, const float *x, lmp_run *r) {
    int N = r->B * r->T, q = at->NH_l * at->hd, kv = at->KVH_l * at->hd, off[3] = {0, q, q + kv};
    if (!at->parts) {
        lmp_linear_backward(&at->qkv, dx, r->dqkv, x, N, r);
        return;
    }
    if (at->rope_cos)
        lmp_rope_backward(r->dqkv, at->qkv_l, N, r->T, r->pos0, at->NH_l + at->KVH_l, at->hd,
                          at->rope_cos, at->rope_sin);
    const float *dy = r->dqkv;
    if (at->q_norm) {  // d raw: the norms' input gradients for q, k; dv as it is
        float *draw = r->dqkv_raw;
        memcpy(draw, r->dqkv, (size_t)N * at->qkv_l * sizeof(float));
        for (int n = 0; n < N; n++) memset(draw + (size_t)n * at->qkv_l, 0, (size_t)(q + kv) * sizeof(float));
        lmp_rmsnorm_backward(draw, at->q_norm->grad, r->dqkv, at->raw, at->q_norm->data,
                             at->qk_rstd, N, at->NH_l, at->hd, at->qkv_l);
        lmp_rmsnorm_backward(draw + q, at->k_norm->grad, r->dqkv + q, at->raw + q, at->k_norm->data,
                             at->qk_rstd + (size_t)N * at->NH_l, N, at->KVH_l, at->hd, at->qkv_l);
        dy = draw;
    }
    // The three parts' input gradients sum into dx, reduced over tp once (Megatron's f).
    memset(dx, 0, (size_t)N * at->part[0].in_l * sizeof(float));
    for (int k = 0; k < 3; k++) lmp_linear_backward_part(&at->part[k], dx, dy + off[k], x, N, r);
    lmp_tp_reduce(r, dx, N, at->part[0].in_l);
}

void lmp_attention_backward(lmp_attention *at, float *dx, const float *dout, const float *x,
                            lmp_run *r) {
    int N = r->B * r->T, q = at->NH_l * at->hd, kv = at->KVH_l * at->hd;
    lmp_linear_backward(&at->out, r->dattn, dout, at->y, N, r);
    memset(r->dqkv, 0, (size_t)N * at->qkv_l * sizeof(float));
    const float *Q = at->qkv_buf;
    float *dQ = r->dqkv;
    check_threads(r);
    if (at->kv) {
        const lmp_kv_prefix *pf = &at->pf;
        LMP_PROF(LMP_PROF_ATTN, lmp_sdpa_prefix_backward(dQ, dQ + q, dQ + q + kv, pf->dk, pf->dv,
                                                         r->att_scratch, r->dattn, Q, Q + q, Q + q + kv,
                                                         at->qkv_l, pf->k, pf->v, pf->ld, pf->p, r->B, r->T,
                                                         at->NH_l, at->KVH_l, at->hd));
        at->kv->method->kv_backward(at->kv);
    } else {
        LMP_PROF(LMP_PROF_ATTN, lmp_sdpa_backward(dQ, dQ + q, dQ + q + kv, r->att_scratch, r->dattn, Q,
                                                  Q + q, Q + q + kv, at->qkv_l, r->B, r->T,
                                                  at->NH_l, at->KVH_l, at->hd));
    }
    project_backward(at, dx, x, r);
}
void lmp_attention_fill_cache(const lmp_attention *at, float *kc, float *vc, int T) {
    int q = at->NH_l * at->hd, kv = at->KVH_l * at->hd, P = at->kv ? at->pf.p : 0;
    for (int t = 0; t < P; t++) {
        memcpy(kc + (size_t)t * kv, at->pf.k + (size_t)t * at->pf.ld, (size_t)kv * sizeof(float));
        memcpy(vc + (size_t)t * kv, at->pf.v + (size_t)t * at->pf.ld, (size_t)kv * sizeof(float));
    }
    kc += (size_t)P * kv;
    vc += (size_t)P * kv;
    for (int t = 0; t < T; t++) {
        const float *row = at->qkv_buf + (size_t)t * at->qkv_l;
        memcpy(kc + (size_t)t * kv, row + q, (size_t)kv * sizeof(float));
        memcpy(vc + (size_t)t * kv, row + q + kv, (size_t)kv * sizeof(float));
    }
}

// One query head over cached keys/values 0..pos, with the batch kernel's softmax.
static void decode_head(float *y, const float *qh, const float *kc, const float *vc, int ld,
                        int pos, int hd, float *sc) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, pos + 1, hd, 1.0f / sqrtf((float)hd), kc, ld, qh, 1,
                0.0f, sc, 1);
    lmp_softmax_inplace(sc, pos + 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, pos + 1, hd, 1.0f, vc, ld, sc, 1, 0.0f, y, 1);
}

void lmp_attention_decode(lmp_attention *at, float *out, const float *x, float *kc, float *vc,
                          int pos, float *sc, lmp_run *r) {
    int q = at->NH_l * at->hd, kv = at->KVH_l * at->hd, grp = at->NH_l / at->KVH_l;
    project(at, x, 1, 1, pos, r);
    memcpy(kc + (size_t)pos * kv, at->qkv_buf + q, (size_t)kv * sizeof(float));
    memcpy(vc + (size_t)pos * kv, at->qkv_buf + q + kv, (size_t)kv * sizeof(float));
    for (int h = 0; h < at->NH_l; h++) {
        int kh = h / grp;
        decode_head(at->y + (size_t)h * at->hd, at->qkv_buf + (size_t)h * at->hd,
                    kc + (size_t)kh * at->hd, vc + (size_t)kh * at->hd, kv, pos, at->hd, sc);
    }
    lmp_linear_forward(&at->out, out, at->y, 1, r);
}
