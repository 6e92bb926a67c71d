// pfile.c: byte ranges of one file written by many ranks (pfile.h).
#include "io/pfile.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lmp_pfile_esize(lmp_dtype d) { return d == LMP_DT_F32 ? 4 : 2; }

// F. Giesen's float_to_half_fast3_rtne: exact round-to-nearest-even, subnormals included.
uint16_t lmp_f32_to_f16(float f) {
    uint32_t u, sign;
    memcpy(&u, &f, 4);
    sign = u & 0x80000000u;
    u ^= sign;
    uint16_t o;
    if (u >= (127u + 16u) << 23) {  // >= 65536, Inf or NaN: all exponent bits set
        o = u > 0x7f800000u ? 0x7e00 : 0x7c00;
    } else if (u < 113u << 23) {     // below 2^-14: an F16 subnormal or zero
        // Adding 0.5 puts the F16 subnormal unit (2^-24) at the float's last bit: the FPU
        // rounds (to nearest even) for us.
        const uint32_t magic_u = 126u << 23;
        float v, magic;
        memcpy(&v, &u, 4);
        memcpy(&magic, &magic_u, 4);
        v += magic;
        memcpy(&u, &v, 4);
        o = (uint16_t)(u - magic_u);
    } else {
        uint32_t odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;  // rebias, round; a carry is right
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

// Writes all n bytes at off (retrying short writes).
static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = EIO;  // no progress and no error: say so rather than a stale errno
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

void lmp_pfile_init(lmp_pfile *f, const char *path, lmp_dtype dtype) {
    memset(f, 0, sizeof *f);
    lmp_fmt(f->path, sizeof f->path, "%s", path);
    lmp_fmt(f->tmp, sizeof f->tmp, "%s.tmp", path);
    f->dtype = dtype;
    f->fd = -1;
}

int lmp_pfile_create(lmp_pfile *f, char *err, size_t errn) {
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { lmp_fmt(err, errn, "cannot create %s: %s", f->tmp, strerror(errno)); return -1; }
    // The full size at once: every rank then writes inside the file, and the bytes nobody
    // writes (llm.c's padded vocabulary rows) read as zero.
    int bad = ftruncate(fd, (off_t)f->size) != 0 || pwrite_all(fd, f->head, f->head_len, 0) != 0 ||
              fsync(fd) != 0;
    int e = errno;
    if (close(fd) != 0 && !bad) { bad = 1; e = errno; }
    if (bad) lmp_fmt(err, errn, "cannot write %s (%llu bytes): %s", f->tmp,
                     (unsigned long long)f->size, strerror(e));
    return bad ? -1 : 0;
}

int lmp_pfile_open(lmp_pfile *f, char *err, size_t errn) {
    f->fd = open(f->tmp, O_WRONLY);
    if (f->fd < 0) { lmp_fmt(err, errn, "cannot open %s: %s", f->tmp, strerror(errno)); return -1; }
    return 0;
}

// n floats of src (stride apart) as the file's dtype into buf.
static void convert(const lmp_pfile *f, const float *src, int64_t stride, int64_t n, unsigned char *buf) {
    for (int64_t j = 0; j < n; j++) {
        float x = src[j * stride];
        if (f->dtype == LMP_DT_F32) { memcpy(buf + 4 * j, &x, 4); continue; }
        uint16_t h = f->dtype == LMP_DT_BF16 ? lmp_f32_to_bf16(x) : lmp_f32_to_f16(x);
        memcpy(buf + 2 * j, &h, 2);
    }
}

int lmp_pfile_put(lmp_pfile *f, int k, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                  const float *src, int64_t ldd, char *err, size_t errn) {
    const lmp_pfile_tensor *t = &f->t[k];
    int es = lmp_pfile_esize(f->dtype);
    // A file row: nc of our columns (row r), or transposed nr of our rows (column c).
    int64_t lines = t->transposed ? nc : nr, len = t->transposed ? nr : nc;
    unsigned char *buf = lmp_malloc((size_t)len * es + 1);
    int rc = 0;
    for (int64_t i = 0; i < lines && !rc; i++) {
        const float *s = t->transposed ? src + i : src + i * ldd;
        uint64_t el = t->transposed ? (uint64_t)(c0 + i) * (uint64_t)t->rows + (uint64_t)r0
                                    : (uint64_t)(r0 + i) * (uint64_t)t->cols + (uint64_t)c0;
        convert(f, s, t->transposed ? ldd : 1, len, buf);
        rc = pwrite_all(f->fd, buf, (size_t)len * es, t->off + el * (uint64_t)es);
    }
    if (rc) lmp_fmt(err, errn, "cannot write %s: %s", f->tmp, strerror(errno));
    free(buf);
    return rc;
}

int lmp_pfile_close(lmp_pfile *f, char *err, size_t errn) {
    if (f->fd < 0) return 0;
    int bad = fsync(f->fd) != 0, e = errno;
    if (close(f->fd) != 0 && !bad) { bad = 1; e = errno; }
    f->fd = -1;
    if (bad) lmp_fmt(err, errn, "cannot write %s: %s", f->tmp, strerror(e));
    return bad ? -1 : 0;
}

int lmp_pfile_commit(lmp_pfile *f, char *err, size_t errn) {
    if (rename(f->tmp, f->path) != 0) {
        lmp_fmt(err, errn, "cannot rename %s to %s: %s", f->tmp, f->path, strerror(errno));
        return -1;
    }
    // The rename is durable once the directory entry is synced.
    char dir[4096];
    lmp_fmt(dir, sizeof dir, "%s", f->path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        lmp_fmt(err, errn, "cannot sync the directory of %s: %s", f->path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

void lmp_pfile_abort(lmp_pfile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp[0]) unlink(f->tmp);  // may not exist: nothing to report
}

void lmp_pfile_free(lmp_pfile *f) {
    free(f->head);
    free(f->t);
    f->head = NULL;
    f->t = NULL;
}
