/* Unit tests for src/rules/netlookup: geo lookups against a MaxMind DB written by
 * tests/fixtures/make_geoip.pl, and the non-blocking DNS cache against a real dnsmasq started
 * on a free port (Debian package dnsmasq-base). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "rules/netlookup.h"

#define DNSMASQ     "/usr/sbin/dnsmasq"
#define WAIT_MS     10000 /* longest wait for the resolver to answer */
#define FAST_MS     200   /* a lookup that takes longer than this has blocked */
#define IP6_ARPA_10 "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
#define NS1_WIRE    "036e7331076578616d706c65047465737400" /* ns1.example.test */

static char tmpdir[256];

/* ---- helpers ------------------------------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The repository root: SLUICE_SOURCE_DIR, else derived from this file's path. */
static void source_dir(char *out, size_t len)
{
    const char *env = getenv("SLUICE_SOURCE_DIR");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    snprintf(out, len, "%s", __FILE__);
    char *p = strstr(out, "tests/unit/test_netlookup.c");
    if (p == out)
        snprintf(out, len, ".");
    else if (p)
        p[-1] = '\0';
}

/* Runs argv (stdout and stderr to log, when set) and returns its exit status, or -1. */
static int run(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both). */
static int free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof(sin);
        int port = 0;
        if (bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
            getsockname(u, (struct sockaddr *)&sin, &sl) == 0 &&
            bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0)
            port = ntohs(sin.sin_port);
        close(u);
        close(t);
        if (port)
            return port;
    }
    return 0;
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        fprintf(stderr, "  %s", line);
    if (f)
        fclose(f);
}

/* Asks 127.0.0.1:port for a.example.test directly (1 s per try) until it answers. */
static int dnsmasq_ready(pid_t pid, int port)
{
    struct __res_state rs;
    memset(&rs, 0, sizeof(rs));
    if (res_ninit(&rs) != 0)
        return 0;
    rs.nscount = 1;
    rs.retrans = 1;
    rs.retry = 1;
    rs.nsaddr_list[0].sin_family = AF_INET;
    rs.nsaddr_list[0].sin_port = htons((uint16_t)port);
    rs.nsaddr_list[0].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned char buf[512];
    int ok = 0;
    for (int64_t end = sl_mono_ms() + WAIT_MS; !ok && sl_mono_ms() < end;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            break; /* it exited */
        ok = res_nquery(&rs, "a.example.test", ns_c_in, ns_t_a, buf, sizeof(buf)) > 0;
        if (!ok)
            sleep_ms(20);
    }
    res_nclose(&rs);
    return ok;
}

/* Starts dnsmasq on a free port with the test zone. Returns its pid (and *out_port) or -1. */
static pid_t start_dnsmasq(int *out_port, const char *logname)
{
    int port = free_port();
    if (!port)
        return -1;
    char portarg[32], log[512];
    snprintf(portarg, sizeof(portarg), "--port=%d", port);
    snprintf(log, sizeof(log), "%s/%s", tmpdir, logname);
    char *argv[] = {DNSMASQ,
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    portarg,
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--pid-file=",
                    "--log-facility=-",
                    "--log-queries",
                    "--local=/example.test/",
                    "--local=/2.0.192.in-addr.arpa/",
                    "--address=/a.example.test/192.0.2.10",
                    "--address=/a.example.test/2001:db8::10",
                    "--address=/w.example.test/192.0.2.20",
                    "--mx-host=example.test,mail.example.test,10",
                    "--mx-host=example.test,backup.example.test,5",
                    "--dns-rr=example.test,2," NS1_WIRE,
                    "--ptr-record=10.2.0.192.in-addr.arpa,host.example.test",
                    "--ptr-record=" IP6_ARPA_10 ",host6.example.test",
                    NULL};
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(DNSMASQ, argv);
        _exit(127);
    }
    if (!dnsmasq_ready(pid, port)) {
        fprintf(stderr, "dnsmasq on port %d did not answer; its log:\n", port);
        print_file(log);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    *out_port = port;
    return pid;
}

static void stop_process(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

/* Polls the lookup until it stops missing. Returns its result (-1 after WAIT_MS). */
static int wait_dns(struct sl_netlookup *n, enum sl_rql_dns kind, const char *name, char out[][256],
                    int max)
{
    int rc = -1;
    for (int64_t end = sl_mono_ms() + WAIT_MS; rc == -1 && sl_mono_ms() < end;) {
        rc = sl_netlookup_dns(n, kind, name, out, max);
        if (rc == -1)
            sleep_ms(2);
    }
    return rc;
}

static struct sl_netlookup_stats stats_of(struct sl_netlookup *n)
{
    struct sl_netlookup_stats s;
    sl_netlookup_stats(n, &s);
    return s;
}

/* Polls the stats until pred holds or WAIT_MS pass. Returns whether it held. */
static int wait_stats(struct sl_netlookup *n, int (*pred)(const struct sl_netlookup_stats *))
{
    for (int64_t end = sl_mono_ms() + WAIT_MS; sl_mono_ms() < end; sleep_ms(2)) {
        struct sl_netlookup_stats s = stats_of(n);
        if (pred(&s))
            return 1;
    }
    return 0;
}

static int make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sl_netlookup_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static void remove_tmpdir(void)
{
    char *argv[] = {"rm", "-rf", tmpdir, NULL};
    if (tmpdir[0])
        run(argv, NULL);
    tmpdir[0] = '\0';
}

/* ---- geo ---------------------------------------------------------------------------------- */

static char geo_db[512];

static int geo_setup(void **state)
{
    (void)state;
    if (make_tmpdir() != 0)
        return -1;
    char src[512], script[600], log[600];
    source_dir(src, sizeof(src));
    snprintf(script, sizeof(script), "%s/tests/fixtures/make_geoip.pl", src);
    snprintf(geo_db, sizeof(geo_db), "%s/test.mmdb", tmpdir);
    snprintf(log, sizeof(log), "%s/make_geoip.log", tmpdir);
    char *argv[] = {"perl", script, geo_db, NULL};
    int rc = run(argv, log);
    if (rc == 127 || rc == 77) {
        /* scripts/setup.sh installs both: a missing one is a broken set-up, not a skip. */
        fprintf(stderr, "geo tests cannot run: %s (run scripts/setup.sh)\n",
                rc == 127 ? "perl is not installed"
                          : "MaxMind::DB::Writer is not installed (libmaxmind-db-writer-perl)");
        return -1;
    }
    if (rc != 0) {
        fprintf(stderr, "%s failed (exit %d):\n", script, rc);
        print_file(log);
        return -1;
    }
    return 0;
}

static int geo_teardown(void **state)
{
    (void)state;
    remove_tmpdir();
    return 0;
}

static void expect_geo(struct sl_netlookup *n, enum sl_rql_geo kind, const char *ip,
                       const char *want)
{
    char out[64] = "unchanged";
    int rc = sl_netlookup_geo(n, kind, ip, out, sizeof(out));
    if (want) {
        assert_int_equal(rc, 1);
        assert_string_equal(out, want);
    } else {
        assert_int_equal(rc, 0);
    }
}

static void test_geo_kinds(void **state)
{
    (void)state;
    char err[512] = "";
    struct sl_netlookup *n = sl_netlookup_open(geo_db, "", 16, 300, 2, err, sizeof(err));
    assert_non_null(n);
    expect_geo(n, SL_RQL_GEO_COUNTRY, "192.0.2.5", "GB");
    expect_geo(n, SL_RQL_GEO_CONTINENT, "192.0.2.5", "EU");
    expect_geo(n, SL_RQL_GEO_TIMEZONE, "192.0.2.5", "Europe/London");
    /* registered_country stands in for a missing country; no location: no time zone */
    expect_geo(n, SL_RQL_GEO_COUNTRY, "198.51.100.7", "US");
    expect_geo(n, SL_RQL_GEO_CONTINENT, "198.51.100.7", "NA");
    expect_geo(n, SL_RQL_GEO_TIMEZONE, "198.51.100.7", NULL);
    /* IPv6, and IPv4 written as IPv6 */
    expect_geo(n, SL_RQL_GEO_COUNTRY, "2001:db8::1", "JP");
    expect_geo(n, SL_RQL_GEO_CONTINENT, "2001:DB8:ffff::1", "AS");
    expect_geo(n, SL_RQL_GEO_TIMEZONE, "2001:db8::1", "Asia/Tokyo");
    expect_geo(n, SL_RQL_GEO_COUNTRY, "::ffff:192.0.2.5", "GB");
    /* unknown addresses and text that is no address */
    expect_geo(n, SL_RQL_GEO_COUNTRY, "203.0.113.1", NULL);
    expect_geo(n, SL_RQL_GEO_COUNTRY, "2001:db9::1", NULL);
    expect_geo(n, SL_RQL_GEO_COUNTRY, "example.test", NULL);
    expect_geo(n, SL_RQL_GEO_COUNTRY, "192.0.2.5 ", NULL);
    expect_geo(n, SL_RQL_GEO_COUNTRY, "", NULL);
    /* an answer that does not fit is no answer, and out stays terminated */
    char small[3] = "xx";
    assert_int_equal(sl_netlookup_geo(n, SL_RQL_GEO_COUNTRY, "192.0.2.5", small, 3), 1);
    assert_string_equal(small, "GB");
    assert_int_equal(sl_netlookup_geo(n, SL_RQL_GEO_TIMEZONE, "192.0.2.5", small, 3), 0);
    assert_int_equal(stats_of(n).geo_lookups, 17);
    sl_netlookup_close(n);
}

static void test_geo_without_db(void **state)
{
    (void)state;
    char err[512] = "", out[64];
    struct sl_netlookup *n = sl_netlookup_open(NULL, "", 16, 300, 2, err, sizeof(err));
    assert_non_null(n);
    assert_int_equal(sl_netlookup_geo(n, SL_RQL_GEO_COUNTRY, "192.0.2.5", out, sizeof(out)), 0);
    assert_int_equal(stats_of(n).geo_lookups, 0);
    sl_netlookup_close(n);
    assert_int_equal(sl_netlookup_geo(NULL, SL_RQL_GEO_COUNTRY, "192.0.2.5", out, sizeof(out)), 0);
}

static void test_geo_bad_files(void **state)
{
    (void)state;
    char path[600], err[512] = "";
    snprintf(path, sizeof(path), "%s/not.mmdb", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++)
        fputs("this is a text file, not a MaxMind database\n", f);
    fclose(f);
    assert_null(sl_netlookup_open(path, "", 16, 300, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "SLUICE_GEOIP_DB="));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a MaxMind DB"));

    snprintf(path, sizeof(path), "%s/missing.mmdb", tmpdir);
    err[0] = '\0';
    assert_null(sl_netlookup_open(path, "", 16, 300, 2, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cannot open"));
}

/* ---- DNS ---------------------------------------------------------------------------------- */

static pid_t dns_pid = -1, dns_pid2 = -1; /* the shared dnsmasq, and a test's own */
static char dns_server[64];

static int dns_setup(void **state)
{
    (void)state;
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "%s not found: install the Debian package dnsmasq-base\n", DNSMASQ);
        return -1;
    }
    if (make_tmpdir() != 0)
        return -1;
    int port;
    dns_pid = start_dnsmasq(&port, "dnsmasq.log");
    if (dns_pid < 0)
        return -1;
    snprintf(dns_server, sizeof(dns_server), "127.0.0.1:%d", port);
    return 0;
}

static int dns_teardown(void **state)
{
    (void)state;
    stop_process(&dns_pid);
    stop_process(&dns_pid2);
    remove_tmpdir();
    return 0;
}

static struct sl_netlookup *open_dns(const char *server, size_t cache, int64_t ttl, int64_t timeout)
{
    char err[512] = "";
    struct sl_netlookup *n = sl_netlookup_open(NULL, server, cache, ttl, timeout, err, sizeof(err));
    if (!n)
        fprintf(stderr, "sl_netlookup_open: %s\n", err);
    assert_non_null(n);
    return n;
}

static void test_dns_miss_then_answer(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 64, 300, 2);
    char out[4][256];
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), -1);
    assert_int_equal(stats_of(n).dns_misses, 1);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), 1);
    assert_string_equal(out[0], "192.0.2.10");
    /* from the cache now, also with another case and a trailing dot */
    memset(out, 0, sizeof(out));
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "A.Example.TEST.", out, 4), 1);
    assert_string_equal(out[0], "192.0.2.10");
    struct sl_netlookup_stats s = stats_of(n);
    assert_int_equal(s.dns_queries_sent, 1);
    assert_true(s.dns_hits >= 2);
    assert_int_equal(s.dns_failures, 0);
    assert_int_equal(s.dns_dropped, 0);
    assert_int_equal(s.cached, 1);
    sl_netlookup_close(n);
}

static void test_dns_record_kinds(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 64, 300, 2);
    char out[4][256];
    assert_int_equal(wait_dns(n, SL_RQL_DNS_AAAA, "a.example.test", out, 4), 1);
    assert_string_equal(out[0], "2001:db8::10");
    /* MX: exchange hosts, lowest preference first */
    assert_int_equal(wait_dns(n, SL_RQL_DNS_MX, "example.test", out, 4), 2);
    assert_string_equal(out[0], "backup.example.test");
    assert_string_equal(out[1], "mail.example.test");
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_MX, "example.test", out, 1), 1);
    assert_string_equal(out[0], "backup.example.test");
    assert_int_equal(wait_dns(n, SL_RQL_DNS_NS, "example.test", out, 4), 1);
    assert_string_equal(out[0], "ns1.example.test");
    /* reverse_lookup and ns_lookup_ptr ask the same question and share its answer */
    assert_int_equal(wait_dns(n, SL_RQL_DNS_REVERSE, "192.0.2.10", out, 4), 1);
    assert_string_equal(out[0], "host.example.test");
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_PTR, "192.0.2.10", out, 4), 1);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_PTR, "10.2.0.192.in-addr.arpa.", out, 4), 1);
    assert_string_equal(out[0], "host.example.test");
    assert_int_equal(wait_dns(n, SL_RQL_DNS_REVERSE, "2001:db8::10", out, 4), 1);
    assert_string_equal(out[0], "host6.example.test");
    /* an address without a PTR record, and a name without an AAAA record */
    assert_int_equal(wait_dns(n, SL_RQL_DNS_REVERSE, "192.0.2.99", out, 4), 0);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_AAAA, "x.w.example.test", out, 4), 0);
    struct sl_netlookup_stats s = stats_of(n);
    assert_int_equal(s.dns_queries_sent, 7);
    assert_int_equal(s.dns_failures, 0);

    /* nothing to ask: known absence at once, no query, no miss */
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_REVERSE, "host.example.test", out, 4), 0);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "bad name!", out, 4), 0);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "", out, 4), 0);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "a..example.test", out, 4), 0);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "x\\.example.test", out, 4), 0);
    char longname[300];
    memset(longname, 'a', 70);
    snprintf(longname + 70, sizeof(longname) - 70, ".example.test");
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, longname, out, 4), 0);
    assert_int_equal(sl_netlookup_dns(NULL, SL_RQL_DNS_A, "a.example.test", out, 4), 0);
    assert_int_equal(stats_of(n).dns_misses, s.dns_misses);
    sl_netlookup_close(n);
}

static void test_dns_nxdomain(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 64, 300, 2);
    char out[4][256];
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "nope.example.test", out, 4), -1);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "nope.example.test", out, 4), 0);
    struct sl_netlookup_stats s = stats_of(n);
    /* the absence is cached: asked again, answered from the cache without a query */
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "nope.example.test", out, 4), 0);
    struct sl_netlookup_stats s2 = stats_of(n);
    assert_int_equal(s2.dns_hits, s.dns_hits + 1);
    assert_int_equal(s2.dns_queries_sent, 1);
    assert_int_equal(s2.dns_failures, 0);
    sl_netlookup_close(n);
}

static void test_dns_pending_queued_once(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 64, 300, 2);
    char out[4][256];
    for (int i = 0; i < 50; i++)
        sl_netlookup_dns(n, SL_RQL_DNS_A, "dup.w.example.test", out, 4);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "dup.w.example.test", out, 4), 1);
    assert_string_equal(out[0], "192.0.2.20");
    assert_int_equal(stats_of(n).dns_queries_sent, 1);
    sl_netlookup_close(n);
}

static int queue_drained(const struct sl_netlookup_stats *s)
{
    return s->dns_queries_sent + s->dns_dropped == 100;
}

static void test_dns_queue_bound(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 16, 300, 2); /* queue: 8 */
    char out[4][256], name[64];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "q%d.w.example.test", i);
        assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, name, out, 4), -1);
    }
    /* every miss is either sent once or dropped */
    assert_true(wait_stats(n, queue_drained));
    struct sl_netlookup_stats s = stats_of(n);
    assert_int_equal(s.dns_misses, 100);
    assert_true(s.dns_dropped > 0);
    assert_true(s.dns_dropped <= 92);
    assert_true(s.cached <= 16);
    /* a dropped name is asked again on its next miss */
    int resolved = 0;
    for (int i = 99; i >= 0 && !resolved; i--) {
        snprintf(name, sizeof(name), "q%d.w.example.test", i);
        resolved = wait_dns(n, SL_RQL_DNS_A, name, out, 4) == 1;
    }
    assert_true(resolved);
    sl_netlookup_close(n);
}

static void test_dns_cache_bound(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 16, 300, 2);
    char out[4][256], name[64];
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "hot.w.example.test", out, 4), 1);
    for (int i = 0; i < 100; i++) {
        /* an entry in use is not the least recently used */
        assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "hot.w.example.test", out, 4), 1);
        snprintf(name, sizeof(name), "c%d.w.example.test", i);
        assert_int_equal(wait_dns(n, SL_RQL_DNS_A, name, out, 4), 1);
        assert_true(stats_of(n).cached <= 16);
    }
    struct sl_netlookup_stats s = stats_of(n);
    assert_int_equal(s.cached, 16);
    assert_int_equal(s.dns_queries_sent, 101);
    assert_int_equal(s.dns_dropped, 0);
    /* the oldest names were evicted, the newest is still there */
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "c99.w.example.test", out, 4), 1);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "c0.w.example.test", out, 4), -1);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "c0.w.example.test", out, 4), 1);
    assert_int_equal(stats_of(n).dns_queries_sent, 102);
    sl_netlookup_close(n);
}

static void test_dns_ttl_expiry(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 16, 1, 2);
    char out[4][256];
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), 1);
    int64_t answered = sl_mono_ms();
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), 1);
    sleep_ms(1100 - (sl_mono_ms() - answered) > 0 ? 1100 - (sl_mono_ms() - answered) : 0);
    assert_int_equal(sl_netlookup_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), -1);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), 1);
    assert_int_equal(stats_of(n).dns_queries_sent, 2);
    sl_netlookup_close(n);
}

/* Calls the lookup and fails the test if it took longer than FAST_MS. */
static int timed_dns(struct sl_netlookup *n, enum sl_rql_dns kind, const char *name)
{
    char out[4][256];
    int64_t t0 = sl_mono_ms();
    int rc = sl_netlookup_dns(n, kind, name, out, 4);
    assert_true(sl_mono_ms() - t0 < FAST_MS);
    return rc;
}

static int one_failure(const struct sl_netlookup_stats *s)
{
    return s->dns_failures >= 1;
}

static void test_dns_server_killed(void **state)
{
    (void)state;
    int port;
    dns_pid2 = start_dnsmasq(&port, "dnsmasq2.log");
    assert_true(dns_pid2 > 0);
    char server[64], out[4][256];
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    struct sl_netlookup *n = open_dns(server, 64, 300, 1);
    assert_int_equal(wait_dns(n, SL_RQL_DNS_A, "a.example.test", out, 4), 1);
    stop_process(&dns_pid2);

    assert_int_equal(timed_dns(n, SL_RQL_DNS_A, "gone.w.example.test"), -1);
    assert_true(wait_stats(n, one_failure));
    /* the failure is remembered as a short-lived absence; older answers stay */
    assert_int_equal(timed_dns(n, SL_RQL_DNS_A, "gone.w.example.test"), 0);
    assert_int_equal(timed_dns(n, SL_RQL_DNS_A, "a.example.test"), 1);
    struct sl_netlookup_stats s = stats_of(n);
    assert_int_equal(s.dns_failures, 1);
    assert_int_equal(s.dns_queries_sent, 2);
    sl_netlookup_close(n);
}

static void test_dns_timeout_and_close(void **state)
{
    (void)state;
    /* a server that takes queries and never answers */
    int hole = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(hole, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(hole, (struct sockaddr *)&sin, &sl), 0);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", ntohs(sin.sin_port));

    struct sl_netlookup *n = open_dns(server, 16, 300, 1);
    int64_t t0 = sl_mono_ms();
    assert_int_equal(timed_dns(n, SL_RQL_DNS_A, "slow.example.test"), -1);
    assert_true(wait_stats(n, one_failure));
    int64_t took = sl_mono_ms() - t0;
    assert_true(took >= 1000); /* it waited for the timeout, and not in our thread */
    assert_int_equal(timed_dns(n, SL_RQL_DNS_A, "slow.example.test"), 0);

    /* close while a query is in flight waits for it, within the timeout and its retry */
    assert_int_equal(timed_dns(n, SL_RQL_DNS_A, "slower.example.test"), -1);
    sleep_ms(50);
    t0 = sl_mono_ms();
    sl_netlookup_close(n);
    assert_true(sl_mono_ms() - t0 < 4000);
    close(hole);
}

struct hammer {
    struct sl_netlookup *n;
    int seed;
    int bad;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    char out[4][256], name[64];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "t%d.w.example.test", (i * 7 + h->seed) % 20);
        int rc = sl_netlookup_dns(h->n, SL_RQL_DNS_A, name, out, 4);
        if (rc == 0 || rc > 1 || (rc == 1 && strcmp(out[0], "192.0.2.20") != 0))
            h->bad++;
        if (i % 100 == 0)
            sleep_ms(1);
    }
    return NULL;
}

static void test_dns_threads(void **state)
{
    (void)state;
    struct sl_netlookup *n = open_dns(dns_server, 16, 300, 2);
    pthread_t t[4];
    struct hammer h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){.n = n, .seed = i};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].bad, 0);
    }
    struct sl_netlookup_stats s = stats_of(n);
    assert_int_equal(s.dns_hits + s.dns_misses, 8000);
    assert_true(s.cached <= 16);
    assert_int_equal(s.dns_failures, 0);
    sl_netlookup_close(n);
}

static void test_open_errors(void **state)
{
    (void)state;
    static const char *bad_servers[] = {"nonsense",        "127.0.0.1", "127.0.0.1:0",
                                        "127.0.0.1:99999", ":53",       "127.0.0.1:5x"};
    char err[512];
    for (size_t i = 0; i < sizeof(bad_servers) / sizeof(bad_servers[0]); i++) {
        err[0] = '\0';
        assert_null(sl_netlookup_open(NULL, bad_servers[i], 16, 300, 2, err, sizeof(err)));
        assert_non_null(strstr(err, "SLUICE_DNS_SERVER="));
        assert_non_null(strstr(err, bad_servers[i]));
    }
    err[0] = '\0';
    assert_null(sl_netlookup_open(NULL, "", 8, 300, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "16..16777216"));
    assert_null(sl_netlookup_open(NULL, "", 16, 0, 2, err, sizeof(err)));
    assert_null(sl_netlookup_open(NULL, "", 16, 300, 0, err, sizeof(err)));
    sl_netlookup_close(NULL);
}

int main(void)
{
    const struct CMUnitTest geo[] = {
        cmocka_unit_test(test_geo_kinds),
        cmocka_unit_test(test_geo_without_db),
        cmocka_unit_test(test_geo_bad_files),
        cmocka_unit_test(test_open_errors),
    };
    const struct CMUnitTest dns[] = {
        cmocka_unit_test(test_dns_miss_then_answer),
        cmocka_unit_test(test_dns_record_kinds),
        cmocka_unit_test(test_dns_nxdomain),
        cmocka_unit_test(test_dns_pending_queued_once),
        cmocka_unit_test(test_dns_queue_bound),
        cmocka_unit_test(test_dns_cache_bound),
        cmocka_unit_test(test_dns_ttl_expiry),
        cmocka_unit_test(test_dns_server_killed),
        cmocka_unit_test(test_dns_timeout_and_close),
        cmocka_unit_test(test_dns_threads),
    };
    int failed = cmocka_run_group_tests_name("netlookup_geo", geo, geo_setup, geo_teardown);
    failed += cmocka_run_group_tests_name("netlookup_dns", dns, dns_setup, dns_teardown);
    return failed;
}
