/* Clocks, hashes, identifiers and strict number parsing used across sluice. */
#include "core/util.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

int64_t sl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sl_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sl_time_format(int64_t ms, char out[25])
{
    time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int msec = (int)(ms - (int64_t)sec * 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    /* Unsigned and reduced so the compiler can see the fixed width. */
    snprintf(out, 25, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             (unsigned)msec % 1000u);
}

static int digits(const char *s, size_t len, size_t at, size_t n, int *out)
{
    int v = 0;
    if (at + n > len)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[at + i]))
            return -1;
        v = v * 10 + (s[at + i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int sl_time_parse(const char *s, size_t len, int64_t *out_ms)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h = 0, mi = 0, sec = 0, msec = 0;
    int64_t tz_ms = 0;
    size_t i = 10;
    if (digits(s, len, 0, 4, &y) || len < 10 || s[4] != '-' || digits(s, len, 5, 2, &mo) ||
        s[7] != '-' || digits(s, len, 8, 2, &d))
        return SL_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return SL_EINVAL;
    if (i < len) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
            return SL_EINVAL;
        if (digits(s, len, 11, 2, &h) || len < 16 || s[13] != ':' || digits(s, len, 14, 2, &mi))
            return SL_EINVAL;
        i = 16;
        if (i < len && s[i] == ':') {
            if (digits(s, len, 17, 2, &sec))
                return SL_EINVAL;
            i = 19;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                size_t start = ++i;
                int scale = 100;
                while (i < len && isdigit((unsigned char)s[i])) {
                    if (scale > 0) {
                        msec += (s[i] - '0') * scale;
                        scale /= 10;
                    }
                    i++;
                }
                if (i == start)
                    return SL_EINVAL;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return SL_EINVAL;
        if (i < len) {
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                int th, tm = 0;
                int sign = s[i] == '-' ? -1 : 1;
                if (digits(s, len, i + 1, 2, &th))
                    return SL_EINVAL;
                size_t j = i + 3;
                if (j < len && s[j] == ':')
                    j++;
                if (j < len) {
                    if (digits(s, len, j, 2, &tm))
                        return SL_EINVAL;
                    j += 2;
                }
                if (j != len || th > 23 || tm > 59)
                    return SL_EINVAL;
                tz_ms = sign * ((int64_t)th * 3600 + tm * 60) * 1000;
                i = len;
            } else {
                return SL_EINVAL;
            }
        }
    }
    if (i != len)
        return SL_EINVAL;
    int64_t days = days_from_civil(y, mo, d);
    *out_ms = ((days * 86400) + h * 3600 + mi * 60 + sec) * 1000 + msec - tz_ms;
    return 0;
}

static void uuid_format(const unsigned char b[16], char out[SL_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = 0;
}

void sl_uuid4(char out[SL_UUID_LEN + 1])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        /* RAND_bytes failing means the process cannot get entropy at all; fall back to a
         * weaker source rather than hand out a fixed id. */
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)(rand() & 0xff);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_format(b, out);
}

int sl_uuid_from_parts(const char *const *parts, const size_t *lens, size_t n,
                       char out[SL_UUID_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const unsigned char zero = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], lens[i]) == 1 && EVP_DigestUpdate(ctx, &zero, 1) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 16;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* A uuid made of whatever was on the stack would put the event in another dedup slot
         * and store it twice: fail instead, and let the caller retry. */
        out[0] = 0;
        return SL_ENOMEM;
    }
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80);
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80);
    uuid_format(md, out);
    return 0;
}

int sl_uuid_valid(const char *s)
{
    if (!s || strlen(s) != SL_UUID_LEN)
        return 0;
    for (int i = 0; i < SL_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

static void digest_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, buf, &n, md, NULL);
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[buf[i] >> 4];
        out[2 * i + 1] = hex[buf[i] & 15];
    }
    out[2 * n] = 0;
}

void sl_md5_hex(const void *data, size_t len, char out[33])
{
    digest_hex(EVP_md5(), data, len, out);
}

void sl_sha256_hex(const void *data, size_t len, char out[65])
{
    digest_hex(EVP_sha256(), data, len, out);
}

int sl_random_bytes(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : SL_EIO;
}

uint64_t sl_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int sl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return SL_EINVAL;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || isspace((unsigned char)*s) || v < min || v > max)
        return SL_EINVAL;
    *out = v;
    return 0;
}

int sl_parse_bool(const char *s, int *out)
{
    if (!s)
        return SL_EINVAL;
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") ||
        !strcasecmp(s, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") ||
        !strcasecmp(s, "off")) {
        *out = 0;
        return 0;
    }
    return SL_EINVAL;
}

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0 if it is not one. */
size_t sl_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xbf;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
        hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

int sl_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = sl_utf8_seq(u + i, len - i);
        if (n == 0 || u[i] == 0)
            return 0;
        i += n;
    }
    return 1;
}

size_t sl_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}
