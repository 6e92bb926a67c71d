// ckpt_layout.c: dataset paths and selections of checkpoint files (see ckpt_layout.h).
#include "io/ckpt_layout.h"
#include "core/util.h"

#include <string.h>

void lmp_ckpt_tensor_path(const lmp_registry *r, const lmp_param *p, char *out, size_t n) {
    if (p->rec < 0) {
        lmp_fmt(out, n, "params/%s%s", lmp_hf_prefix(p->name), p->name);
        return;
    }
    // The leaf is the tensor's name after "<record name>.": lora_A, lora_B, ...
    const lmp_adapter_rec *rec = &r->rec[p->rec];
    size_t l = strlen(rec->name);
    LMP_CHECK(!strncmp(p->name, rec->name, l) && p->name[l] == '.' && p->name[l + 1],
              "internal: tensor %s is not named under its adapter record %s", p->name, rec->name);
    lmp_fmt(out, n, "adapter/%s%s/%s", lmp_hf_prefix(rec->name), rec->name, p->name + l + 1);
}

int lmp_ckpt_select_local(hid_t fs, const lmp_param *p) {
    if (p->split_dim < 0) return H5Sselect_all(fs) < 0 ? -1 : 0;
    if (H5Sselect_none(fs) < 0) return -1;
    for (int g = 0; g < p->groups; g++) {
        if (p->glen[g] == 0) continue;
        hsize_t start[2] = {0, 0}, count[2] = {1, 1};
        for (int d = 0; d < p->ndim; d++) count[d] = (hsize_t)p->shape[d];
        int d = p->split_dim;
        start[d] = (hsize_t)(lmp_param_group_start(p, g) + p->goff[g]);
        count[d] = (hsize_t)p->glen[g];
        if (H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, NULL, count, NULL) < 0) return -1;
    }
    return 0;
}

const char *lmp_ckpt_base_desc(const lmp_config *cfg, char *buf, size_t n) {
    if (cfg->model.path[0]) return lmp_fmt(buf, n, "%s", cfg->model.path);
    return lmp_fmt(buf, n, "random init from [train] seed = %llu", cfg->train.seed);
}
