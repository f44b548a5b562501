/* cache/l1: hits, misses, single flight, refresh, expiry, invalidation, eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache/l1.h"

#define NOW ((int64_t)1700000000)

static struct cache_key key(uint16_t issuer, uint32_t serial)
{
	struct cache_key k;
	memset(&k, 0, sizeof(k));
	k.issuer = issuer;
	k.variant = 1;
	k.serial_len = 4;
	k.serial[0] = (uint8_t)(serial >> 24);
	k.serial[1] = (uint8_t)(serial >> 16);
	k.serial[2] = (uint8_t)(serial >> 8);
	k.serial[3] = (uint8_t)serial;
	return k;
}

static struct cache_entry *entry(const char *body, int64_t refresh_at, int64_t next_update)
{
	static const char hdr[] = "Cache-Control: max-age=3600\r\n";
	struct cache_entry *e = cache_entry_new((const uint8_t *)body, strlen(body), hdr,
	                                        sizeof(hdr) - 1);
	assert_non_null(e);
	e->produced_at = NOW;
	e->this_update = NOW;
	e->refresh_at = refresh_at;
	e->next_update = next_update;
	return e;
}

static unsigned refs(struct cache_entry *e)
{
	return atomic_load(&e->refs);
}

struct waiter {
	struct cache_waiter w; /* first: done gets this pointer */
	int calls;
	struct cache_entry *got;
};

static void on_done(struct cache_waiter *cw, struct cache_entry *e)
{
	struct waiter *w = (struct waiter *)cw;
	w->calls++;
	w->got = e;
}

static struct waiter waiter(void)
{
	struct waiter w;
	memset(&w, 0, sizeof(w));
	w.w.done = on_done;
	return w;
}

static void test_entry_new_copies(void **state)
{
	(void)state;
	char body[] = "DER";
	char hdr[] = "H: v\r\n";
	struct cache_entry *e = cache_entry_new((const uint8_t *)body, 3, hdr, 6);
	assert_non_null(e);
	body[0] = 'x';
	hdr[0] = 'x';
	assert_memory_equal(e->der, "DER", 3);
	assert_int_equal(e->der_len, 3);
	assert_memory_equal(e->hdr, "H: v\r\n", 6);
	assert_int_equal(e->hdr_len, 6);
	assert_int_equal(refs(e), 1);
	assert_ptr_equal(cache_entry_ref(e), e);
	assert_int_equal(refs(e), 2);
	cache_entry_unref(e);
	cache_entry_unref(e);
	cache_entry_unref(NULL);
}

static void test_single_flight(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	assert_non_null(c);
	struct cache_key k = key(1, 42);
	struct cache_entry *hit = NULL;
	struct cache_fill *fill = NULL, *fill2 = NULL;
	struct waiter w1 = waiter(), w2 = waiter();

	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, &w1.w), CACHE_MISS_FILL);
	assert_non_null(fill);
	assert_null(hit);
	assert_int_equal(w1.calls, 0); /* the filler's waiter is not queued */
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill2, &w1.w), CACHE_MISS_WAIT);
	assert_null(fill2);
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill2, &w2.w), CACHE_MISS_WAIT);
	assert_null(fill2);
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill2, NULL), CACHE_MISS_WAIT);
	assert_int_equal(w1.calls, 0);
	assert_int_equal(w2.calls, 0);

	struct cache_entry *e = entry("answer", NOW + 100, NOW + 200);
	cache_complete(c, fill, e);
	/* Each waiter once, with a reference of its own; the cache holds one more. */
	assert_int_equal(w1.calls, 1);
	assert_int_equal(w2.calls, 1);
	assert_ptr_equal(w1.got, e);
	assert_ptr_equal(w2.got, e);
	assert_int_equal(refs(e), 1 + 1 + 2);
	cache_entry_unref(w1.got);
	cache_entry_unref(w2.got);
	cache_entry_unref(e); /* the filler's own */
	assert_int_equal(refs(e), 1);

	fill = NULL;
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, NULL), CACHE_HIT);
	assert_ptr_equal(hit, e);
	assert_null(fill);
	assert_int_equal(refs(e), 2);
	assert_memory_equal(hit->der, "answer", 6);
	cache_entry_unref(hit);
	/* Completing again calls nobody twice. */
	assert_int_equal(w1.calls, 1);

	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 4);
	assert_int_equal(st.waits, 2);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.refreshes, 0);
	cache_free(c);
}

static void test_refresh_once(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	struct cache_key k = key(2, 7);
	struct cache_entry *hit = NULL, *e1 = entry("v1", NOW + 10, NOW + 100);
	struct cache_fill *fill = NULL, *refill = NULL;
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, NULL), CACHE_MISS_FILL);
	cache_complete(c, fill, e1);
	cache_entry_unref(e1);

	fill = NULL;
	assert_int_equal(cache_get(c, &k, NOW + 9, &hit, &fill, NULL), CACHE_HIT);
	assert_null(fill);
	cache_entry_unref(hit);
	/* At refresh_at: served, and this one caller re-signs. */
	assert_int_equal(cache_get(c, &k, NOW + 10, &hit, &refill, NULL), CACHE_HIT_REFRESH);
	assert_ptr_equal(hit, e1);
	assert_non_null(refill);
	cache_entry_unref(hit);
	/* Everyone else keeps getting the old answer meanwhile. */
	for (int i = 0; i < 3; i++) {
		fill = NULL;
		assert_int_equal(cache_get(c, &k, NOW + 11 + i, &hit, &fill, NULL), CACHE_HIT);
		assert_null(fill);
		assert_ptr_equal(hit, e1);
		cache_entry_unref(hit);
	}
	struct cache_entry *e2 = entry("v2", NOW + 60, NOW + 160);
	cache_complete(c, refill, e2);
	cache_entry_unref(e2);
	assert_int_equal(cache_get(c, &k, NOW + 20, &hit, &fill, NULL), CACHE_HIT);
	assert_ptr_equal(hit, e2);
	cache_entry_unref(hit);

	/* A failed refresh keeps the answer, and the next caller past refresh_at tries again. */
	refill = NULL;
	assert_int_equal(cache_get(c, &k, NOW + 60, &hit, &refill, NULL), CACHE_HIT_REFRESH);
	cache_entry_unref(hit);
	cache_complete(c, refill, NULL);
	refill = NULL;
	assert_int_equal(cache_get(c, &k, NOW + 61, &hit, &refill, NULL), CACHE_HIT_REFRESH);
	assert_ptr_equal(hit, e2);
	assert_non_null(refill);
	cache_entry_unref(hit);
	cache_complete(c, refill, NULL);

	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.refreshes, 3);
	cache_free(c);
}

static void test_expired_never_served(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	struct cache_key k = key(3, 1);
	struct cache_entry *hit = NULL, *e = entry("old", NOW + 50, NOW + 100);
	struct cache_fill *fill = NULL;
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, NULL), CACHE_MISS_FILL);
	cache_complete(c, fill, e);
	/* The last second before nextUpdate: served (a refresh is due). */
	fill = NULL;
	assert_int_equal(cache_get(c, &k, NOW + 99, &hit, &fill, NULL), CACHE_HIT_REFRESH);
	assert_ptr_equal(hit, e);
	cache_entry_unref(hit);
	struct cache_fill *refresh = fill;
	/* At nextUpdate: never, even while a refresh is under way; callers wait for it. */
	struct waiter w = waiter();
	hit = NULL;
	fill = NULL;
	assert_int_equal(cache_get(c, &k, NOW + 100, &hit, &fill, &w.w), CACHE_MISS_WAIT);
	assert_null(hit);
	assert_null(fill);
	struct cache_entry *fresh = entry("new", NOW + 150, NOW + 200);
	cache_complete(c, refresh, fresh);
	assert_int_equal(w.calls, 1);
	assert_ptr_equal(w.got, fresh);
	cache_entry_unref(w.got);
	cache_entry_unref(fresh);
	/* And long after, with nobody refreshing: a miss, and the caller fills. */
	hit = NULL;
	assert_int_equal(cache_get(c, &k, NOW + 1000, &hit, &fill, NULL), CACHE_MISS_FILL);
	assert_null(hit);
	cache_complete(c, fill, NULL);
	assert_int_equal(cache_get(c, &k, NOW + 1000, &hit, &fill, NULL), CACHE_MISS_FILL);
	cache_complete(c, fill, NULL);
	/* The old entry's last reference was the cache's: gone (LeakSanitizer checks). */
	cache_entry_unref(e);
	cache_free(c);
}

static void test_failed_fill(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	struct cache_key k = key(4, 9);
	struct cache_entry *hit = NULL;
	struct cache_fill *fill = NULL;
	struct waiter w = waiter();
	w.got = (struct cache_entry *)&w; /* must be overwritten with NULL */
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, NULL), CACHE_MISS_FILL);
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, &w.w), CACHE_MISS_WAIT);
	cache_complete(c, fill, NULL);
	assert_int_equal(w.calls, 1);
	assert_null(w.got);
	/* The key is forgotten: the next caller tries again. */
	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	fill = NULL;
	assert_int_equal(cache_get(c, &k, NOW, &hit, &fill, NULL), CACHE_MISS_FILL);
	assert_non_null(fill);
	cache_complete(c, fill, NULL);
	cache_free(c);
}

static void test_invalidate_during_fill(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	struct cache_key k = key(5, 5);
	struct cache_entry *hit = NULL;
	struct cache_fill *f1 = NULL, *f2 = NULL, *f = NULL;
	struct waiter w1 = waiter(), w2 = waiter(), w3 = waiter();

	assert_int_equal(cache_get(c, &k, NOW, &hit, &f1, NULL), CACHE_MISS_FILL);
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f, &w1.w), CACHE_MISS_WAIT);
	cache_invalidate(c, &k);
	/* The next caller does not wait for the stale fill: it starts its own. */
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f2, &w2.w), CACHE_MISS_FILL);
	assert_true(f2 != f1);
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f, &w3.w), CACHE_MISS_WAIT);

	struct cache_entry *stale = entry("stale", NOW + 100, NOW + 200);
	cache_complete(c, f1, stale);
	/* Whoever already waited on the first fill gets its answer... */
	assert_int_equal(w1.calls, 1);
	assert_ptr_equal(w1.got, stale);
	assert_int_equal(w2.calls, 0);
	assert_int_equal(w3.calls, 0);
	/* ...but it is not kept: only the filler's and w1's references remain. */
	assert_int_equal(refs(stale), 2);
	cache_entry_unref(w1.got);
	cache_entry_unref(stale);
	struct waiter w4 = waiter();
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f, &w4.w), CACHE_MISS_WAIT);

	struct cache_entry *fresh = entry("fresh", NOW + 100, NOW + 200);
	cache_complete(c, f2, fresh);
	assert_int_equal(w3.calls, 1);
	assert_int_equal(w4.calls, 1);
	assert_ptr_equal(w3.got, fresh);
	assert_int_equal(w2.calls, 0); /* it was the filler, not a waiter */
	cache_entry_unref(w3.got);
	cache_entry_unref(w4.got);
	cache_entry_unref(fresh);
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f, NULL), CACHE_HIT);
	assert_ptr_equal(hit, fresh);
	cache_entry_unref(hit);

	/* Invalidating a stored entry, or a key never seen. */
	cache_invalidate(c, &k);
	struct cache_key other = key(5, 6);
	cache_invalidate(c, &other);
	f = NULL;
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
	cache_complete(c, f, NULL);
	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.invalidations, 2);
	cache_free(c);
}

static void test_clear(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	struct cache_entry *hit = NULL;
	struct cache_fill *f = NULL;
	for (uint32_t i = 0; i < 100; i++) {
		struct cache_key k = key(6, i);
		assert_int_equal(cache_get(c, &k, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
		struct cache_entry *e = entry("x", NOW + 100, NOW + 200);
		cache_complete(c, f, e);
		cache_entry_unref(e);
	}
	/* One fill under way across the clear. */
	struct cache_key busy = key(6, 1000);
	struct cache_fill *bf = NULL;
	struct waiter w = waiter();
	assert_int_equal(cache_get(c, &busy, NOW, &hit, &bf, NULL), CACHE_MISS_FILL);
	assert_int_equal(cache_get(c, &busy, NOW, &hit, &f, &w.w), CACHE_MISS_WAIT);
	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.entries, 101);
	cache_clear(c);
	cache_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.invalidations, 101);
	for (uint32_t i = 0; i < 100; i += 9) {
		struct cache_key k = key(6, i);
		f = NULL;
		assert_int_equal(cache_get(c, &k, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
		cache_complete(c, f, NULL);
	}
	struct cache_entry *e = entry("busy", NOW + 100, NOW + 200);
	cache_complete(c, bf, e);
	assert_int_equal(w.calls, 1);
	assert_ptr_equal(w.got, e);
	cache_entry_unref(w.got);
	cache_entry_unref(e);
	f = NULL;
	assert_int_equal(cache_get(c, &busy, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
	cache_complete(c, f, NULL);
	cache_free(c);
}

static void test_keys_are_distinct(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 16);
	struct cache_key ks[5];
	ks[0] = key(7, 1);
	ks[1] = key(8, 1);  /* another issuer */
	ks[2] = key(7, 1);
	ks[2].variant = 2;  /* another hash algorithm */
	ks[3] = key(7, 1);
	ks[3].serial_len = 3; /* a prefix of the serial */
	ks[4] = key(7, 1);
	ks[4].serial_len = 5; /* the serial with a 00 more */
	struct cache_entry *es[5];
	for (int i = 0; i < 5; i++) {
		struct cache_entry *hit = NULL;
		struct cache_fill *f = NULL;
		assert_int_equal(cache_get(c, &ks[i], NOW, &hit, &f, NULL), CACHE_MISS_FILL);
		es[i] = entry("e", NOW + 100, NOW + 200);
		cache_complete(c, f, es[i]);
	}
	for (int i = 0; i < 5; i++) {
		struct cache_entry *hit = NULL;
		struct cache_fill *f = NULL;
		assert_int_equal(cache_get(c, &ks[i], NOW, &hit, &f, NULL), CACHE_HIT);
		assert_ptr_equal(hit, es[i]);
		cache_entry_unref(hit);
		cache_entry_unref(es[i]);
	}
	/* Bytes beyond serial_len are not part of the key. */
	struct cache_key junk = ks[3];
	junk.serial[3] = 0xee;
	junk.serial[31] = 0x55;
	struct cache_entry *hit = NULL;
	struct cache_fill *f = NULL;
	assert_int_equal(cache_get(c, &junk, NOW, &hit, &f, NULL), CACHE_HIT);
	assert_ptr_equal(hit, es[3]);
	cache_entry_unref(hit);
	cache_free(c);
}

/* 64 shards of max(max_entries / 64, 4) keys: 256 keys here, at most. */
static void test_eviction(void **state)
{
	(void)state;
	struct cache *c = cache_new(256);
	struct cache_key keep = key(9, 0xffffff);
	struct cache_entry *hit = NULL;
	struct cache_fill *f = NULL;
	assert_int_equal(cache_get(c, &keep, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
	struct cache_entry *ke = entry("keep", NOW + 100, NOW + 200);
	cache_complete(c, f, ke);
	cache_entry_unref(ke);
	struct cache_key first = key(9, 0);
	for (uint32_t i = 0; i < 3000; i++) {
		struct cache_key k = key(9, i);
		f = NULL;
		assert_int_equal(cache_get(c, &k, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
		struct cache_entry *e = entry("e", NOW + 100, NOW + 200);
		cache_complete(c, f, e);
		cache_entry_unref(e);
		/* Used after every insertion: always the most recent of its shard. */
		assert_int_equal(cache_get(c, &keep, NOW, &hit, &f, NULL), CACHE_HIT);
		cache_entry_unref(hit);
	}
	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.entries, 256);
	assert_int_equal(st.evictions, 3001 - 256);
	/* The most recent key is there; the first, never used again, is gone. */
	struct cache_key last = key(9, 2999);
	assert_int_equal(cache_get(c, &last, NOW, &hit, &f, NULL), CACHE_HIT);
	cache_entry_unref(hit);
	f = NULL;
	assert_int_equal(cache_get(c, &first, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
	cache_complete(c, f, NULL);
	cache_free(c);
}

static void test_full_of_fills(void **state)
{
	(void)state;
	struct cache *c = cache_new(256);
	struct cache_fill **fills = calloc(3000, sizeof(*fills));
	assert_non_null(fills);
	int n_fill = 0, n_full = 0;
	for (uint32_t i = 0; i < 3000; i++) {
		struct cache_key k = key(10, i);
		struct cache_entry *hit = NULL;
		struct cache_fill *f = NULL;
		enum cache_result r = cache_get(c, &k, NOW, &hit, &f, NULL);
		if (r == CACHE_MISS_FILL) {
			fills[n_fill++] = f;
		} else {
			assert_int_equal(r, CACHE_MISS_FULL);
			assert_null(f);
			assert_null(hit);
			n_full++;
		}
	}
	/* No fill is evicted: every shard is full of them. */
	assert_int_equal(n_fill, 256);
	assert_int_equal(n_full, 3000 - 256);
	for (int i = 0; i < n_fill; i++) {
		struct cache_entry *e = entry("e", NOW + 100, NOW + 200);
		cache_complete(c, fills[i], e);
		cache_entry_unref(e);
	}
	/* Completed, they are ordinary entries, and evictable again. */
	struct cache_key k = key(11, 1);
	struct cache_entry *hit = NULL;
	struct cache_fill *f = NULL;
	assert_int_equal(cache_get(c, &k, NOW, &hit, &f, NULL), CACHE_MISS_FILL);
	cache_complete(c, f, NULL);
	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.evictions, 1);
	free(fills);
	cache_free(c);
}

/* ---- threads: every waiter is called exactly once ---- */

struct thread_ctx {
	struct cache *c;
	unsigned seed;
	_Atomic int *done_calls;
	int waits;
	int fills;
};

struct t_waiter {
	struct cache_waiter w;
	_Atomic int called;
	_Atomic int *done_calls;
};

static void t_done(struct cache_waiter *cw, struct cache_entry *e)
{
	struct t_waiter *w = (struct t_waiter *)cw;
	cache_entry_unref(e);
	atomic_fetch_add(w->done_calls, 1);
	atomic_fetch_add(&w->called, 1);
}

static void *worker(void *arg)
{
	struct thread_ctx *t = arg;
	struct t_waiter *w = calloc(1, sizeof(*w));
	w->w.done = t_done;
	w->done_calls = t->done_calls;
	for (int i = 0; i < 20000; i++) {
		t->seed = t->seed * 1103515245u + 12345u;
		unsigned r = t->seed >> 8;
		struct cache_key k = key(12, r % 200);
		int64_t now = NOW + (int64_t)(r % 50);
		if (r % 97 == 0) {
			cache_invalidate(t->c, &k);
			continue;
		}
		struct cache_entry *hit = NULL;
		struct cache_fill *f = NULL;
		atomic_store(&w->called, 0);
		enum cache_result res = cache_get(t->c, &k, now, &hit, &f, &w->w);
		switch (res) {
		case CACHE_HIT:
			cache_entry_unref(hit);
			break;
		case CACHE_HIT_REFRESH:
			cache_entry_unref(hit);
			/* fallthrough */
		case CACHE_MISS_FILL: {
			t->fills++;
			struct cache_entry *e =
				r % 13 == 0 ? NULL : entry("t", now + 10, now + 30 + (int64_t)(r % 20));
			cache_complete(t->c, f, e);
			cache_entry_unref(e);
			break;
		}
		case CACHE_MISS_WAIT:
			t->waits++;
			while (atomic_load(&w->called) == 0)
				sched_yield();
			if (atomic_load(&w->called) != 1)
				abort(); /* cmocka's asserts are for the main thread */
			break;
		case CACHE_MISS_FULL:
			break;
		}
	}
	free(w);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct cache *c = cache_new(256);
	_Atomic int done_calls = 0;
	struct thread_ctx ctx[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		ctx[i] = (struct thread_ctx){.c = c, .seed = 77u + (unsigned)i * 1000,
		                             .done_calls = &done_calls};
		assert_int_equal(pthread_create(&th[i], NULL, worker, &ctx[i]), 0);
	}
	int waits = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		waits += ctx[i].waits;
	}
	assert_int_equal(atomic_load(&done_calls), waits);
	struct cache_stats st;
	cache_get_stats(c, &st);
	assert_int_equal(st.waits, (uint64_t)waits);
	assert_true(st.entries <= 256);
	cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_new_copies),
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_refresh_once),
		cmocka_unit_test(test_expired_never_served),
		cmocka_unit_test(test_failed_fill),
		cmocka_unit_test(test_invalidate_during_fill),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_keys_are_distinct),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_full_of_fills),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests_name("l1", tests, NULL, NULL);
}
