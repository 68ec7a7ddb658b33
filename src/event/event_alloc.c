/* Where cJSON gets its memory: malloc by default, or a per-batch arena the calling thread
 * names. A worker parses, edits and renders hundreds of small JSON nodes per event; taking
 * them from an arena and dropping the whole batch in one reset removes most of the malloc and
 * free work (the largest single cost of the worker in a profile). */
#include "core/arena.h"
#include "event/event.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* Every block carries a 16-byte header saying where it came from, so cJSON_free can tell an
 * arena block (nothing to do) from a heap block (free it), whatever the thread. */
#define TAG_BYTES 16
#define TAG_HEAP  UINT64_C(0x68656170626c6f6b) /* "heapblok" */
#define TAG_ARENA UINT64_C(0x6172656e61626c6b) /* "arenablk" */

static _Thread_local struct sl_arena *current;
static _Thread_local unsigned failures;        /* allocations that failed on this thread */
static _Thread_local size_t budget = SIZE_MAX; /* bytes this thread may still allocate */
static _Thread_local int over_budget;

static void *tagged_malloc(size_t n)
{
    unsigned char *p;
    uint64_t tag;
    if (n > SIZE_MAX - TAG_BYTES)
        return NULL;
    if (current) {
        p = sl_arena_alloc(current, n + TAG_BYTES);
        tag = TAG_ARENA;
    } else {
        p = malloc(n + TAG_BYTES);
        tag = TAG_HEAP;
    }
    if (!p) {
        failures++;
        return NULL;
    }
    *(uint64_t *)(void *)p = tag;
    return p + TAG_BYTES;
}

static void tagged_free(void *q)
{
    if (!q)
        return;
    unsigned char *p = (unsigned char *)q - TAG_BYTES;
    if (*(uint64_t *)(void *)p == TAG_HEAP)
        free(p);
}

/* Plain malloc that counts failures and honours the thread's budget, for processes that free
 * cJSON memory with free(). */
static void *checked_malloc(size_t n)
{
    if (budget != SIZE_MAX) {
        if (n > budget) {
            over_budget = 1;
            return NULL;
        }
        budget -= n;
    }
    void *p = malloc(n);
    if (!p)
        failures++;
    return p;
}

static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void install(void)
{
    cJSON_Hooks hooks = {.malloc_fn = tagged_malloc, .free_fn = tagged_free};
    cJSON_InitHooks(&hooks);
}

static void install_checked(void)
{
    cJSON_Hooks hooks = {.malloc_fn = checked_malloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
}

void sl_event_alloc_install(void)
{
    pthread_once(&installed, install);
}

void sl_event_alloc_install_checked(void)
{
    pthread_once(&installed, install_checked);
}

unsigned sl_event_alloc_failures(void)
{
    return failures;
}

void sl_event_alloc_arena(struct sl_arena *arena)
{
    current = arena;
}

void sl_event_alloc_budget(size_t bytes)
{
    budget = bytes;
    over_budget = 0;
}

int sl_event_alloc_over_budget(void)
{
    return over_budget;
}
