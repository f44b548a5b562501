/*
 * Where published CRLs live and how their numbers are coordinated: a table in
 * PostgreSQL shared by every instance, or a directory for issuers read from an index
 * file. Blocking calls, made from the CRL thread (or the `revd crl` command) only.
 */
#ifndef REVD_CRL_REPO_H
#define REVD_CRL_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One sequence of CRLs: an issuer, or one shard of it. */
struct crl_series_id {
	const char *stem;   /* file name without ".crl": "NAME" or "NAME-K" */
	const char *issuer; /* the issuer's name in the store (PostgreSQL issuers.name) */
	unsigned shard;     /* 0 when the issuer is not partitioned */
};

/* A published CRL as read back: DER, malloc'd, owned by whoever holds it. */
struct crl_blob {
	uint8_t *der;
	size_t len;
	uint64_t number;
};

void crl_blob_clear(struct crl_blob *b);

struct crl_repo;

struct crl_repo_ops {
	const char *kind;
	/*
	 * The latest full CRL, and the latest delta CRL (whatever its base), of a series;
	 * a blob is left empty when there is none, and may carry only its number (der
	 * NULL) when that is have_full or have_delta: the caller holds it already. *last:
	 * the highest number ever used. Returns 0, or -1 with a message.
	 */
	int (*load)(struct crl_repo *r, const struct crl_series_id *s, uint64_t have_full,
	            uint64_t have_delta, struct crl_blob *full, struct crl_blob *delta,
	            uint64_t *last, char *err, size_t errlen);
	/* The numbers of the latest full and delta CRLs (0: none), cheaply: to notice what
	 * another instance published. */
	int (*head)(struct crl_repo *r, const struct crl_series_id *s, uint64_t *full,
	            uint64_t *delta, char *err, size_t errlen);
	/*
	 * Becomes the series' one generator until unlock: 1, or 0 when another holds it
	 * (never waits for it), or -1 with a message. load and publish between lock and
	 * unlock see and change the series as no one else can.
	 */
	int (*lock)(struct crl_repo *r, const struct crl_series_id *s, char *err, size_t errlen);
	/* Publishes a CRL numbered above every number used (delta_base 0: a full CRL). */
	int (*publish)(struct crl_repo *r, const struct crl_series_id *s, uint64_t number,
	               uint64_t delta_base, int64_t this_update, int64_t next_update,
	               const uint8_t *der, size_t len, char *err, size_t errlen);
	/* Ends the generator's turn: commit is false after a failure (then nothing
	 * published since lock is kept, where the repository can undo it). Returns 0 once
	 * what was published is durable, or -1 with a message (then none of it counts). */
	int (*unlock)(struct crl_repo *r, const struct crl_series_id *s, bool commit, char *err,
	              size_t errlen);
	void (*free)(struct crl_repo *r);
};

struct crl_repo {
	const struct crl_repo_ops *ops;
};

/* A directory: DIR/STEM.crl and DIR/STEM-delta.crl, replaced atomically; the lock is
 * an flock on DIR/STEM.lock. NULL with a message if dir cannot be used. */
struct crl_repo *crl_repo_dir_new(const char *dir, size_t max_bytes, char *err, size_t errlen);

/* PostgreSQL's crls and crl_series tables (sql/002_crls.sql), over a connection of its
 * own. NULL with a message if the database cannot be reached. */
struct crl_repo *crl_repo_pg_new(const char *dsn, size_t max_bytes, char *err, size_t errlen);

static inline void crl_repo_free(struct crl_repo *r)
{
	if (r != NULL)
		r->ops->free(r);
}

#endif
