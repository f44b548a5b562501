/*
 * The revocation API server (see api.h). Each connection runs TLS through memory BIOs
 * on the control loop: ciphertext read from the socket goes into the SSL object, the
 * plaintext it yields goes to llhttp, and whatever the SSL object has to send is
 * written out after each step. One request per connection at a time: the parser pauses
 * at each request's end, and reading stops until its answer is written.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/api.h"
#include "http/http.h"
#include "http/responder.h"

#define API_MAX_CONNS 256
#define API_MAX_HEADER_BYTES (16 * 1024)
#define API_MAX_URL 2048
#define API_HANDSHAKE_MS 3000 /* from accept to a verified client */
#define API_REQUEST_MS 10000   /* a whole request */
#define API_CALL_MS 10000      /* a call's database work; then 503, outcome unknown */
#define API_MAX_PER_PEER 32    /* connections from one address */
#define API_IDLE_MS 30000    /* between requests on a kept-alive connection */
#define API_RECENT 1024      /* changes remembered for calls that commit before hearing */
#define API_TICK_MS 50
#define API_WRITERS 2 /* database connections for calls, each on its own thread */
#define API_LINGER_MS 2000 /* after a last answer, what the client still sends is read */

static const int status_slots[] = {200, 202, 400, 403, 404, 405, 409, 413, 414, 431, 500, 503};
#define STATUS_SLOTS (sizeof(status_slots) / sizeof(status_slots[0]) + 1) /* + other */
const double api_live_buckets[API_LIVE_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
#define LIVE_BUCKETS API_LIVE_BUCKETS
#define live_buckets api_live_buckets
_Static_assert(sizeof(status_slots) / sizeof(status_slots[0]) + 1 == API_STATUS_SLOTS,
               "api_stats slots");

struct api_conn;

/* One call, from its parsed request to its answer. */
struct api_job {
	struct api_job *next_q; /* in the writers' queue, then in the done list */
	struct api_job *next_inflight; /* from dispatch until the writers are done with it */
	uint64_t call_deadline_ms;
	bool abandoned; /* answered 503 at its deadline: its outcome is only logged */
	struct api *api;
	struct api_conn *conn; /* NULL once the connection is gone: the job frees itself */
	struct api_call call;
	char db_issuer[128];
	struct store *store;
	/* the outcome, from a writer thread */
	enum revoke_result res;
	int read_rc; /* API_STATUS: revoke_read's */
	bool retry; /* failed, and trying again later may succeed: 503 */
	struct revoke_state before, after;
	char err[512];
	uint64_t committed_ns;
	/* waiting for the change to be served */
	char client[256]; /* who asked, for the log */
	struct api_job *next_waiting;
	uint64_t deadline_ms;
	bool live;
	bool stopping; /* answered because revd is stopping, not because it waited */
	double live_ms;
};

struct api_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct api *api;
	struct api_conn *prev, *next;
	int open_handles;
	bool closing;
	bool reading;
	bool handshaken;
	bool allowed;
	bool busy;        /* a request is being answered */
	bool in_pump;     /* pump is on the stack: an answer given now returns to it */
	bool close_after; /* close once the answer is written */
	bool lingering;   /* answered and shut down: reading what the peer still sends */
	uv_shutdown_t shutdown_req;
	unsigned writes_pending;
	char who[256]; /* the client, for logs and 403s */
	char peer[64];
	SSL *ssl;
	BIO *rbio, *wbio;
	llhttp_t parser;
	struct buf url, body, pending; /* pending: plaintext read past a paused request */
	size_t pending_off;            /* how much of pending the parser has had */
	struct sockaddr_storage peer_ss;
	size_t header_bytes;
	int error_status;
	struct api_job *job;
};

/* What a reload may replace: the TLS credentials and who may call. */
struct api_tls {
	SSL_CTX *ctx;
	char *allow[CONFIG_MAX_ALLOW];
	size_t n_allow;
};

struct api_writer {
	struct api *api;
	pthread_t thread;
	struct revoke_db *db;
};

struct api {
	const struct config *cfg;
	struct responder *r;
	struct api_tls *tls; /* the current one: new connections take it */
	uv_loop_t *loop;
	int fds[CONFIG_MAX_LISTEN];
	size_t n_fds;
	uv_tcp_t listeners[CONFIG_MAX_LISTEN];
	size_t n_listening;
	char bound[CONFIG_MAX_LISTEN][64];
	struct api_conn *conns;
	size_t n_conns;
	bool stopped;
	/* Writer threads of the API's own, each with its database connection: a slow or
	 * unreachable database holds them, never libuv's pool, where answers are signed. */
	struct api_writer writers[API_WRITERS];
	size_t n_writers_started;
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	struct api_job *q_head, *q_tail; /* waiting for a writer */
	struct api_job *done;            /* finished, for the loop (newest first) */
	bool q_stop;
	uv_async_t done_async;
	bool async_open;
	bool stuck; /* a writer never came back from the database: nothing is freed */
	/* counters: written on the loop, read by /metrics on any thread */
	_Atomic uint64_t by_status[STATUS_SLOTS];
	_Atomic uint64_t handshake_failures;
	_Atomic uint64_t live_hist[LIVE_BUCKETS + 1];
	_Atomic uint64_t live_ns_total;
	/* calls waiting for their change to be served, and changes heard lately */
	struct api_job *waiting;
	uv_timer_t tick;
	bool tick_on;
	struct {
		struct store *store;
		struct store_serial serial;
		uint64_t heard_ns;
	} recent[API_RECENT];
	size_t recent_next;
	/* refused handshakes logged in the current second */
	uint64_t refused_sec, refused_quiet;
	unsigned refused_logged;
	/* calls with the writers, for their deadline */
	struct api_job *inflight;
};

static llhttp_settings_t parser_settings;

static void conn_close(struct api_conn *c);
static void pump(struct api_conn *c);
static void linger(struct api_conn *c);

/* ---- credentials ---- */

/* err = "what: the first OpenSSL reason" (and the queue cleared). */
static void ssl_error(const char *what, char *err, size_t errlen)
{
	unsigned long e = ERR_peek_last_error();
	char why[256] = "unknown error";
	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, why);
}

static int load_crls(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
	BIO *in = BIO_new_file(path, "r");
	char what[512];
	snprintf(what, sizeof(what), "[api] client_crl %s", path);
	if (in == NULL) {
		ssl_error(what, err, errlen);
		return -1;
	}
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	int n = 0;
	X509_CRL *crl;
	while ((crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL)) != NULL) {
		X509_STORE_add_crl(st, crl);
		X509_CRL_free(crl);
		n++;
	}
	ERR_clear_error(); /* the end of the file */
	BIO_free(in);
	if (n == 0) {
		snprintf(err, errlen, "%s: no PEM CRL in it", what);
		return -1;
	}
	X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

static SSL_CTX *make_ctx(const struct config *cfg, char *err, size_t errlen)
{
	char what[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *names = NULL;
	if (ctx == NULL) {
		ssl_error("[api]: creating the TLS context", err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	static const char *const keys[] = {"cert", "key", "client_ca", "client_crl"};
	const char *files[] = {cfg->api_cert, cfg->api_key, cfg->api_client_ca, cfg->api_client_crl};
	for (size_t i = 0; i < 4; i++) {
		FILE *f = files[i] ? fopen(files[i], "r") : NULL;
		if (files[i] != NULL && f == NULL) {
			snprintf(err, errlen, "[api] %s %s: %s", keys[i], files[i], strerror(errno));
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (f != NULL)
			fclose(f);
	}
	snprintf(what, sizeof(what), "[api] cert %s", cfg->api_cert);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->api_cert) != 1)
		goto fail;
	snprintf(what, sizeof(what), "[api] key %s", cfg->api_key);
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->api_key, SSL_FILETYPE_PEM) != 1)
		goto fail;
	snprintf(what, sizeof(what), "[api] key %s does not match cert %s", cfg->api_key,
	         cfg->api_cert);
	if (SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	snprintf(what, sizeof(what), "[api] client_ca %s", cfg->api_client_ca);
	if (SSL_CTX_load_verify_locations(ctx, cfg->api_client_ca, NULL) != 1)
		goto fail;
	names = SSL_load_client_CA_file(cfg->api_client_ca);
	if (names == NULL)
		goto fail;
	SSL_CTX_set_client_CA_list(ctx, names); /* takes it */
	if (cfg->api_client_crl != NULL && load_crls(ctx, cfg->api_client_crl, err, errlen) != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 5);
	static const unsigned char sid[] = "revd-api";
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	return ctx;
fail:
	ssl_error(what, err, errlen);
	SSL_CTX_free(ctx);
	return NULL;
}

void api_tls_free(struct api_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	for (size_t i = 0; i < t->n_allow; i++)
		free(t->allow[i]);
	free(t);
}

struct api_tls *api_tls_load(const struct config *cfg, char *err, size_t errlen)
{
	struct api_tls *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->ctx = make_ctx(cfg, err, errlen);
	if (t->ctx == NULL)
		goto fail;
	for (; t->n_allow < cfg->n_api_allow; t->n_allow++)
		if ((t->allow[t->n_allow] = strdup(cfg->api_allow[t->n_allow])) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	return t;
fail:
	api_tls_free(t);
	return NULL;
}

void api_tls_use(struct api *a, struct api_tls *t)
{
	api_tls_free(a->tls); /* open connections' SSL objects hold their own reference */
	a->tls = t;
	/* A client removed from allow, or revoked in the new CRL, must not keep a session:
	 * idle connections close now, the others after their answer. Clients connect again
	 * and are checked against the new credentials. */
	for (struct api_conn *c = a->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->job == NULL && !c->busy && !c->lingering && c->writes_pending == 0)
			conn_close(c);
		else
			c->close_after = true;
	}
	log_info("api: certificate, key, client CA and CRL, and allow list reloaded (%zu "
	         "identit%s)", t->n_allow, t->n_allow == 1 ? "y" : "ies");
}

static int bind_listener(struct api *a, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	if (http_parse_listen(addr, &ss, err, errlen) != 0)
		return -1;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "[api] socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	socklen_t sl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
	                                        : sizeof(struct sockaddr_in6);
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
		snprintf(err, errlen, "[api] cannot listen on %s: %s", addr, strerror(errno));
		close(fd);
		return -1;
	}
	socklen_t got = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &got);
	http_format_addr(&ss, a->bound[a->n_fds], sizeof(a->bound[0]));
	a->fds[a->n_fds++] = fd;
	return 0;
}

struct api *api_new(const struct config *cfg, struct responder *r, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->cfg = cfg;
	a->r = r;
	pthread_mutex_init(&a->q_lock, NULL);
	pthread_cond_init(&a->q_cond, NULL);
	a->tls = api_tls_load(cfg, err, errlen);
	if (a->tls == NULL)
		goto fail;
	if (r == NULL)
		return a;
	for (size_t i = 0; i < cfg->n_api_listen; i++)
		if (bind_listener(a, cfg->api_listen[i], err, errlen) != 0)
			goto fail;
	for (size_t i = 0; i < API_WRITERS; i++) {
		a->writers[i].api = a;
		a->writers[i].db = revoke_db_new(cfg->api_dsn != NULL ? cfg->api_dsn : cfg->pg_dsn);
		if (a->writers[i].db == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	return a;
fail:
	api_free(a);
	return NULL;
}

bool api_stuck(const struct api *a)
{
	return a != NULL && a->stuck;
}

const char *api_bound(const struct api *a)
{
	return a->n_fds > 0 ? a->bound[0] : "";
}

/* ---- writing ---- */

struct api_write {
	uv_write_t req;
	struct api_conn *c;
	uint8_t *data;
};

static void on_written(uv_write_t *req, int status)
{
	struct api_write *w = (struct api_write *)req;
	struct api_conn *c = w->c;
	free(w->data);
	free(w);
	c->writes_pending--;
	if (status != 0)
		conn_close(c);
	else if (c->writes_pending == 0 && c->close_after && !c->busy)
		linger(c); /* the last answer is out (not a handshake's bytes before it) */
	else if (c->writes_pending == 0 && !c->closing && !c->lingering && c->handshaken)
		pump(c); /* written: the next request may be read */
}

/* Sends what the SSL object has for the peer. */
static void flush(struct api_conn *c)
{
	size_t n = (size_t)BIO_ctrl_pending(c->wbio);
	if (n == 0 || c->closing)
		return;
	struct api_write *w = malloc(sizeof(*w));
	uint8_t *data = malloc(n);
	if (w == NULL || data == NULL || BIO_read(c->wbio, data, (int)n) != (int)n) {
		free(w);
		free(data);
		conn_close(c);
		return;
	}
	w->c = c;
	w->data = data;
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
	c->writes_pending++;
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
		c->writes_pending--;
		free(data);
		free(w);
		conn_close(c);
	}
}

static void arm(struct api_conn *c, unsigned ms);

static void count_status(struct api *a, int status)
{
	size_t i = 0;
	while (i < STATUS_SLOTS - 1 && status_slots[i] != status)
		i++;
	atomic_fetch_add_explicit(&a->by_status[i], 1, memory_order_relaxed);
}

static void respond(struct api_conn *c, int status, const char *extra_headers, json_t *body)
{
	count_status(c->api, status);
	/* The access log: every answer, with who asked. */
	int url_len = c->url.len > 160 ? 160 : (int)c->url.len;
	log_msg(status < 400 ? LOG_INFO : LOG_WARN, "api: %s %s %s %.*s -> %d", c->peer, c->who,
	        llhttp_method_name((llhttp_method_t)llhttp_get_method(&c->parser)), url_len,
	        c->url.data ? (const char *)c->url.data : "", status);
	c->job = NULL; /* answered: the caller has freed it or is about to */
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	size_t len = text ? strlen(text) + 1 : 0; /* with a newline */
	char head[512];
	int hl = snprintf(head, sizeof(head),
	                  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	                  "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
	                  status, http_status_text(status), len, extra_headers ? extra_headers : "",
	                  c->close_after ? "Connection: close\r\n" : "");
	/* One TLS record for the whole answer. */
	char *msg = malloc((size_t)hl + len);
	if (msg != NULL) {
		memcpy(msg, head, (size_t)hl);
		if (text != NULL) {
			memcpy(msg + hl, text, len - 1);
			msg[(size_t)hl + len - 1] = '\n';
		}
	}
	free(text);
	ERR_clear_error();
	if (msg == NULL || SSL_write(c->ssl, msg, hl + (int)len) != hl + (int)len) {
		free(msg);
		ERR_clear_error();
		conn_close(c);
		return;
	}
	free(msg);
	c->busy = false;
	if (c->close_after) {
		/* Closed once this is written (on_written, then linger). */
		SSL_shutdown(c->ssl);
		flush(c);
		return;
	}
	flush(c);
	if (c->closing)
		return;
	/* Ready for the next request: what was read past this one first. */
	arm(c, API_IDLE_MS);
	llhttp_resume(&c->parser);
	if (!c->in_pump)
		pump(c);
}

static void respond_error(struct api_conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void respond_error(struct api_conn *c, int status, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	respond(c, status,
	        status == 405   ? "Allow: POST\r\n"
	        : status == 503 ? "Retry-After: 1\r\n" /* a timeout, a lock, the database away */
	                        : NULL,
	        json_pack("{ss}", "error", msg));
}

/* ---- answers ---- */

/* The serial as the API writes it: hex digits as openssl prints them, no "0x". */
static void serial_text(const struct store_serial *s, char out[REVOKE_SERIAL_HEX_LEN])
{
	char hex[REVOKE_SERIAL_HEX_LEN];
	revoke_serial_hex(s, hex);
	const char *x = strstr(hex, "0x");
	size_t neg = hex[0] == '-';
	snprintf(out, REVOKE_SERIAL_HEX_LEN, "%s%s", neg ? "-" : "", x ? x + 2 : hex + neg);
}

static json_t *time_json(int64_t t)
{
	char s[REVOKE_TIME_LEN];
	revoke_time_format(t, s);
	return json_string(s);
}

/* The certificate's state as every answer gives it. */
static json_t *state_json(const struct api_job *j, const struct revoke_state *st, bool issued)
{
	char serial[REVOKE_SERIAL_HEX_LEN];
	serial_text(&j->call.ch.serial, serial);
	json_t *o = json_pack("{ssss}", "issuer", j->call.issuer, "serial", serial);
	if (!issued) {
		json_object_set_new(o, "status", json_string("not_issued"));
		return o;
	}
	json_object_set_new(o, "status", json_string(st->revoked ? "revoked" : "good"));
	if (st->revoked) {
		json_object_set_new(o, "reason", json_string(revoke_reason_name(st->reason)));
		json_object_set_new(o, "revoked_at", time_json(st->revoked_at));
		if (st->invalidity_date != 0)
			json_object_set_new(o, "invalidity_date", time_json(st->invalidity_date));
	}
	json_object_set_new(o, "not_after", time_json(st->not_after));
	return o;
}

static void add_crl(struct api *a, const struct api_job *j, json_t *o)
{
	struct crl_where w;
	if (crl_publisher_where(a->r->crl, j->call.issuer, &j->call.ch.serial, clock_now(), &w) != 1)
		return;
	json_t *crl = json_pack("{ss}", "full", w.full);
	if (w.delta[0])
		json_object_set_new(crl, "delta", json_string(w.delta));
	json_object_set_new(crl, "after_number", w.number ? json_integer((json_int_t)w.number)
	                                                  : json_null());
	json_object_set_new(crl, "by", w.by ? time_json(w.by) : json_null());
	json_object_set_new(o, "crl", crl);
}

static const char *result_name(enum revoke_result r)
{
	switch (r) {
	case REVOKE_REVOKED: return "revoked";
	case REVOKE_REASON_CHANGED: return "reason_changed";
	case REVOKE_RELEASED: return "released";
	default: return "none";
	}
}

/* A write is committed and, live or not, answered now. */
static void answer_write(struct api_job *j)
{
	struct api_conn *c = j->conn;
	char serial[REVOKE_SERIAL_HEX_LEN];
	serial_text(&j->call.ch.serial, serial);
	if (j->live)
		log_cert(LOG_INFO, j->call.issuer, serial,
		         "api: %s %s serial %s for %s: served after %.1f ms", result_name(j->res),
		         j->call.issuer, serial, j->client, j->live_ms);
	else if (j->stopping)
		log_cert(LOG_WARN, j->call.issuer, serial,
		         "api: %s %s serial %s for %s: committed; revd is stopping before this "
		         "instance served it", result_name(j->res), j->call.issuer, serial, j->client);
	else
		log_cert(LOG_WARN, j->call.issuer, serial,
		         "api: %s %s serial %s for %s: committed, not yet served after [api] "
		         "live_timeout", result_name(j->res), j->call.issuer, serial, j->client);
	if (c == NULL) {
		free(j);
		return;
	}
	json_t *o = state_json(j, &j->after, true);
	json_object_set_new(o, "result", json_string(result_name(j->res)));
	json_object_set_new(o, "live", json_boolean(j->live));
	if (j->live)
		json_object_set_new(o, "live_ms", json_real(j->live_ms));
	add_crl(j->api, j, o);
	int status = j->live ? 200 : 202;
	free(j);
	respond(c, status, NULL, o);
}

/* ---- waiting until this instance serves the change ---- */

static bool same_serial(const struct store_serial *x, const struct store_serial *y)
{
	return x->len == y->len && memcmp(x->bytes, y->bytes, x->len) == 0;
}

/* Whether a report of (s, serial) covers a write that committed version v: the same
 * row, at that version or later (0: the reporter does not know the version). */
static bool covers(struct store *s, const struct store_serial *serial, const struct api_job *j)
{
	return s == j->store && same_serial(serial, &j->call.ch.serial) &&
	       (serial->scope == 0 || serial->scope == j->after.issuer_id) &&
	       (serial->version == 0 || serial->version >= j->after.change_seq);
}

static void on_tick(uv_timer_t *t);

/* The tick runs while a call waits on the database or to be served. */
static void ensure_tick(struct api *a)
{
	if (!a->tick_on && !a->stopped) {
		uv_timer_start(&a->tick, on_tick, API_TICK_MS, API_TICK_MS);
		a->tick_on = true;
	}
}

static void maybe_stop_tick(struct api *a)
{
	if (a->waiting == NULL && a->inflight == NULL && a->tick_on) {
		uv_timer_stop(&a->tick);
		a->tick_on = false;
	}
}

static void unwait(struct api *a, struct api_job *j)
{
	for (struct api_job **p = &a->waiting; *p != NULL; p = &(*p)->next_waiting)
		if (*p == j) {
			*p = j->next_waiting;
			break;
		}
	maybe_stop_tick(a);
}

static void unflight(struct api *a, struct api_job *j)
{
	for (struct api_job **p = &a->inflight; *p != NULL; p = &(*p)->next_inflight)
		if (*p == j) {
			*p = j->next_inflight;
			break;
		}
	maybe_stop_tick(a);
}

/* The database has not answered in time: the client is told, and the call's outcome,
 * when it comes, is only logged. */
static void abandon(struct api_job *j, const char *why)
{
	struct api_conn *c = j->conn;
	j->abandoned = true;
	j->conn = NULL;
	if (c == NULL)
		return;
	c->job = NULL;
	c->close_after = true;
	respond_error(c, 503, "%s: the %s may or may not have been made; ask /v1/status", why,
	              j->call.op == API_STATUS ? "lookup" : "change");
}

/* Live since heard_ns: the time from the commit returning, or 0 when the change was
 * heard before the commit's reply came back. */
static void set_live(struct api_job *j, uint64_t heard_ns)
{
	j->live = true;
	uint64_t ns = heard_ns > j->committed_ns ? heard_ns - j->committed_ns : 0;
	j->live_ms = (double)ns / 1e6;
	unsigned b = 0;
	while (b < LIVE_BUCKETS && (double)ns / 1e9 > live_buckets[b])
		b++;
	atomic_fetch_add_explicit(&j->api->live_hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&j->api->live_ns_total, ns, memory_order_relaxed);
}

static void now_live(struct api *a, struct api_job *j)
{
	unwait(a, j);
	set_live(j, uv_hrtime());
	answer_write(j);
}

static void on_change(void *arg, struct store *s, const struct store_serial *serials, size_t n)
{
	struct api *a = arg;
	if (serials == NULL)
		return; /* a bulk change: each write still hears its own row */
	for (size_t i = 0; i < n; i++) {
		a->recent[a->recent_next].store = s;
		a->recent[a->recent_next].serial = serials[i];
		a->recent[a->recent_next].heard_ns = uv_hrtime();
		a->recent_next = (a->recent_next + 1) % API_RECENT;
		struct api_job *j = a->waiting;
		while (j != NULL) {
			struct api_job *next = j->next_waiting;
			if (covers(s, &serials[i], j))
				now_live(a, j);
			j = next;
		}
	}
}

static void on_tick(uv_timer_t *t)
{
	struct api *a = t->data;
	uint64_t now = uv_now(a->loop);
	for (struct api_job *f = a->inflight; f != NULL; f = f->next_inflight)
		if (!f->abandoned && now >= f->call_deadline_ms)
			abandon(f, "the database did not answer within 10 s");
	struct api_job *j = a->waiting;
	while (j != NULL) {
		struct api_job *next = j->next_waiting;
		if (now >= j->deadline_ms) {
			unwait(a, j);
			answer_write(j);
		}
		j = next;
	}
}

/* A committed write: answered when the change is heard (it may have been already). */
static void wait_live(struct api *a, struct api_job *j)
{
	for (size_t i = 0; i < API_RECENT; i++)
		if (a->recent[i].store != NULL && covers(a->recent[i].store, &a->recent[i].serial, j)) {
			set_live(j, a->recent[i].heard_ns);
			answer_write(j);
			return;
		}
	j->deadline_ms = uv_now(a->loop) + a->cfg->api_live_timeout_ms;
	j->next_waiting = a->waiting;
	a->waiting = j;
	ensure_tick(a);
}

/* ---- the database, on the writer threads ---- */

static void run_job(struct api_job *j, struct revoke_db *db)
{
	PGconn *pg = revoke_db_conn(db, j->err, sizeof(j->err));
	if (pg == NULL) {
		j->res = REVOKE_FAILED;
		j->read_rc = -1;
		j->retry = true;
	} else if (j->call.op == API_STATUS) {
		j->read_rc = revoke_read(pg, j->db_issuer, &j->call.ch.serial, &j->after, j->err,
		                         sizeof(j->err));
		j->retry = j->read_rc == -1 && (revoke_db_lost(db) || revoke_failure_is_transient());
	} else {
		struct revoke_change ch = j->call.ch;
		ch.issuer = j->db_issuer;
		j->res = revoke_apply(pg, &ch, &j->before, &j->after, j->err, sizeof(j->err));
		j->committed_ns = uv_hrtime();
		j->retry = j->res == REVOKE_FAILED && (revoke_db_lost(db) ||
		                                         revoke_failure_is_transient());
	}
}

static void *writer_main(void *arg)
{
	struct api_writer *w = arg;
	struct api *a = w->api;
	struct revoke_db *db = w->db;
	pthread_mutex_lock(&a->q_lock);
	for (;;) {
		while (a->q_head == NULL && !a->q_stop)
			pthread_cond_wait(&a->q_cond, &a->q_lock);
		struct api_job *j = a->q_head;
		if (j == NULL)
			break; /* stopping, and nothing left */
		a->q_head = j->next_q;
		if (a->q_head == NULL)
			a->q_tail = NULL;
		bool stopping = a->q_stop;
		pthread_mutex_unlock(&a->q_lock);
		if (stopping) {
			/* Not started: it changes nothing, and says so. */
			j->res = REVOKE_FAILED;
			j->read_rc = -1;
			j->retry = true;
			snprintf(j->err, sizeof(j->err), "revd is stopping: nothing was changed");
		} else {
			run_job(j, db);
		}
		pthread_mutex_lock(&a->q_lock);
		j->next_q = a->done;
		a->done = j;
		uv_async_send(&a->done_async);
	}
	pthread_mutex_unlock(&a->q_lock);
	return NULL;
}

static void job_done(struct api_job *j);

/* The jobs the writers finished, in the order they finished. */
static void take_done(struct api *a)
{
	pthread_mutex_lock(&a->q_lock);
	struct api_job *list = a->done, *ordered = NULL;
	a->done = NULL;
	pthread_mutex_unlock(&a->q_lock);
	while (list != NULL) {
		struct api_job *next = list->next_q;
		list->next_q = ordered;
		ordered = list;
		list = next;
	}
	while (ordered != NULL) {
		struct api_job *next = ordered->next_q;
		job_done(ordered);
		ordered = next;
	}
}

static void on_done(uv_async_t *h)
{
	take_done(h->data);
}

static void job_done(struct api_job *j)
{
	struct api *a = j->api;
	struct api_conn *c = j->conn;
	unflight(a, j);
	if (j->abandoned) {
		char sx[REVOKE_SERIAL_HEX_LEN];
		serial_text(&j->call.ch.serial, sx);
		log_cert(LOG_WARN, j->call.issuer, sx, "api: %s serial %s, answered 503 at its "
		         "deadline, ended: %s", j->call.issuer, sx,
		         j->call.op == API_STATUS ? (j->read_rc < 0 ? j->err : "looked up")
		         : j->res == REVOKE_FAILED ? j->err
		                                   : result_name(j->res));
		free(j);
		return;
	}
	bool changed = j->res == REVOKE_REVOKED || j->res == REVOKE_REASON_CHANGED ||
	               j->res == REVOKE_RELEASED;
	if (j->call.op == API_STATUS) {
		json_t *o = j->read_rc >= 0 ? state_json(j, &j->after, j->read_rc == 1) : NULL;
		int st = o ? 200 : j->read_rc == -2 ? 404 : j->retry ? 503 : 500;
		char msg[768];
		if (j->read_rc == -2)
			snprintf(msg, sizeof(msg), "issuer '%s' is not in the database", j->call.issuer);
		else
			snprintf(msg, sizeof(msg), "%s", j->err);
		free(j);
		if (c == NULL)
			json_decref(o);
		else if (o != NULL)
			respond(c, st, NULL, o);
		else
			respond_error(c, st, "%s", msg);
		return;
	}
	if (changed) {
		/* Answered when served, or at once once the API is closing; logged either way,
		 * even if the connection went away. */
		if (a->stopped) {
			j->stopping = true;
			answer_write(j);
		} else
			wait_live(a, j);
		return;
	}
	const char *is = j->call.issuer;
	char sx[REVOKE_SERIAL_HEX_LEN], at[REVOKE_TIME_LEN];
	serial_text(&j->call.ch.serial, sx);
	revoke_time_format(j->before.revoked_at, at);
	int st;
	char msg[768];
	switch (j->res) {
	case REVOKE_UNKNOWN_ISSUER:
		st = 404;
		snprintf(msg, sizeof(msg), "issuer '%s' is not in the database", is);
		break;
	case REVOKE_NOT_ISSUED:
		st = 404;
		snprintf(msg, sizeof(msg), "serial %s is not in the database: not issued by %s", sx, is);
		break;
	case REVOKE_ALREADY:
		st = 409;
		snprintf(msg, sizeof(msg), "serial %s of %s is already revoked (at %s, %s)", sx, is, at,
		         revoke_reason_name(j->before.reason));
		break;
	case REVOKE_NOT_REVOKED:
		st = 409;
		snprintf(msg, sizeof(msg), "serial %s of %s is not revoked: there is no hold to release",
		         sx, is);
		break;
	case REVOKE_BAD_TIME:
		st = 400;
		snprintf(msg, sizeof(msg), "invalidity_date is after %s, when serial %s of %s was put on "
		         "hold: its revocation keeps that time", at, sx, is);
		break;
	case REVOKE_NOT_HELD:
		st = 409;
		snprintf(msg, sizeof(msg), "serial %s of %s is revoked (%s, at %s), not on hold", sx, is,
		         revoke_reason_name(j->before.reason), at);
		break;
	default:
		st = j->retry ? 503 : 500;
		snprintf(msg, sizeof(msg), "%s", j->err);
		log_cert(LOG_WARN, is, sx, "api: %s serial %s: %s", is, sx, j->err);
		break;
	}
	j->conn = NULL;
	free(j);
	if (c != NULL)
		respond_error(c, st, "%s", msg);
}

/* ---- requests ---- */

static void dispatch(struct api_conn *c, const struct api_call *call)
{
	struct api *a = c->api;
	const struct config_issuer *ci = NULL;
	for (size_t i = 0; i < a->cfg->n_issuers && ci == NULL; i++)
		if (strcmp(a->cfg->issuers[i].name, call->issuer) == 0)
			ci = &a->cfg->issuers[i];
	if (ci == NULL) {
		respond_error(c, 404, "no [issuer %s] in revd's configuration", call->issuer);
		return;
	}
	if (config_issuer_store(a->cfg, ci) != CONFIG_STORE_POSTGRES) {
		respond_error(c, 409, "issuer '%s' is served from an index file: revoke with `openssl "
		                      "ca -revoke`", call->issuer);
		return;
	}
	struct api_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		respond_error(c, 503, "out of memory");
		return;
	}
	j->api = a;
	j->conn = c;
	snprintf(j->client, sizeof(j->client), "%s", c->who);
	j->call = *call;
	j->store = responder_store_of(a->r, call->issuer);
	snprintf(j->db_issuer, sizeof(j->db_issuer), "%s", ci->db_issuer ? ci->db_issuer : ci->name);
	c->job = j;
	uv_timer_stop(&c->timer); /* the job has its own bound: API_CALL_MS */
	j->call_deadline_ms = uv_now(a->loop) + API_CALL_MS;
	j->next_inflight = a->inflight;
	a->inflight = j;
	ensure_tick(a);
	pthread_mutex_lock(&a->q_lock);
	if (a->q_tail != NULL)
		a->q_tail->next_q = j;
	else
		a->q_head = j;
	a->q_tail = j;
	pthread_cond_signal(&a->q_cond);
	pthread_mutex_unlock(&a->q_lock);
}

static void handle_request(struct api_conn *c)
{
	c->busy = true;
	if (!llhttp_should_keep_alive(&c->parser))
		c->close_after = true;
	if (!c->allowed) {
		c->close_after = true; /* one answer, then the slot is free again */
		respond_error(c, 403, "client '%s' may not use this API", c->who);
		return;
	}
	const char *url = (const char *)c->url.data;
	size_t len = c->url.len;
	const char *q = memchr(url, '?', len);
	size_t plen = q ? (size_t)(q - url) : len;
	int method = llhttp_get_method(&c->parser);
	struct api_call call;
	char err[512];
	enum api_op op;
	if (plen == 10 && memcmp(url, "/v1/revoke", 10) == 0)
		op = API_REVOKE;
	else if (plen == 10 && memcmp(url, "/v1/unhold", 10) == 0)
		op = API_UNHOLD;
	else if (plen == 10 && memcmp(url, "/v1/status", 10) == 0)
		op = API_STATUS;
	else {
		respond_error(c, 404, "no such call (POST /v1/revoke, POST /v1/unhold, GET /v1/status)");
		return;
	}
	if (op == API_STATUS) {
		if (method != HTTP_GET) {
			respond(c, 405, "Allow: GET\r\n", json_pack("{ss}", "error", "use GET"));
			return;
		}
		if (api_parse_query(q ? q + 1 : "", q ? len - plen - 1 : 0, &call, err,
		                    sizeof(err)) != 0) {
			respond_error(c, 400, "%s", err);
			return;
		}
	} else {
		if (method != HTTP_POST) {
			respond_error(c, 405, "use POST");
			return;
		}
		if (api_parse_body(op, c->body.data, c->body.len, &call, err, sizeof(err)) != 0) {
			respond_error(c, 400, "%s", err);
			return;
		}
		/* A revocation is recorded as it happens, not ahead of time. */
		int64_t soon = clock_now() + 60;
		if (call.ch.revoked_at > soon || call.ch.invalidity_date > soon) {
			respond_error(c, 400, "%s is in the future",
			              call.ch.revoked_at > soon ? "revoked_at" : "invalidity_date");
			return;
		}
		/* The key was compromised before it was revoked, not after. */
		if (call.ch.revoked_at != 0 && call.ch.invalidity_date > call.ch.revoked_at) {
			respond_error(c, 400, "invalidity_date is after revoked_at");
			return;
		}
	}
	dispatch(c, &call);
}

/* ---- llhttp ---- */

static int on_message_begin(llhttp_t *p)
{
	struct api_conn *c = p->data;
	buf_reset(&c->url);
	buf_reset(&c->body);
	c->header_bytes = 0;
	arm(c, API_REQUEST_MS);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct api_conn *c = p->data;
	if (!buf_append(&c->url, at, len)) {
		c->error_status = 414;
		return -1;
	}
	return 0;
}

static int on_header_bytes(llhttp_t *p, const char *at, size_t len)
{
	(void)at;
	struct api_conn *c = p->data;
	c->header_bytes += len;
	if (c->header_bytes > API_MAX_HEADER_BYTES) {
		c->error_status = 431;
		return -1;
	}
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct api_conn *c = p->data;
	if (p->content_length > API_MAX_BODY && p->content_length != ULLONG_MAX) {
		c->error_status = 413;
		return -1;
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct api_conn *c = p->data;
	if (!buf_append(&c->body, at, len)) {
		c->error_status = 413;
		return -1;
	}
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	(void)p;
	return HPE_PAUSED;
}

/* Parses plaintext; a complete request is handled (and the parser paused). */
static size_t feed(struct api_conn *c, const uint8_t *data, size_t len)
{
	llhttp_errno_t e = llhttp_execute(&c->parser, (const char *)data, len);
	if (e == HPE_OK)
		return len;
	if (e == HPE_PAUSED) {
		const uint8_t *stop = (const uint8_t *)llhttp_get_error_pos(&c->parser);
		size_t used = stop ? (size_t)(stop - data) : len;
		handle_request(c);
		return used;
	}
	c->busy = true;
	c->close_after = true;
	int st = c->error_status ? c->error_status : 400;
	respond_error(c, st, "%s", st == 413 ? "the body is too large"
	                           : st == 431 ? "the headers are too large"
	                           : st == 414 ? "the URL is too long"
	                                       : "not an HTTP/1.1 request");
	return len;
}

/* ---- the connection ---- */

static void on_handle_closed(uv_handle_t *h)
{
	struct api_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	SSL_free(c->ssl);
	buf_free(&c->url);
	buf_free(&c->body);
	buf_free(&c->pending);
	free(c);
}

static void conn_close(struct api_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct api *a = c->api;
	if (c->job != NULL) {
		c->job->conn = NULL; /* it answers to no one, and frees itself */
		c->job = NULL;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->n_conns--;
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void arm(struct api_conn *c, unsigned ms)
{
	if (!c->closing)
		uv_timer_start(&c->timer, on_timeout, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
	(void)h;
	(void)size;
	static char slab[16384]; /* the control loop's own thread: copied out at once */
	*b = uv_buf_init(slab, sizeof(slab));
}

static void update_reading(struct api_conn *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct api_conn *c = s->data;
	if (n < 0) {
		conn_close(c);
		return;
	}
	if (c->lingering)
		return; /* read and dropped */
	if (n == 0)
		return;
	if (BIO_write(c->rbio, b->base, (int)n) != (int)n) {
		conn_close(c);
		return;
	}
	pump(c);
}

static void on_shut(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status;
}

/*
 * The last answer is written: the write side is shut, and what the client still sends
 * (the rest of a refused body) is read and dropped for a moment. Closing at once
 * would reset the connection and could destroy the answer before the client read it.
 */
static void linger(struct api_conn *c)
{
	if (c->closing || c->lingering)
		return;
	c->lingering = true;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shut) != 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_timeout, API_LINGER_MS, 0);
	if (!c->reading)
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	c->reading = true;
}

static void update_reading(struct api_conn *c)
{
	if (c->lingering)
		return;
	bool want = !c->closing && !c->busy && !c->close_after &&
	            (c->writes_pending == 0 || !c->handshaken);
	if (want && !c->reading)
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	else if (!want && c->reading)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = want;
}

/* A refused handshake is worth a line, but not a flood of them: at most 10 a second,
 * then one line saying how many more there were. */
static void log_refused(struct api *a, const char *peer, const char *why, const char *verify)
{
	uint64_t sec = uv_now(a->loop) / 1000;
	if (sec != a->refused_sec) {
		if (a->refused_quiet > 0)
			log_warn("api: %llu more refused handshakes not logged",
			         (unsigned long long)a->refused_quiet);
		a->refused_sec = sec;
		a->refused_logged = 0;
		a->refused_quiet = 0;
	}
	if (a->refused_logged++ >= 10) {
		a->refused_quiet++;
		return;
	}
	log_warn("api: %s: %s%s%s", peer, why, verify ? ": " : "", verify ? verify : "");
}

static void after_handshake(struct api_conn *c)
{
	c->allowed = api_identity_allowed(SSL_get0_peer_certificate(c->ssl), c->api->tls->allow,
	                                  c->api->tls->n_allow, c->who, sizeof(c->who));
}

/* Drives the TLS session with what has been read, then the parser with what it yields. */
static void pump(struct api_conn *c)
{
	if (!c->handshaken && !c->closing) {
		ERR_clear_error();
		int rc = SSL_do_handshake(c->ssl);
		if (rc != 1) {
			int e = SSL_get_error(c->ssl, rc);
			if (e != SSL_ERROR_WANT_READ) {
				char why[256];
				ssl_error("TLS handshake", why, sizeof(why));
				long v = SSL_get_verify_result(c->ssl);
				log_refused(c->api, c->peer, why,
				            v != X509_V_OK ? X509_verify_cert_error_string(v) : NULL);
				c->close_after = true; /* the alert goes out, then the connection closes */
				atomic_fetch_add_explicit(&c->api->handshake_failures, 1, memory_order_relaxed);
			}
			flush(c);
			if (c->close_after && c->writes_pending == 0)
				conn_close(c);
			return;
		}
		c->handshaken = true;
		after_handshake(c);
		arm(c, API_REQUEST_MS);
	}
	uint8_t plain[16384];
	c->in_pump = true;
	/* One answer at a time: the next request waits until this one is written, so a
	 * client that does not read holds at most one answer in memory. */
	while (!c->closing && !c->busy && !c->close_after && c->writes_pending == 0) {
		if (c->pending_off < c->pending.len) {
			/* Bytes read past the last request come first. */
			c->pending_off += feed(c, c->pending.data + c->pending_off,
			                       c->pending.len - c->pending_off);
			if (c->pending_off >= c->pending.len) {
				buf_reset(&c->pending);
				c->pending_off = 0;
			}
			continue;
		}
		ERR_clear_error();
		int n = SSL_read(c->ssl, plain, sizeof(plain));
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			ERR_clear_error();
			if (e != SSL_ERROR_WANT_READ)
				c->close_after = true; /* closed by the peer, or broken */
			break;
		}
		size_t used = feed(c, plain, (size_t)n);
		if (used < (size_t)n && !c->closing &&
		    !buf_append(&c->pending, plain + used, (size_t)n - used)) {
			conn_close(c);
			break;
		}
	}
	c->in_pump = false;
	if (c->closing)
		return;
	flush(c);
	if (c->close_after && !c->busy && c->writes_pending == 0) {
		conn_close(c);
		return;
	}
	update_reading(c);
}

static bool same_host(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
	if (x->ss_family != y->ss_family)
		return false;
	if (x->ss_family == AF_INET)
		return ((const struct sockaddr_in *)x)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)y)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
	              &((const struct sockaddr_in6 *)y)->sin6_addr, 16) == 0;
}

/* Connections open from c's address, c included. */
static size_t from_peer(struct api *a, const struct api_conn *c)
{
	size_t n = 0;
	for (const struct api_conn *o = a->conns; o != NULL; o = o->next)
		n += !o->closing && same_host(&o->peer_ss, &c->peer_ss);
	return n;
}

static void on_connection(uv_stream_t *l, int status)
{
	struct api *a = l->data;
	if (status != 0)
		return;
	struct api_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->api = a;
	uv_tcp_init(a->loop, &c->tcp);
	uv_timer_init(a->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open_handles = 2;
	buf_init(&c->url, API_MAX_URL);
	buf_init(&c->body, API_MAX_BODY);
	buf_init(&c->pending, API_MAX_BODY + API_MAX_HEADER_BYTES);
	c->next = a->conns;
	if (a->conns)
		a->conns->prev = c;
	a->conns = c;
	a->n_conns++;
	snprintf(c->who, sizeof(c->who), "(no certificate)");
	if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || a->n_conns > API_MAX_CONNS) {
		conn_close(c);
		return;
	}
	/* Small answers go out at once: after a TLS 1.3 handshake the session tickets are
	 * still unacknowledged, and Nagle would hold the answer for the client's delayed
	 * ACK (about 40 ms). */
	uv_tcp_nodelay(&c->tcp, 1);
	int sl = sizeof(c->peer_ss);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer_ss, &sl) == 0)
		http_format_addr(&c->peer_ss, c->peer, sizeof(c->peer));
	if (from_peer(a, c) > API_MAX_PER_PEER) {
		conn_close(c);
		return;
	}
	c->ssl = SSL_new(a->tls->ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		conn_close(c);
		return;
	}
	SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL object owns both */
	SSL_set_accept_state(c->ssl);
	llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
	c->parser.data = c;
	arm(c, API_HANDSHAKE_MS);
	update_reading(c);
}

int api_start(struct api *a, uv_loop_t *loop, char *err, size_t errlen)
{
	llhttp_settings_init(&parser_settings);
	parser_settings.on_message_begin = on_message_begin;
	parser_settings.on_url = on_url;
	parser_settings.on_header_field = on_header_bytes;
	parser_settings.on_header_value = on_header_bytes;
	parser_settings.on_headers_complete = on_headers_complete;
	parser_settings.on_body = on_body;
	parser_settings.on_message_complete = on_message_complete;
	a->loop = loop;
	uv_timer_init(loop, &a->tick);
	a->tick.data = a;
	uv_async_init(loop, &a->done_async, on_done);
	a->done_async.data = a;
	a->async_open = true;
	for (; a->n_writers_started < API_WRITERS; a->n_writers_started++) {
		int rc = pthread_create(&a->writers[a->n_writers_started].thread, NULL, writer_main,
		                        &a->writers[a->n_writers_started]);
		if (rc != 0) {
			snprintf(err, errlen, "[api] starting a writer thread: %s", strerror(rc));
			return -1;
		}
	}
	a->r->change_hook = on_change;
	a->r->change_hook_arg = a;
	for (size_t i = 0; i < a->n_fds; i++) {
		uv_tcp_init(loop, &a->listeners[i]);
		a->listeners[i].data = a;
		a->n_listening++;
		int rc = uv_tcp_open(&a->listeners[i], a->fds[i]);
		if (rc == 0) {
			a->fds[i] = -1; /* the handle owns it */
			rc = uv_listen((uv_stream_t *)&a->listeners[i], 128, on_connection);
		}
		if (rc != 0) {
			snprintf(err, errlen, "[api] listening on %s: %s", a->bound[i], uv_strerror(rc));
			return -1;
		}
	}
	log_info("api: listening on %s (HTTPS, client certificates from %s)", a->bound[0],
	         a->cfg->api_client_ca);
	return 0;
}

void api_get_stats(struct api *a, struct api_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < STATUS_SLOTS && i < API_STATUS_SLOTS; i++) {
		st->status[i] = i < STATUS_SLOTS - 1 ? status_slots[i] : 0;
		st->by_status[i] = atomic_load(&a->by_status[i]);
	}
	st->handshake_failures = atomic_load(&a->handshake_failures);
	for (size_t i = 0; i <= LIVE_BUCKETS; i++)
		st->live_hist[i] = atomic_load(&a->live_hist[i]);
	st->live_ns_total = atomic_load(&a->live_ns_total);
}

void api_stop(struct api *a)
{
	if (a == NULL || a->loop == NULL || a->stopped)
		return;
	a->stopped = true;
	a->r->change_hook = NULL;
	for (size_t i = 0; i < a->n_listening; i++)
		uv_close((uv_handle_t *)&a->listeners[i], NULL);
	/* Idle connections close now; one with a call in flight gets its answer, then
	 * closes (a lingering close is bounded by its timer). */
	struct api_conn *c = a->conns;
	while (c != NULL) {
		struct api_conn *next = c->next;
		if (c->job == NULL && !c->lingering)
			conn_close(c);
		else
			c->close_after = true;
		c = next;
	}
	/* The writers finish the call they are on (bounded by the database's timeouts) and
	 * refuse the queued ones; every one is answered here. */
	pthread_mutex_lock(&a->q_lock);
	a->q_stop = true;
	pthread_cond_broadcast(&a->q_cond);
	pthread_mutex_unlock(&a->q_lock);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += API_CALL_MS / 1000;
	size_t joined = 0;
	for (size_t i = 0; i < a->n_writers_started; i++)
		joined += pthread_timedjoin_np(a->writers[i].thread, NULL, &until) == 0;
	take_done(a);
	if (joined < a->n_writers_started) {
		/* A writer is stuck in a database that does not answer. revd exits without
		 * it: its calls are answered 503, and what it holds is left to the exit. */
		log_error("api: %zu writer%s stuck in the database; exiting without %s",
		          a->n_writers_started - joined, a->n_writers_started - joined == 1 ? "" : "s",
		          a->n_writers_started - joined == 1 ? "it" : "them");
		a->stuck = true;
		for (struct api_job *f = a->inflight; f != NULL; f = f->next_inflight)
			if (!f->abandoned)
				abandon(f, "revd is stopping and the database has not answered");
		uv_unref((uv_handle_t *)&a->done_async);
	} else {
		a->n_writers_started = 0;
		uv_close((uv_handle_t *)&a->done_async, NULL);
		a->async_open = false;
	}
	/* Writes waiting to be served are committed: they are answered so now (202). */
	while (a->waiting != NULL) {
		struct api_job *j = a->waiting;
		unwait(a, j);
		j->stopping = true;
		answer_write(j);
	}
	uv_close((uv_handle_t *)&a->tick, NULL);
}

void api_free(struct api *a)
{
	if (a == NULL || a->stuck)
		return; /* a stuck writer still uses it; the process is exiting */
	for (size_t i = 0; i < a->n_fds; i++)
		if (a->fds[i] >= 0)
			close(a->fds[i]);
	api_tls_free(a->tls);
	if (a->n_writers_started > 0) {
		/* Started but never stopped (a failed start): the threads end first. */
		pthread_mutex_lock(&a->q_lock);
		a->q_stop = true;
		pthread_cond_broadcast(&a->q_cond);
		pthread_mutex_unlock(&a->q_lock);
		for (size_t i = 0; i < a->n_writers_started; i++)
			pthread_join(a->writers[i].thread, NULL);
	}
	for (size_t i = 0; i < API_WRITERS; i++)
		revoke_db_free(a->writers[i].db);
	pthread_cond_destroy(&a->q_cond);
	pthread_mutex_destroy(&a->q_lock);
	free(a);
}
