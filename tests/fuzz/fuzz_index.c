/*
 * index_parse: never crashes; refusals name a line; and after a successful parse every
 * serial on every line is found, the snapshot holds exactly the distinct serials, and
 * each record is one revd can answer from.
 */
#include <string.h>

#include "db/index.h"
#include "fuzz.h"

static int serial_cmp(const void *a, const void *b)
{
	const struct store_serial *x = a, *y = b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->bytes, y->bytes, x->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	char err[200];
	memset(err, 0x7f, sizeof(err));
	struct index_snapshot *snap = index_parse(text, size, err, sizeof(err));
	size_t lines = 0;
	for (size_t i = 0; i < size; i++)
		lines += text[i] == '\n';
	if (snap == NULL) {
		FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL, "message not terminated");
		unsigned long line = 0;
		FUZZ_CHECK(sscanf(err, "line %lu: ", &line) == 1 || strcmp(err, "out of memory") == 0,
		           "message '%s'", err);
		FUZZ_CHECK(line >= 1 && line <= lines + 1, "line %lu of %zu", line, lines + 1);
		return 0;
	}

	/* Walk the lines as index.txt defines them. */
	size_t n_serials = 0;
	struct store_serial *serials = malloc((lines + 1) * sizeof(*serials));
	FUZZ_CHECK(serials != NULL, "malloc");
	const char *p = text, *end = text + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (le > p && le[-1] == '\r')
			le--;
		if (le > p && p[0] != '#') {
			const char *f = p;
			for (int tab = 0; tab < 3; tab++) {
				f = memchr(f, '\t', (size_t)(le - f));
				FUZZ_CHECK(f != NULL, "an accepted line with fewer than 4 fields");
				f++;
			}
			const char *fe = memchr(f, '\t', (size_t)(le - f));
			FUZZ_CHECK(fe != NULL, "an accepted line with 4 fields");
			struct store_serial s;
			FUZZ_CHECK(index_serial_from_hex(f, (size_t)(fe - f), &s),
			           "an accepted line whose serial does not convert");
			struct store_record rec;
			FUZZ_CHECK(index_snapshot_find(snap, s.bytes, s.len, &rec),
			           "serial '%.*s' not found", (int)(fe - f), f);
			FUZZ_CHECK(rec.status == STORE_GOOD || rec.status == STORE_REVOKED, "status %d",
			           rec.status);
			FUZZ_CHECK(rec.reason >= STORE_REASON_NONE && rec.reason <= 10, "reason %d",
			           rec.reason);
			if (rec.status == STORE_GOOD)
				FUZZ_CHECK(rec.revoked_at == 0 && rec.reason == STORE_REASON_NONE &&
				               rec.invalidity_date == 0,
				           "a good record with revocation details");
			serials[n_serials++] = s;
		}
		p = nl ? nl + 1 : end;
	}
	qsort(serials, n_serials, sizeof(*serials), serial_cmp);
	size_t distinct = 0;
	for (size_t i = 0; i < n_serials; i++)
		if (i == 0 || serial_cmp(&serials[i - 1], &serials[i]) != 0)
			distinct++;
	FUZZ_CHECK(index_snapshot_count(snap) == distinct, "%zu entries, %zu distinct serials",
	           index_snapshot_count(snap), distinct);

	/* Entry by entry: each is found as it is, and they are the distinct serials. */
	for (size_t i = 0; i < index_snapshot_count(snap); i++) {
		struct store_serial ser;
		struct store_record rec, found;
		index_snapshot_entry(snap, i, &ser, &rec);
		FUZZ_CHECK(ser.len >= 1 && ser.len <= STORE_MAX_SERIAL, "entry %zu: %u octets", i,
		           ser.len);
		FUZZ_CHECK(index_snapshot_find(snap, ser.bytes, ser.len, &found) &&
		               rec.status == found.status && rec.not_after == found.not_after &&
		               rec.revoked_at == found.revoked_at && rec.reason == found.reason &&
		               rec.invalidity_date == found.invalidity_date,
		           "entry %zu is not what a lookup finds", i);
		FUZZ_CHECK(bsearch(&ser, serials, n_serials, sizeof(*serials), serial_cmp) != NULL,
		           "entry %zu is on no line", i);
	}

	/* Diffs: against itself nothing, against nothing everything. */
	size_t n = 99;
	struct store_serial *d = index_snapshot_diff(snap, snap, &n);
	FUZZ_CHECK(d != NULL && n == 0, "self diff: %zu", n);
	free(d);
	d = index_snapshot_diff(NULL, snap, &n);
	FUZZ_CHECK(d != NULL && n == distinct, "diff from nothing: %zu of %zu", n, distinct);
	free(d);
	free(serials);
	index_snapshot_free(snap);
	return 0;
}
