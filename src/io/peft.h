// peft.h: adapters as Hugging Face PEFT directories (adapter_config.json +
// adapter_model.safetensors), loadable with PeftModel.from_pretrained on GPT-2.
#ifndef LORAMPI_PEFT_H
#define LORAMPI_PEFT_H
#include "core/config.h"
#include "core/registry.h"

#include <jansson.h>
#include <stddef.h>

// How PEFT names the modules of a model family, in ONE place for the writer (peft.c) and the
// reader (peft_read.c). PEFT keys are "base_model.model." + the module's name in the HF model;
// lorampi's records name modules without the family's HF prefix ("h.0.attn.c_attn"). GPT-2's
// HF modules live under "transformer." and are Conv1D, which PEFT adapts with
// fan_in_fan_out = true. The Llama family's HF names already start with "model." (records
// carry them whole: prefix "") and its layers are nn.Linear (fan_in_fan_out = false).
typedef struct {
    const char *family;   // lmp_arch.family: "gpt2"
    const char *prefix;   // HF module prefix before a record's module name: "transformer."
    int fan_in_fan_out;   // what PEFT uses for the family's adapted layers
} lmp_peft_naming;
// The naming of `family` (lmp_arch.family; NULL: gpt2): GPT-2's, or the Llama family's
// (prefix "", fan_in_fan_out false) for every other family lorampi builds.
const lmp_peft_naming *lmp_peft_naming_of(const char *family);
// The naming of the family a record's module belongs to, from its name (core/registry.h
// lmp_hf_prefix: "model."/"lm_head." names are the Llama family's).
const lmp_peft_naming *lmp_peft_naming_of_module(const char *module);
// Sorts a JSON array of strings in place (insertion sort: a handful of names), so the lists
// an adapter_config.json holds do not depend on the order modules come in.
void lmp_peft_sort_strings(json_t *a);
// The PEFT module name of a record's module: prefix + module ("transformer.h.0.attn.c_attn"),
// as rank_pattern/alpha_pattern keys and target_modules matching see it.
char *lmp_peft_module(char *out, size_t n, const lmp_peft_naming *nm, const char *module);
// The safetensors key of a module's tensor `leaf` ("lora_A", "lora_B"):
// "base_model.model." + lmp_peft_module + "." + leaf + ".weight".
char *lmp_peft_tensor(char *out, size_t n, const lmp_peft_naming *nm, const char *module,
                      const char *leaf);
// The same without ".weight" (DoRA's lora_magnitude_vector, IA3's ia3_l).
char *lmp_peft_leaf(char *out, size_t n, const lmp_peft_naming *nm, const char *module,
                    const char *leaf);

// Writes the LoRA adapters recorded in reg (its adapter records) to `dir` (created). Keys are
// base_model.model.transformer.<module>.lora_{A,B}.weight with A (r, in), B (out, r). LoRA on
// q/k/v blocks of c_attn has no PEFT module of its own: the blocks of one layer are written
// as one c_attn adapter of rank r * blocks, A stacked and B block-structured (zero rows where
// a block is not adapted), with rank_pattern/alpha_pattern keeping the scaling, so PEFT
// computes exactly the same delta W. Every adapter tensor must be whole on this rank (they
// are replicated); call on one rank.
void lmp_peft_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg);

#endif
