// session.c: model resolution, weights, checkpoint choice and load (session.h).
#include "run/session.h"
#include "core/util.h"
#include "io/ckpt_hdf5.h"
#include "run/init_from.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// A model with no file: its size from the [model] keys.
static void config_model(const lmp_config *cfg, lmp_model_config *mc) {
    *mc = (lmp_model_config){.n_layer = cfg->model.n_layer, .n_head = cfg->model.n_head,
                             .n_embd = cfg->model.n_embd, .vocab_size = cfg->model.vocab_size,
                             .n_ctx = cfg->model.n_ctx, .ln_eps = 1e-5f};
    if (mc->n_embd % mc->n_head)
        lmp_die_all("[model] n_embd = %d is not a multiple of n_head = %d", mc->n_embd, mc->n_head);
}

// Sizes far beyond any machine are refused before anything is computed or allocated from
// them: element counts in int64 (and plan's figures) would wrap. 2^50 bytes (1 PiB).
#define LMP_MAX_BYTES 1125899906842624.0

// Weights and a coarse upper bound of the activations (the whole global batch on one rank),
// in double, against LMP_MAX_BYTES.
static void check_sizes(const lmp_config *cfg, const lmp_model_config *mc) {
    double C = mc->n_embd, L = mc->n_layer, V = mc->vocab_size, NH = mc->n_head;
    double T = cfg->train.seq_len, B = cfg->train.batch_size;
    double weights = 4 * (V * C + mc->n_ctx * C + L * (12 * C * C + 13 * C) + 2 * C);
    double acts = 4 * B * T * (L * (16 * C + 2 * NH * T) + 3 * V);
    if (weights > LMP_MAX_BYTES || acts > LMP_MAX_BYTES)
        lmp_die_all("the model (n_layer %d, n_embd %d, vocab_size %d, n_ctx %d) with [train] "
                    "batch_size = %d, seq_len = %d needs about %.3g bytes of %s, beyond lorampi's "
                    "limit of %.3g (1 PiB): check these sizes", mc->n_layer, mc->n_embd,
                    mc->vocab_size, mc->n_ctx, cfg->train.batch_size, cfg->train.seq_len,
                    weights > acts ? weights : acts, weights > acts ? "weights" : "activations",
                    LMP_MAX_BYTES);
}

// A LoRA update B A of rank r on an (in, out) matrix has rank at most min(in, out): a larger
// r adds nothing and the analysis's SVD of ΔW assumes r <= min(in, out). The narrowest side
// of every target (c_attn C x 3C, q/k/v and attn.c_proj C x C, mlp.c_fc C x 4C, mlp.c_proj
// 4C x C) is n_embd.
static void check_rank(const lmp_config *cfg, const lmp_model_config *mc) {
    if ((cfg->adapter.method & (LMP_METHOD_HOULSBY | LMP_METHOD_PARALLEL)) && cfg->adapter.size > mc->n_embd)
        lmp_die_all("[adapter] size = %d exceeds n_embd = %d: a bottleneck adapter is narrower than the "
                    "hidden states it adapts", cfg->adapter.size, mc->n_embd);
    if (!(cfg->adapter.method & (LMP_METHOD_LORA | LMP_METHOD_DORA))) return;
    if (mc->family == LMP_FAMILY_LLAMA) {  // narrowest side: n_embd or the k/v width
        int kv = mc->n_kv_head * mc->head_dim, lim = kv < mc->n_embd ? kv : mc->n_embd;
        if (cfg->adapter.r > lim)
            lmp_die_all("[adapter] r = %d exceeds the rank of the adapted matrices: r must be at "
                        "most min(hidden_size %d, num_key_value_heads x head_dim %d) = %d",
                        cfg->adapter.r, mc->n_embd, kv, lim);
        return;
    }
    if (cfg->adapter.r <= mc->n_embd) return;
    static const struct { int bit; const char *name; int in, out; } T[] = {
        {LMP_T_C_ATTN, "attn.c_attn", 1, 3}, {LMP_T_Q, "q", 1, 1}, {LMP_T_K, "k", 1, 1},
        {LMP_T_V, "v", 1, 1}, {LMP_T_ATTN_PROJ, "attn.c_proj", 1, 1},
        {LMP_T_MLP_FC, "mlp.c_fc", 1, 4}, {LMP_T_MLP_PROJ, "mlp.c_proj", 4, 1}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (cfg->adapter.targets & T[i].bit)
            lmp_die_all("[adapter] r = %d exceeds the rank of the adapted matrix %s (%lld x %lld): "
                        "r must be at most min(in, out) = %d", cfg->adapter.r, T[i].name,
                        (long long)T[i].in * mc->n_embd, (long long)T[i].out * mc->n_embd, mc->n_embd);
}

// IA³'s feed-forward layers ([adapter] feedforward): PEFT's feedforward_modules, a subset
// of the targets; auto: the MLP's output layer (GPT-2 mlp.c_proj, Llama down_proj).
static int ia3_feedforward(const lmp_config *cfg) {
    int ff = cfg->adapter.feedforward;
    if (!(cfg->adapter.method & LMP_METHOD_IA3)) return 0;
    if (!ff) return LMP_T_MLP_PROJ | LMP_T_DOWN_PROJ;
    if (ff == LMP_FF_NONE) return 0;
    if (ff & ~cfg->adapter.targets)
        lmp_die_all("[adapter] feedforward = %s: not among [adapter] targets = %s (feed-forward "
                    "layers are targets whose input ia3 scales)", cfg->adapter.feedforward_str,
                    cfg->adapter.targets_str);
    return ff;
}

void lmp_session_resolve(const lmp_config *cfg, lmp_model_config *mc, lmp_model_opts *opts,
                         unsigned char *layer_on) {
    if (cfg->model.path[0]) lmp_model_read_config(cfg->model.path, mc);
    else config_model(cfg, mc);
    if (mc->n_layer > LMP_MAX_LAYERS)
        lmp_die_all("model has %d layers; lorampi supports up to %d", mc->n_layer, LMP_MAX_LAYERS);
    check_sizes(cfg, mc);
    check_rank(cfg, mc);
    memset(layer_on, cfg->adapter.n_layers ? 0 : 1, LMP_MAX_LAYERS);
    for (int i = 0; i < cfg->adapter.n_layers; i++) {
        if (cfg->adapter.layers[i] >= mc->n_layer)
            lmp_die_all("[adapter] layers names layer %d, but the model has %d layers (0..%d)",
                        cfg->adapter.layers[i], mc->n_layer, mc->n_layer - 1);
        layer_on[cfg->adapter.layers[i]] = 1;
    }
    int adapt = cfg->adapter.method != LMP_METHOD_NONE;
    int bf16 = cfg->model.dtype == LMP_WDT_BF16 ||
               (cfg->model.dtype == LMP_WDT_AUTO && cfg->model.path[0] && !cfg->model.random_init &&
                lmp_model_stores_bf16(cfg->model.path));
    static char methods[64];  // opts keeps a pointer; one configuration per process
    lmp_config_methods(cfg->adapter.method, methods, sizeof methods);
    // Bottleneck placement: [adapter] sublayers, or houlsby's both / parallel's MLP (He et al.).
    int sub = cfg->adapter.sublayers ? cfg->adapter.sublayers : cfg->adapter.method & LMP_METHOD_PARALLEL ? 2 : 3;
    *opts = (lmp_model_opts){
        .full_finetune = !adapt,
        .bf16 = bf16,
        .method = adapt ? methods : NULL,
        .targets = cfg->adapter.method & LMP_METHOD_LINEAR ? cfg->adapter.targets : 0,
        .sublayers = sub,
        .ad = {.r = cfg->adapter.r, .alpha = cfg->adapter.alpha, .dropout = cfg->adapter.dropout,
               .rslora = cfg->adapter.rslora, .gaussian = cfg->adapter.init == LMP_INIT_GAUSSIAN,
               .size = cfg->adapter.size, .relu = cfg->adapter.relu,
               .init_scale = cfg->adapter.init_scale, .bscale = cfg->adapter.scale,
               .virtual_tokens = cfg->adapter.virtual_tokens, .projection = cfg->adapter.prefix_projection,
               .enc_hidden = cfg->adapter.encoder_hidden_size, .feedforward = ia3_feedforward(cfg)},
        .r_at = &cfg->adapter.r_at[0][0], .alpha_at = &cfg->adapter.alpha_at[0][0],
        .layer_on = layer_on, .recompute = cfg->train.recompute,
        .sp = cfg->parallel.sequence_parallel};
    if (cfg->train.seq_len > mc->n_ctx)
        lmp_die_all("[train] seq_len = %d exceeds the model's context length %d",
                    cfg->train.seq_len, mc->n_ctx);
    if ((cfg->adapter.method & LMP_METHOD_PREFIX) && cfg->train.save_model[0])
        lmp_die_all("[train] save_model = %s: prefix tuning has no merged form (its keys and values are not "
                    "a weight); [train] save_adapter writes PEFT's prefix directory", cfg->train.save_model);
    if ((cfg->adapter.method & LMP_METHOD_PREFIX) && cfg->adapter.n_layers)
        lmp_die_all("[adapter] layers = %s: prefix tuning adapts every layer (PEFT's format has no layer "
                    "choice); leave [adapter] layers at all", cfg->adapter.layers_str);
    if ((cfg->adapter.method & LMP_METHOD_PREFIX) && cfg->train.seq_len + cfg->adapter.virtual_tokens > mc->n_ctx)
        lmp_die_all("[train] seq_len = %d plus [adapter] virtual_tokens = %d exceeds the model's context "
                    "length %d (the sequence follows the prefixes, as in PEFT)", cfg->train.seq_len,
                    cfg->adapter.virtual_tokens, mc->n_ctx);
    // Sliding-window attention is not implemented; it changes nothing while the window
    // covers every training sequence.
    if (mc->sliding_window && cfg->train.seq_len > mc->sliding_window)
        lmp_die_all("%s: sliding_window = %d applies at [train] seq_len = %d, and sliding-window "
                    "attention is not implemented (use seq_len <= %d)", mc->arch,
                    mc->sliding_window, cfg->train.seq_len, mc->sliding_window);
}

void lmp_session_open(lmp_session *s, const lmp_config *cfg) {
    memset(s, 0, sizeof *s);
    lmp_comm_init(&s->comm, MPI_COMM_WORLD, cfg->parallel.tp);
    lmp_session_resolve(cfg, &s->mc, &s->opts, s->layer_on);
    s->opts.layer_on = s->layer_on;  // the copy in s, not the caller's stack
}

// The checkpoint to continue from into s->ckpt: the one named, else the newest complete one
// in [checkpoint] dir unless no_resume. Collective.
static void pick_checkpoint(lmp_session *s, const lmp_config *cfg, const char *resume, int no_resume) {
    s->ckpt[0] = 0;
    if (resume) lmp_fmt(s->ckpt, sizeof s->ckpt, "%s", resume);
    else if (cfg->checkpoint.dir[0] && !no_resume)
        lmp_ckpt_find_latest(cfg->checkpoint.dir, s->ckpt, sizeof s->ckpt, &s->comm);
}

// A NaN or Inf in the pretrained weights would surface later as "training diverged" with
// advice about lr; name the file and the tensor instead. Every rank checks its own part.
static void check_base_finite(const lmp_registry *r, const char *path, lmp_comm *c) {
    char err[LMP_PATH_MAX + 512] = "";
    for (int k = 0; k < r->n && !err[0]; k++) {
        const lmp_param *p = &r->p[k];
        if (p->role != LMP_ROLE_BASE) continue;
        for (size_t i = 0; i < p->numel; i++)
            if (!isfinite(lmp_param_at(p, i))) {
                snprintf(err, sizeof err, "model %s: tensor %s holds %g (a corrupt or diverged model "
                         "file; lorampi trains only from finite weights)", path, p->name, (double)lmp_param_at(p, i));
                break;
            }
    }
    lmp_die_if_any(c, err);
}

void lmp_session_load(lmp_session *s, const lmp_config *cfg, const char *resume, int no_resume) {
    lmp_model *m = &s->model;
    lmp_model_build(m, &s->mc, &s->opts, &s->comm);
    if (cfg->model.path[0] && !cfg->model.random_init) {
        lmp_model_load(cfg->model.path, &m->reg);
        check_base_finite(&m->reg, cfg->model.path, &s->comm);
    }
    else lmp_model_init_base(m, cfg->train.seed);
    lmp_model_init_adapters(m, cfg->adapter.init == LMP_INIT_GAUSSIAN, cfg->adapter.seed);
    pick_checkpoint(s, cfg, resume, no_resume);
    // A checkpoint continues a run; init_from only seeds a fresh one.
    if (!s->ckpt[0] && cfg->adapter.init_from[0]) lmp_init_from_load(cfg, &m->reg, &s->comm);
    // The checksum ties a checkpoint to the base weights it was trained from.
    if (s->ckpt[0] || cfg->checkpoint.dir[0]) s->base_checksum = lmp_base_checksum(&m->reg, &s->comm);
    if (s->ckpt[0])
        s->step = lmp_ckpt_load(s->ckpt, &m->reg, &s->comm, cfg, s->base_checksum, &s->ckpt_tp,
                                &s->ckpt_dp);
}

void lmp_session_close(lmp_session *s) {
    lmp_model_free(&s->model);
    lmp_comm_free(&s->comm);
}
