/* Filtered chunks checked before HDF5 decodes them.
 *
 * HDF5 1.10.8 runs a chunk's filters and then copies a whole chunk out of whatever they produced,
 * without comparing the sizes: a deflate stream that inflates to fewer bytes than the chunk holds
 * makes it read past its buffer, and a Fletcher-32 chunk shorter than its 4-byte checksum makes
 * the checksum run over the whole address space. Ranks read data files in-process (they are too
 * large for a reader process), and the preflight only decodes the first and the last row, so
 * before HDF5 touches a filtered chunk the rank that will read it decodes it here first: the raw
 * bytes with its own descriptor (the chunk index entry was already bounded by the preflight), the
 * filters in reverse order as HDF5 applies them on reading (H5Zdeflate.c, H5Zshuffle.c,
 * H5Zfletcher32.c), sizes bounded throughout; the result must be exactly one chunk. HDF5 then
 * decodes it again and verifies the checksums.
 *
 * The cost is a second inflate of the chunks this rank reads, once per chunk row per open
 * dataset (a bitmap remembers the rows checked, so the passes of a search pay it once). */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/interrupt.h"

enum { FLETCHER_BYTES = 4, MAX_FILTERS = 32 };

typedef struct {
    H5Z_filter_t id;
    unsigned shuffle_size; /* bytes per element of a shuffle filter, 0 when invalid */
} filter_t;

struct lf__h5_chunk_check {
    hid_t dset; /* borrowed */
    const char *spec;
    int fd; /* borrowed: the dataset's own descriptor */
    int64_t file_size;
    int rank;
    hsize_t dims[2], chunk[2];
    int64_t chunk_bytes, chunk_rows_total, chunk_cols_total;
    int nfilters;
    filter_t filters[MAX_FILTERS];
    unsigned char *checked; /* one bit per chunk row, allocated at the first read */
    unsigned char *raw, *work[2];
    size_t raw_cap, work_cap[2];
};

static lf_err_t read_pipeline(lf__h5_chunk_check_t *cc, hid_t dcpl)
{
    lf_err_t err = LF_OK;
    cc->nfilters = H5Pget_nfilters(dcpl);
    LF_CALL_H5(cc->nfilters, "%s: filters", cc->spec);
    LF_CHECK(cc->nfilters <= MAX_FILTERS, LF_ERR_FORMAT, "%s: %d filters, at most %d", cc->spec,
             cc->nfilters, MAX_FILTERS);
    for (int k = 0; k < cc->nfilters; k++) {
        unsigned flags = 0, values[4] = {0}, config = 0;
        size_t n_values = 4;
        char name[64];
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)k, &flags, &n_values, values, sizeof name,
                                         name, &config);
        LF_CALL_H5(id, "%s: filter %d", cc->spec, k);
        cc->filters[k].id = id;
        /* H5Zshuffle.c refuses other parameter blocks with an error; so does the check. */
        cc->filters[k].shuffle_size = n_values == 1 ? values[0] : 0;
    }
cleanup:
    return err;
}

lf_err_t lf__h5_chunk_check_create(hid_t dset, const char *spec, int fd, int64_t file_size,
                                   lf__h5_chunk_check_t **out)
{
    lf_err_t err = LF_OK;
    hid_t dcpl = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    lf__h5_chunk_check_t *cc = NULL;
    *out = NULL;
    dcpl = H5Dget_create_plist(dset);
    LF_CALL_H5(dcpl, "%s: creation list", spec);
    if (H5Pget_layout(dcpl) != H5D_CHUNKED || H5Pget_nfilters(dcpl) <= 0)
        goto cleanup; /* nothing decodes: the preflight bounded every chunk's bytes */
    LF_CALL(lf_calloc(1, sizeof *cc, (void **)&cc));
    cc->dset = dset;
    cc->spec = spec;
    cc->fd = fd;
    cc->file_size = file_size;
    space = H5Dget_space(dset);
    type = H5Dget_type(dset);
    LF_CALL_H5(space, "%s: space", spec);
    LF_CALL_H5(type, "%s: type", spec);
    cc->rank = H5Sget_simple_extent_ndims(space);
    LF_CHECK(cc->rank == 1 || cc->rank == 2, LF_ERR_FORMAT, "%s: rank %d", spec, cc->rank);
    H5Sget_simple_extent_dims(space, cc->dims, NULL);
    LF_CALL_H5(H5Pget_chunk(dcpl, cc->rank, cc->chunk), "%s: chunk shape", spec);
    if (cc->rank == 1)
        cc->dims[1] = cc->chunk[1] = 1;
    /* Bounded by the dataset checks (the chunk shape against the file size). */
    cc->chunk_bytes = (int64_t)(H5Tget_size(type) * cc->chunk[0] * cc->chunk[1]);
    cc->chunk_rows_total = (int64_t)((cc->dims[0] + cc->chunk[0] - 1) / cc->chunk[0]);
    cc->chunk_cols_total = (int64_t)((cc->dims[1] + cc->chunk[1] - 1) / cc->chunk[1]);
    LF_CALL(read_pipeline(cc, dcpl));
    *out = cc;
    cc = NULL;
cleanup:
    lf__h5_chunk_check_free(&cc);
    lf__h5_close(&type);
    lf__h5_close(&space);
    lf__h5_close(&dcpl);
    return err;
}

void lf__h5_chunk_check_free(lf__h5_chunk_check_t **cc)
{
    if (!cc || !*cc)
        return;
    lf_free((*cc)->checked);
    lf_free((*cc)->raw);
    lf_free((*cc)->work[0]);
    lf_free((*cc)->work[1]);
    lf_free(*cc);
    *cc = NULL;
}

static lf_err_t reserve(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return LF_OK;
    lf_free(*buf);
    *buf = NULL;
    *cap = 0;
    lf_err_t err = lf_malloc(need, 1, (void **)buf);
    if (err == LF_OK)
        *cap = need;
    return err;
}

/* The two buffers the filters alternate between. */
static lf_err_t reserve_work(lf__h5_chunk_check_t *cc, size_t need)
{
    lf_err_t err = reserve(&cc->work[0], &cc->work_cap[0], need);
    return err == LF_OK ? reserve(&cc->work[1], &cc->work_cap[1], need) : err;
}

/* The reverse of H5Zshuffle.c's shuffle: byte j of element i was stored at j * n + i; the bytes
 * after the last whole element stay where they are. */
static void unshuffle(const unsigned char *src, unsigned char *dst, size_t len, size_t size)
{
    size_t n = len / size;
    for (size_t j = 0; j < size; j++)
        for (size_t i = 0; i < n; i++)
            dst[i * size + j] = src[j * n + i];
    memcpy(dst + n * size, src + n * size, len - n * size);
}

/* Inflates src into dst, which holds cap bytes; a stream that does not end within cap bytes is
 * refused (no valid chunk is longer), which also bounds a decompression bomb. */
static bool inflate_bounded(const unsigned char *src, size_t len, unsigned char *dst, size_t cap,
                            size_t *out_len, const char **why)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (len > UINT_MAX || cap > UINT_MAX) {
        *why = "is larger than zlib can decode in one call";
        return false;
    }
    z.next_in = (unsigned char *)src;
    z.avail_in = (uInt)len;
    z.next_out = dst;
    z.avail_out = (uInt)cap;
    if (inflateInit(&z) != Z_OK) {
        *why = "could not be decoded (zlib out of memory)";
        return false;
    }
    int status = inflate(&z, Z_FINISH);
    *out_len = z.total_out;
    inflateEnd(&z);
    if (status == Z_STREAM_END)
        return true;
    *why = status == Z_BUF_ERROR && z.avail_out == 0 ? "inflates to more bytes than a chunk holds"
           : status == Z_BUF_ERROR                   ? "ends before its deflate stream does"
                                                     : "is not a valid deflate stream";
    return false;
}

/* Runs chunk (r, c)'s filters in reverse over its raw bytes and checks the result is exactly one
 * chunk; mask has bit k set for each filter the chunk skipped. */
static lf_err_t decode_one(lf__h5_chunk_check_t *cc, int64_t r, int64_t c, unsigned mask,
                           haddr_t addr, size_t stored)
{
    lf_err_t err = LF_OK;
    const char *why = NULL;
    size_t limit = (size_t)cc->chunk_bytes + FLETCHER_BYTES * (size_t)cc->nfilters;
    LF_CALL(reserve(&cc->raw, &cc->raw_cap, stored > 0 ? stored : 1));
    LF_CALL(reserve_work(cc, stored > limit ? stored : limit));
    ssize_t got = pread(cc->fd, cc->raw, stored, (off_t)addr);
    LF_CHECK(got == (ssize_t)stored, LF_ERR_IO, "%s: cannot read the chunk at byte %llu (%s)",
             cc->spec, (unsigned long long)addr, got < 0 ? strerror(errno) : "short read");
    unsigned char *cur = cc->raw;
    size_t len = stored;
    int next = 0;
    for (int k = cc->nfilters - 1; k >= 0 && !why; k--) {
        if (mask & (1u << k))
            continue;
        unsigned char *out = cc->work[next];
        switch (cc->filters[k].id) {
        case H5Z_FILTER_FLETCHER32:
            if (len <= FLETCHER_BYTES)
                why = "is shorter than its Fletcher-32 checksum";
            else
                len -= FLETCHER_BYTES;
            continue;
        case H5Z_FILTER_SHUFFLE: {
            size_t size = cc->filters[k].shuffle_size;
            if (size == 0) {
                why = "has an invalid shuffle filter";
                continue;
            }
            if (size == 1 || len / size <= 1)
                continue; /* H5Zshuffle.c leaves such buffers as they are */
            unshuffle(cur, out, len, size);
            break;
        }
        case H5Z_FILTER_DEFLATE:
            if (!inflate_bounded(cur, len, out, limit, &len, &why))
                continue;
            break;
        default: why = "uses a filter linfold does not read"; continue;
        }
        cur = out;
        next = 1 - next;
    }
    char sizes[96];
    if (!why && len != (size_t)cc->chunk_bytes) {
        snprintf(sizes, sizeof sizes, "decodes to %zu bytes, not the %lld of a chunk", len,
                 (long long)cc->chunk_bytes);
        why = sizes;
    }
    if (why) {
        char where[160];
        int64_t r0 = r * (int64_t)cc->chunk[0], c0 = c * (int64_t)cc->chunk[1];
        int64_t r1 = r0 + (int64_t)cc->chunk[0], c1 = c0 + (int64_t)cc->chunk[1];
        r1 = (r1 < (int64_t)cc->dims[0] ? r1 : (int64_t)cc->dims[0]) - 1;
        c1 = (c1 < (int64_t)cc->dims[1] ? c1 : (int64_t)cc->dims[1]) - 1;
        if (cc->rank == 2)
            snprintf(where, sizeof where, "rows %lld to %lld, columns %lld to %lld", (long long)r0,
                     (long long)r1, (long long)c0, (long long)c1);
        else
            snprintf(where, sizeof where, "rows %lld to %lld", (long long)r0, (long long)r1);
        LF_FAIL(LF_ERR_FORMAT,
                "%s: the chunk of %s (%zu bytes at byte %llu) %s; the file is corrupt", cc->spec,
                where, stored, (unsigned long long)addr, why);
    }
cleanup:
    return err;
}

lf_err_t lf__h5_chunk_check_rows(lf__h5_chunk_check_t *cc, int64_t row0, int64_t count)
{
    lf_err_t err = LF_OK;
    if (count <= 0)
        return LF_OK;
    if (!cc->checked)
        LF_CALL(lf_calloc((size_t)(cc->chunk_rows_total + 7) / 8, 1, (void **)&cc->checked));
    int64_t first = row0 / (int64_t)cc->chunk[0], last = (row0 + count - 1) / (int64_t)cc->chunk[0];
    for (int64_t r = first; r <= last; r++) {
        if (cc->checked[r / 8] & (1u << (r % 8)))
            continue;
        for (int64_t c = 0; c < cc->chunk_cols_total; c++) {
            hsize_t at[2] = {(hsize_t)r * cc->chunk[0], (hsize_t)c * cc->chunk[1]};
            unsigned mask = 0;
            haddr_t addr = HADDR_UNDEF;
            hsize_t stored = 0;
            LF_CALL_H5(H5Dget_chunk_info_by_coord(cc->dset, at, &mask, &addr, &stored),
                       "%s: chunk index", cc->spec);
            if (addr == HADDR_UNDEF)
                continue; /* never written: HDF5 reads the fill value */
            LF_CHECK(lf__h5_chunk_in_file(addr, stored, cc->file_size), LF_ERR_FORMAT,
                     "%s: a chunk at byte %llu of %llu bytes is outside the file", cc->spec,
                     (unsigned long long)addr, (unsigned long long)stored);
            LF_CALL(decode_one(cc, r, c, mask, addr, (size_t)stored));
        }
        cc->checked[r / 8] |= (unsigned char)(1u << (r % 8));
        LF_CALL(lf_interrupt_check("checking compressed chunks"));
    }
cleanup:
    return err;
}
