/*
 * One client connection: reads into its own fixed buffer, parses with llhttp, answers
 * one request at a time (the parser pauses at each request's end, so pipelined
 * requests are answered in order), writes without copying cached answers, and owns
 * its timers. Every way out goes through conn_close.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/log.h"
#include "http/conn.h"
#include "http/http.h"

#define RBUF_SIZE 16384
#define HEAD_MAX 512
#define WRITE_BACKLOG_MAX (256 * 1024)

enum conn_state {
	CS_IDLE,    /* between requests */
	CS_HEADERS, /* reading a request line and headers */
	CS_BODY,    /* reading a body */
	CS_BUSY,    /* a complete request is being answered */
};

enum header_kind { H_OTHER, H_INM, H_IMS, H_EXPECT, H_HOST, H_TE };

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct http_worker *w;
	const struct config *cfg;
	struct conn *prev, *next;
	llhttp_t parser;
	enum conn_state state;
	int open_handles;
	bool closing;
	bool reading;
	bool in_process;
	bool peer_eof;
	bool close_after_write;
	unsigned writes_pending;
	size_t rlen;
	/* the request being read or answered */
	struct buf url;
	struct buf body;
	char hname[24];
	size_t hname_len;
	bool in_value;
	enum header_kind hkind;
	char inm[256];
	size_t inm_len;
	bool has_inm;
	char ims[40];
	size_t ims_len;
	bool has_ims;
	char expect[32];
	size_t expect_len;
	bool has_expect;
	unsigned n_host;
	char te[32];
	size_t te_len;
	bool has_te;
	size_t header_bytes;
	size_t n_headers;
	int error_status;
	bool keep_alive;
	struct http_request req;
	void *job;
	void (*detach)(void *job);
	uint8_t rbuf[RBUF_SIZE];
};

struct wreq {
	uv_write_t req;
	struct conn *c;
	struct cache_entry *entry;
	uint8_t *owned;
	uv_buf_t bufs[3];
	char head[HEAD_MAX];
};

static void conn_close(struct conn *c);
static void process_input(struct conn *c);
static void update_reading(struct conn *c);

/* ---- llhttp callbacks ---- */

static struct conn *conn_of(llhttp_t *p)
{
	return p->data;
}

static int fail(struct conn *c, int status)
{
	if (c->error_status == 0)
		c->error_status = status;
	return -1;
}

static int count_header_bytes(struct conn *c, size_t len)
{
	c->header_bytes += len;
	if (c->header_bytes > c->cfg->max_header_bytes)
		return fail(c, 431);
	return 0;
}

static void arm_timer(struct conn *c, unsigned ms);
static void on_timeout(uv_timer_t *t);

static int on_message_begin(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	buf_reset(&c->url);
	buf_reset(&c->body);
	c->hname_len = 0;
	c->in_value = false;
	c->hkind = H_OTHER;
	c->inm_len = 0;
	c->has_inm = false;
	c->ims_len = 0;
	c->has_ims = false;
	c->expect_len = 0;
	c->has_expect = false;
	c->n_host = 0;
	c->te_len = 0;
	c->has_te = false;
	c->header_bytes = 0;
	c->n_headers = 0;
	c->error_status = 0;
	c->state = CS_HEADERS;
	arm_timer(c, c->cfg->header_timeout_ms);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = conn_of(p);
	if (count_header_bytes(c, len) != 0)
		return -1;
	if (c->url.len + len > c->cfg->max_url_bytes)
		return fail(c, 414);
	if (!buf_append(&c->url, at, len))
		return fail(c, 500);
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = conn_of(p);
	if (count_header_bytes(c, len + 4) != 0) /* ": " and CRLF */
		return -1;
	if (c->in_value) {
		c->in_value = false;
		c->hname_len = 0;
	}
	size_t room = sizeof(c->hname) - 1 - c->hname_len;
	size_t n = len < room ? len : room;
	memcpy(c->hname + c->hname_len, at, n);
	c->hname_len += n;
	c->hname[c->hname_len] = 0;
	return 0;
}

static void append_capped(char *dst, size_t *len, size_t cap, const char *at, size_t n)
{
	size_t room = cap - 1 - *len;
	if (n > room)
		n = room;
	memcpy(dst + *len, at, n);
	*len += n;
	dst[*len] = 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	c->in_value = true;
	if (strcasecmp(c->hname, "if-none-match") == 0) {
		c->hkind = H_INM;
		c->has_inm = true;
		c->inm_len = 0;
	} else if (strcasecmp(c->hname, "if-modified-since") == 0) {
		c->hkind = H_IMS;
		c->has_ims = true;
		c->ims_len = 0;
	} else if (strcasecmp(c->hname, "expect") == 0) {
		c->hkind = H_EXPECT;
		c->has_expect = true;
	} else if (strcasecmp(c->hname, "host") == 0) {
		c->hkind = H_HOST;
		c->n_host++;
	} else if (strcasecmp(c->hname, "transfer-encoding") == 0) {
		/* Several fields are one list; a second one means a coding besides chunked. */
		c->hkind = H_TE;
		if (c->has_te)
			append_capped(c->te, &c->te_len, sizeof(c->te), ",", 1);
		c->has_te = true;
	} else {
		c->hkind = H_OTHER;
	}
	if (++c->n_headers > c->cfg->max_headers)
		return fail(c, 431);
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = conn_of(p);
	if (count_header_bytes(c, len) != 0)
		return -1;
	switch (c->hkind) {
	case H_INM:
		/* A longer If-None-Match cannot match a single ETag of ours; truncation is safe
		 * because a truncated list never grows a match. */
		append_capped(c->inm, &c->inm_len, sizeof(c->inm), at, len);
		break;
	case H_IMS:
		/* A longer value is no HTTP-date: cut, it fails to parse and is ignored. */
		append_capped(c->ims, &c->ims_len, sizeof(c->ims), at, len);
		break;
	case H_EXPECT:
		append_capped(c->expect, &c->expect_len, sizeof(c->expect), at, len);
		break;
	case H_TE:
		append_capped(c->te, &c->te_len, sizeof(c->te), at, len);
		break;
	default:
		break;
	}
	return 0;
}

static void write_raw(struct conn *c, const char *s, size_t len);

static int on_headers_complete(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	int method = llhttp_get_method(p);
	bool http11 = llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) >= 1;
	if ((http11 && c->n_host == 0) || c->n_host > 1)
		return fail(c, 400); /* RFC 9112 §3.2: exactly one Host */
	/* revd decodes no transfer coding but chunked (RFC 9112 §6.1: 501 otherwise). */
	if (c->has_te && strcasecmp(c->te, "chunked") != 0)
		return fail(c, 501);
	if (method != HTTP_GET && method != HTTP_HEAD && method != HTTP_POST)
		return fail(c, 405);
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->cfg->max_body_bytes)
		return fail(c, 413);
	if (c->has_expect) {
		if (strcasecmp(c->expect, "100-continue") != 0)
			return fail(c, 417);
		if (http11) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			write_raw(c, cont, sizeof(cont) - 1);
		}
	}
	c->state = CS_BODY;
	arm_timer(c, c->cfg->body_timeout_ms);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = conn_of(p);
	/* Chunked bodies have no length up front: the same ceiling, counted as they come. */
	if (c->body.len + len > c->cfg->max_body_bytes)
		return fail(c, 413);
	if (!buf_append(&c->body, at, len))
		return fail(c, 500);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	c->keep_alive = llhttp_should_keep_alive(p);
	c->state = CS_BUSY;
	uv_timer_stop(&c->timer);
	return HPE_PAUSED; /* answer this one before reading the next */
}

static const llhttp_settings_t parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- writing ---- */

static void release_wreq(struct cache_entry *entry, uint8_t *owned)
{
	cache_entry_unref(entry);
	free(owned);
}

static void after_writes(struct conn *c)
{
	if (c->closing)
		return;
	if (c->close_after_write && c->writes_pending == 0) {
		conn_close(c);
		return;
	}
	update_reading(c);
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *wr = req->data;
	struct conn *c = wr->c;
	release_wreq(wr->entry, wr->owned);
	free(wr);
	c->writes_pending--;
	if (status < 0) {
		if (!c->closing)
			conn_close(c);
		return;
	}
	after_writes(c);
}

/*
 * Sends bufs: straight away when the socket takes them all (the common case: no
 * allocation), else queued. Takes ownership of entry (a reference) and owned.
 */
static void send_bufs(struct conn *c, uv_buf_t *bufs, unsigned n, struct cache_entry *entry,
                      uint8_t *owned)
{
	if (c->closing) {
		release_wreq(entry, owned);
		return;
	}
	size_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += bufs[i].len;
	int r = c->writes_pending == 0 ? uv_try_write((uv_stream_t *)&c->tcp, bufs, n) : UV_EAGAIN;
	if (r >= 0 && (size_t)r == total) {
		release_wreq(entry, owned);
		return;
	}
	if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
		release_wreq(entry, owned);
		conn_close(c);
		return;
	}
	size_t done = r > 0 ? (size_t)r : 0;
	struct wreq *wr = malloc(sizeof(*wr));
	if (wr == NULL) {
		release_wreq(entry, owned);
		conn_close(c);
		return;
	}
	wr->c = c;
	wr->entry = entry;
	wr->owned = owned;
	wr->req.data = wr;
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (done >= bufs[i].len) {
			done -= bufs[i].len;
			continue;
		}
		char *base = bufs[i].base + done;
		size_t len = bufs[i].len - done;
		done = 0;
		/* bufs[0] is always the caller's head, on its stack: it moves into the request. */
		if (i == 0 && len <= HEAD_MAX) {
			memcpy(wr->head, base, len);
			base = wr->head;
		}
		wr->bufs[k++] = uv_buf_init(base, (unsigned)len);
	}
	c->writes_pending++;
	int e = uv_write(&wr->req, (uv_stream_t *)&c->tcp, wr->bufs, k, on_write);
	if (e != 0) {
		c->writes_pending--;
		release_wreq(entry, owned);
		free(wr);
		conn_close(c);
	}
}

static void write_raw(struct conn *c, const char *s, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)s, (unsigned)len);
	send_bufs(c, &b, 1, NULL, NULL);
}

/* The request is answered: go on with the next one, or close. */
static void finish_request(struct conn *c, bool close_now)
{
	c->job = NULL;
	c->detach = NULL;
	c->state = CS_IDLE;
	c->w->requests++;
	if (close_now || !c->keep_alive || c->peer_eof || c->w->stopping) {
		c->close_after_write = true;
		after_writes(c);
		return;
	}
	arm_timer(c, c->cfg->idle_timeout_ms);
	if (!c->in_process)
		process_input(c);
}

static int connection_header(struct conn *c, char *p, size_t room, bool closing)
{
	static const char close_hdr[] = "Connection: close\r\n";
	static const char keep_hdr[] = "Connection: keep-alive\r\n";
	const char *h = NULL;
	size_t n = 0;
	if (closing || !c->keep_alive || c->w->stopping) {
		h = close_hdr;
		n = sizeof(close_hdr) - 1;
	} else if (llhttp_get_http_minor(&c->parser) == 0) {
		h = keep_hdr;
		n = sizeof(keep_hdr) - 1;
	}
	if (h == NULL || n > room)
		return 0;
	memcpy(p, h, n);
	return (int)n;
}

static int64_t max_age_for(const struct config *cfg, int64_t next_update, int64_t now)
{
	int64_t age = next_update - now;
	if (cfg->max_age > 0 && cfg->max_age < age)
		age = cfg->max_age;
	return age > 0 ? age : 0;
}

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);
	memcpy(p, s, n);
	return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

static struct conn *req_conn(struct http_request *req)
{
	return req->conn;
}

const int http_status_slots[HTTP_STATUS_SLOTS - 1] = {200, 304, 400, 404, 405, 408,
                                                     411, 413, 414, 431, 500, 503};

static void count_status(struct http_worker *w, int status)
{
	size_t i = 0;
	while (i < HTTP_STATUS_SLOTS - 1 && http_status_slots[i] != status)
		i++;
	__atomic_fetch_add(&w->by_status[i], 1, __ATOMIC_RELAXED);
}

void http_count_ocsp(struct http_worker *w, int ocsp_status)
{
	unsigned i = (unsigned)ocsp_status < HTTP_OCSP_SLOTS ? (unsigned)ocsp_status : 7;
	__atomic_fetch_add(&w->ocsp_by_status[i], 1, __ATOMIC_RELAXED);
}

/* Only GET and HEAD are conditional here (RFC 9110 §13.1.2). */
static bool conditional(const struct http_request *req)
{
	return req->method == HTTP_GET || req->head;
}

/* The end of an entry's first header line, its ETag: ETag: "..."\r\n */
static const char *etag_end(const struct cache_entry *e)
{
	return memchr(e->hdr + 6, '\r', e->hdr_len - 6);
}

/* Does the request's If-None-Match name the entry's ETag? */
static bool etag_matches(const struct http_request *req, const struct cache_entry *e)
{
	if (req->if_none_match == NULL || !conditional(req))
		return false;
	const char *eol = etag_end(e);
	return eol && http_etag_matches(req->if_none_match, e->hdr + 6, (size_t)(eol - e->hdr - 6));
}

const double http_age_buckets[HTTP_AGE_BUCKETS] = {
	10, 60, 300, 1800, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400,
};

/* Only w's loop writes these; /metrics reads them from another thread. */
static void count_age(struct http_worker *w, int64_t age)
{
	unsigned b = 0;
	while (b < HTTP_AGE_BUCKETS && (double)age > http_age_buckets[b])
		b++;
	__atomic_store_n(&w->age_hist[b], w->age_hist[b] + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&w->age_total, w->age_total + (uint64_t)(age > 0 ? age : 0),
	                 __ATOMIC_RELAXED);
}

void http_respond_entry(struct http_request *req, struct cache_entry *e, int64_t now)
{
	struct conn *c = req_conn(req);
	struct http_worker *w = c->w;
	bool not_modified = etag_matches(req, e);
	/* The hot path: pieces copied, not formatted (snprintf was a tenth of a request). */
	char head[HEAD_MAX];
	char *p = head;
	p = put_str(p, not_modified ? "HTTP/1.1 304 Not Modified\r\nDate: "
	                            : "HTTP/1.1 200 OK\r\nDate: ");
	memcpy(p, w->date, 29);
	p += 29;
	p = put_str(p, "\r\nCache-Control: max-age=");
	p = put_u64(p, (uint64_t)max_age_for(c->cfg, e->next_update, now));
	p = put_str(p, ", public, no-transform, must-revalidate\r\n");
	int n = (int)(p - head);
	n += connection_header(c, head + n, sizeof(head) - (size_t)n, false);
	uv_buf_t bufs[3];
	bufs[0] = uv_buf_init(head, (unsigned)n);
	bufs[1] = uv_buf_init((char *)e->hdr, (unsigned)e->hdr_len);
	unsigned nb = 2;
	if (!not_modified && !req->head)
		bufs[nb++] = uv_buf_init((char *)e->der, (unsigned)e->der_len);
	count_status(w, not_modified ? 304 : 200);
	count_age(w, now - e->produced_at);
	send_bufs(c, bufs, nb, cache_entry_ref(e), NULL);
	finish_request(c, false);
}

void http_respond_file(struct http_request *req, struct cache_entry *e, int64_t max_age)
{
	struct conn *c = req_conn(req);
	const char *eol = etag_end(e);
	bool not_modified = etag_matches(req, e);
	if (req->if_none_match == NULL && req->if_modified_since != NULL && conditional(req)) {
		/* RFC 9110 §13.1.3: only without If-None-Match, and only a valid date counts. */
		int64_t since;
		not_modified = clock_parse_http_date(req->if_modified_since, &since) &&
		               e->this_update <= since;
	}
	char head[HEAD_MAX];
	char expires[30];
	clock_http_date(clock_now() + max_age, expires);
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %s\r\nDate: %s\r\nCache-Control: max-age=%lld, public, "
	                 "no-transform, must-revalidate\r\nExpires: %s\r\n",
	                 not_modified ? "304 Not Modified" : "200 OK", c->w->date,
	                 (long long)max_age, expires);
	n += connection_header(c, head + n, sizeof(head) - (size_t)n, false);
	uv_buf_t bufs[3];
	unsigned nb = 1;
	if (not_modified) {
		/* A 304 carries the validators, not the representation's length or type. */
		const char *lm = strstr(e->hdr, "Last-Modified:");
		const char *lme = lm ? strstr(lm, "\r\n") : NULL;
		n += snprintf(head + n, sizeof(head) - (size_t)n, "%.*s%.*s\r\n",
		              eol ? (int)(eol - e->hdr) + 2 : 0, e->hdr,
		              lme ? (int)(lme - lm) + 2 : 0, lm ? lm : "");
		if ((size_t)n >= sizeof(head))
			n = (int)sizeof(head) - 1;
	} else {
		bufs[nb++] = uv_buf_init((char *)e->hdr, (unsigned)e->hdr_len);
		if (!req->head)
			bufs[nb++] = uv_buf_init((char *)e->der, (unsigned)e->der_len);
	}
	bufs[0] = uv_buf_init(head, (unsigned)n);
	count_status(c->w, not_modified ? 304 : 200);
	send_bufs(c, bufs, nb, cache_entry_ref(e), NULL);
	finish_request(c, false);
}

void http_respond_body(struct http_request *req, int status, const char *type, uint8_t *body,
                       size_t len)
{
	struct conn *c = req_conn(req);
	char head[HEAD_MAX];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Cache-Control: no-store\r\n",
	                 status, http_status_text(status), c->w->date, type, len);
	n += connection_header(c, head + n, sizeof(head) - (size_t)n, false);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	uv_buf_t bufs[2];
	bufs[0] = uv_buf_init(head, (unsigned)n);
	unsigned nb = 1;
	if (!req->head)
		bufs[nb++] = uv_buf_init((char *)body, (unsigned)len);
	count_status(c->w, status);
	send_bufs(c, bufs, nb, NULL, body);
	finish_request(c, false);
}

void http_respond_ocsp(struct http_request *req, uint8_t *body, size_t len, bool own,
                       int64_t next_update, bool cacheable)
{
	struct conn *c = req_conn(req);
	char head[HEAD_MAX];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: application/ocsp-response\r\n"
	                 "Content-Length: %zu\r\n",
	                 c->w->date, len);
	if (cacheable) {
		char expires[30];
		clock_http_date(next_update, expires);
		n += snprintf(head + n, sizeof(head) - (size_t)n,
		              "Cache-Control: max-age=%lld, public, no-transform, must-revalidate\r\n"
		              "Expires: %s\r\n",
		              (long long)max_age_for(c->cfg, next_update, clock_now()), expires);
	} else {
		n += snprintf(head + n, sizeof(head) - (size_t)n,
		              "Cache-Control: no-cache, no-store, must-revalidate\r\n");
	}
	n += connection_header(c, head + n, sizeof(head) - (size_t)n, false);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	uv_buf_t bufs[2];
	bufs[0] = uv_buf_init(head, (unsigned)n);
	unsigned nb = 1;
	if (!req->head)
		bufs[nb++] = uv_buf_init((char *)body, (unsigned)len);
	count_status(c->w, 200);
	send_bufs(c, bufs, nb, NULL, own ? body : NULL);
	finish_request(c, false);
}

static void respond_status_conn(struct conn *c, int status, const char *text, bool close)
{
	char head[HEAD_MAX];
	size_t tl = strlen(text);
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
	                 "Content-Length: %zu\r\nCache-Control: no-store\r\n%s",
	                 status, http_status_text(status), c->w->date, tl + 1,
	                 status == 405 ? "Allow: GET, HEAD, POST\r\n" : "");
	n += connection_header(c, head + n, sizeof(head) - (size_t)n, close);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n%s\n", text);
	if ((size_t)n >= sizeof(head))
		n = (int)sizeof(head) - 1;
	uv_buf_t b = uv_buf_init(head, (unsigned)n);
	count_status(c->w, status);
	send_bufs(c, &b, 1, NULL, NULL);
}

void http_respond_status(struct http_request *req, int status, const char *text)
{
	struct conn *c = req_conn(req);
	bool head_only = req->head;
	if (head_only) {
		/* HEAD: the same status and headers, no body. */
		char head[HEAD_MAX];
		int n = snprintf(head, sizeof(head),
		                 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
		                 "Content-Length: %zu\r\nCache-Control: no-store\r\n",
		                 status, http_status_text(status), c->w->date, strlen(text) + 1);
		n += connection_header(c, head + n, sizeof(head) - (size_t)n, false);
		n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
		uv_buf_t b = uv_buf_init(head, (unsigned)n);
		count_status(c->w, status);
		send_bufs(c, &b, 1, NULL, NULL);
	} else {
		respond_status_conn(c, status, text, false);
	}
	finish_request(c, false);
}

void http_async(struct http_request *req, void *job, void (*detach)(void *job))
{
	struct conn *c = req_conn(req);
	c->job = job;
	c->detach = detach;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	b->base = (char *)c->rbuf + c->rlen;
	b->len = RBUF_SIZE - c->rlen;
}

static void dispatch(struct conn *c)
{
	if (!buf_append_byte(&c->url, 0)) {
		respond_status_conn(c, 500, "out of memory", true);
		finish_request(c, true);
		return;
	}
	struct http_request *req = &c->req;
	req->conn = c;
	req->worker = c->w;
	req->method = llhttp_get_method(&c->parser);
	req->head = req->method == HTTP_HEAD;
	req->path = (const char *)c->url.data;
	req->path_len = c->url.len - 1;
	req->body = c->body.data;
	req->body_len = c->body.len;
	req->if_none_match = c->has_inm ? c->inm : NULL;
	req->if_modified_since = c->has_ims ? c->ims : NULL;
	unsigned m = req->method == HTTP_GET ? 0 : req->method == HTTP_HEAD ? 1 : req->method == HTTP_POST ? 2 : 3;
	__atomic_fetch_add(&c->w->by_method[m], 1, __ATOMIC_RELAXED);
	http_route(req);
}

static void process_input(struct conn *c)
{
	c->in_process = true;
	while (!c->closing && c->rlen > 0 && c->state != CS_BUSY && !c->close_after_write) {
		enum llhttp_errno e = llhttp_execute(&c->parser, (const char *)c->rbuf, c->rlen);
		size_t used;
		if (e == HPE_OK) {
			used = c->rlen;
		} else if (e == HPE_PAUSED) {
			used = (size_t)((const uint8_t *)llhttp_get_error_pos(&c->parser) - c->rbuf);
			llhttp_resume(&c->parser);
		} else {
			int status = c->error_status ? c->error_status : 400;
			if (e != HPE_USER && e != HPE_CB_HEADERS_COMPLETE && c->error_status == 0)
				log_debug("bad request from client: %s", llhttp_get_error_reason(&c->parser));
			respond_status_conn(c, status, http_status_text(status), true);
			c->state = CS_IDLE;
			c->close_after_write = true;
			c->rlen = 0;
			after_writes(c);
			break;
		}
		memmove(c->rbuf, c->rbuf + used, c->rlen - used);
		c->rlen -= used;
		if (e == HPE_PAUSED)
			dispatch(c);
	}
	c->in_process = false;
	if (!c->closing)
		update_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		/* The peer is done sending. An answer in progress is still delivered. */
		c->peer_eof = true;
		uv_read_stop(s);
		c->reading = false;
		if (c->state != CS_BUSY && c->writes_pending == 0)
			conn_close(c);
		else if (c->state != CS_BUSY)
			c->close_after_write = true;
		return;
	}
	c->rlen += (size_t)nread;
	process_input(c);
}

static void update_reading(struct conn *c)
{
	bool want = !c->peer_eof && !c->close_after_write && c->state != CS_BUSY &&
	            c->rlen < RBUF_SIZE &&
	            uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < WRITE_BACKLOG_MAX;
	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
			c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	if (c->rlen == RBUF_SIZE && c->state != CS_BUSY) {
		/* A full buffer the parser could not consume: headers beyond any limit. */
		respond_status_conn(c, 431, http_status_text(431), true);
		c->close_after_write = true;
		after_writes(c);
	}
}

/* ---- timers and closing ---- */

static void arm_timer(struct conn *c, unsigned ms)
{
	uv_timer_start(&c->timer, on_timeout, ms, 0);
}

static void on_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing)
		return;
	if (c->state == CS_HEADERS || c->state == CS_BODY) {
		/* Too slow: say so, then go. */
		respond_status_conn(c, 408, http_status_text(408), true);
		c->close_after_write = true;
		c->state = CS_IDLE;
		after_writes(c);
		/* A client that does not read either gets no more time. */
		if (!c->closing)
			arm_timer(c, c->cfg->write_timeout_ms);
		return;
	}
	if (c->state == CS_BUSY) {
		/* Our own work is pending (signing); the request's own budget applies. */
		arm_timer(c, c->cfg->write_timeout_ms);
		return;
	}
	conn_close(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	buf_free(&c->url);
	buf_free(&c->body);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->job != NULL && c->detach != NULL)
		c->detach(c->job);
	c->job = NULL;
	struct http_worker *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void conn_accept(struct http_worker *w, uv_stream_t *listener)
{
	const struct config *cfg = w->server->cfg;
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->w = w;
	c->cfg = cfg;
	uv_tcp_init(&w->loop, &c->tcp);
	uv_timer_init(&w->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->open_handles = 2;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	unsigned per_worker = (unsigned)(cfg->max_connections / w->server->n_workers);
	if (w->n_conns > (per_worker ? per_worker : 1) || w->stopping) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	buf_init(&c->url, cfg->max_url_bytes + 1);
	buf_init(&c->body, cfg->max_body_bytes);
	llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
	c->parser.data = c;
	c->state = CS_IDLE;
	arm_timer(c, cfg->header_timeout_ms);
	update_reading(c);
}

void conn_stop_idle(struct http_worker *w, bool all)
{
	struct conn *c = w->conns;
	while (c != NULL) {
		struct conn *next = c->next;
		/* At shutdown only requests already complete are finished; one still being
		 * received is dropped, as its client would have to retry anyway. */
		if (all || (c->state != CS_BUSY && c->writes_pending == 0))
			conn_close(c);
		c = next;
	}
}

/* ---- small helpers ---- */

bool http_etag_matches(const char *inm, const char *etag, size_t etag_len)
{
	/* If-None-Match: "*" or a list of entity tags; weak ones compare weakly (RFC 9110
	 * §13.1.2), which for revd's strong tags means W/"x" matches "x". */
	const char *p = inm;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return true;
		if (p[0] == 'W' && p[1] == '/')
			p += 2;
		if (*p != '"')
			return false;
		const char *q = strchr(p + 1, '"');
		if (q == NULL)
			return false;
		size_t len = (size_t)(q - p + 1);
		if (len == etag_len && memcmp(p, etag, len) == 0)
			return true;
		p = q + 1;
	}
	return false;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}
