// ckpt_layout.h: where a registry entry lives in a checkpoint file, shared by the writer
// (ckpt_write.c), the reader (ckpt_read.c) and retention (ckpt_list.c). The layout itself is
// documented in ckpt_hdf5.h and README ("Checkpoints and resuming").
#ifndef LORAMPI_CKPT_LAYOUT_H
#define LORAMPI_CKPT_LAYOUT_H
#include <hdf5.h>
#include <stddef.h>
#include "core/config.h"
#include "core/registry.h"

#define LMP_CKPT_FORMAT "lorampi-checkpoint"
// 2: adapter groups carry their module record (method, layer, target, slice, base_weight,
// out_offset, in, out). Version 1 files are refused with one message naming the version.
#define LMP_CKPT_FORMAT_VERSION 2

// Dataset path (relative to the file root or to /optim/m, /optim/v) of trainable entry p,
// from its adapter record when it has one:
//   record "h.0.attn.c_attn", tensor "h.0.attn.c_attn.lora_A"
//                        -> "adapter/transformer.h.0.attn.c_attn/lora_A",
//   base "h.0.ln_1.weight" -> "params/transformer.h.0.ln_1.weight".
void lmp_ckpt_tensor_path(const lmp_registry *r, const lmp_param *p, char *out, size_t n);

// Selects this rank's part of p in the file dataspace fs: the whole tensor, or its slice as
// the union of one block per group along split_dim, whose row-major order is exactly the
// local buffer's (blocks in group order). 0, or -1 when HDF5 refuses the selection.
int lmp_ckpt_select_local(hid_t fs, const lmp_param *p);

// The base model as the user knows it, into buf (size n): its path, or how it was initialised.
const char *lmp_ckpt_base_desc(const lmp_config *cfg, char *buf, size_t n);

// Rank 0, after a new checkpoint is in place in dir: deletes all but the newest `keep`
// (0: none) of the checkpoints whose lineage attribute is `lineage` (this run's: written by
// it or by the runs it resumed from), and any temporary left by a crash (ckpt_list.c).
void lmp_ckpt_apply_retention(const char *dir, int keep, const char *lineage);

#endif
