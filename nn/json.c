#include "json.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"

typedef struct {
    const char *s;
    size_t len, pos;
    int depth;
} parser;

#define MAX_DEPTH 32

static int fail(parser *p, const char *what) {
    err_set("JSON: %s at byte %zu", what, p->pos);
    return -1;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

static int parse_value(parser *p, json_value *v);

static int put_utf8(char *out, size_t *o, unsigned cp) {
    if (cp < 0x80)
        out[(*o)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | cp >> 6);
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xE0 | cp >> 12);
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
    return 0;
}

static int parse_string(parser *p, char **out) {
    if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a string");
    p->pos++;
    size_t start = p->pos, cap = 0;
    // worst case: the output is no longer than the input
    while (p->pos < p->len && p->s[p->pos] != '"') {
        if (p->s[p->pos] == '\\') p->pos++;
        p->pos++;
    }
    if (p->pos >= p->len) return fail(p, "unterminated string");
    cap = p->pos - start + 1;
    char *buf = malloc(cap);
    if (!buf) return fail(p, "out of memory");
    size_t o = 0;
    for (size_t i = start; i < p->pos; i++) {
        unsigned char c = (unsigned char)p->s[i];
        if (c < 0x20) {
            free(buf);
            p->pos = i;
            return fail(p, "control character in a string");
        }
        if (c != '\\') {
            buf[o++] = (char)c;
            continue;
        }
        char e = p->s[++i];
        switch (e) {
            case '"': buf[o++] = '"'; break;
            case '\\': buf[o++] = '\\'; break;
            case '/': buf[o++] = '/'; break;
            case 'b': buf[o++] = '\b'; break;
            case 'f': buf[o++] = '\f'; break;
            case 'n': buf[o++] = '\n'; break;
            case 'r': buf[o++] = '\r'; break;
            case 't': buf[o++] = '\t'; break;
            case 'u': {
                unsigned cp = 0;
                for (int k = 0; k < 4; k++) {
                    char h = i + 1 < p->pos ? p->s[++i] : 0;
                    int d = h >= '0' && h <= '9'   ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
                    if (d < 0) {
                        free(buf);
                        p->pos = i;
                        return fail(p, "bad \\u escape");
                    }
                    cp = cp * 16 + (unsigned)d;
                }
                if (cp == 0 || (cp >= 0xD800 && cp < 0xE000)) {
                    free(buf);
                    p->pos = i;
                    return fail(p, "unsupported \\u escape (NUL or surrogate)");
                }
                if (o + 3 >= cap) {
                    free(buf);
                    return fail(p, "string escape too long");
                }
                put_utf8(buf, &o, cp);
                break;
            }
            default:
                free(buf);
                p->pos = i;
                return fail(p, "bad escape in a string");
        }
    }
    buf[o] = 0;
    p->pos++;
    *out = buf;
    return 0;
}

static int parse_number(parser *p, json_value *v) {
    size_t start = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') return fail(p, "bad number");
    if (p->s[p->pos] == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' &&
        p->s[p->pos + 1] <= '9')
        return fail(p, "leading zero in a number");
    while (p->pos < p->len && strchr("0123456789+-.eE", p->s[p->pos]) && p->s[p->pos]) p->pos++;
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) return fail(p, "number too long");
    memcpy(tmp, p->s + start, n);
    tmp[n] = 0;
    char *end;
    v->number = strtod(tmp, &end);
    if (*end || !isfinite(v->number)) {
        p->pos = start;
        return fail(p, "bad number");
    }
    v->type = JSON_NUMBER;
    return 0;
}

static int grow(json_value *v, size_t *cap, bool with_keys) {
    if (v->n < *cap) return 0;
    size_t c = *cap ? 2 * *cap : 8;
    json_value *items = realloc(v->items, c * sizeof *items);
    if (!items) return -1;
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, c * sizeof *keys);
        if (!keys) return -1;
        v->keys = keys;
    }
    *cap = c;
    return 0;
}

static int parse_container(parser *p, json_value *v, bool object) {
    if (++p->depth > MAX_DEPTH) return fail(p, "nested too deeply");
    v->type = object ? JSON_OBJECT : JSON_ARRAY;
    p->pos++;
    size_t cap = 0;
    skip_ws(p);
    char close = object ? '}' : ']';
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return 0;
    }
    for (;;) {
        if (grow(v, &cap, object)) return fail(p, "out of memory");
        json_value *item = &v->items[v->n];
        memset(item, 0, sizeof *item);
        if (object) {
            skip_ws(p);
            char *key;
            if (parse_string(p, &key)) return -1;
            v->keys[v->n] = key;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                v->n++;
                return fail(p, "expected ':'");
            }
            p->pos++;
        }
        v->n++;
        if (parse_value(p, item)) return -1;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->depth--;
    return 0;
}

static int parse_value(parser *p, json_value *v) {
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end");
    char c = p->s[p->pos];
    if (c == '{') return parse_container(p, v, true);
    if (c == '[') return parse_container(p, v, false);
    if (c == '"') {
        v->type = JSON_STRING;
        return parse_string(p, &v->string);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
    static const struct {
        const char *word;
        json_type type;
        int b;
    } words[] = {{"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if (p->len - p->pos >= n && !memcmp(p->s + p->pos, words[i].word, n)) {
            v->type = words[i].type;
            v->boolean = words[i].b;
            p->pos += n;
            return 0;
        }
    }
    return fail(p, "unexpected character");
}

static void free_inner(json_value *v) {
    free(v->string);
    for (size_t i = 0; i < v->n; i++) {
        free_inner(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

void json_free(json_value *v) {
    if (!v) return;
    free_inner(v);
    free(v);
}

json_value *json_parse(const char *text, size_t len) {
    parser p = {text, len, 0, 0};
    json_value *v = calloc(1, sizeof *v);
    if (!v) {
        err_set("JSON: out of memory");
        return NULL;
    }
    if (parse_value(&p, v)) {
        json_free(v);
        return NULL;
    }
    skip_ws(&p);
    if (p.pos != len) {
        fail(&p, "trailing characters after the document");
        json_free(v);
        return NULL;
    }
    return v;
}

const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

size_t json_quote(const char *s, char *buf, size_t n) {
    size_t o = 0;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (o + 1 < n) buf[o] = (ch);                                                              \
        o++;                                                                                       \
    } while (0)
    PUT('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char)c);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            for (char *e = esc; *e; e++) PUT(*e);
        } else
            PUT((char)c);
    }
    PUT('"');
    if (n) buf[o < n ? o : n - 1] = 0;
#undef PUT
    return o;
}
