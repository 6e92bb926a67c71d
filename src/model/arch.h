// arch.h: a decoder described by data. A model family (model/gpt2.c; Llama, Mistral, Qwen
// next) turns its configuration into an lmp_arch: sizes, the kind of each component and
// the names of its tensors; model.c builds any such description. Components and their
// tensor-parallel rules: norm.c, attention.c, mlp.c, embed.c; linear layers: tp_linear.c.
#ifndef LORAMPI_ARCH_H
#define LORAMPI_ARCH_H
#include "core/registry.h"
#include "core/targets.h"
#include "model/kernels.h"

typedef enum { LMP_NORM_LAYERNORM = 0, LMP_NORM_RMSNORM = 1 } lmp_norm_kind;
typedef enum { LMP_POS_LEARNED = 0, LMP_POS_ROPE = 1 } lmp_pos_kind;
typedef enum { LMP_MLP_GELU = 0, LMP_MLP_GATED_SILU = 1 } lmp_mlp_kind;

// The linear layers of a block, where LMP_HOOK_LINEAR adapters sit. GPT-2 has the first
// four (fused q|k|v); the Llama family has Q, K, V, ATTN_OUT, MLP_GATE, MLP_IN (up_proj) and
// MLP_OUT (down_proj).
typedef enum {
    LMP_SITE_QKV = 0, LMP_SITE_ATTN_OUT, LMP_SITE_MLP_IN, LMP_SITE_MLP_OUT,
    LMP_SITE_Q, LMP_SITE_K, LMP_SITE_V, LMP_SITE_MLP_GATE, LMP_N_SITES
} lmp_site;

// An [adapter] target: its bit and name, the linear it adapts and which output block (q, k,
// v of a fused projection; -1 the whole layer).
typedef struct {
    int bit;
    const char *name;
    lmp_site site;
    int slice;
} lmp_target_site;

typedef struct {
    const char *family;                      // "gpt2"
    int n_layer, n_embd, vocab_size, n_ctx;  // n_ctx: longest sequence (learned positions)
    lmp_norm_kind norm;
    float norm_eps;
    int norm_bias;                           // LayerNorm's shift
    int n_head, n_kv_head, head_dim;         // n_kv_head < n_head: grouped-query attention
    int qkv_bias, attn_out_bias;
    lmp_pos_kind pos;
    lmp_rope_params rope;                    // rotary embeddings (pos = LMP_POS_ROPE)
    int qk_norm;                             // per-head RMSNorm of q and k (Qwen3)
    int hf_linear;                           // linears are nn.Linear (out, in), q/k/v and
                                             // gate/up separate (Llama family)
    lmp_mlp_kind mlp;
    int mlp_hidden, mlp_bias;
    int tied_head;                           // LM head = token embedding (GPT-2)
    // Tensor names: "%d" is the block index; linear sites get ".weight" / ".bias".
    const char *wte, *wpe, *lnf, *ln1, *ln2, *site[LMP_N_SITES];
    const char *head;                        // untied LM head's weight ("lm_head.weight")
    const char *q_norm, *k_norm;             // per-head norm prefixes (qk_norm)
    const lmp_target_site *targets;          // the [adapter] targets this family has
    int n_targets;
} lmp_arch;

// Checks that lorampi implements every component of a (and that its sizes agree) and that
// tp ranks can split it; returns 0, or -1 with a message naming the field in err.
int lmp_arch_check(const lmp_arch *a, int tp, char *err, int errlen);

#endif
