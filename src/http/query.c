/* Parsing of URL query strings into decoded key/value pairs. */
#include "http/server.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes src[0..len) into dst ('+' is a space, %XX escapes) and NUL-terminates it. Returns the
 * decoded length, or -1 for a malformed escape or an escaped NUL. dst holds len + 1 bytes. */
static long decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        dst[o++] = c;
    }
    dst[o] = '\0';
    return (long)o;
}

int sl_http_query_parse(struct sl_http_query *q, const char *qs, size_t len)
{
    memset(q, 0, sizeof(*q));
    if (len == 0)
        return 0;
    /* Decoding never lengthens a string; one byte more per pair for the second terminator. */
    q->buf = malloc(len * 2 + 2);
    if (!q->buf)
        return SL_ENOMEM;
    char *out = q->buf;
    size_t i = 0;
    while (i <= len) {
        const char *start = qs + i;
        const char *amp = memchr(start, '&', len - i);
        size_t plen = amp ? (size_t)(amp - start) : len - i;
        i += plen + 1;
        if (plen == 0)
            continue;
        if (q->n == SL_HTTP_QUERY_MAX)
            return SL_EFULL;
        const char *eq = memchr(start, '=', plen);
        size_t klen = eq ? (size_t)(eq - start) : plen;
        long k = decode(start, klen, out);
        if (k < 0)
            return SL_EINVAL;
        q->params[q->n].key = out;
        out += k + 1;
        long v = eq ? decode(eq + 1, plen - klen - 1, out) : decode("", 0, out);
        if (v < 0)
            return SL_EINVAL;
        q->params[q->n].value = out;
        out += v + 1;
        q->n++;
    }
    return 0;
}

void sl_http_query_fini(struct sl_http_query *q)
{
    free(q->buf);
    memset(q, 0, sizeof(*q));
}

const char *sl_http_query_get(const struct sl_http_query *q, const char *key)
{
    size_t pos = 0;
    return sl_http_query_next(q, key, &pos);
}

const char *sl_http_query_next(const struct sl_http_query *q, const char *key, size_t *pos)
{
    while (*pos < q->n) {
        const struct sl_http_param *p = &q->params[(*pos)++];
        if (strcmp(p->key, key) == 0)
            return p->value;
    }
    return NULL;
}
