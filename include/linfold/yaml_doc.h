/* YAML documents for pipeline files: a small tree of scalars, mappings and sequences, read with
 * libyaml, with the exact source position of every node, and written back with libyaml's emitter.
 *
 * Pipeline files are user input, often from a shared filesystem, and are read by unattended batch
 * jobs, so the reader accepts a deliberately small subset of YAML and refuses the rest with one
 * message "NAME:LINE:COLUMN: what" that points at the offending character:
 *   - At most LF_YAML_MAX_BYTES (1 MiB) of text, LF_YAML_MAX_DEPTH (32) nested collections and
 *     LF_YAML_MAX_NODES (100000) nodes. Size is checked before anything is read and depth and
 *     node count while libyaml's events stream in, so a 10 MB file or a 100000-deep `[[[...` is
 *     refused at once: libyaml's parser keeps its own stacks (it does not recurse), but it has no
 *     limit of its own and its tokenizer costs time quadratic in the flow depth.
 *   - Valid UTF-8 only (an initial UTF-8 byte order mark is skipped); no NUL bytes, no control
 *     characters, no NUL in a string ("\0"): a binary or mis-encoded file is named as such
 *     instead of failing somewhere later.
 *   - No tab in the leading white space of a line (outside quoted and block strings): libyaml's
 *     own messages for it are cryptic, and a tab that an editor shows as indentation is the most
 *     common mistake in hand-written YAML.
 *   - No duplicate keys (libyaml keeps both and a later key would silently win), no anchors,
 *     aliases or merge keys `<<` (a value defined in one place and used in another makes
 *     positions ambiguous, and aliases allow exponential expansion), no tags, only scalar keys,
 *     exactly one document, and not an empty file.
 *
 * Positions are 1-based. Columns count characters (Unicode code points, as libyaml's marks do),
 * not bytes: "é: 1" has its value at column 4. A tab counts as one column. Lines end at LF, CR LF
 * and CR, and also at U+0085, U+2028 and U+2029, which are line breaks in YAML 1.1. A node's
 * position is its first character: a quote, a block indicator `|` or `>`, `[`, `{`, the `-` of a
 * block sequence, the first key of a block mapping. An empty value (`a:`) is placed just after
 * its key's colon.
 *
 * Scalars keep their text as written, without resolution: `1`, `true`, `~` and `` (empty) are
 * plain text with quoted = false, and the configuration layer decides what they mean. A scalar
 * written quoted or as a block (|, >) has quoted = true and is always a string.
 *
 *     lf_yaml_doc_t *doc = NULL;
 *     LF_CALL(lf_yaml_parse("run.yaml", bytes, n, &doc));   // "run.yaml:3:5: duplicate key ..."
 *     const lf_yaml_node_t *t = lf_yaml_get(lf_yaml_root(doc), "threshold");
 *     if (t && t->kind == LF_YAML_SCALAR && !t->quoted)
 *         ... parse t->text, report t->line, t->column on error ...
 *     char *text = NULL;
 *     LF_CALL(lf_yaml_emit(lf_yaml_root(doc), &text));     // block-style YAML; free(text)
 *   cleanup:
 *     lf_yaml_destroy(&doc);
 */
#ifndef LINFOLD_YAML_DOC_H
#define LINFOLD_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include "linfold/error.h"

/* Limits of lf_yaml_parse(). Depth counts collections: a mapping at the root is at depth 1. */
#define LF_YAML_MAX_BYTES ((size_t)1 << 20)
#define LF_YAML_MAX_DEPTH 32
#define LF_YAML_MAX_NODES 100000

typedef enum { LF_YAML_SCALAR, LF_YAML_MAP, LF_YAML_SEQ } lf_yaml_kind_t;

typedef struct lf_yaml_node lf_yaml_node_t;
struct lf_yaml_node {
    lf_yaml_kind_t kind;
    int line, column;      /* 1-based position of the node's first character in the source */
    const char *text;      /* scalar: its value, NUL-terminated UTF-8 (never NULL for scalars) */
    bool quoted;           /* scalar written quoted ('..' or ".." or block |, >): always a string */
    int n;                 /* map: pairs; sequence: items */
    lf_yaml_node_t **keys; /* map: n scalar key nodes (with their own line/column) */
    lf_yaml_node_t **items; /* map: n values; sequence: n items */
};

/* A document: its name and every node of its tree (one owner; nodes die with the document). */
typedef struct lf_yaml_doc lf_yaml_doc_t;

/* Parses text (len bytes, need not be NUL-terminated) named `name` (used in messages) into *out.
 * Not collective.
 * On any problem: LF_ERR_USAGE with the message "NAME:LINE:COLUMN: what" for the first problem
 * in reading order (libyaml reports a syntax error when its tokenizer reaches it, which can be a
 * few tokens ahead of the last node read; a syntax error ends the parse). LF_ERR_NOMEM when
 * memory runs out. *out is NULL on failure. */
lf_err_t lf_yaml_parse(const char *name, const char *text, size_t len, lf_yaml_doc_t **out);
/* Makes an empty document (no root) named `name`, for trees built with the functions below.
 * Not collective. */
lf_err_t lf_yaml_doc_create(const char *name, lf_yaml_doc_t **out);
/* The root node of doc (NULL for an empty document from lf_yaml_doc_create()).
 * Not collective. */
const lf_yaml_node_t *lf_yaml_root(const lf_yaml_doc_t *doc);
/* The name given to lf_yaml_parse() or lf_yaml_doc_create().
 * Not collective. */
const char *lf_yaml_name(const lf_yaml_doc_t *doc);
/* Frees doc and all its nodes; accepts NULL and *doc == NULL, and sets *doc = NULL.
 * Not collective. */
void lf_yaml_destroy(lf_yaml_doc_t **doc);

/* The value of key in map (NULL when absent or map is NULL or not a map).
 * Not collective.
 * A linear search (pipeline mappings are small). */
const lf_yaml_node_t *lf_yaml_get(const lf_yaml_node_t *map, const char *key);
/* "scalar", "mapping" or "sequence", for messages.
 * Not collective. */
const char *lf_yaml_kind_name(lf_yaml_kind_t kind);

/* Building and changing trees (for --set overrides and --print-config). Nodes belong to doc and
 * live until lf_yaml_destroy(doc); a node may appear in only one place of a tree. line and column
 * are what the node will report (for example the position of the override on the command line,
 * or 0 for "not from a file"). */

/* Makes a scalar with a copy of text (NUL-terminated, valid UTF-8: LF_ERR_ARG otherwise).
 * Not collective. */
lf_err_t lf_yaml_new_scalar(lf_yaml_doc_t *doc, const char *text, bool quoted, int line, int column,
                            lf_yaml_node_t **out);
/* Makes an empty mapping.
 * Not collective. */
lf_err_t lf_yaml_new_map(lf_yaml_doc_t *doc, int line, int column, lf_yaml_node_t **out);
/* Makes an empty sequence.
 * Not collective. */
lf_err_t lf_yaml_new_seq(lf_yaml_doc_t *doc, int line, int column, lf_yaml_node_t **out);
/* Makes node the root of doc (replacing any root).
 * Not collective. */
lf_err_t lf_yaml_set_root(lf_yaml_doc_t *doc, lf_yaml_node_t *node);
/* Sets key in map: replaces the value when the key exists, else appends a new plain key node
 * (a copy of key, valid UTF-8, at the value's line and column).
 * Not collective.
 * LF_ERR_ARG when map is not a mapping or value is NULL. */
lf_err_t lf_yaml_map_set(lf_yaml_doc_t *doc, lf_yaml_node_t *map, const char *key,
                         lf_yaml_node_t *value);
/* Appends item to seq.
 * Not collective.
 * LF_ERR_ARG when seq is not a sequence or item is NULL. */
lf_err_t lf_yaml_seq_append(lf_yaml_doc_t *doc, lf_yaml_node_t *seq, lf_yaml_node_t *item);

/* Emits node as one YAML document into *text (NUL-terminated; caller frees with free()).
 * Not collective.
 * Written by libyaml's emitter in block style, keys in their order, characters unescaped, no
 * line folding. Quoted scalars stay quoted (single quotes, double quotes when they must, a
 * literal block `|` for multi-line text), so a quoted "0.5" or "true" reads back as a string;
 * plain scalars stay plain where YAML allows it. Parsing the output gives the same tree
 * (positions aside), except that a plain scalar that cannot be written plain (a built "a: b",
 * or text with a line break) comes back quoted. The same tree always gives the same bytes.
 * LF_ERR_ARG for a tree deeper than LF_YAML_MAX_DEPTH (or with a cycle), which could not be
 * read back. */
lf_err_t lf_yaml_emit(const lf_yaml_node_t *node, char **text);

#endif /* LINFOLD_YAML_DOC_H */
