/*
 * The HTTP/1.1 front: one libuv loop per worker thread, each accepting on its own
 * SO_REUSEPORT socket per listen address; connections parsed by llhttp into a capped
 * per-connection state; requests on one connection answered strictly in order.
 */
#ifndef REVD_HTTP_HTTP_H
#define REVD_HTTP_HTTP_H

#include <llhttp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cache/l1.h"
#include "core/buf.h"
#include "core/config.h"

struct responder;
struct http_server;
struct http_worker;
struct conn;

/* Counter slots: methods GET, HEAD, POST, other; statuses as http_status_slots lists
 * them, the last slot for any other; OCSPResponseStatus 0-6 (4 unused) and 7 unused. */
#define HTTP_METHOD_SLOTS 4
#define HTTP_STATUS_SLOTS 13
#define HTTP_OCSP_SLOTS 8
extern const int http_status_slots[HTTP_STATUS_SLOTS - 1];
/* Upper bounds (seconds) of the buckets of the age of cached answers served. */
#define HTTP_AGE_BUCKETS 9
extern const double http_age_buckets[HTTP_AGE_BUCKETS];

/* Counts an OCSP answer sent on w (its OCSPResponseStatus). */
void http_count_ocsp(struct http_worker *w, int ocsp_status);

/* Work another thread hands to a worker's loop (see http_worker_post). */
struct http_mail {
	struct http_mail *next;
	void (*run)(struct http_mail *m);
};

struct http_worker {
	struct http_server *server;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_tcp_t listeners[CONFIG_MAX_LISTEN];
	int listen_fds[CONFIG_MAX_LISTEN]; /* bound before the loop exists */
	size_t n_listeners;
	uv_async_t wake;
	uv_timer_t tick; /* once a second: the Date header, the stop deadline */
	pthread_mutex_t mail_lock;
	struct http_mail *mail_head, *mail_tail;
	bool mail_closed; /* the loop is gone: mail runs on the poster's thread */
	char date[30]; /* IMF-fixdate of date_sec */
	int64_t date_sec;
	struct conn *conns; /* every open connection, for shutdown */
	size_t n_conns;
	bool stop_requested; /* set by another thread, under mail_lock */
	bool stopping;       /* the loop thread's own view of it */
	int stop_ticks;
	bool stores_closed;
	/* counters, read by other threads only as a rough view */
	uint64_t requests;
	uint64_t by_method[HTTP_METHOD_SLOTS];  /* written with relaxed atomics */
	uint64_t by_status[HTTP_STATUS_SLOTS];
	uint64_t ocsp_by_status[HTTP_OCSP_SLOTS]; /* OCSPResponseStatus of answers sent */
	uint64_t age_hist[HTTP_AGE_BUCKETS + 1]; /* cached answers served: now - producedAt */
	uint64_t age_total;                      /* their sum, seconds */
};

struct http_server {
	const struct config *cfg;
	struct responder *responder;
	unsigned n_workers;
	struct http_worker *workers;
	int fds[CONFIG_MAX_LISTEN];
	size_t n_fds;
	char bound[CONFIG_MAX_LISTEN][64]; /* "127.0.0.1:8080" as actually bound */
	struct api *api; /* the revocation API, for /metrics; NULL without [api] */
};

/* Creates and binds the listening sockets (so address errors surface before anything
 * starts). NULL with a message in err on failure. */
struct http_server *http_server_new(const struct config *cfg, struct responder *r, char *err,
                                    size_t errlen);
/* Starts the worker threads. */
int http_server_start(struct http_server *s, char *err, size_t errlen);
/* Stops accepting, finishes what is in flight (a few seconds at most), joins the workers. */
void http_server_stop(struct http_server *s);
void http_server_free(struct http_server *s);

/* Runs m->run on w's loop thread soon. Any thread may call it. Once w has stopped
 * (all its connections closed, so every job of its detached), m->run runs at once on
 * the caller's thread instead. */
void http_worker_post(struct http_worker *w, struct http_mail *m);

/* "127.0.0.1:8080" or "[::1]:8080". */
void http_format_addr(const struct sockaddr_storage *ss, char *out, size_t len);

/* Parses "HOST:PORT", "[V6]:PORT" or "PORT" (all addresses). */
int http_parse_listen(const char *s, struct sockaddr_storage *ss, char *err, size_t errlen);

/* ---- what a route sees of a request (valid until it responds) ---- */

struct http_request {
	struct conn *conn;
	struct http_worker *worker;
	int method; /* llhttp_method_t */
	bool head;
	const char *path; /* NUL-terminated request target */
	size_t path_len;
	const uint8_t *body;
	size_t body_len;
	const char *if_none_match; /* NULL if absent */
	const char *if_modified_since; /* NULL if absent */
};

/* Called by the connection for each complete request. The route answers with one of
 * the http_respond_* functions, now or later (see http_async). */
void http_route(struct http_request *req);

/*
 * The route will answer later. detach(job) is called if the connection closes first:
 * after it the route must not touch req or its connection, and frees job itself when
 * its work ends.
 */
void http_async(struct http_request *req, void *job, void (*detach)(void *job));

/* A cached answer: status 200, or 304 when If-None-Match matches its ETag. Borrows e. */
void http_respond_entry(struct http_request *req, struct cache_entry *e, int64_t now);

/* A published file (a CRL): 200, or 304 when If-None-Match matches its ETag or, without
 * If-None-Match, If-Modified-Since is not before its this_update. e's header lines
 * start with its ETag and include Last-Modified. Borrows e. */
void http_respond_file(struct http_request *req, struct cache_entry *e, int64_t max_age);

/* A body of the given type built for this request (takes ownership of the malloc'd
 * body), not to be cached: /metrics and the like. */
void http_respond_body(struct http_request *req, int status, const char *type, uint8_t *body,
                       size_t len);

/* An OCSP body built for this request alone (nonce, several CertIDs, error status).
 * Takes ownership of body (malloc'd) when own is true; copies nothing otherwise
 * (static bytes). cacheable: whether shared caches may keep it. */
void http_respond_ocsp(struct http_request *req, uint8_t *body, size_t len, bool own,
                       int64_t next_update, bool cacheable);

/* A plain status with a short text body (404, 405, 413, ...). */
void http_respond_status(struct http_request *req, int status, const char *text);

/* Reads the request's RFC 9110 strong-ETag match against etag ("\"...\""). */
bool http_etag_matches(const char *if_none_match, const char *etag, size_t etag_len);

const char *http_status_text(int status);

#endif
