/* API-key authentication with a bounded, direct-mapped cache of resolved keys. */
#include "http/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/util.h"

struct auth_entry {
    char digest[65]; /* SHA-256 hex of the key; "" = empty slot */
    int64_t expires_ms;
    struct sl_principal principal;
};

struct sl_auth {
    pthread_mutex_t lock;
    size_t mask;
    int64_t ttl_ms;
    struct auth_entry *entries;
};

struct sl_auth *sl_auth_create(size_t capacity, int64_t ttl_ms)
{
    size_t n = 1;
    while (n < capacity && n < ((size_t)1 << 20))
        n <<= 1;
    struct sl_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->entries = calloc(n, sizeof(*a->entries));
    if (!a->entries || pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a->entries);
        free(a);
        return NULL;
    }
    a->mask = n - 1;
    a->ttl_ms = ttl_ms;
    return a;
}

void sl_auth_destroy(struct sl_auth *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    /* The entries hold organization names and key digests: do not leave them in freed memory. */
    memset(a->entries, 0, (a->mask + 1) * sizeof(*a->entries));
    free(a->entries);
    free(a);
}

int sl_auth_bearer(const char *header, const char **out_key, size_t *out_len)
{
    if (!header)
        return SL_EINVAL;
    while (*header == ' ' || *header == '\t')
        header++;
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return SL_EINVAL;
    const char *k = header + 7;
    while (*k == ' ' || *k == '\t')
        k++;
    size_t len = strlen(k);
    while (len && (k[len - 1] == ' ' || k[len - 1] == '\t'))
        len--;
    if (len == 0)
        return SL_EINVAL;
    *out_key = k;
    *out_len = len;
    return 0;
}

static size_t slot_of(const struct sl_auth *a, const char *digest)
{
    /* The digest is uniformly distributed: its first 16 hex digits make a fine index. */
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char c = digest[i];
        h = h << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (size_t)(h & a->mask);
}

int sl_auth_resolve(struct sl_auth *a, struct sl_store *st, const char *key, size_t len,
                    int64_t now_ms, struct sl_principal *out)
{
    char buf[SL_APIKEY_MAX], digest[65];
    if (len == 0 || len >= sizeof(buf) || memchr(key, '\0', len))
        return SL_ENOTFOUND; /* no valid key has that shape: no need to ask the store */
    sl_sha256_hex(key, len, digest);
    struct auth_entry *e = &a->entries[slot_of(a, digest)];

    pthread_mutex_lock(&a->lock);
    int hit = strcmp(e->digest, digest) == 0 && now_ms < e->expires_ms;
    if (hit)
        *out = e->principal;
    pthread_mutex_unlock(&a->lock);
    if (hit)
        return 0;

    memcpy(buf, key, len);
    buf[len] = '\0';
    int rc = sl_store_apikey_lookup(st, buf, out);
    memset(buf, 0, sizeof(buf));
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&a->lock);
    memcpy(e->digest, digest, sizeof(digest));
    e->expires_ms = now_ms + a->ttl_ms;
    e->principal = *out;
    pthread_mutex_unlock(&a->lock);
    return 0;
}

unsigned sl_auth_role_bit(const char *role)
{
    if (!role)
        return 0;
    if (strcmp(role, "admin") == 0)
        return SL_ROLE_ADMIN;
    if (strcmp(role, "analyst") == 0)
        return SL_ROLE_ANALYST;
    if (strcmp(role, "agent") == 0)
        return SL_ROLE_AGENT;
    return 0;
}
