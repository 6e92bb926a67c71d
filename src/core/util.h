// util.h: error checking, logging, timing and aligned allocation shared by every module.
#ifndef LORAMPI_UTIL_H
#define LORAMPI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LMP_VERSION "0.1.0"

// Exit codes, documented in README ("Exit codes").
// LMP_EXIT_REQUEUE: training stopped on SIGUSR1/SIGTERM after writing a checkpoint; the same
// command resumes it (jobs/train.sbatch requeues the job on this code).
enum { LMP_EXIT_OK = 0, LMP_EXIT_ERROR = 1, LMP_EXIT_USAGE = 2, LMP_EXIT_REQUEUE = 3 };

// Fatal error on the calling rank only (a file this rank could not read, a failed library
// call): prints "lorampi: error: <msg>" and aborts every rank (MPI_Abort when more than one
// rank runs, exit otherwise), so no peer is left hanging in a collective.
void lmp_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

// Fatal error that every rank detects identically (bad config value, bad layout): rank 0
// prints the message once, every rank finalises MPI and exits with LMP_EXIT_ERROR.
void lmp_die_all(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

// A hook that lmp_die and lmp_die_all run once, with the message (msg, size n), before it is
// printed and before MPI is touched; it is removed before it runs (an error inside it ends
// the process without it). Two uses:
//  - a cleanup that returns: the checkpoint writer appends the cause of a failed write and
//    removes its partial file; it must not call collectives (peers may be in another one).
//    After a hook ran, the process ends with _exit: no library exit handler (HDF5's closes
//    open files) touches a file whose writes failed;
//  - test harnesses (the fuzz targets): a hook that longjmps back turns a die into a return,
//    so one process tries many bad inputs (it installs itself again; what the dying code had
//    allocated leaks).
// NULL removes it.
typedef void (*lmp_die_hook)(char *msg, size_t n);
void lmp_set_die_hook(lmp_die_hook hook);

// lmp_die for a failed MPI call: "<file>:<line>: <call> failed: <MPI_Error_string of rc>".
void lmp_die_mpi(int rc, const char *file, int line, const char *call) __attribute__((noreturn));

// Checks the return value of a library call and reports file, line and the failing call.
// MPI calls return an error code only on a communicator whose error handler is
// MPI_ERRORS_RETURN (main sets it on MPI_COMM_WORLD, lmp_comm_init on the communicators it
// creates); under MPI's default handler an error aborts inside the call instead.
#define LMP_CHECK_MPI(call) do { int lmp_rc_ = (call); if (lmp_rc_ != 0) \
    lmp_die_mpi(lmp_rc_, __FILE__, __LINE__, #call); } while (0)
#define LMP_CHECK_H5(call) do { if ((long long)(call) < 0) \
    lmp_die("%s:%d: %s failed (HDF5)", __FILE__, __LINE__, #call); } while (0)
#define LMP_CHECK(cond, ...) do { if (!(cond)) lmp_die(__VA_ARGS__); } while (0)

// malloc/calloc that never return NULL (they die naming the size and the caller).
#define lmp_malloc(n) lmp_malloc_at((n), __FILE__, __LINE__)
#define lmp_calloc(n) lmp_calloc_at((n), __FILE__, __LINE__)
void *lmp_malloc_at(size_t n, const char *file, int line);
void *lmp_calloc_at(size_t n, const char *file, int line);  // 64-byte aligned, zeroed

// Rank of this process in MPI_COMM_WORLD (0 before MPI_Init) and world size.
int lmp_world_rank(void);
int lmp_world_size(void);

// printf on rank 0 only, flushed.
void lmp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Warning on rank 0: "lorampi: warning: ...".
void lmp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Wall clock in seconds (monotonic).
double lmp_now(void);

// Inside an OpenMP parallel region: this thread's share [*lo, *hi) of n items, contiguous
// blocks in thread order (static, so a given thread count always splits the same way).
void lmp_omp_range(int n, int *lo, int *hi);

// Peak resident set size of this process in bytes (from /proc/self/status VmHWM).
size_t lmp_peak_rss(void);

// Logs the OpenBLAS core in use and warns when OpenBLAS fell back to a generic core on a
// CPU with AVX2/AVX-512 (Debian's 0.3.21 does not know recent CPUs), naming the fix.
void lmp_check_blas_core(void);

// dir + "/" + name into out (size n), returned; dies naming both when it does not fit, so a
// long path is never silently cut into another (existing) one.
char *lmp_path_join(char *out, size_t n, const char *dir, const char *name);
// snprintf into out (size n), returned; dies when the text does not fit (names, paths).
char *lmp_fmt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Runs argv[0] (a path) with argv and waits for it: no shell, so no quoting of paths.
// Returns its exit status, or -1 with the reason in err (it could not start, or died on a
// signal).
int lmp_run_program(char *const argv[], char *err, size_t errlen);

// mkdir -p: creates dir and its missing parents; dies naming the path on failure.
void lmp_mkdir_p(const char *dir);
// The same returning 0, or -1 with the reason in err (size n).
int lmp_mkdir_p_err(const char *dir, char *err, size_t n);

// Reads a whole regular file into a malloc'd buffer (NUL-terminated); dies naming the path
// on error (a directory included, which stdio would otherwise read as an empty file).
char *lmp_read_file(const char *path, size_t *len);

// 1 when path exists and is a directory (following links).
int lmp_is_dir(const char *path);
// 1 when dir exists and holds anything but . and .. (export and merge refuse to write into
// such a directory without --force).
int lmp_dir_non_empty(const char *dir);
// Size in bytes of the open file fd; dies naming path on error.
uint64_t lmp_fd_size(int fd, const char *path);
// Reads exactly n bytes at offset off of fd (retrying short reads); dies naming path and
// the offset on an error or end of file (a truncated file).
void lmp_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path);

#endif
