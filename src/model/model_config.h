// model_config.h: GPT-2 hyperparameters, read from a Hugging Face config.json or an llm.c
// model header and written as config.json: the model owns its configuration type; the
// tensor readers and writers below (src/io) know nothing of it.
#ifndef LORAMPI_MODEL_CONFIG_H
#define LORAMPI_MODEL_CONFIG_H
#include "core/registry.h"

// GPT-2 hyperparameters as in HF config.json.
typedef struct {
    int n_layer, n_head, n_embd;
    int vocab_size;     // logical vocabulary (50257 for GPT-2)
    int n_ctx;          // n_positions
    float ln_eps;       // layer_norm_epsilon (1e-5)
} lmp_model_config;

// Reads the hyperparameters of the model at `path`: a directory holding config.json (HF) or
// an llm.c .bin file (header). Dies with a message naming the file and key on any problem:
// missing file, wrong magic/version, a missing or non-integer key, an activation other than
// gelu_new.
void lmp_model_read_config(const char *path, lmp_model_config *cfg);

// Writes cfg as an HF GPT-2 config.json (GPT2LMHeadModel, gelu_new, HF's default dropout and
// initializer values) to the file `path`; dies naming it on error.
void lmp_model_write_config(const char *path, const lmp_model_config *cfg);
// Writes an HF GPT-2 directory: config.json and model.safetensors from the base entries of
// reg (every one whole on this rank: tp = 1; lmp_hf_save_weights). Call on one rank.
void lmp_model_save_hf(const char *dir, const lmp_model_config *cfg, const lmp_registry *reg);

#endif
