// prefix.c: prefix tuning behind the adapter interface (prefix.h), with PEFT's projection.
#include "adapters/prefix.h"
#include "core/rng.h"
#include "core/util.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// The projection's MLP (prefix.h): one instance shared by the blocks

static lmp_param *enc_tensor(lmp_registry *reg, lmp_adapter_rec *rec, const char *leaf, int ndim,
                             int64_t d0, int64_t d1, int decay) {
    char name[LMP_NAME_MAX + 32];
    int64_t shape[2] = {d0, d1};
    lmp_param *x = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.%s", rec->name, leaf), ndim, shape,
                                    -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, decay);
    lmp_registry_attach(reg, rec, x);
    return x;
}

static lmp_adapter *encoder_add(lmp_registry *reg, int n_layer, const lmp_kv_view *v, const lmp_adapter_opts *o) {
    if (!o->projection) return NULL;
    LMP_CHECK(o->virtual_tokens >= 1, "[adapter] virtual_tokens = %d: prefix tuning needs at least 1",
              o->virtual_tokens);
    LMP_CHECK(o->enc_hidden >= 0, "[adapter] encoder_hidden_size = %d: expected 0 (the token dim) or more",
              o->enc_hidden);
    lmp_prefix_encoder *e = lmp_calloc(sizeof *e);
    int D = v->n_kv_head * v->hd, H = o->enc_hidden ? o->enc_hidden : D, p = o->virtual_tokens;
    int64_t O = 2 * (int64_t)n_layer * D;
    lmp_adapter_rec r = {.method = lmp_prefix_encoder_method.name, .layer = 0, .slice = -1, .in = D,
                         .base_in = D, .out = O, .base_out = O, .r = H, .alpha = 1.0f, .scale = 1.0f};
    lmp_fmt(r.name, sizeof r.name, "prefix_encoder");
    lmp_fmt(r.module, sizeof r.module, "prefix_encoder");
    lmp_fmt(r.site, sizeof r.site, "prefix_encoder");
    lmp_fmt(r.target, sizeof r.target, "attn");
    lmp_adapter_rec *rr = lmp_registry_add_rec(reg, &r);
    *e = (lmp_prefix_encoder){.base = {.method = &lmp_prefix_encoder_method, .rec = (int)(rr - reg->rec)},
                              .p = p, .D = D, .H = H, .L = n_layer};
    e->E = enc_tensor(reg, rr, "embedding", 2, p, D, 1);
    e->W1 = enc_tensor(reg, rr, "transform.0.weight", 2, H, D, 1);
    e->b1 = enc_tensor(reg, rr, "transform.0.bias", 1, H, 0, 0);
    e->W2 = enc_tensor(reg, rr, "transform.2.weight", 2, O, H, 1);
    e->b2 = enc_tensor(reg, rr, "transform.2.bias", 1, O, 0, 0);
    e->h = lmp_calloc(2 * (size_t)p * H * sizeof(float));
    e->dh = e->h + (size_t)p * H;
    e->dP = lmp_calloc((size_t)p * O * sizeof(float));
    e->blk = lmp_calloc((size_t)n_layer * sizeof *e->blk);
    return &e->base;
}

// torch's defaults: nn.Embedding N(0, 1); nn.Linear's weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
static void encoder_init(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian) {
    (void)reg;
    (void)gaussian;
    lmp_prefix_encoder *e = (lmp_prefix_encoder *)a;
    lmp_param *x[5] = {e->E, e->W1, e->b1, e->W2, e->b2};
    float bound[5] = {0, 1.0f / sqrtf((float)e->D), 1.0f / sqrtf((float)e->D), 1.0f / sqrtf((float)e->H),
                      1.0f / sqrtf((float)e->H)};
    for (int k = 0; k < 5; k++) {
        uint64_t stream = lmp_hash_str(x[k]->name);
        for (size_t i = 0; i < x[k]->numel; i++)
            x[k]->data[i] = k == 0 ? lmp_rng_normal(seed, stream, i)
                                   : lmp_rng_sym(seed, stream, i, bound[k]);
    }
}

// h (p, H) = tanh(E W1ᵀ + b1); block l's prefixes (p, 2 D) = h W2[2 l D .. 2 (l + 1) D)ᵀ + b2[...].
static void encoder_forward(lmp_prefix_encoder *e) {
    int p = e->p, D = e->D, H = e->H, W = 2 * D;
    for (int t = 0; t < p; t++) memcpy(e->h + (size_t)t * H, e->b1->data, (size_t)H * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p, H, D, 1.0f, e->E->data, D, e->W1->data, D, 1.0f,
                e->h, H);
    for (size_t i = 0; i < (size_t)p * H; i++) e->h[i] = tanhf(e->h[i]);
    for (int l = 0; l < e->L; l++) {
        if (!e->blk[l]) continue;
        float *P = e->blk[l]->data;
        for (int t = 0; t < p; t++) memcpy(P + (size_t)t * W, e->b2->data + (size_t)l * W, (size_t)W * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p, W, H, 1.0f, e->h, H,
                    e->W2->data + (size_t)l * W * H, H, 1.0f, P, W);
    }
}

// The gradients from dP (every block's, accumulated by this pass), layer by layer in order
// (the same sums on every run of a layout: bitwise resume); dP zeroed for the next pass.
static void encoder_backward(lmp_prefix_encoder *e) {
    int p = e->p, D = e->D, H = e->H, W = 2 * D;
    if (!e->E->grad) return;
    for (int l = 0; l < e->L; l++) {
        const float *dP = e->dP + (size_t)l * p * W, *W2 = e->W2->data + (size_t)l * W * H;
        float *gb2 = e->b2->grad + (size_t)l * W;
        for (int t = 0; t < p; t++)
            for (int j = 0; j < W; j++) gb2[j] += dP[(size_t)t * W + j];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, W, H, p, 1.0f, dP, W, e->h, H, 1.0f,
                    e->W2->grad + (size_t)l * W * H, H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p, H, W, 1.0f, dP, W, W2, H, l ? 1.0f : 0.0f,
                    e->dh, H);
    }
    for (size_t i = 0; i < (size_t)p * H; i++) e->dh[i] *= 1.0f - e->h[i] * e->h[i];  // through tanh
    for (int t = 0; t < p; t++)
        for (int j = 0; j < H; j++) e->b1->grad[j] += e->dh[(size_t)t * H + j];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, D, p, 1.0f, e->dh, H, e->E->data, D, 1.0f,
                e->W1->grad, D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p, D, H, 1.0f, e->dh, H, e->W1->data, D, 1.0f,
                e->E->grad, D);
    memset(e->dP, 0, (size_t)p * e->L * W * sizeof(float));
}

static void encoder_refresh(lmp_adapter *a) { encoder_forward((lmp_prefix_encoder *)a); }

static size_t prefix_zero(const lmp_adapter *a) { (void)a; return 0; }

static void encoder_free(lmp_adapter *a) {
    lmp_prefix_encoder *e = (lmp_prefix_encoder *)a;
    free(e->h);
    free(e->dP);
    free(e->blk);
    free(e);
}

// Not an [adapter] method of its own (not in methods.c): the shared part of "prefix".
const lmp_adapter_method lmp_prefix_encoder_method = {
    .name = "prefix_encoder", .init = encoder_init, .saved_per_row = prefix_zero,
    .scratch_per_row = prefix_zero, .refresh = encoder_refresh, .free = encoder_free,
};

// ---------------------------------------------------------------------------------------
// The prefixes of one block

static lmp_adapter *prefix_add(lmp_registry *reg, const lmp_adapter_rec *rec, const lmp_kv_view *v,
                               const lmp_adapter_opts *o) {
    LMP_CHECK(o->virtual_tokens >= 1, "[adapter] virtual_tokens = %d: prefix tuning needs at least 1",
              o->virtual_tokens);
    lmp_prefix_encoder *enc = o->projection ? (lmp_prefix_encoder *)o->kv_shared : NULL;
    LMP_CHECK(!o->projection || (enc && rec->layer < enc->L && enc->p == o->virtual_tokens &&
                                 enc->D == v->n_kv_head * v->hd),
              "internal: prefix %s without its projection's MLP", rec->name);
    lmp_prefix *x = lmp_calloc(sizeof *x);
    int64_t width = 2 * (int64_t)v->n_kv_head * v->hd;
    lmp_adapter_rec r = *rec;
    r.r = o->virtual_tokens;
    r.in = r.base_in = v->n_kv_head;  // PEFT's num_attention_heads (io/peft_prefix.h)
    r.out = width;
    r.alpha = r.scale = 1.0f;
    lmp_adapter_rec *rr = lmp_registry_add_rec(reg, &r);
    *x = (lmp_prefix){.base = {.method = &lmp_prefix_method, .rec = (int)(rr - reg->rec)},
                      .view = *v, .p = o->virtual_tokens, .layer = rec->layer, .enc = enc};
    char name[LMP_NAME_MAX + 32];
    int64_t shape[2] = {o->virtual_tokens, width};
    // With the projection the prefixes are the MLP's output: frozen here, trained through it.
    x->kv = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.prompt_embeddings", rr->name), 2,
                             shape, -1, 1, 0, 0, LMP_ROLE_ADAPTER, !enc, LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(reg, rr, x->kv);
    if (enc) enc->blk[rec->layer] = x->kv;
    return &x->base;
}

static void prefix_init(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian) {
    (void)reg;
    (void)gaussian;
    lmp_param *p = ((lmp_prefix *)a)->kv;
    if (((lmp_prefix *)a)->enc) return;  // the MLP's output, written by its forward
    uint64_t stream = lmp_hash_str(p->name);
    for (size_t i = 0; i < p->numel; i++)
        p->data[i] = lmp_rng_normal(seed, stream, (uint64_t)lmp_param_global_index(p, i));
}

static void prefix_forward(lmp_adapter *a, lmp_kv_prefix *pf) {
    const lmp_prefix *x = (const lmp_prefix *)a;
    size_t kv = (size_t)x->view.n_kv_head * x->view.hd, k0 = (size_t)x->view.kv0 * x->view.hd;
    if (x->enc && x->layer == 0) encoder_forward(x->enc);  // block 0 runs first: every block's prefixes
    float *g = x->kv->grad;
    if (x->enc) g = x->enc->E->grad ? x->enc->dP + (size_t)x->layer * x->p * 2 * kv : NULL;
    pf->p = x->p;
    pf->ld = (int)(2 * kv);
    pf->k = x->kv->data + k0;
    pf->v = x->kv->data + kv + k0;
    pf->dk = g ? g + k0 : NULL;
    pf->dv = g ? g + kv + k0 : NULL;
}

// Without the projection the kernel wrote the gradient itself; with it, block 0's backward
// runs last, after every block added its part to dP.
static void prefix_backward(lmp_adapter *a) {
    const lmp_prefix *x = (const lmp_prefix *)a;
    if (x->enc && x->layer == 0) encoder_backward(x->enc);
}

static void prefix_free(lmp_adapter *a) { free(a); }

const lmp_adapter_method lmp_prefix_method = {
    .name = "prefix", .hooks = LMP_HOOK_KV, .add_kv = prefix_add, .init = prefix_init,
    .saved_per_row = prefix_zero, .scratch_per_row = prefix_zero, .kv_forward = prefix_forward,
    .kv_backward = prefix_backward, .add_kv_shared = encoder_add, .free = prefix_free,
};
