// peft.h: LoRA adapters as Hugging Face PEFT directories (adapter_config.json +
// adapter_model.safetensors), loadable with PeftModel.from_pretrained on GPT-2.
#ifndef LORAMPI_PEFT_H
#define LORAMPI_PEFT_H
#include "core/config.h"
#include "model/gpt2.h"

// Writes the adapters of `m` to `dir` (created). Keys are
// base_model.model.transformer.h.<i>.<module>.lora_{A,B}.weight with A (r, in), B (out, r).
// LoRA on q/k/v slices of c_attn has no PEFT module of its own: the slices of one layer are
// written as one c_attn adapter of rank r * slices, A stacked and B block-structured (zero
// rows where a slice is not adapted), with rank_pattern/alpha_pattern keeping the scaling,
// so PEFT computes exactly the same delta W. Call on one rank.
void lmp_peft_save(const char *dir, const lmp_gpt2 *m, const lmp_config *cfg);

#endif
