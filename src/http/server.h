/* The HTTP server around libmicrohttpd: request contexts with a bounded body buffer, query
 * strings, JSON answers and errors, per-thread slots and a graceful drain. */
#ifndef SL_HTTP_SERVER_H
#define SL_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "processor/stats.h"

struct MHD_Connection;
struct sl_http_server;

/* ---- Query strings (pure; no server needed) ---- */

#define SL_HTTP_QUERY_MAX 64 /* parameters kept per request; more is a 400 */

struct sl_http_param {
    const char *key;   /* decoded, NUL-terminated, in the query's buffer */
    const char *value; /* decoded ("" for "?flag"), NUL-terminated */
};

struct sl_http_query {
    char *buf; /* owned: the decoded copy that params point into */
    size_t n;
    struct sl_http_param params[SL_HTTP_QUERY_MAX];
};

/* Parses an application/x-www-form-urlencoded query (without the '?'): '&'-separated pairs,
 * '+' is a space, %XX escapes. Empty pairs are skipped. q is overwritten; release it with
 * sl_http_query_fini even on failure. Returns 0, SL_EINVAL (a bad or NUL escape), SL_EFULL (more
 * than SL_HTTP_QUERY_MAX pairs) or SL_ENOMEM. */
int sl_http_query_parse(struct sl_http_query *q, const char *qs, size_t len);
void sl_http_query_fini(struct sl_http_query *q);
/* The value of the first parameter named key, or NULL. */
const char *sl_http_query_get(const struct sl_http_query *q, const char *key);
/* Iterates over every value of key: start with *pos = 0; returns NULL when done. */
const char *sl_http_query_next(const struct sl_http_query *q, const char *key, size_t *pos);

/* ---- Bounded request body (pure) ---- */

struct sl_http_body {
    char *data; /* owned; NUL-terminated after the last byte when non-NULL */
    size_t len;
    size_t cap;         /* bytes usable, never more than max */
    size_t max;         /* the limit */
    uint64_t discarded; /* bytes received past the limit and dropped */
    int too_large;      /* the body passed max: answer 413 */
};

void sl_http_body_init(struct sl_http_body *b, size_t max);
/* Reserves room for a declared Content-Length. Returns SL_EFULL (and sets too_large) when it is
 * larger than max, SL_ENOMEM, or 0. */
int sl_http_body_reserve(struct sl_http_body *b, uint64_t content_length);
/* Appends n bytes, growing the buffer by doubling up to max and never past it. Once the body
 * would pass max, nothing more is stored: too_large is set, the bytes are counted in discarded
 * and SL_EFULL is returned (for this and every later call). SL_ENOMEM if memory runs out. */
int sl_http_body_append(struct sl_http_body *b, const void *data, size_t n);
/* Frees the buffer (or keeps it for the thread's next request). */
void sl_http_body_fini(struct sl_http_body *b);

/* ---- JSON errors (pure) ---- */

/* The body of an error answer: {"error": error, "detail": detail} where detail is detail_obj
 * (taken over and freed) if non-NULL, else the string detail, else null. Returns a malloc'd
 * NUL-terminated string and its length, or NULL if memory ran out (detail_obj is freed). */
char *sl_http_error_body(const char *error, const char *detail, cJSON *detail_obj, size_t *out_len);

/* ---- Requests ---- */

#define SL_HTTP_REQ_HEADERS_MAX 4

/* One request. Allocated by the server when the request line arrives and freed when the
 * request completes; handlers borrow it. Handlers of one request run on one server thread. */
struct sl_http_req {
    struct sl_http_server *srv;
    struct MHD_Connection *conn;
    unsigned method;         /* SL_HTTP_* (http/router.h) */
    const char *method_name; /* MHD's, valid during the request */
    const char *path;        /* decoded path without the query, MHD's */
    char *uri;               /* owned: the raw request target as received */
    struct sl_http_query query;
    struct sl_http_body body;
    int64_t start_us;       /* monotonic microseconds at the request line */
    char request_id[68];    /* the client's X-Request-Id if sane, else generated */
    char org[40];           /* for log lines, once known */
    int phase;              /* internal */
    int oom;                /* internal: the body could not be stored */
    int status;             /* the status answered, 0 until then */
    int64_t content_length; /* -1 if none (chunked or absent) */
    struct {
        const char *name; /* static string */
        char value[128];
    } headers[SL_HTTP_REQ_HEADERS_MAX];
    int nheaders;
    void *app; /* app_size zeroed bytes for the application (see sl_http_server_config) */
};

/* What on_headers tells the server to do next. */
enum sl_http_next {
    SL_HTTP_DONE = 0, /* the handler answered */
    SL_HTTP_BODY = 1, /* read the body (bounded by max_body), then call on_request */
};

struct sl_http_handlers {
    /* Called once per request on a server thread when the headers are in. Either answers and
     * returns SL_HTTP_DONE, or returns SL_HTTP_BODY. A handler that returns SL_HTTP_DONE without
     * answering gets a 500. */
    enum sl_http_next (*on_headers)(struct sl_http_req *req, void *ud);
    /* Called once the whole body is in (only after SL_HTTP_BODY). Must answer. */
    void (*on_request)(struct sl_http_req *req, void *ud);
};

struct sl_http_server_config {
    int listen_fd;            /* bound and listening; borrowed: the server works on a dup() */
    int threads;              /* MHD thread pool size, >= 1 */
    unsigned conn_timeout_s;  /* idle connection timeout */
    unsigned conn_limit;      /* concurrent connections */
    size_t conn_memory_limit; /* MHD's per-connection pool (headers, I/O buffers) */
    size_t max_body;          /* largest request body stored */
    size_t app_size;          /* bytes of req->app */
    struct sl_stats *stats;   /* answers are counted here (may be NULL) */
    const struct sl_http_handlers *handlers;
    void *ud; /* passed to the handlers */
};

/* Starts serving on a dup() of cfg->listen_fd with MHD's epoll thread pool. Returns NULL and a
 * message in err on failure. The caller owns the result (sl_http_server_stop). */
struct sl_http_server *sl_http_server_start(const struct sl_http_server_config *cfg, char *err,
                                            size_t errlen);
/* Stops accepting connections (the caller's listening socket stays open); requests in flight
 * and on open connections continue and are answered with "Connection: close". */
void sl_http_server_quiesce(struct sl_http_server *s);
/* Requests received and not yet completed. */
int64_t sl_http_server_inflight(const struct sl_http_server *s);
/* How long (ms) the longest-running handler call has been running, 0 if none runs. */
int64_t sl_http_server_busiest_ms(const struct sl_http_server *s);
/* Stops the threads, closes every connection and frees s. */
void sl_http_server_stop(struct sl_http_server *s);
/* The number of per-thread slots (see sl_http_req_slot). */
int sl_http_server_slots(const struct sl_http_server *s);

/* The calling server thread's slot, 0..sl_http_server_slots()-1, fixed for the thread's life;
 * -1 if the thread has none (more threads than expected). Handlers use it to keep one handle
 * per thread for resources that a single thread at a time may use. */
int sl_http_req_slot(const struct sl_http_req *req);

/* A request header's value, or NULL. Valid during the request. */
const char *sl_http_req_header(const struct sl_http_req *req, const char *name);
/* Sets the organization shown on this request's log lines. */
void sl_http_req_set_org(struct sl_http_req *req, const char *org);
/* Adds a header to the coming answer; name must be a static string, value is copied
 * (truncated to 127 bytes). At most SL_HTTP_REQ_HEADERS_MAX; more are dropped. */
void sl_http_req_add_header(struct sl_http_req *req, const char *name, const char *value);
/* Microseconds since the request line arrived. */
int64_t sl_http_req_elapsed_us(const struct sl_http_req *req);
/* Checks the declared Content-Length against max_body before any byte of the body is read and
 * reserves the buffer. Returns 0, or answers 413 (SL_EFULL) or 503 (SL_ENOMEM) itself. Call it
 * from on_headers before returning SL_HTTP_BODY. */
int sl_http_req_expect_body(struct sl_http_req *req);

/* Answers with status and body (malloc'd, taken over even on failure; may be NULL if len is 0).
 * content_type is copied. Counts the answer in stats. Returns 0, or SL_EIO if MHD refused it. */
int sl_http_reply(struct sl_http_req *req, int status, const char *content_type, char *body,
                  size_t len);
/* Answers with status and a body produced as it is sent (chunked transfer encoding), for answers
 * too large to hold in memory. read is called on the server thread that serves the request, only
 * after the calling handler has returned, once per piece MHD can send (the client's pace sets
 * the rhythm; between calls the thread serves other connections): it writes at most max bytes
 * (max > 0) to buf and returns how many (> 0), 0 at the end of the answer, or a negative SL_E*
 * code to abort it (the connection is closed, so the client sees a truncated answer, never a
 * complete-looking one). req is valid in read. Each read call counts as a handler call for
 * sl_http_server_busiest_ms, so a read must not block for long: do one bounded piece of work per
 * call. free_ud(ud) is called once when the answer is done with (sent, failed, or the client
 * left), possibly after req was freed: it must not use req. ud is taken over even when this
 * fails (free_ud is then called at once). content_type is copied. Returns 0, SL_EINVAL (already
 * answered), SL_ENOMEM or SL_EIO (MHD refused it). */
int sl_http_reply_stream(struct sl_http_req *req, int status, const char *content_type,
                         long (*read)(void *ud, struct sl_http_req *req, char *buf, size_t max),
                         void *ud, void (*free_ud)(void *ud));
/* Answers with json rendered compactly (json is borrowed). */
int sl_http_reply_json(struct sl_http_req *req, int status, const cJSON *json);
/* Answers {"error": error, "detail": detail} (detail may be NULL). */
int sl_http_reply_error(struct sl_http_req *req, int status, const char *error, const char *detail);
/* Same, with a JSON detail object taken over (freed). */
int sl_http_reply_error_json(struct sl_http_req *req, int status, const char *error, cJSON *detail);

/* Monotonic microseconds. */
int64_t sl_http_mono_us(void);

#endif
