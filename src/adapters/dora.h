// dora.h: DoRA (Liu et al., 2024), LoRA with the adapted weight decomposed into a magnitude
// and a direction, as PEFT's use_dora (dora.c has the rules and the tp layout).
#ifndef LORAMPI_DORA_H
#define LORAMPI_DORA_H
#include "adapters/adapter.h"

// [adapter] method = dora: tensors lora_A (r, in), lora_B (out, r), lora_magnitude_vector (out).
extern const lmp_adapter_method lmp_dora_method;

// Tests: 1 holds every module's norms ||W0 + s B A|| at the values of the latest forward
// (the finite differences then see the constant PEFT's detach() makes of them).
extern int lmp_dora_freeze_norms;

// The row norms ||W0 + s B A||_row of one module (out floats, whole on every rank; a
// collective over the tp group): init sets the magnitude to them; merge reads them.
void lmp_dora_norms(lmp_adapter *a, float *out_norms);

#endif
