/* Human-readable text for sluice error codes. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sl_strerror(int rc)
{
    switch (rc) {
    case SL_OK:
        return "success";
    case SL_EINVAL:
        return "invalid argument";
    case SL_ENOMEM:
        return "out of memory";
    case SL_EIO:
        return "input/output error";
    case SL_ENOTFOUND:
        return "not found";
    case SL_EEXIST:
        return "already exists";
    case SL_EFULL:
        return "full";
    case SL_EAGAIN:
        return "temporarily unavailable";
    case SL_ECORRUPT:
        return "corrupt data";
    case SL_ETIMEDOUT:
        return "timed out";
    case SL_EBUSY:
        return "busy";
    case SL_ECLOSED:
        return "shutting down";
    default:
        break;
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return "unknown error";
}

void sl_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
