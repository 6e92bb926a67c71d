// ckpt_hdf5.h: training checkpoints in one HDF5 file per step, written and read with
// parallel HDF5 (MPI-IO) by every rank. The file layout is documented in README
// ("Checkpoints"); in short:
//   /adapter/<module>/lora_A (r, in), lora_B (out, r)   <module> = transformer.h.0.attn.c_attn,
//                                        its attributes the module's record (method, layer,
//                                        target, slice, base_weight, out_offset, in, out, r, ...)
//   /params/<name>                                      trainable base weights (full tuning)
//   /optim/m/<path>, /optim/v/<path>                    AdamW moments of every dataset above
//   attributes: step, config, tp, dp, version, base model and base-weight checksum, RNG and
//   data-loader state (/state), optimizer and schedule state (/optim).
// Every dataset is chunked with HDF5's Fletcher32 filter and the file uses the HDF5 1.8+
// format whose metadata carries checksums, so a flipped bit or a truncated file fails at load.
// Replicated tensors are written once (rank 0); sharded ones as each rank's hyperslab of one
// dataset with the global shape, so a checkpoint can be read back under any tp x dp layout.
// Files appear atomically: DIR/ckpt-<step>.h5.tmp is written, closed and fsynced, then rank 0
// renames it and fsyncs DIR; older checkpoints are deleted (retention) only after that.
#ifndef LORAMPI_CKPT_HDF5_H
#define LORAMPI_CKPT_HDF5_H
#include <stdint.h>
#include "core/comm.h"
#include "core/config.h"
#include "core/registry.h"

// The files: ckpt_write.c (saving), ckpt_read.c (the reader, ckpt_read.h, also used by the
// analysis), ckpt_list.c (directory listing, retention), ckpt_checksum.c, ckpt_layout.c
// (dataset paths, format version), and here in ckpt_hdf5.c, resuming.

// What a checkpoint records besides the tensors.
typedef struct {
    int64_t step;             // optimizer steps done
    float lr;                 // learning rate of the last step taken
    uint64_t base_checksum;   // lmp_base_checksum of the weights training started from
    int64_t seq_per_step;     // global sequences per optimizer step (batch x accumulation)
    int64_t n_windows;        // sequences per data epoch
    char lineage[40];         // run lineage: made by a fresh run, carried over on resume
} lmp_ckpt_meta;

// Layout-independent checksum of every base (non-adapter) tensor: a wrapping sum over all
// global elements of a hash of (tensor name, global index, bits). Each element counts once
// whatever the tp x dp layout, so it identifies the base weights across layouts.
// Collective over c->world.
uint64_t lmp_base_checksum(const lmp_registry *r, lmp_comm *c);

// Writes every trainable tensor with its AdamW moments to DIR/ckpt-<step>.h5 atomically and
// then deletes all but the newest `keep` checkpoints of meta->lineage (keep = 0: none; other
// lineages' files are never deleted) and stale temporaries.
// Collective. Returns the file size in bytes.
int64_t lmp_ckpt_save(const char *dir, int keep, const lmp_registry *r, lmp_comm *c,
                      const lmp_config *cfg, const lmp_ckpt_meta *meta);

// A complete checkpoint file of a directory.
typedef struct {
    long long step;
    char name[256];   // file name within the directory, e.g. "ckpt-00000500.h5"
} lmp_ckpt_entry;

// The complete checkpoints (regular files ckpt-<digits>.h5, never .tmp; others are skipped
// with a warning) of dir in ascending step order,
// malloc'd, *n of them; NULL and 0 when there are none or dir does not exist. Local.
lmp_ckpt_entry *lmp_ckpt_list(const char *dir, int *n);

// The lineage attribute of checkpoint path into out (size n): "" when it has none (written
// before lineages existed) or cannot be read. Local.
void lmp_ckpt_lineage(const char *path, char *out, size_t n);

// Newest complete checkpoint (highest step) in dir into path (size n); returns 0 when there
// is none (or dir does not exist). Temporaries are never picked. Rank 0 scans, all agree.
int lmp_ckpt_find_latest(const char *dir, char *path, size_t n, lmp_comm *c);

// Loads the trainable tensors and their AdamW moments of `path` into r, whatever layout wrote
// it. Checks first that the checkpoint fits this run: same base weights (checksum), same
// adapter (config keys flagged LMP_KEY_TENSORS), every tensor present with its shape, and
// warns about other settings that changed. Any mismatch, a missing, truncated or corrupt
// file: every rank exits naming the file and what differs; nothing on disk is touched.
// Collective. Returns the step the checkpoint was written at; *tp, *dp: its layout.
int64_t lmp_ckpt_load(const char *path, lmp_registry *r, lmp_comm *c, const lmp_config *cfg,
                      uint64_t base_checksum, int *tp, int *dp);

#endif
