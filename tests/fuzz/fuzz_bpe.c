// fuzz_bpe: GPT-2 vocabularies (data/bpe.c, lmp_bpe_load_files): the input is vocab.json,
// then a line "=====", then merges.txt. A vocabulary that loads encodes a fixed text and the
// input itself, and decodes the result.
#define _GNU_SOURCE  // memmem
#include "fuzzutil.h"
#include "data/bpe.h"

#include <stdlib.h>
#include <string.h>

static const char SEP[] = "\n=====\n";

static void use(lmp_bpe *b, const uint8_t *data, size_t size) {
    static const char text[] = "Hello world, it's 2024!\n\n  caf\xc3\xa9 \xff<|endoftext|>";
    lmp_ids ids = {0};
    lmp_bpe_encode(b, text, sizeof text - 1, &ids, NULL);
    lmp_bpe_encode(b, (const char *)data, size < 512 ? size : 512, &ids, NULL);
    size_t len;
    free(lmp_bpe_decode(b, ids.v, ids.n, &len));
    lmp_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = memmem(data, size, SEP, sizeof SEP - 1);
    size_t vlen = sep ? (size_t)(sep - data) : size;
    size_t moff = sep ? vlen + sizeof SEP - 1 : size;
    char vocab[512], merges[512];
    lmp_fuzz_write(vocab, sizeof vocab, "vocab.json", data, vlen);
    lmp_fuzz_write(merges, sizeof merges, "merges.txt", data + moff, size - moff);
    LMP_FUZZ_TRY({
        lmp_bpe *b = lmp_bpe_load_files(vocab, merges);
        use(b, data, size);
        lmp_bpe_free(b);
    });
    return 0;
}
