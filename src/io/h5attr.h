// h5attr.h: scalar HDF5 attributes, the few types lorampi's files use (checkpoints and
// analysis results). Writers die through LMP_CHECK_H5 naming the failing call; readers
// return an LMP_H5_* code so callers can name the file and say what was wrong.
#ifndef LORAMPI_H5ATTR_H
#define LORAMPI_H5ATTR_H
#include <hdf5.h>
#include <stdint.h>

void lmp_h5_put_i64(hid_t obj, const char *name, int64_t v);
void lmp_h5_put_u64(hid_t obj, const char *name, uint64_t v);
void lmp_h5_put_f64(hid_t obj, const char *name, double v);
// A variable-length UTF-8 string: h5py reads it as str, h5dump prints it plainly.
void lmp_h5_put_str(hid_t obj, const char *name, const char *s);

// Why a read failed (0: it did not).
enum {
    LMP_H5_OK = 0,
    LMP_H5_MISSING = -1,     // no such attribute
    LMP_H5_NOT_SCALAR = -2,  // an array (or null) dataspace: a scalar is expected
    LMP_H5_WRONG_CLASS = -3, // a string where a number is expected, or the reverse
    LMP_H5_NOT_INTEGER = -4, // a fractional or out-of-range value where an integer is expected
    LMP_H5_UNREADABLE = -5,  // HDF5 could not read it (corrupt, or no conversion)
};
// The reason of code rc as text, e.g. "is not a scalar".
const char *lmp_h5_why(int rc);

// Reads the SCALAR attribute `name` as memory type mtype into v. mtype is a 64-bit integer
// (stored integers, or stored floats with an integral value in range), a double (stored
// integers or floats) or a variable-length string (stored strings). Returns an LMP_H5_* code;
// v is written only on success, so an array-valued attribute can never overflow it.
int lmp_h5_get(hid_t obj, const char *name, hid_t mtype, void *v);
int lmp_h5_get_i64(hid_t obj, const char *name, int64_t *v);
int lmp_h5_get_u64(hid_t obj, const char *name, uint64_t *v);
int lmp_h5_get_f64(hid_t obj, const char *name, double *v);
// A string attribute as a malloc'd copy into *s (NULL on failure); an LMP_H5_* code.
int lmp_h5_get_str(hid_t obj, const char *name, char **s);

#endif
