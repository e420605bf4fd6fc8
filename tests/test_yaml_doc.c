/* YAML documents: exact node positions, refusals with their exact messages and positions, the
 * input limits (fast), and emit -> parse round trips. Serial. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/yaml_doc.h"

static lf_yaml_doc_t *parse_ok(const char *text)
{
    lf_yaml_doc_t *doc = NULL;
    lf_error_clear();
    lf_err_t err = lf_yaml_parse("t.yaml", text, strlen(text), &doc);
    ck_assert_msg(err == LF_OK, "parse failed: %s", lf_error_message());
    ck_assert_ptr_nonnull(doc);
    return doc;
}

static void assert_node(const lf_yaml_node_t *nd, lf_yaml_kind_t kind, int line, int column)
{
    ck_assert_ptr_nonnull(nd);
    ck_assert_int_eq(nd->kind, kind);
    ck_assert_int_eq(nd->line, line);
    ck_assert_int_eq(nd->column, column);
}

static void assert_scalar(const lf_yaml_node_t *nd, const char *text, bool quoted, int line,
                          int column)
{
    assert_node(nd, LF_YAML_SCALAR, line, column);
    ck_assert_str_eq(nd->text, text);
    ck_assert_int_eq(nd->quoted, quoted);
}

/* Parses bytes that must fail; checks the code and that the message starts with prefix. */
static void assert_refused(const char *bytes, size_t len, const char *prefix)
{
    lf_yaml_doc_t *doc = (lf_yaml_doc_t *)&doc; /* not NULL: parse must reset it */
    lf_error_clear();
    lf_err_t err = lf_yaml_parse("p.yaml", bytes, len, &doc);
    ck_assert_msg(err == LF_ERR_USAGE, "expected LF_ERR_USAGE for '%s', got %s (%s)", prefix,
                  lf_err_name(err), lf_error_message());
    ck_assert_ptr_null(doc);
    ck_assert_msg(strncmp(lf_error_message(), prefix, strlen(prefix)) == 0,
                  "message '%s' does not start with '%s'", lf_error_message(), prefix);
    lf_error_clear();
}

START_TEST(test_positions)
{
    /* An unknown structure: a list of mappings, positions counted by hand. */
    const char *text = "stages:\n"         /* line 1 */
                       "  - a: 1\n"        /* line 2: '-' at 3, 'a' at 5, '1' at 8 */
                       "    b: \"x\"\n"    /* line 3: 'b' at 5, '"' at 8 */
                       "  - [p, {q: r}]\n" /* line 4: '[' at 5, 'p' at 6, '{' at 9, 'q' 10 */
                       "note: |\n"         /* line 5: '|' at 7 */
                       "  two\n"           /* line 6 */
                       "  lines\n"         /* line 7 */
                       "empty:\n"          /* line 8: value right after the colon, 1+6 */
                       "'k': 'v w'\n";     /* line 9 */
    lf_yaml_doc_t *doc = parse_ok(text);
    ck_assert_str_eq(lf_yaml_name(doc), "t.yaml");
    const lf_yaml_node_t *root = lf_yaml_root(doc);
    assert_node(root, LF_YAML_MAP, 1, 1);
    ck_assert_int_eq(root->n, 4);
    assert_scalar(root->keys[0], "stages", false, 1, 1);
    const lf_yaml_node_t *stages = lf_yaml_get(root, "stages");
    assert_node(stages, LF_YAML_SEQ, 2, 3);
    ck_assert_int_eq(stages->n, 2);
    const lf_yaml_node_t *s0 = stages->items[0];
    assert_node(s0, LF_YAML_MAP, 2, 5);
    ck_assert_int_eq(s0->n, 2);
    assert_scalar(s0->keys[0], "a", false, 2, 5);
    assert_scalar(s0->items[0], "1", false, 2, 8);
    assert_scalar(s0->keys[1], "b", false, 3, 5);
    assert_scalar(lf_yaml_get(s0, "b"), "x", true, 3, 8);
    const lf_yaml_node_t *s1 = stages->items[1];
    assert_node(s1, LF_YAML_SEQ, 4, 5);
    ck_assert_int_eq(s1->n, 2);
    assert_scalar(s1->items[0], "p", false, 4, 6);
    assert_node(s1->items[1], LF_YAML_MAP, 4, 9);
    assert_scalar(s1->items[1]->keys[0], "q", false, 4, 10);
    assert_scalar(lf_yaml_get(s1->items[1], "q"), "r", false, 4, 13);
    assert_scalar(lf_yaml_get(root, "note"), "two\nlines\n", true, 5, 7);
    assert_scalar(lf_yaml_get(root, "empty"), "", false, 8, 7);
    assert_scalar(root->keys[3], "k", true, 9, 1);
    assert_scalar(lf_yaml_get(root, "k"), "v w", true, 9, 6);
    ck_assert_ptr_null(lf_yaml_get(root, "missing"));
    ck_assert_ptr_null(lf_yaml_get(stages, "a")); /* not a map */
    ck_assert_ptr_null(lf_yaml_get(NULL, "a"));
    lf_yaml_destroy(&doc);
    ck_assert_ptr_null(doc);
    lf_yaml_destroy(&doc); /* accepts NULL */
}
END_TEST

START_TEST(test_columns_count_code_points)
{
    /* "é" and "ü" are 2 bytes, "€" 3 and "😀" 4; every one is 1 column. A BOM is not counted.
     * Line 2 is "ä: {ü€: 1, 😀: x}": '{' at 4, 'ü€' at 5, '1' at 9, '😀' at 12, 'x' at 15. */
    const char *text = "\xEF\xBB\xBF"
                       "\xC3\xA9: 1\n"
                       "\xC3\xA4: {\xC3\xBC\xE2\x82\xAC: 1, \xF0\x9F\x98\x80: x}\n";
    lf_yaml_doc_t *doc = parse_ok(text);
    const lf_yaml_node_t *root = lf_yaml_root(doc);
    assert_scalar(root->keys[0], "\xC3\xA9", false, 1, 1);
    assert_scalar(root->items[0], "1", false, 1, 4);
    const lf_yaml_node_t *m = root->items[1];
    assert_node(m, LF_YAML_MAP, 2, 4);
    assert_scalar(m->keys[0], "\xC3\xBC\xE2\x82\xAC", false, 2, 5);
    assert_scalar(m->items[0], "1", false, 2, 9);
    assert_scalar(m->keys[1], "\xF0\x9F\x98\x80", false, 2, 12);
    assert_scalar(m->items[1], "x", false, 2, 15);
    lf_yaml_destroy(&doc);

    /* Errors use the same columns: the anchor after "ключ: [1, " (10 characters, 14 bytes) is at
     * column 11, and an invalid byte after "é: é" at column 5. */
    const char *anchor = "\xD0\xBA\xD0\xBB\xD1\x8E\xD1\x87: [1, &a 2]\n";
    assert_refused(anchor, strlen(anchor), "p.yaml:1:11: anchors and aliases are not supported");
    const char *bad = "x: 1\n\xC3\xA9: \xC3\xA9\xFF\n";
    assert_refused(bad, strlen(bad), "p.yaml:2:5: invalid UTF-8 byte 0xff");
    /* CR LF and CR end lines as LF does. */
    const char *crlf = "a: 1\r\nb: 2\rc: &x 3\n";
    assert_refused(crlf, strlen(crlf), "p.yaml:3:4: anchors and aliases");
}
END_TEST

START_TEST(test_tabs_in_strings_are_text)
{
    const char *text = "a: \"x\ty\"\n"
                       "b: \"one\n"
                       "\ttwo\"\n"
                       "c: |\n"
                       "  p\n"
                       "  \tq\n"
                       "d: 'u\tv'   \t\n"; /* a tab after a value is not indentation */
    lf_yaml_doc_t *doc = parse_ok(text);
    const lf_yaml_node_t *root = lf_yaml_root(doc);
    assert_scalar(lf_yaml_get(root, "a"), "x\ty", true, 1, 4);
    assert_scalar(lf_yaml_get(root, "b"), "one two", true, 2, 4);
    assert_scalar(lf_yaml_get(root, "c"), "p\n\tq\n", true, 4, 4);
    assert_scalar(lf_yaml_get(root, "d"), "u\tv", true, 7, 4);
    lf_yaml_destroy(&doc);
}
END_TEST

typedef struct {
    const char *text;
    const char *prefix;
} bad_case_t;

START_TEST(test_refusals)
{
    static const bad_case_t cases[] = {
        {"a:\n\tb: 1\n", "p.yaml:2:1: tab character in indentation (YAML indents with spaces)"},
        {"a:\n  b: 1\n  \tc: 2\n", "p.yaml:3:3: tab character in indentation"},
        {"a: [1,\n\t2]\n", "p.yaml:2:1: tab character in indentation"},
        {"a: 1\n\t# comment\n", "p.yaml:2:1: tab character in indentation"},
        {"a: 1\nb:\n  c: 2\n  c: 3\n", "p.yaml:4:3: duplicate key 'c' (first at 3:3)"},
        {"{x: 1, \"x\": 2}\n", "p.yaml:1:8: duplicate key 'x' (first at 1:2)"},
        {"a: &base 1\n",
         "p.yaml:1:4: anchors and aliases are not supported in pipeline files (anchor &base)"},
        {"a: [x, *base]\n",
         "p.yaml:1:8: anchors and aliases are not supported in pipeline files (alias *base)"},
        {"a:\n  <<: {b: 1}\n",
         "p.yaml:2:3: anchors and aliases are not supported in pipeline files (merge key <<)"},
        {"a: !!str 5\n", "p.yaml:1:4: tags are not supported in pipeline files (found !!str)"},
        {"a:\n  - !foo {b: 1}\n",
         "p.yaml:2:5: tags are not supported in pipeline files (found !foo)"},
        {"? [a, b]\n: 1\n", "p.yaml:1:3: mapping keys must be scalars, not collections"},
        {"{a: 1, b: [1, 2}\n",
         "p.yaml:1:16: did not find expected ',' or ']' (while parsing a flow sequence at 1:11)"},
        {"a: 1\nb: \"abc\nc: 2\n",
         "p.yaml:4:1: found unexpected end of stream (while scanning a quoted scalar at 2:4)"},
        {"a: \"x\\0y\"\n", "p.yaml:1:4: NUL character (\\0) in a string"},
        {"a: 1\n---\nb: 2\n", "p.yaml:2:1: more than one YAML document"},
        {"a: 1\n---\n", "p.yaml:2:1: more than one YAML document"},
        {"", "p.yaml:1:1: p.yaml is empty"},
        {"# nothing here\n\n", "p.yaml:1:1: p.yaml is empty"},
        {"---\n", "p.yaml:1:1: p.yaml is empty"},
        {"a: 1\nb: \x01\n", "p.yaml:2:4: control character U+0001"},
        {"\xFF\xFE"
         "a\0:\0",
         "p.yaml:1:1: invalid UTF-8 byte 0xff"},                      /* UTF-16 */
        {"a: \xC0\x80\n", "p.yaml:1:4: invalid UTF-8 byte 0xc0"},     /* overlong NUL */
        {"a: \xED\xA0\x80\n", "p.yaml:1:4: invalid UTF-8 byte 0xed"}, /* surrogate */
        {"a: \xC3", "p.yaml:1:4: invalid UTF-8 byte 0xc3"},           /* truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].text);
        if (strncmp(cases[i].text, "\xFF\xFE", 2) == 0)
            len = 6;
        assert_refused(cases[i].text, len, cases[i].prefix);
    }
    /* A NUL byte: the length says the text goes on. */
    assert_refused("a: 1\nb: x\0y\n", 12, "p.yaml:2:5: NUL byte (pipeline files are text)");
}
END_TEST

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

START_TEST(test_limits)
{
    struct timespec t0;
    /* 10 MB: refused before a byte is read. */
    size_t big = 10u * 1000 * 1000;
    char *text = malloc(big);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < big; i += 10)
        memcpy(text + i, "k: 12345\n\n", 10);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_refused(text, big,
                   "p.yaml:1:1: pipeline files are limited to 1 MiB; p.yaml has "
                   "10000000 bytes");
    /* 1 MiB exactly is allowed (comment lines, then one key); one byte more is not. */
    size_t mib = LF_YAML_MAX_BYTES;
    memset(text, ' ', mib);
    for (size_t i = 0; i + 64 <= mib; i += 64) {
        text[i] = '#';
        text[i + 63] = '\n';
    }
    memcpy(text + mib - 64, "a: 1", 4); /* the last line: "a: 1", spaces, "\n" */
    lf_yaml_doc_t *doc = NULL;
    ck_assert_int_eq(lf_yaml_parse("p.yaml", text, mib, &doc), LF_OK);
    assert_scalar(lf_yaml_get(lf_yaml_root(doc), "a"), "1", false, (int)(mib / 64), 4);
    lf_yaml_destroy(&doc);
    assert_refused(text, mib + 1, "p.yaml:1:1: pipeline files are limited");

    /* 100000-deep flow nesting: refused at the 33rd '[' (column 33), at once. libyaml alone
     * takes about 20 s over this input (its tokenizer is quadratic in the flow depth). */
    size_t deep = 100000;
    for (size_t i = 0; i < deep; i++) {
        text[i] = '[';
        text[deep + i] = ']';
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_refused(text, 2 * deep,
                   "p.yaml:1:33: collections nested more than 32 deep (the limit for pipeline "
                   "files)");
    double dt = seconds_since(&t0);
    ck_assert_msg(dt < 0.5, "100000-deep nesting took %.3f s", dt);

    /* 32 levels are fine. */
    ck_assert_int_eq(lf_yaml_parse("p.yaml", text + deep - 32, 64, &doc), LF_OK);
    const lf_yaml_node_t *nd = lf_yaml_root(doc);
    for (int d = 1; d < 32; d++) {
        ck_assert_int_eq(nd->n, 1);
        nd = nd->items[0];
    }
    assert_node(nd, LF_YAML_SEQ, 1, 32);
    ck_assert_int_eq(nd->n, 0);
    lf_yaml_destroy(&doc);

    /* Block nesting counts too: the 33rd mapping starts on line 33 at column 2 * 32 + 1. */
    size_t n = 0;
    for (int d = 0; d < 40; d++)
        n += (size_t)sprintf(text + n, "%*sk:\n", 2 * d, "");
    assert_refused(text, n, "p.yaml:33:65: collections nested more than 32 deep");

    /* Nodes: a flow sequence of 100000 items is 100001 nodes with the sequence; the last item
     * is refused. "[" then "0," * 100000: item k (from 0) is at column 2 + 2 k. */
    n = 0;
    text[n++] = '[';
    for (int k = 0; k < LF_YAML_MAX_NODES; k++) {
        text[n++] = '0';
        text[n++] = ',';
    }
    text[n++] = ']';
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char want[128];
    snprintf(want, sizeof want, "p.yaml:1:%d: more than 100000 nodes",
             2 + 2 * (LF_YAML_MAX_NODES - 1));
    assert_refused(text, n, want);
    /* One item fewer is accepted. */
    memcpy(text + n - 3, "]", 1);
    ck_assert_int_eq(lf_yaml_parse("p.yaml", text, n - 2, &doc), LF_OK);
    ck_assert_int_eq(lf_yaml_root(doc)->n, LF_YAML_MAX_NODES - 1);
    lf_yaml_destroy(&doc);
    dt = seconds_since(&t0);
    ck_assert_msg(dt < 2.0, "two parses of 100000 nodes took %.3f s", dt);

    /* A flat mapping with 49000 keys, the last one a duplicate of the first: linear time. */
    n = 0;
    for (int k = 0; k < 49000; k++)
        n += (size_t)sprintf(text + n, "key%d: %d\n", k, k);
    n += (size_t)sprintf(text + n, "key0: again\n");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_refused(text, n, "p.yaml:49001:1: duplicate key 'key0' (first at 1:1)");
    dt = seconds_since(&t0);
    ck_assert_msg(dt < 2.0, "49000 keys took %.3f s", dt);
    free(text);
}
END_TEST

/* Whether two trees are equal in kind, text, quoting and order (positions aside). */
static bool same_tree(const lf_yaml_node_t *a, const lf_yaml_node_t *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == LF_YAML_SCALAR)
        return strcmp(a->text, b->text) == 0 && a->quoted == b->quoted;
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++) {
        if (a->kind == LF_YAML_MAP && !same_tree(a->keys[i], b->keys[i]))
            return false;
        if (!same_tree(a->items[i], b->items[i]))
            return false;
    }
    return true;
}

START_TEST(test_round_trip)
{
    const char *text = "name: fold-digits\n"
                       "threshold: \"0.5\"\n"
                       "plain_threshold: 0.5\n"
                       "flags: [true, 'true', ~, '~', null, '', '007', 1e3]\n"
                       "stages:\n"
                       "  - {op: calibrate, rows: 4096}\n"
                       "  - op: fold\n"
                       "    note: >\n"
                       "      folded\n"
                       "      text\n"
                       "    script: |\n"
                       "      line one\n"
                       "        indented\n"
                       "    trailing: \"ends with spaces  \"\n"
                       "    lead: \" starts with a space\"\n"
                       "    colon: 'a: b'\n"
                       "    hash: 'x #y'\n"
                       "    unicode: \"\xC3\xA9t\xC3\xA9 \xE2\x82\xAC\"\n"
                       "    escapes: \"tab\\there \\\"quoted\\\" back\\\\slash\"\n"
                       "    blank_line: \"a\\n\\nb\"\n"
                       "    kept_newlines: \"x\\n\\n\"\n"
                       "    leading_newline: \"\\nx\"\n"
                       "    indented_first: \"  x\\ny\"\n"
                       "  - []\n"
                       "  - {}\n"
                       "empty:\n"
                       "\"quoted key\": 1\n"
                       "'123': number-like key\n"
                       "? \"multi\\nline key\"\n"
                       ": v\n";
    lf_yaml_doc_t *a = parse_ok(text), *b = NULL, *c = NULL;
    char *out = NULL, *again = NULL;
    ck_assert_int_eq(lf_yaml_emit(lf_yaml_root(a), &out), LF_OK);
    b = parse_ok(out);
    ck_assert_msg(same_tree(lf_yaml_root(a), lf_yaml_root(b)), "round trip differs:\n%s", out);
    /* The quoted "0.5" stays a quoted string, the plain 0.5 stays plain. */
    ck_assert(strstr(out, "threshold: '0.5'\n") != NULL);
    ck_assert(strstr(out, "plain_threshold: 0.5\n") != NULL);
    const lf_yaml_node_t *fold = lf_yaml_get(lf_yaml_root(a), "stages")->items[1];
    ck_assert_str_eq(lf_yaml_get(fold, "escapes")->text, "tab\there \"quoted\" back\\slash");
    ck_assert_str_eq(lf_yaml_get(fold, "note")->text, "folded text\n");
    ck_assert_str_eq(lf_yaml_get(fold, "kept_newlines")->text, "x\n\n");
    assert_node(lf_yaml_get(lf_yaml_root(b), "threshold"), LF_YAML_SCALAR, 2, 12);
    ck_assert(lf_yaml_get(lf_yaml_root(b), "threshold")->quoted);
    /* Deterministic, and a fixed point. */
    ck_assert_int_eq(lf_yaml_emit(lf_yaml_root(b), &again), LF_OK);
    ck_assert_str_eq(out, again);
    free(again);
    again = NULL;
    ck_assert_int_eq(lf_yaml_emit(lf_yaml_root(a), &again), LF_OK);
    ck_assert_str_eq(out, again);
    /* A sub-tree on its own. */
    free(again);
    again = NULL;
    const lf_yaml_node_t *stage = lf_yaml_get(lf_yaml_root(a), "stages")->items[0];
    ck_assert_int_eq(lf_yaml_emit(stage, &again), LF_OK);
    ck_assert_str_eq(again, "op: calibrate\nrows: 4096\n");
    c = parse_ok(again);
    ck_assert(same_tree(stage, lf_yaml_root(c)));
    free(out);
    free(again);
    lf_yaml_destroy(&a);
    lf_yaml_destroy(&b);
    lf_yaml_destroy(&c);
}
END_TEST

START_TEST(test_build_and_emit)
{
    lf_yaml_doc_t *doc = NULL, *back = NULL;
    lf_yaml_node_t *root = NULL, *seq = NULL, *s = NULL, *sub = NULL;
    ck_assert_int_eq(lf_yaml_doc_create("built", &doc), LF_OK);
    ck_assert_ptr_null(lf_yaml_root(doc));
    ck_assert_int_eq(lf_yaml_new_map(doc, 0, 0, &root), LF_OK);
    ck_assert_int_eq(lf_yaml_set_root(doc, root), LF_OK);
    ck_assert_int_eq(lf_yaml_new_scalar(doc, "0.5", true, 1, 3, &s), LF_OK);
    ck_assert_int_eq(lf_yaml_map_set(doc, root, "threshold", s), LF_OK);
    ck_assert_int_eq(lf_yaml_new_seq(doc, 0, 0, &seq), LF_OK);
    const char *items[] = {"1", "two", "yes"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(lf_yaml_new_scalar(doc, items[i], i == 2, 0, 0, &s), LF_OK);
        ck_assert_int_eq(lf_yaml_seq_append(doc, seq, s), LF_OK);
    }
    ck_assert_int_eq(lf_yaml_map_set(doc, root, "layers", seq), LF_OK);
    ck_assert_int_eq(lf_yaml_new_scalar(doc, "two\nlines\n", true, 0, 0, &s), LF_OK);
    ck_assert_int_eq(lf_yaml_map_set(doc, root, "note", s), LF_OK);
    ck_assert_int_eq(lf_yaml_new_map(doc, 0, 0, &sub), LF_OK);
    ck_assert_int_eq(lf_yaml_map_set(doc, root, "empty", sub), LF_OK);
    /* Replacing keeps the key's place and position. */
    ck_assert_int_eq(lf_yaml_new_scalar(doc, "0.25", false, 7, 9, &s), LF_OK);
    ck_assert_int_eq(lf_yaml_map_set(doc, root, "threshold", s), LF_OK);
    ck_assert_int_eq(root->n, 4);
    assert_scalar(root->keys[0], "threshold", false, 1, 3);
    assert_scalar(lf_yaml_get(root, "threshold"), "0.25", false, 7, 9);
    char *out = NULL;
    ck_assert_int_eq(lf_yaml_emit(lf_yaml_root(doc), &out), LF_OK);
    ck_assert_str_eq(out, "threshold: 0.25\n"
                          "layers:\n"
                          "- 1\n"
                          "- two\n"
                          "- 'yes'\n"
                          "note: |\n"
                          "  two\n"
                          "  lines\n"
                          "empty: {}\n");
    back = parse_ok(out);
    ck_assert(same_tree(root, lf_yaml_root(back)));
    free(out);
    /* A plain scalar that YAML cannot write plain comes back quoted, with the same text. */
    ck_assert_int_eq(lf_yaml_new_scalar(doc, "a: b", false, 0, 0, &s), LF_OK);
    ck_assert_int_eq(lf_yaml_emit(s, &out), LF_OK);
    lf_yaml_destroy(&back);
    back = parse_ok(out);
    assert_scalar(lf_yaml_root(back), "a: b", true, 1, 1);
    free(out);
    lf_yaml_destroy(&back);

    /* Refusals of the building functions. */
    lf_error_clear();
    ck_assert_int_eq(lf_yaml_new_scalar(doc, "\xFF", false, 0, 0, &s), LF_ERR_ARG);
    ck_assert_int_eq(lf_yaml_map_set(doc, seq, "k", s), LF_ERR_ARG);
    ck_assert_int_eq(lf_yaml_seq_append(doc, root, s), LF_ERR_ARG);
    ck_assert_int_eq(lf_yaml_seq_append(doc, seq, NULL), LF_ERR_ARG);
    lf_error_clear();
    /* A cycle cannot be written. */
    lf_yaml_node_t *loop = NULL;
    ck_assert_int_eq(lf_yaml_new_seq(doc, 0, 0, &loop), LF_OK);
    ck_assert_int_eq(lf_yaml_seq_append(doc, loop, loop), LF_OK);
    ck_assert_int_eq(lf_yaml_emit(loop, &out), LF_ERR_ARG);
    ck_assert_ptr_null(out);
    ck_assert(strstr(lf_error_message(), "nested more than 32 deep") != NULL);
    lf_error_clear();
    lf_yaml_destroy(&doc);
}
END_TEST

START_TEST(test_allocation_failures)
{
    /* Every allocation of a parse fails in turn: an error, never a leak or a crash. */
    const char *text = "a: 1\nb: [x, y, {c: d}]\nlong: \"" /* a string bigger than a chunk */
                       "................................................................\"\n";
    int failures = 0;
    for (int k = 0; k < 200; k++) {
        lf_yaml_doc_t *doc = NULL;
        lf_error_clear();
        lf_alloc_fail_after(k);
        lf_err_t err = lf_yaml_parse("p.yaml", text, strlen(text), &doc);
        lf_alloc_fail_after(-1);
        if (err == LF_OK) {
            lf_yaml_destroy(&doc);
            break;
        }
        ck_assert_int_eq(err, LF_ERR_NOMEM);
        ck_assert_ptr_null(doc);
        failures++;
    }
    ck_assert_int_gt(failures, 3);
    lf_error_clear();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("yaml_doc");
    TCase *tc = tcase_create("yaml_doc");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_positions);
    tcase_add_test(tc, test_columns_count_code_points);
    tcase_add_test(tc, test_tabs_in_strings_are_text);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_build_and_emit);
    tcase_add_test(tc, test_allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lf_test_run_serial(make_suite); }
