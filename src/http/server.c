/* The HTTP server: libmicrohttpd's thread pool on a borrowed listening socket, request
 * contexts, bounded bodies, JSON answers counted into the shared stats, and a graceful drain. */
#include "http/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "http/router.h"

/* A client that keeps sending past the body limit is disconnected after this many more bytes
 * (when MHD cannot answer mid-body, the rest is read and dropped so the client sees the 413). */
#define DISCARD_MAX (64 * 1024 * 1024)

/* PHASE_HEADERS: a request without a body waits for MHD's second call, because MHD closes the
 * connection after an answer queued on the first call (it may not have read the whole request):
 * answering there would break keep-alive. */
enum { PHASE_NEW = 0, PHASE_HEADERS, PHASE_BODY, PHASE_DONE };

struct sl_http_server {
    struct MHD_Daemon *daemon;
    int listen_fd; /* our dup() of the caller's socket */
    int quiesced;
    struct sl_http_server_config cfg;
    struct sl_http_handlers handlers;
    _Atomic int64_t inflight;
    _Atomic int draining;
    _Atomic int next_slot;
    _Atomic uint64_t seq;
    int nslots;
    _Atomic int64_t *busy_since_ms; /* per slot: when the running handler call began; 0 idle */
};

/* The app area follows the request, aligned for anything. */
#define REQ_APP_OFFSET                                                                             \
    ((sizeof(struct sl_http_req) + alignof(max_align_t) - 1) / alignof(max_align_t) *              \
     alignof(max_align_t))

static _Thread_local const struct sl_http_server *tls_srv;
static _Thread_local int tls_slot = -1;

int64_t sl_http_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int thread_slot(const struct sl_http_server *s)
{
    if (tls_srv != s) {
        struct sl_http_server *ms = (struct sl_http_server *)s;
        int i = atomic_fetch_add(&ms->next_slot, 1);
        tls_srv = s;
        tls_slot = i < s->nslots ? i : -1;
    }
    return tls_slot;
}

int sl_http_req_slot(const struct sl_http_req *req)
{
    return thread_slot(req->srv);
}

int sl_http_server_slots(const struct sl_http_server *s)
{
    return s->nslots;
}

char *sl_http_error_body(const char *error, const char *detail, cJSON *detail_obj, size_t *out_len)
{
    char *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "error", error ? error : "error"))
        goto out;
    if (detail_obj) {
        if (!cJSON_AddItemToObject(o, "detail", detail_obj))
            goto out;
        detail_obj = NULL; /* owned by o now */
    } else if (detail) {
        if (!cJSON_AddStringToObject(o, "detail", detail))
            goto out;
    } else if (!cJSON_AddNullToObject(o, "detail")) {
        goto out;
    }
    out = cJSON_PrintUnformatted(o);
    if (out && out_len)
        *out_len = strlen(out);
out:
    cJSON_Delete(detail_obj);
    cJSON_Delete(o);
    return out;
}

/* ---- answers ---- */

static int queue(struct sl_http_req *req, int status, const char *content_type,
                 struct MHD_Response *r)
{
    struct sl_http_server *s = req->srv;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (req->request_id[0])
        MHD_add_response_header(r, "X-Request-Id", req->request_id);
    for (int i = 0; i < req->nheaders; i++)
        MHD_add_response_header(r, req->headers[i].name, req->headers[i].value);
    /* While draining, tell keep-alive clients to reconnect (to the next api process). */
    if (atomic_load(&s->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    if (ok != MHD_YES)
        return SL_EIO;
    req->status = status;
    if (s->cfg.stats)
        sl_stats_count_http(s->cfg.stats, status);
    int64_t us = sl_http_req_elapsed_us(req);
    if (status >= 500)
        SL_WARN("%s %s -> %d (%.1f ms)", req->method_name, req->path, status, (double)us / 1e3);
    else
        SL_DEBUG("%s %s -> %d (%.1f ms)", req->method_name, req->path, status, (double)us / 1e3);
    return 0;
}

int sl_http_reply(struct sl_http_req *req, int status, const char *content_type, char *body,
                  size_t len)
{
    if (req->status || !req->conn) {
        free(body);
        return SL_EINVAL;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return SL_ENOMEM;
    }
    return queue(req, status, content_type, r);
}

/* A streamed answer: MHD calls stream_read on the connection's thread as the client takes the
 * bytes, and stream_free when it drops the response (after the request completed). */
struct stream {
    struct sl_http_server *srv;
    struct sl_http_req *req; /* valid while MHD may call stream_read */
    long (*read)(void *ud, struct sl_http_req *req, char *buf, size_t max);
    void (*free_ud)(void *ud);
    void *ud;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *sm = cls;
    struct sl_http_req *req = sm->req;
    (void)pos;
    if (max == 0)
        return 0; /* MHD never asks for nothing; no piece fits: ask again */
    /* A read is a handler call to the watchdog: a store read that hangs here is seen. */
    int slot = thread_slot(sm->srv);
    if (slot >= 0)
        atomic_store(&sm->srv->busy_since_ms[slot], sl_mono_ms());
    sl_log_set_context(req->org[0] ? req->org : NULL, req->request_id[0] ? req->request_id : NULL);
    long n = sm->read(sm->ud, req, buf, max);
    sl_log_set_context(NULL, NULL);
    if (slot >= 0)
        atomic_store(&sm->srv->busy_since_ms[slot], 0);
    if (n < 0) {
        SL_WARN("%s %s: streamed answer aborted: %s", req->method_name, req->path,
                sl_strerror((int)n));
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)((size_t)n > max ? max : (size_t)n);
}

static void stream_free(void *cls)
{
    struct stream *sm = cls;
    if (sm->free_ud)
        sm->free_ud(sm->ud);
    free(sm);
}

/* MHD's block size for a callback response (the piece it asks for when not chunking). */
#define STREAM_BLOCK (32 * 1024)

int sl_http_reply_stream(struct sl_http_req *req, int status, const char *content_type,
                         long (*read)(void *ud, struct sl_http_req *req, char *buf, size_t max),
                         void *ud, void (*free_ud)(void *ud))
{
    struct stream *sm = NULL;
    if (req->status || !req->conn || !read) {
        if (free_ud)
            free_ud(ud);
        return SL_EINVAL;
    }
    if (!(sm = malloc(sizeof(*sm)))) {
        if (free_ud)
            free_ud(ud);
        return SL_ENOMEM;
    }
    *sm = (struct stream){req->srv, req, read, free_ud, ud};
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                               stream_read, sm, stream_free);
    if (!r) {
        stream_free(sm);
        return SL_ENOMEM;
    }
    return queue(req, status, content_type, r); /* r now owns sm, freed with it */
}

/* For when memory ran out: a fixed body that needs no allocation of ours. */
static int reply_static(struct sl_http_req *req, int status, const char *body)
{
    if (req->status || !req->conn)
        return SL_EINVAL;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return SL_ENOMEM;
    return queue(req, status, "application/json", r);
}

static const char oom_body[] = "{\"error\":\"out of memory\",\"detail\":null}";

int sl_http_reply_json(struct sl_http_req *req, int status, const cJSON *json)
{
    char *out = cJSON_PrintUnformatted(json);
    if (!out)
        return reply_static(req, 503, oom_body);
    return sl_http_reply(req, status, "application/json", out, strlen(out));
}

int sl_http_reply_error(struct sl_http_req *req, int status, const char *error, const char *detail)
{
    size_t len = 0;
    char *out = sl_http_error_body(error, detail, NULL, &len);
    if (!out)
        return reply_static(req, 503, oom_body);
    return sl_http_reply(req, status, "application/json", out, len);
}

int sl_http_reply_error_json(struct sl_http_req *req, int status, const char *error, cJSON *detail)
{
    size_t len = 0;
    char *out = sl_http_error_body(error, NULL, detail, &len);
    if (!out)
        return reply_static(req, 503, oom_body);
    return sl_http_reply(req, status, "application/json", out, len);
}

static int reply_too_large(struct sl_http_req *req)
{
    cJSON *d = cJSON_CreateObject();
    if (d)
        cJSON_AddNumberToObject(d, "max_bytes", (double)req->body.max);
    return sl_http_reply_error_json(req, 413, "body too large", d);
}

/* ---- request accessors ---- */

const char *sl_http_req_header(const struct sl_http_req *req, const char *name)
{
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name) : NULL;
}

void sl_http_req_set_org(struct sl_http_req *req, const char *org)
{
    snprintf(req->org, sizeof(req->org), "%s", org ? org : "");
    sl_log_set_context(req->org[0] ? req->org : NULL, req->request_id);
}

void sl_http_req_add_header(struct sl_http_req *req, const char *name, const char *value)
{
    if (req->nheaders == SL_HTTP_REQ_HEADERS_MAX)
        return;
    req->headers[req->nheaders].name = name;
    snprintf(req->headers[req->nheaders].value, sizeof(req->headers[0].value), "%s", value);
    req->nheaders++;
}

int64_t sl_http_req_elapsed_us(const struct sl_http_req *req)
{
    return sl_http_mono_us() - req->start_us;
}

int sl_http_req_expect_body(struct sl_http_req *req)
{
    if (req->content_length < 0)
        return 0; /* chunked or absent: checked as it arrives */
    int rc = sl_http_body_reserve(&req->body, (uint64_t)req->content_length);
    if (rc == SL_EFULL)
        reply_too_large(req);
    else if (rc)
        reply_static(req, 503, oom_body);
    return rc;
}

/* ---- MHD callbacks ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* MHD also reports what clients do (closing mid-request): keep those out of WARN. */
    if (strstr(msg, "ailed") || strstr(msg, "rror"))
        SL_WARN("http: %s", msg);
    else
        SL_DEBUG("http: %s", msg);
}

static struct sl_http_req *req_create(struct sl_http_server *s, const char *uri)
{
    struct sl_http_req *req = calloc(1, REQ_APP_OFFSET + s->cfg.app_size);
    if (!req)
        return NULL;
    req->srv = s;
    req->start_us = sl_http_mono_us();
    req->content_length = -1;
    req->app = (char *)req + REQ_APP_OFFSET;
    sl_http_body_init(&req->body, s->cfg.max_body);
    req->uri = uri ? strdup(uri) : NULL;
    atomic_fetch_add(&s->inflight, 1);
    return req;
}

static void req_free(struct sl_http_server *s, struct sl_http_req *req)
{
    sl_http_body_fini(&req->body);
    sl_http_query_fini(&req->query);
    free(req->uri);
    free(req);
    atomic_fetch_sub(&s->inflight, 1);
}

/* Per connection: the request made by on_uri that the access handler has not yet seen. MHD
 * calls on_completed only for requests the handler saw, so one whose client vanished between
 * the request line and the headers would otherwise never be freed (nor leave the in-flight
 * count that drain waits on). */
struct conn_ctx {
    struct sl_http_req *pending;
};

static struct conn_ctx *conn_ctx_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(struct conn_ctx));
        return;
    }
    struct conn_ctx *cc = *socket_context;
    if (cc && cc->pending)
        req_free(cls, cc->pending);
    free(cc);
    *socket_context = NULL;
}

/* Called by MHD with the raw request target, before the headers: the request's context. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct sl_http_req *req = req_create(cls, uri);
    struct conn_ctx *cc = conn_ctx_of(conn);
    if (cc)
        cc->pending = req;
    return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct sl_http_req *req = *con_cls;
    struct conn_ctx *cc = conn_ctx_of(conn);
    if (!req)
        return;
    if (cc && cc->pending == req)
        cc->pending = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && req->phase != PHASE_NEW)
        SL_DEBUG("request %s ended early (%d)", req->request_id, (int)toe);
    req_free(cls, req);
    *con_cls = NULL;
}

static int request_id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (n == 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0;
}

static void set_request_id(struct sl_http_req *req)
{
    const char *id = sl_http_req_header(req, "X-Request-Id");
    if (id && request_id_ok(id)) {
        snprintf(req->request_id, sizeof(req->request_id), "%s", id);
        return;
    }
    uint64_t seq = atomic_fetch_add(&req->srv->seq, 1) + 1;
    snprintf(req->request_id, sizeof(req->request_id), "%06x%010llx",
             (unsigned)getpid() & 0xffffffu, (unsigned long long)seq);
}

static int64_t content_length(struct MHD_Connection *conn)
{
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return -1;
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t n;
    if (!v || sl_parse_int64(v, 0, INT64_MAX, &n) != 0)
        return -1;
    return n;
}

/* Hands the request to on_headers; a request without a body goes on to on_request at once. */
static enum MHD_Result dispatch(struct sl_http_server *s, struct sl_http_req *req)
{
    enum sl_http_next next = s->handlers.on_headers(req, s->cfg.ud);
    if (!req->status && next == SL_HTTP_BODY) {
        if (req->phase == PHASE_NEW) {
            req->phase = PHASE_BODY;
            return MHD_YES;
        }
        s->handlers.on_request(req, s->cfg.ud);
    }
    if (!req->status)
        sl_http_reply_error(req, 500, "internal error", "the handler gave no answer");
    req->phase = PHASE_DONE;
    return req->status ? MHD_YES : MHD_NO;
}

/* The headers are in: parse the query and hand the request on (now if a body follows, else on
 * MHD's next call). */
static enum MHD_Result on_first(struct sl_http_server *s, struct sl_http_req *req, const char *url,
                                const char *method)
{
    req->path = url;
    req->method_name = method;
    req->method = sl_http_method_parse(method);
    set_request_id(req);
    sl_log_set_context(NULL, req->request_id);
    req->content_length = content_length(req->conn);
    const char *q = req->uri ? strchr(req->uri, '?') : NULL;
    int rc = q ? sl_http_query_parse(&req->query, q + 1, strlen(q + 1)) : 0;
    if (rc == SL_ENOMEM) {
        reply_static(req, 503, oom_body);
    } else if (rc == SL_EFULL) {
        sl_http_reply_error(req, 400, "bad query string", "more than 64 parameters");
    } else if (rc) {
        sl_http_reply_error(req, 400, "bad query string",
                            "malformed %-escape (expected %XX with two hex digits, not %00)");
    } else if (req->content_length == 0 ||
               (req->content_length < 0 &&
                !MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                             MHD_HTTP_HEADER_TRANSFER_ENCODING))) {
        req->phase = PHASE_HEADERS;
        return MHD_YES;
    } else {
        return dispatch(s, req);
    }
    req->phase = PHASE_DONE;
    return req->status ? MHD_YES : MHD_NO;
}

/* A piece of the body, or (*size == 0) its end. */
static enum MHD_Result on_data(struct sl_http_server *s, struct sl_http_req *req, const char *data,
                               size_t *size)
{
    if (*size) {
        size_t n = *size;
        *size = 0;
        int rc = sl_http_body_append(&req->body, data, n);
        if (rc == SL_EFULL) {
            /* Answer now if MHD lets us (it then closes the connection); otherwise read and drop
             * the rest, so the client, still sending, is not reset before it reads the 413. */
            if (req->body.discarded == n && reply_too_large(req) == 0) { /* first overflow */
                req->phase = PHASE_DONE;
                return MHD_YES;
            }
            return req->body.discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        if (rc) {
            SL_WARN("out of memory for a %zu-byte body", req->body.len + n);
            req->oom = 1;
            req->body.too_large = 1; /* stop storing; answered 503 at the end */
        }
        return MHD_YES;
    }
    if (req->oom)
        reply_static(req, 503, oom_body);
    else if (req->body.too_large)
        reply_too_large(req);
    else
        s->handlers.on_request(req, s->cfg.ud);
    if (!req->status)
        sl_http_reply_error(req, 500, "internal error", "the handler gave no answer");
    req->phase = PHASE_DONE;
    return req->status ? MHD_YES : MHD_NO;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct sl_http_server *s = cls;
    struct sl_http_req *req = *con_cls;
    enum MHD_Result ret = MHD_YES;
    (void)version;
    if (!req) {
        req = req_create(s, NULL);
        if (!req)
            return MHD_NO;
        *con_cls = req;
    }
    if (req->phase == PHASE_NEW) {
        /* From here on MHD calls on_completed for this request. */
        struct conn_ctx *cc = conn_ctx_of(conn);
        if (cc && cc->pending == req)
            cc->pending = NULL;
    }
    req->conn = conn;
    int slot = thread_slot(s);
    if (slot >= 0)
        atomic_store(&s->busy_since_ms[slot], sl_mono_ms());
    sl_log_set_context(req->org[0] ? req->org : NULL, req->request_id[0] ? req->request_id : NULL);
    switch (req->phase) {
    case PHASE_NEW:
        ret = on_first(s, req, url, method);
        break;
    case PHASE_HEADERS:
        *upload_data_size = 0;
        ret = dispatch(s, req);
        break;
    case PHASE_BODY:
        ret = on_data(s, req, upload_data, upload_data_size);
        break;
    default:
        *upload_data_size = 0; /* answered early: drop the rest */
        break;
    }
    sl_log_set_context(NULL, NULL);
    if (slot >= 0)
        atomic_store(&s->busy_since_ms[slot], 0);
    return ret;
}

/* ---- life cycle ---- */

struct sl_http_server *sl_http_server_start(const struct sl_http_server_config *cfg, char *err,
                                            size_t errlen)
{
    struct sl_http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->handlers = *cfg->handlers;
    s->nslots = (cfg->threads > 0 ? cfg->threads : 1) + 1;
    s->busy_since_ms = calloc((size_t)s->nslots, sizeof(*s->busy_since_ms));
    s->listen_fd = fcntl(cfg->listen_fd, F_DUPFD_CLOEXEC, 0);
    if (!s->busy_since_ms || s->listen_fd < 0) {
        snprintf(err, errlen, "cannot use listening socket %d: %s", cfg->listen_fd,
                 s->busy_since_ms ? strerror(errno) : "out of memory");
        goto fail;
    }
    /* Several pool threads poll one socket: accept must not block the losers of a race. */
    int fl = fcntl(s->listen_fd, F_GETFL);
    if (fl >= 0)
        fcntl(s->listen_fd, F_SETFL, fl | O_NONBLOCK);
    /* poll(), not epoll: libmicrohttpd 0.9.75's edge-triggered epoll loses the EOF of a client
     * that closes right after sending part of a request (data and FIN read together), leaving
     * the request open until the connection timeout and stalling drain. Level-triggered poll
     * sees it. The api holds few connections (agents keep a handful each), so poll's O(n) scan
     * costs nothing here; the gateway's many idle streams will need their own design. */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(cfg->threads > 1 ? cfg->threads : 0), MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT, cfg->conn_limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->conn_memory_limit, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "libmicrohttpd could not start on listening socket %d",
                 cfg->listen_fd);
        goto fail;
    }
    return s;
fail:
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    free(s->busy_since_ms);
    free(s);
    return NULL;
}

void sl_http_server_quiesce(struct sl_http_server *s)
{
    if (s->quiesced)
        return;
    atomic_store(&s->draining, 1);
    /* MHD stops polling the socket; we close our dup only after MHD_stop_daemon. */
    if (MHD_quiesce_daemon(s->daemon) != MHD_INVALID_SOCKET)
        s->quiesced = 1;
}

int64_t sl_http_server_inflight(const struct sl_http_server *s)
{
    return atomic_load(&s->inflight);
}

int64_t sl_http_server_busiest_ms(const struct sl_http_server *s)
{
    int64_t now = sl_mono_ms(), worst = 0;
    for (int i = 0; i < s->nslots; i++) {
        int64_t since = atomic_load(&s->busy_since_ms[i]);
        if (since && now - since > worst)
            worst = now - since;
    }
    return worst;
}

void sl_http_server_stop(struct sl_http_server *s)
{
    if (!s)
        return;
    atomic_store(&s->draining, 1);
    MHD_stop_daemon(s->daemon);
    /* A quiesced daemon gave the socket back to us; otherwise MHD closed it. */
    if (s->quiesced)
        close(s->listen_fd);
    free(s->busy_since_ms);
    free(s);
}
