// acts.h: the activation table. One list of (buffer, float count) both sizes the activation
// memory and carves it, so the two cannot disagree: a component adds its buffers for a batch
// of N rows, the model allocates the sum once and hands each buffer its part.
#ifndef LORAMPI_ACTS_H
#define LORAMPI_ACTS_H
#include <stddef.h>

typedef struct {
    float ***slot;   // where each buffer's pointer goes
    size_t *n;       // its float count
    int count, cap;
} lmp_acts;

// Adds a buffer of n floats whose pointer is stored in *slot at carving.
void lmp_acts_add(lmp_acts *t, float **slot, size_t n);
size_t lmp_acts_floats(const lmp_acts *t);
// Points every slot into mem (lmp_acts_floats(t) floats), in the order added.
void lmp_acts_carve(const lmp_acts *t, float *mem);
void lmp_acts_free(lmp_acts *t);

#endif
