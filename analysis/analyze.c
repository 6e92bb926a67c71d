// analyze.c: `lorampi analyze spectrum | similarity | vs-base`: read adapters from HDF5
// checkpoints (and W from the base model), compute, write OUT.h5, OUT.csv and plots.
// Per-module work that fits one rank (low-rank SVDs, φ) is dealt round-robin over the ranks
// and summed back exactly (one contributor per value), so results do not depend on the rank
// count; distributed SVDs (W, --full-svd) use every rank in one ScaLAPACK grid.
#include "analysis/analysis.h"
#include "io/ckpt_hdf5.h"
#include "core/config.h"
#include "io/h5attr.h"
#include "io/model_io.h"
#include "core/rng.h"
#include "core/util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB 64  // ScaLAPACK block size

typedef struct {
    char name[LMP_NAME_MAX];  // "transformer.h.0.attn.c_attn"
    int r, in, out;
    double scale;
    double *A, *B;            // (r, in), (out, r)
} adapter_mod;

typedef struct {
    char path[LMP_PATH_MAX];
    long long step;
    unsigned long long base_checksum;
    int n;
    adapter_mod *mod;
} adapter_set;

static int rank_, size_;

// ---------------------------------------------------------------------------------------
// Reading checkpoints (every rank reads the small adapters itself)

typedef struct { adapter_set *s; const char *path; hid_t g; } iter_ctx;

static double *read_matrix(hid_t g, const char *mod, const char *ds, const char *path, int *rows, int *cols) {
    char full[LMP_NAME_MAX + 32];
    snprintf(full, sizeof full, "%s/%s", mod, ds);
    hid_t d = H5Dopen2(g, full, H5P_DEFAULT);
    if (d < 0) lmp_die_all("%s: /adapter/%s is missing", path, full);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    if (H5Sget_simple_extent_ndims(sp) != 2) lmp_die_all("%s: /adapter/%s is not a matrix", path, full);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    *rows = (int)dims[0];
    *cols = (int)dims[1];
    double *x = lmp_malloc((dims[0] * dims[1] + 1) * sizeof(double));
    if (dims[0] > 0 && dims[1] > 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        lmp_die_all("%s: cannot read /adapter/%s (checksum or truncation)", path, full);
    H5Sclose(sp);
    H5Dclose(d);
    return x;
}

static herr_t add_module(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    iter_ctx *x = op;
    adapter_set *s = x->s;
    s->mod = realloc(s->mod, (size_t)(s->n + 1) * sizeof *s->mod);
    LMP_CHECK(s->mod, "out of memory");
    adapter_mod *m = &s->mod[s->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    int ra, rb;
    m->A = read_matrix(g, name, "lora_A", x->path, &ra, &m->in);
    m->B = read_matrix(g, name, "lora_B", x->path, &m->out, &rb);
    if (ra != rb) lmp_die_all("%s: %s has lora_A with %d rows but lora_B with %d columns", x->path, name, ra, rb);
    m->r = ra;
    if (m->r == 0) lmp_die_all("%s: %s has r = 0 (no adapter to analyse)", x->path, name);
    hid_t mg = H5Gopen2(g, name, H5P_DEFAULT);
    if (mg < 0 || lmp_h5_get(mg, "scaling", H5T_NATIVE_DOUBLE, &m->scale))
        lmp_die_all("%s: /adapter/%s has no \"scaling\" attribute", x->path, name);
    H5Gclose(mg);
    return 0;
}

static void read_adapters(const char *path, adapter_set *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) lmp_die_all("cannot open checkpoint %s (missing, not HDF5, truncated or corrupt)", path);
    if (lmp_h5_get(f, "step", H5T_NATIVE_LLONG, &s->step) ||
        lmp_h5_get(f, "base_checksum", H5T_NATIVE_ULLONG, &s->base_checksum))
        lmp_die_all("%s is not a lorampi checkpoint (no step/base_checksum attributes)", path);
    if (H5Lexists(f, "adapter", H5P_DEFAULT) <= 0)
        lmp_die_all("%s holds no /adapter group (a full fine-tuning checkpoint has no ΔW = BA)", path);
    hid_t g = H5Gopen2(f, "adapter", H5P_DEFAULT);
    iter_ctx x = {s, path, g};
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, add_module, &x);
    H5Gclose(g);
    H5Fclose(f);
    if (!s->n) lmp_die_all("%s: /adapter holds no modules", path);
}

static void free_adapters(adapter_set *s) {
    for (int i = 0; i < s->n; i++) { free(s->mod[i].A); free(s->mod[i].B); }
    free(s->mod);
}

// ---------------------------------------------------------------------------------------
// Output helpers (rank 0)

static hid_t out_create(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) lmp_die("cannot create %s", path);
    return f;
}
static void put_data(hid_t o, const char *name, const double *x, int rows, int cols) {
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(cols > 0 ? 2 : 1, dims, NULL);
    hid_t d = H5Dcreate2(o, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0) lmp_die("cannot create dataset %s", name);
    LMP_CHECK_H5(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x));
    H5Dclose(d);
    H5Sclose(sp);
}
static void put_stats(hid_t g, const lmp_rank_stats *st) {
    lmp_h5_put_f64(g, "fro", st->fro);
    lmp_h5_put_f64(g, "sigma1", st->sigma1);
    lmp_h5_put_f64(g, "n90", st->n90);
    lmp_h5_put_f64(g, "n99", st->n99);
    lmp_h5_put_f64(g, "stable_rank", st->stable_rank);
    lmp_h5_put_f64(g, "entropy_rank", st->entropy_rank);
}
static FILE *csv_open(const char *out_h5, char *path, size_t n) {
    snprintf(path, n, "%s", out_h5);
    char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/')) *dot = 0;
    strncat(path, ".csv", n - strlen(path) - 1);
    FILE *f = fopen(path, "w");
    if (!f) lmp_die("cannot write %s", path);
    return f;
}
static void root_attrs(hid_t f, const char *command, const char *method) {
    lmp_h5_put_str(f, "lorampi_version", LMP_VERSION);
    lmp_h5_put_str(f, "analysis", command);
    lmp_h5_put_str(f, "svd", method);
}

// Plots through analysis/plot.py (python3-matplotlib); a missing Python only warns.
static void plot(const char *out_h5, int no_plot) {
    if (no_plot || rank_ != 0) return;
    const char *script = getenv("LORAMPI_PLOT_SCRIPT");
    char cmd[3 * LMP_PATH_MAX];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script ? script : LMP_SOURCE_DIR "/analysis/plot.py", out_h5);
    if (system(cmd) != 0) lmp_warn("plotting failed (%s); the HDF5 and CSV results are complete", cmd);
}

// Sums a buffer over all ranks: each value has exactly one non-zero contributor, so the sum
// is exact and the result independent of the rank count.
static void combine(double *x, size_t n) {
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

// Singular values of ΔW of module m (r of them) on the calling rank(s): low-rank path, or
// the distributed pdgesvd of the dense ΔW (every rank must call it then).
static void dw_svd(const adapter_mod *m, int full, const lmp_grid *g, double *S, double *U, double *V) {
    if (!full) {
        lmp_lowrank_svd(m->B, m->A, m->out, m->in, m->r, m->scale, S, U, V);
        return;
    }
    lmp_dmat d;
    lmp_dmat_alloc(&d, g, m->out, m->in, NB);
    int lld = d.mloc > 1 ? d.mloc : 1;
    for (int lj = 0; lj < d.nloc; lj++) {
        int gj = lmp_dmat_gcol(&d, g, lj);
        for (int li = 0; li < d.mloc; li++) {
            int gi = lmp_dmat_grow(&d, g, li);
            double v = 0;
            for (int k = 0; k < m->r; k++) v += m->B[(size_t)gi * m->r + k] * m->A[(size_t)k * m->in + gj];
            d.a[(size_t)lj * lld + li] = m->scale * v;
        }
    }
    int mn = m->out < m->in ? m->out : m->in;
    double *all = lmp_malloc((size_t)mn * sizeof(double));
    lmp_pdsvd(g, &d, all, (U || V) ? m->r : 0, U, V);
    memcpy(S, all, (size_t)m->r * sizeof(double));
    free(all);
    lmp_dmat_free(&d);
}

// ---------------------------------------------------------------------------------------
// spectrum

static int spectrum(const char *ckpt, const char *run, const char *out, int full, int no_plot) {
    char **paths = NULL;
    int np = 0;
    if (run) {
        lmp_ckpt_entry *list = lmp_ckpt_list(run, &np);
        if (!np) lmp_die_all("--run %s holds no ckpt-<step>.h5 (or is not a directory)", run);
        paths = lmp_malloc((size_t)np * sizeof *paths);
        for (int i = 0; i < np; i++) {
            paths[i] = lmp_malloc(LMP_PATH_MAX + 300);
            snprintf(paths[i], LMP_PATH_MAX + 300, "%s/%s", run, list[i].name);
        }
        free(list);
    } else {
        paths = lmp_malloc(sizeof *paths);
        paths[0] = strdup(ckpt);
        np = 1;
    }
    lmp_grid g;
    if (full) lmp_grid_init(&g, MPI_COMM_WORLD);
    adapter_set first;
    read_adapters(paths[0], &first);
    int nm = first.n;
    size_t per = 0;
    for (int i = 0; i < nm; i++) per += (size_t)first.mod[i].r;
    double *S = lmp_calloc((size_t)np * per * sizeof(double));
    long long *steps = lmp_malloc((size_t)np * sizeof *steps);
    double t0 = lmp_now();
    for (int c = 0; c < np; c++) {
        adapter_set s;
        read_adapters(paths[c], &s);
        if (s.n != nm) lmp_die_all("%s has %d adapted modules, %s has %d: not one run", paths[c], s.n, paths[0], nm);
        steps[c] = s.step;
        size_t off = (size_t)c * per;
        for (int i = 0; i < nm; i++) {
            if (strcmp(s.mod[i].name, first.mod[i].name) || s.mod[i].r != first.mod[i].r)
                lmp_die_all("%s: module %s (r %d) differs from %s's %s (r %d)", paths[c], s.mod[i].name,
                            s.mod[i].r, paths[0], first.mod[i].name, first.mod[i].r);
            if (full || i % size_ == rank_) {  // full: every rank takes part, rank 0 keeps it
                double *sv = lmp_malloc((size_t)s.mod[i].r * sizeof(double));
                dw_svd(&s.mod[i], full, &g, sv, NULL, NULL);
                if (!full || rank_ == 0) memcpy(S + off, sv, (size_t)s.mod[i].r * sizeof(double));
                free(sv);
            }
            off += (size_t)s.mod[i].r;
        }
        free_adapters(&s);
    }
    combine(S, (size_t)np * per);
    double secs = lmp_now() - t0;
    if (rank_ == 0) {
        hid_t f = out_create(out);
        root_attrs(f, "spectrum", full ? "scalapack pdgesvd of the dense ΔW" : "thin QR of B and A^T + r x r SVD");
        lmp_h5_put_str(f, "checkpoints", run ? run : ckpt);
        char csvp[LMP_PATH_MAX + 8];
        FILE *csv = csv_open(out, csvp, sizeof csvp);
        fprintf(csv, "step,module,r,fro,sigma1,n90,n99,stable_rank,entropy_rank\n");
        size_t off = 0;
        for (int i = 0; i < nm; i++) {
            adapter_mod *m = &first.mod[i];
            hid_t grp = H5Gcreate2(f, m->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            double *sv = lmp_malloc((size_t)np * m->r * sizeof(double)), *fig = lmp_malloc((size_t)np * 6 * sizeof(double));
            lmp_rank_stats st;
            for (int c = 0; c < np; c++) {
                memcpy(sv + (size_t)c * m->r, S + (size_t)c * per + off, (size_t)m->r * sizeof(double));
                lmp_rank_stats_of(sv + (size_t)c * m->r, m->r, &st);
                double row[6] = {st.fro, st.sigma1, st.n90, st.n99, st.stable_rank, st.entropy_rank};
                memcpy(fig + (size_t)c * 6, row, sizeof row);
                fprintf(csv, "%lld,%s,%d,%.17g,%.17g,%d,%d,%.17g,%.17g\n", steps[c], m->name, m->r,
                        st.fro, st.sigma1, st.n90, st.n99, st.stable_rank, st.entropy_rank);
            }
            // One checkpoint: a vector and the figures as attributes; a run: one row per step.
            put_data(grp, "singular_values", sv, run ? np : m->r, run ? m->r : 0);
            if (run) {
                double *stp = lmp_malloc((size_t)np * sizeof(double));
                for (int c = 0; c < np; c++) stp[c] = (double)steps[c];
                put_data(grp, "steps", stp, np, 0);
                put_data(grp, "figures", fig, np, 6);
                lmp_h5_put_str(grp, "figures_columns", "fro, sigma1, n90, n99, stable_rank, entropy_rank");
                free(stp);
            }
            put_stats(grp, &st);  // the last checkpoint's
            lmp_h5_put_f64(grp, "r", m->r);
            lmp_h5_put_f64(grp, "scaling", m->scale);
            H5Gclose(grp);
            free(sv);
            free(fig);
            off += (size_t)m->r;
        }
        fclose(csv);
        H5Fclose(f);
        printf("spectrum: %d module%s x %d checkpoint%s in %.2f s -> %s, %s\n", nm, nm > 1 ? "s" : "", np,
               np > 1 ? "s" : "", secs, out, csvp);
    }
    plot(out, no_plot);
    if (full) lmp_grid_free(&g);
    free_adapters(&first);
    for (int i = 0; i < np; i++) free(paths[i]);
    free(paths);
    free(S);
    free(steps);
    return 0;
}

// ---------------------------------------------------------------------------------------
// similarity

typedef enum { VEC_A = 0, VEC_DW_LEFT, VEC_DW_RIGHT } vec_kind;
static const char *VEC_NAMES[] = {"A", "dw-left", "dw-right"};

// The vectors of module m compared by similarity: n x r, n = in (A, dw-right) or out.
static double *vectors_of(const adapter_mod *m, vec_kind v, int *n) {
    double *S = lmp_malloc((size_t)m->r * sizeof(double));
    double *X;
    if (v == VEC_A) {
        *n = m->in;
        X = lmp_malloc((size_t)m->in * m->r * sizeof(double));
        lmp_right_singular(m->A, m->r, m->in, S, X);
    } else if (v == VEC_DW_LEFT) {
        *n = m->out;
        X = lmp_malloc((size_t)m->out * m->r * sizeof(double));
        lmp_lowrank_svd(m->B, m->A, m->out, m->in, m->r, m->scale, S, X, NULL);
    } else {
        *n = m->in;
        X = lmp_malloc((size_t)m->in * m->r * sizeof(double));
        lmp_lowrank_svd(m->B, m->A, m->out, m->in, m->r, m->scale, S, NULL, X);
    }
    free(S);
    return X;
}

static int similarity(const char *c1, const char *c2, const char *out, vec_kind vk, const char *only, int no_plot) {
    adapter_set a, b;
    read_adapters(c1, &a);
    read_adapters(c2, &b);
    if (a.base_checksum != b.base_checksum)
        lmp_die_all("%s and %s adapt different base models (base checksums %016llx and %016llx)", c1, c2,
                    a.base_checksum, b.base_checksum);
    int *pair = lmp_malloc((size_t)a.n * sizeof(int)), np = 0;
    char skipped[1024] = "";
    for (int i = 0; i < a.n; i++) {
        int j = -1;
        for (int k = 0; k < b.n; k++) if (!strcmp(a.mod[i].name, b.mod[k].name)) j = k;
        if (only && strcmp(a.mod[i].name, only)) continue;
        if (j < 0) {
            if (only) lmp_die_all("module %s is in %s but not in %s", only, c1, c2);
            size_t l = strlen(skipped);
            snprintf(skipped + l, sizeof skipped - l, "%s%s", l ? ", " : "", a.mod[i].name);
            continue;
        }
        if (a.mod[i].in != b.mod[j].in || a.mod[i].out != b.mod[j].out)
            lmp_die_all("module %s is %d x %d in %s but %d x %d in %s", a.mod[i].name, a.mod[i].out, a.mod[i].in,
                        c1, b.mod[j].out, b.mod[j].in, c2);
        pair[np++] = i;
    }
    if (only && !np) lmp_die_all("module %s is not in %s", only, c1);
    if (!np) lmp_die_all("%s and %s adapt no module in common", c1, c2);
    if (skipped[0]) lmp_warn("modules only in %s, skipped: %s", c1, skipped);
    size_t total = 0;
    for (int p = 0; p < np; p++) {
        int j = 0;
        while (strcmp(b.mod[j].name, a.mod[pair[p]].name)) j++;
        total += (size_t)a.mod[pair[p]].r * b.mod[j].r;
    }
    double *phi = lmp_calloc(total * sizeof(double));
    double t0 = lmp_now();
    size_t off = 0;
    int *bj = lmp_malloc((size_t)np * sizeof(int));
    for (int p = 0; p < np; p++) {
        adapter_mod *m1 = &a.mod[pair[p]];
        int j = 0;
        while (strcmp(b.mod[j].name, m1->name)) j++;
        bj[p] = j;
        adapter_mod *m2 = &b.mod[j];
        if (p % size_ == rank_) {
            int n1, n2;
            double *u1 = vectors_of(m1, vk, &n1), *u2 = vectors_of(m2, vk, &n2);
            lmp_subspace_phi(u1, m1->r, u2, m2->r, n1, phi + off);
            free(u1);
            free(u2);
        }
        off += (size_t)m1->r * m2->r;
    }
    combine(phi, total);
    if (rank_ == 0) {
        hid_t f = out_create(out);
        root_attrs(f, "similarity", "right singular vectors of A via dgesdd; ΔW via thin QRs");
        lmp_h5_put_str(f, "checkpoint1", c1);
        lmp_h5_put_str(f, "checkpoint2", c2);
        lmp_h5_put_str(f, "vectors", VEC_NAMES[vk]);
        char csvp[LMP_PATH_MAX + 8];
        FILE *csv = csv_open(out, csvp, sizeof csvp);
        fprintf(csv, "module,i,j,phi\n");
        off = 0;
        for (int p = 0; p < np; p++) {
            adapter_mod *m1 = &a.mod[pair[p]], *m2 = &b.mod[bj[p]];
            hid_t grp = H5Gcreate2(f, m1->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            put_data(grp, "phi", phi + off, m1->r, m2->r);
            lmp_h5_put_f64(grp, "r1", m1->r);
            lmp_h5_put_f64(grp, "r2", m2->r);
            for (int i = 0; i < m1->r; i++)
                for (int j = 0; j < m2->r; j++)
                    fprintf(csv, "%s,%d,%d,%.17g\n", m1->name, i + 1, j + 1, phi[off + (size_t)i * m2->r + j]);
            H5Gclose(grp);
            off += (size_t)m1->r * m2->r;
        }
        fclose(csv);
        H5Fclose(f);
        printf("similarity (%s vectors): %d module%s in %.2f s -> %s, %s\n", VEC_NAMES[vk], np, np > 1 ? "s" : "",
               lmp_now() - t0, out, csvp);
    }
    plot(out, no_plot);
    free(phi);
    free(pair);
    free(bj);
    free_adapters(&a);
    free_adapters(&b);
    return 0;
}

// ---------------------------------------------------------------------------------------
// vs-base

// W of module m as a distributed out x in matrix (ΔW's orientation): HF stores Conv1D
// weights (in, out), so X[i][j] = stored[j][c0 + i]; q/k/v modules take their column block.
// Each rank reads the stored rows of its column blocks only.
static void load_w(const lmp_grid *g, lmp_dmat *X, const lmp_st_file *st, const adapter_mod *m, const char *model) {
    char base[LMP_NAME_MAX];
    snprintf(base, sizeof base, "%s", m->name + (strncmp(m->name, "transformer.", 12) ? 0 : 12));
    int c0 = 0;
    size_t l = strlen(base);
    if (l > 2 && base[l - 2] == '.' && strchr("qkv", base[l - 1])) {
        c0 = (int)(strchr("qkv", base[l - 1]) - "qkv") * m->out;
        base[l - 2] = 0;
    }
    char name[LMP_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.weight", base);
    const lmp_st_tensor *t = lmp_st_find(st, name);
    if (!t) {
        snprintf(name, sizeof name, "transformer.%s.weight", base);
        t = lmp_st_find(st, name);
    }
    if (!t) lmp_die_all("%s has no tensor %s.weight for module %s", model, base, m->name);
    if (t->ndim != 2 || t->shape[0] != m->in || t->shape[1] < c0 + m->out)
        lmp_die_all("%s: %s has shape (%lld, %lld), module %s needs (%d, >= %d)", model, name,
                    (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), m->name, m->in, c0 + m->out);
    lmp_dmat_alloc(X, g, m->out, m->in, NB);
    int lld = X->mloc > 1 ? X->mloc : 1;
    float *rows = lmp_malloc((size_t)NB * m->out * sizeof(float));
    for (int lj0 = 0; lj0 < X->nloc; lj0 += NB) {
        int gj0 = lmp_dmat_gcol(X, g, lj0), nr = X->nloc - lj0 < NB ? X->nloc - lj0 : NB;
        lmp_st_read_block(st, t, gj0, nr, c0, m->out, rows);
        for (int k = 0; k < nr; k++)
            for (int li = 0; li < X->mloc; li++)
                X->a[(size_t)(lj0 + k) * lld + li] = rows[(size_t)k * m->out + lmp_dmat_grow(X, g, li)];
    }
    free(rows);
}

static int vs_base(const char *ckpt, const char *model, const char *out, int full, int no_plot) {
    adapter_set s;
    read_adapters(ckpt, &s);
    char stp[LMP_PATH_MAX + 32];
    snprintf(stp, sizeof stp, "%s/model.safetensors", model);
    lmp_st_file st;
    lmp_st_open(&st, stp);
    lmp_grid g;
    lmp_grid_init(&g, MPI_COMM_WORLD);
    enum { W_FRO, DW_FRO, P_DW, P_W, P_RAND, AMP, NCOL };
    double *res = lmp_calloc((size_t)s.n * NCOL * sizeof(double));
    double t0 = lmp_now();
    int maxr = 0;
    for (int i = 0; i < s.n; i++) maxr = s.mod[i].r > maxr ? s.mod[i].r : maxr;
    double *wsv = lmp_calloc((size_t)s.n * maxr * sizeof(double));
    for (int i = 0; i < s.n; i++) {
        adapter_mod *m = &s.mod[i];
        int r = m->r;
        double *S = lmp_malloc((size_t)r * sizeof(double)), *U = lmp_malloc((size_t)m->out * r * sizeof(double));
        double *V = lmp_malloc((size_t)m->in * r * sizeof(double));
        dw_svd(m, full, &g, S, U, V);
        lmp_dmat X, Xc;
        load_w(&g, &X, &st, m, model);
        double *row = res + (size_t)i * NCOL;
        row[W_FRO] = lmp_pd_fro(&g, &X);
        double e = 0;
        for (int k = 0; k < r; k++) e += S[k] * S[k];
        row[DW_FRO] = sqrt(e);
        row[P_DW] = lmp_pd_proj_norm(&g, &X, U, V, r);
        // Random r-dimensional subspaces (Gaussian, orthonormalised, seeded by the module).
        uint64_t seed = lmp_hash_str(m->name);
        for (size_t k = 0; k < (size_t)m->out * r; k++) U[k] = lmp_rng_normal(seed, 1, k);
        for (size_t k = 0; k < (size_t)m->in * r; k++) V[k] = lmp_rng_normal(seed, 2, k);
        lmp_orthonormalize(U, m->out, r);
        lmp_orthonormalize(V, m->in, r);
        row[P_RAND] = lmp_pd_proj_norm(&g, &X, U, V, r);
        // W's own top-r directions: ‖U_W^T W V_W‖_F = sqrt(σ1² + ... + σr²) exactly, so only
        // W's singular values are needed, several times cheaper in pdgesvd than its vectors.
        lmp_dmat_alloc(&Xc, &g, m->out, m->in, NB);
        memcpy(Xc.a, X.a, (size_t)(X.mloc > 1 ? X.mloc : 1) * (X.nloc > 0 ? X.nloc : 1) * sizeof(double));
        int mn = m->out < m->in ? m->out : m->in;
        double *Sw = lmp_malloc((size_t)mn * sizeof(double));
        lmp_pdsvd(&g, &Xc, Sw, 0, NULL, NULL);
        double ew = 0;
        for (int k = 0; k < r && k < mn; k++) ew += Sw[k] * Sw[k];
        row[P_W] = sqrt(ew);
        memcpy(wsv + (size_t)i * maxr, Sw, (size_t)r * sizeof(double));
        row[AMP] = row[P_DW] > 0 ? row[DW_FRO] / row[P_DW] : INFINITY;
        lmp_dmat_free(&X);
        lmp_dmat_free(&Xc);
        free(S); free(U); free(V); free(Sw);
    }
    lmp_st_close(&st);
    if (rank_ == 0) {
        hid_t f = out_create(out);
        root_attrs(f, "vs-base", full ? "scalapack pdgesvd (ΔW and W)" : "thin QR (ΔW), scalapack pdgesvd (W)");
        lmp_h5_put_str(f, "checkpoint", ckpt);
        lmp_h5_put_str(f, "model", model);
        char csvp[LMP_PATH_MAX + 8];
        FILE *csv = csv_open(out, csvp, sizeof csvp);
        fprintf(csv, "module,r,w_fro,dw_fro,proj_dw,proj_w,proj_random,amplification\n");
        for (int i = 0; i < s.n; i++) {
            double *row = res + (size_t)i * NCOL;
            hid_t grp = H5Gcreate2(f, s.mod[i].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            static const char *names[NCOL] = {"w_fro", "dw_fro", "proj_dw", "proj_w", "proj_random", "amplification"};
            for (int k = 0; k < NCOL; k++) lmp_h5_put_f64(grp, names[k], row[k]);
            lmp_h5_put_f64(grp, "r", s.mod[i].r);
            put_data(grp, "w_singular_values", wsv + (size_t)i * maxr, s.mod[i].r, 0);
            put_data(grp, "projections", row + P_DW, 3, 0);
            fprintf(csv, "%s,%d,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g\n", s.mod[i].name, s.mod[i].r, row[W_FRO],
                    row[DW_FRO], row[P_DW], row[P_W], row[P_RAND], row[AMP]);
            H5Gclose(grp);
        }
        fclose(csv);
        H5Fclose(f);
        printf("vs-base: %d module%s on a %d x %d grid in %.2f s -> %s, %s\n", s.n, s.n > 1 ? "s" : "", g.nprow,
               g.npcol, lmp_now() - t0, out, csvp);
    }
    plot(out, no_plot);
    lmp_grid_free(&g);
    free(res);
    free(wsv);
    free_adapters(&s);
    return 0;
}

// ---------------------------------------------------------------------------------------

static int usage(const char *msg) {
    if (rank_ == 0)
        fprintf(stderr, "lorampi analyze: %s\nusage:\n"
                "  lorampi analyze spectrum (CKPT | --run DIR) --out OUT.h5 [--full-svd] [--no-plot]\n"
                "  lorampi analyze similarity CKPT1 CKPT2 --out OUT.h5 [--vectors A|dw-left|dw-right] [--module NAME] [--no-plot]\n"
                "  lorampi analyze vs-base CKPT --model HF_DIR --out OUT.h5 [--full-svd] [--no-plot]\n", msg);
    return LMP_EXIT_USAGE;
}

int lmp_analyze_main(int argc, char **argv) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    if (argc < 1) return usage("give a subcommand");
    const char *cmd = argv[0], *out = NULL, *run = NULL, *model = NULL, *only = NULL, *pos[2] = {NULL, NULL};
    int full = 0, no_plot = 0, npos = 0;
    vec_kind vk = VEC_A;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--out") && more) out = argv[++i];
        else if (!strcmp(argv[i], "--run") && more) run = argv[++i];
        else if (!strcmp(argv[i], "--model") && more) model = argv[++i];
        else if (!strcmp(argv[i], "--module") && more) only = argv[++i];
        else if (!strcmp(argv[i], "--full-svd")) full = 1;
        else if (!strcmp(argv[i], "--no-plot")) no_plot = 1;
        else if (!strcmp(argv[i], "--vectors") && more) {
            i++;
            int k = -1;
            for (int v = 0; v < 3; v++) if (!strcmp(argv[i], VEC_NAMES[v])) k = v;
            if (k < 0) return usage("--vectors: expected A, dw-left or dw-right");
            vk = (vec_kind)k;
        } else if (argv[i][0] == '-') return usage("unknown option or missing value");
        else if (npos < 2) pos[npos++] = argv[i];
        else return usage("too many checkpoints");
    }
    if (!out) return usage("give --out OUT.h5");
    int up = 1;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &up, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (rank_ == 0) printf("analyze: %d ranks up\n", up);
    if (!strcmp(cmd, "spectrum")) {
        if (!!run == !!pos[0] || npos > 1) return usage("spectrum: give one CKPT or --run DIR");
        return spectrum(pos[0], run, out, full, no_plot);
    }
    if (!strcmp(cmd, "similarity")) {
        if (npos != 2) return usage("similarity: give two checkpoints");
        return similarity(pos[0], pos[1], out, vk, only, no_plot);
    }
    if (!strcmp(cmd, "vs-base")) {
        if (npos != 1 || !model) return usage("vs-base: give CKPT and --model HF_DIR");
        return vs_base(pos[0], model, out, full, no_plot);
    }
    return usage("unknown subcommand (spectrum, similarity, vs-base)");
}
