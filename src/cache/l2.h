/*
 * The shared tier (L2): signed answers in Redis, read and written by every revd
 * instance. Knows Redis keys and values, not OCSP: the caller checks what it reads.
 *
 * A key names (issuer, CertID variant, serial):  PREFIX o:TAG:VARIANT:SERIALHEX
 * A value is a 50-byte header then the DER answer:
 *     "r1" VERSION(16 hex) PRODUCED(16 hex) REFRESH(16 hex)
 * VERSION is the store record's version the answer was signed from; a write never
 * replaces a value of a higher version (checked inside Redis), so a slow signer
 * cannot put back an answer a revocation replaced. A tombstone is a header alone: "no
 * answer at or below this version", written when a record changes.
 *
 * Fences are this instance's memory of changes it heard of: a value older than the
 * change is not served even if a tombstone has not reached Redis yet.
 */
#ifndef REVD_CACHE_L2_H
#define REVD_CACHE_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache/redis.h"
#include "core/config.h"

#define L2_HDR_LEN 50
#define L2_KEY_MAX 200
/* Longest value read back (GETRANGE): revd's answers are a few kilobytes; anything
 * longer is not one of them, arrives cut, fails to parse and is re-signed. */
#define L2_VALUE_MAX_STR "65535"

struct l2_value {
	uint64_t version;
	int64_t produced_at;
	int64_t refresh_at;
	const uint8_t *der; /* NULL for a tombstone */
	size_t der_len;
};

/* Parses a value's header. false: not a value revd wrote. */
bool l2_value_decode(const uint8_t *v, size_t len, struct l2_value *out);
void l2_value_header(char hdr[L2_HDR_LEN + 1], uint64_t version, int64_t produced,
                     int64_t refresh);

struct l2_key {
	char s[L2_KEY_MAX];
	size_t len;
};

/* tag: a short stable name for the issuer's CA certificate (hex). */
void l2_make_key(const char *prefix, const char *tag, unsigned variant, const uint8_t *serial,
                 size_t serial_len, struct l2_key *out);

struct l2;

struct l2_stats {
	uint64_t gets, hits, misses, errors, rejected, puts, puts_refused, tombstones;
	uint64_t locks_won, locks_busy, fences, fence_overflows;
	size_t fences_held;
};

struct l2 *l2_new(const struct config *cfg);
/* Every loop must have called l2_loop_done. */
void l2_free(struct l2 *t);

/* The calling loop's connection, created on first use. Call on that loop's thread. */
struct rds *l2_conn(struct l2 *t, uv_loop_t *loop);
void l2_loop_done(struct l2 *t, uv_loop_t *loop);
/* Identifies this process in lock values and statistics. */
const char *l2_instance(const struct l2 *t);
const char *l2_prefix(const struct l2 *t);

enum l2_result { L2_OK, L2_MISSING, L2_ERROR };
typedef void (*l2_get_cb)(void *arg, enum l2_result res, const uint8_t *val, size_t len);
void l2_get(struct l2 *t, uv_loop_t *loop, const struct l2_key *k, l2_get_cb cb, void *arg);

/* What a write is for, so that its confirmation can release or mark a fence. */
struct l2_ref {
	unsigned issuer;
	unsigned variant; /* < L2_VARIANTS */
	const uint8_t *serial;
	size_t serial_len;
};
#define L2_VARIANTS 8

/*
 * Writes der as k's value (or a tombstone when der is NULL), expiring at expire_at
 * (Unix seconds), unless Redis holds a higher version (for a tombstone: a version as
 * high). Releases this instance's lock on k when unlock is set. When Redis confirms it,
 * the fence of ref (if not NULL) is released for that variant (an answer) or marked
 * written (a tombstone). Fire and forget.
 */
void l2_put(struct l2 *t, uv_loop_t *loop, const struct l2_key *k, uint64_t version,
            int64_t produced, int64_t refresh_at, int64_t expire_at, const uint8_t *der,
            size_t der_len, bool unlock, const struct l2_ref *ref);

/* The same conditional write as a command, for a synchronous client. */
struct l2_put_cmd {
	const char *argv[10];
	size_t lens[10];
	char ver[17], exp[24];
	struct l2_key lock;
	uint8_t *val;
};
bool l2_put_cmd_init(struct l2 *t, struct l2_put_cmd *c, const struct l2_key *k, uint64_t version,
                     int64_t produced, int64_t refresh_at, int64_t expire_at, const uint8_t *der,
                     size_t der_len, bool unlock);
void l2_put_cmd_free(struct l2_put_cmd *c);
/* Counts a synchronous write's reply as l2_put counts its own. */
void l2_count_put_result(struct l2 *t, const redisReply *reply);

/* A short lock on k across instances, so one signs what all need. */
enum l2_lock_result { L2_LOCKED, L2_BUSY, L2_LOCK_ERROR };
typedef void (*l2_lock_cb)(void *arg, enum l2_lock_result res);
void l2_lock(struct l2 *t, uv_loop_t *loop, const struct l2_key *k, l2_lock_cb cb, void *arg);

/* Releases this instance's lock on k (signing failed). Fire and forget. */
void l2_unlock(struct l2 *t, uv_loop_t *loop, const struct l2_key *k);

/* Remembers that (issuer, serial) changed to version (0: unknown, newest). Values
 * older than that are refused by l2_fenced until one at least as new is seen. Values
 * produced before `now` are refused for issuer's serials if the table overflows. */
void l2_fence(struct l2 *t, unsigned issuer, const uint8_t *serial, size_t len,
              uint64_t version, int64_t now);
/* Everything may have changed: refuses every value produced until now. */
void l2_fence_all(struct l2 *t, int64_t now);
/* true: a value of this variant, version and production time must not be served. */
bool l2_fenced(struct l2 *t, unsigned issuer, unsigned variant, const uint8_t *serial,
               size_t len, uint64_t version, int64_t produced_at, int64_t now);
/* A value of version was seen in or written to Redis for this variant: the fence no
 * longer holds for it. */
void l2_fence_release(struct l2 *t, unsigned issuer, unsigned variant, const uint8_t *serial,
                      size_t len, uint64_t version);

/* A change whose tombstones Redis has not confirmed for every variant (Redis was down
 * or lost them): `missing` has a bit per variant still to write. */
struct l2_unwritten {
	unsigned issuer;
	struct store_serial_copy {
		uint8_t len;
		uint8_t bytes[32];
	} serial;
	uint64_t version;
	unsigned missing;
};
/* Up to max of them, for the caller to write again. Returns the count. */
size_t l2_fences_unwritten(struct l2 *t, struct l2_unwritten *out, size_t max, int64_t now);

void l2_count_reject(struct l2 *t);
void l2_get_stats(struct l2 *t, struct l2_stats *out);

#endif
