/* String attributes: read one, checked, and turn its status into a message.
 *
 * HDF5 1.10.8 converts a variable-length string (what h5py writes for every str attribute) by
 * following a reference into the file's global heap, trusting the heap's stored sizes and
 * indices: corrupted bytes there make H5Aread read out of bounds, allocate without bound or
 * loop. These functions therefore run only in the reader processes of sandbox_impl.h, where a
 * crash is an error message. Fixed-length strings (what linfold writes) are read the same way,
 * after the same checks: a scalar dataspace (an array of 5,000 strings overflowed a stack buffer
 * before), a string class, and fewer than LF__STR_MAX bytes. */
#include <stdio.h>
#include <string.h>

#include "h5io_impl.h"

static void sanitise(char *s)
{
    /* Values end up in error messages and logs: no terminal control sequences from a file. */
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static lf__str_status_t read_attr(hid_t attr, char *value)
{
    lf__str_status_t status = LF__STR_UNREADABLE;
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr), mem = H5I_INVALID_HID;
    char *vstr = NULL;
    if (type < 0 || space < 0)
        goto done;
    status = LF__STR_NOT_STRING;
    if (H5Tget_class(type) != H5T_STRING)
        goto done;
    status = LF__STR_NOT_SCALAR;
    if (H5Sget_simple_extent_type(space) != H5S_SCALAR)
        goto done;
    status = LF__STR_UNREADABLE;
    mem = H5Tcopy(H5T_C_S1);
    if (mem < 0)
        goto done;
    htri_t variable = H5Tis_variable_str(type);
    if (variable < 0)
        goto done;
    if (variable) {
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 ||
            H5Aread(attr, mem, &vstr) < 0)
            goto done;
        status = LF__STR_TOO_LONG;
        if (vstr && strlen(vstr) >= LF__STR_MAX)
            goto done;
        snprintf(value, LF__STR_MAX, "%s", vstr ? vstr : "");
    } else {
        size_t size = H5Tget_size(type);
        status = LF__STR_TOO_LONG;
        if (size == 0 || size >= LF__STR_MAX)
            goto done;
        status = LF__STR_UNREADABLE;
        memset(value, 0, LF__STR_MAX);
        if (H5Tset_size(mem, size + 1) < 0 || H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
            H5Aread(attr, mem, value) < 0)
            goto done;
        value[LF__STR_MAX - 1] = '\0';
    }
    sanitise(value);
    status = LF__STR_OK;
done:
    if (vstr)
        H5free_memory(vstr);
    lf__h5_close(&mem);
    lf__h5_close(&space);
    lf__h5_close(&type);
    H5Eclear2(H5E_DEFAULT);
    return status;
}

void lf__h5_read_string(hid_t file, lf__str_attr_t *item)
{
    lf__h5_file_t f = {.id = file, .path = ""};
    lf_err_t ignored = LF_OK;
    hid_t attr = H5I_INVALID_HID;
    item->value[0] = '\0';
    item->status = LF__STR_NO_OBJECT;
    int found = lf__h5_exists(&f, item->object, &ignored);
    lf_error_clear(); /* the parent reports; the child's record goes nowhere */
    if (found <= 0)
        return;
    item->status = LF__STR_MISSING;
    htri_t exists = H5Aexists_by_name(file, item->object, item->name, lf__h5_lapl());
    if (exists <= 0) {
        item->status = exists < 0 ? LF__STR_UNREADABLE : LF__STR_MISSING;
        H5Eclear2(H5E_DEFAULT);
        return;
    }
    attr = H5Aopen_by_name(file, item->object, item->name, H5P_DEFAULT, lf__h5_lapl());
    item->status = attr < 0 ? LF__STR_UNREADABLE : read_attr(attr, item->value);
    lf__h5_close(&attr);
}

lf_err_t lf__h5_string_value(const lf__str_attr_t *item, const char *file, const char **value)
{
    lf_err_t err = LF_OK;
    const char *name = item->name;
    /* "file: /layers/2: attribute ..." for a group, "file: attribute ..." for the root. */
    char obj[64] = "";
    if (strcmp(item->object, "/") != 0)
        snprintf(obj, sizeof obj, " %s:", item->object);
    *value = NULL;
    switch (item->status) {
    case LF__STR_OK: *value = item->value; break;
    case LF__STR_NO_OBJECT: LF_FAIL(LF_ERR_FORMAT, "%s: missing group %s", file, item->object);
    case LF__STR_MISSING: LF_FAIL(LF_ERR_FORMAT, "%s:%s missing attribute '%s'", file, obj, name);
    case LF__STR_NOT_STRING:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' is not a string", file, obj, name);
    case LF__STR_NOT_SCALAR:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' is not a single string (an array?)", file, obj,
                name);
    case LF__STR_TOO_LONG:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' is %d bytes or longer", file, obj, name,
                LF__STR_MAX);
    case LF__STR_UNREADABLE:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' cannot be read (corrupt file?)", file, obj,
                name);
    }
cleanup:
    return err;
}
