// train.h: the training loop: data -> forward/backward -> gradient all-reduce -> clip ->
// AdamW -> log -> (save). Everything below it knows nothing of files or the CLI.
#ifndef LORAMPI_TRAIN_H
#define LORAMPI_TRAIN_H
#include "core/config.h"
#include "core/comm.h"
#include "model/model.h"

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

// Runs a training job as configured, resuming from a checkpoint when there is one (see
// lmp_train_opts); every rank calls it. Returns 0.
int lmp_train(const lmp_config *cfg, const lmp_train_opts *o, lmp_train_result *res);

#endif
