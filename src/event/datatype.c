/* Automatic data typing of observable values sent with data_type "auto": hand-written checks
 * tried in a fixed precedence, the first match wins. */
#include "event/event.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Parses 1..max_digits decimal digits at s[*i] with a value <= max; advances *i. */
static int take_number(const char *s, size_t len, size_t *i, int max_digits, long max)
{
    long v = 0;
    int n = 0;
    while (*i < len && is_digit((unsigned char)s[*i]) && n < max_digits) {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        n++;
    }
    return n > 0 && v <= max && !(*i < len && is_digit((unsigned char)s[*i]));
}

/* An optional "/N" prefix length, N in 0..max, ending the string at s[i]. */
static int cidr_suffix(const char *s, size_t len, size_t i, long max)
{
    if (i == len)
        return 1;
    if (s[i] != '/')
        return 0;
    i++;
    return take_number(s, len, &i, 3, max) && i == len;
}

static int is_ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
        if (!take_number(s, len, &i, 3, 255))
            return 0;
    }
    return cidr_suffix(s, len, i, 32);
}

static int is_ipv6(const char *s, size_t len)
{
    char buf[64];
    unsigned char addr[16];
    size_t n = 0;
    while (n < len && s[n] != '/')
        n++;
    /* The longest textual IPv6 address (with an embedded IPv4) is 45 characters. */
    if (n < 2 || n > 45 || !memchr(s, ':', n))
        return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    return inet_pton(AF_INET6, buf, addr) == 1 && cidr_suffix(s, len, n, 128);
}

/* Process file extensions; they are not top-level domains, so "cmd.exe" is not a domain. */
static const char *const process_ext[] = {".exe", ".dll", ".ps1", ".sh", ".bat"};

static int tld_is_file_extension(const char *tld, size_t len)
{
    return (len == 3 && (!strncasecmp(tld, "exe", 3) || !strncasecmp(tld, "dll", 3) ||
                         !strncasecmp(tld, "bat", 3)));
}

/* Labels of [A-Za-z0-9-] (1..63, no leading or trailing '-'), at least two, the last one
 * alphabetic (2..63 letters), 253 characters at most. */
static int is_domain(const char *s, size_t len)
{
    size_t label_start = 0, labels = 0;
    if (len < 4 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            size_t n = i - label_start;
            if (n < 1 || n > 63 || s[label_start] == '-' || s[i - 1] == '-')
                return 0;
            labels++;
            label_start = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (!is_alpha(c) && !is_digit(c) && c != '-')
            return 0;
    }
    size_t tld = len;
    while (tld > 0 && s[tld - 1] != '.')
        tld--;
    if (labels < 2 || len - tld < 2)
        return 0;
    for (size_t i = tld; i < len; i++)
        if (!is_alpha((unsigned char)s[i]))
            return 0;
    return !tld_is_file_extension(s + tld, len - tld);
}

static int is_email(const char *s, size_t len)
{
    static const char local_extra[] = ".!#$%&'*+/=?^_`{|}~-";
    const char *at = memchr(s, '@', len);
    if (!at || at == s)
        return 0;
    size_t local = (size_t)(at - s);
    if (local > 64)
        return 0;
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alpha(c) && !is_digit(c) && !(c && strchr(local_extra, c)))
            return 0;
    }
    return is_domain(at + 1, len - local - 1);
}

/* scheme "://" rest, scheme = ALPHA *(ALPHA / DIGIT / "+" / "-" / "."), no whitespace. */
static int is_url(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !is_alpha((unsigned char)s[0]))
        return 0;
    while (i < len && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                       s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (len - i < 4 || memcmp(s + i, "://", 3) != 0)
        return 0;
    for (i += 3; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return 0;
    return 1;
}

static const char *hash_type(const char *s, size_t len)
{
    if (len != 32 && len != 40 && len != 64)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (!is_hex((unsigned char)s[i]))
            return NULL;
    return len == 32 ? "md5hash" : len == 40 ? "sha1hash" : "sha256hash";
}

/* Six hex pairs separated by ':' or by '-' (the same separator throughout). */
static int is_mac(const char *s, size_t len)
{
    if (len != 17 || (s[2] != ':' && s[2] != '-'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (i % 3 == 2) {
            if (s[i] != s[2])
                return 0;
        } else if (!is_hex((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* S-1-<authority>(-<subauthority>)*: "S-1-5-18", "S-1-5-21-...-500". */
static int is_sid(const char *s, size_t len)
{
    size_t i = 4;
    if (len < 5 || (s[0] != 'S' && s[0] != 's') || memcmp(s + 1, "-1-", 3) != 0)
        return 0;
    for (;;) {
        size_t start = i;
        while (i < len && is_digit((unsigned char)s[i]) && i - start < 14)
            i++;
        if (i == start)
            return 0;
        if (i == len)
            return 1;
        if (s[i] != '-')
            return 0;
        i++;
    }
}

static int is_port(const char *s, size_t len)
{
    size_t i = 0;
    return len > 0 && s[0] != '0' && take_number(s, len, &i, 5, 65535) && i == len;
}

static int is_process(const char *s, size_t len)
{
    for (size_t k = 0; k < sizeof(process_ext) / sizeof(process_ext[0]); k++) {
        size_t n = strlen(process_ext[k]);
        if (len > n && !strncasecmp(s + len - n, process_ext[k], n))
            return 1;
    }
    /* A path ending in a file name: absolute ("/", "~/", "C:/", "C:\\", "\\\\server"),
     * explicitly relative ("./", "../") or Windows-style (any backslash). "example.com/a" is
     * not one. */
    int path = memchr(s, '\\', len) != NULL || s[0] == '/' || (len > 1 && !memcmp(s, "~/", 2)) ||
               (len > 1 && !memcmp(s, "./", 2)) || (len > 2 && !memcmp(s, "../", 3)) ||
               (len > 2 && is_alpha((unsigned char)s[0]) && s[1] == ':' && s[2] == '/');
    size_t name = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || s[i] == '\\')
            name = i + 1;
    return path && name > 0 && name < len;
}

const char *sl_event_detect_type(const char *value, size_t len)
{
    const char *t;
    if (!value || len == 0)
        return "generic";
    if (is_ipv4(value, len) || is_ipv6(value, len))
        return "ip";
    if (is_email(value, len))
        return "email";
    if (is_url(value, len))
        return "url";
    if ((t = hash_type(value, len)) != NULL)
        return t;
    if (is_mac(value, len))
        return "mac";
    if (is_sid(value, len))
        return "sid";
    if (is_port(value, len))
        return "port";
    if (is_domain(value, len))
        return "domain";
    if (is_process(value, len))
        return "process";
    return "generic";
}
