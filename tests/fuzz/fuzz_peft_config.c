// fuzz_peft_config: a PEFT adapter_config.json (io/peft_read.c), parsed from memory as
// [adapter] init_from reads it; when it parses, its target_modules (list or regex), layer
// filter, rank/alpha patterns and IA3's feedforward_modules (list or regex) are matched
// against GPT-2 module names, as init_from does; and its peft_type and the prefix-tuning
// parser (io/peft_prefix.c), as init_from dispatches.
// The parser returns errors instead of dying; the die hook still catches anything that dies.
#include "fuzzutil.h"
#include "io/peft_prefix.h"
#include "io/peft_read.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static lmp_peft_config pc;  // large: not on the stack
    lmp_peft_prefix_config ppc;
    char type[64];
    static const char *NAMES[] = {"transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_proj",
                                  "transformer.h.11.mlp.c_fc", "transformer.h.2.mlp.c_proj",
                                  "transformer.wte", "lm_head", "transformer.h.3"};
    LMP_FUZZ_TRY({
        char err[2048];
        if (lmp_peft_type_of((const char *)data, size, "adapter_config.json", type, sizeof type, err, sizeof err) == 0)
            (void)lmp_peft_prefix_parse((const char *)data, size, "adapter_config.json", &ppc, err, sizeof err);
        if (lmp_peft_parse_config((const char *)data, size, "adapter_config.json", &pc, err, sizeof err) == 0)
            for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
                (void)lmp_peft_targets(&pc, NAMES[i], err, sizeof err);
                (void)lmp_peft_layer_index(&pc, NAMES[i]);
                (void)lmp_peft_pattern_find(pc.rank_pattern, pc.n_rank, NAMES[i], err, sizeof err);
                (void)lmp_peft_pattern_find(pc.alpha_pattern, pc.n_alpha, NAMES[i], err, sizeof err);
                (void)lmp_peft_feedforward(&pc, NAMES[i], err, sizeof err);
            }
    });
    return 0;
}
