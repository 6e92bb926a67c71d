// hf_dir.h: Hugging Face model directories (config.json + model.safetensors, or sharded
// model-0000i-of-0000n.safetensors with model.safetensors.index.json).
#ifndef LORAMPI_HF_DIR_H
#define LORAMPI_HF_DIR_H
#include "core/registry.h"
#include "io/safetensors.h"

// The tensor files of an HF directory, opened once: model.safetensors, or (when it is absent
// and model.safetensors.index.json is there) every file the index's weight_map names.
typedef struct {
    void *map;                  // the weight_map (a jansson object), NULL for one file
    lmp_st_file *f;
    const char **names;         // f[k]'s file name (sharded)
    int n;
    char index[4096];           // the index's path (sharded), for messages
} lmp_hf_files;

// Opens dir's tensor files (headers only); dies naming the file on a problem.
void lmp_hf_open(lmp_hf_files *h, const char *dir);
// Tensor `name`, or "transformer." + name, and its file into *f; NULL when neither is there.
const lmp_st_tensor *lmp_hf_find(const lmp_hf_files *h, const char *name, const lmp_st_file **f);
void lmp_hf_close(lmp_hf_files *h);
// 1 when dir holds model.safetensors or model.safetensors.index.json.
int lmp_hf_has_weights(const char *dir);

// Loads every LMP_ROLE_BASE entry of reg from dir/model.safetensors: each entry's local
// slice only, converted to fp32, found under its name with or without the "transformer."
// prefix. A sharded model (no model.safetensors, model.safetensors.index.json beside its
// files) is read through the index's weight_map, each file opened once. Dies naming the file and tensor on a missing tensor, a shape that disagrees with
// the registry, an unsupported dtype or a truncated file.
void lmp_hf_load(const char *dir, lmp_registry *reg);

// Writes dir/model.safetensors (dir created; F32, "transformer."-less names as HF's
// GPT2Model / GPT2LMHeadModel accept) from the base entries of `reg`. Every base entry must
// be whole on this rank (tp = 1); call on one rank. The model layer adds config.json
// (model/model_config.h: lmp_model_save_hf).
void lmp_hf_save_weights(const char *dir, const lmp_registry *reg);

#endif
