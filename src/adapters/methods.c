// methods.c: the adapter methods lorampi knows. A new method is its own file plus one line here.
#include "adapters/adapter.h"
#include "adapters/lora.h"

#include <string.h>

static const lmp_adapter_method *const METHODS[] = {
    &lmp_lora_method,
};
#define N_METHODS (sizeof METHODS / sizeof METHODS[0])

const lmp_adapter_method *lmp_adapter_find(const char *name) {
    for (size_t i = 0; i < N_METHODS; i++)
        if (!strcmp(METHODS[i]->name, name)) return METHODS[i];
    return NULL;
}

const char *lmp_adapter_names(void) {
    static char buf[256];
    if (!buf[0])
        for (size_t i = 0; i < N_METHODS; i++) {
            if (i) strcat(buf, ", ");
            strcat(buf, METHODS[i]->name);
        }
    return buf;
}
