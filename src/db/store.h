/*
 * Status stores: where revd learns whether a serial was issued and whether it is
 * revoked. One table of functions per backend; callers see only struct store.
 */
#ifndef REVD_DB_STORE_H
#define REVD_DB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
};

/* A serial: the INTEGER contents, minimal two's complement, as in a CertID. */
struct store_serial {
	uint8_t len;
	uint8_t bytes[STORE_MAX_SERIAL];
};

enum store_error {
	STORE_OK = 0,
	STORE_ERR_UNAVAILABLE, /* the store cannot answer now: answer tryLater */
	STORE_ERR_INTERNAL,
};

struct store;

/* Called once per lookup with the record (NULL unless err is STORE_OK). */
typedef void (*store_lookup_cb)(void *arg, enum store_error err, const struct store_record *rec);

/* Called after a store's contents changed, with the serials whose record changed. */
typedef void (*store_change_cb)(void *arg, struct store *s, const struct store_serial *serials,
                                size_t n);

struct store_ops {
	const char *kind;
	/*
	 * Looks up one serial. May call cb before returning (an in-memory store does);
	 * a store that must wait for I/O calls it later on the caller's loop.
	 */
	void (*lookup)(struct store *s, const uint8_t *serial, size_t len, store_lookup_cb cb,
	               void *arg);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	char name[64]; /* for logs: the file or database it reads */
};

static inline void store_lookup(struct store *s, const uint8_t *serial, size_t len,
                                store_lookup_cb cb, void *arg)
{
	s->ops->lookup(s, serial, len, cb, arg);
}

static inline void store_free(struct store *s)
{
	if (s != NULL)
		s->ops->free(s);
}

#endif
