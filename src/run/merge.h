// merge.h: `lorampi merge CKPT --out DIR`: the checkpoint's model with its adapters merged
// (W = W0 + ΔW; merged.h) as an HF directory or an llm.c .bin. The checkpoint's stored
// configuration gives the model (--model PATH: where W0 is read from instead). Any number
// of ranks: they form one tensor-parallel group (tp = world size, dp = 1) when the model
// splits that way (heads, MLP width and vocabulary divisible), else the largest tp that
// divides the world size and the model, the other ranks idle as dp replicas (merging needs
// no data parallelism). The files are the same bytes for every rank count.
#ifndef LORAMPI_MERGE_H
#define LORAMPI_MERGE_H
#include "run/merged.h"

typedef struct {
    const char *ckpt, *out;
    const char *model;          // NULL: the checkpoint's [model] path
    int format;                 // -1: hf, or llmc for an llm.c input model; else lmp_merged_format
    lmp_dtype dtype;
    int force;                  // write into a non-empty DIR
} lmp_merge_args;

// Every rank calls it; errors end every rank with one message. Returns 0.
int lmp_merge(const lmp_merge_args *a);

#endif
