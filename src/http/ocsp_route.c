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
#include "http/responder.h"
#include "ocsp/request.h"
#include "ocsp/response.h"
#include "ocsp/status.h"

enum job_kind {
	JOB_FILL,    /* signs one answer for the cache, and answers its request with it */
	JOB_REFRESH, /* re-signs a cached answer in the background; no request */
	JOB_WAIT,    /* waits for another job's fill */
	JOB_LIVE,    /* signs for this request alone (nonce, several CertIDs, cache full) */
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
	struct http_worker *worker;
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
};

static void respond_error(struct http_request *req, enum ocsp_resp_status st)
{
	size_t len;
	const uint8_t *body = ocsp_response_error(st, &len);
	http_respond_ocsp(req, (uint8_t *)body, len, false, 0, false);
}

static uint8_t key_variant(const struct ocsp_certid *id)
{
	return (uint8_t)(id->hash * 2 + (id->hash_params_null ? 1 : 0));
}

static void make_key(struct cache_key *k, const struct ocsp_issuer *is, const struct ocsp_certid *id)
{
	k->issuer = (uint16_t)is->id;
	k->variant = key_variant(id);
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

static void job_free(struct ocsp_job *j)
{
	cache_entry_unref(j->entry);
	free(j->body);
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
	struct http_request *req = j->req;
	if (req != NULL) {
		if (j->entry != NULL) {
			http_respond_entry(req, j->entry, clock_now());
		} else if (j->body != NULL) {
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
	if (!ocsp_response_build(&spec, &out)) {
		buf_free(&out);
		return;
	}
	j->next_update = next;
	if (j->kind == JOB_LIVE) {
		j->body = buf_steal(&out, &j->body_len);
		return;
	}
	j->entry = make_entry(out.data, out.len, now, next, now + cfg->validity / 2);
	buf_free(&out);
}

static void sign_done(uv_work_t *w, int status)
{
	struct ocsp_job *j = w->data;
	atomic_fetch_sub(&j->r->signing, 1);
	if (j->entry == NULL && j->body == NULL) {
		log_error("signing an OCSP response for issuer %s failed", j->iss[0]->name);
		j->error = OCSP_RESP_INTERNAL_ERROR;
	} else {
		atomic_fetch_add(&j->r->signed_total, 1);
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
	if (uv_queue_work(&j->worker->loop, &j->work, sign_work, sign_done) != 0) {
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
			.loop = &j->worker->loop,
			.issuer = ri->store_issuer,
			.serial = id->serial,
			.serial_len = id->serial_len,
		};
		store_lookup(ri->store, &q, on_lookup, &j->lctx[i]);
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
	http_respond_entry(req, hit, now);
	cache_entry_unref(hit);
	if (rj != NULL) {
		rj->fill = fill;
		rj->cacheable = true;
		start_lookups(rj);
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
		start_lookups(j);
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
