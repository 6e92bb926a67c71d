// similarity.c: `lorampi analyze similarity`: subspace similarity φ between the adapters of
// two checkpoints, module by module (Hu et al. 2021, Eq. 4).
#include "analysis/subcommands.h"
#include "io/h5attr.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

const char *const LMP_AN_VEC_NAMES[3] = {"A", "dw-left", "dw-right"};

// The vectors of module m compared by similarity: n x r, n = in (A, dw-right) or out.
static double *vectors_of(const adapter_mod *m, lmp_an_vec v, int *n) {
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

// Modules of a (or only `only`) that b has too: pairs (ia[p], ib[p]), their count returned.
static int pair_modules(const adapter_set *a, const adapter_set *b, const char *only, int *ia, int *ib) {
    int np = 0;
    char skipped[1024] = "";
    for (int i = 0; i < a->n; i++) {
        int j = -1;
        for (int k = 0; k < b->n; k++) if (!strcmp(a->mod[i].name, b->mod[k].name)) j = k;
        if (only && strcmp(a->mod[i].name, only)) continue;
        if (j < 0) {
            if (only) lmp_die_all("module %s is in %s but not in %s", only, a->path, b->path);
            size_t l = strlen(skipped);
            snprintf(skipped + l, sizeof skipped - l, "%s%s", l ? ", " : "", a->mod[i].name);
            continue;
        }
        if (a->mod[i].in != b->mod[j].in || a->mod[i].out != b->mod[j].out)
            lmp_die_all("module %s is %d x %d in %s but %d x %d in %s", a->mod[i].name, a->mod[i].out,
                        a->mod[i].in, a->path, b->mod[j].out, b->mod[j].in, b->path);
        ia[np] = i;
        ib[np++] = j;
    }
    if (only && !np) lmp_die_all("module %s is not in %s", only, a->path);
    if (!np) lmp_die_all("%s and %s adapt no module in common", a->path, b->path);
    if (skipped[0]) lmp_warn("modules only in %s, skipped: %s", a->path, skipped);
    return np;
}

// φ of every pair, r1 x r2 each, back to back; pairs dealt round-robin over the ranks.
static double *phi_of(const adapter_set *a, const adapter_set *b, const int *ia, const int *ib, int np,
                      lmp_an_vec vk, size_t *total) {
    int rank = lmp_world_rank(), size = lmp_world_size();
    *total = 0;
    for (int p = 0; p < np; p++) *total += (size_t)a->mod[ia[p]].r * b->mod[ib[p]].r;
    double *phi = lmp_calloc(*total * sizeof(double));
    size_t off = 0;
    for (int p = 0; p < np; p++) {
        const adapter_mod *m1 = &a->mod[ia[p]], *m2 = &b->mod[ib[p]];
        if (p % size == rank) {
            int n1, n2;
            double *u1 = vectors_of(m1, vk, &n1), *u2 = vectors_of(m2, vk, &n2);
            lmp_subspace_phi(u1, m1->r, u2, m2->r, n1, phi + off);
            free(u1);
            free(u2);
        }
        off += (size_t)m1->r * m2->r;
    }
    lmp_an_combine(phi, *total);
    return phi;
}

// The baseline the LoRA paper sets φ against: subspaces drawn uniformly at random. For
// independent random i- and j-dimensional subspaces of R^n, E ||U_i^T U_j||_F^2 = i j / n, so
// E φ(i, j) = max(i, j) / n; written beside the measured φ as phi_random (with n).
static void put_random_phi(lmp_an_out *o, hid_t grp, int r1, int r2, int n) {
    double *e = lmp_malloc((size_t)r1 * r2 * sizeof(double));
    for (int i = 0; i < r1; i++)
        for (int j = 0; j < r2; j++) e[(size_t)i * r2 + j] = (double)(i > j ? i + 1 : j + 1) / n;
    lmp_an_put_data(o, grp, "phi_random", e, r1, r2);
    lmp_h5_put_f64(grp, "n", n);
    free(e);
}

static void write_phi(const adapter_set *a, const adapter_set *b, const int *ia, const int *ib, int np,
                      const double *phi, lmp_an_vec vk, const char *out, double secs) {
    lmp_an_out o;
    lmp_an_out_create(&o, out, "similarity", "right singular vectors of A via dgesdd; ΔW via thin QRs");
    lmp_h5_put_str(o.f, "checkpoint1", a->path);
    lmp_h5_put_str(o.f, "checkpoint2", b->path);
    lmp_h5_put_str(o.f, "vectors", LMP_AN_VEC_NAMES[vk]);
    char csvp[LMP_PATH_MAX + 8];
    FILE *csv = lmp_an_csv_open(out, csvp, sizeof csvp);
    fprintf(csv, "module,i,j,phi\n");
    size_t off = 0;
    for (int p = 0; p < np; p++) {
        const adapter_mod *m1 = &a->mod[ia[p]], *m2 = &b->mod[ib[p]];
        hid_t grp = lmp_an_group(&o, m1->name);
        lmp_an_put_data(&o, grp, "phi", phi + off, m1->r, m2->r);
        put_random_phi(&o, grp, m1->r, m2->r, vk == VEC_DW_LEFT ? m1->out : m1->in);
        lmp_h5_put_f64(grp, "r1", m1->r);
        lmp_h5_put_f64(grp, "r2", m2->r);
        for (int i = 0; i < m1->r; i++)
            for (int j = 0; j < m2->r; j++)
                fprintf(csv, "%s,%d,%d,%.17g\n", m1->name, i + 1, j + 1, phi[off + (size_t)i * m2->r + j]);
        lmp_an_group_close(&o, grp, m1->name);
        off += (size_t)m1->r * m2->r;
    }
    lmp_an_csv_close(csv, csvp);
    lmp_an_out_close(&o);
    printf("similarity (%s vectors): %d module%s in %.2f s -> %s, %s\n", LMP_AN_VEC_NAMES[vk], np,
           np > 1 ? "s" : "", secs, out, csvp);
}

int lmp_an_similarity(const char *c1, const char *c2, const char *out, lmp_an_vec vk,
                      const char *only, int no_plot) {
    adapter_set a, b;
    lmp_an_read_adapters(c1, &a);
    lmp_an_read_adapters(c2, &b);
    if (a.base_checksum != b.base_checksum)
        lmp_die_all("%s and %s adapt different base models (base checksums %016llx and %016llx)", c1, c2,
                    a.base_checksum, b.base_checksum);
    int *ia = lmp_malloc((size_t)a.n * sizeof(int)), *ib = lmp_malloc((size_t)a.n * sizeof(int));
    int np = pair_modules(&a, &b, only, ia, ib);
    double t0 = lmp_now();
    size_t total;
    double *phi = phi_of(&a, &b, ia, ib, np, vk, &total);
    if (lmp_world_rank() == 0) write_phi(&a, &b, ia, ib, np, phi, vk, out, lmp_now() - t0);
    lmp_an_plot(out, no_plot);
    free(phi);
    free(ia);
    free(ib);
    lmp_an_free_adapters(&a);
    lmp_an_free_adapters(&b);
    return 0;
}
