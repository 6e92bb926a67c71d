// bf16 frozen weights ([model] dtype = bf16), one rank:
//  - lmp_wgemm with a bf16 weight (oneDNN) against a double-precision reference, every
//    storage (Conv1D (in, out), nn.Linear (out, in)), forward and backward, overwrite and
//    accumulate, strided rows. Bound per element (derived, not fitted): the input x is
//    rounded to bf16 once, |x̂ - x| <= u |x| with u = 2^-8 (8-bit significand, nearest
//    even), W is bf16 exactly, products and sums in fp32: |y - y_ref| <= (u + K 2^-23) Σ_k
//    |x_k W_k|. With x already bf16 the u term must vanish: |y - y_ref| <= K 2^-23 Σ|x W|
//    (so nothing else is rounded: not the weights, not the output);
//  - the whole model (GPT-2 and a Llama with every component; LoRA with dropout, DoRA, IA³
//    on feed-forward inputs): loss and every adapter gradient of the bf16 model against the
//    fp32 model holding the same (bf16-representable) weights, whose gradients
//    test_grad_model / test_grad_ia3dora check by finite differences. Bound: each frozen
//    GEMM rounds its input once (relative u per element); to first order these errors add
//    along the longest path, forward (n_lin GEMMs per block and the LM head) and backward (as
//    many dx GEMMs), so |g16 - g32| <= 2 (n_lin L + 1) u max|g| (the model's largest adapter
//    gradient: a tensor whose gradient is a cancellation of larger terms gets the same
//    absolute error) and |loss16 - loss32| <= (n_lin L + 1) u |loss32|; and the two must
//    differ (the bf16 path ran, rounding something);
//  - memory: the frozen linear weights, token embedding and head take 2 bytes each, exactly
//    half of the fp32 model's, the rest of the registry as before;
//  - loading: a BF16 file's linear weights, embedding and head (hf-variants/sharded: two shards and an index)
//    land in the bf16 entries bit for bit as the file's bytes, and an F32 file's (hf-tiny
//    llama) as their round-to-nearest-even, on tp = 1 and every rank's shard of tp = 2
//    (the bytes read here with pread at the offsets of the file's header).
#include "testutil.h"
#include "core/bf16.h"
#include "core/rng.h"
#include "core/wgemm.h"
#include "io/model_io.h"
#include "model/model.h"
#include "model/model_config.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double U = 1.0 / 256;  // bf16 unit roundoff, 2^-8

// One lmp_wgemm case: W (in, out) local, stored w_oi or not; back or not; x rounded first or not.
static void gemm_case(int w_oi, int back, int acc, int x_bf16) {
    enum { N = 7, IN = 37, OUT = 29, PAD = 3 };
    int K = back ? OUT : IN, M = back ? IN : OUT, ldx = K + PAD, ldy = M + PAD;
    lmp_param w = {.ndim = 2, .numel = IN * OUT, .bf16 = 1};
    snprintf(w.name, sizeof w.name, "w");
    w.local_shape[0] = w_oi ? OUT : IN;
    w.local_shape[1] = w_oi ? IN : OUT;
    w.h = malloc(sizeof(uint16_t) * IN * OUT);
    float *x = malloc(sizeof(float) * N * ldx), *y = malloc(sizeof(float) * N * ldy);
    for (int i = 0; i < IN * OUT; i++) w.h[i] = lmp_f32_to_bf16(lmp_rng_normal(1, 2, (uint64_t)i));
    for (int i = 0; i < N * ldx; i++) {
        float v = lmp_rng_normal(3, 4, (uint64_t)i);
        x[i] = x_bf16 ? lmp_bf16_to_f32(lmp_f32_to_bf16(v)) : v;
    }
    for (int i = 0; i < N * ldy; i++) y[i] = 0.5f * lmp_rng_normal(5, 6, (uint64_t)i);
    float *y0 = malloc(sizeof(float) * N * ldy);
    memcpy(y0, y, sizeof(float) * N * ldy);
    lmp_wgemm(&w, w_oi, back, y, ldy, x, ldx, N, acc ? 1.0f : 0.0f);
    double worst = 0, nonzero = 0;
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double ref = acc ? y0[n * ldy + m] : 0, absum = 0;
            for (int k = 0; k < K; k++) {
                int i = back ? m : k, o = back ? k : m;  // W as (in, out)
                double wv = lmp_bf16_to_f32(w.h[w_oi ? o * IN + i : i * OUT + o]);
                ref += (double)x[n * ldx + k] * wv;
                absum += fabs((double)x[n * ldx + k] * wv);
            }
            double bound = ((x_bf16 ? 0 : U) + K * ldexp(1, -23)) * absum + (acc ? ldexp(fabs(ref), -23) : 0);
            double err = fabs(y[n * ldy + m] - ref);
            worst = fmax(worst, err / bound);
            nonzero = fmax(nonzero, err);
        }
    int pads_kept = 1;  // the columns past M are not written
    for (int n = 0; n < N; n++)
        for (int m = M; m < ldy; m++) pads_kept &= y[n * ldy + m] == y0[n * ldy + m];
    T_CHECK(worst <= 1.0, "wgemm bf16 w_oi %d back %d acc %d x_bf16 %d: error %.3g of the bound", w_oi, back,
            acc, x_bf16, worst);
    T_CHECK(pads_kept, "wgemm bf16 w_oi %d back %d: wrote past the row's %d columns", w_oi, back, M);
    if (!x_bf16) T_CHECK(nonzero > 0, "wgemm bf16 w_oi %d back %d: no rounding seen (fp32 path?)", w_oi, back);
    free(w.h);
    free(x);
    free(y);
    free(y0);
}

enum { B = 2, T = 5, NR = B * T };
static const lmp_model_config CFG = {.n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_ctx = 8, .ln_eps = 1e-5f};
static const lmp_model_config LCFG = {
    .n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_ctx = 8, .ln_eps = 1e-6f,
    .family = LMP_FAMILY_LLAMA, .arch = "test", .n_kv_head = 1, .head_dim = 4, .mlp_hidden = 12,
    .qkv_bias = 1, .out_bias = 1, .mlp_bias = 1, .qk_norm = 1,
    .rope = {LMP_ROPE_LLAMA3, 10000.0f, 4.0f, 1.0f, 4.0f, 16}};
static int tokens[NR], targets[NR];
static float scale[NR];

typedef struct {
    const char *what, *method;
    int llama, targets, ff, n_lin;  // n_lin: frozen linears per block
    float dropout;
} mcase;

// The model of case k, frozen linear weights, embedding and head bf16 or fp32, both holding
// the same bf16-representable values (lmp_param_set rounds into a bf16 entry; the fp32 one
// gets the rounded value), adapters N(0, 0.3²) (IA³ 1 + N(0, 0.2²)) so every path carries signal.
static void build(lmp_model *m, lmp_comm *c, const mcase *k, int bf16) {
    lmp_model_opts o = {.targets = k->targets, .method = k->method, .bf16 = bf16,
                        .ad = {.r = 3, .alpha = 6.0f, .feedforward = k->ff, .dropout = k->dropout}};
    lmp_model_build(m, k->llama ? &LCFG : &CFG, &o, c);
    lmp_model_init_base(m, 7);
    lmp_model_init_adapters(m, 0, 11);
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *p = &m->reg.p[i];
        // Every 2-D base tensor but GPT-2's positions is bf16: the linear weights (N(0, 0.3²))
        // and the token embedding and head (their init, N(0, 0.02²), rounded).
        int lin = p->role == LMP_ROLE_BASE && p->ndim == 2 && !strstr(p->name, "wpe");
        int emb = strstr(p->name, "wte") || strstr(p->name, "embed_tokens") || strstr(p->name, "lm_head");
        int ia3 = strstr(p->name, "ia3_l") != NULL, mag = strstr(p->name, "magnitude") != NULL;
        for (size_t e = 0; lin && e < p->numel; e++) {
            float v = emb ? lmp_param_at(p, e) : 0.3f * lmp_rng_normal(99, (uint64_t)i, e);
            lmp_param_set(p, e, lmp_bf16_to_f32(lmp_f32_to_bf16(v)));
        }
        for (size_t e = 0; p->role == LMP_ROLE_ADAPTER && e < p->numel; e++) {
            float z = lmp_rng_normal(77, (uint64_t)i, e);
            p->data[e] = ia3 ? 1.0f + 0.2f * z : mag ? p->data[e] * (1.0f + 0.1f * z) : 0.3f * z;
        }
        T_CHECK(!lin || p->bf16 == bf16, "%s: %s bf16 = %d, wanted %d", k->what, p->name, p->bf16, bf16);
    }
    lmp_model_set_batch(m, B, T);
}

static void model_case(lmp_comm *c, const mcase *k) {
    lmp_model m16, m32;
    build(&m16, c, k, 1);
    build(&m32, c, k, 0);
    lmp_rng_ctx rc = {5, 0, 0, 1};
    lmp_registry_zero_grad(&m16.reg);
    lmp_registry_zero_grad(&m32.reg);
    double l16 = lmp_model_step(&m16, tokens, targets, scale, &rc, 1);
    double l32 = lmp_model_step(&m32, tokens, targets, scale, &rc, 1);
    int L = (k->llama ? LCFG : CFG).n_layer;
    double tol = (k->n_lin * L + 1) * U;  // + the LM head's GEMM
    T_CHECK(fabs(l16 - l32) <= tol * fabs(l32) && l16 != l32, "%s: loss bf16 %.9g fp32 %.9g (bound %.3g relative)",
            k->what, l16, l32, tol);
    // The scale of the step: the largest gradient of any adapter tensor. Per tensor would
    // ask more than bf16 gives where a tensor's gradient is a cancellation of larger terms
    // (the q/k-normed q_proj, DoRA's directions): there the same relative input rounding
    // is a larger part of a smaller result.
    double gmax = 1e-12, worst = 0;
    for (int i = 0; i < m32.reg.n; i++)
        for (size_t e = 0; m32.reg.p[i].trainable && e < m32.reg.p[i].numel; e++)
            gmax = fmax(gmax, fabs(m32.reg.p[i].grad[e]));
    for (int i = 0; i < m32.reg.n; i++) {
        lmp_param *a = &m16.reg.p[i], *b = &m32.reg.p[i];
        if (!b->trainable) continue;
        double err = 0;
        for (size_t e = 0; e < b->numel; e++) err = fmax(err, fabs(a->grad[e] - b->grad[e]));
        worst = fmax(worst, err / gmax);
        T_CHECK(err <= 2 * tol * gmax, "%s: %s max|g16 - g32| = %.3g, max|g32| over the model = %.3g (bound %.3g "
                "relative)", k->what, b->name, err, gmax, 2 * tol);
    }
    printf("%s: loss differs by %.2g relative, gradients by at most %.2g of max|g| (bounds %.2g, %.2g)\n",
           k->what, fabs(l16 - l32) / fabs(l32), worst, tol, 2 * tol);
    // Memory: the frozen linear weights at 2 bytes, exactly half of the fp32 model's.
    size_t lin16 = m16.reg.n_frozen16, f32 = m32.reg.n_frozen - m16.reg.n_frozen;
    T_CHECK(lin16 > 0 && lin16 == f32 &&
            lmp_registry_frozen_bytes(&m32.reg) - lmp_registry_frozen_bytes(&m16.reg) == 2 * lin16,
            "%s: %zu bf16 frozen elements, fp32 model has %zu more frozen floats", k->what, lin16, f32);
    lmp_model_free(&m16);
    lmp_model_free(&m32);
}

// The bf16 entries of the model at dir on tp rank r of tp against the file's bytes.
static void load_case(const char *dir, lmp_dtype want, int tp, int r) {
    lmp_model_config mc;
    lmp_model_read_config(dir, &mc);
    lmp_model_opts o = {.targets = LMP_T_ALL_LINEAR, .bf16 = 1, .ad = {.r = 2, .alpha = 4.0f}};
    lmp_comm c = {.tp_size = tp, .tp_rank = r, .size = tp};
    lmp_model m;
    lmp_model_register(&m, &mc, &o, &c);
    lmp_registry_alloc(&m.reg);
    lmp_model_load(dir, &m.reg);
    lmp_hf_files h;
    lmp_hf_open(&h, dir);
    int entries = 0;
    size_t bad = 0;
    for (int i = 0; i < m.reg.n; i++) {
        const lmp_param *p = &m.reg.p[i];
        if (!p->bf16) continue;
        const lmp_st_file *f;
        const lmp_st_tensor *t = lmp_hf_find(&h, p->name, &f);
        int es = t->dtype == LMP_DT_BF16 ? 2 : 4;
        bad += t->dtype != want;  // the fixture is what this case means to read
        for (size_t e = 0; e < p->numel; e++) {
            uint32_t raw = 0;
            off_t at = (off_t)(t->begin + (uint64_t)es * (uint64_t)lmp_param_global_index(p, e));
            float v;
            int got = pread(f->fd, &raw, (size_t)es, at) == es;
            memcpy(&v, &raw, 4);
            bad += !got || p->h[e] != (es == 2 ? (uint16_t)raw : lmp_f32_to_bf16(v));
        }
        entries++;
    }
    T_CHECK(entries == 7 * mc.n_layer + (mc.tied_head ? 1 : 2) && bad == 0, "%s tp %d rank %d: %d bf16 entries, %zu values differ from "
            "the file's", dir, tp, r, entries, bad);
    lmp_hf_close(&h);
    lmp_model_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    for (int w_oi = 0; w_oi < 2; w_oi++)
        for (int back = 0; back < 2; back++)
            for (int acc = 0; acc < 2; acc++)
                for (int xb = 0; xb < 2; xb++) gemm_case(w_oi, back, acc, xb);
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    for (int n = 0; n < NR; n++) {
        tokens[n] = (int)(lmp_rng_bits(1, 0, n) % CFG.vocab_size);
        targets[n] = (int)(lmp_rng_bits(1, 1, n) % CFG.vocab_size);
        scale[n] = 1.0f / NR;
    }
    int all = LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ;
    mcase cases[] = {
        {"lora gpt2 all + dropout", NULL, 0, all, 0, 4, 0.1f},
        {"lora gpt2 q,v slices", NULL, 0, LMP_T_Q | LMP_T_V, 0, 4, 0.0f},
        {"lora llama all-linear + dropout", NULL, 1, LMP_T_ALL_LINEAR, 0, 7, 0.1f},
        {"dora gpt2 all", "dora", 0, all, 0, 4, 0.0f},
        {"dora llama all-linear", "dora", 1, LMP_T_ALL_LINEAR, 0, 7, 0.0f},
        {"ia3 gpt2 all, ff fc+c_proj", "ia3", 0, all, LMP_T_MLP_FC | LMP_T_MLP_PROJ, 4, 0.0f},
        {"ia3 llama all, ff down", "ia3", 1, LMP_T_ALL_LINEAR, LMP_T_DOWN_PROJ, 7, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) model_case(&c, &cases[i]);
    const char *dirs[] = {LMP_SOURCE_DIR "/tests/fixtures/hf-variants/sharded/model", LMP_HF_TINY "/llama/model"};
    lmp_dtype want[] = {LMP_DT_BF16, LMP_DT_F32};
    for (int d = 0; d < 2; d++)
        for (int tp = 1; tp <= 2; tp++)
            for (int r = 0; r < tp; r++) load_case(dirs[d], want[d], tp, r);
    lmp_comm_free(&c);
    MPI_Finalize();
    return t_finish();
}
