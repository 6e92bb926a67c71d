// attention.h: causal self-attention of a block: the q|k|v projection, attention on this
// rank's heads, the output projection.
// TP rule (Megatron): q, k, v column-parallel by heads — each rank holds n_head/tp query
// heads and n_kv_head/tp key/value heads (never replicated), so attention needs no
// communication; the output projection is row-parallel (its partial sums all-reduced, the
// bias added once after). tp must divide n_kv_head (lmp_arch_check).
// Llama family: q_proj, k_proj, v_proj are three column-parallel linears (weights (out, in)
// as in the file) that write their columns side by side into one q|k|v buffer of this
// rank's heads (the GEMM's row stride is the buffer's: no copy), so each PEFT target sees
// exactly its weight. Per-head q/k RMSNorm (Qwen3): weights (head_dim) replicated, their
// gradient a partial sum over the ranks' heads (LMP_GRAD_TP_SUM). Rotary embeddings act
// per head on q and k: no communication.
#ifndef LORAMPI_ATTENTION_H
#define LORAMPI_ATTENTION_H
#include "model/acts.h"
#include "model/arch.h"
#include "model/run.h"
#include "model/tp_linear.h"

typedef struct {
    int NH_l, KVH_l, hd, qkv_l;   // local query heads, kv heads, head size, q|k|v width
    lmp_linear qkv, out;          // qkv: GPT-2's fused projection (parts = 0)
    int parts;                    // 3: q, k, v are part[0..2] (Llama family)
    lmp_linear part[3];
    lmp_param *q_norm, *k_norm;   // (hd) per-head RMSNorm weights, or NULL
    float norm_eps;
    const float *rope_cos, *rope_sin;  // (n_ctx, hd/2) tables (the model's), or NULL
    float *raw;                   // (N,qkv_l) projections before the q/k norm (qk norm only)
    float *qk_rstd;               // (N,NH_l + KVH_l) the q/k norm's rstd (qk norm only)
    float *qkv_buf;               // (N,qkv_l) q|k|v of the local heads
    float *y;                     // (N,NH_l hd) attention output, input of the projection
    // No probabilities are kept: the attention kernels work in tiles of query rows in the
    // run's r->att_scratch, and the backward computes each tile's probabilities again.
    // Prefix tuning (LMP_HOOK_KV): the method instance or NULL, its p (0: none) and the
    // prefixes of the current step (kv_forward's).
    lmp_adapter *kv;
    int n_prefix;
    lmp_kv_prefix pf;
} lmp_attention;

// Registers the fused q|k|v weight (C, (NH + 2 KVH) hd) as 3 blocks split by heads, and the
// output projection (NH hd, C) split by input rows, named after layer `l`.
void lmp_attention_register(lmp_attention *at, const lmp_arch *a, lmp_registry *reg, int l,
                            const lmp_comm *c, int train);
void lmp_attention_acts(lmp_attention *at, lmp_acts *t, int B, int T);
// out (N,C) = attention(x), x (N,C) whole on every tp rank.
void lmp_attention_forward(lmp_attention *at, float *out, const float *x, lmp_run *r);
// Decoding (generation with a key/value cache): kc, vc (n_ctx, KVH_l hd) hold this rank's
// keys and values of positions < pos. Fills them from the last batch forward of T positions
// (B = 1), or runs one position: out (1,C) from x (1,C), appending its k, v at pos.
// With prefixes, they take positions 0 .. n_prefix - 1 and the T positions follow.
// sc is scratch of n_ctx floats.
void lmp_attention_fill_cache(const lmp_attention *at, float *kc, float *vc, int T);
void lmp_attention_decode(lmp_attention *at, float *out, const float *x, float *kc, float *vc,
                          int pos, float *sc, lmp_run *r);
// dx (N,C) = d(loss)/dx from dout (N,C), overwritten (reduced over tp).
// dqkv_raw: scratch (N,qkv_l) for the q/k norm's input gradient (unused without it).
void lmp_attention_backward(lmp_attention *at, float *dx, const float *dout, const float *x,
                            lmp_run *r);

#endif
