// h5attr.c: scalar HDF5 attributes (see h5attr.h).
#include "io/h5attr.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static void put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    LMP_CHECK_H5(sp);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    LMP_CHECK_H5(a);
    LMP_CHECK_H5(H5Awrite(a, mtype, v));
    LMP_CHECK_H5(H5Aclose(a));
    LMP_CHECK_H5(H5Sclose(sp));
}

void lmp_h5_put_i64(hid_t obj, const char *name, int64_t v) {
    put(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
void lmp_h5_put_u64(hid_t obj, const char *name, uint64_t v) {
    put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
void lmp_h5_put_f64(hid_t obj, const char *name, double v) {
    put(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    LMP_CHECK_H5(t);
    LMP_CHECK_H5(H5Tset_size(t, H5T_VARIABLE));
    LMP_CHECK_H5(H5Tset_cset(t, H5T_CSET_UTF8));
    return t;
}

void lmp_h5_put_str(hid_t obj, const char *name, const char *s) {
    hid_t t = vlen_str_type();
    put(obj, name, t, t, &s);
    LMP_CHECK_H5(H5Tclose(t));
}

int lmp_h5_get(hid_t obj, const char *name, hid_t mtype, void *v) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, mtype, v);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

int lmp_h5_get_i64(hid_t obj, const char *name, int64_t *v) {
    return lmp_h5_get(obj, name, H5T_NATIVE_INT64, v);
}

char *lmp_h5_get_str(hid_t obj, const char *name) {
    hid_t t = vlen_str_type();
    char *s = NULL, *copy = NULL;
    if (lmp_h5_get(obj, name, t, &s) == 0 && s) {
        copy = strdup(s);
        H5free_memory(s);
    }
    H5Tclose(t);
    return copy;
}
