// data.c: deterministic, layout-independent batches from token shards.
#include "data/data.h"
#include "io/tokens.h"
#include "core/rng.h"
#include "core/util.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

static inline uint32_t token_at(const lmp_loader *d, size_t i) {
    return d->tok32 ? d->tok32[i] : d->tok16[i];
}

void lmp_loader_open(lmp_loader *d, const char *path, int T, int vocab_size, uint64_t seed,
                     int shuffle) {
    memset(d, 0, sizeof *d);
    lmp_fmt(d->path, sizeof d->path, "%s", path);
    int width;
    const void *tok = lmp_tokens_map(path, &d->n, &width, &d->mask, &d->map, &d->map_len);
    if (width == 4) d->tok32 = tok;
    else d->tok16 = tok;
    d->T = T;
    if (d->n < (size_t)T + 1)
        lmp_die("%s holds %zu tokens, fewer than seq_len + 1 = %d", path, d->n, T + 1);
    if (d->mask) {
        size_t on = 0;
        for (size_t i = 1; i < d->n; i++) on += d->mask[i];
        if (!on) lmp_die("%s: its loss mask selects no token: nothing to train on (tokenize with "
                         "--train-on-inputs, or check the responses)", path);
    }
    for (size_t i = 0; i < d->n; i++)
        if (token_at(d, i) >= (uint32_t)vocab_size)
            lmp_die("%s: token %u at position %zu is outside the model's vocabulary of %d", path,
                    token_at(d, i), i, vocab_size);
    d->n_windows = (int64_t)((d->n - 1) / (size_t)T);
    d->seed = seed;
    d->shuffle = shuffle;
    d->perm = lmp_malloc((size_t)d->n_windows * sizeof(int64_t));
    d->perm_epoch = -1;
}

void lmp_loader_close(lmp_loader *d) {
    munmap(d->map, d->map_len);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

// Fisher-Yates driven by the counter RNG keyed by epoch: the permutation of an epoch is the
// same whenever and wherever it is rebuilt.
static void build_perm(lmp_loader *d, int64_t epoch) {
    for (int64_t i = 0; i < d->n_windows; i++) d->perm[i] = i;
    if (d->shuffle)
        for (int64_t i = d->n_windows - 1; i > 0; i--) {
            int64_t j = (int64_t)(lmp_rng_bits(d->seed, 0x6c6f61646572ULL + (uint64_t)epoch,
                                               (uint64_t)i) % (uint64_t)(i + 1));
            int64_t t = d->perm[i];
            d->perm[i] = d->perm[j];
            d->perm[j] = t;
        }
    d->perm_epoch = epoch;
}

// Offset of the first token of sequence idx's window. idx comes from the step (a
// checkpoint's attribute): a negative one (or one that wrapped) would index before the
// permutation, so it is refused; the window itself is checked against the file.
static size_t window(lmp_loader *d, int64_t idx) {
    if (idx < 0)
        lmp_die("%s: sequence index %lld is negative (a step out of range, e.g. from a "
                "corrupt checkpoint)", d->path, (long long)idx);
    int64_t epoch = idx / d->n_windows;
    if (epoch != d->perm_epoch) build_perm(d, epoch);
    int64_t w = d->perm[idx % d->n_windows];
    if (w < 0 || w >= d->n_windows || (size_t)w * (size_t)d->T + (size_t)d->T >= d->n)
        lmp_die("internal: %s: window %lld outside the file's %zu tokens", d->path, (long long)w, d->n);
    return (size_t)w * (size_t)d->T;
}

void lmp_loader_get(lmp_loader *d, int64_t idx, int *inp, int *tgt, float *w) {
    size_t s = window(d, idx);
    for (int t = 0; t < d->T; t++) {
        inp[t] = (int)token_at(d, s + (size_t)t);
        tgt[t] = (int)token_at(d, s + (size_t)t + 1);
    }
    if (w)
        for (int t = 0; t < d->T; t++) w[t] = d->mask ? (float)d->mask[s + t + 1] : 1.0f;
}

int64_t lmp_loader_count(lmp_loader *d, int64_t idx) {
    if (!d->mask) return d->T;
    size_t s = window(d, idx);
    int64_t c = 0;
    for (int t = 1; t <= d->T; t++) c += d->mask[s + t];
    return c;
}
