// ckpt_list.c: the checkpoints of a directory: listing, the newest, retention.
#include "io/ckpt_hdf5.h"
#include "io/ckpt_layout.h"
#include "io/ckpt_read.h"
#include "io/h5attr.h"
#include "core/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Step of "ckpt-<digits>.h5" (tmp = 0) or "ckpt-<digits>.h5.tmp" (tmp = 1), else -1.
static long long ckpt_step_of(const char *name, int tmp) {
    long long step;
    int end = 0;
    if (sscanf(name, "ckpt-%lld.h5%n", &step, &end) != 1 || step < 0) return -1;
    if (!isdigit((unsigned char)name[5])) return -1;  // sscanf would accept a sign or space
    return strcmp(name + end, tmp ? ".tmp" : "") ? -1 : step;
}

static int cmp_entry(const void *a, const void *b) {
    long long x = ((const lmp_ckpt_entry *)a)->step, y = ((const lmp_ckpt_entry *)b)->step;
    return x < y ? -1 : x > y;
}

lmp_ckpt_entry *lmp_ckpt_list(const char *dir, int *n) {
    lmp_ckpt_entry *list = NULL;
    int cap = 0;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s = ckpt_step_of(e->d_name, 0);
        if (s < 0) continue;
        // Only regular files: opening a FIFO named like a checkpoint blocks for ever.
        char path[LMP_PATH_MAX + 300];
        struct stat st;
        lmp_path_join(path, sizeof path, dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            lmp_warn("checkpoint: skipping %s: not a regular file", path);
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            list = realloc(list, (size_t)cap * sizeof *list);
            LMP_CHECK(list, "out of memory");
        }
        list[*n].step = s;
        lmp_fmt(list[*n].name, sizeof list[*n].name, "%s", e->d_name);
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(list, (size_t)*n, sizeof *list, cmp_entry);
    return list;
}

int lmp_ckpt_find_latest(const char *dir, char *path, size_t n, lmp_comm *c) {
    char best_name[256] = "";
    if (c->rank == 0) {
        int k;
        lmp_ckpt_entry *list = lmp_ckpt_list(dir, &k);
        if (k) lmp_fmt(best_name, sizeof best_name, "%s", list[k - 1].name);
        free(list);
    }
    LMP_CHECK_MPI(MPI_Bcast(best_name, sizeof best_name, MPI_CHAR, 0, c->world));
    if (!best_name[0]) return 0;
    lmp_path_join(path, n, dir, best_name);
    return 1;
}

void lmp_ckpt_lineage(const char *path, char *out, size_t n) {
    lmp_ckpt_reader rd;
    char err[LMP_PATH_MAX + 256], *s = NULL;
    out[0] = 0;
    if (lmp_ckpt_open(&rd, path, err, sizeof err)) return;
    if (lmp_h5_get_str(rd.file, "lineage", &s) == LMP_H5_OK && strlen(s) < n) strcpy(out, s);
    free(s);
    lmp_ckpt_close(&rd, err, sizeof err);
}

// Retention counts and deletes only the checkpoints of this run's lineage: another run's
// files (a --no-resume run in a directory that holds them, a file copied in) are never
// this run's to delete, whatever their step.
void lmp_ckpt_apply_retention(const char *dir, int keep, const char *lineage) {
    char path[LMP_PATH_MAX + 300], other[40];
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (ckpt_step_of(e->d_name, 1) >= 0) {
            lmp_path_join(path, sizeof path, dir, e->d_name);
            if (unlink(path) == 0) lmp_log("checkpoint: removed %s (left by an interrupted write)\n", path);
        }
    if (d) closedir(d);
    int n, mine = 0;
    lmp_ckpt_entry *list = lmp_ckpt_list(dir, &n);
    for (int i = 0; i < n; i++) {  // keep this lineage's entries, in step order
        lmp_path_join(path, sizeof path, dir, list[i].name);
        lmp_ckpt_lineage(path, other, sizeof other);
        if (lineage[0] && !strcmp(other, lineage)) list[mine++] = list[i];
    }
    for (int i = 0; keep > 0 && i < mine - keep; i++) {
        lmp_path_join(path, sizeof path, dir, list[i].name);
        if (unlink(path) != 0)
            lmp_warn("checkpoint: cannot remove old %s: %s", path, strerror(errno));
    }
    free(list);
}
