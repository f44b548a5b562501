/*
 * The shared tier: keys, values, the conditional write, locks and fences.
 */
#include "cache/l2.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/hash.h"
#include "core/hex.h"
#include "core/log.h"

#define L2_MAX_LOOPS 256
#define FENCE_BUCKETS 4096
#define FENCE_MAX 1000000

/*
 * The conditional write. KEYS: value, lock. ARGV: value, version (16 hex), expiry (ms
 * since the epoch), lock token ('' for none), 't' for a tombstone. A tombstone yields
 * to a value of the same version: the answer signed from that record.
 */
static const char put_script[] =
	"local cur = redis.call('GETRANGE', KEYS[1], 0, 17) "
	"local r = 1 "
	"if string.len(cur) == 18 and string.sub(cur, 1, 2) == 'r1' then "
	"  local have = tonumber(string.sub(cur, 3, 18), 16) "
	"  local want = tonumber(ARGV[2], 16) "
	"  if have > want or (ARGV[5] == 't' and have == want) then r = 0 end "
	"end "
	"if r == 1 then redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3]) end "
	"if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then "
	"  redis.call('DEL', KEYS[2]) end "
	"return r";

struct fence {
	struct fence *next;
	uint16_t issuer;
	uint8_t len;
	uint8_t serial[32];
	uint64_t version;
	int64_t fenced_at;
	int64_t expires;
	uint8_t released;    /* variants whose Redis value is known to be as new */
	uint8_t tombstoned;  /* variants whose tombstone Redis confirmed */
	uint64_t retry_after; /* for l2_fences_unwritten: not before this time */
};

struct l2_conn_slot {
	uv_loop_t *loop;
	struct rds *conn;
};

struct l2 {
	const struct config *cfg;
	char prefix[72];
	char instance[96];
	pthread_mutex_t lock; /* conns and fences */
	struct l2_conn_slot conns[L2_MAX_LOOPS];
	size_t n_conns;
	struct fence *buckets[FENCE_BUCKETS];
	_Atomic size_t n_fences; /* changed under lock; read without it for the fast path */
	int64_t overflow_at;     /* values produced before this are refused */
	_Atomic int64_t overflow_until; /* ... until this time */
	_Atomic uint64_t gets, hits, misses, errors, rejected, puts, puts_refused, tombstones;
	_Atomic uint64_t locks_won, locks_busy, fences, fence_overflows;
};

/* ---- values and keys ---- */

static bool hex_u64(const uint8_t *p, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		int d = hex_digit((char)p[i]);
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return true;
}

bool l2_value_decode(const uint8_t *v, size_t len, struct l2_value *out)
{
	uint64_t produced, refresh;
	if (len < L2_HDR_LEN || v[0] != 'r' || v[1] != '1' || !hex_u64(v + 2, &out->version) ||
	    !hex_u64(v + 18, &produced) || !hex_u64(v + 34, &refresh) || produced > INT64_MAX ||
	    refresh > INT64_MAX)
		return false;
	out->produced_at = (int64_t)produced;
	out->refresh_at = (int64_t)refresh;
	out->der = len > L2_HDR_LEN ? v + L2_HDR_LEN : NULL;
	out->der_len = len - L2_HDR_LEN;
	return true;
}

void l2_value_header(char hdr[L2_HDR_LEN + 1], uint64_t version, int64_t produced,
                     int64_t refresh)
{
	snprintf(hdr, L2_HDR_LEN + 1, "r1%016" PRIx64 "%016" PRIx64 "%016" PRIx64, version,
	         (uint64_t)(produced < 0 ? 0 : produced), (uint64_t)(refresh < 0 ? 0 : refresh));
}

void l2_make_key(const char *prefix, const char *tag, unsigned variant, const uint8_t *serial,
                 size_t serial_len, struct l2_key *out)
{
	static const char digits[] = "0123456789abcdef";
	int n = snprintf(out->s, sizeof(out->s), "%so:%s:%u:", prefix, tag, variant);
	size_t len = n > 0 ? (size_t)n : 0;
	for (size_t i = 0; i < serial_len && len + 2 < sizeof(out->s); i++) {
		out->s[len++] = digits[serial[i] >> 4];
		out->s[len++] = digits[serial[i] & 15];
	}
	out->s[len] = 0;
	out->len = len;
}

/* The lock beside a value: PREFIX lock:o:... */
static void lock_key(const struct l2 *t, const struct l2_key *k, struct l2_key *out)
{
	size_t pl = strlen(t->prefix);
	int n = snprintf(out->s, sizeof(out->s), "%slock:%s", t->prefix, k->s + pl);
	out->len = n > 0 && (size_t)n < sizeof(out->s) ? (size_t)n : 0;
}

/* ---- the tier ---- */

struct l2 *l2_new(const struct config *cfg)
{
	struct l2 *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->cfg = cfg;
	snprintf(t->prefix, sizeof(t->prefix), "%s", cfg->redis_prefix ? cfg->redis_prefix : "revd:");
	char host[64] = "";
	gethostname(host, sizeof(host) - 1);
	uint8_t rnd[6] = {0};
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	snprintf(t->instance, sizeof(t->instance), "%.60s/%ld/%02x%02x%02x%02x%02x%02x", host,
	         (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void l2_free(struct l2 *t)
{
	if (t == NULL)
		return;
	for (size_t b = 0; b < FENCE_BUCKETS; b++) {
		struct fence *f = t->buckets[b];
		while (f != NULL) {
			struct fence *next = f->next;
			free(f);
			f = next;
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

const char *l2_instance(const struct l2 *t)
{
	return t->instance;
}

const char *l2_prefix(const struct l2 *t)
{
	return t->prefix;
}

static _Thread_local struct {
	const struct l2 *t;
	uv_loop_t *loop;
	struct rds *conn;
} tl_conn;

struct rds *l2_conn(struct l2 *t, uv_loop_t *loop)
{
	if (tl_conn.t == t && tl_conn.loop == loop)
		return tl_conn.conn;
	struct rds *c = NULL;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_conns; i++)
		if (t->conns[i].loop == loop)
			c = t->conns[i].conn;
	if (c == NULL && t->n_conns < L2_MAX_LOOPS) {
		struct rds_options o = {
			.address = t->cfg->redis_address,
			.timeout_ms = t->cfg->redis_timeout_ms,
			.what = t->cfg->redis_address,
		};
		c = rds_new(loop, &o);
		if (c != NULL)
			t->conns[t->n_conns++] = (struct l2_conn_slot){loop, c};
	}
	pthread_mutex_unlock(&t->lock);
	if (c != NULL) {
		tl_conn.t = t;
		tl_conn.loop = loop;
		tl_conn.conn = c;
	}
	return c;
}

void l2_loop_done(struct l2 *t, uv_loop_t *loop)
{
	struct rds *c = NULL;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_conns; i++) {
		if (t->conns[i].loop == loop) {
			c = t->conns[i].conn;
			t->conns[i] = t->conns[--t->n_conns];
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (tl_conn.loop == loop)
		memset(&tl_conn, 0, sizeof(tl_conn));
	rds_close(c);
}

/* ---- operations ---- */

struct get_op {
	struct l2 *t;
	l2_get_cb cb;
	void *arg;
};

static void on_get(void *arg, const redisReply *reply)
{
	struct get_op *op = arg;
	struct l2 *t = op->t;
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		atomic_fetch_add(&t->errors, 1);
		op->cb(op->arg, L2_ERROR, NULL, 0);
	} else if (reply->type == REDIS_REPLY_STRING && reply->len > 0) {
		atomic_fetch_add(&t->hits, 1);
		op->cb(op->arg, L2_OK, (const uint8_t *)reply->str, reply->len);
	} else {
		atomic_fetch_add(&t->misses, 1);
		op->cb(op->arg, L2_MISSING, NULL, 0);
	}
	free(op);
}

void l2_get(struct l2 *t, uv_loop_t *loop, const struct l2_key *k, l2_get_cb cb, void *arg)
{
	atomic_fetch_add(&t->gets, 1);
	struct rds *c = l2_conn(t, loop);
	struct get_op *op = malloc(sizeof(*op));
	if (c == NULL || op == NULL) {
		free(op);
		atomic_fetch_add(&t->errors, 1);
		cb(arg, L2_ERROR, NULL, 0);
		return;
	}
	*op = (struct get_op){t, cb, arg};
	/* GETRANGE rather than GET: what Redis can make revd read is bounded (a missing key
	 * reads as empty). */
	const char *argv[4] = {"GETRANGE", k->s, "0", L2_VALUE_MAX_STR};
	size_t lens[4] = {8, k->len, 1, sizeof(L2_VALUE_MAX_STR) - 1};
	rds_command(c, on_get, op, 4, argv, lens);
}

struct put_op {
	struct l2 *t;
	bool has_ref;
	bool tombstone;
	unsigned issuer, variant;
	uint8_t len;
	uint8_t serial[32];
	uint64_t version;
};

static void fence_confirm(struct l2 *t, const struct put_op *op);

static void on_put(void *arg, const redisReply *reply)
{
	struct put_op *op = arg;
	struct l2 *t = op->t;
	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		atomic_fetch_add(&t->errors, 1);
	} else {
		if (reply->integer == 0)
			atomic_fetch_add(&t->puts_refused, 1);
		/* Written, or refused because Redis holds something newer: either way Redis no
		 * longer holds an answer older than this version. */
		if (op->has_ref)
			fence_confirm(t, op);
	}
	free(op);
}

bool l2_put_cmd_init(struct l2 *t, struct l2_put_cmd *c, const struct l2_key *k, uint64_t version,
                     int64_t produced, int64_t refresh_at, int64_t expire_at, const uint8_t *der,
                     size_t der_len, bool unlock)
{
	size_t vlen = L2_HDR_LEN + (der ? der_len : 0);
	c->val = malloc(vlen + 1);
	if (c->val == NULL)
		return false;
	l2_value_header((char *)c->val, version, produced, refresh_at);
	if (der != NULL)
		memcpy(c->val + L2_HDR_LEN, der, der_len);
	lock_key(t, k, &c->lock);
	snprintf(c->ver, sizeof(c->ver), "%016" PRIx64, version);
	snprintf(c->exp, sizeof(c->exp), "%" PRId64, expire_at * 1000);
	const char *token = unlock ? t->instance : "";
	const char *argv[] = {"EVAL", put_script, "2", k->s, c->lock.s, (const char *)c->val,
	                      c->ver, c->exp, token, der ? "v" : "t"};
	size_t lens[] = {4, sizeof(put_script) - 1, 1, k->len, c->lock.len, vlen, 16,
	                 strlen(c->exp), strlen(token), 1};
	memcpy(c->argv, argv, sizeof(argv));
	memcpy(c->lens, lens, sizeof(lens));
	atomic_fetch_add(der ? &t->puts : &t->tombstones, 1);
	return true;
}

void l2_put_cmd_free(struct l2_put_cmd *c)
{
	free(c->val);
	c->val = NULL;
}

void l2_put(struct l2 *t, uv_loop_t *loop, const struct l2_key *k, uint64_t version,
            int64_t produced, int64_t refresh_at, int64_t expire_at, const uint8_t *der,
            size_t der_len, bool unlock, const struct l2_ref *ref)
{
	struct rds *c = l2_conn(t, loop);
	struct put_op *op = calloc(1, sizeof(*op));
	struct l2_put_cmd cmd;
	if (c == NULL || op == NULL ||
	    !l2_put_cmd_init(t, &cmd, k, version, produced, refresh_at, expire_at, der, der_len,
	                     unlock)) {
		free(op);
		return;
	}
	op->t = t;
	op->version = version;
	op->tombstone = der == NULL;
	if (ref != NULL && ref->serial_len <= sizeof(op->serial) && ref->variant < L2_VARIANTS) {
		op->has_ref = true;
		op->issuer = ref->issuer;
		op->variant = ref->variant;
		op->len = (uint8_t)ref->serial_len;
		memcpy(op->serial, ref->serial, ref->serial_len);
	}
	rds_command(c, on_put, op, 10, cmd.argv, cmd.lens);
	l2_put_cmd_free(&cmd); /* hiredis copied the command into its buffer */
}

void l2_count_put_result(struct l2 *t, const redisReply *reply)
{
	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
		atomic_fetch_add(&t->errors, 1);
	else if (reply->integer == 0)
		atomic_fetch_add(&t->puts_refused, 1);
}

struct lock_op {
	struct l2 *t;
	l2_lock_cb cb;
	void *arg;
};

static void on_lock(void *arg, const redisReply *reply)
{
	struct lock_op *op = arg;
	struct l2 *t = op->t;
	enum l2_lock_result res;
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		atomic_fetch_add(&t->errors, 1);
		res = L2_LOCK_ERROR;
	} else if (reply->type == REDIS_REPLY_STATUS) {
		atomic_fetch_add(&t->locks_won, 1);
		res = L2_LOCKED;
	} else {
		atomic_fetch_add(&t->locks_busy, 1);
		res = L2_BUSY;
	}
	op->cb(op->arg, res);
	free(op);
}

void l2_lock(struct l2 *t, uv_loop_t *loop, const struct l2_key *k, l2_lock_cb cb, void *arg)
{
	struct rds *c = l2_conn(t, loop);
	struct lock_op *op = malloc(sizeof(*op));
	if (c == NULL || op == NULL) {
		free(op);
		cb(arg, L2_LOCK_ERROR);
		return;
	}
	*op = (struct lock_op){t, cb, arg};
	struct l2_key lk;
	lock_key(t, k, &lk);
	char ms[16];
	snprintf(ms, sizeof(ms), "%u", t->cfg->redis_lock_ms);
	const char *argv[] = {"SET", lk.s, t->instance, "NX", "PX", ms};
	size_t lens[] = {3, lk.len, strlen(t->instance), 2, 2, strlen(ms)};
	rds_command(c, on_lock, op, 6, argv, lens);
}

static const char unlock_script[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
	"return 0";

static void on_unlock(void *arg, const redisReply *reply)
{
	struct l2 *t = arg;
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		atomic_fetch_add(&t->errors, 1);
}

void l2_unlock(struct l2 *t, uv_loop_t *loop, const struct l2_key *k)
{
	struct rds *c = l2_conn(t, loop);
	if (c == NULL)
		return;
	struct l2_key lk;
	lock_key(t, k, &lk);
	const char *argv[] = {"EVAL", unlock_script, "1", lk.s, t->instance};
	size_t lens[] = {4, sizeof(unlock_script) - 1, 1, lk.len, strlen(t->instance)};
	rds_command(c, on_unlock, t, 5, argv, lens);
}

/* ---- fences ---- */

static size_t fence_bucket(unsigned issuer, const uint8_t *serial, size_t len)
{
	uint8_t k[40];
	k[0] = (uint8_t)issuer;
	k[1] = (uint8_t)(issuer >> 8);
	memcpy(k + 2, serial, len);
	return (size_t)(hash_siphash13(hash_process_key(), k, len + 2) % FENCE_BUCKETS);
}

static struct fence **fence_find(struct l2 *t, unsigned issuer, const uint8_t *serial,
                                 size_t len, int64_t now)
{
	struct fence **pp = &t->buckets[fence_bucket(issuer, serial, len)];
	while (*pp != NULL) {
		struct fence *f = *pp;
		if (f->expires <= now) {
			*pp = f->next;
			free(f);
			t->n_fences--;
			continue;
		}
		if (f->issuer == issuer && f->len == len && memcmp(f->serial, serial, len) == 0)
			return pp;
		pp = &f->next;
	}
	return pp;
}

void l2_fence(struct l2 *t, unsigned issuer, const uint8_t *serial, size_t len,
              uint64_t version, int64_t now)
{
	if (len > 32)
		return;
	atomic_fetch_add(&t->fences, 1);
	int64_t expires = now + t->cfg->validity + 60;
	pthread_mutex_lock(&t->lock);
	struct fence **pp = fence_find(t, issuer, serial, len, now);
	struct fence *f = *pp;
	if (f == NULL) {
		f = t->n_fences < FENCE_MAX ? calloc(1, sizeof(*f)) : NULL;
		if (f == NULL) {
			/* No room to remember this change: distrust every value produced until now. */
			atomic_fetch_add(&t->fence_overflows, 1);
			t->overflow_at = now + 1;
			t->overflow_until = expires;
			pthread_mutex_unlock(&t->lock);
			return;
		}
		f->issuer = (uint16_t)issuer;
		f->len = (uint8_t)len;
		memcpy(f->serial, serial, len);
		f->version = version;
		*pp = f;
		t->n_fences++;
	} else if (version == 0 || f->version == 0) {
		f->version = 0; /* unknown wins: refuse by time */
		f->released = 0;
	} else if (version > f->version) {
		f->version = version;
		f->released = 0;
		f->tombstoned = 0;
	}
	/* Its tombstones are being written: look again only if unconfirmed by then. */
	f->retry_after = (uint64_t)now + 2;
	f->fenced_at = now;
	f->expires = expires;
	pthread_mutex_unlock(&t->lock);
}

void l2_fence_all(struct l2 *t, int64_t now)
{
	pthread_mutex_lock(&t->lock);
	t->overflow_at = now;
	t->overflow_until = now + t->cfg->validity + 60;
	pthread_mutex_unlock(&t->lock);
}

bool l2_fenced(struct l2 *t, unsigned issuer, unsigned variant, const uint8_t *serial,
               size_t len, uint64_t version, int64_t produced_at, int64_t now)
{
	/* The common case, on every answer read from Redis: nothing fenced, no lock. */
	if (atomic_load(&t->n_fences) == 0 && now >= atomic_load(&t->overflow_until))
		return false;
	bool fenced = false;
	pthread_mutex_lock(&t->lock);
	if (now < t->overflow_until && produced_at <= t->overflow_at)
		fenced = true;
	if (!fenced && t->n_fences > 0 && len <= 32 && variant < L2_VARIANTS) {
		struct fence *f = *fence_find(t, issuer, serial, len, now);
		if (f != NULL && !(f->released & (1u << variant)))
			fenced = f->version != 0 ? version < f->version : produced_at <= f->fenced_at;
	}
	pthread_mutex_unlock(&t->lock);
	return fenced;
}

/* Marks variant released in (issuer, serial)'s fence if version is as new; the fence
 * goes once every variant is released. Under t->lock. */
static void release_locked(struct l2 *t, unsigned issuer, unsigned variant,
                           const uint8_t *serial, size_t len, uint64_t version, bool tombstone)
{
	if (t->n_fences == 0 || len > 32 || variant >= L2_VARIANTS)
		return;
	struct fence **pp = fence_find(t, issuer, serial, len, INT64_MIN);
	struct fence *f = *pp;
	if (f == NULL || f->version == 0 || version < f->version)
		return;
	if (tombstone) {
		f->tombstoned |= (uint8_t)(1u << variant);
		return;
	}
	f->released |= (uint8_t)(1u << variant);
	f->tombstoned |= (uint8_t)(1u << variant); /* an answer as new replaces a tombstone */
	if (f->released == 0xff) {
		*pp = f->next;
		free(f);
		t->n_fences--;
	}
}

void l2_fence_release(struct l2 *t, unsigned issuer, unsigned variant, const uint8_t *serial,
                      size_t len, uint64_t version)
{
	if (atomic_load(&t->n_fences) == 0)
		return;
	pthread_mutex_lock(&t->lock);
	release_locked(t, issuer, variant, serial, len, version, false);
	pthread_mutex_unlock(&t->lock);
}

static void fence_confirm(struct l2 *t, const struct put_op *op)
{
	pthread_mutex_lock(&t->lock);
	release_locked(t, op->issuer, op->variant, op->serial, op->len, op->version, op->tombstone);
	pthread_mutex_unlock(&t->lock);
}

size_t l2_fences_unwritten(struct l2 *t, struct l2_unwritten *out, size_t max, int64_t now)
{
	size_t n = 0;
	pthread_mutex_lock(&t->lock);
	for (size_t b = 0; b < FENCE_BUCKETS && n < max && t->n_fences > 0; b++) {
		for (struct fence *f = t->buckets[b]; f != NULL && n < max; f = f->next) {
			if (f->version == 0 || f->tombstoned == 0xff || f->expires <= now ||
			    (int64_t)f->retry_after > now)
				continue;
			f->retry_after = (uint64_t)now + 1; /* once a second at most */
			out[n].issuer = f->issuer;
			out[n].serial.len = f->len;
			memcpy(out[n].serial.bytes, f->serial, f->len);
			out[n].version = f->version;
			out[n].missing = 0xffu & ~(unsigned)f->tombstoned;
			n++;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

void l2_count_reject(struct l2 *t)
{
	atomic_fetch_add(&t->rejected, 1);
}

void l2_get_stats(struct l2 *t, struct l2_stats *out)
{
	out->gets = atomic_load(&t->gets);
	out->hits = atomic_load(&t->hits);
	out->misses = atomic_load(&t->misses);
	out->errors = atomic_load(&t->errors);
	out->rejected = atomic_load(&t->rejected);
	out->puts = atomic_load(&t->puts);
	out->puts_refused = atomic_load(&t->puts_refused);
	out->tombstones = atomic_load(&t->tombstones);
	out->locks_won = atomic_load(&t->locks_won);
	out->locks_busy = atomic_load(&t->locks_busy);
	out->fences = atomic_load(&t->fences);
	out->fence_overflows = atomic_load(&t->fence_overflows);
	pthread_mutex_lock(&t->lock);
	out->fences_held = t->n_fences;
	pthread_mutex_unlock(&t->lock);
}
