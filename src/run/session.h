// session.h: what every command that runs a model does first, in one place: the process
// grid, the model of [model] (its family's description) with the adapters of [adapter], its
// weights (the pretrained file or the family's init), the checkpoint to continue from (the
// one named, else the newest in [checkpoint] dir), the base-weight checksum that ties them,
// and the load. Used by train, generate, plan, eval and merge.
#ifndef LORAMPI_SESSION_H
#define LORAMPI_SESSION_H
#include <stdint.h>
#include "core/comm.h"
#include "core/config.h"
#include "model/model.h"

typedef struct {
    lmp_comm comm;
    lmp_model_config mc;                 // the model's hyperparameters
    lmp_model_opts opts;                 // what is trained
    unsigned char layer_on[LMP_MAX_LAYERS];
    lmp_model model;
    char ckpt[LMP_PATH_MAX + 300];       // the checkpoint loaded; "" none
    uint64_t base_checksum;              // 0 when not computed
    int64_t step;                        // steps done (the checkpoint's), 0 fresh
    int ckpt_tp, ckpt_dp;                // layout that wrote the checkpoint
} lmp_session;

// The model's hyperparameters (from [model] path, or the [model] keys for a new model) and
// what is trained, checked against each other; layer_on has LMP_MAX_LAYERS entries. Dies on
// every rank naming the key on a mismatch. Local (plan calls it without a grid).
void lmp_session_resolve(const lmp_config *cfg, lmp_model_config *mc, lmp_model_opts *opts,
                         unsigned char *layer_on);
// Splits MPI_COMM_WORLD into [parallel] tp x dp and resolves the model. Collective.
void lmp_session_open(lmp_session *s, const lmp_config *cfg);
// Builds the model, sets its weights and loads the checkpoint: `resume`, else the newest in
// [checkpoint] dir unless no_resume. The base checksum is computed when a checkpoint is
// loaded or [checkpoint] dir is set (training saves it). Collective.
void lmp_session_load(lmp_session *s, const lmp_config *cfg, const char *resume, int no_resume);
void lmp_session_close(lmp_session *s);

#endif
