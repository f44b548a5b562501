/*
 * Status stores: where revd learns whether a serial was issued and whether it is
 * revoked. One table of functions per backend; callers see only struct store.
 */
#ifndef REVD_DB_STORE_H
#define REVD_DB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#define STORE_MAX_SERIAL 32

enum store_status {
	STORE_GOOD,       /* issued, not revoked */
	STORE_REVOKED,    /* issued and revoked */
	STORE_NOT_ISSUED, /* the issuer never issued this serial */
};

/* Revocation reasons use the CRLReason numbers (RFC 5280 §5.3.1). */
#define STORE_REASON_NONE (-1)

struct store_record {
	enum store_status status;
	int64_t not_after;       /* certificate expiry; 0 if the store does not know */
	int64_t revoked_at;      /* STORE_REVOKED */
	int reason;              /* STORE_REVOKED: CRLReason or STORE_REASON_NONE */
	int64_t invalidity_date; /* STORE_REVOKED: 0 if none */
	/* Orders a serial's records: a later change has a larger version. Answers signed
	 * from a record carry it, so a shared cache can refuse an older one. */
	uint64_t version;
};

/* A serial: the INTEGER contents, minimal two's complement, as in a CertID. */
struct store_serial {
	uint8_t len;
	uint8_t bytes[STORE_MAX_SERIAL];
	uint64_t version; /* in change reports: the version of the new record; 0 unknown */
	int32_t scope;    /* in change reports: the store's own id of the issuer; 0 unknown */
};

enum store_error {
	STORE_OK = 0,
	STORE_ERR_UNAVAILABLE, /* the store cannot answer now: answer tryLater */
	STORE_ERR_INTERNAL,
};

struct store;

/* Scan flags. */
#define STORE_SCAN_REVOKED 0x1u /* revoked certificates only */

/* One certificate, as a scan returns it. */
struct store_scan_item {
	struct store_serial serial;
	struct store_record rec;
};

/* One lookup. */
struct store_query {
	uv_loop_t *loop;      /* the caller's loop: an asynchronous store answers on it */
	struct store_issuer *issuer; /* from store_issuer(); borrowed */
	const uint8_t *serial;
	size_t serial_len;
};

/* Called once per lookup with the record (NULL unless err is STORE_OK). */
typedef void (*store_lookup_cb)(void *arg, enum store_error err, const struct store_record *rec);

/* Called after a store's contents changed, with the serials whose record changed. */
typedef void (*store_change_cb)(void *arg, struct store *s, const struct store_serial *serials,
                                size_t n);

struct store_ops {
	const char *kind;
	/*
	 * The store's handle for an issuer, by the name the CA's records use for it and
	 * its certificate (DER), which a shared store checks against its own records (a
	 * file-backed store has one issuer and ignores both). NULL with a message in err if
	 * the store can never serve it. The handle lives as long as the store.
	 */
	struct store_issuer *(*issuer)(struct store *s, const char *name, const uint8_t *cert,
	                               size_t cert_len, char *err, size_t errlen);
	/*
	 * Looks up one serial. May call cb before returning (an in-memory store does);
	 * a store that must wait for I/O calls it later on q->loop's thread.
	 */
	void (*lookup)(struct store *s, const struct store_query *q, store_lookup_cb cb,
	               void *arg);
	/*
	 * Optional: the issuer's certificates unexpired at `now` (with STORE_SCAN_REVOKED in
	 * flags: only the revoked ones) whose serial sorts after `after` (after->len 0: from
	 * the first), at most max, in serial order (bytes compared, then shorter first).
	 * Blocks: for background threads only, one at a time. Returns the count, or -1 with
	 * a message in err.
	 */
	long (*scan)(struct store *s, struct store_issuer *is, const struct store_serial *after,
	             int64_t now, unsigned flags, struct store_scan_item *out, size_t max,
	             char *err, size_t errlen);
	/* Optional: loop is stopping; close what the store keeps on it (its handles must
	 * be closed for the loop to end). Called on that loop's thread. */
	void (*loop_done)(struct store *s, uv_loop_t *loop);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	char name[64]; /* for logs: the file or database it reads */
};

static inline struct store_issuer *store_issuer(struct store *s, const char *name,
                                                const uint8_t *cert, size_t cert_len,
                                                char *err, size_t errlen)
{
	return s->ops->issuer(s, name, cert, cert_len, err, errlen);
}

static inline void store_loop_done(struct store *s, uv_loop_t *loop)
{
	if (s->ops->loop_done != NULL)
		s->ops->loop_done(s, loop);
}

static inline void store_lookup(struct store *s, const struct store_query *q,
                                store_lookup_cb cb, void *arg)
{
	s->ops->lookup(s, q, cb, arg);
}

static inline long store_scan(struct store *s, struct store_issuer *is,
                              const struct store_serial *after, int64_t now, unsigned flags,
                              struct store_scan_item *out, size_t max, char *err, size_t errlen)
{
	if (s->ops->scan == NULL) {
		snprintf(err, errlen, "%s stores cannot be scanned", s->ops->kind);
		return -1;
	}
	return s->ops->scan(s, is, after, now, flags, out, max, err, errlen);
}

static inline void store_free(struct store *s)
{
	if (s != NULL)
		s->ops->free(s);
}

#endif
