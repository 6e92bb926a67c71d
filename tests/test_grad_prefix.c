// Prefix tuning in the model (one rank), on a tiny GPT-2, its grouped-query variant and a
// Llama-family model with every component (RoPE llama3, GQA 2 over 1, q/k norm):
//  - finite-difference gradient of the loss w.r.t. every prefix element (alone, beside LoRA,
//    beside a bottleneck adapter);
//  - "neutral" as prefix tuning can be: no prefix leaves the attention unchanged (a prefix
//    always takes a share of every softmax), so the check is the exact identity behind the
//    method instead: prefixes equal to the base model's own keys/values of p real tokens
//    give the base model's logits of the tokens that follow them, position for position
//    (learned positions and rotary angles from p on; prefix keys not rotated again);
//    and at the default init (N(0, 1)) the logits move, reported;
//  - generation with the key/value cache (prefixes in its first p slots) gives every
//    position's logits of a full forward.
// With prefix_projection (PEFT's MLP E -> Linear -> tanh -> Linear, adapters/prefix.h):
//  - finite-difference gradient of every element of the MLP's five tensors (GPT-2, its
//    grouped-query variant, the Llama-family model; beside LoRA and a bottleneck);
//  - identity: the loss equals that of plain prefix tuning whose prefixes are the MLP's output
//    computed here in double from the MLP's tensors (1e-6 relative), and the plain model's
//    prefix gradient taken back through the MLP (here, in double) is the projection model's
//    MLP gradient (1e-5 of its largest element);
//  - two backward passes accumulate twice one (dP emptied between passes), an eval forward in
//    between changes nothing; refresh writes what a forward writes;
//  - the key/value cache as above.
#include "testutil.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "model/model.h"
#include "core/rng.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P = 2 };
static t_batch bt;

// kind 0: GPT-2, 1: GPT-2 with one kv head, 2: the Llama-family model. proj: prefix
// projection's MLP of hidden width proj - 1 (0: none; 1: the default, the token dim).
static void build_proj(lmp_model *m, lmp_comm *c, int kind, const char *method, int targets_bits, int p,
                       int proj) {
    lmp_arch a;
    if (kind == 2) lmp_llama_arch(&t_llama_cfg, &a);
    else lmp_gpt2_arch(&t_gpt2_cfg, &a);
    if (kind == 1) a.n_kv_head = 1;
    lmp_model_opts o = {.targets = targets_bits, .method = method, .sublayers = 3,
                        .ad = {.r = 3, .alpha = 6.0f, .size = 3, .bscale = 4.0f, .init_scale = 1e-3f,
                               .virtual_tokens = p, .projection = proj > 0, .enc_hidden = proj > 0 ? proj - 1 : 0}};
    lmp_model_build_arch(m, &a, &o, c);
    lmp_model_init_base(m, 7);
    lmp_model_init_adapters(m, 0, 11);
}

static void build(lmp_model *m, lmp_comm *c, int kind, const char *method, int targets_bits, int p) {
    build_proj(m, c, kind, method, targets_bits, p, 0);
}

// Every trainable element against central differences (h = 1e-3), after making the adapters
// and the base weights non-trivial; tolerance 2e-2 max|grad| + floor per tensor.
static void check_grads(lmp_model *m, const char *what, const lmp_rng_ctx *rc, double floor) {
    t_scramble(m, 99, T_BASE | T_ADAPTERS);  // as test_grad_model: base weights at 0.02 carry little signal
    lmp_model_set_batch(m, T_B, T_T);
    int checked = t_check_grads(m, what, &bt, rc, floor);
    printf("%-28s %d tensors by finite differences\n", what, checked);
}

// Prefixes = the base model's keys/values of the first p tokens (its cache after a prefill
// of them): the prefix model's logits of tokens p .. p + T - 1 equal the base model's on the
// whole sequence, rows p on.
static void check_prompt_identity(lmp_comm *c, int kind) {
    lmp_model base, pm;
    build(&base, c, kind, NULL, 0, 0);
    build(&pm, c, kind, "prefix", 0, P);
    int V = t_gpt2_cfg.vocab_size, L = t_gpt2_cfg.n_layer, ctx = t_gpt2_cfg.n_ctx, TT = T_T + P;
    float *full = malloc(sizeof(float) * TT * V), *got = malloc(sizeof(float) * T_T * V), *one = malloc(sizeof(float) * V);
    lmp_model_set_batch(&base, 1, TT);
    lmp_model_logits(&base, bt.tokens, full);
    lmp_model_prefill(&base, bt.tokens, P, one);
    size_t kvw = (size_t)pm.arch.n_kv_head * pm.arch.head_dim;
    for (int l = 0; l < L; l++) {
        lmp_param *x = lmp_rec_tensor(&pm.reg, &pm.reg.rec[l], 0);
        const float *kc = base.cache.mem + (size_t)l * 2 * ctx * kvw, *vc = kc + (size_t)ctx * kvw;
        for (int t = 0; t < P; t++) {
            memcpy(x->data + t * 2 * kvw, kc + t * kvw, kvw * sizeof(float));
            memcpy(x->data + t * 2 * kvw + kvw, vc + t * kvw, kvw * sizeof(float));
        }
    }
    lmp_model_set_batch(&pm, 1, T_T);
    lmp_model_logits(&pm, bt.tokens + P, got);
    double d = t_max_rel_diff(got, full + (size_t)P * V, (size_t)T_T * V);
    printf("kind %d: prefixes = the base model's cache of %d tokens: logits within %.3g of the base model's\n", kind, P, d);
    T_CHECK(d <= 1e-5, "kind %d: prefix = base keys/values: logits differ by %.3g", kind, d);
    // At the default init the prefixes move the logits (they are in the path).
    lmp_model_init_adapters(&pm, 0, 11);
    lmp_model_logits(&pm, bt.tokens + P, got);
    double dm = t_max_rel_diff(got, full + (size_t)P * V, (size_t)T_T * V);
    printf("kind %d: at init (N(0, 1) prefixes) the logits differ from the base model's by %.3g (relative)\n", kind, dm);
    T_CHECK(dm > 1e-3, "kind %d: prefixes at init left the logits unchanged", kind);
    free(full), free(got), free(one);
    lmp_model_free(&base);
    lmp_model_free(&pm);
}

// The MLP's tensors of a projection model: E, W1, b1, W2, b2 (adapters/prefix.h).
static lmp_param *enc_tensor(lmp_model *m, int k) {
    static const char *LEAF[5] = {"embedding", "transform.0.weight", "transform.0.bias", "transform.2.weight",
                                  "transform.2.bias"};
    char name[64];
    snprintf(name, sizeof name, "prefix_encoder.%s", LEAF[k]);
    lmp_param *x = lmp_registry_find(&m->reg, name);
    T_CHECK(x && x->trainable, "no trainable %s", name);
    return x;
}

// h (p, H) = tanh(E W1ᵀ + b1) and P (p, O) = h W2ᵀ + b2 in double, from the model's tensors.
static void mlp_double(lmp_model *m, double *h, double *Pd, int p, int D, int H, int O) {
    const float *E = enc_tensor(m, 0)->data, *W1 = enc_tensor(m, 1)->data, *b1 = enc_tensor(m, 2)->data;
    const float *W2 = enc_tensor(m, 3)->data, *b2 = enc_tensor(m, 4)->data;
    for (int t = 0; t < p; t++) {
        for (int j = 0; j < H; j++) {
            double z = b1[j];
            for (int d = 0; d < D; d++) z += (double)E[t * D + d] * W1[j * D + d];
            h[t * H + j] = tanh(z);
        }
        for (int o = 0; o < O; o++) {
            double z = b2[o];
            for (int j = 0; j < H; j++) z += h[t * H + j] * W2[o * H + j];
            Pd[t * O + o] = z;
        }
    }
}

// The MLP's gradients (E, W1, b1, W2, b2, flat in that order) from dP (p, O), in double.
static void mlp_backward_double(lmp_model *m, const double *h, const double *dP, double *g, int p, int D, int H,
                                int O) {
    const float *E = enc_tensor(m, 0)->data, *W1 = enc_tensor(m, 1)->data, *W2 = enc_tensor(m, 3)->data;
    double *gE = g, *gW1 = gE + p * D, *gb1 = gW1 + H * D, *gW2 = gb1 + H, *gb2 = gW2 + O * H;
    memset(g, 0, sizeof(double) * (size_t)(p * D + H * D + H + O * H + O));
    for (int t = 0; t < p; t++)
        for (int j = 0; j < H; j++) {
            double dh = 0;
            for (int o = 0; o < O; o++) {
                dh += dP[t * O + o] * W2[o * H + j];
                gW2[o * H + j] += dP[t * O + o] * h[t * H + j];
            }
            double dz = dh * (1 - h[t * H + j] * h[t * H + j]);
            gb1[j] += dz;
            for (int d = 0; d < D; d++) {
                gW1[j * D + d] += dz * E[t * D + d];
                gE[t * D + d] += dz * W1[j * D + d];
            }
        }
    for (int t = 0; t < p; t++)
        for (int o = 0; o < O; o++) gb2[o] += dP[t * O + o];
}

// Projection = plain prefix tuning with the MLP's output as its prefixes: the loss, and the
// gradient through the MLP (module comment); H = hid (0: the token dim).
static void check_projection_identity(lmp_comm *c, int kind, int hid, const lmp_rng_ctx *rc) {
    lmp_model pj, pm;
    build_proj(&pj, c, kind, "prefix", 0, P, hid + 1);
    build(&pm, c, kind, "prefix", 0, P);
    int L = pj.arch.n_layer, D = pj.arch.n_kv_head * pj.arch.head_dim, H = hid ? hid : D, O = 2 * L * D;
    size_t ng = (size_t)(P * D + H * D + H + O * H + O);
    double *h = malloc(sizeof(double) * P * H), *Pd = malloc(sizeof(double) * P * O), *dP = malloc(sizeof(double) * P * O);
    double *g = malloc(sizeof(double) * ng);
    mlp_double(&pj, h, Pd, P, D, H, O);
    for (int l = 0; l < L; l++) {
        lmp_param *x = lmp_rec_tensor(&pm.reg, &pm.reg.rec[l], 0);
        for (int t = 0; t < P; t++)
            for (int j = 0; j < 2 * D; j++) x->data[t * 2 * D + j] = (float)Pd[t * O + 2 * l * D + j];
    }
    lmp_model *both[2] = {&pj, &pm};
    double loss[2];
    for (int k = 0; k < 2; k++) {
        lmp_model_set_batch(both[k], T_B, T_T);
        lmp_registry_zero_grad(&both[k]->reg);
        loss[k] = lmp_model_step(both[k], bt.tokens, bt.targets, bt.scale, rc, 1);
    }
    printf("kind %d, H %d: projection loss %.9g, plain prefixes = the MLP's output %.9g\n", kind, H, loss[0], loss[1]);
    T_CHECK(t_close(loss[0], loss[1], 1e-6, 0), "kind %d: projection loss %.9g != plain %.9g", kind, loss[0], loss[1]);
    for (int l = 0; l < L; l++) {
        const lmp_param *x = lmp_rec_tensor(&pm.reg, &pm.reg.rec[l], 0);
        for (int t = 0; t < P; t++)
            for (int j = 0; j < 2 * D; j++) dP[t * O + 2 * l * D + j] = x->grad[t * 2 * D + j];
    }
    mlp_backward_double(&pj, h, dP, g, P, D, H, O);
    double worst = 0, gmax = 1e-30;
    for (int k = 0, off = 0; k < 5; off += (int)enc_tensor(&pj, k)->numel, k++)
        for (size_t i = 0; i < enc_tensor(&pj, k)->numel; i++) {
            worst = fmax(worst, fabs(enc_tensor(&pj, k)->grad[i] - g[off + i]));
            gmax = fmax(gmax, fabs(g[off + i]));
        }
    printf("kind %d: MLP gradient vs the plain prefixes' gradient through the MLP: %.3g of max %.3g\n", kind, worst, gmax);
    T_CHECK(worst <= 1e-5 * gmax, "kind %d: MLP gradient off by %.3g (max %.3g)", kind, worst, gmax);
    free(h), free(Pd), free(dP), free(g);
    lmp_model_free(&pj);
    lmp_model_free(&pm);
}

// Accumulation over passes and refresh (module comment).
static void check_projection_passes(lmp_comm *c, int kind, const lmp_rng_ctx *rc) {
    lmp_model m;
    build_proj(&m, c, kind, "prefix", 0, P, 1);
    lmp_model_set_batch(&m, T_B, T_T);
    lmp_registry_zero_grad(&m.reg);
    lmp_model_step(&m, bt.tokens, bt.targets, bt.scale, rc, 1);
    size_t n = m.reg.n_train;
    float *g1 = malloc(sizeof(float) * n), *pre = malloc(sizeof(float) * n);
    memcpy(g1, m.reg.grad_mem, sizeof(float) * n);
    lmp_model_step(&m, bt.targets, bt.tokens, bt.scale, rc, 0);  // an eval pass on other tokens between
    lmp_model_step(&m, bt.tokens, bt.targets, bt.scale, rc, 1);
    double worst = 0, gmax = 1e-30;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(m.reg.grad_mem[i] - 2.0 * g1[i]));
        gmax = fmax(gmax, fabs(g1[i]));
    }
    T_CHECK(gmax > 1e-6 && worst <= 1e-6 * gmax, "kind %d: two passes give %.3g off twice one (max %.3g)", kind,
            worst, gmax);
    lmp_param *x = lmp_rec_tensor(&m.reg, &m.reg.rec[1], 0);  // block 0's prefixes (rec 0: the MLP)
    T_CHECK(!x->trainable && !strcmp(x->name, "h.0.attn.prefix.prompt_embeddings"), "%s", x->name);
    memcpy(pre, x->data, x->numel * sizeof(float));
    enc_tensor(&m, 0)->data[0] += 0.5f;
    lmp_model_refresh_adapters(&m);
    T_CHECK(memcmp(pre, x->data, x->numel * sizeof(float)), "kind %d: refresh left the prefixes", kind);
    memcpy(pre, x->data, x->numel * sizeof(float));
    lmp_model_step(&m, bt.tokens, bt.targets, bt.scale, rc, 0);
    T_CHECK(!memcmp(pre, x->data, x->numel * sizeof(float)), "kind %d: refresh != forward", kind);
    printf("kind %d: two backward passes = 2 x one within %.3g; refresh = forward, bitwise\n", kind, worst / gmax);
    free(g1), free(pre);
    lmp_model_free(&m);
}

// Prefill of 2 tokens and decode steps up to n_ctx - p: every position's logits of a full forward.
static void check_cache(lmp_comm *c, int kind, const char *method, int targets_bits, int proj) {
    lmp_model m;
    build_proj(&m, c, kind, method, targets_bits, P, proj);
    for (int i = 0; i < m.reg.n; i++)
        if (m.reg.p[i].role == LMP_ROLE_ADAPTER)
            for (size_t k = 0; k < m.reg.p[i].numel; k++) m.reg.p[i].data[k] = 0.3f * lmp_rng_normal(5, (uint64_t)i, k);
    int V = t_gpt2_cfg.vocab_size, TT = t_gpt2_cfg.n_ctx - P;
    float *full = malloc(sizeof(float) * TT * V), *one = malloc(sizeof(float) * V);
    lmp_model_set_batch(&m, 1, TT);
    lmp_model_logits(&m, bt.tokens, full);
    lmp_model_prefill(&m, bt.tokens, 2, one);
    double worst = t_max_rel_diff(one, full + V, V);
    for (int t = 2; t < TT; t++) {
        lmp_model_decode(&m, bt.tokens[t], one);
        worst = fmax(worst, t_max_rel_diff(one, full + (size_t)t * V, V));
    }
    T_CHECK(worst <= 1e-5, "kv cache (kind %d, %s): logits differ from the full forward by %.3g", kind, method, worst);
    free(full), free(one);
    lmp_model_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    t_batch_init(&bt);
    lmp_rng_ctx rc = {5, 0, 0, 1};
    const int all = LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ;
    struct { const char *what; int kind; const char *method; int targets; } g[] = {
        {"gpt2 prefix", 0, "prefix", 0}, {"gpt2 lora,prefix", 0, "lora,prefix", all},
        {"gpt2 gqa prefix,houlsby", 1, "prefix,houlsby", 0}, {"llama prefix", 2, "prefix", 0},
        {"llama lora,prefix", 2, "lora,prefix", LMP_T_ALL_LINEAR}};
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
        lmp_model m;
        build(&m, &c, g[k].kind, g[k].method, g[k].targets, P);
        check_grads(&m, g[k].what, &rc, g[k].kind == 2 ? 2e-5 : 0.0);
        lmp_model_free(&m);
    }
    // Projection: H = 3 (below the token dim), the default (1: the token dim), 12 (above).
    struct { const char *what; int kind; const char *method; int targets, proj; } pg[] = {
        {"gpt2 prefix proj H=3", 0, "prefix", 0, 4}, {"gpt2 lora,prefix proj", 0, "lora,prefix", all, 1},
        {"gpt2 gqa prefix,houlsby proj", 1, "prefix,houlsby", 0, 13}, {"llama prefix proj", 2, "prefix", 0, 1},
        {"llama lora,prefix proj H=3", 2, "lora,prefix", LMP_T_ALL_LINEAR, 4}};
    for (size_t k = 0; k < sizeof pg / sizeof pg[0]; k++) {
        lmp_model m;
        build_proj(&m, &c, pg[k].kind, pg[k].method, pg[k].targets, P, pg[k].proj);
        check_grads(&m, pg[k].what, &rc, pg[k].kind == 2 ? 2e-5 : 0.0);
        lmp_model_free(&m);
    }
    for (int kind = 0; kind < 3; kind++) check_prompt_identity(&c, kind);
    for (int kind = 0; kind < 3; kind++) {
        check_projection_identity(&c, kind, 0, &rc);
        check_projection_identity(&c, kind, 3, &rc);
        check_projection_passes(&c, kind, &rc);
    }
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) check_cache(&c, g[k].kind, g[k].method, g[k].targets, 0);
    for (size_t k = 0; k < sizeof pg / sizeof pg[0]; k++)
        check_cache(&c, pg[k].kind, pg[k].method, pg[k].targets, pg[k].proj);
    lmp_comm_free(&c);
    MPI_Finalize();
    return t_finish();
}
