/*
 * cache/l2 and cache/redis without a server: the value header, keys, fences, and
 * Redis address parsing. The tier against a real Redis is in tests/integration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cache/l2.h"
#include "cache/redis.h"
#include "core/config.h"

static void test_header_round_trip(void **state)
{
	char hdr[L2_HDR_LEN + 1];
	l2_value_header(hdr, 0x1234abcdULL, 1795000000, 1795043200);
	assert_int_equal(strlen(hdr), L2_HDR_LEN);
	assert_memory_equal(hdr, "r1", 2);
	uint8_t v[L2_HDR_LEN + 3];
	memcpy(v, hdr, L2_HDR_LEN);
	memcpy(v + L2_HDR_LEN, "\x30\x03\x0a", 3);
	struct l2_value lv;
	assert_true(l2_value_decode(v, sizeof(v), &lv));
	assert_int_equal(lv.version, 0x1234abcdULL);
	assert_int_equal(lv.produced_at, 1795000000);
	assert_int_equal(lv.refresh_at, 1795043200);
	assert_non_null(lv.der);
	assert_int_equal(lv.der_len, 3);
	assert_memory_equal(lv.der, "\x30\x03\x0a", 3);
	/* The header alone is a tombstone. */
	assert_true(l2_value_decode(v, L2_HDR_LEN, &lv));
	assert_null(lv.der);
	assert_int_equal(lv.der_len, 0);
}

static void test_header_refuses_other_values(void **state)
{
	char hdr[L2_HDR_LEN + 1];
	l2_value_header(hdr, 7, 100, 200);
	struct l2_value lv;
	/* Short, wrong magic, a non-hex digit anywhere in the numbers, a negative time. */
	assert_false(l2_value_decode((const uint8_t *)hdr, L2_HDR_LEN - 1, &lv));
	for (size_t i = 0; i < L2_HDR_LEN; i++) {
		char bad[L2_HDR_LEN];
		memcpy(bad, hdr, L2_HDR_LEN);
		bad[i] = 'x';
		assert_false(l2_value_decode((const uint8_t *)bad, L2_HDR_LEN, &lv));
	}
	char neg[L2_HDR_LEN + 1];
	memcpy(neg, hdr, sizeof(neg));
	memcpy(neg + 18, "8000000000000000", 16);
	assert_false(l2_value_decode((const uint8_t *)neg, L2_HDR_LEN, &lv));
	assert_false(l2_value_decode((const uint8_t *)"garbage", 7, &lv));
}

static void test_keys(void **state)
{
	struct l2_key k;
	const uint8_t serial[] = {0x00, 0x9c, 0xff};
	l2_make_key("revd:", "b5ee7113eb3df36293e2", 1, serial, sizeof(serial), &k);
	assert_string_equal(k.s, "revd:o:b5ee7113eb3df36293e2:1:009cff");
	assert_int_equal(k.len, strlen(k.s));
	/* The longest serial still fits, with a long prefix. */
	uint8_t big[32];
	memset(big, 0xab, sizeof(big));
	char prefix[65];
	memset(prefix, 'p', 64);
	prefix[64] = 0;
	l2_make_key(prefix, "b5ee7113eb3df36293e2", 7, big, sizeof(big), &k);
	assert_int_equal(k.len, 64 + 2 + 20 + 3 + 64);
	assert_int_equal(strlen(k.s), k.len);
}

static void test_fences(void **state)
{
	struct config cfg;
	config_init(&cfg);
	struct l2 *t = l2_new(&cfg);
	assert_non_null(t);
	const uint8_t s1[] = {0x01, 0x02}, s2[] = {0x01, 0x03};
	int64_t now = 1795000000;
	/* Nothing fenced yet. */
	assert_false(l2_fenced(t, 0, 1, s1, 2, 5, now - 100, now));
	l2_fence(t, 0, s1, 2, 10, now);
	/* Every variant of the serial is fenced. */
	for (unsigned v = 0; v < L2_VARIANTS; v++) {
		assert_true(l2_fenced(t, 0, v, s1, 2, 9, now, now));
		assert_false(l2_fenced(t, 0, v, s1, 2, 10, now, now));
	}
	/* Other serials and issuers are not affected. */
	assert_false(l2_fenced(t, 0, 1, s2, 2, 1, now, now));
	assert_false(l2_fenced(t, 1, 1, s1, 2, 1, now, now));
	/* A later change raises the fence; an older report does not lower it. */
	l2_fence(t, 0, s1, 2, 12, now);
	l2_fence(t, 0, s1, 2, 11, now);
	assert_true(l2_fenced(t, 0, 1, s1, 2, 11, now, now));
	/* Seeing an older value keeps it; seeing one as new releases that variant only. */
	l2_fence_release(t, 0, 1, s1, 2, 11);
	assert_true(l2_fenced(t, 0, 1, s1, 2, 11, now, now));
	l2_fence_release(t, 0, 1, s1, 2, 12);
	assert_false(l2_fenced(t, 0, 1, s1, 2, 11, now, now));
	assert_true(l2_fenced(t, 0, 3, s1, 2, 11, now, now));
	/* Until Redis confirms tombstones, the change is reported for writing again (not
	 * at once: its first writes are in flight). */
	struct l2_unwritten u[4];
	assert_int_equal(l2_fences_unwritten(t, u, 4, now), 0);
	assert_int_equal(l2_fences_unwritten(t, u, 4, now + 2), 1);
	assert_int_equal(u[0].issuer, 0);
	assert_int_equal(u[0].version, 12);
	assert_int_equal(u[0].serial.len, 2);
	assert_int_equal(u[0].missing, 0xff & ~(1u << 1)); /* variant 1 has its answer */
	/* ...and not again within the second. */
	assert_int_equal(l2_fences_unwritten(t, u, 4, now + 2), 0);
	/* Once every variant is released, the fence goes. */
	for (unsigned v = 0; v < L2_VARIANTS; v++)
		l2_fence_release(t, 0, v, s1, 2, 12);
	struct l2_stats st;
	l2_get_stats(t, &st);
	assert_int_equal(st.fences_held, 0);
	assert_int_equal(l2_fences_unwritten(t, u, 4, now + 10), 0);
	/* Version unknown: values produced up to the change are refused, later ones not, and
	 * nothing is rewritten (there is no version to write). */
	l2_fence(t, 0, s2, 2, 0, now);
	assert_true(l2_fenced(t, 0, 1, s2, 2, 99, now, now + 5));
	assert_false(l2_fenced(t, 0, 1, s2, 2, 99, now + 1, now + 5));
	assert_int_equal(l2_fences_unwritten(t, u, 4, now + 10), 0);
	/* Fences lapse once every answer older than them has expired. */
	assert_false(l2_fenced(t, 0, 1, s2, 2, 0, now, now + cfg.validity + 61));
	/* Everything may have changed. */
	l2_fence_all(t, now);
	assert_true(l2_fenced(t, 3, 1, s1, 2, 1000, now, now + 1));
	assert_false(l2_fenced(t, 3, 1, s1, 2, 1000, now + 1, now + 1));
	l2_free(t);
	config_free(&cfg);
}

static void test_addresses(void **state)
{
	char host[64];
	int port;
	bool is_unix;
	assert_true(rds_parse_address("127.0.0.1:6379", host, sizeof(host), &port, &is_unix));
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 6379);
	assert_false(is_unix);
	assert_true(rds_parse_address("[::1]:7000", host, sizeof(host), &port, &is_unix));
	assert_string_equal(host, "::1");
	assert_int_equal(port, 7000);
	assert_true(rds_parse_address("unix:/run/redis.sock", host, sizeof(host), &port, &is_unix));
	assert_string_equal(host, "/run/redis.sock");
	assert_true(is_unix);
	const char *bad[] = {"", ":6379", "host", "host:", "host:0", "host:65536", "host:12x",
	                     "[::1:6379", "[]:1", "unix:relative", "unix:"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(rds_parse_address(bad[i], host, sizeof(host), &port, &is_unix));
	char tiny[4];
	assert_false(rds_parse_address("localhost:1", tiny, sizeof(tiny), &port, &is_unix));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_header_refuses_other_values),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_fences),
		cmocka_unit_test(test_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
