/* YAML documents on libyaml's event parser and emitter; see yaml_doc.h.
 *
 * Parsing is two passes over the bytes. The first, ours, checks the encoding (strict UTF-8, no
 * NUL, only the characters libyaml accepts) and records the first tab in the leading white space
 * of every line, with positions counted the way libyaml counts them (code points; the initial
 * BOM skipped; LF, CR LF, CR, NEL, LS and PS break lines). The second streams libyaml's events
 * into the tree: each event is checked (anchors, tags, keys, depth, count) before it is used,
 * so a limit stops libyaml after a bounded amount of work. A recorded tab is reported as soon as
 * an event starts after it, unless it lies inside a quoted or block string (where a tab is text);
 * when libyaml fails, a tab before its error position is the better explanation and wins.
 *
 * Duplicate keys are found with one hash table of (mapping, key) pairs for the whole document,
 * so that a mapping with many keys costs linear time and the duplicate is reported when it is
 * read, in order with the other problems.
 *
 * Nodes live in chunks of the document (an arena); key and item arrays are separate blocks that
 * grow by doubling, and strings are copied into character chunks. */
#include "linfold/yaml_doc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "linfold/alloc.h"

enum { NODE_CHUNK = 256, STR_CHUNK = 16384, KEY_SHOWN = 60 };

typedef struct {
    lf_yaml_node_t pub; /* first: a node_t * is an lf_yaml_node_t * */
    int cap;            /* allocated length of pub.keys (maps) and pub.items */
} node_t;

typedef struct node_chunk {
    struct node_chunk *next;
    int used;
    node_t nodes[NODE_CHUNK];
} node_chunk_t;

typedef struct str_chunk {
    struct str_chunk *next;
    size_t used, cap;
    char data[];
} str_chunk_t;

struct lf_yaml_doc {
    char *name;
    lf_yaml_node_t *root;
    node_chunk_t *nodes;
    str_chunk_t *strs;
};

/* ---- Arena ---- */

static lf_err_t doc_new(const char *name, lf_yaml_doc_t **out)
{
    lf_err_t err = LF_OK;
    lf_yaml_doc_t *doc = NULL;
    *out = NULL;
    size_t n = strlen(name);
    LF_CALL(lf_calloc(1, sizeof *doc, (void **)&doc));
    LF_CALL(lf_malloc(n + 1, 1, (void **)&doc->name));
    memcpy(doc->name, name, n + 1);
    *out = doc;
    doc = NULL;
cleanup:
    lf_yaml_destroy(&doc);
    return err;
}

static lf_err_t str_copy(lf_yaml_doc_t *doc, const char *s, size_t n, const char **out)
{
    lf_err_t err = LF_OK;
    str_chunk_t *c = doc->strs;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > STR_CHUNK ? n + 1 : STR_CHUNK;
        LF_CALL(lf_malloc(1, sizeof *c + cap, (void **)&c));
        c->used = 0;
        c->cap = cap;
        /* A string too big for a chunk gets its own, behind the current one, so that the
         * current chunk's free space is not wasted. */
        if (doc->strs && cap > STR_CHUNK) {
            c->next = doc->strs->next;
            doc->strs->next = c;
        } else {
            c->next = doc->strs;
            doc->strs = c;
        }
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    *out = p;
cleanup:
    return err;
}

static lf_err_t node_new(lf_yaml_doc_t *doc, lf_yaml_kind_t kind, int line, int column,
                         node_t **out)
{
    lf_err_t err = LF_OK;
    if (!doc->nodes || doc->nodes->used == NODE_CHUNK) {
        node_chunk_t *c = NULL;
        LF_CALL(lf_malloc(1, sizeof *c, (void **)&c));
        c->used = 0;
        c->next = doc->nodes;
        doc->nodes = c;
    }
    node_t *nd = &doc->nodes->nodes[doc->nodes->used++];
    memset(nd, 0, sizeof *nd);
    nd->pub.kind = kind;
    nd->pub.line = line;
    nd->pub.column = column;
    *out = nd;
cleanup:
    return err;
}

/* Makes room for one more entry in a mapping's keys and items or a sequence's items. */
static lf_err_t node_reserve(node_t *nd)
{
    lf_err_t err = LF_OK;
    if (nd->pub.n < nd->cap)
        return LF_OK;
    LF_CHECK(nd->cap < INT32_MAX / 2, LF_ERR_OVERFLOW, "too many entries in one YAML collection");
    int cap = nd->cap ? 2 * nd->cap : 4;
    /* Keys first: when items fails, keys is only larger than cap says, which is harmless. */
    if (nd->pub.kind == LF_YAML_MAP)
        LF_CALL(lf_realloc((size_t)cap, sizeof *nd->pub.keys, (void **)&nd->pub.keys));
    LF_CALL(lf_realloc((size_t)cap, sizeof *nd->pub.items, (void **)&nd->pub.items));
    nd->cap = cap;
cleanup:
    return err;
}

void lf_yaml_destroy(lf_yaml_doc_t **doc)
{
    if (!doc || !*doc)
        return;
    lf_yaml_doc_t *d = *doc;
    for (node_chunk_t *c = d->nodes, *next = NULL; c; c = next) {
        next = c->next;
        for (int i = 0; i < c->used; i++) {
            lf_free(c->nodes[i].pub.keys);
            lf_free(c->nodes[i].pub.items);
        }
        lf_free(c);
    }
    for (str_chunk_t *c = d->strs, *next = NULL; c; c = next) {
        next = c->next;
        lf_free(c);
    }
    lf_free(d->name);
    lf_free(d);
    *doc = NULL;
}

const lf_yaml_node_t *lf_yaml_root(const lf_yaml_doc_t *doc) { return doc ? doc->root : NULL; }

const char *lf_yaml_name(const lf_yaml_doc_t *doc) { return doc ? doc->name : NULL; }

const char *lf_yaml_kind_name(lf_yaml_kind_t kind)
{
    switch (kind) {
    case LF_YAML_SCALAR: return "scalar";
    case LF_YAML_MAP: return "mapping";
    case LF_YAML_SEQ: return "sequence";
    }
    return "unknown";
}

const lf_yaml_node_t *lf_yaml_get(const lf_yaml_node_t *map, const char *key)
{
    if (!map || map->kind != LF_YAML_MAP || !key)
        return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0)
            return map->items[i];
    return NULL;
}

/* ---- Characters and positions ---- */

typedef struct {
    int line, column;
} pos_t;

static bool pos_before(pos_t a, pos_t b)
{
    return a.line < b.line || (a.line == b.line && a.column < b.column);
}

/* Decodes the well-formed UTF-8 sequence at s (n bytes available, n >= 1) into *cp and returns
 * its length, or 0 when it is ill-formed: a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate or a value above U+10FFFF (RFC 3629, Unicode table 3-7). */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    int len = 0;
    uint32_t v = 0, lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if ((size_t)len > n)
        return 0;
    for (int k = 1; k < len; k++) {
        unsigned b = s[k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
            return 0;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return len;
}

/* The characters libyaml's reader accepts (YAML 1.1 printable characters). */
static bool printable(uint32_t c)
{
    return c == 0x09 || c == 0x0A || c == 0x0D || (c >= 0x20 && c <= 0x7E) || c == 0x85 ||
           (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD) ||
           (c >= 0x10000 && c <= 0x10FFFF);
}

static bool utf8_valid(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t cp = 0;
    for (size_t i = 0; i < n;) {
        int w = utf8_decode(s + i, n - i, &cp);
        if (w == 0)
            return false;
        i += (size_t)w;
    }
    return true;
}

/* A walk over the text that keeps libyaml's line and column. */
typedef struct {
    const unsigned char *s;
    size_t len, i;
    pos_t pos;
} cursor_t;

static void cursor_init(cursor_t *c, const char *text, size_t len)
{
    c->s = (const unsigned char *)text;
    c->len = len;
    /* libyaml skips a UTF-8 BOM at the start without counting it. */
    c->i = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    c->pos = (pos_t){1, 1};
}

/* Moves past the character cp of width w at c->i. */
static void cursor_step(cursor_t *c, uint32_t cp, int w)
{
    bool crlf = cp == '\r' && c->i + 1 < c->len && c->s[c->i + 1] == '\n';
    if (cp == '\n' || (cp == '\r' && !crlf) || cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
        c->pos.line++;
        c->pos.column = 1;
    } else {
        c->pos.column++;
    }
    c->i += (size_t)w;
}

/* The position of byte offset `offset` (for libyaml's reader errors, which give offsets). */
static pos_t pos_of_offset(const char *text, size_t len, size_t offset)
{
    cursor_t c;
    cursor_init(&c, text, len);
    uint32_t cp = 0;
    while (c.i < len && c.i < offset) {
        int w = utf8_decode(c.s + c.i, c.len - c.i, &cp);
        if (w == 0)
            break;
        cursor_step(&c, cp, w);
    }
    return c.pos;
}

/* ---- Parsing ---- */

/* One (mapping, key) pair of the duplicate-key table. */
typedef struct {
    const node_t *map;
    const lf_yaml_node_t *key;
} dup_entry_t;

typedef struct {
    const char *name;
    const char *text;
    size_t len;
    lf_yaml_doc_t *doc;
    node_t *stack[LF_YAML_MAX_DEPTH];       /* open collections */
    lf_yaml_node_t *key[LF_YAML_MAX_DEPTH]; /* a mapping's key waiting for its value, or NULL */
    int depth;
    int64_t n_nodes;
    int n_docs;
    pos_t *tabs; /* first tab in the leading white space of each line that has one */
    size_t n_tabs, next_tab;
    dup_entry_t *dups;
    size_t n_dups, cap_dups; /* cap_dups: a power of two */
} parse_t;

/* Records the first problem as "NAME:LINE:COLUMN: what" (LF_ERR_USAGE). */
#define PARSE_FAIL(p, at, ...)                                                                     \
    do {                                                                                           \
        char what_[512];                                                                           \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                                \
        LF_FAIL(LF_ERR_USAGE, "%s:%d:%d: %s", (p)->name, (at).line, (at).column, what_);           \
    } while (0)

/* Checks the bytes and records the tabs that indent (see the top of this file). */
static lf_err_t prescan(parse_t *p)
{
    lf_err_t err = LF_OK;
    cursor_t c;
    cursor_init(&c, p->text, p->len);
    size_t cap = 0;
    bool leading = true; /* in the leading white space of a line */
    while (c.i < c.len) {
        uint32_t cp = 0;
        int w = utf8_decode(c.s + c.i, c.len - c.i, &cp);
        if (w == 1 && cp == 0)
            PARSE_FAIL(p, c.pos, "NUL byte (pipeline files are text)");
        if (w == 0)
            PARSE_FAIL(p, c.pos, "invalid UTF-8 byte 0x%02x (pipeline files are UTF-8 text)",
                       c.s[c.i]);
        if (!printable(cp))
            PARSE_FAIL(p, c.pos, "control character U+%04X (pipeline files are text)",
                       (unsigned)cp);
        if (leading && cp == '\t') {
            if (p->n_tabs == cap) {
                cap = cap ? 2 * cap : 16;
                LF_CALL(lf_realloc(cap, sizeof *p->tabs, (void **)&p->tabs));
            }
            p->tabs[p->n_tabs++] = c.pos;
            leading = false;
        } else if (cp != ' ') {
            leading = false;
        }
        int line = c.pos.line;
        cursor_step(&c, cp, w);
        if (c.pos.line != line)
            leading = true;
    }
cleanup:
    return err;
}

static pos_t mark_pos(yaml_mark_t m) { return (pos_t){(int)m.line + 1, (int)m.column + 1}; }

/* Fails on a recorded indenting tab before `at`. */
static lf_err_t check_tabs(parse_t *p, pos_t at)
{
    lf_err_t err = LF_OK;
    if (p->next_tab < p->n_tabs && pos_before(p->tabs[p->next_tab], at))
        PARSE_FAIL(p, p->tabs[p->next_tab],
                   "tab character in indentation (YAML indents with spaces)");
cleanup:
    return err;
}

/* Forgets the tabs before `end`: they are text inside a string that ends there. */
static void skip_tabs(parse_t *p, pos_t end)
{
    while (p->next_tab < p->n_tabs && pos_before(p->tabs[p->next_tab], end))
        p->next_tab++;
}

/* A key for a message: at most KEY_SHOWN bytes, cut at a character boundary. */
static void key_shown(const char *key, char *buf, size_t cap)
{
    size_t n = strlen(key);
    if (n <= KEY_SHOWN) {
        snprintf(buf, cap, "%s", key);
        return;
    }
    n = KEY_SHOWN;
    while (n > 0 && ((unsigned char)key[n] & 0xC0) == 0x80)
        n--;
    snprintf(buf, cap, "%.*s...", (int)n, key);
}

static uint64_t dup_hash(const node_t *map, const char *key)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)map;
    for (const unsigned char *s = (const unsigned char *)key; *s; s++)
        h = (h ^ *s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

/* Adds key to map's entry in the duplicate table; fails when map already has that key. */
static lf_err_t dup_insert(parse_t *p, const node_t *map, const lf_yaml_node_t *key)
{
    lf_err_t err = LF_OK;
    if (2 * (p->n_dups + 1) > p->cap_dups) {
        size_t cap = p->cap_dups ? 2 * p->cap_dups : 64;
        dup_entry_t *t = NULL;
        LF_CALL(lf_calloc(cap, sizeof *t, (void **)&t));
        for (size_t i = 0; i < p->cap_dups; i++) {
            if (!p->dups[i].map)
                continue;
            size_t j = dup_hash(p->dups[i].map, p->dups[i].key->text) & (cap - 1);
            while (t[j].map)
                j = (j + 1) & (cap - 1);
            t[j] = p->dups[i];
        }
        lf_free(p->dups);
        p->dups = t;
        p->cap_dups = cap;
    }
    size_t j = dup_hash(map, key->text) & (p->cap_dups - 1);
    for (; p->dups[j].map; j = (j + 1) & (p->cap_dups - 1)) {
        const lf_yaml_node_t *first = p->dups[j].key;
        if (p->dups[j].map == map && strcmp(first->text, key->text) == 0) {
            char shown[KEY_SHOWN + 8];
            key_shown(key->text, shown, sizeof shown);
            PARSE_FAIL(p, ((pos_t){key->line, key->column}), "duplicate key '%s' (first at %d:%d)",
                       shown, first->line, first->column);
        }
    }
    p->dups[j] = (dup_entry_t){map, key};
    p->n_dups++;
cleanup:
    return err;
}

/* Checks what every node event may not carry: anchors and tags. */
static lf_err_t check_properties(parse_t *p, pos_t at, const yaml_char_t *anchor,
                                 const yaml_char_t *tag)
{
    lf_err_t err = LF_OK;
    if (anchor)
        PARSE_FAIL(p, at, "anchors and aliases are not supported in pipeline files (anchor &%s)",
                   (const char *)anchor);
    if (tag) {
        const char *t = (const char *)tag, *core = "tag:yaml.org,2002:";
        bool short_form = strncmp(t, core, strlen(core)) == 0;
        PARSE_FAIL(p, at, "tags are not supported in pipeline files (found %s%s)",
                   short_form ? "!!" : "", short_form ? t + strlen(core) : t);
    }
cleanup:
    return err;
}

/* Counts a node and checks that a collection may go where the parser is. */
static lf_err_t check_node(parse_t *p, pos_t at, bool collection)
{
    lf_err_t err = LF_OK;
    node_t *top = p->depth ? p->stack[p->depth - 1] : NULL;
    if (collection && top && top->pub.kind == LF_YAML_MAP && !p->key[p->depth - 1])
        PARSE_FAIL(p, at, "mapping keys must be scalars, not collections");
    if (collection && p->depth == LF_YAML_MAX_DEPTH)
        PARSE_FAIL(p, at, "collections nested more than %d deep (the limit for pipeline files)",
                   LF_YAML_MAX_DEPTH);
    if (++p->n_nodes > LF_YAML_MAX_NODES)
        PARSE_FAIL(p, at, "more than %d nodes (the limit for pipeline files)", LF_YAML_MAX_NODES);
cleanup:
    return err;
}

/* Puts a new node where the parser is: the root, a sequence item, a key or a value. */
static lf_err_t attach(parse_t *p, node_t *nd)
{
    lf_err_t err = LF_OK;
    if (p->depth == 0) {
        p->doc->root = &nd->pub;
        return LF_OK;
    }
    node_t *top = p->stack[p->depth - 1];
    if (top->pub.kind == LF_YAML_MAP && !p->key[p->depth - 1]) {
        pos_t at = {nd->pub.line, nd->pub.column};
        if (!nd->pub.quoted && strcmp(nd->pub.text, "<<") == 0)
            PARSE_FAIL(p, at,
                       "anchors and aliases are not supported in pipeline files (merge key <<)");
        LF_CALL(dup_insert(p, top, &nd->pub));
        p->key[p->depth - 1] = &nd->pub;
        return LF_OK;
    }
    LF_CALL(node_reserve(top));
    if (top->pub.kind == LF_YAML_MAP) {
        top->pub.keys[top->pub.n] = p->key[p->depth - 1];
        p->key[p->depth - 1] = NULL;
    }
    top->pub.items[top->pub.n++] = &nd->pub;
cleanup:
    return err;
}

static lf_err_t on_scalar(parse_t *p, const yaml_event_t *ev)
{
    lf_err_t err = LF_OK;
    pos_t at = mark_pos(ev->start_mark);
    LF_CALL(check_properties(p, at, ev->data.scalar.anchor, ev->data.scalar.tag));
    yaml_scalar_style_t style = ev->data.scalar.style;
    const char *value = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (memchr(value, '\0', n))
        PARSE_FAIL(p, at, "NUL character (\\0) in a string (pipeline strings are text)");
    LF_CALL(check_node(p, at, false));
    node_t *nd = NULL;
    LF_CALL(node_new(p->doc, LF_YAML_SCALAR, at.line, at.column, &nd));
    LF_CALL(str_copy(p->doc, value, n, &nd->pub.text));
    nd->pub.quoted = style != YAML_PLAIN_SCALAR_STYLE;
    LF_CALL(attach(p, nd));
cleanup:
    return err;
}

static lf_err_t on_collection_start(parse_t *p, const yaml_event_t *ev)
{
    lf_err_t err = LF_OK;
    pos_t at = mark_pos(ev->start_mark);
    bool map = ev->type == YAML_MAPPING_START_EVENT;
    if (map)
        LF_CALL(check_properties(p, at, ev->data.mapping_start.anchor, ev->data.mapping_start.tag));
    else
        LF_CALL(
            check_properties(p, at, ev->data.sequence_start.anchor, ev->data.sequence_start.tag));
    LF_CALL(check_node(p, at, true));
    node_t *nd = NULL;
    LF_CALL(node_new(p->doc, map ? LF_YAML_MAP : LF_YAML_SEQ, at.line, at.column, &nd));
    LF_CALL(attach(p, nd));
    p->stack[p->depth] = nd;
    p->key[p->depth] = NULL;
    p->depth++;
cleanup:
    return err;
}

/* Handles one event; sets *done at the end of the stream. */
static lf_err_t on_event(parse_t *p, const yaml_event_t *ev, bool *done)
{
    lf_err_t err = LF_OK;
    pos_t at = mark_pos(ev->start_mark);
    LF_CALL(check_tabs(p, at));
    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT: break;
    case YAML_DOCUMENT_START_EVENT:
        if (p->n_docs++ > 0)
            PARSE_FAIL(p, at,
                       "more than one YAML document (a pipeline file holds one; the second "
                       "starts here)");
        break;
    case YAML_ALIAS_EVENT:
        PARSE_FAIL(p, at, "anchors and aliases are not supported in pipeline files (alias *%s)",
                   (const char *)ev->data.alias.anchor);
        break; /* not reached: PARSE_FAIL jumps to cleanup */
    case YAML_SCALAR_EVENT:
        LF_CALL(on_scalar(p, ev));
        if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            skip_tabs(p, mark_pos(ev->end_mark));
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: LF_CALL(on_collection_start(p, ev)); break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        LF_ASSERT(p->depth > 0);
        p->depth--;
        break;
    case YAML_STREAM_END_EVENT: *done = true; break;
    case YAML_NO_EVENT: LF_FAIL(LF_ERR_INTERNAL, "libyaml returned no event");
    }
cleanup:
    return err;
}

/* Turns libyaml's failure into the message, or into a tab's when one comes first. */
static lf_err_t on_libyaml_error(parse_t *p, const yaml_parser_t *y)
{
    lf_err_t err = LF_OK;
    if (y->error == YAML_MEMORY_ERROR)
        LF_FAIL(LF_ERR_NOMEM, "%s: libyaml ran out of memory", p->name);
    if (y->error == YAML_READER_ERROR) {
        /* The byte checks above leave nothing for the reader to refuse; kept for safety. */
        pos_t at = pos_of_offset(p->text, p->len, y->problem_offset);
        LF_CALL(check_tabs(p, at));
        PARSE_FAIL(p, at, "%s", y->problem ? y->problem : "unreadable input");
    }
    pos_t at = mark_pos(y->problem_mark), ctx = mark_pos(y->context_mark);
    /* Inside an unterminated quoted string, a tab at the start of a line is text. */
    bool in_quote = y->context && strcmp(y->context, "while scanning a quoted scalar") == 0;
    pos_t tabs_before = in_quote && pos_before(ctx, at) ? ctx : at;
    tabs_before.column++; /* a tab at the problem's position is the problem */
    LF_CALL(check_tabs(p, tabs_before));
    const char *problem = y->problem ? y->problem : "YAML syntax error";
    if (!y->context)
        PARSE_FAIL(p, at, "%s", problem);
    if (ctx.line == at.line && ctx.column == at.column)
        PARSE_FAIL(p, at, "%s (%s)", problem, y->context);
    PARSE_FAIL(p, at, "%s (%s at %d:%d)", problem, y->context, ctx.line, ctx.column);
cleanup:
    return err;
}

lf_err_t lf_yaml_parse(const char *name, const char *text, size_t len, lf_yaml_doc_t **out)
{
    lf_err_t err = LF_OK;
    parse_t p = {.name = name ? name : "(pipeline)", .text = text, .len = len};
    yaml_parser_t y;
    bool y_init = false;
    *out = NULL;
    const pos_t start = {1, 1};
    if (len > LF_YAML_MAX_BYTES)
        PARSE_FAIL(&p, start, "pipeline files are limited to 1 MiB; %s has %zu bytes", p.name, len);
    LF_CALL(doc_new(p.name, &p.doc));
    if (len > 0)
        LF_CALL(prescan(&p));
    LF_CHECK(yaml_parser_initialize(&y), LF_ERR_NOMEM, "cannot initialise libyaml's parser");
    y_init = true;
    yaml_parser_set_input_string(&y, (const unsigned char *)(len ? text : ""), len);
    for (bool done = false; !done;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&y, &ev)) {
            LF_CALL(on_libyaml_error(&p, &y));
            LF_FAIL(LF_ERR_INTERNAL, "%s: libyaml failed without a reason", p.name);
        }
        err = on_event(&p, &ev, &done);
        yaml_event_delete(&ev);
        if (err != LF_OK) {
            lf_error_trace(__FILE__, __LINE__, __func__);
            goto cleanup;
        }
    }
    const lf_yaml_node_t *root = p.doc->root;
    if (p.n_docs == 0 || (root->kind == LF_YAML_SCALAR && !root->quoted && !root->text[0]))
        PARSE_FAIL(&p, start, "%s is empty", p.name);
    *out = p.doc;
    p.doc = NULL;
cleanup:
    if (y_init)
        yaml_parser_delete(&y);
    lf_free(p.tabs);
    lf_free(p.dups);
    lf_yaml_destroy(&p.doc);
    return err;
}

/* ---- Building ---- */

lf_err_t lf_yaml_doc_create(const char *name, lf_yaml_doc_t **out)
{
    lf_err_t err = LF_OK;
    LF_CHECK(name != NULL, LF_ERR_ARG, "a YAML document needs a name");
    LF_CALL(doc_new(name, out));
cleanup:
    return err;
}

lf_err_t lf_yaml_new_scalar(lf_yaml_doc_t *doc, const char *text, bool quoted, int line, int column,
                            lf_yaml_node_t **out)
{
    lf_err_t err = LF_OK;
    LF_CHECK(doc && text, LF_ERR_ARG, "a YAML scalar needs a document and a text");
    size_t n = strlen(text);
    LF_CHECK(utf8_valid(text, n), LF_ERR_ARG, "YAML scalar text is not valid UTF-8");
    node_t *nd = NULL;
    LF_CALL(node_new(doc, LF_YAML_SCALAR, line, column, &nd));
    LF_CALL(str_copy(doc, text, n, &nd->pub.text));
    nd->pub.quoted = quoted;
    *out = &nd->pub;
cleanup:
    return err;
}

lf_err_t lf_yaml_new_map(lf_yaml_doc_t *doc, int line, int column, lf_yaml_node_t **out)
{
    lf_err_t err = LF_OK;
    LF_CHECK(doc, LF_ERR_ARG, "a YAML mapping needs a document");
    node_t *nd = NULL;
    LF_CALL(node_new(doc, LF_YAML_MAP, line, column, &nd));
    *out = &nd->pub;
cleanup:
    return err;
}

lf_err_t lf_yaml_new_seq(lf_yaml_doc_t *doc, int line, int column, lf_yaml_node_t **out)
{
    lf_err_t err = LF_OK;
    LF_CHECK(doc, LF_ERR_ARG, "a YAML sequence needs a document");
    node_t *nd = NULL;
    LF_CALL(node_new(doc, LF_YAML_SEQ, line, column, &nd));
    *out = &nd->pub;
cleanup:
    return err;
}

lf_err_t lf_yaml_set_root(lf_yaml_doc_t *doc, lf_yaml_node_t *node)
{
    lf_err_t err = LF_OK;
    LF_CHECK(doc && node, LF_ERR_ARG, "lf_yaml_set_root needs a document and a node");
    doc->root = node;
cleanup:
    return err;
}

lf_err_t lf_yaml_map_set(lf_yaml_doc_t *doc, lf_yaml_node_t *map, const char *key,
                         lf_yaml_node_t *value)
{
    lf_err_t err = LF_OK;
    LF_CHECK(doc && map && map->kind == LF_YAML_MAP, LF_ERR_ARG,
             "lf_yaml_map_set needs a document and a mapping, got a %s",
             map ? lf_yaml_kind_name(map->kind) : "NULL node");
    LF_CHECK(key && value, LF_ERR_ARG, "lf_yaml_map_set needs a key and a value");
    for (int i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i]->text, key) == 0) {
            map->items[i] = value;
            return LF_OK;
        }
    }
    lf_yaml_node_t *k = NULL;
    LF_CALL(lf_yaml_new_scalar(doc, key, false, value->line, value->column, &k));
    node_t *nd = (node_t *)map;
    LF_CALL(node_reserve(nd));
    map->keys[map->n] = k;
    map->items[map->n++] = value;
cleanup:
    return err;
}

lf_err_t lf_yaml_seq_append(lf_yaml_doc_t *doc, lf_yaml_node_t *seq, lf_yaml_node_t *item)
{
    lf_err_t err = LF_OK;
    LF_CHECK(doc && seq && seq->kind == LF_YAML_SEQ, LF_ERR_ARG,
             "lf_yaml_seq_append needs a document and a sequence, got a %s",
             seq ? lf_yaml_kind_name(seq->kind) : "NULL node");
    LF_CHECK(item, LF_ERR_ARG, "lf_yaml_seq_append needs an item");
    LF_CALL(node_reserve((node_t *)seq));
    seq->items[seq->n++] = item;
cleanup:
    return err;
}

/* ---- Emitting ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool nomem;
} out_t;

/* libyaml's write handler: returns 1 on success. */
static int out_write(void *data, unsigned char *bytes, size_t size)
{
    out_t *o = data;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + size + 1)
            cap *= 2;
        if (lf_realloc(cap, 1, (void **)&o->buf) != LF_OK) {
            o->nomem = true;
            return 0;
        }
        o->cap = cap;
    }
    memcpy(o->buf + o->len, bytes, size);
    o->len += size;
    o->buf[o->len] = '\0';
    return 1;
}

/* Passes one event to the emitter, which takes it (even when it fails). */
static lf_err_t emit_event(yaml_emitter_t *e, yaml_event_t *ev, const out_t *o)
{
    lf_err_t err = LF_OK;
    if (yaml_emitter_emit(e, ev))
        return LF_OK;
    LF_CHECK(!o->nomem && e->error != YAML_MEMORY_ERROR, LF_ERR_NOMEM,
             "out of memory while writing YAML");
    LF_FAIL(LF_ERR_INTERNAL, "libyaml's emitter failed: %s",
            e->problem ? e->problem : "no reason given");
cleanup:
    return err;
}

static lf_err_t emit_scalar(yaml_emitter_t *e, const lf_yaml_node_t *s, const out_t *o)
{
    lf_err_t err = LF_OK;
    yaml_event_t ev;
    size_t n = strlen(s->text);
    LF_CHECK(n <= INT32_MAX, LF_ERR_ARG, "a YAML scalar of %zu bytes is too long to write", n);
    /* Plain text stays plain where YAML allows it (the emitter quotes it otherwise, untagged);
     * quoted text is never written plain, and multi-line quoted text is a literal block when
     * the emitter can write one. */
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (s->quoted && strchr(s->text, '\n'))
        style = YAML_LITERAL_SCALAR_STYLE;
    int ok = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s->text, (int)n,
                                          !s->quoted, 1, style);
    LF_CHECK(ok, utf8_valid(s->text, n) ? LF_ERR_NOMEM : LF_ERR_ARG,
             "cannot write the YAML scalar at %d:%d (out of memory or not UTF-8)", s->line,
             s->column);
    LF_CALL(emit_event(e, &ev, o));
cleanup:
    return err;
}

static lf_err_t emit_node(yaml_emitter_t *e, const lf_yaml_node_t *nd, int depth, const out_t *o)
{
    lf_err_t err = LF_OK;
    yaml_event_t ev;
    LF_CHECK(nd != NULL, LF_ERR_ARG, "NULL node in a YAML tree");
    if (nd->kind == LF_YAML_SCALAR)
        return emit_scalar(e, nd, o);
    LF_CHECK(depth < LF_YAML_MAX_DEPTH, LF_ERR_ARG,
             "YAML tree nested more than %d deep (or with a cycle) cannot be written",
             LF_YAML_MAX_DEPTH);
    bool map = nd->kind == LF_YAML_MAP;
    int ok =
        map ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE)
            : yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
    LF_CHECK(ok, LF_ERR_NOMEM, "out of memory while writing YAML");
    LF_CALL(emit_event(e, &ev, o));
    for (int i = 0; i < nd->n; i++) {
        if (map) {
            LF_CHECK(nd->keys[i] && nd->keys[i]->kind == LF_YAML_SCALAR, LF_ERR_ARG,
                     "YAML mapping at %d:%d has a key that is not a scalar", nd->line, nd->column);
            LF_CALL(emit_scalar(e, nd->keys[i], o));
        }
        LF_CALL(emit_node(e, nd->items[i], depth + 1, o));
    }
    ok = map ? yaml_mapping_end_event_initialize(&ev) : yaml_sequence_end_event_initialize(&ev);
    LF_CHECK(ok, LF_ERR_NOMEM, "out of memory while writing YAML");
    LF_CALL(emit_event(e, &ev, o));
cleanup:
    return err;
}

lf_err_t lf_yaml_emit(const lf_yaml_node_t *node, char **text)
{
    lf_err_t err = LF_OK;
    yaml_emitter_t e;
    bool e_init = false;
    out_t o = {0};
    yaml_event_t ev;
    *text = NULL;
    LF_CHECK(node != NULL, LF_ERR_ARG, "no YAML node to write");
    LF_CHECK(yaml_emitter_initialize(&e), LF_ERR_NOMEM, "cannot initialise libyaml's emitter");
    e_init = true;
    yaml_emitter_set_output(&e, out_write, &o);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);
    yaml_emitter_set_break(&e, YAML_LN_BREAK);
    LF_CHECK(yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING), LF_ERR_NOMEM,
             "out of memory while writing YAML");
    LF_CALL(emit_event(&e, &ev, &o));
    LF_CHECK(yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1), LF_ERR_NOMEM,
             "out of memory while writing YAML");
    LF_CALL(emit_event(&e, &ev, &o));
    LF_CALL(emit_node(&e, node, 0, &o));
    LF_CHECK(yaml_document_end_event_initialize(&ev, 1), LF_ERR_NOMEM,
             "out of memory while writing YAML");
    LF_CALL(emit_event(&e, &ev, &o));
    LF_CHECK(yaml_stream_end_event_initialize(&ev), LF_ERR_NOMEM,
             "out of memory while writing YAML");
    LF_CALL(emit_event(&e, &ev, &o));
    LF_CHECK(yaml_emitter_flush(&e), o.nomem ? LF_ERR_NOMEM : LF_ERR_INTERNAL,
             "cannot write YAML: %s", e.problem ? e.problem : "flush failed");
    LF_CHECK(o.buf != NULL, LF_ERR_INTERNAL, "libyaml's emitter wrote nothing");
    *text = o.buf;
    o.buf = NULL;
cleanup:
    if (e_init)
        yaml_emitter_delete(&e);
    lf_free(o.buf);
    return err;
}
