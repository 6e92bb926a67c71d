// Token files with uint32 ids (io/tokens.c versions 3 and 4): the writer picks the width by
// vocabulary size (65536 ids still fit uint16: versions 1/2; more: 3/4), the header and
// layout are as documented, lmp_tokens_read and the loader (mapped) give the ids back, and
// an id outside the vocabulary or a truncated file is refused naming the file.
#include "data/data.h"
#include "io/tokens.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    if (!f) { perror(p); exit(1); }
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static char path[600];
static int bad_ids[3] = {1, 128256, 2};

static void write_bad(const char *unused) { lmp_tokens_write_ids(path, bad_ids, NULL, 3, 128256); }
static void read_path(const char *unused) {
    size_t n;
    free(lmp_tokens_read(path, &n, NULL));
}

static void check_layout(int vocab, int with_mask, int version, int width) {
    enum { N = 9 };
    int ids[N];
    uint8_t mask[N];
    for (int i = 0; i < N; i++) {
        ids[i] = (int)((unsigned)(i * 40009 + 3) % (unsigned)vocab);
        mask[i] = (uint8_t)(i % 2);
    }
    lmp_tokens_write_ids(path, ids, with_mask ? mask : NULL, N, vocab);
    size_t len;
    char *raw = read_all(path, &len);
    int hdr[3];
    memcpy(hdr, raw, sizeof hdr);
    T_CHECK(hdr[0] == LMP_TOKENS_MAGIC && hdr[1] == version && hdr[2] == N &&
            len == 1024 + (size_t)N * (size_t)(width + with_mask),
            "vocab %d, mask %d: version %d, %zu bytes", vocab, with_mask, hdr[1], len);
    size_t n;
    uint8_t *m;
    uint32_t *back = lmp_tokens_read(path, &n, &m);
    int same = n == N && !m == !with_mask && (!m || !memcmp(m, mask, N));
    for (size_t i = 0; same && i < n; i++) same = back[i] == (uint32_t)ids[i];
    T_CHECK(same, "vocab %d, mask %d: read back", vocab, with_mask);
    lmp_loader d;
    lmp_loader_open(&d, path, 4, vocab, 1, 0);
    int inp[4], tgt[4];
    lmp_loader_get(&d, 0, inp, tgt, NULL);
    int first = -1;  // window 0 or 1 (unshuffled order): find which
    for (int s = 0; s + 4 < N; s += 4)
        if (inp[0] == ids[s]) first = s;
    T_CHECK(first >= 0 && inp[3] == ids[first + 3] && tgt[3] == ids[first + 4], "vocab %d: loader window", vocab);
    lmp_loader_close(&d);
    free(back);
    free(m);
    free(raw);
}

int main(void) {
    snprintf(path, sizeof path, "%s/tok.bin", t_tmpdir());
    check_layout(50257, 0, 1, 2);
    check_layout(65536, 1, 2, 2);
    check_layout(128256, 0, 3, 4);
    check_layout(151669, 1, 4, 4);
    t_expect_death("id outside the vocabulary", write_bad, NULL, "tok.bin", "token id 128256 at position 1");
    // Truncated version-4 file: the header's count does not match the size.
    int ids[3] = {5, 150000, 7};
    uint8_t mask[3] = {1, 1, 0};
    lmp_tokens_write_ids(path, ids, mask, 3, 151669);
    size_t len;
    char *raw = read_all(path, &len);
    t_write_file(path, raw, len - 1);
    free(raw);
    t_expect_death("truncated version 4", read_path, NULL, "tok.bin", "truncated");
    return t_finish();
}
