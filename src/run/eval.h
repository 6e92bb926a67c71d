// eval.h: `lorampi eval CONFIG [--resume CKPT | --no-resume] [--data FILE] [--batches N]`:
// the loss of the model of CONFIG with its adapter (the checkpoint training would resume
// from, as generate picks it) on held-out token data, without training.
#ifndef LORAMPI_EVAL_H
#define LORAMPI_EVAL_H
#include "core/config.h"
#include "run/train.h"

typedef struct {
    const char *data;   // token file; NULL: [data] val
    int batches;        // global batches of [train] batch_size x seq_len; 0: [train] eval_batches
} lmp_eval_opts;

// Prints one human line and one JSON line on rank 0: loss (mean over the targets that count,
// masked tokens excluded), perplexity, counted tokens, sequences. Every rank calls it.
int lmp_eval(const lmp_config *cfg, const lmp_train_opts *o, const lmp_eval_opts *e);

#endif
