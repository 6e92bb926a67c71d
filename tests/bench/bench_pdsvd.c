// bench_pdsvd: full SVD (singular values and vectors) of a random m x n matrix with
// ScaLAPACK's pdgesvd on all ranks, and with LAPACK's dgesdd on rank 0 alone, same matrix.
// Usage: mpirun -n P bench_pdsvd M N DGESDD(0|1) VECTORS(0|1)   (run by tests/bench/bench_analysis.sh)
#include "analysis/analysis.h"
#include "core/rng.h"
#include "core/util.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc < 3) lmp_die("usage: bench_pdsvd M N [dgesdd]");
    int m = atoi(argv[1]), n = atoi(argv[2]), lapack = argc > 3 && atoi(argv[3]), vec = argc > 4 && atoi(argv[4]);
    int rank, size, mn = m < n ? m : n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    lmp_grid g;
    lmp_grid_init(&g, MPI_COMM_WORLD);
    lmp_dmat d;
    lmp_dmat_alloc(&d, &g, m, n, 64);
    int lld = d.mloc > 1 ? d.mloc : 1;
    for (int lj = 0; lj < d.nloc; lj++)
        for (int li = 0; li < d.mloc; li++)
            d.a[(size_t)lj * lld + li] = lmp_rng_normal(7, 0, (uint64_t)lmp_dmat_grow(&d, &g, li) * n + lmp_dmat_gcol(&d, &g, lj));
    double *S = lmp_malloc((size_t)mn * sizeof(double));
    double *U = lmp_malloc((size_t)m * mn * sizeof(double)), *V = lmp_malloc((size_t)n * mn * sizeof(double));
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = lmp_now();
    lmp_pdsvd(&g, &d, S, vec ? mn : 0, vec ? U : NULL, vec ? V : NULL);
    double t_pd = lmp_now() - t0;
    if (rank == 0) printf("| pdgesvd (ScaLAPACK), %d x %d grid | %d x %d | %s | %d | %.2f |\n", g.nprow, g.npcol, m, n, vec ? "values + vectors" : "values", size, t_pd);
    if (rank == 0 && lapack) {
        double *a = lmp_malloc((size_t)m * n * sizeof(double)), *s2 = lmp_malloc((size_t)mn * sizeof(double));
        double *u = lmp_malloc((size_t)m * mn * sizeof(double)), *vt = lmp_malloc((size_t)mn * n * sizeof(double));
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) a[(size_t)i * n + j] = lmp_rng_normal(7, 0, (uint64_t)i * n + j);
        t0 = lmp_now();
        lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, vec ? 'S' : 'N', m, n, a, n, s2, u, mn, vt, n);
        double t_la = lmp_now() - t0;
        double diff = 0;
        for (int i = 0; i < mn; i++) diff = diff > fabs(s2[i] - S[i]) / S[0] ? diff : fabs(s2[i] - S[i]) / S[0];
        printf("| dgesdd (LAPACK), 1 rank | %d x %d | %s | 1 | %.2f |\n", m, n, vec ? "values + vectors" : "values", t_la);
        printf("(info %d; largest difference of the singular values, relative to sigma_1: %.1e)\n", (int)info, diff);
        free(a); free(s2); free(u); free(vt);
    }
    lmp_dmat_free(&d);
    lmp_grid_free(&g);
    free(S); free(U); free(V);
    MPI_Finalize();
    return 0;
}
