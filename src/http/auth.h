/* API-key authentication: "Authorization: Bearer <key>" resolved to a principal through the
 * store, with a small bounded in-process cache. */
#ifndef SL_HTTP_AUTH_H
#define SL_HTTP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Roles as bits, so a route can allow several. */
enum sl_role {
    SL_ROLE_ADMIN = 1u << 0,
    SL_ROLE_ANALYST = 1u << 1,
    SL_ROLE_AGENT = 1u << 2,
};
#define SL_ROLE_ANY (SL_ROLE_ADMIN | SL_ROLE_ANALYST | SL_ROLE_AGENT)

struct sl_auth;

/* A cache of at most `capacity` resolved keys (rounded up to a power of two), each trusted for
 * ttl_ms. Keys are kept only as SHA-256 digests. Returns NULL if memory runs out. */
struct sl_auth *sl_auth_create(size_t capacity, int64_t ttl_ms);
void sl_auth_destroy(struct sl_auth *a);

/* Extracts the key from an Authorization header value ("Bearer <key>", scheme in any case,
 * spaces around the key ignored). *out_key points into header. Returns 0, or SL_EINVAL for a
 * missing header, another scheme or an empty key. */
int sl_auth_bearer(const char *header, const char **out_key, size_t *out_len);

/* Resolves key[0..len) to *out: from the cache when an entry younger than the TTL exists, else
 * with sl_store_apikey_lookup on st (a handle the calling thread may use), caching a success.
 * now_ms is a monotonic clock. Returns 0, SL_ENOTFOUND (not a valid key: 401), or the store's
 * error (SL_EIO, SL_EBUSY: 503). Thread-safe. */
int sl_auth_resolve(struct sl_auth *a, struct sl_store *st, const char *key, size_t len,
                    int64_t now_ms, struct sl_principal *out);

/* The bit of a role name ("admin", "analyst", "agent"), 0 for anything else. */
unsigned sl_auth_role_bit(const char *role);

#endif
