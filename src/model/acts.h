// acts.h: the activation table. One list of (buffer, float count) both sizes the activation
// memory and carves it, so the two cannot disagree: a component adds its buffers for a batch
// of N rows, the model allocates the sum once and hands each buffer its part.
// Buffers that never live at the same time may share memory: after lmp_acts_seek back to a
// mark, the buffers added next overlay those added from the mark on ([train] recompute =
// block: every block's working buffers in one region, as large as the largest block's).
#ifndef LORAMPI_ACTS_H
#define LORAMPI_ACTS_H
#include <stddef.h>

typedef struct {
    float ***slot;   // where each buffer's pointer goes
    size_t *n;       // its float count
    size_t *off;     // its offset in the allocation, in floats
    size_t at, end;  // where the next buffer goes; the furthest end so far
    int count, cap;
} lmp_acts;

// Adds a buffer of n floats whose pointer is stored in *slot at carving.
void lmp_acts_add(lmp_acts *t, float **slot, size_t n);
// Where the next buffer would go (a mark to seek back to).
size_t lmp_acts_mark(const lmp_acts *t);
// The next buffer goes at offset `at` (a mark, or lmp_acts_floats(t): after everything).
void lmp_acts_seek(lmp_acts *t, size_t at);
// Floats the table needs: the furthest end of any buffer.
size_t lmp_acts_floats(const lmp_acts *t);
// Points every slot into mem (lmp_acts_floats(t) floats), at its offset.
void lmp_acts_carve(const lmp_acts *t, float *mem);
void lmp_acts_free(lmp_acts *t);

#endif
