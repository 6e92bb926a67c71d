// spectrum.c: `lorampi analyze spectrum`: singular values of every ΔW of one checkpoint or of
// a run's checkpoints, with the effective-rank figures.
#include "analysis/subcommands.h"
#include "io/ckpt_hdf5.h"
#include "io/h5attr.h"
#include "core/util.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **paths;
    int np, nm;               // checkpoints, modules
    size_t per;               // singular values per checkpoint (Σ r)
    double *S;                // np x per
    long long *steps;
} spectra;

// The checkpoints to read: the one given, or every complete one of the run directory.
static char **checkpoint_paths(const char *ckpt, const char *run, int *np) {
    if (!run) {
        char **paths = lmp_malloc(sizeof *paths);
        paths[0] = strdup(ckpt);
        LMP_CHECK(paths[0], "out of memory");
        *np = 1;
        return paths;
    }
    lmp_ckpt_entry *list = lmp_ckpt_list(run, np);
    if (!*np) lmp_die_all("--run %s holds no ckpt-<step>.h5 (or is not a directory)", run);
    char **paths = lmp_malloc((size_t)*np * sizeof *paths);
    for (int i = 0; i < *np; i++) {
        paths[i] = lmp_malloc(LMP_PATH_MAX + 300);
        lmp_path_join(paths[i], LMP_PATH_MAX + 300, run, list[i].name);
    }
    free(list);
    return paths;
}

// Singular values of checkpoint c's modules into x->S (row c), dealt over the ranks.
static void spectra_of(spectra *x, int c, const adapter_set *first, int full, const lmp_grid *g) {
    int rank = lmp_world_rank(), size = lmp_world_size();
    adapter_set s;
    lmp_an_read_adapters(x->paths[c], &s);
    if (s.n != x->nm)
        lmp_die_all("%s has %d adapted modules, %s has %d: not one run", x->paths[c], s.n, x->paths[0], x->nm);
    x->steps[c] = s.step;
    size_t off = (size_t)c * x->per;
    for (int i = 0; i < x->nm; i++) {
        if (strcmp(s.mod[i].name, first->mod[i].name) || s.mod[i].r != first->mod[i].r)
            lmp_die_all("%s: module %s (r %d) differs from %s's %s (r %d)", x->paths[c], s.mod[i].name,
                        s.mod[i].r, x->paths[0], first->mod[i].name, first->mod[i].r);
        if (full || i % size == rank) {  // full: every rank takes part, rank 0 keeps it
            double *sv = lmp_malloc((size_t)s.mod[i].r * sizeof(double));
            lmp_an_dw_svd(&s.mod[i], full, g, sv, NULL, NULL);
            if (!full || rank == 0) memcpy(x->S + off, sv, (size_t)s.mod[i].r * sizeof(double));
            free(sv);
        }
        off += (size_t)s.mod[i].r;
    }
    lmp_an_free_adapters(&s);
}

// Module m's group: one checkpoint, a vector and the figures as attributes; a run, one row
// per step. Its CSV rows too.
static void write_module(const lmp_an_out *o, FILE *csv, const spectra *x, const adapter_mod *m,
                         size_t off, int run) {
    hid_t grp = lmp_an_group(o, m->name);
    int np = x->np;
    double *sv = lmp_malloc((size_t)np * m->r * sizeof(double)), *fig = lmp_malloc((size_t)np * 6 * sizeof(double));
    lmp_rank_stats st;
    for (int c = 0; c < np; c++) {
        memcpy(sv + (size_t)c * m->r, x->S + (size_t)c * x->per + off, (size_t)m->r * sizeof(double));
        lmp_rank_stats_of(sv + (size_t)c * m->r, m->r, &st);
        double row[6] = {st.fro, st.sigma1, st.n90, st.n99, st.stable_rank, st.entropy_rank};
        memcpy(fig + (size_t)c * 6, row, sizeof row);
        fprintf(csv, "%lld,%s,%d,%.17g,%.17g,%d,%d,%.17g,%.17g\n", x->steps[c], m->name, m->r,
                st.fro, st.sigma1, st.n90, st.n99, st.stable_rank, st.entropy_rank);
    }
    lmp_an_put_data(o, grp, "singular_values", sv, run ? np : m->r, run ? m->r : 0);
    if (run) {
        double *stp = lmp_malloc((size_t)np * sizeof(double));
        for (int c = 0; c < np; c++) stp[c] = (double)x->steps[c];
        lmp_an_put_data(o, grp, "steps", stp, np, 0);
        lmp_an_put_data(o, grp, "figures", fig, np, 6);
        lmp_h5_put_str(grp, "figures_columns", "fro, sigma1, n90, n99, stable_rank, entropy_rank");
        free(stp);
    }
    lmp_an_put_stats(grp, &st);  // the last checkpoint's
    lmp_h5_put_f64(grp, "r", m->r);
    lmp_h5_put_f64(grp, "scaling", m->scale);
    lmp_an_group_close(o, grp, m->name);
    free(sv);
    free(fig);
}

static void write_spectra(const spectra *x, const adapter_set *first, const char *ckpt, const char *run,
                          const char *out, int full, double secs) {
    lmp_an_out o;
    lmp_an_out_create(&o, out, "spectrum", full ? "scalapack pdgesvd of the dense ΔW" : "thin QR of B and A^T + r x r SVD");
    lmp_h5_put_str(o.f, "checkpoints", run ? run : ckpt);
    char csvp[LMP_PATH_MAX + 8];
    FILE *csv = lmp_an_csv_open(out, csvp, sizeof csvp);
    fprintf(csv, "step,module,r,fro,sigma1,n90,n99,stable_rank,entropy_rank\n");
    size_t off = 0;
    for (int i = 0; i < x->nm; i++) {
        write_module(&o, csv, x, &first->mod[i], off, run != NULL);
        off += (size_t)first->mod[i].r;
    }
    lmp_an_csv_close(csv, csvp);
    lmp_an_out_close(&o);
    printf("spectrum: %d module%s x %d checkpoint%s in %.2f s -> %s, %s\n", x->nm, x->nm > 1 ? "s" : "",
           x->np, x->np > 1 ? "s" : "", secs, out, csvp);
}

int lmp_an_spectrum(const char *ckpt, const char *run, const char *out, int full, int no_plot) {
    spectra x = {0};
    x.paths = checkpoint_paths(ckpt, run, &x.np);
    lmp_grid g;
    if (full) lmp_grid_init(&g, MPI_COMM_WORLD);
    adapter_set first;
    lmp_an_read_adapters(x.paths[0], &first);
    x.nm = first.n;
    for (int i = 0; i < x.nm; i++) x.per += (size_t)first.mod[i].r;
    x.S = lmp_calloc((size_t)x.np * x.per * sizeof(double));
    x.steps = lmp_malloc((size_t)x.np * sizeof *x.steps);
    double t0 = lmp_now();
    for (int c = 0; c < x.np; c++) spectra_of(&x, c, &first, full, &g);
    lmp_an_combine(x.S, (size_t)x.np * x.per);
    if (lmp_world_rank() == 0) write_spectra(&x, &first, ckpt, run, out, full, lmp_now() - t0);
    lmp_an_plot(out, no_plot);
    if (full) lmp_grid_free(&g);
    lmp_an_free_adapters(&first);
    for (int i = 0; i < x.np; i++) free(x.paths[i]);
    free(x.paths);
    free(x.S);
    free(x.steps);
    return 0;
}
