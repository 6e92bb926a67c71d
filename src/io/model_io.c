// model_io.c: a model path to its format (a directory is HF, a file llm.c).
#include "io/model_io.h"
#include "core/util.h"

int lmp_model_stores_bf16(const char *path) {
    if (!lmp_is_dir(path)) return 0;
    lmp_hf_files h;
    lmp_hf_open(&h, path);
    int bf16 = 0;
    for (int i = 0; i < h.f[0].n; i++)
        if (h.f[0].t[i].ndim == 2) { bf16 = h.f[0].t[i].dtype == LMP_DT_BF16; break; }
    lmp_hf_close(&h);
    return bf16;
}

void lmp_model_load(const char *path, lmp_registry *reg) {
    if (lmp_is_dir(path)) lmp_hf_load(path, reg);
    else lmp_llmc_load(path, reg);
}
