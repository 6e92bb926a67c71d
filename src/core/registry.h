// registry.h: the table of every tensor lorampi trains or saves. Each entry has a PEFT/HF
// style name, its GLOBAL shape, how this rank holds it (whole, or a slice along one dim),
// and pointers to data, grad, AdamW m and v (grad/m/v are NULL for frozen tensors).
// Loading, the gradient all-reduce, AdamW, clipping, parameter counts, export and analysis
// all walk this one list instead of keeping their own.
#ifndef LORAMPI_REGISTRY_H
#define LORAMPI_REGISTRY_H
#include <stddef.h>
#include <stdint.h>

#define LMP_NAME_MAX 128
#define LMP_MAX_DIMS 2

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
    // is viewed as `groups` equal blocks (3 for the fused q|k|v columns, 1 otherwise) and this
    // rank holds elements [g*G + offset, g*G + offset + len) of every block g, G = shape/groups.
    int split_dim, groups;
    int64_t offset, len;
    int64_t local_shape[LMP_MAX_DIMS];
    size_t numel;                // local element count
    lmp_role role;
    int trainable;
    lmp_grad_kind grad_kind;
    float *data, *grad, *m, *v;  // local buffers; grad/m/v NULL when frozen
    int decay;                   // 1: AdamW weight decay applies (matrices), 0: biases, norms
} lmp_param;

typedef struct {
    lmp_param *p;
    int n, cap;
    // One allocation per kind, carved into the entries: frozen data, trainable data, grads,
    // m, v. Grads are laid out grouped by grad_kind so each kind is one contiguous span.
    float *frozen_mem, *train_mem, *grad_mem, *m_mem, *v_mem;
    size_t n_frozen, n_train;              // local element counts
    size_t kind_off[3], kind_len[3];       // span of each grad_kind inside grad_mem
} lmp_registry;

// Entries live in one array of fixed capacity, so an entry's address is stable from the
// moment it is added and callers may keep pointers into the table.
void lmp_registry_init(lmp_registry *r, int capacity);
void lmp_registry_free(lmp_registry *r);
// Adds an entry (before lmp_registry_alloc). split_dim = -1 for whole tensors.
// Returns the entry; its buffers are assigned by lmp_registry_alloc.
lmp_param *lmp_registry_add(lmp_registry *r, const char *name, int ndim, const int64_t *shape,
                     int split_dim, int groups, int64_t offset, int64_t len,
                     lmp_role role, int trainable, lmp_grad_kind kind, int decay);
// Carves the buffers (zeroed) and sets data/grad/m/v of every entry.
void lmp_registry_alloc(lmp_registry *r);
// Entry by exact name, or NULL.
lmp_param *lmp_registry_find(lmp_registry *r, const char *name);
// Zeroes all gradients.
void lmp_registry_zero_grad(lmp_registry *r);
// Global element count of an entry (product of its global shape).
int64_t lmp_param_global_numel(const lmp_param *p);
// Maps local flat index i of p to its global flat index (for layout-independent init/RNG).
int64_t lmp_param_global_index(const lmp_param *p, size_t i);
// Counts of global parameters: trainable and total.
void lmp_registry_counts(const lmp_registry *r, int64_t *trainable, int64_t *total);

#endif
