// peft_read.h: reading a Hugging Face PEFT LoRA (DoRA) or IA3 directory ([adapter] init_from): the
// adapter_config.json parser into a plain struct, and PEFT 0.21's rules for which modules an
// adapter covers and with which r and alpha. The tensors are read by run/init_from.c through
// safetensors.h, named by lmp_peft_tensor (peft.h).
//
// Fields of adapter_config.json, and what the parser does with each:
//  - read: peft_type (must be "LORA"), r, lora_alpha (PEFT's defaults 8 and 8 when absent),
//    lora_dropout, use_rslora, fan_in_fan_out, bias (must be "none"), target_modules (a list:
//    a module matches an entry it equals or ends with "." + entry; or a string: a regex that
//    must match the whole module name, Python's re.fullmatch), layers_to_transform (an int or
//    a list; only for the list form of target_modules, as in PEFT), layers_pattern (a string
//    or a list of segment names, compared literally: PEFT pastes them into a regex, but real
//    ones are plain names like "h" or "layers"), rank_pattern and alpha_pattern (objects:
//    module regex -> r, module regex -> alpha);
//  - ignored whatever their value (metadata, or how PEFT initialised weights that the file
//    now holds): task_type, base_model_name_or_path, revision, peft_version, inference_mode,
//    auto_mapping, megatron_core, qalora_group_size (used only with use_qalora), loftq_config,
//    eva_config, corda_config, lora_ga_config; init_lora_weights is accepted when it is true,
//    false, "gaussian", "eva" or "orthogonal" (they leave the base weights alone) and refused
//    otherwise (PiSSA, OLoRA, LoftQ, CorDA, LoRA-GA initialisations change the base weights
//    the adapter belongs to);
//  - use_dora (LoRA: DoRA's magnitude vectors are in the file too); for peft_type "IA3"
//    (io/peft_methods.c): target_modules, feedforward_modules (a list, a subset of a list
//    target_modules, or a regex), fan_in_fan_out, layers_to_transform, layers_pattern;
//    init_ia3_weights ignored; LoRA's fields refused when set (and IA3's in a LoRA file);
//  - refused by name when set (any value but null, false, "", [] or {}): modules_to_save, lora_bias, layer_replication, trainable_token_indices,
//    target_parameters, exclude_modules, use_qalora, use_bdlora, megatron_config, and every
//    field not named here: lorampi cannot tell whether it changes the adapter, and a refusal
//    is safer than training something else than the file describes. Unset fields (PEFT writes
//    dozens of nulls and falses) are fine.
// Nothing here exits: every function returns an error text, so the fuzz target and the
// session report it their own way.
#ifndef LORAMPI_PEFT_READ_H
#define LORAMPI_PEFT_READ_H
#include <jansson.h>
#include <stddef.h>
#include "core/config.h"

#define LMP_PEFT_MAX_TARGETS 32
#define LMP_PEFT_MAX_PATTERNS 256
#define LMP_PEFT_MAX_LAYER_PATTERNS 8
#define LMP_PEFT_NAME 256

typedef struct {
    char key[LMP_PEFT_NAME];
    double value;
} lmp_peft_pattern;

typedef struct {
    int r;
    double alpha, dropout;
    int rslora;
    int fan_in_fan_out;                  // -1: absent
    int target_regex;                    // 1: target_modules is a regex (target_re)
    char target_re[1024];
    int n_targets;                       // list form
    char targets[LMP_PEFT_MAX_TARGETS][LMP_PEFT_NAME];
    int n_layers;                        // layers_to_transform; 0: none (every layer)
    int layers[LMP_MAX_LAYERS];
    int n_layer_patterns;                // layers_pattern; 0: any "<name>.<index>." segment
    char layer_patterns[LMP_PEFT_MAX_LAYER_PATTERNS][LMP_PEFT_NAME];
    int n_rank, n_alpha;                 // in the file's order (PEFT takes the first match)
    lmp_peft_pattern rank_pattern[LMP_PEFT_MAX_PATTERNS], alpha_pattern[LMP_PEFT_MAX_PATTERNS];
    // The other methods (io/peft_methods.c): peft_type "IA3" (ia3), LoRA's use_dora; IA3's
    // feedforward_modules as a list (ff) or a regex (ff_re, ff_regex).
    int ia3, use_dora;
    int ff_regex, n_ff;
    char ff_re[1024];
    char ff[LMP_PEFT_MAX_TARGETS][LMP_PEFT_NAME];
} lmp_peft_config;

// Whether IA3's feedforward_modules select module `name` (as target_modules does): 1, 0, -1
// (a bad regex, err set).
int lmp_peft_feedforward(const lmp_peft_config *pc, const char *name, char *err, size_t errn);

// Parses adapter_config.json text (len bytes, need not be NUL-terminated) into *pc. Returns
// 0, or -1 with "origin: what is wrong" in err.
int lmp_peft_parse_config(const char *text, size_t len, const char *origin, lmp_peft_config *pc,
                          char *err, size_t errn);
// Reads and parses DIR/adapter_config.json. 0, or -1 with err naming the file.
int lmp_peft_read_config(const char *dir, lmp_peft_config *pc, char *err, size_t errn);
// Whether a field of adapter_config.json is set: PEFT writes unused fields as null, false or
// empty strings/containers, and those say "not used".
int lmp_peft_is_set(const json_t *v);

// Python re.fullmatch(re, s) through PCRE2: 1 match, 0 no match, -1 a pattern PCRE2 refuses
// (err says where).
int lmp_regex_fullmatch(const char *re, const char *s, char *err, size_t errn);
// Whether target_modules selects module `name` (the full PEFT name,
// "transformer.h.0.attn.c_attn"), with layers_to_transform applied as PEFT applies it: 1, 0,
// or -1 (a bad regex, err set).
int lmp_peft_targets(const lmp_peft_config *pc, const char *name, char *err, size_t errn);
// Whether list entry `entry` matches `name` (equal, or name ends with "." + entry).
int lmp_peft_entry_matches(const char *entry, const char *name);
// The layer index PEFT reads from `name` for layers_to_transform (the number after a
// layers_pattern segment, or after any segment when none is given), or -1.
int lmp_peft_layer_index(const lmp_peft_config *pc, const char *name);
// Index of the first of n patterns whose key matches `name` as PEFT's get_pattern_key does
// (the key is a regex; it must match a suffix of name that is all of it or starts after a
// "."), -1 when none does, -2 for a bad regex (err set).
int lmp_peft_pattern_find(const lmp_peft_pattern *p, int n, const char *name, char *err,
                          size_t errn);

#endif
