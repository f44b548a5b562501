/*
 * One Redis connection on one libuv loop, with the deadlines hiredis's asynchronous
 * API lacks: every command is answered within the configured timeout (a NULL reply
 * when Redis is down, slow or unreachable), a connection that stalls is dropped and
 * re-established with backoff, and while it is down commands fail at once.
 */
#ifndef REVD_CACHE_REDIS_H
#define REVD_CACHE_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct rds;

struct rds_options {
	const char *address; /* "HOST:PORT", "[V6]:PORT" or "unix:/PATH" */
	unsigned timeout_ms; /* per command; also bounds connecting (at least 1 s) */
	const char *what;    /* for logs */
};

/* Called once per command, on the connection's loop: reply is NULL on any failure
 * (down, timeout, closing) and borrowed for the call. */
typedef void (*rds_cb)(void *arg, const redisReply *reply);

/* Starts connecting. Returns NULL only when the address cannot be parsed or memory
 * runs out. */
struct rds *rds_new(uv_loop_t *loop, const struct rds_options *o);

/* Fails outstanding commands and closes the handles; the loop can then end. */
void rds_close(struct rds *r);

bool rds_up(const struct rds *r);

/* Sends one command (binary-safe arguments). cb runs later, never before this returns. */
void rds_command(struct rds *r, rds_cb cb, void *arg, int argc, const char **argv,
                 const size_t *lens);

struct rds_stats {
	uint64_t commands, errors, timeouts, reconnects;
};
void rds_get_stats(const struct rds *r, struct rds_stats *out);

/* Splits "HOST:PORT", "[V6]:PORT" or "unix:/PATH". false on anything else. */
bool rds_parse_address(const char *address, char *host, size_t hostlen, int *port,
                       bool *is_unix);

#endif
