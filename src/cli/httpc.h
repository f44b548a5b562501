/* A small blocking HTTP/1.1 client for the command line (revd staple, revd healthcheck):
 * plain http only, one request per connection, responses parsed by llhttp. */
#ifndef REVD_CLI_HTTPC_H
#define REVD_CLI_HTTPC_H

#include <stddef.h>
#include <stdint.h>

struct httpc_result {
	int status;
	uint8_t *body; /* malloc'd, NUL-terminated (not counted in len) */
	size_t len;
};

/* Splits "http://HOST[:PORT][/PATH]" (PORT 80, PATH "/" by default) or "HOST:PORT".
 * Returns 0, or -1 with the reason in err. */
int httpc_split_url(const char *url, char host[256], char port[16], char path[2048], char *err,
                    size_t errlen);

/*
 * Sends method path to host:port with body (NULL: none) of content type ctype, and reads
 * the whole answer within timeout_s seconds, its body at most max_body bytes. Returns 0
 * with *out filled (free out->body), or -1 with the reason in err.
 */
int httpc_request(const char *host, const char *port, const char *method, const char *path,
                  const uint8_t *body, size_t len, const char *ctype, int timeout_s,
                  size_t max_body, struct httpc_result *out, char *err, size_t errlen);

#endif
