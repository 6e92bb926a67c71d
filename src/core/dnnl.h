// dnnl.h: oneDNN's matmul primitive for bf16 inputs with fp32 accumulation and output: the
// frozen-weight GEMMs of [model] dtype = bf16 (wgemm.h). oneDNN picks its kernel at run time
// (AMX where the CPU has it, avx512_core_bf16 otherwise; ONEDNN_VERBOSE=1 names it).
// Primitives are created once per shape and kept (creation costs far more than a small GEMM).
#ifndef LORAMPI_DNNL_H
#define LORAMPI_DNNL_H
#include <stdint.h>

// C (M, N; rows ldc apart) = (accumulate ? C : 0) + A (M, K; rows K apart) . B (K, N), where
// B is read (K, N) row-major, or with b_trans from an (N, K) row-major array. A, B bf16;
// C fp32, accumulated in fp32.
void lmp_dnnl_matmul_bf16(float *C, int ldc, const uint16_t *A, const uint16_t *B, int M, int K,
                          int N, int b_trans, int accumulate);
// Frees the cached primitives (they are otherwise kept until exit).
void lmp_dnnl_release(void);

#endif
