#include "cli/httpc.h"

#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"

int httpc_split_url(const char *url, char host[256], char port[16], char path[2048], char *err,
                    size_t errlen)
{
	const char *p = url;
	bool scheme = strncmp(p, "http://", 7) == 0;
	if (scheme)
		p += 7;
	else if (strstr(p, "://") != NULL) {
		snprintf(err, errlen, "%s: only http:// URLs", url);
		return -1;
	}
	size_t hostport = strcspn(p, "/");
	const char *rest = p + hostport;
	const char *h = p;
	size_t hl = hostport;
	const char *pt = NULL;
	size_t pl = 0;
	if (h[0] == '[') {
		const char *close = memchr(h, ']', hostport);
		if (close == NULL) {
			snprintf(err, errlen, "%s: an unclosed [", url);
			return -1;
		}
		hl = (size_t)(close - h) - 1;
		h++;
		if (close + 1 < p + hostport && close[1] == ':') {
			pt = close + 2;
			pl = (size_t)(p + hostport - pt);
		}
	} else {
		const char *colon = memchr(h, ':', hostport);
		if (colon != NULL) {
			hl = (size_t)(colon - h);
			pt = colon + 1;
			pl = (size_t)(p + hostport - pt);
		}
	}
	if (hl == 0 || hl >= 256 || pl >= 16 || (pt != NULL && pl == 0) ||
	    (!scheme && pt == NULL) || strlen(rest) >= 2048) {
		snprintf(err, errlen, "expected http://HOST[:PORT]/PATH or HOST:PORT, got '%s'", url);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = 0;
	if (pt != NULL) {
		memcpy(port, pt, pl);
		port[pl] = 0;
	} else {
		strcpy(port, "80");
	}
	snprintf(path, 2048, "%s", *rest ? rest : "/");
	return 0;
}

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? ms : 0;
}

struct reading {
	struct buf body;
	bool done;
};

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct reading *rd = p->data;
	return buf_append(&rd->body, at, len) ? 0 : -1;
}

static int on_complete(llhttp_t *p)
{
	struct reading *rd = p->data;
	rd->done = true;
	return HPE_PAUSED;
}

static int send_all(int fd, const void *data, size_t len, const struct timespec *deadline)
{
	const uint8_t *p = data;
	while (len > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		if (poll(&pfd, 1, (int)ms_left(deadline)) != 1)
			return -1;
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
	return 0;
}

int httpc_request(const char *host, const char *port, const char *method, const char *path,
                  const uint8_t *body, size_t len, const char *ctype, int timeout_s,
                  size_t max_body, struct httpc_result *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_s;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s:%s: %s", host, port, gai_strerror(rc));
		return -1;
	}
	int ret = -1, fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct reading rd = {.done = false};
	buf_init(&rd.body, max_body);
	if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)) {
		snprintf(err, errlen, "%s:%s: %s", host, port, strerror(errno));
		goto out;
	}
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (poll(&pfd, 1, (int)ms_left(&deadline)) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
		snprintf(err, errlen, "%s:%s: %s", host, port,
		         soerr ? strerror(soerr) : "connection timed out");
		goto out;
	}
	char head[2600];
	bool v6 = strchr(host, ':') != NULL;
	int n = snprintf(head, sizeof(head),
	                 "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nConnection: close\r\n"
	                 "User-Agent: revd\r\n",
	                 method, path, v6 ? "[" : "", host, v6 ? "]" : "", port);
	if (body != NULL)
		n += snprintf(head + n, sizeof(head) - (size_t)n,
		              "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	if (send_all(fd, head, (size_t)n, &deadline) != 0 ||
	    (body != NULL && send_all(fd, body, len, &deadline) != 0)) {
		snprintf(err, errlen, "%s:%s: sending: %s", host, port,
		         errno ? strerror(errno) : "timed out");
		goto out;
	}
	llhttp_settings_t settings;
	llhttp_settings_init(&settings);
	settings.on_body = on_body;
	settings.on_message_complete = on_complete;
	llhttp_t parser;
	llhttp_init(&parser, HTTP_RESPONSE, &settings);
	parser.data = &rd;
	char chunk[16384];
	pfd.events = POLLIN;
	while (!rd.done) {
		if (poll(&pfd, 1, (int)ms_left(&deadline)) != 1) {
			snprintf(err, errlen, "%s:%s: no whole answer within %d s", host, port, timeout_s);
			goto out;
		}
		ssize_t r = recv(fd, chunk, sizeof(chunk), 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		enum llhttp_errno e = r > 0 ? llhttp_execute(&parser, chunk, (size_t)r)
		                            : llhttp_finish(&parser);
		if (rd.body.failed) {
			snprintf(err, errlen, "%s:%s: an answer larger than %zu bytes", host, port,
			         max_body);
			goto out;
		}
		if (e != HPE_OK && e != HPE_PAUSED) {
			snprintf(err, errlen, "%s:%s: not an HTTP answer (%s)", host, port,
			         llhttp_errno_name(e));
			goto out;
		}
		if (r <= 0 && !rd.done) {
			snprintf(err, errlen, "%s:%s: the connection closed mid-answer", host, port);
			goto out;
		}
	}
	out->status = llhttp_get_status_code(&parser);
	buf_append_byte(&rd.body, 0);
	if (rd.body.failed) {
		snprintf(err, errlen, "%s:%s: an answer larger than %zu bytes", host, port, max_body);
		goto out;
	}
	out->body = buf_steal(&rd.body, &out->len);
	out->len--; /* the NUL */
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	buf_free(&rd.body);
	freeaddrinfo(res);
	return ret;
}
