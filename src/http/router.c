/* Method and path dispatch over a static route table (most literal segments wins). */
#include "http/router.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bit;
} method_names[] = {
    {"GET", SL_HTTP_GET},         {"HEAD", SL_HTTP_HEAD},     {"POST", SL_HTTP_POST},
    {"PUT", SL_HTTP_PUT},         {"DELETE", SL_HTTP_DELETE}, {"PATCH", SL_HTTP_PATCH},
    {"OPTIONS", SL_HTTP_OPTIONS},
};
#define NMETHODS (sizeof(method_names) / sizeof(method_names[0]))

unsigned sl_http_method_parse(const char *method)
{
    for (size_t i = 0; method && i < NMETHODS; i++)
        if (strcmp(method, method_names[i].name) == 0)
            return method_names[i].bit;
    return SL_HTTP_OTHER;
}

size_t sl_http_methods_format(unsigned mask, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen == 0)
        return 0;
    out[0] = '\0';
    for (size_t i = 0; i < NMETHODS; i++) {
        if (!(mask & method_names[i].bit))
            continue;
        int w = snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", method_names[i].name);
        if (w < 0 || (size_t)w >= outlen - n) {
            out[n] = '\0';
            break;
        }
        n += (size_t)w;
    }
    return n;
}

/* Splits an absolute path into segments (slices into path). Returns the count, or -1 if the
 * path is not absolute, has an empty segment ("//") or too many segments. One trailing '/' is
 * ignored, so "/a/" is "/a"; "/" has zero segments. */
static int split_path(const char *path, struct sl_route_param *segs, size_t max)
{
    size_t n = 0;
    if (!path || path[0] != '/')
        return -1;
    const char *p = path + 1;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0)
            return -1;
        if (n == max)
            return -1;
        segs[n].ptr = p;
        segs[n].len = len;
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    return (int)n;
}

/* Matches one pattern against the request's segments. Returns the number of literal segments
 * (its specificity) or -1 if it does not match; captures go to params. */
static int match_pattern(const char *pattern, const struct sl_route_param *segs, int nsegs,
                         struct sl_route_param *params, size_t *nparams)
{
    struct sl_route_param pat[SL_ROUTE_MAX_SEGMENTS];
    int npat = split_path(pattern, pat, SL_ROUTE_MAX_SEGMENTS);
    int literal = 0;
    *nparams = 0;
    if (npat != nsegs)
        return -1;
    for (int i = 0; i < npat; i++) {
        if (pat[i].len == 1 && pat[i].ptr[0] == '*') {
            if (*nparams == SL_ROUTE_MAX_PARAMS)
                return -1;
            params[(*nparams)++] = segs[i];
            continue;
        }
        if (pat[i].len != segs[i].len || memcmp(pat[i].ptr, segs[i].ptr, segs[i].len) != 0)
            return -1;
        literal++;
    }
    return literal;
}

enum sl_route_result sl_router_match(const struct sl_route *routes, size_t n, unsigned method,
                                     const char *path, struct sl_route_match *out)
{
    struct sl_route_param segs[SL_ROUTE_MAX_SEGMENTS];
    int nsegs = split_path(path, segs, SL_ROUTE_MAX_SEGMENTS);
    int best = -1;
    memset(out, 0, sizeof(*out));
    if (nsegs < 0)
        return SL_ROUTE_NO_PATH;
    /* First pass: the best specificity among the patterns that match the path. */
    for (size_t i = 0; i < n; i++) {
        struct sl_route_param params[SL_ROUTE_MAX_PARAMS];
        size_t np;
        int score = match_pattern(routes[i].pattern, segs, nsegs, params, &np);
        if (score > best)
            best = score;
    }
    if (best < 0)
        return SL_ROUTE_NO_PATH;
    /* Second pass: among the best, the first that takes the method; else collect Allow. */
    for (size_t i = 0; i < n; i++) {
        struct sl_route_param params[SL_ROUTE_MAX_PARAMS];
        size_t np;
        if (match_pattern(routes[i].pattern, segs, nsegs, params, &np) != best)
            continue;
        unsigned accepts = routes[i].methods;
        if (accepts & SL_HTTP_GET)
            accepts |= SL_HTTP_HEAD;
        if ((accepts & method) && method != SL_HTTP_OTHER) {
            out->route = &routes[i];
            memcpy(out->params, params, np * sizeof(params[0]));
            out->nparams = np;
            out->allow = accepts;
            return SL_ROUTE_OK;
        }
        out->allow |= accepts;
    }
    return SL_ROUTE_NO_METHOD;
}
