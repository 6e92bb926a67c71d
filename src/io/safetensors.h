// safetensors.h: safetensors files, read by slice and written whole. Reading validates the
// header against the file (every offset, dtype size and shape; no overlaps) and converts
// F16/BF16 to fp32; lmp_st_write writes fp32 through a temporary file and a rename (the
// parallel writer, st_parallel.h, shares the header and also writes BF16/F16).
#ifndef LORAMPI_SAFETENSORS_H
#define LORAMPI_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "core/registry.h"

typedef enum { LMP_DT_F32, LMP_DT_F16, LMP_DT_BF16, LMP_DT_OTHER } lmp_dtype;
typedef struct {
    char name[LMP_NAME_MAX];
    lmp_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;  // absolute file offsets of the data
} lmp_st_tensor;
typedef struct {
    char path[1024];
    int fd;
    uint64_t file_size;
    lmp_st_tensor *t;
    int n;
} lmp_st_file;

// Opens and validates a safetensors file (header length and every offset checked against
// the file size, dtype sizes against shapes, no overlaps). Dies naming the file on error.
void lmp_st_open(lmp_st_file *f, const char *path);
void lmp_st_close(lmp_st_file *f);
// Tensor by name, or NULL.
const lmp_st_tensor *lmp_st_find(const lmp_st_file *f, const char *name);
// Reads elements of a 1-D or 2-D tensor into fp32 `dst`: rows [r0, r0+nr) and, within each
// row, columns [c0, c0+nc) (a 1-D tensor is one row). Converts F16/BF16.
void lmp_st_read_block(const lmp_st_file *f, const lmp_st_tensor *t,
                       int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst);

// The same into bf16 `dst`: BF16 copied as stored (no widening), F32 and F16 rounded to
// nearest even.
void lmp_st_read_block_bf16(const lmp_st_file *f, const lmp_st_tensor *t, int64_t r0, int64_t nr,
                            int64_t c0, int64_t nc, uint16_t *dst);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[LMP_MAX_DIMS];
    const float *data;  // contiguous fp32, global shape
} lmp_st_out;
// Writes `n` fp32 tensors to a safetensors file; `metadata_json` is a JSON object of
// strings (or NULL). Writes to path.tmp then renames, so a crash leaves no half file.
void lmp_st_write(const char *path, const lmp_st_out *t, int n, const char *metadata_json);
// The JSON header of n tensors (data unused) stored as `dtype` (F32, BF16 or F16) one after
// the other in the given order: metadata, then each tensor's dtype, shape and data offsets;
// compact, in order, unpadded; malloc'd. lmp_st_write and the parallel writer
// (st_parallel.h) share it.
char *lmp_st_header(const lmp_st_out *t, int n, lmp_dtype dtype, const char *metadata_json);

#endif
