/* A chunked bump allocator for per-batch memory. */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>

#define ALIGN 16

struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* data follows, aligned to ALIGN */
};

struct sl_arena {
    struct chunk *head;  /* chunks in use, the current one first */
    struct chunk *spare; /* empty chunks of chunk_size kept by reset */
    size_t chunk_size;
    size_t keep_bytes;
    size_t used;
};

#define HDR ((sizeof(struct chunk) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

struct sl_arena *sl_arena_create(size_t chunk_size, size_t keep_bytes)
{
    struct sl_arena *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->chunk_size = chunk_size < 4096 ? 4096 : chunk_size;
    a->keep_bytes = keep_bytes;
    return a;
}

static void free_chunks(struct chunk *c)
{
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
}

void sl_arena_destroy(struct sl_arena *a)
{
    if (!a)
        return;
    free_chunks(a->head);
    free_chunks(a->spare);
    free(a);
}

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = aligned_alloc(ALIGN, (HDR + size + ALIGN - 1) & ~(size_t)(ALIGN - 1));
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void *sl_arena_alloc(struct sl_arena *a, size_t n)
{
    if (n > SIZE_MAX - 2 * ALIGN - HDR)
        return NULL;
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    struct chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        if (a->spare && n <= a->chunk_size) {
            c = a->spare;
            a->spare = c->next;
        } else {
            c = chunk_new(n > a->chunk_size ? n : a->chunk_size);
            if (!c)
                return NULL;
        }
        c->next = a->head;
        a->head = c;
    }
    void *p = (unsigned char *)c + HDR + c->used;
    c->used += n;
    a->used += n;
    return p;
}

void sl_arena_reset(struct sl_arena *a)
{
    size_t kept = 0;
    for (struct chunk *c = a->spare; c; c = c->next)
        kept += c->size;
    while (a->head) {
        struct chunk *c = a->head;
        a->head = c->next;
        if (c->size == a->chunk_size && kept + c->size <= a->keep_bytes) {
            c->used = 0;
            c->next = a->spare;
            a->spare = c;
            kept += c->size;
        } else {
            free(c);
        }
    }
    a->used = 0;
}

size_t sl_arena_used(const struct sl_arena *a)
{
    return a->used;
}
