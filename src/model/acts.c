// acts.c: the activation table (acts.h).
#include "model/acts.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

// Grows the three arrays together (an entry is one slot, count and offset).
static void grow(lmp_acts *t) {
    int cap = t->cap ? 2 * t->cap : 64;
    float ***s = lmp_malloc((size_t)cap * sizeof *s);
    size_t *c = lmp_malloc((size_t)cap * sizeof *c), *o = lmp_malloc((size_t)cap * sizeof *o);
    if (t->count) {
        memcpy(s, t->slot, (size_t)t->count * sizeof *s);
        memcpy(c, t->n, (size_t)t->count * sizeof *c);
        memcpy(o, t->off, (size_t)t->count * sizeof *o);
    }
    free(t->slot);
    free(t->n);
    free(t->off);
    t->slot = s;
    t->n = c;
    t->off = o;
    t->cap = cap;
}

void lmp_acts_add(lmp_acts *t, float **slot, size_t n) {
    if (t->count == t->cap) grow(t);
    t->slot[t->count] = slot;
    t->off[t->count] = t->at;
    t->n[t->count++] = n;
    t->at += n;
    if (t->at > t->end) t->end = t->at;
}

size_t lmp_acts_mark(const lmp_acts *t) { return t->at; }

void lmp_acts_seek(lmp_acts *t, size_t at) {
    LMP_CHECK(at <= t->end, "activation table: seek to %zu past its end %zu", at, t->end);
    t->at = at;
}

size_t lmp_acts_floats(const lmp_acts *t) { return t->end; }

void lmp_acts_carve(const lmp_acts *t, float *mem) {
    for (int i = 0; i < t->count; i++) *t->slot[i] = mem + t->off[i];
}

void lmp_acts_free(lmp_acts *t) {
    free(t->slot);
    free(t->n);
    free(t->off);
    memset(t, 0, sizeof *t);
}
