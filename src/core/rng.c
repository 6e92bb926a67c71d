// rng.c: counter-based RNG (SplitMix64 finaliser over a mixed key; passes BigCrush as a
// counter-mode generator and costs a few multiplies per draw).
#include "core/rng.h"
#include <math.h>
#include <string.h>

uint64_t lmp_rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t k = lmp_mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = lmp_mix64(k ^ (stream + 0x632be59bd9b4e019ULL));
    return lmp_mix64(k ^ (index * 0x9e3779b97f4a7c15ULL + 0xd1b54a32d192ed03ULL));
}

float lmp_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)(lmp_rng_bits(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

float lmp_rng_sym(uint64_t seed, uint64_t stream, uint64_t index, float bound) {
    return bound * (2.0f * lmp_rng_uniform(seed, stream, index) - 1.0f);
}

float lmp_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t b = lmp_rng_bits(seed, stream, index);
    double u1 = ((b >> 11) + 1.0) * (1.0 / 9007199254740993.0);   // (0, 1]
    double u2 = (double)(lmp_rng_bits(seed ^ 0x5bd1e995ULL, stream, index) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t lmp_hash_bytes(const void *s, size_t n) {
    const unsigned char *b = s;
    uint64_t h = 1469598103934665603ULL;  // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return lmp_mix64(h);
}

uint64_t lmp_hash_str(const char *s) { return lmp_hash_bytes(s, strlen(s)); }
