// plan.c: memory and communication of a layout, from the model's registration alone
// (nothing is allocated, so it runs for models far larger than the machine).
#include "run/plan.h"
#include "run/session.h"
#include "core/comm.h"
#include "core/util.h"
#include "model/kernels.h"

#include <stdio.h>
#include <string.h>

// Each block's trainable bytes (the rest at index n_block) into bytes[], keeping the largest
// seen: a shard's size may differ over the tp ranks, and the buckets are split by the largest.
// Returns n_block as lmp_registry_alloc counts it (plan allocates nothing).
static int grad_block_bytes(const lmp_registry *reg, double *bytes) {
    int L = lmp_registry_blocks(reg);
    double mine[LMP_MAX_LAYERS + 1] = {0};
    for (int i = 0; i < reg->n; i++)
        if (reg->p[i].trainable) mine[reg->p[i].block < 0 ? L : reg->p[i].block] += 4.0 * reg->p[i].numel;
    for (int l = 0; l <= L; l++)
        if (mine[l] > bytes[l]) bytes[l] = mine[l];
    return L;
}

void lmp_plan_compute(const lmp_config *cfg, int ranks, lmp_plan_t *p) {
    int tp = cfg->parallel.tp;
    if (ranks < 1 || tp < 1 || ranks % tp)
        lmp_die_all("[parallel] tp = %d does not divide the number of ranks (%d)", tp, ranks);
    memset(p, 0, sizeof *p);
    p->tp = tp;
    p->dp = ranks / tp;
    if (cfg->train.batch_size % p->dp)
        lmp_die_all("[train] batch_size = %d (the global batch) is not divisible by the %d "
                    "data-parallel replicas", cfg->train.batch_size, p->dp);
    p->B = cfg->train.batch_size / p->dp;
    int T = cfg->train.seq_len;
    lmp_model_config m_cfg;
    lmp_model_opts opts;
    unsigned char layer_on[LMP_MAX_LAYERS];
    lmp_session_resolve(cfg, &m_cfg, &opts, layer_on);
    double block_bytes[LMP_MAX_LAYERS + 1] = {0};  // gradient bytes per block, largest over tp
    // Every tp rank's shard (the vocab split can be uneven): report the largest.
    for (int r = 0; r < tp; r++) {
        lmp_comm c = {.tp_size = tp, .tp_rank = r, .size = ranks};
        lmp_model m;
        lmp_model_register(&m, &m_cfg, &opts, &c);
        size_t nf = 0, nh = 0, nt = 0, sum_kind[3] = {0, 0, 0};
        for (int i = 0; i < m.reg.n; i++) {
            if (m.reg.p[i].trainable) { nt += m.reg.p[i].numel; sum_kind[m.reg.p[i].grad_kind] += m.reg.p[i].numel; }
            else if (m.reg.p[i].bf16) nh += m.reg.p[i].numel;  // [model] dtype = bf16: 2 bytes
            else nf += m.reg.p[i].numel;
        }
        double acts_by[3];
        for (int k = 0; k < 3; k++) {  // the model's table under each setting
            m.opts.recompute = k;
            acts_by[k] = 4.0 * lmp_model_act_floats(&m, p->B, T);
        }
        double acts = acts_by[cfg->train.recompute];
        double total = 4.0 * nf + 2.0 * nh + 4.0 * nt + 12.0 * nt + acts + LMP_RUNTIME_BYTES;
        if (total > p->total) {
            memcpy(p->acts_by, acts_by, sizeof acts_by);
            p->frozen = 4.0 * nf + 2.0 * nh;
            p->frozen_bf16 = 2.0 * nh;
            p->trainable = 4.0 * nt;
            p->optim = 12.0 * nt;  // grad, m, v
            p->acts = acts;
            p->att_tiles = m_cfg.n_layer ? 4.0 * lmp_sdpa_scratch_floats(m.n_prefix, T) : 0;
            p->threads = lmp_sdpa_threads();
            p->runtime = LMP_RUNTIME_BYTES;
            p->total = total;
            p->grad_world = ranks > 1 ? 4.0 * (sum_kind[0] + sum_kind[1]) : 0;
            p->grad_dp = p->dp > 1 ? 4.0 * sum_kind[2] : 0;
        }
        p->n_block = grad_block_bytes(&m.reg, block_bytes);
        int64_t n_train;
        lmp_registry_counts(&m.reg, &n_train, NULL);
        p->ckpt = 12.0 * (double)n_train;
        lmp_model_free(&m);
    }
    if (ranks > 1 && cfg->parallel.bucket_mb > 0) {  // as lmp_buckets_plan splits them
        p->n_bucket = lmp_bucket_split(block_bytes, p->n_block, cfg->parallel.bucket_mb, p->bucket_low,
                                       p->bucket_bytes);
    }
    if (tp > 1) {
        // Per micro-step: embedding + 2 row-parallel outputs per layer + loss statistics
        // (3 doubles a row) forward; 2 column-parallel input grads per layer + ln_f backward.
        double N = (double)p->B * T, C = m_cfg.n_embd, L = m_cfg.n_layer;
        int accum = cfg->train.grad_accum;
        p->tp_fwd = accum * (4.0 * N * C * (1 + 2 * L) + 24.0 * N);
        // recompute = block runs the forward of every block but the last again
        if (cfg->train.recompute == LMP_RECOMPUTE_BLOCK) p->tp_fwd += accum * 4.0 * N * C * 2 * (L - 1);
        p->tp_bwd = accum * 4.0 * N * C * (2 * L + 1);
        // Sequence parallelism gathers each sublayer's output gradient and its input again in
        // the backward, and the stream's gradient once for the embedding.
        p->sp = cfg->parallel.sequence_parallel;
        if (p->sp) p->sp_gather = accum * 4.0 * N * C * (4 * L + 1);
    }
}

static void row(const char *what, double bytes) {
    lmp_log("  %-42s %12.1f MB\n", what, bytes / 1e6);
}

// The gradient buckets in launch order: each starts as the backward completes its lowest block.
static void print_buckets(const lmp_config *cfg, const lmp_plan_t *p) {
    if (!p->n_bucket) {
        lmp_log("gradient buckets: none (%s): one all-reduce after the backward\n",
                p->tp * p->dp == 1 ? "one rank" : "[parallel] bucket_mb = 0");
        return;
    }
    lmp_log("gradient buckets ([parallel] bucket_mb = %g), in launch order:\n", (double)cfg->parallel.bucket_mb);
    char what[64];
    for (int j = 0; j < p->n_bucket; j++) {
        int lo = p->bucket_low[j], hi = j ? p->bucket_low[j - 1] - 1 : p->n_block - 1;
        if (lo < 0) snprintf(what, sizeof what, "rest (embeddings, final norm, head), after");
        else if (hi == lo) snprintf(what, sizeof what, "block %d", lo);
        else snprintf(what, sizeof what, "blocks %d-%d", hi, lo);
        row(what, p->bucket_bytes[j]);
    }
}

void lmp_plan_print(const lmp_config *cfg, const lmp_plan_t *p) {
    lmp_log("plan: %d ranks = tp %d x dp %d%s, %d sequences x %d tokens per replica per micro-step\n",
            p->tp * p->dp, p->tp, p->dp, p->sp ? " (sequence parallel)" : "", p->B, cfg->train.seq_len);
    lmp_log("memory per rank (largest shard):\n");
    row("frozen weights (1/tp of the base model)", p->frozen);
    if (p->frozen_bf16 > 0) row("  of which bf16 (linear, embedding, head)", p->frozen_bf16);
    row("trainable parameters", p->trainable);
    row("gradients + AdamW m and v", p->optim);
    row("activations and scratch", p->acts);
    char what[64];  // the tiles are sized per OpenMP thread of this process (OMP_NUM_THREADS)
    snprintf(what, sizeof what, "  of which attention tiles (%d thread%s)", p->threads, p->threads > 1 ? "s" : "");
    row(what, p->att_tiles);
    // attn keeps what none keeps: the tiled attention holds no probabilities to recompute.
    for (int k = 0; k < 3; k++)  // finer than row(): the settings may differ by little
        lmp_log("    with [train] recompute = %-13s %14.3f MB%s%s\n", lmp_recompute_name((lmp_recompute)k),
                p->acts_by[k] / 1e6, k == LMP_RECOMPUTE_ATTN ? "  (= none: no probabilities are kept)" : "",
                k == (int)cfg->train.recompute ? "  (this config)" : "");
    row("runtime (MPI, OpenBLAS, code; measured)", p->runtime);
    row("total", p->total);
    lmp_log("all-reduce payload per optimizer step:\n");
    row("tp group, forward (activations)", p->tp_fwd);
    row("tp group, backward (input gradients)", p->tp_bwd);
    row("all ranks, adapter/replicated gradients", p->grad_world);
    row("dp group, sharded gradients", p->grad_dp);
    if (p->sp) {
        lmp_log("  (sequence parallel: the tp all-reduces above are reduce-scatters, in the forward each\n"
                "   followed by an all-gather of the next norm's output: about half an all-reduce each\n"
                "   on the wire; the backward adds all-gathers of each sublayer's output gradient and input:)\n");
        row("tp group, backward all-gathers", p->sp_gather);
    }
    lmp_log("(a ring all-reduce sends and receives about 2(n-1)/n times its payload per rank)\n");
    print_buckets(cfg, p);
    lmp_log("checkpoint file (trainable tensors + AdamW m, v):\n");
    row("size of one ckpt-<step>.h5", p->ckpt);
}
