// ia3.h: IA³ (learned vectors rescaling a linear layer's output, or a feed-forward layer's
// input), as PEFT's IA3 (ia3.c has the rules). The record's r holds 1 for a feed-forward
// module (its vector ia3_l is (1, in)), 0 otherwise ((out, 1)).
#ifndef LORAMPI_IA3_H
#define LORAMPI_IA3_H
#include "adapters/adapter.h"

// [adapter] method = ia3
extern const lmp_adapter_method lmp_ia3_method;

#endif
