// lmp_sgemm (core/sgemm.c) against a double-precision reference: all four transpose pairs,
// C taller than wide (split by rows) and wider than tall (split by columns), padded leading
// dimensions, beta 0 and 1, on 1, 2 and 3 OpenMP threads (sizes that do not divide evenly).
// A thread count always splits the same way, so a second call gives the same bits. (Not
// necessarily those of another thread count: OpenBLAS's kernels treat a block's edge rows
// and columns with other code, so moving the block boundaries can move the last bit.)
#include "testutil.h"
#include "core/sgemm.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 2463534242ULL;
static float rnd(void) { rs ^= rs << 13; rs ^= rs >> 17; rs ^= rs << 5; return (float)(rs % 2001) / 1000.0f - 1.0f; }

// op(X)[i][j] of a row-major X with leading dimension ld, transposed when t.
static double at(const float *X, int ld, int t, int i, int j) { return t ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j]; }

static void one_case(int tA, int tB, int M, int N, int K, float beta) {
    int lda = (tA ? M : K) + 3, ldb = (tB ? K : N) + 2, ldc = N + 5;
    size_t na = (size_t)(tA ? K : M) * lda, nb = (size_t)(tB ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float)), *C0 = malloc(nc * sizeof(float));
    float *C[3], *again = malloc(nc * sizeof(float));
    for (size_t i = 0; i < na; i++) A[i] = rnd();
    for (size_t i = 0; i < nb; i++) B[i] = rnd();
    for (size_t i = 0; i < nc; i++) C0[i] = rnd();
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        C[t] = malloc(nc * sizeof(float));
        memcpy(C[t], C0, nc * sizeof(float));
        lmp_sgemm(tA, tB, M, N, K, 0.7f, A, lda, B, ldb, beta, C[t], ldc);
        memcpy(again, C0, nc * sizeof(float));
        lmp_sgemm(tA, tB, M, N, K, 0.7f, A, lda, B, ldb, beta, again, ldc);
        T_CHECK(!memcmp(again, C[t], nc * sizeof(float)), "sgemm %dx%dx%d: two calls on %d threads differ",
                M, N, K, t + 1);
    }
    double err = 0, pad = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            size_t k = (size_t)i * ldc + j;
            if (j >= N) {  // the padding past N columns is not C's: untouched
                for (int t = 0; t < 3; t++) pad = pad && C[t][k] == C0[k];
                continue;
            }
            double ref = beta * (double)C0[k];
            for (int p = 0; p < K; p++) ref += 0.7 * at(A, lda, tA, i, p) * at(B, ldb, tB, p, j);
            for (int t = 0; t < 3; t++) err = fmax(err, fabs(C[t][k] - ref));
        }
    T_CHECK(err <= 1e-5 * K, "sgemm %c%c %dx%dx%d beta %g: max error %.3g", tA ? 'T' : 'N', tB ? 'T' : 'N', M, N, K, beta, err);
    T_CHECK(pad, "sgemm %c%c %dx%dx%d wrote past N columns", tA ? 'T' : 'N', tB ? 'T' : 'N', M, N, K);
    free(A); free(B); free(C0); free(again);
    for (int t = 0; t < 3; t++) free(C[t]);
}

int main(void) {
    static const int shapes[][3] = {{37, 5, 19}, {5, 41, 23}, {2, 1, 7}, {1, 3, 4}, {8, 300, 200}, {300, 8, 200}};
    for (int s = 0; s < 6; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++)
                for (int b = 0; b < 2; b++) one_case(tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], (float)b);
    return t_finish();
}
