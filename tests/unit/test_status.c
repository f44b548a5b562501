/* ocsp/status: from a store's record to what the client is told. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ocsp/status.h"

static struct ocsp_single dirty(void)
{
	struct ocsp_single s;
	memset(&s, 0x5a, sizeof(s));
	s.this_update = 111;
	s.next_update = 222;
	return s;
}

static void test_good(void **state)
{
	(void)state;
	struct store_record rec = {.status = STORE_GOOD, .not_after = 5, .revoked_at = 9,
	                           .reason = 1, .invalidity_date = 7};
	for (int p = 0; p < 3; p++) {
		struct ocsp_single s = dirty();
		bool ext = false;
		assert_true(ocsp_status_decide(&rec, (enum ocsp_not_issued)p, &s, &ext));
		assert_int_equal(s.status, OCSP_STATUS_GOOD);
		assert_int_equal(s.revoked_at, 0);
		assert_int_equal(s.reason, OCSP_REASON_NONE);
		assert_int_equal(s.invalidity_date, 0);
		assert_false(ext);
		/* The caller's fields are left alone. */
		assert_int_equal(s.this_update, 111);
		assert_int_equal(s.next_update, 222);
	}
}

static void test_revoked(void **state)
{
	(void)state;
	struct store_record rec = {.status = STORE_REVOKED, .not_after = 5,
	                           .revoked_at = 1700000000, .reason = 1,
	                           .invalidity_date = 1690000000};
	struct ocsp_single s = dirty();
	bool ext = false;
	assert_true(ocsp_status_decide(&rec, OCSP_NOT_ISSUED_UNAUTHORIZED, &s, &ext));
	assert_int_equal(s.status, OCSP_STATUS_REVOKED);
	assert_int_equal(s.revoked_at, 1700000000);
	assert_int_equal(s.reason, OCSP_REASON_KEY_COMPROMISE);
	assert_int_equal(s.invalidity_date, 1690000000);
	assert_false(ext);

	/* Every CRLReason passes through; 7 (unused) and out-of-range values are left out. */
	static const struct {
		int in, out;
	} reasons[] = {
		{STORE_REASON_NONE, OCSP_REASON_NONE},
		{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}, {6, 6},
		{7, OCSP_REASON_NONE},
		{8, 8}, {9, 9}, {10, 10},
		{11, OCSP_REASON_NONE},
		{-2, OCSP_REASON_NONE},
		{1000, OCSP_REASON_NONE},
	};
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		rec.reason = reasons[i].in;
		rec.invalidity_date = 0;
		s = dirty();
		assert_true(ocsp_status_decide(&rec, OCSP_NOT_ISSUED_UNKNOWN, &s, &ext));
		if (s.reason != reasons[i].out)
			fail_msg("reason %d -> %d, want %d", reasons[i].in, s.reason, reasons[i].out);
		assert_int_equal(s.invalidity_date, 0);
	}
}

/* An expired certificate keeps its status: not_after plays no part. */
static void test_expired_keeps_status(void **state)
{
	(void)state;
	struct store_record good = {.status = STORE_GOOD, .not_after = 1, .reason = -1};
	struct store_record revoked = {.status = STORE_REVOKED, .not_after = 1, .revoked_at = 0,
	                               .reason = 4};
	struct ocsp_single s = dirty();
	bool ext = false;
	assert_true(ocsp_status_decide(&good, OCSP_NOT_ISSUED_REVOKED, &s, &ext));
	assert_int_equal(s.status, OCSP_STATUS_GOOD);
	assert_false(ext);
	assert_true(ocsp_status_decide(&revoked, OCSP_NOT_ISSUED_REVOKED, &s, &ext));
	assert_int_equal(s.status, OCSP_STATUS_REVOKED);
	assert_int_equal(s.reason, OCSP_REASON_SUPERSEDED);
	assert_int_equal(s.revoked_at, 0);
	assert_false(ext); /* a real revocation at the epoch is not an extended one */
}

static void test_not_issued_policies(void **state)
{
	(void)state;
	struct store_record rec = {.status = STORE_NOT_ISSUED, .reason = STORE_REASON_NONE};
	struct ocsp_single s = dirty();
	bool ext = false;
	assert_true(ocsp_status_decide(&rec, OCSP_NOT_ISSUED_UNKNOWN, &s, &ext));
	assert_int_equal(s.status, OCSP_STATUS_UNKNOWN);
	assert_int_equal(s.reason, OCSP_REASON_NONE);
	assert_int_equal(s.revoked_at, 0);
	assert_int_equal(s.invalidity_date, 0);
	assert_false(ext);

	s = dirty();
	ext = false;
	assert_false(ocsp_status_decide(&rec, OCSP_NOT_ISSUED_UNAUTHORIZED, &s, &ext));
	assert_false(ext);

	/* RFC 6960 §2.2: revoked, certificateHold, revocationTime 1970-01-01. */
	s = dirty();
	ext = false;
	assert_true(ocsp_status_decide(&rec, OCSP_NOT_ISSUED_REVOKED, &s, &ext));
	assert_int_equal(s.status, OCSP_STATUS_REVOKED);
	assert_int_equal(s.revoked_at, OCSP_EXTENDED_REVOKE_TIME);
	assert_int_equal(s.revoked_at, 0);
	assert_int_equal(s.reason, OCSP_REASON_CERTIFICATE_HOLD);
	assert_int_equal(s.invalidity_date, 0);
	assert_true(ext);
	assert_int_equal(s.this_update, 111);

	/* *extended_revoke is only ever set, never cleared: one response, many answers. */
	struct store_record good = {.status = STORE_GOOD, .reason = -1};
	assert_true(ocsp_status_decide(&good, OCSP_NOT_ISSUED_REVOKED, &s, &ext));
	assert_true(ext);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_expired_keeps_status),
		cmocka_unit_test(test_not_issued_policies),
	};
	return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
