// tokens.c: token files, read, mapped and written; the header is checked against the size.
#include "io/tokens.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// Opens a token file and checks its header against its size; returns the fd, the token
// count, whether a mask follows the tokens and the bytes per token.
static int open_tokens(const char *path, size_t *count, int *has_mask, int *width, uint64_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open token file %s: %s", path, strerror(errno));
    *size = lmp_fd_size(fd, path);
    int hdr[256];
    if (*size < 1024) lmp_die("%s: %llu bytes, too short for an llm.c token header (1024)", path, (unsigned long long)*size);
    lmp_pread_all(fd, hdr, 1024, 0, path);
    if (hdr[0] != LMP_TOKENS_MAGIC) lmp_die("%s: bad magic %d, expected %d: not an llm.c token file", path, hdr[0], LMP_TOKENS_MAGIC);
    if (hdr[1] < 1 || hdr[1] > 4)
        lmp_die("%s: token file version %d, expected 1 (llm.c), 2 (lorampi, with loss mask), 3 or 4 "
                "(lorampi, uint32 tokens without and with loss mask)", path, hdr[1]);
    *width = hdr[1] >= 3 ? 4 : 2;
    *has_mask = hdr[1] == 2 || hdr[1] == 4;
    uint64_t per = (uint64_t)*width + (uint64_t)*has_mask;  // bytes per token
    if (hdr[2] < 0 || *size != 1024 + per * (uint64_t)hdr[2])
        lmp_die("%s: header says %d tokens (%llu bytes), the file has %llu bytes (truncated?)", path, hdr[2],
                (unsigned long long)(1024 + per * (uint64_t)hdr[2]), (unsigned long long)*size);
    *count = (size_t)hdr[2];
    return fd;
}

static void check_mask(const char *path, const uint8_t *mask, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (mask[i] > 1) lmp_die("%s: loss mask value %u at token %zu (expected 0 or 1)", path, mask[i], i);
}

uint32_t *lmp_tokens_read(const char *path, size_t *count, uint8_t **mask) {
    int has_mask, width;
    uint64_t size;
    int fd = open_tokens(path, count, &has_mask, &width, &size);
    uint32_t *tok = lmp_malloc(*count * 4 + 4);
    if (*count) lmp_pread_all(fd, tok, *count * (size_t)width, 1024, path);
    if (width == 2)  // widen in place, from the end
        for (size_t i = *count; i-- > 0;) tok[i] = ((uint16_t *)tok)[i];
    if (mask) *mask = NULL;
    if (mask && has_mask) {
        *mask = lmp_malloc(*count + 1);
        if (*count) lmp_pread_all(fd, *mask, *count, 1024 + (uint64_t)width * *count, path);
        check_mask(path, *mask, *count);
    }
    close(fd);
    return tok;
}

const void *lmp_tokens_map(const char *path, size_t *count, int *width, const uint8_t **mask,
                           void **map, size_t *map_len) {
    int has_mask;
    uint64_t size;
    int fd = open_tokens(path, count, &has_mask, width, &size);
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) lmp_die("cannot map token file %s: %s", path, strerror(errno));
    close(fd);
    const char *tok = (const char *)m + 1024;
    *mask = has_mask ? (const uint8_t *)(tok + (size_t)*width * *count) : NULL;
    if (*mask) check_mask(path, *mask, *count);
    *map = m;
    *map_len = (size_t)size;
    return tok;
}

static void write_file(const char *path, int version, const void *tok, size_t width,
                       const uint8_t *mask, size_t count) {
    if (count > 0x7fffffff) lmp_die("%s: %zu tokens exceed the llm.c format's limit", path, count);
    int hdr[256] = {LMP_TOKENS_MAGIC, version, (int)count};
    FILE *f = fopen(path, "wb");
    if (!f) lmp_die("cannot write %s: %s", path, strerror(errno));
    int ok = fwrite(hdr, 4, 256, f) == 256 && fwrite(tok, width, count, f) == count &&
             (!mask || fwrite(mask, 1, count, f) == count);
    if ((fclose(f) != 0) || !ok) lmp_die("cannot write %s: %s", path, strerror(errno));
}

void lmp_tokens_write(const char *path, const uint16_t *tok, const uint8_t *mask, size_t count) {
    write_file(path, mask ? 2 : 1, tok, 2, mask, count);
}

void lmp_tokens_write_ids(const char *path, const int *ids, const uint8_t *mask, size_t count,
                          int vocab_size) {
    int wide = vocab_size > 65536;
    size_t width = wide ? 4 : 2;
    unsigned char *buf = lmp_malloc(count * width + 1);
    for (size_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= vocab_size)
            lmp_die("%s: token id %d at position %zu is outside the vocabulary of %d ids", path, ids[i], i, vocab_size);
        if (wide) ((uint32_t *)buf)[i] = (uint32_t)ids[i];
        else ((uint16_t *)buf)[i] = (uint16_t)ids[i];
    }
    write_file(path, (mask ? 2 : 1) + (wide ? 2 : 0), buf, width, mask, count);
    free(buf);
}
