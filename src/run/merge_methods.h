// merge_methods.h: the merged forms of IA³ and DoRA for merged.c (LoRA's is there).
//  - DoRA: W' = (m / ||W0 + s B A||_row) ⊙ (W0 + s B A) per output row (PEFT's merge), the
//    bias unchanged; the norms are computed once by the model's DoRA instances (a collective
//    over tp: row-parallel layers hold part of each row), each element as
//    (W0 + s Σ_k B[o][k] A[k][i]) · g[o], the sum in a fixed order (layout-independent).
//  - IA³: a scaled output (W0 x + b) ⊙ l scales the weight's output o and the bias by l[o];
//    a feed-forward input W0 (x ⊙ l) scales the weight's input i by l[i], the bias unchanged.
// Both weight layouts: GPT-2's Conv1D (in, out) and the Llama family's (out, in).
#ifndef LORAMPI_MERGE_METHODS_H
#define LORAMPI_MERGE_METHODS_H
#include "model/model.h"

// Per record of m's registry: DoRA's row norms (rec->out floats), NULL for other methods.
// Collective over m's tp group. Free with lmp_merge_norms_free.
float **lmp_merge_norms(lmp_model *m);
void lmp_merge_norms_free(const lmp_model *m, float **norms);
// Applies record rec (ia3 or dora; norm: its norms for dora) to buf, the local slice of p,
// when p is the weight or (ia3) the bias it adapts. Returns 1 when rec is one of these
// methods (applied or not to p), 0 otherwise.
int lmp_merge_method(const lmp_registry *r, const lmp_adapter_rec *rec, const lmp_param *p, float *buf,
                     const float *norm);

#endif
