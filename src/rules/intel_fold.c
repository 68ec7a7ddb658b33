/* Case folding of values for case-insensitive Intel Lists: ASCII inline, UTF-8 by towlower_l. */
#include "rules/intel_internal.h"

#include "core/util.h"

#include <locale.h>
#include <pthread.h>
#include <string.h>
#include <wctype.h>

static locale_t utf8_locale = (locale_t)0;
static pthread_once_t locale_once = PTHREAD_ONCE_INIT;

static void locale_init(void)
{
    /* Without C.UTF-8 only ASCII folds (towlower_l in "C" maps nothing else); the result is the
     * same for inserts and lookups, so lists stay consistent. */
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static size_t utf8_encode(uint32_t v, unsigned char *out)
{
    if (v < 0x80) {
        out[0] = (unsigned char)v;
        return 1;
    }
    if (v < 0x800) {
        out[0] = (unsigned char)(0xc0 | (v >> 6));
        out[1] = (unsigned char)(0x80 | (v & 0x3f));
        return 2;
    }
    if (v < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (v >> 12));
        out[1] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (v & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (v >> 18));
    out[1] = (unsigned char)(0x80 | ((v >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((v >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (v & 0x3f));
    return 4;
}

/* Eight ASCII bytes lowercased at once: a byte from 'A' to 'Z' gets 0x20 added (the sums
 * cannot carry between bytes, which are all below 0x80). */
static inline uint64_t lower8(uint64_t w)
{
    uint64_t upper = (w + 0x3f3f3f3f3f3f3f3fULL) & ~(w + 0x2525252525252525ULL);
    return w | ((upper & 0x8080808080808080ULL) >> 2);
}

size_t sl_intel_fold(const char *in, size_t len, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned char *o = (unsigned char *)out;
    size_t i = 0, j = 0;
    /* ASCII eight bytes at a time while it lasts (then i == j). */
    while (i + 8 <= len && i + 8 <= cap) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
            break;
        w = lower8(w);
        memcpy(o + i, &w, 8);
        i += 8;
    }
    if (i < len && len >= 8 && i + 8 > len && len <= cap) {
        /* An ASCII tail: the last eight bytes at once (those before it are folded again, to
         * the same bytes). */
        uint64_t w;
        memcpy(&w, s + len - 8, 8);
        if (!(w & 0x8080808080808080ULL)) {
            w = lower8(w);
            memcpy(o + len - 8, &w, 8);
            return len;
        }
    }
    j = i;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80 && i + 8 <= len && j + 8 <= cap) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                w = lower8(w);
                memcpy(o + j, &w, 8);
                i += 8;
                j += 8;
                continue;
            }
        }
        if (c < 0x80) {
            if (j >= cap)
                return (size_t)-1;
            o[j++] = (unsigned char)(c - 'A' < 26u ? c + ('a' - 'A') : c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = sl_utf8_decode(s + i, len - i, &cp);
        if (n == 0) {
            if (j >= cap)
                return (size_t)-1;
            o[j++] = (unsigned char)c; /* not UTF-8: kept as it is */
            i++;
            continue;
        }
        pthread_once(&locale_once, locale_init);
        uint32_t lower = cp;
        if (utf8_locale != (locale_t)0) {
            wint_t w = towlower_l((wint_t)cp, utf8_locale);
            /* Never fold into a surrogate or out of range (towlower does not, but be sure). */
            if (w <= 0x10ffff && !(w >= 0xd800 && w <= 0xdfff))
                lower = (uint32_t)w;
        }
        unsigned char enc[4];
        size_t m = utf8_encode(lower, enc);
        if (j + m > cap)
            return (size_t)-1;
        memcpy(o + j, enc, m);
        j += m;
        i += n;
    }
    return j;
}

int sl_intel_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs eight bytes at a time. */
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = sl_utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}
