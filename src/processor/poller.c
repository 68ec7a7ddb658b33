/* The Intel List poller: a thread of worker 0 (which also runs the retroactive rule tasks,
 * retro.c, between polls) that fetches the lists that have a url when their
 * poll_interval has passed (or a poll was asked for), adds the feed's values with an expiry of
 * 1.5 poll intervals, refreshes the expiry of values still in the feed, and deletes values the
 * feed dropped once they expire. The outcome of each poll is written to the list's document
 * (last_polled, last_poll_status, last_poll_values), so the API shows it; every write bumps the
 * store's meta version and the workers reload the list. */
#include "processor/poller.h"
#include "actions/actions.h"
#include "processor/retro.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "rules/intel.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FEED_MAX_BYTES  ((size_t)256 << 20)
#define FEED_TIMEOUT_S  120
#define CONNECT_TIMEOUT 15
#define ADD_CHUNK       100000 /* values per store call (each one a transaction and a reload) */
#define CSV_ROW_MAX     65536  /* bytes of a csv row as the store keeps it (JSON) */
#define TICK_MS         500
#define EXPIRE_EVERY_MS 60000 /* how often old bulk request outcomes are deleted */

struct sl_poller {
    const struct sl_config *cfg;
    volatile sig_atomic_t *stop;
    pthread_t thread;
    int started;
    _Atomic int quit; /* sl_poller_stop */
    struct sl_store *st;
    int64_t last_check_ms;
    int64_t last_expire_ms; /* monotonic, of the last expiry of bulk request outcomes */
};

struct feed {
    char *data;
    size_t len, cap;
    int too_big;
    int allow_private;
    char refused_addr[INET6_ADDRSTRLEN]; /* a connection refused by the address check */
};

/* Whether an IPv4 address (host order) is one a feed may not be fetched from: this host,
 * private and shared networks, link-local (cloud metadata), multicast, reserved. */
static int v4_internal(uint32_t a)
{
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 16) == 0xa9fe ||
           (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 || (a >> 22) == (100u << 2 | 1) ||
           (a >> 28) >= 0xe;
}

static int addr_internal(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_internal(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return 1;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(b, mapped, 12))
        return v4_internal((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 |
                           b[15]);
    int zero = 1;
    for (int i = 0; i < 15; i++)
        zero &= b[i] == 0;
    return (zero && (b[15] == 0 || b[15] == 1)) || (b[0] & 0xfe) == 0xfc || /* ::, ::1, fc00::/7 */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || b[0] == 0xff; /* fe80::/10, ff00::/8 */
}

/* Every connection curl opens (redirects included) passes this check, so neither a url, a
 * redirect nor a DNS answer can point a feed at an internal service. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct feed *f = ud;
    (void)purpose;
    if (!f->allow_private && addr_internal(&a->addr)) {
        const void *ip = a->family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)&a->addr)->sin_addr
                             : (const void *)&((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
        if (!inet_ntop(a->family, ip, f->refused_addr, sizeof(f->refused_addr)))
            snprintf(f->refused_addr, sizeof(f->refused_addr), "?");
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct feed *f = ud;
    size_t n = size * nmemb;
    if (f->len + n > FEED_MAX_BYTES) {
        f->too_big = 1;
        return 0;
    }
    if (f->len + n + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 65536;
        while (cap < f->len + n + 1)
            cap *= 2;
        char *d = realloc(f->data, cap);
        if (!d)
            return 0;
        f->data = d;
        f->cap = cap;
    }
    memcpy(f->data + f->len, ptr, n);
    f->len += n;
    f->data[f->len] = 0;
    return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    struct sl_poller *p = ud;
    return *p->stop || atomic_load(&p->quit) ? 1 : 0;
}

/* Fetches url into f. Returns 0, or an error with a message. */
static int fetch(struct sl_poller *p, const char *url, struct feed *f, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    char cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    if (!c) {
        sl_set_err(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)FEED_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sluice/" SLUICE_VERSION " intel-list-poller");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, f);
    f->allow_private = p->cfg->list_fetch_private;
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (f->too_big) {
        sl_set_err(err, errlen, "the feed is larger than %zu MiB", FEED_MAX_BYTES >> 20);
        return SL_EFULL;
    }
    if (rc != CURLE_OK && f->refused_addr[0]) {
        sl_set_err(err, errlen,
                   "%s is a loopback, private, link-local or multicast address: feeds are not "
                   "fetched from those (SLUICE_LIST_FETCH_PRIVATE)",
                   f->refused_addr);
        return SL_EINVAL;
    }
    if (rc != CURLE_OK) {
        sl_set_err(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        return SL_EIO;
    }
    if (status < 200 || status > 299) {
        sl_set_err(err, errlen, "HTTP status %ld", status);
        return SL_EIO;
    }
    return 0;
}

static const char *jstr(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Splits one CSV line into a JSON array of cells (RFC 4180 quoting), as the store keeps rows. */
static char *csv_row(const char *s, size_t len)
{
    cJSON *row = cJSON_CreateArray();
    char *cell = malloc(len + 1), *text = NULL;
    size_t i = 0;
    if (!row || !cell)
        goto out;
    for (;;) {
        size_t n = 0;
        if (i < len && s[i] == '"') {
            for (i++; i < len; i++) {
                if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
                    cell[n++] = s[i++];
                else if (s[i] == '"')
                    break;
                else
                    cell[n++] = s[i];
            }
            while (i < len && s[i] != ',')
                i++;
        } else {
            for (; i < len && s[i] != ','; i++)
                cell[n++] = s[i];
        }
        cell[n] = 0;
        if (!cJSON_AddItemToArray(row, cJSON_CreateString(cell)))
            goto out;
        if (i >= len)
            break;
        i++; /* the comma */
    }
    text = cJSON_PrintUnformatted(row);
out:
    cJSON_Delete(row);
    free(cell);
    return text;
}

struct values {
    struct sl_list_value *v;
    char **owned; /* csv rows made for the store (csv lists only) */
    size_t n, cap, nowned, owned_cap;
    size_t max;       /* SLUICE_LIST_MAX_VALUES */
    size_t truncated; /* values past max, not taken */
};

static int values_push(struct values *vs, const char *s, size_t len, int owned)
{
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 4096;
        struct sl_list_value *v = realloc(vs->v, cap * sizeof(*v));
        if (!v)
            return SL_ENOMEM;
        vs->v = v;
        vs->cap = cap;
    }
    if (owned && vs->nowned == vs->owned_cap) {
        size_t cap = vs->owned_cap ? vs->owned_cap * 2 : 4096;
        char **o = realloc(vs->owned, cap * sizeof(*o));
        if (!o)
            return SL_ENOMEM;
        vs->owned = o;
        vs->owned_cap = cap;
    }
    vs->v[vs->n].value = s;
    vs->v[vs->n].len = len;
    vs->n++;
    if (owned)
        vs->owned[vs->nowned++] = (char *)s;
    return 0;
}

static void values_free(struct values *vs)
{
    for (size_t i = 0; i < vs->nowned; i++)
        cJSON_free(vs->owned[i]); /* csv rows printed by cJSON (the worker's allocator) */
    free(vs->v);
    free(vs->owned);
}

/* The values of a feed: one per line; blank lines and lines starting with '#' or ';' are
 * skipped. An "ip" list takes the first address or network of each line (feeds often add a
 * comment after it); a csv list takes whole rows (the first one is skipped when it equals the
 * list's headers). Lines a list cannot hold are counted in *refused. */
static int parse_feed(const cJSON *doc, char *data, size_t len, struct values *vs, size_t *refused)
{
    const char *type = jstr(doc, "list_type"), *dt = jstr(doc, "data_type");
    int csv = type && !strcmp(type, "csv"), ip = dt && !strcmp(dt, "ip");
    int patterns = type && !strcmp(type, "patterns");
    int cs = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "case_sensitive"));
    char err[256];
    size_t i = 0;
    int first = 1;
    while (i < len) {
        size_t start = i;
        while (i < len && data[i] != '\n')
            i++;
        size_t end = i++;
        while (end > start &&
               (data[end - 1] == '\r' || data[end - 1] == ' ' || data[end - 1] == '\t'))
            end--;
        while (start < end && (data[start] == ' ' || data[start] == '\t'))
            start++;
        if (start == end || data[start] == '#' || data[start] == ';')
            continue;
        size_t n = end - start;
        char *s = data + start;
        s[n] = 0; /* the feed buffer is ours: terminate the line in place */
        int rc;
        if (vs->n >= vs->max) {
            vs->truncated++;
            continue;
        }
        if (!sl_utf8_valid(s, n)) {
            (*refused)++;
            continue;
        }
        if (csv) {
            if (first) {
                first = 0;
                const cJSON *h = cJSON_GetObjectItemCaseSensitive(doc, "csv_headers");
                const cJSON *h0 = cJSON_GetArrayItem(h, 0);
                if (cJSON_IsString(h0) && !strncmp(s, h0->valuestring, strlen(h0->valuestring)))
                    continue;
            }
            char *row = csv_row(s, n);
            if (!row)
                return SL_ENOMEM;
            if (strlen(row) > CSV_ROW_MAX || n > SL_INTEL_VALUE_MAX * 4) {
                cJSON_free(row);
                (*refused)++;
                continue;
            }
            if ((rc = values_push(vs, row, strlen(row), 1))) {
                cJSON_free(row);
                return rc;
            }
            continue;
        }
        if (ip) {
            size_t k = 0;
            while (k < n && s[k] != ' ' && s[k] != '\t' && s[k] != ',' && s[k] != ';' &&
                   s[k] != '#')
                k++;
            uint8_t addr[16];
            int bits;
            if (sl_ip_parse(s, k, 1, addr, &bits) != 0) {
                (*refused)++;
                continue;
            }
            s[k] = 0;
            n = k;
        }
        if (n > SL_INTEL_VALUE_MAX || !sl_utf8_valid(s, n) ||
            (patterns && sl_intel_pattern_check(s, n, cs, err, sizeof(err)) != 0)) {
            (*refused)++;
            continue;
        }
        if ((rc = values_push(vs, s, n, 0)))
            return rc;
    }
    return 0;
}

/* Writes the outcome of a poll into the list's document. */
static void record_poll(struct sl_poller *p, const char *uuid, int64_t now, const char *status,
                        int64_t nvalues)
{
    struct sl_meta m;
    char iso[25];
    memset(&m, 0, sizeof(m));
    if (sl_store_meta_get(p->st, SL_META_LIST, uuid, &m) != 0)
        return; /* deleted meanwhile */
    cJSON *doc = cJSON_Parse(m.doc);
    free(m.doc);
    m.doc = NULL;
    if (!doc)
        return;
    sl_time_format(now, iso);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "last_polled");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "last_poll_status");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "poll_requested");
    cJSON_AddStringToObject(doc, "last_polled", iso);
    cJSON_AddStringToObject(doc, "last_poll_status", status);
    if (nvalues >= 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "last_poll_values");
        cJSON_AddNumberToObject(doc, "last_poll_values", (double)nvalues);
    }
    m.doc = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (m.doc && sl_store_meta_put(p->st, SL_META_LIST, &m, 0) != 0)
        SL_WARN("intel list %s: cannot record the poll", uuid);
    cJSON_free(m.doc); /* printed by cJSON: the worker's allocator, not malloc */
}

static void poll_list(struct sl_poller *p, const cJSON *doc, int64_t now)
{
    const char *uuid = jstr(doc, "uuid"), *url = jstr(doc, "url"), *name = jstr(doc, "name");
    int64_t interval_min = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "poll_interval"));
    struct feed f = {0};
    struct values vs = {0};
    char err[512], status[700];
    size_t refused = 0, added = 0, expired = 0;
    if (interval_min < 1)
        interval_min = 60;
    vs.max = (size_t)p->cfg->list_max_values;
    SL_INFO("intel list \"%s\": polling %s", name, url);
    int rc = fetch(p, url, &f, err, sizeof(err));
    if (rc == 0 && (rc = parse_feed(doc, f.data ? f.data : "", f.len, &vs, &refused)) != 0)
        sl_set_err(err, sizeof(err), "%s", sl_strerror(rc));
    /* Values still in the feed get a new expiry; those it dropped keep theirs and go when it
     * passes (1.5 poll intervals, so one failed poll does not empty the list). */
    int64_t expire_at = now + interval_min * 60000 * 3 / 2;
    for (size_t i = 0; rc == 0 && i < vs.n; i += ADD_CHUNK) {
        size_t n = vs.n - i < ADD_CHUNK ? vs.n - i : ADD_CHUNK, a = 0;
        rc = sl_store_list_values_add(p->st, uuid, vs.v + i, n, expire_at, &a);
        added += a;
        if (rc)
            sl_set_err(err, sizeof(err), "store: %s", sl_strerror(rc));
    }
    if (rc == 0 && sl_store_list_values_expire(p->st, uuid, now, &expired) != 0)
        SL_WARN("intel list \"%s\": cannot expire values", name);
    if (rc == 0) {
        snprintf(status, sizeof(status),
                 "ok: %zu values, %zu new, %zu expired, %zu lines refused%s", vs.n, added, expired,
                 refused,
                 vs.truncated ? "; the feed has more values than SLUICE_LIST_MAX_VALUES "
                                "allows: the rest were not taken"
                              : "");
        SL_INFO("intel list \"%s\": %s", name, status);
    } else {
        snprintf(status, sizeof(status), "error: %s", err);
        SL_WARN("intel list \"%s\": poll of %s failed: %s", name, url, err);
    }
    record_poll(p, uuid, now, status, rc == 0 ? (int64_t)vs.n : -1);
    values_free(&vs);
    free(f.data);
}

/* Whether a list is due: never polled, asked for, or poll_interval minutes since the last. */
static int due(const cJSON *doc, int64_t now)
{
    const char *last = jstr(doc, "last_polled"), *url = jstr(doc, "url");
    int64_t interval = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "poll_interval"));
    int64_t at = 0;
    if (!url || !url[0] || cJSON_IsFalse(cJSON_GetObjectItem(doc, "active")))
        return 0;
    if (cJSON_IsTrue(cJSON_GetObjectItem(doc, "poll_requested")) || !last ||
        sl_time_parse(last, strlen(last), &at) != 0)
        return 1;
    return now - at >= (interval > 0 ? interval : 60) * 60000;
}

static void check_lists(struct sl_poller *p)
{
    struct sl_meta *lists = NULL;
    size_t n = 0;
    int rc = sl_store_meta_list(p->st, SL_META_LIST, NULL, 0, &lists, &n);
    if (rc) {
        SL_WARN("list poller: cannot read the lists: %s", sl_strerror(rc));
        return;
    }
    for (size_t i = 0; i < n && !*p->stop && !atomic_load(&p->quit); i++) {
        cJSON *doc = cJSON_Parse(lists[i].doc);
        int64_t now = sl_now_ms();
        if (doc && due(doc, now))
            poll_list(p, doc, now);
        cJSON_Delete(doc);
    }
    sl_store_meta_free(lists, n);
}

/* Deletes the outcomes of bulk requests older than SLUICE_INGEST_TASK_RETENTION, at most once
 * every EXPIRE_EVERY_MS (the store works in bounded transactions, so ingest is not held up). */
static void expire_ingest_tasks(struct sl_poller *p)
{
    int64_t now = sl_mono_ms();
    size_t n = 0;
    if (p->last_expire_ms && now - p->last_expire_ms < EXPIRE_EVERY_MS)
        return;
    p->last_expire_ms = now ? now : 1;
    int rc = sl_store_ingest_task_expire(p->st,
                                         sl_now_ms() - p->cfg->ingest_task_retention_s * 1000, &n);
    if (rc)
        SL_WARN("cannot expire old bulk request outcomes: %s", sl_strerror(rc));
    else if (n)
        SL_DEBUG("expired %zu bulk request outcomes", n);
}

static void *poller_main(void *arg)
{
    struct sl_poller *p = arg;
    while (!*p->stop && !atomic_load(&p->quit)) {
        int64_t now = sl_mono_ms();
        if (p->last_check_ms == 0 || now - p->last_check_ms >= p->cfg->list_poll_check_s * 1000) {
            p->last_check_ms = now;
            check_lists(p);
        }
        sl_retro_run(p->st, p->stop, &p->quit);
        sl_actions_run_pending(p->st, p->stop, &p->quit);
        expire_ingest_tasks(p);
        struct timespec ts = {0, TICK_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

struct sl_poller *sl_poller_start(const struct sl_config *cfg, volatile sig_atomic_t *stop)
{
    char err[512];
    struct sl_poller *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cfg = cfg;
    p->stop = stop;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        !(p->st = sl_store_open(cfg->data_dir, err, sizeof(err)))) {
        SL_ERROR("list poller: cannot start: %s", p->st ? "libcurl" : err);
        sl_poller_stop(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, poller_main, p) != 0) {
        sl_poller_stop(p);
        return NULL;
    }
    p->started = 1;
    return p;
}

void sl_poller_stop(struct sl_poller *p)
{
    if (!p)
        return;
    atomic_store(&p->quit, 1);
    if (p->started)
        pthread_join(p->thread, NULL);
    sl_store_close(p->st);
    free(p);
}
