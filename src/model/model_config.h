// model_config.h: GPT-2 hyperparameters, read from a Hugging Face config.json or an llm.c
// model header and written as config.json: the model owns its configuration type; the
// tensor readers and writers below (src/io) know nothing of it.
#ifndef LORAMPI_MODEL_CONFIG_H
#define LORAMPI_MODEL_CONFIG_H
#include "core/registry.h"
#include "model/kernels.h"

typedef enum { LMP_FAMILY_GPT2 = 0, LMP_FAMILY_LLAMA = 1 } lmp_family;

// Hyperparameters as in HF config.json: GPT-2's names first (a Llama-family config maps
// hidden_size -> n_embd, num_hidden_layers -> n_layer, num_attention_heads -> n_head,
// max_position_embeddings -> n_ctx, rms_norm_eps -> ln_eps); the Llama family's fields
// after (zero for GPT-2, so positional initialisers of the first six stay valid).
typedef struct {
    int n_layer, n_head, n_embd;
    int vocab_size;     // logical vocabulary (50257 for GPT-2)
    int n_ctx;          // n_positions
    float ln_eps;       // layer_norm_epsilon (1e-5)
    lmp_family family;
    char arch[64];      // architectures[0] ("LlamaForCausalLM", ...)
    int n_kv_head, head_dim, mlp_hidden;
    int tied_head, qkv_bias, out_bias, mlp_bias, qk_norm;
    int sliding_window; // > 0: attention window that applies (refused when < seq_len)
    lmp_rope_params rope;
} lmp_model_config;

// Reads a Llama-family config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM) into cfg: 1 if config.json at cp is one, 0 if it is not (GPT-2 is read
// by the caller); dies naming the key on a field lorampi does not implement (MoE, another
// rope_type, an activation other than silu) or a bad value.
int lmp_llama_read_config(const char *cp, lmp_model_config *cfg);
// The sizes of a Llama-family config against the tensors of dir (model.safetensors or the
// sharded files of model.safetensors.index.json; headers only), before anything is
// allocated from them: the embedding, the last layer's k_proj and down_proj, no layer after.
void lmp_llama_check_tensors(const char *dir, const lmp_model_config *cfg);
// Writes dir/config.json of a Llama-family model: src's config.json (an HF directory; every
// field kept) or, without one, a full transformers 4 config of cfg; its dtype ("dtype" and/or
// "torch_dtype", as src has them) set to `dtype` ("float32", "bfloat16", "float16"). Copies
// src's generation_config.json when there. Dies naming the file on error.
void lmp_llama_write_config(const char *dir, const lmp_model_config *cfg, const char *src, const char *dtype);

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
