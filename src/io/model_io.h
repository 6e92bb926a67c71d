// model_io.h: pretrained model files in and out. Reads Hugging Face GPT-2 directories
// (config.json + model.safetensors) and llm.c gpt2_*.bin checkpoints; each rank reads only
// the slice of each tensor it holds (registry split), converting F16/BF16 to fp32. Writes
// HF directories and safetensors files.
#ifndef LORAMPI_MODEL_IO_H
#define LORAMPI_MODEL_IO_H
#include <stddef.h>
#include <stdint.h>
#include "core/registry.h"

// GPT-2 hyperparameters as in HF config.json.
typedef struct {
    int n_layer, n_head, n_embd;
    int vocab_size;     // logical vocabulary (50257 for GPT-2)
    int n_ctx;          // n_positions
    float ln_eps;       // layer_norm_epsilon (1e-5)
} lmp_model_config;

// Reads the hyperparameters of the model at `path`: a directory holding config.json (HF) or
// an llm.c .bin file (header). Dies with a message naming the file and key on any problem:
// missing file, wrong magic/version, a missing or non-integer key, an activation other than
// gelu_new.
void lmp_model_read_config(const char *path, lmp_model_config *cfg);

// Loads every LMP_ROLE_BASE entry of `reg` from the model at `path`: each entry's local
// slice only, converted to fp32, HF names with or without the "transformer." prefix, llm.c
// (out, in) weights transposed to the registry's (in, out), llm.c's padded vocab rows
// skipped. Entries are named as in HF without prefix ("wte.weight", "h.0.ln_1.weight",
// "h.0.attn.c_attn.weight", ...). Dies naming the file and tensor on a missing tensor, a
// shape that disagrees with the registry, an unsupported dtype or a truncated file.
void lmp_model_load(const char *path, lmp_registry *reg);

// Writes an HF GPT-2 directory (config.json + model.safetensors, F32, "transformer."-less
// names as HF's GPT2Model / GPT2LMHeadModel accept) from the base entries of `reg`. Every
// base entry must be whole on this rank (tp = 1); call on one rank.
void lmp_model_save_hf(const char *dir, const lmp_model_config *cfg, const lmp_registry *reg);

// ---- safetensors, low level (used above and by adapter export) ----
typedef enum { LMP_DT_F32, LMP_DT_F16, LMP_DT_BF16, LMP_DT_OTHER } lmp_dtype;
typedef struct {
    char name[LMP_NAME_MAX];
    lmp_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;  // absolute file offsets of the data
} lmp_st_tensor;
typedef struct {
    char path[1024];
    int fd;
    uint64_t file_size;
    lmp_st_tensor *t;
    int n;
} lmp_st_file;

// Opens and validates a safetensors file (header length and every offset checked against
// the file size, dtype sizes against shapes, no overlaps). Dies naming the file on error.
void lmp_st_open(lmp_st_file *f, const char *path);
void lmp_st_close(lmp_st_file *f);
// Tensor by name, or NULL.
const lmp_st_tensor *lmp_st_find(const lmp_st_file *f, const char *name);
// Reads elements of a 1-D or 2-D tensor into fp32 `dst`: rows [r0, r0+nr) and, within each
// row, columns [c0, c0+nc) (a 1-D tensor is one row). Converts F16/BF16.
void lmp_st_read_block(const lmp_st_file *f, const lmp_st_tensor *t,
                       int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[LMP_MAX_DIMS];
    const float *data;  // contiguous fp32, global shape
} lmp_st_out;
// Writes `n` fp32 tensors to a safetensors file; `metadata_json` is a JSON object of
// strings (or NULL). Writes to path.tmp then renames, so a crash leaves no half file.
void lmp_st_write(const char *path, const lmp_st_out *t, int n, const char *metadata_json);

// ---- llm.c token shards ----
// Token files: a 256 int32 header (magic 20240520, version, token count), then uint16
// tokens. Version 1 is llm.c's format. Version 2 (lorampi) adds one uint8 loss mask per
// token after the tokens: mask[i] = 1 when token i is a training target (the prediction of
// token i counts in the loss); version 1 files mean every token counts.
// Reads a token file of either version; *mask gets a malloc'd mask (NULL for version 1;
// mask may be NULL to ignore it). Dies naming the file on error.
uint16_t *lmp_tokens_read(const char *path, size_t *count, uint8_t **mask);
// The same, mapped read-only instead of read: ranks on one node share the pages, and each
// touches only the windows it uses. Release with munmap(*map, *map_len).
const uint16_t *lmp_tokens_map(const char *path, size_t *count, const uint8_t **mask, void **map,
                               size_t *map_len);
// Writes version 1 (mask NULL) or version 2 (with mask).
void lmp_tokens_write(const char *path, const uint16_t *tok, const uint8_t *mask, size_t count);

#endif
