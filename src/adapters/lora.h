// lora.h: LoRA on a (tensor-parallel) linear layer: y += scale * dropout(x) . A^T . B^T,
// A (r, in) and B (out, r) as in PEFT. A and B are replicated on every rank; a rank uses
// the part that meets its shard of the layer:
//  - column-parallel layer (x whole, y split by columns): all of A, the rows of B that
//    produce this rank's output columns, as up to 3 segments (c_attn's q|k|v blocks);
//  - row-parallel layer (x split by features, partial y summed by the layer's all-reduce):
//    the columns [a0, a0+in_l) of A, all rows of B.
// Dropout masks come from the counter RNG keyed by (global row, global feature), so they do
// not depend on the layout.
#ifndef LORAMPI_LORA_H
#define LORAMPI_LORA_H
#include <stdint.h>
#include "adapters/adapter.h"
#include "core/registry.h"

#define LMP_LORA_MAX_SEG LMP_VIEW_MAX_SEG

// The method behind the adapter interface ([adapter] method = lora).
extern const lmp_adapter_method lmp_lora_method;

// ΔW's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski, 2023), as PEFT.
float lmp_lora_scaling(float alpha, int r, int rslora);

typedef struct {
    lmp_param *A, *B;     // registry entries, whole on every rank
    int in, out, r;       // global shape of the adapted matrix (slice) and rank
    float scale;          // alpha/r, or alpha/sqrt(r) with rsLoRA
    float dropout;
    int a0, in_l;         // columns of A this rank uses (the local input features)
    int nseg;             // B rows [brow, brow+cnt) -> local output columns [ycol, ycol+cnt)
    int brow[LMP_LORA_MAX_SEG], ycol[LMP_LORA_MAX_SEG], cnt[LMP_LORA_MAX_SEG];
    uint64_t stream;      // RNG stream of this module (from its name)
} lmp_lora;

// The LoRA of an instance of lmp_lora_method (DoRA builds on it).
const lmp_lora *lmp_lora_of(const lmp_adapter *a);

// A (r,in): Kaiming-uniform with a = sqrt(5) (PEFT's default: bound 1/sqrt(in)) or Gaussian
// N(0, 1/r) (PEFT's "gaussian"); B = 0. Values depend only on (seed, name, global index).
void lmp_lora_init_params(lmp_lora *l, int gaussian, uint64_t seed);

// The dropped-out input xd = x * mask / (1-p) (N, in_l) in xd_scratch, or x itself without
// dropout or outside training (DoRA applies W0 to it too).
const float *lmp_lora_dropped(const lmp_lora *l, const float *x, float *xd_scratch, int N,
                             const lmp_rng_ctx *rc);
// dx (N, in_l) += g * mask / (1-p), the same mask (training with dropout only).
void lmp_lora_dropout_add(const lmp_lora *l, float *dx, const float *g, int N, const lmp_rng_ctx *rc);

// y (N, ldy) += scale * xd . A_l^T . B_seg^T on this rank's columns; u (N, r) is saved for
// backward; xd_scratch (N, in_l) holds the dropped-out input when dropout > 0.
// x is (N, in_l).
void lmp_lora_forward(const lmp_lora *l, float *y, int ldy, const float *x, float *u,
                      float *xd_scratch, int N, const lmp_rng_ctx *rc);
// Accumulates dA, dB (partial sums over the tp group, see comm.c) and dx (N, in_l) += ...
// dy is (N, ldy); du_scratch (N, r), xd_scratch (N, in_l).
void lmp_lora_backward(const lmp_lora *l, float *dx, const float *dy, int ldy, const float *x,
                       const float *u, float *du_scratch, float *xd_scratch, int N,
                       const lmp_rng_ctx *rc);

#endif
