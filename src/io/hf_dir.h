// hf_dir.h: Hugging Face GPT-2 model directories (config.json + model.safetensors).
#ifndef LORAMPI_HF_DIR_H
#define LORAMPI_HF_DIR_H
#include "core/registry.h"
#include "io/model_config.h"

// Loads every LMP_ROLE_BASE entry of reg from dir/model.safetensors: each entry's local
// slice only, converted to fp32, found under its name with or without the "transformer."
// prefix. Dies naming the file and tensor on a missing tensor, a shape that disagrees with
// the registry, an unsupported dtype or a truncated file.
void lmp_hf_load(const char *dir, lmp_registry *reg);

// Writes an HF GPT-2 directory (config.json + model.safetensors, F32, "transformer."-less
// names as HF's GPT2Model / GPT2LMHeadModel accept) from the base entries of `reg`. Every
// base entry must be whole on this rank (tp = 1); call on one rank.
void lmp_model_save_hf(const char *dir, const lmp_model_config *cfg, const lmp_registry *reg);

#endif
