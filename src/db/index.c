#define _GNU_SOURCE /* qsort_r */
#include "db/index.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/hex.h"
#include "core/hash.h"
#include "core/log.h"

struct index_entry {
	struct store_serial serial;
	struct store_record rec;
};

struct index_snapshot {
	size_t n;
	struct index_entry *entries;
	uint32_t *slots; /* 0: empty; else entry index + 1 */
	size_t mask;
	uint64_t version; /* the file's modification time in microseconds */
	uint32_t *sorted; /* entry indexes in serial order, for scans; built on load */
};

/* ---- parsing ---- */

bool index_serial_from_hex(const char *hex, size_t len, struct store_serial *out)
{
	bool negative = false;
	if (len > 0 && hex[0] == '-') {
		negative = true;
		hex++;
		len--;
	}
	if (len == 0 || len > 2 * STORE_MAX_SERIAL + 2)
		return false;
	uint8_t mag[STORE_MAX_SERIAL + 2];
	size_t n = (len + 1) / 2;
	size_t i = 0, o = 0;
	if (len % 2 == 1) {
		int v = hex_digit(hex[0]);
		if (v < 0)
			return false;
		mag[o++] = (uint8_t)v;
		i = 1;
	}
	for (; i < len; i += 2) {
		int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		mag[o++] = (uint8_t)(hi << 4 | lo);
	}
	/* Strip leading zero octets of the magnitude. */
	size_t s = 0;
	while (s + 1 < n && mag[s] == 0)
		s++;
	uint8_t *m = mag + s;
	size_t ml = n - s;
	if (ml == 1 && m[0] == 0)
		negative = false; /* -0 is 0 */
	uint8_t tmp[STORE_MAX_SERIAL + 3];
	size_t tl = 0;
	if (!negative) {
		if (m[0] & 0x80)
			tmp[tl++] = 0;
		memcpy(tmp + tl, m, ml);
		tl += ml;
	} else {
		/* Two's complement of the magnitude, then trim redundant 0xff octets. */
		tmp[0] = 0;
		memcpy(tmp + 1, m, ml);
		tl = ml + 1;
		int carry = 1;
		for (size_t k = tl; k-- > 0;) {
			int v = (uint8_t)~tmp[k] + carry;
			tmp[k] = (uint8_t)v;
			carry = v >> 8;
		}
		size_t t = 0;
		while (t + 1 < tl && tmp[t] == 0xff && (tmp[t + 1] & 0x80))
			t++;
		memmove(tmp, tmp + t, tl - t);
		tl -= t;
	}
	if (tl > STORE_MAX_SERIAL)
		return false;
	out->len = (uint8_t)tl;
	memcpy(out->bytes, tmp, tl);
	return true;
}

bool index_parse_time(const char *s, size_t len, int64_t *t)
{
	return clock_parse_asn1_time(s, len, t);
}

static const struct {
	const char *name;
	int reason;
	int arg; /* 0: none; 1: a time (invalidity date); 2: a hold instruction */
} reason_names[] = {
	{"unspecified", 0, 0},
	{"keyCompromise", 1, 0},
	{"CACompromise", 2, 0},
	{"affiliationChanged", 3, 0},
	{"superseded", 4, 0},
	{"cessationOfOperation", 5, 0},
	{"certificateHold", 6, 0},
	{"removeFromCRL", 8, 0},
	{"privilegeWithdrawn", 9, 0},
	{"AACompromise", 10, 0},
	/* `openssl ca -crl_hold`, `-crl_compromise`, `-crl_CA_compromise` write these: */
	{"holdInstruction", 6, 2},
	{"keyTime", 1, 1},
	{"CAkeyTime", 2, 1},
};

/* "YYMMDDHHMMSSZ[,reason[,arg]]" */
static const char *parse_revinfo(const char *f, size_t len, struct store_record *rec)
{
	const char *comma = memchr(f, ',', len);
	size_t tlen = comma ? (size_t)(comma - f) : len;
	if (!index_parse_time(f, tlen, &rec->revoked_at))
		return "bad revocation time";
	rec->reason = STORE_REASON_NONE;
	rec->invalidity_date = 0;
	if (comma == NULL)
		return NULL;
	const char *r = comma + 1;
	size_t rlen = len - tlen - 1;
	const char *comma2 = memchr(r, ',', rlen);
	size_t nlen = comma2 ? (size_t)(comma2 - r) : rlen;
	const char *arg = comma2 ? comma2 + 1 : NULL;
	size_t alen = comma2 ? rlen - nlen - 1 : 0;
	for (size_t i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++) {
		if (strlen(reason_names[i].name) != nlen ||
		    strncasecmp(reason_names[i].name, r, nlen) != 0)
			continue;
		rec->reason = reason_names[i].reason;
		if (reason_names[i].arg == 1) {
			if (arg == NULL || !index_parse_time(arg, alen, &rec->invalidity_date))
				return "bad compromise time";
		} else if (reason_names[i].arg == 2) {
			if (arg == NULL || alen == 0)
				return "hold instruction missing";
		} else if (arg != NULL) {
			return "unexpected text after the revocation reason";
		}
		return NULL;
	}
	return "unknown revocation reason";
}

static size_t table_find_slot(const struct index_snapshot *s, const uint8_t *serial, size_t len,
                              bool *found)
{
	size_t i = (size_t)hash_siphash13(hash_process_key(), serial, len) & s->mask;
	for (;;) {
		uint32_t e = s->slots[i];
		if (e == 0) {
			*found = false;
			return i;
		}
		const struct store_serial *k = &s->entries[e - 1].serial;
		if (k->len == len && memcmp(k->bytes, serial, len) == 0) {
			*found = true;
			return i;
		}
		i = (i + 1) & s->mask;
	}
}

static bool build_table(struct index_snapshot *s)
{
	size_t cap = 16;
	while (cap < s->n * 2)
		cap *= 2;
	s->slots = calloc(cap, sizeof(uint32_t));
	if (s->slots == NULL)
		return false;
	s->mask = cap - 1;
	size_t out = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct index_entry *e = &s->entries[i];
		bool found;
		size_t slot = table_find_slot(s, e->serial.bytes, e->serial.len, &found);
		if (found) {
			/* A serial listed twice: a revocation is never hidden by another line. */
			struct index_entry *prev = &s->entries[s->slots[slot] - 1];
			if (e->rec.status == STORE_REVOKED || prev->rec.status != STORE_REVOKED)
				prev->rec = e->rec;
			continue;
		}
		s->entries[out] = *e;
		s->slots[slot] = (uint32_t)(out + 1);
		out++;
	}
	s->n = out;
	return true;
}

struct index_snapshot *index_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct index_snapshot *s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto oom;
	size_t cap = 0;
	size_t lineno = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		lineno++;
		if (le > p && le[-1] == '\r')
			le--;
		if (le == p || p[0] == '#') {
			p = nl ? nl + 1 : end;
			continue;
		}
		if (memchr(p, '\0', (size_t)(le - p)) != NULL) {
			snprintf(err, errlen, "line %zu: NUL byte", lineno);
			goto fail;
		}
		const char *f[6];
		size_t fl[6];
		size_t nf = 0;
		const char *q = p;
		while (nf < 6) {
			const char *tab = nf < 5 ? memchr(q, '\t', (size_t)(le - q)) : NULL;
			const char *fe = tab ? tab : le;
			f[nf] = q;
			fl[nf] = (size_t)(fe - q);
			nf++;
			if (tab == NULL)
				break;
			q = tab + 1;
		}
		if (nf != 6) {
			snprintf(err, errlen, "line %zu: expected 6 tab-separated fields, found %zu",
			         lineno, nf);
			goto fail;
		}
		struct index_entry e;
		memset(&e, 0, sizeof(e));
		e.rec.reason = STORE_REASON_NONE;
		if (fl[0] != 1 || (f[0][0] != 'V' && f[0][0] != 'R' && f[0][0] != 'E')) {
			snprintf(err, errlen, "line %zu: status must be V, R or E", lineno);
			goto fail;
		}
		if (!index_parse_time(f[1], fl[1], &e.rec.not_after)) {
			snprintf(err, errlen, "line %zu: bad expiry time", lineno);
			goto fail;
		}
		if (!index_serial_from_hex(f[3], fl[3], &e.serial)) {
			snprintf(err, errlen, "line %zu: bad serial number", lineno);
			goto fail;
		}
		if (f[0][0] == 'R') {
			if (fl[2] == 0) {
				snprintf(err, errlen, "line %zu: revoked entry without a revocation time",
				         lineno);
				goto fail;
			}
			const char *why = parse_revinfo(f[2], fl[2], &e.rec);
			if (why != NULL) {
				snprintf(err, errlen, "line %zu: %s", lineno, why);
				goto fail;
			}
			/* removeFromCRL: released from hold, so no longer revoked. */
			e.rec.status = e.rec.reason == 8 ? STORE_GOOD : STORE_REVOKED;
			if (e.rec.status == STORE_GOOD) {
				e.rec.revoked_at = 0;
				e.rec.reason = STORE_REASON_NONE;
				e.rec.invalidity_date = 0;
			}
		} else {
			if (fl[2] != 0) {
				snprintf(err, errlen, "line %zu: revocation field set on a %c entry", lineno,
				         f[0][0]);
				goto fail;
			}
			e.rec.status = STORE_GOOD;
		}
		if (s->n == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			if (ncap > UINT32_MAX - 1) {
				snprintf(err, errlen, "line %zu: too many entries", lineno);
				goto fail;
			}
			struct index_entry *ne = realloc(s->entries, ncap * sizeof(*ne));
			if (ne == NULL)
				goto oom;
			s->entries = ne;
			cap = ncap;
		}
		s->entries[s->n++] = e;
		p = nl ? nl + 1 : end;
	}
	if (!build_table(s))
		goto oom;
	return s;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	index_snapshot_free(s);
	return NULL;
}

void index_snapshot_free(struct index_snapshot *s)
{
	if (s == NULL)
		return;
	free(s->entries);
	free(s->slots);
	free(s->sorted);
	free(s);
}

/* Serial order as PostgreSQL sorts bytea: bytes compared, then shorter first. */
static int serial_cmp(const struct store_serial *a, const struct store_serial *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->bytes, b->bytes, n);
	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

static int sorted_cmp(const void *x, const void *y, void *arg)
{
	const struct index_entry *e = arg;
	return serial_cmp(&e[*(const uint32_t *)x].serial, &e[*(const uint32_t *)y].serial);
}

static bool snapshot_sort(struct index_snapshot *s)
{
	s->sorted = malloc((s->n ? s->n : 1) * sizeof(*s->sorted));
	if (s->sorted == NULL)
		return false;
	for (size_t i = 0; i < s->n; i++)
		s->sorted[i] = (uint32_t)i;
	qsort_r(s->sorted, s->n, sizeof(*s->sorted), sorted_cmp, s->entries);
	return true;
}

size_t index_snapshot_count(const struct index_snapshot *s)
{
	return s->n;
}

void index_snapshot_entry(const struct index_snapshot *s, size_t i, struct store_serial *serial,
                          struct store_record *rec)
{
	*serial = s->entries[i].serial;
	*rec = s->entries[i].rec;
}

bool index_snapshot_find(const struct index_snapshot *s, const uint8_t *serial, size_t len,
                         struct store_record *rec)
{
	if (len > STORE_MAX_SERIAL || s->slots == NULL)
		return false;
	bool found;
	size_t slot = table_find_slot(s, serial, len, &found);
	if (found) {
		*rec = s->entries[s->slots[slot] - 1].rec;
		rec->version = s->version;
	}
	return found;
}

static bool record_equal(const struct store_record *a, const struct store_record *b)
{
	return a->status == b->status && a->not_after == b->not_after &&
	       a->revoked_at == b->revoked_at && a->reason == b->reason &&
	       a->invalidity_date == b->invalidity_date;
}

struct store_serial *index_snapshot_diff(const struct index_snapshot *a,
                                         const struct index_snapshot *b, size_t *n)
{
	size_t cap = 16, len = 0;
	struct store_serial *out = malloc(cap * sizeof(*out));
	if (out == NULL)
		return NULL;
	const struct index_snapshot *sides[2][2] = {{a, b}, {b, a}};
	for (int pass = 0; pass < 2; pass++) {
		const struct index_snapshot *from = sides[pass][0], *to = sides[pass][1];
		for (size_t i = 0; from != NULL && i < from->n; i++) {
			const struct index_entry *e = &from->entries[i];
			struct store_record other;
			bool present = to != NULL &&
			               index_snapshot_find(to, e->serial.bytes, e->serial.len, &other);
			/* Changed entries are reported by the first pass only. */
			if (present && (pass == 1 || record_equal(&e->rec, &other)))
				continue;
			if (len == cap) {
				struct store_serial *no = realloc(out, cap * 2 * sizeof(*out));
				if (no == NULL) {
					free(out);
					return NULL;
				}
				out = no;
				cap *= 2;
			}
			out[len] = e->serial;
			out[len++].version = b != NULL ? b->version : 0;
		}
	}
	*n = len;
	return out;
}

/* ---- the store ---- */

struct index_store {
	struct store base;
	char *path;
	size_t max_bytes;
	pthread_rwlock_t lock;
	struct index_snapshot *snap; /* under lock */
	/* watching */
	uv_loop_t *loop;
	uv_fs_poll_t poll;
	bool watching;
	bool reload_running;
	bool reload_again;
	store_change_cb on_change;
	void *on_change_arg;
};

static struct store_issuer *index_issuer(struct store *base, const char *name,
                                         const uint8_t *cert, size_t cert_len, char *err,
                                         size_t errlen)
{
	/* One file, one CA: every name maps to the store itself. */
	return (struct store_issuer *)base;
}

static void index_lookup(struct store *base, const struct store_query *q, store_lookup_cb cb,
                         void *arg)
{
	struct index_store *s = (struct index_store *)base;
	struct store_record rec;
	pthread_rwlock_rdlock(&s->lock);
	bool found = index_snapshot_find(s->snap, q->serial, q->serial_len, &rec);
	uint64_t version = s->snap->version;
	pthread_rwlock_unlock(&s->lock);
	if (!found) {
		memset(&rec, 0, sizeof(rec));
		rec.status = STORE_NOT_ISSUED;
		rec.reason = STORE_REASON_NONE;
		rec.version = version;
	}
	cb(arg, STORE_OK, &rec);
}

static long index_scan(struct store *base, struct store_issuer *is,
                       const struct store_serial *after, int64_t now, unsigned flags,
                       struct store_scan_item *out, size_t max, char *err, size_t errlen)
{
	struct index_store *s = (struct index_store *)base;
	long n = 0;
	pthread_rwlock_rdlock(&s->lock);
	const struct index_snapshot *snap = s->snap;
	if (snap->sorted == NULL) {
		pthread_rwlock_unlock(&s->lock);
		snprintf(err, errlen, "index %s: not sorted", s->path);
		return -1;
	}
	/* The first entry after `after`. */
	size_t lo = 0, hi = snap->n;
	while (after->len > 0 && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (serial_cmp(&snap->entries[snap->sorted[mid]].serial, after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < snap->n && (size_t)n < max; i++) {
		const struct index_entry *e = &snap->entries[snap->sorted[i]];
		if (e->rec.not_after != 0 && e->rec.not_after <= now)
			continue;
		if ((flags & STORE_SCAN_REVOKED) && e->rec.status != STORE_REVOKED)
			continue;
		out[n].serial = e->serial;
		out[n].rec = e->rec;
		out[n].rec.version = snap->version;
		out[n].serial.version = snap->version;
		n++;
	}
	pthread_rwlock_unlock(&s->lock);
	return n;
}

static void index_free(struct store *base)
{
	struct index_store *s = (struct index_store *)base;
	/* The poll handle must be closed (store_index_unwatch) and its close callback run
	 * before the store is freed; the caller owns that ordering. */
	pthread_rwlock_destroy(&s->lock);
	index_snapshot_free(s->snap);
	free(s->path);
	free(s);
}

static const struct store_ops index_ops = {
	.kind = "index",
	.issuer = index_issuer,
	.lookup = index_lookup,
	.scan = index_scan,
	.free = index_free,
};

static struct index_snapshot *load_file(const char *path, size_t max_bytes, char *err,
                                        size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct index_snapshot *snap = NULL;
	char *text = NULL;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		snprintf(err, errlen, "%s: larger than the %zu-byte limit (index_max_bytes)", path,
		         max_bytes);
		goto out;
	}
	/* Read to EOF, bounded, whatever the size said: the file may be growing. */
	size_t cap = (size_t)st.st_size + 1, len = 0;
	text = malloc(cap);
	if (text == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	for (;;) {
		if (len == cap) {
			if (cap > max_bytes) {
				snprintf(err, errlen, "%s: larger than the %zu-byte limit", path, max_bytes);
				goto out;
			}
			char *nt = realloc(text, cap * 2);
			if (nt == NULL) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto out;
			}
			text = nt;
			cap *= 2;
		}
		ssize_t r = read(fd, text + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	char perr[200];
	snap = index_parse(text, len, perr, sizeof(perr));
	if (snap != NULL) {
		snap->version = (uint64_t)st.st_mtim.tv_sec * 1000000u +
		                (uint64_t)st.st_mtim.tv_nsec / 1000u;
		if (!snapshot_sort(snap)) {
			index_snapshot_free(snap);
			snap = NULL;
			snprintf(perr, sizeof(perr), "out of memory");
		}
	}
	if (snap == NULL)
		snprintf(err, errlen, "%s: %s", path, perr);
out:
	free(text);
	close(fd);
	return snap;
}

struct store *store_index_open(const char *path, size_t max_bytes, char *err, size_t errlen)
{
	struct index_snapshot *snap = load_file(path, max_bytes, err, errlen);
	if (snap == NULL)
		return NULL;
	struct index_store *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		index_snapshot_free(snap);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base.ops = &index_ops;
	snprintf(s->base.name, sizeof(s->base.name), "%s", path);
	s->max_bytes = max_bytes;
	s->snap = snap;
	pthread_rwlock_init(&s->lock, NULL);
	return &s->base;
}

/* Swaps in a new snapshot; returns the serials that changed (caller frees). */
static struct store_serial *swap_snapshot(struct index_store *s, struct index_snapshot *snap,
                                          size_t *n)
{
	pthread_rwlock_wrlock(&s->lock);
	struct index_snapshot *old = s->snap;
	s->snap = snap;
	pthread_rwlock_unlock(&s->lock);
	struct store_serial *changed = index_snapshot_diff(old, snap, n);
	index_snapshot_free(old);
	return changed;
}

int store_index_reload(struct store *base, char *err, size_t errlen)
{
	struct index_store *s = (struct index_store *)base;
	struct index_snapshot *snap = load_file(s->path, s->max_bytes, err, errlen);
	if (snap == NULL)
		return -1;
	size_t n = 0;
	struct store_serial *changed = swap_snapshot(s, snap, &n);
	if (changed != NULL && n > 0 && s->on_change != NULL)
		s->on_change(s->on_change_arg, base, changed, n);
	free(changed);
	return 0;
}

struct reload_work {
	uv_work_t req;
	struct index_store *s;
	struct index_snapshot *snap;
	struct store_serial *changed;
	size_t n_changed;
	char err[300];
};

static void reload_run(uv_work_t *req)
{
	struct reload_work *w = req->data;
	w->snap = load_file(w->s->path, w->s->max_bytes, w->err, sizeof(w->err));
	if (w->snap != NULL)
		w->changed = swap_snapshot(w->s, w->snap, &w->n_changed);
}

static void start_reload(struct index_store *s);

static void reload_done(uv_work_t *req, int status)
{
	struct reload_work *w = req->data;
	struct index_store *s = w->s;
	s->reload_running = false;
	if (w->snap == NULL) {
		log_error("index reload failed, keeping the previous contents: %s", w->err);
	} else if (w->changed == NULL) {
		/* Could not compute what changed: everything may have. */
		log_error("index %s reloaded but the change list could not be built", s->path);
		if (s->on_change != NULL)
			s->on_change(s->on_change_arg, &s->base, NULL, 0);
	} else {
		log_info("index %s reloaded: %zu entries, %zu changed", s->path,
		         index_snapshot_count(w->snap), w->n_changed);
		if (w->n_changed > 0 && s->on_change != NULL)
			s->on_change(s->on_change_arg, &s->base, w->changed, w->n_changed);
	}
	free(w->changed);
	free(w);
	if (s->reload_again && s->watching) {
		s->reload_again = false;
		start_reload(s);
	}
}

static void start_reload(struct index_store *s)
{
	if (s->reload_running) {
		s->reload_again = true;
		return;
	}
	struct reload_work *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		log_error("index %s: out of memory starting a reload", s->path);
		return;
	}
	w->s = s;
	w->req.data = w;
	s->reload_running = true;
	if (uv_queue_work(s->loop, &w->req, reload_run, reload_done) != 0) {
		s->reload_running = false;
		free(w);
	}
}

static void poll_cb(uv_fs_poll_t *handle, int status, const uv_stat_t *prev,
                    const uv_stat_t *curr)
{
	struct index_store *s = handle->data;
	if (status < 0) {
		log_warn("index %s: cannot stat: %s", s->path, uv_strerror(status));
		return;
	}
	start_reload(s);
}

int store_index_watch(struct store *base, uv_loop_t *loop, unsigned interval_ms,
                      store_change_cb on_change, void *arg)
{
	struct index_store *s = (struct index_store *)base;
	s->loop = loop;
	s->on_change = on_change;
	s->on_change_arg = arg;
	int r = uv_fs_poll_init(loop, &s->poll);
	if (r == 0) {
		s->poll.data = s;
		r = uv_fs_poll_start(&s->poll, poll_cb, s->path, interval_ms);
	}
	if (r != 0) {
		log_error("index %s: cannot watch: %s", s->path, uv_strerror(r));
		return -1;
	}
	s->watching = true;
	return 0;
}

void store_index_unwatch(struct store *base)
{
	struct index_store *s = (struct index_store *)base;
	if (!s->watching)
		return;
	s->watching = false;
	uv_fs_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, NULL);
}
