#include "http/responder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pem.h"
#include "db/index.h"
#include "db/pg.h"
#include "core/clock.h"
#include "core/hash.h"
#include "http/presign.h"
#include "ocsp/request.h"

/* The store an issuer reads: one per index file, one PostgreSQL store for all. */
static struct store *store_for(struct responder *r, const struct config_issuer *ci, char *err,
                               size_t errlen)
{
	bool pg = config_issuer_store(r->cfg, ci) == CONFIG_STORE_POSTGRES;
	const char *name = pg ? "postgres" : ci->index;
	for (size_t i = 0; i < r->n_stores; i++)
		if (strcmp(r->stores[i]->name, name) == 0 &&
		    (strcmp(r->stores[i]->ops->kind, "postgres") == 0) == pg)
			return r->stores[i];
	struct store **ns = realloc(r->stores, (r->n_stores + 1) * sizeof(*ns));
	if (ns == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->stores = ns;
	struct store *s;
	if (pg) {
		struct pg_options o = {
			.dsn = r->cfg->pg_dsn,
			.lookup_timeout_ms = r->cfg->pg_lookup_timeout_ms,
			.sweep_interval_ms = r->cfg->pg_sweep_interval_ms,
		};
		s = store_pg_new(&o, err, errlen);
	} else {
		s = store_index_open(ci->index, r->cfg->index_max_bytes, err, errlen);
	}
	if (s == NULL)
		return NULL;
	r->stores[r->n_stores++] = s;
	return s;
}

/* CRLs for the issuer's (first) CA certificate, signed with the CA's key: crl_key, or
 * the OCSP signer's key when the CA signs its own answers. */
static int add_crls(struct responder *r, const struct config_issuer *ci, X509 *ca,
                    EVP_PKEY *signer_key, const struct responder_issuer *ri, char *err,
                    size_t errlen)
{
	if (r->crl == NULL && (r->crl = crl_publisher_new(r->cfg, err, errlen)) == NULL)
		return -1;
	EVP_PKEY *key = ci->crl_import ? NULL : signer_key;
	if (ci->crl_key != NULL && (key = pem_load_key(ci->crl_key, err, errlen)) == NULL)
		return -1;
	int rc = crl_publisher_add(r->crl, ci, ci->db_issuer ? ci->db_issuer : ci->name, ca, key,
	                           ri->store, ri->store_issuer, err, errlen);
	if (key != signer_key && key != NULL)
		EVP_PKEY_free(key);
	return rc;
}

/* The OCSP signer a section describes: its key, its delegated certificate (else the CA
 * signs: ca0), further certificates. *key_out: the key (a new reference), if wanted. */
static struct ocsp_signer *make_signer(const struct config *cfg, const struct config_issuer *ci,
                                       X509 *ca0, EVP_PKEY **key_out, char *err, size_t errlen)
{
	STACK_OF(X509) *signer_certs = NULL, *other = NULL;
	struct ocsp_signer *signer = NULL;
	EVP_PKEY *key = pem_load_key(ci->signer_key, err, errlen);
	if (key == NULL)
		goto out;
	if (ci->signer_cert != NULL &&
	    (signer_certs = pem_load_certs(ci->signer_cert, err, errlen)) == NULL)
		goto out;
	if (ci->signer_other != NULL &&
	    (other = pem_load_certs(ci->signer_other, err, errlen)) == NULL)
		goto out;
	int rid = ci->responder_id >= 0 ? ci->responder_id : cfg->responder_id;
	X509 *signer_cert = signer_certs ? sk_X509_value(signer_certs, 0) : ca0;
	/* A delegated signer's certificate travels in the response; the CA's own does not need to. */
	bool include = signer_certs != NULL && ci->include_signer_cert;
	signer = ocsp_signer_new(signer_cert, key, other, include,
	                         rid == CONFIG_RID_NAME ? OCSP_RID_BY_NAME : OCSP_RID_BY_KEY, err,
	                         errlen);
out:
	if (signer != NULL && key_out != NULL)
		*key_out = key;
	else
		EVP_PKEY_free(key);
	sk_X509_pop_free(signer_certs, X509_free);
	sk_X509_pop_free(other, X509_free);
	return signer;
}

static int add_issuer(struct responder *r, const struct config_issuer *ci, char *err,
                      size_t errlen)
{
	int ret = -1;
	char e[256] = "";
	STACK_OF(X509) *cas = NULL;
	EVP_PKEY *key = NULL;
	struct ocsp_signer *signer = NULL;

	cas = pem_load_certs(ci->ca, e, sizeof(e));
	if (cas == NULL)
		goto out;
	signer = make_signer(r->cfg, ci, sk_X509_value(cas, 0), &key, e, sizeof(e));
	if (signer == NULL)
		goto out;
	struct store *store = store_for(r, ci, e, sizeof(e));
	if (store == NULL)
		goto out;
	int policy = ci->not_issued >= 0 ? ci->not_issued : r->cfg->not_issued;
	int n = sk_X509_num(cas);
	for (int i = 0; i < n; i++) {
		char name[160];
		if (n == 1)
			snprintf(name, sizeof(name), "%s", ci->name);
		else
			snprintf(name, sizeof(name), "%s#%d", ci->name, i + 1);
		X509 *ca = sk_X509_value(cas, i);
		struct ocsp_issuer *is = ocsp_issuers_add(r->issuers, name, ca, signer, e, sizeof(e));
		if (is == NULL)
			goto out;
		struct responder_issuer *ri = &r->per_issuer[is->id];
		ri->store = store;
		unsigned char *ca_der = NULL;
		int ca_len = i2d_X509(ca, &ca_der);
		if (ca_len <= 0) {
			snprintf(e, sizeof(e), "cannot encode the CA certificate");
			goto out;
		}
		ri->store_issuer = store_issuer(store, ci->db_issuer ? ci->db_issuer : ci->name,
		                                ca_der, (size_t)ca_len, e, sizeof(e));
		OPENSSL_free(ca_der);
		if (ri->store_issuer == NULL)
			goto out;
		ri->not_issued = (enum ocsp_not_issued)policy;
		/* The CA certificate's SHA-256, shortened: stable across instances and restarts. */
		uint8_t md[32];
		unsigned mdlen = 0;
		if (X509_digest(ca, EVP_sha256(), md, &mdlen) != 1) {
			snprintf(e, sizeof(e), "cannot hash the CA certificate");
			goto out;
		}
		for (int b = 0; b < 10; b++)
			snprintf(ri->tag + 2 * b, 3, "%02x", md[b]);
		is->user = ri;
		char subject[256];
		X509_NAME_oneline(X509_get_subject_name(ca), subject, sizeof(subject));
		log_info("issuer %s: %s, signed by %s (%s), status from %s", name, subject,
		         is->delegated ? "a delegated responder" : "the CA itself",
		         ocsp_signer_describe(signer), store->name);
		if (i == 0 && ci->crl && add_crls(r, ci, ca, key, ri, e, sizeof(e)) != 0)
			goto out;
	}
	ret = 0;
out:
	if (ret != 0)
		snprintf(err, errlen, "[issuer %s]: %s", ci->name, e);
	ocsp_signer_free(signer);
	EVP_PKEY_free(key);
	sk_X509_pop_free(cas, X509_free);
	return ret;
}

/* Is is one of section ci's CA certificates ("NAME", or "NAME#K" for several)? */
static bool in_section(const struct ocsp_issuer *is, const struct config_issuer *ci)
{
	size_t n = strlen(ci->name);
	return strncmp(is->name, ci->name, n) == 0 && (is->name[n] == 0 || is->name[n] == '#');
}

int responder_reload_signers(struct responder *r, const struct config *nc, char *err,
                             size_t errlen)
{
	const struct config *oc = r->cfg;
	size_t n = oc->n_issuers, count = ocsp_issuers_count(r->issuers);
	struct ocsp_signer **fresh = calloc(n ? n : 1, sizeof(*fresh));
	char e[256] = "";
	int ret = -1;
	if (fresh == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (nc->n_issuers != n) {
		snprintf(err, errlen, "issuer sections were added or removed: that needs a restart");
		goto out;
	}
	/* Every new signer made and checked before any is put to use: all or nothing. */
	for (size_t i = 0; i < n; i++) {
		const struct config_issuer *oi = &oc->issuers[i], *ni = NULL;
		for (size_t k = 0; k < n && ni == NULL; k++)
			if (strcmp(nc->issuers[k].name, oi->name) == 0)
				ni = &nc->issuers[k];
		if (ni == NULL || strcmp(ni->ca, oi->ca) != 0) {
			snprintf(err, errlen, "[issuer %s]: %s: that needs a restart", oi->name,
			         ni == NULL ? "removed" : "its ca changed");
			goto out;
		}
		X509 *ca0 = NULL;
		for (size_t k = 0; k < count && ca0 == NULL; k++) {
			struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, k);
			if (in_section(is, oi))
				ca0 = is->cert;
		}
		if (ca0 == NULL || (fresh[i] = make_signer(nc, ni, ca0, NULL, e, sizeof(e))) == NULL) {
			snprintf(err, errlen, "[issuer %s]: %s", oi->name, e);
			goto out;
		}
		for (size_t k = 0; k < count; k++) {
			struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, k);
			bool delegated;
			if (in_section(is, oi) &&
			    !ocsp_signer_can_answer_for(fresh[i], is->cert, &delegated, e, sizeof(e))) {
				snprintf(err, errlen, "[issuer %s]: %s", oi->name, e);
				goto out;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < count; k++) {
			struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, k);
			if (in_section(is, &oc->issuers[i]) &&
			    !ocsp_issuers_replace_signer(r->issuers, is, fresh[i], e, sizeof(e)))
				log_error("issuer %s: keeps its signer: %s", is->name, e);
		}
	/* Answers signed by the old signers are not served from memory again; those in
	 * Redis are refused (they are not signed the way this responder now signs) and
	 * re-signed on demand. */
	cache_clear(r->cache);
	for (size_t k = 0; k < count; k++) {
		const struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, k);
		log_info("issuer %s: now signed by %s (%s)", is->name,
		         is->delegated ? "a delegated responder" : "the CA itself",
		         ocsp_signer_describe(is->signer));
	}
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		ocsp_signer_free(fresh[i]);
	free(fresh);
	return ret;
}

struct responder *responder_new(const struct config *cfg, char *err, size_t errlen)
{
	struct responder *r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto oom;
	r->cfg = cfg;
	r->issuers = ocsp_issuers_new();
	r->per_issuer = calloc(OCSP_MAX_ISSUERS, sizeof(*r->per_issuer));
	r->cache = cache_new(cfg->cache_entries);
	if (r->issuers == NULL || r->per_issuer == NULL || r->cache == NULL)
		goto oom;
	for (size_t i = 0; i < cfg->n_issuers; i++)
		if (add_issuer(r, &cfg->issuers[i], err, errlen) != 0)
			goto fail;
	if (cfg->redis_address != NULL && (r->l2 = l2_new(cfg)) == NULL)
		goto oom;
	return r;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	responder_free(r);
	return NULL;
}

void responder_free(struct responder *r)
{
	if (r == NULL)
		return;
	crl_publisher_free(r->crl);
	ocsp_issuers_free(r->issuers);
	for (size_t i = 0; i < r->n_stores; i++)
		store_free(r->stores[i]);
	free(r->stores);
	free(r->per_issuer);
	cache_free(r->cache);
	l2_free(r->l2);
	free(r);
}

const double responder_sign_buckets[RESPONDER_SIGN_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1};

void responder_note_sign(struct responder *r, uint64_t ns)
{
	size_t i = 0;
	while (i < RESPONDER_SIGN_BUCKETS && (double)ns > responder_sign_buckets[i] * 1e9)
		i++;
	atomic_fetch_add_explicit(&r->sign_hist[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->sign_ns_total, ns, memory_order_relaxed);
}

int64_t responder_refresh_at(const struct responder *r, int64_t produced, int64_t next_update,
                             const uint8_t *serial, size_t serial_len)
{
	int64_t validity = next_update - produced;
	int64_t due = produced + validity / 2;
	/* Baseline Requirements 4.9.10: with 16 hours or more of validity, a new answer at
	 * least 8 hours before nextUpdate and at most 4 days after thisUpdate. */
	if (r->cfg->refresh == CONFIG_REFRESH_CABF && validity >= 16 * 3600) {
		due = next_update - 8 * 3600;
		if (due > produced + 4 * 86400)
			due = produced + 4 * 86400;
	}
	int64_t spread = validity / 8;
	if (spread > 0)
		due -= (int64_t)(hash_siphash13(hash_process_key(), serial, serial_len) %
		                 (uint64_t)spread);
	return due > produced ? due : produced;
}

void responder_invalidate(struct responder *r, struct store *s, const struct store_serial *serial,
                          bool resign)
{
	size_t n = ocsp_issuers_count(r->issuers);
	for (size_t i = 0; i < n; i++) {
		struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, i);
		if (r->per_issuer[is->id].store != s)
			continue;
		struct cache_key k;
		memset(&k, 0, sizeof(k));
		k.issuer = (uint16_t)is->id;
		k.serial_len = serial->len;
		memcpy(k.serial, serial->bytes, serial->len);
		/* Every CertID hash algorithm, with and without NULL parameters. */
		for (unsigned v = 0; v < 2 * OCSP_HASH_COUNT; v++) {
			k.variant = (uint8_t)v;
			cache_invalidate(r->cache, &k);
		}
		if (r->l2 != NULL) {
			/* The shared copies: refused here from now on, replaced there by one
			 * instance. A fill already running cannot bring an old answer back: the L1
			 * drops fills that straddle an invalidation, and the fence refuses it. */
			l2_fence(r->l2, is->id, serial->bytes, serial->len, serial->version, clock_now());
			if (resign && r->watch_loop != NULL)
				responder_resign(r, r->watch_loop, is, serial);
		}
	}
}

#define RESIGN_BATCH_MAX 1024

static void on_store_change(void *arg, struct store *s, const struct store_serial *serials,
                            size_t n)
{
	struct responder *r = arg;
	crl_publisher_changed(r->crl, s, serials, n);
	if (serials == NULL) {
		cache_clear(r->cache);
		if (r->l2 != NULL)
			l2_fence_all(r->l2, clock_now());
	} else {
		/* The caller may report a serial several times (a notification, then a sweep).
		 * A few changes are re-signed at once; a bulk change is left to the pre-signer's
		 * round (the fences keep old answers from being served meanwhile). */
		for (size_t i = 0; i < n; i++)
			responder_invalidate(r, s, &serials[i], n <= RESIGN_BATCH_MAX);
	}
	if (r->change_hook != NULL)
		r->change_hook(r->change_hook_arg, s, serials, n);
}

struct store *responder_store_of(struct responder *r, const char *section)
{
	size_t len = strlen(section), n = ocsp_issuers_count(r->issuers);
	for (size_t i = 0; i < n; i++) {
		struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, i);
		/* A section with several CA certificates names them NAME#1, NAME#2, ... */
		if (strncmp(is->name, section, len) == 0 && (is->name[len] == 0 || is->name[len] == '#'))
			return r->per_issuer[is->id].store;
	}
	return NULL;
}

static bool is_pg(const struct store *s)
{
	return strcmp(s->ops->kind, "postgres") == 0;
}

static bool is_pg(const struct store *s);

void responder_loop_start(struct responder *r, uv_loop_t *loop)
{
	if (r->l2 != NULL)
		l2_conn(r->l2, loop);
	for (size_t i = 0; i < r->n_stores; i++)
		if (is_pg(r->stores[i]))
			store_pg_warm(r->stores[i], loop);
}

/*
 * Changes heard while Redis was down (or whose tombstones it lost) are written again
 * once it is back, so that no instance, not even one started later, is served an
 * answer older than the change.
 */
static void on_repair_tick(uv_timer_t *t)
{
	struct responder *r = t->data;
	struct rds *c = l2_conn(r->l2, r->watch_loop);
	if (c == NULL || !rds_up(c))
		return;
	struct l2_unwritten u[256];
	int64_t now = clock_now();
	size_t n = l2_fences_unwritten(r->l2, u, 256, now);
	for (size_t i = 0; i < n; i++) {
		struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, u[i].issuer);
		if (is == NULL)
			continue;
		const struct responder_issuer *ri = is->user;
		for (unsigned v = 0; v < L2_VARIANTS; v++) {
			if (!(u[i].missing & (1u << v)))
				continue;
			struct l2_key k;
			l2_make_key(l2_prefix(r->l2), ri->tag, v, u[i].serial.bytes, u[i].serial.len, &k);
			struct l2_ref ref = {u[i].issuer, v, u[i].serial.bytes, u[i].serial.len};
			l2_put(r->l2, r->watch_loop, &k, u[i].version, now, now, now + r->cfg->validity,
			       NULL, 0, false, &ref);
		}
	}
}

int responder_watch(struct responder *r, uv_loop_t *loop)
{
	r->watch_loop = loop;
	responder_loop_start(r, loop);
	if (r->l2 != NULL) {
		r->repair = malloc(sizeof(*r->repair));
		if (r->repair == NULL)
			return -1;
		uv_timer_init(loop, r->repair);
		r->repair->data = r;
		uv_timer_start(r->repair, on_repair_tick, 1000, 1000);
	}
	if (r->l2 != NULL && r->cfg->presign) {
		r->presigner = presigner_start(r);
		if (r->presigner == NULL)
			return -1;
	}
	for (size_t i = 0; i < r->n_stores; i++) {
		struct store *s = r->stores[i];
		int rc = is_pg(s) ? store_pg_watch(s, loop, on_store_change, r)
		                  : store_index_watch(s, loop, r->cfg->index_poll_ms, on_store_change, r);
		if (rc != 0)
			return -1;
	}
	char err[256];
	if (r->crl != NULL && crl_publisher_start(r->crl, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

void responder_unwatch(struct responder *r)
{
	crl_publisher_stop(r->crl);
	presigner_stop(r->presigner);
	r->presigner = NULL;
	if (r->repair != NULL) {
		uv_close((uv_handle_t *)r->repair, (uv_close_cb)free);
		r->repair = NULL;
	}
	if (r->l2 != NULL && r->watch_loop != NULL)
		l2_loop_done(r->l2, r->watch_loop);
	/* responder_watch started this loop as a serving one too (responder_loop_start):
	 * its lookup connections go with it, or the loop never ends. */
	if (r->watch_loop != NULL)
		for (size_t i = 0; i < r->n_stores; i++)
			store_loop_done(r->stores[i], r->watch_loop);
	r->watch_loop = NULL;
	for (size_t i = 0; i < r->n_stores; i++) {
		if (is_pg(r->stores[i]))
			store_pg_unwatch(r->stores[i]);
		else
			store_index_unwatch(r->stores[i]);
	}
}

bool responder_ready(struct responder *r)
{
	for (size_t i = 0; i < r->n_stores; i++) {
		if (!is_pg(r->stores[i]))
			continue;
		struct store_pg_stats ps;
		store_pg_get_stats(r->stores[i], &ps);
		if (!ps.feed_up || !ps.issuers_resolved)
			return false;
	}
	return true;
}

void responder_loop_done(struct responder *r, uv_loop_t *loop)
{
	for (size_t i = 0; i < r->n_stores; i++)
		store_loop_done(r->stores[i], loop);
	if (r->l2 != NULL)
		l2_loop_done(r->l2, loop);
}
