// acts.c: the activation table (acts.h).
#include "model/acts.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void lmp_acts_add(lmp_acts *t, float **slot, size_t n) {
    if (t->count == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        float ***s = lmp_malloc((size_t)cap * sizeof *s);
        size_t *c = lmp_malloc((size_t)cap * sizeof *c);
        if (t->count) {
            memcpy(s, t->slot, (size_t)t->count * sizeof *s);
            memcpy(c, t->n, (size_t)t->count * sizeof *c);
        }
        free(t->slot);
        free(t->n);
        t->slot = s;
        t->n = c;
        t->cap = cap;
    }
    t->slot[t->count] = slot;
    t->n[t->count++] = n;
}

size_t lmp_acts_floats(const lmp_acts *t) {
    size_t s = 0;
    for (int i = 0; i < t->count; i++) s += t->n[i];
    return s;
}

void lmp_acts_carve(const lmp_acts *t, float *mem) {
    for (int i = 0; i < t->count; i++) {
        *t->slot[i] = mem;
        mem += t->n[i];
    }
}

void lmp_acts_free(lmp_acts *t) {
    free(t->slot);
    free(t->n);
    memset(t, 0, sizeof *t);
}
