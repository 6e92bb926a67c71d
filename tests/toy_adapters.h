// toy_adapters.h: two adapter methods written against adapters/adapter.h alone, to test
// the block-level hook points the way a new method would use them:
//  - "toy_series" (LMP_HOOK_SUBLAYER): h <- h * (1 + s) + t, s, t (C) — neutral at s = t = 0;
//  - "toy_parallel" (LMP_HOOK_BESIDE): h <- h + tanh(x) * w + c, w, c (C) — neutral at 0.
// Their tensors are replicated with tp-identical gradients (the hooks see whole h and x).
#ifndef LORAMPI_TOY_ADAPTERS_H
#define LORAMPI_TOY_ADAPTERS_H
#include "adapters/adapter.h"

extern const lmp_adapter_method toy_series_method, toy_parallel_method;
// Makes both known to lmp_adapter_find (once).
void toy_adapters_register(void);

#endif
