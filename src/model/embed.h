// embed.h: the token (and learned position) embedding and the LM head (tied, or untied
// as Llama's lm_head, split the same way) with its
// cross-entropy, both vocab-parallel.
// TP rule: rank p holds vocabulary rows [p V/tp, (p+1) V/tp) of wte (lmp_part; GPT-2's
// 50257 is odd, so shards differ by a row). Embedding: each rank adds the rows it owns (rank
// 0 also the positions) and one all-reduce over tp completes the lookup. Head: each rank
// forms the logits of its vocabulary slice, chunk by chunk, never (N,V); the row max and the
// sum of exponentials are all-reduced (MAX, then SUM), and the input gradient of the head is
// a partial sum over the slices (one all-reduce). wpe is replicated (tp-identical gradient).
#ifndef LORAMPI_EMBED_H
#define LORAMPI_EMBED_H
#include "model/acts.h"
#include "model/arch.h"
#include "model/run.h"

typedef struct {
    int C, V_l, v0, chunk;       // width, local vocabulary slice [v0, v0+V_l), rows per chunk
    lmp_param *wte, *wpe;        // wte local (V_l,C); wpe (n_ctx,C) or NULL
    lmp_param *head;             // LM head (V_l,C): wte when tied, else lm_head.weight
    float *encoded;              // (N,C) embedding output
    float *logits;               // (chunk,V_l) one chunk of logits, then of their gradients
    double *xstat;               // (4 chunk) row max, sum of exponentials, target logit
} lmp_embed;

void lmp_embed_register(lmp_embed *e, const lmp_arch *a, lmp_registry *reg, const lmp_comm *c,
                        int train);
void lmp_embed_acts(lmp_embed *e, lmp_acts *t, int B, int T);
void lmp_embed_forward(lmp_embed *e, const int *tokens, lmp_run *r);
// Accumulates dwte/dwpe from d(loss)/d(encoded) (N,C), whole on every tp rank.
void lmp_embed_backward(lmp_embed *e, const float *dout, const int *tokens, lmp_run *r);
// sum_n scale[n] * CE(n) of the final hidden states x (N,C) through the tied head; with
// backward, dx (N,C) = d(that)/dx (reduced over tp) and dwte accumulated.
double lmp_head_loss(lmp_embed *e, const float *x, float *dx, const int *targets,
                     const float *scale, int backward, lmp_run *r);
// Logits (N,V) of every position, gathered over tp (tests and generation).
void lmp_head_logits(lmp_embed *e, const float *x, float *logits, int V, lmp_run *r);

#endif
