// rng.h: counter-based random numbers. Every random draw is a pure function of
// (seed, stream, index), so a value does not depend on which rank draws it, in which order,
// or after how many earlier draws: replicated adapters initialise identically on every rank
// without a broadcast, a dropout mask is the same under any tp/dp layout, and a resumed run
// redraws exactly what it would have drawn.
#ifndef LORAMPI_RNG_H
#define LORAMPI_RNG_H
#include <stdint.h>

// 64 random bits for (seed, stream, index).
uint64_t lmp_rng_bits(uint64_t seed, uint64_t stream, uint64_t index);
// Uniform in [0, 1), 24-bit resolution (exact in float).
float lmp_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
// Standard normal (Box-Muller on two draws of the same index).
float lmp_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
// Hash of a string, to derive a stream id from a parameter name.
uint64_t lmp_hash_str(const char *s);

#endif
