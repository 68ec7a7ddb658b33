/* The store tests' fixture: a store in a fresh temporary directory with organizations "acme"
 * (the first, so the default one), "globex" and, if asked, "initech". Include after cmocka.h. */
#ifndef SL_TESTS_STORE_FIXTURE_H
#define SL_TESTS_STORE_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "store/store.h"

struct fx {
    char dir[64];
    struct sl_store *st;
    struct sl_org org;  /* "acme", the default organization */
    struct sl_org org2; /* "globex" */
    struct sl_org org3; /* "initech", when asked for */
};

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void make_tmpdir(char dir[64])
{
    snprintf(dir, 64, "/tmp/sluice-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static inline void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline struct sl_store *open_store(const char *dir)
{
    char err[512] = "";
    struct sl_store *st = sl_store_open(dir, err, sizeof(err));
    if (!st)
        fail_msg("sl_store_open(%s): %s", dir, err);
    return st;
}

/* A cmocka setup: the store and norgs (2 or 3) organizations. */
static inline int fx_setup(void **state, int norgs)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    make_tmpdir(f->dir);
    f->st = open_store(f->dir);
    assert_int_equal(sl_store_org_create(f->st, "acme", &f->org), 0);
    assert_int_equal(sl_store_org_create(f->st, "globex", &f->org2), 0);
    if (norgs > 2)
        assert_int_equal(sl_store_org_create(f->st, "initech", &f->org3), 0);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    sl_store_close(f->st);
    remove_tree(f->dir);
    free(f);
    return 0;
}

/* Direct SQLite access to the store's file, for checks the interface does not expose. */
static inline sqlite3 *raw_open(const char *dir)
{
    char path[4096];
    sqlite3 *db = NULL;
    assert_true((size_t)snprintf(path, sizeof(path), "%s/sluice.db", dir) < sizeof(path));
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* The integer the query's first row starts with. */
static inline int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static inline void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

#endif
