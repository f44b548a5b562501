#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "http/conn.h"
#include "http/http.h"
#include "http/responder.h"

#define STOP_GRACE_TICKS 5 /* seconds for in-flight requests at shutdown */

int http_parse_listen(const char *s, struct sockaddr_storage *ss, char *err, size_t errlen)
{
	char host[64];
	const char *port_s;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			goto bad;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = 0;
		port_s = rb + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(host, sizeof(host), "0.0.0.0");
			port_s = s;
		} else {
			if ((size_t)(colon - s) >= sizeof(host))
				goto bad;
			memcpy(host, s, (size_t)(colon - s));
			host[colon - s] = 0;
			if (host[0] == 0 || strcmp(host, "*") == 0)
				snprintf(host, sizeof(host), "0.0.0.0");
			if (strcmp(host, "localhost") == 0)
				snprintf(host, sizeof(host), "127.0.0.1");
			port_s = colon + 1;
		}
	}
	char *end;
	long port = strtol(port_s, &end, 10);
	if (port_s[0] == 0 || *end != 0 || port < 0 || port > 65535)
		goto bad;
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		return 0;
	}
bad:
	snprintf(err, errlen, "listen address '%s': expected HOST:PORT, [V6]:PORT or PORT", s);
	return -1;
}

void http_format_addr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(v4->sin_port));
	} else {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(v6->sin6_port));
	}
}

/* One listening socket per worker and address, all on one port: the kernel spreads
 * connections across workers (SO_REUSEPORT). */
/*
 * SO_REUSEPORT would let a second revd (or anything of the same user) share the port
 * silently and take half the connections. A socket without it binds only to a free
 * port: bind one, see, and let go.
 */
static int check_port_free(const struct sockaddr_storage *ss, socklen_t sl, char *err,
                           size_t errlen)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	int r = bind(fd, (const struct sockaddr *)ss, sl);
	int e = errno;
	close(fd);
	if (r != 0) {
		char a[64];
		http_format_addr(ss, a, sizeof(a));
		snprintf(err, errlen, "cannot listen on %s: %s", a, strerror(e));
		return -1;
	}
	return 0;
}

static int open_listener(struct sockaddr_storage *ss, bool first, char *err, size_t errlen)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
		snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	socklen_t sl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
	                                         : sizeof(struct sockaddr_in6);
	uint16_t port = ss->ss_family == AF_INET ? ((struct sockaddr_in *)ss)->sin_port
	                                         : ((struct sockaddr_in6 *)ss)->sin6_port;
	if (first && port != 0 && check_port_free(ss, sl, err, errlen) != 0) {
		close(fd);
		return -1;
	}
	if (bind(fd, (struct sockaddr *)ss, sl) != 0 || listen(fd, 4096) != 0) {
		char a[64];
		http_format_addr(ss, a, sizeof(a));
		snprintf(err, errlen, "cannot listen on %s: %s", a, strerror(errno));
		close(fd);
		return -1;
	}
	/* Port 0: the rest of the sockets share the port the first one got. */
	socklen_t got = sizeof(*ss);
	getsockname(fd, (struct sockaddr *)ss, &got);
	return fd;
}

struct http_server *http_server_new(const struct config *cfg, struct responder *r, char *err,
                                    size_t errlen)
{
	struct http_server *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->responder = r;
	s->n_workers = cfg->workers;
	if (s->n_workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		s->n_workers = n > 0 ? (unsigned)n : 1;
	}
	size_t n_addr = cfg->n_listen;
	s->workers = calloc(s->n_workers, sizeof(*s->workers));
	if (s->workers == NULL) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* Every socket is bound here, before any thread starts, so a bad address or a port
	 * in use is reported at once. */
	for (size_t a = 0; a < n_addr; a++) {
		struct sockaddr_storage ss;
		if (http_parse_listen(cfg->listen[a], &ss, err, errlen) != 0)
			goto fail;
		for (unsigned w = 0; w < s->n_workers; w++) {
			int fd = open_listener(&ss, w == 0, err, errlen);
			if (fd < 0)
				goto fail;
			struct http_worker *wk = &s->workers[w];
			wk->listen_fds[a] = fd;
			wk->n_listeners = a + 1;
		}
		http_format_addr(&ss, s->bound[a], sizeof(s->bound[a]));
	}
	s->n_fds = n_addr;
	return s;
fail:
	for (unsigned w = 0; w < s->n_workers; w++)
		for (size_t a = 0; a < s->workers[w].n_listeners; a++)
			close(s->workers[w].listen_fds[a]);
	free(s->workers);
	free(s);
	return NULL;
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct http_worker *w = listener->loop->data;
	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	conn_accept(w, listener);
}

static void update_date(struct http_worker *w)
{
	int64_t now = clock_now();
	if (now != w->date_sec) {
		w->date_sec = now;
		clock_http_date(now, w->date);
	}
}

static void close_listeners(struct http_worker *w)
{
	for (size_t a = 0; a < w->n_listeners; a++)
		if (!uv_is_closing((uv_handle_t *)&w->listeners[a]))
			uv_close((uv_handle_t *)&w->listeners[a], NULL);
}

static void run_mail(struct http_mail *m)
{
	while (m != NULL) {
		struct http_mail *next = m->next;
		m->run(m);
		m = next;
	}
}

static void finish_stop_if_done(struct http_worker *w)
{
	if (w->n_conns == 0 || w->stop_ticks >= STOP_GRACE_TICKS) {
		conn_stop_idle(w, true);
		if (!w->stores_closed) {
			w->stores_closed = true;
			responder_loop_done(w->server->responder, &w->loop);
		}
		/* No async handle after this: later mail runs where it is posted. */
		pthread_mutex_lock(&w->mail_lock);
		w->mail_closed = true;
		struct http_mail *m = w->mail_head;
		w->mail_head = w->mail_tail = NULL;
		pthread_mutex_unlock(&w->mail_lock);
		run_mail(m);
		if (!uv_is_closing((uv_handle_t *)&w->tick))
			uv_close((uv_handle_t *)&w->tick, NULL);
		if (!uv_is_closing((uv_handle_t *)&w->wake))
			uv_close((uv_handle_t *)&w->wake, NULL);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct http_worker *w = t->data;
	update_date(w);
	if (w->stopping) {
		w->stop_ticks++;
		conn_stop_idle(w, false);
		finish_stop_if_done(w);
	}
}

static void on_wake(uv_async_t *a)
{
	struct http_worker *w = a->data;
	pthread_mutex_lock(&w->mail_lock);
	struct http_mail *m = w->mail_head;
	w->mail_head = w->mail_tail = NULL;
	bool stop = w->stop_requested;
	pthread_mutex_unlock(&w->mail_lock);
	w->stopping = stop;
	update_date(w);
	run_mail(m);
	if (stop && !uv_is_closing((uv_handle_t *)&w->tick)) {
		close_listeners(w);
		conn_stop_idle(w, false);
		finish_stop_if_done(w);
	}
}

void http_worker_post(struct http_worker *w, struct http_mail *m)
{
	m->next = NULL;
	pthread_mutex_lock(&w->mail_lock);
	if (w->mail_closed) {
		pthread_mutex_unlock(&w->mail_lock);
		m->run(m);
		return;
	}
	if (w->mail_tail)
		w->mail_tail->next = m;
	else
		w->mail_head = m;
	w->mail_tail = m;
	pthread_mutex_unlock(&w->mail_lock);
	uv_async_send(&w->wake);
}

static void worker_main(void *arg)
{
	struct http_worker *w = arg;
	/* Connect to the shared tier before the first request needs it. */
	responder_loop_start(w->server->responder, &w->loop);
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int http_server_start(struct http_server *s, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct http_worker *w = &s->workers[i];
		w->server = s;
		w->index = i;
		pthread_mutex_init(&w->mail_lock, NULL);
		uv_loop_init(&w->loop);
		w->loop.data = w;
		uv_async_init(&w->loop, &w->wake, on_wake);
		w->wake.data = w;
		uv_timer_init(&w->loop, &w->tick);
		w->tick.data = w;
		uv_timer_start(&w->tick, on_tick, 1000, 1000);
		update_date(w);
		for (size_t a = 0; a < w->n_listeners; a++) {
			int fd = w->listen_fds[a];
			uv_tcp_init(&w->loop, &w->listeners[a]);
			w->listeners[a].data = w;
			int r = uv_tcp_open(&w->listeners[a], fd);
			if (r == 0)
				r = uv_listen((uv_stream_t *)&w->listeners[a], 4096, on_connection);
			if (r != 0) {
				snprintf(err, errlen, "listen: %s", uv_strerror(r));
				return -1;
			}
		}
		if (uv_thread_create(&w->thread, worker_main, w) != 0) {
			snprintf(err, errlen, "cannot start worker thread");
			return -1;
		}
	}
	for (size_t a = 0; a < s->n_fds; a++)
		log_info("listening on %s (%u workers)", s->bound[a], s->n_workers);
	return 0;
}

void http_server_stop(struct http_server *s)
{
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct http_worker *w = &s->workers[i];
		pthread_mutex_lock(&w->mail_lock);
		w->stop_requested = true;
		pthread_mutex_unlock(&w->mail_lock);
		uv_async_send(&w->wake);
	}
	for (unsigned i = 0; i < s->n_workers; i++)
		uv_thread_join(&s->workers[i].thread);
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct http_worker *w = &s->workers[i];
		if (w->server == NULL) {
			/* Never started: only its bound sockets to close. */
			for (size_t a = 0; a < w->n_listeners; a++)
				close(w->listen_fds[a]);
			continue;
		}
		if (uv_loop_close(&w->loop) != 0)
			log_warn("worker %u: handles still open at exit", i);
		pthread_mutex_destroy(&w->mail_lock);
	}
	free(s->workers);
	free(s);
}
