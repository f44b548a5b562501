#include "db/pg.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hex.h"
#include "core/log.h"

#define MAX_LOOPS 256
#define MAX_ISSUERS 1024
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SWEEP_LIMIT 10000
#define CHANNEL "revd_certificates"

static const char lookup_sql[] =
	"SELECT extract(epoch FROM not_after)::bigint, extract(epoch FROM revoked_at)::bigint, "
	"reason, extract(epoch FROM invalidity_date)::bigint, change_seq "
	"FROM certificates WHERE issuer_id = $1 AND serial = $2";

/* ---- an asynchronous libpq connection on one loop ---- */

enum pgc_state { PGC_DOWN, PGC_CONNECTING, PGC_UP };

struct pgc {
	uv_loop_t *loop;
	const char *dsn;
	const char *what; /* for logs: "lookups" or "change feed" */
	PGconn *pg;
	uv_poll_t *poll; /* its own allocation: freed in its close callback */
	int poll_fd;
	int events;
	enum pgc_state state;
	uv_timer_t retry;
	unsigned backoff_ms;
	bool stopping;
	bool ever_up;
	void (*on_up)(struct pgc *c);
	void (*on_input)(struct pgc *c);
	void (*on_down)(struct pgc *c);
	_Atomic uint64_t *reconnects;
};

static void pgc_connect(struct pgc *c);

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void pgc_close_poll(struct pgc *c)
{
	if (c->poll != NULL) {
		uv_poll_stop(c->poll);
		uv_close((uv_handle_t *)c->poll, on_poll_closed);
		c->poll = NULL;
	}
}

static void on_retry(uv_timer_t *t)
{
	struct pgc *c = t->data;
	if (!c->stopping && c->state == PGC_DOWN)
		pgc_connect(c);
}

/* Drops the connection; callers' work fails through on_down; a retry is scheduled. */
static void pgc_reset(struct pgc *c, const char *why)
{
	bool was_up = c->state == PGC_UP;
	if (why != NULL) {
		if (was_up || !c->ever_up || c->backoff_ms >= BACKOFF_MAX_MS)
			log_warn("postgres %s: %s", c->what, why);
		else
			log_debug("postgres %s: %s", c->what, why);
	}
	pgc_close_poll(c);
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->state = PGC_DOWN;
	if (c->on_down != NULL)
		c->on_down(c);
	if (c->stopping)
		return;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	uv_timer_start(&c->retry, on_retry, c->backoff_ms, 0);
}

static void on_poll(uv_poll_t *p, int status, int events);

static void pgc_set_events(struct pgc *c, int events)
{
	if (c->poll != NULL && events != c->events) {
		c->events = events;
		uv_poll_start(c->poll, events, on_poll);
	}
}

/* After queueing output: write it now, or wait until the socket takes it. */
static void pgc_flush(struct pgc *c)
{
	if (c->state != PGC_UP)
		return;
	int r = PQflush(c->pg);
	if (r < 0)
		pgc_reset(c, PQerrorMessage(c->pg));
	else
		pgc_set_events(c, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

static int pgc_watch_socket(struct pgc *c)
{
	int fd = PQsocket(c->pg);
	if (fd < 0)
		return -1;
	if (c->poll != NULL && c->poll_fd == fd)
		return 0;
	pgc_close_poll(c); /* libpq may move to another socket while connecting */
	c->poll = malloc(sizeof(*c->poll));
	if (c->poll == NULL)
		return -1;
	if (uv_poll_init_socket(c->loop, c->poll, fd) != 0) {
		free(c->poll);
		c->poll = NULL;
		return -1;
	}
	c->poll->data = c;
	c->poll_fd = fd;
	c->events = 0;
	return 0;
}

static void pgc_continue_connect(struct pgc *c)
{
	PostgresPollingStatusType st = PQconnectPoll(c->pg);
	if (st == PGRES_POLLING_FAILED) {
		pgc_reset(c, PQerrorMessage(c->pg));
		return;
	}
	if (pgc_watch_socket(c) != 0) {
		pgc_reset(c, "cannot watch the connection's socket");
		return;
	}
	if (st == PGRES_POLLING_OK) {
		c->state = PGC_UP;
		c->backoff_ms = 0;
		if (c->ever_up && c->reconnects != NULL)
			atomic_fetch_add(c->reconnects, 1);
		c->ever_up = true;
		pgc_set_events(c, UV_READABLE);
		log_info("postgres %s: connected", c->what);
		if (c->on_up != NULL)
			c->on_up(c);
		return;
	}
	pgc_set_events(c, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE);
	uv_poll_start(c->poll, c->events, on_poll);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct pgc *c = p->data;
	if (status < 0) {
		pgc_reset(c, uv_strerror(status));
		return;
	}
	if (c->state == PGC_CONNECTING) {
		pgc_continue_connect(c);
		return;
	}
	if (c->state != PGC_UP)
		return;
	if (events & UV_WRITABLE) {
		pgc_flush(c);
		if (c->state != PGC_UP)
			return;
	}
	if (events & UV_READABLE) {
		if (!PQconsumeInput(c->pg)) {
			pgc_reset(c, PQerrorMessage(c->pg));
			return;
		}
		if (c->on_input != NULL)
			c->on_input(c);
	}
}

static void pgc_connect(struct pgc *c)
{
	/* Name resolution in PQconnectStart blocks: give revd an address (hostaddr) or a
	 * socket directory in production; with a host name, connecting takes one lookup. */
	c->pg = PQconnectStart(c->dsn);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
		pgc_reset(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	PQsetnonblocking(c->pg, 1);
	c->state = PGC_CONNECTING;
	if (pgc_watch_socket(c) != 0) {
		pgc_reset(c, "cannot watch the connection's socket");
		return;
	}
	c->events = UV_WRITABLE;
	uv_poll_start(c->poll, UV_WRITABLE, on_poll);
}

static void pgc_init(struct pgc *c, uv_loop_t *loop, const char *dsn, const char *what)
{
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->dsn = dsn;
	c->what = what;
	c->poll_fd = -1;
	uv_timer_init(loop, &c->retry);
	c->retry.data = c;
}

/* Ends the connection for good; close_cb runs when the timer handle is closed. */
static void pgc_stop(struct pgc *c, uv_close_cb close_cb)
{
	c->stopping = true;
	pgc_reset(c, NULL);
	uv_timer_stop(&c->retry);
	uv_close((uv_handle_t *)&c->retry, close_cb);
}

/* ---- the store ---- */

struct pg_issuer {
	char name[128];
	uint8_t *cert;
	size_t cert_len;
	_Atomic int32_t id; /* issuers.id; 0: not found yet; -1: refused */
};

struct pg_lookup; /* a lookup waiting for its result */
struct pg_lconn;

struct pg_store {
	struct store base;
	char *dsn;
	unsigned lookup_timeout_ms;
	unsigned sweep_interval_ms;
	pthread_mutex_t lock; /* conns and issuers tables */
	struct pg_lconn *conns[MAX_LOOPS];
	size_t n_conns;
	struct pg_issuer *issuers[MAX_ISSUERS];
	size_t n_issuers;
	struct pg_feed *feed;
	_Atomic uint64_t lookups, lookup_failures, notifications, sweeps, swept_rows, reconnects;
	_Atomic uint64_t lookup_hist[STORE_PG_LOOKUP_BUCKETS + 1], lookup_ns_total;
	_Atomic int64_t last_lag_us, max_lag_us;
	_Atomic bool feed_up, issuers_resolved;
	PGconn *scan_conn; /* blocking, for scans from background threads */
	pthread_mutex_t scan_lock; /* one scan at a time on it (pre-signer, CRL thread) */
};

enum pending_kind { PEND_PREPARE, PEND_QUERY, PEND_SYNC };

struct pg_lookup {
	struct pg_lookup *next;
	enum pending_kind kind;
	store_lookup_cb cb;
	void *arg;
	uint64_t deadline; /* uv_now ms */
	uint64_t started_ns;
	int32_t issuer_id;
	uint8_t serial_len;
	uint8_t serial[STORE_MAX_SERIAL];
};

/* The connection that serves lookups from one loop. */
struct pg_lconn {
	struct pgc c;
	struct pg_store *st;
	uv_timer_t tick;
	uv_check_t check;
	struct pg_lookup *sent_head, *sent_tail; /* results expected, in order */
	struct pg_lookup *wait_head, *wait_tail; /* queued until the connection is up */
	bool sync_needed;
	int open_handles;
};

static void fail_list(struct pg_store *st, struct pg_lookup *l)
{
	while (l != NULL) {
		struct pg_lookup *next = l->next;
		if (l->kind == PEND_QUERY) {
			atomic_fetch_add(&st->lookup_failures, 1);
			l->cb(l->arg, STORE_ERR_UNAVAILABLE, NULL);
		}
		free(l);
		l = next;
	}
}

static void lconn_on_down(struct pgc *c)
{
	struct pg_lconn *lc = (struct pg_lconn *)c;
	struct pg_lookup *sent = lc->sent_head, *waiting = lc->wait_head;
	lc->sent_head = lc->sent_tail = NULL;
	lc->wait_head = lc->wait_tail = NULL;
	lc->sync_needed = false;
	/* Callbacks may queue new lookups: the lists are already detached. */
	fail_list(lc->st, sent);
	fail_list(lc->st, waiting);
}

static void queue_push(struct pg_lookup **head, struct pg_lookup **tail, struct pg_lookup *l)
{
	l->next = NULL;
	if (*tail)
		(*tail)->next = l;
	else
		*head = l;
	*tail = l;
}

static void push_sent(struct pg_lconn *lc, struct pg_lookup *l)
{
	queue_push(&lc->sent_head, &lc->sent_tail, l);
}

static bool send_query(struct pg_lconn *lc, struct pg_lookup *l)
{
	uint32_t id_be = htonl((uint32_t)l->issuer_id);
	const char *values[2] = {(const char *)&id_be, (const char *)l->serial};
	int lengths[2] = {4, l->serial_len};
	int formats[2] = {1, 1};
	if (!PQsendQueryPrepared(lc->c.pg, "revd_lookup", 2, values, lengths, formats, 0))
		return false;
	push_sent(lc, l);
	lc->sync_needed = true;
	return true;
}

static void lconn_on_up(struct pgc *c)
{
	struct pg_lconn *lc = (struct pg_lconn *)c;
	static const Oid types[2] = {23 /* int4 */, 17 /* bytea */};
	struct pg_lookup *prep = calloc(1, sizeof(*prep));
	if (prep == NULL || !PQenterPipelineMode(c->pg) ||
	    !PQsendPrepare(c->pg, "revd_lookup", lookup_sql, 2, types)) {
		free(prep);
		pgc_reset(c, PQerrorMessage(c->pg));
		return;
	}
	prep->kind = PEND_PREPARE;
	push_sent(lc, prep);
	struct pg_lookup *l = lc->wait_head;
	lc->wait_head = lc->wait_tail = NULL;
	while (l != NULL) {
		struct pg_lookup *next = l->next;
		if (!send_query(lc, l)) {
			l->next = next;
			lc->wait_head = l; /* failed along with the rest by the reset */
			pgc_reset(c, PQerrorMessage(c->pg));
			return;
		}
		l = next;
	}
	lc->sync_needed = true;
	pgc_flush(c);
}

static bool parse_i64(const PGresult *r, int col, int64_t *v)
{
	if (PQgetisnull(r, 0, col))
		return false;
	*v = strtoll(PQgetvalue(r, 0, col), NULL, 10);
	return true;
}

const double store_pg_lookup_buckets[STORE_PG_LOOKUP_BUCKETS] = {
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
};

static void note_latency(struct pg_store *st, uint64_t ns)
{
	unsigned b = 0;
	while (b < STORE_PG_LOOKUP_BUCKETS && (double)ns / 1e9 > store_pg_lookup_buckets[b])
		b++;
	atomic_fetch_add_explicit(&st->lookup_hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->lookup_ns_total, ns, memory_order_relaxed);
}

static void deliver(struct pg_store *st, struct pg_lookup *l, PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_TUPLES_OK) {
		if (s != PGRES_PIPELINE_ABORTED)
			log_warn("postgres lookup failed: %s", PQresultErrorMessage(r));
		atomic_fetch_add(&st->lookup_failures, 1);
		l->cb(l->arg, STORE_ERR_UNAVAILABLE, NULL);
		return;
	}
	struct store_record rec;
	memset(&rec, 0, sizeof(rec));
	rec.reason = STORE_REASON_NONE;
	if (PQntuples(r) == 0) {
		rec.status = STORE_NOT_ISSUED;
	} else {
		int64_t reason;
		parse_i64(r, 0, &rec.not_after);
		if (parse_i64(r, 1, &rec.revoked_at)) {
			rec.status = STORE_REVOKED;
			if (parse_i64(r, 2, &reason))
				rec.reason = (int)reason;
			parse_i64(r, 3, &rec.invalidity_date);
		} else {
			rec.status = STORE_GOOD;
		}
		int64_t seq;
		if (parse_i64(r, 4, &seq) && seq > 0)
			rec.version = (uint64_t)seq;
	}
	l->cb(l->arg, STORE_OK, &rec);
}

static void lconn_on_input(struct pgc *c)
{
	struct pg_lconn *lc = (struct pg_lconn *)c;
	int nulls = 0;
	while (c->state == PGC_UP && lc->sent_head != NULL && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (r == NULL) {
			/* One query's results end with NULL; two in a row: nothing more yet. */
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		ExecStatusType s = PQresultStatus(r);
		struct pg_lookup *l = lc->sent_head;
		bool is_sync = s == PGRES_PIPELINE_SYNC;
		if (is_sync != (l->kind == PEND_SYNC)) {
			PQclear(r);
			pgc_reset(c, "out of step with the server's results");
			return;
		}
		lc->sent_head = l->next;
		if (lc->sent_head == NULL)
			lc->sent_tail = NULL;
		if (l->kind == PEND_QUERY) {
			atomic_fetch_add(&lc->st->lookups, 1);
			note_latency(lc->st, uv_hrtime() - l->started_ns);
			deliver(lc->st, l, r);
		} else if (l->kind == PEND_PREPARE && s != PGRES_COMMAND_OK) {
			char why[300];
			snprintf(why, sizeof(why), "preparing the lookup failed: %s",
			         PQresultErrorMessage(r));
			PQclear(r);
			free(l);
			pgc_reset(c, why);
			return;
		}
		PQclear(r);
		free(l);
	}
}

/* At the end of each loop iteration: one sync for everything sent during it. */
static void on_check(uv_check_t *h)
{
	struct pg_lconn *lc = h->data;
	if (!lc->sync_needed || lc->c.state != PGC_UP)
		return;
	struct pg_lookup *sync = calloc(1, sizeof(*sync));
	if (sync == NULL || !PQpipelineSync(lc->c.pg)) {
		free(sync);
		pgc_reset(&lc->c, "cannot send a pipeline sync");
		return;
	}
	sync->kind = PEND_SYNC;
	push_sent(lc, sync);
	lc->sync_needed = false;
	pgc_flush(&lc->c);
}

static void fail_expired_waiting(struct pg_lconn *lc, uint64_t now)
{
	struct pg_lookup **pp = &lc->wait_head, *expired = NULL;
	lc->wait_tail = NULL;
	while (*pp != NULL) {
		struct pg_lookup *l = *pp;
		if (l->deadline <= now) {
			*pp = l->next;
			l->next = expired;
			expired = l;
		} else {
			lc->wait_tail = l;
			pp = &l->next;
		}
	}
	fail_list(lc->st, expired);
}

static void on_tick(uv_timer_t *t)
{
	struct pg_lconn *lc = t->data;
	uint64_t now = uv_now(lc->c.loop);
	fail_expired_waiting(lc, now);
	for (struct pg_lookup *l = lc->sent_head; l != NULL; l = l->next) {
		if (l->kind == PEND_QUERY && l->deadline <= now) {
			/* The server stopped answering: every lookup on this connection fails now
			 * rather than hang, and the connection starts over. */
			pgc_reset(&lc->c, "a lookup timed out");
			return;
		}
	}
}

static void lconn_handle_closed(uv_handle_t *h)
{
	struct pg_lconn *lc = h->data;
	if (--lc->open_handles == 0)
		free(lc);
}

static struct pg_lconn *lconn_for(struct pg_store *st, uv_loop_t *loop)
{
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_conns; i++) {
		if (st->conns[i]->c.loop == loop) {
			struct pg_lconn *lc = st->conns[i];
			pthread_mutex_unlock(&st->lock);
			return lc;
		}
	}
	struct pg_lconn *lc = NULL;
	if (st->n_conns < MAX_LOOPS && (lc = calloc(1, sizeof(*lc))) != NULL) {
		lc->st = st;
		pgc_init(&lc->c, loop, st->dsn, "lookups");
		lc->c.on_up = lconn_on_up;
		lc->c.on_input = lconn_on_input;
		lc->c.on_down = lconn_on_down;
		lc->c.reconnects = &st->reconnects;
		lc->c.retry.data = &lc->c;
		uv_timer_init(loop, &lc->tick);
		lc->tick.data = lc;
		uv_timer_start(&lc->tick, on_tick, 100, 100);
		uv_check_init(loop, &lc->check);
		lc->check.data = lc;
		uv_check_start(&lc->check, on_check);
		lc->open_handles = 3;
		st->conns[st->n_conns++] = lc;
	}
	pthread_mutex_unlock(&st->lock);
	if (lc != NULL && lc->c.state == PGC_DOWN && !lc->c.ever_up)
		pgc_connect(&lc->c);
	return lc;
}

static void pg_lookup(struct store *base, const struct store_query *q, store_lookup_cb cb,
                      void *arg)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_issuer *is = (struct pg_issuer *)q->issuer;
	int32_t id = atomic_load(&is->id);
	struct pg_lconn *lc;
	struct pg_lookup *l;
	/* Not ready (issuer not yet matched in the database), or the connection is down
	 * after a failure: tryLater now rather than make the client wait. */
	if (id <= 0 || q->serial_len > STORE_MAX_SERIAL || (lc = lconn_for(st, q->loop)) == NULL ||
	    (lc->c.state == PGC_DOWN && lc->c.ever_up) ||
	    (lc->c.state == PGC_DOWN && !lc->c.ever_up && lc->c.backoff_ms > 0) ||
	    (l = calloc(1, sizeof(*l))) == NULL) {
		atomic_fetch_add(&st->lookup_failures, 1);
		cb(arg, STORE_ERR_UNAVAILABLE, NULL);
		return;
	}
	l->kind = PEND_QUERY;
	l->cb = cb;
	l->arg = arg;
	l->issuer_id = id;
	l->serial_len = (uint8_t)q->serial_len;
	memcpy(l->serial, q->serial, q->serial_len);
	l->deadline = uv_now(q->loop) + st->lookup_timeout_ms;
	l->started_ns = uv_hrtime();
	if (lc->c.state == PGC_UP) {
		if (!send_query(lc, l)) {
			l->next = lc->wait_head;
			lc->wait_head = l;
			if (lc->wait_tail == NULL)
				lc->wait_tail = l;
			pgc_reset(&lc->c, PQerrorMessage(lc->c.pg));
			return;
		}
		pgc_flush(&lc->c);
		return;
	}
	queue_push(&lc->wait_head, &lc->wait_tail, l);
}

void store_pg_warm(struct store *base, uv_loop_t *loop)
{
	lconn_for((struct pg_store *)base, loop);
}

static void pg_loop_done(struct store *base, uv_loop_t *loop)
{
	struct pg_store *st = (struct pg_store *)base;
	pthread_mutex_lock(&st->lock);
	struct pg_lconn *lc = NULL;
	for (size_t i = 0; i < st->n_conns; i++) {
		if (st->conns[i]->c.loop == loop) {
			lc = st->conns[i];
			st->conns[i] = st->conns[--st->n_conns];
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (lc == NULL)
		return;
	uv_timer_stop(&lc->tick);
	uv_close((uv_handle_t *)&lc->tick, lconn_handle_closed);
	uv_check_stop(&lc->check);
	uv_close((uv_handle_t *)&lc->check, lconn_handle_closed);
	lc->c.retry.data = lc;
	pgc_stop(&lc->c, lconn_handle_closed);
}

static struct store_issuer *pg_issuer(struct store *base, const char *name, const uint8_t *cert,
                                      size_t cert_len, char *err, size_t errlen)
{
	struct pg_store *st = (struct pg_store *)base;
	if (strlen(name) >= sizeof(((struct pg_issuer *)0)->name)) {
		snprintf(err, errlen, "issuer name too long");
		return NULL;
	}
	pthread_mutex_lock(&st->lock);
	struct pg_issuer *is = NULL;
	for (size_t i = 0; i < st->n_issuers; i++)
		if (strcmp(st->issuers[i]->name, name) == 0)
			is = st->issuers[i];
	if (is == NULL && st->n_issuers < MAX_ISSUERS && (is = calloc(1, sizeof(*is))) != NULL) {
		snprintf(is->name, sizeof(is->name), "%s", name);
		is->cert = malloc(cert_len);
		if (is->cert == NULL) {
			free(is);
			is = NULL;
		} else {
			memcpy(is->cert, cert, cert_len);
			is->cert_len = cert_len;
			st->issuers[st->n_issuers++] = is;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (is == NULL)
		snprintf(err, errlen, "out of memory or too many issuers");
	return (struct store_issuer *)is;
}

/* ---- the change feed ---- */

enum feed_step { FEED_IDLE, FEED_LISTEN, FEED_ISSUERS, FEED_WATERMARK, FEED_SWEEP };

/*
 * The sweep reads the rows changed by transactions that had not finished when the
 * previous sweep looked (change_xid >= horizon, the oldest transaction then running).
 * A transaction still open at a sweep is thus read by a later one whatever sequence
 * numbers it took and however long it runs; and every transaction older than the
 * horizon had finished before the previous sweep, which therefore saw its rows.
 */
struct pg_feed {
	struct pgc c;
	struct pg_store *st;
	uv_timer_t sweep_timer;
	enum feed_step step;
	bool have_horizon;
	bool sweep_again;
	bool paging;              /* inside a sweep of several pages */
	char horizon[24];         /* xid8, as text */
	char sweep_horizon[24];   /* the horizon seen by this sweep's first page */
	char page_xid[24];        /* keyset paging: after (page_xid, page_seq) */
	char page_seq[24];
	store_change_cb on_change;
	void *arg;
	int open_handles;
	struct store_serial *batch;
};

static bool hex_to_serial(const char *hex, size_t len, struct store_serial *out)
{
	if (len == 0 || len % 2 || len / 2 > STORE_MAX_SERIAL)
		return false;
	for (size_t i = 0; i < len; i += 2) {
		int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->bytes[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	out->len = (uint8_t)(len / 2);
	return true;
}

static void feed_send(struct pg_feed *f, enum feed_step step);

static void feed_start_sweep(struct pg_feed *f)
{
	if (f->step != FEED_IDLE || f->c.state != PGC_UP) {
		f->sweep_again = true;
		return;
	}
	/* An issuer not matched yet may have been added since: look again first. */
	feed_send(f, atomic_load(&f->st->issuers_resolved) ? FEED_SWEEP : FEED_ISSUERS);
}

static void feed_send(struct pg_feed *f, enum feed_step step)
{
	PGconn *pg = f->c.pg;
	int ok;
	f->step = step;
	switch (step) {
	case FEED_LISTEN:
		ok = PQsendQuery(pg, "LISTEN " CHANNEL);
		break;
	case FEED_ISSUERS:
		ok = PQsendQuery(pg, "SELECT id, name, certificate FROM issuers");
		break;
	case FEED_WATERMARK:
		ok = PQsendQuery(pg, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text");
		break;
	case FEED_SWEEP: {
		if (!f->paging) {
			snprintf(f->page_xid, sizeof(f->page_xid), "%s", f->horizon);
			snprintf(f->page_seq, sizeof(f->page_seq), "-1");
			atomic_fetch_add(&f->st->sweeps, 1);
		}
		const char *values[2] = {f->page_xid, f->page_seq};
		/* The horizon comes from the same snapshot as the rows (one statement). */
		ok = PQsendQueryParams(
			pg,
			"WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x) "
			"SELECT h.x, encode(c.serial, 'hex'), c.change_xid::text, c.change_seq, "
			"c.issuer_id FROM h LEFT JOIN LATERAL (SELECT serial, change_xid, change_seq, "
			"issuer_id "
			"FROM certificates WHERE (change_xid, change_seq) > ($1::xid8, $2::bigint) "
			"ORDER BY change_xid, change_seq LIMIT 10000) c ON true",
			2, NULL, values, NULL, NULL, 0);
		break;
	}
	default:
		return;
	}
	if (!ok) {
		pgc_reset(&f->c, PQerrorMessage(pg));
		return;
	}
	pgc_flush(&f->c);
}

static void feed_issuers(struct pg_feed *f, PGresult *r)
{
	struct pg_store *st = f->st;
	bool all = true;
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_issuers; i++) {
		struct pg_issuer *is = st->issuers[i];
		int32_t id = 0;
		for (int row = 0; row < PQntuples(r); row++) {
			if (strcmp(PQgetvalue(r, row, 1), is->name) != 0)
				continue;
			size_t n = 0;
			unsigned char *der =
				PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 2), &n);
			bool same = der != NULL && n == is->cert_len && memcmp(der, is->cert, n) == 0;
			PQfreemem(der);
			if (same) {
				id = (int32_t)strtol(PQgetvalue(r, row, 0), NULL, 10);
			} else {
				id = -1;
				log_error("postgres: issuer '%s' in the database has another certificate than "
				          "the one configured; its requests get tryLater",
				          is->name);
			}
		}
		if (id == 0)
			log_error("postgres: issuer '%s' is not in the database (revd db add-issuer); its "
			          "requests get tryLater",
			          is->name);
		if (id <= 0)
			all = false;
		atomic_store(&is->id, id);
	}
	pthread_mutex_unlock(&st->lock);
	atomic_store(&st->issuers_resolved, all);
}

/* Reports changed serials; each was also invalidated before, so repeats are harmless. */
static void feed_report(struct pg_feed *f, const struct store_serial *s, size_t n)
{
	if (f->on_change != NULL)
		f->on_change(f->arg, &f->st->base, s, n);
}

static void feed_sweep_rows(struct pg_feed *f, PGresult *r)
{
	int rows = PQntuples(r);
	if (rows < 1 || PQgetisnull(r, 0, 0))
		return;
	if (!f->paging)
		snprintf(f->sweep_horizon, sizeof(f->sweep_horizon), "%s", PQgetvalue(r, 0, 0));
	size_t n = 0;
	int found = 0;
	for (int i = 0; i < rows; i++) {
		if (PQgetisnull(r, i, 1))
			continue; /* the horizon's row when nothing changed */
		found++;
		const char *hex = PQgetvalue(r, i, 1);
		if (hex_to_serial(hex, strlen(hex), &f->batch[n])) {
			long long seq = strtoll(PQgetvalue(r, i, 3), NULL, 10);
			f->batch[n].version = seq > 0 ? (uint64_t)seq : 0;
			f->batch[n].scope = (int32_t)atoi(PQgetvalue(r, i, 4));
			n++;
		}
		snprintf(f->page_xid, sizeof(f->page_xid), "%s", PQgetvalue(r, i, 2));
		snprintf(f->page_seq, sizeof(f->page_seq), "%s", PQgetvalue(r, i, 3));
	}
	atomic_fetch_add(&f->st->swept_rows, (uint64_t)found);
	if (n > 0)
		feed_report(f, f->batch, n);
	if (found == SWEEP_LIMIT) {
		f->paging = true; /* more to read: the next page, right after this one */
		f->sweep_again = true;
	} else {
		f->paging = false;
		/* The first page's horizon: later pages' snapshots may have moved past
		 * transactions that the next sweep must still read. */
		snprintf(f->horizon, sizeof(f->horizon), "%s", f->sweep_horizon);
	}
}

static void feed_result(struct pg_feed *f, PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
		log_error("postgres change feed: %s", PQresultErrorMessage(r));
		return;
	}
	switch (f->step) {
	case FEED_ISSUERS:
		feed_issuers(f, r);
		break;
	case FEED_WATERMARK:
		if (PQntuples(r) == 1) {
			snprintf(f->horizon, sizeof(f->horizon), "%s", PQgetvalue(r, 0, 0));
			f->have_horizon = true;
		}
		break;
	case FEED_SWEEP:
		feed_sweep_rows(f, r);
		break;
	default:
		break;
	}
}

static void feed_notify(struct pg_feed *f, const PGnotify *n)
{
	atomic_fetch_add(&f->st->notifications, 1);
	if (strcmp(n->extra, "resync") == 0) {
		/* A bulk load: read what changed rather than hear of each row. */
		feed_start_sweep(f);
		return;
	}
	long long issuer, seq, ts;
	char hex[80]; /* a serial is at most 64 hex digits; longer ones fail hex_to_serial */
	struct store_serial s;
	if (sscanf(n->extra, "%lld %79s %lld %lld", &issuer, hex, &seq, &ts) != 4 ||
	    !hex_to_serial(hex, strlen(hex), &s)) {
		log_warn("postgres change feed: unexpected notification '%.80s'", n->extra);
		feed_start_sweep(f);
		return;
	}
	s.version = seq > 0 ? (uint64_t)seq : 0;
	s.scope = issuer > 0 && issuer <= INT32_MAX ? (int32_t)issuer : 0;
	feed_report(f, &s, 1);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t lag = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000 - ts;
	atomic_store(&f->st->last_lag_us, lag);
	if (lag > atomic_load(&f->st->max_lag_us))
		atomic_store(&f->st->max_lag_us, lag);
	/* Changes are rare next to lookups: each is worth a line, with how long it took to
	 * reach revd (from the trigger inside the CA's transaction to here). */
	char name[128];
	snprintf(name, sizeof(name), "%lld", issuer);
	pthread_mutex_lock(&f->st->lock);
	for (size_t i = 0; i < f->st->n_issuers; i++)
		if (atomic_load(&f->st->issuers[i]->id) == (int32_t)issuer)
			snprintf(name, sizeof(name), "%s", f->st->issuers[i]->name);
	pthread_mutex_unlock(&f->st->lock);
	log_cert(LOG_INFO, name, hex, "postgres change feed: issuer %s serial %s changed (seq %lld); "
	         "cached answers dropped %.1f ms after the CA's write",
	         name, hex, seq, (double)lag / 1000.0);
}

static void feed_on_input(struct pgc *c)
{
	struct pg_feed *f = (struct pg_feed *)c;
	while (c->state == PGC_UP && f->step != FEED_IDLE && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (r != NULL) {
			feed_result(f, r);
			PQclear(r);
			continue;
		}
		/* This step is done: the next one. */
		enum feed_step done = f->step;
		f->step = FEED_IDLE;
		if (done == FEED_LISTEN) {
			feed_send(f, FEED_ISSUERS);
		} else if (done == FEED_ISSUERS) {
			if (!f->have_horizon)
				feed_send(f, FEED_WATERMARK);
			else
				feed_send(f, FEED_SWEEP); /* back after a break: catch up */
		} else if (f->sweep_again) {
			f->sweep_again = false;
			feed_send(f, FEED_SWEEP);
		}
	}
	PGnotify *n;
	while (c->state == PGC_UP && (n = PQnotifies(c->pg)) != NULL) {
		feed_notify(f, n);
		PQfreemem(n);
	}
}

static void feed_on_up(struct pgc *c)
{
	struct pg_feed *f = (struct pg_feed *)c;
	atomic_store(&f->st->feed_up, true);
	feed_send(f, FEED_LISTEN);
}

static void feed_on_down(struct pgc *c)
{
	struct pg_feed *f = (struct pg_feed *)c;
	f->step = FEED_IDLE;
	f->paging = false; /* the catch-up sweep starts again from the horizon */
	atomic_store(&f->st->feed_up, false);
}

static void on_sweep_timer(uv_timer_t *t)
{
	feed_start_sweep(t->data);
}

static void feed_handle_closed(uv_handle_t *h)
{
	struct pg_feed *f = h->data;
	if (--f->open_handles == 0) {
		free(f->batch);
		free(f);
	}
}

int store_pg_watch(struct store *base, uv_loop_t *loop, store_change_cb on_change, void *arg)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_feed *f = calloc(1, sizeof(*f));
	if (f == NULL || (f->batch = calloc(SWEEP_LIMIT, sizeof(*f->batch))) == NULL) {
		free(f);
		return -1;
	}
	f->st = st;
	f->on_change = on_change;
	f->arg = arg;
	pgc_init(&f->c, loop, st->dsn, "change feed");
	f->c.on_up = feed_on_up;
	f->c.on_input = feed_on_input;
	f->c.on_down = feed_on_down;
	f->c.reconnects = &st->reconnects;
	uv_timer_init(loop, &f->sweep_timer);
	f->sweep_timer.data = f;
	uv_timer_start(&f->sweep_timer, on_sweep_timer, st->sweep_interval_ms, st->sweep_interval_ms);
	f->open_handles = 2;
	st->feed = f;
	pgc_connect(&f->c);
	return 0;
}

void store_pg_unwatch(struct store *base)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_feed *f = st->feed;
	if (f == NULL)
		return;
	st->feed = NULL;
	uv_timer_stop(&f->sweep_timer);
	f->sweep_timer.data = f;
	uv_close((uv_handle_t *)&f->sweep_timer, feed_handle_closed);
	f->c.retry.data = f;
	pgc_stop(&f->c, feed_handle_closed);
}

void store_pg_get_stats(struct store *base, struct store_pg_stats *out)
{
	struct pg_store *st = (struct pg_store *)base;
	out->lookups = atomic_load(&st->lookups);
	out->lookup_failures = atomic_load(&st->lookup_failures);
	for (unsigned b = 0; b <= STORE_PG_LOOKUP_BUCKETS; b++)
		out->lookup_hist[b] = atomic_load(&st->lookup_hist[b]);
	out->lookup_ns_total = atomic_load(&st->lookup_ns_total);
	out->notifications = atomic_load(&st->notifications);
	out->sweeps = atomic_load(&st->sweeps);
	out->swept_rows = atomic_load(&st->swept_rows);
	out->reconnects = atomic_load(&st->reconnects);
	out->last_notify_lag_us = atomic_load(&st->last_lag_us);
	out->max_notify_lag_us = atomic_load(&st->max_lag_us);
	out->feed_up = atomic_load(&st->feed_up);
	out->issuers_resolved = atomic_load(&st->issuers_resolved);
}

/* An issuer's id read on the scan connection: 0 if the database does not have it
 * with this certificate. */
static int32_t scan_resolve(struct pg_store *st, struct pg_issuer *is)
{
	const char *values[1] = {is->name};
	PGresult *r = PQexecParams(st->scan_conn,
	                           "SELECT id, certificate FROM issuers WHERE name = $1", 1, NULL,
	                           values, NULL, NULL, 1);
	int32_t id = 0;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	    PQgetlength(r, 0, 0) == 4 && (size_t)PQgetlength(r, 0, 1) == is->cert_len &&
	    memcmp(PQgetvalue(r, 0, 1), is->cert, is->cert_len) == 0) {
		const uint8_t *p = (const uint8_t *)PQgetvalue(r, 0, 0);
		id = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
	}
	PQclear(r);
	return id;
}

static long pg_scan_locked(struct store *base, struct store_issuer *sis,
                           const struct store_serial *after,
                    int64_t now, unsigned flags, struct store_scan_item *out, size_t max,
                    char *err, size_t errlen)
{
	struct pg_store *st = (struct pg_store *)base;
	struct pg_issuer *is = (struct pg_issuer *)sis;
	if (st->scan_conn != NULL && PQstatus(st->scan_conn) != CONNECTION_OK) {
		PQfinish(st->scan_conn);
		st->scan_conn = NULL;
	}
	if (st->scan_conn == NULL) {
		st->scan_conn = PQconnectdb(st->dsn);
		if (PQstatus(st->scan_conn) != CONNECTION_OK) {
			snprintf(err, errlen, "postgres: %s", PQerrorMessage(st->scan_conn));
			PQfinish(st->scan_conn);
			st->scan_conn = NULL;
			return -1;
		}
	}
	int32_t id = atomic_load(&is->id);
	if (id == 0) {
		/* No change feed runs (a command), or it is not up yet: resolved here, once. */
		int32_t expected = 0;
		id = scan_resolve(st, is);
		if (id > 0 && !atomic_compare_exchange_strong(&is->id, &expected, id))
			id = expected; /* the feed got there first: its verdict holds */
	}
	if (id <= 0) {
		snprintf(err, errlen, "issuer '%s' is not in the database with the configured "
		                      "certificate", is->name);
		return -1;
	}
	char sid[16], shex[2 * STORE_MAX_SERIAL + 1], snow[24], smax[24];
	snprintf(sid, sizeof(sid), "%d", (int)id);
	for (size_t i = 0; i < after->len; i++)
		snprintf(shex + 2 * i, 3, "%02x", after->bytes[i]);
	shex[2 * after->len] = 0;
	snprintf(snow, sizeof(snow), "%lld", (long long)now);
	snprintf(smax, sizeof(smax), "%zu", max);
	const char *values[4] = {sid, shex, snow, smax};
	/* Two statements, so that the revoked one can use its partial index. */
#define SCAN_SELECT                                                                        \
	"SELECT encode(serial, 'hex'), extract(epoch FROM not_after)::bigint, "                 \
	"extract(epoch FROM revoked_at)::bigint, reason, "                                     \
	"extract(epoch FROM invalidity_date)::bigint, change_seq FROM certificates "            \
	"WHERE issuer_id = $1 AND serial > decode($2, 'hex') AND not_after > to_timestamp($3) "
	const char *sql = (flags & STORE_SCAN_REVOKED)
	                          ? SCAN_SELECT "AND revoked_at IS NOT NULL ORDER BY serial LIMIT $4"
	                          : SCAN_SELECT "ORDER BY serial LIMIT $4";
#undef SCAN_SELECT
	PGresult *r = PQexecParams(st->scan_conn, sql, 4, NULL, values, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "postgres scan: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	long n = 0;
	for (int row = 0; row < PQntuples(r) && (size_t)n < max; row++) {
		struct store_scan_item *it = &out[n];
		memset(it, 0, sizeof(*it));
		const char *hex = PQgetvalue(r, row, 0);
		if (!hex_to_serial(hex, strlen(hex), &it->serial))
			continue;
		struct store_record *rec = &it->rec;
		rec->reason = STORE_REASON_NONE;
		rec->status = STORE_GOOD;
		if (!PQgetisnull(r, row, 1))
			rec->not_after = strtoll(PQgetvalue(r, row, 1), NULL, 10);
		if (!PQgetisnull(r, row, 2)) {
			rec->status = STORE_REVOKED;
			rec->revoked_at = strtoll(PQgetvalue(r, row, 2), NULL, 10);
			if (!PQgetisnull(r, row, 3))
				rec->reason = (int)strtol(PQgetvalue(r, row, 3), NULL, 10);
			if (!PQgetisnull(r, row, 4))
				rec->invalidity_date = strtoll(PQgetvalue(r, row, 4), NULL, 10);
		}
		long long seq = strtoll(PQgetvalue(r, row, 5), NULL, 10);
		rec->version = seq > 0 ? (uint64_t)seq : 0;
		it->serial.version = rec->version;
		n++;
	}
	PQclear(r);
	return n;
}

static long pg_scan(struct store *base, struct store_issuer *sis, const struct store_serial *after,
                    int64_t now, unsigned flags, struct store_scan_item *out, size_t max,
                    char *err, size_t errlen)
{
	struct pg_store *st = (struct pg_store *)base;
	pthread_mutex_lock(&st->scan_lock);
	long n = pg_scan_locked(base, sis, after, now, flags, out, max, err, errlen);
	pthread_mutex_unlock(&st->scan_lock);
	return n;
}

static void pg_free(struct store *base)
{
	struct pg_store *st = (struct pg_store *)base;
	PQfinish(st->scan_conn);
	/* Loops and the feed must have been stopped (loop_done, unwatch) before. */
	for (size_t i = 0; i < st->n_issuers; i++) {
		free(st->issuers[i]->cert);
		free(st->issuers[i]);
	}
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->scan_lock);
	free(st->dsn);
	free(st);
}

static const struct store_ops pg_ops = {
	.kind = "postgres",
	.issuer = pg_issuer,
	.lookup = pg_lookup,
	.scan = pg_scan,
	.loop_done = pg_loop_done,
	.free = pg_free,
};

struct store *store_pg_new(const struct pg_options *o, char *err, size_t errlen)
{
	struct pg_store *st = calloc(1, sizeof(*st));
	if (st == NULL || (st->dsn = strdup(o->dsn)) == NULL) {
		free(st);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* Check the conninfo's syntax now; the server may well be down. */
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(o->dsn, &perr);
	if (opts == NULL) {
		snprintf(err, errlen, "postgres dsn: %s", perr ? perr : "cannot be parsed");
		PQfreemem(perr);
		free(st->dsn);
		free(st);
		return NULL;
	}
	PQconninfoFree(opts);
	st->base.ops = &pg_ops;
	snprintf(st->base.name, sizeof(st->base.name), "postgres");
	st->lookup_timeout_ms = o->lookup_timeout_ms ? o->lookup_timeout_ms : 1000;
	st->sweep_interval_ms = o->sweep_interval_ms ? o->sweep_interval_ms : 10000;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->scan_lock, NULL);
	return &st->base;
}
