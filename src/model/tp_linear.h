// tp_linear.h: Megatron-style linear layers with LoRA hooks.
// Column-parallel: x whole (N,in), y = this rank's output columns (N,out_l); forward needs
// no communication, backward all-reduces dx over the tp group.
// Row-parallel: x is this rank's input features (N,in_l), partial products are
// all-reduced in the forward, the bias added after; backward needs no communication.
#ifndef LORAMPI_TP_LINEAR_H
#define LORAMPI_TP_LINEAR_H
#include "core/comm.h"
#include "adapters/lora.h"

typedef struct {
    lmp_param *w, *b;       // w local (in_l, out_l); b local (out_l) or whole (row-parallel)
    int in_l, out_l;
    int row_parallel;
    int nlora;
    lmp_lora *lora[LMP_LORA_MAX_SEG];
    float *u[LMP_LORA_MAX_SEG];  // saved (N, r) per adapter, in the activation memory
} lmp_linear;

// y (N,out_l) = x . w (+ b) (+ LoRA), reduced over tp for row-parallel layers.
// xd_scratch (N, in_l) is used by LoRA dropout.
void lmp_linear_forward(lmp_linear *L, float *y, const float *x, int N, lmp_comm *c,
                        const lmp_rng_ctx *rc, float *xd_scratch);
// dx (N,in_l) = dy . w^T (+ LoRA), OVERWRITTEN (then reduced over tp for column-parallel
// layers); accumulates dw, db, dA, dB where they exist.
void lmp_linear_backward(lmp_linear *L, float *dx, const float *dy, const float *x, int N,
                         lmp_comm *c, const lmp_rng_ctx *rc, float *du_scratch,
                         float *xd_scratch);

#endif
