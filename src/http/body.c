/* The bounded request-body buffer, with one spare buffer per thread reused across requests. */
#include "http/server.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define BODY_INITIAL (16 * 1024)
/* Buffers up to this size are kept for the thread's next request: allocating and freeing a
 * large buffer per request makes glibc mmap/munmap it each time (reference/http-libraries.md). */
#define BODY_SPARE_MAX (4 * 1024 * 1024)

struct spare {
    char *data;
    size_t cap; /* usable bytes; the allocation is cap + 1 */
};

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static int spare_ok;

static void spare_free(void *p)
{
    struct spare *sp = p;
    free(sp->data);
    free(sp);
}

static void spare_init(void)
{
    spare_ok = pthread_key_create(&spare_key, spare_free) == 0;
}

static struct spare *spare_get(void)
{
    pthread_once(&spare_once, spare_init);
    if (!spare_ok)
        return NULL;
    struct spare *sp = pthread_getspecific(spare_key);
    if (!sp) {
        sp = calloc(1, sizeof(*sp));
        if (sp && pthread_setspecific(spare_key, sp) != 0) {
            free(sp);
            sp = NULL;
        }
    }
    return sp;
}

void sl_http_body_init(struct sl_http_body *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

/* Makes room for want bytes (want <= max), taking the thread's spare buffer when it fits. */
static int body_grow(struct sl_http_body *b, size_t want)
{
    if (want <= b->cap)
        return 0;
    if (!b->data) {
        struct spare *sp = spare_get();
        if (sp && sp->data && sp->cap >= want && sp->cap <= b->max) {
            b->data = sp->data;
            b->cap = sp->cap;
            sp->data = NULL;
            sp->cap = 0;
            return 0;
        }
    }
    size_t cap = b->cap ? b->cap : BODY_INITIAL;
    while (cap < want)
        cap = cap > b->max / 2 ? b->max : cap * 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap + 1);
    if (!p)
        return SL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sl_http_body_reserve(struct sl_http_body *b, uint64_t content_length)
{
    if (content_length > b->max) {
        b->too_large = 1;
        return SL_EFULL;
    }
    if (content_length == 0)
        return 0;
    int rc = body_grow(b, (size_t)content_length);
    if (rc == 0)
        b->data[b->len] = '\0';
    return rc;
}

int sl_http_body_append(struct sl_http_body *b, const void *data, size_t n)
{
    if (b->too_large || n > b->max - b->len) {
        b->too_large = 1;
        b->discarded += n;
        return SL_EFULL;
    }
    if (n == 0)
        return 0;
    int rc = body_grow(b, b->len + n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void sl_http_body_fini(struct sl_http_body *b)
{
    if (b->data) {
        struct spare *sp = b->cap <= BODY_SPARE_MAX ? spare_get() : NULL;
        if (sp && (!sp->data || sp->cap < b->cap)) {
            free(sp->data);
            sp->data = b->data;
            sp->cap = b->cap;
        } else {
            free(b->data);
        }
    }
    memset(b, 0, sizeof(*b));
}
