// llmc.h: llm.c GPT-2 model files (gpt2_*.bin, fp32, version 3): a 256 int32 header
// (magic 20240326, version, maxT, V, L, NH, C, Vp), then the 16 parameter tensors in llm.c's
// order, linear weights stored (out, in) and the token embedding padded to Vp rows.
#ifndef LORAMPI_LLMC_H
#define LORAMPI_LLMC_H
#include <stdint.h>
#include "core/registry.h"

#define LMP_LLMC_MODEL_MAGIC 20240326

// Reads the 256-int header of the model file at path into hdr and its size in bytes into
// *size; dies naming the file on a short file, a wrong magic or a version other than 3.
void lmp_llmc_read_header(const char *path, int hdr[256], uint64_t *size);

// Loads every LMP_ROLE_BASE entry of reg (HF names without prefix: "wte.weight",
// "h.0.attn.c_attn.weight", ...): each entry's local slice only, (out, in) weights
// transposed to the registry's (in, out), the padded vocabulary rows never read. Dies naming
// the file on a size that disagrees with the header or an entry with no llm.c tensor.
void lmp_llmc_load(const char *path, lmp_registry *reg);

#endif
