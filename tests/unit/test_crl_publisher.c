/* crl/publisher: schedules under a settable clock, numbers across restarts, the last
 * good CRL kept through failures and never served past its nextUpdate. Real files: an
 * index.txt store and a directory repository in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/l1.h"
#include "core/clock.h"
#include "core/config.h"
#include "crl/crl.h"
#include "crl/publisher.h"
#include "db/index.h"
#include "testpki.h"

#define T0 ((int64_t)1796169600)        /* 2026-12-02T00:00:00Z */
#define T_EXPIRED ((int64_t)1796126400) /* 2026-12-01T12:00:00Z: 1004's notAfter */

struct fixture {
	char dir[64];
	char index[128];
	char state[128];
	struct testpki pki;
	struct config cfg;
	struct config_issuer ci;
	struct store *store;
	struct store_issuer *sis;
};

static void write_index(const struct fixture *f)
{
	FILE *fp = fopen(f->index, "w");
	assert_non_null(fp);
	/* Two revoked (one on hold), one valid, one revoked that expired 12 hours before T0. */
	fputs("R\t301231235959Z\t261101120000Z,keyCompromise\t1001\tunknown\t/CN=a\n"
	      "R\t301231235959Z\t261102120000Z,certificateHold\t1002\tunknown\t/CN=b\n"
	      "V\t301231235959Z\t\t1003\tunknown\t/CN=c\n"
	      "R\t261201120000Z\t261103120000Z,superseded\t1004\tunknown\t/CN=d\n",
	      fp);
	fclose(fp);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/revd-crlpub-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->index, sizeof(f->index), "%s/index.txt", f->dir);
	snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
	write_index(f);
	testpki_init(&f->pki);
	config_init(&f->cfg);
	char err[256];
	assert_int_equal(config_set(&f->cfg, "crl", "dir", f->state, err, sizeof(err)), 0);
	f->ci.name = "test";
	f->ci.crl = true;
	char e[256];
	f->store = store_index_open(f->index, 1 << 20, e, sizeof(e));
	assert_non_null(f->store);
	f->sis = store_issuer(f->store, "test", NULL, 0, e, sizeof(e));
	assert_non_null(f->sis);
	clock_freeze(T0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	clock_reset();
	store_free(f->store);
	config_free(&f->cfg);
	testpki_free(&f->pki);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct crl_publisher *publisher(struct fixture *f)
{
	char err[256] = "";
	struct crl_publisher *p = crl_publisher_new(&f->cfg, err, sizeof(err));
	assert_non_null(p);
	if (crl_publisher_add(p, &f->ci, "test", f->pki.ca, f->pki.ca_key, f->store, f->sis, err,
	                      sizeof(err)) != 0)
		fail_msg("crl_publisher_add: %s", err);
	return p;
}

/* The served CRL's parsed facts, or false if none is served. */
static bool served(struct crl_publisher *p, const char *file, struct crl_info *info,
                   int64_t *max_age, size_t *entries)
{
	int64_t age = -1;
	struct cache_entry *e = crl_publisher_find(p, file, strlen(file), clock_now(), &age);
	if (e == NULL)
		return false;
	bool ok = crl_parse(e->der, e->der_len, info);
	if (!ok)
		fail_msg("%s: served bytes are not a CRL", file);
	/* Borrowed cursors would dangle: only plain values leave here. */
	*entries = info->n_entries;
	info->entries = der_cursor_init(NULL, 0);
	info->tbs = info->sigalg = info->sig = info->issuer = info->idp = info->entries;
	if (max_age != NULL)
		*max_age = age;
	cache_entry_unref(e);
	return true;
}

/* Ten days in 20-minute steps: a full and a delta CRL are always served and current,
 * numbers only grow, and full CRLs come at the configured interval. */
static void test_ten_days_no_lapse(void **state)
{
	struct fixture *f = *state;
	struct crl_publisher *p = publisher(f);
	uint64_t last_full = 0, last_delta = 0;
	int fulls = 0, deltas = 0;
	for (int64_t t = 0; t <= 10 * 86400; t += 1200) {
		clock_freeze(T0 + t);
		assert_int_equal(crl_publisher_run_once(p), 0);
		struct crl_info full, delta;
		int64_t age;
		size_t nf, nd;
		if (!served(p, "test.crl", &full, &age, &nf) ||
		    !served(p, "test-delta.crl", &delta, NULL, &nd))
			fail_msg("no CRL served at +%llds", (long long)t);
		int64_t now = clock_now();
		assert_true(full.next_update > now && delta.next_update > now);
		assert_true(age >= 0 && age <= full.next_update - now);
		assert_false(full.is_delta);
		assert_true(delta.is_delta);
		assert_int_equal(delta.delta_base, full.number);
		assert_true(delta.number > full.number);
		assert_true(delta.next_update <= full.next_update);
		assert_true(full.number >= last_full && delta.number >= last_delta);
		fulls += full.number != last_full;
		deltas += delta.number != last_delta;
		/* Republished at least every interval: never older than that. */
		assert_true(now - full.this_update < f->cfg.crl_interval);
		assert_true(now - delta.this_update < f->cfg.crl_delta_interval + 1200);
		/* 1001, 1002, and 1004 while it expired less than one interval before the
		 * full CRL was built */
		assert_int_equal(nf, full.this_update < T_EXPIRED + f->cfg.crl_interval ? 3 : 2);
		last_full = full.number;
		last_delta = delta.number;
	}
	/* A full CRL a day (eleven: at 0 and after each of ten days), a delta every step. */
	assert_int_equal(fulls, 11);
	assert_int_equal(deltas, 10 * 86400 / 1200 + 1);
	crl_publisher_free(p);
}

/* A new publisher on the same directory (a restart) continues the numbers. */
static void test_numbers_survive_restart(void **state)
{
	struct fixture *f = *state;
	struct crl_publisher *p = publisher(f);
	assert_int_equal(crl_publisher_run_once(p), 0);
	struct crl_info before, after;
	size_t n;
	assert_true(served(p, "test-delta.crl", &before, NULL, &n));
	crl_publisher_free(p);

	p = publisher(f);
	/* Changes made while no instance ran would be heard of by nobody: a new delta on
	 * start, on the full CRL loaded. */
	assert_int_equal(crl_publisher_run_once(p), 0);
	assert_true(served(p, "test-delta.crl", &after, NULL, &n));
	assert_int_equal(after.number, before.number + 1);
	assert_int_equal(after.delta_base, before.delta_base);
	/* Once only. */
	assert_int_equal(crl_publisher_run_once(p), 0);
	assert_true(served(p, "test-delta.crl", &after, NULL, &n));
	assert_int_equal(after.number, before.number + 1);
	clock_advance(f->cfg.crl_interval);
	assert_int_equal(crl_publisher_run_once(p), 0);
	assert_true(served(p, "test.crl", &after, NULL, &n));
	assert_true(after.number > before.number);
	crl_publisher_free(p);
}

/* A rebuild that fails keeps the last good CRL served, until its nextUpdate: then
 * nothing is served rather than a lapsed CRL. */
static void test_failure_keeps_last_good_until_next_update(void **state)
{
	struct fixture *f = *state;
	struct crl_publisher *p = publisher(f);
	assert_int_equal(crl_publisher_run_once(p), 0);
	struct crl_info full, now_full;
	size_t n;
	assert_true(served(p, "test.crl", &full, NULL, &n));

	/* The repository's directory gives way to a file: every write fails. */
	char moved[160];
	snprintf(moved, sizeof(moved), "%s.moved", f->state);
	assert_int_equal(rename(f->state, moved), 0);
	FILE *fp = fopen(f->state, "w");
	assert_non_null(fp);
	fclose(fp);

	clock_advance(f->cfg.crl_interval + 60);
	assert_true(crl_publisher_run_once(p) > 0);
	assert_true(served(p, "test.crl", &now_full, NULL, &n));
	assert_int_equal(now_full.number, full.number);

	clock_freeze(full.next_update);
	assert_true(crl_publisher_run_once(p) > 0);
	assert_false(served(p, "test.crl", &now_full, NULL, &n));
	assert_false(served(p, "test-delta.crl", &now_full, NULL, &n));

	/* The directory back: a new CRL with a higher number. */
	assert_int_equal(unlink(f->state), 0);
	assert_int_equal(rename(moved, f->state), 0);
	assert_int_equal(crl_publisher_run_once(p), 0);
	assert_true(served(p, "test.crl", &now_full, NULL, &n));
	assert_true(now_full.number > full.number);
	assert_true(now_full.next_update > clock_now());
	crl_publisher_free(p);
}

/* [crl] build = no: nothing built, what another instance publishes served. */
static void test_serve_only(void **state)
{
	struct fixture *f = *state;
	char err[256];
	assert_int_equal(config_set(&f->cfg, "crl", "build", "no", err, sizeof(err)), 0);
	struct crl_publisher *reader = publisher(f);
	assert_int_equal(crl_publisher_run_once(reader), 0);
	struct crl_info info;
	size_t n;
	assert_false(served(reader, "test.crl", &info, NULL, &n));
	assert_false(served(reader, "test-delta.crl", &info, NULL, &n));
	assert_int_equal(config_set(&f->cfg, "crl", "build", "yes", err, sizeof(err)), 0);
	struct crl_publisher *builder = publisher(f);
	assert_int_equal(crl_publisher_run_once(builder), 0);
	assert_int_equal(config_set(&f->cfg, "crl", "build", "no", err, sizeof(err)), 0);
	assert_int_equal(crl_publisher_run_once(reader), 0);
	assert_true(served(reader, "test.crl", &info, NULL, &n));
	assert_int_equal(info.number, 1);
	assert_true(served(reader, "test-delta.crl", &info, NULL, &n));
	assert_int_equal(info.number, 2);
	/* Past the interval: still not built here. */
	clock_advance(f->cfg.crl_interval + 1);
	assert_int_equal(crl_publisher_run_once(reader), 0);
	assert_true(served(reader, "test.crl", &info, NULL, &n));
	assert_int_equal(info.number, 1);
	crl_publisher_free(builder);
	crl_publisher_free(reader);
}

/* Files that are not served: other names, and names with odd lengths. */
static void test_find_names(void **state)
{
	struct fixture *f = *state;
	struct crl_publisher *p = publisher(f);
	assert_int_equal(crl_publisher_run_once(p), 0);
	int64_t age;
	const char *none[] = {"test", "test.cr", "other.crl", "test-0.crl", "test.crl.crl",
	                      ".crl", "test-delta.pem.crl", ""};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		assert_null(crl_publisher_find(p, none[i], strlen(none[i]), clock_now(), &age));
	const char *some[] = {"test.crl", "test.pem", "test-delta.crl", "test-delta.pem"};
	for (size_t i = 0; i < sizeof(some) / sizeof(some[0]); i++) {
		struct cache_entry *e = crl_publisher_find(p, some[i], strlen(some[i]), clock_now(), &age);
		assert_non_null(e);
		bool pem = strstr(some[i], ".pem") != NULL;
		assert_int_equal(memcmp(e->der, pem ? "-----BEGIN X509 CRL-----" : "\x30", pem ? 24 : 1),
		                 0);
		cache_entry_unref(e);
	}
	crl_publisher_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ten_days_no_lapse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_numbers_survive_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_keeps_last_good_until_next_update, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_find_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serve_only, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
