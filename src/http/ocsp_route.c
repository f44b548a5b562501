/*
 * Routing and the life of one OCSP request: decode, find the issuer, serve from the
 * cache or else look up the status and sign on a worker thread, single-flight per key.
 * Only this file knows both libuv and the OCSP modules.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "http/http.h"
#include "http/metrics.h"
#include "http/responder.h"
#include "ocsp/request.h"
#include "ocsp/response_parse.h"
#include "ocsp/response.h"
#include "ocsp/status.h"

enum job_kind {
	JOB_FILL,    /* signs one answer for the cache, and answers its request with it */
	JOB_REFRESH, /* re-signs a cached answer in the background; no request */
	JOB_WAIT,    /* waits for another job's fill */
	JOB_LIVE,    /* signs for this request alone (nonce, several CertIDs, cache full) */
	JOB_RESIGN,  /* re-signs a changed record's answer for the shared tier; no request */
};

struct lookup_ctx {
	struct ocsp_job *job;
	size_t i;
};

struct ocsp_job {
	struct http_mail mail;
	struct cache_waiter waiter;
	uv_work_t work;
	struct responder *r;
	struct http_worker *worker; /* NULL for JOB_RESIGN */
	uv_loop_t *loop;
	struct http_request *req; /* NULL once the client is gone, and for refreshes */
	enum job_kind kind;
	struct cache_fill *fill;
	struct cache_key key;
	size_t n;
	struct ocsp_certid *ids;
	struct ocsp_single *singles;
	const struct ocsp_issuer **iss;
	struct lookup_ctx *lctx;
	size_t lookups_pending;
	bool store_failed;
	bool unauthorized;
	bool extended_revoke;
	bool cacheable;
	const uint8_t *nonce_ext;
	size_t nonce_ext_len;
	/* results */
	struct cache_entry *entry;
	uint8_t *body;
	size_t body_len;
	int64_t next_update;
	enum ocsp_resp_status error;
	uint8_t *der; /* the request, copied: ids and nonce_ext point into it */
	size_t der_len;
	uint64_t version; /* of the record signed (one CertID) */
	/* the shared tier */
	struct l2_key l2key;
	bool l2_locked;    /* this instance signs it for every instance */
	bool l2_write;     /* put what is signed into the shared tier */
	bool timer_on;
	uv_timer_t timer;  /* polling for another instance's answer */
	uint64_t wait_until;
	unsigned wait_delay;
};

static void respond_error(struct http_request *req, enum ocsp_resp_status st)
{
	size_t len;
	const uint8_t *body = ocsp_response_error(st, &len);
	http_count_ocsp(req->worker, (int)st);
	http_respond_ocsp(req, (uint8_t *)body, len, false, 0, false);
}

static void make_key(struct cache_key *k, const struct ocsp_issuer *is, const struct ocsp_certid *id)
{
	k->issuer = (uint16_t)is->id;
	k->variant = (uint8_t)ocsp_certid_variant(id);
	k->serial_len = (uint8_t)id->serial_len;
	memcpy(k->serial, id->serial, id->serial_len);
}

/* One allocation: the job, its arrays and a copy of the request's DER. */
static struct ocsp_job *job_new(struct responder *r, struct http_request *req,
                                struct http_worker *w, enum job_kind kind,
                                const struct ocsp_request *oreq, const uint8_t *der, size_t der_len,
                                const struct ocsp_issuer *const *iss)
{
	size_t n = oreq->n_certids;
	size_t sz = sizeof(struct ocsp_job) + n * (sizeof(struct ocsp_certid) + sizeof(struct ocsp_single) +
	                                           sizeof(void *) + sizeof(struct lookup_ctx)) + der_len;
	struct ocsp_job *j = calloc(1, sz);
	if (j == NULL)
		return NULL;
	uint8_t *p = (uint8_t *)(j + 1);
	j->ids = (struct ocsp_certid *)p;
	p += n * sizeof(struct ocsp_certid);
	j->singles = (struct ocsp_single *)p;
	p += n * sizeof(struct ocsp_single);
	j->iss = (const struct ocsp_issuer **)p;
	p += n * sizeof(void *);
	j->lctx = (struct lookup_ctx *)p;
	p += n * sizeof(struct lookup_ctx);
	j->der = p;
	j->der_len = der_len;
	memcpy(j->der, der, der_len);
	j->r = r;
	j->req = req;
	j->worker = w;
	j->loop = &w->loop;
	j->kind = kind;
	j->n = n;
	for (size_t i = 0; i < n; i++) {
		const struct ocsp_certid *src = &oreq->certids[i];
		struct ocsp_certid *id = &j->ids[i];
		*id = *src;
		id->name_hash = j->der + (src->name_hash - der);
		id->key_hash = j->der + (src->key_hash - der);
		id->serial = j->der + (src->serial - der);
		j->iss[i] = iss[i];
		j->singles[i].certid = id;
		j->lctx[i].job = j;
		j->lctx[i].i = i;
	}
	return j;
}

static void job_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void job_free(struct ocsp_job *j)
{
	cache_entry_unref(j->entry);
	j->entry = NULL;
	free(j->body);
	j->body = NULL;
	if (j->timer_on) {
		j->timer.data = j;
		uv_close((uv_handle_t *)&j->timer, job_timer_closed);
		return;
	}
	free(j);
}

static void job_detach(void *arg)
{
	struct ocsp_job *j = arg;
	j->req = NULL;
}

/* The end of every job: answer the request if it is still there, then free. */
static void job_finish(struct ocsp_job *j)
{
	if (j->l2_locked) {
		/* Locked but nothing written (the lookup or signing failed): let the others
		 * try now rather than when the lock expires. */
		l2_unlock(j->r->l2, j->loop, &j->l2key);
		j->l2_locked = false;
	}
	struct http_request *req = j->req;
	if (req != NULL) {
		if (j->entry != NULL) {
			http_count_ocsp(req->worker, OCSP_RESP_SUCCESSFUL);
			http_respond_entry(req, j->entry, clock_now());
		} else if (j->body != NULL) {
			http_count_ocsp(req->worker, OCSP_RESP_SUCCESSFUL);
			http_respond_ocsp(req, j->body, j->body_len, true, j->next_update, j->cacheable);
			j->body = NULL; /* the connection owns it now */
		} else {
			respond_error(req, j->error ? j->error : OCSP_RESP_INTERNAL_ERROR);
		}
	}
	job_free(j);
}

/* ---- signing, on a libuv pool thread ---- */

static struct cache_entry *make_entry(const uint8_t *der, size_t len, int64_t produced,
                                      int64_t next_update, int64_t refresh_at)
{
	uint8_t md[32];
	unsigned int mdlen = 0;
	if (EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return NULL;
	char lm[30], ex[30];
	clock_http_date(produced, lm);
	clock_http_date(next_update, ex);
	/* The ETag line comes first: the connection finds it there for If-None-Match. */
	char hdr[400];
	int n = snprintf(hdr, sizeof(hdr),
	                 "ETag: \"%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x\"\r\n"
	                 "Content-Type: application/ocsp-response\r\n"
	                 "Content-Length: %zu\r\n"
	                 "Last-Modified: %s\r\n"
	                 "Expires: %s\r\n\r\n",
	                 md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10],
	                 md[11], md[12], md[13], md[14], md[15], len, lm, ex);
	if (n <= 0 || (size_t)n >= sizeof(hdr))
		return NULL;
	struct cache_entry *e = cache_entry_new(der, len, hdr, (size_t)n);
	if (e == NULL)
		return NULL;
	e->produced_at = produced;
	e->next_update = next_update;
	e->refresh_at = refresh_at;
	return e;
}

static void sign_work(uv_work_t *w)
{
	struct ocsp_job *j = w->data;
	const struct config *cfg = j->r->cfg;
	int64_t now = clock_now();
	int64_t next = now + cfg->validity;
	for (size_t i = 0; i < j->n; i++) {
		j->singles[i].this_update = now;
		j->singles[i].next_update = next;
	}
	struct ocsp_response_spec spec = {
		.signer = j->iss[0]->signer,
		.produced_at = now,
		.singles = j->singles,
		.n_singles = j->n,
		.nonce_ext = j->nonce_ext,
		.nonce_ext_len = j->nonce_ext_len,
		.extended_revoke = j->extended_revoke,
	};
	struct buf out;
	buf_init(&out, 1024 * 1024);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!ocsp_response_build(&spec, &out)) {
		buf_free(&out);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	responder_note_sign(j->r, (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000L +
	                                     (t1.tv_nsec - t0.tv_nsec)));
	j->next_update = next;
	if (j->kind == JOB_LIVE) {
		j->body = buf_steal(&out, &j->body_len);
		return;
	}
	j->entry = make_entry(out.data, out.len, now, next,
	                      responder_refresh_at(j->r, now, next, j->ids[0].serial,
	                                           j->ids[0].serial_len));
	buf_free(&out);
}

static void sign_done(uv_work_t *w, int status)
{
	struct ocsp_job *j = w->data;
	atomic_fetch_sub(&j->r->signing, 1);
	if (j->entry == NULL && j->body == NULL) {
		char hex[2 * STORE_MAX_SERIAL + 1] = "";
		for (size_t i = 0; i < j->ids[0].serial_len && i < STORE_MAX_SERIAL; i++)
			snprintf(hex + 2 * i, 3, "%02X", j->ids[0].serial[i]);
		log_cert(LOG_ERROR, j->iss[0]->name, hex,
		         "signing an OCSP response for issuer %s serial %s failed", j->iss[0]->name, hex);
		j->error = OCSP_RESP_INTERNAL_ERROR;
	} else {
		atomic_fetch_add(&j->r->signed_total, 1);
	}
	if (j->entry != NULL && j->l2_write) {
		const struct cache_entry *e = j->entry;
		/* The fence for this variant goes when Redis confirms the write. */
		struct l2_ref ref = {j->iss[0]->id, ocsp_certid_variant(&j->ids[0]), j->ids[0].serial,
		                     j->ids[0].serial_len};
		l2_put(j->r->l2, j->loop, &j->l2key, j->version, e->produced_at, e->refresh_at,
		       e->next_update, e->der, e->der_len, j->l2_locked, &ref);
		j->l2_locked = false; /* the write released it */
	}
	if (j->fill != NULL) {
		cache_complete(j->r->cache, j->fill, j->entry);
		j->fill = NULL;
	}
	job_finish(j);
}

/* ---- status lookups, on the loop ---- */

static void fail_fill(struct ocsp_job *j)
{
	if (j->fill != NULL) {
		cache_complete(j->r->cache, j->fill, NULL);
		j->fill = NULL;
	}
}

static void lookups_done(struct ocsp_job *j)
{
	if (j->store_failed || j->unauthorized) {
		j->error = j->unauthorized ? OCSP_RESP_UNAUTHORIZED : OCSP_RESP_TRY_LATER;
		fail_fill(j);
		job_finish(j);
		return;
	}
	struct responder *r = j->r;
	if (atomic_fetch_add(&r->signing, 1) >= r->cfg->sign_budget) {
		/* Signing is the scarce resource: beyond the budget, ask the client to retry
		 * rather than queue without bound. */
		atomic_fetch_sub(&r->signing, 1);
		atomic_fetch_add(&r->over_budget, 1);
		j->error = OCSP_RESP_TRY_LATER;
		fail_fill(j);
		job_finish(j);
		return;
	}
	j->work.data = j;
	if (uv_queue_work(j->loop, &j->work, sign_work, sign_done) != 0) {
		atomic_fetch_sub(&r->signing, 1);
		j->error = OCSP_RESP_INTERNAL_ERROR;
		fail_fill(j);
		job_finish(j);
	}
}

static void on_lookup(void *arg, enum store_error err, const struct store_record *rec)
{
	struct lookup_ctx *lc = arg;
	struct ocsp_job *j = lc->job;
	if (err != STORE_OK) {
		j->store_failed = true;
	} else {
		const struct responder_issuer *ri = j->iss[lc->i]->user;
		if (!ocsp_status_decide(rec, ri->not_issued, &j->singles[lc->i], &j->extended_revoke))
			j->unauthorized = true;
		j->version = rec->version;
	}
	if (--j->lookups_pending == 0)
		lookups_done(j);
}

static void start_lookups(struct ocsp_job *j)
{
	size_t n = j->n; /* the job may be gone when the last lookup returns */
	j->lookups_pending = n;
	for (size_t i = 0; i < n; i++) {
		const struct responder_issuer *ri = j->iss[i]->user;
		const struct ocsp_certid *id = &j->ids[i];
		struct store_query q = {
			.loop = j->loop,
			.issuer = ri->store_issuer,
			.serial = id->serial,
			.serial_len = id->serial_len,
		};
		store_lookup(ri->store, &q, on_lookup, &j->lctx[i]);
	}
}

/* ---- the shared tier ---- */

/*
 * An answer read from Redis is served only if it is one revd would have signed for this
 * CertID now: it parses, answers exactly this CertID, comes from this issuer's signer,
 * is current (and fresher than the one being refreshed), and is not older than a change
 * this instance heard of. Anything else is re-signed from the store.
 */
static struct cache_entry *accept_l2(struct ocsp_job *j, const uint8_t *v, size_t len,
                                     int64_t now)
{
	struct responder *r = j->r;
	const struct ocsp_issuer *is = j->iss[0];
	const struct ocsp_certid *id = &j->ids[0];
	struct l2_value lv;
	if (!l2_value_decode(v, len, &lv)) {
		l2_count_reject(r->l2);
		log_warn("redis: %s holds a value revd did not write; re-signing", j->l2key.s);
		return NULL;
	}
	if (lv.der == NULL)
		return NULL; /* a tombstone: the record changed and nobody has signed it yet */
	struct ocsp_parsed_response p;
	size_t rid_len = 0, alg_len = 0, certs_len = 0;
	/* Read once: a reload may replace it meanwhile (the old one stays alive). */
	const struct ocsp_signer *signer = is->signer;
	const uint8_t *rid = ocsp_signer_responder_id(signer, &rid_len);
	const uint8_t *alg = ocsp_signer_sigalg(signer, &alg_len);
	const uint8_t *certs = ocsp_signer_certs(signer, &certs_len);
	const char *why = NULL;
	if (ocsp_response_parse(lv.der, lv.der_len, &p) != OCSP_PARSE_OK)
		why = "does not parse";
	else if (p.status != OCSP_RESP_SUCCESSFUL || p.n_singles != 1 || p.has_nonce)
		why = "is not a single pre-signed answer";
	else if (!ocsp_parsed_matches(&p, id))
		why = "answers another CertID";
	else if (p.responder_id_len != rid_len || memcmp(p.responder_id, rid, rid_len) != 0)
		why = "comes from another responder";
	/* What is passed on without being interpreted must be exactly what revd writes. */
	else if (p.sigalg_len != alg_len || memcmp(p.sigalg, alg, alg_len) != 0 ||
	         (certs == NULL ? p.certs != NULL
	                        : p.certs == NULL || p.certs_len != certs_len ||
	                                  memcmp(p.certs, certs, certs_len) != 0))
		why = "is not signed the way this responder signs";
	else if (p.single.next_update == 0 || p.single.next_update <= now ||
	         p.single.this_update > now + 300 || lv.refresh_at > p.single.next_update)
		why = "is not current";
	else if (r->cfg->redis_verify == CONFIG_VERIFY_SIGNATURE &&
	         !ocsp_parsed_signed_by(&p, signer))
		why = "has a bad signature";
	if (why != NULL) {
		l2_count_reject(r->l2);
		log_warn("redis: the answer at %s %s; re-signing", j->l2key.s, why);
		return NULL;
	}
	unsigned variant = ocsp_certid_variant(id);
	if (l2_fenced(r->l2, is->id, variant, id->serial, id->serial_len, lv.version,
	              lv.produced_at, now))
		return NULL; /* older than a change: the new answer is on its way */
	if (j->kind == JOB_REFRESH && lv.refresh_at <= now)
		return NULL; /* as stale as the one being refreshed */
	l2_fence_release(r->l2, is->id, variant, id->serial, id->serial_len, lv.version);
	return make_entry(lv.der, lv.der_len, p.produced_at, p.single.next_update, lv.refresh_at);
}

static void l2_finish_hit(struct ocsp_job *j, struct cache_entry *e)
{
	j->entry = e;
	if (j->fill != NULL) {
		cache_complete(j->r->cache, j->fill, e);
		j->fill = NULL;
	}
	job_finish(j);
}

static void on_l2_poll(void *arg, enum l2_result res, const uint8_t *v, size_t len);
static void on_l2_lock(void *arg, enum l2_lock_result res);

static void on_wait_timer(uv_timer_t *t)
{
	struct ocsp_job *j = t->data;
	l2_get(j->r->l2, j->loop, &j->l2key, on_l2_poll, j);
}

/* Another instance holds the lock: look again shortly, up to the lock's lifetime. */
static void l2_wait(struct ocsp_job *j)
{
	if (!j->timer_on) {
		uv_timer_init(j->loop, &j->timer);
		j->timer_on = true;
	}
	j->timer.data = j;
	uv_timer_start(&j->timer, on_wait_timer, j->wait_delay, 0);
	j->wait_delay = j->wait_delay * 2 > 50 ? 50 : j->wait_delay * 2;
}

static void on_l2_poll(void *arg, enum l2_result res, const uint8_t *v, size_t len)
{
	struct ocsp_job *j = arg;
	if (res == L2_OK) {
		struct cache_entry *e = accept_l2(j, v, len, clock_now());
		if (e != NULL) {
			l2_finish_hit(j, e);
			return;
		}
	}
	if (res != L2_ERROR && uv_now(j->loop) < j->wait_until) {
		/* Still nothing: the holder may have given up; try for the lock again. */
		l2_lock(j->r->l2, j->loop, &j->l2key, on_l2_lock, j);
		return;
	}
	/* The other instance did not deliver in time (or Redis is gone): sign here. */
	start_lookups(j);
}

/* Holding the lock: another instance may have written the answer between our read and
 * our lock; read once more before signing. */
static void on_l2_locked_get(void *arg, enum l2_result res, const uint8_t *v, size_t len)
{
	struct ocsp_job *j = arg;
	if (res == L2_OK) {
		struct cache_entry *e = accept_l2(j, v, len, clock_now());
		if (e != NULL) {
			l2_finish_hit(j, e); /* job_finish releases the lock */
			return;
		}
	}
	start_lookups(j);
}

static void on_l2_lock(void *arg, enum l2_lock_result res)
{
	struct ocsp_job *j = arg;
	switch (res) {
	case L2_LOCKED:
		j->l2_locked = true;
		if (j->kind == JOB_RESIGN)
			start_lookups(j); /* a change: whatever Redis holds is to be replaced */
		else
			l2_get(j->r->l2, j->loop, &j->l2key, on_l2_locked_get, j);
		break;
	case L2_BUSY:
		if (j->kind == JOB_RESIGN) {
			job_finish(j); /* another instance is re-signing it */
			return;
		}
		if (j->wait_delay == 0) {
			j->wait_until = uv_now(j->loop) + j->r->cfg->redis_lock_ms;
			j->wait_delay = 2;
		}
		l2_wait(j);
		break;
	default:
		if (j->kind == JOB_RESIGN) {
			job_finish(j);
			return;
		}
		start_lookups(j);
		break;
	}
}

static void on_l2_get(void *arg, enum l2_result res, const uint8_t *v, size_t len)
{
	struct ocsp_job *j = arg;
	if (res == L2_OK) {
		struct cache_entry *e = accept_l2(j, v, len, clock_now());
		if (e != NULL) {
			l2_finish_hit(j, e);
			return;
		}
	}
	if (res == L2_ERROR) {
		/* Redis is down or slow: sign here, under the signing budget. */
		start_lookups(j);
		return;
	}
	l2_lock(j->r->l2, j->loop, &j->l2key, on_l2_lock, j);
}

static void l2_key_for(struct ocsp_job *j)
{
	const struct responder_issuer *ri = j->iss[0]->user;
	const struct ocsp_certid *id = &j->ids[0];
	l2_make_key(l2_prefix(j->r->l2), ri->tag, ocsp_certid_variant(id), id->serial, id->serial_len,
	            &j->l2key);
}

/* A fill or refresh of one CertID: the shared tier first, then the store and a signature. */
static void start_fill(struct ocsp_job *j)
{
	if (j->r->l2 == NULL) {
		start_lookups(j);
		return;
	}
	j->l2_write = true;
	l2_key_for(j);
	l2_get(j->r->l2, j->loop, &j->l2key, on_l2_get, j);
}

void responder_resign(struct responder *r, uv_loop_t *loop, const struct ocsp_issuer *is,
                      const struct store_serial *serial)
{
	int64_t now = clock_now();
	const struct responder_issuer *ri = is->user;
	for (int h = 0; h < OCSP_HASH_COUNT; h++) {
		for (int null = 0; null < 2; null++) {
			struct ocsp_certid id;
			ocsp_issuer_certid(is, (enum ocsp_hash)h, null, serial->bytes, serial->len, &id);
			struct l2_key k;
			l2_make_key(l2_prefix(r->l2), ri->tag, ocsp_certid_variant(&id), serial->bytes, serial->len,
			            &k);
			/* Every instance marks the old answers replaced (a no-op after the first)... */
			if (serial->version != 0) {
				struct l2_ref ref = {is->id, ocsp_certid_variant(&id), serial->bytes, serial->len};
				l2_put(r->l2, loop, &k, serial->version, now, now, now + r->cfg->validity,
				       NULL, 0, false, &ref);
			}
			/* ...and one re-signs those the pre-signer keeps. */
			if (!null || !(r->cfg->presign_hashes & (1u << h)))
				continue;
			struct ocsp_job *j = calloc(1, sizeof(*j) + sizeof(struct ocsp_certid) +
			                                   sizeof(struct ocsp_single) + sizeof(void *) +
			                                   sizeof(struct lookup_ctx) + serial->len);
			if (j == NULL)
				return;
			uint8_t *p = (uint8_t *)(j + 1);
			j->ids = (struct ocsp_certid *)p;
			p += sizeof(struct ocsp_certid);
			j->singles = (struct ocsp_single *)p;
			p += sizeof(struct ocsp_single);
			j->iss = (const struct ocsp_issuer **)p;
			p += sizeof(void *);
			j->lctx = (struct lookup_ctx *)p;
			p += sizeof(struct lookup_ctx);
			memcpy(p, serial->bytes, serial->len);
			id.serial = p;
			j->ids[0] = id;
			j->iss[0] = is;
			j->singles[0].certid = &j->ids[0];
			j->lctx[0].job = j;
			j->r = r;
			j->loop = loop;
			j->kind = JOB_RESIGN;
			j->n = 1;
			j->cacheable = true;
			j->l2_write = true;
			j->l2key = k;
			l2_lock(r->l2, loop, &k, on_l2_lock, j);
		}
	}
}

/* ---- waiting for another job's fill ---- */

static void wait_mail(struct http_mail *m)
{
	struct ocsp_job *j = (struct ocsp_job *)((char *)m - offsetof(struct ocsp_job, mail));
	if (j->entry != NULL || j->req == NULL) {
		job_finish(j);
		return;
	}
	/* The fill failed or was not kept (a not-issued serial answered unauthorized, the
	 * signing budget, an error): decide for this request on its own. */
	j->kind = JOB_LIVE;
	j->cacheable = true;
	start_lookups(j);
}

static void wait_done(struct cache_waiter *w, struct cache_entry *e)
{
	/* Runs on the thread that completed the fill; the job belongs to its own loop. */
	struct ocsp_job *j = (struct ocsp_job *)((char *)w - offsetof(struct ocsp_job, waiter));
	j->entry = e;
	j->mail.run = wait_mail;
	http_worker_post(j->worker, &j->mail);
}

/* ---- the request ---- */

/* Answers from a cache hit; on HIT_REFRESH also starts the background re-sign. */
static void serve_hit(struct http_request *req, struct responder *r, enum cache_result cr,
                      struct cache_entry *hit, struct cache_fill *fill,
                      const struct ocsp_request *oreq, const uint8_t *der, size_t len,
                      const struct ocsp_issuer *const *iss, int64_t now)
{
	/* The refresh job copies the request first: once answered, the connection may
	 * reuse the buffers der points into. */
	struct ocsp_job *rj = NULL;
	if (cr == CACHE_HIT_REFRESH) {
		rj = job_new(r, NULL, req->worker, JOB_REFRESH, oreq, der, len, iss);
		if (rj == NULL)
			cache_complete(r->cache, fill, NULL);
	}
	http_count_ocsp(req->worker, OCSP_RESP_SUCCESSFUL);
	http_respond_entry(req, hit, now);
	cache_entry_unref(hit);
	if (rj != NULL) {
		rj->fill = fill;
		rj->cacheable = true;
		start_fill(rj);
	}
}

static void handle_ocsp(struct http_request *req, const uint8_t *der, size_t len)
{
	struct responder *r = req->worker->server->responder;
	const struct config *cfg = r->cfg;
	struct ocsp_request oreq;
	enum ocsp_decode_result dr = ocsp_request_decode(der, len, cfg->max_certids, &oreq);
	if (dr != OCSP_DECODE_OK) {
		log_debug("malformed OCSP request (%zu bytes): %s", len, ocsp_decode_result_str(dr));
		respond_error(req, OCSP_RESP_MALFORMED);
		return;
	}
	const struct ocsp_issuer *iss[OCSP_MAX_CERTIDS] = {NULL};
	for (size_t i = 0; i < oreq.n_certids; i++) {
		iss[i] = ocsp_issuers_find(r->issuers, &oreq.certids[i]);
		/* One response has one signer: every CertID must be answerable by the first's. */
		if (iss[i] == NULL || iss[i]->signer != iss[0]->signer) {
			respond_error(req, OCSP_RESP_UNAUTHORIZED);
			return;
		}
	}
	bool live_nonce = oreq.has_nonce && cfg->nonce == CONFIG_NONCE_SIGN;
	if (oreq.n_certids > 1 || live_nonce) {
		struct ocsp_job *j = job_new(r, req, req->worker, JOB_LIVE, &oreq, der, len, iss);
		if (j == NULL) {
			respond_error(req, OCSP_RESP_INTERNAL_ERROR);
			return;
		}
		if (live_nonce) {
			j->nonce_ext = j->der + (oreq.nonce_ext - der);
			j->nonce_ext_len = oreq.nonce_ext_len;
		}
		j->cacheable = !live_nonce;
		http_async(req, j, job_detach);
		start_lookups(j);
		return;
	}

	/* One CertID, no nonce to echo: the pre-signed answer (RFC 9919). */
	struct cache_key key;
	memset(&key, 0, sizeof(key));
	make_key(&key, iss[0], &oreq.certids[0]);
	int64_t now = clock_now();
	struct cache_entry *hit = NULL;
	struct cache_fill *fill = NULL;
	enum cache_result cr = cache_get(r->cache, &key, now, &hit, &fill, NULL);
	if (cr == CACHE_HIT || cr == CACHE_HIT_REFRESH) {
		serve_hit(req, r, cr, hit, fill, &oreq, der, len, iss, now);
		return;
	}
	struct ocsp_job *j = job_new(r, req, req->worker, JOB_FILL, &oreq, der, len, iss);
	if (j == NULL) {
		if (cr == CACHE_MISS_FILL)
			cache_complete(r->cache, fill, NULL);
		respond_error(req, OCSP_RESP_INTERNAL_ERROR);
		return;
	}
	j->key = key;
	j->cacheable = true;
	if (cr == CACHE_MISS_WAIT) {
		/* Someone is filling: ask again, this time queuing behind them. */
		cr = cache_get(r->cache, &key, now, &hit, &fill, &j->waiter);
		if (cr == CACHE_HIT || cr == CACHE_HIT_REFRESH) {
			job_free(j);
			serve_hit(req, r, cr, hit, fill, &oreq, der, len, iss, now);
			return;
		}
	}
	http_async(req, j, job_detach);
	switch (cr) {
	case CACHE_MISS_FILL:
		j->fill = fill;
		start_fill(j);
		break;
	case CACHE_MISS_WAIT:
		j->kind = JOB_WAIT;
		j->waiter.done = wait_done;
		break;
	default: /* CACHE_MISS_FULL: answer without keeping it */
		j->kind = JOB_LIVE;
		start_lookups(j);
		break;
	}
}

/* GET /crl/FILE: a published CRL. (No OCSP GET path starts so: a base64 request
 * begins with 'M'.) */
static void handle_crl(struct http_request *req, const char *file)
{
	struct responder *r = req->worker->server->responder;
	int64_t max_age = 0;
	size_t len = strlen(file);
	const char *q = strchr(file, '?');
	if (q != NULL)
		len = (size_t)(q - file); /* a query (a cache buster) names the same file */
	struct cache_entry *e = crl_publisher_find(r->crl, file, len, clock_now(), &max_age);
	if (e == NULL) {
		http_respond_status(req, 404, "no such CRL");
		return;
	}
	http_respond_file(req, e, max_age);
	cache_entry_unref(e);
}

static void handle_get(struct http_request *req)
{
	const struct config *cfg = req->worker->server->cfg;
	const char *prefix = cfg->path ? cfg->path : "/";
	size_t pl = strlen(prefix);
	const char *p = req->path;
	/* An absolute-form target (GET http://host/... from a proxy-minded client). */
	if (strncmp(p, "http://", 7) == 0) {
		const char *slash = strchr(p + 7, '/');
		p = slash ? slash : "/";
	}
	if (strncmp(p, "/crl/", 5) == 0) {
		handle_crl(req, p + 5);
		return;
	}
	/* Probes and metrics (no base64 OCSP request is spelled so). */
	if (strcmp(p, "/metrics") == 0) {
		struct buf b;
		/* 4096 CRLs at 8 lines each fit; a cut page is refused, not served. */
		buf_init(&b, 16 << 20);
		http_metrics(req->worker->server, &b);
		if (b.failed) {
			buf_free(&b);
			http_respond_status(req, 500, "the metrics do not fit in 16 MiB");
			return;
		}
		size_t len;
		uint8_t *body = buf_steal(&b, &len);
		http_respond_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
		return;
	}
	if (strcmp(p, "/healthz") == 0) {
		http_respond_status(req, 200, "alive");
		return;
	}
	if (strcmp(p, "/readyz") == 0) {
		struct responder *r = req->worker->server->responder;
		if (responder_ready(r))
			http_respond_status(req, 200, "ready");
		else
			http_respond_status(req, 503, "not ready: a status store cannot answer yet "
			                              "(PostgreSQL unreachable or an issuer not matched)");
		return;
	}
	if (strncmp(p, prefix, pl) != 0) {
		http_respond_status(req, 404, "not an OCSP path");
		return;
	}
	p += pl;
	if (pl > 1 && prefix[pl - 1] != '/') {
		if (*p != '/') {
			http_respond_status(req, 404, "not an OCSP path");
			return;
		}
		p++;
	}
	size_t len = strlen(p);
	if (len == 0) {
		http_respond_status(req, 404, "GET needs a base64 OCSP request after the path");
		return;
	}
	/* The request is base64 with its '/' kept: slashes are data, never merged. */
	uint8_t stack[4096];
	size_t cap = len / 4 * 3 + 3;
	uint8_t *der = cap <= sizeof(stack) ? stack : malloc(cap);
	if (der == NULL) {
		respond_error(req, OCSP_RESP_INTERNAL_ERROR);
		return;
	}
	long n = ocsp_get_path_decode(p, len, der, cap);
	if (n < 0) {
		log_debug("GET path is not base64 (%zu bytes)", len);
		respond_error(req, OCSP_RESP_MALFORMED);
	} else {
		handle_ocsp(req, der, (size_t)n);
	}
	if (der != stack)
		free(der);
}

void http_route(struct http_request *req)
{
	switch (req->method) {
	case HTTP_GET:
	case HTTP_HEAD:
		handle_get(req);
		break;
	case HTTP_POST:
		handle_ocsp(req, req->body, req->body_len);
		break;
	default:
		http_respond_status(req, 405, "OCSP takes GET and POST");
		break;
	}
}
