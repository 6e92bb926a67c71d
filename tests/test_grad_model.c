// Whole-model checks on a tiny GPT-2 (one rank):
//  - finite-difference gradient of the loss w.r.t. every adapter parameter (LoRA on all
//    targets, on the q/k/v slices, with dropout) and w.r.t. every weight in full mode;
//  - with B = 0 the adapted model's logits equal the base model's bit for bit;
//  - the loss equals a direct softmax cross-entropy of the full logits;
//  - grouped-query attention (a GPT-2 variant with one key/value head): every gradient;
//  - generation with the key/value cache: the logits of every position as a full forward
//    (LoRA, grouped-query attention, and with houlsby or parallel beside LoRA);
//  - the block-level hook points (series and parallel adapters) through two methods written
//    against the adapter interface alone (toy_adapters.c): finite-difference gradients of
//    their tensors and of the LoRA/base path under them, logits unchanged at their neutral init;
//  - a Llama-family model with every component (RMSNorm, RoPE llama3, GQA 2 over 1, q/k/v
//    biases, o_proj and MLP biases (Llama's attention_bias, mlp_bias), q/k norm, gated SiLU,
//    untied head): every gradient (LoRA on all seven
//    projections, v/up/down with dropout, full) and generation with the cache (RoPE at each position).
//  - the bottleneck methods (houlsby, parallel; alone and with LoRA, GELU and ReLU, on
//    either sublayer): logits at init (parallel bit for bit, houlsby within its init scale)
//    and every gradient by finite differences.
#include "testutil.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "model/model.h"
#include "toy_adapters.h"
#include "core/rng.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static t_batch bt;

static void build_with(lmp_model *m, lmp_comm *c, int full, int targets_bits, float dropout,
                       const char *method) {
    lmp_model_opts o = {.full_finetune = full, .targets = targets_bits, .method = method,
                        .ad = {.r = 3, .alpha = 6.0f, .dropout = dropout, .rslora = 0}};
    lmp_model_build(m, &t_gpt2_cfg, &o, c);
    lmp_model_init_base(m, 7);
    lmp_model_init_adapters(m, 0, 11);
    lmp_model_set_batch(m, T_B, T_T);
}

static void build(lmp_model *m, lmp_comm *c, int full, int targets_bits, float dropout) {
    build_with(m, c, full, targets_bits, dropout, NULL);
}

static void build_llama(lmp_model *m, lmp_comm *c, int full, int targets_bits, float dropout) {
    lmp_model_opts o = {.full_finetune = full, .targets = targets_bits,
                        .ad = {.r = 3, .alpha = 6.0f, .dropout = dropout}};
    lmp_model_build(m, &t_llama_cfg, &o, c);
    lmp_model_init_base(m, 7);
    lmp_model_init_adapters(m, 0, 11);
    lmp_model_set_batch(m, T_B, T_T);
}

// Every element of every trainable tensor against central differences (t_check_grads: max
// |fd - grad| <= 2e-2 max |grad| + floor per tensor), after setting the base weight matrices
// and the adapters to N(0, 0.3^2) so that every path carries signal. floor: the Llama model's
// q/k norm makes q_proj/k_proj scale-invariant, so their gradients are small (~3e-4) and
// near the differences' noise (~1e-5).
static void check_grads_floor(lmp_model *m, const char *what, const lmp_rng_ctx *rc, double floor) {
    t_scramble(m, 99, T_BASE | T_ADAPTERS);
    t_check_grads(m, what, &bt, rc, floor);
}

static void check_grads(lmp_model *m, const char *what, const lmp_rng_ctx *rc) {
    check_grads_floor(m, what, rc, 0.0);
}

// A bottleneck method (with LoRA when targets are given) at its init against the base model:
// parallel (W_up = 0) and LoRA (B = 0) leave the logits bit for bit; houlsby (adapter-bert's
// truncated normal of std init_scale) moves them, by at most init_scale * max |logit|. Then
// every gradient by finite differences.
static void check_bottleneck(lmp_comm *c, const char *method, int sublayers, int targets, int relu,
                             const lmp_rng_ctx *rc) {
    lmp_model base, ad;
    build(&base, c, 0, 0, 0);
    const float init_scale = 1e-3f;
    lmp_model_opts o = {.targets = targets, .method = method, .sublayers = sublayers,
                        .ad = {.r = 3, .alpha = 6.0f, .size = 3, .relu = relu, .init_scale = init_scale, .bscale = 4.0f}};
    lmp_model_build(&ad, &t_gpt2_cfg, &o, c);
    lmp_model_init_base(&ad, 7);
    lmp_model_init_adapters(&ad, 0, 11);
    lmp_model_set_batch(&ad, T_B, T_T);
    int per_layer = (sublayers & 1) + (sublayers >> 1 & 1), n_lora = targets == LMP_T_Q + LMP_T_V ? 2 : targets ? 4 : 0;
    T_CHECK(ad.n_ad == (per_layer + n_lora) * t_gpt2_cfg.n_layer, "%s: %d instances", method, ad.n_ad);
    double maxd, maxl;
    int same = t_same_logits(&base, &ad, bt.tokens, &maxd, &maxl);
    printf("%-13s sublayers %d%s: logits at init differ from the base model's by at most %.3g (max |logit| %.3g)\n",
           method, sublayers, relu ? " relu" : "", maxd, maxl);
    if (strstr(method, "parallel"))
        T_CHECK(same, "%s at init changed the logits (max %.3g)", method, maxd);
    else
        T_CHECK(maxd > 0 && maxd <= init_scale * maxl, "%s at init: logits moved by %.3g (max |logit| %.3g, "
                "init_scale %g)", method, maxd, maxl, init_scale);
    char what[64];
    snprintf(what, sizeof what, "%s sublayers %d%s", method, sublayers, relu ? " relu" : "");
    check_grads(&ad, what, rc);
    lmp_model_free(&base);
    lmp_model_free(&ad);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    t_batch_init(&bt);
    lmp_rng_ctx train_rc = {5, 0, 0, 1};

    // Loss against an independent cross-entropy of the full logits.
    {
        lmp_model m;
        build(&m, &c, 0, 0, 0);
        float *lg = malloc(sizeof(float) * T_N * t_gpt2_cfg.vocab_size);
        lmp_model_logits(&m, bt.tokens, lg);
        double ref = 0;
        for (int n = 0; n < T_N; n++) {
            double mx = -1e30, s = 0;
            for (int v = 0; v < t_gpt2_cfg.vocab_size; v++) mx = fmax(mx, lg[n * t_gpt2_cfg.vocab_size + v]);
            for (int v = 0; v < t_gpt2_cfg.vocab_size; v++) s += exp(lg[n * t_gpt2_cfg.vocab_size + v] - mx);
            ref += bt.scale[n] * (log(s) + mx - lg[n * t_gpt2_cfg.vocab_size + bt.targets[n]]);
        }
        double got = t_loss(&m, &bt, &train_rc);
        T_CHECK(t_close(got, ref, 1e-6, 1e-7), "loss %.9f != reference %.9f", got, ref);
        free(lg);
        lmp_model_free(&m);
    }
    // B = 0: identical logits to the base model, bit for bit.
    {
        lmp_model base, ad;
        build(&base, &c, 0, 0, 0);
        build(&ad, &c, 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0);
        T_CHECK(t_same_logits(&base, &ad, bt.tokens, NULL, NULL), "B = 0 changed the logits");
        // ... and non-zero B does change them (the adapter is really in the path).
        lmp_param *Bp = lmp_rec_tensor(&ad.reg, &ad.reg.rec[0], 1);  // lora_B
        for (size_t k = 0; k < Bp->numel; k++) Bp->data[k] = 0.1f;
        T_CHECK(!t_same_logits(&base, &ad, bt.tokens, NULL, NULL), "non-zero B left the logits unchanged");
        lmp_model_free(&base);
        lmp_model_free(&ad);
    }
    struct { const char *what; int full, targets; float dropout; } cases[] = {
        {"lora all targets", 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0},
        {"lora q,k,v slices", 0, LMP_T_Q | LMP_T_K | LMP_T_V, 0},
        {"lora q,v + dropout", 0, LMP_T_Q | LMP_T_V | LMP_T_MLP_PROJ, 0.3f},
        {"full fine-tuning", 1, 0, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lmp_model m;
        build(&m, &c, cases[k].full, cases[k].targets, cases[k].dropout);
        check_grads(&m, cases[k].what, &train_rc);
        lmp_model_free(&m);
    }
    struct { const char *what; int full, targets; float dropout; } llama[] = {
        {"llama lora all-linear", 0, LMP_T_ALL_LINEAR, 0},
        {"llama lora v,up,down + dropout", 0, LMP_T_V_PROJ | LMP_T_UP_PROJ | LMP_T_DOWN_PROJ, 0.3f},
        {"llama full fine-tuning", 1, 0, 0},
    };
    for (size_t k = 0; k < sizeof llama / sizeof llama[0]; k++) {
        lmp_model m;
        build_llama(&m, &c, llama[k].full, llama[k].targets, llama[k].dropout);
        check_grads_floor(&m, llama[k].what, &train_rc, 2e-5);
        lmp_model_free(&m);
    }
    // Generation with the key/value cache: prefill of 2 tokens, then one decode step per
    // token, give every position's logits of a full forward (LoRA with non-zero B, and a
    // grouped-query variant; with the bottleneck methods beside LoRA; kv = 0: the Llama-family
    // model), within float rounding.
    struct { int kv; const char *method; } gen[] = {{2, NULL}, {1, NULL}, {2, "lora,houlsby"}, {1, "lora,parallel"}, {0, NULL}};
    for (size_t g = 0; g < sizeof gen / sizeof gen[0]; g++) {
        int kv = gen[g].kv;
        lmp_arch a;
        if (kv) lmp_gpt2_arch(&t_gpt2_cfg, &a);
        else lmp_llama_arch(&t_llama_cfg, &a);
        if (kv) a.n_kv_head = kv;
        lmp_model_opts o = {.targets = kv ? LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ
                                          : LMP_T_ALL_LINEAR,
                            .method = gen[g].method, .sublayers = 3, .ad = {.r = 3, .alpha = 6.0f, .size = 3, .bscale = 4}};
        lmp_model m;
        lmp_model_build_arch(&m, &a, &o, &c);
        lmp_model_init_base(&m, 7);
        t_scramble(&m, 5, T_ADAPTERS);
        double worst = t_cache_vs_full(&m, bt.tokens, t_gpt2_cfg.n_ctx);
        T_CHECK(worst <= 1e-5, "kv cache (n_kv_head %d, %s): logits differ from the full forward by %.3g", kv,
                gen[g].method ? gen[g].method : "lora", worst);
        lmp_model_free(&m);
    }
    // Grouped-query attention (2 query heads over 1 key/value head: q|k|v blocks of unequal
    // widths), LoRA on the whole projection and on k/v, and full fine-tuning.
    struct { const char *what; int full, targets; } gqa[] = {
        {"gqa lora all targets", 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ},
        {"gqa lora k,v", 0, LMP_T_K | LMP_T_V},
        {"gqa full fine-tuning", 1, 0},
    };
    for (size_t k = 0; k < sizeof gqa / sizeof gqa[0]; k++) {
        lmp_arch a;
        lmp_gpt2_arch(&t_gpt2_cfg, &a);
        a.n_kv_head = 1;
        lmp_model_opts o = {.full_finetune = gqa[k].full, .targets = gqa[k].targets,
                            .ad = {.r = 3, .alpha = 6.0f}};
        lmp_model m;
        lmp_model_build_arch(&m, &a, &o, &c);
        lmp_model_init_base(&m, 7);
        lmp_model_init_adapters(&m, 0, 11);
        lmp_model_set_batch(&m, T_B, T_T);
        T_CHECK(m.blocks[0].attn.qkv_l == (2 + 2 * 1) * a.head_dim, "gqa: q|k|v width %d", m.blocks[0].attn.qkv_l);
        check_grads(&m, gqa[k].what, &train_rc);
        lmp_model_free(&m);
    }
    // Block-level hooks: neutral at init (bitwise), then every gradient by finite differences.
    toy_adapters_register();
    const char *toys[2] = {"toy_series", "toy_parallel"};
    for (int k = 0; k < 2; k++) {
        lmp_model base, ad;
        build(&base, &c, 0, 0, 0);
        build_with(&ad, &c, 0, 0, 0, toys[k]);
        T_CHECK(ad.n_ad == 2 * t_gpt2_cfg.n_layer, "%s: %d instances, expected one per sublayer", toys[k], ad.n_ad);
        T_CHECK(t_same_logits(&base, &ad, bt.tokens, NULL, NULL), "%s at its neutral init changed the logits", toys[k]);
        check_grads(&ad, toys[k], &train_rc);
        lmp_model_free(&base);
        lmp_model_free(&ad);
    }
    // The bottleneck methods (adapters/bottleneck.c) in the model, alone and with LoRA.
    const int all = LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ;
    struct { const char *method; int sublayers, targets, relu; } bn[] = {
        {"houlsby", 3, 0, 0}, {"houlsby", 2, 0, 1}, {"parallel", 2, 0, 0}, {"parallel", 3, 0, 1},
        {"lora,houlsby", 3, all, 1}, {"lora,parallel", 1, LMP_T_Q | LMP_T_V, 0}};
    for (size_t k = 0; k < sizeof bn / sizeof bn[0]; k++) check_bottleneck(&c, bn[k].method, bn[k].sublayers,
                                                                           bn[k].targets, bn[k].relu, &train_rc);
    lmp_comm_free(&c);
    MPI_Finalize();
    return t_finish();
}
