// h5attr.c: scalar HDF5 attributes (see h5attr.h).
#include "io/h5attr.h"
#include "core/util.h"

#include <math.h>
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

const char *lmp_h5_why(int rc) {
    switch (rc) {
    case LMP_H5_OK: return "is fine";
    case LMP_H5_MISSING: return "is missing";
    case LMP_H5_NOT_SCALAR: return "is not a scalar (an array or empty value)";
    case LMP_H5_WRONG_CLASS: return "has the wrong type (a string for a number or the reverse)";
    case LMP_H5_NOT_INTEGER: return "is not an integer (fractional or out of range)";
    default: return "cannot be read (corrupt, or a type lorampi cannot convert)";
    }
}

// A stored float read as a 64-bit integer: only an integral value in the type's range.
static int read_integral(hid_t a, hid_t mtype, void *v) {
    double d;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &d) < 0) return LMP_H5_UNREADABLE;
    if (H5Tget_sign(mtype) == H5T_SGN_NONE) {
        if (d != floor(d) || d < 0 || d >= 18446744073709551616.0) return LMP_H5_NOT_INTEGER;
        *(uint64_t *)v = (uint64_t)d;
    } else {
        if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return LMP_H5_NOT_INTEGER;
        *(int64_t *)v = (int64_t)d;
    }
    return LMP_H5_OK;
}

// Reads the opened attribute a (dataspace checked) as mtype after checking its class.
static int read_checked(hid_t a, hid_t ftype, hid_t mtype, void *v) {
    H5T_class_t fc = H5Tget_class(ftype), mc = H5Tget_class(mtype);
    if (fc < 0 || mc < 0) return LMP_H5_UNREADABLE;
    int number = fc == H5T_INTEGER || fc == H5T_FLOAT;
    if (mc == H5T_STRING ? fc != H5T_STRING : !number) return LMP_H5_WRONG_CLASS;
    if (mc == H5T_INTEGER) {
        if (H5Tget_size(mtype) != 8) return LMP_H5_UNREADABLE;  // 64-bit integers only
        if (fc == H5T_FLOAT) return read_integral(a, mtype, v);
        // HDF5 would clamp an integer out of mtype's range: read it with its own sign first.
        int fsigned = H5Tget_sign(ftype) != H5T_SGN_NONE, msigned = H5Tget_sign(mtype) != H5T_SGN_NONE;
        if (fsigned != msigned) {
            int64_t x;
            if (H5Aread(a, fsigned ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, &x) < 0) return LMP_H5_UNREADABLE;
            if (x < 0) return LMP_H5_NOT_INTEGER;  // negative, or above INT64_MAX as unsigned
        }
    }
    return H5Aread(a, mtype, v) < 0 ? LMP_H5_UNREADABLE : LMP_H5_OK;
}

int lmp_h5_get(hid_t obj, const char *name, hid_t mtype, void *v) {
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) return LMP_H5_UNREADABLE;
    if (!exists) return LMP_H5_MISSING;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return LMP_H5_UNREADABLE;
    hid_t sp = H5Aget_space(a), ft = H5Aget_type(a);
    int rc = LMP_H5_UNREADABLE;
    if (sp >= 0 && ft >= 0) {
        H5S_class_t sc = H5Sget_simple_extent_type(sp);
        rc = sc != H5S_SCALAR ? LMP_H5_NOT_SCALAR : read_checked(a, ft, mtype, v);
    }
    // Read-only handles: a failed close loses nothing, the value read stands.
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

int lmp_h5_get_i64(hid_t obj, const char *name, int64_t *v) {
    return lmp_h5_get(obj, name, H5T_NATIVE_INT64, v);
}
int lmp_h5_get_u64(hid_t obj, const char *name, uint64_t *v) {
    return lmp_h5_get(obj, name, H5T_NATIVE_UINT64, v);
}
int lmp_h5_get_f64(hid_t obj, const char *name, double *v) {
    return lmp_h5_get(obj, name, H5T_NATIVE_DOUBLE, v);
}

int lmp_h5_get_str(hid_t obj, const char *name, char **s) {
    hid_t t = vlen_str_type();
    char *raw = NULL;
    *s = NULL;
    int rc = lmp_h5_get(obj, name, t, &raw);
    if (rc == LMP_H5_OK && !raw) rc = LMP_H5_UNREADABLE;
    if (rc == LMP_H5_OK) {
        *s = strdup(raw);
        LMP_CHECK(*s, "out of memory");
    }
    if (raw) H5free_memory(raw);
    LMP_CHECK_H5(H5Tclose(t));
    return rc;
}
