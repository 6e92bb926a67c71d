// bench_sgemm: OpenBLAS sgemm time of a list of GEMM shapes, each weighted by how often a
// training step calls it, at the thread count of OMP_NUM_THREADS. The list comes on stdin,
// one shape a line: "M N K TA TB COUNT" (C(M,N) = op(A)(M,K) op(B)(K,N), TA/TB 'N' or 'T',
// row-major), as tests/bench/bench_torch.py --gemms writes them for a model and mode.
// Prints one line: "sgemm GFLOP <total> seconds <sum of best-time x count> GFLOP/s <rate>",
// the rate a step made only of these GEMMs would reach (tests/bench/bench_vs_torch.sh).
// Usage: bench_sgemm [REPS] [split] < shapes   (best of REPS timed calls per shape, default 3)
// split: through lmp_sgemm (core/sgemm.c: the threads of one OpenMP region each run a
// single-threaded sgemm on their block of C's rows, or columns when C is wider than tall),
// instead of one call that OpenBLAS threads itself.
#include "core/sgemm.h"
#include "core/util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *openblas_get_corename(void);

// Best wall time of reps calls of one shape (after one untimed call for the packing buffers).
static double time_shape(int M, int N, int K, char ta, char tb, int reps, int split) {
    float *a = lmp_calloc((size_t)M * K * sizeof(float)), *b = lmp_calloc((size_t)K * N * sizeof(float)),
          *c = lmp_calloc((size_t)M * N * sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = 0.001f * (float)(i % 97);
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = 0.001f * (float)(i % 89);
    // Leading dimensions of the stored (row-major) matrices: A is (M,K) or (K,M) when transposed.
    int lda = ta == 'T' ? M : K, ldb = tb == 'T' ? K : N;
    enum CBLAS_TRANSPOSE opa = ta == 'T' ? CblasTrans : CblasNoTrans,
                         opb = tb == 'T' ? CblasTrans : CblasNoTrans;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = lmp_now();
        if (!split) cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, N);
        else lmp_sgemm(ta == 'T', tb == 'T', M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, N);
        double dt = lmp_now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a); free(b); free(c);
    return best;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1) reps = 1;
    int split = argc > 2 && !strcmp(argv[2], "split");
    int M, N, K, n;
    char ta, tb;
    double flop = 0, secs = 0;
    while (scanf("%d %d %d %c %c %d", &M, &N, &K, &ta, &tb, &n) == 6) {
        if (M <= 0 || N <= 0 || K <= 0 || n <= 0 || (ta != 'N' && ta != 'T') || (tb != 'N' && tb != 'T')) {
            fprintf(stderr, "bench_sgemm: bad shape line %d %d %d %c %c %d\n", M, N, K, ta, tb, n);
            return 1;
        }
        double t = time_shape(M, N, K, ta, tb, reps, split);
        flop += 2.0 * M * N * K * n;
        secs += t * n;
        fprintf(stderr, "  %6d x %6d x %6d %c%c x%-4d %7.1f GFLOP/s\n", M, N, K, ta, tb, n,
                2.0 * M * N * K / t / 1e9);
    }
    if (secs <= 0) {
        fprintf(stderr, "bench_sgemm: no shapes on stdin (expected lines \"M N K TA TB COUNT\")\n");
        return 1;
    }
    printf("sgemm core %s GFLOP %.1f seconds %.3f GFLOP/s %.1f\n", openblas_get_corename(),
           flop / 1e9, secs, flop / secs / 1e9);
    return 0;
}
