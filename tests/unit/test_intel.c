/* Unit tests for src/rules/intel*.c: values (exact, case-folded, UTF-8, deduplicated), generic
 * and typed lists, csv columns, CIDR networks, patterns through PCRE2 and Hyperscan, input
 * validation, matching from several threads, and a list of a million values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "rules/intel.h"
#include "rules/intel_internal.h"

#define S(x) x, strlen(x)

static struct sl_intel_builder *new_builder(enum sl_intel_type type, const char *data_type,
                                            int case_sensitive)
{
    struct sl_intel_def def = {.uuid = "00000000-0000-4000-8000-000000000001",
                               .name = "Test List",
                               .type = type,
                               .data_type = data_type,
                               .case_sensitive = case_sensitive};
    struct sl_intel_builder *b = sl_intel_builder_new(&def);
    assert_non_null(b);
    return b;
}

static struct sl_intel_list *finish(struct sl_intel_builder *b)
{
    struct sl_intel_list *l = NULL;
    char err[256] = "";
    int rc = sl_intel_builder_finish(b, &l, err, sizeof(err));
    if (rc)
        fail_msg("finish: %s", err);
    assert_non_null(l);
    return l;
}

/* A list of the given values, each of which must be accepted. */
static struct sl_intel_list *make_list(enum sl_intel_type type, const char *data_type,
                                       int case_sensitive, const char *const *values, size_t n)
{
    struct sl_intel_builder *b = new_builder(type, data_type, case_sensitive);
    char err[256];
    for (size_t i = 0; i < n; i++) {
        err[0] = '\0';
        int rc = sl_intel_builder_add(b, values[i], strlen(values[i]), err, sizeof(err));
        if (rc)
            fail_msg("add '%s': %d %s", values[i], rc, err);
    }
    return finish(b);
}

static int match(const struct sl_intel_list *l, const char *type, const char *v)
{
    return sl_intel_match(l, type, v, strlen(v));
}

static int cidr(const struct sl_intel_list *l, const char *ip)
{
    return sl_intel_match_cidr(l, ip, strlen(ip));
}

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- values ---------------------------------------------------------------------------------- */

static void test_values_exact(void **state)
{
    (void)state;
    const char *v[] = {"Evil.com", "bad.example.org", "x"};
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "domain", 1, v, N_ELEMS(v));
    assert_int_equal(sl_intel_list_size(l), 3);
    assert_string_equal(sl_intel_list_def(l)->name, "Test List");
    assert_string_equal(sl_intel_list_def(l)->data_type, "domain");
    assert_true(match(l, "domain", "Evil.com"));
    assert_true(match(l, "domain", "x"));
    assert_false(match(l, "domain", "evil.com")); /* case-sensitive list */
    assert_false(match(l, "domain", "Evil.co"));
    assert_false(match(l, "domain", "Evil.comm"));
    assert_false(match(l, "domain", ""));
    /* A list of type T matches observables of type T only; NULL (RQL intel()) matches any. */
    assert_false(match(l, "fqdn", "Evil.com"));
    assert_false(match(l, "generic", "Evil.com"));
    assert_true(match(l, NULL, "bad.example.org"));
    /* Length is taken from len, not from a NUL. */
    assert_true(sl_intel_match(l, "domain", "Evil.com.trailing", 8));
    sl_intel_list_free(l);
}

static void test_values_case_folded(void **state)
{
    (void)state;
    const char *v[] = {"Evil.COM", "\xc3\x89\x43OLE.fr" /* ÉCOLE.fr */,
                       "\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2" /* ПРИВЕТ */,
                       "\xce\x91\xce\x92\xce\x93" /* ΑΒΓ */, "bad\xff\xfeVALUE"};
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "domain", 0, v, N_ELEMS(v));
    assert_true(match(l, "domain", "evil.com"));
    assert_true(match(l, "domain", "EVIL.COM"));
    assert_true(match(l, "domain", "eViL.cOm"));
    assert_true(match(l, "domain", "\xc3\xa9\x63ole.FR")); /* école */
    assert_true(
        match(l, "domain", "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82")); /* привет */
    assert_true(match(l, "domain", "\xce\xb1\xce\xb2\xce\xb3"));                 /* αβγ */
    assert_true(match(l, "domain", "\xce\xb1\xce\x92\xce\xb3"));                 /* αΒγ */
    /* Bytes that are not UTF-8 are compared as they are; the ASCII around them folds. */
    assert_true(match(l, "domain", "BAD\xff\xfevalue"));
    assert_false(match(l, "domain", "bad\xff\xfdvalue"));
    assert_false(match(l, "domain", "ecole.fr"));
    sl_intel_list_free(l);

    /* Folding that changes the length in bytes: U+023A (2 bytes) lowercases to U+2C65 (3). */
    const char *grow[] = {"\xc8\xba-x"};
    l = make_list(SL_INTEL_VALUES, "generic", 0, grow, 1);
    assert_true(match(l, "user", "\xe2\xb1\xa5-X"));
    assert_true(match(l, "user", "\xc8\xba-X"));
    sl_intel_list_free(l);
}

static void test_values_dedup(void **state)
{
    (void)state;
    const char *v[] = {"a", "a", "A", "b", "", "a"};
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "user", 0, v, N_ELEMS(v));
    assert_int_equal(sl_intel_list_size(l), 2); /* "a" (and "A" folded), "b"; "" ignored */
    sl_intel_list_free(l);
    l = make_list(SL_INTEL_VALUES, "user", 1, v, N_ELEMS(v));
    assert_int_equal(sl_intel_list_size(l), 3);
    assert_true(match(l, "user", "A"));
    assert_false(match(l, "user", ""));
    sl_intel_list_free(l);

    /* Equal addresses written differently are one value. */
    const char *ips[] = {"2001:DB8::1", "2001:db8:0::1",  "2001:0db8:0000:0000:0000:0000:0000:0001",
                         "1.2.3.4",     "::ffff:1.2.3.4", "1.2.3.4/32",
                         "10.0.0.0/8",  "10.1.2.3/8"};
    l = make_list(SL_INTEL_VALUES, "ip", 1, ips, N_ELEMS(ips));
    assert_int_equal(sl_intel_list_size(l), 3);
    assert_true(match(l, "ip", "2001:db8::1"));
    assert_true(match(l, "ip", "2001:db8::0:1"));
    assert_true(match(l, "ip", "::FFFF:1.2.3.4"));
    assert_true(match(l, "ip", "::ffff:102:304"));
    assert_true(match(l, "ip", "10.0.0.0/8")); /* the network itself, exactly */
    assert_false(match(l, "ip", "10.0.0.0/9"));
    sl_intel_list_free(l);
}

static void test_values_generic(void **state)
{
    (void)state;
    const char *v[] = {"alice", "10.1.2.3", "d41d8cd98f00b204e9800998ecf8427e"};
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "generic", 1, v, N_ELEMS(v));
    assert_true(match(l, "user", "alice"));
    assert_true(match(l, "ip", "10.1.2.3"));
    assert_true(match(l, "md5hash", "d41d8cd98f00b204e9800998ecf8427e"));
    assert_true(match(l, NULL, "alice"));
    assert_false(match(l, "user", "bob"));
    /* InCIDR on a list without address semantics compares the text. */
    assert_true(cidr(l, "10.1.2.3"));
    assert_false(cidr(l, "10.1.2.4"));
    assert_false(cidr(l, "alice"));
    sl_intel_list_free(l);

    /* A values list without a data type is generic. */
    struct sl_intel_def def = {.name = "n", .type = SL_INTEL_VALUES};
    struct sl_intel_builder *b = sl_intel_builder_new(&def);
    assert_non_null(b);
    assert_int_equal(sl_intel_builder_add(b, S("x"), NULL, 0), 0);
    l = finish(b);
    assert_string_equal(sl_intel_list_def(l)->data_type, "generic");
    assert_true(match(l, "host", "x"));
    sl_intel_list_free(l);
}

static void test_empty_list(void **state)
{
    (void)state;
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "ip", 1, NULL, 0);
    assert_int_equal(sl_intel_list_size(l), 0);
    assert_false(match(l, "ip", "1.2.3.4"));
    assert_false(cidr(l, "1.2.3.4"));
    sl_intel_list_free(l);
    l = make_list(SL_INTEL_PATTERNS, "domain", 1, NULL, 0);
    assert_false(match(l, "domain", "x"));
    sl_intel_list_free(l);
    sl_intel_builder_free(new_builder(SL_INTEL_PATTERNS, "domain", 1));
    sl_intel_builder_free(NULL);
    sl_intel_list_free(NULL);
}

/* ---- csv ------------------------------------------------------------------------------------- */

static void test_csv_columns(void **state)
{
    (void)state;
    const char *cols[] = {"none", "sha256hash", "md5hash", "ip", NULL, "generic"};
    struct sl_intel_def def = {.name = "Malware Bazaar",
                               .type = SL_INTEL_CSV,
                               .case_sensitive = 0,
                               .csv_columns = cols,
                               .ncsv_columns = N_ELEMS(cols)};
    struct sl_intel_builder *b = sl_intel_builder_new(&def);
    assert_non_null(b);
    const char *sha = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    const char *md5 = "d41d8cd98f00b204e9800998ecf8427e";
    const char *r1[] = {"2024-01-01", sha, md5, "10.0.0.0/8", "skipped", "anything"};
    const char *r2[] = {"2024-01-02", "", "900150983cd24fb0d6963f7d28e17f72", "2001:DB8::1"};
    char err[256];
    assert_int_equal(sl_intel_builder_add_row(b, r1, NULL, N_ELEMS(r1), err, sizeof(err)), 0);
    assert_int_equal(sl_intel_builder_add_row(b, r1, NULL, N_ELEMS(r1), err, sizeof(err)), 0);
    assert_int_equal(sl_intel_builder_add_row(b, r2, NULL, N_ELEMS(r2), err, sizeof(err)), 0);
    const char *empty[] = {"", ""};
    assert_int_equal(sl_intel_builder_add_row(b, empty, NULL, 2, err, sizeof(err)), 0);
    /* Extra cells are ignored. */
    const char *r3[] = {"d", "", "", "", "", "", "extra-cell"};
    assert_int_equal(sl_intel_builder_add_row(b, r3, NULL, N_ELEMS(r3), err, sizeof(err)), 0);
    struct sl_intel_list *l = finish(b);
    assert_int_equal(sl_intel_list_size(l), 3); /* r1 once, r2, r3 */

    /* An observable of type T matches a cell of a column of type T (case folded here). */
    assert_true(match(l, "sha256hash", sha));
    assert_true(
        match(l, "sha256hash", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(match(l, "md5hash", sha));
    assert_true(match(l, "md5hash", md5));
    assert_true(match(l, "md5hash", "900150983CD24FB0D6963F7D28E17F72"));
    assert_true(match(l, NULL, md5));
    assert_true(match(l, NULL, sha));
    /* Columns mapped to none (or NULL) are never matched. */
    assert_false(match(l, NULL, "2024-01-01"));
    assert_false(match(l, "none", "2024-01-01"));
    assert_false(match(l, NULL, "skipped"));
    assert_false(match(l, NULL, "extra-cell"));
    /* A generic column matches every type. */
    assert_true(match(l, "user", "ANYTHING"));
    /* ip columns: addresses normalized, networks matched. */
    assert_true(match(l, "ip", "10.200.0.1"));
    assert_true(match(l, NULL, "10.200.0.1"));
    assert_false(match(l, "ip", "11.0.0.1"));
    assert_true(match(l, "ip", "2001:db8:0:0::1"));
    assert_false(match(l, "md5hash", "10.200.0.1"));
    assert_true(cidr(l, "10.9.9.9"));
    assert_true(cidr(l, "2001:db8::1"));
    assert_false(cidr(l, "2001:db8::2"));
    sl_intel_list_free(l);

    /* Invalid definitions. */
    def.ncsv_columns = 0;
    assert_null(sl_intel_builder_new(&def));
    const char *many[SL_INTEL_MAX_COLUMNS + 1];
    for (size_t i = 0; i < N_ELEMS(many); i++)
        many[i] = "md5hash";
    def.csv_columns = many;
    def.ncsv_columns = N_ELEMS(many);
    assert_null(sl_intel_builder_new(&def));
    def.ncsv_columns = SL_INTEL_MAX_COLUMNS;
    b = sl_intel_builder_new(&def);
    assert_non_null(b);
    /* A value added to a csv list is a row of one cell. */
    assert_int_equal(sl_intel_builder_add(b, S("abc"), err, sizeof(err)), 0);
    l = finish(b);
    assert_true(match(l, "md5hash", "abc"));
    sl_intel_list_free(l);
    assert_null(sl_intel_builder_new(NULL));
}

static void test_csv_refused_row(void **state)
{
    (void)state;
    const char *cols[] = {"user", "domain"};
    struct sl_intel_def def = {
        .type = SL_INTEL_CSV, .case_sensitive = 1, .csv_columns = cols, .ncsv_columns = 2};
    struct sl_intel_builder *b = sl_intel_builder_new(&def);
    assert_non_null(b);
    char *big = malloc(SL_INTEL_VALUE_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', SL_INTEL_VALUE_MAX + 1);
    big[SL_INTEL_VALUE_MAX + 1] = '\0';
    const char *row[] = {"alice", big};
    char err[256] = "";
    assert_int_equal(sl_intel_builder_add_row(b, row, NULL, 2, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "column 2"));
    struct sl_intel_list *l = finish(b);
    assert_int_equal(sl_intel_list_size(l), 0);
    assert_false(match(l, "user", "alice")); /* nothing of the refused row was kept */
    sl_intel_list_free(l);
    free(big);
}

/* ---- networks -------------------------------------------------------------------------------- */

static void test_cidr_v4(void **state)
{
    (void)state;
    const char *v[] = {"10.0.0.0/8",    "192.168.1.1/32", "172.16.0.0/12",
                       "172.16.5.0/24", "198.51.100.7",   "203.0.113.128/25"};
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "ip", 1, v, N_ELEMS(v));
    assert_int_equal(sl_intel_list_size(l), 6);
    assert_true(cidr(l, "10.0.0.0"));
    assert_true(cidr(l, "10.255.255.255"));
    assert_false(cidr(l, "9.255.255.255"));
    assert_false(cidr(l, "11.0.0.0"));
    assert_true(cidr(l, "192.168.1.1"));
    assert_false(cidr(l, "192.168.1.0"));
    assert_false(cidr(l, "192.168.1.2"));
    assert_true(cidr(l, "172.31.255.255"));
    assert_false(cidr(l, "172.32.0.0"));
    assert_true(cidr(l, "172.16.5.9"));
    assert_true(cidr(l, "198.51.100.7")); /* a plain address counts as /32 */
    assert_false(cidr(l, "198.51.100.8"));
    assert_true(cidr(l, "203.0.113.128"));
    assert_true(cidr(l, "203.0.113.255"));
    assert_false(cidr(l, "203.0.113.127"));
    /* Mapped addresses are the same addresses. */
    assert_true(cidr(l, "::ffff:10.1.2.3"));
    assert_true(cidr(l, "::ffff:a01:203"));
    assert_false(cidr(l, "::10.1.2.3")); /* IPv4-compatible is another address */
    assert_false(cidr(l, "not an ip"));
    assert_false(cidr(l, "10.1.2.3/32"));
    assert_false(cidr(l, ""));
    /* The ingest check matches addresses within the networks too. */
    assert_true(match(l, "ip", "10.1.2.3"));
    assert_true(match(l, NULL, "10.1.2.3"));
    assert_false(match(l, "domain", "10.1.2.3"));
    assert_false(match(l, "ip", "8.8.8.8"));
    sl_intel_list_free(l);

    const char *all[] = {"0.0.0.0/0"};
    l = make_list(SL_INTEL_VALUES, "ip", 1, all, 1);
    assert_true(cidr(l, "0.0.0.0"));
    assert_true(cidr(l, "255.255.255.255"));
    assert_true(cidr(l, "::ffff:1.1.1.1"));
    assert_false(cidr(l, "2001:db8::1"));
    assert_false(cidr(l, "::"));
    sl_intel_list_free(l);

    const char *mapped[] = {"::ffff:0:0/96"};
    l = make_list(SL_INTEL_VALUES, "ip", 1, mapped, 1);
    assert_true(cidr(l, "1.2.3.4"));
    assert_false(cidr(l, "::1"));
    sl_intel_list_free(l);
}

static void test_cidr_v6(void **state)
{
    (void)state;
    const char *v[] = {"2001:db8::/32", "fe80::/10", "2001:DB8:1::/48", "::1/128",
                       "2a00:1450:4001:82a::200e"};
    struct sl_intel_list *l = make_list(SL_INTEL_VALUES, "ip", 1, v, N_ELEMS(v));
    assert_true(cidr(l, "2001:db8::"));
    assert_true(cidr(l, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(cidr(l, "2001:db9::"));
    assert_false(cidr(l, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_true(cidr(l, "fe80::1"));
    assert_true(cidr(l, "febf:ffff::1"));
    assert_false(cidr(l, "fec0::"));
    assert_true(cidr(l, "::1"));
    assert_false(cidr(l, "::2"));
    assert_false(cidr(l, "::"));
    assert_true(cidr(l, "2A00:1450:4001:082A:0:0:0:200E"));
    assert_false(cidr(l, "10.0.0.1"));
    sl_intel_list_free(l);

    const char *all[] = {"::/0"};
    l = make_list(SL_INTEL_VALUES, "ip", 1, all, 1);
    assert_true(cidr(l, "::"));
    assert_true(cidr(l, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_true(cidr(l, "10.0.0.1"));
    sl_intel_list_free(l);
}

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int in_prefix(const uint8_t a[16], const uint8_t p[16], int bits)
{
    for (int i = 0; i < bits; i++)
        if (((a[i / 8] >> (7 - i % 8)) & 1) != ((p[i / 8] >> (7 - i % 8)) & 1))
            return 0;
    return 1;
}

/* The trie against a linear scan, over random networks that nest and overlap. */
static void test_cidr_random(void **state)
{
    (void)state;
    enum { NETS = 600, PROBES = 20000 };
    static uint8_t nets[NETS][16];
    static int bits[NETS];
    struct sl_intel_builder *b = new_builder(SL_INTEL_VALUES, "ip", 1);
    char text[80], err[256];
    for (int i = 0; i < NETS; i++) {
        /* Three distinct leading bytes so that networks share prefixes; one in ten short. */
        for (int j = 0; j < 16; j++)
            nets[i][j] = (uint8_t)(j == 0 ? rng() % 3 : rng());
        bits[i] = i % 10 == 0 ? 9 + (int)(rng() % 15) : 24 + (int)(rng() % 105);
        sl_ip_mask(nets[i], bits[i]);
        char a[64];
        snprintf(a, sizeof(a), "%x:%x:%x:%x:%x:%x:%x:%x", nets[i][0] << 8 | nets[i][1],
                 nets[i][2] << 8 | nets[i][3], nets[i][4] << 8 | nets[i][5],
                 nets[i][6] << 8 | nets[i][7], nets[i][8] << 8 | nets[i][9],
                 nets[i][10] << 8 | nets[i][11], nets[i][12] << 8 | nets[i][13],
                 nets[i][14] << 8 | nets[i][15]);
        snprintf(text, sizeof(text), "%s/%d", a, bits[i]);
        if (sl_intel_builder_add(b, text, strlen(text), err, sizeof(err)) != 0)
            fail_msg("add %s: %s", text, err);
    }
    struct sl_intel_list *l = finish(b);
    int hits = 0;
    for (int k = 0; k < PROBES; k++) {
        uint8_t a[16];
        /* Half the probes start inside some network. */
        const uint8_t *base = nets[rng() % NETS];
        for (int j = 0; j < 16; j++)
            a[j] = (uint8_t)(k % 2 ? base[j] ^ (j > 3 ? rng() : 0) : rng() % (j == 0 ? 3 : 256));
        int want = 0;
        for (int i = 0; i < NETS && !want; i++)
            want = in_prefix(a, nets[i], bits[i]);
        char t[64];
        snprintf(t, sizeof(t), "%x:%x:%x:%x:%x:%x:%x:%x", a[0] << 8 | a[1], a[2] << 8 | a[3],
                 a[4] << 8 | a[5], a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
                 a[12] << 8 | a[13], a[14] << 8 | a[15]);
        if (cidr(l, t) != want)
            fail_msg("%s: want %d", t, want);
        hits += want;
    }
    assert_true(hits > PROBES / 10);
    assert_true(hits < PROBES);
    sl_intel_list_free(l);
}

static void test_ip_parse(void **state)
{
    (void)state;
    uint8_t a[16];
    int bits = -1;
    assert_int_equal(sl_ip_parse(S("1.2.3.4"), 0, a, &bits), 0);
    assert_int_equal(bits, 128);
    const uint8_t want4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    assert_memory_equal(a, want4, 16);
    assert_int_equal(sl_ip_parse(S("1.2.3.0/24"), 1, a, &bits), 0);
    assert_int_equal(bits, 120);
    assert_int_equal(sl_ip_parse(S("2001:db8::/32"), 1, a, &bits), 0);
    assert_int_equal(bits, 32);
    assert_int_equal(a[0], 0x20);
    assert_int_equal(sl_ip_parse(S("::/0"), 1, a, &bits), 0);
    assert_int_equal(bits, 0);
    assert_int_equal(sl_ip_parse(S("1.2.3.0/24"), 0, a, &bits), SL_EINVAL);
    const char *bad[] = {"01.2.3.4",   "1.2.3",       "1.2.3.4.5", "256.1.1.1",    "1.2.3.4 ",
                         " 1.2.3.4",   "10.0.0.0/",   "::/129",    "1.2.3.4/33",   "1.2.3.4/-1",
                         "1.2.3.4/08", "1.2.3.4/1a",  "1.2.3/8",   "2001:db8:::1", "abc",
                         "",           "fe80::1%eth0"};
    for (size_t i = 0; i < N_ELEMS(bad); i++)
        if (sl_ip_parse(bad[i], strlen(bad[i]), 1, a, &bits) != SL_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
    assert_int_equal(sl_ip_parse("1.2.3.4\0x", 9, 0, a, &bits), SL_EINVAL);
}

/* ---- validation ------------------------------------------------------------------------------ */

static void test_invalid_values(void **state)
{
    (void)state;
    struct sl_intel_builder *b = new_builder(SL_INTEL_VALUES, "ip", 1);
    char err[256];
    assert_int_equal(sl_intel_builder_add(b, S("10.0.0.0/8"), err, sizeof(err)), 0);
    assert_int_equal(sl_intel_builder_add(b, S("not-an-ip"), err, sizeof(err)), 0);
    const char *bad[] = {"10.0.0.0/33", "1.2.3/8",      "10.0.0.0/", "::/129",
                         "01.0.0.0/8",  "10.0.0.0/8/8", "host/path"};
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        err[0] = '\0';
        assert_int_equal(sl_intel_builder_add(b, bad[i], strlen(bad[i]), err, sizeof(err)),
                         SL_EINVAL);
        assert_non_null(strstr(err, "not a valid network"));
    }
    char *big = malloc(SL_INTEL_VALUE_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', SL_INTEL_VALUE_MAX + 1);
    assert_int_equal(sl_intel_builder_add(b, big, SL_INTEL_VALUE_MAX + 1, err, sizeof(err)),
                     SL_EINVAL);
    assert_non_null(strstr(err, "at most 8192"));
    assert_int_equal(sl_intel_builder_add(b, big, SL_INTEL_VALUE_MAX, err, sizeof(err)), 0);
    assert_int_equal(sl_intel_builder_add(b, "", 0, err, sizeof(err)), 0);
    assert_int_equal(sl_intel_builder_add(b, NULL, 0, err, sizeof(err)), 0);
    struct sl_intel_list *l = finish(b);
    assert_int_equal(sl_intel_list_size(l), 3); /* refused values left nothing behind */
    assert_true(sl_intel_match(l, "ip", big, SL_INTEL_VALUE_MAX));
    assert_false(sl_intel_match(l, "ip", big, SL_INTEL_VALUE_MAX + 1));
    assert_false(match(l, "ip", "10.0.0.0/33"));
    assert_true(match(l, "ip", "NOT-AN-IP") == 0 && match(l, "ip", "not-an-ip"));
    sl_intel_list_free(l);

    /* A value whose lowercase form no longer fits is refused, not truncated. */
    size_t n = SL_INTEL_VALUE_MAX / 2;
    for (size_t i = 0; i < n; i++)
        memcpy(big + 2 * i, "\xc8\xba", 2);
    b = new_builder(SL_INTEL_VALUES, "user", 0);
    assert_int_equal(sl_intel_builder_add(b, big, 2 * n, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "lowercased"));
    l = finish(b);
    assert_int_equal(sl_intel_list_size(l), 0);
    sl_intel_list_free(l);
    free(big);
}

/* ---- patterns -------------------------------------------------------------------------------- */

static void engines(const struct sl_intel_list *l, size_t *hs, size_t *pcre)
{
    sl_intel_list_engines(l, hs, pcre);
}

static void test_patterns_pcre(void **state)
{
    (void)state;
    const char *p[] = {"ab", "foo[0-9]+\\.com", "(x)\\1y", "q|r", "(?<=z)w"};
    struct sl_intel_list *l = make_list(SL_INTEL_PATTERNS, "domain", 1, p, N_ELEMS(p));
    size_t hs, pcre;
    engines(l, &hs, &pcre);
    assert_int_equal(hs, 0);
    assert_int_equal(pcre, 5);
    assert_int_equal(sl_intel_list_size(l), 5);
    /* re.match: anchored at the start, not at the end. */
    assert_true(match(l, "domain", "abc"));
    assert_true(match(l, "domain", "ab"));
    assert_false(match(l, "domain", "xabc"));
    assert_false(match(l, "domain", "a"));
    assert_true(match(l, "domain", "foo12.com/path"));
    assert_false(match(l, "domain", "foo.com"));
    assert_true(match(l, "domain", "xxy"));
    assert_false(match(l, "domain", "xzy"));
    assert_true(match(l, "domain", "r")); /* the alternation is anchored as a whole */
    assert_false(match(l, "domain", "zr"));
    assert_false(match(l, "domain", "zw"));
    assert_false(match(l, "domain", "AB")); /* case-sensitive */
    assert_false(match(l, "user", "abc"));
    assert_true(match(l, NULL, "abc"));
    sl_intel_list_free(l);

    const char *ci[] = {"AB", "\xc3\x89\x43OLE" /* ÉCOLE */};
    l = make_list(SL_INTEL_PATTERNS, "generic", 0, ci, N_ELEMS(ci));
    assert_true(match(l, "user", "abc"));
    assert_true(match(l, "url", "\xc3\xa9\x63ole-x")); /* école */
    assert_true(match(l, "url", "ab\xff"));            /* not UTF-8: still matched */
    assert_false(match(l, "url", "\xff\x61\x62"));
    assert_false(match(l, "url", "a\xff\x61\x62"));
    sl_intel_list_free(l);
}

/* Nine patterns, one of which (a backreference) Hyperscan refuses. */
static const char *const hs_patterns[] = {
    "ab",   "foo[0-9]+\\.com",  "q|r",          "evil-[a-f0-9]{8}", "(x)\\1y", "\xc3\x89t\xc3\xa9",
    "a.c$", "[[:digit:]]{3}-x", "mal(ware)?\\b"};

static void test_patterns_hyperscan(void **state)
{
    (void)state;
    struct sl_intel_list *l =
        make_list(SL_INTEL_PATTERNS, "url", 1, hs_patterns, N_ELEMS(hs_patterns));
    size_t hs, pcre;
    engines(l, &hs, &pcre);
    assert_int_equal(hs + pcre, N_ELEMS(hs_patterns));
    assert_int_equal(pcre, 1); /* the backreference */
    assert_true(hs >= SL_INTEL_HS_MIN_PATTERNS);
    const char *yes[] = {"abc",      "ab",
                         "foo7.com", "r",
                         "qq",       "evil-deadbeef00",
                         "xxy",      "\xc3\x89t\xc3\xa9",
                         "abc",      "a\xc3\xa9\x63",
                         "123-x",    "malware!",
                         "mal",      "ab\xff\xfe" /* not UTF-8 */};
    const char *no[] = {"xabc",
                        "a",
                        "foo.com",
                        "zr",
                        "evil-deadbee",
                        "xzy",
                        "\xc3\xa9t\xc3\xa9",
                        "a-cd",
                        "12-x",
                        "malwar",
                        "malwares",
                        "",
                        "\xff"
                        "ab",
                        "a\xff"
                        "ab",
                        "\xff"
                        "123-x"};
    for (size_t i = 0; i < N_ELEMS(yes); i++)
        if (!match(l, "url", yes[i]))
            fail_msg("'%s' should match", yes[i]);
    for (size_t i = 0; i < N_ELEMS(no); i++)
        if (match(l, "url", no[i]))
            fail_msg("'%s' should not match", no[i]);
    assert_false(match(l, "domain", "abc"));
    sl_intel_list_free(l);

    /* Case-insensitive, through Hyperscan, ASCII and UTF-8. */
    l = make_list(SL_INTEL_PATTERNS, "url", 0, hs_patterns, N_ELEMS(hs_patterns));
    engines(l, &hs, &pcre);
    assert_true(hs >= SL_INTEL_HS_MIN_PATTERNS);
    assert_true(match(l, "url", "ABC"));
    assert_true(match(l, "url", "EVIL-DEADBEEF"));
    assert_true(match(l, "url", "\xc3\xa9T\xc3\x89")); /* éTÉ */
    assert_true(match(l, "url", "XXY"));               /* PCRE2 path, caseless too */
    assert_false(match(l, "url", "XABC"));
    sl_intel_list_free(l);

    /* Large bounded repeats, which Hyperscan takes minutes to compile, go to PCRE2. */
    const char *heavy[] = {"(?:a.{0,500}b){4}",
                           "x.{0,10000}y",
                           "(?:(?:c{0,9}g){9}h){9}",
                           "[a-f0-9]{64}z",
                           "b{2,}z",
                           "(?:f{1,100}){5}",
                           "b3",
                           "b4",
                           "\\d{600}"};
    l = make_list(SL_INTEL_PATTERNS, "url", 1, heavy, N_ELEMS(heavy));
    engines(l, &hs, &pcre);
    assert_int_equal(pcre, 4);
    assert_int_equal(hs, 5);
    assert_true(match(l, "url", "abababab"));
    assert_false(match(l, "url", "abababa"));
    assert_true(match(l, "url", "x123y"));
    char nine[128] = "";
    for (int i = 0; i < 9; i++)
        strcat(nine, "gggggggggh");
    assert_true(match(l, "url", nine));
    nine[85] = '\0';
    assert_false(match(l, "url", nine));
    assert_true(match(l, "url", "bbbz"));
    assert_true(match(l, "url", "fffff"));
    char digits[700];
    memset(digits, '7', sizeof(digits) - 1);
    digits[sizeof(digits) - 1] = '\0';
    assert_true(match(l, "url", digits));
    digits[599] = '\0';
    assert_false(match(l, "url", digits));
    sl_intel_list_free(l);

    /* An empty match at the start is a match, as re.match("z*", "abc") is. */
    const char *empty[] = {"z*", "a1", "a2", "a3", "a4", "a5", "a6", "a7"};
    l = make_list(SL_INTEL_PATTERNS, "url", 1, empty, N_ELEMS(empty));
    engines(l, &hs, &pcre);
    assert_int_equal(hs, 8);
    assert_true(match(l, "url", "abc"));
    sl_intel_list_free(l);
}

static void test_patterns_invalid(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(sl_intel_pattern_check(S("ab(c"), 1, err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "offset 4"));
    assert_non_null(strstr(err, "missing closing parenthesis"));
    assert_int_equal(sl_intel_pattern_check(S("[a-"), 0, err, sizeof(err)), SL_EINVAL);
    assert_int_equal(sl_intel_pattern_check(S("a(?<n>b)"), 0, err, sizeof(err)), 0);
    assert_int_equal(sl_intel_pattern_check(S("\xff(x)"), 0, err, sizeof(err)), 0);
    assert_int_equal(sl_intel_pattern_check(NULL, 0, 0, err, sizeof(err)), SL_EINVAL);

    struct sl_intel_builder *b = new_builder(SL_INTEL_PATTERNS, "domain", 1);
    assert_int_equal(sl_intel_builder_add(b, S("ok"), err, sizeof(err)), 0);
    assert_int_equal(sl_intel_builder_add(b, S("ok"), err, sizeof(err)), 0);
    err[0] = '\0';
    assert_int_equal(sl_intel_builder_add(b, S("bad)"), err, sizeof(err)), SL_EINVAL);
    assert_non_null(strstr(err, "offset 3"));
    assert_int_equal(sl_intel_builder_add(b, S("*x"), err, sizeof(err)), SL_EINVAL);
    assert_int_equal(sl_intel_builder_add(b, S(""), err, sizeof(err)), 0);
    char *big = malloc(SL_INTEL_VALUE_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', SL_INTEL_VALUE_MAX + 1);
    assert_int_equal(sl_intel_builder_add(b, big, SL_INTEL_VALUE_MAX + 1, err, sizeof(err)),
                     SL_EINVAL);
    free(big);
    struct sl_intel_list *l = finish(b);
    assert_int_equal(sl_intel_list_size(l), 1);
    assert_true(match(l, "domain", "okay"));
    assert_false(match(l, "domain", "bad)"));
    sl_intel_list_free(l);
}

/* ---- threads --------------------------------------------------------------------------------- */

struct thread_arg {
    const struct sl_intel_list *pat, *vals, *ips;
    int errors;
};

static void *matcher(void *p)
{
    struct thread_arg *a = p;
    char v[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(v, sizeof(v), "evil-%08x%s", (unsigned)i * 2654435761u, i % 2 ? "" : "x");
        a->errors += !match(a->pat, "url", v);
        a->errors += match(a->pat, "url", v + 1);
        a->errors += !match(a->pat, "url", "xxy");
        snprintf(v, sizeof(v), "value-%d", i % 500);
        a->errors += !match(a->vals, "user", v);
        snprintf(v, sizeof(v), "VALUE-%d", 500 + i);
        a->errors += match(a->vals, "user", v);
        snprintf(v, sizeof(v), "10.%d.%d.1", i % 256, i / 256);
        a->errors += !cidr(a->ips, v);
        snprintf(v, sizeof(v), "11.%d.%d.1", i % 256, i / 256);
        a->errors += cidr(a->ips, v);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct sl_intel_list *pat =
        make_list(SL_INTEL_PATTERNS, "url", 1, hs_patterns, N_ELEMS(hs_patterns));
    struct sl_intel_builder *b = new_builder(SL_INTEL_VALUES, "user", 0);
    char v[32];
    for (int i = 0; i < 500; i++) {
        snprintf(v, sizeof(v), "Value-%d", i);
        assert_int_equal(sl_intel_builder_add(b, v, strlen(v), NULL, 0), 0);
    }
    struct sl_intel_list *vals = finish(b);
    const char *nets[] = {"10.0.0.0/8", "2001:db8::/32"};
    struct sl_intel_list *ips = make_list(SL_INTEL_VALUES, "ip", 1, nets, 2);
    enum { T = 4 };
    pthread_t th[T];
    struct thread_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (struct thread_arg){.pat = pat, .vals = vals, .ips = ips};
        assert_int_equal(pthread_create(&th[i], NULL, matcher, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].errors, 0);
    }
    sl_intel_list_free(pat);
    sl_intel_list_free(vals);
    sl_intel_list_free(ips);
}

/* ---- size ------------------------------------------------------------------------------------ */

static void test_million_values(void **state)
{
    (void)state;
    enum { N = 1000000 };
    struct sl_intel_builder *b = new_builder(SL_INTEL_VALUES, "generic", 0);
    char v[48];
    for (int i = 0; i < N; i++) {
        int n = snprintf(v, sizeof(v), "%s-%07d.example", i % 3 ? "Host" : "user", i);
        assert_int_equal(sl_intel_builder_add(b, v, (size_t)n, NULL, 0), 0);
    }
    for (int i = 0; i < 1000; i++) { /* duplicates, differently cased */
        int n = snprintf(v, sizeof(v), "%s-%07d.EXAMPLE", i % 3 ? "HOST" : "USER", i * 997);
        assert_int_equal(sl_intel_builder_add(b, v, (size_t)n, NULL, 0), 0);
    }
    struct sl_intel_list *l = finish(b);
    assert_int_equal(sl_intel_list_size(l), N);
    for (int i = 0; i < N; i += 7919) {
        int n = snprintf(v, sizeof(v), "%s-%07d.example", i % 3 ? "host" : "USER", i);
        assert_true(sl_intel_match(l, "domain", v, (size_t)n));
        n = snprintf(v, sizeof(v), "%s-%07d.example", i % 3 ? "user" : "host", i);
        assert_false(sl_intel_match(l, "domain", v, (size_t)n));
        n = snprintf(v, sizeof(v), "host-%07d.example", N + i);
        assert_false(sl_intel_match(l, "domain", v, (size_t)n));
    }
    sl_intel_list_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_exact),     cmocka_unit_test(test_values_case_folded),
        cmocka_unit_test(test_values_dedup),     cmocka_unit_test(test_values_generic),
        cmocka_unit_test(test_empty_list),       cmocka_unit_test(test_csv_columns),
        cmocka_unit_test(test_csv_refused_row),  cmocka_unit_test(test_cidr_v4),
        cmocka_unit_test(test_cidr_v6),          cmocka_unit_test(test_cidr_random),
        cmocka_unit_test(test_ip_parse),         cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_patterns_pcre),    cmocka_unit_test(test_patterns_hyperscan),
        cmocka_unit_test(test_patterns_invalid), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_million_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
