// peft_methods.h: PEFT's IA3 and DoRA in adapter_config.json, beside LoRA's fields
// (peft_read.c parses those and calls here).
#ifndef LORAMPI_PEFT_METHODS_H
#define LORAMPI_PEFT_METHODS_H
#include <jansson.h>
#include <stddef.h>
#include "core/config.h"
#include "core/registry.h"
#include "io/peft.h"
#include "io/peft_read.h"
#include "io/safetensors.h"

// The fields of an IA3 config (pc->ia3 set): feedforward_modules into pc, a subset of a
// list target_modules as PEFT requires; LoRA's fields refused when set. Also called for
// LoRA configs, where IA3's fields are refused when set. 0, or -1 with err.
int lmp_peft_ia3_fields(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn);
// After target_modules is read: an IA3 config's feedforward_modules within them. 0 or -1.
int lmp_peft_ia3_check(const lmp_peft_config *pc, const char *origin, char *err, size_t errn);

// PEFT's files of DoRA: each record's lora_magnitude_vector (out) as t[k] named in names[k]
// (record order: one per module; q/k/v slices are refused, as the magnitudes of c_attn's
// other rows would need W0). lmp_peft_save calls it for dora records.
void lmp_peft_dora_magnitudes(const lmp_registry *reg, const lmp_peft_naming *nm, lmp_st_out *t,
                              char (*names)[LMP_NAME_MAX + 64], size_t name_n);
// Writes the IA3 records of reg as PEFT's IA3 directory (created): ia3_l (out, 1), or (1, in)
// on a feed-forward module; q/k/v slices of one c_attn as one vector of its 3C outputs, 1
// where no slice is adapted. adapter_config.json has PEFT 0.21's IA3 fields; with a subset of
// layers, target_modules and feedforward_modules list the modules by name (IA3Config has no
// layers_to_transform). Tensors must be whole; call on one rank.
void lmp_peft_save_ia3(const char *dir, const lmp_registry *reg, const lmp_config *cfg);

#endif
