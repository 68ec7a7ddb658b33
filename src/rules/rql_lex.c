/* The RQL lexer: query text to tokens with line:column, keywords in any case, Python-style
 * string escapes, numbers, comments. */
#include "rules/rql_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/error.h"

int rql_error_at(struct sl_rql_error *err, int line, int col, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->line = line;
        err->col = col;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return SL_EINVAL;
}

/* Copies at most max bytes of s as printable ASCII ('?' for anything else) into out. */
static void printable(const char *s, size_t n, size_t max, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n && i < max && k + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (n > max && k + 4 < outlen) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

void rql_token_desc(const struct rql_token *t, char *out, size_t outlen)
{
    if (t->type == T_EOF) {
        snprintf(out, outlen, "end of query");
        return;
    }
    char buf[48];
    printable(t->text, t->len, 32, buf, sizeof(buf));
    snprintf(out, outlen, "'%s'", buf);
}

void rql_lex_init(struct rql_lexer *lx, const char *text, size_t len, struct sl_arena *mem,
                  struct sl_rql_error *err)
{
    lx->p = text;
    lx->end = text + len;
    lx->line_start = text;
    lx->line = 1;
    lx->mem = mem;
    lx->err = err;
}

static const struct {
    const char *word;
    enum rql_tok type;
} keywords[] = {
    {"eq", T_EQ},
    {"ne", T_NE},
    {"contains", T_CONTAINS},
    {"containscis", T_CONTAINSCIS},
    {"in", T_IN},
    {"is", T_IS},
    {"and", T_AND},
    {"or", T_OR},
    {"not", T_NOT},
    {"gt", T_GT},
    {"gte", T_GTE},
    {"lt", T_LT},
    {"lte", T_LTE},
    {"true", T_TRUE},
    {"false", T_FALSE},
    {"exists", T_EXISTS},
    {"regexp", T_REGEXP},
    {"regex", T_REGEXP},
    {"re", T_REGEXP},
    {"between", T_BETWEEN},
    {"inrange", T_BETWEEN},
    {"range", T_BETWEEN},
    {"cidr", T_CIDR},
    {"incidr", T_CIDR},
    {"startswith", T_STARTSWITH},
    {"endswith", T_ENDSWITH},
    {"expand", T_EXPAND},
    {"threatlookup", T_INTEL},
    {"threat_lookup", T_INTEL},
    {"threatlist", T_INTEL},
    {"threat_list", T_INTEL},
    {"threat", T_INTEL},
    {"intel_list", T_INTEL},
    {"intel", T_INTEL},
    {"intellist", T_INTEL},
};

static int seg_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '@';
}

static int seg_char(unsigned char c)
{
    return seg_start(c) || (c >= '0' && c <= '9') || c == '$' || c == '-';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads ndig hex digits at p (within end) into *cp. */
static int read_hex(const char *p, const char *end, int ndig, uint32_t *cp)
{
    uint32_t v = 0;
    if (end - p < ndig)
        return -1;
    for (int i = 0; i < ndig; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + (uint32_t)h;
    }
    *cp = v;
    return 0;
}

/* Decodes one escape after the backslash at *pp. Appends to o (*k); advances *pp past the
 * escape. Returns 0 or -1 with a message in msg. */
static int escape(const char **pp, const char *end, char *o, size_t *k, const char **msg)
{
    const char *p = *pp; /* at the character after the backslash */
    unsigned char c = (unsigned char)*p;
    uint32_t cp;
    switch (c) {
    case '\\':
    case '\'':
    case '"':
        o[(*k)++] = (char)c;
        p++;
        break;
    case 'n':
        o[(*k)++] = '\n';
        p++;
        break;
    case 't':
        o[(*k)++] = '\t';
        p++;
        break;
    case 'r':
        o[(*k)++] = '\r';
        p++;
        break;
    case 'a':
        o[(*k)++] = '\a';
        p++;
        break;
    case 'b':
        o[(*k)++] = '\b';
        p++;
        break;
    case 'f':
        o[(*k)++] = '\f';
        p++;
        break;
    case 'v':
        o[(*k)++] = '\v';
        p++;
        break;
    case 'x':
        if (read_hex(p + 1, end, 2, &cp)) {
            *msg = "bad \\x escape (expected two hex digits)";
            return -1;
        }
        /* Python's \xNN is the code point U+00NN. */
        *k += put_utf8(o + *k, cp);
        p += 3;
        break;
    case 'u':
    case 'U': {
        int nd = c == 'u' ? 4 : 8;
        if (read_hex(p + 1, end, nd, &cp)) {
            *msg = c == 'u' ? "bad \\u escape (expected four hex digits)"
                            : "bad \\U escape (expected eight hex digits)";
            return -1;
        }
        p += 1 + nd;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo;
            if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && !read_hex(p + 2, end, 4, &lo) &&
                lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else {
                *msg = "lone surrogate in \\u escape";
                return -1;
            }
        } else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp > 0x10ffff) {
            *msg = "bad code point in escape";
            return -1;
        }
        *k += put_utf8(o + *k, cp);
        break;
    }
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7': {
        uint32_t v = 0;
        int nd = 0;
        while (nd < 3 && p < end && *p >= '0' && *p <= '7') {
            v = v * 8 + (uint32_t)(*p - '0');
            p++;
            nd++;
        }
        *k += put_utf8(o + *k, v);
        break;
    }
    case '\n':
        p++; /* a backslash-newline continues the string */
        break;
    default:
        /* Python keeps unknown escapes as written ("\d" stays "\d"): regexes rely on it. */
        o[(*k)++] = '\\';
        break;
    }
    *pp = p;
    return 0;
}

static int lex_string(struct rql_lexer *lx, struct rql_token *t)
{
    char q = *lx->p;
    const char *p = lx->p + 1;
    /* The decoded text is never longer than the source (\x and \u escapes shrink or keep). */
    const char *close = NULL;
    for (const char *s = p; s < lx->end; s++) {
        if (*s == '\\') {
            if (s + 1 < lx->end && s[1] == '\n') {
                s++;
                continue;
            }
            s++;
            continue;
        }
        if (*s == '\n')
            break;
        if (*s == q) {
            close = s;
            break;
        }
    }
    if (!close)
        return rql_error_at(lx->err, t->line, t->col,
                            "unterminated string (a string ends on its line with %c)", q);
    size_t cap = (size_t)(close - p) + 1;
    char *o = sl_arena_alloc(lx->mem, cap);
    if (!o)
        return SL_ENOMEM;
    size_t k = 0;
    while (p < close) {
        if (*p == '\\' && p + 1 <= close) {
            const char *msg = NULL;
            const char *at = p;
            p++;
            if (escape(&p, close, o, &k, &msg))
                return rql_error_at(lx->err, lx->line, (int)(at - lx->line_start) + 1, "%s", msg);
            if (at[1] == '\n') {
                lx->line++;
                lx->line_start = at + 2;
            }
            continue;
        }
        o[k++] = *p++;
    }
    o[k] = '\0';
    t->type = T_STRING;
    t->str = o;
    t->slen = k;
    lx->p = close + 1;
    return 0;
}

static int lex_number(struct rql_lexer *lx, struct rql_token *t)
{
    const char *p = lx->p;
    if (*p == '-' || *p == '+')
        p++;
    while (p < lx->end && is_digit((unsigned char)*p))
        p++;
    if (p + 1 < lx->end && *p == '.' && is_digit((unsigned char)p[1])) {
        p++;
        while (p < lx->end && is_digit((unsigned char)*p))
            p++;
    }
    if (p < lx->end && (*p == 'e' || *p == 'E')) {
        const char *e = p + 1;
        if (e < lx->end && (*e == '+' || *e == '-'))
            e++;
        if (e < lx->end && is_digit((unsigned char)*e)) {
            while (e < lx->end && is_digit((unsigned char)*e))
                e++;
            p = e;
        }
    }
    t->type = T_NUMBER;
    t->len = (size_t)(p - lx->p);
    if (p < lx->end && seg_char((unsigned char)*p) && !(*p == '-'))
        return rql_error_at(lx->err, t->line, t->col, "bad number '%.*s%c'", (int)t->len, t->text,
                            *p);
    if (t->len > 64 || rql_parse_number(t->text, t->len, &t->num))
        return rql_error_at(lx->err, t->line, t->col, "bad number");
    lx->p = p;
    return 0;
}

/* Skips whitespace, comments and stray dots. */
static void skip_blank(struct rql_lexer *lx)
{
    while (lx->p < lx->end) {
        char c = *lx->p;
        if (c == '\n') {
            lx->line++;
            lx->p++;
            lx->line_start = lx->p;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' || c == '.') {
            lx->p++;
        } else if (c == '#') {
            while (lx->p < lx->end && *lx->p != '\n')
                lx->p++;
        } else {
            break;
        }
    }
}

static int lex_word(struct rql_lexer *lx, struct rql_token *t)
{
    const char *p = lx->p;
    for (;;) {
        while (p < lx->end && seg_char((unsigned char)*p))
            p++;
        if (p + 1 < lx->end && *p == '.' && seg_start((unsigned char)p[1])) {
            p++;
            continue;
        }
        break;
    }
    t->type = T_PATH;
    t->len = (size_t)(p - lx->p);
    lx->p = p;
    if (memchr(t->text, '.', t->len))
        return 0;
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
        if (strlen(keywords[i].word) == t->len && !strncasecmp(keywords[i].word, t->text, t->len)) {
            t->type = keywords[i].type;
            break;
        }
    return 0;
}

int rql_lex_next(struct rql_lexer *lx, struct rql_token *t)
{
    memset(t, 0, sizeof(*t));
    skip_blank(lx);
    t->line = lx->line;
    t->col = (int)(lx->p - lx->line_start) + 1;
    t->text = lx->p;
    if (lx->p >= lx->end) {
        t->type = T_EOF;
        return 0;
    }
    unsigned char c = (unsigned char)*lx->p;
    unsigned char d = lx->p + 1 < lx->end ? (unsigned char)lx->p[1] : 0;
    if (c == '"' || c == '\'') {
        int rc = lex_string(lx, t);
        t->len = (size_t)(lx->p - t->text);
        return rc;
    }
    if (is_digit(c) || ((c == '-' || c == '+') && is_digit(d)))
        return lex_number(lx, t);
    if (seg_start(c))
        return lex_word(lx, t);
    t->len = 1;
    switch (c) {
    case '(':
        t->type = T_LPAREN;
        break;
    case ')':
        t->type = T_RPAREN;
        break;
    case '[':
        t->type = T_LBRACK;
        break;
    case ']':
        t->type = T_RBRACK;
        break;
    case ',':
        t->type = T_COMMA;
        break;
    case '|':
        t->type = T_PIPE;
        break;
    case '=':
        if (d == '=')
            return rql_error_at(lx->err, t->line, t->col,
                                "unexpected '==' (the equality operator is = or eq)");
        t->type = T_EQ;
        break;
    case '!':
        if (d != '=')
            return rql_error_at(lx->err, t->line, t->col,
                                "unexpected '!' (expected != or the keyword not)");
        t->type = T_NE;
        t->len = 2;
        break;
    case '>':
        t->type = d == '=' ? T_GTE : T_GT;
        t->len = d == '=' ? 2 : 1;
        break;
    case '<':
        t->type = d == '=' ? T_LTE : T_LT;
        t->len = d == '=' ? 2 : 1;
        break;
    default: {
        char buf[16];
        if (c >= 0x20 && c < 0x7f)
            snprintf(buf, sizeof(buf), "'%c'", c);
        else
            snprintf(buf, sizeof(buf), "byte 0x%02x", c);
        return rql_error_at(lx->err, t->line, t->col, "unexpected character %s", buf);
    }
    }
    lx->p += t->len;
    return 0;
}
