// wgemm.h: GEMMs with a frozen weight of either storage: fp32 through cblas_sgemm, bf16
// ([model] dtype = bf16) through oneDNN with the fp32 activations rounded to bf16 in one pass
// and fp32 accumulation. The linear layers and the adapters that read W0 (IA3 on a
// feed-forward input, DoRA) share it, so none of them needs an fp32 copy of a bf16 shard.
#ifndef LORAMPI_WGEMM_H
#define LORAMPI_WGEMM_H
#include "core/registry.h"

// W is w's local shard of a linear layer with in_l inputs and out_l outputs, stored
// (in_l, out_l) (Conv1D) or, w_oi, (out_l, in_l) (nn.Linear).
// back = 0: y (N, out_l; rows ldy apart) = beta y + x (N, in_l; rows ldx apart) . W
// back = 1: y (N, in_l;  rows ldy apart) = beta y + x (N, out_l; rows ldx apart) . W^T
// beta is 0 or 1 for a bf16 w (oneDNN's sum post-op), any value for fp32.
void lmp_wgemm(const lmp_param *w, int w_oi, int back, float *y, int ldy, const float *x, int ldx,
               int N, float beta);
// Frees the bf16 activation workspace (grown to the largest GEMM input seen).
void lmp_wgemm_release(void);

#endif
