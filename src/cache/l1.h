/*
 * The in-process cache of signed answers (L1): key → immutable, reference-counted
 * entry. Shared by every loop thread; sharded locks. A miss makes the first caller
 * the filler of that key and queues the others behind it (single flight); an entry
 * past its refresh time is still served while one caller re-signs it; an entry past
 * its nextUpdate is never returned. Knows nothing of OCSP, HTTP or libuv.
 */
#ifndef REVD_CACHE_L1_H
#define REVD_CACHE_L1_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_MAX_SERIAL 32

struct cache_key {
	uint16_t issuer;
	uint8_t variant; /* the CertID's hash algorithm and parameter encoding */
	uint8_t serial_len;
	uint8_t serial[CACHE_MAX_SERIAL];
};

/* An answer ready to write: DER body and the HTTP header lines that never change. */
struct cache_entry {
	_Atomic unsigned refs;
	int64_t produced_at;
	int64_t this_update;
	int64_t next_update; /* never served at or after this time */
	int64_t refresh_at;  /* re-signed in the background once this has passed */
	const uint8_t *der;
	size_t der_len;
	const char *hdr; /* header lines, each ending in CRLF */
	size_t hdr_len;
};

/* One allocation holding copies of der and hdr; returns it with one reference. der
 * NULL: der_len bytes left for the caller to write at e->der before sharing e. */
struct cache_entry *cache_entry_new(const uint8_t *der, size_t der_len, const char *hdr,
                                    size_t hdr_len);
static inline struct cache_entry *cache_entry_ref(struct cache_entry *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}
void cache_entry_unref(struct cache_entry *e);

/* A caller waiting for another's fill. done runs exactly once, on the thread that
 * completes the fill, with a new reference (the caller unrefs it) or NULL. */
struct cache_waiter {
	struct cache_waiter *next;
	void (*done)(struct cache_waiter *w, struct cache_entry *e);
};

struct cache_fill; /* a fill the caller has taken on and must complete */

enum cache_result {
	CACHE_HIT,         /* *hit: a fresh entry (new reference) */
	CACHE_HIT_REFRESH, /* *hit as above, and *fill: re-sign it now, off the loop */
	CACHE_MISS_FILL,   /* *fill: produce the entry and complete the fill */
	CACHE_MISS_WAIT,   /* another caller is filling: w was queued behind it (if not NULL) */
	CACHE_MISS_FULL,   /* no room: every node is being filled; answer without caching */
};

struct cache_stats {
	uint64_t hits, misses, waits, refreshes, evictions, invalidations;
	size_t entries;
};

struct cache;

/* max_entries bounds the number of keys held; the least recently used go first. */
struct cache *cache_new(size_t max_entries);
/* All fills must have completed. */
void cache_free(struct cache *c);

enum cache_result cache_get(struct cache *c, const struct cache_key *k, int64_t now,
                            struct cache_entry **hit, struct cache_fill **fill,
                            struct cache_waiter *w);

/*
 * Completes a fill with e (borrowed; NULL when producing it failed). The entry is kept
 * unless the key was invalidated since the fill began, in which case only the callers
 * already waiting get it. Waiters' done callbacks run before this returns.
 */
void cache_complete(struct cache *c, struct cache_fill *f, struct cache_entry *e);

/* Forgets k: the next lookup misses. A fill in progress for k is not stored. */
void cache_invalidate(struct cache *c, const struct cache_key *k);
/* Forgets everything (a signer or issuer changed). */
void cache_clear(struct cache *c);

void cache_get_stats(struct cache *c, struct cache_stats *out);

#endif
