/* The geo and DNS lookups behind the RQL mutators: libmaxminddb for geo_*, and an LRU DNS
 * cache that evaluating threads read without waiting while one libresolv thread fills it. */
#include "rules/netlookup.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <maxminddb.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#define RESP_MAX 65536 /* the largest DNS message (TCP) */

enum { ST_PENDING = 0, ST_READY = 1 };

/* One cached (kind, name): its answers, a known absence (count 0), or a query not answered yet
 * (ST_PENDING: queued or in flight; never evicted, so the resolver may use it unlocked). */
struct centry {
    struct centry *hnext;       /* hash chain */
    struct centry *prev, *next; /* LRU list, most recent first */
    uint64_t hash;
    int64_t expires_ms; /* monotonic; meaningful when ST_READY */
    char *answers;      /* count NUL-terminated strings back to back (owned), or NULL */
    uint8_t kind;       /* enum sl_rql_dns, with REVERSE folded into PTR */
    uint8_t state;
    uint8_t count;
    char name[]; /* the normalized query name, NUL-terminated; immutable */
};

struct sl_netlookup {
    MMDB_s mmdb;
    int has_geo;
    uint64_t geo_lookups; /* atomic */

    pthread_mutex_t mu; /* guards everything below but rs */
    pthread_cond_t cv;  /* the resolver waits here for work or stop */
    struct centry *lru_head, *lru_tail;
    size_t cap, used;
    struct centry **buckets;
    size_t mask;
    uint64_t seed; /* random: names come from events, so chains should not be predictable */
    struct centry **queue;
    size_t qcap, qhead, qlen;
    int stop;
    uint64_t hits, misses, sent, failures, dropped;

    struct __res_state rs; /* the resolver thread's alone once it runs */
    int64_t ttl_ms, fail_ttl_ms;
    pthread_t thread;
};

/* ---- geo ---------------------------------------------------------------------------------- */

static int open_geo(struct sl_netlookup *n, const char *path, char *err, size_t errlen)
{
    int rc = MMDB_open(path, MMDB_MODE_MMAP, &n->mmdb);
    if (rc == MMDB_SUCCESS) {
        n->has_geo = 1;
        return 0;
    }
    if (rc == MMDB_FILE_OPEN_ERROR)
        sl_set_err(err, errlen, "SLUICE_GEOIP_DB=%s: cannot open the file (%s)", path,
                   strerror(errno));
    else
        sl_set_err(err, errlen,
                   "SLUICE_GEOIP_DB=%s: not a MaxMind DB file (%s); expected a GeoLite2-City "
                   "or GeoLite2-Country .mmdb",
                   path, MMDB_strerror(rc));
    return SL_EINVAL;
}

/* Copies the UTF-8 string at entry/a/b to out. Returns 1, or 0 when absent or too long. */
static int geo_string(MMDB_entry_s *entry, const char *a, const char *b, char *out, size_t outlen)
{
    MMDB_entry_data_s d;
    if (MMDB_get_value(entry, &d, a, b, NULL) != MMDB_SUCCESS || !d.has_data ||
        d.type != MMDB_DATA_TYPE_UTF8_STRING || d.data_size == 0 || d.data_size >= outlen)
        return 0;
    memcpy(out, d.utf8_string, d.data_size);
    out[d.data_size] = '\0';
    return 1;
}

int sl_netlookup_geo(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen)
{
    struct sl_netlookup *n = ud;
    if (!n || !n->has_geo || !ip || !out || outlen == 0)
        return 0;
    __atomic_add_fetch(&n->geo_lookups, 1, __ATOMIC_RELAXED);

    /* inet_pton, not getaddrinfo: strict address text only ("1" is not 0.0.0.1). */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        return 0;

    int mmerr = MMDB_SUCCESS;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(&n->mmdb, (struct sockaddr *)&ss, &mmerr);
    if (mmerr != MMDB_SUCCESS || !r.found_entry)
        return 0;
    switch (kind) {
    case SL_RQL_GEO_COUNTRY:
        return geo_string(&r.entry, "country", "iso_code", out, outlen) ||
               geo_string(&r.entry, "registered_country", "iso_code", out, outlen);
    case SL_RQL_GEO_CONTINENT:
        return geo_string(&r.entry, "continent", "code", out, outlen);
    case SL_RQL_GEO_TIMEZONE:
        return geo_string(&r.entry, "location", "time_zone", out, outlen);
    }
    return 0;
}

/* ---- the cache ---------------------------------------------------------------------------- */

static struct centry *cache_find(struct sl_netlookup *n, uint64_t hash, int kind, const char *name)
{
    for (struct centry *e = n->buckets[hash & n->mask]; e; e = e->hnext)
        if (e->hash == hash && e->kind == kind && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void cache_unlink(struct sl_netlookup *n, struct centry *victim)
{
    struct centry **pp = &n->buckets[victim->hash & n->mask];
    while (*pp != victim)
        pp = &(*pp)->hnext;
    *pp = victim->hnext;
}

static void lru_remove(struct sl_netlookup *n, struct centry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        n->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        n->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct sl_netlookup *n, struct centry *e)
{
    e->prev = NULL;
    e->next = n->lru_head;
    if (n->lru_head)
        n->lru_head->prev = e;
    else
        n->lru_tail = e;
    n->lru_head = e;
}

/* The least recently used entry that is not pending. There are never more than cap/2 + 1
 * pending entries, so the walk from the tail is short and finds one. */
static struct centry *lru_victim(struct sl_netlookup *n)
{
    struct centry *e = n->lru_tail;
    while (e && e->state == ST_PENDING)
        e = e->prev;
    return e;
}

/* Adds a pending entry for (kind, name), evicting the least recently used one when full.
 * Returns it or NULL. */
static struct centry *cache_insert(struct sl_netlookup *n, uint64_t hash, int kind,
                                   const char *name, size_t len)
{
    struct centry *e = malloc(sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    if (n->used == n->cap) {
        struct centry *victim = lru_victim(n);
        if (!victim) {
            free(e);
            return NULL;
        }
        cache_unlink(n, victim);
        lru_remove(n, victim);
        free(victim->answers);
        free(victim);
        n->used--;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->name, name, len + 1);
    e->hash = hash;
    e->kind = (uint8_t)kind;
    e->state = ST_PENDING;
    e->hnext = n->buckets[hash & n->mask];
    n->buckets[hash & n->mask] = e;
    lru_push_front(n, e);
    n->used++;
    return e;
}

static int copy_answers(const struct centry *e, char out[][256], int max)
{
    const char *p = e->answers;
    int i = 0;
    for (; i < e->count && i < max; i++) {
        size_t len = strlen(p);
        memcpy(out[i], p, len + 1);
        p += len + 1;
    }
    return i;
}

/* ---- query names -------------------------------------------------------------------------- */

static int arpa_name(const char *ip, char out[256])
{
    unsigned char a[16];
    static const char hex[] = "0123456789abcdef";
    if (inet_pton(AF_INET, ip, a) == 1)
        return snprintf(out, 256, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
    if (inet_pton(AF_INET6, ip, a) != 1)
        return -1;
    char *p = out;
    for (int i = 15; i >= 0; i--) {
        *p++ = hex[a[i] & 0xf];
        *p++ = '.';
        *p++ = hex[a[i] >> 4];
        *p++ = '.';
    }
    memcpy(p, "ip6.arpa", sizeof("ip6.arpa"));
    return (int)(p - out) + (int)sizeof("ip6.arpa") - 1;
}

/* A host name fit to send: labels of 1..63 letters, digits, '-' or '_', 253 bytes in all, one
 * trailing dot allowed. Lowercased into out. Returns the length or -1. */
static int host_name(const char *name, char out[256])
{
    size_t len = strnlen(name, 256);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return -1;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c - 'A' + 'a');
            label++;
        } else {
            return -1;
        }
        if (label > 63)
            return -1;
        out[i] = (char)c;
    }
    if (label == 0)
        return -1;
    out[len] = '\0';
    return (int)len;
}

/* The cache key for a mutator's argument: *out_kind and the query name. -1: nothing to ask. */
static int query_key(enum sl_rql_dns kind, const char *name, char out[256], int *out_kind)
{
    *out_kind = kind;
    if (kind == SL_RQL_DNS_REVERSE || kind == SL_RQL_DNS_PTR) {
        int len = arpa_name(name, out);
        *out_kind = SL_RQL_DNS_PTR; /* both ask the same question: share the answer */
        if (len >= 0 || kind == SL_RQL_DNS_REVERSE)
            return len;
    } else if (kind != SL_RQL_DNS_A && kind != SL_RQL_DNS_AAAA && kind != SL_RQL_DNS_MX &&
               kind != SL_RQL_DNS_NS) {
        return -1;
    }
    return host_name(name, out);
}

int sl_netlookup_dns(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max)
{
    struct sl_netlookup *n = ud;
    char key[256];
    int qkind;
    if (!n || !name)
        return 0;
    int len = query_key(kind, name, key, &qkind);
    if (len < 0)
        return 0;
    uint64_t hash = sl_hash64(key, (size_t)len, n->seed + (uint64_t)qkind);
    int64_t now = sl_mono_ms();
    int rc = -1;

    pthread_mutex_lock(&n->mu);
    struct centry *e = cache_find(n, hash, qkind, key);
    if (e && e->state == ST_READY && e->expires_ms > now) {
        if (e != n->lru_head) {
            lru_remove(n, e);
            lru_push_front(n, e);
        }
        n->hits++;
        rc = copy_answers(e, out, max);
    } else {
        n->misses++;
        if (e && e->state == ST_PENDING) {
            /* already queued or in flight */
        } else if (n->qlen == n->qcap) {
            n->dropped++;
        } else if (!e && !(e = cache_insert(n, hash, qkind, key, (size_t)len))) {
            n->dropped++;
        } else {
            if (e != n->lru_head) { /* an expired entry asked again is in use */
                lru_remove(n, e);
                lru_push_front(n, e);
            }
            free(e->answers);
            e->answers = NULL;
            e->count = 0;
            e->state = ST_PENDING;
            n->queue[(n->qhead + n->qlen) % n->qcap] = e;
            n->qlen++;
            pthread_cond_signal(&n->cv);
        }
    }
    pthread_mutex_unlock(&n->mu);
    return rc;
}

/* ---- the resolver thread ------------------------------------------------------------------ */

struct answers {
    int count;
    unsigned pref[SL_NETLOOKUP_MAX_ANSWERS];
    char text[SL_NETLOOKUP_MAX_ANSWERS][256];
};

static int qtype_of(int kind)
{
    switch (kind) {
    case SL_RQL_DNS_A:
        return ns_t_a;
    case SL_RQL_DNS_AAAA:
        return ns_t_aaaa;
    case SL_RQL_DNS_MX:
        return ns_t_mx;
    case SL_RQL_DNS_NS:
        return ns_t_ns;
    default:
        return ns_t_ptr;
    }
}

/* Reads one answer record's data as text into a->text (MX answers ordered by preference,
 * lowest first, stable among equals). Returns 1 if one was added. */
static int parse_rr(const ns_msg *msg, const ns_rr *rr, int qtype, struct answers *a)
{
    const unsigned char *rd = ns_rr_rdata(*rr);
    unsigned rdlen = ns_rr_rdlen(*rr);
    char text[256];
    unsigned pref = 0;
    switch (qtype) {
    case ns_t_a:
        return rdlen == 4 && inet_ntop(AF_INET, rd, a->text[a->count], 256) != NULL;
    case ns_t_aaaa:
        return rdlen == 16 && inet_ntop(AF_INET6, rd, a->text[a->count], 256) != NULL;
    case ns_t_mx:
        if (rdlen < 3)
            return 0;
        pref = (unsigned)rd[0] << 8 | rd[1];
        rd += 2;
        break;
    default:
        break;
    }
    if (dn_expand(ns_msg_base(*msg), ns_msg_end(*msg), rd, text, sizeof(text)) < 0 ||
        text[0] == '\0')
        return 0;
    int i = a->count;
    for (; i > 0 && a->pref[i - 1] > pref; i--) {
        memcpy(a->text[i], a->text[i - 1], 256);
        a->pref[i] = a->pref[i - 1];
    }
    memcpy(a->text[i], text, sizeof(text));
    a->pref[i] = pref;
    return 1;
}

/* Asks the server. Returns 0 with a->count answers (0: NXDOMAIN or no data), or SL_EAGAIN when
 * the server failed, timed out or sent something unreadable. */
static int resolve(struct sl_netlookup *n, int kind, const char *name, unsigned char *buf,
                   struct answers *a)
{
    int qtype = qtype_of(kind);
    a->count = 0;
    int len = res_nquery(&n->rs, name, ns_c_in, qtype, buf, RESP_MAX);
    if (len < 0) {
        int h = n->rs.res_h_errno;
        SL_DEBUG("dns: %s (type %d): %s", name, qtype, hstrerror(h));
        return h == HOST_NOT_FOUND || h == NO_DATA ? 0 : SL_EAGAIN;
    }
    ns_msg msg;
    if (ns_initparse(buf, len < RESP_MAX ? len : RESP_MAX, &msg) < 0)
        return SL_EAGAIN;
    int nrr = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < nrr && a->count < SL_NETLOOKUP_MAX_ANSWERS; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
            return SL_EAGAIN;
        /* CNAMEs on the way to the answer are not answers */
        if (ns_rr_class(rr) == ns_c_in && (int)ns_rr_type(rr) == qtype &&
            parse_rr(&msg, &rr, qtype, a))
            a->count++;
    }
    return 0;
}

/* Packs the answers into one allocation. Returns it, or NULL (count 0 or out of memory). */
static char *pack_answers(const struct answers *a)
{
    size_t total = 0;
    for (int i = 0; i < a->count; i++)
        total += strlen(a->text[i]) + 1;
    char *blob = total ? malloc(total) : NULL;
    char *p = blob;
    for (int i = 0; blob && i < a->count; i++) {
        size_t len = strlen(a->text[i]) + 1;
        memcpy(p, a->text[i], len);
        p += len;
    }
    return blob;
}

static void *resolver_main(void *arg)
{
    struct sl_netlookup *n = arg;
    unsigned char *buf = malloc(RESP_MAX);
    struct answers *a = malloc(sizeof(*a));
    for (;;) {
        pthread_mutex_lock(&n->mu);
        while (!n->stop && n->qlen == 0)
            pthread_cond_wait(&n->cv, &n->mu);
        if (n->stop) {
            pthread_mutex_unlock(&n->mu);
            break;
        }
        struct centry *e = n->queue[n->qhead];
        n->qhead = (n->qhead + 1) % n->qcap;
        n->qlen--;
        int send = buf && a;
        if (send)
            n->sent++;
        pthread_mutex_unlock(&n->mu);

        /* e is pending, so nobody evicts or changes it: its name is safe to read unlocked. */
        int rc = send ? resolve(n, e->kind, e->name, buf, a) : SL_ENOMEM;
        char *blob = rc == 0 ? pack_answers(a) : NULL;
        if (rc == 0 && a->count > 0 && !blob)
            rc = SL_ENOMEM;

        pthread_mutex_lock(&n->mu);
        e->state = ST_READY;
        if (rc == 0) {
            e->answers = blob;
            e->count = (uint8_t)a->count;
            e->expires_ms = sl_mono_ms() + n->ttl_ms;
        } else {
            e->count = 0;
            e->expires_ms = sl_mono_ms() + n->fail_ttl_ms;
            n->failures++;
        }
        pthread_mutex_unlock(&n->mu);
    }
    free(a);
    free(buf);
    return NULL;
}

/* ---- open and close ----------------------------------------------------------------------- */

/* Points the private resolver state at "host:port", or keeps resolv.conf's first server. */
static int set_server(struct sl_netlookup *n, const char *server, int64_t timeout_s, char *err,
                      size_t errlen)
{
    memset(&n->rs, 0, sizeof(n->rs));
    if (res_ninit(&n->rs) != 0) {
        sl_set_err(err, errlen, "DNS: cannot initialize the resolver (res_ninit failed)");
        return SL_EIO;
    }
    n->rs.retrans = (int)timeout_s;
    n->rs.retry = 2; /* attempts: the first and one retry */
    n->rs.nscount = 1;
    if (!server || !*server)
        return 0;

    const char *colon = strrchr(server, ':');
    char host[256];
    int64_t port;
    if (!colon || colon == server || (size_t)(colon - server) >= sizeof(host) ||
        sl_parse_int64(colon + 1, 1, 65535, &port) != 0)
        goto bad;
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_DGRAM;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
            goto bad;
        sin.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
        freeaddrinfo(res);
    }
    n->rs.nsaddr_list[0] = sin;
    return 0;
bad:
    res_nclose(&n->rs);
    sl_set_err(err, errlen,
               "SLUICE_DNS_SERVER=%s: expected host:port with an IPv4 address (or a name that "
               "resolves to one) and a port 1..65535",
               server);
    return SL_EINVAL;
}

static int alloc_cache(struct sl_netlookup *n, size_t cache_size)
{
    size_t nb = 16;
    while (nb < cache_size)
        nb <<= 1;
    n->cap = cache_size;
    n->mask = nb - 1;
    n->qcap = cache_size / 2 < SL_NETLOOKUP_QUEUE_MAX ? cache_size / 2 : SL_NETLOOKUP_QUEUE_MAX;
    n->buckets = calloc(nb, sizeof(*n->buckets));
    n->queue = calloc(n->qcap, sizeof(*n->queue));
    return n->buckets && n->queue ? 0 : SL_ENOMEM;
}

struct sl_netlookup *sl_netlookup_open(const char *geoip_path, const char *dns_server,
                                       size_t cache_size, int64_t ttl_s, int64_t timeout_s,
                                       char *err, size_t errlen)
{
    if (cache_size < 16 || cache_size > 16777216 || ttl_s < 1 || ttl_s > 86400 || timeout_s < 1 ||
        timeout_s > 60) {
        sl_set_err(err, errlen,
                   "DNS cache: size %zu, ttl %lld s, timeout %lld s: expected a size "
                   "16..16777216, a ttl 1..86400 and a timeout 1..60",
                   cache_size, (long long)ttl_s, (long long)timeout_s);
        return NULL;
    }
    struct sl_netlookup *n = calloc(1, sizeof(*n));
    if (!n) {
        sl_set_err(err, errlen, "netlookup: out of memory");
        return NULL;
    }
    if (geoip_path && *geoip_path && open_geo(n, geoip_path, err, errlen) != 0) {
        free(n);
        return NULL;
    }
    if (set_server(n, dns_server, timeout_s, err, errlen) != 0)
        goto fail_geo;
    if (alloc_cache(n, cache_size) != 0) {
        sl_set_err(err, errlen, "DNS cache of %zu entries: out of memory", cache_size);
        goto fail_res;
    }
    if (sl_random_bytes(&n->seed, sizeof(n->seed)) != 0)
        n->seed = (uint64_t)sl_now_ms(); /* weaker, still not a constant */
    n->ttl_ms = ttl_s * 1000;
    n->fail_ttl_ms = (ttl_s < SL_NETLOOKUP_FAIL_TTL ? ttl_s : SL_NETLOOKUP_FAIL_TTL) * 1000;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    int prc = pthread_create(&n->thread, NULL, resolver_main, n);
    if (prc != 0) {
        sl_set_err(err, errlen, "DNS resolver thread: %s", strerror(prc));
        pthread_cond_destroy(&n->cv);
        pthread_mutex_destroy(&n->mu);
        goto fail_res;
    }
    return n;
fail_res:
    free(n->queue);
    free(n->buckets);
    res_nclose(&n->rs);
fail_geo:
    if (n->has_geo)
        MMDB_close(&n->mmdb);
    free(n);
    return NULL;
}

void sl_netlookup_close(struct sl_netlookup *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    n->stop = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    res_nclose(&n->rs);
    for (struct centry *e = n->lru_head, *next; e; e = next) {
        next = e->next;
        free(e->answers);
        free(e);
    }
    free(n->queue);
    free(n->buckets);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    if (n->has_geo)
        MMDB_close(&n->mmdb);
    free(n);
}

void sl_netlookup_stats(const struct sl_netlookup *cn, struct sl_netlookup_stats *out)
{
    struct sl_netlookup *n = (struct sl_netlookup *)cn; /* the mutex is not logical state */
    memset(out, 0, sizeof(*out));
    if (!n)
        return;
    out->geo_lookups = __atomic_load_n(&n->geo_lookups, __ATOMIC_RELAXED);
    pthread_mutex_lock(&n->mu);
    out->dns_hits = n->hits;
    out->dns_misses = n->misses;
    out->dns_queries_sent = n->sent;
    out->dns_failures = n->failures;
    out->dns_dropped = n->dropped;
    out->cached = n->used;
    pthread_mutex_unlock(&n->mu);
}
