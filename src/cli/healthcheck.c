/* revd healthcheck: a container probe: GET /readyz (or /healthz) on a running revd. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static const char healthcheck_usage[] =
	"usage: revd healthcheck [--address HOST:PORT] [--live] [--timeout SECONDS]\n"
	"\n"
	"Asks a running revd whether it is ready (GET /readyz: its stores answer and its\n"
	"signers are loaded) or, with --live, only alive (GET /healthz). For container\n"
	"health checks: no curl or wget needed in the image.\n"
	"\n"
	"  --address HOST:PORT  where revd listens (default 127.0.0.1:8080)\n"
	"  --live               alive rather than ready\n"
	"  --timeout SECONDS    give up after this long (default 3)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exits 0 when revd answers 200, 1 otherwise (the reason is printed).\n";

static const struct option hc_options[] = {
	{"address", required_argument, NULL, 'a'},
	{"live", no_argument, NULL, 'l'},
	{"timeout", required_argument, NULL, 't'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? ms : 0;
}

static int probe(const char *address, const char *path, int timeout_s)
{
	char host[256], port[16];
	const char *colon = strrchr(address, ':');
	if (colon == NULL || colon == address || strlen(colon + 1) >= sizeof(port) ||
	    (size_t)(colon - address) >= sizeof(host)) {
		fprintf(stderr, "revd healthcheck: expected HOST:PORT, got '%s'\n", address);
		return CLI_USAGE;
	}
	const char *h = address;
	size_t hl = (size_t)(colon - address);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = 0;
	snprintf(port, sizeof(port), "%s", colon + 1);
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_s;

	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "revd healthcheck: %s: %s\n", address, gai_strerror(rc));
		return CLI_FAIL;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int status = CLI_FAIL;
	if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)) {
		fprintf(stderr, "revd healthcheck: %s: %s\n", address, strerror(errno));
		goto out;
	}
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (poll(&pfd, 1, (int)ms_left(&deadline)) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
		fprintf(stderr, "revd healthcheck: %s: %s\n", address,
		        soerr ? strerror(soerr) : "connection timed out");
		goto out;
	}
	char req[512];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
	                 path, address);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		fprintf(stderr, "revd healthcheck: %s: %s\n", address, strerror(errno));
		goto out;
	}
	char resp[1024];
	size_t got = 0;
	pfd.events = POLLIN;
	while (got < sizeof(resp) - 1) {
		if (poll(&pfd, 1, (int)ms_left(&deadline)) != 1) {
			fprintf(stderr, "revd healthcheck: %s: no answer within %d s\n", address,
			        timeout_s);
			goto out;
		}
		ssize_t r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	resp[got] = 0;
	int code = 0;
	if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1) {
		fprintf(stderr, "revd healthcheck: %s: not an HTTP answer\n", address);
		goto out;
	}
	const char *body = strstr(resp, "\r\n\r\n");
	body = body ? body + 4 : "";
	size_t bl = strcspn(body, "\n");
	if (code == 200) {
		printf("%s%s: %.*s\n", address, path, (int)bl, body);
		status = CLI_OK;
	} else {
		fprintf(stderr, "revd healthcheck: %s%s: %d %.*s\n", address, path, code, (int)bl, body);
	}
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return status;
}

int cli_healthcheck(int argc, char **argv)
{
	const char *address = "127.0.0.1:8080";
	bool live = false;
	int timeout_s = 3;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", hc_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(healthcheck_usage, stdout);
			return CLI_OK;
		case 'a':
			address = optarg;
			break;
		case 'l':
			live = true;
			break;
		case 't':
			timeout_s = atoi(optarg);
			if (timeout_s < 1 || timeout_s > 300) {
				fprintf(stderr, "revd healthcheck: --timeout takes 1 to 300 seconds\n");
				return CLI_USAGE;
			}
			break;
		default:
			fprintf(stderr, "revd healthcheck: unknown or incomplete option '%s'\n%s",
			        argv[optind - 1], healthcheck_usage);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "revd healthcheck: unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	return probe(address, live ? "/healthz" : "/readyz", timeout_s);
}
