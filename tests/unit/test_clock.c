/* core/clock: the settable clock, calendar arithmetic, ASN.1 times and HTTP dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "core/clock.h"

static int reset_clock(void **state)
{
	(void)state;
	clock_reset();
	return 0;
}

static void test_freeze_advance_reset(void **state)
{
	(void)state;
	clock_freeze(1700000000);
	assert_int_equal(clock_now(), 1700000000);
	assert_int_equal(clock_now(), 1700000000);
	clock_advance(5);
	assert_int_equal(clock_now(), 1700000005);
	clock_advance(-10);
	assert_int_equal(clock_now(), 1699999995);
	clock_freeze(42);
	assert_int_equal(clock_now(), 42);
	clock_reset();
	int64_t real = (int64_t)time(NULL);
	int64_t now = clock_now();
	assert_true(now >= real - 1 && now <= real + 1);
}

static void test_advance_real_clock(void **state)
{
	(void)state;
	clock_reset();
	clock_advance(1000000);
	int64_t real = (int64_t)time(NULL);
	int64_t now = clock_now();
	assert_true(now >= real + 1000000 - 1 && now <= real + 1000000 + 1);
	/* Freezing wins over the offset, and reset clears both. */
	clock_freeze(7);
	assert_int_equal(clock_now(), 7);
	clock_reset();
	real = (int64_t)time(NULL);
	now = clock_now();
	assert_true(now >= real - 1 && now <= real + 1);
}

static void test_timegm_known_values(void **state)
{
	(void)state;
	assert_int_equal(clock_timegm(1970, 1, 1, 0, 0, 0), 0);
	assert_int_equal(clock_timegm(1969, 12, 31, 23, 59, 59), -1);
	assert_int_equal(clock_timegm(2000, 2, 29, 0, 0, 0), 951782400);
	assert_int_equal(clock_timegm(2000, 3, 1, 0, 0, 0), 951868800);
	assert_int_equal(clock_timegm(2024, 2, 29, 12, 34, 56), 1709210096);
	assert_int_equal(clock_timegm(2038, 1, 19, 3, 14, 8), 2147483648LL);
	assert_int_equal(clock_timegm(2049, 12, 31, 23, 59, 59), 2524607999LL);
	assert_int_equal(clock_timegm(1950, 1, 1, 0, 0, 0), -631152000LL);
	assert_int_equal(clock_timegm(1600, 1, 1, 0, 0, 0), -11676096000LL);
	assert_int_equal(clock_timegm(9999, 12, 31, 23, 59, 59), 253402300799LL);
}

/* Every day from 1601 to 2400 against the C library's timegm. */
static void test_timegm_matches_libc(void **state)
{
	(void)state;
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	long checked = 0;
	for (int y = 1601; y <= 2400; y++) {
		bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
		for (int m = 1; m <= 12; m++) {
			int nd = mdays[m - 1] + (m == 2 && leap);
			for (int d = 1; d <= nd; d++) {
				struct tm tm;
				memset(&tm, 0, sizeof(tm));
				tm.tm_year = y - 1900;
				tm.tm_mon = m - 1;
				tm.tm_mday = d;
				tm.tm_hour = d % 24;
				tm.tm_min = (d * 7) % 60;
				tm.tm_sec = (d * 13) % 60;
				int64_t want = (int64_t)timegm(&tm);
				int64_t got = clock_timegm(y, m, d, d % 24, (d * 7) % 60, (d * 13) % 60);
				if (got != want)
					fail_msg("%04d-%02d-%02d: clock_timegm %lld, timegm %lld", y, m, d,
					         (long long)got, (long long)want);
				checked++;
			}
		}
	}
	assert_int_equal(checked, 292194); /* 800 years of days */
}

static void expect_time(const char *s, int64_t want)
{
	int64_t t = -12345;
	if (!clock_parse_asn1_time(s, strlen(s), &t))
		fail_msg("'%s' was refused", s);
	if (t != want)
		fail_msg("'%s': got %lld, want %lld", s, (long long)t, (long long)want);
}

static void expect_bad_time(const char *s)
{
	int64_t t = -12345;
	if (clock_parse_asn1_time(s, strlen(s), &t))
		fail_msg("'%s' was accepted as %lld", s, (long long)t);
	assert_int_equal(t, -12345); /* untouched on failure */
}

static void test_parse_asn1_time_valid(void **state)
{
	(void)state;
	expect_time("19700101000000Z", 0);
	expect_time("20240229123456Z", 1709210096);
	expect_time("20000229000000Z", 951782400);
	expect_time("99991231235959Z", 253402300799LL);
	/* UTCTime: YY >= 50 is 19YY, else 20YY. */
	expect_time("700101000000Z", 0);
	expect_time("500101000000Z", -631152000LL);
	expect_time("491231235959Z", 2524607999LL);
	expect_time("240229123456Z", 1709210096);
	/* The length says which form, not the digits. */
	int64_t t;
	assert_true(clock_parse_asn1_time("20240229123456Z", 15, &t));
	assert_false(clock_parse_asn1_time("20240229123456Z", 13, &t));
}

static void test_parse_asn1_time_invalid(void **state)
{
	(void)state;
	expect_bad_time("");
	expect_bad_time("Z");
	expect_bad_time("2024022912345Z");    /* 14 */
	expect_bad_time("202402291234560Z");  /* 16 */
	expect_bad_time("20240229123456");    /* no Z, 14 */
	expect_bad_time("202402291234567");   /* 15 but no Z */
	expect_bad_time("20240229123456z");   /* lower-case z */
	expect_bad_time("20240229123456.5Z"); /* fractions: not in RFC 5280 */
	expect_bad_time("2024022912345+Z");
	expect_bad_time("2024-02-2912345Z");
	expect_bad_time("20241301000000Z"); /* month 13 */
	expect_bad_time("20240001000000Z"); /* month 0 */
	expect_bad_time("20240100000000Z"); /* day 0 */
	expect_bad_time("20240132000000Z"); /* Jan 32 */
	expect_bad_time("20240431000000Z"); /* Apr 31 */
	expect_bad_time("20230229000000Z"); /* not a leap year */
	expect_bad_time("21000229000000Z"); /* century, not a leap year */
	expect_bad_time("20240101240000Z"); /* hour 24 */
	expect_bad_time("20240101236000Z"); /* minute 60 */
	expect_bad_time("20240101235960Z"); /* second 60: no leap seconds */
	expect_bad_time("230229000000Z");   /* UTCTime, not a leap year */
	expect_bad_time("240229000000+0000");
	expect_bad_time("2402290000Z");
}

static void expect_http_date(int64_t t, const char *want)
{
	char out[30];
	memset(out, 'x', sizeof(out));
	int n = clock_http_date(t, out);
	assert_int_equal(n, 29);
	assert_string_equal(out, want);
}

static void test_http_date(void **state)
{
	(void)state;
	expect_http_date(0, "Thu, 01 Jan 1970 00:00:00 GMT");
	expect_http_date(784111777, "Sun, 06 Nov 1994 08:49:37 GMT"); /* RFC 9110's example */
	expect_http_date(951782400, "Tue, 29 Feb 2000 00:00:00 GMT");
	expect_http_date(1709210096, "Thu, 29 Feb 2024 12:34:56 GMT");
	expect_http_date(253402300799LL, "Fri, 31 Dec 9999 23:59:59 GMT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_freeze_advance_reset, reset_clock),
		cmocka_unit_test_teardown(test_advance_real_clock, reset_clock),
		cmocka_unit_test(test_timegm_known_values),
		cmocka_unit_test(test_timegm_matches_libc),
		cmocka_unit_test(test_parse_asn1_time_valid),
		cmocka_unit_test(test_parse_asn1_time_invalid),
		cmocka_unit_test(test_http_date),
	};
	return cmocka_run_group_tests_name("clock", tests, NULL, NULL);
}
