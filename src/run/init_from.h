// init_from.h: [adapter] init_from = DIR, training started from a PEFT LoRA directory
// (adapter_config.json + adapter_model.safetensors, as PEFT's save_pretrained or lorampi's
// export writes it).
//  - lmp_init_from_apply, once the config is loaded and before any model is built: the
//    adapter's config replaces [adapter] r, alpha, dropout, rslora, targets and layers (one
//    warning lists the keys it changed) and sets per-module r/alpha from its rank_pattern and
//    alpha_pattern. Every target_modules entry must name a module of the model lorampi adapts
//    (an entry matching nothing, or a LayerNorm, an embedding, ..., is refused by name), and
//    the modules selected must be the same targets in every adapted layer ([adapter] targets
//    x layers): another selection is refused naming a module.
//  - lmp_init_from_load, when no checkpoint is resumed (a checkpoint continues its run and
//    takes precedence): every adapted module's lora_A (r, in) and lora_B (out, r) from the
//    safetensors file, each shape checked against the model, every tensor in the file used.
// Errors name the file and what is wrong and end every rank; nothing is written.
#ifndef LORAMPI_INIT_FROM_H
#define LORAMPI_INIT_FROM_H
#include "core/comm.h"
#include "core/config.h"
#include "core/registry.h"

// Applies [adapter] init_from (no-op when empty) to cfg. Every rank calls it with the same
// config and reads the same file: errors are lmp_die_all.
void lmp_init_from_apply(lmp_config *cfg);
// Sets the adapter tensors of reg (replicated: whole on every rank) from init_from's
// safetensors file: rank 0 reads and checks, then broadcasts. Collective.
void lmp_init_from_load(const lmp_config *cfg, lmp_registry *reg, lmp_comm *c);

#endif
