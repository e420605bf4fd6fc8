/* SHA-256 of files and bytes, through OpenSSL's EVP interface (libcrypto).
 *
 * Registry runs decide from these digests whether a model, its data or its pipeline changed;
 * run records carry them so that a result can be traced to the exact inputs.
 *
 *     char hex[LF_SHA256_HEX];
 *     lf_hash_file("model.h5", hex);   // "9f86d0..." (64 hex digits)
 */
#ifndef LINFOLD_HASH_H
#define LINFOLD_HASH_H

#include <stddef.h>

#include "linfold/error.h"

#define LF_SHA256_HEX 65 /* 64 hex digits and the NUL */

/* The SHA-256 of len bytes as lower-case hex.
 * Not collective. */
lf_err_t lf_hash_bytes(const void *bytes, size_t len, char hex[LF_SHA256_HEX]);

/* The SHA-256 of a file's contents, read in 1 MiB pieces.
 * Not collective.
 * LF_ERR_IO naming the file when it cannot be read. */
lf_err_t lf_hash_file(const char *path, char hex[LF_SHA256_HEX]);

#endif /* LINFOLD_HASH_H */
