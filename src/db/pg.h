/*
 * PostgreSQL as a status store, shared with the issuing CA (schema: sql/). Lookups run
 * asynchronously on the caller's loop: one connection per loop, in pipeline mode, with
 * a prepared statement, a deadline per lookup, and reconnection with backoff. A change
 * feed on the control loop LISTENs for the CA's changes and sweeps by change watermark
 * for anything a lost connection missed.
 */
#ifndef REVD_DB_PG_H
#define REVD_DB_PG_H

#include <uv.h>

#include "db/store.h"

struct pg_options {
	const char *dsn;             /* libpq conninfo or URI */
	unsigned lookup_timeout_ms;  /* a lookup unanswered by then fails: tryLater */
	unsigned sweep_interval_ms;  /* reconciliation sweep period */
};

struct store *store_pg_new(const struct pg_options *o, char *err, size_t errlen);

/* Starts the change feed on loop: on_change runs there with the serials that changed
 * (NULL and 0: anything may have changed). Also resolves issuer handles. */
int store_pg_watch(struct store *s, uv_loop_t *loop, store_change_cb on_change, void *arg);
void store_pg_unwatch(struct store *s);
/* Opens loop's lookup connection now rather than at its first lookup. On loop's thread. */
void store_pg_warm(struct store *s, uv_loop_t *loop);

/* Upper bounds (seconds) of the lookup latency histogram's buckets. */
#define STORE_PG_LOOKUP_BUCKETS 10
extern const double store_pg_lookup_buckets[STORE_PG_LOOKUP_BUCKETS];

struct store_pg_stats {
	uint64_t lookups;
	/* lookups answered, by bucket of store_pg_lookup_buckets (the last: above them
	 * all), and the sum of their times: sent to answered, waiting included */
	uint64_t lookup_hist[STORE_PG_LOOKUP_BUCKETS + 1];
	uint64_t lookup_ns_total;
	uint64_t lookup_failures;
	uint64_t notifications;
	uint64_t sweeps;
	uint64_t swept_rows;
	uint64_t reconnects;
	int64_t last_notify_lag_us; /* trigger time to invalidation, last change */
	int64_t max_notify_lag_us;
	bool feed_up;
	bool issuers_resolved; /* every configured issuer found and matching */
};
void store_pg_get_stats(struct store *s, struct store_pg_stats *out);

#endif
