#include "cache/l1.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

#define SHARDS 64

struct cache_node {
	struct cache_key key;
	uint64_t hash;
	struct cache_node *chain;             /* bucket list */
	struct cache_node *lru_prev, *lru_next; /* most recent at the head */
	struct cache_entry *entry;            /* NULL until the first fill */
	struct cache_waiter *waiters;
	bool linked;  /* in the table */
	bool filling; /* a caller holds this node as its cache_fill */
};

struct shard {
	pthread_mutex_t lock;
	struct cache_node **buckets;
	size_t mask;
	size_t count;
	size_t max;
	struct cache_node *lru_head, *lru_tail;
	uint64_t hits, misses, waits, refreshes, evictions, invalidations;
};

struct cache {
	struct shard shards[SHARDS];
};

struct cache_entry *cache_entry_new(const uint8_t *der, size_t der_len, const char *hdr,
                                    size_t hdr_len)
{
	struct cache_entry *e = malloc(sizeof(*e) + der_len + hdr_len);
	if (e == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	atomic_init(&e->refs, 1);
	uint8_t *p = (uint8_t *)(e + 1);
	if (der != NULL)
		memcpy(p, der, der_len);
	e->der = p;
	e->der_len = der_len;
	memcpy(p + der_len, hdr, hdr_len);
	e->hdr = (const char *)(p + der_len);
	e->hdr_len = hdr_len;
	return e;
}

void cache_entry_unref(struct cache_entry *e)
{
	if (e != NULL && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		free(e);
}

struct cache *cache_new(size_t max_entries)
{
	struct cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	size_t per = max_entries / SHARDS;
	if (per < 4)
		per = 4;
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->mask = 63;
		s->buckets = calloc(s->mask + 1, sizeof(*s->buckets));
		s->max = per;
		if (s->buckets == NULL) {
			cache_free(c);
			return NULL;
		}
	}
	return c;
}

static void node_free(struct cache_node *n)
{
	cache_entry_unref(n->entry);
	free(n);
}

void cache_free(struct cache *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &c->shards[i];
		for (struct cache_node *n = s->lru_head, *next; n != NULL; n = next) {
			next = n->lru_next;
			node_free(n);
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(c);
}

static size_t key_len(const struct cache_key *k)
{
	return offsetof(struct cache_key, serial) + k->serial_len;
}

static bool key_eq(const struct cache_key *a, const struct cache_key *b)
{
	return a->issuer == b->issuer && a->variant == b->variant &&
	       a->serial_len == b->serial_len && memcmp(a->serial, b->serial, a->serial_len) == 0;
}

static struct cache_node **find(struct shard *s, const struct cache_key *k, uint64_t h)
{
	struct cache_node **pp = &s->buckets[(h >> 6) & s->mask];
	while (*pp != NULL && !((*pp)->hash == h && key_eq(&(*pp)->key, k)))
		pp = &(*pp)->chain;
	return pp;
}

static void lru_unlink(struct shard *s, struct cache_node *n)
{
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		s->lru_head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		s->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
}

static void lru_push_front(struct shard *s, struct cache_node *n)
{
	n->lru_prev = NULL;
	n->lru_next = s->lru_head;
	if (s->lru_head)
		s->lru_head->lru_prev = n;
	s->lru_head = n;
	if (s->lru_tail == NULL)
		s->lru_tail = n;
}

/* Takes n out of the table; frees it unless a filler still holds it. */
static void unlink_node(struct shard *s, struct cache_node *n)
{
	struct cache_node **pp = find(s, &n->key, n->hash);
	if (*pp == n)
		*pp = n->chain;
	lru_unlink(s, n);
	n->linked = false;
	s->count--;
	if (!n->filling)
		node_free(n);
}

static void grow(struct shard *s)
{
	size_t nmask = s->mask * 2 + 1;
	struct cache_node **nb = calloc(nmask + 1, sizeof(*nb));
	if (nb == NULL)
		return; /* longer chains, still correct */
	for (size_t i = 0; i <= s->mask; i++) {
		for (struct cache_node *n = s->buckets[i], *next; n != NULL; n = next) {
			next = n->chain;
			size_t b = (n->hash >> 6) & nmask;
			n->chain = nb[b];
			nb[b] = n;
		}
	}
	free(s->buckets);
	s->buckets = nb;
	s->mask = nmask;
}

/* Makes room for one more node; false if every node is being filled. */
static bool evict_one(struct shard *s)
{
	for (struct cache_node *n = s->lru_tail; n != NULL; n = n->lru_prev) {
		if (!n->filling) {
			unlink_node(s, n);
			s->evictions++;
			return true;
		}
	}
	return false;
}

enum cache_result cache_get(struct cache *c, const struct cache_key *k, int64_t now,
                            struct cache_entry **hit, struct cache_fill **fill,
                            struct cache_waiter *w)
{
	uint64_t h = hash_siphash13(hash_process_key(), k, key_len(k));
	struct shard *s = &c->shards[h & (SHARDS - 1)];
	enum cache_result r;
	pthread_mutex_lock(&s->lock);
	struct cache_node **pp = find(s, k, h);
	struct cache_node *n = *pp;
	if (n != NULL) {
		if (n->entry != NULL && now < n->entry->next_update) {
			*hit = cache_entry_ref(n->entry);
			if (s->lru_head != n) {
				lru_unlink(s, n);
				lru_push_front(s, n);
			}
			s->hits++;
			if (now >= n->entry->refresh_at && !n->filling) {
				n->filling = true;
				*fill = (struct cache_fill *)n;
				s->refreshes++;
				r = CACHE_HIT_REFRESH;
			} else {
				r = CACHE_HIT;
			}
			goto out;
		}
		/* Expired or never filled: never serve it. */
		if (n->entry != NULL) {
			cache_entry_unref(n->entry);
			n->entry = NULL;
		}
		s->misses++;
		if (n->filling) {
			if (w != NULL) {
				w->next = n->waiters;
				n->waiters = w;
				s->waits++;
			}
			r = CACHE_MISS_WAIT;
		} else {
			n->filling = true;
			*fill = (struct cache_fill *)n;
			r = CACHE_MISS_FILL;
		}
		goto out;
	}
	s->misses++;
	if (s->count >= s->max && !evict_one(s)) {
		r = CACHE_MISS_FULL;
		goto out;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		r = CACHE_MISS_FULL;
		goto out;
	}
	n->key = *k;
	n->hash = h;
	n->linked = true;
	n->filling = true;
	pp = find(s, k, h); /* eviction may have changed the chain */
	*pp = n;
	lru_push_front(s, n);
	s->count++;
	if (s->count > (s->mask + 1) * 2)
		grow(s);
	*fill = (struct cache_fill *)n;
	r = CACHE_MISS_FILL;
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

void cache_complete(struct cache *c, struct cache_fill *f, struct cache_entry *e)
{
	struct cache_node *n = (struct cache_node *)f;
	struct shard *s = &c->shards[n->hash & (SHARDS - 1)];
	pthread_mutex_lock(&s->lock);
	struct cache_waiter *waiters = n->waiters;
	n->waiters = NULL;
	n->filling = false;
	/* What the waiters get: the new entry, or on failure whatever valid one remains. */
	struct cache_entry *give = e != NULL ? e : n->entry;
	unsigned n_give = 0;
	for (struct cache_waiter *w = waiters; w != NULL; w = w->next)
		n_give++;
	if (give != NULL)
		atomic_fetch_add_explicit(&give->refs, n_give, memory_order_relaxed);
	if (n->linked) {
		if (e != NULL) {
			cache_entry_unref(n->entry);
			n->entry = cache_entry_ref(e);
		} else if (n->entry == NULL) {
			/* Nothing to keep: forget the key so the next request tries again. */
			unlink_node(s, n);
		}
	} else {
		node_free(n);
	}
	pthread_mutex_unlock(&s->lock);
	for (struct cache_waiter *w = waiters, *next; w != NULL; w = next) {
		next = w->next; /* done may free w */
		w->done(w, give);
	}
}

void cache_invalidate(struct cache *c, const struct cache_key *k)
{
	uint64_t h = hash_siphash13(hash_process_key(), k, key_len(k));
	struct shard *s = &c->shards[h & (SHARDS - 1)];
	pthread_mutex_lock(&s->lock);
	struct cache_node *n = *find(s, k, h);
	if (n != NULL) {
		unlink_node(s, n);
		s->invalidations++;
	}
	pthread_mutex_unlock(&s->lock);
}

void cache_clear(struct cache *c)
{
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		while (s->lru_head != NULL) {
			unlink_node(s, s->lru_head);
			s->invalidations++;
		}
		pthread_mutex_unlock(&s->lock);
	}
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		out->hits += s->hits;
		out->misses += s->misses;
		out->waits += s->waits;
		out->refreshes += s->refreshes;
		out->evictions += s->evictions;
		out->invalidations += s->invalidations;
		out->entries += s->count;
		pthread_mutex_unlock(&s->lock);
	}
}
