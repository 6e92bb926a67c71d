// fuzzutil.h: what every fuzz target shares. lorampi reports bad input through lmp_die, which
// exits; the targets install a die hook that longjmps back, so a clean lorampi error ends one
// input, not the fuzzer. What the dying code had allocated leaks (the targets run with leak
// detection off). Inputs reach the parsers as files, written under a private temporary
// directory (in /dev/shm when there is one).
#ifndef LORAMPI_FUZZUTIL_H
#define LORAMPI_FUZZUTIL_H
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

extern jmp_buf lmp_fuzz_jmp;

// Installs the die hook and creates the temporary directory (once; every call is cheap).
void lmp_fuzz_init(void);
// Notes the lowest free file descriptor: a die closes it and every one above (the files the
// dying code had opened), so a long run does not run out of descriptors.
void lmp_fuzz_mark_fds(void);
// Runs the statements given; a lmp_die inside it returns here. Locals changed inside body
// and used after it must be volatile (setjmp's rule).
#define LMP_FUZZ_TRY(...) do { lmp_fuzz_init(); lmp_fuzz_mark_fds(); \
    if (setjmp(lmp_fuzz_jmp) == 0) { __VA_ARGS__; } } while (0)

// Path of `name` in the temporary directory, into out (size n).
char *lmp_fuzz_path(char *out, size_t n, const char *name);
// Writes data[0, size) to the file `name` of the temporary directory; returns its path in out.
char *lmp_fuzz_write(char *out, size_t n, const char *name, const void *data, size_t size);

// A little reader of the fuzz input for structured targets: bytes are taken from the front;
// past the end everything reads as 0.
typedef struct { const uint8_t *p; size_t n; } lmp_fuzz_in;
uint8_t lmp_fuzz_u8(lmp_fuzz_in *in);
uint32_t lmp_fuzz_u32(lmp_fuzz_in *in);
uint64_t lmp_fuzz_u64(lmp_fuzz_in *in);
// Up to max bytes (the length taken from the input) as a NUL-terminated string in out.
const char *lmp_fuzz_str(lmp_fuzz_in *in, char *out, size_t max);

#endif
