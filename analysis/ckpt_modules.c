// ckpt_modules.c: the adapters of a checkpoint for the analysis, through the checkpoint
// reader (io/ckpt_read.h): names, shapes and scaling come from each module's record.
#include "analysis/subcommands.h"
#include "io/ckpt_read.h"
#include "core/util.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

// Stops every rank when any has an error: the lowest such rank's message, printed once. A
// file error seen by one rank alone (a bad read) must not leave the others waiting.
static void die_if_any(const char *err) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int who = err[0] ? rank : size;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (who == size) return;
    char msg[2048];
    if (rank == who) lmp_fmt(msg, sizeof msg, "%s", err);
    LMP_CHECK_MPI(MPI_Bcast(msg, sizeof msg, MPI_CHAR, who, MPI_COMM_WORLD));
    lmp_die_all("%s", msg);
}

// A NaN or Inf in an adapter would reach LAPACK as a bare error code: named here instead.
static void nonfinite(const char *path, const char *mod, const char *what, const double *x, int64_t n,
                      char *err, size_t errn) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            snprintf(err, errn, "%s: %s/%s holds %s at element %lld: the adapter is not finite (a run "
                     "that diverged?)", path, mod, what, isnan(x[i]) ? "NaN" : "Inf", (long long)i);
            return;
        }
}

// A and B of module c (record attributes read) into m; 0, or -1 with err.
static int read_module(lmp_ckpt_reader *rd, const lmp_ckpt_module *c, adapter_mod *m, char *err, size_t errn) {
    memset(m, 0, sizeof *m);
    lmp_fmt(m->name, sizeof m->name, "%s", c->name);
    lmp_fmt(m->base_weight, sizeof m->base_weight, "%s", c->base_weight);
    m->in = (int)c->in;
    m->out = (int)c->out;
    m->out_offset = (int)c->out_offset;
    m->scale = c->scale;
    char path[LMP_NAME_MAX + 64];
    int64_t ra, rb, rows, cols;
    if (lmp_ckpt_read_matrix(rd, lmp_fmt(path, sizeof path, "adapter/%s/lora_A", c->name), -1, c->in,
                             &m->A, &ra, &cols, err, errn) ||
        lmp_ckpt_read_matrix(rd, lmp_fmt(path, sizeof path, "adapter/%s/lora_B", c->name), c->out, -1,
                             &m->B, &rows, &rb, err, errn))
        return -1;
    if (ra != rb)
        snprintf(err, errn, "%s: %s has lora_A with %lld rows but lora_B with %lld columns", rd->path,
                 c->name, (long long)ra, (long long)rb);
    else if (ra == 0)
        snprintf(err, errn, "%s: %s has r = 0 (no adapter to analyse)", rd->path, c->name);
    else if (ra != c->r)
        snprintf(err, errn, "%s: %s has lora_A with %lld rows, but its attribute r = %lld", rd->path,
                 c->name, (long long)ra, (long long)c->r);
    else if (ra > (c->in < c->out ? c->in : c->out))  // the SVD of ΔW holds at most min(in, out)
        snprintf(err, errn, "%s: %s has r = %lld, above min(in, out) of its %lld x %lld matrix", rd->path,
                 c->name, (long long)ra, (long long)c->out, (long long)c->in);
    m->r = (int)ra;
    if (!err[0]) nonfinite(rd->path, c->name, "lora_A", m->A, ra * c->in, err, errn);
    if (!err[0]) nonfinite(rd->path, c->name, "lora_B", m->B, c->out * ra, err, errn);
    return err[0] ? -1 : 0;
}

static double *eye(int m) {
    double *x = lmp_calloc((size_t)m * m * sizeof(double));
    for (int i = 0; i < m; i++) x[(size_t)i * m + i] = 1.0;
    return x;
}

static double *copy(const double *x, size_t n) {
    double *y = lmp_malloc(n * sizeof(double));
    memcpy(y, x, n * sizeof(double));
    return y;
}

// A bottleneck adapter (houlsby, parallel) as three matrices in ΔW's form scale·B·A, named
// after its module: <name>.down = W_down (m, C) (A = W_down, B = I), <name>.up = W_up (C, m)
// (A = I, B = W_up), <name>.up_down = scale·W_up·W_down (C, C), the branch's linear part. They
// adapt no base weight (base_weight ""). Fills m[0..3); 0, or -1 with err.
static int read_bottleneck(lmp_ckpt_reader *rd, const lmp_ckpt_module *c, adapter_mod *m, char *err, size_t errn) {
    char path[LMP_NAME_MAX + 64];
    double *D = NULL, *U = NULL;
    int64_t rows, cols;
    if (c->r < 1 || c->r > c->in || c->in != c->out)
        return snprintf(err, errn, "%s: %s: a bottleneck of size %lld on hidden size %lld x %lld (expected "
                        "1 <= size <= hidden size)", rd->path, c->name, (long long)c->r, (long long)c->in,
                        (long long)c->out), -1;
    if (lmp_ckpt_read_matrix(rd, lmp_fmt(path, sizeof path, "adapter/%s/down.weight", c->name), c->r, c->in,
                             &D, &rows, &cols, err, errn) ||
        lmp_ckpt_read_matrix(rd, lmp_fmt(path, sizeof path, "adapter/%s/up.weight", c->name), c->out, c->r,
                             &U, &rows, &cols, err, errn)) {
        free(D);
        return -1;
    }
    nonfinite(rd->path, c->name, "down.weight", D, c->r * c->in, err, errn);
    if (!err[0]) nonfinite(rd->path, c->name, "up.weight", U, c->out * c->r, err, errn);
    static const char *LEAF[3] = {"down", "up", "up_down"};
    int mm = (int)c->r, C = (int)c->in;
    for (int k = 0; k < 3; k++) {
        memset(&m[k], 0, sizeof m[k]);
        lmp_fmt(m[k].name, sizeof m[k].name, "%s.%s", c->name, LEAF[k]);
        m[k].r = mm;
        m[k].in = k == 1 ? mm : C;
        m[k].out = k == 0 ? mm : C;
        m[k].scale = k == 2 ? c->scale : 1.0;
    }
    m[0].A = copy(D, (size_t)mm * C);
    m[0].B = eye(mm);
    m[1].A = eye(mm);
    m[1].B = copy(U, (size_t)C * mm);
    m[2].A = D;
    m[2].B = U;
    return err[0] ? -1 : 0;
}

// W (rows, cols) as one matrix named `name` in ΔW's form B·A of rank min(rows, cols) (A = W,
// B = I when rows <= cols, else A = I, B = W), adapting no base weight; takes W.
static void as_matrix(adapter_mod *m, const char *name, double *W, int rows, int cols) {
    int wide = rows <= cols;
    memset(m, 0, sizeof *m);
    lmp_fmt(m->name, sizeof m->name, "%s", name);
    m->in = cols;
    m->out = rows;
    m->r = wide ? rows : cols;
    m->scale = 1.0;
    m->A = wide ? W : eye(cols);
    m->B = wide ? eye(rows) : W;
}

// A prefix-tuning module (adapters/prefix.h) as one matrix named after it: its prefixes P
// (p, 2 KV width). 0, or -1 with err.
static int read_prefix(lmp_ckpt_reader *rd, const lmp_ckpt_module *c, adapter_mod *m, char *err, size_t errn) {
    char path[LMP_NAME_MAX + 64];
    double *P = NULL;
    int64_t rows, cols;
    if (lmp_ckpt_read_matrix(rd, lmp_fmt(path, sizeof path, "adapter/%s/prompt_embeddings", c->name), c->r,
                             c->out, &P, &rows, &cols, err, errn))
        return -1;
    nonfinite(rd->path, c->name, "prompt_embeddings", P, rows * cols, err, errn);
    as_matrix(m, c->name, P, (int)rows, (int)cols);
    return err[0] ? -1 : 0;
}

// Prefix projection's MLP (adapters/prefix.h: r = H, in = D, out = L 2 D) as its two
// matrices, <name>.transform.0 = W1 (H, D) and <name>.transform.2 = W2 (L 2 D, H). Fills
// m[0..2); 0, or -1 with err.
static int read_encoder(lmp_ckpt_reader *rd, const lmp_ckpt_module *c, adapter_mod *m, char *err, size_t errn) {
    static const char *LEAF[2] = {"transform.0", "transform.2"};
    int64_t want[2][2] = {{c->r, c->in}, {c->out, c->r}};
    for (int k = 0; k < 2; k++) {
        char path[LMP_NAME_MAX + 64], name[LMP_NAME_MAX + 32];
        double *W = NULL;
        int64_t rows, cols;
        if (lmp_ckpt_read_matrix(rd, lmp_fmt(path, sizeof path, "adapter/%s/%s.weight", c->name, LEAF[k]),
                                 want[k][0], want[k][1], &W, &rows, &cols, err, errn))
            return -1;
        nonfinite(rd->path, c->name, LEAF[k], W, rows * cols, err, errn);
        as_matrix(&m[k], lmp_fmt(name, sizeof name, "%s.%s", c->name, LEAF[k]), W, (int)rows, (int)cols);
        if (err[0]) return -1;
    }
    return 0;
}

// Header and modules of an open checkpoint into s; 0, or -1 with err.
static int read_set(lmp_ckpt_reader *rd, adapter_set *s, char *err, size_t errn) {
    lmp_ckpt_header h;
    int rc = lmp_ckpt_read_header(rd, &h, err, errn);
    s->step = h.step;
    s->base_checksum = h.base_checksum;
    if (!rc && h.base_model) snprintf(s->base_model, sizeof s->base_model, "%s", h.base_model);
    lmp_ckpt_header_free(&h);
    lmp_ckpt_module *mods = NULL;
    int n = 0;
    if (!rc) rc = lmp_ckpt_modules(rd, &mods, &n, err, errn);
    if (!rc && n == 0) {
        snprintf(err, errn, "%s: /adapter holds no modules", rd->path);
        rc = -1;
    }
    if (!rc) s->mod = lmp_calloc((size_t)3 * n * sizeof *s->mod);  // a bottleneck gives 3
    int projected = 0;  // prefix projection: the prefixes are the MLP's output, not stored
    for (int i = 0; i < n; i++) projected |= !strcmp(mods[i].method, "prefix_encoder");
    for (int i = 0; !rc && i < n; i++) {
        if (!strcmp(mods[i].method, "ia3")) continue;  // vectors, no matrix
        // DoRA: its LoRA part ΔW = scale·B·A (the magnitudes are a vector)
        int lora = !strcmp(mods[i].method, "lora") || !strcmp(mods[i].method, "dora");
        int prefix = !strcmp(mods[i].method, "prefix"), enc = !strcmp(mods[i].method, "prefix_encoder");
        if (prefix && projected) continue;
        rc = lora     ? read_module(rd, &mods[i], &s->mod[s->n], err, errn)
             : prefix ? read_prefix(rd, &mods[i], &s->mod[s->n], err, errn)
             : enc    ? read_encoder(rd, &mods[i], &s->mod[s->n], err, errn)
                      : read_bottleneck(rd, &mods[i], &s->mod[s->n], err, errn);
        s->n += lora || prefix ? 1 : enc ? 2 : 3;
    }
    if (!rc && s->n == 0) {
        snprintf(err, errn, "%s: its modules are IA3 vectors; the analyses take matrices (LoRA, DoRA's "
                 "LoRA part, bottlenecks)", rd->path);
        rc = -1;
    }
    free(mods);
    return rc;
}

void lmp_an_read_adapters(const char *path, adapter_set *s) {
    memset(s, 0, sizeof *s);
    lmp_fmt(s->path, sizeof s->path, "%s", path);
    char err[2048] = "", cerr[LMP_PATH_MAX + 64] = "";
    lmp_ckpt_reader rd;
    if (lmp_ckpt_open(&rd, path, err, sizeof err) == 0) {
        read_set(&rd, s, err, sizeof err);
        if (lmp_ckpt_close(&rd, cerr, sizeof cerr) && !err[0]) lmp_fmt(err, sizeof err, "%s", cerr);
    }
    die_if_any(err);
}

void lmp_an_free_adapters(adapter_set *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->mod[i].A);
        free(s->mod[i].B);
    }
    free(s->mod);
    s->mod = NULL;
    s->n = 0;
}
