// llmc.c: llm.c model files, read slice by slice.
#include "io/llmc.h"
#include "io/slices.h"
#include "core/util.h"

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

static void llmc_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst, int64_t ldd) {
    llmc_ctx *x = ctx;
    if (!x->transposed) {  // same layout: row r of ours is row r in the file (cols = x->out)
        for (int64_t r = 0; r < nr; r++)
            lmp_pread_all(x->fd, dst + r * ldd, (size_t)nc * 4, x->off + ((uint64_t)(r0 + r) * x->out + c0) * 4, x->path);
        return;
    }
    // ours (in, out)[r][c] = file (out, in)[c][r]: read file rows c0..c0+nc, columns r0..r0+nr
    float *buf = lmp_malloc((size_t)nr * 4);
    for (int64_t c = 0; c < nc; c++) {
        lmp_pread_all(x->fd, buf, (size_t)nr * 4, x->off + ((uint64_t)(c0 + c) * x->in + r0) * 4, x->path);
        for (int64_t r = 0; r < nr; r++) dst[r * ldd + c] = buf[r];
    }
    free(buf);
}

// Where entry p lies in the file: its tensor's start (start[16] of the file's tensors, sz[16]
// their sizes, L layers), its (in, out) when stored transposed, in units of C.
static void llmc_locate(const char *path, const lmp_param *p, const uint64_t *start, const int64_t *sz, int64_t L,
                        int64_t C, llmc_ctx *x) {
    int layer = -1, idx = -1;
    char leaf[LMP_NAME_MAX] = "";
    if (sscanf(p->name, "h.%d.%127s", &layer, leaf) != 2) { layer = 0; lmp_fmt(leaf, sizeof leaf, "%s", p->name); }
    static const struct { const char *name; int idx, tr, in_m, out_m; } map[] = {
        {"wte.weight", 0, 0, 0, 0}, {"wpe.weight", 1, 0, 0, 0}, {"ln_1.weight", 2, 0, 0, 1},
        {"ln_1.bias", 3, 0, 0, 1}, {"attn.c_attn.weight", 4, 1, 1, 3}, {"attn.c_attn.bias", 5, 0, 0, 3},
        {"attn.c_proj.weight", 6, 1, 1, 1}, {"attn.c_proj.bias", 7, 0, 0, 1}, {"ln_2.weight", 8, 0, 0, 1},
        {"ln_2.bias", 9, 0, 0, 1}, {"mlp.c_fc.weight", 10, 1, 1, 4}, {"mlp.c_fc.bias", 11, 0, 0, 4},
        {"mlp.c_proj.weight", 12, 1, 4, 1}, {"mlp.c_proj.bias", 13, 0, 0, 1}, {"ln_f.weight", 14, 0, 0, 1},
        {"ln_f.bias", 15, 0, 0, 1}};
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
        if (!strcmp(leaf, map[k].name)) {
            idx = map[k].idx;
            x->transposed = map[k].tr;
            x->in = map[k].in_m * C;
            x->out = map[k].out_m * C;
        }
    if (idx < 0) lmp_die("%s: no llm.c tensor for %s", path, p->name);
    x->off = start[idx];
    if (idx >= 2 && idx <= 13) x->off += (uint64_t)layer * (uint64_t)(sz[idx] / L) * 4;
    if (!x->transposed) x->out = p->ndim == 2 ? p->shape[1] : p->shape[0];  // row length of ours = file's
}

void lmp_llmc_load(const char *path, lmp_registry *reg) {
    int hdr[256];
    uint64_t size;
    lmp_llmc_read_header(path, hdr, &size);
    int64_t maxT = hdr[2], L = hdr[4], C = hdr[6], Vp = hdr[7];
    // sizes of the 16 tensors in file order
    int64_t sz[16] = {Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                      L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
    uint64_t start[16], total = 0;
    for (int i = 0; i < 16; i++) { start[i] = 1024 + 4 * total; total += (uint64_t)sz[i]; }
    if (size != 1024 + 4 * total)
        lmp_die("%s: %llu bytes, an llm.c model of this header has %llu (truncated or not fp32)", path,
                (unsigned long long)size, (unsigned long long)(1024 + 4 * total));
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open %s: %s", path, strerror(errno));
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        llmc_ctx x = {fd, path, 0, 0, 0, 0};
        llmc_locate(path, p, start, sz, L, C, &x);
        lmp_for_each_block(p, llmc_block, &x);  // wte: rows beyond V (padding) are never read
    }
    close(fd);
}
