/*
 * A hiredis asynchronous context driven by libuv, with deadlines.
 *
 * hiredis 0.14 has no timeouts for asynchronous commands, so each command carries its
 * own: a per-connection timer answers overdue commands with NULL (their late replies
 * are then dropped), and a connection with commands overdue by twice the timeout and
 * nothing read meanwhile is freed and reconnected. The socket is watched by revd's own
 * uv_poll glue rather than hiredis's libuv adapter, which ignores poll errors and so
 * never reports a refused connection.
 */
#include "cache/redis.h"

#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define RDS_MAX_PENDING 8192
#define RDS_BACKOFF_MIN_MS 50
#define RDS_BACKOFF_MAX_MS 1000

struct rcmd {
	struct rcmd *next, *prev;
	struct rds *r;
	rds_cb cb;
	void *arg;
	uint64_t sent_at;
	bool answered;
	bool in_list; /* on r's pending list (else on the failed queue or detached) */
};

struct rds_poll {
	uv_poll_t handle;
	redisAsyncContext *ac; /* NULL once hiredis let go of it */
	int events;
};

struct rds {
	uv_loop_t *loop;
	char host[256];
	int port;
	bool is_unix;
	unsigned timeout_ms;
	char what[64];
	redisAsyncContext *ac;
	bool connected;
	bool closing;
	uint64_t connect_started;
	uint64_t next_connect_at; /* 0: not waiting to reconnect */
	unsigned backoff_ms;
	uint64_t last_read_at;
	bool was_up; /* for logging transitions once */
	uv_timer_t tick;
	uv_timer_t fail_timer;
	int open_handles;
	struct rcmd *head, *tail; /* sent, in order */
	size_t n_pending;
	struct rcmd *failed; /* to answer with NULL on the next loop turn */
	struct rds_stats stats;
};

/* ---- the socket, for hiredis ---- */

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct rds_poll *p = h->data;
	/* On a socket error libuv stops the handle and reports no events: let hiredis find
	 * the error itself (a failed connect, a reset) by trying both directions. */
	if (status < 0)
		events = UV_READABLE | UV_WRITABLE;
	if (p->ac != NULL && (events & UV_READABLE))
		redisAsyncHandleRead(p->ac);
	if (p->ac != NULL && (events & UV_WRITABLE))
		redisAsyncHandleWrite(p->ac);
}

static void poll_update(struct rds_poll *p)
{
	if (p->events != 0)
		uv_poll_start(&p->handle, p->events, poll_cb);
	else
		uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d)
{
	struct rds_poll *p = d;
	p->events |= UV_READABLE;
	poll_update(p);
}

static void ev_del_read(void *d)
{
	struct rds_poll *p = d;
	p->events &= ~UV_READABLE;
	poll_update(p);
}

static void ev_add_write(void *d)
{
	struct rds_poll *p = d;
	p->events |= UV_WRITABLE;
	poll_update(p);
}

static void ev_del_write(void *d)
{
	struct rds_poll *p = d;
	p->events &= ~UV_WRITABLE;
	poll_update(p);
}

static void poll_closed(uv_handle_t *h)
{
	free(h->data);
}

static void ev_cleanup(void *d)
{
	struct rds_poll *p = d;
	p->ac = NULL;
	uv_close((uv_handle_t *)&p->handle, poll_closed);
}

static int attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	struct rds_poll *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -1;
	if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
		free(p);
		return -1;
	}
	p->handle.data = p;
	p->ac = ac;
	ac->ev.data = p;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	return 0;
}

/* ---- commands ---- */

static void list_remove(struct rds *r, struct rcmd *c)
{
	if (!c->in_list)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		r->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		r->tail = c->prev;
	c->next = c->prev = NULL;
	c->in_list = false;
	r->n_pending--;
}

static void answer(struct rcmd *c, const redisReply *reply)
{
	if (c->answered)
		return;
	c->answered = true;
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		c->r->stats.errors++;
	c->cb(c->arg, reply);
}

/* hiredis's callback: the reply, or NULL when the context is going away. */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rcmd *c = priv;
	struct rds *r = c->r;
	if (reply != NULL)
		r->last_read_at = uv_now(r->loop);
	list_remove(r, c);
	answer(c, reply);
	free(c);
}

static void on_fail_timer(uv_timer_t *t)
{
	struct rds *r = t->data;
	struct rcmd *c = r->failed;
	r->failed = NULL;
	while (c != NULL) {
		struct rcmd *next = c->next;
		answer(c, NULL);
		free(c);
		c = next;
	}
}

static void fail_soon(struct rds *r, struct rcmd *c)
{
	c->next = r->failed;
	r->failed = c;
	if (!uv_is_active((uv_handle_t *)&r->fail_timer))
		uv_timer_start(&r->fail_timer, on_fail_timer, 0, 0);
}

void rds_command(struct rds *r, rds_cb cb, void *arg, int argc, const char **argv,
                 const size_t *lens)
{
	struct rcmd *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		/* Nowhere to keep the callback: answer now, the one case that does. */
		cb(arg, NULL);
		return;
	}
	c->r = r;
	c->cb = cb;
	c->arg = arg;
	r->stats.commands++;
	/* While connecting, hiredis holds commands until the connection is up. */
	if (r->closing || r->ac == NULL || r->n_pending >= RDS_MAX_PENDING) {
		fail_soon(r, c);
		return;
	}
	if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
		fail_soon(r, c);
		return;
	}
	c->sent_at = uv_now(r->loop);
	c->in_list = true;
	c->prev = r->tail;
	if (r->tail != NULL)
		r->tail->next = c;
	else
		r->head = c;
	r->tail = c;
	r->n_pending++;
}

/* ---- connecting ---- */

static void schedule_reconnect(struct rds *r)
{
	r->connected = false;
	r->ac = NULL;
	if (r->closing)
		return;
	r->next_connect_at = uv_now(r->loop) + r->backoff_ms;
	r->backoff_ms = r->backoff_ms * 2 > RDS_BACKOFF_MAX_MS ? RDS_BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this returns. */
		if (r->was_up || r->stats.reconnects == 0)
			log_warn("redis %s: cannot connect: %s", r->what, ac->errstr);
		r->was_up = false;
		schedule_reconnect(r);
		return;
	}
	r->connected = true;
	r->backoff_ms = RDS_BACKOFF_MIN_MS;
	r->last_read_at = uv_now(r->loop);
	if (!r->was_up)
		log_info("redis %s: connected", r->what);
	r->was_up = true;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;
	if (!r->closing && status != REDIS_OK)
		log_warn("redis %s: connection lost: %s", r->what, ac->errstr);
	r->was_up = false;
	schedule_reconnect(r);
}

static void start_connect(struct rds *r)
{
	r->next_connect_at = 0;
	r->stats.reconnects++;
	redisAsyncContext *ac = r->is_unix ? redisAsyncConnectUnix(r->host)
	                                   : redisAsyncConnect(r->host, r->port);
	if (ac == NULL) {
		schedule_reconnect(r);
		return;
	}
	if (ac->err != 0) {
		if (r->was_up || r->stats.reconnects == 1)
			log_warn("redis %s: cannot connect: %s", r->what, ac->errstr);
		redisAsyncFree(ac);
		schedule_reconnect(r);
		return;
	}
	ac->data = r;
	if (attach(ac, r->loop) != 0) {
		redisAsyncFree(ac);
		schedule_reconnect(r);
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	r->ac = ac;
	r->connect_started = uv_now(r->loop);
}

/* Drops the connection from outside hiredis's callbacks; pending commands get NULL. */
static void drop(struct rds *r, const char *why)
{
	if (r->ac == NULL)
		return;
	log_warn("redis %s: %s; reconnecting", r->what, why);
	redisAsyncContext *ac = r->ac;
	r->ac = NULL;
	r->was_up = false;
	redisAsyncFree(ac); /* runs on_reply(NULL) for each pending command, then on_disconnect */
	schedule_reconnect(r);
}

static void on_tick(uv_timer_t *t)
{
	struct rds *r = t->data;
	uint64_t now = uv_now(r->loop);
	/* Answer overdue commands now; their replies, if they come, are dropped. */
	for (struct rcmd *c = r->head; c != NULL; c = c->next) {
		if (c->sent_at + r->timeout_ms > now)
			break;
		if (!c->answered) {
			r->stats.timeouts++;
			answer(c, NULL);
		}
	}
	uint64_t stall = 2 * (uint64_t)r->timeout_ms;
	if (r->ac != NULL && r->connected && r->head != NULL && r->head->sent_at + stall <= now &&
	    r->last_read_at + stall <= now)
		drop(r, "no reply within twice the timeout");
	uint64_t connect_limit = r->timeout_ms < 1000 ? 1000 : r->timeout_ms;
	if (r->ac != NULL && !r->connected && r->connect_started + connect_limit <= now &&
	    !r->closing)
		drop(r, "connecting took too long");
	if (r->ac == NULL && r->next_connect_at != 0 && r->next_connect_at <= now)
		start_connect(r);
}

bool rds_parse_address(const char *address, char *host, size_t hostlen, int *port, bool *is_unix)
{
	if (strncmp(address, "unix:", 5) == 0) {
		const char *path = address + 5;
		if (path[0] != '/' || strlen(path) >= hostlen)
			return false;
		strcpy(host, path);
		*is_unix = true;
		*port = 0;
		return true;
	}
	*is_unix = false;
	const char *colon = strrchr(address, ':');
	if (colon == NULL || colon == address)
		return false;
	const char *h = address;
	size_t hl = (size_t)(colon - address);
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return false;
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostlen)
		return false;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end != 0 || colon[1] == 0 || p < 1 || p > 65535)
		return false;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = (int)p;
	return true;
}

struct rds *rds_new(uv_loop_t *loop, const struct rds_options *o)
{
	struct rds *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	if (!rds_parse_address(o->address, r->host, sizeof(r->host), &r->port, &r->is_unix)) {
		free(r);
		return NULL;
	}
	r->loop = loop;
	r->timeout_ms = o->timeout_ms ? o->timeout_ms : 250;
	snprintf(r->what, sizeof(r->what), "%s", o->what ? o->what : o->address);
	r->backoff_ms = RDS_BACKOFF_MIN_MS;
	uv_timer_init(loop, &r->tick);
	uv_timer_init(loop, &r->fail_timer);
	r->tick.data = r;
	r->fail_timer.data = r;
	r->open_handles = 2;
	unsigned period = r->timeout_ms / 4;
	period = period < 2 ? 2 : period > 100 ? 100 : period;
	uv_timer_start(&r->tick, on_tick, period, period);
	start_connect(r);
	return r;
}

static void handle_closed(uv_handle_t *h)
{
	struct rds *r = h->data;
	if (--r->open_handles == 0)
		free(r);
}

void rds_close(struct rds *r)
{
	if (r == NULL)
		return;
	r->closing = true;
	if (r->ac != NULL) {
		redisAsyncContext *ac = r->ac;
		r->ac = NULL;
		redisAsyncFree(ac);
	}
	on_fail_timer(&r->fail_timer);
	uv_close((uv_handle_t *)&r->tick, handle_closed);
	uv_close((uv_handle_t *)&r->fail_timer, handle_closed);
}

bool rds_up(const struct rds *r)
{
	return r->connected && r->ac != NULL;
}

void rds_get_stats(const struct rds *r, struct rds_stats *out)
{
	*out = r->stats;
}
