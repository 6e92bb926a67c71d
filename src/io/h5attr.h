// h5attr.h: scalar HDF5 attributes, the few types lorampi's files use (checkpoints and
// analysis results). Writers die through LMP_CHECK_H5 naming the failing call; readers
// return -1 for a missing or unreadable attribute so callers can name the file.
#ifndef LORAMPI_H5ATTR_H
#define LORAMPI_H5ATTR_H
#include <hdf5.h>
#include <stdint.h>

void lmp_h5_put_i64(hid_t obj, const char *name, int64_t v);
void lmp_h5_put_u64(hid_t obj, const char *name, uint64_t v);
void lmp_h5_put_f64(hid_t obj, const char *name, double v);
// A variable-length UTF-8 string: h5py reads it as str, h5dump prints it plainly.
void lmp_h5_put_str(hid_t obj, const char *name, const char *s);

// Reads attribute `name` as memory type mtype into v; 0, or -1 when missing/unreadable.
int lmp_h5_get(hid_t obj, const char *name, hid_t mtype, void *v);
int lmp_h5_get_i64(hid_t obj, const char *name, int64_t *v);
// A string attribute as a malloc'd copy, or NULL.
char *lmp_h5_get_str(hid_t obj, const char *name);

#endif
