// tp_linear.h: Megatron-style linear layers with adapter hooks.
// TP rule. Column-parallel: x whole (N,in), y = this rank's output columns (N,out_l) (its
// columns of every block of a fused q|k|v weight); forward needs no communication, backward
// all-reduces dx over the tp group (Megatron's f). Row-parallel: x is this rank's input
// features (N,in_l), partial products are all-reduced in the forward (Megatron's g), the
// bias added after; backward needs no communication. Weights are stored (in, out) as in
// GPT-2's Conv1D, or (out, in) as HF's nn.Linear (Llama family: w_oi; loaded as the file has
// them, never transposed: the GEMMs transpose instead, and the column split is on dim 0);
// the bias is optional.
#ifndef LORAMPI_TP_LINEAR_H
#define LORAMPI_TP_LINEAR_H
#include "adapters/adapter.h"
#include "core/comm.h"
#include "model/run.h"

#define LMP_LINEAR_MAX_ADAPTERS 4

typedef struct {
    lmp_param *w, *b;       // w local (in_l, out_l); b local (out_l) or whole (row-parallel); b may be NULL
    int in_l, out_l;
    int row_parallel;
    int w_oi;               // weight stored (out, in) (nn.Linear), else (in, out) (Conv1D)
    int ldy;                // row stride of y and dy: out_l, or wider when this layer writes
                            // its columns into a buffer shared with other parts (q|k|v)
    int n_ad;
    lmp_adapter *ad[LMP_LINEAR_MAX_ADAPTERS];  // hooked on this layer, in order
} lmp_linear;

// Registers name.weight (in, out) and, with bias, name.bias (out), split by the TP rule:
// column-parallel, the out dim as `groups` blocks of widths blocks[] (NULL: one block), each
// split evenly over the tp ranks (lmp_part; the bias likewise); row-parallel, the in dim
// split evenly and the bias whole (added after the all-reduce: a tp-identical gradient).
void lmp_linear_register(lmp_linear *L, lmp_registry *reg, const char *name, int64_t in,
                         int64_t out, int groups, const int64_t *blocks, int row_parallel,
                         int bias, int train, const lmp_comm *c);
// The same for a weight stored (out, in) (HF nn.Linear): name.weight (out, in) split on
// dim 0 (column-parallel) or dim 1 (row-parallel), one block; y rows ldy apart (0: out_l).
void lmp_linear_register_oi(lmp_linear *L, lmp_registry *reg, const char *name, int64_t in,
                            int64_t out, int row_parallel, int bias, int ldy, int train,
                            const lmp_comm *c);
// Sets the local sizes from the registered weight w (split along dim 1: column-parallel,
// dim 0: row-parallel, none: whole).
void lmp_linear_init(lmp_linear *L, lmp_param *w, lmp_param *b, int row_parallel);
// How an adapter on output block `slice` of L (-1: the whole output) meets this rank's shard.
lmp_linear_view lmp_linear_view_of(const lmp_linear *L, int slice);
// Hooks an adapter instance onto L (its forward/backward run with the layer's).
void lmp_linear_attach(lmp_linear *L, lmp_adapter *a);

// The tp group's reduction of a row-parallel output or a column-parallel input gradient
// buf (N,width): an all-reduce, or under sequence parallelism (r->sp) a reduce-scatter that
// leaves this rank's N/tp rows of the sum first in buf. Returns the rows held (N or N/tp).
int lmp_tp_reduce(const lmp_run *r, float *buf, int N, int width);
// y (N,out_l) = x . w (+ b) (+ adapters), reduced over tp for row-parallel layers
// (lmp_tp_reduce: under sequence parallelism y's first N/tp rows are this rank's). r gives
// the grid, the RNG and the adapters' shared scratch (N x the largest scratch_per_row).
void lmp_linear_forward(lmp_linear *L, float *y, const float *x, int N, const lmp_run *r);
// dx (N,in_l) = dy . w^T (+ adapters), OVERWRITTEN (then reduced over tp for column-parallel
// layers); accumulates dw, db and the adapters' gradients where they exist.
void lmp_linear_backward(lmp_linear *L, float *dx, const float *dy, const float *x, int N,
                         const lmp_run *r);
// The same without zeroing dx first and without the column-parallel reduction: the parts
// of one input (q, k, v; gate, up) accumulate into one dx, reduced once by the caller.
void lmp_linear_backward_part(lmp_linear *L, float *dx, const float *dy, const float *x, int N,
                              const lmp_run *r);

#endif
