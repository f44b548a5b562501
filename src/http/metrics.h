/* Prometheus metrics of a running revd (GET /metrics). */
#ifndef REVD_HTTP_METRICS_H
#define REVD_HTTP_METRICS_H

#include "core/buf.h"
#include "http/http.h"

/* Appends every metric, in the Prometheus text format, to out. Any thread. */
void http_metrics(struct http_server *s, struct buf *out);

#endif
