// sgemm.h: row-major sgemm whose threads we split ourselves. OpenBLAS's own threading of
// skinny products (one side 8-64 wide: the adapters' factors) made them slower on 2 threads
// than on 1; here the threads of one OpenMP region each run a single-threaded sgemm on their
// block of C's rows (or of its columns when C is wider than tall), so every element of C is
// one sgemm's, summed over all of K in the same order whatever the thread count.
#ifndef LORAMPI_SGEMM_H
#define LORAMPI_SGEMM_H

// C (M,N) = alpha op(A) op(B) + beta C, op(X) = X^T when tX; cblas_sgemm's arguments.
// Called inside a parallel region it is one plain sgemm on the calling thread.
void lmp_sgemm(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

#endif
