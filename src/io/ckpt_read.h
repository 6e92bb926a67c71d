// ckpt_read.h: the one reader of lorampi checkpoints, used by training's resume
// (lmp_ckpt_load), generation and the analysis. Each rank opens the file on its own (HDF5's
// POSIX driver, no MPI-IO): a rank that hits a bad chunk cannot leave the others waiting in a
// collective call. Every function returns 0 or -1 with a message in err that names the file,
// the dataset or attribute and what was expected; the caller decides how to stop (lmp_die,
// lmp_die_all or lmp_die_if_any). HDF5's automatic error printing is off from open to close.
#ifndef LORAMPI_CKPT_READ_H
#define LORAMPI_CKPT_READ_H
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>
#include "core/config.h"
#include "core/registry.h"

typedef struct {
    hid_t file;
    char path[LMP_PATH_MAX];
    H5E_auto2_t old_fn;    // HDF5's error printing before open, restored by close
    void *old_data;
} lmp_ckpt_reader;

// The root attributes.
typedef struct {
    int64_t format_version, step, tp, dp;
    uint64_t base_checksum;
    char *config;       // the fully resolved INI text of the run that wrote it (malloc'd)
    char *base_model;   // its base model's path, or how it was initialised (malloc'd)
} lmp_ckpt_header;

// One adapted module: the attributes of /adapter/<name>, its module record.
typedef struct {
    char name[LMP_NAME_MAX + 16];   // group under /adapter, e.g. "transformer.h.0.attn.c_attn"
    char method[32];                // "lora"
    char target[32];                // "c_attn", "q", "attn.c_proj", ...
    char module[LMP_NAME_MAX];      // the adapted layer, e.g. "h.0.attn.c_attn"
    char site[48];                  // that layer within a block, e.g. "attn.c_attn"
    char base_weight[LMP_NAME_MAX]; // the adapted base weight, e.g. "h.0.attn.c_attn.weight"
    int64_t base_in, base_out;      // its shape as a linear layer: W0 is (base_out, base_in)
    int64_t layer, slice;           // block index; -1 or the q/k/v block of a fused linear
    int64_t in, out, out_offset;    // ΔW is (out, in), its rows start at out_offset of W's
    int64_t r;
    double alpha, scale;            // lora_alpha and the scaling of ΔW = scale·B·A
} lmp_ckpt_module;

// Opens path read-only. On failure nothing stays open (no close needed).
int lmp_ckpt_open(lmp_ckpt_reader *rd, const char *path, char *err, size_t errn);
// Reads and checks the root attributes (format, format_version, step, tp, dp, config,
// base_model, base_checksum), each a scalar of its type; a format_version other than
// LMP_CKPT_FORMAT_VERSION is refused. Free h with lmp_ckpt_header_free, also after an error.
int lmp_ckpt_read_header(lmp_ckpt_reader *rd, lmp_ckpt_header *h, char *err, size_t errn);
void lmp_ckpt_header_free(lmp_ckpt_header *h);
// The adapted modules of /adapter in name order with their record attributes: *mods
// malloc'd (free it), *n of them. A file without /adapter (full fine-tuning) is an error.
int lmp_ckpt_modules(lmp_ckpt_reader *rd, lmp_ckpt_module **mods, int *n, char *err, size_t errn);
// This rank's part of registry entry p from dataset dpath (ckpt_layout.h) into buf
// (p->numel floats): the dataset must have p's global shape.
int lmp_ckpt_read_local(lmp_ckpt_reader *rd, const char *dpath, const lmp_param *p, float *buf,
                        char *err, size_t errn);
// A whole 2-D dataset as doubles, row-major, malloc'd into *x (at least one element, so a
// 0 x n matrix is a valid pointer); *rows x *cols its shape. want_rows / want_cols >= 0
// require that extent. Extents above INT_MAX are refused, as is a size that overflows.
int lmp_ckpt_read_matrix(lmp_ckpt_reader *rd, const char *dpath, int64_t want_rows,
                         int64_t want_cols, double **x, int64_t *rows, int64_t *cols, char *err,
                         size_t errn);
// Closes the file and restores HDF5's error printing (also when closing fails: 0 or -1).
int lmp_ckpt_close(lmp_ckpt_reader *rd, char *err, size_t errn);

#endif
