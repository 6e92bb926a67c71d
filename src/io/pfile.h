// pfile.h: one model file written by many ranks at once. The file's layout (a header of
// known bytes, then tensors at byte offsets fixed in advance) is computed identically on
// every rank from the global tensor list (st_parallel.h: safetensors; llmc.h: llm.c), so
// each rank writes the byte ranges of the slices it holds with pwrite, and no rank ever
// holds the whole model. The file is written as PATH.tmp and renamed by one rank once every
// rank has written and synced its part: no half file under the final name.
// Protocol (the caller adds the collectives between the steps; core/comm.h):
//   every rank: layout;  rank 0: lmp_pfile_create;  barrier;  every writing rank:
//   lmp_pfile_open, lmp_pfile_put (per block), lmp_pfile_close;  any error -> every rank;
//   rank 0: lmp_pfile_commit (or lmp_pfile_abort on error).
// Functions return 0, or -1 with a message naming the file in err.
#ifndef LORAMPI_PFILE_H
#define LORAMPI_PFILE_H
#include <stddef.h>
#include <stdint.h>
#include "io/safetensors.h"
#include "core/bf16.h"

// Where one tensor lies: its global (rows, cols) (a 1-D tensor is one row), the byte offset
// of element (0, 0), and whether the file stores it transposed (llm.c's (out, in) weights:
// element (r, c) at (c * rows + r)).
typedef struct {
    int64_t rows, cols;
    uint64_t off;
    int transposed;
} lmp_pfile_tensor;

typedef struct {
    char path[4096], tmp[4200];
    lmp_dtype dtype;             // F32, BF16 or F16 in the file (every tensor)
    unsigned char *head;         // the bytes before the first tensor (header), written by create
    size_t head_len;
    uint64_t size;               // the file's total size
    lmp_pfile_tensor *t;
    int n;
    int fd;
} lmp_pfile;

// Bytes per element of dtype (F32 4, BF16/F16 2).
int lmp_pfile_esize(lmp_dtype d);
// fp32 to F16 bits, rounded to nearest even (NaN stays NaN, overflow gives Inf); BF16:
// lmp_f32_to_bf16 (core/bf16.h, included here for the writers).
uint16_t lmp_f32_to_f16(float f);

// Sets path (and path.tmp), the dtype and no open file; the layout (st_parallel.h, llmc.h)
// fills the rest.
void lmp_pfile_init(lmp_pfile *f, const char *path, lmp_dtype dtype);
// Rank 0: creates path.tmp at its full size (unwritten bytes read as zero) with the header.
int lmp_pfile_create(lmp_pfile *f, char *err, size_t errn);
// A writing rank: opens path.tmp for writing.
int lmp_pfile_open(lmp_pfile *f, char *err, size_t errn);
// Writes block rows [r0, r0+nr) x columns [c0, c0+nc) of tensor k from src (rows ldd floats
// apart), converted to the file's dtype: one pwrite per row of the block as the file stores
// it (a row of ours, or, transposed, a column of ours).
int lmp_pfile_put(lmp_pfile *f, int k, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                  const float *src, int64_t ldd, char *err, size_t errn);
// fsync and close (a rank that opened the file).
int lmp_pfile_close(lmp_pfile *f, char *err, size_t errn);
// Rank 0, after every rank closed: renames path.tmp to path and syncs the directory.
int lmp_pfile_commit(lmp_pfile *f, char *err, size_t errn);
// Removes path.tmp (after an error anywhere); quiet.
void lmp_pfile_abort(lmp_pfile *f);
void lmp_pfile_free(lmp_pfile *f);

#endif
