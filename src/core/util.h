/* Small helpers: clocks, hashing, identifiers, checked string copies. */
#ifndef SL_CORE_UTIL_H
#define SL_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define SL_UUID_LEN 36 /* characters, without the terminating NUL */

/* Wall-clock milliseconds since the epoch. */
int64_t sl_now_ms(void);
/* Monotonic milliseconds, for intervals and deadlines. */
int64_t sl_mono_ms(void);

/* Formats ms since the epoch as ISO 8601 UTC with milliseconds ("2026-11-24T22:27:16.123Z")
 * into out (at least 25 bytes). */
void sl_time_format(int64_t ms, char out[25]);
/* Parses an ISO 8601 date-time ("YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[.frac][Z|+HH:MM]", a space
 * in place of the T is accepted). Returns 0 and ms since the epoch, or SL_EINVAL. */
int sl_time_parse(const char *s, size_t len, int64_t *out_ms);

/* A random (version 4) UUID in canonical lowercase form; out holds 37 bytes. */
void sl_uuid4(char out[SL_UUID_LEN + 1]);
/* A name-based UUID: the first 16 bytes of SHA-256 over the parts, each followed by a 0 byte,
 * with the version nibble set to 8 (RFC 9562 custom). Deterministic. Returns 0, or SL_ENOMEM
 * when OpenSSL could not compute the digest (out is then an empty string, never a guess). */
int sl_uuid_from_parts(const char *const *parts, const size_t *lens, size_t n,
                       char out[SL_UUID_LEN + 1]);
/* Checks that s is a canonical UUID (36 chars, hex and dashes, any case). */
int sl_uuid_valid(const char *s);

/* Lowercase hex MD5 of data; out holds 33 bytes. */
void sl_md5_hex(const void *data, size_t len, char out[33]);
/* Lowercase hex SHA-256 of data; out holds 65 bytes. */
void sl_sha256_hex(const void *data, size_t len, char out[65]);
/* Fills buf with cryptographically strong random bytes. Returns 0 or SL_EIO. */
int sl_random_bytes(void *buf, size_t len);

/* 64-bit FNV-1a, for partitioning and hash tables (not for security). */
uint64_t sl_hash64(const void *data, size_t len, uint64_t seed);

/* Parses a whole string as a base-10 integer within [min, max]. Returns 0 or SL_EINVAL. */
int sl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Parses true/false/1/0/yes/no/on/off (any case). Returns 0 or SL_EINVAL. */
int sl_parse_bool(const char *s, int *out);

/* The length of the valid UTF-8 sequence at s (n > 0 bytes available), or 0 if it is not one
 * (overlong forms, surrogates and code points above U+10FFFF are not). */
size_t sl_utf8_seq(const unsigned char *s, size_t n);
/* Decodes the UTF-8 sequence at s (n > 0 bytes available): its length, and the code point in
 * *cp; 0 when it is not a valid sequence (as sl_utf8_seq). */
size_t sl_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Whether s[0..len) is valid UTF-8 without NUL bytes. */
int sl_utf8_valid(const char *s, size_t len);

#endif
