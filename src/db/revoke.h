/*
 * Revocation writes: the one transaction that `revd revoke` and the revocation API
 * share. Blocking libpq: callers run it off any event loop (the command line, or the
 * API's worker thread).
 */
#ifndef REVD_DB_REVOKE_H
#define REVD_DB_REVOKE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/store.h"

#define REVOKE_REASON_HOLD 6 /* certificateHold: the one reason that may change */

enum revoke_op {
	REVOKE_OP_REVOKE, /* revoke, or turn a certificateHold into another reason */
	REVOKE_OP_UNHOLD, /* release a certificateHold */
};

struct revoke_change {
	enum revoke_op op;
	const char *issuer; /* the issuers.name the CA's rows use */
	struct store_serial serial;
	int reason;              /* REVOKE_OP_REVOKE: a CRLReason, not removeFromCRL */
	int64_t revoked_at;      /* 0: the transaction's time, whole seconds */
	int64_t invalidity_date; /* 0: none */
};

/* A certificate's row. */
struct revoke_state {
	bool revoked;
	int reason;              /* STORE_REASON_NONE: none given */
	int64_t revoked_at;      /* revoked */
	int64_t invalidity_date; /* 0: none */
	int64_t not_after;
	uint64_t change_seq; /* the row's version: change reports carry it */
	int issuer_id;
};

enum revoke_result {
	REVOKE_REVOKED,        /* revoked now */
	REVOKE_REASON_CHANGED, /* a certificateHold became another reason, time kept */
	REVOKE_RELEASED,       /* a certificateHold released */
	REVOKE_UNKNOWN_ISSUER, /* no issuers row by that name */
	REVOKE_NOT_ISSUED,     /* no row for the serial */
	REVOKE_ALREADY,        /* already revoked (and not a hold becoming a reason) */
	REVOKE_NOT_REVOKED,    /* unhold: not revoked */
	REVOKE_NOT_HELD,       /* unhold: revoked with another reason */
	REVOKE_BAD_TIME,       /* a hold becoming a reason: invalidity date after its time */
	REVOKE_FAILED,         /* the database failed: why in err */
};

/*
 * Applies ch in one transaction on c (which must be idle): looks the issuer up, locks
 * the row, changes it and commits. before is the row as it was (when there is one),
 * after the row as committed (REVOKE_REVOKED, _REASON_CHANGED, _RELEASED). On
 * REVOKE_FAILED err says what was being done and the server's message; the
 * transaction is rolled back.
 */
enum revoke_result revoke_apply(PGconn *c, const struct revoke_change *ch,
                                struct revoke_state *before, struct revoke_state *after,
                                char *err, size_t errlen);

/* After REVOKE_FAILED (or revoke_read's -1) on this thread: whether trying again
 * later may succeed (a timeout, a lock, a lost connection) rather than the statement
 * being refused. */
bool revoke_failure_is_transient(void);

/* Reads a row without changing it: 1 found (st filled), 0 not issued, -2 unknown
 * issuer, -1 failed (why in err). */
int revoke_read(PGconn *c, const char *issuer, const struct store_serial *serial,
                struct revoke_state *st, char *err, size_t errlen);

/*
 * A writer's connection for a long-running process (the API): opened when first
 * needed and again after it breaks, with timeouts so that no call waits on the
 * database for more than a few seconds. One call at a time: callers serialize.
 */
struct revoke_db;
struct revoke_db *revoke_db_new(const char *dsn); /* copies dsn; NULL: out of memory */
void revoke_db_free(struct revoke_db *db);
/* The connection, opened if needed: NULL with why in err (never the DSN or a
 * password). */
PGconn *revoke_db_conn(struct revoke_db *db, char *err, size_t errlen);
/* After a failed call: whether the connection is gone (it is closed, to be opened
 * again by the next call). */
bool revoke_db_lost(struct revoke_db *db);

/* ---- the operator's spellings ---- */

/* "keyCompromise" ... (any case) -> CRLReason; removeFromCRL and unknown names: -1. */
int revoke_reason_parse(const char *name);
/* "keyCompromise" ...; "no reason given" for STORE_REASON_NONE. */
const char *revoke_reason_name(int reason);

/* A serial in hex as openssl prints it ("0x" and a '-' allowed). */
bool revoke_serial_parse(const char *text, struct store_serial *out);
#define REVOKE_SERIAL_HEX_LEN (2 * STORE_MAX_SERIAL + 4)
/* "0x0A1B", "-0x05". */
void revoke_serial_hex(const struct store_serial *s, char out[REVOKE_SERIAL_HEX_LEN]);

/* YYYYMMDDHHMMSSZ, or ISO 8601 with Z or an offset (fractions of a second dropped). */
bool revoke_time_parse(const char *text, int64_t *t);
#define REVOKE_TIME_LEN 32
/* "2024-01-02T03:04:05Z" */
void revoke_time_format(int64_t t, char out[REVOKE_TIME_LEN]);

#endif
