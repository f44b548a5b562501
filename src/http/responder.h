/*
 * The OCSP responder as the HTTP layer runs it: issuers, their status stores and
 * signers, the in-process cache, and the signing budget. Built from the configuration.
 */
#ifndef REVD_HTTP_RESPONDER_H
#define REVD_HTTP_RESPONDER_H

#include <stdatomic.h>
#include <uv.h>

#include "cache/l1.h"
#include "cache/l2.h"
#include "core/config.h"
#include "crl/publisher.h"
#include "db/store.h"
#include "ocsp/issuers.h"
#include "ocsp/status.h"

#define RESPONDER_SIGN_BUCKETS 9
extern const double responder_sign_buckets[RESPONDER_SIGN_BUCKETS]; /* seconds */

struct responder_issuer {
	struct store *store; /* borrowed from responder->stores */
	struct store_issuer *store_issuer;
	enum ocsp_not_issued not_issued;
	char tag[24]; /* names the CA certificate in shared-cache keys */
};

struct responder {
	const struct config *cfg;
	struct ocsp_issuers *issuers;
	struct responder_issuer *per_issuer; /* by issuer id */
	struct store **stores;               /* owned, one per distinct index file */
	size_t n_stores;
	struct cache *cache;
	struct l2 *l2;             /* the shared tier in Redis; NULL without [redis] */
	uv_loop_t *watch_loop;     /* where changes are handled */
	uv_timer_t *repair;        /* rewrites tombstones Redis has not confirmed */
	struct presigner *presigner;
	struct crl_publisher *crl; /* NULL when no issuer publishes CRLs */
	_Atomic unsigned signing; /* signing jobs queued or running */
	_Atomic uint64_t signed_total;
	_Atomic uint64_t over_budget;
	/* Time to build and sign one response (request paths and pre-signer): counts per
	 * bucket of responder_sign_buckets (the last one: above them all), and the sum. */
	_Atomic uint64_t sign_hist[RESPONDER_SIGN_BUCKETS + 1];
	_Atomic uint64_t sign_ns_total;
	/* Told of every change after the cached answers it touches were dropped (serials
	 * NULL: anything may have changed), on watch_loop: the revocation API waits on it. */
	void (*change_hook)(void *arg, struct store *s, const struct store_serial *serials,
	                    size_t n);
	void *change_hook_arg;
};

/* The store serving an [issuer NAME] section's certificates; NULL if there is no such
 * section. */
struct store *responder_store_of(struct responder *r, const char *section);

/* Notes one response built and signed in ns nanoseconds. Any thread. */
void responder_note_sign(struct responder *r, uint64_t ns);

/* Loads every issuer's CA certificates, signer and index. NULL with a message on failure. */
struct responder *responder_new(const struct config *cfg, char *err, size_t errlen);
void responder_free(struct responder *r);

/*
 * SIGHUP: the signers (keys, delegated certificates, extra certificates, responder ID)
 * of every issuer section, from configuration nc. All are loaded and checked first; on
 * any error none is replaced (-1, why in err). Answers being signed finish with the old
 * signers. Other settings are not applied: they need a restart. On the control loop.
 */
int responder_reload_signers(struct responder *r, const struct config *nc, char *err,
                             size_t errlen);

/* Watches the index files from loop; a change drops the affected cached answers. */
int responder_watch(struct responder *r, uv_loop_t *loop);
void responder_unwatch(struct responder *r);

/* A loop that will serve requests is starting: opens its connections ahead of the
 * first request. On that loop's thread. */
void responder_loop_start(struct responder *r, uv_loop_t *loop);

/* Every store can answer now (PostgreSQL reached and every issuer matched). */
bool responder_ready(struct responder *r);

/* A worker loop is stopping: stores close what they keep on it. On that loop's thread. */
void responder_loop_done(struct responder *r, uv_loop_t *loop);

/* When an answer produced at `produced` and valid until next_update is re-signed:
 * at half its validity, or on the CA/Browser Forum schedule, spread per serial over
 * the preceding eighth of the validity so that answers signed together do not all
 * come due together. */
int64_t responder_refresh_at(const struct responder *r, int64_t produced, int64_t next_update,
                             const uint8_t *serial, size_t serial_len);

/* A record changed: re-signs the answers the pre-signer keeps for (issuer, serial)
 * and replaces them in the shared tier (one instance does it); elsewhere in
 * ocsp_route.c. On loop's thread. */
void responder_resign(struct responder *r, uv_loop_t *loop, const struct ocsp_issuer *is,
                      const struct store_serial *serial);

/* Drops the cached answers for serial under every issuer that reads store s; with a
 * shared tier, also refuses its older copies and (resign) replaces them. */
void responder_invalidate(struct responder *r, struct store *s, const struct store_serial *serial,
                          bool resign);

#endif
