/* SHA-256 through OpenSSL EVP; see hash.h. */
#include "linfold/hash.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linfold/alloc.h"

enum { PIECE = 1 << 20 };

static void to_hex(const unsigned char *md, unsigned len, char hex[LF_SHA256_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned k = 0; k < len && 2 * k + 1 < LF_SHA256_HEX; k++) {
        hex[2 * k] = digits[md[k] >> 4];
        hex[2 * k + 1] = digits[md[k] & 15];
    }
    hex[2 * len < LF_SHA256_HEX ? 2 * len : LF_SHA256_HEX - 1] = '\0';
}

lf_err_t lf_hash_bytes(const void *bytes, size_t len, char hex[LF_SHA256_HEX])
{
    lf_err_t err = LF_OK;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    LF_CHECK(EVP_Digest(bytes, len, md, &md_len, EVP_sha256(), NULL) == 1, LF_ERR_INTERNAL,
             "SHA-256 failed (OpenSSL)");
    to_hex(md, md_len, hex);
cleanup:
    return err;
}

lf_err_t lf_hash_file(const char *path, char hex[LF_SHA256_HEX])
{
    lf_err_t err = LF_OK;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    unsigned char *buf = NULL;
    EVP_MD_CTX *ctx = NULL;
    FILE *f = fopen(path, "rb");
    LF_CHECK(f != NULL, LF_ERR_IO, "%s: cannot open to hash it (%s)", path, strerror(errno));
    LF_CALL(lf_malloc(PIECE, 1, (void **)&buf));
    ctx = EVP_MD_CTX_new();
    LF_CHECK(ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1, LF_ERR_NOMEM,
             "SHA-256 of %s: OpenSSL could not start", path);
    for (;;) {
        size_t got = fread(buf, 1, PIECE, f);
        LF_CHECK(EVP_DigestUpdate(ctx, buf, got) == 1, LF_ERR_INTERNAL,
                 "SHA-256 of %s failed (OpenSSL)", path);
        if (got < PIECE)
            break;
    }
    LF_CHECK(!ferror(f), LF_ERR_IO, "%s: read error while hashing it", path);
    LF_CHECK(EVP_DigestFinal_ex(ctx, md, &md_len) == 1, LF_ERR_INTERNAL,
             "SHA-256 of %s failed (OpenSSL)", path);
    to_hex(md, md_len, hex);
cleanup:
    EVP_MD_CTX_free(ctx);
    lf_free(buf);
    if (f)
        fclose(f);
    return err;
}
