// pdsvd.c: block-cyclic matrices over a BLACS grid, ScaLAPACK's pdgesvd, and the few
// reductions the analysis needs. No rank ever holds a whole large matrix: only its blocks and
// the k leading singular vectors (m x k, n x k).
#include "analysis/analysis.h"
#include "core/util.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// BLACS / ScaLAPACK (Fortran symbols, no Debian header).
extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrc, const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
                      const int *irsrc, const int *icsrc, const int *ctxt, const int *lld, int *info);
extern void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
                     const int *ia, const int *ja, const int *desca, double *s, double *u,
                     const int *iu, const int *ju, const int *descu, double *vt, const int *ivt,
                     const int *jvt, const int *descvt, double *work, const int *lwork, int *info);

void lmp_grid_init(lmp_grid *g, MPI_Comm comm) {
    int p;
    LMP_CHECK_MPI(MPI_Comm_size(comm, &p));
    int rows = (int)sqrt((double)p);
    while (p % rows) rows--;
    g->comm = comm;
    g->handle = Csys2blacs_handle(comm);
    g->ctxt = g->handle;
    Cblacs_gridinit(&g->ctxt, "Row", rows, p / rows);
    Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
    if (g->myrow < 0) lmp_die("BLACS grid %d x %d: this rank is not in it", rows, p / rows);
}

void lmp_grid_free(lmp_grid *g) {
    Cblacs_gridexit(g->ctxt);
    Cfree_blacs_system_handle(g->handle);
}

void lmp_dmat_alloc(lmp_dmat *d, const lmp_grid *g, int m, int n, int nb) {
    int zero = 0, info;
    d->m = m;
    d->n = n;
    d->nb = nb;
    d->mloc = numroc_(&m, &nb, &g->myrow, &zero, &g->nprow);
    d->nloc = numroc_(&n, &nb, &g->mycol, &zero, &g->npcol);
    int lld = d->mloc > 1 ? d->mloc : 1;
    descinit_(d->desc, &m, &n, &nb, &nb, &zero, &zero, &g->ctxt, &lld, &info);
    if (info) lmp_die("descinit failed (info %d) for a %d x %d matrix", info, m, n);
    d->a = lmp_calloc(((size_t)lld * (d->nloc > 0 ? d->nloc : 1)) * sizeof(double));
}

void lmp_dmat_free(lmp_dmat *d) {
    free(d->a);
    d->a = NULL;
}

int lmp_dmat_grow(const lmp_dmat *d, const lmp_grid *g, int l) {
    return (l / d->nb * g->nprow + g->myrow) * d->nb + l % d->nb;
}
int lmp_dmat_gcol(const lmp_dmat *d, const lmp_grid *g, int l) {
    return (l / d->nb * g->npcol + g->mycol) * d->nb + l % d->nb;
}

// The first k columns of the distributed X (rows x cols) as a rows x k row-major array on
// every rank (transposed: the first k rows of X as cols x k when rows_of = 1).
static void gather_leading(const lmp_grid *g, const lmp_dmat *X, int k, int rows_of, double *out) {
    int outer = rows_of ? X->n : X->m;
    memset(out, 0, (size_t)outer * k * sizeof(double));
    int lld = X->mloc > 1 ? X->mloc : 1;
    for (int lj = 0; lj < X->nloc; lj++) {
        int gj = lmp_dmat_gcol(X, g, lj);
        for (int li = 0; li < X->mloc; li++) {
            int gi = lmp_dmat_grow(X, g, li);
            double v = X->a[(size_t)lj * lld + li];
            if (!rows_of && gj < k) out[(size_t)gi * k + gj] = v;
            if (rows_of && gi < k) out[(size_t)gj * k + gi] = v;
        }
    }
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, out, outer * k, MPI_DOUBLE, MPI_SUM, g->comm));
}

void lmp_pdsvd(const lmp_grid *g, lmp_dmat *d, double *S, int k, double *U, double *V) {
    int m = d->m, n = d->n, mn = m < n ? m : n, one = 1, info, lwork = -1;
    lmp_dmat u = {0}, vt = {0};
    const char *job = k > 0 ? "V" : "N";
    if (k > 0) {
        lmp_dmat_alloc(&u, g, m, mn, d->nb);
        lmp_dmat_alloc(&vt, g, mn, n, d->nb);
    } else {
        u.desc[1] = vt.desc[1] = d->desc[1];  // not referenced, but must be a valid context
        memcpy(u.desc, d->desc, sizeof u.desc);
        memcpy(vt.desc, d->desc, sizeof vt.desc);
    }
    double wq;
    pdgesvd_(job, job, &m, &n, d->a, &one, &one, d->desc, S, u.a, &one, &one, u.desc, vt.a, &one,
             &one, vt.desc, &wq, &lwork, &info);
    if (info) lmp_die("pdgesvd workspace query failed (info %d)", info);
    lwork = (int)wq + 1;
    double *work = lmp_malloc((size_t)lwork * sizeof(double));
    pdgesvd_(job, job, &m, &n, d->a, &one, &one, d->desc, S, u.a, &one, &one, u.desc, vt.a, &one,
             &one, vt.desc, work, &lwork, &info);
    if (info) lmp_die("pdgesvd failed (info %d) on a %d x %d matrix", info, m, n);
    free(work);
    if (k > 0) {
        gather_leading(g, &u, k, 0, U);
        gather_leading(g, &vt, k, 1, V);
        lmp_dmat_free(&u);
        lmp_dmat_free(&vt);
    }
}

double lmp_pd_proj_norm(const lmp_grid *g, const lmp_dmat *X, const double *U, const double *V, int k) {
    // U^T X V = Σ over local blocks of U[rows]^T X_local V[cols]: gather the rows of U and V
    // that meet this rank's part, two dgemms, one all-reduce of k x k.
    int lld = X->mloc > 1 ? X->mloc : 1;
    double *ul = lmp_calloc(((size_t)X->mloc * k + 1) * sizeof(double));
    double *vl = lmp_calloc(((size_t)X->nloc * k + 1) * sizeof(double));
    double *xv = lmp_calloc(((size_t)X->mloc * k + 1) * sizeof(double));
    double *y = lmp_calloc((size_t)k * k * sizeof(double));
    for (int li = 0; li < X->mloc; li++)
        memcpy(ul + (size_t)li * k, U + (size_t)lmp_dmat_grow(X, g, li) * k, (size_t)k * sizeof(double));
    for (int lj = 0; lj < X->nloc; lj++)
        memcpy(vl + (size_t)lj * k, V + (size_t)lmp_dmat_gcol(X, g, lj) * k, (size_t)k * sizeof(double));
    if (X->mloc > 0 && X->nloc > 0) {
        // xv (mloc x k, row-major) = X_local (column-major mloc x nloc) . vl
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, X->mloc, k, X->nloc, 1.0, X->a, lld,
                    vl, k, 0.0, xv, k);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, k, X->mloc, 1.0, ul, k, xv, k, 0.0, y, k);
    }
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, y, k * k, MPI_DOUBLE, MPI_SUM, g->comm));
    double s = 0.0;
    for (int i = 0; i < k * k; i++) s += y[i] * y[i];
    free(ul); free(vl); free(xv); free(y);
    return sqrt(s);
}

double lmp_pd_fro(const lmp_grid *g, const lmp_dmat *X) {
    int lld = X->mloc > 1 ? X->mloc : 1;
    double s = 0.0;
    for (int lj = 0; lj < X->nloc; lj++)
        for (int li = 0; li < X->mloc; li++) s += X->a[(size_t)lj * lld + li] * X->a[(size_t)lj * lld + li];
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_SUM, g->comm));
    return sqrt(s);
}
