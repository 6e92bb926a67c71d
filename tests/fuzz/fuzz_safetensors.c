// fuzz_safetensors: safetensors files (io/safetensors.c): the header, then every small 1-D
// or 2-D tensor read whole and, when it has several rows, one inner block, into fp32 and
// into bf16 ([model] dtype = bf16: BF16 copied, F32/F16 rounded).
#include "fuzzutil.h"
#include "io/safetensors.h"

#include <stdlib.h>

static void read_tensor(const lmp_st_file *f, const lmp_st_tensor *t) {
    if (t->ndim < 1 || t->ndim > 2 || t->dtype == LMP_DT_OTHER) return;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    if (rows < 0 || cols < 0 || rows > 4096 || cols > 4096 || rows * cols > (1 << 16)) return;
    float *buf = malloc((size_t)(rows * cols + 1) * sizeof *buf);
    if (!buf) abort();
    lmp_st_read_block(f, t, 0, rows, 0, cols, buf);
    if (rows > 1 && cols > 1) lmp_st_read_block(f, t, 1, rows - 1, 1, cols - 1, buf);
    lmp_st_read_block_bf16(f, t, 0, rows, 0, cols, (uint16_t *)buf);
    if (rows > 1 && cols > 1) lmp_st_read_block_bf16(f, t, 1, rows - 1, 1, cols - 1, (uint16_t *)buf);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    lmp_fuzz_write(path, sizeof path, "model.safetensors", data, size);
    static lmp_st_file f;  // static: the file of an input that died is simply left open
    LMP_FUZZ_TRY({
        lmp_st_open(&f, path);
        for (int i = 0; i < f.n; i++) {
            if (lmp_st_find(&f, f.t[i].name) == NULL) abort();  // a listed tensor must be found
            read_tensor(&f, &f.t[i]);
        }
        lmp_st_close(&f);
    });
    return 0;
}
