// merged.h: a model with its adapters merged, W = W0 + ΔW, written as one model file by all
// ranks at once: `lorampi merge` and [train] save_model share it. Each rank of dp replica 0
// merges the tp shard of every weight it holds and writes that shard's byte ranges of the
// one file (io/pfile.h; the layout, header and offsets, is computed identically on every
// rank), tensors held whole by tp rank 0; no rank holds the whole model.
// ΔW = scale·B·A of each LoRA record (A (r, in), B (out, r)), added transposed to the (in,
// out) Conv1D weight at the record's output columns [out_offset, out_offset + out), as it is
// to the Llama family's (out, in) nn.Linear weights (rows [out_offset, out_offset + out)). Each
// element is W0 + scale·Σ_k B[o][k]·A[k][i], the sum over k in a fixed order, in fp32: the
// same bytes whatever the tp split (a BLAS GEMM's kernel and blocking vary with the shard's
// shape), and W0 bit for bit where ΔW is zero (B = 0, or a weight without adapter).
#ifndef LORAMPI_MERGED_H
#define LORAMPI_MERGED_H
#include "io/safetensors.h"
#include "run/session.h"

typedef enum { LMP_MERGED_HF = 0, LMP_MERGED_LLMC = 1 } lmp_merged_format;

typedef struct {
    lmp_merged_format format;
    lmp_dtype dtype;           // F32, BF16 or F16 (llm.c: F32 only)
    const char *model_path;    // the input model ("" or NULL: none): an HF input gives the
                               // output its key names and order, an llm.c input its padded V
} lmp_merged_opts;

// Writes dir (created): HF: config.json + model.safetensors (the Llama family: the input's
// config.json with the output dtype, its generation_config.json; model_config.h); llm.c:
// model.bin (version 3, fp32). Collective over s->comm.world; every rank exits non-zero on an error anywhere,
// leaving no file under the final name. Returns the seconds spent in the merge loops of
// this rank.
double lmp_merged_save(const char *dir, lmp_session *s, const lmp_merged_opts *o);

#endif
