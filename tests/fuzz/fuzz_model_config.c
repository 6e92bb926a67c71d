// fuzz_model_config: a Hugging Face config.json (model/model_config.c), read from a model
// directory as lmp_model_read_config does for --model DIR.
#include "fuzzutil.h"
#include "model/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[512], path[512];
    lmp_fuzz_write(path, sizeof path, "config.json", data, size);
    lmp_fuzz_path(dir, sizeof dir, "");
    LMP_FUZZ_TRY({
        lmp_model_config cfg;
        lmp_model_read_config(dir, &cfg);
    });
    return 0;
}
