// llmc.c: llm.c model files, read slice by slice, and their layout for the parallel writer.
#include "io/llmc.h"
#include "io/slices.h"
#include "core/util.h"
#include "core/bf16.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lmp_llmc_read_header(const char *path, int hdr[256], uint64_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open model %s: %s", path, strerror(errno));
    *size = lmp_fd_size(fd, path);
    if (*size < 1024) lmp_die("%s: %llu bytes, too short for an llm.c model header (1024)", path, (unsigned long long)*size);
    lmp_pread_all(fd, hdr, 1024, 0, path);
    close(fd);
    if (hdr[0] != LMP_LLMC_MODEL_MAGIC)
        lmp_die("%s: bad magic %d, expected %d: not an llm.c model file", path, hdr[0], LMP_LLMC_MODEL_MAGIC);
    if (hdr[1] != 3) lmp_die("%s: llm.c version %d; only fp32 files (version 3) are supported", path, hdr[1]);
}

// Linear weights (out, in) are stored transposed to ours.
typedef struct { int fd; const char *path; uint64_t off; int64_t in, out; int transposed; } llmc_ctx;

// Element i of a block row into dst (floats, or bf16 rounded to nearest even: llm.c files are fp32).
static void put_el(void *dst, int bf16, int64_t i, float v) {
    if (bf16) ((uint16_t *)dst)[i] = lmp_f32_to_bf16(v);
    else ((float *)dst)[i] = v;
}

static void llmc_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, void *dst, int64_t ldd,
                       int bf16) {
    llmc_ctx *x = ctx;
    if (!x->transposed) {  // same layout: row r of ours is row r in the file (cols = x->out)
        float *row = bf16 ? lmp_malloc((size_t)nc * 4) : NULL;
        for (int64_t r = 0; r < nr; r++) {
            float *d = bf16 ? row : (float *)dst + r * ldd;
            lmp_pread_all(x->fd, d, (size_t)nc * 4, x->off + ((uint64_t)(r0 + r) * x->out + c0) * 4, x->path);
            for (int64_t j = 0; bf16 && j < nc; j++) put_el(dst, 1, r * ldd + j, row[j]);
        }
        free(row);
        return;
    }
    // ours (in, out)[r][c] = file (out, in)[c][r]: read file rows c0..c0+nc, columns r0..r0+nr
    float *buf = lmp_malloc((size_t)nr * 4);
    for (int64_t c = 0; c < nc; c++) {
        lmp_pread_all(x->fd, buf, (size_t)nr * 4, x->off + ((uint64_t)(c0 + c) * x->in + r0) * 4, x->path);
        for (int64_t r = 0; r < nr; r++) put_el(dst, bf16, r * ldd + c, buf[r]);
    }
    free(buf);
}

// The 16 tensors' starts (bytes) and sizes (floats) in the file of header hdr; returns the
// floats of all of them.
static uint64_t llmc_starts(const int hdr[256], uint64_t start[16], int64_t sz[16]) {
    int64_t maxT = hdr[2], L = hdr[4], C = hdr[6], Vp = hdr[7];
    int64_t s[16] = {Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                     L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
    uint64_t total = 0;
    for (int i = 0; i < 16; i++) { sz[i] = s[i]; start[i] = 1024 + 4 * total; total += (uint64_t)s[i]; }
    return total;
}

int lmp_llmc_locate(const int hdr[256], const char *name, uint64_t *off, int *transposed,
                    int64_t *in, int64_t *out) {
    int layer = -1, idx = -1;
    char leaf[LMP_NAME_MAX] = "";
    if (sscanf(name, "h.%d.%127s", &layer, leaf) != 2) { layer = -1; lmp_fmt(leaf, sizeof leaf, "%s", name); }
    static const struct { const char *name; int idx, tr, in_m, out_m; } map[] = {
        {"wte.weight", 0, 0, 0, 1}, {"wpe.weight", 1, 0, 0, 1}, {"ln_1.weight", 2, 0, 0, 1},
        {"ln_1.bias", 3, 0, 0, 1}, {"attn.c_attn.weight", 4, 1, 1, 3}, {"attn.c_attn.bias", 5, 0, 0, 3},
        {"attn.c_proj.weight", 6, 1, 1, 1}, {"attn.c_proj.bias", 7, 0, 0, 1}, {"ln_2.weight", 8, 0, 0, 1},
        {"ln_2.bias", 9, 0, 0, 1}, {"mlp.c_fc.weight", 10, 1, 1, 4}, {"mlp.c_fc.bias", 11, 0, 0, 4},
        {"mlp.c_proj.weight", 12, 1, 4, 1}, {"mlp.c_proj.bias", 13, 0, 0, 1}, {"ln_f.weight", 14, 0, 0, 1},
        {"ln_f.bias", 15, 0, 0, 1}};
    int64_t C = hdr[6], L = hdr[4];
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
        if (!strcmp(leaf, map[k].name)) {
            idx = map[k].idx;
            *transposed = map[k].tr;
            *in = map[k].in_m * C;
            *out = map[k].out_m * C;
        }
    // Per-layer tensors exist for layers 0..L-1 only; the others only without a layer.
    if (idx < 0 || (idx >= 2 && idx <= 13 ? layer < 0 || layer >= L : strcmp(leaf, name))) return -1;
    uint64_t start[16];
    int64_t sz[16];
    llmc_starts(hdr, start, sz);
    *off = start[idx];
    if (idx >= 2 && idx <= 13) *off += (uint64_t)layer * (uint64_t)(sz[idx] / L) * 4;
    return 0;
}

// Where entry p lies in the file of header hdr.
static void llmc_locate(const char *path, const lmp_param *p, const int hdr[256], llmc_ctx *x) {
    if (lmp_llmc_locate(hdr, p->name, &x->off, &x->transposed, &x->in, &x->out))
        lmp_die("%s: no llm.c tensor for %s", path, p->name);
    if (!x->transposed) x->out = p->ndim == 2 ? p->shape[1] : p->shape[0];  // row length of ours = file's
}

void lmp_llmc_load(const char *path, lmp_registry *reg) {
    int hdr[256];
    uint64_t size;
    lmp_llmc_read_header(path, hdr, &size);
    uint64_t start[16];
    int64_t sz[16];
    uint64_t total = llmc_starts(hdr, start, sz);
    if (size != 1024 + 4 * total)
        lmp_die("%s: %llu bytes, an llm.c model of this header has %llu (truncated or not fp32)", path,
                (unsigned long long)size, (unsigned long long)(1024 + 4 * total));
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open %s: %s", path, strerror(errno));
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        llmc_ctx x = {fd, path, 0, 0, 0, 0};
        llmc_locate(path, p, hdr, &x);
        lmp_for_each_block(p, llmc_block, &x);  // wte: rows beyond V (padding) are never read
    }
    close(fd);
}

void lmp_llmc_layout(lmp_pfile *f, const int hdr_in[8], const lmp_st_out *t, int n) {
    LMP_CHECK(f->dtype == LMP_DT_F32, "internal: llm.c model files are written as fp32 (version 3)");
    int *hdr = lmp_calloc(1024);
    memcpy(hdr, hdr_in, 8 * sizeof *hdr);
    hdr[0] = LMP_LLMC_MODEL_MAGIC;
    hdr[1] = 3;
    f->head = (unsigned char *)hdr;
    f->head_len = 1024;
    uint64_t start[16];
    int64_t sz[16];
    f->size = 1024 + 4 * llmc_starts(hdr, start, sz);
    f->t = lmp_calloc((size_t)(n + 1) * sizeof *f->t);
    f->n = n;
    for (int i = 0; i < n; i++) {
        lmp_pfile_tensor *x = &f->t[i];
        int64_t in, out;
        if (lmp_llmc_locate(hdr, t[i].name, &x->off, &x->transposed, &in, &out))
            lmp_die("%s: llm.c files have no tensor %s", f->path, t[i].name);
        x->rows = t[i].ndim == 2 ? t[i].shape[0] : 1;
        x->cols = t[i].ndim == 2 ? t[i].shape[1] : t[i].shape[0];
        LMP_CHECK(!x->transposed || (x->rows == in && x->cols == out),
                  "internal: %s is (%lld, %lld), llm.c's header says (%lld, %lld)", t[i].name,
                  (long long)x->rows, (long long)x->cols, (long long)in, (long long)out);
    }
}
