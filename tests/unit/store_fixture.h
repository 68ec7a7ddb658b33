/* The store tests' fixture: a store in a fresh temporary directory with organizations "acme"
 * (the first, so the default one), "globex" and, if asked, "initech". Include after cmocka.h. */
#ifndef SL_TESTS_STORE_FIXTURE_H
#define SL_TESTS_STORE_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

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

#endif
