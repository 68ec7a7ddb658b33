/* Leveled logging to stderr with role, pid and per-thread organization/request context. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int sl_log_level_current = SL_LOG_INFO;
static char log_role[32] = "sluice";
static _Thread_local char log_org[40];
static _Thread_local char log_req[40];

void sl_log_set_role(const char *role)
{
    snprintf(log_role, sizeof(log_role), "%s", role);
}

void sl_log_set_context(const char *org, const char *request_id)
{
    snprintf(log_org, sizeof(log_org), "%s", org ? org : "");
    snprintf(log_req, sizeof(log_req), "%s", request_id ? request_id : "");
}

int sl_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "DEBUG"))
        return SL_LOG_DEBUG;
    if (!strcasecmp(s, "INFO"))
        return SL_LOG_INFO;
    if (!strcasecmp(s, "WARN") || !strcasecmp(s, "WARNING"))
        return SL_LOG_WARN;
    if (!strcasecmp(s, "ERROR"))
        return SL_LOG_ERROR;
    return -1;
}

const char *sl_log_level_name(int level)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    return (level >= 0 && level <= 3) ? names[level] : "?";
}

void sl_log_write(int level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s pid=%d",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, sl_log_level_name(level), log_role, (int)getpid());
    if (log_org[0] && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - n, " org=%s", log_org);
    if (log_req[0] && n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - n, " req=%s", log_req);
    if (n < (int)sizeof(line))
        n += snprintf(line + n, sizeof(line) - n, "] ");
    if (n < (int)sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
    }
    if (n >= (int)sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so lines from several processes do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
