// fuzz_chat: chat data (data/chat.c through data/dataset.c): the input's first byte picks the
// chat format (auto, llama3, chatml), train_on_inputs and max_tokens; the rest is a JSON
// Lines (or JSON array) file of {"messages": [...]} records, tokenized with a tiny
// tokenizer.json that has the chat formats' special tokens and <think>, written as token
// files and read back.
#include "fuzzutil.h"
#include "data/chat.h"
#include "data/dataset.h"
#include "io/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// GPT-2's 256 byte tokens, two merges, and the special tokens as added tokens.
static lmp_bpe *tiny_tokenizer(void) {
    char path[512];
    lmp_fuzz_path(path, sizeof path, "chat-tokenizer.json");
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {", f);
    for (int b = 0, extra = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        int cp = printable ? b : 256 + extra++;
        char u[4] = {0};
        if (cp < 128) u[0] = (char)cp;
        else { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); }
        fprintf(f, "\"%s%s\": %d, ", cp == '"' || cp == '\\' ? "\\" : "", u, b);
    }
    fputs("\"\xc4\x8a\xc4\x8a\": 256, \"he\": 257}, \"merges\": [[\"\xc4\x8a\", \"\xc4\x8a\"], \"h e\"]}, "
          "\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
          "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
          "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}, "
          "\"added_tokens\": [", f);
    const char *added[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                           "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"};
    for (int k = 0; k < 9; k++) fprintf(f, "%s{\"id\": %d, \"content\": \"%s\", \"special\": true}", k ? ", " : "", 258 + k, added[k]);
    fputs("]}", f);
    if (fclose(f) != 0) abort();
    return lmp_tokenizer_load_files(path, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lmp_bpe *tok;
    if (!tok) LMP_FUZZ_TRY(tok = tiny_tokenizer());
    if (!tok || size < 1) return 0;
    uint8_t opt = data[0];
    static const int MAXTOK[4] = {0, 3, 12, 40};
    lmp_dataset_opts o = {LMP_FMT_ALPACA, NULL, NULL, (opt >> 2) & 1, MAXTOK[(opt >> 3) & 3], (opt >> 5) & 1, opt % 3};
    char path[512];
    lmp_fuzz_write(path, sizeof path, "chat.jsonl", data + 1, size - 1);
    static lmp_token_stream s;  // static: a stream left by a die is freed by the next input
    lmp_stream_free(&s);
    LMP_FUZZ_TRY({
        lmp_stream_add_file(&s, tok, path, &o);
        char prefix[512], out[600];
        lmp_fuzz_path(prefix, sizeof prefix, "chat-out");
        lmp_stream_write(&s, prefix, 0);
        snprintf(out, sizeof out, "%s_train.bin", prefix);
        size_t n;
        uint8_t *mask;
        free(lmp_tokens_read(out, &n, &mask));
        free(mask);
    });
    return 0;
}
