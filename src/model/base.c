// base.c: registering pretrained tensors (run.h).
#include "model/run.h"

lmp_param *lmp_add_base(lmp_registry *reg, int train, const char *name, int ndim, int64_t d0,
                        int64_t d1, const lmp_split *split, lmp_grad_kind kind, int decay) {
    int64_t shape[2] = {d0, d1};
    lmp_split none = lmp_split_none();
    // Frozen tensors get no gradient, so their kind only matters when trained.
    return lmp_registry_add_split(reg, name, ndim, shape, split ? split : &none, LMP_ROLE_BASE,
                                  train, train ? kind : LMP_GRAD_TP_SAME, decay);
}
