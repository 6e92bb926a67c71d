// ckpt_read.c: reading checkpoints, one rank at a time (see ckpt_read.h).
#include "io/ckpt_read.h"
#include "io/ckpt_layout.h"
#include "io/h5attr.h"
#include "core/util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// "checkpoint <path>: <message>" into err; returns -1.
static int fail(const lmp_ckpt_reader *rd, char *err, size_t errn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(const lmp_ckpt_reader *rd, char *err, size_t errn, const char *fmt, ...) {
    int k = snprintf(err, errn, "checkpoint %s: ", rd->path);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < errn) vsnprintf(err + k, errn - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

int lmp_ckpt_open(lmp_ckpt_reader *rd, const char *path, char *err, size_t errn) {
    memset(rd, 0, sizeof *rd);
    rd->file = -1;
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errn, "cannot open checkpoint %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {  // a FIFO would block the open for ever, a directory fail oddly
        snprintf(err, errn, "cannot open checkpoint %s: not a regular file (%s)", path,
                 S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket");
        return -1;
    }
    lmp_fmt(rd->path, sizeof rd->path, "%s", path);
    // Every rank would print HDF5's error stack; lorampi reports one message instead.
    H5Eget_auto2(H5E_DEFAULT, &rd->old_fn, &rd->old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_sec2(fapl) >= 0) rd->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0 && H5Pclose(fapl) < 0 && rd->file >= 0) {
        H5Fclose(rd->file);
        rd->file = -1;
    }
    if (rd->file >= 0) return 0;
    H5Eset_auto2(H5E_DEFAULT, rd->old_fn, rd->old_data);
    snprintf(err, errn, "cannot open checkpoint %s: not an HDF5 file, or truncated or corrupt (its "
             "metadata fails to read)", path);
    return -1;
}

int lmp_ckpt_close(lmp_ckpt_reader *rd, char *err, size_t errn) {
    int rc = rd->file >= 0 && H5Fclose(rd->file) < 0 ? -1 : 0;
    rd->file = -1;
    H5Eset_auto2(H5E_DEFAULT, rd->old_fn, rd->old_data);
    return rc ? fail(rd, err, errn, "HDF5 failed to close it") : 0;
}

// ---------------------------------------------------------------------------------------
// Attributes

typedef enum { A_I64, A_U64, A_F64, A_STR } akind;
static const char *EXPECT[] = {"an integer", "an unsigned integer", "a number", "a string"};

// Attribute `name` of obj (`where` in the file, e.g. "/" or "/adapter/x") as kind into v
// (A_STR: a malloc'd char *).
static int attr(const lmp_ckpt_reader *rd, hid_t obj, const char *where, const char *name,
                akind kind, void *v, char *err, size_t errn) {
    int rc;
    switch (kind) {
    case A_I64: rc = lmp_h5_get_i64(obj, name, v); break;
    case A_U64: rc = lmp_h5_get_u64(obj, name, v); break;
    case A_F64: rc = lmp_h5_get_f64(obj, name, v); break;
    default: rc = lmp_h5_get_str(obj, name, v); break;
    }
    if (rc == LMP_H5_OK) return 0;
    return fail(rd, err, errn, "attribute %s of %s %s; expected a scalar, %s", name, where,
                lmp_h5_why(rc), EXPECT[kind]);
}

// A string attribute into a buffer of size n.
static int attr_text(const lmp_ckpt_reader *rd, hid_t obj, const char *where, const char *name,
                     char *out, size_t n, char *err, size_t errn) {
    char *s;
    if (attr(rd, obj, where, name, A_STR, &s, err, errn)) return -1;
    size_t len = strlen(s);
    if (len < n) memcpy(out, s, len + 1);
    free(s);
    if (len >= n) return fail(rd, err, errn, "attribute %s of %s is longer than %zu characters", name, where, n - 1);
    return 0;
}

int lmp_ckpt_read_header(lmp_ckpt_reader *rd, lmp_ckpt_header *h, char *err, size_t errn) {
    memset(h, 0, sizeof *h);
    char *format = NULL;
    int rc = lmp_h5_get_str(rd->file, "format", &format);
    int ours = rc == LMP_H5_OK && !strcmp(format, LMP_CKPT_FORMAT);
    free(format);
    if (!ours) {
        snprintf(err, errn, "%s is not a lorampi checkpoint: its root attribute format %s (expected "
                 "the string \"%s\")", rd->path, rc ? lmp_h5_why(rc) : "names another format", LMP_CKPT_FORMAT);
        return -1;
    }
    if (attr(rd, rd->file, "/", "format_version", A_I64, &h->format_version, err, errn)) return -1;
    if (h->format_version != LMP_CKPT_FORMAT_VERSION)
        return fail(rd, err, errn, "format_version %lld, written by %s lorampi; this lorampi reads "
                    "format_version %d only%s", (long long)h->format_version,
                    h->format_version < LMP_CKPT_FORMAT_VERSION ? "an older" : "a newer",
                    LMP_CKPT_FORMAT_VERSION, h->format_version == 1 ? " (format 1 adapters carry "
                    "no module records: method, layer, target, slice, base_weight)" : "");
    if (attr(rd, rd->file, "/", "step", A_I64, &h->step, err, errn) ||
        attr(rd, rd->file, "/", "tp", A_I64, &h->tp, err, errn) ||
        attr(rd, rd->file, "/", "dp", A_I64, &h->dp, err, errn) ||
        attr(rd, rd->file, "/", "base_checksum", A_U64, &h->base_checksum, err, errn) ||
        attr(rd, rd->file, "/", "config", A_STR, &h->config, err, errn) ||
        attr(rd, rd->file, "/", "base_model", A_STR, &h->base_model, err, errn))
        return -1;
    if (h->step < 0 || h->tp < 1 || h->dp < 1)
        return fail(rd, err, errn, "step %lld, tp %lld, dp %lld: expected step >= 0 and a layout of "
                    "at least 1 x 1", (long long)h->step, (long long)h->tp, (long long)h->dp);
    return 0;
}

void lmp_ckpt_header_free(lmp_ckpt_header *h) {
    free(h->config);
    free(h->base_model);
    h->config = h->base_model = NULL;
}

// ---------------------------------------------------------------------------------------
// Adapter modules

typedef struct { char **names; int n, cap; } name_list;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    (void)g;
    (void)info;
    name_list *l = op;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->names = realloc(l->names, (size_t)l->cap * sizeof *l->names);
        LMP_CHECK(l->names, "out of memory");
    }
    l->names[l->n] = strdup(name);
    LMP_CHECK(l->names[l->n], "out of memory");
    l->n++;
    return 0;
}

// The record attributes of group /adapter/<m->name>, opened as mg.
static int module_attrs(const lmp_ckpt_reader *rd, hid_t mg, lmp_ckpt_module *m, char *err, size_t errn) {
    char where[LMP_NAME_MAX + 32];
    lmp_fmt(where, sizeof where, "/adapter/%s", m->name);
    if (attr_text(rd, mg, where, "method", m->method, sizeof m->method, err, errn) ||
        attr_text(rd, mg, where, "target", m->target, sizeof m->target, err, errn) ||
        attr_text(rd, mg, where, "module", m->module, sizeof m->module, err, errn) ||
        attr_text(rd, mg, where, "site", m->site, sizeof m->site, err, errn) ||
        attr_text(rd, mg, where, "base_weight", m->base_weight, sizeof m->base_weight, err, errn) ||
        attr(rd, mg, where, "base_in", A_I64, &m->base_in, err, errn) ||
        attr(rd, mg, where, "base_out", A_I64, &m->base_out, err, errn) ||
        attr(rd, mg, where, "layer", A_I64, &m->layer, err, errn) ||
        attr(rd, mg, where, "slice", A_I64, &m->slice, err, errn) ||
        attr(rd, mg, where, "in", A_I64, &m->in, err, errn) ||
        attr(rd, mg, where, "out", A_I64, &m->out, err, errn) ||
        attr(rd, mg, where, "out_offset", A_I64, &m->out_offset, err, errn) ||
        attr(rd, mg, where, "r", A_I64, &m->r, err, errn) ||
        attr(rd, mg, where, "lora_alpha", A_F64, &m->alpha, err, errn) ||
        attr(rd, mg, where, "scaling", A_F64, &m->scale, err, errn))
        return -1;
    if (m->in < 1 || m->out < 1 || m->in > INT_MAX || m->out > INT_MAX || m->out_offset < 0 ||
        m->r < 0 || m->r > INT_MAX || m->layer < 0 || m->slice < -1 || m->base_in != m->in ||
        m->base_out < m->out_offset + m->out || m->base_out > INT_MAX)
        return fail(rd, err, errn, "%s: in %lld, out %lld, out_offset %lld, base (%lld, %lld), r %lld, "
                    "layer %lld, slice %lld are out of range", where, (long long)m->in, (long long)m->out,
                    (long long)m->out_offset, (long long)m->base_in, (long long)m->base_out,
                    (long long)m->r, (long long)m->layer, (long long)m->slice);
    return 0;
}

static int read_modules(const lmp_ckpt_reader *rd, hid_t g, const name_list *l, lmp_ckpt_module *mods,
                        char *err, size_t errn) {
    for (int i = 0; i < l->n; i++) {
        lmp_ckpt_module *m = &mods[i];
        if (strlen(l->names[i]) >= sizeof m->name)
            return fail(rd, err, errn, "/adapter/%.200s...: name too long", l->names[i]);
        strcpy(m->name, l->names[i]);
        hid_t mg = H5Gopen2(g, m->name, H5P_DEFAULT);
        if (mg < 0) return fail(rd, err, errn, "/adapter/%s is not a group", m->name);
        int rc = module_attrs(rd, mg, m, err, errn);
        if (H5Gclose(mg) < 0 && !rc) rc = fail(rd, err, errn, "HDF5 failed to close /adapter/%s", m->name);
        if (rc) return -1;
    }
    return 0;
}

int lmp_ckpt_modules(lmp_ckpt_reader *rd, lmp_ckpt_module **mods, int *n, char *err, size_t errn) {
    *mods = NULL;
    *n = 0;
    htri_t has = H5Lexists(rd->file, "adapter", H5P_DEFAULT);
    if (has <= 0) {
        snprintf(err, errn, "%s holds no /adapter group (a full fine-tuning checkpoint: no adapters, "
                 "no ΔW = BA)", rd->path);
        return -1;
    }
    hid_t g = H5Gopen2(rd->file, "adapter", H5P_DEFAULT);
    if (g < 0) return fail(rd, err, errn, "/adapter is not a group");
    name_list l = {NULL, 0, 0};
    hsize_t idx = 0;
    int rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &l) < 0
                 ? fail(rd, err, errn, "cannot list /adapter (corrupt metadata)") : 0;
    *mods = lmp_calloc(((size_t)l.n + 1) * sizeof **mods);
    if (!rc) rc = read_modules(rd, g, &l, *mods, err, errn);
    if (H5Gclose(g) < 0 && !rc) rc = fail(rd, err, errn, "HDF5 failed to close /adapter");
    for (int i = 0; i < l.n; i++) free(l.names[i]);
    free(l.names);
    if (rc) {
        free(*mods);
        *mods = NULL;
        return -1;
    }
    *n = l.n;
    return 0;
}

// ---------------------------------------------------------------------------------------
// Datasets

// Opens dataset dpath and reads its extents (at most 2 dims) into dims, *nd the rank.
// 0; 1 when there is no such dataset (nothing in err); -1 with a message.
static int open_dataset(const lmp_ckpt_reader *rd, const char *dpath, hid_t *ds, hid_t *fs,
                        hsize_t *dims, int *nd, char *err, size_t errn) {
    *fs = -1;
    *ds = H5Dopen2(rd->file, dpath, H5P_DEFAULT);
    if (*ds < 0) return 1;  // the caller says what a missing dataset means
    *fs = H5Dget_space(*ds);
    *nd = *fs < 0 ? -1 : H5Sget_simple_extent_ndims(*fs);
    dims[0] = dims[1] = 0;
    if (*nd < 1 || *nd > 2 || H5Sget_simple_extent_dims(*fs, dims, NULL) < 0) {
        if (*fs >= 0) H5Sclose(*fs);
        H5Dclose(*ds);
        *ds = *fs = -1;
        return fail(rd, err, errn, "dataset /%s is %d-dimensional or unreadable; expected 1 or 2 dims", dpath, *nd);
    }
    return 0;
}

// Closes what open_dataset opened (and ms when >= 0); rc, or -1 when a close fails.
static int close_dataset(const lmp_ckpt_reader *rd, const char *dpath, hid_t ds, hid_t fs, hid_t ms,
                         int rc, char *err, size_t errn) {
    int bad = 0;  // every id is closed, whichever close fails
    if (ms >= 0 && H5Sclose(ms) < 0) bad = 1;
    if (H5Sclose(fs) < 0) bad = 1;
    if (H5Dclose(ds) < 0) bad = 1;
    if (bad && !rc) rc = fail(rd, err, errn, "HDF5 failed to release dataset /%s", dpath);
    return rc;
}

static int bad_data(const lmp_ckpt_reader *rd, const char *dpath, char *err, size_t errn) {
    return fail(rd, err, errn, "cannot read dataset /%s: its Fletcher32 checksum does not match or "
                "its data is cut off (the file is corrupt or truncated)", dpath);
}

int lmp_ckpt_read_local(lmp_ckpt_reader *rd, const char *dpath, const lmp_param *p, float *buf,
                        char *err, size_t errn) {
    hid_t ds, fs;
    hsize_t dims[2];
    int nd = 0;
    int rc = open_dataset(rd, dpath, &ds, &fs, dims, &nd, err, errn);
    if (rc == 1)
        snprintf(err, errn, "checkpoint %s has no dataset /%s, which this run trains (other "
                 "targets, layers or method?)", rd->path, dpath);
    if (rc) return -1;
    int same = nd == p->ndim;
    for (int d = 0; same && d < nd; d++) same = dims[d] == (hsize_t)p->shape[d];
    if (!same) {
        fail(rd, err, errn, "dataset /%s has shape (%llu, %llu)[%d dims], this run expects (%lld, "
             "%lld)[%d dims]", dpath, (unsigned long long)dims[0], (unsigned long long)dims[1], nd,
             (long long)p->shape[0], (long long)(p->ndim > 1 ? p->shape[1] : 0), p->ndim);
        return close_dataset(rd, dpath, ds, fs, -1, -1, err, errn);
    }
    hsize_t mdims[2];
    for (int d = 0; d < p->ndim; d++) mdims[d] = (hsize_t)p->local_shape[d];
    hid_t ms = H5Screate_simple(p->ndim, mdims, NULL);
    if (ms < 0 || lmp_ckpt_select_local(fs, p))
        rc = fail(rd, err, errn, "HDF5 cannot select this rank's part of /%s", dpath);
    else if (H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0)
        rc = bad_data(rd, dpath, err, errn);
    return close_dataset(rd, dpath, ds, fs, ms, rc, err, errn);
}

// Shape checks of a matrix dataset read whole: rank 2, the wanted extents, no overflow.
static int check_matrix(const lmp_ckpt_reader *rd, const char *dpath, int nd, const hsize_t *dims,
                        int64_t want_rows, int64_t want_cols, char *err, size_t errn) {
    if (nd != 2) return fail(rd, err, errn, "dataset /%s has %d dims; expected a matrix (2 dims)", dpath, nd);
    if ((want_rows >= 0 && dims[0] != (hsize_t)want_rows) || (want_cols >= 0 && dims[1] != (hsize_t)want_cols))
        return fail(rd, err, errn, "dataset /%s has shape (%llu, %llu); expected %lld rows and %lld "
                    "columns (-1: any)", dpath, (unsigned long long)dims[0], (unsigned long long)dims[1],
                    (long long)want_rows, (long long)want_cols);
    // Both extents fit an int (the analysis' LAPACK indices), so their product fits 64 bits.
    if (dims[0] > INT_MAX || dims[1] > INT_MAX || dims[0] * dims[1] >= SIZE_MAX / sizeof(double))
        return fail(rd, err, errn, "dataset /%s of shape (%llu, %llu) is too large to read whole",
                    dpath, (unsigned long long)dims[0], (unsigned long long)dims[1]);
    return 0;
}

// A dataset's extents are metadata: a chunked one can claim terabytes in a small file, its
// chunks never written (read back as fill values). lorampi writes every chunk uncompressed,
// so the stored bytes cover n elements of the file's type; fewer means the data is not there,
// and the whole-matrix buffer is not allocated for it.
static int check_stored(const lmp_ckpt_reader *rd, const char *dpath, hid_t ds, hsize_t n,
                        char *err, size_t errn) {
    hid_t t = H5Dget_type(ds);
    size_t es = t < 0 ? 0 : H5Tget_size(t);
    if (t >= 0) H5Tclose(t);
    hsize_t stored = H5Dget_storage_size(ds);
    if (es == 0 || (n > 0 && stored / es < n))
        return fail(rd, err, errn, "dataset /%s holds %llu bytes for %llu elements: its data was "
                    "never written, or the file is truncated", dpath, (unsigned long long)stored,
                    (unsigned long long)n);
    return 0;
}

int lmp_ckpt_read_matrix(lmp_ckpt_reader *rd, const char *dpath, int64_t want_rows,
                         int64_t want_cols, double **x, int64_t *rows, int64_t *cols, char *err,
                         size_t errn) {
    *x = NULL;
    hid_t ds, fs;
    hsize_t dims[2];
    int nd = 0;
    int rc = open_dataset(rd, dpath, &ds, &fs, dims, &nd, err, errn);
    if (rc == 1) fail(rd, err, errn, "dataset /%s is missing", dpath);
    if (rc) return -1;
    rc = check_matrix(rd, dpath, nd, dims, want_rows, want_cols, err, errn);
    if (!rc) rc = check_stored(rd, dpath, ds, dims[0] * dims[1], err, errn);
    if (!rc) {
        *x = lmp_malloc((size_t)(dims[0] * dims[1] + 1) * sizeof(double));
        if (dims[0] * dims[1] > 0 && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0)
            rc = bad_data(rd, dpath, err, errn);
    }
    rc = close_dataset(rd, dpath, ds, fs, -1, rc, err, errn);
    if (rc) {
        free(*x);
        *x = NULL;
        return -1;
    }
    *rows = (int64_t)dims[0];
    *cols = (int64_t)dims[1];
    return 0;
}
