// fuzz_tokjson: Hugging Face tokenizer.json files (data/tokenizer_json.c,
// lmp_tokenizer_load_files): the input is tokenizer.json, then optionally a line "=====" and
// tokenizer_config.json. A tokenizer that loads encodes a fixed text (special-token text,
// NFC cases, invalid UTF-8) and the input itself, and decodes the result.
#define _GNU_SOURCE  // memmem
#include "fuzzutil.h"
#include "data/bpe.h"

#include <stdlib.h>
#include <string.h>

static const char SEP[] = "\n=====\n";

static void use(lmp_bpe *b, const uint8_t *data, size_t size) {
    static const char text[] = "Hello world, it's 2024!\n\n  caf\xc3\xa9 e\xcc\x81 \xff<|endoftext|><|im_start|>x<|eot_id|>";
    lmp_ids ids = {0};
    lmp_bpe_encode(b, text, sizeof text - 1, &ids, NULL);
    lmp_bpe_encode(b, (const char *)data, size < 512 ? size : 512, &ids, NULL);
    size_t len;
    free(lmp_bpe_decode(b, ids.v, ids.n, &len));
    (void)lmp_bpe_bos(b);
    (void)lmp_bpe_eot(b);
    lmp_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = memmem(data, size, SEP, sizeof SEP - 1);
    size_t tlen = sep ? (size_t)(sep - data) : size;
    size_t coff = sep ? tlen + sizeof SEP - 1 : size;
    char tok[512], cfg[512];
    lmp_fuzz_write(tok, sizeof tok, "tokenizer.json", data, tlen);
    lmp_fuzz_write(cfg, sizeof cfg, "tokenizer_config.json", data + coff, size - coff);
    LMP_FUZZ_TRY({
        lmp_bpe *b = lmp_tokenizer_load_files(tok, sep ? cfg : NULL);
        use(b, data, size);
        lmp_bpe_free(b);
    });
    return 0;
}
