// dataset.h: text corpora and instruction data -> one token stream with a loss mask ->
// token files (io/tokens.h). Documents and examples are appended back to back, each ending
// with <|endoftext|>; the loader cuts the stream into training windows (packing).
//  - text: one document per file, or documents separated by lines equal to a delimiter;
//    every token counts in the loss;
//  - instructions (Alpaca style, a JSON array or JSON Lines of {instruction, input, output}):
//    prompt = template(instruction, input), then output + <|endoftext|>; by default only the
//    response tokens count (mask 1), with train_on_inputs every token does;
//  - conversations (records with "messages": [{role, content}, ...], in the same JSON or
//    JSON Lines files): rendered in the tokenizer's chat format (data/chat.h), the assistant
//    turns counting (all with train_on_inputs); no end token is added (the rendering ends
//    itself);
//  - bytes: each byte is a token (vocabulary 256, no <|endoftext|>).
// With a tokenizer that adds BOS (tokenizer.json, lmp_bpe_bos), documents and instruction
// examples begin with it; "<|endoftext|>" above stands for the tokenizer's end token
// (lmp_bpe_eot: tokenizer_config.json's eos_token).
#ifndef LORAMPI_DATASET_H
#define LORAMPI_DATASET_H
#include <stddef.h>
#include <stdint.h>
#include "data/bpe.h"

typedef enum { LMP_FMT_AUTO = 0, LMP_FMT_TEXT, LMP_FMT_ALPACA } lmp_data_format;

typedef struct {
    lmp_data_format format;     // AUTO: .json/.jsonl files are instructions, others text
    const char *delimiter;      // text: document separator line; NULL: one document per file
    const char *template_path;  // instructions: JSON {prompt_input, prompt_no_input}; NULL: Alpaca's
    int train_on_inputs;        // 1: the prompt counts in the loss too
    int max_tokens;             // > 0: longest example (prompt + response + eot)
    int drop_long;              // longer examples: 1 dropped, 0 truncated to max_tokens
    int chat_format;            // conversations: an lmp_chat_format (data/chat.h); 0 = auto
} lmp_dataset_opts;

typedef struct {
    lmp_ids tok;
    uint8_t *mask;              // one per token
    size_t mask_cap;
    size_t *doc;                // start of each document/example in tok
    size_t n_docs, doc_cap;
    size_t n_truncated, n_dropped, n_bad_utf8, bytes_in;
    int masked;                 // some token has mask 0 (write the version-2/4 format)
    int vocab_size;             // of the tokenizer: > 65536 writes uint32 tokens (version 3/4)
    char *prompt_input, *prompt_no_input;  // templates in use (instructions)
} lmp_token_stream;

// The Alpaca templates (Stanford Alpaca's prompt texts), with {instruction} and {input}.
extern const char *const LMP_ALPACA_PROMPT_INPUT, *const LMP_ALPACA_PROMPT_NO_INPUT;

// Appends the documents or examples of one file; b == NULL: bytes as tokens. Dies naming
// the file (and line/column, or record) on malformed input.
void lmp_stream_add_file(lmp_token_stream *s, lmp_bpe *b, const char *path,
                         const lmp_dataset_opts *o);
// Writes PREFIX_train.bin and, when val_fraction > 0, PREFIX_val.bin: the validation part is
// the trailing documents holding about val_fraction of the tokens (cut inside the last
// document when there is only one). Dies when the stream is empty or has no token that
// counts. Prints one summary line per file written.
void lmp_stream_write(const lmp_token_stream *s, const char *prefix, double val_fraction);
void lmp_stream_free(lmp_token_stream *s);

#endif
