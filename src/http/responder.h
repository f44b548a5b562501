/*
 * The OCSP responder as the HTTP layer runs it: issuers, their status stores and
 * signers, the in-process cache, and the signing budget. Built from the configuration.
 */
#ifndef REVD_HTTP_RESPONDER_H
#define REVD_HTTP_RESPONDER_H

#include <stdatomic.h>
#include <uv.h>

#include "cache/l1.h"
#include "core/config.h"
#include "db/store.h"
#include "ocsp/issuers.h"
#include "ocsp/status.h"

struct responder_issuer {
	struct store *store; /* borrowed from responder->stores */
	struct store_issuer *store_issuer;
	enum ocsp_not_issued not_issued;
};

struct responder {
	const struct config *cfg;
	struct ocsp_issuers *issuers;
	struct responder_issuer *per_issuer; /* by issuer id */
	struct store **stores;               /* owned, one per distinct index file */
	size_t n_stores;
	struct cache *cache;
	_Atomic unsigned signing; /* signing jobs queued or running */
	_Atomic uint64_t signed_total;
	_Atomic uint64_t over_budget;
};

/* Loads every issuer's CA certificates, signer and index. NULL with a message on failure. */
struct responder *responder_new(const struct config *cfg, char *err, size_t errlen);
void responder_free(struct responder *r);

/* Watches the index files from loop; a change drops the affected cached answers. */
int responder_watch(struct responder *r, uv_loop_t *loop);
void responder_unwatch(struct responder *r);

/* Every store can answer now (PostgreSQL reached and every issuer matched). */
bool responder_ready(struct responder *r);

/* A worker loop is stopping: stores close what they keep on it. On that loop's thread. */
void responder_loop_done(struct responder *r, uv_loop_t *loop);

/* Drops the cached answers for serial under every issuer that reads store s. */
void responder_invalidate(struct responder *r, struct store *s, const struct store_serial *serial);

#endif
