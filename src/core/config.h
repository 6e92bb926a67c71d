// config.h: the run configuration. An INI file (sections [model] [adapter] [train] [data]
// [log] [parallel] [checkpoint]) parsed with inih into a typed struct, then `--set section.key=value`
// overrides. Every key has a default, documented in README ("Configuration"). An unknown
// section or key, or a value of the wrong type or out of range, is an error naming the file,
// line and key.
#ifndef LORAMPI_CONFIG_H
#define LORAMPI_CONFIG_H

#define LMP_PATH_MAX 1024
#define LMP_MAX_LAYERS 128

#include "core/targets.h"  // LMP_T_* target bits

// [adapter] method: none, or a set of methods (bits; `lora,houlsby` is LORA | HOULSBY).
// lora, ia3 and dora adapt the linear layers of [adapter] targets: at most one of them.
typedef enum { LMP_METHOD_NONE = 0, LMP_METHOD_LORA = 1, LMP_METHOD_HOULSBY = 2, LMP_METHOD_PARALLEL = 4,
               LMP_METHOD_PREFIX = 8, LMP_METHOD_IA3 = 16, LMP_METHOD_DORA = 32 } lmp_method;
#define LMP_FF_NONE (1 << 30)  // [adapter] feedforward = none
#define LMP_METHOD_LINEAR (LMP_METHOD_LORA | LMP_METHOD_IA3 | LMP_METHOD_DORA)
typedef enum { LMP_INIT_KAIMING = 0, LMP_INIT_GAUSSIAN = 1 } lmp_lora_init;
// [model] dtype: how frozen linear weights are held (auto: bf16 when the file stores bf16).
typedef enum { LMP_WDT_F32 = 0, LMP_WDT_BF16 = 1, LMP_WDT_AUTO = 2 } lmp_wdtype;
typedef enum { LMP_SCHED_COSINE = 0, LMP_SCHED_LINEAR = 1, LMP_SCHED_CONSTANT = 2 } lmp_schedule;
// [train] recompute: what the backward recomputes instead of keeping from the forward (the
// model's activation table, model.c): nothing; attn, once the attention probabilities, now the
// same as none (the tiled attention kernels keep none; configs in the wild still name it);
// every block but its input (and the last block, still in place).
typedef enum { LMP_RECOMPUTE_NONE = 0, LMP_RECOMPUTE_ATTN = 1, LMP_RECOMPUTE_BLOCK = 2 } lmp_recompute;
// Its name as the key takes it.
const char *lmp_recompute_name(lmp_recompute r);

typedef struct {
    struct {
        char path[LMP_PATH_MAX];  // HF directory or llm.c .bin; empty: random init (pretraining)
        int n_layer, n_head, n_embd, vocab_size, n_ctx;  // used when path is empty
        int random_init;          // path's config.json, weights drawn from [train] seed
        lmp_wdtype dtype;         // frozen linear weights: f32, bf16 or as the file stores them
    } model;
    struct {
        int method;               // lmp_method bits; LMP_METHOD_NONE: full fine-tuning
        int r;
        float alpha, dropout;
        int targets;              // LMP_T_* bits
        char targets_str[256];
        int n_layers;             // 0: all layers
        int layers[LMP_MAX_LAYERS];
        char layers_str[512];
        int rslora;               // scaling alpha/sqrt(r) instead of alpha/r
        lmp_lora_init init;
        unsigned long long seed;
        char init_from[LMP_PATH_MAX];  // PEFT LoRA directory whose adapter seeds step 0
        // Not keys: per-module r and alpha that init_from took from a PEFT rank_pattern /
        // alpha_pattern, [layer][target bit index]; 0: r and alpha above.
        int r_at[LMP_MAX_LAYERS][LMP_N_TARGETS];
        float alpha_at[LMP_MAX_LAYERS][LMP_N_TARGETS];
        int size, relu;           // bottleneck adapters: width m, ReLU instead of GELU
        float init_scale, scale;  // houlsby's init std, parallel's scale s
        int sublayers;            // bottleneck placement: 1 attn, 2 mlp, 0 the method's default
        int virtual_tokens;       // prefix tuning: p key/value rows per layer
        int prefix_projection;    // PEFT's reparameterisation through an MLP (adapters/prefix.h)
        int encoder_hidden_size;  // its hidden width (0: the token dim, as PEFT)
        int feedforward;          // ia3: LMP_T_* bits whose input is scaled; 0: the family's MLP
                                  // output layer (auto); LMP_FF_NONE: none
        char feedforward_str[256];
    } adapter;
    struct {
        int steps, batch_size, seq_len;
        float lr;
        int warmup_steps;
        lmp_schedule schedule;
        float min_lr_ratio;       // final lr of cosine/linear decay, as a fraction of lr
        float weight_decay, beta1, beta2, eps, grad_clip;
        int grad_accum;
        lmp_recompute recompute;  // activation recompute (lmp_recompute above)
        unsigned long long seed;
        int eval_every, eval_batches;
        char save_model[LMP_PATH_MAX];    // write the trained model as an HF directory (method none)
        char save_adapter[LMP_PATH_MAX];  // write the adapter as a PEFT directory (method lora)
        char nonfinite[8];                // stop | skip: a step that leaves Inf/NaN (train.c)
    } train;
    struct {
        char train[LMP_PATH_MAX], val[LMP_PATH_MAX];
    } data;
    struct {
        char metrics[LMP_PATH_MAX];  // JSON Lines, one object per step; empty: none
        int every;                   // print a line every N steps
    } log;
    struct {
        int tp;                      // tensor-parallel size; dp = world size / tp
        float bucket_mb;             // gradient all-reduce buckets started in the backward
                                     // (MiB, comm.h); 0: one all-reduce after the backward
        int sequence_parallel;       // Megatron's sequence parallelism over the tp group
    } parallel;
    struct {
        char dir[LMP_PATH_MAX];      // DIR/ckpt-<step>.h5; empty: no checkpoints, no resume
        int every;                   // write every N steps (0: only at the end) and at the end
        int keep;                    // keep the newest N checkpoints (0: all)
    } checkpoint;
} lmp_config;

// The methods of bits (lmp_method) as the comma list [adapter] method takes, e.g.
// "lora,houlsby", or "none"; into buf (size n), returned.
const char *lmp_config_methods(int bits, char *buf, int n);

// Fills every key with its default.
void lmp_config_defaults(lmp_config *c);
// Parses `path` (may be NULL: defaults only), then applies `n_set` overrides of the form
// "section.key=value". On any error every rank dies (lmp_die_all) with one message naming
// the file, line and key, or the override.
void lmp_config_load(lmp_config *c, const char *path, const char *const *sets, int n_set);
// Sets one key from its text value; returns 0, or -1 with a message in err (size errlen).
int lmp_config_set(lmp_config *c, const char *section, const char *key, const char *value,
                   char *err, int errlen);
// Cross-key checks (e.g. warmup <= steps, a method lora needs r > 0). Returns 0 or -1 + err.
int lmp_config_validate(const lmp_config *c, char *err, int errlen);
// The fully resolved configuration as INI text (malloc'd), every key with its value.
char *lmp_config_dump(const lmp_config *c);

// Parses INI text (e.g. a checkpoint's stored lmp_config_dump) over the defaults into c, as a
// file would be (no --set, no cross-key checks). Returns 0, or -1 with "origin:line: why" in
// err; never dies, so a caller can report a bad text as its own error.
int lmp_config_parse_text(lmp_config *c, const char *text, const char *origin, char *err,
                          int errlen);

// What a key decides beyond its own value (flags of config.c's KEYS table).
enum {
    LMP_KEY_TENSORS = 1,   // which adapter tensors exist and what they mean: a checkpoint
                           // resumes only with the same value (lmp_config_diff passes it only
                           // where a method of either config reads the key)
    LMP_KEY_RUN_ONLY = 2,  // how and where this run works ([parallel], [checkpoint], [log]):
                           // not compared on resume
};
// Called for each key whose value differs, in table order: old and new as dump text.
typedef void (*lmp_config_diff_fn)(void *ctx, const char *section, const char *key,
                                   const char *old_value, const char *new_value, int flags);
// Compares a (old) with b (new) key by key; fn (may be NULL) for each difference. Returns
// the number of keys that differ.
int lmp_config_diff(const lmp_config *a, const lmp_config *b, lmp_config_diff_fn fn, void *ctx);

#endif
