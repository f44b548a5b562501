/*
 * The pre-signer thread. Blocking I/O on purpose: it owns its own Redis and store
 * connections and never touches a request loop, so nothing it waits for can delay a
 * request. One batch at a time:
 *
 *   1. claim the next batch of an issuer's serials (cursor compare-and-set in Redis);
 *   2. read the headers of their answers (one pipeline);
 *   3. sign those missing, older than their record, or due, within the rate limit;
 *   4. write them with the conditional write (one pipeline).
 *
 * Every sample_interval it also reads sample_size whole answers of the batch it is on
 * and compares their status with the store's record: a disagreement is counted, logged
 * and repaired by re-signing.
 */
#include "http/presign.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/l2.h"
#include "cache/redis.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/hex.h"
#include "core/log.h"
#include "http/responder.h"
#include "ocsp/response.h"
#include "ocsp/response_parse.h"
#include "ocsp/status.h"

#define STATS_EVERY_MS 2000
#define RATE_WINDOW 8 /* seconds of history for signed_per_sec */

/* Compare-and-set of an issuer's cursor; an absent key reads as "". */
static const char cas_script[] =
	"local cur = redis.call('GET', KEYS[1]) or '' "
	"if cur ~= ARGV[1] then return 0 end "
	"redis.call('SET', KEYS[1], ARGV[2]) return 1";

struct presigner {
	struct responder *r;
	const struct config *cfg;
	pthread_t thread;
	pthread_mutex_t lock; /* stats, stop */
	pthread_cond_t wake;
	bool stop;
	redisContext *rc;
	uint64_t rate; /* signatures per second; 0: no limit */
	uint64_t tokens_used;
	uint64_t window_start_ms;
	uint64_t last_stats_ms;
	uint64_t last_sample_ms;
	size_t sample_left;
	uint64_t per_sec[RATE_WINDOW];
	int64_t per_sec_at[RATE_WINDOW];
	int64_t round_oldest;   /* oldest answer seen in the round in progress */
	uint64_t round_signed;  /* answers signed in the round in progress */
	struct presign_stats st;
	struct store_scan_item *items;
	struct l2_key *keys;
	bool *due;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleeps up to ms, or until stopped. Returns false when stopping. */
static bool nap(struct presigner *p, unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->lock);
	while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0)
		;
	bool go_on = !p->stop;
	pthread_mutex_unlock(&p->lock);
	return go_on;
}

static bool stopping(struct presigner *p)
{
	pthread_mutex_lock(&p->lock);
	bool s = p->stop;
	pthread_mutex_unlock(&p->lock);
	return s;
}

/* ---- Redis, synchronously ---- */

static void drop_redis(struct presigner *p, const char *why)
{
	if (p->rc == NULL)
		return;
	log_warn("presign: redis: %s", why);
	redisFree(p->rc);
	p->rc = NULL;
}

static bool ensure_redis(struct presigner *p)
{
	if (p->rc != NULL)
		return true;
	char host[256];
	int port;
	bool is_unix;
	if (!rds_parse_address(p->cfg->redis_address, host, sizeof(host), &port, &is_unix))
		return false;
	unsigned ms = p->cfg->redis_timeout_ms < 1000 ? 1000 : p->cfg->redis_timeout_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	redisContext *c = is_unix ? redisConnectUnixWithTimeout(host, tv)
	                          : redisConnectWithTimeout(host, port, tv);
	if (c == NULL || c->err) {
		redisFree(c);
		return false;
	}
	/* Pipelines of a batch take longer than one command: a generous read timeout. */
	struct timeval rtv = {.tv_sec = 5 + ms / 1000, .tv_usec = 0};
	redisSetTimeout(c, rtv);
	p->rc = c;
	return true;
}

static redisReply *command(struct presigner *p, int argc, const char **argv, const size_t *lens)
{
	if (p->rc == NULL)
		return NULL;
	redisReply *rep = redisCommandArgv(p->rc, argc, argv, lens);
	if (rep == NULL) {
		drop_redis(p, p->rc->errstr);
		return NULL;
	}
	return rep;
}

static void key_for(struct presigner *p, char *out, size_t outlen, const char *what)
{
	snprintf(out, outlen, "%spresign:%s", l2_prefix(p->r->l2), what);
}

static void read_controls(struct presigner *p)
{
	char kp[128], kr[128];
	key_for(p, kp, sizeof(kp), "paused");
	key_for(p, kr, sizeof(kr), "rate");
	const char *a1[] = {"GET", kp}, *a2[] = {"GET", kr};
	size_t l1[] = {3, strlen(kp)}, l2[] = {3, strlen(kr)};
	redisReply *rp = command(p, 2, a1, l1);
	redisReply *rr = command(p, 2, a2, l2);
	bool paused = rp != NULL && rp->type == REDIS_REPLY_STRING && strcmp(rp->str, "0") != 0;
	uint64_t rate = p->cfg->presign_rate;
	if (rr != NULL && rr->type == REDIS_REPLY_STRING)
		rate = strtoull(rr->str, NULL, 10);
	freeReplyObject(rp);
	freeReplyObject(rr);
	pthread_mutex_lock(&p->lock);
	if (paused != p->st.paused)
		log_info("presign: %s", paused ? "paused" : "resumed");
	p->st.paused = paused;
	pthread_mutex_unlock(&p->lock);
	if (rate != p->rate)
		log_info("presign: rate limit %" PRIu64 " signatures/s%s", rate, rate ? "" : " (none)");
	p->rate = rate;
}

static void publish_stats(struct presigner *p)
{
	struct presign_stats s;
	presigner_get_stats(p, &s);
	char key[200];
	snprintf(key, sizeof(key), "%spresign:stats:%s", l2_prefix(p->r->l2), l2_instance(p->r->l2));
	char v[9][32];
	snprintf(v[0], 32, "%" PRIu64, s.rounds);
	snprintf(v[1], 32, "%" PRIu64, s.checked);
	snprintf(v[2], 32, "%" PRIu64, s.signed_total);
	snprintf(v[3], 32, "%.1f", s.signed_per_sec);
	snprintf(v[4], 32, "%" PRIu64, s.queue_depth);
	snprintf(v[5], 32, "%" PRId64, s.oldest_age);
	snprintf(v[6], 32, "%" PRIu64, s.disagreements);
	snprintf(v[7], 32, "%" PRIu64, s.errors);
	snprintf(v[8], 32, "%d", s.paused ? 1 : 0);
	const char *names[9] = {"rounds", "checked", "signed", "signed_per_sec", "queue_depth",
	                        "oldest_answer_age_s", "disagreements", "errors", "paused"};
	const char *argv[2 + 18];
	size_t lens[2 + 18];
	argv[0] = "HSET";
	argv[1] = key;
	lens[0] = 4;
	lens[1] = strlen(key);
	for (int i = 0; i < 9; i++) {
		argv[2 + 2 * i] = names[i];
		lens[2 + 2 * i] = strlen(names[i]);
		argv[3 + 2 * i] = v[i];
		lens[3 + 2 * i] = strlen(v[i]);
	}
	freeReplyObject(command(p, 20, argv, lens));
	const char *ea[] = {"EXPIRE", key, "60"};
	size_t el[] = {6, strlen(key), 2};
	freeReplyObject(command(p, 3, ea, el));
}

/* ---- signing ---- */

static void count_signed(struct presigner *p)
{
	int64_t sec = (int64_t)(mono_ms() / 1000);
	size_t slot = (size_t)sec % RATE_WINDOW;
	pthread_mutex_lock(&p->lock);
	if (p->per_sec_at[slot] != sec) {
		p->per_sec_at[slot] = sec;
		p->per_sec[slot] = 0;
	}
	p->per_sec[slot]++;
	p->st.signed_total++;
	pthread_mutex_unlock(&p->lock);
}

/* Waits for the rate limit's next token. false when stopping. */
static bool take_token(struct presigner *p)
{
	if (p->rate == 0)
		return true;
	uint64_t now = mono_ms();
	if (now - p->window_start_ms >= 1000) {
		p->window_start_ms = now;
		p->tokens_used = 0;
	}
	if (p->tokens_used >= p->rate) {
		unsigned wait = (unsigned)(p->window_start_ms + 1000 - now);
		if (!nap(p, wait))
			return false;
		p->window_start_ms = mono_ms();
		p->tokens_used = 0;
	}
	p->tokens_used++;
	return true;
}

static bool sign_one(struct presigner *p, const struct ocsp_issuer *is,
                     const struct ocsp_certid *id, const struct store_record *rec, struct buf *out,
                     int64_t now)
{
	const struct responder_issuer *ri = is->user;
	struct ocsp_single single = {.certid = id};
	bool ext = false;
	if (!ocsp_status_decide(rec, ri->not_issued, &single, &ext))
		return false;
	single.this_update = now;
	single.next_update = now + p->cfg->validity;
	struct ocsp_response_spec spec = {
		.signer = is->signer,
		.produced_at = now,
		.singles = &single,
		.n_singles = 1,
		.extended_revoke = ext,
	};
	buf_reset(out);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bool ok = ocsp_response_build(&spec, out);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (ok)
		responder_note_sign(p->r, (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000L +
		                                     (t1.tv_nsec - t0.tv_nsec)));
	return ok;
}

/* Does the answer in v say what rec says? */
static bool agrees(const uint8_t *v, size_t len, const struct ocsp_certid *id,
                   const struct store_record *rec)
{
	struct l2_value lv;
	struct ocsp_parsed_response pr;
	if (!l2_value_decode(v, len, &lv) || lv.der == NULL ||
	    ocsp_response_parse(lv.der, lv.der_len, &pr) != OCSP_PARSE_OK ||
	    pr.status != OCSP_RESP_SUCCESSFUL || pr.n_singles != 1 || !ocsp_parsed_matches(&pr, id))
		return false;
	switch (rec->status) {
	case STORE_GOOD:
		return pr.single.status == OCSP_STATUS_GOOD;
	case STORE_REVOKED:
		return pr.single.status == OCSP_STATUS_REVOKED &&
		       pr.single.revoked_at == rec->revoked_at;
	default:
		return true; /* scans return issued certificates only */
	}
}

/* ---- one batch ---- */

enum work { WORKED, IDLE, FAILED };

static void serial_hex(const struct store_serial *s, char *out)
{
	for (size_t i = 0; i < s->len; i++)
		snprintf(out + 2 * i, 3, "%02x", s->bytes[i]);
	out[2 * s->len] = 0;
}

static bool hex_serial(const char *hex, struct store_serial *s)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > STORE_MAX_SERIAL)
		return false;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		s->bytes[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	s->len = (uint8_t)(n / 2);
	return true;
}

static bool cas(struct presigner *p, const char *key, const char *from, const char *to)
{
	const char *argv[] = {"EVAL", cas_script, "1", key, from, to};
	size_t lens[] = {4, sizeof(cas_script) - 1, 1, strlen(key), strlen(from), strlen(to)};
	redisReply *rep = command(p, 6, argv, lens);
	bool ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
	freeReplyObject(rep);
	return ok;
}

static enum work work_issuer(struct presigner *p, const struct ocsp_issuer *is, int64_t *due_at)
{
	const struct responder_issuer *ri = is->user;
	const struct config *cfg = p->cfg;
	char ckey[160];
	snprintf(ckey, sizeof(ckey), "%spresign:cursor:%s", l2_prefix(p->r->l2), ri->tag);
	int64_t now = clock_now();

	/* The cursor: "START:" then the last serial claimed, or "~" once the round ended. */
	const char *ga[] = {"GET", ckey};
	size_t gl[] = {3, strlen(ckey)};
	redisReply *rep = command(p, 2, ga, gl);
	if (rep == NULL)
		return FAILED;
	char cur[128] = "";
	bool unreadable = rep->type == REDIS_REPLY_STRING &&
	                  (rep->len >= sizeof(cur) || memchr(rep->str, 0, rep->len) != NULL);
	if (rep->type == REDIS_REPLY_STRING && !unreadable)
		memcpy(cur, rep->str, rep->len + 1);
	freeReplyObject(rep);
	if (unreadable) {
		/* Not a cursor revd wrote, and too long to compare-and-set from: start over. */
		log_warn("presign: %s holds no cursor; starting the round over", ckey);
		const char *da[] = {"DEL", ckey};
		size_t dl[] = {3, strlen(ckey)};
		freeReplyObject(command(p, 2, da, dl));
		return WORKED;
	}
	long long start = 0;
	char pos[80] = "~";
	if (cur[0] != 0 && sscanf(cur, "%lld:%79s", &start, pos) < 1)
		start = 0; /* unreadable: start over */
	if (cur[0] != 0 && strchr(cur, ':') != NULL && strchr(cur, ':')[1] == 0)
		pos[0] = 0; /* "START:": a round just begun */
	char from[128];
	snprintf(from, sizeof(from), "%s", cur);
	if (strcmp(pos, "~") == 0) {
		int64_t next = (int64_t)start + (int64_t)(cfg->presign_interval_ms / 1000);
		if (cur[0] != 0 && now < next) {
			*due_at = next;
			return IDLE;
		}
		char fresh[64];
		snprintf(fresh, sizeof(fresh), "%lld:", (long long)now);
		if (!cas(p, ckey, from, fresh))
			return WORKED; /* someone else started it: look again */
		snprintf(from, sizeof(from), "%s", fresh);
		start = now;
		pos[0] = 0;
		p->round_oldest = 0;
		p->round_signed = 0;
	}
	struct store_serial after = {0};
	if (pos[0] != 0 && !hex_serial(pos, &after))
		after.len = 0;
	char err[256];
	long n = store_scan(ri->store, ri->store_issuer, &after, now, 0, p->items, cfg->presign_batch,
	                    err, sizeof(err));
	if (n < 0) {
		log_warn("presign: issuer %s: %s", is->name, err);
		return FAILED;
	}
	char to[128], hex[2 * STORE_MAX_SERIAL + 1];
	if ((size_t)n < cfg->presign_batch) {
		snprintf(to, sizeof(to), "%lld:~", start);
	} else {
		serial_hex(&p->items[n - 1].serial, hex);
		snprintf(to, sizeof(to), "%lld:%s", start, hex);
	}
	if (!cas(p, ckey, from, to))
		return WORKED; /* another instance claimed this batch */

	/* Which answers are due: one GETRANGE per (certificate, hash), pipelined. Keys go
	 * certificate by certificate, nh hashes each. */
	int hlist[OCSP_HASH_COUNT], nh = 0;
	for (int h = 0; h < OCSP_HASH_COUNT; h++)
		if (cfg->presign_hashes & (1u << h))
			hlist[nh++] = h;
	size_t nk = 0;
	for (long i = 0; i < n; i++) {
		for (int x = 0; x < nh; x++) {
			struct ocsp_certid id;
			ocsp_issuer_certid(is, (enum ocsp_hash)hlist[x], true, p->items[i].serial.bytes,
			                   p->items[i].serial.len, &id);
			l2_make_key(l2_prefix(p->r->l2), ri->tag, ocsp_certid_variant(&id), id.serial,
			            id.serial_len, &p->keys[nk++]);
		}
	}
	uint64_t ms = mono_ms();
	if (cfg->redis_sample_size > 0 && ms - p->last_sample_ms >= cfg->redis_sample_interval_ms) {
		p->last_sample_ms = ms;
		p->sample_left = cfg->redis_sample_size;
	}
	for (size_t k = 0; k < nk; k++) {
		bool sample = p->sample_left > 0;
		if (sample)
			p->sample_left--;
		if (sample) {
			const char *a[] = {"GETRANGE", p->keys[k].s, "0", L2_VALUE_MAX_STR};
			size_t l[] = {8, p->keys[k].len, 1, sizeof(L2_VALUE_MAX_STR) - 1};
			redisAppendCommandArgv(p->rc, 4, a, l);
		} else {
			/* One byte past the header tells an answer from a tombstone. */
			const char *a[] = {"GETRANGE", p->keys[k].s, "0", "50"};
			size_t l[] = {8, p->keys[k].len, 1, 2};
			redisAppendCommandArgv(p->rc, 4, a, l);
		}
		p->due[k] = sample; /* remembers which were full reads, for a moment */
	}
	size_t n_due = 0;
	uint64_t sampled = 0, wrong = 0;
	for (size_t k = 0; k < nk; k++) {
		void *vr = NULL;
		if (redisGetReply(p->rc, &vr) != REDIS_OK) {
			drop_redis(p, p->rc->errstr);
			return FAILED;
		}
		redisReply *r = vr;
		bool full = p->due[k];
		int h = hlist[k % (size_t)nh];
		const struct store_scan_item *it = &p->items[k / (size_t)nh];
		struct l2_value lv;
		bool due = true;
		if (r->type == REDIS_REPLY_STRING &&
		    l2_value_decode((const uint8_t *)r->str, r->len < L2_HDR_LEN ? r->len : L2_HDR_LEN,
		                    &lv)) {
			bool has_body = r->len > L2_HDR_LEN;
			due = !has_body || lv.version < it->rec.version || lv.refresh_at <= now;
			if (!due && now - lv.produced_at > p->round_oldest)
				p->round_oldest = now - lv.produced_at;
			if (full && !due) {
				struct ocsp_certid id;
				ocsp_issuer_certid(is, (enum ocsp_hash)h, true, it->serial.bytes, it->serial.len, &id);
				sampled++;
				if (!agrees((const uint8_t *)r->str, r->len, &id, &it->rec)) {
					wrong++;
					due = true;
					log_warn("presign: %s disagrees with the store; re-signing", p->keys[k].s);
				}
			}
		}
		freeReplyObject(r);
		p->due[k] = due;
		n_due += due;
	}
	pthread_mutex_lock(&p->lock);
	p->st.checked += nk;
	p->st.queue_depth = n_due;
	p->st.sampled += sampled;
	p->st.disagreements += wrong;
	pthread_mutex_unlock(&p->lock);

	/* Sign what is due and write it, pipelined. */
	struct buf out;
	buf_init(&out, 1024 * 1024);
	size_t sent = 0;
	for (size_t k = 0; k < nk; k++) {
		if (!p->due[k])
			continue;
		if (!take_token(p))
			break;
		int h = hlist[k % (size_t)nh];
		const struct store_scan_item *it = &p->items[k / (size_t)nh];
		struct ocsp_certid id;
		ocsp_issuer_certid(is, (enum ocsp_hash)h, true, it->serial.bytes, it->serial.len, &id);
		int64_t t = clock_now();
		if (!sign_one(p, is, &id, &it->rec, &out, t)) {
			pthread_mutex_lock(&p->lock);
			p->st.errors++;
			pthread_mutex_unlock(&p->lock);
			continue;
		}
		int64_t next = t + cfg->validity;
		struct l2_put_cmd cmd;
		if (!l2_put_cmd_init(p->r->l2, &cmd, &p->keys[k], it->rec.version, t,
		                     responder_refresh_at(p->r, t, next, it->serial.bytes, it->serial.len),
		                     next, out.data, out.len, false))
			break;
		redisAppendCommandArgv(p->rc, 10, cmd.argv, cmd.lens);
		l2_put_cmd_free(&cmd);
		sent++;
		p->round_signed++;
		count_signed(p);
		pthread_mutex_lock(&p->lock);
		if (p->st.queue_depth > 0)
			p->st.queue_depth--;
		pthread_mutex_unlock(&p->lock);
	}
	buf_free(&out);
	for (size_t i = 0; i < sent; i++) {
		void *vr = NULL;
		if (redisGetReply(p->rc, &vr) != REDIS_OK) {
			drop_redis(p, p->rc->errstr);
			return FAILED;
		}
		l2_count_put_result(p->r->l2, vr);
		freeReplyObject(vr);
	}
	if ((size_t)n < cfg->presign_batch) {
		pthread_mutex_lock(&p->lock);
		p->st.rounds++;
		p->st.oldest_age = p->round_oldest;
		pthread_mutex_unlock(&p->lock);
		/* Quiet rounds (nothing due) are the steady state: not worth a line each. */
		log_msg(p->round_signed ? LOG_INFO : LOG_DEBUG,
		        "presign: issuer %s: round done, %" PRIu64 " signed, oldest answer %" PRId64
		        " s old",
		        is->name, p->round_signed, p->round_oldest);
	}
	return WORKED;
}

static void *run(void *arg)
{
	struct presigner *p = arg;
	struct responder *r = p->r;
	size_t n_issuers = ocsp_issuers_count(r->issuers);
	bool warned = false;
	/* Let the stores match their issuers first (a few seconds at most): a scan before
	 * then fails for nothing. */
	for (int i = 0; i < 50 && !responder_ready(r); i++)
		if (!nap(p, 200))
			return NULL;
	while (!stopping(p)) {
		if (!ensure_redis(p)) {
			if (!warned)
				log_warn("presign: redis %s unreachable; waiting", p->cfg->redis_address);
			warned = true;
			nap(p, 1000);
			continue;
		}
		warned = false;
		uint64_t ms = mono_ms();
		if (ms - p->last_stats_ms >= STATS_EVERY_MS) {
			p->last_stats_ms = ms;
			read_controls(p);
			publish_stats(p);
		}
		if (p->st.paused) {
			nap(p, 500);
			continue;
		}
		bool worked = false;
		int64_t next_due = clock_now() + 1;
		for (size_t i = 0; i < n_issuers && !stopping(p); i++) {
			const struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, i);
			const struct responder_issuer *ri = is->user;
			if (ri->store->ops->scan == NULL)
				continue;
			int64_t due = 0;
			enum work w = work_issuer(p, is, &due);
			if (w == WORKED)
				worked = true;
			else if (w == FAILED) {
				pthread_mutex_lock(&p->lock);
				p->st.errors++;
				pthread_mutex_unlock(&p->lock);
			}
		}
		if (!worked)
			nap(p, next_due > clock_now() ? 1000 : 200);
	}
	return NULL;
}

struct presigner *presigner_start(struct responder *r)
{
	struct presigner *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->r = r;
	p->cfg = r->cfg;
	size_t per = (size_t)__builtin_popcount(p->cfg->presign_hashes);
	p->items = calloc(p->cfg->presign_batch, sizeof(*p->items));
	p->keys = calloc(p->cfg->presign_batch * per, sizeof(*p->keys));
	p->due = calloc(p->cfg->presign_batch * per, sizeof(*p->due));
	p->rate = p->cfg->presign_rate;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (p->items == NULL || p->keys == NULL || p->due == NULL ||
	    pthread_create(&p->thread, NULL, run, p) != 0) {
		log_error("presign: cannot start");
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->wake);
		free(p->items);
		free(p->keys);
		free(p->due);
		free(p);
		return NULL;
	}
	log_info("presign: started (batches of %zu, %s)", p->cfg->presign_batch,
	         p->cfg->presign_rate ? "rate-limited" : "no rate limit");
	return p;
}

void presigner_stop(struct presigner *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	if (p->rc != NULL)
		redisFree(p->rc);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p->items);
	free(p->keys);
	free(p->due);
	free(p);
}

void presigner_get_stats(struct presigner *p, struct presign_stats *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->st;
	int64_t sec = (int64_t)(mono_ms() / 1000);
	uint64_t sum = 0;
	int secs = 0;
	/* Whole seconds only: the current one is still filling. */
	for (int i = 1; i < RATE_WINDOW; i++) {
		int64_t s = sec - i;
		size_t slot = (size_t)s % RATE_WINDOW;
		secs++;
		if (p->per_sec_at[slot] == s)
			sum += p->per_sec[slot];
	}
	pthread_mutex_unlock(&p->lock);
	out->signed_per_sec = secs ? (double)sum / secs : 0;
}
