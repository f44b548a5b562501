/* ocsp/der: the strict DER reader and the capped writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "ocsp/der.h"

#define C(...) ((const uint8_t[]){__VA_ARGS__})
#define CUR(...) der_cursor_init(C(__VA_ARGS__), sizeof(C(__VA_ARGS__)))

static void test_read_simple(void **state)
{
	(void)state;
	struct der_cursor c = CUR(0x30, 0x03, 0x02, 0x01, 0x05, 0x05, 0x00);
	assert_int_equal(der_peek_tag(&c), DER_SEQUENCE);
	struct der_cursor seq;
	assert_true(der_read(&c, DER_SEQUENCE, &seq));
	assert_int_equal(der_len(&seq), 3);
	assert_true(der_equals(&seq, C(0x02, 0x01, 0x05), 3));
	struct der_cursor v;
	assert_true(der_read_integer(&seq, &v));
	assert_true(der_equals(&v, C(0x05), 1));
	assert_true(der_at_end(&seq));
	assert_int_equal(der_peek_tag(&seq), -1);
	assert_false(der_read(&seq, DER_INTEGER, NULL)); /* at end */
	/* NULL contents: the element is skipped. */
	assert_true(der_read(&c, DER_NULL, NULL));
	assert_true(der_at_end(&c));
}

static void test_read_refusals_leave_cursor(void **state)
{
	(void)state;
	static const struct {
		const char *why;
		uint8_t der[8];
		size_t len;
	} bad[] = {
		{"tag mismatch", {0x31, 0x00}, 2},
		{"one byte", {0x30}, 1},
		{"truncated contents", {0x30, 0x05, 0x02, 0x01}, 4},
		{"indefinite length", {0x30, 0x80, 0x00, 0x00}, 4},
		{"long form for a short length", {0x30, 0x81, 0x01, 0x00}, 4},
		{"leading zero length octet", {0x30, 0x82, 0x00, 0x80}, 4},
		{"five length octets", {0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00}, 7},
		{"length octets missing", {0x30, 0x82, 0x01}, 3},
		{"huge length", {0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00}, 7},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct der_cursor c = der_cursor_init(bad[i].der, bad[i].len);
		struct der_cursor before = c, contents = {NULL, NULL};
		if (der_read(&c, DER_SEQUENCE, &contents))
			fail_msg("accepted: %s", bad[i].why);
		assert_ptr_equal(c.p, before.p);
		assert_ptr_equal(c.end, before.end);
	}
}

static void test_read_long_lengths(void **state)
{
	(void)state;
	uint8_t der[4 + 300];
	memset(der, 0xab, sizeof(der));
	/* 128: the shortest long form. */
	der[0] = DER_OCTET_STRING;
	der[1] = 0x81;
	der[2] = 0x80;
	struct der_cursor c = der_cursor_init(der, 3 + 128), v;
	assert_true(der_read(&c, DER_OCTET_STRING, &v));
	assert_int_equal(der_len(&v), 128);
	assert_ptr_equal(v.p, der + 3);
	assert_true(der_at_end(&c));
	/* 300 with two octets. */
	der[1] = 0x82;
	der[2] = 0x01;
	der[3] = 0x2c;
	c = der_cursor_init(der, 4 + 300);
	assert_true(der_read(&c, DER_OCTET_STRING, &v));
	assert_int_equal(der_len(&v), 300);
	assert_true(der_at_end(&c));
	/* 127 in the long form is not minimal either. */
	der[1] = 0x81;
	der[2] = 0x7f;
	c = der_cursor_init(der, 3 + 127);
	assert_false(der_read(&c, DER_OCTET_STRING, &v));
	/* 255 in two octets is not minimal. */
	der[2] = 0x00;
	der[3] = 0xff;
	c = der_cursor_init(der, 4 + 255);
	assert_false(der_read(&c, DER_OCTET_STRING, &v));
}

static void test_read_tag_rules(void **state)
{
	(void)state;
	struct der_cursor c, v;
	int tag;
	/* High tag numbers are refused (here 0x1f 0x01 0x00 would read as a tag with a
	 * one-octet length if the tag were taken for a low one). */
	c = CUR(0x1f, 0x01, 0x00);
	assert_false(der_read_any(&c, &tag, &v, NULL));
	c = CUR(0xbf, 0x01, 0x00);
	assert_false(der_read_any(&c, &tag, &v, NULL));
	c = CUR(0x5f, 0x00);
	assert_false(der_read_any(&c, &tag, &v, NULL));
	/* Constructed forms of primitive universal types are BER only. */
	static const uint8_t prim[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0a, 0x18};
	for (size_t i = 0; i < sizeof(prim); i++) {
		uint8_t der[2] = {(uint8_t)(prim[i] | DER_CONSTRUCTED), 0x00};
		c = der_cursor_init(der, 2);
		if (der_read_any(&c, &tag, &v, NULL))
			fail_msg("constructed tag 0x%02x accepted", der[0]);
	}
	/* SEQUENCE, SET and context/application tags may be constructed. */
	static const uint8_t cons[] = {0x30, 0x31, 0xa0, 0xa1, 0xa2, 0x60, 0xe3};
	for (size_t i = 0; i < sizeof(cons); i++) {
		uint8_t der[2] = {cons[i], 0x00};
		c = der_cursor_init(der, 2);
		assert_true(der_read_any(&c, &tag, &v, NULL));
		assert_int_equal(tag, cons[i]);
	}
	/* der_read_any reports the whole encoding. */
	struct der_cursor whole;
	c = CUR(0x80, 0x02, 0xaa, 0xbb, 0x00);
	const uint8_t *start = c.p;
	assert_true(der_read_any(&c, &tag, &v, &whole));
	assert_int_equal(tag, DER_CTX_PRIM(0));
	assert_ptr_equal(whole.p, start);
	assert_int_equal(der_len(&whole), 4);
	assert_int_equal(der_len(&v), 2);
	assert_ptr_equal(c.p, start + 4);
}

static void test_read_integer(void **state)
{
	(void)state;
	struct der_cursor c, v;
	c = CUR(0x02, 0x01, 0x00);
	assert_true(der_read_integer(&c, &v));
	assert_true(der_equals(&v, C(0x00), 1));
	c = CUR(0x02, 0x02, 0x00, 0x80);
	assert_true(der_read_integer(&c, &v));
	assert_int_equal(der_len(&v), 2);
	c = CUR(0x02, 0x02, 0xff, 0x7f);
	assert_true(der_read_integer(&c, &v));
	c = CUR(0x02, 0x01, 0xff);
	assert_true(der_read_integer(&c, &v));

	static const struct {
		uint8_t der[4];
		size_t len;
	} bad[] = {
		{{0x02, 0x00}, 2},             /* empty */
		{{0x02, 0x02, 0x00, 0x7f}, 4}, /* redundant 0x00 */
		{{0x02, 0x02, 0x00, 0x00}, 4},
		{{0x02, 0x02, 0xff, 0x80}, 4}, /* redundant 0xff */
		{{0x02, 0x02, 0xff, 0xff}, 4},
		{{0x0a, 0x01, 0x01}, 3}, /* ENUMERATED is not INTEGER */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = der_cursor_init(bad[i].der, bad[i].len);
		const uint8_t *before = c.p;
		if (der_read_integer(&c, &v))
			fail_msg("bad INTEGER %zu accepted", i);
		assert_ptr_equal(c.p, before);
	}
}

static void test_read_boolean(void **state)
{
	(void)state;
	struct der_cursor c;
	bool b = false;
	c = CUR(0x01, 0x01, 0xff);
	assert_true(der_read_boolean(&c, &b));
	assert_true(b);
	c = CUR(0x01, 0x01, 0x00);
	assert_true(der_read_boolean(&c, &b));
	assert_false(b);
	c = CUR(0x01, 0x01, 0x01); /* BER's "any non-zero" */
	assert_false(der_read_boolean(&c, &b));
	c = CUR(0x01, 0x02, 0xff, 0xff);
	assert_false(der_read_boolean(&c, &b));
	c = CUR(0x01, 0x00);
	assert_false(der_read_boolean(&c, &b));
}

static void test_read_small_uint(void **state)
{
	(void)state;
	struct der_cursor c;
	int v = -7;
	c = CUR(0x02, 0x01, 0x05);
	assert_true(der_read_small_uint(&c, DER_INTEGER, &v));
	assert_int_equal(v, 5);
	c = CUR(0x0a, 0x01, 0x03);
	assert_true(der_read_small_uint(&c, DER_ENUMERATED, &v));
	assert_int_equal(v, 3);
	c = CUR(0x02, 0x02, 0x00, 0x80);
	assert_true(der_read_small_uint(&c, DER_INTEGER, &v));
	assert_int_equal(v, 128);
	c = CUR(0x02, 0x04, 0x7f, 0xff, 0xff, 0xff);
	assert_true(der_read_small_uint(&c, DER_INTEGER, &v));
	assert_int_equal(v, INT_MAX);

	v = -7;
	c = CUR(0x02, 0x01, 0x80); /* negative */
	assert_false(der_read_small_uint(&c, DER_INTEGER, &v));
	c = CUR(0x02, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff); /* does not fit an int */
	assert_false(der_read_small_uint(&c, DER_INTEGER, &v));
	c = CUR(0x02, 0x02, 0x00, 0x01); /* not minimal */
	assert_false(der_read_small_uint(&c, DER_INTEGER, &v));
	c = CUR(0x02, 0x00);
	assert_false(der_read_small_uint(&c, DER_INTEGER, &v));
	c = CUR(0x02, 0x01, 0x01);
	assert_false(der_read_small_uint(&c, DER_ENUMERATED, &v)); /* wrong tag */
	assert_int_equal(v, -7);
	assert_int_equal(der_peek_tag(&c), DER_INTEGER); /* cursor kept */
}

static void test_gentime_read(void **state)
{
	(void)state;
	struct der_cursor v = der_cursor_init((const uint8_t *)"20240229123456Z", 15);
	int64_t t = 0;
	assert_true(der_parse_gentime(&v, &t));
	assert_int_equal(t, 1709210096);
	v = der_cursor_init((const uint8_t *)"240229123456Z", 13); /* UTCTime is not GeneralizedTime */
	assert_false(der_parse_gentime(&v, &t));
	v = der_cursor_init((const uint8_t *)"20240229123456.1Z", 17);
	assert_false(der_parse_gentime(&v, &t));
}

/* --- writer --- */

static void test_put_lengths(void **state)
{
	(void)state;
	static const struct {
		size_t len;
		uint8_t hdr[6];
		size_t hdr_len;
	} cases[] = {
		{0, {0x04, 0x00}, 2},
		{1, {0x04, 0x01}, 2},
		{127, {0x04, 0x7f}, 2},
		{128, {0x04, 0x81, 0x80}, 3},
		{255, {0x04, 0x81, 0xff}, 3},
		{256, {0x04, 0x82, 0x01, 0x00}, 4},
		{65535, {0x04, 0x82, 0xff, 0xff}, 4},
		{65536, {0x04, 0x83, 0x01, 0x00, 0x00}, 5},
	};
	static uint8_t content[70000];
	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i % 251);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		buf_init(&b, 1 << 20);
		assert_true(der_put(&b, DER_OCTET_STRING, content, cases[i].len));
		assert_int_equal(b.len, cases[i].hdr_len + cases[i].len);
		assert_memory_equal(b.data, cases[i].hdr, cases[i].hdr_len);
		if (cases[i].len > 0)
			assert_memory_equal(b.data + cases[i].hdr_len, content, cases[i].len);
		/* And the reader takes it back. */
		struct der_cursor c = der_cursor_init(b.data, b.len), v;
		assert_true(der_read(&c, DER_OCTET_STRING, &v));
		assert_int_equal(der_len(&v), cases[i].len);
		assert_true(der_at_end(&c));
		buf_free(&b);
	}
}

/* Nested elements whose lengths cross the one-octet limit at every level. */
static void test_begin_end_nested(void **state)
{
	(void)state;
	for (size_t inner = 0; inner < 400; inner += 7) {
		uint8_t content[400];
		memset(content, 0x42, sizeof(content));
		struct buf b;
		buf_init(&b, 1 << 16);
		assert_true(buf_append_byte(&b, 0xee)); /* something before */
		size_t m0 = der_begin(&b, DER_SEQUENCE);
		size_t m1 = der_begin(&b, DER_CTX_CONS(1));
		assert_true(der_put(&b, DER_OCTET_STRING, content, inner));
		assert_true(der_end(&b, m1));
		assert_true(der_put(&b, DER_NULL, NULL, 0));
		assert_true(der_end(&b, m0));
		assert_int_equal(m0, 1);

		struct der_cursor c = der_cursor_init(b.data + 1, b.len - 1), seq, ctx, v;
		assert_true(der_read(&c, DER_SEQUENCE, &seq));
		assert_true(der_at_end(&c));
		assert_true(der_read(&seq, DER_CTX_CONS(1), &ctx));
		assert_true(der_read(&ctx, DER_OCTET_STRING, &v));
		assert_true(der_at_end(&ctx));
		assert_int_equal(der_len(&v), inner);
		assert_true(inner == 0 || (v.p[0] == 0x42 && v.p[inner - 1] == 0x42));
		assert_true(der_read(&seq, DER_NULL, &v));
		assert_true(der_at_end(&seq));
		assert_int_equal(b.data[0], 0xee);
		buf_free(&b);
	}
}

static void test_put_uint(void **state)
{
	(void)state;
	static const struct {
		uint64_t v;
		uint8_t der[11];
		size_t len;
	} cases[] = {
		{0, {0x02, 0x01, 0x00}, 3},
		{1, {0x02, 0x01, 0x01}, 3},
		{127, {0x02, 0x01, 0x7f}, 3},
		{128, {0x02, 0x02, 0x00, 0x80}, 4},
		{255, {0x02, 0x02, 0x00, 0xff}, 4},
		{256, {0x02, 0x02, 0x01, 0x00}, 4},
		{0x7fffffffffffffffULL, {0x02, 0x08, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 10},
		{UINT64_MAX, {0x02, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 11},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		buf_init(&b, 64);
		assert_true(der_put_uint(&b, DER_INTEGER, cases[i].v));
		assert_int_equal(b.len, cases[i].len);
		assert_memory_equal(b.data, cases[i].der, cases[i].len);
		struct der_cursor c = der_cursor_init(b.data, b.len), v;
		assert_true(der_read_integer(&c, &v)); /* minimal */
		buf_free(&b);
	}
	struct buf b;
	buf_init(&b, 64);
	assert_true(der_put_uint(&b, DER_ENUMERATED, 6));
	assert_memory_equal(b.data, C(0x0a, 0x01, 0x06), 3);
	buf_free(&b);
}

static void expect_gentime(int64_t t, const char *want)
{
	struct buf b;
	buf_init(&b, 64);
	assert_true(der_put_gentime(&b, t));
	assert_int_equal(b.len, 17);
	assert_int_equal(b.data[0], DER_GENERALIZED_TIME);
	assert_int_equal(b.data[1], 15);
	assert_memory_equal(b.data + 2, want, 15);
	struct der_cursor v = der_cursor_init(b.data + 2, 15);
	int64_t back = 0;
	assert_true(der_parse_gentime(&v, &back));
	assert_int_equal(back, t);
	buf_free(&b);
}

static void test_put_gentime(void **state)
{
	(void)state;
	expect_gentime(0, "19700101000000Z");
	expect_gentime(-1, "19691231235959Z");
	expect_gentime(1709210096, "20240229123456Z");
	expect_gentime(2524608000LL, "20500101000000Z"); /* GeneralizedTime, never UTCTime */
	expect_gentime(253402300799LL, "99991231235959Z");
	expect_gentime(-62135596800LL, "00010101000000Z");
	/* Year 10000 has no GeneralizedTime of 15 characters. */
	struct buf b;
	buf_init(&b, 64);
	assert_false(der_put_gentime(&b, 253402300800LL));
	assert_true(b.failed);
	buf_free(&b);
}

static void expect_time(int64_t t, int tag, const char *want)
{
	size_t n = strlen(want);
	struct buf b;
	buf_init(&b, 64);
	assert_true(der_put_time(&b, t));
	assert_int_equal(b.len, 2 + n);
	if (b.data[0] != tag)
		fail_msg("%lld: tag 0x%02x, not 0x%02x", (long long)t, b.data[0], tag);
	assert_int_equal(b.data[1], n);
	assert_memory_equal(b.data + 2, want, n);
	struct der_cursor c = der_cursor_init(b.data, b.len);
	int64_t back = 0;
	assert_true(der_read_time(&c, &back));
	assert_int_equal(back, t);
	assert_true(der_at_end(&c));
	buf_free(&b);
}

/* UTCTime for 1950 through 2049 (RFC 5280 §4.1.2.5), GeneralizedTime either side. */
static void test_put_time(void **state)
{
	(void)state;
	expect_time(-631152001LL, DER_GENERALIZED_TIME, "19491231235959Z");
	expect_time(-631152000LL, DER_UTC_TIME, "500101000000Z");
	expect_time(0, DER_UTC_TIME, "700101000000Z");
	expect_time(1709210096, DER_UTC_TIME, "240229123456Z");
	expect_time(946684799, DER_UTC_TIME, "991231235959Z");
	expect_time(946684800, DER_UTC_TIME, "000101000000Z");
	expect_time(2524607999LL, DER_UTC_TIME, "491231235959Z");
	expect_time(2524608000LL, DER_GENERALIZED_TIME, "20500101000000Z");
	expect_time(-62135596800LL, DER_GENERALIZED_TIME, "00010101000000Z");
	/* Year 10000 fits neither. */
	struct buf b;
	buf_init(&b, 64);
	assert_false(der_put_time(&b, 253402300800LL));
	assert_true(b.failed);
	buf_free(&b);
}

static void test_read_time(void **state)
{
	(void)state;
	struct der_cursor c;
	int64_t t = 0;
	/* Either form of the same instant; GeneralizedTime is read in any year. */
	c = CUR(0x17, 0x0d, '2', '4', '0', '2', '2', '9', '1', '2', '3', '4', '5', '6', 'Z');
	assert_true(der_read_time(&c, &t));
	assert_int_equal(t, 1709210096);
	c = CUR(0x18, 0x0f, '2', '0', '2', '4', '0', '2', '2', '9', '1', '2', '3', '4', '5', '6',
	        'Z');
	assert_true(der_read_time(&c, &t));
	assert_int_equal(t, 1709210096);
	/* The UTCTime century: 49 is 2049, 50 is 1950. */
	c = CUR(0x17, 0x0d, '4', '9', '1', '2', '3', '1', '2', '3', '5', '9', '5', '9', 'Z');
	assert_true(der_read_time(&c, &t));
	assert_int_equal(t, 2524607999LL);
	c = CUR(0x17, 0x0d, '5', '0', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0', 'Z');
	assert_true(der_read_time(&c, &t));
	assert_int_equal(t, -631152000LL);

	t = 42;
	static const struct {
		const char *why;
		int tag;
		const char *contents;
	} bad[] = {
		{"UTCTime without seconds", DER_UTC_TIME, "5001010000Z"},
		{"UTCTime of GeneralizedTime's length", DER_UTC_TIME, "20240229123456Z"},
		{"GeneralizedTime of UTCTime's length", DER_GENERALIZED_TIME, "240229123456Z"},
		{"GeneralizedTime with fractions", DER_GENERALIZED_TIME, "20240229123456.5Z"},
		{"UTCTime with an offset", DER_UTC_TIME, "240229123456+0000"},
		{"UTCTime without Z", DER_UTC_TIME, "2402291234560"},
		{"UTCTime on 30 February", DER_UTC_TIME, "240230123456Z"},
		{"UTCTime, second 60", DER_UTC_TIME, "240229123460Z"},
		{"constructed UTCTime", DER_UTC_TIME | DER_CONSTRUCTED, ""},
		{"a time in an OCTET STRING", DER_OCTET_STRING, "20240229123456Z"},
		{"a time in an IA5String", 0x16, "240229123456Z"},
	};
	for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t der[32];
		size_t len;
		if (i < sizeof(bad) / sizeof(bad[0])) {
			size_t n = strlen(bad[i].contents);
			der[0] = (uint8_t)bad[i].tag;
			der[1] = (uint8_t)n;
			memcpy(der + 2, bad[i].contents, n);
			len = 2 + n;
		} else { /* a good UTCTime cut short */
			memcpy(der, "\x17\x0d" "240229123456Z", 15);
			len = 14;
		}
		c = der_cursor_init(der, len);
		const uint8_t *before = c.p;
		if (der_read_time(&c, &t))
			fail_msg("accepted: %s",
			         i < sizeof(bad) / sizeof(bad[0]) ? bad[i].why : "a cut UTCTime");
		assert_ptr_equal(c.p, before);
		assert_int_equal(t, 42);
	}
	static const uint8_t none[1];
	c = der_cursor_init(none, 0);
	assert_false(der_read_time(&c, &t));
}

static void test_writer_respects_ceiling(void **state)
{
	(void)state;
	uint8_t content[200];
	memset(content, 1, sizeof(content));
	struct buf b;
	/* A constructed element whose length grows to two octets needs one more byte. */
	buf_init(&b, 2 + 130);
	size_t m = der_begin(&b, DER_SEQUENCE);
	assert_true(der_put(&b, DER_OCTET_STRING, content, 127)); /* 2 + 127 + 2 = 131 */
	assert_true(buf_append_byte(&b, 0));                     /* 132: full */
	assert_false(der_end(&b, m));                            /* no room for 0x81 */
	assert_true(b.failed);
	buf_free(&b);

	buf_init(&b, 10);
	assert_false(der_put(&b, DER_OCTET_STRING, content, 9)); /* 11 bytes */
	assert_true(b.failed);
	/* Once failed, every later write fails too. */
	assert_false(der_put(&b, DER_NULL, NULL, 0));
	assert_false(der_put_uint(&b, DER_INTEGER, 1));
	assert_false(der_end(&b, der_begin(&b, DER_SEQUENCE)));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_simple),
		cmocka_unit_test(test_read_refusals_leave_cursor),
		cmocka_unit_test(test_read_long_lengths),
		cmocka_unit_test(test_read_tag_rules),
		cmocka_unit_test(test_read_integer),
		cmocka_unit_test(test_read_boolean),
		cmocka_unit_test(test_read_small_uint),
		cmocka_unit_test(test_gentime_read),
		cmocka_unit_test(test_put_lengths),
		cmocka_unit_test(test_begin_end_nested),
		cmocka_unit_test(test_put_uint),
		cmocka_unit_test(test_put_gentime),
		cmocka_unit_test(test_put_time),
		cmocka_unit_test(test_read_time),
		cmocka_unit_test(test_writer_respects_ceiling),
	};
	return cmocka_run_group_tests_name("der", tests, NULL, NULL);
}
