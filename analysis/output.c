// output.c: the analysis' result files (OUT.h5, OUT.csv) and plots. Only rank 0 writes, so
// a failure dies there (lmp_die aborts every rank) naming the file: a full disk is reported,
// never a success.
#include "analysis/subcommands.h"
#include "io/h5attr.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lmp_an_out_create(lmp_an_out *o, const char *path, const char *command, const char *method) {
    lmp_fmt(o->path, sizeof o->path, "%s", path);
    o->f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o->f < 0) lmp_die("cannot create %s", path);
    lmp_h5_put_str(o->f, "lorampi_version", LMP_VERSION);
    lmp_h5_put_str(o->f, "analysis", command);
    lmp_h5_put_str(o->f, "svd", method);
}

hid_t lmp_an_group(const lmp_an_out *o, const char *name) {
    hid_t g = H5Gcreate2(o->f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) lmp_die("%s: cannot create group /%s", o->path, name);
    return g;
}

void lmp_an_group_close(const lmp_an_out *o, hid_t g, const char *name) {
    if (H5Gclose(g) < 0) lmp_die("%s: cannot write group /%s (disk full?)", o->path, name);
}

void lmp_an_put_data(const lmp_an_out *o, hid_t loc, const char *name, const double *x, int rows, int cols) {
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(cols > 0 ? 2 : 1, dims, NULL);
    if (sp < 0) lmp_die("%s: cannot describe dataset %s (%d x %d)", o->path, name, rows, cols);
    hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0) lmp_die("%s: cannot create dataset %s", o->path, name);
    if (H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0 || H5Dclose(d) < 0 || H5Sclose(sp) < 0)
        lmp_die("%s: cannot write dataset %s (disk full?)", o->path, name);
}

void lmp_an_put_stats(hid_t g, const lmp_rank_stats *st) {
    lmp_h5_put_f64(g, "fro", st->fro);
    lmp_h5_put_f64(g, "sigma1", st->sigma1);
    lmp_h5_put_f64(g, "n90", st->n90);
    lmp_h5_put_f64(g, "n99", st->n99);
    lmp_h5_put_f64(g, "stable_rank", st->stable_rank);
    lmp_h5_put_f64(g, "entropy_rank", st->entropy_rank);
}

void lmp_an_out_close(lmp_an_out *o) {
    if (H5Fclose(o->f) < 0) lmp_die("cannot write %s: HDF5 failed to flush and close it (disk full?)", o->path);
    o->f = -1;
}

FILE *lmp_an_csv_open(const char *out_h5, char *csv_path, size_t n) {
    const char *slash = strrchr(out_h5, '/'), *dot = strrchr(out_h5, '.');
    int stem = dot && (!slash || dot > slash) ? (int)(dot - out_h5) : (int)strlen(out_h5);
    lmp_fmt(csv_path, n, "%.*s.csv", stem, out_h5);
    FILE *f = fopen(csv_path, "w");
    if (!f) lmp_die("cannot write %s: %s", csv_path, strerror(errno));
    return f;
}

void lmp_an_csv_close(FILE *f, const char *csv_path) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) lmp_die("cannot write %s: %s", csv_path, strerror(errno));
}

// python3 plot.py OUT.h5 as an argv array (lmp_run_program): no shell, no quoting of paths.
void lmp_an_plot(const char *out_h5, int no_plot) {
    if (no_plot || lmp_world_rank() != 0) return;
    const char *script = getenv("LORAMPI_PLOT_SCRIPT");
    if (!script) script = LMP_SOURCE_DIR "/analysis/plot.py";
    char *argv[] = {"/usr/bin/python3", (char *)script, (char *)out_h5, NULL}, err[512];
    int rc = lmp_run_program(argv, err, sizeof err);
    if (rc < 0) lmp_warn("plotting failed: %s; the HDF5 and CSV results are complete", err);
    else if (rc != 0)
        lmp_warn("plotting failed (/usr/bin/python3 %s %s); the HDF5 and CSV results are complete", script, out_h5);
}
