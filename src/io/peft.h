// peft.h: adapters as Hugging Face PEFT directories (adapter_config.json +
// adapter_model.safetensors), loadable with PeftModel.from_pretrained on GPT-2.
#ifndef LORAMPI_PEFT_H
#define LORAMPI_PEFT_H
#include "core/config.h"
#include "core/registry.h"

// Writes the LoRA adapters recorded in reg (its adapter records) to `dir` (created). Keys are
// base_model.model.transformer.<module>.lora_{A,B}.weight with A (r, in), B (out, r). LoRA on
// q/k/v blocks of c_attn has no PEFT module of its own: the blocks of one layer are written
// as one c_attn adapter of rank r * blocks, A stacked and B block-structured (zero rows where
// a block is not adapted), with rank_pattern/alpha_pattern keeping the scaling, so PEFT
// computes exactly the same delta W. Every adapter tensor must be whole on this rank (they
// are replicated); call on one rank.
void lmp_peft_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg);

#endif
