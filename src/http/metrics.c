/* GET /metrics: revd's counters in the Prometheus text format (version 0.0.4). */
#include "http/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cache/l1.h"
#include "cache/l2.h"
#include "core/clock.h"
#include "crl/publisher.h"
#include "db/pg.h"
#include "http/api.h"
#include "http/presign.h"
#include "http/responder.h"

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* A histogram in seconds: counts per bucket (n bounds, then one above them all). */
static void histogram(struct buf *b, const char *name, const char *help, const double *bounds,
                      size_t n, const uint64_t *counts, double sum)
{
	put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	uint64_t cum = 0;
	for (size_t i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n)
			put(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
		else
			put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	}
	put(b, "%s_sum %.9f\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
}

/* A counter with one label: labels[i] NULL skips slot i. */
static void family(struct buf *b, const char *name, const char *help, const char *label,
                   const char *const *labels, const uint64_t *values, size_t n)
{
	put(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (size_t i = 0; i < n; i++)
		if (labels[i] != NULL)
			put(b, "%s{%s=\"%s\"} %llu\n", name, label, labels[i],
			    (unsigned long long)values[i]);
}

/* HTTP status codes as labels, "other" for code 0. */
static void status_labels(const int *codes, size_t n, char (*text)[8], const char **labels)
{
	for (size_t i = 0; i < n; i++) {
		if (codes[i] != 0)
			snprintf(text[i], sizeof(text[i]), "%d", codes[i]);
		else
			snprintf(text[i], sizeof(text[i]), "other");
		labels[i] = text[i];
	}
}

/* One metric with its HELP and TYPE lines. */
static void metric(struct buf *b, const char *name, const char *type, const char *help,
                   double v)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void http_metrics(struct http_server *s, struct buf *out)
{
	struct responder *r = s->responder;
	uint64_t requests = 0;
	for (unsigned i = 0; i < s->n_workers; i++)
		requests += __atomic_load_n(&s->workers[i].requests, __ATOMIC_RELAXED);
	metric(out, "revd_ready", "gauge", "1 when every status store can answer", responder_ready(r));
	metric(out, "revd_http_requests_total", "counter", "HTTP requests answered", (double)requests);

	struct cache_stats cs;
	cache_get_stats(r->cache, &cs);
	metric(out, "revd_l1_hits_total", "counter", "answers served from memory", (double)cs.hits);
	metric(out, "revd_l1_misses_total", "counter", "lookups not in memory", (double)cs.misses);
	metric(out, "revd_l1_waits_total", "counter", "requests that waited for another's fill",
	       (double)cs.waits);
	metric(out, "revd_l1_refreshes_total", "counter", "answers re-signed ahead of time",
	       (double)cs.refreshes);
	metric(out, "revd_l1_evictions_total", "counter", "answers evicted from memory",
	       (double)cs.evictions);
	metric(out, "revd_l1_invalidations_total", "counter", "answers dropped after a change",
	       (double)cs.invalidations);
	metric(out, "revd_l1_entries", "gauge", "answers held in memory", (double)cs.entries);

	metric(out, "revd_signatures_total", "counter", "OCSP answers signed by request paths",
	       (double)atomic_load(&r->signed_total));
	metric(out, "revd_signing_in_flight", "gauge", "signing jobs queued or running",
	       (double)atomic_load(&r->signing));
	metric(out, "revd_signing_over_budget_total", "counter",
	       "requests answered tryLater because sign_budget was reached",
	       (double)atomic_load(&r->over_budget));

	uint64_t sign[RESPONDER_SIGN_BUCKETS + 1];
	for (size_t i = 0; i <= RESPONDER_SIGN_BUCKETS; i++)
		sign[i] = atomic_load_explicit(&r->sign_hist[i], memory_order_relaxed);
	histogram(out, "revd_signing_seconds", "time to build and sign one OCSP response",
	          responder_sign_buckets, RESPONDER_SIGN_BUCKETS, sign,
	          (double)atomic_load(&r->sign_ns_total) / 1e9);

	/* Requests by method, responses by HTTP status, OCSP answers by responseStatus. */
	static const char *const methods[HTTP_METHOD_SLOTS] = {"GET", "HEAD", "POST", "other"};
	static const char *const ocsp[HTTP_OCSP_SLOTS] = {
		"successful", "malformedRequest", "internalError", "tryLater",
		NULL /* 4: unused */, "sigRequired", "unauthorized", NULL};
	uint64_t m[HTTP_METHOD_SLOTS] = {0}, st[HTTP_STATUS_SLOTS] = {0}, oc[HTTP_OCSP_SLOTS] = {0};
	uint64_t age[HTTP_AGE_BUCKETS + 1] = {0}, age_total = 0;
	for (unsigned w = 0; w < s->n_workers; w++) {
		const struct http_worker *wk = &s->workers[w];
		for (size_t i = 0; i < HTTP_METHOD_SLOTS; i++)
			m[i] += __atomic_load_n(&wk->by_method[i], __ATOMIC_RELAXED);
		for (size_t i = 0; i < HTTP_STATUS_SLOTS; i++)
			st[i] += __atomic_load_n(&wk->by_status[i], __ATOMIC_RELAXED);
		for (size_t i = 0; i < HTTP_OCSP_SLOTS; i++)
			oc[i] += __atomic_load_n(&wk->ocsp_by_status[i], __ATOMIC_RELAXED);
		for (size_t i = 0; i <= HTTP_AGE_BUCKETS; i++)
			age[i] += __atomic_load_n(&wk->age_hist[i], __ATOMIC_RELAXED);
		age_total += __atomic_load_n(&wk->age_total, __ATOMIC_RELAXED);
	}
	histogram(out, "revd_ocsp_answer_age_seconds",
	          "age (now - producedAt) of the cached OCSP answers served", http_age_buckets,
	          HTTP_AGE_BUCKETS, age, (double)age_total);
	family(out, "revd_http_requests_by_method_total", "requests by method", "method", methods,
	       m, HTTP_METHOD_SLOTS);
	int codes[HTTP_STATUS_SLOTS] = {0}; /* the last: any other */
	memcpy(codes, http_status_slots, sizeof(http_status_slots));
	char code_text[HTTP_STATUS_SLOTS][8];
	const char *code_labels[HTTP_STATUS_SLOTS];
	status_labels(codes, HTTP_STATUS_SLOTS, code_text, code_labels);
	family(out, "revd_http_responses_total", "responses by HTTP status", "status", code_labels,
	       st, HTTP_STATUS_SLOTS);
	family(out, "revd_ocsp_responses_total", "OCSP answers by responseStatus", "outcome", ocsp,
	       oc, HTTP_OCSP_SLOTS);

	if (r->l2 != NULL) {
		struct l2_stats ls;
		l2_get_stats(r->l2, &ls);
		metric(out, "revd_redis_gets_total", "counter", "answers asked of Redis", (double)ls.gets);
		metric(out, "revd_redis_hits_total", "counter", "answers served from Redis",
		       (double)ls.hits);
		metric(out, "revd_redis_misses_total", "counter", "answers Redis did not have",
		       (double)ls.misses);
		metric(out, "revd_redis_errors_total", "counter", "Redis commands failed or timed out",
		       (double)ls.errors);
		metric(out, "revd_redis_rejected_total", "counter",
		       "answers from Redis refused (malformed, stale, fenced)", (double)ls.rejected);
		metric(out, "revd_redis_puts_total", "counter", "answers written to Redis",
		       (double)ls.puts);
		metric(out, "revd_redis_fences_held", "gauge",
		       "changes not yet confirmed written to Redis", (double)ls.fences_held);
	}
	if (r->presigner != NULL) {
		struct presign_stats ps;
		presigner_get_stats(r->presigner, &ps);
		metric(out, "revd_presign_signed_total", "counter", "answers pre-signed",
		       (double)ps.signed_total);
		metric(out, "revd_presign_queue_depth", "gauge", "answers due and not yet signed",
		       (double)ps.queue_depth);
		metric(out, "revd_presign_oldest_answer_age_seconds", "gauge",
		       "age of the oldest answer seen in the last full round", (double)ps.oldest_age);
		metric(out, "revd_presign_errors_total", "counter", "pre-signer errors",
		       (double)ps.errors);
	}
	for (size_t i = 0; i < r->n_stores; i++) {
		if (strcmp(r->stores[i]->ops->kind, "postgres") != 0)
			continue;
		struct store_pg_stats pg;
		store_pg_get_stats(r->stores[i], &pg);
		metric(out, "revd_pg_lookups_total", "counter", "status lookups in PostgreSQL",
		       (double)pg.lookups);
		metric(out, "revd_pg_lookup_failures_total", "counter",
		       "lookups that failed or timed out (answered tryLater)", (double)pg.lookup_failures);
		metric(out, "revd_pg_notifications_total", "counter", "change notifications heard",
		       (double)pg.notifications);
		metric(out, "revd_pg_reconnects_total", "counter", "connections made again",
		       (double)pg.reconnects);
		histogram(out, "revd_pg_lookup_seconds",
		          "status lookups in PostgreSQL, from sent (or queued) to answered",
		          store_pg_lookup_buckets, STORE_PG_LOOKUP_BUCKETS, pg.lookup_hist,
		          (double)pg.lookup_ns_total / 1e9);
		metric(out, "revd_pg_feed_up", "gauge", "1 while the change feed is connected",
		       pg.feed_up);
		metric(out, "revd_commit_to_invalidation_seconds", "gauge",
		       "last change: from the CA's write to cached answers dropped",
		       (double)pg.last_notify_lag_us / 1e6);
		metric(out, "revd_commit_to_invalidation_max_seconds", "gauge",
		       "the longest such time since start", (double)pg.max_notify_lag_us / 1e6);
	}
	crl_publisher_metrics(r->crl, clock_now(), out);
	if (s->api != NULL) {
		struct api_stats as;
		api_get_stats(s->api, &as);
		char api_text[API_STATUS_SLOTS][8];
		const char *api_labels[API_STATUS_SLOTS];
		status_labels(as.status, API_STATUS_SLOTS, api_text, api_labels);
		family(out, "revd_api_responses_total", "revocation API answers by HTTP status",
		       "status", api_labels, as.by_status, API_STATUS_SLOTS);
		metric(out, "revd_api_handshake_failures_total", "counter",
		       "TLS handshakes refused (no client certificate, not from client_ca, revoked)",
		       (double)as.handshake_failures);
		histogram(out, "revd_api_live_seconds",
		          "from a revocation API write's commit until this instance served it",
		          api_live_buckets, API_LIVE_BUCKETS, as.live_hist, (double)as.live_ns_total / 1e9);
	}
}
