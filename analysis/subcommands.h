// subcommands.h: what the files of `lorampi analyze` share (internal to analysis/):
// the adapters of a checkpoint (ckpt_modules.c), output files (output.c), the subcommands
// (spectrum.c, similarity.c, vs_base.c) and their common arithmetic (analyze.c).
#ifndef LORAMPI_ANALYSIS_SUBCOMMANDS_H
#define LORAMPI_ANALYSIS_SUBCOMMANDS_H
#include <hdf5.h>
#include <stdio.h>
#include "analysis/analysis.h"
#include "core/config.h"
#include "core/registry.h"

#define LMP_AN_NB 64  // ScaLAPACK block size

// One adapted module, from its checkpoint group and record attributes (no name parsing).
typedef struct {
    char name[LMP_NAME_MAX + 16];    // group under /adapter: "transformer.h.0.attn.c_attn"
    char base_weight[LMP_NAME_MAX];  // the adapted base weight: "h.0.attn.c_attn.weight"
    int r, in, out, out_offset;      // ΔW (out, in) = rows [out_offset, +out) of W^T
    double scale;
    double *A, *B;                   // (r, in), (out, r)
} adapter_mod;

typedef struct {
    char path[LMP_PATH_MAX];
    long long step;
    unsigned long long base_checksum;
    char base_model[LMP_PATH_MAX];   // the checkpoint's record of its base model ("" if none)
    int n;
    adapter_mod *mod;
} adapter_set;

// ---- ckpt_modules.c: every rank reads the (small) adapters itself ----

// Reads the adapters of checkpoint path through ckpt_read.h. Collective over MPI_COMM_WORLD:
// an error on any rank stops every rank with the lowest such rank's message.
void lmp_an_read_adapters(const char *path, adapter_set *s);
void lmp_an_free_adapters(adapter_set *s);

// ---- output.c: rank 0 writes; a failed write (a full disk) dies naming the file ----

typedef struct {
    hid_t f;
    char path[LMP_PATH_MAX];
} lmp_an_out;

// OUT.h5 with the root attributes lorampi_version, analysis = command, svd = method.
void lmp_an_out_create(lmp_an_out *o, const char *path, const char *command, const char *method);
hid_t lmp_an_group(const lmp_an_out *o, const char *name);
void lmp_an_group_close(const lmp_an_out *o, hid_t g, const char *name);
// A float64 dataset: a vector of rows when cols = 0, else a rows x cols matrix.
void lmp_an_put_data(const lmp_an_out *o, hid_t loc, const char *name, const double *x, int rows, int cols);
void lmp_an_put_stats(hid_t g, const lmp_rank_stats *st);
// Closes OUT.h5; HDF5 flushes here, so this is where a full disk shows.
void lmp_an_out_close(lmp_an_out *o);
// OUT.csv beside OUT.h5 (its extension replaced), path in csv_path (size n).
FILE *lmp_an_csv_open(const char *out_h5, char *csv_path, size_t n);
void lmp_an_csv_close(FILE *f, const char *csv_path);
// Plots through analysis/plot.py (python3-matplotlib) on rank 0; a missing Python only warns.
void lmp_an_plot(const char *out_h5, int no_plot);

// ---- analyze.c ----

// Sums a buffer over all ranks: each value has exactly one non-zero contributor, so the sum
// is exact and the result independent of the rank count.
void lmp_an_combine(double *x, size_t n);
// Singular values of ΔW of module m (r of them) on the calling rank(s): low-rank path, or
// the distributed pdgesvd of the dense ΔW (every rank must call it then).
void lmp_an_dw_svd(const adapter_mod *m, int full, const lmp_grid *g, double *S, double *U, double *V);

typedef enum { VEC_A = 0, VEC_DW_LEFT, VEC_DW_RIGHT } lmp_an_vec;
extern const char *const LMP_AN_VEC_NAMES[3];

int lmp_an_spectrum(const char *ckpt, const char *run, const char *out, int full, int no_plot);
int lmp_an_similarity(const char *c1, const char *c2, const char *out, lmp_an_vec vk,
                      const char *only, int no_plot);
int lmp_an_vs_base(const char *ckpt, const char *model, const char *out, int full, int no_plot);

#endif
