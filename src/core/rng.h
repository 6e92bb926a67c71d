// rng.h: counter-based random numbers. Every random draw is a pure function of
// (seed, stream, index), so a value does not depend on which rank draws it, in which order,
// or after how many earlier draws: replicated adapters initialise identically on every rank
// without a broadcast, a dropout mask is the same under any tp/dp layout, and a resumed run
// redraws exactly what it would have drawn.
#ifndef LORAMPI_RNG_H
#define LORAMPI_RNG_H
#include <stddef.h>
#include <stdint.h>

// 64 random bits for (seed, stream, index).
uint64_t lmp_rng_bits(uint64_t seed, uint64_t stream, uint64_t index);
// Uniform in [0, 1), 24-bit resolution (exact in float).
float lmp_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
// Uniform in [-bound, bound): torch's Kaiming-uniform (a = sqrt(5)) init of a Linear's weight
// and bias with bound = 1/sqrt(fan_in), which LoRA's A, the bottlenecks and the prefix MLP share.
float lmp_rng_sym(uint64_t seed, uint64_t stream, uint64_t index, float bound);
// Standard normal (Box-Muller on two draws of the same index).
float lmp_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
// SplitMix64's finaliser: a bijection of 64-bit words that spreads every input bit. The one
// mixing function of lorampi (RNG, hashes, the base-weight checksum).
static inline uint64_t lmp_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
// Hash of n bytes (FNV-1a, then lmp_mix64): hash tables and stream ids.
uint64_t lmp_hash_bytes(const void *s, size_t n);
// Hash of a string, to derive a stream id from a parameter name.
uint64_t lmp_hash_str(const char *s);

#endif
