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
//
// Projection ([adapter] prefix_projection = true; PEFT's PrefixEncoder, Li & Liang 2021
// §4.3): the prefixes are the output of one MLP shared by every block,
//   P (p, L 2 D) = tanh(E W1ᵀ + b1) W2ᵀ + b2,
// E (p, D), W1 (H, D), b1 (H), W2 (L 2 D, H), b2 (L 2 D); D = the token dim n_kv_head hd,
// H = [adapter] encoder_hidden_size (0: D, PEFT's default). Block l's prefixes are P's columns
// [2 l D, 2 (l + 1) D), the layout above. The MLP is one instance (lmp_prefix_encoder, from
// add_kv_shared) with record "prefix_encoder" (method "prefix_encoder": r = H, in = D,
// out = L 2 D) and tensors "prefix_encoder.embedding", ".transform.0.weight", ".transform.0.bias",
// ".transform.2.weight", ".transform.2.bias" (torch's (out, in) layout; PEFT's names less its
// "prompt_encoder.default."), whole on every rank, LMP_GRAD_TP_SUM: a tp rank's prefix
// gradient covers its KV heads' columns only, and the MLP's backward is linear in it, so the
// tp sum of the ranks' partial gradients is the full one. Init: E N(0, 1) (nn.Embedding),
// weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear).
// The blocks' prompt_embeddings stay registered but frozen (so not in checkpoints, which hold
// the MLP): the MLP's output, written by block 0's kv_forward (the first of a pass) and by
// refresh. Their gradients go to the MLP's buffer dP (L, p, 2 D); block 0's kv_backward (the
// last of a pass) takes dP through the MLP's backward, in a fixed order, and zeroes it.
#ifndef LORAMPI_PREFIX_H
#define LORAMPI_PREFIX_H
#include "adapters/adapter.h"

extern const lmp_adapter_method lmp_prefix_method;

extern const lmp_adapter_method lmp_prefix_encoder_method;

typedef struct {
    lmp_adapter base;
    lmp_param *E, *W1, *b1, *W2, *b2;   // shapes above
    int p, D, H, L;
    float *h;             // (p, H) tanh(E W1ᵀ + b1) of the last forward
    float *dh;            // (p, H) backward scratch
    float *dP;            // (L, p, 2 D) the blocks' prefix gradients, summed by their kernels
    lmp_param **blk;      // [L] the blocks' prompt_embeddings (NULL until their add_kv)
} lmp_prefix_encoder;

typedef struct {
    lmp_adapter base;
    lmp_param *kv;        // (p, 2 n_kv_head hd), whole
    lmp_kv_view view;
    int p, layer;
    lmp_prefix_encoder *enc;  // projection: the MLP that writes kv; NULL: kv is trained
} lmp_prefix;

#endif
