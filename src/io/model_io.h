// model_io.h: pretrained model files in and out, the entry point over the per-format
// modules. Reads Hugging Face GPT-2 directories (hf_dir.h: config.json + model.safetensors)
// and llm.c gpt2_*.bin checkpoints (llmc.h); each rank reads only the slice of each tensor it
// holds (registry split, slices.h), converting F16/BF16 to fp32. Writes HF directories and
// safetensors files (safetensors.h). Token files: tokens.h. Hyperparameters: model/model_config.h (the model owns them).
// Including this header gives all of them, as its includers expect.
#ifndef LORAMPI_MODEL_IO_H
#define LORAMPI_MODEL_IO_H
#include "core/registry.h"
#include "io/hf_dir.h"
#include "io/llmc.h"
#include "io/safetensors.h"
#include "io/tokens.h"

// Loads every LMP_ROLE_BASE entry of `reg` from the model at `path`: a directory is an HF
// model (lmp_hf_load), a file an llm.c model (lmp_llmc_load). Each entry's local slice
// only, converted to fp32 (bf16 entries, [model] dtype = bf16: read as bf16, see slices.h), HF names with or without the "transformer." prefix, llm.c
// (out, in) weights transposed to the registry's (in, out), llm.c's padded vocab rows
// skipped. Entries are named as in HF without prefix ("wte.weight", "h.0.ln_1.weight",
// "h.0.attn.c_attn.weight", ...). Dies naming the file and tensor on a missing tensor, a
// shape that disagrees with the registry, an unsupported dtype or a truncated file.
void lmp_model_load(const char *path, lmp_registry *reg);
// 1 when the model at `path` stores its weights as BF16 ([model] dtype = auto): an HF model
// whose first 2-D tensor (the first file's, in header order) is BF16; llm.c files are fp32.
int lmp_model_stores_bf16(const char *path);

#endif
