// model_io.c: a model path to its format (a directory is HF, a file llm.c).
#include "io/model_io.h"
#include "core/util.h"

void lmp_model_load(const char *path, lmp_registry *reg) {
    if (lmp_is_dir(path)) lmp_hf_load(path, reg);
    else lmp_llmc_load(path, reg);
}
