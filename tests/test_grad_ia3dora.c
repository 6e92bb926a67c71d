// IA³ and DoRA in the whole model (one rank), on a tiny GPT-2 and a Llama-family model with
// every component (biases on q/k/v, o_proj and the MLP):
//  - at init the logits equal the base model's bit for bit (IA³'s vectors are 1; DoRA's
//    B = 0 and m = ||W0||, so its scale is exactly 1);
//  - non-neutral values do change them;
//  - finite-difference gradients of every element of every adapter tensor: IA³ on output
//    scaled layers (column-parallel with bias, row-parallel with bias, q/v slices) and on
//    feed-forward inputs; DoRA on every target and on slices, its norms held at their
//    values (PEFT detaches them: the gradient treats them as constants), also with dropout
//    (PEFT's DoRA then applies W0 to the dropped-out input);
//  - ia3 and dora beside houlsby; two linear-layer methods together are refused (t_methods).
#include "testutil.h"
#include "adapters/dora.h"
#include "core/rng.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "model/model.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static t_batch bt;

typedef struct {
    const char *what, *method;
    int llama, targets, ff;
    float dropout;
} tcase;

static void build(lmp_model *m, lmp_comm *c, const tcase *k) {
    lmp_model_opts o = {.targets = k->targets, .method = k->method, .sublayers = 3,
                        .ad = {.r = 3, .alpha = 6.0f, .size = 3, .init_scale = 1e-3f, .feedforward = k->ff,
                               .dropout = k->dropout}};
    lmp_model_build(m, k->llama ? &t_llama_cfg : &t_gpt2_cfg, &o, c);
    lmp_model_init_base(m, 7);
    t_scramble(m, 99, T_BASE | T_KEEP_NORMS);  // before the adapters: DoRA's m = ||W0||
    lmp_model_init_adapters(m, 0, 11);
    lmp_model_set_batch(m, T_B, T_T);
}

// Every adapter tensor away from its init, as PEFT's fixtures start: IA³ 1 + N(0, 0.2²),
// DoRA's B N(0, 0.3²) and m its init × (1 + N(0, 0.1²)), A and the rest N(0, 0.3²).
static void perturb(lmp_model *m) {
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *p = &m->reg.p[i];
        if (p->role != LMP_ROLE_ADAPTER) continue;
        int ia3 = strstr(p->name, "ia3_l") != NULL, mag = strstr(p->name, "magnitude") != NULL;
        for (size_t e = 0; e < p->numel; e++) {
            float z = lmp_rng_normal(77, (uint64_t)i, e);
            p->data[e] = ia3 ? 1.0f + 0.2f * z : mag ? p->data[e] * (1.0f + 0.1f * z) : 0.3f * z;
        }
    }
}

// Every element of every adapter tensor by central differences (t_fd_check), DoRA's norms
// held at the analytic step's values.
static void check_grads(lmp_model *m, const char *what, const lmp_rng_ctx *rc, double floor) {
    t_grad(m, &bt, rc);
    lmp_dora_freeze_norms = 1;  // the norms of the step above, as constants
    t_fd_check(m, what, &bt, rc, floor);
    lmp_dora_freeze_norms = 0;
}

static void check_case(lmp_comm *c, const tcase *k, const lmp_rng_ctx *rc) {
    lmp_model base, ad;
    lmp_model_opts o = {0};
    lmp_model_build(&base, k->llama ? &t_llama_cfg : &t_gpt2_cfg, &o, c);
    lmp_model_init_base(&base, 7);
    build(&ad, c, k);
    // the same base weights as build() sets
    for (int i = 0; i < base.reg.n; i++) {
        lmp_param *p = &base.reg.p[i], *q = lmp_registry_find(&ad.reg, p->name);
        T_CHECK(q && q->numel == p->numel, "%s: %s missing", k->what, p->name);
        if (q) memcpy(p->data, q->data, p->numel * sizeof(float));
    }
    lmp_model_set_batch(&base, T_B, T_T);
    int houlsby = strstr(k->method, "houlsby") != NULL;
    if (!houlsby) T_CHECK(t_same_logits(&base, &ad, bt.tokens, NULL, NULL), "%s at init changed the logits", k->what);
    perturb(&ad);
    T_CHECK(!t_same_logits(&base, &ad, bt.tokens, NULL, NULL), "%s: non-neutral values left the logits unchanged",
            k->what);
    check_grads(&ad, k->what, rc, k->llama ? 2e-5 : 0.0);
    printf("%-28s %s, gradients checked\n", k->what, houlsby ? "(houlsby moves the logits at init)" : "init bitwise");
    lmp_model_free(&base);
    lmp_model_free(&ad);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    t_batch_init(&bt);
    lmp_rng_ctx rc = {5, 0, 0, 1};
    const int all = LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ;
    tcase cases[] = {
        {"ia3 gpt2 all, ff c_proj", "ia3", 0, all, LMP_T_MLP_PROJ, 0.0f},
        {"ia3 gpt2 all, ff fc+c_proj", "ia3", 0, all, LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0.0f},
        {"ia3 gpt2 q,v slices", "ia3", 0, LMP_T_Q | LMP_T_V, 0, 0.0f},
        {"ia3,houlsby gpt2", "ia3,houlsby", 0, LMP_T_C_ATTN | LMP_T_MLP_PROJ, LMP_T_MLP_PROJ, 0.0f},
        {"dora gpt2 all", "dora", 0, all, 0, 0.0f},
        {"dora gpt2 q,k,v slices", "dora", 0, LMP_T_Q | LMP_T_K | LMP_T_V, 0, 0.0f},
        {"dora gpt2 all + dropout", "dora", 0, all, 0, 0.3f},
        {"dora,houlsby gpt2", "dora,houlsby", 0, LMP_T_C_ATTN | LMP_T_MLP_PROJ, 0, 0.0f},
        {"ia3 llama all, ff down", "ia3", 1, LMP_T_ALL_LINEAR, LMP_T_DOWN_PROJ, 0.0f},
        {"ia3 llama k,v,o, ff up,down", "ia3", 1, LMP_T_K_PROJ | LMP_T_V_PROJ | LMP_T_O_PROJ |
                                                LMP_T_UP_PROJ | LMP_T_DOWN_PROJ, LMP_T_UP_PROJ | LMP_T_DOWN_PROJ, 0.0f},
        {"dora llama all-linear", "dora", 1, LMP_T_ALL_LINEAR, 0, 0.0f},
        {"dora llama q,o,down + dropout", "dora", 1, LMP_T_Q_PROJ | LMP_T_O_PROJ | LMP_T_DOWN_PROJ, 0, 0.3f},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) check_case(&c, &cases[k], &rc);
    lmp_comm_free(&c);
    MPI_Finalize();
    return t_finish();
}
