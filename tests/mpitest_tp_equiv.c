// Tensor- and data-parallel equivalence (run on 4 ranks): for every layout (tp, dp) in
// {(1,1), (2,1), (1,2), (2,2), (4,1), (1,4)} the loss, every reduced gradient, and the logits after
// one AdamW step equal the 1-rank run's within 1e-5 relative (max abs difference over max
// abs reference value), in LoRA mode (all targets, with dropout), LoRA on q/v slices, and
// full fine-tuning; and for grouped-query attention (4 query heads over 2 key/value heads,
// q|k|v blocks of unequal widths; tp <= 2), LoRA on all targets, on k/v, and full; the
// bottleneck methods houlsby and parallel (both sublayers), alone and with LoRA; and for a
// Llama-family model with every component (RMSNorm, RoPE, 4 query over 2 KV heads, q/k/v,
// o_proj and MLP biases, per-head q/k norm, gated SiLU, untied head; tp <= 2): LoRA on all
// seven projections (with dropout), on q_proj/v_proj, full, and houlsby; prefix tuning (2
// virtual tokens: the prefixes split by KV heads over tp) alone and beside LoRA on GPT-2,
// GPT-2 with 2 KV heads and the Llama-family model, and with prefix_projection's MLP (its
// gradient from each tp rank's KV-head columns, summed over tp; GPT-2, GQA, Llama); IA³ (non-unit vectors; feed-forward
// mlp.c_proj / down_proj) and DoRA (non-zero B, magnitudes; GPT-2 with dropout) on every target
// of either family and on q/v or k/v slices. The 2-rank layouts reduce the gradients after
// the backward (lmp_reduce_grads, [parallel] bucket_mb = 0), the 4-rank ones in buckets of
// one block each started during the backward (lmp_buckets_*). The layouts (2,1), (2,2) and
// (4,1) run again with sequence parallelism (model opts sp: the residual stream, norms and
// bottleneck adapters split by rows over tp, all-gather / reduce-scatter in place of the tp
// all-reduces), every mode, against the same 1-rank run. Also: each rank's
// frozen bytes equal its shard size computed from the shapes, and every rank took part.
#include "testutil.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "model/model.h"
#include "core/optim.h"
#include "core/rng.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BG = 4, T = 6 };
static const lmp_model_config CFG = {.n_layer = 2, .n_head = 4, .n_embd = 16, .vocab_size = 37, .n_ctx = 8, .ln_eps = 1e-5f};  // odd vocab: uneven split
// Qwen3-like with Qwen2's biases and Llama's untied head: every Llama-family component.
static const lmp_model_config LCFG = {
    .n_layer = 2, .n_head = 4, .n_embd = 16, .vocab_size = 37, .n_ctx = 8, .ln_eps = 1e-6f,
    .family = LMP_FAMILY_LLAMA, .arch = "test", .n_kv_head = 2, .head_dim = 6, .mlp_hidden = 20,
    .qkv_bias = 1, .out_bias = 1, .mlp_bias = 1, .qk_norm = 1, .rope = {LMP_ROPE_LLAMA3, 10000.0f, 4.0f, 1.0f, 4.0f, 16}};
// The Llama family's description of LCFG (the modes' family functions take GPT-2's CFG).
static void llama_family(const lmp_model_config *cfg, lmp_arch *a) {
    (void)cfg;
    lmp_llama_arch(&LCFG, a);
}

typedef struct {
    double loss;
    float *grads;    // all trainable tensors' gradients, global shapes, concatenated
    float *params;   // all trainable tensors after the step, same layout
    size_t ngrad;
    float *logits;   // (BG*T, V) after one optimizer step
} result;

static void make_batch(int *tok, int *tgt) {
    for (int n = 0; n < BG * T; n++) {
        tok[n] = (int)(lmp_rng_bits(3, 0, n) % CFG.vocab_size);
        tgt[n] = (int)(lmp_rng_bits(3, 1, n) % CFG.vocab_size);
    }
}

// Every trainable tensor (gradients, or values) in its global shape on rank 0: each tp
// rank of dp replica 0 scatters its slice into a zeroed global buffer; replicated tensors
// come from tp rank 0 only; a sum over the tp group completes them.
static float *gather_global(lmp_model *m, lmp_comm *c, int grads, size_t *n_out) {
    size_t ng = 0;
    for (int i = 0; i < m->reg.n; i++)
        if (m->reg.p[i].trainable) ng += (size_t)lmp_param_global_numel(&m->reg.p[i]);
    float *g = calloc(ng, sizeof(float));
    size_t at = 0;
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *q = &m->reg.p[i];
        if (!q->trainable) continue;
        const float *src = grads ? q->grad : q->data;
        if (q->split_dim >= 0 || c->tp_rank == 0)
            for (size_t k = 0; k < q->numel; k++) g[at + lmp_param_global_index(q, k)] = src[k];
        at += (size_t)lmp_param_global_numel(q);
    }
    if (c->dp_rank == 0) MPI_Reduce(c->rank == 0 ? MPI_IN_PLACE : g, g, (int)ng, MPI_FLOAT, MPI_SUM, 0, c->tp);
    *n_out = ng;
    return g;
}

// Runs one step on the ranks of `world` laid out as tp x dp; the result lands on rank 0.
// A model family's description from a model config (model/gpt2.h's lmp_gpt2_arch, ...).
typedef void (*family_fn)(const lmp_model_config *cfg, lmp_arch *a);

// One training step's loss and reduced gradients: bucketed (bucket_mb > 0: the all-reduces
// start during the backward) or one all-reduce after it (0).
static double step(lmp_model *m, lmp_comm *c, const int *tok, const int *tgt, const float *scale,
                   const lmp_rng_ctx *rc, double bucket_mb) {
    lmp_grad_buckets bk;
    lmp_buckets_plan(&bk, c, &m->reg, bucket_mb);
    // Tiny buckets: every block with gradients its own, and the rest: at least 2 on > 1 rank.
    T_CHECK(bucket_mb == 0 || c->size == 1 || bk.n >= 2, "tp=%d dp=%d: %d gradient buckets", c->tp_size,
            c->dp_size, bk.n);
    m->bk = bk.n ? &bk : NULL;
    lmp_registry_zero_grad(&m->reg);
    double loss = lmp_model_step(m, tok, tgt, scale, rc, 1);
    m->bk = NULL;
    lmp_allreduce_d(c, &loss, 1, MPI_SUM, c->dp);
    if (bk.n) lmp_buckets_finish(c, &m->reg, &bk);
    else lmp_reduce_grads(c, &m->reg);
    lmp_buckets_free(&bk);
    return loss;
}

static void run(MPI_Comm world, int tp, int sp, int full, int targets, float dropout, int kv, const char *method,
                family_fn family, int proj, result *res) {
    lmp_comm c;
    lmp_comm_init(&c, world, tp);
    lmp_model_opts o = {.full_finetune = full, .targets = targets, .method = method, .sublayers = 3,
                        .ad = {.r = 4, .alpha = 8, .dropout = dropout, .size = 5, .init_scale = 1e-3f, .bscale = 4,
                               .virtual_tokens = 2, .projection = proj, .enc_hidden = 6,
                               .feedforward = LMP_T_MLP_PROJ | LMP_T_DOWN_PROJ},
                        .sp = sp};
    lmp_model m;
    lmp_arch a;
    (family ? family : lmp_gpt2_arch)(&CFG, &a);
    if (kv) a.n_kv_head = kv;  // grouped-query attention
    lmp_model_build_arch(&m, &a, &o, &c);
    lmp_model_init_base(&m, 5);
    lmp_model_init_adapters(&m, 0, 6);
    // Every adapter tensor but the first (LoRA's B; a bottleneck's biases and W_up) non-zero by
    // global index, so identical on every layout, so that every path carries signal.
    for (int i = 0; i < m.reg.n_rec; i++)
        for (int t = 1; t < m.reg.rec[i].n_tensor; t++) {
            lmp_param *Bp = lmp_rec_tensor(&m.reg, &m.reg.rec[i], t);
            for (size_t k = 0; k < Bp->numel; k++) Bp->data[k] = 0.05f * lmp_rng_normal(8, (uint64_t)(i * 4 + t), k);
        }
    for (int i = 0; i < m.reg.n_rec; i++)  // IA³'s one vector: 1 + N(0, 0.2²)
        if (!strcmp(m.reg.rec[i].method, "ia3")) {
            lmp_param *l = lmp_rec_tensor(&m.reg, &m.reg.rec[i], 0);
            for (size_t k = 0; k < l->numel; k++) l->data[k] = 1.0f + 0.2f * lmp_rng_normal(8, (uint64_t)i * 4, k);
        }

    // Exact frozen shard size from the shapes alone.
    int64_t C = CFG.n_embd, L = CFG.n_layer, p = c.tp_rank;
    int64_t V_l = (p + 1) * CFG.vocab_size / tp - p * CFG.vocab_size / tp;
    int64_t qkv = C + 2 * (C / a.n_head) * a.n_kv_head;  // q|k|v width
    int64_t per_layer = 4 * C + C * qkv / tp + qkv / tp + (C / tp) * C + C +
                        C * 4 * C / tp + 4 * C / tp + (4 * C / tp) * C + C;
    int64_t expect = V_l * C + CFG.n_ctx * C + L * per_layer + 2 * C;
    if (family == llama_family) {  // Llama: 2 norms; q, k, v (+ biases) by heads; o; q/k norms; gate, up, down
        int64_t hd = a.head_dim, q = a.n_head * hd / tp, k = a.n_kv_head * hd / tp, H = a.mlp_hidden / tp;
        // biases: q, k, v and gate, up split; o_proj and down_proj whole (row-parallel)
        per_layer = 2 * C + (q + 2 * k) * (C + 1) + q * C + C + 2 * hd + 3 * H * C + 2 * H + C;
        expect = 2 * V_l * C + L * per_layer + C;
    }
    if (proj) expect += L * 2 * 2 * a.n_kv_head * a.head_dim;  // the projected prefixes, whole, frozen
    T_CHECK((int64_t)(full ? m.reg.n_train : m.reg.n_frozen) == expect,
            "tp=%d rank %d: holds %zu base floats, shard size is %lld", tp, c.rank,
            full ? m.reg.n_train : m.reg.n_frozen, (long long)expect);

    int B = BG / c.dp_size, N = B * T;
    lmp_model_set_batch(&m, B, T);
    T_CHECK(m.run.sp == (sp && tp > 1), "tp=%d: sequence parallelism %s", tp, m.run.sp ? "on" : "off");
    int tok[BG * T], tgt[BG * T];
    float scale[BG * T];
    make_batch(tok, tgt);
    for (int n = 0; n < BG * T; n++) scale[n] = n % 7 == 3 ? 0.0f : 1.0f / (BG * T);
    int off = c.dp_rank * N;
    lmp_rng_ctx rc = {9, 0, off, 1};
    double loss = step(&m, &c, tok + off, tgt + off, scale + off, &rc, c.size == 4 ? 1e-9 : 0);

    size_t ng;
    float *g = gather_global(&m, &c, 1, &ng);
    // Adam's first step is lr * g/(|g| + eps): with eps = 1e-8 it is a sign step, and an
    // element whose gradient is at rounding level (1e-7 of the largest) would flip on any
    // reduction order. eps = 1e-3 keeps the update a smooth function of the gradient so the
    // 1e-5 tolerance tests the optimizer's plumbing over shards, not Adam's sign sensitivity.
    lmp_optim_cfg oc = {1e-2f, 0.9f, 0.999f, 1e-3f, 0.01f, 0, 1, 2, 0};
    lmp_adamw_step(&m.reg, &oc, 1e-2f, 1, 1.0f);
    float *lg = malloc(sizeof(float) * BG * T * CFG.vocab_size);
    lmp_model_logits(&m, tok + off, lg + (size_t)off * CFG.vocab_size);
    // Replica d's rows go to rank 0 from the tp-rank-0 member of replica d.
    if (c.tp_rank == 0 && c.dp_size > 1)
        MPI_Gather(c.dp_rank == 0 ? MPI_IN_PLACE : lg + (size_t)off * CFG.vocab_size,
                   N * CFG.vocab_size, MPI_FLOAT, lg, N * CFG.vocab_size, MPI_FLOAT, 0, c.dp);
    res->params = gather_global(&m, &c, 0, &ng);
    res->loss = loss;
    res->grads = g;
    res->ngrad = ng;
    res->logits = lg;
    lmp_model_free(&m);
    lmp_comm_free(&c);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = t_mpi_ranks(4);
    // A model family beside GPT-2 is one more line per method here, naming its description
    // function (NULL: GPT-2); kv: its key/value heads (0: as the family says).
    struct { const char *what; int full, targets; float dropout; int kv; const char *method; family_fn family; } modes[] = {
        {"lora all", 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0.1f, 0, NULL, NULL},
        {"lora q,v", 0, LMP_T_Q | LMP_T_V, 0.0f, 0, NULL, NULL},
        {"full", 1, 0, 0.0f, 0, NULL, NULL},
        {"gqa lora", 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0.1f, 2, NULL, NULL},
        {"gqa k,v", 0, LMP_T_K | LMP_T_V, 0.0f, 2, NULL, NULL},
        {"gqa full", 1, 0, 0.0f, 2, NULL, NULL},
        {"houlsby", 0, 0, 0.0f, 0, "houlsby", NULL},
        {"parallel", 0, 0, 0.0f, 0, "parallel", NULL},
        {"lora+houlsby", 0, LMP_T_C_ATTN | LMP_T_MLP_PROJ, 0.1f, 0, "lora,houlsby", NULL},
        {"lora+parallel", 0, LMP_T_Q | LMP_T_V, 0.0f, 0, "lora,parallel", NULL},
        {"gqa houlsby", 0, 0, 0.0f, 2, "houlsby", NULL},
        {"llama lora", 0, LMP_T_ALL_LINEAR, 0.1f, 2, NULL, llama_family},
        {"llama q,v", 0, LMP_T_Q_PROJ | LMP_T_V_PROJ, 0.0f, 2, NULL, llama_family},
        {"llama full", 1, 0, 0.0f, 2, NULL, llama_family},
        {"llama houlsby", 0, 0, 0.0f, 2, "houlsby", llama_family},
        {"prefix", 0, 0, 0.0f, 0, "prefix", NULL},
        {"lora+prefix", 0, LMP_T_C_ATTN | LMP_T_MLP_PROJ, 0.1f, 0, "lora,prefix", NULL},
        {"gqa prefix", 0, 0, 0.0f, 2, "prefix", NULL},
        {"llama prefix", 0, 0, 0.0f, 2, "prefix", llama_family},
        {"llama lora+pfx", 0, LMP_T_Q_PROJ | LMP_T_V_PROJ, 0.0f, 2, "lora,prefix", llama_family},
        // "proj" in the name: with prefix_projection's MLP
        {"prefix proj", 0, 0, 0.0f, 0, "prefix", NULL},
        {"gqa pfx proj", 0, LMP_T_C_ATTN, 0.0f, 2, "lora,prefix", NULL},
        {"llama pfx proj", 0, 0, 0.0f, 2, "prefix", llama_family},
        {"ia3 all", 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0.0f, 0, "ia3", NULL},
        {"ia3 q,v", 0, LMP_T_Q | LMP_T_V, 0.0f, 2, "ia3", NULL},
        {"dora all", 0, LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ, 0.1f, 0, "dora", NULL},
        {"dora k,v", 0, LMP_T_K | LMP_T_V, 0.0f, 2, "dora", NULL},
        {"llama ia3", 0, LMP_T_ALL_LINEAR, 0.0f, 2, "ia3", llama_family},
        {"llama dora", 0, LMP_T_ALL_LINEAR, 0.0f, 2, "dora", llama_family},
    };
    int n_modes = (int)(sizeof modes / sizeof modes[0]), expect_runs = 0;
    int layouts[][3] = {{1, 1, 0}, {2, 1, 0}, {1, 2, 0}, {2, 2, 0}, {4, 1, 0}, {1, 4, 0},
                        {2, 1, 1}, {2, 2, 1}, {4, 1, 1}};  // tp, dp, sequence parallel
    int ran_layouts = 0;
    for (int mo = 0; mo < n_modes; mo++) {
        result ref = {0};
        for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; li++) {
            int tp = layouts[li][0], np = tp * layouts[li][1], sp = layouts[li][2];
            int kvh = modes[mo].kv < 0 ? -modes[mo].kv : modes[mo].kv;
            if (kvh && kvh % tp) continue;  // tp must divide the kv heads
            expect_runs++;
            MPI_Comm sub;
            MPI_Comm_split(MPI_COMM_WORLD, rank < np ? 0 : MPI_UNDEFINED, rank, &sub);
            if (sub == MPI_COMM_NULL) continue;
            result r = {0};
            run(sub, tp, sp, modes[mo].full, modes[mo].targets, modes[mo].dropout, modes[mo].kv, modes[mo].method,
                modes[mo].family, strstr(modes[mo].what, "proj") != NULL, &r);
            MPI_Comm_free(&sub);
            if (rank == 0) {
                ran_layouts++;
                if (li == 0) { ref = r; continue; }
                char w[48];
                snprintf(w, sizeof w, "%s%s", modes[mo].what, sp ? " sp" : "");
                T_CHECK(fabs(r.loss - ref.loss) <= 1e-5 * fabs(ref.loss),
                        "%s tp=%d dp=%d: loss %.9g vs %.9g", w, tp, np / tp, r.loss, ref.loss);
                double dg = t_max_rel_diff(r.grads, ref.grads, ref.ngrad);
                T_CHECK(r.ngrad == ref.ngrad && dg <= 1e-5, "%s tp=%d dp=%d: gradients differ by %.3g", w, tp, np / tp, dg);
                double dl = t_max_rel_diff(r.logits, ref.logits, (size_t)BG * T * CFG.vocab_size);
                T_CHECK(dl <= 1e-5, "%s tp=%d dp=%d: logits after a step differ by %.3g", w, tp, np / tp, dl);
                double dp_ = t_max_rel_diff(r.params, ref.params, ref.ngrad);
                T_CHECK(dp_ <= 1e-5, "%s tp=%d dp=%d: trained tensors after a step differ by %.3g", w, tp, np / tp, dp_);
                printf("%-13s tp=%d dp=%d: loss %.3g, grads %.3g, logits %.3g (relative), trained tensors %.3g\n", w, tp,
                       np / tp, fabs(r.loss - ref.loss) / fabs(ref.loss), dg, dl, dp_);
            }
            if (rank != 0 || li != 0) { free(r.grads); free(r.params); free(r.logits); }
        }
        if (rank == 0) { free(ref.grads); free(ref.params); free(ref.logits); }
    }
    // Every rank took part in the layouts that include it: the 4-rank layouts need all 4.
    int took = 1, total = 0;
    MPI_Reduce(&took, &total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    int failed = t_failed, any = 0;
    MPI_Reduce(&failed, &any, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    int rc = 0;
    if (rank == 0) {
        T_CHECK(total == 4, "only %d of 4 ranks reported", total);
        T_CHECK(ran_layouts == expect_runs, "rank 0 ran %d of %d layout runs", ran_layouts, expect_runs);
        t_failed += any - failed;
        rc = t_finish();
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
