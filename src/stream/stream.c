/* Dispatch of the sl_stream_* calls to the backend chosen at open time. */
#include "stream/stream.h"

void sl_stream_destroy(struct sl_stream *s)
{
    if (s)
        s->ops->destroy(s);
}

int sl_stream_topic_ensure(struct sl_stream *s, const char *topic, uint32_t partitions,
                           uint32_t *out_partitions)
{
    return s->ops->topic_ensure(s, topic, partitions, out_partitions);
}

int sl_stream_append(struct sl_stream *s, const char *topic, uint32_t partition,
                     const struct sl_stream_msg *msgs, size_t n, uint64_t *out_first_offset)
{
    return s->ops->append(s, topic, partition, msgs, n, out_first_offset);
}

int sl_stream_backlog(struct sl_stream *s, const char *topic, const char *group,
                      uint64_t *out_records)
{
    return s->ops->backlog(s, topic, group, out_records);
}

int sl_stream_trim(struct sl_stream *s, const char *topic, uint64_t *out_trimmed)
{
    return s->ops->trim(s, topic, out_trimmed);
}

struct sl_stream_consumer *sl_stream_consumer_create(struct sl_stream *s, const char *topic,
                                                     const char *group, const uint32_t *partitions,
                                                     size_t npartitions)
{
    return s->ops->consumer_create(s, topic, group, partitions, npartitions);
}

void sl_stream_consumer_destroy(struct sl_stream_consumer *c)
{
    if (c)
        c->stream->ops->consumer_destroy(c);
}

int sl_stream_poll(struct sl_stream_consumer *c, size_t max_records, int timeout_ms,
                   const struct sl_stream_record **out_records, size_t *out_n)
{
    return c->stream->ops->poll(c, max_records, timeout_ms, out_records, out_n);
}

int sl_stream_commit(struct sl_stream_consumer *c)
{
    return c->stream->ops->commit(c);
}

int sl_stream_commit_offsets(struct sl_stream_consumer *c, const uint32_t *partitions,
                             const uint64_t *next_offsets, size_t n)
{
    return c->stream->ops->commit_offsets(c, partitions, next_offsets, n);
}
