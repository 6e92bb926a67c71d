// fuzz_config: the run configuration (core/config.c). The first byte picks the entry point:
// even, the rest is INI text (lmp_config_parse_text, as a checkpoint's stored configuration
// is read); odd, its lines are `--set section.key=value` overrides (lmp_config_load). A
// configuration that is accepted must survive lmp_config_dump: its text parses back to the
// same values (config.h promises it; a checkpoint stores its configuration that way);
// LMP_FUZZ_CONFIG_ROUNDTRIP=0 turns that check off.
#include "fuzzutil.h"
#include "core/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_diff(void *ctx, const char *section, const char *key, const char *old_value,
                       const char *new_value, int flags) {
    (void)ctx;
    (void)flags;
    fprintf(stderr, "%s.%s: \"%s\" became \"%s\"\n", section, key, old_value, new_value);
}

static void check_roundtrip(const lmp_config *c) {
    static int on = -1;  // on unless LMP_FUZZ_CONFIG_ROUNDTRIP=0
    if (on < 0) on = !getenv("LMP_FUZZ_CONFIG_ROUNDTRIP") || atoi(getenv("LMP_FUZZ_CONFIG_ROUNDTRIP"));
    if (!on) return;
    char *text = lmp_config_dump(c);
    static lmp_config back;
    char err[2048];
    if (lmp_config_parse_text(&back, text, "dump", err, sizeof err)) {
        fprintf(stderr, "dump does not parse back: %s\n--- dump:\n%s\n", err, text);
        abort();
    }
    if (lmp_config_diff(c, &back, NULL, NULL)) {
        fprintf(stderr, "dump parses back to other values:\n");
        lmp_config_diff(c, &back, print_diff, NULL);
        abort();
    }
    free(text);
}

// Splits text at newlines into at most 64 --set arguments.
static int split_sets(char *text, const char **sets) {
    int n = 0;
    for (char *p = text; p && *p && n < 64;) {
        sets[n++] = p;
        p = strchr(p, '\n');
        if (p) *p++ = 0;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 16384) return 0;
    char *text = malloc(size);
    if (!text) abort();
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    static lmp_config c;
    if (data[0] % 2 == 0) {
        char err[2048];
        if (lmp_config_parse_text(&c, text, "fuzz.ini", err, sizeof err) == 0) {
            lmp_config_validate(&c, err, sizeof err);
            check_roundtrip(&c);
        }
    } else {
        const char *sets[64];
        int n = split_sets(text, sets);
        LMP_FUZZ_TRY({
            lmp_config_load(&c, NULL, sets, n);
            check_roundtrip(&c);
        });
    }
    free(text);
    return 0;
}
