/* Network lookups for the RQL geo and DNS mutators: a MaxMind DB for geo_*, and a bounded DNS
 * cache filled by one background resolver thread so that rule evaluation never waits on the
 * network. sl_netlookup_geo and sl_netlookup_dns have the shapes of struct sl_rql_env's geo and
 * dns callbacks: pass the struct sl_netlookup pointer as the env's ud. */
#ifndef SL_RULES_NETLOOKUP_H
#define SL_RULES_NETLOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "rules/rql.h"

struct sl_netlookup;

#define SL_NETLOOKUP_MAX_ANSWERS 8    /* answers kept per cached name */
#define SL_NETLOOKUP_QUEUE_MAX   1024 /* lookups waiting for the resolver (fewer for tiny caches) */
#define SL_NETLOOKUP_FAIL_TTL    30   /* seconds a server failure is remembered (at most ttl_s) */

/* Opens the lookups. geoip_path: a MaxMind DB file, or NULL / "" for no geo lookups.
 * dns_server: "host:port" (IPv4 address or a name resolved once, here), or NULL / "" for the
 * first nameserver of /etc/resolv.conf. cache_size: DNS entries kept (>= 16); ttl_s: how long an
 * answer or a known absence is kept (>= 1); timeout_s: how long one DNS attempt waits (>= 1;
 * one retry follows a timeout). Starts the resolver thread. Returns the handle (release with
 * sl_netlookup_close), or NULL with err filled: the GeoIP file cannot be opened or is not a
 * MaxMind DB, dns_server is malformed, an argument is out of range, or memory or the thread
 * could not be had. Call from any thread; the strings are copied. */
struct sl_netlookup *sl_netlookup_open(const char *geoip_path, const char *dns_server,
                                       size_t cache_size, int64_t ttl_s, int64_t timeout_s,
                                       char *err, size_t errlen);

/* Stops and joins the resolver (waiting for a query in flight, at most about 2 * timeout_s),
 * then frees everything. No other thread may be using n. NULL is a no-op. */
void sl_netlookup_close(struct sl_netlookup *n);

/* The sl_rql_env geo callback; n is a struct sl_netlookup *. Writes the ISO country code
 * (country.iso_code, else registered_country.iso_code), the continent code or the IANA time
 * zone of the address text ip (IPv4 or IPv6, NUL-terminated) to out, NUL-terminated, and
 * returns 1. Returns 0 when no database is open, the address is malformed or unknown, the field
 * is missing, or the answer does not fit in outlen. Thread-safe; never blocks. */
int sl_netlookup_geo(void *n, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen);

/* The sl_rql_env dns callback; n is a struct sl_netlookup *. name is a host name (A, AAAA, MX,
 * NS; one trailing dot and case are ignored) or, for SL_RQL_DNS_REVERSE and SL_RQL_DNS_PTR, an IP
 * address (queried as its in-addr.arpa / ip6.arpa name; SL_RQL_DNS_PTR also takes such a name
 * directly). When the cache holds the answer: copies up to max answers (NUL-terminated; A and
 * AAAA as address text, MX as exchange hosts by preference, NS and PTR as host names, without
 * the trailing dot) to out and returns how many, or 0 for a known absence (NXDOMAIN, no data, a
 * recent server failure, or a name that cannot be queried). Otherwise returns -1 at once and
 * queues the query for the resolver (not twice while pending; dropped and counted when the
 * queue is full). Thread-safe; never waits for the network. */
int sl_netlookup_dns(void *n, enum sl_rql_dns kind, const char *name, char out[][256], int max);

struct sl_netlookup_stats {
    uint64_t geo_lookups;      /* sl_netlookup_geo calls with a database open */
    uint64_t dns_hits;         /* sl_netlookup_dns calls answered from the cache */
    uint64_t dns_misses;       /* calls that returned -1 */
    uint64_t dns_queries_sent; /* queries the resolver sent (each counted once, retries aside) */
    uint64_t dns_failures;     /* queries that timed out or got a server failure */
    uint64_t dns_dropped;      /* misses not queued because the queue was full */
    size_t cached;             /* entries in the cache (answers, absences and pending) */
};

/* A consistent snapshot of the counters. Thread-safe. */
void sl_netlookup_stats(const struct sl_netlookup *n, struct sl_netlookup_stats *out);

#endif
