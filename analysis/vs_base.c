// vs_base.c: `lorampi analyze vs-base`: how ΔW relates to the base weight W it adapts
// (norms, projections onto ΔW's, W's own and random directions; Hu et al. 2021, Sec. 7.3).
#include "analysis/subcommands.h"
#include "io/h5attr.h"
#include "io/hf_dir.h"
#include "io/model_io.h"
#include "core/rng.h"
#include "core/util.h"

#include <math.h>
#include <mpi.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum { W_FRO, DW_FRO, P_DW, P_W, P_RAND, AMP, NCOL };
static const char *COLS[NCOL] = {"w_fro", "dw_fro", "proj_dw", "proj_w", "proj_random", "amplification"};

// The module's base weight in the model file: its record's base_weight, with or without
// HF's "transformer." prefix (HF GPT-2 files carry it, lorampi's registry names do not).
// A sharded model is read through its index (io/hf_dir.h), as loading reads it.
static const lmp_st_tensor *find_w(const lmp_hf_files *h, const adapter_mod *m, const char *model,
                                   const lmp_st_file **st) {
    const lmp_st_tensor *t = lmp_hf_find(h, m->base_weight, st);
    if (!t) lmp_die_all("%s has no tensor %s for module %s", model, m->base_weight, m->name);
    int c0 = m->out_offset, oi = !*lmp_hf_prefix(m->base_weight);  // nn.Linear: (out, in)
    if (oi && (t->ndim != 2 || t->shape[1] != m->in || t->shape[0] < c0 + m->out))
        lmp_die_all("%s: %s has shape (%lld, %lld), module %s needs (>= %d, %d)", model, m->base_weight,
                    (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), m->name, c0 + m->out, m->in);
    if (!oi && (t->ndim != 2 || t->shape[0] != m->in || t->shape[1] < c0 + m->out))
        lmp_die_all("%s: %s has shape (%lld, %lld), module %s needs (%d, >= %d)", model, m->base_weight,
                    (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), m->name, m->in, c0 + m->out);
    return t;
}

// W of module m as a distributed out x in matrix (ΔW's orientation): HF stores Conv1D
// weights (in, out), so X[i][j] = stored[j][out_offset + i] (a q/k/v module takes its column
// block). Each rank reads the stored rows of its column blocks only. The Llama family's
// nn.Linear weights are stored (out, in): X[i][j] = stored[out_offset + i][j], read as the
// column block of the rank's columns.
static void load_w(const lmp_grid *g, lmp_dmat *X, const lmp_hf_files *h, const adapter_mod *m, const char *model) {
    const lmp_st_file *st;
    const lmp_st_tensor *t = find_w(h, m, model, &st);
    int oi = !*lmp_hf_prefix(m->base_weight);
    lmp_dmat_alloc(X, g, m->out, m->in, LMP_AN_NB);
    int lld = X->mloc > 1 ? X->mloc : 1;
    float *rows = lmp_malloc((size_t)LMP_AN_NB * m->out * sizeof(float));
    for (int lj0 = 0; lj0 < X->nloc; lj0 += LMP_AN_NB) {
        int gj0 = lmp_dmat_gcol(X, g, lj0), nr = X->nloc - lj0 < LMP_AN_NB ? X->nloc - lj0 : LMP_AN_NB;
        if (oi) lmp_st_read_block(st, t, m->out_offset, m->out, gj0, nr, rows);  // (out, nr)
        else lmp_st_read_block(st, t, gj0, nr, m->out_offset, m->out, rows);     // (nr, out)
        for (int k = 0; k < nr; k++)
            for (int li = 0; li < X->mloc; li++) {
                size_t i = (size_t)lmp_dmat_grow(X, g, li);
                X->a[(size_t)(lj0 + k) * lld + li] = oi ? rows[i * nr + k] : rows[(size_t)k * m->out + i];
            }
    }
    free(rows);
}

// ‖U^T W V‖ for random r-dimensional subspaces (Gaussian, orthonormalised, seeded by the
// module), with U and V as scratch.
static double random_proj(const lmp_grid *g, const lmp_dmat *X, const adapter_mod *m, double *U, double *V) {
    uint64_t seed = lmp_hash_str(m->name);
    for (size_t k = 0; k < (size_t)m->out * m->r; k++) U[k] = lmp_rng_normal(seed, 1, k);
    for (size_t k = 0; k < (size_t)m->in * m->r; k++) V[k] = lmp_rng_normal(seed, 2, k);
    lmp_orthonormalize(U, m->out, m->r);
    lmp_orthonormalize(V, m->in, m->r);
    return lmp_pd_proj_norm(g, X, U, V, m->r);
}

// W's own top-r directions: ‖U_W^T W V_W‖_F = sqrt(σ1² + ... + σr²) exactly, so only W's
// singular values are needed, several times cheaper in pdgesvd than its vectors. The top r
// go to wsv.
static double own_proj(const lmp_grid *g, const lmp_dmat *X, const adapter_mod *m, double *wsv) {
    lmp_dmat Xc;
    lmp_dmat_alloc(&Xc, g, m->out, m->in, LMP_AN_NB);
    memcpy(Xc.a, X->a, (size_t)(X->mloc > 1 ? X->mloc : 1) * (X->nloc > 0 ? X->nloc : 1) * sizeof(double));
    int mn = m->out < m->in ? m->out : m->in;
    double *Sw = lmp_malloc((size_t)mn * sizeof(double));
    lmp_pdsvd(g, &Xc, Sw, 0, NULL, NULL);
    double ew = 0;
    for (int k = 0; k < m->r && k < mn; k++) ew += Sw[k] * Sw[k];
    memcpy(wsv, Sw, (size_t)m->r * sizeof(double));
    free(Sw);
    lmp_dmat_free(&Xc);
    return sqrt(ew);
}

// The NCOL figures of module m into row, W's top singular values into wsv. Every rank.
static void figures_of(const lmp_grid *g, const lmp_hf_files *st, const adapter_mod *m, const char *model,
                       int full, double *row, double *wsv) {
    int r = m->r;
    double *S = lmp_malloc((size_t)r * sizeof(double)), *U = lmp_malloc((size_t)m->out * r * sizeof(double));
    double *V = lmp_malloc((size_t)m->in * r * sizeof(double));
    lmp_an_dw_svd(m, full, g, S, U, V);
    lmp_dmat X;
    load_w(g, &X, st, m, model);
    row[W_FRO] = lmp_pd_fro(g, &X);
    double e = 0;
    for (int k = 0; k < r; k++) e += S[k] * S[k];
    row[DW_FRO] = sqrt(e);
    row[P_DW] = lmp_pd_proj_norm(g, &X, U, V, r);
    row[P_RAND] = random_proj(g, &X, m, U, V);
    row[P_W] = own_proj(g, &X, m, wsv);
    row[AMP] = row[P_DW] > 0 ? row[DW_FRO] / row[P_DW] : INFINITY;
    lmp_dmat_free(&X);
    free(S);
    free(U);
    free(V);
}

static void write_vs_base(const adapter_set *s, const double *res, const double *wsv, int maxr, const char *ckpt,
                          const char *model, const char *out, int full, const lmp_grid *g, double secs) {
    lmp_an_out o;
    lmp_an_out_create(&o, out, "vs-base", full ? "scalapack pdgesvd (ΔW and W)" : "thin QR (ΔW), scalapack pdgesvd (W)");
    lmp_h5_put_str(o.f, "checkpoint", ckpt);
    lmp_h5_put_str(o.f, "model", model);
    char csvp[LMP_PATH_MAX + 8];
    FILE *csv = lmp_an_csv_open(out, csvp, sizeof csvp);
    fprintf(csv, "module,r,w_fro,dw_fro,proj_dw,proj_w,proj_random,amplification\n");
    for (int i = 0; i < s->n; i++) {
        const double *row = res + (size_t)i * NCOL;
        const adapter_mod *m = &s->mod[i];
        hid_t grp = lmp_an_group(&o, m->name);
        for (int k = 0; k < NCOL; k++) lmp_h5_put_f64(grp, COLS[k], row[k]);
        lmp_h5_put_f64(grp, "r", m->r);
        lmp_an_put_data(&o, grp, "w_singular_values", wsv + (size_t)i * maxr, m->r, 0);
        lmp_an_put_data(&o, grp, "projections", row + P_DW, 3, 0);
        fprintf(csv, "%s,%d,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n", m->name, m->r, row[W_FRO],
                row[DW_FRO], row[P_DW], row[P_W], row[P_RAND], row[AMP]);
        lmp_an_group_close(&o, grp, m->name);
    }
    lmp_an_csv_close(csv, csvp);
    lmp_an_out_close(&o);
    printf("vs-base: %d module%s on a %d x %d grid in %.2f s -> %s, %s\n", s->n, s->n > 1 ? "s" : "", g->nprow,
           g->npcol, secs, out, csvp);
}

// The checkpoint records the path of the base model it was trained from: another --model is
// warned about (the figures are then against other weights unless it is a copy). Names and
// shapes are refused when they disagree (find_w).
static void check_base(const adapter_set *s, const char *ckpt, const char *model) {
    char a[PATH_MAX], b[PATH_MAX];
    if (!s->base_model[0] || lmp_world_rank() != 0) return;
    if (realpath(s->base_model, a) && realpath(model, b) && !strcmp(a, b)) return;
    lmp_warn("%s was trained from base model %s; --model is %s: the figures are against that "
             "model's weights, meaningful only if it holds the same ones (base_checksum %016llx)",
             ckpt, s->base_model, model, s->base_checksum);
}

int lmp_an_vs_base(const char *ckpt, const char *model, const char *out, int full, int no_plot) {
    adapter_set s;
    lmp_an_read_adapters(ckpt, &s);
    for (int i = 0; i < s.n; i++)
        if (!s.mod[i].base_weight[0])
            lmp_die_all("%s: %s belongs to a bottleneck adapter or prefix tuning (its prefixes or their "
                        "projection's MLP), which adapt no base weight (vs-base compares LoRA's ΔW with W; "
                        "spectrum and similarity take them)", ckpt, s.mod[i].name);
    check_base(&s, ckpt, model);
    lmp_hf_files st;
    lmp_hf_open(&st, model);
    lmp_grid g;
    lmp_grid_init(&g, MPI_COMM_WORLD);
    double *res = lmp_calloc((size_t)s.n * NCOL * sizeof(double));
    double t0 = lmp_now();
    int maxr = 0;
    for (int i = 0; i < s.n; i++) maxr = s.mod[i].r > maxr ? s.mod[i].r : maxr;
    double *wsv = lmp_calloc((size_t)s.n * maxr * sizeof(double));
    for (int i = 0; i < s.n; i++)
        figures_of(&g, &st, &s.mod[i], model, full, res + (size_t)i * NCOL, wsv + (size_t)i * maxr);
    lmp_hf_close(&st);
    if (lmp_world_rank() == 0) write_vs_base(&s, res, wsv, maxr, ckpt, model, out, full, &g, lmp_now() - t0);
    lmp_an_plot(out, no_plot);
    lmp_grid_free(&g);
    free(res);
    free(wsv);
    lmp_an_free_adapters(&s);
    return 0;
}
