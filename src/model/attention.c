// attention.c: a block's self-attention (attention.h).
#include "model/attention.h"
#include "core/util.h"
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>

#include <string.h>

void lmp_attention_register(lmp_attention *at, const lmp_arch *a, lmp_registry *reg, int l,
                            const lmp_comm *c, int train) {
    int C = a->n_embd, hd = a->head_dim, tp = c->tp_size;
    at->NH_l = a->n_head / tp;
    at->KVH_l = a->n_kv_head / tp;
    at->hd = hd;
    at->qkv_l = (at->NH_l + 2 * at->KVH_l) * hd;
    int64_t blocks[3] = {(int64_t)a->n_head * hd, (int64_t)a->n_kv_head * hd, (int64_t)a->n_kv_head * hd};
    char name[LMP_NAME_MAX];
    lmp_linear_register(&at->qkv, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_QKV], l), C,
                        blocks[0] + blocks[1] + blocks[2], 3, blocks, 0, a->qkv_bias, train, c);
    lmp_linear_register(&at->out, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_ATTN_OUT], l),
                        blocks[0], C, 1, NULL, 1, a->attn_out_bias, train, c);
}

void lmp_attention_acts(lmp_attention *at, lmp_acts *t, int B, int T) {
    size_t N = (size_t)B * T;
    lmp_acts_add(t, &at->qkv_buf, N * at->qkv_l);
    lmp_acts_add(t, &at->y, N * at->NH_l * at->hd);
    lmp_acts_add(t, &at->att, (size_t)B * at->NH_l * T * T);
}

void lmp_attention_forward(lmp_attention *at, float *out, const float *x, lmp_run *r) {
    int N = r->B * r->T, q = at->NH_l * at->hd, kv = at->KVH_l * at->hd;
    lmp_linear_forward(&at->qkv, at->qkv_buf, x, N, r->comm, r->rc, r->ad_scratch);
    const float *Q = at->qkv_buf;
    lmp_sdpa_forward(at->y, at->att, Q, Q + q, Q + q + kv, at->qkv_l, r->B, r->T, at->NH_l,
                            at->KVH_l, at->hd);
    lmp_linear_forward(&at->out, out, at->y, N, r->comm, r->rc, r->ad_scratch);
}

void lmp_attention_backward(lmp_attention *at, float *dx, const float *dout, const float *x,
                            lmp_run *r) {
    int N = r->B * r->T, q = at->NH_l * at->hd, kv = at->KVH_l * at->hd;
    lmp_linear_backward(&at->out, r->dattn, dout, at->y, N, r->comm, r->rc, r->ad_scratch);
    memset(r->dqkv, 0, (size_t)N * at->qkv_l * sizeof(float));
    const float *Q = at->qkv_buf;
    float *dQ = r->dqkv;
    lmp_sdpa_backward(dQ, dQ + q, dQ + q + kv, r->datt, r->dattn, Q, Q + q, Q + q + kv,
                             at->att, at->qkv_l, r->B, r->T, at->NH_l, at->KVH_l, at->hd);
    lmp_linear_backward(&at->qkv, dx, r->dqkv, x, N, r->comm, r->rc, r->ad_scratch);
}

void lmp_attention_fill_cache(const lmp_attention *at, float *kc, float *vc, int T) {
    int q = at->NH_l * at->hd, kv = at->KVH_l * at->hd;
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
    lmp_linear_forward(&at->qkv, at->qkv_buf, x, 1, r->comm, r->rc, r->ad_scratch);
    memcpy(kc + (size_t)pos * kv, at->qkv_buf + q, (size_t)kv * sizeof(float));
    memcpy(vc + (size_t)pos * kv, at->qkv_buf + q + kv, (size_t)kv * sizeof(float));
    for (int h = 0; h < at->NH_l; h++) {
        int kh = h / grp;
        decode_head(at->y + (size_t)h * at->hd, at->qkv_buf + (size_t)h * at->hd,
                    kc + (size_t)kh * at->hd, vc + (size_t)kh * at->hd, kv, pos, at->hd, sc);
    }
    lmp_linear_forward(&at->out, out, at->y, 1, r->comm, r->rc, r->ad_scratch);
}
