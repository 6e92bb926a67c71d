// prefix.h: prefix tuning (Li & Liang, 2021; PEFT's PREFIX_TUNING), [adapter] method = prefix.
// Every block's attention gets p = [adapter] virtual_tokens extra key/value rows in front of
// the sequence's own, seen by every query (no causal mask among them) and never rotated
// (RoPE acts on the real tokens only); the real tokens sit at positions p .. p + T - 1 (the
// learned position embedding and the rotary angle alike), as transformers places a sequence
// after a cache of p entries, which is how PEFT feeds its prefixes.
// Tensors: one per block, "h.<l>.attn.prefix.prompt_embeddings" (p, 2 n_kv_head head_dim),
// row t = [keys of every KV head | values of every KV head]: exactly block l's columns
// [2 l kv, 2 (l + 1) kv) of PEFT's prompt_embeddings (p, n_layer 2 kv), kv = n_kv_head
// head_dim (io/peft_prefix.c maps the two). Whole on every rank; a rank reads its KV heads'
// columns, so its gradient is zero elsewhere and the tp group's sum is the full gradient
// (LMP_GRAD_TP_SUM).
// Record: r = p, in = n_kv_head, out = 2 n_kv_head head_dim (what PEFT's files need).
// Init: N(0, 1) per element, torch.nn.Embedding's and so PEFT's default.
#ifndef LORAMPI_PREFIX_H
#define LORAMPI_PREFIX_H
#include "adapters/adapter.h"

extern const lmp_adapter_method lmp_prefix_method;

typedef struct {
    lmp_adapter base;
    lmp_param *kv;        // (p, 2 n_kv_head hd), whole
    lmp_kv_view view;
    int p;
} lmp_prefix;

#endif
