// fuzz_tokens: llm.c token files, version 1 and 2 (io/tokens.c), read and mapped. Both paths
// must accept the same files and give the same tokens and mask.
#include "fuzzutil.h"
#include "io/tokens.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    lmp_fuzz_write(path, sizeof path, "tokens.bin", data, size);
    uint16_t *volatile tok = NULL;
    uint8_t *volatile mask = NULL;
    volatile size_t count = 0;
    volatile int read_ok = 0;
    LMP_FUZZ_TRY({
        size_t c;
        uint8_t *m;
        tok = lmp_tokens_read(path, &c, &m);
        mask = m;
        count = c;
        read_ok = 1;
    });
    LMP_FUZZ_TRY({
        size_t c, len;
        const uint8_t *m;
        void *map;
        const uint16_t *t = lmp_tokens_map(path, &c, &m, &map, &len);
        // The two readers disagree: a finding (abort makes libFuzzer keep the input).
        if (!read_ok || c != count || (c && memcmp(t, tok, c * 2)) || !m != !mask ||
            (m && c && memcmp(m, mask, c)))
            abort();
        munmap(map, len);
        read_ok = 2;
    });
    if (read_ok == 1) abort();  // read accepted a file that map refused
    free(tok);
    free(mask);
    return 0;
}
