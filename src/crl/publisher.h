/*
 * The CRL publisher: for every issuer with CRLs, and every shard of a partitioned one,
 * keeps a full CRL and a delta CRL current. A thread of its own builds and signs them
 * when due (full: every [crl] interval; delta: every delta_interval and soon after a
 * change), coordinating numbers and the one generator through a repository
 * (PostgreSQL or a directory), and picks up what other instances published, so that
 * every instance serves the same bytes. A failed rebuild leaves the last good CRL served.
 *
 * Which shard a certificate belongs to: its serial, read as an unsigned big-endian
 * integer, modulo the issuer's crl_shards. Certificates of shard K carry the
 * distribution point BASE_URL/NAME-K.crl.
 */
#ifndef REVD_CRL_PUBLISHER_H
#define REVD_CRL_PUBLISHER_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/l1.h"
#include "core/buf.h"
#include "core/config.h"
#include "db/store.h"

struct crl_publisher;

struct crl_publisher *crl_publisher_new(const struct config *cfg, char *err, size_t errlen);
/* Stops the thread if it runs. */
void crl_publisher_free(struct crl_publisher *p);

/*
 * Publishes CRLs for an issuer: ca is its certificate and key the CA's key (both
 * borrowed; key NULL: the CA signs them, and they are imported); store_name is the issuer's name in the store (and in PostgreSQL's
 * issuers table). Refuses a key that does not match, or file names that collide with
 * another issuer's. Before crl_publisher_start.
 */
int crl_publisher_add(struct crl_publisher *p, const struct config_issuer *ci,
                      const char *store_name, X509 *ca, EVP_PKEY *key, struct store *store,
                      struct store_issuer *store_issuer, char *err, size_t errlen);

size_t crl_publisher_count(const struct crl_publisher *p); /* series */

/* The thread has been over every series once (loaded or built what it could), or does
 * not run: what is served now is what there is. */
bool crl_publisher_settled(struct crl_publisher *p);

/* One pass over every series: loads what is published, builds what is due. Returns
 * the number of series that failed (their reasons are logged). */
int crl_publisher_run_once(struct crl_publisher *p);

int crl_publisher_start(struct crl_publisher *p, char *err, size_t errlen);
void crl_publisher_stop(struct crl_publisher *p);

/* The store's records for these serials changed (serials NULL: anything may have): the
 * deltas covering them are rebuilt after [crl] delta_debounce. Any thread. */
void crl_publisher_changed(struct crl_publisher *p, struct store *s,
                           const struct store_serial *serials, size_t n);

/*
 * The current CRL published as file (e.g. "NAME.crl", "NAME-delta.crl", "NAME-3.crl",
 * or the same names ending in ".pem"): a new reference to its entry, and its
 * nextUpdate and the max-age to serve it with. NULL if there is none (or it has
 * lapsed, which revd never serves).
 */
struct cache_entry *crl_publisher_find(struct crl_publisher *p, const char *file, size_t len,
                                       int64_t now, int64_t *max_age);

/*
 * Publishes a CRL the CA signed itself (full or delta, as its extensions say) for
 * issuer: it must name the CA, verify with the CA's key, carry a number above every
 * one used, and (a shard's) name that shard's distribution point; a delta must be on
 * the current full CRL. Returns 0, or -1 with the reason.
 */
int crl_publisher_import(struct crl_publisher *p, const char *issuer, const uint8_t *der,
                         size_t len, char *err, size_t errlen);

/* Which CRLs will carry a change to one certificate, and when. */
struct crl_where {
	char full[768];  /* the full CRL (its shard's) by URL, or by file name without base_url */
	char delta[768]; /* the delta CRL; empty without deltas */
	uint64_t number; /* the highest CRL number served now for the shard; 0: none yet */
	int64_t by;      /* a CRL built after a change made now is due by then (0: unknown) */
};
/* Fills w for issuer (its [issuer] section name) and serial: 1, or 0 when the issuer
 * has no CRLs. Any thread. */
int crl_publisher_where(struct crl_publisher *p, const char *issuer,
                        const struct store_serial *serial, int64_t now, struct crl_where *w);
/* Appends, in the Prometheus text format, each served CRL's number, thisUpdate,
 * nextUpdate and age at now. NULL p: nothing. */
void crl_publisher_metrics(struct crl_publisher *p, int64_t now, struct buf *out);

/* Writes every current CRL (DER) into dir as its file name. Returns the count, or -1
 * with a message. */
long crl_publisher_write(struct crl_publisher *p, const char *dir, char *err, size_t errlen);

#endif
