// norm.h: the normalisation layers of a block: LayerNorm with shift (GPT-2), RMSNorm
// without (Llama family; mean unused).
// TP rule: replicated. Its input is whole on every tp rank, so its weight gradient is the
// same on every tp rank (LMP_GRAD_TP_SAME, comm.c); under sequence parallelism (comm.h) its
// input is this rank's rows and the gradient a partial sum over tp (LMP_GRAD_TP_SUM).
#ifndef LORAMPI_NORM_H
#define LORAMPI_NORM_H
#include "model/acts.h"
#include "model/arch.h"

typedef struct {
    lmp_norm_kind kind;
    float eps;
    int C;
    lmp_param *w, *b;
    float *out, *mean, *rstd;   // (N,C) (N) (N)
} lmp_norm;

// Registers prefix.weight (and prefix.bias) of width a->n_embd.
void lmp_norm_register(lmp_norm *n, const lmp_arch *a, lmp_registry *reg, const char *prefix,
                       int train, lmp_grad_kind kind);
void lmp_norm_acts(lmp_norm *n, lmp_acts *t, size_t N);
// out = norm(x), x (N,C).
void lmp_norm_forward(lmp_norm *n, const float *x, int N);
// The same into out (N,C) instead of n->out (the statistics still in n->mean, n->rstd).
void lmp_norm_forward_to(lmp_norm *n, float *out, const float *x, int N);
// dx (N,C) += ..., and the weight gradients where they exist.
void lmp_norm_backward(lmp_norm *n, float *dx, const float *dout, const float *x, int N);

#endif
