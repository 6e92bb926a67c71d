// nfc.c: Unicode NFC through ICU (unorm2), for tokenizers whose normalizer is NFC (Qwen).
#include "data/bpe_build.h"
#include "core/util.h"

#include <stdlib.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

char *lmp_nfc(const char *s, size_t n, size_t *out_n) {
    size_t i = 0;
    while (i < n && !((unsigned char)s[i] & 0x80)) i++;
    if (i == n) return NULL;
    if (n > INT32_MAX / 4) lmp_die("NFC: a text of %zu bytes is too long for ICU", n);
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&e);
    int32_t n16;
    UChar *u = lmp_malloc(((size_t)n + 1) * sizeof *u);
    u_strFromUTF8(u, (int32_t)n + 1, &n16, s, (int32_t)n, &e);
    // NFC of UTF-16 is at most 3 times as long (Unicode's bound for NFC is x3).
    UChar *v = lmp_malloc(((size_t)n16 * 3 + 1) * sizeof *v);
    int32_t m16 = U_SUCCESS(e) ? unorm2_normalize(nfc, u, n16, v, n16 * 3 + 1, &e) : 0;
    int32_t m8 = 0;
    char *out = lmp_malloc((size_t)m16 * 3 + 1);
    if (U_SUCCESS(e)) u_strToUTF8(out, m16 * 3 + 1, &m8, v, m16, &e);
    if (U_FAILURE(e)) lmp_die("NFC normalization failed (ICU: %s)", u_errorName(e));
    free(u);
    free(v);
    *out_n = (size_t)m8;
    return out;
}
