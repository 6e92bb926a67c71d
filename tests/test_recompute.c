// [train] recompute = attn and block against none at the model's interface (one rank): the
// summed loss and every gradient bit for bit after two accumulated micro-steps (other
// tokens, other dropout masks), then the prefill logits of generation; and the activation
// floats: attn's equal none's (the tiled attention keeps no probabilities, so attn has
// nothing left to recompute), block's strictly below. Cases: a 3-layer GPT-2 with LoRA on all targets
// + dropout, the two methods written against the adapter interface alone (toy_series,
// toy_parallel: their saved rows must be refilled by the recompute), lora,houlsby and
// dora,parallel with dropout, prefix tuning with LoRA and with its projection MLP, IA³ (output and feed-forward input
// scaling), full fine-tuning, LoRA on layers 0 and 2 only (block's shared region is sized by
// the largest block); a 3-layer Llama-family model with every component (RMSNorm, llama3
// RoPE, 2 query heads over 1 KV head, q/k/v, o and MLP biases, q/k norm, gated SiLU,
// untied head) with LoRA all-linear + dropout, prefix + toy_parallel, prefix with projection,
// and full fine-tuning.
// Adapter tensors are moved off their (often neutral) init so every path carries signal.
#include "testutil.h"
#include "core/config.h"
#include "core/rng.h"
#include "model/model.h"
#include "toy_adapters.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 6, N = B * T };
static const lmp_model_config CFG = {.n_layer = 3, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_ctx = 16, .ln_eps = 1e-5f};
static const lmp_model_config LCFG = {
    .n_layer = 3, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_ctx = 16, .ln_eps = 1e-6f,
    .family = LMP_FAMILY_LLAMA, .arch = "test", .n_kv_head = 1, .head_dim = 4, .mlp_hidden = 12,
    .qkv_bias = 1, .out_bias = 1, .mlp_bias = 1, .qk_norm = 1,
    .rope = {LMP_ROPE_LLAMA3, 10000.0f, 4.0f, 1.0f, 4.0f, 16}};
static int tokens[2][N], targets[2][N];
static float scale[N];

typedef struct {
    const char *what;
    const lmp_model_config *cfg;
    lmp_model_opts o;
} rc_case;

typedef struct {
    double loss;
    float *grad, *logits;   // every trainable gradient in registry order; prefill's logits
    size_t n_grad, acts;
} rc_result;

static void perturb_adapters(lmp_model *m) {
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *p = &m->reg.p[i];
        if (p->role != LMP_ROLE_ADAPTER) continue;
        for (size_t k = 0; k < p->numel; k++) p->data[k] += 0.2f * lmp_rng_normal(99, (uint64_t)i, k);
    }
}

// The case under one recompute setting: two micro-steps accumulated, then a prefill.
static rc_result run(const rc_case *k, int mode, lmp_comm *c) {
    rc_result r = {0};
    lmp_model m;
    lmp_model_opts o = k->o;
    o.recompute = mode;
    lmp_model_build(&m, k->cfg, &o, c);
    lmp_model_init_base(&m, 7);
    lmp_model_init_adapters(&m, 0, 11);
    perturb_adapters(&m);
    lmp_model_set_batch(&m, B, T);
    r.acts = m.act_floats;
    lmp_registry_zero_grad(&m.reg);
    for (int s = 0; s < 2; s++) {
        lmp_rng_ctx rc = {5, (uint64_t)s, 0, 1};
        r.loss += lmp_model_step(&m, tokens[s], targets[s], scale, &rc, 1);
    }
    for (int i = 0; i < m.reg.n; i++) r.n_grad += m.reg.p[i].trainable ? m.reg.p[i].numel : 0;
    r.grad = malloc(r.n_grad * sizeof(float) + 1);
    size_t at = 0;
    for (int i = 0; i < m.reg.n; i++) {
        if (!m.reg.p[i].trainable) continue;
        memcpy(r.grad + at, m.reg.p[i].grad, m.reg.p[i].numel * sizeof(float));
        at += m.reg.p[i].numel;
    }
    r.logits = malloc(k->cfg->vocab_size * sizeof(float));
    lmp_model_prefill(&m, tokens[0], T, r.logits);
    lmp_model_free(&m);
    return r;
}

static void check_case(const rc_case *k, lmp_comm *c) {
    static const char *MODE[3] = {"none", "attn", "block"};
    rc_result ref = run(k, LMP_RECOMPUTE_NONE, c);
    T_CHECK(ref.n_grad > 0, "%s: no trainable tensor", k->what);
    for (int mode = LMP_RECOMPUTE_ATTN; mode <= LMP_RECOMPUTE_BLOCK; mode++) {
        rc_result got = run(k, mode, c);
        T_CHECK(got.loss == ref.loss, "%s, %s: loss %.17g != none's %.17g", k->what, MODE[mode], got.loss, ref.loss);
        T_CHECK(got.n_grad == ref.n_grad && !memcmp(got.grad, ref.grad, ref.n_grad * sizeof(float)),
                "%s, %s: gradients differ from none's", k->what, MODE[mode]);
        T_CHECK(!memcmp(got.logits, ref.logits, k->cfg->vocab_size * sizeof(float)),
                "%s, %s: prefill logits differ from none's", k->what, MODE[mode]);
        if (mode == LMP_RECOMPUTE_ATTN)
            T_CHECK(got.acts == ref.acts, "%s, attn: %zu activation floats, not none's %zu", k->what, got.acts, ref.acts);
        else
            T_CHECK(got.acts < ref.acts, "%s, block: %zu activation floats, not below none's %zu", k->what, got.acts, ref.acts);
        free(got.grad);
        free(got.logits);
    }
    free(ref.grad);
    free(ref.logits);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    toy_adapters_register();
    for (int s = 0; s < 2; s++)
        for (int n = 0; n < N; n++) {
            tokens[s][n] = (int)(lmp_rng_bits(1, 2 * s, n) % CFG.vocab_size);
            targets[s][n] = (int)(lmp_rng_bits(1, 2 * s + 1, n) % CFG.vocab_size);
        }
    for (int n = 0; n < N; n++) scale[n] = n == 3 ? 0.0f : 1.0f / (N - 1);  // one masked position
    const int all = LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ;
    static const unsigned char outer[3] = {1, 0, 1};
    const lmp_adapter_opts ad = {.r = 3, .alpha = 6.0f, .dropout = 0.3f, .size = 3, .init_scale = 1e-3f,
                                 .bscale = 4.0f, .virtual_tokens = 3, .feedforward = LMP_T_MLP_PROJ};
    lmp_adapter_opts proj = ad;  // prefix projection: one MLP feeds every block's prefixes
    proj.projection = 1;
    proj.enc_hidden = 5;
    rc_case cases[] = {
        {"gpt2 lora all + dropout", &CFG, {.targets = all, .ad = ad}},
        {"gpt2 lora,toy_series", &CFG, {.targets = all, .method = "lora,toy_series", .ad = ad}},
        {"gpt2 toy_parallel", &CFG, {.method = "toy_parallel", .ad = ad}},
        {"gpt2 lora,houlsby", &CFG, {.targets = all, .method = "lora,houlsby", .sublayers = 3, .ad = ad}},
        {"gpt2 dora,parallel", &CFG, {.targets = all, .method = "dora,parallel", .sublayers = 3, .ad = ad}},
        {"gpt2 lora,prefix", &CFG, {.targets = LMP_T_Q | LMP_T_V, .method = "lora,prefix", .ad = ad}},
        {"gpt2 prefix with projection", &CFG, {.method = "prefix", .ad = proj}},
        {"gpt2 ia3", &CFG, {.targets = all, .method = "ia3", .ad = ad}},
        {"gpt2 full fine-tuning", &CFG, {.full_finetune = 1}},
        {"gpt2 lora on layers 0, 2", &CFG, {.targets = all, .ad = ad, .layer_on = outer}},
        {"llama lora all-linear + dropout", &LCFG, {.targets = LMP_T_ALL_LINEAR, .ad = ad}},
        {"llama prefix,toy_parallel", &LCFG, {.method = "prefix,toy_parallel", .ad = ad}},
        {"llama prefix with projection", &LCFG, {.method = "prefix", .ad = proj}},
        {"llama full fine-tuning", &LCFG, {.full_finetune = 1}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) check_case(&cases[k], &c);
    int rc = t_finish();
    MPI_Finalize();
    return rc;
}
