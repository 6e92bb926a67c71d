// prefix.c: prefix tuning behind the adapter interface (prefix.h).
#include "adapters/prefix.h"
#include "core/rng.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static lmp_adapter *prefix_add(lmp_registry *reg, const lmp_adapter_rec *rec, const lmp_kv_view *v,
                               const lmp_adapter_opts *o) {
    LMP_CHECK(o->virtual_tokens >= 1, "[adapter] virtual_tokens = %d: prefix tuning needs at least 1",
              o->virtual_tokens);
    lmp_prefix *x = lmp_calloc(sizeof *x);
    int64_t width = 2 * (int64_t)v->n_kv_head * v->hd;
    lmp_adapter_rec r = *rec;
    r.r = o->virtual_tokens;
    r.in = r.base_in = v->n_kv_head;  // PEFT's num_attention_heads (io/peft_prefix.h)
    r.out = width;
    r.alpha = r.scale = 1.0f;
    lmp_adapter_rec *rr = lmp_registry_add_rec(reg, &r);
    *x = (lmp_prefix){.base = {.method = &lmp_prefix_method, .rec = (int)(rr - reg->rec)},
                      .view = *v, .p = o->virtual_tokens};
    char name[LMP_NAME_MAX + 32];
    int64_t shape[2] = {o->virtual_tokens, width};
    x->kv = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.prompt_embeddings", rr->name), 2,
                             shape, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(reg, rr, x->kv);
    return &x->base;
}

static void prefix_init(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian) {
    (void)reg;
    (void)gaussian;
    lmp_param *p = ((lmp_prefix *)a)->kv;
    uint64_t stream = lmp_hash_str(p->name);
    for (size_t i = 0; i < p->numel; i++)
        p->data[i] = lmp_rng_normal(seed, stream, (uint64_t)lmp_param_global_index(p, i));
}

static void prefix_forward(lmp_adapter *a, lmp_kv_prefix *pf) {
    const lmp_prefix *x = (const lmp_prefix *)a;
    size_t kv = (size_t)x->view.n_kv_head * x->view.hd, k0 = (size_t)x->view.kv0 * x->view.hd;
    pf->p = x->p;
    pf->ld = (int)(2 * kv);
    pf->k = x->kv->data + k0;
    pf->v = x->kv->data + kv + k0;
    pf->dk = x->kv->grad ? x->kv->grad + k0 : NULL;
    pf->dv = x->kv->grad ? x->kv->grad + kv + k0 : NULL;
}

static void prefix_backward(lmp_adapter *a) { (void)a; }  // the kernel wrote the gradient itself

static size_t prefix_zero(const lmp_adapter *a) { (void)a; return 0; }

static void prefix_free(lmp_adapter *a) { free(a); }

const lmp_adapter_method lmp_prefix_method = {
    .name = "prefix", .hooks = LMP_HOOK_KV, .add_kv = prefix_add, .init = prefix_init,
    .saved_per_row = prefix_zero, .scratch_per_row = prefix_zero, .kv_forward = prefix_forward,
    .kv_backward = prefix_backward, .free = prefix_free,
};
