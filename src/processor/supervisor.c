/* The supervisor ("Event Processor"): prepares the data directory, binds the listener, forks the
 * api and the workers, restarts any that exit or stop heart-beating (with backoff), and drains
 * them on SIGTERM. Signal handling is synchronous (sigtimedwait), so no handler runs code. */
#include "processor/processor.h"
#include "api/api.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 30000
#define STABLE_MS      30000 /* a child that lived this long resets its backoff */
#define DRAIN_GRACE_MS 5000

/* One supervised child: the api (index -1) or worker `index`. */
struct child {
    int index;
    pid_t pid;
    int64_t started_mono;
    int64_t restart_at_mono; /* when dead: when to start it again */
    int64_t backoff_ms;
    int dead;
};

struct supervisor {
    const struct sl_config *cfg;
    struct sl_stats *stats;
    int listen_fd;
    int lock_fd;
    char addr[300]; /* the bound address, host:port */
    int nworkers;
    struct child api;
    struct child workers[SL_MAX_WORKERS];
};

static volatile sig_atomic_t child_stop;

static void on_child_term(int sig)
{
    (void)sig;
    child_stop = 1;
}

/* The one place that names a stream backend: Kafka when bootstrap servers are set, else the
 * embedded stream. */
struct sl_stream *sl_processor_open_stream(const struct sl_config *cfg, char *err, size_t errlen)
{
    char dir[1100];
    if (cfg->kafka_bootstrap[0]) {
        struct sl_stream_config kc = {.bootstrap = cfg->kafka_bootstrap,
                                      .client_id = "sluice",
                                      .retention_ms = cfg->kafka_retention_s * 1000,
                                      .ssl = cfg->kafka_ssl,
                                      .ssl_ca = cfg->kafka_ssl_ca,
                                      .ssl_cert = cfg->kafka_ssl_cert,
                                      .ssl_key = cfg->kafka_ssl_key,
                                      .ssl_key_pass = cfg->kafka_ssl_key_pass,
                                      .sasl = cfg->kafka_sasl,
                                      /* a few of the largest requests may wait for a broker */
                                      .queue_max_bytes = 4 * (uint64_t)cfg->max_body_bytes};
        return sl_stream_kafka_create(&kc, err, errlen);
    }
    snprintf(dir, sizeof(dir), "%s/stream", cfg->data_dir);
    struct sl_stream_config sc = {.dir = dir,
                                  .max_bytes = (uint64_t)cfg->stream_max_bytes,
                                  .retention_ms = cfg->stream_retention_s * 1000};
    return sl_stream_lmdb_create(&sc, err, errlen);
}

/* Creates the data directory and takes its lock, so two servers never share one. */
static int lock_data_dir(struct supervisor *sv)
{
    char path[1100];
    const char *dir = sv->cfg->data_dir;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        SL_ERROR("cannot create data directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    snprintf(path, sizeof(path), "%s/sluice.lock", dir);
    sv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sv->lock_fd < 0) {
        SL_ERROR("cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(sv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        ssize_t n = pread(sv->lock_fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        SL_ERROR("another sluice serve (pid %s) is using the data directory %s",
                 buf[0] ? strtok(buf, "\n") : "?", dir);
        return SL_EBUSY;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(sv->lock_fd, 0) != 0 || pwrite(sv->lock_fd, pid, (size_t)n, 0) != n)
        SL_WARN("cannot write the pid to %s", path);
    return 0;
}

/* Writes data into dir/name atomically (temp file + rename) with the given mode. */
static int write_file_atomic(const char *dir, const char *name, const char *data, mode_t mode)
{
    char tmp[1200], path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    size_t len = strlen(data);
    int rc = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* First start: the default organization and an admin key, written to admin.key (0600). */
static int bootstrap_store(struct supervisor *sv)
{
    char err[512], key[SL_APIKEY_MAX + 2];
    int64_t norgs = 0;
    struct sl_store *st = sl_store_open(sv->cfg->data_dir, err, sizeof(err));
    if (!st) {
        SL_ERROR("cannot open the store in %s: %s", sv->cfg->data_dir, err);
        return SL_EIO;
    }
    int rc = sl_store_org_count(st, &norgs);
    if (rc == 0 && norgs == 0) {
        struct sl_org org;
        rc = sl_store_org_create(st, "default", &org);
        if (rc == 0)
            rc = sl_store_apikey_create(st, org.uuid, "admin", key);
        if (rc == 0) {
            strcat(key, "\n");
            rc = write_file_atomic(sv->cfg->data_dir, "admin.key", key, 0600);
        }
        if (rc == 0)
            SL_INFO("first start: created organization \"default\" (%s) and wrote its admin API "
                    "key to %s/admin.key",
                    org.uuid, sv->cfg->data_dir);
    }
    if (rc)
        SL_ERROR("cannot prepare the store: %s", sl_strerror(rc));
    sl_store_close(st);
    return rc;
}

/* Creates the ingest topic with a partition per worker (growing it if there are more workers
 * than before). The stream handle is closed again: children open their own after fork. */
static int prepare_stream(struct supervisor *sv)
{
    char err[512];
    uint32_t parts = 0;
    struct sl_stream *s = sl_processor_open_stream(sv->cfg, err, sizeof(err));
    if (!s) {
        SL_ERROR("cannot open the stream: %s", err);
        return SL_EIO;
    }
    int rc = sl_stream_topic_ensure(s, SL_TOPIC_EVENTS, (uint32_t)sv->cfg->worker_count, &parts);
    uint64_t backlog = 0;
    if (rc == 0 && sl_stream_backlog(s, SL_TOPIC_EVENTS, SL_GROUP_WORKERS, &backlog) == 0)
        SL_INFO("stream: topic %s has %u partitions, %llu events waiting", SL_TOPIC_EVENTS, parts,
                (unsigned long long)backlog);
    if (rc)
        SL_ERROR("cannot create topic %s: %s", SL_TOPIC_EVENTS, sl_strerror(rc));
    sl_stream_destroy(s);
    return rc;
}

static int bind_listener(struct supervisor *sv)
{
    char host[256], port[16];
    const char *colon = strrchr(sv->cfg->listen, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - sv->cfg->listen), sv->cfg->listen);
    snprintf(port, sizeof(port), "%s", colon + 1);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai) {
        SL_ERROR("SLUICE_LISTEN=%s: cannot resolve: %s", sv->cfg->listen, gai_strerror(gai));
        return SL_EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0)
            rc = -errno;
    }
    freeaddrinfo(res);
    if (rc) {
        SL_ERROR("cannot listen on %s: %s", sv->cfg->listen, strerror(-rc));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[128], p[16];
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(sv->addr, sizeof(sv->addr), strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, p);
    sv->listen_fd = fd;
    return 0;
}

/* Tells the world where the server listens, once everything behind the socket is ready. */
static void announce(struct supervisor *sv)
{
    char line[sizeof(sv->addr) + 2];
    snprintf(line, sizeof(line), "%s\n", sv->addr);
    if (write_file_atomic(sv->cfg->data_dir, "listen.addr", line, 0644) != 0)
        SL_WARN("cannot write %s/listen.addr", sv->cfg->data_dir);
    SL_INFO("listening on http://%s", sv->addr);
}

static const char *child_name(const struct child *c, char *buf, size_t len)
{
    if (c->index < 0)
        snprintf(buf, len, "api");
    else
        snprintf(buf, len, "worker-%d", c->index);
    return buf;
}

/* Runs in the forked child: resets signals, then becomes the api or a worker. Never returns. */
static void child_main(struct supervisor *sv, struct child *c, pid_t parent)
{
    char name[32];
    /* If the supervisor dies, drain and exit rather than live on as an orphan. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        exit(0);
    struct sigaction sa = {.sa_handler = on_child_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    /* The child keeps its copy of the data-directory lock: if the supervisor is killed, a new
     * one cannot start on this directory until every old child has drained and exited. */
    sl_log_set_role(child_name(c, name, sizeof(name)));
    int rc;
    if (c->index < 0) {
        rc = sl_api_run(sv->cfg, sv->listen_fd, sv->stats, &child_stop);
    } else {
        close(sv->listen_fd);
        rc = sl_worker_run(sv->cfg, c->index, sv->nworkers, sv->stats, &child_stop);
    }
    exit(rc == 0 ? 0 : 1);
}

static int start_child(struct supervisor *sv, struct child *c)
{
    char name[32];
    int64_t now = sl_mono_ms();
    if (c->index < 0) {
        atomic_store(&sv->stats->api_heartbeat_ms, now);
    } else {
        struct sl_worker_slot *slot = &sv->stats->workers[c->index];
        atomic_store(&slot->heartbeat_ms, now);
        atomic_store(&slot->status, SL_WORKER_STARTING);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        SL_ERROR("cannot fork %s: %s", child_name(c, name, sizeof(name)), strerror(errno));
        c->dead = 1;
        c->restart_at_mono = now + BACKOFF_MAX_MS;
        return -errno;
    }
    if (pid == 0)
        child_main(sv, c, parent);
    c->pid = pid;
    c->dead = 0;
    c->started_mono = now;
    if (c->index < 0)
        atomic_store(&sv->stats->api_pid, pid);
    else
        atomic_store(&sv->stats->workers[c->index].pid, pid);
    SL_DEBUG("started %s (pid %d)", child_name(c, name, sizeof(name)), (int)pid);
    return 0;
}

static struct child *find_child(struct supervisor *sv, pid_t pid)
{
    if (sv->api.pid == pid)
        return &sv->api;
    for (int i = 0; i < sv->nworkers; i++)
        if (sv->workers[i].pid == pid)
            return &sv->workers[i];
    return NULL;
}

/* Marks an exited child dead and schedules its restart with exponential backoff. */
static void child_exited(struct supervisor *sv, struct child *c, int status, int draining)
{
    char name[32], how[64];
    int64_t now = sl_mono_ms();
    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    c->dead = 1;
    c->pid = 0;
    if (c->index < 0) {
        atomic_store(&sv->stats->api_pid, 0);
    } else {
        atomic_store(&sv->stats->workers[c->index].pid, 0);
        atomic_store(&sv->stats->workers[c->index].status,
                     draining ? SL_WORKER_STOPPED : SL_WORKER_DEAD);
    }
    if (draining) {
        SL_INFO("%s %s", child_name(c, name, sizeof(name)), how);
        return;
    }
    c->backoff_ms = now - c->started_mono >= STABLE_MS || c->backoff_ms == 0
                        ? BACKOFF_MIN_MS
                        : (c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2);
    c->restart_at_mono = now + c->backoff_ms;
    atomic_fetch_add(&sv->stats->respawns, 1);
    if (c->index < 0)
        atomic_fetch_add(&sv->stats->api_restarts, 1);
    else
        atomic_fetch_add(&sv->stats->workers[c->index].restarts, 1);
    SL_WARN("%s %s; restarting it in %lld ms", child_name(c, name, sizeof(name)), how,
            (long long)c->backoff_ms);
}

static int reap_children(struct supervisor *sv, int draining)
{
    int status, n = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct child *c = find_child(sv, pid);
        if (c) {
            child_exited(sv, c, status, draining);
            n++;
        }
    }
    return n;
}

/* Kills children whose heartbeat is older than the hang timeout; reaping restarts them. */
static void check_heartbeats(struct supervisor *sv)
{
    int64_t now = sl_mono_ms(), limit = sv->cfg->worker_hang_s * 1000;
    if (!sv->api.dead && now - atomic_load(&sv->stats->api_heartbeat_ms) > limit) {
        SL_ERROR("api (pid %d) has not sent a heartbeat for %lld s; killing it", (int)sv->api.pid,
                 (long long)sv->cfg->worker_hang_s);
        kill(sv->api.pid, SIGKILL);
    }
    for (int i = 0; i < sv->nworkers; i++) {
        struct child *c = &sv->workers[i];
        if (c->dead || now - atomic_load(&sv->stats->workers[i].heartbeat_ms) <= limit)
            continue;
        SL_ERROR("worker-%d (pid %d) has not sent a heartbeat for %lld s; killing it", i,
                 (int)c->pid, (long long)sv->cfg->worker_hang_s);
        kill(c->pid, SIGKILL);
    }
}

static void start_due(struct supervisor *sv)
{
    int64_t now = sl_mono_ms();
    if (sv->api.dead && now >= sv->api.restart_at_mono)
        start_child(sv, &sv->api);
    for (int i = 0; i < sv->nworkers; i++)
        if (sv->workers[i].dead && now >= sv->workers[i].restart_at_mono)
            start_child(sv, &sv->workers[i]);
}

static int live_children(struct supervisor *sv)
{
    int n = !sv->api.dead;
    for (int i = 0; i < sv->nworkers; i++)
        n += !sv->workers[i].dead;
    return n;
}

static void signal_all(struct supervisor *sv, int sig)
{
    if (!sv->api.dead)
        kill(sv->api.pid, sig);
    for (int i = 0; i < sv->nworkers; i++)
        if (!sv->workers[i].dead)
            kill(sv->workers[i].pid, sig);
}

/* SIGTERM: children stop taking work, finish their batch and requests, and exit. */
static void drain(struct supervisor *sv, const sigset_t *set)
{
    /* The children apply the drain timeout themselves; the grace lets them finish cleanly
     * before the supervisor's own deadline kills what is left. */
    int64_t deadline = sl_mono_ms() + sv->cfg->drain_timeout_s * 1000 + DRAIN_GRACE_MS;
    int killed = 0;
    atomic_store(&sv->stats->draining, 1);
    SL_INFO("draining: waiting up to %lld s for %d children to finish",
            (long long)sv->cfg->drain_timeout_s, live_children(sv));
    signal_all(sv, SIGTERM);
    while (live_children(sv) > 0) {
        struct timespec ts = {0, 100 * 1000000L};
        sigtimedwait(set, NULL, &ts);
        reap_children(sv, 1);
        if (!killed && sl_mono_ms() > deadline && live_children(sv) > 0) {
            SL_WARN("drain timeout: killing %d children (their work will be redelivered)",
                    live_children(sv));
            signal_all(sv, SIGKILL);
            killed = 1;
        }
    }
}

static void supervise(struct supervisor *sv, const sigset_t *set)
{
    int64_t next_check = sl_mono_ms() + sv->cfg->worker_check_s * 1000;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            SL_INFO("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return;
        }
        reap_children(sv, 0);
        start_due(sv);
        if (sl_mono_ms() >= next_check) {
            check_heartbeats(sv);
            next_check = sl_mono_ms() + sv->cfg->worker_check_s * 1000;
        }
    }
}

int sl_supervisor_run(const struct sl_config *cfg)
{
    struct supervisor sv = {.cfg = cfg, .listen_fd = -1, .lock_fd = -1};
    int exit_code = 1;
    sl_log_set_role("supervisor");
    sl_log_level_current = cfg->log_level;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    /* The port is taken before anything is written, so a busy port changes nothing. */
    if (lock_data_dir(&sv) || bind_listener(&sv) || bootstrap_store(&sv) || prepare_stream(&sv))
        goto out;
    announce(&sv);
    sv.stats = sl_stats_create();
    if (!sv.stats) {
        SL_ERROR("cannot map shared memory for the worker slots");
        goto out;
    }
    sv.nworkers = cfg->disabled ? 0 : cfg->worker_count;
    atomic_store(&sv.stats->started_ms, sl_now_ms());
    atomic_store(&sv.stats->disabled, cfg->disabled);
    atomic_store(&sv.stats->worker_count, sv.nworkers);
    sv.api.index = -1;
    sv.api.dead = 1;
    for (int i = 0; i < sv.nworkers; i++) {
        sv.workers[i].index = i;
        sv.workers[i].dead = 1;
    }
    if (cfg->disabled)
        SL_WARN("REFLEX_EVENT_PROCESSOR_DISABLED is set: events are accepted and queued, but "
                "no worker processes them");
    else
        SL_INFO("starting the api and %d shared worker%s", sv.nworkers,
                sv.nworkers == 1 ? "" : "s");
    start_due(&sv);
    supervise(&sv, &set);
    drain(&sv, &set);
    SL_INFO("stopped");
    exit_code = 0;
out:
    if (sv.listen_fd >= 0)
        close(sv.listen_fd);
    if (sv.lock_fd >= 0)
        close(sv.lock_fd);
    sl_stats_destroy(sv.stats);
    return exit_code;
}
