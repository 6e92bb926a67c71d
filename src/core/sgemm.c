// sgemm.c: row-major sgemm split over OpenMP threads (sgemm.h).
#include "core/sgemm.h"
#include "core/util.h"

#include <cblas.h>
#include <omp.h>
#include <stddef.h>

static void one(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void lmp_sgemm(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (omp_in_parallel() || omp_get_max_threads() == 1) {
        one(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel
    {
        int lo, hi;
        if (M >= N) {  // rows lo..hi of C: rows of A (columns when A is transposed)
            lmp_omp_range(M, &lo, &hi);
            one(tA, tB, hi - lo, N, K, alpha, A + (size_t)lo * (tA ? 1 : (size_t)lda), lda, B,
                ldb, beta, C + (size_t)lo * ldc, ldc);
        } else {  // columns lo..hi of C: columns of B (rows when B is transposed)
            lmp_omp_range(N, &lo, &hi);
            one(tA, tB, M, hi - lo, K, alpha, A, lda, B + (size_t)lo * (tB ? (size_t)ldb : 1),
                ldb, beta, C + lo, ldc);
        }
    }
}
