// model.c: building and running a decoder from its description (model.h).
#include "model/model.h"
#include "core/config.h"
#include "core/prof.h"
#include "core/util.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "model/kernels.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Registration

// Hooks a linear-layer method onto the configured targets of block l.
static void add_linear_adapters(lmp_model *m, const lmp_adapter_method *meth, lmp_block *b, int l) {
    const lmp_model_opts *o = &m->opts;
    lmp_linear *site[LMP_N_SITES] = {&b->attn.qkv, &b->attn.out, &b->mlp.in, &b->mlp.out,
                                     &b->attn.part[0], &b->attn.part[1], &b->attn.part[2], &b->mlp.gate};
    for (int i = 0; i < m->arch.n_targets; i++) {
        const lmp_target_site *t = &m->arch.targets[i];
        if (!(o->targets & t->bit)) continue;
        lmp_linear *L = site[t->site];
        lmp_adapter_rec rec = {.method = meth->name, .layer = l, .slice = t->slice};
        char module[LMP_NAME_MAX];
        lmp_fmt(module, sizeof module, m->arch.site[t->site], l);
        if (t->slice < 0) lmp_fmt(rec.name, sizeof rec.name, "%s", module);
        else lmp_fmt(rec.name, sizeof rec.name, "%s.%s", module, t->name);
        lmp_fmt(rec.module, sizeof rec.module, "%s", module);
        const char *in_block = strstr(m->arch.site[t->site], "%d.");
        lmp_fmt(rec.site, sizeof rec.site, "%s", in_block ? in_block + 3 : module);
        lmp_fmt(rec.base, sizeof rec.base, "%s.weight", module);
        lmp_fmt(rec.target, sizeof rec.target, "%s", t->name);
        lmp_linear_view v = lmp_linear_view_of(L, t->slice);
        v.comm = m->comm;
        rec.in = v.in;
        rec.out = v.out;
        rec.out_offset = t->slice < 0 ? 0 : lmp_param_group_start(L->w, t->slice);
        rec.base_in = L->w->shape[L->w_oi ? 1 : 0];
        rec.base_out = L->w->shape[L->w_oi ? 0 : 1];
        lmp_adapter_opts ad = o->ad;  // this module's r and alpha, when given per module
        int at = l * LMP_N_TARGETS + __builtin_ctz((unsigned)t->bit);
        if (o->r_at && o->r_at[at]) ad.r = o->r_at[at];
        if (o->alpha_at && o->alpha_at[at]) ad.alpha = o->alpha_at[at];
        ad.ff = (o->ad.feedforward & t->bit) != 0;
        lmp_adapter *a = meth->add_linear(&m->reg, &rec, &v, &ad);
        lmp_linear_attach(L, a);
        m->ad[m->n_ad++] = a;
    }
}

// Hooks a block-level method (series or parallel) onto the sublayers of block l.
static void add_block_adapters(lmp_model *m, const lmp_adapter_method *meth, lmp_block *b, int l) {
    static const char *SUB[2] = {"attn", "mlp"};
    int which = m->opts.sublayers ? m->opts.sublayers : 3, C = m->arch.n_embd;
    for (int s = 0; s < 2; s++) {
        if (!(which & (1 << s))) continue;
        lmp_adapter_rec rec = {.method = meth->name, .layer = l, .slice = -1, .in = C, .out = C,
                               .base_in = C, .base_out = C};
        lmp_fmt(rec.name, sizeof rec.name, "h.%d.%s.adapter", l, SUB[s]);
        lmp_fmt(rec.module, sizeof rec.module, "h.%d.%s", l, SUB[s]);
        lmp_fmt(rec.site, sizeof rec.site, "%s", SUB[s]);
        lmp_fmt(rec.target, sizeof rec.target, "%s", SUB[s]);
        lmp_adapter *a = meth->add_block(&m->reg, &rec, C, &m->opts.ad);
        lmp_sublayer_hooks *h = &b->hooks[s];
        int series = (meth->hooks & LMP_HOOK_SUBLAYER) != 0;
        int *n = series ? &h->n_series : &h->n_beside;
        LMP_CHECK(*n < LMP_BLOCK_MAX_ADAPTERS, "block %d: too many adapters at %s", l, SUB[s]);
        (series ? h->series : h->beside)[(*n)++] = a;
        m->ad[m->n_ad++] = a;
    }
}

// Hooks a key/value method (prefix tuning) onto the attention of block l.
static void add_kv_adapter(lmp_model *m, const lmp_adapter_method *meth, lmp_block *b, int l) {
    lmp_attention *at = &b->attn;
    LMP_CHECK(!at->kv, "block %d: two key/value methods (prefix) in one attention", l);
    const lmp_arch *a = &m->arch;
    int kvw = a->n_kv_head * a->head_dim;  // the record: in = the KV heads, out = 2 kvw (prefix.h)
    lmp_adapter_rec rec = {.method = meth->name, .layer = l, .slice = -1, .in = a->n_kv_head, .out = 2 * kvw,
                           .base_in = a->n_kv_head, .base_out = 2 * kvw};
    lmp_fmt(rec.name, sizeof rec.name, "h.%d.attn.prefix", l);
    lmp_fmt(rec.module, sizeof rec.module, "h.%d.attn", l);
    lmp_fmt(rec.site, sizeof rec.site, "attn");
    lmp_fmt(rec.target, sizeof rec.target, "attn");
    lmp_kv_view v = {.n_kv_head = a->n_kv_head, .kv0 = m->comm->tp_rank * at->KVH_l,
                     .KVH_l = at->KVH_l, .hd = at->hd};
    if (l == 0 && meth->add_kv_shared) {  // prefix projection's MLP, before the blocks it feeds
        // Its gradient gathers every block's: owned by none (complete after the backward).
        m->reg.cur_block = -1;
        m->kv_shared = meth->add_kv_shared(&m->reg, a->n_layer, &v, &m->opts.ad);
        if (m->kv_shared) m->ad[m->n_ad++] = m->kv_shared;
        m->reg.cur_block = l;
    }
    lmp_adapter_opts ad = m->opts.ad;
    ad.kv_shared = m->kv_shared;
    at->kv = meth->add_kv(&m->reg, &rec, &v, &ad);
    at->n_prefix = m->opts.ad.virtual_tokens;
    m->n_prefix = at->n_prefix;
    m->ad[m->n_ad++] = at->kv;
}

// Hooks the configured adapters onto block l: each method of the comma list in turn.
static void add_adapters(lmp_model *m, lmp_block *b, int l) {
    const lmp_model_opts *o = &m->opts;
    char list[128], *save;
    lmp_fmt(list, sizeof list, "%s", o->method ? o->method : "lora");
    if (o->layer_on && !o->layer_on[l]) return;
    int linear = 0;  // linear-layer methods: one per layer (they share [adapter] targets)
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        const lmp_adapter_method *meth = lmp_adapter_find(name);
        if (!meth) lmp_die_all("[adapter] method = %s: expected one of %s", name, lmp_adapter_names());
        if (meth->hooks & LMP_HOOK_LINEAR) {
            if (linear++)
                lmp_die_all("[adapter] method = %s: %s and another linear-layer method would adapt the "
                            "same layers ([adapter] targets); combine one of lora, ia3, dora with "
                            "houlsby or parallel", o->method, name);
            if (o->targets) add_linear_adapters(m, meth, b, l);
        } else if (meth->hooks & (LMP_HOOK_SUBLAYER | LMP_HOOK_BESIDE)) {
            add_block_adapters(m, meth, b, l);
        } else if (meth->hooks & LMP_HOOK_KV) {
            add_kv_adapter(m, meth, b, l);
        }
    }
}

void lmp_model_arch(const lmp_model_config *cfg, lmp_arch *a) {
    if (cfg->family == LMP_FAMILY_LLAMA) lmp_llama_arch(cfg, a);
    else lmp_gpt2_arch(cfg, a);
}

void lmp_model_register(lmp_model *m, const lmp_model_config *cfg, const lmp_model_opts *opts,
                        lmp_comm *comm) {
    lmp_arch a;
    lmp_model_arch(cfg, &a);
    lmp_model_register_arch(m, &a, opts, comm);
}

// The [adapter] targets on this family: all-linear becomes every whole layer of its
// targets table; a target the family does not have is refused, naming it and the family's.
static int family_targets(const lmp_arch *a, int targets) {
    static const char *NAMES[] = {LMP_TARGET_NAME_LIST};
    int have = 0, whole = 0;
    for (int i = 0; i < a->n_targets; i++) {
        have |= a->targets[i].bit;
        if (a->targets[i].slice < 0) whole |= a->targets[i].bit;
    }
    if (targets & LMP_T_ALL_LINEAR) targets = (targets & ~LMP_T_ALL_LINEAR) | whole;
    for (int i = 0; i < LMP_N_TARGETS; i++) {
        if (!(targets & (1 << i)) || (have & (1 << i))) continue;
        char list[512] = "";
        for (int k = 0; k < a->n_targets; k++)
            lmp_fmt(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", a->targets[k].name);
        lmp_die_all("[adapter] targets = %s: model family %s has no such layer; its targets are "
                    "%s, all-linear", NAMES[i], a->family, list);
    }
    return targets;
}

void lmp_model_register_arch(lmp_model *m, const lmp_arch *arch, const lmp_model_opts *opts,
                             lmp_comm *comm) {
    memset(m, 0, sizeof *m);
    m->arch = *arch;
    m->opts = *opts;
    m->comm = comm;
    char err[512], name[LMP_NAME_MAX];
    if (lmp_arch_check(&m->arch, comm->tp_size, err, sizeof err)) lmp_die_all("%s", err);
    if (m->opts.targets) m->opts.targets = family_targets(&m->arch, m->opts.targets);
    const lmp_arch *a = &m->arch;
    int L = a->n_layer, train = opts->full_finetune;
    // 5 embedding/head/final-norm tensors, up to 18 per block (Llama with biases and q/k
    // norm), at most 4 per adapter record of a block; a shared one (prefix projection's MLP)
    lmp_registry_init(&m->reg, 8 + LMP_REC_MAX_TENSORS + L * (20 + 4 * (a->n_targets + 3)));
    m->reg.frozen_bf16 = opts->bf16 && !train;  // full fine-tuning trains fp32 weights
    m->blocks = lmp_calloc((size_t)L * sizeof(lmp_block));
    m->ad = lmp_calloc((size_t)(L * (a->n_targets + 3) + 2) * sizeof(lmp_adapter *));
    lmp_embed_register(&m->emb, a, &m->reg, comm, train);
    // Under sequence parallelism what sees only this rank's rows has partial-sum gradients.
    m->opts.sp = opts->sp && comm->tp_size > 1;
    m->opts.ad.sp = m->opts.sp;
    lmp_grad_kind nk = m->opts.sp ? LMP_GRAD_TP_SUM : LMP_GRAD_TP_SAME;
    for (int l = 0; l < L; l++) {
        lmp_block *b = &m->blocks[l];
        m->reg.cur_block = l;  // the block's backward completes these gradients (registry.h)
        lmp_norm_register(&b->ln1, a, &m->reg, lmp_fmt(name, sizeof name, a->ln1, l), train, nk);
        lmp_attention_register(&b->attn, a, &m->reg, l, comm, train);
        lmp_norm_register(&b->ln2, a, &m->reg, lmp_fmt(name, sizeof name, a->ln2, l), train, nk);
        lmp_mlp_register(&b->mlp, a, &m->reg, l, comm, train);
        if (m->opts.targets || opts->method) add_adapters(m, b, l);
    }
    m->reg.cur_block = -1;
    lmp_norm_register(&m->lnf, a, &m->reg, a->lnf, train, nk);
}

void lmp_model_build(lmp_model *m, const lmp_model_config *cfg, const lmp_model_opts *opts,
                     lmp_comm *comm) {
    lmp_model_register(m, cfg, opts, comm);
    lmp_registry_alloc(&m->reg);
}

void lmp_model_build_arch(lmp_model *m, const lmp_arch *arch, const lmp_model_opts *opts,
                          lmp_comm *comm) {
    lmp_model_register_arch(m, arch, opts, comm);
    lmp_registry_alloc(&m->reg);
}

void lmp_model_free(lmp_model *m) {
    for (int i = 0; i < m->n_ad; i++) m->ad[i]->method->free(m->ad[i]);
    lmp_registry_free(&m->reg);
    free(m->ad);
    free(m->blocks);
    free(m->act_mem);
    free(m->emb.xstat);
    free(m->cache.mem);
    free(m->cache.sc);
    free(m->rope_cos);
    memset(m, 0, sizeof *m);
}

void lmp_model_init_base(lmp_model *m, uint64_t seed) {
    if (m->arch.hf_linear) lmp_llama_init(&m->reg, &m->arch, seed);
    else lmp_gpt2_init(&m->reg, &m->arch, seed);
}

void lmp_model_init_adapters(lmp_model *m, int gaussian, uint64_t seed) {
    for (int i = 0; i < m->n_ad; i++) m->ad[i]->method->init(m->ad[i], &m->reg, seed, gaussian);
}

void lmp_model_refresh_adapters(lmp_model *m) {
    for (int i = 0; i < m->n_ad; i++)
        if (m->ad[i]->method->refresh) m->ad[i]->method->refresh(m->ad[i]);
}

// ---------------------------------------------------------------------------------------
// Activations: one table sizes and carves them

// Sequence parallelism for a batch of B x T: asked for, and the rows split evenly (run.h).
static int batch_sp(const lmp_model *m, int B, int T) {
    return m->opts.sp && !m->cache.mem && (size_t)B * T % (size_t)m->comm->tp_size == 0;
}

// Rows of the residual stream this rank holds for a batch (lmp_run_rows, before set_batch).
static size_t stream_rows(const lmp_model *m, int B, int T) {
    return (size_t)B * T / (batch_sp(m, B, T) ? (size_t)m->comm->tp_size : 1);
}

// The buffers block l keeps from its forward for its backward, but its output res3: the
// norms and the residual on this rank's rows, attention and MLP on all N.
static void block_acts(lmp_model *m, lmp_acts *t, int l, int B, int T) {
    size_t N = (size_t)B * T, R = stream_rows(m, B, T), C = m->arch.n_embd;
    lmp_block *b = &m->blocks[l];
    lmp_norm_acts(&b->ln1, t, R);
    lmp_attention_acts(&b->attn, t, B, T);
    lmp_acts_add(t, &b->res2, R * C);
    lmp_norm_acts(&b->ln2, t, R);
    lmp_mlp_acts(&b->mlp, t, N);
}

static void adapter_acts(lmp_acts *t, lmp_adapter *a, size_t N) {
    lmp_acts_add(t, &a->saved, N * a->method->saved_per_row(a));
}

// [train] recompute = block: every block's output (the next one's input) is kept; the buffers
// inside a block, its adapters' included, share one region (as large as the largest block's)
// that each block fills in turn: in the forward, and again just before its backward.
static void shared_block_acts(lmp_model *m, lmp_acts *t, int B, int T) {
    size_t N = (size_t)B * T, C = m->arch.n_embd, R = stream_rows(m, B, T);
    for (int l = 0; l < m->arch.n_layer; l++) lmp_acts_add(t, &m->blocks[l].res3, R * C);
    if (m->kv_shared) adapter_acts(t, m->kv_shared, N);  // every block's: kept whole
    size_t work = lmp_acts_mark(t);
    for (int l = 0; l < m->arch.n_layer; l++) {
        lmp_acts_seek(t, work);
        block_acts(m, t, l, B, T);
        for (int i = 0; i < m->n_ad; i++)
            if (m->ad[i] != m->kv_shared && m->reg.rec[m->ad[i]->rec].layer == l) adapter_acts(t, m->ad[i], N);
    }
    lmp_acts_seek(t, lmp_acts_floats(t));
}

// Backward scratch, shared by the blocks (all alike; block 0 gives the widths).
static void run_acts(lmp_model *m, lmp_acts *t, int B, int T, size_t ad_scratch) {
    size_t N = (size_t)B * T, C = m->arch.n_embd;
    lmp_run *r = &m->run;
    const lmp_attention *at = &m->blocks[0].attn;
    int L = m->arch.n_layer, qk_norm = L && at->q_norm;
    size_t qkv_l = L ? (size_t)at->qkv_l : 0, y_l = L ? (size_t)at->NH_l * at->hd : 0;
    size_t H_l = L ? (size_t)m->blocks[0].mlp.H_l : 0, h_w = L ? (size_t)m->blocks[0].mlp.h_w : 0;
    lmp_acts_add(t, &r->tmp, N * C);
    lmp_acts_add(t, &r->dres, N * C);
    lmp_acts_add(t, &r->dln, N * C);
    lmp_acts_add(t, &r->dqkv, N * qkv_l);
    lmp_acts_add(t, &r->dattn, N * y_l);
    lmp_acts_add(t, &r->att_scratch, L ? lmp_sdpa_scratch_floats(m->n_prefix, T) : 0);
    r->att_threads = lmp_sdpa_threads();
    lmp_acts_add(t, &r->dqkv_raw, qk_norm ? N * qkv_l : 0);
    lmp_acts_add(t, &r->dh, N * h_w);
    lmp_acts_add(t, &r->dh_act, N * H_l);
    lmp_acts_add(t, &r->ad_scratch, N * ad_scratch);
    int sp = batch_sp(m, B, T);  // a norm's output and a stream gradient, all rows gathered
    lmp_acts_add(t, &r->xg, sp ? N * C : 0);
    lmp_acts_add(t, &r->dg, sp ? N * C : 0);
}

static void act_table(lmp_model *m, lmp_acts *t, int B, int T) {
    size_t N = (size_t)B * T, C = m->arch.n_embd, scratch = 0;
    lmp_embed_acts(&m->emb, t, B, T);
    if (m->opts.recompute == LMP_RECOMPUTE_BLOCK) {
        shared_block_acts(m, t, B, T);
    } else {
        for (int l = 0; l < m->arch.n_layer; l++) {
            block_acts(m, t, l, B, T);
            lmp_acts_add(t, &m->blocks[l].res3, stream_rows(m, B, T) * C);
        }
        for (int i = 0; i < m->n_ad; i++) adapter_acts(t, m->ad[i], N);
    }
    for (int i = 0; i < m->n_ad; i++) {
        size_t s = m->ad[i]->method->scratch_per_row(m->ad[i]);
        scratch = s > scratch ? s : scratch;
    }
    lmp_norm_acts(&m->lnf, t, N);
    run_acts(m, t, B, T, scratch);
}

size_t lmp_model_act_floats(lmp_model *m, int B, int T) {
    lmp_acts t = {0};
    act_table(m, &t, B, T);
    size_t n = lmp_acts_floats(&t);
    lmp_acts_free(&t);
    return n;
}

// Rotary tables of every position up to n_ctx, once per model, shared by the blocks.
static void set_rope(lmp_model *m) {
    if (m->arch.pos != LMP_POS_ROPE || m->rope_cos) return;
    size_t n = (size_t)m->arch.n_ctx * (m->arch.head_dim / 2);
    m->rope_cos = lmp_malloc(2 * n * sizeof(float));
    lmp_rope_tables(m->rope_cos, m->rope_cos + n, m->arch.n_ctx, m->arch.head_dim, &m->arch.rope);
    for (int l = 0; l < m->arch.n_layer; l++) {
        m->blocks[l].attn.rope_cos = m->rope_cos;
        m->blocks[l].attn.rope_sin = m->rope_cos + n;
    }
}

void lmp_model_set_batch(lmp_model *m, int B, int T) {
    if (m->act_mem && m->B == B && m->T == T) return;
    LMP_CHECK(T + m->n_prefix <= m->arch.n_ctx, "sequence length %d%s exceeds the model's context "
              "n_ctx = %d", T, m->n_prefix ? " after the prefixes' virtual tokens" : "", m->arch.n_ctx);
    free(m->act_mem);
    free(m->emb.xstat);
    m->B = m->run.B = B;
    m->run.C = m->arch.n_embd;
    m->T = m->run.T = T;
    m->run.comm = m->comm;
    m->run.sp = batch_sp(m, B, T);
    lmp_acts t = {0};
    act_table(m, &t, B, T);
    m->act_floats = lmp_acts_floats(&t);
    m->act_mem = lmp_calloc(m->act_floats * sizeof(float));
    lmp_acts_carve(&t, m->act_mem);
    lmp_acts_free(&t);
    m->emb.xstat = lmp_malloc(4 * (size_t)m->emb.chunk * sizeof(double));
    set_rope(m);
}

// ---------------------------------------------------------------------------------------
// Forward and backward

// h (N,C), the output of sublayer s fed by x (N,C): the block-level adapters' turn.
static void hooks_forward(const lmp_sublayer_hooks *k, float *h, const float *x, lmp_run *r) {
    int N = lmp_run_rows(r);
    for (int i = 0; i < k->n_series; i++)
        k->series[i]->method->sublayer_forward(k->series[i], h, k->series[i]->saved, r->ad_scratch, N, r->rc);
    for (int i = 0; i < k->n_beside; i++)
        k->beside[i]->method->beside_forward(k->beside[i], h, x, k->beside[i]->saved, r->ad_scratch, N, r->rc);
}

// From dh = d(loss)/d(hooked output h): the gradient at the sublayer's output, in r->tmp,
// or dh itself when no series adapter sits there (dh is the residual's and stays intact).
static const float *hooks_backward_out(const lmp_sublayer_hooks *k, const float *dh, lmp_run *r) {
    if (!k->n_series) return dh;
    int N = lmp_run_rows(r);
    memcpy(r->tmp, dh, (size_t)N * r->C * sizeof(float));
    for (int i = k->n_series - 1; i >= 0; i--)
        k->series[i]->method->sublayer_backward(k->series[i], r->tmp, k->series[i]->saved, r->ad_scratch, N, r->rc);
    return r->tmp;
}

// dx (N,C) += the parallel adapters' input gradient from dh.
static void hooks_backward_in(const lmp_sublayer_hooks *k, float *dx, const float *dh, const float *x,
                              lmp_run *r) {
    for (int i = 0; i < k->n_beside; i++)
        k->beside[i]->method->beside_backward(k->beside[i], dx, dh, x, k->beside[i]->saved,
                                              r->ad_scratch, lmp_run_rows(r), r->rc);
}

// Sequence parallelism: this rank's rows (R, C) of a norm's output or a stream gradient
// gathered into all N rows (buf: r->xg or r->dg); without it, rows itself.
static const float *gathered(lmp_run *r, float *buf, const float *rows) {
    if (!r->sp) return rows;
    lmp_allgather_rows(r->comm, buf, rows, (size_t)r->B * r->T, (size_t)r->C);
    return buf;
}

// x, res2, res3 and the norms hold this rank's R rows (all N without sequence parallelism);
// attention and MLP read their norm's output gathered, and their row-parallel output leaves
// this rank's rows of the sum first in r->tmp (lmp_tp_reduce).
static void block_forward(lmp_block *b, const float *x, lmp_run *r) {
    int R = lmp_run_rows(r);
    size_t RC = (size_t)R * b->ln1.C;
    lmp_norm_forward(&b->ln1, x, R);
    lmp_attention_forward(&b->attn, r->tmp, gathered(r, r->xg, b->ln1.out), r);
    LMP_PROF(LMP_PROF_ADAPTER, hooks_forward(&b->hooks[0], r->tmp, b->ln1.out, r));
    LMP_PROF(LMP_PROF_ELEM, lmp_residual_forward(b->res2, x, r->tmp, RC));
    lmp_norm_forward(&b->ln2, b->res2, R);
    lmp_mlp_forward(&b->mlp, r->tmp, gathered(r, r->xg, b->ln2.out), r);
    LMP_PROF(LMP_PROF_ADAPTER, hooks_forward(&b->hooks[1], r->tmp, b->ln2.out, r));
    LMP_PROF(LMP_PROF_ELEM, lmp_residual_forward(b->res3, b->res2, r->tmp, RC));
}

// r->dres holds d(loss)/d(block output) on entry and d(loss)/d(block input) on exit (the
// residual passes it through; each sublayer's norm adds its part).
// Sequence parallelism: dres holds this rank's rows; a sublayer's output gradient is gathered
// (r->dg) and its input recomputed by gathering its norm's output again (r->xg: not kept
// whole, which is the memory the split saves); its input gradient comes back reduce-
// scattered, this rank's rows first in r->dln.
static void block_backward(lmp_block *b, const float *x, lmp_run *r) {
    int R = lmp_run_rows(r);
    const float *dh = gathered(r, r->dg, hooks_backward_out(&b->hooks[1], r->dres, r));
    lmp_mlp_backward(&b->mlp, r->dln, dh, gathered(r, r->xg, b->ln2.out), r);
    hooks_backward_in(&b->hooks[1], r->dln, r->dres, b->ln2.out, r);
    lmp_norm_backward(&b->ln2, r->dres, r->dln, b->res2, R);
    dh = gathered(r, r->dg, hooks_backward_out(&b->hooks[0], r->dres, r));
    lmp_attention_backward(&b->attn, r->dln, dh, gathered(r, r->xg, b->ln1.out), r);
    hooks_backward_in(&b->hooks[0], r->dln, r->dres, b->ln1.out, r);
    lmp_norm_backward(&b->ln1, r->dres, r->dln, x, R);
}

static const float *block_input(const lmp_model *m, int l) {
    return l ? m->blocks[l - 1].res3 : m->emb.encoded;
}

static float *cache_k(lmp_model *m, int l);
static float *cache_v(lmp_model *m, int l);

// fill_cache: each block's keys and values go to the generation cache right after its
// forward (with [train] recompute = block the next block overwrites them).
static void forward_trunk(lmp_model *m, const int *tokens, int fill_cache) {
    int L = m->arch.n_layer;
    lmp_embed_forward(&m->emb, tokens, &m->run);
    for (int l = 0; l < L; l++) {
        block_forward(&m->blocks[l], block_input(m, l), &m->run);
        if (fill_cache) lmp_attention_fill_cache(&m->blocks[l].attn, cache_k(m, l), cache_v(m, l), m->T);
    }
    lmp_run *r = &m->run;
    if (!r->sp) {
        lmp_norm_forward(&m->lnf, block_input(m, L), m->B * m->T);
        return;
    }
    // The head needs all rows: this rank's go to their place in lnf.out, then gathered.
    int R = lmp_run_rows(r);
    float *mine = m->lnf.out + (size_t)m->comm->tp_rank * R * m->arch.n_embd;
    lmp_norm_forward_to(&m->lnf, mine, block_input(m, L), R);
    lmp_allgather_rows(m->comm, m->lnf.out, mine, (size_t)m->B * m->T, (size_t)m->arch.n_embd);
}

static double model_step(lmp_model *m, const int *tokens, const int *targets, const float *scale,
                         int backward) {
    lmp_run *r = &m->run;
    int N = m->B * m->T, L = m->arch.n_layer;
    r->pos0 = m->n_prefix;  // the sequence follows the prefixes' virtual tokens
    forward_trunk(m, tokens, 0);
    double loss = lmp_head_loss(&m->emb, m->lnf.out, r->dln, targets, scale, backward, r);
    if (!backward) return loss;
    memset(r->dres, 0, (size_t)N * m->arch.n_embd * sizeof(float));
    lmp_norm_backward(&m->lnf, r->dres, r->dln, block_input(m, L), lmp_run_rows(r));
    for (int l = L - 1; l >= 0; l--) {
        // [train] recompute = block: the block's activations again from its kept input, by
        // the same code (the last block's are still in place).
        if (m->opts.recompute == LMP_RECOMPUTE_BLOCK && l < L - 1)
            block_forward(&m->blocks[l], block_input(m, l), r);
        block_backward(&m->blocks[l], block_input(m, l), r);
        // Block l's gradients are complete: its bucket's all-reduce may start (comm.h).
        if (m->bk) lmp_buckets_block_done(m->comm, &m->reg, m->bk, l);
    }
    // Embedding: dres is whole on every tp rank (gathered under sequence parallelism); each
    // rank updates its vocab rows.
    lmp_embed_backward(&m->emb, gathered(r, r->dg, r->dres), tokens, r);
    return loss;
}

double lmp_model_step(lmp_model *m, const int *tokens, const int *targets, const float *scale,
                      const lmp_rng_ctx *rc, int backward) {
    m->run.rc = rc;
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_OTHER);
    double loss = model_step(m, tokens, targets, scale, backward);
    if (lmp_prof_on) lmp_prof_pop();
    return loss;
}

void lmp_model_logits(lmp_model *m, const int *tokens, float *logits) {
    lmp_rng_ctx rc = {0, 0, 0, 0};
    m->run.rc = &rc;
    m->run.pos0 = m->n_prefix;
    forward_trunk(m, tokens, 0);
    lmp_head_logits(&m->emb, m->lnf.out, logits, m->arch.vocab_size, &m->run);
}

// ---------------------------------------------------------------------------------------
// Generation with a key/value cache

static size_t cache_width(const lmp_model *m) {
    return m->arch.n_layer ? (size_t)m->blocks[0].attn.KVH_l * m->blocks[0].attn.hd : 0;
}

static float *cache_k(lmp_model *m, int l) {
    return m->cache.mem + (size_t)l * 2 * m->arch.n_ctx * cache_width(m);
}

static float *cache_v(lmp_model *m, int l) { return cache_k(m, l) + (size_t)m->arch.n_ctx * cache_width(m); }

// The last row of the final norm's output through the head: logits (V).
static void last_logits(lmp_model *m, int row, float *logits) {
    lmp_run one = m->run;
    one.B = one.T = 1;
    lmp_head_logits(&m->emb, m->lnf.out + (size_t)row * m->arch.n_embd, logits, m->arch.vocab_size, &one);
}

void lmp_model_prefill(lmp_model *m, const int *tokens, int T, float *logits) {
    LMP_CHECK(T >= 1 && T + m->n_prefix <= m->arch.n_ctx, "prefill of %d tokens, context %d%s", T,
              m->arch.n_ctx, m->n_prefix ? " less the prefixes" : "");
    if (!m->cache.mem) {
        m->cache.mem = lmp_calloc((size_t)m->arch.n_layer * 2 * m->arch.n_ctx * cache_width(m) * sizeof(float));
        m->cache.sc = lmp_malloc((size_t)m->arch.n_ctx * sizeof(float));
    }
    lmp_rng_ctx rc = {0, 0, 0, 0};
    lmp_model_set_batch(m, 1, T);
    m->run.rc = &rc;
    m->run.pos0 = m->n_prefix;
    forward_trunk(m, tokens, 1);
    m->cache.len = T;
    last_logits(m, T - 1, logits);
}

// One block on one row at position pos (the cache holds pos earlier positions).
static void block_decode(lmp_model *m, int l, const float *x, int pos) {
    lmp_block *b = &m->blocks[l];
    lmp_run *r = &m->run;
    size_t C = (size_t)m->arch.n_embd;
    lmp_norm_forward(&b->ln1, x, 1);
    lmp_attention_decode(&b->attn, r->tmp, b->ln1.out, cache_k(m, l), cache_v(m, l), pos,
                         m->cache.sc, r);
    LMP_PROF(LMP_PROF_ADAPTER, hooks_forward(&b->hooks[0], r->tmp, b->ln1.out, r));
    lmp_residual_forward(b->res2, x, r->tmp, C);
    lmp_norm_forward(&b->ln2, b->res2, 1);
    lmp_mlp_forward(&b->mlp, r->tmp, b->ln2.out, r);
    LMP_PROF(LMP_PROF_ADAPTER, hooks_forward(&b->hooks[1], r->tmp, b->ln2.out, r));
    lmp_residual_forward(b->res3, b->res2, r->tmp, C);
}

void lmp_model_decode(lmp_model *m, int token, float *logits) {
    int pos = m->cache.len + m->n_prefix, L = m->arch.n_layer;  // prefixes first in the cache
    LMP_CHECK(m->cache.mem && pos < m->arch.n_ctx, "decode at position %d: cache %s, context %d",
              pos, m->cache.mem ? "full" : "empty", m->arch.n_ctx);
    lmp_rng_ctx rc = {0, 0, 0, 0};
    lmp_model_set_batch(m, 1, 1);
    m->run.rc = &rc;
    m->run.pos0 = pos;
    lmp_embed_forward(&m->emb, &token, &m->run);
    for (int l = 0; l < L; l++) block_decode(m, l, block_input(m, l), pos);
    lmp_norm_forward(&m->lnf, block_input(m, L), 1);
    m->run.pos0 = 0;
    m->cache.len++;
    last_logits(m, 0, logits);
}
