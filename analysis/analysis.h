// analysis.h: what LoRA adapters learned, after Section 7 of Hu et al. (2021).
// All arithmetic is in double precision. Matrices are row-major unless a name says otherwise.
//  - ΔW = scale·B·A (B: out x r, A: r x in) has rank <= r; its SVD comes from thin QRs of B
//    and A^T and one r x r SVD: O((out + in)·r²) (lmp_lowrank_svd). The full SVD of a large
//    matrix runs distributed in ScaLAPACK (pdgesvd over a process grid of all ranks).
//  - Effective rank: directions holding 90% / 99% of the energy Σσ², stable rank
//    ‖·‖_F²/‖·‖_2², entropy effective rank exp(-Σ p log p), p = σ/Σσ (Roy & Vetterli 2007).
//  - Subspace similarity φ(i, j) = ‖U1[:, :i]^T U2[:, :j]‖_F² / min(i, j) (the paper's Eq. 4).
#ifndef LORAMPI_ANALYSIS_H
#define LORAMPI_ANALYSIS_H
#include <mpi.h>
#include <stddef.h>

// ---- dense, one rank ----

// Thin SVD of scale·B·A, B (m x r), A (r x n), r <= min(m, n): S (r, descending), U (m x r)
// and V (n x r) with orthonormal columns (either may be NULL).
void lmp_lowrank_svd(const double *B, const double *A, int m, int n, int r, double scale,
                     double *S, double *U, double *V);
// Right singular vectors of A (r x n), as V (n x r), and its singular values S (r).
void lmp_right_singular(const double *A, int r, int n, double *S, double *V);
// Orthonormal basis (n x k, Householder QR) of the columns of X (n x k), in place.
void lmp_orthonormalize(double *X, int n, int k);

typedef struct {
    double fro;          // ‖·‖_F
    double sigma1;       // ‖·‖_2
    int n90, n99;        // fewest directions holding 90% / 99% of Σσ²
    double stable_rank;  // Σσ² / σ1²
    double entropy_rank; // exp(-Σ p log p), p = σ / Σσ
} lmp_rank_stats;
// Figures of a spectrum S[0..k) (descending, >= 0).
void lmp_rank_stats_of(const double *S, int k, lmp_rank_stats *st);

// phi (k1 x k2, row-major): phi[i-1][j-1] = ‖U1[:, :i]^T U2[:, :j]‖_F² / min(i, j) for
// U1 (n x k1), U2 (n x k2) with orthonormal columns.
void lmp_subspace_phi(const double *U1, int k1, const double *U2, int k2, int n, double *phi);

// ---- distributed (ScaLAPACK) ----

typedef struct {
    MPI_Comm comm;
    int handle, ctxt, nprow, npcol, myrow, mycol;
} lmp_grid;

// A block-cyclic m x n matrix: this rank's mloc x nloc part, column-major as ScaLAPACK wants.
typedef struct {
    int m, n, nb, mloc, nloc, desc[9];
    double *a;
} lmp_dmat;

// The most square process grid of all ranks of comm (BLACS on that communicator).
void lmp_grid_init(lmp_grid *g, MPI_Comm comm);
void lmp_grid_free(lmp_grid *g);
void lmp_dmat_alloc(lmp_dmat *d, const lmp_grid *g, int m, int n, int nb);
void lmp_dmat_free(lmp_dmat *d);
// Global row (col) of local row (col) l.
int lmp_dmat_grow(const lmp_dmat *d, const lmp_grid *g, int l);
int lmp_dmat_gcol(const lmp_dmat *d, const lmp_grid *g, int l);

// SVD of the distributed d (destroyed) with pdgesvd: S (min(m, n)) on every rank; when k > 0
// the first k left and right singular vectors on every rank, U (m x k) and V (n x k).
void lmp_pdsvd(const lmp_grid *g, lmp_dmat *d, double *S, int k, double *U, double *V);

// ‖U^T X V‖_F for the distributed X (m x n), U (m x k), V (n x k) held by every rank.
double lmp_pd_proj_norm(const lmp_grid *g, const lmp_dmat *X, const double *U, const double *V, int k);
// ‖X‖_F of the distributed X.
double lmp_pd_fro(const lmp_grid *g, const lmp_dmat *X);

// ---- the subcommands (analyze.c) ----

// `lorampi analyze spectrum|similarity|vs-base ...` with argv after "analyze"; every rank.
int lmp_analyze_main(int argc, char **argv);

#endif
