// peft_prefix.h: PEFT's prefix-tuning adapters (peft_type PREFIX_TUNING) read and written:
// adapter_config.json and adapter_model.safetensors, which holds one tensor,
// "prompt_embeddings" (num_virtual_tokens, num_layers 2 token_dim): row t, column
// ((l 2 + s) num_attention_heads + h) head_dim + d is layer l's key (s = 0) or value (s = 1)
// of virtual token t, KV head h, element d (PEFT's get_prompt views it as (p, 2 L, heads,
// head_dim)). token_dim and num_attention_heads are the model's KV width and KV heads (PEFT
// shrinks them for grouped-query models). Saved with prefix_projection = true, the file still
// holds the final prefixes (PEFT saves the MLP's output, not the MLP).
// lorampi's records (adapters/prefix.h) hold r = num_virtual_tokens, in = the KV heads, out =
// 2 token_dim, and one tensor (p, 2 token_dim) per layer: its columns of prompt_embeddings.
//
// Fields of adapter_config.json: read: peft_type, num_virtual_tokens, num_layers,
// num_attention_heads, token_dim, encoder_hidden_size, prefix_projection,
// num_transformer_submodules (must be 1: a decoder), task_type (CAUSAL_LM or unset);
// ignored: base_model_name_or_path, revision, peft_version, inference_mode, auto_mapping;
// every other field refused when set (modules_to_save, anything unknown).
// Nothing here exits but the writer: errors come back as text naming the file and field.
#ifndef LORAMPI_PEFT_PREFIX_H
#define LORAMPI_PEFT_PREFIX_H
#include <stddef.h>
#include "core/config.h"
#include "core/registry.h"

typedef struct {
    int num_virtual_tokens, num_layers, num_attention_heads, token_dim;
    int encoder_hidden_size, prefix_projection, num_transformer_submodules;
} lmp_peft_prefix_config;

// peft_type of adapter_config.json text ("" when absent or not a string). 0, or -1 with err.
int lmp_peft_type_of(const char *text, size_t len, const char *origin, char *type, size_t n,
                     char *err, size_t errn);
// Reads DIR/adapter_config.json whole (malloc'd, NUL-terminated, *len its size). NULL with err.
char *lmp_peft_config_text(const char *dir, size_t *len, char *err, size_t errn);
// Parses a PREFIX_TUNING adapter_config.json. 0, or -1 with "origin: what is wrong" in err.
int lmp_peft_prefix_parse(const char *text, size_t len, const char *origin, lmp_peft_prefix_config *pc,
                          char *err, size_t errn);
// Rank 0 of init_from: every prefix record of reg from DIR/adapter_model.safetensors, checked
// against pc. 0, or -1 with err.
int lmp_peft_prefix_load(const char *dir, const lmp_peft_prefix_config *pc, lmp_registry *reg,
                         char *err, size_t errn);
// Writes the prefix records of reg (one per layer, layers 0 .. L-1) as a PEFT directory; with
// cfg's prefix_projection their tensors must hold the MLP's current output (model refresh),
// and the config says prefix_projection true and its encoder_hidden_size.
void lmp_peft_prefix_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg);

#endif
