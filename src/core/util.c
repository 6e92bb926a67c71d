// util.c: errors, logging, timing, allocation, BLAS core check.
#include "core/util.h"

#include <cblas.h>
#include <mpi.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;
#include <unistd.h>

char *openblas_get_corename(void);  // OpenBLAS extension, not in Debian's cblas.h

static int mpi_up(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int lmp_world_rank(void) {
    int r = 0;
    if (mpi_up()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int lmp_world_size(void) {
    int s = 1;
    if (mpi_up()) MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
}

// "lorampi: <kind> (rank r): <msg>" on stderr, after what was printed before it.
static void vreport_msg(const char *kind, const char *msg) {
    fflush(stdout);
    if (lmp_world_size() > 1)
        fprintf(stderr, "lorampi: %s (rank %d): %s\n", kind, lmp_world_rank(), msg);
    else
        fprintf(stderr, "lorampi: %s: %s\n", kind, msg);
    fflush(stderr);
}

static void vreport(const char *kind, const char *fmt, va_list ap) {
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    vreport_msg(kind, msg);
}

static lmp_die_hook die_hook;

void lmp_set_die_hook(lmp_die_hook hook) { die_hook = hook; }

// Runs the die hook once with the message (it may append to it, or not return); 1 if one ran.
// It is removed first, so an error inside it ends the process without it.
static int run_die_hook(char *msg, size_t n) {
    lmp_die_hook hook = die_hook;
    die_hook = NULL;
    if (hook) hook(msg, n);
    return hook != NULL;
}

void lmp_die(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int hooked = run_die_hook(msg, sizeof msg);
    vreport_msg("error", msg);
    fflush(stdout);
    if (lmp_world_size() > 1) MPI_Abort(MPI_COMM_WORLD, LMP_EXIT_ERROR);
    // After a cleanup hook no library exit handler (HDF5's closes open files) may touch a file
    // whose writes failed.
    if (hooked) _exit(LMP_EXIT_ERROR);
    exit(LMP_EXIT_ERROR);
}

void lmp_die_all(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int hooked = run_die_hook(msg, sizeof msg);
    fflush(stdout);
    if (lmp_world_rank() == 0) {
        fprintf(stderr, "lorampi: error: %s\n", msg);
        fflush(stderr);
    }
    if (mpi_up()) MPI_Finalize();
    if (hooked) _exit(LMP_EXIT_ERROR);
    exit(LMP_EXIT_ERROR);
}

void lmp_die_mpi(int rc, const char *file, int line, const char *call) {
    char err[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, err, &len) != MPI_SUCCESS) snprintf(err, sizeof err, "unknown error");
    lmp_die("%s:%d: %s failed (MPI error %d: %s)", file, line, call, rc, err);
}

void *lmp_malloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) lmp_die("%s:%d: out of memory allocating %zu bytes", file, line, n);
    return p;
}

void *lmp_calloc_at(size_t n, const char *file, int line) {
    void *p = NULL;
    size_t sz = (n + 63) / 64 * 64;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0)
        lmp_die("%s:%d: out of memory allocating %zu bytes", file, line, n);
    memset(p, 0, sz);
    return p;
}

void lmp_log(const char *fmt, ...) {
    if (lmp_world_rank() != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void lmp_warn(const char *fmt, ...) {
    if (lmp_world_rank() != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vreport("warning", fmt, ap);
    va_end(ap);
}

void lmp_omp_range(int n, int *lo, int *hi) {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    *lo = (int)((int64_t)n * t / nt);
    *hi = (int)((int64_t)n * (t + 1) / nt);
}

double lmp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

size_t lmp_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtoull(line + 6, NULL, 10); break; }
    fclose(f);
    return kb * 1024;
}

void lmp_check_blas_core(void) {
    const char *core = openblas_get_corename();
    const char *env = getenv("OPENBLAS_CORETYPE");
    lmp_log("openblas: core %s%s%s%s\n", core ? core : "?", env ? " (OPENBLAS_CORETYPE=" : "",
            env ? env : "", env ? ")" : "");
    if (!core) return;
    // Debian's 0.3.21 falls back to generic x86-64 kernels (about 5x slower) on CPUs it was
    // not built to recognise. Suggest the newest kernel set this CPU can run.
    int generic = !strcasecmp(core, "prescott") || !strcasecmp(core, "core2") ||
                  !strcasecmp(core, "nehalem") || !strcasecmp(core, "katmai") ||
                  !strcasecmp(core, "generic") || !strcasecmp(core, "barcelona");
    const char *fix = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) fix = "SkylakeX";
    else if (__builtin_cpu_supports("avx2")) fix = "Haswell";
    if (generic && fix)
        lmp_warn("OpenBLAS runs its generic '%s' kernels on a CPU with %s: matrix products are "
                 "several times slower than they can be. Set OPENBLAS_CORETYPE=%s before "
                 "starting lorampi (e.g. export it in your job script).",
                 core, strcmp(fix, "SkylakeX") ? "AVX2" : "AVX-512", fix);
}

char *lmp_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) lmp_die("cannot open %s: %s", path, strerror(errno));
    // fopen succeeds on a directory and reading it gives 0 bytes: an empty "file".
    struct stat st;
    if (fstat(fileno(f), &st) != 0) lmp_die("cannot stat %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) lmp_die("cannot read %s: is a directory", path);
    if (fseek(f, 0, SEEK_END) != 0) lmp_die("cannot seek in %s: %s", path, strerror(errno));
    long n = ftell(f);
    if (n < 0) lmp_die("cannot size %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_SET) != 0) lmp_die("cannot seek in %s: %s", path, strerror(errno));
    char *buf = lmp_malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        lmp_die("cannot read %s: %s", path, ferror(f) ? strerror(errno) : "shorter than its size");
    buf[n] = 0;
    if (fclose(f) != 0) lmp_die("cannot read %s: %s", path, strerror(errno));
    if (len) *len = (size_t)n;
    return buf;
}

// One directory of lmp_mkdir_p: made, or already there as a directory; else -1 with err.
static int mkdir_one(const char *dir, const char *full, char *err, size_t n) {
    if (mkdir(dir, 0755) == 0) return 0;
    int e = errno;
    if (e == EEXIST && lmp_is_dir(dir)) return 0;
    if (e == EEXIST) snprintf(err, n, "cannot create directory %s: %s exists and is not a directory", full, dir);
    else snprintf(err, n, "cannot create directory %s: %s: %s", full, dir, strerror(e));
    return -1;
}

int lmp_mkdir_p_err(const char *dir, char *err, size_t n) {
    char tmp[4096];
    if (!dir[0] || strlen(dir) >= sizeof tmp) {
        snprintf(err, n, "cannot create directory '%.200s': %s", dir, dir[0] ? "name too long" : "empty name");
        return -1;
    }
    strcpy(tmp, dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/' && p[-1] != '/') {
            *p = 0;
            if (mkdir_one(tmp, dir, err, n)) return -1;
            *p = '/';
        }
    return mkdir_one(tmp, dir, err, n);
}

void lmp_mkdir_p(const char *dir) {
    char err[4200];
    if (lmp_mkdir_p_err(dir, err, sizeof err)) lmp_die("%s", err);
}

int lmp_dir_non_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n > 0;
}

int lmp_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

uint64_t lmp_fd_size(int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) != 0) lmp_die("cannot stat %s: %s", path, strerror(errno));
    // open() succeeds on a directory; its st_size is the file system's, not data to read.
    if (S_ISDIR(st.st_mode)) lmp_die("cannot read %s: is a directory", path);
    return (uint64_t)st.st_size;
}

void lmp_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path) {
    char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) lmp_die("%s: read of %zu bytes at offset %llu failed: %s", path, n, (unsigned long long)off,
                           strerror(errno));
        if (k == 0) lmp_die("%s: read of %zu bytes at offset %llu failed (truncated file?)", path, n,
                            (unsigned long long)off);
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
}

char *lmp_fmt(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n) lmp_die("text too long (%d bytes, room for %zu): %.200s...", k, n, out);
    return out;
}

char *lmp_path_join(char *out, size_t n, const char *dir, const char *name) {
    int k = snprintf(out, n, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= n)
        lmp_die("path too long (%d bytes, room for %zu): %s/%s", k, n, dir, name);
    return out;
}

int lmp_run_program(char *const argv[], char *err, size_t errlen) {
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ), st = 0;
    if (rc != 0) {
        snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(rc));
        return -1;
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errlen, "waiting for %s failed: %s", argv[0], strerror(errno));
            return -1;
        }
    if (!WIFEXITED(st)) {
        snprintf(err, errlen, "%s died on signal %d", argv[0], WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        return -1;
    }
    return WEXITSTATUS(st);
}
