// registry.h: the table of every tensor lorampi trains or saves. Each entry has a PEFT/HF
// style name, its GLOBAL shape, how this rank holds it (whole, or a slice along one dim),
// and pointers to data, grad, AdamW m and v (grad/m/v are NULL for frozen tensors).
// Loading, the gradient all-reduce, AdamW, clipping, parameter counts, export and analysis
// all walk this one list instead of keeping their own.
#ifndef LORAMPI_REGISTRY_H
#define LORAMPI_REGISTRY_H
#include <stddef.h>
#include <stdint.h>
#include "core/bf16.h"

#define LMP_NAME_MAX 128
#define LMP_MAX_DIMS 2
#define LMP_MAX_GROUPS 4
#define LMP_REC_MAX_TENSORS 6  // prefix projection's encoder: embedding + two linears

// What the gradient of a trainable tensor looks like across the tensor-parallel group,
// which decides how it is reduced (see comm.c for the derivation).
typedef enum {
    LMP_GRAD_TP_SUM = 0,   // each tp rank holds a partial sum (or disjoint rows/cols, zero elsewhere)
    LMP_GRAD_TP_SAME = 1,  // replicated tensor whose gradient is identical on every tp rank
    LMP_GRAD_SHARD = 2,    // sharded tensor: each tp rank owns its slice's gradient
} lmp_grad_kind;

typedef enum { LMP_ROLE_BASE = 0, LMP_ROLE_ADAPTER = 1 } lmp_role;

typedef struct {
    char name[LMP_NAME_MAX];     // e.g. "h.3.attn.c_attn.weight" (base) or
                                 // "h.3.attn.c_attn.lora_A" (adapter); base names carry no
                                 // "transformer." prefix, the loader accepts both in files
    int ndim;
    int64_t shape[LMP_MAX_DIMS]; // global shape; linear weights are (in, out) as in HF Conv1D
    // Sharding: split_dim < 0 means this rank holds the whole tensor. Otherwise the split dim
    // is a concatenation of `groups` blocks of global widths gsize[g] (the q|k|v columns of a
    // fused projection: 3 blocks, of unequal widths under grouped-query attention; 1 block
    // otherwise), and this rank holds elements [goff[g], goff[g] + glen[g]) of every block g,
    // stored block after block. A whole tensor registered with blocks keeps groups and gsize
    // (goff = 0, glen = gsize) with split_dim = -1.
    int split_dim, groups;
    int64_t gsize[LMP_MAX_GROUPS], goff[LMP_MAX_GROUPS], glen[LMP_MAX_GROUPS];
    int64_t local_shape[LMP_MAX_DIMS];
    size_t numel;                // local element count
    lmp_role role;
    int trainable;
    lmp_grad_kind grad_kind;
    float *data, *grad, *m, *v;  // local buffers; grad/m/v NULL when frozen
    // [model] dtype = bf16: a frozen linear weight, token embedding or head is held as bf16
    // in h, and data is NULL
    // (set before lmp_registry_alloc; readers widen on the fly: lmp_param_at, wgemm.h).
    int bf16;
    uint16_t *h;
    int decay;                   // 1: AdamW weight decay applies (matrices), 0: biases, norms
    int rec;                     // index of its adapter record (lmp_adapter_rec), -1: base tensor
    int block;                   // the model block whose backward completes its gradient (its
                                 // layer's norms, weights, adapters); -1: none (embeddings,
                                 // final norm, head, a shared prefix encoder)
} lmp_param;

// How a tensor is split along one dim over the ranks of a tensor-parallel group: the dim is
// `groups` blocks of widths size[g]; a rank holds [off[g], off[g] + len[g]) of each.
typedef struct {
    int dim;                     // -1: not split (every rank holds the whole tensor)
    int groups;
    int64_t size[LMP_MAX_GROUPS], off[LMP_MAX_GROUPS], len[LMP_MAX_GROUPS];
} lmp_split;

// Part p of `parts` of n items, as even as possible: [p*n/parts, (p+1)*n/parts). The one
// rule lorampi shards by (heads, MLP columns and an odd vocabulary alike).
void lmp_part(int64_t n, int parts, int p, int64_t *off, int64_t *len);
// Each of the `groups` blocks of widths size[] split evenly (lmp_part) over `parts` ranks.
lmp_split lmp_split_even(int dim, int groups, const int64_t *size, int parts, int p);
// No split: the whole tensor on every rank.
lmp_split lmp_split_none(void);

// One adapted module: where an adapter sits and what it is. PEFT export, checkpoints and the
// analysis read these records instead of parsing tensor names.
typedef struct {
    char name[LMP_NAME_MAX];     // prefix of its tensors: "h.3.attn.c_attn" or "h.3.attn.c_attn.q"
    char module[LMP_NAME_MAX];   // the adapted layer: "h.3.attn.c_attn"
    char site[48];               // that layer within a block: "attn.c_attn" (PEFT's target_modules)
    char base[LMP_NAME_MAX];     // its weight: "h.3.attn.c_attn.weight"
    const char *method;          // "lora"
    int layer;                   // block index
    char target[32];             // the target's name in [adapter] targets: "c_attn", "q", ...
    int slice;                   // -1: the whole linear; g: output block g of a fused linear (q/k/v)
    int64_t in, out;             // the adapted matrix: ΔW is (out, in)
    int64_t out_offset;          // its first output feature within the base linear
    int64_t base_in, base_out;   // the base linear's shape (in, out features): W0 is (out, in)
    int r;                       // rank (LoRA-style methods)
    float alpha, scale;          // lora_alpha and the scaling of ΔW = scale·B·A
    int tensor[LMP_REC_MAX_TENSORS], n_tensor;  // its registry entries, in the method's order
} lmp_adapter_rec;

typedef struct {
    lmp_param *p;
    int n, cap;
    // One allocation per kind, carved into the entries: frozen data, trainable data, grads,
    // m, v. Grads are laid out grouped by grad_kind so each kind is one contiguous span, and
    // within a kind by block in backward order (n_block - 1 first, then down to 0, then the
    // entries of no block), so the gradients that a block's backward completes are one span
    // of each kind's region (the bucketed all-reduce, comm.h).
    float *frozen_mem, *train_mem, *grad_mem, *m_mem, *v_mem;
    uint16_t *frozen16_mem;                // the bf16 frozen entries
    size_t n_frozen, n_frozen16, n_train;  // local element counts (n_frozen: fp32 ones)
    int frozen_bf16;                       // the model builder's choice: frozen linear,
                                           // embedding and head weights registered next are bf16
    int cur_block;                         // the model builder's block: entries registered next
                                           // get it as their block (-1 after lmp_registry_init)
    int n_block;                           // 1 + the largest block of an entry (set by alloc)
    size_t kind_off[3], kind_len[3];       // span of each grad_kind inside grad_mem
    lmp_adapter_rec *rec;                  // adapted modules, in registration order
    int n_rec, cap_rec;
} lmp_registry;

// Entries live in one array of fixed capacity, so an entry's address is stable from the
// moment it is added and callers may keep pointers into the table.
void lmp_registry_init(lmp_registry *r, int capacity);
void lmp_registry_free(lmp_registry *r);
// Adds an entry (before lmp_registry_alloc) held as `split` says. Returns the entry; its
// buffers are assigned by lmp_registry_alloc.
lmp_param *lmp_registry_add_split(lmp_registry *r, const char *name, int ndim,
                                  const int64_t *shape, const lmp_split *split, lmp_role role,
                                  int trainable, lmp_grad_kind kind, int decay);
// The same for `groups` equal blocks of which this rank holds [offset, offset + len) each;
// split_dim = -1 for whole tensors.
lmp_param *lmp_registry_add(lmp_registry *r, const char *name, int ndim, const int64_t *shape,
                     int split_dim, int groups, int64_t offset, int64_t len,
                     lmp_role role, int trainable, lmp_grad_kind kind, int decay);
// Adds an adapter record (a copy of *rec, tensors none yet); the entries added next with
// lmp_registry_add_to_rec belong to it. Capacity as for entries.
lmp_adapter_rec *lmp_registry_add_rec(lmp_registry *r, const lmp_adapter_rec *rec);
// Makes entry p one of record rec's tensors.
void lmp_registry_attach(lmp_registry *r, lmp_adapter_rec *rec, lmp_param *p);
// Tensor k of a record.
lmp_param *lmp_rec_tensor(const lmp_registry *r, const lmp_adapter_rec *rec, int k);
// Carves the buffers (zeroed) and sets data/grad/m/v of every entry.
void lmp_registry_alloc(lmp_registry *r);
// 1 + the largest block of an entry (what lmp_registry_alloc sets n_block to; plan's count).
int lmp_registry_blocks(const lmp_registry *r);
// The prefix that makes a registry name the model file's (and PEFT's) module path:
// "transformer." for GPT-2's names ("h.0.attn.c_attn"), "" for names that already are the
// full HF path (the Llama family: "model.layers.0.self_attn.q_proj", "lm_head.weight").
const char *lmp_hf_prefix(const char *name);
// Entry by exact name, or NULL.
lmp_param *lmp_registry_find(lmp_registry *r, const char *name);
// Zeroes all gradients.
void lmp_registry_zero_grad(lmp_registry *r);
// Global element count of an entry (product of its global shape).
int64_t lmp_param_global_numel(const lmp_param *p);
// Maps local flat index i of p to its global flat index (for layout-independent init/RNG).
int64_t lmp_param_global_index(const lmp_param *p, size_t i);
// Global position along the split dim of local position w (0 <= w < local_shape[split_dim]).
int64_t lmp_param_split_pos(const lmp_param *p, int64_t w);
// Global start of block g along the split dim (the widths of the blocks before it).
int64_t lmp_param_group_start(const lmp_param *p, int g);
// Element i of p's local data, widened when p is bf16.
static inline float lmp_param_at(const lmp_param *p, size_t i) {
    return p->h ? lmp_bf16_to_f32(p->h[i]) : p->data[i];
}
// Sets element i of p's local data (rounded to nearest even when p is bf16).
static inline void lmp_param_set(lmp_param *p, size_t i, float v) {
    if (p->h) p->h[i] = lmp_f32_to_bf16(v);
    else p->data[i] = v;
}
// p's local data as fp32 into dst (p->numel floats): a copy, or the widened bf16.
void lmp_param_get_f32(const lmp_param *p, float *dst);
// Bytes of this rank's frozen data (fp32 entries 4, bf16 entries 2 per element).
size_t lmp_registry_frozen_bytes(const lmp_registry *r);
// Counts of global parameters: trainable and total.
void lmp_registry_counts(const lmp_registry *r, int64_t *trainable, int64_t *total);

#endif
