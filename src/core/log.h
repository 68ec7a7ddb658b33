/* Leveled logging to stderr; every line carries time, level, role and pid. */
#ifndef SL_CORE_LOG_H
#define SL_CORE_LOG_H

enum sl_log_level { SL_LOG_DEBUG = 0, SL_LOG_INFO = 1, SL_LOG_WARN = 2, SL_LOG_ERROR = 3 };

extern int sl_log_level_current;

/* Sets the role shown on each line ("supervisor", "api", "worker.3"). role is copied.
 * Call once per process, before threads start. */
void sl_log_set_role(const char *role);

/* Sets this thread's organization and request id shown on its lines; NULL clears one.
 * Both are copied into thread-local storage. */
void sl_log_set_context(const char *org, const char *request_id);

/* Parses DEBUG|INFO|WARN|WARNING|ERROR (any case). Returns the level or -1. */
int sl_log_level_parse(const char *s);
const char *sl_log_level_name(int level);

void sl_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level is checked before the arguments are evaluated. */
#define sl_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= sl_log_level_current)                                                       \
            sl_log_write((level), __VA_ARGS__);                                                    \
    } while (0)
#define SL_DEBUG(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#define SL_INFO(...)  sl_log(SL_LOG_INFO, __VA_ARGS__)
#define SL_WARN(...)  sl_log(SL_LOG_WARN, __VA_ARGS__)
#define SL_ERROR(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)

#endif
