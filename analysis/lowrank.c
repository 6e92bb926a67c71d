// lowrank.c: SVD of low-rank products, effective-rank figures and subspace similarity, on
// one rank, in double precision (LAPACKE + CBLAS).
#include "analysis/analysis.h"
#include "core/util.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_LAPACK(call) do { lapack_int info_ = (call); \
    if (info_ != 0) lmp_die("%s:%d: %s failed (LAPACK info %d)", __FILE__, __LINE__, #call, (int)info_); } while (0)

// X (n x k) -> Q (n x k, orthonormal columns), R (k x k upper triangular, may be NULL).
static void thin_qr(double *X, int n, int k, double *R) {
    double *tau = lmp_malloc((size_t)k * sizeof *tau);
    CHECK_LAPACK(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, k, X, k, tau));
    if (R)
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) R[i * k + j] = j >= i ? X[i * k + j] : 0.0;
    CHECK_LAPACK(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, k, k, X, k, tau));
    free(tau);
}

void lmp_orthonormalize(double *X, int n, int k) { thin_qr(X, n, k, NULL); }

void lmp_lowrank_svd(const double *B, const double *A, int m, int n, int r, double scale,
                     double *S, double *U, double *V) {
    if (r > m || r > n) lmp_die("lowrank SVD: r = %d exceeds the matrix size %d x %d", r, m, n);
    // B = Qb Rb, A^T = Qa Ra  =>  scale B A = Qb (scale Rb Ra^T) Qa^T; the r x r middle
    // factor's SVD Um S Vm^T gives U = Qb Um, V = Qa Vm.
    size_t rr = (size_t)r * r;
    double *qb = lmp_malloc((size_t)m * r * sizeof(double)), *qa = lmp_malloc((size_t)n * r * sizeof(double));
    double *rb = lmp_malloc(rr * sizeof(double)), *ra = lmp_malloc(rr * sizeof(double));
    double *mid = lmp_malloc(rr * sizeof(double)), *um = lmp_malloc(rr * sizeof(double));
    double *vmt = lmp_malloc(rr * sizeof(double));
    memcpy(qb, B, (size_t)m * r * sizeof(double));
    for (int i = 0; i < r; i++)
        for (int j = 0; j < n; j++) qa[(size_t)j * r + i] = A[(size_t)i * n + j];
    thin_qr(qb, m, r, rb);
    thin_qr(qa, n, r, ra);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, r, r, scale, rb, r, ra, r, 0.0, mid, r);
    CHECK_LAPACK(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'A', r, r, mid, r, S, um, r, vmt, r));
    if (U) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, r, r, 1.0, qb, r, um, r, 0.0, U, r);
    if (V) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, r, 1.0, qa, r, vmt, r, 0.0, V, r);
    free(qb); free(qa); free(rb); free(ra); free(mid); free(um); free(vmt);
}

void lmp_right_singular(const double *A, int r, int n, double *S, double *V) {
    if (r > n) lmp_die("right singular vectors: r = %d exceeds n = %d", r, n);
    double *a = lmp_malloc((size_t)r * n * sizeof(double)), *u = lmp_malloc((size_t)r * r * sizeof(double));
    double *vt = lmp_malloc((size_t)r * n * sizeof(double));
    memcpy(a, A, (size_t)r * n * sizeof(double));
    CHECK_LAPACK(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', r, n, a, n, S, u, r, vt, n));
    for (int i = 0; i < r; i++)
        for (int j = 0; j < n; j++) V[(size_t)j * r + i] = vt[(size_t)i * n + j];
    free(a); free(u); free(vt);
}

void lmp_rank_stats_of(const double *S, int k, lmp_rank_stats *st) {
    double e = 0.0, l1 = 0.0;
    for (int i = 0; i < k; i++) { e += S[i] * S[i]; l1 += S[i]; }
    st->fro = sqrt(e);
    st->sigma1 = k ? S[0] : 0.0;
    st->stable_rank = st->sigma1 > 0 ? e / (st->sigma1 * st->sigma1) : 0.0;
    st->n90 = st->n99 = 0;
    double acc = 0.0;
    for (int i = 0; i < k; i++) {
        acc += S[i] * S[i];
        if (!st->n90 && acc >= 0.90 * e) st->n90 = i + 1;
        if (!st->n99 && acc >= 0.99 * e) st->n99 = i + 1;
    }
    double h = 0.0;
    for (int i = 0; i < k; i++) {
        double p = l1 > 0 ? S[i] / l1 : 0.0;
        if (p > 0) h -= p * log(p);
    }
    st->entropy_rank = l1 > 0 ? exp(h) : 0.0;
}

void lmp_subspace_phi(const double *U1, int k1, const double *U2, int k2, int n, double *phi) {
    double *g = lmp_malloc((size_t)k1 * k2 * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k1, k2, n, 1.0, U1, k1, U2, k2, 0.0, g, k2);
    // phi[i][j] holds the 2-D prefix sum of G∘G first, then is divided by min(i, j).
    for (int i = 0; i < k1; i++)
        for (int j = 0; j < k2; j++) {
            double v = g[(size_t)i * k2 + j] * g[(size_t)i * k2 + j];
            if (i) v += phi[(size_t)(i - 1) * k2 + j];
            if (j) v += phi[(size_t)i * k2 + j - 1];
            if (i && j) v -= phi[(size_t)(i - 1) * k2 + j - 1];
            phi[(size_t)i * k2 + j] = v;
        }
    for (int i = k1 - 1; i >= 0; i--)
        for (int j = k2 - 1; j >= 0; j--) phi[(size_t)i * k2 + j] /= (i < j ? i : j) + 1;
    free(g);
}
