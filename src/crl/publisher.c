#include "crl/publisher.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "crl/crl.h"
#include "crl/repo.h"
#include "ocsp/signer.h"

#define SCAN_BATCH 4096
#define MAX_SERIES 4096
#define RETRY_SECS 10

/* A published CRL, ready to serve: DER and PEM entries with their header lines. */
struct crl_doc {
	struct cache_entry *der;
	struct cache_entry *pem;
	uint64_t number;
	uint64_t base; /* delta CRLs: the base CRL's number */
	int64_t this_update;
	int64_t next_update;
};

struct crl_issuer {
	char name[128];
	char store_name[128];
	struct ocsp_signer *signer; /* the CA's key and certificate; NULL: CRLs are imported */
	X509 *ca;
	uint8_t *name_der;          /* the CA's subject */
	size_t name_len;
	uint8_t key_id[64];
	size_t key_id_len;
	struct store *store; /* borrowed */
	struct store_issuer *store_issuer;
	struct crl_repo *repo; /* borrowed from the publisher */
	unsigned shards;
};

struct crl_series {
	struct crl_issuer *issuer;
	unsigned shard;
	bool partitioned;
	char stem[160];
	char file_full[176], file_delta[176];
	char url_full[768], url_delta[768]; /* empty without [crl] base_url */
	struct crl_doc *full, *delta; /* under the publisher's lock */
	uint64_t seen_full, seen_delta; /* what the repository held when last loaded */
	_Atomic int64_t changed_at;     /* the latest change heard of; 0: none */
	/* Changes made while no instance ran are heard of by nobody: this process builds
	 * a new delta (or, without deltas, a full CRL) once, when it starts. */
	bool start_pending;
	int64_t started;
	int64_t retry_at;               /* after a failure, not before this */
};

struct crl_publisher {
	const struct config *cfg;
	struct crl_issuer **issuers;
	size_t n_issuers;
	struct crl_series *series;
	size_t n_series;
	struct crl_repo *dir_repo, *pg_repo;
	pthread_mutex_t lock; /* docs */
	pthread_mutex_t wake_lock;
	pthread_cond_t wake;
	bool stop, running, woken;
	_Atomic bool first_pass; /* the thread has been over every series once */
	pthread_t thread;
};

static struct crl_series_id series_id(const struct crl_series *s)
{
	struct crl_series_id id = {s->stem, s->issuer->store_name, s->shard};
	return id;
}

/* --- documents --- */

static void doc_free(struct crl_doc *d)
{
	if (d == NULL)
		return;
	if (d->der != NULL)
		cache_entry_unref(d->der);
	if (d->pem != NULL)
		cache_entry_unref(d->pem);
	free(d);
}

static struct cache_entry *make_entry(const uint8_t *body, size_t len, const char *type,
                                      const char *etag, int64_t this_update)
{
	char lm[30];
	clock_http_date(this_update, lm);
	char hdr[256];
	/* The ETag line comes first: the connection finds it there for If-None-Match. */
	int n = snprintf(hdr, sizeof(hdr),
	                 "ETag: \"%s\"\r\nLast-Modified: %s\r\nContent-Type: %s\r\n"
	                 "Content-Length: %zu\r\n\r\n",
	                 etag, lm, type, len);
	if (n <= 0 || (size_t)n >= sizeof(hdr))
		return NULL;
	/* body NULL: the caller writes the len bytes at e->der. */
	return cache_entry_new(body, len, hdr, (size_t)n);
}

/* Is idp (an IssuingDistributionPoint's contents) exactly fullName = { URI uri }? */
static bool idp_is(const struct der_cursor *idp, const char *uri)
{
	struct der_cursor c = *idp, dp, full, u;
	return der_read(&c, DER_CTX_CONS(0), &dp) && der_at_end(&c) &&
	       der_read(&dp, DER_CTX_CONS(0), &full) && der_at_end(&dp) &&
	       der_read(&full, DER_CTX_PRIM(6), &u) && der_at_end(&full) &&
	       der_equals(&u, (const uint8_t *)uri, strlen(uri));
}

static bool signed_by_ca(const struct crl_issuer *is, const uint8_t *der, size_t len,
                         const struct crl_info *info)
{
	if (is->signer != NULL)
		return ocsp_signer_verify(is->signer, info->tbs.p, der_len(&info->tbs), info->sig.p,
		                          der_len(&info->sig));
	/* Imported: whatever scheme the CA signs with, as OpenSSL verifies it. */
	const unsigned char *p = der;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
	bool ok = crl != NULL && X509_CRL_verify(crl, X509_get0_pubkey(is->ca)) == 1;
	X509_CRL_free(crl);
	ERR_clear_error();
	return ok;
}

/* A document from DER a repository holds: parsed, so that what is served is a CRL of
 * this series. NULL (and why in err) if it is not one. */
/* PEM (RFC 7468) of der, written straight into its entry: 64 characters a line. */
static struct cache_entry *make_pem_entry(const uint8_t *der, size_t len, const char *etag,
                                          int64_t this_update)
{
	static const char begin[] = "-----BEGIN X509 CRL-----\n", end[] = "-----END X509 CRL-----\n";
	size_t lines = (len + 47) / 48;
	size_t size = sizeof(begin) - 1 + (len + 2) / 3 * 4 + lines + sizeof(end) - 1;
	struct cache_entry *e = make_entry(NULL, size, "application/x-pem-file", etag, this_update);
	if (e == NULL)
		return NULL;
	char *p = (char *)e->der;
	memcpy(p, begin, sizeof(begin) - 1);
	p += sizeof(begin) - 1;
	unsigned char line[65];
	for (size_t off = 0; off < len; off += 48) {
		size_t n = len - off < 48 ? len - off : 48;
		int w = EVP_EncodeBlock(line, der + off, (int)n);
		memcpy(p, line, (size_t)w);
		p += w;
		*p++ = '\n';
	}
	memcpy(p, end, sizeof(end) - 1);
	return e;
}

/*
 * A document from DER a repository holds or revd built: parsed, so that what is served
 * is a CRL of this series. NULL (and why in err) if it is not one. signed_here: revd
 * just built and signed it, so its signature is not checked again. done_with: the
 * caller's malloc'd copy of der, freed as soon as it is copied (a CRL can be large);
 * NULL: der stays the caller's.
 */
static struct crl_doc *doc_new(const struct crl_series *s, const uint8_t *der, size_t len,
                               bool delta, bool signed_here, uint8_t *done_with, char *err,
                               size_t errlen)
{
	struct crl_info info;
	struct crl_doc *d = NULL;
	if (!crl_parse(der, len, &info) || !info.has_number || info.next_update == 0) {
		snprintf(err, errlen, "not a CRL revd can serve (no number or nextUpdate)");
		goto fail;
	}
	if (info.is_delta != delta ||
	    !der_equals(&info.issuer, s->issuer->name_der, s->issuer->name_len)) {
		snprintf(err, errlen, "a CRL of another issuer or kind");
		goto fail;
	}
	if (s->partitioned && !idp_is(&info.idp, s->url_full)) {
		snprintf(err, errlen, "a CRL of another shard (its issuingDistributionPoint is not %.160s)",
		         s->url_full);
		goto fail;
	}
	if (!signed_here && !signed_by_ca(s->issuer, der, len, &info)) {
		snprintf(err, errlen, "the CRL's signature does not verify with the CA's key");
		goto fail;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		goto oom;
	d->number = info.number;
	d->base = info.delta_base;
	d->this_update = info.this_update;
	d->next_update = info.next_update;
	uint8_t md[32];
	unsigned mdlen = 0;
	char etag[40];
	EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL);
	for (int i = 0; i < 16; i++)
		snprintf(etag + 2 * i, 3, "%02x", md[i]);
	if ((d->der = make_entry(der, len, "application/pkix-crl", etag, d->this_update)) == NULL)
		goto oom;
	free(done_with);
	done_with = NULL;
	etag[32] = 'p';
	etag[33] = 0;
	d->pem = make_pem_entry(d->der->der, d->der->der_len, etag, d->this_update);
	if (d->pem == NULL)
		goto oom;
	d->der->this_update = d->pem->this_update = d->this_update;
	d->der->next_update = d->pem->next_update = d->next_update;
	return d;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(done_with);
	doc_free(d);
	return NULL;
}

static void install(struct crl_publisher *p, struct crl_series *s, struct crl_doc *d, bool delta)
{
	pthread_mutex_lock(&p->lock);
	struct crl_doc **slot = delta ? &s->delta : &s->full;
	struct crl_doc *old = *slot;
	*slot = d;
	pthread_mutex_unlock(&p->lock);
	doc_free(old);
}

/* --- entries --- */

struct entries {
	struct crl_entry *v;
	size_t n, cap;
};

static bool entries_push(struct entries *es, const struct crl_entry *e)
{
	if (es->n == es->cap) {
		size_t cap = es->cap ? es->cap * 2 : 1024;
		struct crl_entry *nv = realloc(es->v, cap * sizeof(*nv));
		if (nv == NULL)
			return false;
		es->v = nv;
		es->cap = cap;
	}
	es->v[es->n++] = *e;
	return true;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct crl_entry *x = a, *y = b;
	return crl_serial_cmp(x->serial, x->serial_len, y->serial, y->serial_len);
}

/* A serial's shard: the serial as an unsigned big-endian integer, modulo shards. */
static unsigned shard_of(const uint8_t *serial, size_t len, unsigned shards)
{
	uint64_t r = 0;
	for (size_t i = 0; i < len; i++)
		r = (r * 256 + serial[i]) % shards;
	return (unsigned)r;
}

/*
 * What a CRL built at `now` lists: the revoked certificates of the series' scope that
 * have not expired, or expired less than one regular CRL interval ago (so that at
 * least one regular CRL after the expiry still lists them), in serial order.
 */
static int collect(struct crl_publisher *p, struct crl_series *s, int64_t now,
                   struct entries *out, char *err, size_t errlen)
{
	struct crl_issuer *is = s->issuer;
	struct store_scan_item *items = malloc(SCAN_BATCH * sizeof(*items));
	if (items == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	struct store_serial after = {0};
	int64_t cut = now - p->cfg->crl_interval;
	int rc = 0;
	for (;;) {
		long n = store_scan(is->store, is->store_issuer, &after, cut, STORE_SCAN_REVOKED, items,
		                    SCAN_BATCH, err, errlen);
		if (n < 0) {
			rc = -1;
			break;
		}
		for (long i = 0; i < n; i++) {
			const struct store_scan_item *it = &items[i];
			if (it->rec.status != STORE_REVOKED)
				continue;
			if (is->shards > 0 && shard_of(it->serial.bytes, it->serial.len, is->shards) !=
			                              s->shard)
				continue;
			struct crl_entry e = {
				.serial_len = it->serial.len,
				.reason = it->rec.reason,
				.revoked_at = it->rec.revoked_at,
				.invalidity_date = it->rec.invalidity_date,
			};
			memcpy(e.serial, it->serial.bytes, it->serial.len);
			if (!entries_push(out, &e)) {
				snprintf(err, errlen, "out of memory");
				rc = -1;
				break;
			}
		}
		if (rc != 0 || (size_t)n < SCAN_BATCH)
			break;
		after = items[n - 1].serial;
	}
	free(items);
	if (rc == 0)
		qsort(out->v, out->n, sizeof(*out->v), entry_cmp);
	return rc;
}

/*
 * A delta CRL's entries (RFC 5280 §5.2.4): what changed since the base CRL. Entries
 * new or changed since the base are listed as they are now; entries the base lists
 * that are gone (a hold released, a certificate expired) are listed as removeFromCRL.
 */
static int delta_entries(const struct crl_doc *base, const struct entries *cur, int64_t now,
                         struct entries *out, char *err, size_t errlen)
{
	struct crl_info info;
	struct entries old = {0};
	int rc = -1;
	if (!crl_parse(base->der->der, base->der->der_len, &info)) {
		snprintf(err, errlen, "the base CRL cannot be read");
		return -1;
	}
	struct crl_entry e;
	while (crl_next_entry(&info.entries, &e))
		if (!entries_push(&old, &e))
			goto oom;
	qsort(old.v, old.n, sizeof(*old.v), entry_cmp);
	size_t i = 0, j = 0;
	while (i < cur->n || j < old.n) {
		int c = i == cur->n ? 1
		        : j == old.n
		                ? -1
		                : crl_serial_cmp(cur->v[i].serial, cur->v[i].serial_len, old.v[j].serial,
		                                 old.v[j].serial_len);
		if (c < 0) {
			if (!entries_push(out, &cur->v[i]))
				goto oom;
			i++;
		} else if (c > 0) {
			struct crl_entry gone = old.v[j];
			gone.reason = CRL_ENTRY_REMOVE;
			gone.revoked_at = now;
			gone.invalidity_date = 0;
			if (!entries_push(out, &gone))
				goto oom;
			j++;
		} else {
			const struct crl_entry *a = &cur->v[i], *b = &old.v[j];
			/* The base leaves "unspecified" out: the same as no reason. */
			int ra = a->reason == CRL_ENTRY_UNSPECIFIED ? CRL_ENTRY_NO_REASON : a->reason;
			int rb = b->reason == CRL_ENTRY_UNSPECIFIED ? CRL_ENTRY_NO_REASON : b->reason;
			if (ra != rb || a->revoked_at != b->revoked_at ||
			    a->invalidity_date != b->invalidity_date) {
				if (!entries_push(out, a))
					goto oom;
			}
			i++;
			j++;
		}
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	free(old.v);
	return rc;
}

/* --- building --- */

static double ms_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static int build(struct crl_publisher *p, struct crl_series *s, uint64_t number,
                 const struct crl_doc *base, int64_t now, struct buf *out, char *err,
                 size_t errlen)
{
	const struct config *cfg = p->cfg;
	struct entries cur = {0}, delta = {0};
	int rc = -1;
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (collect(p, s, now, &cur, err, errlen) != 0)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	const struct entries *list = &cur;
	if (base != NULL) {
		if (delta_entries(base, &cur, now, &delta, err, errlen) != 0)
			goto out;
		list = &delta;
	}
	struct crl_spec spec = {
		.issuer_name = s->issuer->name_der,
		.issuer_name_len = s->issuer->name_len,
		.key_id = s->issuer->key_id_len ? s->issuer->key_id : NULL,
		.key_id_len = s->issuer->key_id_len,
		.number = number,
		.delta_base = base ? base->number : 0,
		.this_update = now,
		.next_update = now + (base ? cfg->crl_delta_validity : cfg->crl_validity),
		.idp_uri = s->partitioned ? s->url_full : NULL,
		.freshest_uri = cfg->crl_deltas && s->url_delta[0] ? s->url_delta : NULL,
	};
	/* A delta never outlives its base. */
	if (base != NULL && spec.next_update > base->next_update)
		spec.next_update = base->next_update;
	if (spec.next_update <= now) {
		snprintf(err, errlen, "the base CRL has lapsed");
		goto out;
	}
	if (crl_build(&spec, list->v, list->n, s->issuer->signer, out, err, errlen))
		rc = 0;
	clock_gettime(CLOCK_MONOTONIC, &t2);
	if (rc == 0)
		log_info("CRL %s: %s number %llu, %zu entries, %zu bytes; read in %.1f ms, built "
		         "and signed in %.1f ms",
		         s->stem, base ? "delta" : "full", (unsigned long long)number, list->n,
		         out->len, ms_between(&t0, &t1), ms_between(&t1, &t2));
out:
	free(cur.v);
	free(delta.v);
	return rc;
}

enum need { NEED_NONE = 0, NEED_DELTA = 1, NEED_FULL = 2 };

static enum need decide(const struct crl_publisher *p, const struct crl_series *s, int64_t now)
{
	const struct config *cfg = p->cfg;
	const struct crl_doc *full = s->full, *delta = s->delta;
	if (s->issuer->signer == NULL)
		return NEED_NONE; /* the CA publishes them with revd crl import */
	if (!cfg->crl_build)
		return NEED_NONE; /* other instances build them; this one serves them */
	if (full == NULL || now >= full->this_update + cfg->crl_interval ||
	    now >= full->next_update || (s->start_pending && !cfg->crl_deltas))
		return NEED_FULL;
	if (!cfg->crl_deltas)
		return NEED_NONE;
	if (delta == NULL || delta->base != full->number || delta->number < full->number ||
	    now >= delta->this_update + cfg->crl_delta_interval || now >= delta->next_update)
		return NEED_DELTA;
	if (s->start_pending)
		return NEED_DELTA;
	int64_t changed = atomic_load(&s->changed_at);
	int64_t debounce = ((int64_t)cfg->crl_delta_debounce_ms + 999) / 1000;
	if (changed != 0 && changed >= delta->this_update && now >= changed + debounce)
		return NEED_DELTA;
	return NEED_NONE;
}

/* Serves what the repository holds as the series' latest full or delta CRL, unless it
 * is what is served already. One that is not a good CRL of this series is refused and
 * logged, and the current one stays served. */
static void take(struct crl_publisher *p, struct crl_series *s, struct crl_blob *b,
                 bool delta)
{
	const struct crl_doc *cur = delta ? s->delta : s->full;
	if (b->der == NULL || (cur != NULL && cur->number == b->number))
		return;
	char err[256];
	struct crl_doc *d = doc_new(s, b->der, b->len, delta, false, b->der, err, sizeof(err));
	b->der = NULL; /* freed by doc_new */
	if (d == NULL) {
		log_error("CRL %s: the %s CRL number %llu published is refused: %s", s->stem,
		          delta ? "delta" : "full", (unsigned long long)b->number, err);
		return;
	}
	install(p, s, d, delta);
}

/* Reads the series' latest CRLs from the repository and serves them. */
static int load(struct crl_publisher *p, struct crl_series *s, uint64_t *last, char *err,
                size_t errlen)
{
	struct crl_repo *r = s->issuer->repo;
	struct crl_series_id id = series_id(s);
	struct crl_blob full = {0}, delta = {0};
	uint64_t last_number = 0;
	if (r->ops->load(r, &id, s->full ? s->full->number : 0, s->delta ? s->delta->number : 0,
	                 &full, &delta, &last_number, err, errlen) != 0)
		return -1;
	take(p, s, &full, false);
	take(p, s, &delta, true);
	s->seen_full = full.number;
	s->seen_delta = delta.number;
	if (last != NULL)
		*last = last_number;
	crl_blob_clear(&full);
	crl_blob_clear(&delta);
	return 0;
}

/* Builds, signs and publishes one CRL; *made is what to serve once the generator's turn
 * ends well. */
static int publish(struct crl_publisher *p, struct crl_series *s, uint64_t number,
                   const struct crl_doc *base, int64_t now, struct crl_doc **made, char *err,
                   size_t errlen)
{
	struct crl_repo *r = s->issuer->repo;
	struct crl_series_id id = series_id(s);
	struct buf b;
	buf_init(&b, p->cfg->crl_max_bytes);
	int rc = -1;
	if (build(p, s, number, base, now, &b, err, errlen) != 0)
		goto out;
	struct crl_doc *d = doc_new(s, b.data, b.len, base != NULL, true, b.data, err, errlen);
	buf_init(&b, 0); /* its bytes were freed by doc_new, once copied */
	if (d == NULL)
		goto out;
	if (r->ops->publish(r, &id, number, base ? base->number : 0, d->this_update,
	                    d->next_update, d->der->der, d->der->der_len, err, errlen) != 0) {
		doc_free(d);
		goto out;
	}
	*made = d;
	rc = 0;
out:
	buf_free(&b);
	return rc;
}

/* How long a one-shot run (revd crl) waits for another generator to finish. */
#define LOCK_WAIT_MS 60000

/* Takes the series' generator lock: at once or not at all (wait false), or waiting for
 * another generator's turn to end. */
static int take_lock(struct crl_repo *r, const struct crl_series_id *id, bool wait, char *err,
                     size_t errlen)
{
	for (int waited = 0;; waited += 100) {
		int got = r->ops->lock(r, id, err, errlen);
		if (got != 0 || !wait)
			return got;
		if (waited >= LOCK_WAIT_MS) {
			snprintf(err, errlen, "another generator has held the series for %d s",
			         LOCK_WAIT_MS / 1000);
			return -1;
		}
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* One series: picks up what others published, then builds what is due. wait: a
 * one-shot run, which waits for another generator rather than leave the CRLs as they
 * are. */
static int step(struct crl_publisher *p, struct crl_series *s, bool wait)
{
	char err[256] = "";
	struct crl_repo *r = s->issuer->repo;
	struct crl_series_id id = series_id(s);
	int64_t now = clock_now();
	if (now < s->retry_at)
		return 0;
	uint64_t hf = 0, hd = 0;
	if (r->ops->head(r, &id, &hf, &hd, err, sizeof(err)) != 0)
		goto fail;
	if ((hf != s->seen_full || hd != s->seen_delta) && load(p, s, NULL, err, sizeof(err)) != 0)
		goto fail;
	/* A CRL built after the second this process started in covers what it would have:
	 * changes made before were made while its builder ran, or before that. (The same
	 * second is not enough: it may have been built just before this start.) */
	const struct crl_doc *latest = p->cfg->crl_deltas ? s->delta : s->full;
	if (s->start_pending && latest != NULL && latest->this_update > s->started)
		s->start_pending = false;
	if (decide(p, s, now) == NEED_NONE)
		return 0;

	int got = take_lock(r, &id, wait, err, sizeof(err));
	if (got < 0)
		goto fail;
	if (got == 0)
		return 0; /* another instance is building it; its CRL is picked up next time */
	uint64_t last = 0;
	struct crl_doc *full = NULL, *delta = NULL;
	bool ok = load(p, s, &last, err, sizeof(err)) == 0;
	enum need need = ok ? decide(p, s, now) : NEED_NONE;
	/* Only this thread replaces s->full, so it may be read without the lock. */
	const struct crl_doc *base = s->full;
	if (ok && need == NEED_FULL) {
		ok = publish(p, s, ++last, NULL, now, &full, err, sizeof(err)) == 0;
		base = full;
		/* A new base: its delta follows at once, so the pair always matches. */
		need = ok && p->cfg->crl_deltas ? NEED_DELTA : NEED_NONE;
	}
	if (ok && need == NEED_DELTA)
		ok = publish(p, s, ++last, base, now, &delta, err, sizeof(err)) == 0;
	/* Served only once the repository has them for good. */
	ok = r->ops->unlock(r, &id, ok, err, sizeof(err)) == 0 && ok;
	if (ok && full != NULL) {
		s->seen_full = full->number;
		install(p, s, full, false);
		full = NULL;
	}
	if (ok && delta != NULL) {
		s->seen_delta = delta->number;
		install(p, s, delta, true);
		delta = NULL;
	}
	doc_free(full);
	doc_free(delta);
	if (!ok)
		goto fail;
	s->start_pending = false;
	s->retry_at = 0;
	return 0;
fail:
	/* The last good CRL stays served; it is tried again shortly. */
	s->retry_at = now + RETRY_SECS;
	log_error("CRL %s: %s; the current CRL stays served, retrying in %ds", s->stem, err,
	          RETRY_SECS);
	return -1;
}

int crl_publisher_run_once(struct crl_publisher *p)
{
	int failed = 0;
	for (size_t i = 0; i < p->n_series; i++) {
		p->series[i].retry_at = 0;
		failed += step(p, &p->series[i], true) != 0;
	}
	return failed;
}

static void *publisher_main(void *arg)
{
	struct crl_publisher *p = arg;
	pthread_mutex_lock(&p->wake_lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->wake_lock);
		for (size_t i = 0; i < p->n_series; i++)
			step(p, &p->series[i], false);
		atomic_store(&p->first_pass, true);
		pthread_mutex_lock(&p->wake_lock);
		if (p->stop)
			break;
		if (!p->woken) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&p->wake, &p->wake_lock, &ts);
		}
		p->woken = false;
	}
	pthread_mutex_unlock(&p->wake_lock);
	return NULL;
}

/* --- setup --- */

struct crl_publisher *crl_publisher_new(const struct config *cfg, char *err, size_t errlen)
{
	struct crl_publisher *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->wake_lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	return p;
}

static bool file_taken(const struct crl_publisher *p, const char *file)
{
	for (size_t i = 0; i < p->n_series; i++)
		if (strcmp(p->series[i].file_full, file) == 0 ||
		    strcmp(p->series[i].file_delta, file) == 0)
			return true;
	return false;
}

static struct crl_repo *repo_for(struct crl_publisher *p, bool pg, char *err, size_t errlen)
{
	struct crl_repo **slot = pg ? &p->pg_repo : &p->dir_repo;
	if (*slot == NULL)
		*slot = pg ? crl_repo_pg_new(p->cfg->pg_dsn, p->cfg->crl_max_bytes, err, errlen)
		           : crl_repo_dir_new(p->cfg->crl_dir, p->cfg->crl_max_bytes, err, errlen);
	return *slot;
}

int crl_publisher_add(struct crl_publisher *p, const struct config_issuer *ci,
                      const char *store_name, X509 *ca, EVP_PKEY *key, struct store *store,
                      struct store_issuer *store_issuer, char *err, size_t errlen)
{
	char e[256] = "";
	unsigned n_series = ci->crl_shards ? ci->crl_shards : 1;
	if (p->n_series + n_series > MAX_SERIES) {
		snprintf(err, errlen, "at most %d CRLs in all", MAX_SERIES);
		return -1;
	}
	struct crl_issuer *is = calloc(1, sizeof(*is));
	struct crl_issuer **ni = realloc(p->issuers, (p->n_issuers + 1) * sizeof(*ni));
	if (ni != NULL)
		p->issuers = ni;
	struct crl_series *ns = realloc(p->series, (p->n_series + n_series) * sizeof(*ns));
	if (ns != NULL)
		p->series = ns;
	if (is == NULL || ni == NULL || ns == NULL) {
		free(is);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(is->name, sizeof(is->name), "%s", ci->name);
	snprintf(is->store_name, sizeof(is->store_name), "%s", store_name);
	is->store = store;
	is->store_issuer = store_issuer;
	is->shards = ci->crl_shards;
	X509_up_ref(ca);
	is->ca = ca;
	if (key != NULL &&
	    (is->signer = ocsp_signer_new(ca, key, NULL, false, OCSP_RID_BY_KEY, e, sizeof(e))) ==
	            NULL) {
		snprintf(err, errlen, "CRL key: %s", e);
		goto fail;
	}
	int len = i2d_X509_NAME(X509_get_subject_name(ca), &is->name_der);
	if (len <= 0) {
		snprintf(err, errlen, "cannot encode the CA's name");
		goto fail;
	}
	is->name_len = (size_t)len;
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
	if (ski != NULL && (size_t)ASN1_STRING_length(ski) <= sizeof(is->key_id)) {
		is->key_id_len = (size_t)ASN1_STRING_length(ski);
		memcpy(is->key_id, ASN1_STRING_get0_data(ski), is->key_id_len);
	}
	bool pg = strcmp(store->ops->kind, "postgres") == 0;
	is->repo = repo_for(p, pg, e, sizeof(e));
	if (is->repo == NULL) {
		snprintf(err, errlen, "CRL repository: %s", e);
		goto fail;
	}
	const char *base = p->cfg->crl_base_url;
	for (unsigned k = 0; k < n_series; k++) {
		struct crl_series *s = &p->series[p->n_series + k];
		memset(s, 0, sizeof(*s));
		s->issuer = is;
		s->shard = k;
		s->partitioned = ci->crl_shards > 0;
		if (s->partitioned)
			snprintf(s->stem, sizeof(s->stem), "%s-%u", ci->name, k);
		else
			snprintf(s->stem, sizeof(s->stem), "%s", ci->name);
		snprintf(s->file_full, sizeof(s->file_full), "%s.crl", s->stem);
		snprintf(s->file_delta, sizeof(s->file_delta), "%s-delta.crl", s->stem);
		if (file_taken(p, s->file_full) || file_taken(p, s->file_delta)) {
			snprintf(err, errlen, "CRL file %s is another issuer's too: rename one", s->file_full);
			goto fail;
		}
		if (base != NULL) {
			snprintf(s->url_full, sizeof(s->url_full), "%s/%s", base, s->file_full);
			snprintf(s->url_delta, sizeof(s->url_delta), "%s/%s", base, s->file_delta);
		}
		atomic_init(&s->changed_at, 0);
		s->start_pending = key != NULL;
		s->started = clock_now();
	}
	/* Counted only now: a failure above leaves the tables as they were. */
	p->n_series += n_series;
	p->issuers[p->n_issuers++] = is;
	if (is->signer != NULL)
		log_info("issuer %s: %u CRL%s%s, signed by revd with the CA's key (%s)", ci->name,
		         n_series, n_series > 1 ? "s (partitioned)" : "",
		         p->cfg->crl_deltas ? " with deltas" : "", ocsp_signer_describe(is->signer));
	else
		log_info("issuer %s: %u CRL%s signed by the CA and imported (revd crl import)",
		         ci->name, n_series, n_series > 1 ? "s (partitioned)" : "");
	return 0;
fail:
	X509_free(is->ca);
	ocsp_signer_free(is->signer);
	OPENSSL_free(is->name_der);
	free(is);
	return -1;
}

bool crl_publisher_settled(struct crl_publisher *p)
{
	return p == NULL || !p->running || atomic_load(&p->first_pass);
}

size_t crl_publisher_count(const struct crl_publisher *p)
{
	return p ? p->n_series : 0;
}

int crl_publisher_start(struct crl_publisher *p, char *err, size_t errlen)
{
	if (p->n_series == 0)
		return 0;
	p->stop = false;
	int rc = pthread_create(&p->thread, NULL, publisher_main, p);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the CRL thread: %s", strerror(rc));
		return -1;
	}
	p->running = true;
	return 0;
}

void crl_publisher_stop(struct crl_publisher *p)
{
	if (p == NULL || !p->running)
		return;
	pthread_mutex_lock(&p->wake_lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->wake_lock);
	pthread_join(p->thread, NULL);
	p->running = false;
}

void crl_publisher_free(struct crl_publisher *p)
{
	if (p == NULL)
		return;
	crl_publisher_stop(p);
	for (size_t i = 0; i < p->n_series; i++) {
		doc_free(p->series[i].full);
		doc_free(p->series[i].delta);
	}
	for (size_t i = 0; i < p->n_issuers; i++) {
		ocsp_signer_free(p->issuers[i]->signer);
		X509_free(p->issuers[i]->ca);
		OPENSSL_free(p->issuers[i]->name_der);
		free(p->issuers[i]);
	}
	free(p->issuers);
	free(p->series);
	crl_repo_free(p->dir_repo);
	crl_repo_free(p->pg_repo);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->wake_lock);
	pthread_cond_destroy(&p->wake);
	free(p);
}

static bool touches(const struct crl_series *s, const struct store_serial *serials, size_t n)
{
	if (serials == NULL || !s->partitioned)
		return true;
	for (size_t i = 0; i < n; i++)
		if (shard_of(serials[i].bytes, serials[i].len, s->issuer->shards) == s->shard)
			return true;
	return false;
}

void crl_publisher_changed(struct crl_publisher *p, struct store *st,
                           const struct store_serial *serials, size_t n)
{
	if (p == NULL)
		return;
	int64_t now = clock_now();
	bool any = false;
	for (size_t i = 0; i < p->n_series; i++) {
		struct crl_series *s = &p->series[i];
		if (s->issuer->store != st || !touches(s, serials, n))
			continue;
		int64_t cur = atomic_load(&s->changed_at);
		while (cur < now && !atomic_compare_exchange_weak(&s->changed_at, &cur, now))
			;
		any = true;
	}
	if (!any)
		return;
	pthread_mutex_lock(&p->wake_lock);
	p->woken = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->wake_lock);
}

struct cache_entry *crl_publisher_find(struct crl_publisher *p, const char *file, size_t len,
                                       int64_t now, int64_t *max_age)
{
	if (p == NULL || len < 5 || len > 200)
		return NULL;
	char name[208];
	memcpy(name, file, len);
	name[len] = 0;
	bool pem = strcmp(name + len - 4, ".pem") == 0;
	if (pem)
		memcpy(name + len - 4, ".crl", 4);
	struct cache_entry *e = NULL;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n_series && e == NULL; i++) {
		struct crl_series *s = &p->series[i];
		bool delta = strcmp(s->file_delta, name) == 0;
		if (!delta && strcmp(s->file_full, name) != 0)
			continue;
		struct crl_doc *d = delta ? s->delta : s->full;
		if (d == NULL || now >= d->next_update)
			break;
		e = cache_entry_ref(pem ? d->pem : d->der);
		/* Until the next scheduled CRL, never past nextUpdate. */
		int64_t next = d->this_update +
		               (delta ? p->cfg->crl_delta_interval : p->cfg->crl_interval);
		int64_t age = (next < d->next_update ? next : d->next_update) - now;
		if (p->cfg->crl_max_age > 0 && p->cfg->crl_max_age < age)
			age = p->cfg->crl_max_age;
		*max_age = age > 0 ? age : 0;
	}
	pthread_mutex_unlock(&p->lock);
	return e;
}

int crl_publisher_where(struct crl_publisher *p, const char *issuer,
                        const struct store_serial *serial, int64_t now, struct crl_where *w)
{
	memset(w, 0, sizeof(*w));
	if (p == NULL)
		return 0;
	for (size_t i = 0; i < p->n_series; i++) {
		struct crl_series *s = &p->series[i];
		if (strcmp(s->issuer->name, issuer) != 0 ||
		    (s->partitioned &&
		     shard_of(serial->bytes, serial->len, s->issuer->shards) != s->shard))
			continue;
		snprintf(w->full, sizeof(w->full), "%s", s->url_full[0] ? s->url_full : s->file_full);
		if (p->cfg->crl_deltas)
			snprintf(w->delta, sizeof(w->delta), "%s",
			         s->url_delta[0] ? s->url_delta : s->file_delta);
		pthread_mutex_lock(&p->lock);
		uint64_t full = s->full ? s->full->number : 0, delta = s->delta ? s->delta->number : 0;
		int64_t full_at = s->full ? s->full->this_update : 0;
		pthread_mutex_unlock(&p->lock);
		w->number = full > delta ? full : delta;
		/* The next delta waits out the debounce; without deltas the change waits for
		 * the next full CRL. Imported CRLs come when the CA signs them. */
		if (s->issuer->signer == NULL)
			w->by = 0;
		else if (p->cfg->crl_deltas)
			w->by = now + (p->cfg->crl_delta_debounce_ms + 999) / 1000;
		else
			w->by = (full_at ? full_at : now) + p->cfg->crl_interval;
		return 1;
	}
	return 0;
}

long crl_publisher_write(struct crl_publisher *p, const char *dir, char *err, size_t errlen)
{
	long n = 0;
	for (size_t i = 0; i < p->n_series; i++) {
		struct crl_series *s = &p->series[i];
		for (int delta = 0; delta < 2; delta++) {
			pthread_mutex_lock(&p->lock);
			struct crl_doc *d = delta ? s->delta : s->full;
			struct cache_entry *e = d ? cache_entry_ref(d->der) : NULL;
			pthread_mutex_unlock(&p->lock);
			if (e == NULL)
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", dir, delta ? s->file_delta : s->file_full);
			int rc = file_write_atomic(path, e->der, e->der_len, err, errlen);
			cache_entry_unref(e);
			if (rc != 0)
				return -1;
			n++;
		}
	}
	return n;
}

int crl_publisher_import(struct crl_publisher *p, const char *issuer, const uint8_t *der,
                         size_t len, char *err, size_t errlen)
{
	char e[256] = "";
	struct crl_info info;
	if (!crl_parse(der, len, &info)) {
		snprintf(err, errlen, "not a DER X.509 v2 CRL revd can read");
		return -1;
	}
	/* The series: the issuer's one, or the shard whose distribution point it names. */
	struct crl_series *s = NULL;
	bool known = false;
	for (size_t i = 0; i < p->n_series && s == NULL; i++) {
		struct crl_series *c = &p->series[i];
		if (strcmp(c->issuer->name, issuer) != 0)
			continue;
		known = true;
		if (!c->partitioned || idp_is(&info.idp, c->url_full))
			s = c;
	}
	if (s == NULL) {
		snprintf(err, errlen,
		         known ? "the CRL names none of issuer %s's shards in its "
		                 "issuingDistributionPoint"
		               : "no issuer %s with CRLs",
		         issuer);
		return -1;
	}
	struct crl_doc *d = doc_new(s, der, len, info.is_delta, false, NULL, e, sizeof(e));
	if (d == NULL) {
		snprintf(err, errlen, "%s: %s", s->stem, e);
		return -1;
	}
	struct crl_repo *r = s->issuer->repo;
	struct crl_series_id id = series_id(s);
	int got = r->ops->lock(r, &id, e, sizeof(e));
	if (got <= 0) {
		snprintf(err, errlen, "%s: %s", s->stem,
		         got == 0 ? "another instance holds the series; try again" : e);
		doc_free(d);
		return -1;
	}
	uint64_t last = 0;
	bool ok = load(p, s, &last, e, sizeof(e)) == 0;
	if (ok && d->number <= last) {
		snprintf(e, sizeof(e), "CRL number %llu is not above %llu, the last published",
		         (unsigned long long)d->number, (unsigned long long)last);
		ok = false;
	}
	if (ok && info.is_delta && (s->full == NULL || s->full->number != d->base)) {
		snprintf(e, sizeof(e), "a delta CRL on number %llu, which is not the current full CRL",
		         (unsigned long long)d->base);
		ok = false;
	}
	ok = ok && r->ops->publish(r, &id, d->number, d->base, d->this_update, d->next_update, der,
	                           len, e, sizeof(e)) == 0;
	char ue[256] = "";
	ok = r->ops->unlock(r, &id, ok, ue, sizeof(ue)) == 0 && ok;
	if (!ok) {
		snprintf(err, errlen, "%s: %s", s->stem, e[0] ? e : ue);
		doc_free(d);
		return -1;
	}
	if (info.is_delta)
		s->seen_delta = d->number;
	else
		s->seen_full = d->number;
	log_info("CRL %s: imported %s number %llu, %zu entries", s->stem,
	         info.is_delta ? "delta" : "full", (unsigned long long)d->number, info.n_entries);
	install(p, s, d, info.is_delta);
	return 0;
}

void crl_publisher_metrics(struct crl_publisher *p, int64_t now, struct buf *out)
{
	if (p == NULL || p->n_series == 0)
		return;
	static const struct {
		const char *name, *help;
	} m[] = {
		{"revd_crl_number", "the served CRL's number"},
		{"revd_crl_this_update_seconds", "the served CRL's thisUpdate, Unix time"},
		{"revd_crl_next_update_seconds", "the served CRL's nextUpdate, Unix time"},
		{"revd_crl_age_seconds", "now minus the served CRL's thisUpdate"},
	};
	char line[512];
	for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
		int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s gauge\n", m[k].name,
		                 m[k].help, m[k].name);
		buf_append(out, line, (size_t)n);
		pthread_mutex_lock(&p->lock);
		for (size_t i = 0; i < p->n_series; i++) {
			const struct crl_series *s = &p->series[i];
			for (int delta = 0; delta < 2; delta++) {
				const struct crl_doc *d = delta ? s->delta : s->full;
				if (d == NULL)
					continue;
				double v = k == 0   ? (double)d->number
				           : k == 1 ? (double)d->this_update
				           : k == 2 ? (double)d->next_update
				                    : (double)(now - d->this_update);
				n = snprintf(line, sizeof(line), "%s{crl=\"%s\"} %.17g\n", m[k].name,
				             delta ? s->file_delta : s->file_full, v);
				if (n > 0 && (size_t)n < sizeof(line))
					buf_append(out, line, (size_t)n);
			}
		}
		pthread_mutex_unlock(&p->lock);
	}
}
