// bf16.c: the conversion passes (bf16.h).
#include "core/bf16.h"

void lmp_bf16_from_f32(uint16_t *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                       size_t cols) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *s = src + r * lds;
        uint16_t *d = dst + r * ldd;
        for (size_t j = 0; j < cols; j++) d[j] = lmp_f32_to_bf16(s[j]);
    }
}

void lmp_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = lmp_bf16_to_f32(src[i]);
}
