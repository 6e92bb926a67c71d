// llmc.h: llm.c GPT-2 model files (gpt2_*.bin, fp32, version 3): a 256 int32 header
// (magic 20240326, version, maxT, V, L, NH, C, Vp), then the 16 parameter tensors in llm.c's
// order, linear weights stored (out, in) and the token embedding padded to Vp rows.
#ifndef LORAMPI_LLMC_H
#define LORAMPI_LLMC_H
#include <stdint.h>
#include "core/registry.h"
#include "io/pfile.h"

#define LMP_LLMC_MODEL_MAGIC 20240326

// Reads the 256-int header of the model file at path into hdr and its size in bytes into
// *size; dies naming the file on a short file, a wrong magic or a version other than 3.
void lmp_llmc_read_header(const char *path, int hdr[256], uint64_t *size);

// Loads every LMP_ROLE_BASE entry of reg (HF names without prefix: "wte.weight",
// "h.0.attn.c_attn.weight", ...): each entry's local slice only, (out, in) weights
// transposed to the registry's (in, out), the padded vocabulary rows never read. Dies naming
// the file on a size that disagrees with the header or an entry with no llm.c tensor.
void lmp_llmc_load(const char *path, lmp_registry *reg);

// Where HF-named tensor `name` ("wte.weight", "h.0.attn.c_attn.weight", ...) lies in an
// llm.c file of header hdr: the byte offset of its first element, and whether it is stored
// transposed ((out, in)); *in x *out its (in, out) shape for a transposed weight, else *out
// its row length. Returns -1 when llm.c has no such tensor.
int lmp_llmc_locate(const int hdr[256], const char *name, uint64_t *off, int *transposed,
                    int64_t *in, int64_t *out);

// The layout of an llm.c fp32 model file (version 3) for the parallel writer (pfile.h):
// hdr_in gives the first 8 header ints (magic and version are set here: maxT, V, L, NH, C
// and the padded vocabulary Vp at 2..7); t the n tensors (HF names, our (in, out) shapes;
// data unused) that the ranks will write, found in llm.c's order. f: lmp_pfile_init done
// with F32. The padded vocabulary rows are never written (zero). Dies naming a tensor llm.c
// lacks.
void lmp_llmc_layout(lmp_pfile *f, const int hdr_in[8], const lmp_st_out *t, int n);

#endif
