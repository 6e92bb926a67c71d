// peft_methods.h: PEFT's IA3 and DoRA in adapter_config.json, beside LoRA's fields
// (peft_read.c parses those and calls here).
#ifndef LORAMPI_PEFT_METHODS_H
#define LORAMPI_PEFT_METHODS_H
#include <jansson.h>
#include <stddef.h>
#include "io/peft_read.h"

// The fields of an IA3 config (pc->ia3 set): feedforward_modules into pc, a subset of a
// list target_modules as PEFT requires; LoRA's fields refused when set. Also called for
// LoRA configs, where IA3's fields are refused when set. 0, or -1 with err.
int lmp_peft_ia3_fields(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn);
// After target_modules is read: an IA3 config's feedforward_modules within them. 0 or -1.
int lmp_peft_ia3_check(const lmp_peft_config *pc, const char *origin, char *err, size_t errn);

#endif
