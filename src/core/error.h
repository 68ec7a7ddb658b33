/* Error codes shared by every module: 0 is success, negative values are failures. */
#ifndef SL_CORE_ERROR_H
#define SL_CORE_ERROR_H

#include <stddef.h>

/* Functions return 0 on success, a negative SL_E* code, or a negated errno for a failed
 * syscall. The SL_E* codes sit far below any errno so the two never collide. */
enum sl_error {
    SL_OK = 0,
    SL_EINVAL = -1000, /* bad argument or bad input */
    SL_ENOMEM,         /* allocation failed */
    SL_EIO,            /* storage or backend failure */
    SL_ENOTFOUND,      /* no such object */
    SL_EEXIST,         /* object already exists */
    SL_EFULL,          /* a bounded resource is full (stream map, queue) */
    SL_EAGAIN,         /* transient: try again */
    SL_ECORRUPT,       /* stored data is not what it should be */
    SL_ETIMEDOUT,      /* a deadline passed */
    SL_EBUSY,          /* the resource is locked by someone else */
    SL_ECLOSED,        /* the object is shutting down */
};

/* Returns a static, human-readable description of rc (an SL_E* code or a negated errno). */
const char *sl_strerror(int rc);

/* Formats a message into err (errlen bytes, always NUL-terminated); does nothing when err is
 * NULL or errlen is 0. For the "char *err, size_t errlen" out-parameters used across sluice. */
void sl_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
