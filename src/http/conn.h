/* Connections, as the worker sees them. */
#ifndef REVD_HTTP_CONN_H
#define REVD_HTTP_CONN_H

#include <stdbool.h>
#include <uv.h>

struct http_worker;

/* Accepts one pending connection from listener onto w's loop. */
void conn_accept(struct http_worker *w, uv_stream_t *listener);

/* Closes w's idle connections (all of them when all is set). */
void conn_stop_idle(struct http_worker *w, bool all);

#endif
