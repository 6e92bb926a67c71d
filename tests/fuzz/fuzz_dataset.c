// fuzz_dataset: training data (data/dataset.c): text files (whole, or documents separated by
// a delimiter line) and instruction data (a JSON array or JSON Lines of Alpaca records),
// tokenized by bytes or by a tiny byte-level BPE vocabulary, then written as token files and
// read back. The first input byte picks format and options; the rest is the file.
#include "fuzzutil.h"
#include "data/dataset.h"
#include "io/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// GPT-2's byte alphabet (bytes to printable code points), a handful of merges and
// <|endoftext|>: the BPE code paths of the real vocabulary at a few hundred tokens.
static lmp_bpe *tiny_bpe(void) {
    char vpath[512], mpath[512];
    lmp_fuzz_path(vpath, sizeof vpath, "tiny-vocab.json");
    FILE *f = fopen(vpath, "w");
    if (!f) abort();
    fputc('{', f);
    for (int b = 0, extra = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        int cp = printable ? b : 256 + extra++;
        char u[4] = {0};
        if (cp < 128) u[0] = (char)cp;
        else { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); }
        fprintf(f, "\"%s%s\": %d, ", cp == '"' || cp == '\\' ? "\\" : "", u, b);
    }
    fprintf(f, "\"\xc4\xa0t\": 256, \"he\": 257, \"\xc4\xa0the\": 258, \"in\": 259, "
               "\"<|endoftext|>\": 260}");
    if (fclose(f) != 0) abort();
    static const char merges[] = "#version: 0.2\n\xc4\xa0 t\nh e\n\xc4\xa0t he\ni n\n";
    lmp_fuzz_write(mpath, sizeof mpath, "tiny-merges.txt", merges, sizeof merges - 1);
    return lmp_bpe_load_files(vpath, mpath);
}

static const char *const NAMES[4] = {"data.txt", "data.txt", "data.json", "data.jsonl"};

// Writes the stream and reads the files back.
static void write_and_read(lmp_token_stream *s) {
    char prefix[512], path[600];
    lmp_fuzz_path(prefix, sizeof prefix, "out");
    lmp_stream_write(s, prefix, 0.25);
    snprintf(path, sizeof path, "%s_train.bin", prefix);
    size_t n;
    uint8_t *mask;
    uint32_t *tok = lmp_tokens_read(path, &n, &mask);
    free(tok);
    free(mask);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lmp_bpe *bpe;
    if (!bpe) LMP_FUZZ_TRY(bpe = tiny_bpe());
    if (!bpe || size < 1) return 0;
    uint8_t opt = data[0];
    static const int MAXTOK[8] = {0, 0, 1, 2, 5, 16, 64, 0};
    lmp_dataset_opts o = {opt & 2 ? LMP_FMT_ALPACA : LMP_FMT_AUTO, (opt & 3) == 1 ? "---" : NULL, NULL,
                          (opt >> 2) & 1, MAXTOK[(opt >> 5) & 7], (opt >> 3) & 1, 0};
    char path[512];
    lmp_fuzz_write(path, sizeof path, NAMES[opt & 3], data + 1, size - 1);
    static lmp_token_stream s;  // static: a stream left by a die is freed by the next input
    lmp_stream_free(&s);
    LMP_FUZZ_TRY({
        lmp_stream_add_file(&s, (opt & 16) && !(opt & 2) ? NULL : bpe, path, &o);
        lmp_stream_add_file(&s, (opt & 16) && !(opt & 2) ? NULL : bpe, path, &o);
        write_and_read(&s);
    });
    return 0;
}
