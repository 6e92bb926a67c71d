// train.h: the training loop: data -> forward/backward -> gradient all-reduce -> clip ->
// AdamW -> log -> (save). Everything below it knows nothing of files or the CLI.
#ifndef LORAMPI_TRAIN_H
#define LORAMPI_TRAIN_H
#include "core/config.h"
#include "core/comm.h"
#include "model/gpt2.h"

// Summary of a finished run (rank 0's view, identical on all ranks).
typedef struct {
    int steps;
    double first_loss, last_loss;        // training loss of the first and last step
    double first_val, last_val;          // validation loss before training and at the end (NAN: none)
    double tokens_per_s;                 // mean over the run after the first step
    int64_t trainable, total;            // parameter counts
    double peak_rss_max;                 // bytes, the largest rank's
    int start_step;                      // steps done before this run (resumed checkpoint)
    int stopped;                         // 1: stopped early by stop_at, 2: by a signal
                                         // (SIGUSR1/SIGTERM); a checkpoint was written
} lmp_train_result;

// How a run starts and stops, beyond the configuration (command-line options).
typedef struct {
    const char *resume;   // checkpoint file to resume from; NULL: newest in [checkpoint] dir
    int no_resume;        // 1: start fresh even when [checkpoint] dir holds checkpoints
    int stop_at;          // > 0: write a checkpoint and stop once this many steps are done
} lmp_train_opts;

// The model's hyperparameters (from [model] path, or the [model] keys for a new model) and
// the adapter options, checked against each other; layer_on has LMP_MAX_LAYERS entries.
// Dies on every rank naming the key on a mismatch.
void lmp_resolve_model(const lmp_config *cfg, lmp_model_config *mc, lmp_gpt2_opts *opts,
                       unsigned char *layer_on);

// Base weights from [model] path (or GPT-2's init from [train] seed) and fresh adapters.
void lmp_init_weights(const lmp_config *cfg, lmp_gpt2 *m);
// The checkpoint a run resumes from into path (empty: none): o->resume, else the newest
// complete one in [checkpoint] dir unless o->no_resume. Collective.
void lmp_pick_resume(const lmp_config *cfg, const lmp_train_opts *o, lmp_comm *c, char *path,
                     size_t n);

// Runs a training job as configured, resuming from a checkpoint when there is one (see
// lmp_train_opts); every rank calls it. Returns 0.
int lmp_train(const lmp_config *cfg, const lmp_train_opts *o, lmp_train_result *res);

#endif
