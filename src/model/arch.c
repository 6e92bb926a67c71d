// arch.c: what lorampi can build of a description, and how it may be split.
#include "model/arch.h"

#include <stdio.h>

// Combinations of components described in lmp_arch that have no forward/backward: refused
// by name rather than silently built as something else. The Llama family's components
// (RMSNorm, rotary embeddings, gated SiLU, q/k norm, untied head) come with its nn.Linear
// layout (hf_linear: separate q/k/v and gate/up); GPT-2's with its fused Conv1D layout.
static int unimplemented(const lmp_arch *a, char *err, int errlen) {
    const char *what = a->norm == LMP_NORM_LAYERNORM && !a->norm_bias ? "a LayerNorm without shift (norm_bias)"
                     : a->norm == LMP_NORM_RMSNORM && a->norm_bias ? "an RMSNorm with a bias (norm_bias)"
                     : a->pos == LMP_POS_ROPE && a->head_dim % 2 ? "rotary embeddings of an odd head_dim"
                     : a->qk_norm && !a->hf_linear ? "per-head q/k normalisation with a fused q|k|v (qk_norm)"
                     : a->mlp == LMP_MLP_GATED_SILU && !a->hf_linear ? "a gated SiLU MLP with a fused layout (mlp)"
                     : a->mlp == LMP_MLP_GELU && a->hf_linear ? "a GELU MLP with nn.Linear weights (mlp)"
                     : !a->tied_head && !a->head ? "an untied LM head without a tensor name (head)" : NULL;
    if (!what) return 0;
    snprintf(err, errlen, "model family %s uses %s, which this lorampi does not implement",
             a->family, what);
    return -1;
}

// tp values (up to n) that divide both n and the MLP width, listed into buf.
static const char *tp_choices(char *buf, int len, int n, int hidden) {
    int k = 0;
    buf[0] = 0;
    for (int t = 1; t <= n && k < len; t++)
        if (n % t == 0 && hidden % t == 0) k += snprintf(buf + k, len - k, "%s%d", k ? ", " : "", t);
    return buf;
}

int lmp_arch_check(const lmp_arch *a, int tp, char *err, int errlen) {
    if (unimplemented(a, err, errlen)) return -1;
    if (a->n_head < 1 || a->n_kv_head < 1 || a->n_head % a->n_kv_head) {
        snprintf(err, errlen, "n_head = %d is not a multiple of n_kv_head = %d", a->n_head, a->n_kv_head);
        return -1;
    }
    char ok[128];
    if (a->n_kv_head % tp) {
        snprintf(err, errlen, "[parallel] tp = %d does not divide the model's %s = %d: attention "
                 "heads are split across the tensor-parallel ranks (key/value heads are not "
                 "replicated); tp may be %s", tp,
                 a->n_kv_head == a->n_head ? "n_head" : "n_kv_head", a->n_kv_head,
                 tp_choices(ok, sizeof ok, a->n_kv_head, a->mlp_hidden));
        return -1;
    }
    if (a->mlp_hidden % tp) {
        snprintf(err, errlen, "[parallel] tp = %d does not divide the MLP width %d; tp may be %s", tp,
                 a->mlp_hidden, tp_choices(ok, sizeof ok, a->n_kv_head, a->mlp_hidden));
        return -1;
    }
    if (a->vocab_size < tp) {
        snprintf(err, errlen, "vocabulary of %d tokens cannot be split over tp = %d ranks", a->vocab_size, tp);
        return -1;
    }
    return 0;
}
