// model_config.h: GPT-2 hyperparameters, read from a Hugging Face config.json or an llm.c
// model header and written as config.json. Self-contained (the formats' knowledge of the
// hyperparameters lives here, not in the tensor readers), so the pair can move to the model
// layer as it is.
#ifndef LORAMPI_MODEL_CONFIG_H
#define LORAMPI_MODEL_CONFIG_H

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

#endif
