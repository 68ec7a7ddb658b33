/* Unit tests for the checked cJSON allocator the api installs: a bulk body made of tiny values
 * cannot make a parse tree beyond SL_EVENT_TREE_FACTOR times its size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "event/event.h"

/* {"events":[0,0,...]} with n zeros (malloc'd). */
static char *zeros_body(size_t n, size_t *out_len)
{
    char *b = malloc(16 + 2 * n);
    assert_non_null(b);
    size_t len = (size_t)sprintf(b, "{\"events\":[");
    for (size_t i = 0; i < n; i++) {
        b[len++] = '0';
        b[len++] = i + 1 < n ? ',' : ']';
    }
    b[len++] = '}';
    *out_len = len;
    return b;
}

static void dense_body_is_refused(void **state)
{
    (void)state;
    size_t len;
    char *body = zeros_body(1000000, &len), err[256];
    cJSON *root = NULL, *events = NULL;
    long off = 0;
    assert_int_equal(sl_event_bulk_parse(body, len, &root, &events, &off, err, sizeof(err)),
                     SL_EFULL);
    assert_null(root);
    assert_non_null(strstr(err, "times its size"));
    free(body);
}

static void ordinary_body_is_parsed(void **state)
{
    (void)state;
    char body[8192], err[256];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"events\":[");
    for (int i = 0; i < 20; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "%s{\"title\":\"t%d\",\"tags\":[\"a\",\"b\"],\"observables\":["
                                "{\"value\":\"1.2.3.4\",\"data_type\":\"auto\"}]}",
                                i ? "," : "", i);
    len += (size_t)snprintf(body + len, sizeof(body) - len, "]}");
    cJSON *root = NULL, *events = NULL;
    assert_int_equal(sl_event_bulk_parse(body, len, &root, &events, NULL, err, sizeof(err)), 0);
    assert_int_equal(cJSON_GetArraySize(events), 20);
    cJSON_Delete(root);
    /* The budget applies to the parse only: later allocations are not limited. */
    char *big = cJSON_malloc(64 * 1024 * 1024);
    assert_non_null(big);
    cJSON_free(big);
    assert_int_equal(sl_event_alloc_failures(), 0);
}

int main(void)
{
    sl_event_alloc_install_checked();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_body_is_refused),
        cmocka_unit_test(ordinary_body_is_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
