/* The Intel List endpoints: lists (values, patterns, csv) and their values. Every value of a
 * request is checked before anything is stored, so a bad one leaves the store as it was. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "rules/intel.h"
#include "rules/rql.h"

#define WHAT            "intel list"
#define TEXT_MAX        65536
#define URL_MAX         2048
#define HEADER_MAX      255  /* bytes of a csv column name */
#define SHOW_MAX        256  /* bytes of a bad value quoted in an error */
#define VALUES_PAGE     1000 /* values per page by default */
#define VALUES_PAGE_MAX 10000

static const struct sl_api_field list_fields[] = {
    {"uuid", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"organization", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"name", SL_FT_STR, 1, SL_META_NAME_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"list_type", SL_FT_STR, 1, 16, SL_FF_REQUIRED, NULL},
    {"data_type", SL_FT_STR, 1, 64, SL_FF_NULL, NULL},
    {"csv_headers", SL_FT_ANY, 0, 0, SL_FF_NULL, NULL},
    {"csv_header_map", SL_FT_ANY, 0, 0, SL_FF_NULL, NULL},
    {"case_sensitive", SL_FT_BOOL, 0, 0, 0, "false"},
    {"tag_on_match", SL_FT_BOOL, 0, 0, 0, "false"},
    {"flag_ioc", SL_FT_BOOL, 0, 0, 0, "false"},
    {"flag_safe", SL_FT_BOOL, 0, 0, 0, "false"},
    {"flag_spotted", SL_FT_BOOL, 0, 0, 0, "false"},
    {"global_list", SL_FT_BOOL, 0, 0, 0, "false"},
    {"active", SL_FT_BOOL, 0, 0, 0, "true"},
    {"url", SL_FT_URL, 0, URL_MAX, SL_FF_NULL, NULL},
    {"poll_interval", SL_FT_INT, 5, 10080, 0, "60"},
    {"last_polled", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
};
#define NLIST_FIELDS (sizeof(list_fields) / sizeof(list_fields[0]))

/* What parsing and checking values needs to know of their list. */
struct list_shape {
    enum sl_intel_type type;
    int ip;             /* a values list of data type "ip": addresses and CIDR networks */
    int case_sensitive; /* for compiling patterns */
    size_t ncolumns;    /* csv */
};

/* The values of one request: slices into the body, or (csv) rows rendered as JSON arrays in
 * buf. Grows by doubling: linear in the number of values. */
struct vals {
    struct sl_list_value *v;
    size_t *off; /* csv: where row i starts in buf (v[i].value is set once buf stops moving) */
    size_t n, cap;
    char *buf;
    size_t len, bufcap;
};

static void vals_free(struct vals *vs)
{
    free(vs->v);
    free(vs->off);
    free(vs->buf);
    memset(vs, 0, sizeof(*vs));
}

static int vals_push(struct vals *vs, const char *value, size_t len, size_t off)
{
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 256;
        struct sl_list_value *v = realloc(vs->v, cap * sizeof(*v));
        if (!v)
            return SL_ENOMEM;
        vs->v = v;
        size_t *o = realloc(vs->off, cap * sizeof(*o));
        if (!o)
            return SL_ENOMEM;
        vs->off = o;
        vs->cap = cap;
    }
    vs->v[vs->n].value = value;
    vs->v[vs->n].len = len;
    vs->off[vs->n] = off;
    vs->n++;
    return 0;
}

static int buf_put(struct vals *vs, const char *p, size_t n)
{
    if (vs->bufcap - vs->len < n + 1) {
        size_t cap = vs->bufcap ? vs->bufcap : 4096;
        while (cap - vs->len < n + 1)
            cap *= 2;
        char *b = realloc(vs->buf, cap);
        if (!b)
            return SL_ENOMEM;
        vs->buf = b;
        vs->bufcap = cap;
    }
    memcpy(vs->buf + vs->len, p, n);
    vs->len += n;
    return 0;
}

/* Appends p[0..n) as the inside of a JSON string, escaped as cJSON_Print escapes (so a row
 * reads the same whoever wrote it). */
static int buf_put_escaped(struct vals *vs, const char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        char esc[8];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (buf_put(vs, p + run, i - run))
            return SL_ENOMEM;
        static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
        const char *hit = ch ? strchr(from, ch) : NULL;
        if (hit)
            snprintf(esc, sizeof(esc), "\\%c", to[hit - from]);
        else
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
        if (buf_put(vs, esc, strlen(esc)))
            return SL_ENOMEM;
        run = i + 1;
    }
    return buf_put(vs, p + run, n - run);
}

/* csv rows were written to buf: point the values at them. */
static void vals_fix(struct vals *vs, const struct list_shape *sh)
{
    if (sh->type != SL_INTEL_CSV)
        return;
    for (size_t i = 0; i < vs->n; i++)
        vs->v[i].value = vs->buf + vs->off[i];
}

/* Where a bad value was, for the error. */
struct where {
    size_t index; /* among the request's values, from 0 */
    size_t line;  /* text form: the line it starts on, from 1 (0: array form) */
};

static void where_fmt(const struct where *w, char *out, size_t outlen)
{
    if (w->line)
        snprintf(out, outlen, "values: line %zu", w->line);
    else
        snprintf(out, outlen, "values[%zu]", w->index);
}

/* Answers 400 naming the value's index (and line) and the value. */
static void reply_bad_value(struct sl_http_req *req, const struct where *w, const char *value,
                            size_t len, const char *msg)
{
    char at[64], err[800], show[SHOW_MAX + 4];
    where_fmt(w, at, sizeof(at));
    snprintf(show, sizeof(show), "%.*s%s", (int)(len > SHOW_MAX ? SHOW_MAX : len), value,
             len > SHOW_MAX ? "..." : "");
    snprintf(err, sizeof(err), "%s: %s", at, msg);
    cJSON *x = cJSON_CreateObject();
    if (x) {
        cJSON_AddNumberToObject(x, "index", (double)w->index);
        if (w->line)
            cJSON_AddNumberToObject(x, "line", (double)w->line);
        cJSON_AddStringToObject(x, "value", show);
    }
    sl_api_meta_reply_invalid_json(req, err, x);
}

/* Checks one value of a values or patterns list. 0, or SL_EINVAL with msg. */
static int check_value(const struct list_shape *sh, const char *v, size_t len, char *msg,
                       size_t msglen)
{
    char perr[256];
    if (len == 0) {
        sl_set_err(msg, msglen, "empty value");
        return SL_EINVAL;
    }
    if (len > SL_INTEL_VALUE_MAX) {
        sl_set_err(msg, msglen, "longer than %d bytes", SL_INTEL_VALUE_MAX);
        return SL_EINVAL;
    }
    if (sh->type == SL_INTEL_VALUES && sh->ip) {
        uint8_t addr[16];
        int bits;
        if (sl_ip_parse(v, len, 1, addr, &bits) != 0) {
            sl_set_err(msg, msglen, "\"%.*s\" is not an IP address or CIDR network",
                       (int)(len > 64 ? 64 : len), v);
            return SL_EINVAL;
        }
    } else if (sh->type == SL_INTEL_PATTERNS &&
               sl_intel_pattern_check(v, len, sh->case_sensitive, perr, sizeof(perr)) != 0) {
        sl_set_err(msg, msglen, "pattern does not compile: %s", perr);
        return SL_EINVAL;
    }
    return 0;
}

/* Whether s[i] ends a line: "\n", "\r\n", or a "\r" that ends the text. */
static int line_end(const char *s, size_t len, size_t i)
{
    return s[i] == '\n' || (s[i] == '\r' && (i + 1 == len || s[i + 1] == '\n'));
}

/* Parses one field of a CSV record at s[*pos] into buf (JSON-escaped) and counts its bytes
 * (unescaped) in *out_bytes and the line breaks inside it in *lines. */
static int csv_field(struct vals *vs, const char *s, size_t len, size_t *pos, size_t *out_bytes,
                     size_t *lines, char *msg, size_t msglen)
{
    size_t i = *pos, bytes = 0;
    int rc = 0;
    if (i < len && s[i] == '"') {
        i++;
        for (;;) {
            const char *q = memchr(s + i, '"', len - i);
            if (!q) {
                sl_set_err(msg, msglen, "malformed CSV: a quoted field is not closed");
                return SL_EINVAL;
            }
            size_t n = (size_t)(q - (s + i));
            for (size_t k = i; k < i + n; k++)
                *lines += s[k] == '\n';
            if ((rc = buf_put_escaped(vs, s + i, n)) != 0)
                return rc;
            bytes += n;
            i += n + 1;
            if (i < len && s[i] == '"') { /* "" is one quote */
                if ((rc = buf_put(vs, "\\\"", 2)) != 0)
                    return rc;
                bytes++;
                i++;
                continue;
            }
            break;
        }
        if (i < len && s[i] != ',' && !line_end(s, len, i)) {
            sl_set_err(msg, msglen, "malformed CSV: text after the closing quote of a field");
            return SL_EINVAL;
        }
    } else {
        size_t k = i;
        while (k < len && s[k] != ',' && !line_end(s, len, k))
            k++;
        rc = buf_put_escaped(vs, s + i, k - i);
        bytes = k - i;
        i = k;
    }
    *pos = i;
    *out_bytes = bytes;
    return rc;
}

/* Parses one RFC 4180 record of s[*pos..len) into buf as a JSON array of strings (its fields),
 * leaving *pos after its line end. Returns 0, or SL_EINVAL with msg. */
static int csv_record(struct vals *vs, const char *s, size_t len, size_t *pos, size_t *out_cells,
                      size_t *out_lines, char *msg, size_t msglen)
{
    size_t i = *pos, cells = 0, lines = 1;
    int rc = buf_put(vs, "[", 1);
    while (rc == 0) {
        size_t bytes = 0;
        rc = buf_put(vs, cells ? ",\"" : "\"", cells ? 2 : 1);
        if (rc == 0)
            rc = csv_field(vs, s, len, &i, &bytes, &lines, msg, msglen);
        if (rc == 0 && bytes > SL_INTEL_VALUE_MAX) {
            sl_set_err(msg, msglen, "cell %zu is longer than %d bytes", cells + 1,
                       SL_INTEL_VALUE_MAX);
            rc = SL_EINVAL;
        }
        if (rc == 0)
            rc = buf_put(vs, "\"", 1);
        cells++;
        if (rc || i >= len || s[i] != ',')
            break;
        i++;
    }
    if (rc == 0 && i < len) /* the line end */
        i += s[i] == '\r' && i + 1 < len ? 2 : 1;
    if (rc == 0)
        rc = buf_put(vs, "]", 1);
    *pos = i;
    *out_cells = cells;
    *out_lines = lines;
    return rc;
}

/* Adds one csv row given as an array of cells. */
static int csv_cells(struct vals *vs, const cJSON *row, size_t *out_cells, char *msg, size_t msglen)
{
    const cJSON *cell;
    size_t cells = 0;
    int rc = buf_put(vs, "[", 1);
    cJSON_ArrayForEach(cell, row)
    {
        if (!cJSON_IsString(cell)) {
            sl_set_err(msg, msglen, "cell %zu: expected a string", cells + 1);
            return SL_EINVAL;
        }
        size_t n = strlen(cell->valuestring);
        if (n > SL_INTEL_VALUE_MAX) {
            sl_set_err(msg, msglen, "cell %zu is longer than %d bytes", cells + 1,
                       SL_INTEL_VALUE_MAX);
            return SL_EINVAL;
        }
        if (rc == 0)
            rc = buf_put(vs, cells ? ",\"" : "\"", cells ? 2 : 1);
        if (rc == 0)
            rc = buf_put_escaped(vs, cell->valuestring, n);
        if (rc == 0)
            rc = buf_put(vs, "\"", 1);
        cells++;
    }
    if (rc == 0)
        rc = buf_put(vs, "]", 1);
    *out_cells = cells;
    return rc;
}

/* One csv row: from an array of cells or one CSV line. Checks the number of cells. */
static int add_row(struct vals *vs, const struct list_shape *sh, const cJSON *item,
                   const struct where *w, struct sl_http_req *req)
{
    char msg[400];
    size_t off = vs->len, cells = 0, lines = 0, pos = 0;
    int rc;
    if (cJSON_IsArray(item)) {
        rc = csv_cells(vs, item, &cells, msg, sizeof(msg));
    } else if (cJSON_IsString(item)) {
        size_t len = strlen(item->valuestring);
        rc = csv_record(vs, item->valuestring, len, &pos, &cells, &lines, msg, sizeof(msg));
        if (rc == 0 && pos < len) {
            sl_set_err(msg, sizeof(msg), "one CSV row per string (found a line break)");
            rc = SL_EINVAL;
        }
    } else {
        sl_set_err(msg, sizeof(msg), "expected a row: an array of cells or one CSV line");
        rc = SL_EINVAL;
    }
    if (rc == 0 && cells != sh->ncolumns) {
        sl_set_err(msg, sizeof(msg), "expected %zu cells (one per csv_headers column), got %zu",
                   sh->ncolumns, cells);
        rc = SL_EINVAL;
    }
    if (rc == 0)
        return vals_push(vs, NULL, vs->len - off, off);
    if (rc == SL_EINVAL) {
        const char *show = cJSON_IsString(item) ? item->valuestring : "";
        reply_bad_value(req, w, show, strlen(show), msg);
    }
    return rc;
}

/* CSV text: every non-blank record. */
static int add_csv_text(struct vals *vs, const struct list_shape *sh, const char *s,
                        struct sl_http_req *req)
{
    size_t len = strlen(s), pos = 0, line = 1;
    struct where w = {0, 0};
    char msg[400];
    while (pos < len) {
        if (s[pos] == '\n' || (s[pos] == '\r' && pos + 1 < len && s[pos + 1] == '\n')) {
            pos += s[pos] == '\r' ? 2 : 1; /* a blank line */
            line++;
            continue;
        }
        size_t start = pos, off = vs->len, cells = 0, lines = 0;
        w.line = line;
        int rc = csv_record(vs, s, len, &pos, &cells, &lines, msg, sizeof(msg));
        if (rc == 0 && cells != sh->ncolumns) {
            sl_set_err(msg, sizeof(msg),
                       "expected %zu cells (one per csv_headers column), got "
                       "%zu",
                       sh->ncolumns, cells);
            rc = SL_EINVAL;
        }
        if (rc == 0)
            rc = vals_push(vs, NULL, vs->len - off, off);
        if (rc) {
            if (rc == SL_EINVAL) {
                const char *nl = memchr(s + start, '\n', len - start);
                reply_bad_value(req, &w, s + start, nl ? (size_t)(nl - (s + start)) : len - start,
                                msg);
            }
            return rc;
        }
        line += lines;
        w.index++;
    }
    return 0;
}

/* Newline-separated text: one value per non-blank line, spaces around it dropped. */
static int add_text(struct vals *vs, const struct list_shape *sh, const char *s, int check,
                    struct sl_http_req *req)
{
    struct where w = {0, 0};
    char msg[400];
    size_t line = 0;
    const char *p = s;
    while (*p) {
        const char *nl = strchr(p, '\n');
        const char *e = nl ? nl : p + strlen(p);
        const char *b = p;
        line++;
        p = nl ? nl + 1 : e;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (b == e)
            continue;
        w.line = line;
        if (check && check_value(sh, b, (size_t)(e - b), msg, sizeof(msg)) != 0) {
            reply_bad_value(req, &w, b, (size_t)(e - b), msg);
            return SL_EINVAL;
        }
        if (vals_push(vs, b, (size_t)(e - b), 0))
            return SL_ENOMEM;
        w.index++;
    }
    return 0;
}

/* Collects (and with check, validates) the values of a request: an array (strings; csv: rows),
 * or one newline-separated text. Answers and returns non-zero on failure. The values borrow
 * from values (and vs->buf). */
static int parse_values(const cJSON *values, const struct list_shape *sh, int check,
                        struct vals *vs, struct sl_http_req *req)
{
    int rc = 0;
    if (!values || cJSON_IsNull(values))
        return 0;
    if (cJSON_IsString(values)) {
        rc = sh->type == SL_INTEL_CSV ? add_csv_text(vs, sh, values->valuestring, req)
                                      : add_text(vs, sh, values->valuestring, check, req);
    } else if (cJSON_IsArray(values)) {
        const cJSON *it;
        struct where w = {0, 0};
        char msg[400];
        cJSON_ArrayForEach(it, values)
        {
            if (sh->type == SL_INTEL_CSV) {
                rc = add_row(vs, sh, it, &w, req);
            } else if (!cJSON_IsString(it)) {
                sl_set_err(msg, sizeof(msg), "expected a string");
                reply_bad_value(req, &w, "", 0, msg);
                rc = SL_EINVAL;
            } else {
                size_t len = strlen(it->valuestring);
                if (check && check_value(sh, it->valuestring, len, msg, sizeof(msg)) != 0) {
                    reply_bad_value(req, &w, it->valuestring, len, msg);
                    rc = SL_EINVAL;
                } else {
                    rc = vals_push(vs, it->valuestring, len, 0);
                }
            }
            if (rc)
                break;
            w.index++;
        }
    } else {
        sl_api_meta_reply_invalid(req, "values: expected an array of values (csv: rows) or one "
                                       "newline-separated text");
        return SL_EINVAL;
    }
    if (rc == SL_ENOMEM)
        sl_api_meta_reply(req, 503, NULL);
    if (rc == 0)
        vals_fix(vs, sh);
    return rc;
}

/* ---- list documents ---- */

static const char *str(const cJSON *doc, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int flag(const cJSON *doc, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, name));
}

static void shape_of(const cJSON *doc, struct list_shape *sh)
{
    const char *t = str(doc, "list_type"), *dt = str(doc, "data_type");
    memset(sh, 0, sizeof(*sh));
    sh->type = t && strcmp(t, "patterns") == 0 ? SL_INTEL_PATTERNS
               : t && strcmp(t, "csv") == 0    ? SL_INTEL_CSV
                                               : SL_INTEL_VALUES;
    sh->ip = dt && strcmp(dt, "ip") == 0;
    sh->case_sensitive = flag(doc, "case_sensitive");
    sh->ncolumns = (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "csv_headers"));
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* A data type name the list may use: of the organization or the default one. */
static int known_type(struct sl_api_meta_ctx *c, char *name, const char *field, char *err,
                      size_t errlen)
{
    lower(name);
    int rc = sl_api_meta_data_type_exists(c, c->org, name);
    if (rc == 0) {
        sl_set_err(err, errlen,
                   "%s: no data type named '%.64s' in the organization or the "
                   "default organization",
                   field, name);
        return SL_EINVAL;
    }
    return rc < 0 ? rc : 0;
}

static int check_csv(struct sl_api_meta_ctx *c, cJSON *doc, char *err, size_t errlen)
{
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(doc, "csv_headers"), *h, *k;
    cJSON *map = cJSON_GetObjectItemCaseSensitive(doc, "csv_header_map"), *v;
    int i = 0, n = cJSON_GetArraySize(headers), rc;
    if (str(doc, "data_type")) {
        sl_set_err(err, errlen,
                   "data_type: csv lists map a data type to each column "
                   "(csv_header_map)");
        return SL_EINVAL;
    }
    if (!cJSON_IsArray(headers) || n < 1 || n > SL_INTEL_MAX_COLUMNS) {
        sl_set_err(err, errlen, "csv_headers: expected an array of 1..%d column names",
                   SL_INTEL_MAX_COLUMNS);
        return SL_EINVAL;
    }
    cJSON_ArrayForEach(h, headers)
    {
        size_t len = cJSON_IsString(h) ? strlen(h->valuestring) : 0;
        if (len < 1 || len > HEADER_MAX) {
            sl_set_err(err, errlen, "csv_headers[%d]: expected a column name of 1..%d bytes", i,
                       HEADER_MAX);
            return SL_EINVAL;
        }
        for (k = headers->child; k != h; k = k->next)
            if (strcmp(k->valuestring, h->valuestring) == 0) {
                sl_set_err(err, errlen, "csv_headers[%d]: column '%.64s' appears twice", i,
                           h->valuestring);
                return SL_EINVAL;
            }
        i++;
    }
    if (!cJSON_IsObject(map)) {
        sl_set_err(err, errlen,
                   "csv_header_map: required for csv lists: an object mapping each "
                   "column to a data type name or \"none\"");
        return SL_EINVAL;
    }
    cJSON_ArrayForEach(v, map)
    {
        int known = 0;
        cJSON_ArrayForEach(h, headers) known |= strcmp(h->valuestring, v->string) == 0;
        if (!known) {
            sl_set_err(err, errlen, "csv_header_map: '%.64s' is not a column of csv_headers",
                       v->string);
            return SL_EINVAL;
        }
        if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 64) {
            sl_set_err(err, errlen,
                       "csv_header_map: column '%.64s': expected a data type name "
                       "or \"none\"",
                       v->string);
            return SL_EINVAL;
        }
        if (strcasecmp(v->valuestring, "none") == 0) {
            lower(v->valuestring);
            continue;
        }
        char field[100];
        snprintf(field, sizeof(field), "csv_header_map: column '%.64s'", v->string);
        if ((rc = known_type(c, v->valuestring, field, err, errlen)) != 0)
            return rc;
    }
    cJSON_ArrayForEach(h, headers) if (!cJSON_GetObjectItemCaseSensitive(map, h->valuestring))
    {
        sl_set_err(err, errlen,
                   "csv_header_map: column '%.64s' is not mapped (map it to a data "
                   "type name or \"none\")",
                   h->valuestring);
        return SL_EINVAL;
    }
    return 0;
}

/* Checks a whole list document after the field table. 0, SL_EINVAL with err, or a store
 * error. */
static int check_list(struct sl_api_meta_ctx *c, cJSON *doc, char *err, size_t errlen)
{
    const char *t = str(doc, "list_type");
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(doc, "data_type");
    if (strcmp(t, "values") != 0 && strcmp(t, "patterns") != 0 && strcmp(t, "csv") != 0) {
        sl_set_err(err, errlen, "list_type: expected values, patterns or csv, got \"%.32s\"", t);
        return SL_EINVAL;
    }
    if (flag(doc, "global_list") && strcmp(c->org, c->default_org) != 0) {
        sl_set_err(err, errlen,
                   "global_list: only lists of the default organization may be "
                   "global");
        return SL_EINVAL;
    }
    if (strcmp(t, "csv") == 0)
        return check_csv(c, doc, err, errlen);
    if (!cJSON_IsString(dt)) {
        sl_set_err(err, errlen, "data_type: required for %s lists", t);
        return SL_EINVAL;
    }
    if (!cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "csv_headers")) ||
        !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "csv_header_map"))) {
        sl_set_err(err, errlen, "%s: only csv lists have columns",
                   cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "csv_headers"))
                       ? "csv_header_map"
                       : "csv_headers");
        return SL_EINVAL;
    }
    return known_type(c, dt->valuestring, "data_type", err, errlen);
}

static int add_count(struct sl_api_meta_ctx *c, const struct sl_meta *m, cJSON *out)
{
    int64_t n = 0;
    int rc = sl_store_list_values_count(c->st, m->uuid, &n);
    if (rc)
        return rc;
    return cJSON_AddNumberToObject(out, "value_count", (double)n) ? 0 : SL_ENOMEM;
}

static void reply_invalid_or(struct sl_http_req *req, int rc, const char *err)
{
    if (rc == SL_EINVAL)
        sl_api_meta_reply_invalid(req, err);
    else
        sl_api_meta_reply_store(req, rc, WHAT, NULL);
}

/* ---- CRUD ---- */

enum sl_http_next sl_api_list_list(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta *ms = NULL;
    size_t n = 0;
    if (sl_api_meta_open(api, req, 0, &c) == 0) {
        int rc = sl_store_meta_list(c.st, SL_META_LIST, c.org, 1, &ms, &n);
        if (rc)
            sl_api_meta_reply_store(req, rc, WHAT, NULL);
        else
            sl_api_meta_reply_list(&c, SL_META_LIST, "lists", ms, n, add_count);
        sl_store_meta_free(ms, n);
    }
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

enum sl_http_next sl_api_list_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    if (sl_api_meta_open(api, req, 0, &c) == 0 &&
        sl_api_meta_load(&c, SL_META_LIST, WHAT, 0, &m) == 0) {
        cJSON *o = sl_api_meta_render(SL_META_LIST, &m);
        int rc = o ? add_count(&c, &m, o) : SL_ENOMEM;
        if (rc)
            sl_api_meta_reply_store(req, rc, WHAT, NULL);
        else
            sl_api_meta_reply(req, 200, o);
        cJSON_Delete(o);
    }
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

static void reply_polled(struct sl_http_req *req)
{
    sl_http_reply_error(req, 409, "conflict", "the list is polled from its url");
}

static void reply_too_many(struct sl_http_req *req, int64_t max)
{
    char detail[200];
    snprintf(detail, sizeof(detail),
             "an intel list may hold at most %lld values (SLUICE_LIST_MAX_VALUES)", (long long)max);
    sl_http_reply_error(req, 409, "conflict", detail);
}

void sl_api_list_create(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    struct vals vs = {0};
    struct list_shape sh;
    cJSON *doc = NULL, *values = NULL;
    char err[512];
    int rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0)
        goto out;
    values = cJSON_DetachItemFromObjectCaseSensitive(c.body, "values");
    doc = cJSON_CreateObject();
    rc = doc ? sl_api_meta_apply(list_fields, NLIST_FIELDS, c.body, doc, 1, err, sizeof(err))
             : SL_ENOMEM;
    if (rc == 0)
        rc = check_list(&c, doc, err, sizeof(err));
    if (rc) {
        reply_invalid_or(req, rc, err);
        goto out;
    }
    if (str(doc, "url") && values && !cJSON_IsNull(values)) {
        reply_polled(req);
        goto out;
    }
    shape_of(doc, &sh);
    if (parse_values(values, &sh, 1, &vs, req) != 0)
        goto out;
    sl_uuid4(m.uuid);
    memcpy(m.org, c.org, sizeof(m.org));
    m.global = flag(doc, "global_list");
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "uuid", cJSON_CreateString(m.uuid));
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "organization", cJSON_CreateString(m.org));
    if (vs.n == 0) {
        sl_api_meta_save(&c, SL_META_LIST, WHAT, doc, "name", &m, 1, add_count);
        goto out;
    }
    if ((int64_t)vs.n > api->cfg->list_max_values) {
        reply_too_many(req, api->cfg->list_max_values);
        goto out;
    }
    /* The list first (the values need it), then the values; if they fail, the list goes. */
    char *text = cJSON_PrintUnformatted(doc);
    snprintf(m.name, sizeof(m.name), "%s", str(doc, "name"));
    m.doc = text;
    rc = text ? sl_store_meta_put(c.st, SL_META_LIST, &m, 1) : SL_ENOMEM;
    if (rc) {
        sl_api_meta_reply_store(req, rc, WHAT, m.name);
        goto out;
    }
    size_t added = 0;
    rc = sl_store_list_values_add(c.st, m.uuid, vs.v, vs.n, 0, &added);
    if (rc) {
        int drc = sl_store_meta_delete(c.st, SL_META_LIST, m.uuid);
        if (drc)
            SL_ERROR("list %s: values failed (%s) and the list could not be removed: %s", m.uuid,
                     sl_strerror(rc), sl_strerror(drc));
        sl_api_meta_reply_store(req, rc, WHAT, NULL);
        goto out;
    }
    free(m.doc);
    m.doc = NULL;
    rc = sl_store_meta_get(c.st, SL_META_LIST, m.uuid, &m);
    cJSON *o = rc ? NULL : sl_api_meta_render(SL_META_LIST, &m);
    if (o && (rc = add_count(&c, &m, o)) == 0)
        sl_api_meta_reply(req, 201, o);
    else
        sl_api_meta_reply_store(req, rc ? rc : SL_ENOMEM, WHAT, NULL);
    cJSON_Delete(o);
    SL_INFO("intel list %s '%s' created with %zu values", m.uuid, m.name, added);
out:
    vals_free(&vs);
    cJSON_Delete(values);
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
}

/* Whether an event rule names the list (by its name) in its query: its rules, or every
 * organization's when the list serves them all. 1 (why in why), 0, or a store error. */
static int used_by_rule(struct sl_api_meta_ctx *c, const struct sl_meta *list, char *why,
                        size_t len)
{
    struct sl_meta *ms = NULL;
    size_t n = 0;
    int all = list->global || strcmp(list->org, c->default_org) == 0;
    int rc = sl_store_meta_list(c->st, SL_META_RULE, all ? NULL : list->org, 0, &ms, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!ms[i].doc || !strstr(ms[i].doc, list->name))
            continue; /* cheap: a rule that names the list has its name in the document */
        cJSON *d = cJSON_Parse(ms[i].doc);
        const char *q = str(d, "query");
        struct sl_rql *prog = NULL;
        struct sl_rql_error rerr;
        if (q && sl_rql_compile(q, strlen(q), &prog, &rerr) == 0) {
            const char *const *names;
            size_t nn = sl_rql_list_refs(prog, &names);
            for (size_t k = 0; k < nn && rc == 0; k++)
                if (strcmp(names[k], list->name) == 0) {
                    snprintf(why, len, "it is used by event rule '%.200s'", ms[i].name);
                    rc = 1;
                }
            sl_rql_free(prog);
        }
        cJSON_Delete(d);
    }
    sl_store_meta_free(ms, n);
    return rc;
}

/* A change of type, data type or columns would leave the stored values unchecked against it. */
static int shape_changed(const cJSON *before, const cJSON *after)
{
    static const char *const names[] = {"list_type", "data_type", "csv_headers"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(before, names[i]),
                           cJSON_GetObjectItemCaseSensitive(after, names[i]), 1))
            return 1;
    return 0;
}

/* What a list update may not do: answers 409 and returns non-zero. */
static int update_conflict(struct sl_api_meta_ctx *c, const struct sl_meta *m, const cJSON *before,
                           const cJSON *after)
{
    char why[300], detail[600];
    int64_t count = 0;
    int rc = 0;
    if (shape_changed(before, after) &&
        (rc = sl_store_list_values_count(c->st, m->uuid, &count)) == 0 && count > 0) {
        sl_http_reply_error(c->req, 409, "conflict",
                            "list_type, data_type and csv_headers cannot change while the list has "
                            "values: delete them first");
        return SL_EEXIST;
    }
    if (rc == 0 && strcmp(str(before, "name"), str(after, "name")) != 0 &&
        (rc = used_by_rule(c, m, why, sizeof(why))) == 1) {
        snprintf(detail, sizeof(detail), "the list '%.200s' cannot be renamed: %s", m->name, why);
        sl_http_reply_error(c->req, 409, "conflict", detail);
        return SL_EEXIST;
    }
    if (rc)
        sl_api_meta_reply_store(c->req, rc, WHAT, NULL);
    return rc;
}

void sl_api_list_update(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    cJSON *doc = NULL, *before = NULL;
    char err[512];
    int rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0 || sl_api_meta_load(&c, SL_META_LIST, WHAT, 1, &m))
        goto out;
    if (cJSON_GetObjectItemCaseSensitive(c.body, "values")) {
        sl_api_meta_reply_invalid(req, "values: change values with POST or DELETE "
                                       "/api/v2.0/list/<uuid>/values");
        goto out;
    }
    doc = cJSON_Parse(m.doc);
    before = cJSON_Duplicate(doc, 1);
    rc = cJSON_IsObject(doc) && before
             ? sl_api_meta_apply(list_fields, NLIST_FIELDS, c.body, doc, 0, err, sizeof(err))
             : SL_ENOMEM;
    if (rc == 0)
        rc = check_list(&c, doc, err, sizeof(err));
    if (rc) {
        reply_invalid_or(req, rc, err);
        goto out;
    }
    if (update_conflict(&c, &m, before, doc) != 0)
        goto out;
    m.global = flag(doc, "global_list");
    sl_api_meta_save(&c, SL_META_LIST, WHAT, doc, "name", &m, 0, add_count);
out:
    cJSON_Delete(before);
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
}

enum sl_http_next sl_api_list_delete(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    char why[300], detail[600];
    int rc;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || sl_api_meta_load(&c, SL_META_LIST, WHAT, 1, &m))
        goto out;
    if ((rc = used_by_rule(&c, &m, why, sizeof(why))) != 0) {
        snprintf(detail, sizeof(detail), "the list '%.200s' cannot be deleted: %s", m.name, why);
        if (rc == 1)
            sl_http_reply_error(req, 409, "conflict", detail);
        else
            sl_api_meta_reply_store(req, rc, WHAT, NULL);
        goto out;
    }
    rc = sl_store_meta_delete(c.st, SL_META_LIST, m.uuid);
    if (rc) {
        sl_api_meta_reply_store(req, rc, WHAT, NULL);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "uuid", m.uuid);
        cJSON_AddBoolToObject(o, "deleted", 1);
    }
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(o);
    SL_INFO("intel list %s '%s' deleted by %s", m.uuid, m.name, c.who->key_id);
out:
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* POST /api/v2.0/list/<uuid>/poll: asks the poller to fetch a url-fed list at its next check
 * (SLUICE_LIST_POLL_CHECK) rather than when poll_interval has passed. */
enum sl_http_next sl_api_list_poll(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    cJSON *doc = NULL;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || sl_api_meta_load(&c, SL_META_LIST, WHAT, 1, &m))
        goto out;
    doc = cJSON_Parse(m.doc);
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(doc, "url");
    if (!cJSON_IsString(url) || !url->valuestring[0]) {
        sl_http_reply_error(req, 409, "conflict", "the list has no url to poll");
        goto out;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "poll_requested");
    if (!cJSON_AddTrueToObject(doc, "poll_requested")) {
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    sl_api_meta_save(&c, SL_META_LIST, WHAT, doc, "name", &m, 0, NULL);
out:
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- values ---- */

static int query_int(struct sl_http_req *req, const char *name, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *v = sl_http_query_get(&req->query, name);
    char detail[200];
    if (!v || !v[0])
        return 0;
    if (sl_parse_int64(v, min, max, out) == 0)
        return 0;
    snprintf(detail, sizeof(detail), "%s=%.48s: expected an integer %lld..%lld", name, v,
             (long long)min, (long long)max);
    sl_http_reply_error(req, 400, "invalid parameter", detail);
    return SL_EINVAL;
}

/* {"values": <the store's array>, "next": N|null, "total": N}, moving the array in place. */
static char *values_body(char *values, int64_t next, int64_t total, size_t *out_len)
{
    static const char head[] = "{\"values\":";
    const size_t hlen = sizeof(head) - 1;
    char tail[96], nx[24];
    if (next > 0)
        snprintf(nx, sizeof(nx), "%lld", (long long)next);
    else
        snprintf(nx, sizeof(nx), "null");
    int n = snprintf(tail, sizeof(tail), ",\"next\":%s,\"total\":%lld}", nx, (long long)total);
    size_t len = strlen(values);
    char *out = realloc(values, hlen + len + (size_t)n + 1);
    if (!out)
        return NULL;
    memmove(out + hlen, out, len);
    memcpy(out, head, hlen);
    memcpy(out + hlen + len, tail, (size_t)n + 1);
    *out_len = hlen + len + (size_t)n;
    return out;
}

enum sl_http_next sl_api_list_values_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    int64_t after = 0, limit = VALUES_PAGE, next = 0, total = 0;
    char *json = NULL;
    if (query_int(req, "after", 0, INT64_MAX, &after) ||
        query_int(req, "limit", 1, VALUES_PAGE_MAX, &limit))
        return SL_HTTP_DONE;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || sl_api_meta_load(&c, SL_META_LIST, WHAT, 0, &m))
        goto out;
    int rc = sl_store_list_values_count(c.st, m.uuid, &total);
    if (rc == 0)
        rc = sl_store_list_values_page(c.st, m.uuid, after, (size_t)limit, &json, &next);
    if (rc) {
        sl_api_meta_reply_store(req, rc, WHAT, NULL);
        goto out;
    }
    size_t len = 0;
    char *body = values_body(json, next, total, &len);
    if (body) {
        json = NULL;
        sl_http_reply(req, 200, "application/json", body, len);
    } else {
        sl_api_meta_reply(req, 503, NULL);
    }
out:
    free(json);
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* Opens a values request on a list this key may change, with the values parsed. */
static int values_begin(struct sl_api *api, struct sl_http_req *req, int check,
                        struct sl_api_meta_ctx *c, struct sl_meta *m, struct vals *vs)
{
    struct list_shape sh;
    if (sl_api_meta_open(api, req, 1, c) != 0 || sl_api_meta_load(c, SL_META_LIST, WHAT, 1, m))
        return SL_EINVAL;
    cJSON *doc = cJSON_Parse(m->doc);
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(c->body, "values"), *it;
    int rc = 0;
    cJSON_ArrayForEach(it, c->body)
    {
        if (strcmp(it->string, "values") == 0 || strcmp(it->string, "organization") == 0)
            continue;
        char err[160];
        snprintf(err, sizeof(err), "%.64s: unknown field (expected \"values\")", it->string);
        sl_api_meta_reply_invalid(req, err);
        rc = SL_EINVAL;
        break;
    }
    if (rc == 0 && !doc) {
        sl_api_meta_reply(req, 503, NULL);
        rc = SL_ENOMEM;
    } else if (rc == 0 && str(doc, "url")) {
        reply_polled(req);
        rc = SL_EEXIST;
    } else if (rc == 0 && !values) {
        sl_api_meta_reply_invalid(req, "values: required");
        rc = SL_EINVAL;
    } else if (rc == 0) {
        shape_of(doc, &sh);
        rc = parse_values(values, &sh, check, vs, req);
    }
    cJSON_Delete(doc);
    return rc;
}

void sl_api_list_values_add(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    struct vals vs = {0};
    size_t added = 0;
    int64_t count = 0;
    if (values_begin(api, req, 1, &c, &m, &vs) != 0)
        goto out;
    int rc = sl_store_list_values_count(c.st, m.uuid, &count);
    if (rc == 0 && count + (int64_t)vs.n > api->cfg->list_max_values) {
        /* An upper bound (some values may be there already), so a full list is refused even
         * when the new values would not all be new: clear first, or raise the setting. */
        reply_too_many(req, api->cfg->list_max_values);
        goto out;
    }
    if (rc == 0 && vs.n)
        rc = sl_store_list_values_add(c.st, m.uuid, vs.v, vs.n, 0, &added);
    if (rc == 0)
        rc = sl_store_list_values_count(c.st, m.uuid, &count);
    if (rc) {
        sl_api_meta_reply_store(req, rc, WHAT, NULL);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "added", (double)added);
        cJSON_AddNumberToObject(o, "value_count", (double)count);
    }
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(o);
out:
    vals_free(&vs);
    free(m.doc);
    sl_api_meta_close(&c);
}

void sl_api_list_values_delete(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    struct vals vs = {0};
    size_t deleted = 0;
    if (values_begin(api, req, 0, &c, &m, &vs) != 0)
        goto out;
    int rc = vs.n ? sl_store_list_values_delete(c.st, m.uuid, vs.v, vs.n, &deleted) : 0;
    if (rc) {
        sl_api_meta_reply_store(req, rc, WHAT, NULL);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddNumberToObject(o, "deleted", (double)deleted);
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(o);
out:
    vals_free(&vs);
    free(m.doc);
    sl_api_meta_close(&c);
}
