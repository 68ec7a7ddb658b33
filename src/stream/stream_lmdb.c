/* The embedded stream backend: topics, partitions and consumer offsets in one LMDB environment,
 * with group commit for appends and futex wake-ups across processes.
 *
 * On-disk layout, all in the environment in cfg->dir (integers big-endian so keys sort):
 *   meta     "t" + topic name            -> u32 topic id, u32 partition count
 *            "n"                         -> u32 next topic id
 *            "p" + u32 topic id + u32 p  -> u64 next offset of the partition (absent = 0)
 *   records  u32 topic id + u32 p + u64 offset -> u64 append time (ms since epoch) + payload
 *   offsets  u32 topic id + u32 p + group name -> u64 committed offset (next record to read)
 * All topics share the records DB; a partition is a contiguous key range, so "first retained
 * record" is one range seek and trimming deletes a prefix of that range. Offsets are keyed by
 * topic and partition first so trim finds every group of a partition with one range scan.
 *
 * <dir>/notify is a 4 KiB file mapped MAP_SHARED by every process: 64 cache-line slots, each
 * holding a 32-bit sequence. A topic hashes to one slot. After a commit the appender increments
 * the slots of the topics it wrote and calls FUTEX_WAKE (shared futex: the key is the file page,
 * so it works across processes). An idle poll reads the slot, re-checks for data, then waits with
 * FUTEX_WAIT on the value it read: an append in between changes the value and the wait returns at
 * once, so no wake-up is lost; collisions between topics only cause spurious wake-ups.
 *
 * Group commit: append() queues a request on the caller's stack. The first caller that finds no
 * leader becomes the leader, takes the pending requests (bounded by count and bytes), writes them
 * in one transaction with one synchronous commit, and hands out each caller's result; the others
 * sleep on a condition variable. Before taking a batch the leader briefly waits for the callers
 * of the previous batch to come back (gc_gather), so batches do not alternate large and tiny.
 * A request for a missing topic or partition is refused before anything of it is written, so only
 * that caller fails. If the shared transaction fails with SL_EFULL, every request is retried in
 * its own transaction so each caller gets its own result.
 *
 * Space: appends stop with SL_EFULL while 1/32 of the map (32 pages..64 MiB) is still free, so
 * consumer commits and trims, which are small and are what frees space, never hit MDB_MAP_FULL.
 *
 * Semantics beyond stream.h: poll with timeout_ms < 0 waits without limit; a signal ends the
 * wait early with no records (so callers can check their shutdown flag); one poll returns at most
 * about 16 MiB (always at least one record). backlog counts from max(committed offset, first
 * retained record), as trimmed records can no longer be delivered.
 *
 * Processes: each process opens its own handle (LMDB handles must not cross fork()), and only one
 * per environment (a second open in the same process is refused, see open_dirs). MDB_NOTLS lets
 * threads share the handle and lets consumers keep a reset read transaction. Commits use LMDB's
 * default synchronous mode (never MDB_NOSYNC or MDB_NOMETASYNC).
 * mdb_reader_check runs at open, at trim and when the reader table is full, to free slots left by
 * processes killed with SIGKILL. */
#include "stream/stream.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#define NOTIFY_SLOTS      64
#define NOTIFY_SLOT_BYTES 64 /* one cache line per slot */
#define NOTIFY_FILE_BYTES (NOTIFY_SLOTS * NOTIFY_SLOT_BYTES)

#define GC_MAX_PENDING    1024               /* callers queued before new callers wait */
#define GC_BATCH_REQUESTS 4096               /* requests per shared transaction */
#define GC_BATCH_BYTES    (32u << 20)        /* payload bytes per shared transaction */
#define GC_GATHER_MAX_US  1000               /* longest wait of a leader for more requests */
#define TRIM_BUDGET       50000              /* deletions per trim call (one transaction) */
#define POLL_MAX_BYTES    ((size_t)16 << 20) /* a poll stops here (after at least one record) */
#define MAX_READERS       512
#define RESERVE_MIN_PAGES 32    /* space kept for commits and trims: 1/32 of the map, */
#define RESERVE_MAX_PAGES 16384 /* within these bounds */
#define MIN_MAP_BYTES     ((uint64_t)1 << 20)

#define REC_KEY_LEN  16 /* topic id, partition, offset */
#define PART_KEY_LEN 8  /* topic id, partition */
#define TS_LEN       8  /* append time before the payload */

struct lmdb_stream {
    struct sl_stream base;
    MDB_env *env;
    MDB_dbi meta, records, offsets;
    int64_t retention_ms;
    size_t page_size;
    size_t reserve_pages; /* kept free for commits and trims (see space_check) */
    int notify_fd;
    unsigned char *notify;     /* NOTIFY_FILE_BYTES, MAP_SHARED */
    struct open_dir *open_dir; /* this handle's entry in open_dirs */

    /* Group commit state, under gc_lock. */
    pthread_mutex_t gc_lock;
    pthread_cond_t gc_cond; /* a batch finished */
    pthread_cond_t gc_more; /* enough requests queued for a gathering leader */
    struct append_req *gc_head;
    struct append_req **gc_tail;
    size_t gc_pending;
    size_t gc_target;     /* callers active around the last commit (see gc_gather) */
    int64_t gc_commit_us; /* duration of the last batch */
    int gc_leader;
    int gc_gathering;
};

/* One append() call waiting for the group commit; lives on the caller's stack. */
struct append_req {
    const char *topic;
    uint32_t partition;
    const struct sl_stream_msg *msgs;
    size_t n;
    size_t bytes;
    uint64_t first; /* result: first offset */
    int rc;         /* result */
    int done;       /* set under gc_lock once rc and first are final */
    struct append_req *next;
};

struct consumer_part {
    uint32_t partition;
    uint64_t pos;       /* next offset to return */
    uint64_t scan;      /* position while a poll is under way */
    uint64_t committed; /* last value stored for the group */
    int has_commit;     /* whether the group has a stored value */
};

struct lmdb_consumer {
    struct sl_stream_consumer base;
    uint32_t topic_id;
    uint32_t slot; /* notify slot of the topic */
    char group[SL_STREAM_NAME_MAX + 1];
    size_t group_len;
    MDB_txn *rtxn; /* reset between polls, so it pins no snapshot */
    size_t nparts;
    size_t rr; /* partition that goes first in the next poll */
    struct consumer_part *parts;
    struct sl_stream_record *recs;
    size_t *offs; /* offset of each record's payload in buf while buf may still move */
    size_t recs_cap;
    unsigned char *buf;
    size_t buf_cap;
    size_t buf_used;
};

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get_be64(const unsigned char *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void rec_key(unsigned char k[REC_KEY_LEN], uint32_t id, uint32_t part, uint64_t off)
{
    put_be32(k, id);
    put_be32(k + 4, part);
    put_be64(k + 8, off);
}

/* Topic and group names: [A-Za-z0-9._-], 1..SL_STREAM_NAME_MAX chars. */
static int name_valid(const char *s)
{
    size_t i;
    if (!s)
        return 0;
    for (i = 0; s[i]; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        if (!ok || i >= SL_STREAM_NAME_MAX)
            return 0;
    }
    return i > 0;
}

/* Maps an LMDB return code to an SL_E* code, logging the unexpected ones. */
static int map_mdb(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return SL_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return SL_EFULL;
    case ENOMEM:
        return SL_ENOMEM;
    case MDB_READERS_FULL:
        SL_WARN("stream: %s: %s (raise the reader limit or close idle consumers)", what,
                mdb_strerror(rc));
        return SL_EAGAIN;
    case MDB_MAP_RESIZED:
        SL_ERROR("stream: %s: another process uses a larger map size; open every process with "
                 "the same max_bytes",
                 what);
        return SL_EIO;
    default:
        SL_ERROR("stream: %s: %s", what, mdb_strerror(rc));
        return SL_EIO;
    }
}

/* Begins a transaction; on a full reader table, clears slots of dead processes and retries. */
static int txn_begin(struct lmdb_stream *s, unsigned flags, MDB_txn **out)
{
    int rc = mdb_txn_begin(s->env, NULL, flags, out);
    if (rc == MDB_READERS_FULL) {
        int dead = 0;
        mdb_reader_check(s->env, &dead);
        rc = mdb_txn_begin(s->env, NULL, flags, out);
    }
    return map_mdb(rc, "begin transaction");
}

/* ---- notify file ---------------------------------------------------------------------------- */

static uint32_t notify_slot(const char *topic)
{
    return (uint32_t)(sl_hash64(topic, strlen(topic), 0) % NOTIFY_SLOTS);
}

static uint32_t *notify_word(struct lmdb_stream *s, uint32_t slot)
{
    return (uint32_t *)(void *)(s->notify + (size_t)slot * NOTIFY_SLOT_BYTES);
}

static int notify_open(struct lmdb_stream *s, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/notify", dir) >= (int)sizeof path) {
        snprintf(err, errlen, "stream dir %s: path too long", dir);
        return SL_EINVAL;
    }
    s->notify_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->notify_fd < 0 || fstat(s->notify_fd, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    /* Growing an existing file never zeroes it, so two processes racing here is harmless. */
    if (st.st_size < NOTIFY_FILE_BYTES && ftruncate(s->notify_fd, NOTIFY_FILE_BYTES) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    s->notify = mmap(NULL, NOTIFY_FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, s->notify_fd, 0);
    if (s->notify == MAP_FAILED) {
        int e = errno;
        s->notify = NULL;
        snprintf(err, errlen, "%s: mmap: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

/* Bumps the sequence of each slot set in mask and wakes its waiters in every process. */
static void notify_bump(struct lmdb_stream *s, uint64_t mask)
{
    for (uint32_t i = 0; i < NOTIFY_SLOTS; i++) {
        if (!(mask & ((uint64_t)1 << i)))
            continue;
        uint32_t *w = notify_word(s, i);
        __atomic_add_fetch(w, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
}

static uint32_t notify_seq(struct lmdb_stream *s, uint32_t slot)
{
    return __atomic_load_n(notify_word(s, slot), __ATOMIC_SEQ_CST);
}

/* Waits until the slot's sequence differs from seen, a wake-up, or timeout_ms (< 0: forever).
 * Returns 0, or -EINTR when a signal arrived. */
static int notify_wait(struct lmdb_stream *s, uint32_t slot, uint32_t seen, int64_t timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = (time_t)(timeout_ms / 1000);
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    if (syscall(SYS_futex, notify_word(s, slot), FUTEX_WAIT, seen, tsp, NULL, 0) != 0 &&
        errno == EINTR)
        return -EINTR;
    return 0;
}

/* ---- open and close ------------------------------------------------------------------------- */

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        path[i] = saved;
    }
    return 0;
}

static int env_open(struct lmdb_stream *s, const struct sl_stream_config *cfg, char *err,
                    size_t errlen)
{
    MDB_txn *txn = NULL;
    int dead = 0;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, 3);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, (size_t)cfg->max_bytes);
    if (rc == 0)
        rc = mdb_env_open(s->env, cfg->dir, MDB_NOTLS, 0600);
    if (rc == 0)
        rc = mdb_reader_check(s->env, &dead);
    if (rc == 0)
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "records", MDB_CREATE, &s->records);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "offsets", MDB_CREATE, &s->offsets);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc != 0) {
        snprintf(err, errlen, "stream dir %s: lmdb: %s", cfg->dir, mdb_strerror(rc));
        return SL_EIO;
    }
    if (dead > 0)
        SL_INFO("stream: cleared %d reader slot(s) of dead processes in %s", dead, cfg->dir);
    MDB_stat st;
    MDB_envinfo info;
    mdb_env_stat(s->env, &st);
    mdb_env_info(s->env, &info);
    s->page_size = st.ms_psize;
    s->reserve_pages = info.me_mapsize / s->page_size / 32;
    if (s->reserve_pages < RESERVE_MIN_PAGES)
        s->reserve_pages = RESERVE_MIN_PAGES;
    if (s->reserve_pages > RESERVE_MAX_PAGES)
        s->reserve_pages = RESERVE_MAX_PAGES;
    return 0;
}

/* Directories this process has open. LMDB's liveness check of a process rests on fcntl locks,
 * which a process loses on closing any descriptor of the lock file: a second handle on the same
 * environment, once closed, would make other processes treat this one's readers as dead and
 * reuse pages it is still reading. So a process opens each environment once. Entries inherited
 * through fork() belong to the parent's pid and do not count. */
struct open_dir {
    dev_t dev;
    ino_t ino;
    pid_t pid;
    struct open_dir *next;
};
static pthread_mutex_t open_dirs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_dir *open_dirs;

static int open_dir_claim(struct lmdb_stream *s, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "stream dir %s: %s", dir, strerror(e));
        return -e;
    }
    pthread_mutex_lock(&open_dirs_lock);
    for (struct open_dir *d = open_dirs; d; d = d->next) {
        if (d->dev == st.st_dev && d->ino == st.st_ino && d->pid == getpid()) {
            snprintf(err, errlen,
                     "stream dir %s: already open in this process (open it once and share the "
                     "handle between threads)",
                     dir);
            rc = SL_EBUSY;
        }
    }
    if (rc == 0 && (s->open_dir = malloc(sizeof *s->open_dir)) == NULL) {
        snprintf(err, errlen, "stream: out of memory");
        rc = SL_ENOMEM;
    }
    if (rc == 0) {
        *s->open_dir = (struct open_dir){st.st_dev, st.st_ino, getpid(), open_dirs};
        open_dirs = s->open_dir;
    }
    pthread_mutex_unlock(&open_dirs_lock);
    return rc;
}

static void open_dir_release(struct lmdb_stream *s)
{
    pthread_mutex_lock(&open_dirs_lock);
    for (struct open_dir **pp = &open_dirs; *pp; pp = &(*pp)->next) {
        if (*pp == s->open_dir) {
            *pp = s->open_dir->next;
            break;
        }
    }
    pthread_mutex_unlock(&open_dirs_lock);
    free(s->open_dir);
}

static void lmdb_destroy(struct sl_stream *base)
{
    struct lmdb_stream *s = (struct lmdb_stream *)base;
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    if (s->open_dir)
        open_dir_release(s);
    if (s->notify)
        munmap(s->notify, NOTIFY_FILE_BYTES);
    if (s->notify_fd >= 0)
        close(s->notify_fd);
    pthread_cond_destroy(&s->gc_cond);
    pthread_cond_destroy(&s->gc_more);
    pthread_mutex_destroy(&s->gc_lock);
    free(s);
}

static const struct sl_stream_ops lmdb_ops;

static int config_check(const struct sl_stream_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->dir || !cfg->dir[0]) {
        snprintf(err, errlen, "stream: a directory is required");
        return SL_EINVAL;
    }
    if (cfg->max_bytes < MIN_MAP_BYTES || cfg->max_bytes > (uint64_t)SIZE_MAX / 2) {
        snprintf(err, errlen,
                 "stream max_bytes=%llu: expected at least %llu bytes and below the address "
                 "space",
                 (unsigned long long)cfg->max_bytes, (unsigned long long)MIN_MAP_BYTES);
        return SL_EINVAL;
    }
    if (cfg->retention_ms < 0) {
        snprintf(err, errlen, "stream retention_ms=%lld: expected 0 or more",
                 (long long)cfg->retention_ms);
        return SL_EINVAL;
    }
    return 0;
}

struct sl_stream *sl_stream_lmdb_create(const struct sl_stream_config *cfg, char *err,
                                        size_t errlen)
{
    char dummy[1];
    struct lmdb_stream *s = NULL;
    int rc;
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (config_check(cfg, err, errlen) != 0)
        return NULL;
    rc = mkdir_p(cfg->dir);
    if (rc != 0) {
        snprintf(err, errlen, "stream dir %s: %s", cfg->dir, strerror(-rc));
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "stream: out of memory");
        return NULL;
    }
    s->base.ops = &lmdb_ops;
    s->notify_fd = -1;
    s->retention_ms = cfg->retention_ms;
    s->gc_tail = &s->gc_head;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->gc_lock, NULL);
    pthread_cond_init(&s->gc_cond, NULL);
    pthread_cond_init(&s->gc_more, &attr);
    pthread_condattr_destroy(&attr);
    if (open_dir_claim(s, cfg->dir, err, errlen) != 0 || env_open(s, cfg, err, errlen) != 0 ||
        notify_open(s, cfg->dir, err, errlen) != 0) {
        lmdb_destroy(&s->base);
        return NULL;
    }
    return &s->base;
}

/* ---- metadata ------------------------------------------------------------------------------- */

/* Looks up topic; SL_ENOTFOUND if it does not exist. */
static int topic_lookup(struct lmdb_stream *s, MDB_txn *txn, const char *topic, uint32_t *out_id,
                        uint32_t *out_parts)
{
    unsigned char kbuf[1 + SL_STREAM_NAME_MAX];
    size_t len = strlen(topic);
    MDB_val k = {1 + len, kbuf}, v;
    kbuf[0] = 't';
    memcpy(kbuf + 1, topic, len);
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc != 0)
        return map_mdb(rc, "topic lookup");
    if (v.mv_size != 8)
        return SL_ECORRUPT;
    *out_id = get_be32(v.mv_data);
    *out_parts = get_be32((unsigned char *)v.mv_data + 4);
    return 0;
}

static int part_next_get(struct lmdb_stream *s, MDB_txn *txn, uint32_t id, uint32_t part,
                         uint64_t *out_next)
{
    unsigned char kbuf[1 + PART_KEY_LEN];
    MDB_val k = {sizeof kbuf, kbuf}, v;
    kbuf[0] = 'p';
    put_be32(kbuf + 1, id);
    put_be32(kbuf + 5, part);
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out_next = 0;
        return 0;
    }
    if (rc != 0)
        return map_mdb(rc, "partition lookup");
    if (v.mv_size != 8)
        return SL_ECORRUPT;
    *out_next = get_be64(v.mv_data);
    return 0;
}

static int part_next_put(struct lmdb_stream *s, MDB_txn *txn, uint32_t id, uint32_t part,
                         uint64_t next)
{
    unsigned char kbuf[1 + PART_KEY_LEN], vbuf[8];
    MDB_val k = {sizeof kbuf, kbuf}, v = {sizeof vbuf, vbuf};
    kbuf[0] = 'p';
    put_be32(kbuf + 1, id);
    put_be32(kbuf + 5, part);
    put_be64(vbuf, next);
    return map_mdb(mdb_put(txn, s->meta, &k, &v, 0), "partition update");
}

/* Offset of the first record still stored in the partition, or next if it is empty. */
static int part_first(struct lmdb_stream *s, MDB_txn *txn, uint32_t id, uint32_t part,
                      uint64_t next, uint64_t *out_first)
{
    unsigned char kbuf[REC_KEY_LEN];
    MDB_cursor *cur;
    MDB_val k = {sizeof kbuf, kbuf}, v;
    int rc = mdb_cursor_open(txn, s->records, &cur);
    if (rc != 0)
        return map_mdb(rc, "cursor open");
    rec_key(kbuf, id, part, 0);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    *out_first = next;
    if (rc == 0 && k.mv_size == REC_KEY_LEN && memcmp(k.mv_data, kbuf, PART_KEY_LEN) == 0)
        *out_first = get_be64((unsigned char *)k.mv_data + PART_KEY_LEN);
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : map_mdb(rc, "first record");
}

static void offsets_key(unsigned char *kbuf, uint32_t id, uint32_t part, const char *group,
                        size_t group_len)
{
    put_be32(kbuf, id);
    put_be32(kbuf + 4, part);
    memcpy(kbuf + PART_KEY_LEN, group, group_len);
}

/* The group's committed offset of one partition; *out_found = 0 if it never committed. */
static int committed_get(struct lmdb_stream *s, MDB_txn *txn, uint32_t id, uint32_t part,
                         const char *group, size_t group_len, uint64_t *out_off, int *out_found)
{
    unsigned char kbuf[PART_KEY_LEN + SL_STREAM_NAME_MAX];
    MDB_val k = {PART_KEY_LEN + group_len, kbuf}, v;
    offsets_key(kbuf, id, part, group, group_len);
    int rc = mdb_get(txn, s->offsets, &k, &v);
    *out_off = 0;
    *out_found = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return map_mdb(rc, "offset lookup");
    if (v.mv_size != 8)
        return SL_ECORRUPT;
    *out_off = get_be64(v.mv_data);
    *out_found = 1;
    return 0;
}

/* Creates topic or grows it; the caller holds a write transaction. */
static int topic_ensure_txn(struct lmdb_stream *s, MDB_txn *txn, const char *topic,
                            uint32_t partitions, uint32_t *out_partitions)
{
    unsigned char kbuf[1 + SL_STREAM_NAME_MAX], vbuf[8], nbuf[4];
    size_t len = strlen(topic);
    MDB_val k = {1 + len, kbuf}, v = {sizeof vbuf, vbuf};
    MDB_val nk = {1, "n"}, nv;
    uint32_t id, parts;
    int rc = topic_lookup(s, txn, topic, &id, &parts);
    if (rc == 0 && parts >= partitions) {
        *out_partitions = parts;
        return 0;
    }
    if (rc == SL_ENOTFOUND) {
        rc = mdb_get(txn, s->meta, &nk, &nv);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return map_mdb(rc, "topic id");
        id = rc == 0 && nv.mv_size == 4 ? get_be32(nv.mv_data) : 1;
        put_be32(nbuf, id + 1);
        nv.mv_size = sizeof nbuf;
        nv.mv_data = nbuf;
        rc = map_mdb(mdb_put(txn, s->meta, &nk, &nv, 0), "topic id");
    }
    if (rc != 0)
        return rc;
    kbuf[0] = 't';
    memcpy(kbuf + 1, topic, len);
    put_be32(vbuf, id);
    put_be32(vbuf + 4, partitions);
    rc = map_mdb(mdb_put(txn, s->meta, &k, &v, 0), "topic update");
    if (rc == 0)
        *out_partitions = partitions;
    return rc;
}

static int lmdb_topic_ensure(struct sl_stream *base, const char *topic, uint32_t partitions,
                             uint32_t *out_partitions)
{
    struct lmdb_stream *s = (struct lmdb_stream *)base;
    MDB_txn *txn = NULL;
    uint32_t result = 0;
    int rc;
    if (!name_valid(topic) || partitions == 0 || partitions > SL_STREAM_MAX_PARTITIONS)
        return SL_EINVAL;
    rc = txn_begin(s, 0, &txn);
    if (rc != 0)
        return rc;
    rc = topic_ensure_txn(s, txn, topic, partitions, &result);
    if (rc == 0)
        rc = map_mdb(mdb_txn_commit(txn), "topic commit");
    else
        mdb_txn_abort(txn);
    if (rc == 0 && out_partitions)
        *out_partitions = result;
    return rc;
}

/* ---- append and group commit ---------------------------------------------------------------- */

/* Writes one request into txn. Refuses a missing topic or partition before writing anything;
 * any other error leaves txn unusable (the caller aborts it). */
/* Whether key sorts after every record in the tree. Then the request's records (ascending
 * keys) can be put with MDB_APPEND, which fills pages completely; an insert inside the tree
 * splits pages in half. This is the case for the highest partition of the newest topic, so
 * for every append of a single-partition topic (one worker, the default on 2 cores). */
static int at_tree_end(struct lmdb_stream *s, MDB_txn *txn, const unsigned char *key)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int end = 0;
    if (mdb_cursor_open(txn, s->records, &cur) != 0)
        return 0;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND)
        end = 1;
    else if (rc == 0 && k.mv_size == REC_KEY_LEN)
        end = memcmp(key, k.mv_data, REC_KEY_LEN) > 0;
    mdb_cursor_close(cur);
    return end;
}

static int req_apply(struct lmdb_stream *s, MDB_txn *txn, struct append_req *r, int64_t now)
{
    unsigned char kbuf[REC_KEY_LEN];
    uint32_t id, parts;
    uint64_t next;
    int rc = topic_lookup(s, txn, r->topic, &id, &parts);
    if (rc != 0)
        return rc;
    if (r->partition >= parts)
        return SL_ENOTFOUND;
    rc = part_next_get(s, txn, id, r->partition, &next);
    unsigned flags = MDB_RESERVE;
    if (rc == 0) {
        rec_key(kbuf, id, r->partition, next);
        if (at_tree_end(s, txn, kbuf))
            flags |= MDB_APPEND;
    }
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        MDB_val k = {sizeof kbuf, kbuf}, v = {TS_LEN + r->msgs[i].len, NULL};
        rec_key(kbuf, id, r->partition, next + i);
        rc = map_mdb(mdb_put(txn, s->records, &k, &v, flags), "append");
        if (rc == 0) {
            put_be64(v.mv_data, (uint64_t)now);
            if (r->msgs[i].len)
                memcpy((unsigned char *)v.mv_data + TS_LEN, r->msgs[i].data, r->msgs[i].len);
        }
    }
    if (rc == 0)
        rc = part_next_put(s, txn, id, r->partition, next + r->n);
    if (rc == 0)
        r->first = next;
    return rc;
}

/* Refusals that wrote nothing and leave the shared transaction usable. */
static int req_refused(int rc)
{
    return rc == SL_ENOTFOUND || rc == SL_EINVAL || rc == SL_ECORRUPT;
}

/* Checks that the topic and partition of r exist, without writing. */
static int req_check(struct lmdb_stream *s, MDB_txn *txn, const struct append_req *r)
{
    uint32_t id, parts;
    int rc = topic_lookup(s, txn, r->topic, &id, &parts);
    return rc == 0 && r->partition >= parts ? SL_ENOTFOUND : rc;
}

/* Pages on LMDB's free list (the layout mdb_stat -f reads: each value is a page-number list
 * whose first element is its length). LMDB opens the free list only in read transactions; this
 * one sees the snapshot the caller's write transaction started from. */
static int free_pages(struct lmdb_stream *s, size_t *out_pages)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    *out_pages = 0;
    int rc = txn_begin(s, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, 0, &cur);
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (v.mv_size >= sizeof(size_t))
            *out_pages += *(const size_t *)v.mv_data;
    }
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc == MDB_NOTFOUND ? 0 : map_mdb(rc, "free list");
}

/* Refuses an append of bytes in nrecs records with SL_EFULL unless it leaves the reserve free,
 * so that commits and trims, which are small and free space, still fit when appends do not.
 * The estimate allows for half-full leaf pages, the worst LMDB's page splits leave. */
static int space_check(struct lmdb_stream *s, size_t bytes, size_t nrecs)
{
    MDB_envinfo info;
    size_t nfree = 0, need = 2 * ((bytes + nrecs * 32) / s->page_size) + 16;
    mdb_env_info(s->env, &info);
    size_t map_pages = info.me_mapsize / s->page_size, used = info.me_last_pgno + 1;
    if (used + need + s->reserve_pages <= map_pages)
        return 0;
    int rc = free_pages(s, &nfree);
    if (rc != 0)
        return rc;
    used = used > nfree ? used - nfree : 0;
    return used + need + s->reserve_pages <= map_pages ? 0 : SL_EFULL;
}

/* Runs a batch of requests (linked by next) in one write transaction and sets each r->rc.
 * If the shared transaction fails with SL_EFULL and split is set, each request is retried in its
 * own transaction so callers that fit still succeed. Called by the leader without gc_lock. */
static void batch_run(struct lmdb_stream *s, struct append_req *batch, int split)
{
    MDB_txn *txn = NULL;
    uint64_t wake = 0;
    size_t bytes = 0, nrecs = 0;
    int fatal = txn_begin(s, 0, &txn);
    int64_t now = sl_now_ms();
    for (struct append_req *r = batch; r; r = r->next) {
        r->rc = fatal == 0 ? req_check(s, txn, r) : 0;
        if (r->rc != 0 && !req_refused(r->rc) && fatal == 0)
            fatal = r->rc;
        bytes += r->rc == 0 ? r->bytes : 0;
        nrecs += r->rc == 0 ? r->n : 0;
    }
    if (fatal == 0 && nrecs > 0)
        fatal = space_check(s, bytes, nrecs);
    for (struct append_req *r = batch; r && fatal == 0; r = r->next) {
        if (r->rc == 0)
            r->rc = req_apply(s, txn, r, now);
        if (r->rc != 0 && !req_refused(r->rc))
            fatal = r->rc;
    }
    if (fatal == 0) {
        fatal = map_mdb(mdb_txn_commit(txn), "append commit");
    } else if (txn) {
        mdb_txn_abort(txn);
    }
    if (fatal == SL_EFULL && split && batch->next) {
        for (struct append_req *r = batch; r; r = r->next) {
            struct append_req *next = r->next;
            r->next = NULL;
            batch_run(s, r, 0);
            r->next = next;
        }
        return;
    }
    for (struct append_req *r = batch; r; r = r->next) {
        if (fatal != 0 && !req_refused(r->rc))
            r->rc = fatal;
        if (r->rc == 0)
            wake |= (uint64_t)1 << notify_slot(r->topic);
    }
    notify_bump(s, wake);
}

/* Detaches the next batch from the queue: up to GC_BATCH_REQUESTS requests and about
 * GC_BATCH_BYTES of payload (at least one request). Called with gc_lock held. */
static struct append_req *batch_take(struct lmdb_stream *s)
{
    struct append_req *head = s->gc_head, *last = NULL, *r = head;
    size_t count = 0, bytes = 0;
    while (r && count < GC_BATCH_REQUESTS && (count == 0 || bytes + r->bytes <= GC_BATCH_BYTES)) {
        bytes += r->bytes;
        count++;
        last = r;
        r = r->next;
    }
    last->next = NULL;
    s->gc_head = r;
    if (!r)
        s->gc_tail = &s->gc_head;
    s->gc_pending -= count;
    return head;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Lets callers that are about to append join the next batch. Without this, a leader that finds
 * one request (queued just after the last batch was taken) commits it alone while the callers of
 * the last batch are still returning, and batches alternate between large and tiny. The leader
 * waits until as many requests are queued as callers were active around the last commit, at most
 * a quarter of that commit's duration (so a lone caller never waits, and a wait costs little
 * next to the fsync it shares). Called by the leader with gc_lock held. */
static void gc_gather(struct lmdb_stream *s)
{
    struct timespec ts;
    int64_t wait_us = s->gc_commit_us / 4;
    if (s->gc_pending >= s->gc_target || wait_us <= 0)
        return;
    if (wait_us > GC_GATHER_MAX_US)
        wait_us = GC_GATHER_MAX_US;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)(wait_us * 1000);
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    s->gc_gathering = 1;
    while (s->gc_pending < s->gc_target &&
           pthread_cond_timedwait(&s->gc_more, &s->gc_lock, &ts) == 0)
        ;
    s->gc_gathering = 0;
}

/* Runs one batch as the leader: gathers, takes, commits without the lock, then hands every
 * caller of the batch its result. Called with gc_lock held; returns with it held. */
static void gc_lead(struct lmdb_stream *s)
{
    s->gc_leader = 1;
    gc_gather(s);
    struct append_req *batch = batch_take(s);
    size_t count = 0;
    pthread_mutex_unlock(&s->gc_lock);
    int64_t t0 = mono_us();
    batch_run(s, batch, 1);
    int64_t took = mono_us() - t0;
    pthread_mutex_lock(&s->gc_lock);
    while (batch) {
        /* Read next first: once done is set the owner may return and free its request. */
        struct append_req *next = batch->next;
        batch->done = 1;
        batch = next;
        count++;
    }
    s->gc_commit_us = took;
    s->gc_target = count + s->gc_pending;
    if (s->gc_target > GC_BATCH_REQUESTS)
        s->gc_target = GC_BATCH_REQUESTS;
    s->gc_leader = 0;
    pthread_cond_broadcast(&s->gc_cond);
}

static int lmdb_append(struct sl_stream *base, const char *topic, uint32_t partition,
                       const struct sl_stream_msg *msgs, size_t n, uint64_t *out_first_offset)
{
    struct lmdb_stream *s = (struct lmdb_stream *)base;
    struct append_req req = {.topic = topic, .partition = partition, .msgs = msgs, .n = n};
    if (!name_valid(topic) || n == 0 || !msgs)
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].len && !msgs[i].data)
            return SL_EINVAL;
        req.bytes += msgs[i].len + TS_LEN;
    }
    pthread_mutex_lock(&s->gc_lock);
    while (s->gc_pending >= GC_MAX_PENDING)
        pthread_cond_wait(&s->gc_cond, &s->gc_lock);
    *s->gc_tail = &req;
    s->gc_tail = &req.next;
    s->gc_pending++;
    if (s->gc_gathering && s->gc_pending >= s->gc_target)
        pthread_cond_signal(&s->gc_more);
    while (!req.done) {
        if (s->gc_leader || !s->gc_head)
            pthread_cond_wait(&s->gc_cond, &s->gc_lock);
        else
            gc_lead(s);
    }
    pthread_mutex_unlock(&s->gc_lock);
    if (req.rc == 0 && out_first_offset)
        *out_first_offset = req.first;
    return req.rc;
}

/* ---- backlog and trim ----------------------------------------------------------------------- */

static int lmdb_backlog(struct sl_stream *base, const char *topic, const char *group,
                        uint64_t *out_records)
{
    struct lmdb_stream *s = (struct lmdb_stream *)base;
    MDB_txn *txn = NULL;
    uint32_t id, parts;
    uint64_t total = 0;
    size_t glen;
    int rc;
    if (!name_valid(topic) || !name_valid(group) || !out_records)
        return SL_EINVAL;
    glen = strlen(group);
    rc = txn_begin(s, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    rc = topic_lookup(s, txn, topic, &id, &parts);
    for (uint32_t p = 0; rc == 0 && p < parts; p++) {
        uint64_t next = 0, first = 0, committed = 0;
        int found;
        rc = part_next_get(s, txn, id, p, &next);
        if (rc == 0)
            rc = part_first(s, txn, id, p, next, &first);
        if (rc == 0)
            rc = committed_get(s, txn, id, p, group, glen, &committed, &found);
        /* Trimmed records cannot be read any more, so they are not backlog. */
        uint64_t start = committed > first ? committed : first;
        if (rc == 0 && next > start)
            total += next - start;
    }
    mdb_txn_abort(txn);
    if (rc == 0)
        *out_records = total;
    return rc;
}

/* Lowest offset committed on the partition by any group; *out_found = 0 if none committed. */
static int min_committed(struct lmdb_stream *s, MDB_txn *txn, uint32_t id, uint32_t part,
                         uint64_t *out_min, int *out_found)
{
    unsigned char kbuf[PART_KEY_LEN];
    MDB_cursor *cur;
    MDB_val k = {sizeof kbuf, kbuf}, v;
    int rc = mdb_cursor_open(txn, s->offsets, &cur);
    if (rc != 0)
        return map_mdb(rc, "cursor open");
    put_be32(kbuf, id);
    put_be32(kbuf + 4, part);
    *out_min = UINT64_MAX;
    *out_found = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= PART_KEY_LEN || memcmp(k.mv_data, kbuf, PART_KEY_LEN) != 0)
            break;
        if (v.mv_size != 8) {
            rc = SL_ECORRUPT;
            break;
        }
        uint64_t off = get_be64(v.mv_data);
        if (off < *out_min)
            *out_min = off;
        *out_found = 1;
    }
    mdb_cursor_close(cur);
    if (rc == SL_ECORRUPT)
        return rc;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : map_mdb(rc, "offsets scan");
}

/* Deletes, in txn, up to budget records from the start of the partition that every committed
 * group has passed and that were appended at or before cutoff. *out_more = 1 if it stopped at the
 * budget and the next record is eligible too. */
static int trim_part(struct lmdb_stream *s, MDB_txn *txn, uint32_t id, uint32_t part,
                     int64_t cutoff, uint64_t budget, uint64_t *out_deleted, int *out_more)
{
    unsigned char kbuf[REC_KEY_LEN];
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t limit = 0, off = 0, deleted = 0;
    int found = 0, rc = min_committed(s, txn, id, part, &limit, &found);
    *out_more = 0;
    if (rc == 0 && found)
        rc = map_mdb(mdb_cursor_open(txn, s->records, &cur), "cursor open");
    while (rc == 0 && found) {
        rec_key(kbuf, id, part, off);
        k.mv_size = sizeof kbuf;
        k.mv_data = kbuf;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (mrc == MDB_NOTFOUND)
            break;
        if ((rc = map_mdb(mrc, "trim seek")) != 0)
            break;
        if (k.mv_size != REC_KEY_LEN || memcmp(k.mv_data, kbuf, PART_KEY_LEN) != 0)
            break;
        off = get_be64((unsigned char *)k.mv_data + PART_KEY_LEN);
        if (off >= limit || v.mv_size < TS_LEN || (int64_t)get_be64(v.mv_data) > cutoff)
            break;
        if (deleted == budget) {
            *out_more = 1;
            break;
        }
        rc = map_mdb(mdb_cursor_del(cur, 0), "trim delete");
        deleted++;
        off++;
    }
    if (cur)
        mdb_cursor_close(cur);
    *out_deleted = deleted;
    return rc;
}

/* One write transaction (one fsync) of at most TRIM_BUDGET deletions over all partitions, in
 * partition order. Once the budget is spent the remaining partitions are only checked for an
 * eligible record, so SL_EAGAIN means that at least one is left. Nothing is committed on error. */
static int lmdb_trim(struct sl_stream *base, const char *topic, uint64_t *out_trimmed)
{
    struct lmdb_stream *s = (struct lmdb_stream *)base;
    MDB_txn *txn = NULL;
    uint32_t id, parts;
    uint64_t total = 0;
    int dead = 0, more = 0, rc;
    if (out_trimmed)
        *out_trimmed = 0;
    if (!name_valid(topic))
        return SL_EINVAL;
    /* Readers of killed processes would pin old pages and keep the freed space unusable. */
    if (mdb_reader_check(s->env, &dead) == 0 && dead > 0)
        SL_INFO("stream: cleared %d reader slot(s) of dead processes", dead);
    /* A write transaction takes no reader slot, so SL_EAGAIN below never means "readers full". */
    rc = txn_begin(s, 0, &txn);
    if (rc != 0)
        return rc;
    rc = topic_lookup(s, txn, topic, &id, &parts);
    int64_t cutoff = sl_now_ms() - s->retention_ms;
    for (uint32_t p = 0; rc == 0 && p < parts && !more; p++) {
        uint64_t n = 0;
        rc = trim_part(s, txn, id, p, cutoff, TRIM_BUDGET - total, &n, &more);
        total += n;
    }
    if (rc == 0 && total > 0) {
        rc = map_mdb(mdb_txn_commit(txn), "trim commit");
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != 0)
        return rc;
    if (out_trimmed)
        *out_trimmed = total;
    return more ? SL_EAGAIN : 0;
}

/* ---- consumers ------------------------------------------------------------------------------ */

static void lmdb_consumer_destroy(struct sl_stream_consumer *base)
{
    struct lmdb_consumer *c = (struct lmdb_consumer *)base;
    if (!c)
        return;
    if (c->rtxn)
        mdb_txn_abort(c->rtxn);
    free(c->parts);
    free(c->recs);
    free(c->offs);
    free(c->buf);
    free(c);
}

/* Sets each partition's start: the group's committed offset, or the first retained record if
 * that is later (trimmed records are gone). */
static int consumer_load(struct lmdb_stream *s, struct lmdb_consumer *c, const char *topic)
{
    MDB_txn *txn = NULL;
    uint32_t parts;
    int rc = txn_begin(s, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    rc = topic_lookup(s, txn, topic, &c->topic_id, &parts);
    for (size_t i = 0; rc == 0 && i < c->nparts; i++) {
        struct consumer_part *cp = &c->parts[i];
        uint64_t next, first;
        if (cp->partition >= parts) {
            rc = SL_ENOTFOUND;
            break;
        }
        rc = part_next_get(s, txn, c->topic_id, cp->partition, &next);
        if (rc == 0)
            rc = part_first(s, txn, c->topic_id, cp->partition, next, &first);
        if (rc == 0)
            rc = committed_get(s, txn, c->topic_id, cp->partition, c->group, c->group_len,
                               &cp->committed, &cp->has_commit);
        if (rc == 0)
            cp->pos = cp->committed > first ? cp->committed : first;
    }
    mdb_txn_abort(txn);
    return rc;
}

static struct sl_stream_consumer *lmdb_consumer_create(struct sl_stream *base, const char *topic,
                                                       const char *group,
                                                       const uint32_t *partitions,
                                                       size_t npartitions)
{
    struct lmdb_stream *s = (struct lmdb_stream *)base;
    struct lmdb_consumer *c;
    int rc;
    if (!name_valid(topic) || !name_valid(group) || !partitions || npartitions == 0 ||
        npartitions > SL_STREAM_MAX_PARTITIONS) {
        SL_WARN("stream: consumer of topic %.200s group %.200s: bad name or partition list "
                "(names [A-Za-z0-9._-] 1..%d chars, 1..%d partitions)",
                topic ? topic : "(null)", group ? group : "(null)", SL_STREAM_NAME_MAX,
                SL_STREAM_MAX_PARTITIONS);
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->parts = calloc(npartitions, sizeof *c->parts))) {
        free(c);
        return NULL;
    }
    c->base.stream = base;
    c->slot = notify_slot(topic);
    c->group_len = strlen(group);
    memcpy(c->group, group, c->group_len + 1);
    c->nparts = npartitions;
    for (size_t i = 0; i < npartitions; i++) {
        for (size_t j = 0; j < i; j++) {
            if (partitions[j] == partitions[i]) {
                SL_WARN("stream: consumer of %s: partition %u listed twice", topic, partitions[i]);
                lmdb_consumer_destroy(&c->base);
                return NULL;
            }
        }
        c->parts[i].partition = partitions[i];
    }
    rc = consumer_load(s, c, topic);
    if (rc != 0) {
        SL_WARN("stream: consumer of %s group %s: %s", topic, group, sl_strerror(rc));
        lmdb_consumer_destroy(&c->base);
        return NULL;
    }
    return &c->base;
}

/* Makes room for record number idx with len payload bytes. */
static int consumer_reserve(struct lmdb_consumer *c, size_t idx, size_t len)
{
    if (idx >= c->recs_cap) {
        size_t cap = c->recs_cap ? c->recs_cap * 2 : 64;
        struct sl_stream_record *recs = realloc(c->recs, cap * sizeof *recs);
        if (!recs)
            return SL_ENOMEM;
        c->recs = recs;
        size_t *offs = realloc(c->offs, cap * sizeof *offs);
        if (!offs)
            return SL_ENOMEM;
        c->offs = offs;
        c->recs_cap = cap;
    }
    if (len > c->buf_cap - c->buf_used) {
        size_t cap = c->buf_cap ? c->buf_cap : 4096;
        while (cap - c->buf_used < len) {
            if (cap > SIZE_MAX / 2)
                return SL_ENOMEM;
            cap *= 2;
        }
        unsigned char *buf = realloc(c->buf, cap);
        if (!buf)
            return SL_ENOMEM;
        c->buf = buf;
        c->buf_cap = cap;
    }
    return 0;
}

/* Copies up to quota records of one partition, from *pos on, into the consumer's buffers.
 * Sets *out_full when the poll's byte budget is used up. */
static int read_partition(struct lmdb_consumer *c, MDB_cursor *cur, uint32_t part, uint64_t *pos,
                          size_t quota, size_t *n, int *out_full)
{
    unsigned char kbuf[REC_KEY_LEN];
    MDB_val k = {sizeof kbuf, kbuf}, v;
    size_t taken = 0;
    rec_key(kbuf, c->topic_id, part, *pos);
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (taken < quota) {
        if (mrc == MDB_NOTFOUND ||
            (mrc == 0 && (k.mv_size != REC_KEY_LEN || memcmp(k.mv_data, kbuf, PART_KEY_LEN) != 0)))
            return 0;
        if (mrc != 0)
            return map_mdb(mrc, "poll");
        if (v.mv_size < TS_LEN)
            return SL_ECORRUPT;
        /* Bound the poll's memory: payloads plus the per-record arrays. */
        if (*n > 0 && c->buf_used + *n * (sizeof *c->recs + sizeof *c->offs) >= POLL_MAX_BYTES) {
            *out_full = 1;
            return 0;
        }
        size_t len = v.mv_size - TS_LEN;
        int rc = consumer_reserve(c, *n, len);
        if (rc != 0)
            return rc;
        struct sl_stream_record *r = &c->recs[*n];
        r->partition = part;
        r->offset = get_be64((unsigned char *)k.mv_data + PART_KEY_LEN);
        r->timestamp_ms = (int64_t)get_be64(v.mv_data);
        r->len = len;
        if (len)
            memcpy(c->buf + c->buf_used, (unsigned char *)v.mv_data + TS_LEN, len);
        c->offs[*n] = c->buf_used;
        c->buf_used += len;
        *pos = r->offset + 1;
        (*n)++;
        taken++;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    return 0;
}

/* Reads up to max records without waiting: first an equal share of every partition, then the
 * rest from whichever partitions have more. The next poll starts after the last partition that
 * gave records, so with many partitions and a small max every partition gets its turn. */
static int poll_once(struct lmdb_consumer *c, size_t max, size_t *out_n)
{
    struct lmdb_stream *s = (struct lmdb_stream *)c->base.stream;
    MDB_cursor *cur = NULL;
    size_t n = 0, share = max / c->nparts ? max / c->nparts : 1, next_rr = c->rr + 1;
    int full = 0, rc;
    rc = c->rtxn ? map_mdb(mdb_txn_renew(c->rtxn), "poll") : txn_begin(s, MDB_RDONLY, &c->rtxn);
    if (rc != 0)
        return rc;
    rc = map_mdb(mdb_cursor_open(c->rtxn, s->records, &cur), "cursor open");
    for (size_t i = 0; i < c->nparts; i++)
        c->parts[i].scan = c->parts[i].pos;
    c->buf_used = 0;
    for (int pass = 0; pass < 2 && rc == 0 && !full; pass++) {
        for (size_t i = 0; i < c->nparts && rc == 0 && !full && n < max; i++) {
            size_t at = (c->rr + i) % c->nparts, quota = max - n;
            if (pass == 0 && quota > share)
                quota = share;
            size_t before = n;
            rc = read_partition(c, cur, c->parts[at].partition, &c->parts[at].scan, quota, &n,
                                &full);
            if (n > before && pass == 0)
                next_rr = at + 1;
        }
    }
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_reset(c->rtxn);
    if (rc == 0) {
        /* The buffer may have moved while it grew; point the records into it only now. */
        for (size_t i = 0; i < n; i++)
            c->recs[i].data = c->buf + c->offs[i];
        for (size_t i = 0; i < c->nparts; i++)
            c->parts[i].pos = c->parts[i].scan;
        c->rr = next_rr % c->nparts;
        *out_n = n;
    }
    return rc;
}

static int lmdb_poll(struct sl_stream_consumer *base, size_t max_records, int timeout_ms,
                     const struct sl_stream_record **out_records, size_t *out_n)
{
    struct lmdb_consumer *c = (struct lmdb_consumer *)base;
    struct lmdb_stream *s = (struct lmdb_stream *)base->stream;
    int64_t deadline = sl_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int rc;
    if (!out_records || !out_n || max_records == 0)
        return SL_EINVAL;
    *out_records = NULL;
    *out_n = 0;
    for (;;) {
        /* Read the sequence before looking for data: an append after the look changes it, so
         * the wait below returns at once instead of missing that append. */
        uint32_t seen = notify_seq(s, c->slot);
        size_t n = 0;
        rc = poll_once(c, max_records, &n);
        if (rc != 0 || n > 0) {
            *out_records = c->recs;
            *out_n = n;
            break;
        }
        int64_t left = timeout_ms < 0 ? -1 : deadline - sl_mono_ms();
        if (timeout_ms == 0 || (timeout_ms > 0 && left <= 0))
            break;
        /* A signal ends the wait early so the caller can check its shutdown flag. */
        if (notify_wait(s, c->slot, seen, left) != 0)
            break;
    }
    return rc;
}

static int lmdb_commit(struct sl_stream_consumer *base)
{
    struct lmdb_consumer *c = (struct lmdb_consumer *)base;
    struct lmdb_stream *s = (struct lmdb_stream *)base->stream;
    unsigned char kbuf[PART_KEY_LEN + SL_STREAM_NAME_MAX], vbuf[8];
    MDB_txn *txn = NULL;
    size_t changed = 0;
    int rc;
    for (size_t i = 0; i < c->nparts; i++)
        changed += !c->parts[i].has_commit || c->parts[i].pos != c->parts[i].committed;
    if (changed == 0)
        return 0;
    rc = txn_begin(s, 0, &txn);
    if (rc != 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < c->nparts; i++) {
        struct consumer_part *cp = &c->parts[i];
        MDB_val k = {PART_KEY_LEN + c->group_len, kbuf}, v = {sizeof vbuf, vbuf};
        if (cp->has_commit && cp->pos == cp->committed)
            continue;
        offsets_key(kbuf, c->topic_id, cp->partition, c->group, c->group_len);
        put_be64(vbuf, cp->pos);
        rc = map_mdb(mdb_put(txn, s->offsets, &k, &v, 0), "commit");
    }
    if (rc == 0)
        rc = map_mdb(mdb_txn_commit(txn), "commit");
    else
        mdb_txn_abort(txn);
    for (size_t i = 0; rc == 0 && i < c->nparts; i++) {
        c->parts[i].committed = c->parts[i].pos;
        c->parts[i].has_commit = 1;
    }
    return rc;
}

/* Writes explicit positions; touches no consumer state that poll uses, so it may run on
 * another thread than the consumer's polls (the env is opened MDB_NOTLS). */
static int lmdb_commit_offsets(struct sl_stream_consumer *base, const uint32_t *partitions,
                               const uint64_t *next_offsets, size_t n)
{
    struct lmdb_consumer *c = (struct lmdb_consumer *)base;
    struct lmdb_stream *s = (struct lmdb_stream *)base->stream;
    unsigned char kbuf[PART_KEY_LEN + SL_STREAM_NAME_MAX], vbuf[8];
    MDB_txn *txn = NULL;
    if (n == 0)
        return 0;
    int rc = txn_begin(s, 0, &txn);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        MDB_val k = {PART_KEY_LEN + c->group_len, kbuf}, v = {sizeof vbuf, vbuf};
        offsets_key(kbuf, c->topic_id, partitions[i], c->group, c->group_len);
        put_be64(vbuf, next_offsets[i]);
        rc = map_mdb(mdb_put(txn, s->offsets, &k, &v, 0), "commit");
    }
    if (rc == 0)
        return map_mdb(mdb_txn_commit(txn), "commit");
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

static const struct sl_stream_ops lmdb_ops = {
    .name = "lmdb",
    .destroy = lmdb_destroy,
    .topic_ensure = lmdb_topic_ensure,
    .append = lmdb_append,
    .backlog = lmdb_backlog,
    .trim = lmdb_trim,
    .consumer_create = lmdb_consumer_create,
    .consumer_destroy = lmdb_consumer_destroy,
    .poll = lmdb_poll,
    .commit = lmdb_commit,
    .commit_offsets = lmdb_commit_offsets,
};
