// tp_linear.c: column- and row-parallel linear layers (Megatron's f/g collectives).
#include "model/tp_linear.h"
#include "model/kernels.h"

#include <string.h>

void lmp_linear_forward(lmp_linear *L, float *y, const float *x, int N, lmp_comm *c,
                        const lmp_rng_ctx *rc, float *xd_scratch) {
    // Row-parallel: the bias is added once, after the partial products are summed.
    lmp_matmul_forward(y, x, L->w->data, L->row_parallel ? NULL : L->b->data, N, L->in_l,
                       L->out_l, 0);
    // LoRA's partial products (row-parallel: u_p from this rank's features) are linear in
    // u, so they ride on the same all-reduce as the base product.
    for (int i = 0; i < L->nlora; i++)
        lmp_lora_forward(L->lora[i], y, L->out_l, x, L->u[i], xd_scratch, N, rc);
    if (L->row_parallel) {
        lmp_allreduce_f(c, y, (size_t)N * L->out_l, c->tp);
        float *b = L->b->data;
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int j = 0; j < L->out_l; j++) y[(size_t)n * L->out_l + j] += b[j];
    }
}

void lmp_linear_backward(lmp_linear *L, float *dx, const float *dy, const float *x, int N,
                         lmp_comm *c, const lmp_rng_ctx *rc, float *du_scratch,
                         float *xd_scratch) {
    memset(dx, 0, (size_t)N * L->in_l * sizeof(float));
    lmp_matmul_backward(dx, L->w->grad, L->b->grad, dy, x, L->w->data, N, L->in_l, L->out_l);
    for (int i = 0; i < L->nlora; i++)
        lmp_lora_backward(L->lora[i], dx, dy, L->out_l, x, L->u[i], du_scratch, xd_scratch, N,
                          rc);
    if (!L->row_parallel) lmp_allreduce_f(c, dx, (size_t)N * L->in_l, c->tp);
}
