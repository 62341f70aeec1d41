// A small, strict JSON reader for safetensors headers (and our own metadata): the whole
// document is parsed into a tree; any deviation from RFC 8259 is an error with its offset.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    double number;
    int boolean;
    char *string;             // JSON_STRING (NUL-terminated, UTF-8)
    size_t n;                 // items in an array or object
    struct json_value *items; // array items / object values
    char **keys;              // object keys
} json_value;

// Parses text[0..len). Returns NULL with err_message() saying what and where.
json_value *json_parse(const char *text, size_t len);
void json_free(json_value *v);
const json_value *json_get(const json_value *obj, const char *key);
// Writes s as a JSON string literal (with quotes) into buf; returns the length it needs.
size_t json_quote(const char *s, char *buf, size_t n);
