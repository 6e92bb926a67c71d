// fuzzutil.c: die hook, temporary files and input reader of the fuzz targets.
#include "fuzzutil.h"
#include "core/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

jmp_buf lmp_fuzz_jmp;
static char tmpdir[256];
static int fd_mark = -1;

void lmp_fuzz_mark_fds(void) {
    fd_mark = open("/dev/null", O_RDONLY);
    if (fd_mark < 0) abort();
    close(fd_mark);
}

static void on_die(char *msg, size_t n) {
    (void)msg;  // a clean error: the input is rejected, which is what it should be
    (void)n;
    for (int fd = fd_mark; fd >= 0 && fd < fd_mark + 64; fd++) close(fd);
    lmp_set_die_hook(on_die);  // lmp_die removed it before calling it
    longjmp(lmp_fuzz_jmp, 1);
}

static void remove_tmpdir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s\n", tmpdir);
}

void lmp_fuzz_init(void) {
    if (tmpdir[0]) return;
    lmp_set_die_hook(on_die);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/lmp-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_tmpdir);
}

char *lmp_fuzz_path(char *out, size_t n, const char *name) {
    lmp_fuzz_init();
    snprintf(out, n, "%s/%s", tmpdir, name);
    return out;
}

char *lmp_fuzz_write(char *out, size_t n, const char *name, const void *data, size_t size) {
    lmp_fuzz_path(out, n, name);
    FILE *f = fopen(out, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(out);  // the harness' own failure, not a finding in lorampi
        abort();
    }
    return out;
}

uint8_t lmp_fuzz_u8(lmp_fuzz_in *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

uint32_t lmp_fuzz_u32(lmp_fuzz_in *in) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | lmp_fuzz_u8(in);
    return v;
}

uint64_t lmp_fuzz_u64(lmp_fuzz_in *in) {
    return (uint64_t)lmp_fuzz_u32(in) << 32 | lmp_fuzz_u32(in);
}

const char *lmp_fuzz_str(lmp_fuzz_in *in, char *out, size_t max) {
    size_t len = lmp_fuzz_u8(in) % (max + 1);
    if (len > in->n) len = in->n;
    memcpy(out, in->p, len);
    out[len] = 0;
    in->p += len;
    in->n -= len;
    return out;
}
