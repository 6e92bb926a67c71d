// kernels.h: the model's building blocks as forward/backward pairs over flat fp32 buffers.
// N = B*T rows. Backward functions ACCUMULATE (+=) into every gradient they are given, so
// callers zero gradient buffers once per step; a NULL gradient pointer skips that gradient
// (frozen weights get none). Matrix products go through cblas_sgemm.
#ifndef LORAMPI_KERNELS_H
#define LORAMPI_KERNELS_H
#include <stddef.h>
#include <stdint.h>

// out = LN(inp) * w + b over the last dim; mean and rstd (N) are saved for backward.
// inp, out are (N,C); w, b are (C).
void lmp_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int N, int C, float eps);
void lmp_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int N, int C);

// out (N,OC) = inp (N,IC) . w (IC,OC) + bias (OC); bias may be NULL. `accumulate` adds to
// out instead of overwriting it.
void lmp_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                        int N, int IC, int OC, int accumulate);
// dinp (N,IC) += dout . w^T;  dw (IC,OC) += inp^T . dout;  dbias (OC) += sum_n dout.
void lmp_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, int N, int IC, int OC);

// GELU, tanh approximation (GPT-2's gelu_new). (n) elements.
void lmp_gelu_forward(float *out, const float *inp, size_t n);
void lmp_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

// x (n) <- softmax(x): float exponentials of differences from the max, summed in double.
// The attention kernels and cached decoding share it, so both give the same probabilities.
void lmp_softmax_inplace(float *x, int n);

// y (N,OC) += bias (OC) on every row.
void lmp_add_bias(float *y, const float *bias, int N, int OC);

// Causal self-attention on NH query heads and KVH key/value heads of size hs (query head h
// uses kv head h / (NH/KVH): grouped-query attention; NH = KVH is multi-head attention),
// kernels_attn.c. q, k, v are (B,T,*) with row stride ld, head h at column h*hs (GPT-2's
// fused q|k|v buffer: k = q + NH*hs, v = k + KVH*hs, ld = (NH + 2 KVH) hs). out is
// (B,T,NH*hs). Exact attention in tiles of 64 query rows: nothing of (T,T) is kept, the
// backward computes each tile's probabilities again (the same bits). scratch holds
// lmp_sdpa_scratch_floats(P, T) floats (two tiles per OpenMP thread; the kernels run on at
// most omp_get_max_threads() threads as it was when the scratch was sized); its contents
// are never read across calls.
size_t lmp_sdpa_scratch_floats(int P, int T);
// The thread count lmp_sdpa_scratch_floats sizes for: omp_get_max_threads() now.
int lmp_sdpa_threads(void);
void lmp_sdpa_forward(float *out, float *scratch, const float *q, const float *k, const float *v,
                      int ld, int B, int T, int NH, int KVH, int hs);
// dq, dk, dv (same layout as q, k, v) += ...
void lmp_sdpa_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                       const float *q, const float *k, const float *v, int ld, int B, int T,
                       int NH, int KVH, int hs);

// The same with P prefix keys/values in front of every sequence (prefix tuning): pk, pv
// (P, *) with row stride ldp, kv head h at column h*hs, shared by the batch; every query sees
// all P of them, then its causal window (P = 0: the plain kernel). Backward: dpk, dpv (layout
// of pk, pv; NULL: skipped) accumulate the sum over the batch.
void lmp_sdpa_prefix_forward(float *out, float *scratch, const float *q, const float *k,
                             const float *v, int ld, const float *pk, const float *pv, int ldp,
                             int P, int B, int T, int NH, int KVH, int hs);
void lmp_sdpa_prefix_backward(float *dq, float *dk, float *dv, float *dpk, float *dpv,
                              float *scratch, const float *dout, const float *q, const float *k,
                              const float *v, int ld, const float *pk, const float *pv, int ldp,
                              int P, int B, int T, int NH, int KVH, int hs);

// out = a + b, (n).
void lmp_residual_forward(float *out, const float *a, const float *b, size_t n);

// Token + position embedding for a vocab slice [v0, v0+Vl): rows of tokens outside the
// slice get only the position part when add_pos, else zero (the tp group sums the parts).
// out (B,T,C); wte (Vl,C); wpe (maxT,C), may be NULL.
void lmp_embedding_forward(float *out, const int *tokens, const float *wte, const float *wpe,
                           int B, int T, int C, int v0, int Vl);
void lmp_embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens,
                            int B, int T, int C, int v0, int Vl);

// Softmax cross-entropy statistics of one chunk of logits on this rank's vocab slice:
// for each row n, rowmax[n] = max_j logits, sumexp[n] = sum_j exp(logits - rowmax),
// tgt[n] = logits[n, target - v0] if the target is in the slice, else 0.
// logits (n_rows, Vl) with row stride ld.
void lmp_xent_stats(double *rowmax, double *sumexp, double *tgt, const float *logits,
                    int ld, const int *targets, int n_rows, int Vl, int v0);
// In place: logits <- scale[n] * (softmax(logits)[n] - onehot(target)[n]) with the global
// row max and log-sum-exp given (so the slice's part of the full-vocab gradient).
void lmp_xent_grad(float *logits, int ld, const int *targets, const double *rowmax,
                   const double *logsumexp, const float *scale, int n_rows, int Vl, int v0);

// ---- The Llama family's components (kernels_llama.c) ----------------------------------

// RMSNorm over rows of C elements: out = w * (x * rstd), rstd = (mean(x^2) + eps)^-1/2,
// saved (N*H). The rows are N x H heads of a strided layout: row (n, h) starts at
// n*ld + h*C, the same in inp and out (H = 1, ld = C: a plain (N,C) norm; Qwen3's q/k norm:
// H heads of C = head_dim inside the q|k|v buffer). w (C) is shared by the heads.
void lmp_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int H,
                         int C, int ld, float eps);
void lmp_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, const float *rstd, int N, int H, int C, int ld);

typedef enum { LMP_ROPE_DEFAULT = 0, LMP_ROPE_LINEAR = 1, LMP_ROPE_LLAMA3 = 2 } lmp_rope_type;
typedef struct {
    lmp_rope_type type;
    float theta, factor, low_freq_factor, high_freq_factor;
    int original_max_pos;
} lmp_rope_params;

// cos/sin tables (n_pos, hd/2) of every position's angle p * inv_freq_i, inv_freq as
// transformers computes it for rp's rope_type.
void lmp_rope_tables(float *cos_t, float *sin_t, int n_pos, int hd, const lmp_rope_params *rp);
// In place on H heads of hd at columns h*hd of rows (N, ld); row n is at position
// pos0 + n % T. HF's rotate_half pairs (i, i + hd/2). Backward applies the transpose to the
// gradient in place (the rotation is linear and needs no saved input).
void lmp_rope_forward(float *x, int ld, int N, int T, int pos0, int H, int hd, const float *cos_t,
                      const float *sin_t);
void lmp_rope_backward(float *dx, int ld, int N, int T, int pos0, int H, int hd, const float *cos_t,
                       const float *sin_t);

// Gated SiLU: h (N, 2H) = gate | up per row, out (N,H) = silu(gate) * up; dh (N, 2H) +=.
void lmp_swiglu_forward(float *out, const float *h, int N, int H);
void lmp_swiglu_backward(float *dh, const float *h, const float *dout, int N, int H);

// Linear with the weight stored (OC, IC) (HF nn.Linear), output rows ldo apart (a part of a
// wider buffer: q, k, v or gate, up written side by side with no copy):
// out = inp . w^T + bias (overwrites); backward: dinp (N,IC) += dout . w, dw (OC,IC) +=
// dout^T . inp, dbias += column sums; dout rows ldd apart.
void lmp_matmul_oi_forward(float *out, int ldo, const float *inp, const float *w,
                           const float *bias, int N, int IC, int OC);
void lmp_matmul_oi_backward(float *dinp, float *dw, float *dbias, const float *dout, int ldd,
                            const float *inp, const float *w, int N, int IC, int OC);

#endif
