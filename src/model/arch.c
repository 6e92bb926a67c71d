// arch.c: what lorampi can build of a description, and how it may be split.
#include "model/arch.h"

#include <stdio.h>

// Components described in lmp_arch that have no forward/backward yet: refused by name
// rather than silently built as something else.
static int unimplemented(const lmp_arch *a, char *err, int errlen) {
    const char *what = a->norm != LMP_NORM_LAYERNORM ? "RMSNorm (norm)"
                     : a->pos != LMP_POS_LEARNED ? "rotary position embeddings (pos)"
                     : a->qk_norm ? "per-head q/k normalisation (qk_norm)"
                     : a->mlp != LMP_MLP_GELU ? "the gated SiLU MLP (mlp)"
                     : !a->tied_head ? "an untied LM head (tied_head)"
                     : !a->norm_bias ? "a LayerNorm without shift (norm_bias)" : NULL;
    if (!what) return 0;
    snprintf(err, errlen, "model family %s uses %s, which this lorampi does not implement",
             a->family, what);
    return -1;
}

int lmp_arch_check(const lmp_arch *a, int tp, char *err, int errlen) {
    if (unimplemented(a, err, errlen)) return -1;
    if (a->n_head < 1 || a->n_kv_head < 1 || a->n_head % a->n_kv_head) {
        snprintf(err, errlen, "n_head = %d is not a multiple of n_kv_head = %d", a->n_head, a->n_kv_head);
        return -1;
    }
    if (a->n_kv_head % tp) {
        snprintf(err, errlen, "[parallel] tp = %d does not divide the model's %s = %d: attention "
                 "heads are split across the tensor-parallel ranks", tp,
                 a->n_kv_head == a->n_head ? "n_head" : "n_kv_head", a->n_kv_head);
        return -1;
    }
    if (a->mlp_hidden % tp) {
        snprintf(err, errlen, "[parallel] tp = %d does not divide the MLP width %d", tp, a->mlp_hidden);
        return -1;
    }
    if (a->vocab_size < tp) {
        snprintf(err, errlen, "vocabulary of %d tokens cannot be split over tp = %d ranks", a->vocab_size, tp);
        return -1;
    }
    return 0;
}
