// hf_dir.h: Hugging Face GPT-2 model directories (config.json + model.safetensors).
#ifndef LORAMPI_HF_DIR_H
#define LORAMPI_HF_DIR_H
#include "core/registry.h"

// Loads every LMP_ROLE_BASE entry of reg from dir/model.safetensors: each entry's local
// slice only, converted to fp32, found under its name with or without the "transformer."
// prefix. Dies naming the file and tensor on a missing tensor, a shape that disagrees with
// the registry, an unsupported dtype or a truncated file.
void lmp_hf_load(const char *dir, lmp_registry *reg);

// Writes dir/model.safetensors (dir created; F32, "transformer."-less names as HF's
// GPT2Model / GPT2LMHeadModel accept) from the base entries of `reg`. Every base entry must
// be whole on this rank (tp = 1); call on one rank. The model layer adds config.json
// (model/model_config.h: lmp_model_save_hf).
void lmp_hf_save_weights(const char *dir, const lmp_registry *reg);

#endif
