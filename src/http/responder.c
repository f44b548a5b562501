#include "http/responder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pem.h"
#include "db/index.h"
#include "db/pg.h"
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

static int add_issuer(struct responder *r, const struct config_issuer *ci, char *err,
                      size_t errlen)
{
	int ret = -1;
	char e[256] = "";
	STACK_OF(X509) *cas = NULL, *signer_certs = NULL, *other = NULL;
	EVP_PKEY *key = NULL;
	struct ocsp_signer *signer = NULL;

	cas = pem_load_certs(ci->ca, e, sizeof(e));
	if (cas == NULL)
		goto out;
	key = pem_load_key(ci->signer_key, e, sizeof(e));
	if (key == NULL)
		goto out;
	if (ci->signer_cert != NULL) {
		signer_certs = pem_load_certs(ci->signer_cert, e, sizeof(e));
		if (signer_certs == NULL)
			goto out;
	}
	if (ci->signer_other != NULL && (other = pem_load_certs(ci->signer_other, e, sizeof(e))) == NULL)
		goto out;
	struct store *store = store_for(r, ci, e, sizeof(e));
	if (store == NULL)
		goto out;
	int rid = ci->responder_id >= 0 ? ci->responder_id : r->cfg->responder_id;
	int policy = ci->not_issued >= 0 ? ci->not_issued : r->cfg->not_issued;
	X509 *signer_cert = signer_certs ? sk_X509_value(signer_certs, 0) : sk_X509_value(cas, 0);
	/* A delegated signer's certificate travels in the response; the CA's own does not need to. */
	bool include = signer_certs != NULL && ci->include_signer_cert;
	signer = ocsp_signer_new(signer_cert, key, other, include,
	                         rid == CONFIG_RID_NAME ? OCSP_RID_BY_NAME : OCSP_RID_BY_KEY, e,
	                         sizeof(e));
	if (signer == NULL)
		goto out;
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
		is->user = ri;
		char subject[256];
		X509_NAME_oneline(X509_get_subject_name(ca), subject, sizeof(subject));
		log_info("issuer %s: %s, signed by %s (%s), status from %s", name, subject,
		         is->delegated ? "a delegated responder" : "the CA itself",
		         ocsp_signer_describe(signer), store->name);
	}
	ret = 0;
out:
	if (ret != 0)
		snprintf(err, errlen, "[issuer %s]: %s", ci->name, e);
	ocsp_signer_free(signer);
	EVP_PKEY_free(key);
	sk_X509_pop_free(cas, X509_free);
	sk_X509_pop_free(signer_certs, X509_free);
	sk_X509_pop_free(other, X509_free);
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
	ocsp_issuers_free(r->issuers);
	for (size_t i = 0; i < r->n_stores; i++)
		store_free(r->stores[i]);
	free(r->stores);
	free(r->per_issuer);
	cache_free(r->cache);
	free(r);
}

void responder_invalidate(struct responder *r, struct store *s, const struct store_serial *serial)
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
	}
}

static void on_store_change(void *arg, struct store *s, const struct store_serial *serials,
                            size_t n)
{
	struct responder *r = arg;
	if (serials == NULL) {
		cache_clear(r->cache);
		return;
	}
	/* The caller may report a serial several times (a notification, then a sweep). */
	for (size_t i = 0; i < n; i++)
		responder_invalidate(r, s, &serials[i]);
}

static bool is_pg(const struct store *s)
{
	return strcmp(s->ops->kind, "postgres") == 0;
}

int responder_watch(struct responder *r, uv_loop_t *loop)
{
	for (size_t i = 0; i < r->n_stores; i++) {
		struct store *s = r->stores[i];
		int rc = is_pg(s) ? store_pg_watch(s, loop, on_store_change, r)
		                  : store_index_watch(s, loop, r->cfg->index_poll_ms, on_store_change, r);
		if (rc != 0)
			return -1;
	}
	return 0;
}

void responder_unwatch(struct responder *r)
{
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
}
