// bench_bpe: GPT-2 BPE encoding speed in MB/s on the given text files, with the piece cache
// (default) and without it, in one process; the ids of both runs must be equal.
// Usage: bench_bpe VOCAB_DIR FILE...   (run by tests/bench/bench_bpe.sh)
#include "data/bpe.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) lmp_die("usage: bench_bpe VOCAB_DIR FILE...");
    size_t total = 0, cap = 1 << 20;
    char *text = lmp_malloc(cap);
    for (int f = 2; f < argc; f++) {
        size_t len;
        char *t = lmp_read_file(argv[f], &len);
        if (total + len + 1 > cap) {
            while (total + len + 1 > cap) cap *= 2;
            text = realloc(text, cap);
            LMP_CHECK(text, "out of memory");
        }
        memcpy(text + total, t, len);
        total += len;
        free(t);
    }
    double t0 = lmp_now();
    lmp_bpe *b = lmp_bpe_load(argv[1]);
    double t_load = lmp_now() - t0;
    lmp_ids ids[2] = {{0}, {0}};
    double secs[2];
    for (int cached = 1; cached >= 0; cached--) {
        lmp_bpe_free(b);
        b = lmp_bpe_load(argv[1]);  // a cold cache each time
        lmp_bpe_set_cache(b, cached);
        double t1 = lmp_now();
        lmp_bpe_encode(b, text, total, &ids[cached], NULL);
        secs[cached] = lmp_now() - t1;
    }
    LMP_CHECK(ids[0].n == ids[1].n && !memcmp(ids[0].v, ids[1].v, ids[0].n * sizeof(int)),
              "cached and uncached encodings differ");
    printf("| lorampi (C), piece cache | %.2f | %zu | %.2f | %.1f |\n", total / 1e6, ids[1].n, secs[1], total / 1e6 / secs[1]);
    printf("| lorampi (C), no cache | %.2f | %zu | %.2f | %.1f |\n", total / 1e6, ids[0].n, secs[0], total / 1e6 / secs[0]);
    printf("(vocabulary load: %.2f s)\n", t_load);
    lmp_ids_free(&ids[0]);
    lmp_ids_free(&ids[1]);
    lmp_bpe_free(b);
    free(text);
    return 0;
}
