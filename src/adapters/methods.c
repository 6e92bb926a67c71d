// methods.c: the adapter methods lorampi knows. A new method is its own file plus one line here.
#include "adapters/adapter.h"
#include "adapters/bottleneck.h"
#include "adapters/dora.h"
#include "adapters/ia3.h"
#include "adapters/lora.h"
#include "adapters/prefix.h"

#include "core/util.h"

#include <string.h>

static const lmp_adapter_method *METHODS[16] = {
    &lmp_lora_method,
    &lmp_houlsby_method,
    &lmp_parallel_method,
    &lmp_prefix_method,
    &lmp_ia3_method,
    &lmp_dora_method,
};
static size_t n_methods = 6;  // the entries above

void lmp_adapter_add_method(const lmp_adapter_method *m) {
    LMP_CHECK(n_methods < sizeof METHODS / sizeof METHODS[0], "too many adapter methods (%s)", m->name);
    LMP_CHECK(!lmp_adapter_find(m->name), "adapter method %s added twice", m->name);
    METHODS[n_methods++] = m;
}

const lmp_adapter_method *lmp_adapter_find(const char *name) {
    for (size_t i = 0; i < n_methods; i++)
        if (!strcmp(METHODS[i]->name, name)) return METHODS[i];
    return NULL;
}

const char *lmp_adapter_names(void) {
    static char buf[512];
    buf[0] = 0;
    for (size_t i = 0; i < n_methods; i++) {
        if (i) strcat(buf, ", ");
        strncat(buf, METHODS[i]->name, sizeof buf - strlen(buf) - 3);
    }
    return buf;
}
