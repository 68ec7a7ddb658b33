/* A chunked bump allocator: many small allocations released together in one reset, for
 * per-batch memory (nginx pools, h2o mem pools). */
#ifndef SL_CORE_ARENA_H
#define SL_CORE_ARENA_H

#include <stddef.h>

struct sl_arena;

/* Creates an arena that takes memory from malloc in chunks of chunk_size bytes (larger
 * allocations get a chunk of their own) and keeps at most keep_bytes of chunks across resets.
 * Returns NULL on allocation failure. The caller owns the arena. */
struct sl_arena *sl_arena_create(size_t chunk_size, size_t keep_bytes);
void sl_arena_destroy(struct sl_arena *a);

/* n bytes aligned to 16, valid until the next reset or destroy; NULL when out of memory.
 * Not thread-safe: one thread allocates from an arena at a time. */
void *sl_arena_alloc(struct sl_arena *a, size_t n);

/* Releases every allocation at once; keeps up to keep_bytes of chunks for reuse. */
void sl_arena_reset(struct sl_arena *a);

/* Bytes currently handed out (for metrics and tests). */
size_t sl_arena_used(const struct sl_arena *a);

#endif
