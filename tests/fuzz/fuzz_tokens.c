// fuzz_tokens: llm.c token files, versions 1 to 4 (io/tokens.c), read and mapped. Both paths
// must accept the same files and give the same tokens and mask.
#include "fuzzutil.h"
#include "io/tokens.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    lmp_fuzz_write(path, sizeof path, "tokens.bin", data, size);
    uint32_t *volatile tok = NULL;
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
        int w;
        const void *t = lmp_tokens_map(path, &c, &w, &m, &map, &len);
        // The two readers disagree: a finding (abort makes libFuzzer keep the input).
        int same = read_ok && c == count && (w == 2 || w == 4);
        for (size_t i = 0; same && i < c; i++)
            same = tok[i] == (w == 4 ? ((const uint32_t *)t)[i] : ((const uint16_t *)t)[i]);
        if (!same || !m != !mask || (m && c && memcmp(m, mask, c))) abort();
        munmap(map, len);
        read_ok = 2;
    });
    if (read_ok == 1) abort();  // read accepted a file that map refused
    free(tok);
    free(mask);
    return 0;
}
