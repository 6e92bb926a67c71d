// gpt2.c: GPT-2 forward and backward, tensor-parallel, with LoRA.
#include "model/gpt2.h"
#include "model/kernels.h"
#include "core/rng.h"
#include "core/util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Registration

static lmp_param *add(lmp_gpt2 *m, const char *name, int ndim, int64_t d0, int64_t d1,
                      int split_dim, int groups, int64_t off, int64_t len, lmp_grad_kind kind,
                      int decay) {
    int64_t shape[2] = {d0, d1};
    int train = m->opts.full_finetune;
    return lmp_registry_add(&m->reg, name, ndim, shape, split_dim, groups, off, len,
                            LMP_ROLE_BASE, train, train ? kind : LMP_GRAD_TP_SAME, decay);
}

// Adds LoRA on one linear layer (or one q/k/v slice of c_attn: slice 0..2, -1 = whole).
static void add_lora(lmp_gpt2 *m, lmp_linear *L, const char *module, int in, int out,
                     int slice, int layer, const char *target, const char *base) {
    const lmp_gpt2_opts *o = &m->opts;
    lmp_lora *l = &m->loras[m->n_lora++];
    memset(l, 0, sizeof *l);
    lmp_adapter_rec rec = {.method = "lora", .layer = layer, .slice = slice, .in = in,
                           .out = out, .out_offset = slice < 0 ? 0 : (int64_t)slice * out,
                           .r = o->lora_r, .alpha = o->lora_alpha};
    rec.scale = o->rslora ? o->lora_alpha / sqrtf((float)o->lora_r) : o->lora_alpha / o->lora_r;
    snprintf(rec.name, sizeof rec.name, "%s", module);
    snprintf(rec.base, sizeof rec.base, "%s", base);
    snprintf(rec.target, sizeof rec.target, "%s", target);
    lmp_adapter_rec *x = lmp_registry_add_rec(&m->reg, &rec);
    char name[LMP_NAME_MAX];
    int64_t sa[2] = {o->lora_r, in}, sb[2] = {out, o->lora_r};
    snprintf(name, sizeof name, "%s.lora_A", module);
    l->A = lmp_registry_add(&m->reg, name, 2, sa, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1,
                            LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(&m->reg, x, l->A);
    snprintf(name, sizeof name, "%s.lora_B", module);
    l->B = lmp_registry_add(&m->reg, name, 2, sb, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1,
                            LMP_GRAD_TP_SUM, 1);
    lmp_registry_attach(&m->reg, x, l->B);
    l->in = in;
    l->out = out;
    l->r = o->lora_r;
    l->scale = o->rslora ? o->lora_alpha / sqrtf((float)o->lora_r) : o->lora_alpha / o->lora_r;
    l->dropout = o->lora_dropout;
    l->stream = lmp_hash_str(module);
    int p = m->comm->tp_rank;
    if (L->row_parallel) {  // this rank's input features, all of B
        l->a0 = p * L->in_l;
        l->in_l = L->in_l;
        l->nseg = 1;
        l->cnt[0] = out;
    } else if (slice < 0 && L->out_l * m->comm->tp_size == out && out != 3 * m->C) {
        l->in_l = in;  // plain column-parallel (mlp.c_fc)
        l->nseg = 1;
        l->brow[0] = p * L->out_l;
        l->cnt[0] = L->out_l;
    } else if (slice < 0) {  // whole c_attn: this rank's heads in each of q, k, v
        l->in_l = in;
        l->nseg = 3;
        for (int g = 0; g < 3; g++) {
            l->brow[g] = g * m->C + p * m->C_l;
            l->ycol[g] = g * m->C_l;
            l->cnt[g] = m->C_l;
        }
    } else {  // one of q, k, v
        l->in_l = in;
        l->nseg = 1;
        l->brow[0] = p * m->C_l;
        l->ycol[0] = slice * m->C_l;
        l->cnt[0] = m->C_l;
    }
    L->lora[L->nlora++] = l;
}

void lmp_gpt2_register(lmp_gpt2 *m, const lmp_model_config *cfg, const lmp_gpt2_opts *opts,
                       lmp_comm *comm) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->opts = *opts;
    m->comm = comm;
    int L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head, V = cfg->vocab_size;
    int tp = comm->tp_size, p = comm->tp_rank;
    if (NH % tp != 0)
        lmp_die_all("[parallel] tp = %d does not divide the model's n_head = %d: attention "
                    "heads are split across the tensor-parallel ranks", tp, NH);
    if (V < tp) lmp_die_all("vocabulary of %d tokens cannot be split over tp = %d ranks", V, tp);
    if (C % NH != 0) lmp_die_all("n_embd = %d is not a multiple of n_head = %d", C, NH);
    m->C = C;
    m->NH_l = NH / tp;
    m->C_l = C / tp;
    m->H_l = 4 * C / tp;
    // Vocab split as evenly as possible (GPT-2's 50257 is odd): rank p owns
    // [p*V/tp, (p+1)*V/tp).
    m->v0 = (int)((int64_t)p * V / tp);
    m->V_l = (int)((int64_t)(p + 1) * V / tp) - m->v0;

    // 4 embedding/final-norm tensors, 12 per block, at most 7 LoRA modules x 2 per block
    lmp_registry_init(&m->reg, 4 + 26 * L);
    m->blocks = lmp_calloc((size_t)L * sizeof(lmp_block));
    m->loras = lmp_calloc((size_t)L * 7 * sizeof(lmp_lora));
    char n[LMP_NAME_MAX];
    m->wte = add(m, "wte.weight", 2, V, C, 0, 1, m->v0, m->V_l, LMP_GRAD_SHARD, 1);
    m->wpe = add(m, "wpe.weight", 2, cfg->n_ctx, C, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 1);
    for (int l = 0; l < L; l++) {
        lmp_block *b = &m->blocks[l];
#define NAME(s) (snprintf(n, sizeof n, "h.%d.%s", l, s), n)
        b->ln1_w = add(m, NAME("ln_1.weight"), 1, C, 0, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 0);
        b->ln1_b = add(m, NAME("ln_1.bias"), 1, C, 0, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 0);
        b->c_attn.w = add(m, NAME("attn.c_attn.weight"), 2, C, 3 * C, 1, 3, p * m->C_l, m->C_l,
                          LMP_GRAD_SHARD, 1);
        b->c_attn.b = add(m, NAME("attn.c_attn.bias"), 1, 3 * C, 0, 0, 3, p * m->C_l, m->C_l,
                          LMP_GRAD_SHARD, 0);
        b->attn_proj.w = add(m, NAME("attn.c_proj.weight"), 2, C, C, 0, 1, p * m->C_l, m->C_l,
                             LMP_GRAD_SHARD, 1);
        b->attn_proj.b = add(m, NAME("attn.c_proj.bias"), 1, C, 0, -1, 1, 0, 0,
                             LMP_GRAD_TP_SAME, 0);
        b->ln2_w = add(m, NAME("ln_2.weight"), 1, C, 0, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 0);
        b->ln2_b = add(m, NAME("ln_2.bias"), 1, C, 0, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 0);
        b->c_fc.w = add(m, NAME("mlp.c_fc.weight"), 2, C, 4 * C, 1, 1, p * m->H_l, m->H_l,
                        LMP_GRAD_SHARD, 1);
        b->c_fc.b = add(m, NAME("mlp.c_fc.bias"), 1, 4 * C, 0, 0, 1, p * m->H_l, m->H_l,
                        LMP_GRAD_SHARD, 0);
        b->mlp_proj.w = add(m, NAME("mlp.c_proj.weight"), 2, 4 * C, C, 0, 1, p * m->H_l,
                            m->H_l, LMP_GRAD_SHARD, 1);
        b->mlp_proj.b = add(m, NAME("mlp.c_proj.bias"), 1, C, 0, -1, 1, 0, 0,
                            LMP_GRAD_TP_SAME, 0);
        b->c_attn.in_l = C;          b->c_attn.out_l = 3 * m->C_l;
        b->attn_proj.in_l = m->C_l;  b->attn_proj.out_l = C;   b->attn_proj.row_parallel = 1;
        b->c_fc.in_l = C;            b->c_fc.out_l = m->H_l;
        b->mlp_proj.in_l = m->H_l;   b->mlp_proj.out_l = C;    b->mlp_proj.row_parallel = 1;

        int t = opts->lora_targets;
        if (t && (!opts->layer_on || opts->layer_on[l])) {
            char base[LMP_NAME_MAX];
#define BASE(s) (snprintf(base, sizeof base, "h.%d.%s.weight", l, s), base)
            if (t & LMP_T_C_ATTN)
                add_lora(m, &b->c_attn, NAME("attn.c_attn"), C, 3 * C, -1, l, "c_attn", BASE("attn.c_attn"));
            static const char *qkv[3] = {"q", "k", "v"};
            for (int g = 0; g < 3; g++) {
                if (!(t & (LMP_T_Q << g))) continue;
                char mod[LMP_NAME_MAX];
                snprintf(mod, sizeof mod, "h.%d.attn.c_attn.%s", l, qkv[g]);
                add_lora(m, &b->c_attn, mod, C, C, g, l, qkv[g], BASE("attn.c_attn"));
            }
            if (t & LMP_T_ATTN_PROJ)
                add_lora(m, &b->attn_proj, NAME("attn.c_proj"), C, C, -1, l, "attn.c_proj", BASE("attn.c_proj"));
            if (t & LMP_T_MLP_FC)
                add_lora(m, &b->c_fc, NAME("mlp.c_fc"), C, 4 * C, -1, l, "mlp.c_fc", BASE("mlp.c_fc"));
            if (t & LMP_T_MLP_PROJ)
                add_lora(m, &b->mlp_proj, NAME("mlp.c_proj"), 4 * C, C, -1, l, "mlp.c_proj", BASE("mlp.c_proj"));
#undef BASE
        }
#undef NAME
    }
    m->lnf_w = add(m, "ln_f.weight", 1, C, 0, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 0);
    m->lnf_b = add(m, "ln_f.bias", 1, C, 0, -1, 1, 0, 0, LMP_GRAD_TP_SAME, 0);

}

void lmp_gpt2_build(lmp_gpt2 *m, const lmp_model_config *cfg, const lmp_gpt2_opts *opts,
                    lmp_comm *comm) {
    lmp_gpt2_register(m, cfg, opts, comm);
    lmp_registry_alloc(&m->reg);
}

void lmp_gpt2_free(lmp_gpt2 *m) {
    lmp_registry_free(&m->reg);
    free(m->blocks);
    free(m->loras);
    free(m->act_mem);
    free(m->xstat);
    memset(m, 0, sizeof *m);
}

void lmp_gpt2_init_base(lmp_gpt2 *m, uint64_t seed) {
    float proj_sd = 0.02f / sqrtf(2.0f * m->cfg.n_layer);
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *p = &m->reg.p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        const char *s = strrchr(p->name, '.');
        int is_bias = strcmp(s, ".bias") == 0;
        int is_ln = strstr(p->name, "ln_") != NULL;
        float sd = strstr(p->name, "c_proj.weight") ? proj_sd : 0.02f;
        uint64_t stream = lmp_hash_str(p->name);
        for (size_t k = 0; k < p->numel; k++) {
            if (is_ln) p->data[k] = is_bias ? 0.0f : 1.0f;
            else if (is_bias) p->data[k] = 0.0f;
            else p->data[k] = sd * lmp_rng_normal(seed, stream, (uint64_t)lmp_param_global_index(p, k));
        }
    }
}

void lmp_gpt2_init_adapters(lmp_gpt2 *m, int gaussian, uint64_t seed) {
    for (int i = 0; i < m->n_lora; i++) lmp_lora_init_params(&m->loras[i], gaussian, seed);
}

// ---------------------------------------------------------------------------------------
// Activations

// Rows of logits formed at once: about 4M floats, never (N, V).
static int logit_chunk(const lmp_gpt2 *m, int B, int T) {
    int chunk = (int)(((size_t)1 << 22) / (size_t)m->V_l);
    if (chunk < 1) chunk = 1;
    return (size_t)chunk > (size_t)B * T ? B * T : chunk;
}

size_t lmp_gpt2_act_floats(const lmp_gpt2 *m, int B, int T) {
    size_t N = (size_t)B * T, C = m->C, C_l = m->C_l, H_l = m->H_l;
    size_t att = (size_t)B * m->NH_l * T * T;
    size_t rmax = 0, lora_u = 0;
    for (int i = 0; i < m->n_lora; i++) {
        rmax = (size_t)m->loras[i].r > rmax ? (size_t)m->loras[i].r : rmax;
        lora_u += N * (size_t)m->loras[i].r;
    }
    size_t per_layer = 4 * N * C + 4 * N + 4 * N * C_l + att + 2 * N * H_l;
    size_t xdim = H_l > C ? H_l : C;
    return m->cfg.n_layer * per_layer + lora_u + 3 * N * C + 2 * N +
           (size_t)logit_chunk(m, B, T) * m->V_l +
           /* backward scratch */ 2 * N * C + 4 * N * C_l + att + 2 * N * H_l + N * rmax + N * xdim;
}

void lmp_gpt2_set_batch(lmp_gpt2 *m, int B, int T) {
    if (m->act_mem && m->B == B && m->T == T) return;
    LMP_CHECK(T <= m->cfg.n_ctx, "sequence length %d exceeds the model's context n_ctx = %d", T,
              m->cfg.n_ctx);
    free(m->act_mem);
    free(m->xstat);
    m->B = B;
    m->T = T;
    size_t N = (size_t)B * T, C = m->C, C_l = m->C_l, H_l = m->H_l;
    size_t att = (size_t)B * m->NH_l * T * T;
    m->chunk = logit_chunk(m, B, T);
    int rmax = 0;
    for (int i = 0; i < m->n_lora; i++) rmax = m->loras[i].r > rmax ? m->loras[i].r : rmax;
    size_t xdim = H_l > C ? H_l : C;
    size_t total = lmp_gpt2_act_floats(m, B, T);
    m->act_mem = lmp_calloc(total * sizeof(float));
    float *q = m->act_mem;
#define TAKE(ptr, count) do { (ptr) = q; q += (count); } while (0)
    TAKE(m->encoded, N * C);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        lmp_block_acts *a = &m->blocks[l].a;
        TAKE(a->ln1, N * C); TAKE(a->ln1_mean, N); TAKE(a->ln1_rstd, N);
        TAKE(a->qkv, 3 * N * C_l); TAKE(a->atty, N * C_l); TAKE(a->att, att);
        TAKE(a->res2, N * C);
        TAKE(a->ln2, N * C); TAKE(a->ln2_mean, N); TAKE(a->ln2_rstd, N);
        TAKE(a->fch, N * H_l); TAKE(a->fch_gelu, N * H_l);
        TAKE(a->res3, N * C);
        lmp_linear *lin[4] = {&m->blocks[l].c_attn, &m->blocks[l].attn_proj, &m->blocks[l].c_fc,
                              &m->blocks[l].mlp_proj};
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < lin[k]->nlora; i++) TAKE(lin[k]->u[i], N * lin[k]->lora[i]->r);
    }
    TAKE(m->lnf, N * C); TAKE(m->lnf_mean, N); TAKE(m->lnf_rstd, N); TAKE(m->tmp, N * C);
    TAKE(m->logits, (size_t)m->chunk * m->V_l);
    TAKE(m->dres, N * C); TAKE(m->dln, N * C); TAKE(m->dqkv, 3 * N * C_l);
    TAKE(m->datty, N * C_l); TAKE(m->datt, att); TAKE(m->dfch, N * H_l); TAKE(m->dfchg, N * H_l);
    TAKE(m->du, N * rmax); TAKE(m->xd, N * xdim);
#undef TAKE
    LMP_CHECK((size_t)(q - m->act_mem) <= total, "activation carving overflow");
    m->xstat = lmp_malloc(4 * (size_t)m->chunk * sizeof(double));
}

// ---------------------------------------------------------------------------------------
// Forward and backward

static void block_forward(lmp_gpt2 *m, lmp_block *b, const float *x, const lmp_rng_ctx *rc) {
    int B = m->B, T = m->T, N = B * T, C = m->C;
    lmp_block_acts *a = &b->a;
    lmp_comm *c = m->comm;
    float eps = m->cfg.ln_eps;
    lmp_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, b->ln1_w->data, b->ln1_b->data,
                          N, C, eps);
    lmp_linear_forward(&b->c_attn, a->qkv, a->ln1, N, c, rc, m->xd);
    lmp_attention_forward(a->atty, a->att, a->qkv, B, T, m->C_l, m->NH_l);
    lmp_linear_forward(&b->attn_proj, m->tmp, a->atty, N, c, rc, m->xd);
    lmp_residual_forward(a->res2, x, m->tmp, (size_t)N * C);
    lmp_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, b->ln2_w->data,
                          b->ln2_b->data, N, C, eps);
    lmp_linear_forward(&b->c_fc, a->fch, a->ln2, N, c, rc, m->xd);
    lmp_gelu_forward(a->fch_gelu, a->fch, (size_t)N * m->H_l);
    lmp_linear_forward(&b->mlp_proj, m->tmp, a->fch_gelu, N, c, rc, m->xd);
    lmp_residual_forward(a->res3, a->res2, m->tmp, (size_t)N * C);
}

// dres holds d(loss)/d(block output) on entry and d(loss)/d(block input) on exit.
static void block_backward(lmp_gpt2 *m, lmp_block *b, const float *x, const lmp_rng_ctx *rc) {
    int B = m->B, T = m->T, N = B * T, C = m->C;
    lmp_block_acts *a = &b->a;
    lmp_comm *c = m->comm;
    // MLP: res3 = res2 + c_proj(gelu(c_fc(ln2(res2))))
    lmp_linear_backward(&b->mlp_proj, m->dfchg, m->dres, a->fch_gelu, N, c, rc, m->du, m->xd);
    memset(m->dfch, 0, (size_t)N * m->H_l * sizeof(float));
    lmp_gelu_backward(m->dfch, a->fch, m->dfchg, (size_t)N * m->H_l);
    lmp_linear_backward(&b->c_fc, m->dln, m->dfch, a->ln2, N, c, rc, m->du, m->xd);
    lmp_layernorm_backward(m->dres, b->ln2_w->grad, b->ln2_b->grad, m->dln, a->res2,
                           b->ln2_w->data, a->ln2_mean, a->ln2_rstd, N, C);
    // Attention: res2 = x + c_proj(attn(c_attn(ln1(x))))
    lmp_linear_backward(&b->attn_proj, m->datty, m->dres, a->atty, N, c, rc, m->du, m->xd);
    memset(m->dqkv, 0, (size_t)N * 3 * m->C_l * sizeof(float));
    lmp_attention_backward(m->dqkv, m->datt, m->datty, a->qkv, a->att, B, T, m->C_l, m->NH_l);
    lmp_linear_backward(&b->c_attn, m->dln, m->dqkv, a->ln1, N, c, rc, m->du, m->xd);
    lmp_layernorm_backward(m->dres, b->ln1_w->grad, b->ln1_b->grad, m->dln, x, b->ln1_w->data,
                           a->ln1_mean, a->ln1_rstd, N, C);
}

static void forward_trunk(lmp_gpt2 *m, const int *tokens, const lmp_rng_ctx *rc) {
    int B = m->B, T = m->T, N = B * T, C = m->C;
    // Vocab-parallel embedding: each rank adds the rows it owns; rank 0 of the tp group also
    // adds the positions, and the tp sum completes the lookup.
    lmp_embedding_forward(m->encoded, tokens, m->wte->data,
                          m->comm->tp_rank == 0 ? m->wpe->data : NULL, B, T, C, m->v0, m->V_l);
    lmp_allreduce_f(m->comm, m->encoded, (size_t)N * C, m->comm->tp);
    const float *x = m->encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        block_forward(m, &m->blocks[l], x, rc);
        x = m->blocks[l].a.res3;
    }
    lmp_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, x, m->lnf_w->data, m->lnf_b->data,
                          N, C, m->cfg.ln_eps);
}

// Vocab-parallel cross-entropy over the tied LM head, one chunk of rows at a time. With
// backward it turns each chunk's logits into dlogits right away, so no (N,V) tensor exists.
// Returns sum_n scale[n] * CE(n) over this rank's rows.
static double classifier(lmp_gpt2 *m, const int *targets, const float *scale, int backward) {
    int N = m->B * m->T, C = m->C, Vl = m->V_l;
    lmp_comm *c = m->comm;
    const float *wte = m->wte->data;
    double loss = 0.0;
    if (backward) memset(m->dln, 0, (size_t)N * C * sizeof(float));
    for (int n0 = 0; n0 < N; n0 += m->chunk) {
        int nc = N - n0 < m->chunk ? N - n0 : m->chunk;
        double *mx = m->xstat, *se = mx + nc, *tg = se + nc, *gmx = tg + nc;
        // logits (nc, Vl) = lnf (nc, C) . wte_l^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nc, Vl, C, 1.0f,
                    m->lnf + (size_t)n0 * C, C, wte, C, 0.0f, m->logits, Vl);
        lmp_xent_stats(mx, se, tg, m->logits, Vl, targets + n0, nc, Vl, m->v0);
        memcpy(gmx, mx, nc * sizeof(double));
        lmp_allreduce_d(c, gmx, nc, MPI_MAX, c->tp);
        for (int i = 0; i < nc; i++) se[i] *= exp(mx[i] - gmx[i]);
        lmp_allreduce_d(c, se, 2 * (size_t)nc, MPI_SUM, c->tp);  // sumexp and target logit
        for (int i = 0; i < nc; i++) {
            se[i] = log(se[i]);
            loss += (double)scale[n0 + i] * (se[i] + gmx[i] - tg[i]);
        }
        if (!backward) continue;
        lmp_xent_grad(m->logits, Vl, targets + n0, gmx, se, scale + n0, nc, Vl, m->v0);
        // dlnf (nc, C) += dlogits (nc, Vl) . wte_l (Vl, C): partial over vocab shards
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc, C, Vl, 1.0f, m->logits, Vl,
                    wte, C, 1.0f, m->dln + (size_t)n0 * C, C);
        if (m->wte->grad)  // dwte_l (Vl, C) += dlogits^T (Vl, nc) . lnf (nc, C)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Vl, C, nc, 1.0f, m->logits, Vl,
                        m->lnf + (size_t)n0 * C, C, 1.0f, m->wte->grad, C);
    }
    if (backward) lmp_allreduce_f(c, m->dln, (size_t)N * C, c->tp);
    return loss;
}

double lmp_gpt2_step(lmp_gpt2 *m, const int *tokens, const int *targets, const float *scale,
                     const lmp_rng_ctx *rc, int backward) {
    int B = m->B, T = m->T, N = B * T, C = m->C, L = m->cfg.n_layer;
    forward_trunk(m, tokens, rc);
    double loss = classifier(m, targets, scale, backward);
    if (!backward) return loss;
    const float *xL = L ? m->blocks[L - 1].a.res3 : m->encoded;
    memset(m->dres, 0, (size_t)N * C * sizeof(float));
    lmp_layernorm_backward(m->dres, m->lnf_w->grad, m->lnf_b->grad, m->dln, xL, m->lnf_w->data,
                           m->lnf_mean, m->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--)
        block_backward(m, &m->blocks[l], l ? m->blocks[l - 1].a.res3 : m->encoded, rc);
    // Embedding: dres is whole on every tp rank; each rank updates its vocab rows.
    lmp_embedding_backward(m->wte->grad, m->wpe->grad, m->dres, tokens, B, T, C, m->v0, m->V_l);
    return loss;
}

void lmp_gpt2_logits(lmp_gpt2 *m, const int *tokens, float *logits) {
    int N = m->B * m->T, C = m->C, V = m->cfg.vocab_size, tp = m->comm->tp_size;
    lmp_rng_ctx rc = {0, 0, 0, 0};
    forward_trunk(m, tokens, &rc);
    // Each rank computes its vocab columns; gather them row by row into (N, V).
    float *loc = lmp_malloc((size_t)N * m->V_l * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, m->V_l, C, 1.0f, m->lnf, C,
                m->wte->data, C, 0.0f, loc, m->V_l);
    if (tp == 1) {
        memcpy(logits, loc, (size_t)N * V * sizeof(float));
    } else {
        int *counts = lmp_malloc(tp * sizeof(int)), *displs = lmp_malloc(tp * sizeof(int));
        for (int q = 0; q < tp; q++) {
            displs[q] = (int)((int64_t)q * V / tp);
            counts[q] = (int)((int64_t)(q + 1) * V / tp) - displs[q];
        }
        for (int n = 0; n < N; n++)
            LMP_CHECK_MPI(MPI_Allgatherv(loc + (size_t)n * m->V_l, m->V_l, MPI_FLOAT,
                                         logits + (size_t)n * V, counts, displs, MPI_FLOAT,
                                         m->comm->tp));
        free(counts);
        free(displs);
    }
    free(loc);
}
