/* Bulk-ingest bodies: strict parsing of {"events": [...]} and the validation and normalization
 * of each client event into a compact stream record. */
#include "event/event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define RECORD_MAX    (2 * 1024 * 1024) /* bytes of one stream record */
#define SHORT_MAX     1024              /* source, detection_id, category, *_field */
#define SIGNATURE_MAX 256
#define DATA_TYPE_MAX 64
#define LEVEL_MAX     4                 /* severity and tlp are 0..4 */
#define DATE_MAX_MS   253402300799999LL /* 9999-12-31T23:59:59.999Z */
#define SHOW_MAX      40                /* bytes of a client string quoted in an error message */
#define STR2(x)       #x
#define STR(x)        STR2(x)

/* ---- messages ---------------------------------------------------------------------------- */

/* Copies at most max bytes of s into out (cap bytes) as printable, valid UTF-8: quotes and
 * backslashes are escaped, control characters and invalid bytes become '?', and "..." marks a
 * cut. Client text in messages must not break the JSON error response that carries them. */
static void show_text(char *out, size_t cap, const char *s, size_t len, size_t max)
{
    size_t o = 0, i = 0;
    const unsigned char *u = (const unsigned char *)s;
    if (cap < 5)
        return;
    while (i < len && i < max && o + 5 < cap) {
        size_t n = sl_utf8_seq(u + i, len - i);
        if (n > 1) {
            if (i + n > max || o + n + 4 >= cap)
                break;
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
            continue;
        }
        if (n == 1 && (u[i] == '"' || u[i] == '\\'))
            out[o++] = '\\';
        out[o++] = n == 1 && u[i] >= 0x20 && u[i] != 0x7f ? s[i] : '?';
        i++;
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
}

/* Formats a JSON number: integral values as integers, others with up to 17 significant
 * digits (the shortest of %.15g and %.17g that reads back as the same double). Returns the
 * length, or -1 for a value JSON cannot carry (infinity, NaN). */
static int fmt_number(double d, char out[32])
{
    if (d != d || d > 1.7976931348623157e308 || d < -1.7976931348623157e308)
        return -1;
    if (d > -1e18 && d < 1e18 && (double)(long long)d == d)
        return snprintf(out, 32, "%lld", (long long)d);
    int n = snprintf(out, 32, "%1.15g", d);
    if (strtod(out, NULL) != d)
        n = snprintf(out, 32, "%1.17g", d);
    return n;
}

/* A short description of a client value for "got ..." in messages. */
static void describe(const cJSON *v, char *out, size_t cap)
{
    char num[32];
    if (!v) {
        snprintf(out, cap, "nothing");
    } else if (cJSON_IsString(v) && v->valuestring) {
        char text[SHOW_MAX * 2 + 8];
        show_text(text, sizeof(text), v->valuestring, strlen(v->valuestring), SHOW_MAX);
        snprintf(out, cap, "\"%s\"", text);
    } else if (cJSON_IsNumber(v)) {
        snprintf(out, cap, "%s",
                 fmt_number(v->valuedouble, num) < 0 ? "a number out of range" : num);
    } else if (cJSON_IsBool(v)) {
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(out, cap, "null");
    } else if (cJSON_IsArray(v)) {
        snprintf(out, cap, "an array");
    } else if (cJSON_IsObject(v)) {
        snprintf(out, cap, "an object");
    } else {
        snprintf(out, cap, "an unsupported value");
    }
}

/* "<path>: expected <what>, got <v>". Returns SL_EINVAL. */
static int expected(char *err, size_t errlen, const char *path, const char *what, const cJSON *v)
{
    char got[SHOW_MAX * 2 + 32];
    describe(v, got, sizeof(got));
    sl_set_err(err, errlen, "%s: expected %s, got %s", path, what, got);
    return SL_EINVAL;
}

/* ---- a bounded JSON writer ------------------------------------------------------------------ */

/* The record being written. Once rc is set every write is a no-op; callers check it once per
 * field. rc: SL_EFULL (record too large), SL_ENOMEM, or SL_EINVAL (a value JSON cannot carry). */
struct jbuf {
    char *p;
    size_t len, cap;
    int rc;
};

/* Makes room for n more bytes plus a terminating NUL, within RECORD_MAX. */
static int jb_reserve(struct jbuf *b, size_t n)
{
    if (b->rc)
        return b->rc;
    if (n > RECORD_MAX - b->len)
        return b->rc = SL_EFULL;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 2048;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > RECORD_MAX + 1)
            cap = RECORD_MAX + 1;
        char *p = realloc(b->p, cap);
        if (!p)
            return b->rc = SL_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (jb_reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void jb_ch(struct jbuf *b, char c)
{
    if (jb_reserve(b, 1) == 0)
        b->p[b->len++] = c;
}

/* Writes s as a JSON string, escaping quotes, backslashes and control characters. */
static void jb_str(struct jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    /* Invariant: room for the rest of s unescaped plus the closing quote. */
    if (jb_reserve(b, n + 2))
        return;
    b->p[b->len++] = '"';
    while (i < n) {
        size_t start = i;
        while (i < n && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
            i++;
        memcpy(b->p + b->len, s + start, i - start);
        b->len += i - start;
        if (i == n)
            break;
        unsigned char c = (unsigned char)s[i++];
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            break;
        case '\\':
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
            break;
        }
        if (jb_reserve(b, el + (n - i) + 1))
            return;
        memcpy(b->p + b->len, esc, el);
        b->len += el;
    }
    b->p[b->len++] = '"';
}

static void jb_cstr(struct jbuf *b, const char *s)
{
    jb_str(b, s, strlen(s));
}

static void jb_num(struct jbuf *b, double d)
{
    char num[32];
    int n = fmt_number(d, num);
    if (n < 0) {
        if (!b->rc)
            b->rc = SL_EINVAL;
        return;
    }
    jb_put(b, num, (size_t)n);
}

/* Starts member "key": of the object being written; *count members were written before. */
static void jb_key(struct jbuf *b, int *count, const char *key)
{
    if ((*count)++ > 0)
        jb_ch(b, ',');
    jb_cstr(b, key);
    jb_ch(b, ':');
}

/* Writes a client value as given (compact). depth bounds the recursion for trees that were
 * not made by the parser (which stops at CJSON_NESTING_LIMIT). */
static void jb_value(struct jbuf *b, const cJSON *v, int depth)
{
    const cJSON *c;
    int count = 0;
    if (depth > CJSON_NESTING_LIMIT) {
        if (!b->rc)
            b->rc = SL_EINVAL;
        return;
    }
    switch (v->type & 0xff) {
    case cJSON_False:
        jb_put(b, "false", 5);
        break;
    case cJSON_True:
        jb_put(b, "true", 4);
        break;
    case cJSON_NULL:
        jb_put(b, "null", 4);
        break;
    case cJSON_Number:
        jb_num(b, v->valuedouble);
        break;
    case cJSON_String:
        jb_cstr(b, v->valuestring ? v->valuestring : "");
        break;
    case cJSON_Array:
        jb_ch(b, '[');
        for (c = v->child; c && !b->rc; c = c->next) {
            if (count++ > 0)
                jb_ch(b, ',');
            jb_value(b, c, depth + 1);
        }
        jb_ch(b, ']');
        break;
    case cJSON_Object:
        jb_ch(b, '{');
        for (c = v->child; c && !b->rc; c = c->next) {
            jb_key(b, &count, c->string ? c->string : "");
            jb_value(b, c, depth + 1);
        }
        jb_ch(b, '}');
        break;
    default:
        if (!b->rc)
            b->rc = SL_EINVAL;
        break;
    }
}

/* Turns a writer failure into a message naming the field being written. */
static int jb_check(const struct jbuf *b, const char *path, char *err, size_t errlen)
{
    switch (b->rc) {
    case 0:
        return 0;
    case SL_EFULL:
        sl_set_err(err, errlen, "event: the record would be larger than %d bytes (2 MiB) at %s",
                   RECORD_MAX, path);
        return SL_EINVAL;
    case SL_ENOMEM:
        sl_set_err(err, errlen, "out of memory");
        return SL_ENOMEM;
    default:
        sl_set_err(err, errlen, "%s: contains a number out of range or an unsupported value", path);
        return SL_EINVAL;
    }
}

/* ---- the bulk body -------------------------------------------------------------------------- */

#define TREE_SLACK (1024 * 1024) /* tree memory allowed on top of SL_EVENT_TREE_FACTOR * len */

struct scan {
    size_t error_at; /* offset of what is wrong, when why != NULL */
    const char *why;
    int unterminated; /* the input ends inside a string, an object or an array */
    int in_string;    /* ... inside a string, which starts at string_start */
    size_t string_start;
    int empty; /* nothing but whitespace */
};

/* Checks what cJSON lets through but JSON (RFC 8259) and this service do not: invalid UTF-8,
 * raw control characters, "\u0000" (it would cut strings short), nesting beyond cJSON's limit.
 * Also notes whether the input ends inside a string or container, so that a truncated body is
 * reported as such. */
static void prescan(const unsigned char *s, size_t len, struct scan *out)
{
    int in_str = 0, esc = 0;
    long depth = 0;
    size_t i = 0;
    memset(out, 0, sizeof(*out));
    out->empty = 1;
    while (i < len) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t n = sl_utf8_seq(s + i, len - i);
            if (n == 0) {
                out->why = "invalid UTF-8";
                break;
            }
            out->empty = 0;
            esc = 0;
            i += n;
            continue;
        }
        if (in_str) {
            if (esc) {
                esc = 0;
                if (c == 'u' && len - i >= 5 && memcmp(s + i + 1, "0000", 4) == 0) {
                    out->why = "\\u0000 is not accepted in strings";
                    i--;
                    break;
                }
            } else if (c == '\\') {
                esc = 1;
            } else if (c == '"') {
                in_str = 0;
            } else if (c < 0x20) {
                out->why = "control character in a string (escape it)";
                break;
            }
        } else if (c == '"') {
            in_str = 1;
            out->string_start = i;
            out->empty = 0;
        } else if (c == '{' || c == '[') {
            out->empty = 0;
            if (++depth > CJSON_NESTING_LIMIT) {
                out->why = "nesting deeper than " STR(CJSON_NESTING_LIMIT) " levels";
                break;
            }
        } else if (c == '}' || c == ']') {
            out->empty = 0;
            depth -= depth > 0;
        } else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            out->why = "unexpected control character";
            break;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            out->empty = 0;
        }
        i++;
    }
    out->error_at = i;
    out->unterminated = in_str || depth > 0;
    out->in_string = in_str;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int malformed(long *out_off, char *err, size_t errlen, size_t at, const char *detail)
{
    if (out_off)
        *out_off = (long)at;
    sl_set_err(err, errlen, "malformed JSON at byte %zu: %s", at, detail);
    return SL_EINVAL;
}

/* Whether cJSON failed at byte at only because the input stops: cJSON reports the start of
 * the token it could not finish, so the rest must be a prefix of one. */
static int is_truncation(const char *body, size_t len, size_t at, const struct scan *sc)
{
    static const char *const literals[] = {"true", "false", "null"};
    static const char number_chars[] = "0123456789+-.eE";
    size_t n = len - at;
    if (!sc->unterminated)
        return 0;
    if (sc->in_string)
        return at >= sc->string_start;
    if (n <= 1)
        return 1;
    for (size_t i = 0; i < sizeof(literals) / sizeof(literals[0]); i++)
        if (n < strlen(literals[i]) && memcmp(body + at, literals[i], n) == 0)
            return 1;
    for (size_t i = 0; i < n; i++)
        if (!memchr(number_chars, body[at + i], sizeof(number_chars) - 1))
            return 0;
    return 1;
}

/* The error position cJSON reported, clamped to [0, len], with a hint of what is there. */
static int parse_failure(const char *body, size_t len, const char *end, const struct scan *sc,
                         long *out_off, char *err, size_t errlen)
{
    size_t at = 0;
    char near[SHOW_MAX * 2 + 16];
    if (end && end >= body && (size_t)(end - body) <= len)
        at = (size_t)(end - body);
    if (at >= len || is_truncation(body, len, at, sc))
        return malformed(out_off, err, errlen, len, "unexpected end of input");
    memcpy(near, "near \"", 6);
    show_text(near + 6, sizeof(near) - 7, body + at, len - at, 16);
    strcat(near, "\"");
    return malformed(out_off, err, errlen, at, near);
}

int sl_event_bulk_parse(const char *body, size_t len, cJSON **out_root, cJSON **out_events,
                        long *out_error_offset, char *err, size_t errlen)
{
    struct scan sc;
    const char *end = NULL;
    cJSON *root = NULL;
    int rc = SL_EINVAL;
    *out_root = NULL;
    *out_events = NULL;
    if (out_error_offset)
        *out_error_offset = -1;
    if (!body)
        len = 0;
    prescan((const unsigned char *)body, len, &sc);
    if (sc.why)
        return malformed(out_error_offset, err, errlen, sc.error_at, sc.why);
    if (sc.empty)
        return malformed(out_error_offset, err, errlen, len, "empty body");
    unsigned failed = sl_event_alloc_failures();
    sl_event_alloc_budget(len > (SIZE_MAX - TREE_SLACK) / SL_EVENT_TREE_FACTOR
                              ? SIZE_MAX
                              : len * SL_EVENT_TREE_FACTOR + TREE_SLACK);
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    int over = sl_event_alloc_over_budget();
    sl_event_alloc_budget(SIZE_MAX);
    if (!root && over) {
        sl_set_err(err, errlen,
                   "the body's JSON would take more than %d times its size in memory (too many "
                   "tiny values); send fewer values per request",
                   SL_EVENT_TREE_FACTOR);
        return SL_EFULL;
    }
    if (!root && sl_event_alloc_failures() != failed) {
        sl_set_err(err, errlen, "out of memory while parsing the body; try again later");
        return SL_ENOMEM;
    }
    if (!root)
        return parse_failure(body, len, end, &sc, out_error_offset, err, errlen);
    size_t at = end && end >= body && (size_t)(end - body) <= len ? (size_t)(end - body) : len;
    while (at < len && is_ws(body[at]))
        at++;
    if (at < len) {
        rc = malformed(out_error_offset, err, errlen, at, "unexpected data after the JSON value");
        goto out;
    }
    const cJSON *events =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "events") : NULL;
    if (!cJSON_IsArray(events)) {
        char got[SHOW_MAX * 2 + 32];
        if (!cJSON_IsObject(root))
            describe(root, got, sizeof(got));
        else if (!events)
            snprintf(got, sizeof(got), "an object without \"events\"");
        else
            describe(events, got + snprintf(got, sizeof(got), "\"events\": "), 64);
        sl_set_err(err, errlen, "body must be an object with an \"events\" array, got %s", got);
        goto out;
    }
    *out_root = root;
    *out_events = (cJSON *)events;
    root = NULL;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- one event -------------------------------------------------------------------------- */

/* Fields a client may not set: the server sets them, or the worker does. */
static const char *const internal_fields[] = {
    "organization",
    "uuid",
    "status",
    "status_name",
    "_meta",
    "case",
    "event_rules",
    "created_at",
    "updated_at",
    "agent_uuid",
    "agent_type",
    "ingest_task",
    "ingest_index",
    "received_at",
    "dismissed_at",
    "dismiss_reason",
    "dismissed_by_rule",
    "signature_client",
    "metrics",
};

static int is_internal(const char *key)
{
    if (key[0] == '_')
        return 1;
    for (size_t i = 0; i < sizeof(internal_fields) / sizeof(internal_fields[0]); i++)
        if (strcmp(key, internal_fields[i]) == 0)
            return 1;
    return 0;
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Finds a key that occurs twice in obj: returns 1 and *out_key, 0 if none, or SL_ENOMEM. */
static int find_duplicate_key(const cJSON *obj, const char **out_key)
{
    const cJSON *a, *b;
    size_t n = 0, i = 0;
    uint64_t seen = 0;
    int rc = 0;
    for (a = obj->child; a; a = a->next)
        n++;
    if (n <= 32) {
        /* The usual object: a 64-bit filter of (length, first and last byte) keeps this
         * allocation-free and compares keys only when the filter says they may repeat. */
        for (a = obj->child; a; a = a->next) {
            const char *k = a->string ? a->string : "";
            size_t len = strlen(k);
            unsigned h = (unsigned)len * 31u + (unsigned char)k[0] * 7u +
                         (len ? (unsigned char)k[len - 1] : 0u);
            uint64_t bit = (uint64_t)1 << (h & 63);
            if (seen & bit) {
                for (b = obj->child; b != a; b = b->next)
                    if (b->string && strcmp(b->string, k) == 0) {
                        *out_key = k;
                        return 1;
                    }
            }
            seen |= bit;
        }
        return 0;
    }
    const char **keys = malloc(n * sizeof(*keys));
    if (!keys)
        return SL_ENOMEM;
    for (a = obj->child; a; a = a->next)
        keys[i++] = a->string ? a->string : "";
    qsort(keys, n, sizeof(*keys), cmp_keys);
    for (i = 1; i < n && !rc; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            *out_key = keys[i];
            rc = 1;
        }
    free(keys);
    return rc;
}

/* Refuses an object with a repeated key: which of the two a reader would see differs between
 * JSON libraries, so the record must not carry both. */
static int check_unique_keys(const cJSON *obj, const char *path, char *err, size_t errlen)
{
    const char *dup = NULL;
    char key[SHOW_MAX * 2 + 8];
    int rc = find_duplicate_key(obj, &dup);
    if (rc == SL_ENOMEM) {
        sl_set_err(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    if (rc == 0)
        return 0;
    show_text(key, sizeof(key), dup, strlen(dup), SHOW_MAX);
    sl_set_err(err, errlen, "%s: duplicate key \"%s\"", path, key);
    return SL_EINVAL;
}

/* Checks that v is a string of min..max bytes; its length goes to *out_len. path names the
 * field in a message, followed by "[idx]" when idx >= 0. */
static int check_string_at(const cJSON *v, const char *path, int idx, size_t min, size_t max,
                           size_t *out_len, char *err, size_t errlen)
{
    char what[64], where[160];
    size_t len = cJSON_IsString(v) && v->valuestring ? strlen(v->valuestring) : 0;
    if (cJSON_IsString(v) && v->valuestring && len >= min && len <= max) {
        *out_len = len;
        return 0;
    }
    /* Messages are only formatted on failure: this is the hot path of every event. */
    snprintf(what, sizeof(what), "a %sstring of at most %zu bytes", min ? "non-empty " : "", max);
    if (idx >= 0)
        snprintf(where, sizeof(where), "%s[%d]", path, idx);
    else
        snprintf(where, sizeof(where), "%s", path);
    if (!cJSON_IsString(v) || !v->valuestring || len < min)
        return expected(err, errlen, where, what, v);
    sl_set_err(err, errlen, "%s: expected %s, got a string of %zu bytes", where, what, len);
    return SL_EINVAL;
}

static int check_string(const cJSON *v, const char *path, size_t min, size_t max, size_t *out_len,
                        char *err, size_t errlen)
{
    return check_string_at(v, path, -1, min, max, out_len, err, errlen);
}

/* Checks that v is a string of min..max bytes and writes it. */
static int put_string(struct jbuf *b, const cJSON *v, const char *path, size_t min, size_t max,
                      char *err, size_t errlen)
{
    size_t len;
    int rc = check_string(v, path, min, max, &len, err, errlen);
    if (rc == 0)
        jb_str(b, v->valuestring, len);
    return rc;
}

/* An integer 0..LEVEL_MAX (severity, tlp); integral numbers such as 2.0 count. */
static int get_level(const cJSON *v, int *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= LEVEL_MAX) || (double)(int)d != d)
        return -1;
    *out = (int)d;
    return 0;
}

static int put_level(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    int level;
    if (get_level(v, &level))
        return expected(err, errlen, path, "an integer 0.." STR(LEVEL_MAX), v);
    jb_ch(b, (char)('0' + level));
    return 0;
}

static int put_bool(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    if (!cJSON_IsBool(v))
        return expected(err, errlen, path, "true or false", v);
    jb_put(b, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5);
    return 0;
}

/* Tags: non-empty strings, repeated ones dropped (first occurrence kept, order kept). */
static int put_tags(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    const char *kept[SL_EVENT_TAGS_MAX];
    size_t kept_len[SL_EVENT_TAGS_MAX];
    size_t nkept = 0;
    int idx = 0;
    const cJSON *t;
    if (!cJSON_IsArray(v))
        return expected(err, errlen, path, "an array of strings", v);
    jb_ch(b, '[');
    cJSON_ArrayForEach(t, v)
    {
        size_t len = 0, k = 0;
        if (check_string_at(t, path, idx++, 1, SL_EVENT_TAG_MAX, &len, err, errlen) != 0)
            return SL_EINVAL;
        while (k < nkept && !(kept_len[k] == len && memcmp(kept[k], t->valuestring, len) == 0))
            k++;
        if (k < nkept)
            continue;
        if (nkept == SL_EVENT_TAGS_MAX) {
            sl_set_err(err, errlen, "%s: expected at most %d distinct tags, got more", path,
                       SL_EVENT_TAGS_MAX);
            return SL_EINVAL;
        }
        kept[nkept] = t->valuestring;
        kept_len[nkept] = len;
        if (nkept++ > 0)
            jb_ch(b, ',');
        jb_str(b, t->valuestring, len);
    }
    jb_ch(b, ']');
    return 0;
}

/* An observable value: a string, or a number written as its decimal string. */
static int put_observable_value(struct jbuf *b, const cJSON *v, const char *path, char *err,
                                size_t errlen)
{
    char num[32];
    int n;
    if (cJSON_IsNumber(v) && (n = fmt_number(v->valuedouble, num)) > 0) {
        jb_str(b, num, (size_t)n);
        return 0;
    }
    if (!cJSON_IsString(v)) {
        char what[64];
        snprintf(what, sizeof(what), "a string of at most %d bytes or a number",
                 SL_EVENT_OBSERVABLE_VALUE_MAX);
        return expected(err, errlen, path, what, v);
    }
    return put_string(b, v, path, 0, SL_EVENT_OBSERVABLE_VALUE_MAX, err, errlen);
}

/* data_type: a non-empty name, lowercased ("auto" asks the worker to detect it). */
static int put_data_type(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    char lower[DATA_TYPE_MAX];
    size_t len;
    int rc = check_string(v, path, 1, DATA_TYPE_MAX, &len, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < len; i++) {
        char c = v->valuestring[i];
        lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    jb_str(b, lower, len);
    return 0;
}

enum { OBS_VALUE = 1, OBS_DATA_TYPE = 2 };

/* Validates and writes the value of one member of an observable. */
static int put_observable_member(struct jbuf *b, const cJSON *m, const char *path, unsigned *seen,
                                 char *err, size_t errlen)
{
    const char *key = m->string;
    if (strcmp(key, "value") == 0) {
        *seen |= OBS_VALUE;
        return put_observable_value(b, m, path, err, errlen);
    }
    if (strcmp(key, "data_type") == 0) {
        *seen |= OBS_DATA_TYPE;
        return put_data_type(b, m, path, err, errlen);
    }
    if (!strcmp(key, "ioc") || !strcmp(key, "spotted") || !strcmp(key, "safe"))
        return put_bool(b, m, path, err, errlen);
    if (strcmp(key, "tlp") == 0)
        return put_level(b, m, path, err, errlen);
    if (strcmp(key, "tags") == 0)
        return put_tags(b, m, path, err, errlen);
    if (!strcmp(key, "source_field") || !strcmp(key, "original_source_field"))
        return put_string(b, m, path, 0, SHORT_MAX, err, errlen);
    jb_value(b, m, 1); /* a client's own field: kept as given */
    return 0;
}

/* "<base>.<key>" for messages; keys longer than SHOW_MAX are shown cut. */
static void member_path(char *out, size_t cap, const char *base, size_t base_len, const char *key)
{
    size_t klen = 0;
    while (key[klen] >= 0x20 && key[klen] < 0x7f && key[klen] != '"' && key[klen] != '\\')
        klen++;
    if (key[klen] == 0 && base_len + klen + 2 <= cap && klen <= SHOW_MAX) {
        memcpy(out, base, base_len);
        out[base_len] = '.';
        memcpy(out + base_len + 1, key, klen + 1);
        return;
    }
    char shown[SHOW_MAX * 2 + 8];
    show_text(shown, sizeof(shown), key, strlen(key), SHOW_MAX);
    snprintf(out, cap, "%s.%s", base, shown);
}

static int put_observable(struct jbuf *b, const cJSON *o, int idx, char *err, size_t errlen)
{
    char path[48], mpath[sizeof(path) + SHOW_MAX * 2 + 16];
    unsigned seen = 0;
    int count = 0, rc;
    const cJSON *m;
    size_t path_len = (size_t)snprintf(path, sizeof(path), "observables[%d]", idx);
    if (!cJSON_IsObject(o))
        return expected(err, errlen, path, "an object", o);
    if ((rc = check_unique_keys(o, path, err, errlen)) != 0)
        return rc;
    jb_ch(b, '{');
    cJSON_ArrayForEach(m, o)
    {
        const char *key = m->string ? m->string : "";
        /* null is the same as leaving a field out */
        if (cJSON_IsNull(m))
            continue;
        member_path(mpath, sizeof(mpath), path, path_len, key);
        jb_key(b, &count, key);
        if ((rc = put_observable_member(b, m, mpath, &seen, err, errlen)) != 0)
            return rc;
        if ((rc = jb_check(b, mpath, err, errlen)) != 0)
            return rc;
    }
    jb_ch(b, '}');
    if (!(seen & OBS_VALUE)) {
        sl_set_err(err, errlen, "%s.value: required", path);
        return SL_EINVAL;
    }
    if (!(seen & OBS_DATA_TYPE)) {
        sl_set_err(err, errlen, "%s.data_type: required", path);
        return SL_EINVAL;
    }
    return 0;
}

static int put_observables(struct jbuf *b, const cJSON *v, const char *path, char *err,
                           size_t errlen)
{
    const cJSON *o;
    int idx = 0, rc;
    if (!cJSON_IsArray(v))
        return expected(err, errlen, path, "an array of objects", v);
    int n = cJSON_GetArraySize(v);
    if (n > SL_EVENT_OBSERVABLES_MAX) {
        sl_set_err(err, errlen, "%s: expected at most %d observables, got %d", path,
                   SL_EVENT_OBSERVABLES_MAX, n);
        return SL_EINVAL;
    }
    jb_ch(b, '[');
    cJSON_ArrayForEach(o, v)
    {
        if (idx > 0)
            jb_ch(b, ',');
        if ((rc = put_observable(b, o, idx++, err, errlen)) != 0)
            return rc;
    }
    jb_ch(b, ']');
    return 0;
}

/* ---- top-level fields ------------------------------------------------------------------- */

enum {
    F_TITLE = 1,
    F_DESCRIPTION = 2,
    F_REFERENCE = 4,
    F_SEVERITY = 8,
    F_TLP = 16,
};

static int f_title(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    return put_string(b, v, path, 1, SL_EVENT_TITLE_MAX, err, errlen);
}

static int f_description(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    return put_string(b, v, path, 0, SL_EVENT_TEXT_MAX, err, errlen);
}

static int f_reference(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    return put_string(b, v, path, 1, SL_EVENT_REFERENCE_MAX, err, errlen);
}

static int f_short(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    return put_string(b, v, path, 0, SHORT_MAX, err, errlen);
}

static int f_signature(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    return put_string(b, v, path, 0, SIGNATURE_MAX, err, errlen);
}

static int f_number(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    char num[32];
    int n;
    if (!cJSON_IsNumber(v) || (n = fmt_number(v->valuedouble, num)) < 0)
        return expected(err, errlen, path, "a number", v);
    jb_put(b, num, (size_t)n);
    return 0;
}

static int f_raw_log(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        jb_value(b, v, 1);
        return 0;
    }
    if (!cJSON_IsString(v)) {
        char what[80];
        snprintf(what, sizeof(what), "a string of at most %d bytes, an object or an array",
                 SL_EVENT_RAW_LOG_MAX);
        return expected(err, errlen, path, what, v);
    }
    return put_string(b, v, path, 0, SL_EVENT_RAW_LOG_MAX, err, errlen);
}

static int f_original_date(struct jbuf *b, const cJSON *v, const char *path, char *err,
                           size_t errlen)
{
    int64_t ms;
    char iso[25];
    if (!cJSON_IsString(v) || !v->valuestring ||
        sl_time_parse(v->valuestring, strlen(v->valuestring), &ms) != 0 || ms < 0 ||
        ms > DATE_MAX_MS)
        return expected(err, errlen, path,
                        "an ISO 8601 date-time from 1970 to 9999 such as "
                        "\"2024-05-01T12:00:00Z\"",
                        v);
    sl_time_format(ms, iso);
    jb_cstr(b, iso);
    return 0;
}

static int f_entity(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen)
{
    if (!cJSON_IsObject(v))
        return expected(err, errlen, path, "an object", v);
    jb_value(b, v, 1);
    return 0;
}

typedef int (*field_fn)(struct jbuf *b, const cJSON *v, const char *path, char *err, size_t errlen);

static const struct field {
    const char *name;
    field_fn put;
    unsigned flag;
} fields[] = {
    {"title", f_title, F_TITLE},
    {"description", f_description, F_DESCRIPTION},
    {"reference", f_reference, F_REFERENCE},
    {"severity", put_level, F_SEVERITY},
    {"tlp", put_level, F_TLP},
    {"source", f_short, 0},
    {"signature", f_signature, 0},
    {"detection_id", f_short, 0},
    {"category", f_short, 0},
    {"risk_score", f_number, 0},
    {"tags", put_tags, 0},
    {"observables", put_observables, 0},
    {"raw_log", f_raw_log, 0},
    {"original_date", f_original_date, 0},
    {"entity", f_entity, 0},
};

/* Validates and writes one member of the event. */
static int put_field(struct jbuf *b, int *count, const cJSON *f, unsigned *seen, char *err,
                     size_t errlen)
{
    char key[SHOW_MAX * 2 + 8];
    const struct field *def = NULL;
    int rc;
    if (!f->string) {
        sl_set_err(err, errlen, "event: a member without a name");
        return SL_EINVAL;
    }
    if (is_internal(f->string)) {
        show_text(key, sizeof(key), f->string, strlen(f->string), SHOW_MAX);
        sl_set_err(err, errlen,
                   f->string[0] == '_' ? "%s: fields starting with \"_\" are internal; not "
                                         "accepted from clients"
                                       : "%s: internal field set by the server; not accepted from "
                                         "clients",
                   key);
        return SL_EINVAL;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && !def; i++)
        if (strcmp(f->string, fields[i].name) == 0)
            def = &fields[i];
    if (!def) { /* a client's own field: kept as given, as Reflex does */
        jb_key(b, count, f->string);
        jb_value(b, f, 1);
        if (b->rc == 0)
            return 0;
        show_text(key, sizeof(key), f->string, strlen(f->string), SHOW_MAX);
        return jb_check(b, key, err, errlen);
    }
    if (cJSON_IsNull(f)) /* the same as leaving the field out */
        return 0;
    *seen |= def->flag;
    jb_key(b, count, f->string);
    if ((rc = def->put(b, f, def->name, err, errlen)) != 0)
        return rc;
    return jb_check(b, def->name, err, errlen);
}

/* Defaults for what the client left out, then the fields the server sets. */
static int put_server_fields(struct jbuf *b, int *count, unsigned seen,
                             const struct sl_ingest_ctx *ctx, char *err, size_t errlen)
{
    char iso[25], uuid[SL_UUID_LEN + 1];
    if (!(seen & F_TITLE)) {
        sl_set_err(err, errlen, "title: required");
        return SL_EINVAL;
    }
    if (!(seen & F_DESCRIPTION)) {
        jb_key(b, count, "description");
        jb_put(b, "\"\"", 2);
    }
    if (!(seen & F_SEVERITY)) {
        jb_key(b, count, "severity");
        jb_ch(b, '1');
    }
    if (!(seen & F_TLP)) {
        jb_key(b, count, "tlp");
        jb_ch(b, '2');
    }
    if (!(seen & F_REFERENCE)) {
        sl_uuid4(uuid);
        jb_key(b, count, "reference");
        jb_cstr(b, uuid);
    }
    jb_key(b, count, "organization");
    jb_cstr(b, ctx->org_uuid);
    jb_key(b, count, "agent_uuid");
    jb_cstr(b, ctx->agent_id ? ctx->agent_id : "");
    jb_key(b, count, "agent_type");
    jb_cstr(b, ctx->agent_type ? ctx->agent_type : "");
    jb_key(b, count, "ingest_task");
    jb_cstr(b, ctx->task_id ? ctx->task_id : "");
    jb_key(b, count, "ingest_index");
    jb_num(b, (double)ctx->ingest_index);
    sl_time_format(ctx->received_ms, iso);
    jb_key(b, count, "received_at");
    jb_cstr(b, iso);
    return jb_check(b, "event", err, errlen);
}

int sl_event_normalize(const cJSON *event, const struct sl_ingest_ctx *ctx, char **out,
                       size_t *out_len, char *err, size_t errlen)
{
    struct jbuf b = {0};
    unsigned seen = 0;
    int count = 0, rc;
    const cJSON *f;
    *out = NULL;
    *out_len = 0;
    if (!ctx || !ctx->org_uuid || !ctx->org_uuid[0]) {
        sl_set_err(err, errlen, "event: no organization in the request context");
        return SL_EINVAL;
    }
    if (!cJSON_IsObject(event))
        return expected(err, errlen, "event", "an object", event);
    if ((rc = check_unique_keys(event, "event", err, errlen)) != 0)
        return rc;
    jb_ch(&b, '{');
    cJSON_ArrayForEach(f, event)
    {
        if ((rc = put_field(&b, &count, f, &seen, err, errlen)) != 0)
            goto out;
    }
    if ((rc = put_server_fields(&b, &count, seen, ctx, err, errlen)) != 0)
        goto out;
    jb_ch(&b, '}');
    if ((rc = jb_check(&b, "event", err, errlen)) != 0)
        goto out;
    b.p[b.len] = 0;
    *out = b.p;
    *out_len = b.len;
    b.p = NULL;
out:
    free(b.p);
    return rc;
}
