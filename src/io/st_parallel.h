// st_parallel.h: the layout of a safetensors file that many ranks write together (pfile.h):
// the header and every tensor's offset follow from the global tensor list alone, so every
// rank computes the same layout without communication.
#ifndef LORAMPI_ST_PARALLEL_H
#define LORAMPI_ST_PARALLEL_H
#include "io/pfile.h"
#include "io/safetensors.h"

// Fills f (lmp_pfile_init done) for the n tensors t (data unused) stored as f->dtype, one
// after the other in the given order, with metadata_json (a JSON object of strings, or
// NULL): the same bytes lmp_st_write gives for F32. 1-D tensors are one row.
void lmp_st_layout(lmp_pfile *f, const lmp_st_out *t, int n, const char *metadata_json);

#endif
