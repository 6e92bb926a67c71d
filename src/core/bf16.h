// bf16.h: bfloat16 <-> fp32. A bf16 is the high half of an fp32 (8-bit exponent, 8-bit
// significand with the implicit bit), so widening is a shift and exact; narrowing rounds to
// nearest, ties to even (as torch and the safetensors writers do), NaN kept NaN.
#ifndef LORAMPI_BF16_H
#define LORAMPI_BF16_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float lmp_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t lmp_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    // A NaN's payload could round up into Inf: keep it a (quiet) NaN instead.
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    // Add 0x7fff plus the lowest kept bit, then truncate. A carry into the exponent is the
    // correct rounding (up to Inf past the largest bf16).
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// dst (rows, cols; rows ldd apart) = bf16 of src (rows, cols; rows lds apart), one pass.
void lmp_bf16_from_f32(uint16_t *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                       size_t cols);
// dst (n) = fp32 of src (n).
void lmp_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
