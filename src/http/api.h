/*
 * The revocation API: HTTPS for CAs on listeners of its own, client certificates
 * required (verified against [api] client_ca, and client_crl when set), and only the
 * identities in [api] allow may call it. It runs on the control loop, where changes
 * are heard, and writes through blocking connections on two writer threads of its own.
 *
 *   POST /v1/revoke  {"issuer", "serial", "reason"[, "invalidity_date"][, "revoked_at"]}
 *   POST /v1/unhold  {"issuer", "serial"}
 *   GET  /v1/status?issuer=NAME&serial=HEX
 *
 * A write answers once this instance serves the new status (200), or after [api]
 * live_timeout with "live": false (202), and says which CRL will carry the change.
 */
#ifndef REVD_HTTP_API_H
#define REVD_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>
#include <uv.h>

#include "core/config.h"
#include "db/revoke.h"

struct responder;
struct api;

#define API_MAX_BODY (64 * 1024)

/* ---- calls, parsed: no I/O (fuzz/fuzz_api.c) ---- */

enum api_op { API_REVOKE, API_UNHOLD, API_STATUS };

struct api_call {
	enum api_op op;
	char issuer[128]; /* an [issuer NAME] section */
	struct revoke_change ch; /* serial, reason, times; ch.issuer is left NULL */
};

/* A POST body for op (API_REVOKE or API_UNHOLD): a JSON object with exactly the
 * fields the call takes. 0, or -1 with what is wrong in err. */
int api_parse_body(enum api_op op, const uint8_t *body, size_t len, struct api_call *out,
                   char *err, size_t errlen);
/* A status query string ("issuer=NAME&serial=HEX", percent-encoded, no '?'). */
int api_parse_query(const char *query, size_t len, struct api_call *out, char *err,
                    size_t errlen);

/* Whether a client certificate names one of the allowed identities: an entry
 * with "://" matches a subjectAltName URI exactly; any other matches a dNSName in any
 * case, or, when the certificate has no DNS or URI name at all, its subject
 * commonName exactly. The matched identity, or the certificate's first printable name
 * when none matched, goes into who. */
bool api_identity_allowed(X509 *cert, char *const *allow, size_t n_allow, char *who,
                          size_t wholen);

/* ---- the server ---- */

/*
 * Loads the TLS credentials and binds [api] listen (before privileges are dropped).
 * NULL with a message in err. With r NULL, only checks the credentials (revd config
 * check) and binds nothing.
 */
struct api *api_new(const struct config *cfg, struct responder *r, char *err, size_t errlen);
/* Starts accepting on loop (the control loop, where r hears changes). */
int api_start(struct api *a, uv_loop_t *loop, char *err, size_t errlen);
/* Closes the listeners and connections; calls in flight finish unanswered. On loop. */
void api_stop(struct api *a);
void api_free(struct api *a);
/*
 * SIGHUP: the certificate, key, client CA, client CRL and allow list from cfg, loaded
 * and checked (NULL with why in err), then put in use on the loop; connections already
 * open keep theirs. Other [api] settings need a restart.
 */
struct api_tls;
struct api_tls *api_tls_load(const struct config *cfg, char *err, size_t errlen);
void api_tls_use(struct api *a, struct api_tls *t); /* takes t */
void api_tls_free(struct api_tls *t);

/* The API's counters. Any thread. */
#define API_STATUS_SLOTS 13
#define API_LIVE_BUCKETS 8
extern const double api_live_buckets[API_LIVE_BUCKETS]; /* seconds */
struct api_stats {
	int status[API_STATUS_SLOTS]; /* the HTTP status of each slot; 0: any other */
	uint64_t by_status[API_STATUS_SLOTS];
	uint64_t handshake_failures; /* no client certificate, not from client_ca, revoked */
	/* writes, from commit until this instance served the new status */
	uint64_t live_hist[API_LIVE_BUCKETS + 1];
	uint64_t live_ns_total;
};
void api_get_stats(struct api *a, struct api_stats *st);
/* After api_stop: a writer never came back from the database. The process should end
 * with _exit: an orderly teardown would free what that thread still uses. */
bool api_stuck(const struct api *a);
/* "127.0.0.1:8443" as bound, for logs. */
const char *api_bound(const struct api *a);

#endif
