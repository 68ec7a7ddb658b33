/* Method and path dispatch: a static table of routes matched against a request's path. */
#ifndef SL_HTTP_ROUTER_H
#define SL_HTTP_ROUTER_H

#include <stddef.h>

/* HTTP methods as bits, so a route can accept several. A route that accepts GET accepts HEAD. */
enum sl_http_method {
    SL_HTTP_GET = 1u << 0,
    SL_HTTP_HEAD = 1u << 1,
    SL_HTTP_POST = 1u << 2,
    SL_HTTP_PUT = 1u << 3,
    SL_HTTP_DELETE = 1u << 4,
    SL_HTTP_PATCH = 1u << 5,
    SL_HTTP_OPTIONS = 1u << 6,
    SL_HTTP_OTHER = 1u << 7, /* any other token; never routed */
};

#define SL_ROUTE_MAX_PARAMS   4
#define SL_ROUTE_MAX_SEGMENTS 16

/* One route. pattern is an absolute path of '/'-separated segments; a segment "*" matches any
 * one non-empty segment and is captured. When several patterns match a path, the one with the
 * most literal segments wins (so "/event/queue_stats" beats "/event/ *"); ties go to the
 * earlier entry. data is the caller's, returned untouched. */
struct sl_route {
    const char *pattern;
    unsigned methods; /* SL_HTTP_* bits */
    const void *data;
};

/* A slice of the request path captured by a "*" segment (not NUL-terminated). */
struct sl_route_param {
    const char *ptr;
    size_t len;
};

struct sl_route_match {
    const struct sl_route *route; /* SL_ROUTE_OK: the route */
    unsigned allow;               /* SL_ROUTE_NO_METHOD: the methods the path accepts */
    struct sl_route_param params[SL_ROUTE_MAX_PARAMS];
    size_t nparams;
};

enum sl_route_result {
    SL_ROUTE_OK = 0,        /* a route accepts this method and path */
    SL_ROUTE_NO_PATH = 1,   /* no route has this path: 404 */
    SL_ROUTE_NO_METHOD = 2, /* the path exists but not for this method: 405 with Allow */
};

/* Parses a method token ("GET", case-sensitive as HTTP says). Unknown tokens are SL_HTTP_OTHER. */
unsigned sl_http_method_parse(const char *method);

/* Writes the methods of mask as an Allow header value ("GET, HEAD, POST") into out (always
 * NUL-terminated). Returns the length written. */
size_t sl_http_methods_format(unsigned mask, char *out, size_t outlen);

/* Matches method and path (the decoded path without the query; one trailing '/' is ignored)
 * against routes[0..n). Fills *out; captured params point into path, which the caller keeps
 * alive while it uses them. Pure: safe from any thread. */
enum sl_route_result sl_router_match(const struct sl_route *routes, size_t n, unsigned method,
                                     const char *path, struct sl_route_match *out);

#endif
