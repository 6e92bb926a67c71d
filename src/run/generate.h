// generate.h: text from a model and its adapter (or fully trained weights) in a checkpoint:
// temperature and top-k sampling, or greedy decoding, reproducible from a seed on any layout.
#ifndef LORAMPI_GENERATE_H
#define LORAMPI_GENERATE_H
#include <stdint.h>
#include "core/config.h"
#include "run/train.h"

typedef struct {
    const char *vocab;    // tokenizer directory: tokenizer.json (+ tokenizer_config.json) or
                          // GPT-2's files; NULL with bytes = 1
    int tokenizer_first;  // 1 (--tokenizer): tokenizer.json first (lmp_tokenizer_load);
                          // 0 (--vocab): GPT-2's files first (lmp_bpe_load)
    int bytes;            // bytes as tokens (a byte-level model)
    int chat;             // the prompt as one user turn in the tokenizer's chat format
                          // (data/chat.h), the assistant header after it
    const char *prompt;
    int tokens;           // tokens to generate
    float temperature;    // <= 0: greedy (argmax)
    int top_k;            // 0: the whole vocabulary
    float top_p;          // nucleus: smallest set of the top_k with this probability; 1: all
    int no_cache;         // 1: recompute the whole window for every token (no KV cache)
    uint64_t seed;
} lmp_gen_opts;

// Builds the model of cfg (base weights, adapters, then the checkpoint chosen as for
// training: o->resume or the newest in [checkpoint] dir), continues the prompt and prints
// prompt + continuation on rank 0. The prompt starts with the tokenizer's BOS when it adds
// one; generation stops at its EOS and at every eos_token_id of the model directory's
// generation_config.json. Every rank calls it. Returns 0.
int lmp_generate(const lmp_config *cfg, const lmp_train_opts *o, const lmp_gen_opts *g);

#endif
