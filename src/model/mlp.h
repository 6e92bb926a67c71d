// mlp.h: a block's MLP, h = act(x W_in + b) W_out + b (GPT-2: GELU, width 4C), or the
// Llama family's gated SiLU: down(silu(gate(x)) * up(x)).
// TP rule (Megatron): the input projection column-parallel (each rank its n/tp hidden
// columns, no communication), the output projection row-parallel (partial sums all-reduced,
// the bias added once after); tp must divide the hidden width. Gated: gate_proj and up_proj
// are both column-parallel (each rank the same n/tp hidden columns of both; weights (out, in)
// as in the file), writing side by side into one (N, 2 H_l) row (gate | up); down_proj is
// row-parallel.
#ifndef LORAMPI_MLP_H
#define LORAMPI_MLP_H
#include "model/acts.h"
#include "model/arch.h"
#include "model/run.h"
#include "model/tp_linear.h"

typedef struct {
    lmp_mlp_kind kind;
    int H_l;                  // local hidden width
    lmp_linear in, out;       // gated: in = up_proj, out = down_proj
    lmp_linear gate;          // gated only
    int h_w;                  // width of h: H_l, or 2 H_l (gate | up)
    float *h, *h_act;         // (N,h_w) before, (N,H_l) after the activation
} lmp_mlp;

void lmp_mlp_register(lmp_mlp *m, const lmp_arch *a, lmp_registry *reg, int l, const lmp_comm *c,
                      int train);
void lmp_mlp_acts(lmp_mlp *m, lmp_acts *t, size_t N);
// out (N,C) = mlp(x), x (N,C) whole on every tp rank.
void lmp_mlp_forward(lmp_mlp *m, float *out, const float *x, lmp_run *r);
// dx (N,C) overwritten (reduced over tp).
void lmp_mlp_backward(lmp_mlp *m, float *dx, const float *dout, const float *x, lmp_run *r);

#endif
