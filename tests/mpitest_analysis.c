// Analysis numerics on 4 ranks, against matrices built with known singular values and
// subspaces (U0 S0 V0^T with U0, V0 orthonormalised Gaussians):
//  - the low-rank SVD recovers S0 (1e-12) and the subspaces (φ = 1);
//  - the full ScaLAPACK SVD of the same ΔW, on grids of 1, 2 and 4 ranks, gives S0 (1e-10
//    relative), zeros beyond r, the same top subspaces (φ ≈ 1), and the same values on every
//    grid (1e-12); ‖U^T X V‖_F and ‖X‖_F against their closed forms;
//  - φ = 1 for one subspace, 0 for orthogonal ones, ≈ max(i, j)/n for random ones;
//  - effective-rank figures of a hand-computed spectrum.
#include "analysis/analysis.h"
#include "core/rng.h"
#include "core/util.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *gaussian_basis(int n, int k, uint64_t seed) {
    double *x = lmp_malloc((size_t)n * k * sizeof(double));
    for (size_t i = 0; i < (size_t)n * k; i++) x[i] = lmp_rng_normal(seed, 1, i);
    lmp_orthonormalize(x, n, k);
    return x;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int m = 96, n = 70, r = 6;
    const double S0[6] = {9.0, 5.0, 3.0, 1.5, 0.5, 0.125};
    double *U0 = gaussian_basis(m, r, 11), *V0 = gaussian_basis(n, r, 12);
    // B = U0 diag(S0) / scale, A = V0^T: ΔW = scale B A = U0 S0 V0^T.
    const double scale = 2.0;
    double *B = lmp_malloc((size_t)m * r * sizeof(double)), *A = lmp_malloc((size_t)r * n * sizeof(double));
    for (int i = 0; i < m; i++)
        for (int j = 0; j < r; j++) B[i * r + j] = U0[i * r + j] * S0[j] / scale;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < n; j++) A[i * n + j] = V0[j * r + i];

    double S[6], U[96 * 6], V[70 * 6], phi[36];
    lmp_lowrank_svd(B, A, m, n, r, scale, S, U, V);
    double err = 0;
    for (int i = 0; i < r; i++) err = fmax(err, fabs(S[i] - S0[i]) / S0[i]);
    T_CHECK(err < 1e-12, "low-rank SVD: singular values off by %g", err);
    lmp_subspace_phi(U, r, U0, r, m, phi);
    T_CHECK(fabs(phi[r * r - 1] - 1) < 1e-12, "low-rank SVD: left subspace phi = %g", phi[r * r - 1]);
    lmp_subspace_phi(V, r, V0, r, n, phi);
    T_CHECK(fabs(phi[r * r - 1] - 1) < 1e-12, "low-rank SVD: right subspace phi = %g", phi[r * r - 1]);
    // Each leading singular direction alone: phi(i, i) = 1 for distinct singular values.
    lmp_subspace_phi(U, r, U0, r, m, phi);
    int diag = 1;
    for (int i = 0; i < r; i++) diag &= fabs(phi[i * r + i] - 1) < 1e-9;
    T_CHECK(diag, "low-rank SVD: leading directions not recovered one by one");

    // Full distributed SVD on 1, 2, 4 ranks.
    double ref_S[70], ref_proj = 0, ref_fro = 0;
    int ran = 0;
    for (int p = 1; p <= size; p *= 2) {
        MPI_Comm comm;
        MPI_Comm_split(MPI_COMM_WORLD, rank < p ? 0 : MPI_UNDEFINED, rank, &comm);
        if (comm == MPI_COMM_NULL) continue;
        ran++;
        lmp_grid g;
        lmp_grid_init(&g, comm);
        lmp_dmat d;
        lmp_dmat_alloc(&d, &g, m, n, 8);
        int lld = d.mloc > 1 ? d.mloc : 1;
        for (int lj = 0; lj < d.nloc; lj++)
            for (int li = 0; li < d.mloc; li++) {
                int gi = lmp_dmat_grow(&d, &g, li), gj = lmp_dmat_gcol(&d, &g, lj);
                double v = 0;
                for (int k = 0; k < r; k++) v += scale * B[gi * r + k] * A[k * n + gj];
                d.a[(size_t)lj * lld + li] = v;
            }
        double fro = lmp_pd_fro(&g, &d);
        double proj = lmp_pd_proj_norm(&g, &d, U0, V0, r);  // = ‖S0‖
        double Sf[70], Uf[96 * 6], Vf[70 * 6];
        lmp_pdsvd(&g, &d, Sf, r, Uf, Vf);
        double e = 0, tail = 0, s2 = 0;
        for (int i = 0; i < r; i++) { e = fmax(e, fabs(Sf[i] - S0[i]) / S0[i]); s2 += S0[i] * S0[i]; }
        for (int i = r; i < n; i++) tail = fmax(tail, Sf[i]);
        T_CHECK(e < 1e-10, "pdgesvd on %d ranks: singular values off by %g", p, e);
        T_CHECK(tail < 1e-10 * S0[0], "pdgesvd on %d ranks: singular value %g beyond rank r", p, tail);
        T_CHECK(fabs(fro - sqrt(s2)) < 1e-12 * sqrt(s2) && fabs(proj - sqrt(s2)) < 1e-12 * sqrt(s2),
                "on %d ranks: ‖X‖_F = %.15g, ‖U0^T X V0‖_F = %.15g, expected %.15g", p, fro, proj, sqrt(s2));
        double ph[36];
        lmp_subspace_phi(Uf, r, U0, r, m, ph);
        T_CHECK(fabs(ph[35] - 1) < 1e-10, "pdgesvd on %d ranks: left subspace phi %g", p, ph[35]);
        lmp_subspace_phi(Vf, r, V0, r, n, ph);
        T_CHECK(fabs(ph[35] - 1) < 1e-10, "pdgesvd on %d ranks: right subspace phi %g", p, ph[35]);
        if (p == 1) { memcpy(ref_S, Sf, sizeof ref_S); ref_proj = proj; ref_fro = fro; }
        if (rank == 0 && p > 1) {
            double dd = 0;
            for (int i = 0; i < r; i++) dd = fmax(dd, fabs(Sf[i] - ref_S[i]) / S0[i]);
            T_CHECK(dd < 1e-12 && fabs(proj - ref_proj) < 1e-12 * ref_proj && fabs(fro - ref_fro) < 1e-12 * ref_fro,
                    "%d ranks vs 1 rank: singular values differ by %g", p, dd);
        }
        lmp_dmat_free(&d);
        lmp_grid_free(&g);
        MPI_Comm_free(&comm);
    }
    T_CHECK(ran >= 1, "rank %d took part in no grid", rank);

    // φ: same subspace, orthogonal subspaces, random subspaces.
    const int N = 256, k1 = 4, k2 = 32;
    double *Q = gaussian_basis(N, k1 + k2, 21);
    double *Q1 = lmp_malloc((size_t)N * k1 * sizeof(double)), *Q2 = lmp_malloc((size_t)N * k2 * sizeof(double));
    for (int i = 0; i < N; i++) {
        memcpy(Q1 + i * k1, Q + i * (k1 + k2), k1 * sizeof(double));
        memcpy(Q2 + i * k2, Q + i * (k1 + k2) + k1, k2 * sizeof(double));
    }
    double *ph = lmp_malloc((size_t)k2 * k2 * sizeof(double));
    lmp_subspace_phi(Q2, k2, Q2, k2, N, ph);
    int ones = 1;
    for (int i = 0; i < k2 * k2; i++) ones &= fabs(ph[i] - 1) < 1e-12;
    T_CHECK(ones, "phi of a subspace with itself is not 1 everywhere");
    lmp_subspace_phi(Q1, k1, Q2, k2, N, ph);
    double mx = 0;
    for (int i = 0; i < k1 * k2; i++) mx = fmax(mx, ph[i]);
    T_CHECK(mx < 1e-12, "phi of orthogonal subspaces: %g", mx);
    double mean[4 * 32] = {0};
    const int draws = 40;
    for (int t = 0; t < draws; t++) {
        double *R1 = gaussian_basis(N, k1, 100 + t), *R2 = gaussian_basis(N, k2, 200 + t);
        lmp_subspace_phi(R1, k1, R2, k2, N, ph);
        for (int i = 0; i < k1 * k2; i++) mean[i] += ph[i] / draws;
        free(R1);
        free(R2);
    }
    double worst = 0;
    for (int i = 0; i < k1; i++)
        for (int j = 0; j < k2; j++) {
            double expect = (double)((i > j ? i : j) + 1) / N;
            // sd of one draw's φ(i, j) is about sqrt(2 i j)/(N min(i, j)); 5 sd of the mean
            double tol = 5 * sqrt(2.0 * (i + 1) * (j + 1)) / (N * ((i < j ? i : j) + 1)) / sqrt(draws);
            worst = fmax(worst, fabs(mean[i * k2 + j] - expect) / tol);
        }
    T_CHECK(worst < 1, "random subspaces: mean phi off by %.2f x the tolerance", worst);

    // Effective rank of (3, 2, 1): energy 9 + 4 + 1 = 14; 90% = 12.6 needs 2 directions, 99% 3;
    // stable rank 14/9; p = (1/2, 1/3, 1/6).
    const double s3[3] = {3, 2, 1};
    lmp_rank_stats st;
    lmp_rank_stats_of(s3, 3, &st);
    double h = -(0.5 * log(0.5) + log(1.0 / 3) / 3 + log(1.0 / 6) / 6);
    T_CHECK(st.n90 == 2 && st.n99 == 3 && fabs(st.stable_rank - 14.0 / 9) < 1e-15 &&
            fabs(st.entropy_rank - exp(h)) < 1e-14 && fabs(st.fro - sqrt(14.0)) < 1e-15 && st.sigma1 == 3,
            "rank figures: n90 %d n99 %d stable %g entropy %g", st.n90, st.n99, st.stable_rank, st.entropy_rank);

    int total_failed;
    MPI_Allreduce(&t_failed, &total_failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int total_passed;
    MPI_Allreduce(&t_passed, &total_passed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int ranks_ran;
    int me = 1;
    MPI_Allreduce(&me, &ranks_ran, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        if (ranks_ran != size) total_failed++;
        printf("%d ranks ran; %d passed, %d failed\n", ranks_ran, total_passed, total_failed);
    }
    free(U0); free(V0); free(B); free(A); free(Q); free(Q1); free(Q2); free(ph);
    MPI_Finalize();
    return total_failed ? 1 : 0;
}
