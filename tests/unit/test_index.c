/* db/index: OpenSSL's index.txt as a status store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/clock.h"
#include "db/index.h"
#include "failmalloc.h"
#include "testpki.h"

#define EXP "301231235959Z"
#define REV "240101120000Z"
#define T_EXP ((int64_t)1924991999) /* 2030-12-31T23:59:59Z */
#define T_REV ((int64_t)1704110400) /* 2024-01-01T12:00:00Z */

static struct store_serial serial(const char *hex)
{
	struct store_serial s;
	memset(&s, 0, sizeof(s));
	if (!index_serial_from_hex(hex, strlen(hex), &s))
		fail_msg("serial '%s' refused", hex);
	return s;
}

static struct store_record find(const struct index_snapshot *snap, const char *hex)
{
	struct store_serial s = serial(hex);
	struct store_record rec;
	memset(&rec, 0x5a, sizeof(rec));
	if (!index_snapshot_find(snap, s.bytes, s.len, &rec))
		fail_msg("serial %s not found", hex);
	return rec;
}

static void expect_revoked(const struct index_snapshot *snap, const char *hex, int reason,
                           int64_t invalidity)
{
	struct store_record r = find(snap, hex);
	if (r.status != STORE_REVOKED || r.revoked_at != T_REV || r.reason != reason ||
	    r.invalidity_date != invalidity || r.not_after != T_EXP)
		fail_msg("%s: status %d revoked_at %lld reason %d invalidity %lld not_after %lld", hex,
		         r.status, (long long)r.revoked_at, r.reason, (long long)r.invalidity_date,
		         (long long)r.not_after);
}

/* Every form `openssl ca` writes. */
static const char all_forms[] =
	"# index.txt written by openssl ca\n"
	"V\t" EXP "\t\t1001\tunknown\t/O=revd/CN=good\n"
	"R\t" EXP "\t" REV "\t1002\tunknown\t/CN=revoked without reason\n"
	"R\t" EXP "\t" REV ",keyCompromise\t1003\tunknown\t/CN=key compromise\n"
	"R\t" EXP "\t" REV ",keyTime,20231231235959Z\t1004\tunknown\t/CN=crl_compromise\n"
	"R\t" EXP "\t" REV ",CAkeyTime,20231130000000Z\t1005\tunknown\t/CN=crl_CA_compromise\n"
	"R\t" EXP "\t" REV ",holdInstruction,holdInstructionReject\t1006\tunknown\t/CN=hold\n"
	"R\t" EXP "\t" REV ",removeFromCRL\t1007\tunknown\t/CN=released\n"
	"E\t200101000000Z\t\t1008\tunknown\t/CN=expired\n"
	"V\t20510101000000Z\t\t80\tunknown\t/CN=high bit, generalized time\n"
	"\n"
	"R\t" EXP "\t" REV ",unspecified\t2000\tunknown\t/CN=r0\n"
	"R\t" EXP "\t" REV ",CACompromise\t2002\tunknown\t/CN=r2\n"
	"R\t" EXP "\t" REV ",affiliationChanged\t2003\tunknown\t/CN=r3\n"
	"R\t" EXP "\t" REV ",superseded\t2004\tunknown\t/CN=r4\n"
	"R\t" EXP "\t" REV ",cessationOfOperation\t2005\tunknown\t/CN=r5\n"
	"R\t" EXP "\t" REV ",certificateHold\t2006\tunknown\t/CN=r6\n"
	"R\t" EXP "\t" REV ",privilegeWithdrawn\t2009\tunknown\t/CN=r9\n"
	"R\t" EXP "\t" REV ",AACompromise\t200A\tunknown\t/CN=r10\n"
	"R\t" EXP "\t" REV ",KEYCOMPROMISE\t3001\tunknown\t/CN=upper case\n"
	"V\t" EXP "\t\t3A5B7C9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7\tunknown\t/CN=20 octets\r\n"
	"V\t210101000000Z\t\t4000\tnewcerts/4000.pem\t/CN=past expiry, still V\n"
	"V\t" EXP "\t\tABC\tunknown\t/CN=odd length";

static void test_parse_every_form(void **state)
{
	(void)state;
	char err[200] = "";
	struct index_snapshot *snap = index_parse(all_forms, strlen(all_forms), err, sizeof(err));
	if (snap == NULL)
		fail_msg("%s", err);
	assert_int_equal(index_snapshot_count(snap), 21);

	struct store_record r = find(snap, "1001");
	assert_int_equal(r.status, STORE_GOOD);
	assert_int_equal(r.not_after, T_EXP);
	assert_int_equal(r.revoked_at, 0);
	assert_int_equal(r.reason, STORE_REASON_NONE);
	assert_int_equal(r.invalidity_date, 0);

	expect_revoked(snap, "1002", STORE_REASON_NONE, 0);
	expect_revoked(snap, "1003", 1, 0);
	expect_revoked(snap, "1004", 1, 1704067199); /* 2023-12-31T23:59:59Z */
	expect_revoked(snap, "1005", 2, 1701302400); /* 2023-11-30T00:00:00Z */
	expect_revoked(snap, "1006", 6, 0);
	/* removeFromCRL: released from hold, answered good. */
	r = find(snap, "1007");
	assert_int_equal(r.status, STORE_GOOD);
	assert_int_equal(r.revoked_at, 0);
	assert_int_equal(r.reason, STORE_REASON_NONE);
	assert_int_equal(r.invalidity_date, 0);
	/* E: expired, still issued and not revoked. */
	r = find(snap, "1008");
	assert_int_equal(r.status, STORE_GOOD);
	assert_int_equal(r.not_after, 1577836800);
	r = find(snap, "80");
	assert_int_equal(r.status, STORE_GOOD);
	assert_int_equal(r.not_after, 2556144000LL);
	/* The INTEGER for serial 80 is 00 80. */
	assert_true(index_snapshot_find(snap, (const uint8_t[]){0x00, 0x80}, 2, &r));
	assert_false(index_snapshot_find(snap, (const uint8_t[]){0x80}, 1, &r));

	expect_revoked(snap, "2000", 0, 0);
	expect_revoked(snap, "2002", 2, 0);
	expect_revoked(snap, "2003", 3, 0);
	expect_revoked(snap, "2004", 4, 0);
	expect_revoked(snap, "2005", 5, 0);
	expect_revoked(snap, "2006", 6, 0);
	expect_revoked(snap, "2009", 9, 0);
	expect_revoked(snap, "200A", 10, 0);
	expect_revoked(snap, "3001", 1, 0);
	r = find(snap, "3A5B7C9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7");
	assert_int_equal(r.status, STORE_GOOD);
	r = find(snap, "4000");
	assert_int_equal(r.status, STORE_GOOD);
	assert_int_equal(r.not_after, 1609459200);
	r = find(snap, "0ABC");
	assert_int_equal(r.status, STORE_GOOD);

	/* Absent serials, and lengths no serial has. */
	assert_false(index_snapshot_find(snap, (const uint8_t[]){0x10, 0x09}, 2, &r));
	uint8_t longer[33] = {0x10, 0x01};
	assert_false(index_snapshot_find(snap, longer, 33, &r));
	assert_false(index_snapshot_find(snap, longer, 0, &r));
	index_snapshot_free(snap);
	index_snapshot_free(NULL);
}

static void test_empty_and_comment_only(void **state)
{
	(void)state;
	char err[200];
	static const char *texts[] = {"", "\n", "\r\n\r\n", "# nothing\n#\n", "\n\n# x"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct index_snapshot *snap = index_parse(texts[i], strlen(texts[i]), err, sizeof(err));
		assert_non_null(snap);
		assert_int_equal(index_snapshot_count(snap), 0);
		struct store_record r;
		assert_false(index_snapshot_find(snap, (const uint8_t[]){1}, 1, &r));
		index_snapshot_free(snap);
	}
}

/* A bad third line (after a comment and a good line), and the message that names it. */
static void test_bad_lines(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		const char *msg;
	} cases[] = {
		{"X\t" EXP "\t\t01\tunknown\t/CN=x", "line 3: status must be V, R or E"},
		{"VV\t" EXP "\t\t01\tunknown\t/CN=x", "line 3: status must be V, R or E"},
		{"\t" EXP "\t\t01\tunknown\t/CN=x", "line 3: status must be V, R or E"},
		{"V\t" EXP "\t\t01\tunknown", "line 3: expected 6 tab-separated fields, found 5"},
		{"V " EXP " 01 unknown /CN=x", "line 3: expected 6 tab-separated fields, found 1"},
		{"V\t301231235959\t\t01\tunknown\t/CN=x", "line 3: bad expiry time"},
		{"V\t301331235959Z\t\t01\tunknown\t/CN=x", "line 3: bad expiry time"},
		{"V\t\t\t01\tunknown\t/CN=x", "line 3: bad expiry time"},
		{"V\t" EXP "\t\tXY\tunknown\t/CN=x", "line 3: bad serial number"},
		{"V\t" EXP "\t\t\tunknown\t/CN=x", "line 3: bad serial number"},
		{"V\t" EXP "\t\t-\tunknown\t/CN=x", "line 3: bad serial number"},
		{"V\t" EXP "\t\t0x01\tunknown\t/CN=x", "line 3: bad serial number"},
		{"V\t" EXP "\t\t 01\tunknown\t/CN=x", "line 3: bad serial number"},
		{"R\t" EXP "\t\t01\tunknown\t/CN=x", "line 3: revoked entry without a revocation time"},
		{"R\t" EXP "\t2401011200Z\t01\tunknown\t/CN=x", "line 3: bad revocation time"},
		{"R\t" EXP "\t,keyCompromise\t01\tunknown\t/CN=x", "line 3: bad revocation time"},
		{"R\t" EXP "\t" REV ",\t01\tunknown\t/CN=x", "line 3: unknown revocation reason"},
		{"R\t" EXP "\t" REV ",stolen\t01\tunknown\t/CN=x", "line 3: unknown revocation reason"},
		{"R\t" EXP "\t" REV ",keyCompromis\t01\tunknown\t/CN=x",
		 "line 3: unknown revocation reason"},
		{"R\t" EXP "\t" REV ",keyTime\t01\tunknown\t/CN=x", "line 3: bad compromise time"},
		{"R\t" EXP "\t" REV ",keyTime,2023\t01\tunknown\t/CN=x", "line 3: bad compromise time"},
		{"R\t" EXP "\t" REV ",CAkeyTime,\t01\tunknown\t/CN=x", "line 3: bad compromise time"},
		{"R\t" EXP "\t" REV ",holdInstruction\t01\tunknown\t/CN=x",
		 "line 3: hold instruction missing"},
		{"R\t" EXP "\t" REV ",holdInstruction,\t01\tunknown\t/CN=x",
		 "line 3: hold instruction missing"},
		{"R\t" EXP "\t" REV ",keyCompromise,20231231235959Z\t01\tunknown\t/CN=x",
		 "line 3: unexpected text after the revocation reason"},
		{"V\t" EXP "\t" REV "\t01\tunknown\t/CN=x", "line 3: revocation field set on a V entry"},
		{"E\t" EXP "\t" REV ",superseded\t01\tunknown\t/CN=x",
		 "line 3: revocation field set on a E entry"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];
		int n = snprintf(text, sizeof(text), "# header\nV\t" EXP "\t\t10\tunknown\t/CN=ok\n%s\n"
		                                     "V\t" EXP "\t\t11\tunknown\t/CN=after\n",
		                 cases[i].line);
		char err[200] = "";
		struct index_snapshot *snap = index_parse(text, (size_t)n, err, sizeof(err));
		if (snap != NULL) {
			index_snapshot_free(snap);
			fail_msg("accepted: %s", cases[i].line);
		}
		if (strcmp(err, cases[i].msg) != 0)
			fail_msg("'%s': got '%s', want '%s'", cases[i].line, err, cases[i].msg);
	}
	/* A NUL byte, on line 2. */
	static const char nul[] = "V\t" EXP "\t\t10\tunknown\t/CN=ok\nV\t" EXP "\t\t11\tunk\0wn\t/CN=x\n";
	char err[200] = "";
	assert_null(index_parse(nul, sizeof(nul) - 1, err, sizeof(err)));
	assert_string_equal(err, "line 2: NUL byte");
}

static void test_duplicate_serials(void **state)
{
	(void)state;
	static const char text[] =
		"V\t" EXP "\t\tA1\tunknown\t/CN=a then revoked\n"
		"R\t" EXP "\t" REV ",superseded\tA1\tunknown\t/CN=a\n"
		"R\t" EXP "\t" REV ",keyCompromise\tB2\tunknown\t/CN=b revoked first\n"
		"V\t" EXP "\t\tB2\tunknown\t/CN=b\n"
		"V\t301231235959Z\t\tC3\tunknown\t/CN=c\n"
		"V\t311231235959Z\t\t00C3\tunknown\t/CN=c again, later expiry\n"
		"R\t" EXP "\t" REV ",keyCompromise\tD4\tunknown\t/CN=d\n"
		"R\t" EXP "\t" REV ",CACompromise\tD4\tunknown\t/CN=d, second revocation\n";
	char err[200];
	struct index_snapshot *snap = index_parse(text, strlen(text), err, sizeof(err));
	assert_non_null(snap);
	assert_int_equal(index_snapshot_count(snap), 4);
	/* A revocation is never hidden by another line. */
	expect_revoked(snap, "A1", 4, 0);
	expect_revoked(snap, "B2", 1, 0);
	/* Otherwise the later line wins. */
	struct store_record r = find(snap, "C3");
	assert_int_equal(r.status, STORE_GOOD);
	assert_int_equal(r.not_after, 1956527999);
	expect_revoked(snap, "D4", 2, 0);
	/* Entries one per serial, in the order each serial first appears. */
	static const char *order[] = {"A1", "B2", "C3", "D4"};
	for (size_t i = 0; i < 4; i++) {
		struct store_serial ser, want = serial(order[i]);
		struct store_record rec, found;
		memset(&ser, 0xee, sizeof(ser));
		index_snapshot_entry(snap, i, &ser, &rec);
		assert_int_equal(ser.len, want.len);
		assert_memory_equal(ser.bytes, want.bytes, want.len);
		assert_true(index_snapshot_find(snap, ser.bytes, ser.len, &found));
		assert_int_equal(rec.status, found.status);
		assert_int_equal(rec.not_after, found.not_after);
		assert_int_equal(rec.revoked_at, found.revoked_at);
		assert_int_equal(rec.reason, found.reason);
		assert_int_equal(rec.invalidity_date, found.invalidity_date);
	}
	index_snapshot_free(snap);
}

static void test_serial_from_hex(void **state)
{
	(void)state;
	static const struct {
		const char *hex;
		uint8_t want[4];
		size_t len;
	} cases[] = {
		{"01", {0x01}, 1},
		{"1", {0x01}, 1},
		{"00", {0x00}, 1},
		{"0", {0x00}, 1},
		{"0000", {0x00}, 1},
		{"-0", {0x00}, 1},
		{"-00", {0x00}, 1},
		{"7f", {0x7f}, 1},
		{"7F", {0x7f}, 1},
		{"80", {0x00, 0x80}, 2},
		{"0080", {0x00, 0x80}, 2},
		{"FF", {0x00, 0xff}, 2},
		{"123", {0x01, 0x23}, 2},
		{"ABC", {0x0a, 0xbc}, 2},
		{"FFFF", {0x00, 0xff, 0xff}, 3},
		{"1001", {0x10, 0x01}, 2},
		{"-01", {0xff}, 1},
		{"-1", {0xff}, 1},
		{"-7F", {0x81}, 1},
		{"-80", {0x80}, 1},
		{"-81", {0xff, 0x7f}, 2},
		{"-FF", {0xff, 0x01}, 2},
		{"-100", {0xff, 0x00}, 2},
		{"-8000", {0x80, 0x00}, 2},
		{"-0080", {0x80}, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct store_serial s;
		memset(&s, 0xee, sizeof(s));
		if (!index_serial_from_hex(cases[i].hex, strlen(cases[i].hex), &s))
			fail_msg("'%s' refused", cases[i].hex);
		if (s.len != cases[i].len || memcmp(s.bytes, cases[i].want, s.len) != 0)
			fail_msg("'%s': %u octets, first %02x", cases[i].hex, s.len, s.bytes[0]);
	}
	static const char *bad[] = {"", "-", "--1", "g", "0g", "1 ", " 1", "+1", "0x1", "1-"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct store_serial s;
		if (index_serial_from_hex(bad[i], strlen(bad[i]), &s))
			fail_msg("'%s' accepted", bad[i]);
	}
	/* Length limits: 32 octets of INTEGER. */
	char hex[80];
	struct store_serial s;
	memset(hex, '7', 64);
	assert_true(index_serial_from_hex(hex, 64, &s)); /* 32 octets */
	assert_int_equal(s.len, 32);
	hex[0] = '8';
	assert_false(index_serial_from_hex(hex, 64, &s)); /* 33 with its 00 */
	memset(hex, '0', 2);
	memset(hex + 2, '7', 64);
	assert_true(index_serial_from_hex(hex, 66, &s)); /* leading zeros do not count */
	assert_int_equal(s.len, 32);
	memset(hex, '0', 3);
	memset(hex + 3, '7', 64);
	assert_false(index_serial_from_hex(hex, 67, &s)); /* too long a text */
	hex[0] = '-';
	hex[1] = '8';
	memset(hex + 2, '0', 63);
	assert_true(index_serial_from_hex(hex, 65, &s)); /* -2^255: 80 00 .. 00 */
	assert_int_equal(s.len, 32);
	assert_int_equal(s.bytes[0], 0x80);
	assert_int_equal(s.bytes[31], 0x00);
	hex[1] = '9';
	assert_false(index_serial_from_hex(hex, 65, &s)); /* needs 33 octets */
}

static void test_parse_time(void **state)
{
	(void)state;
	int64_t t;
	assert_true(index_parse_time(REV, 13, &t));
	assert_int_equal(t, T_REV);
	assert_true(index_parse_time("20240101120000Z", 15, &t));
	assert_int_equal(t, T_REV);
	assert_false(index_parse_time("2024010112000Z", 14, &t));
}

static void test_many_entries(void **state)
{
	(void)state;
	size_t n = 5000;
	char *text = malloc(n * 128);
	assert_non_null(text);
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(text + len, "%c\t" EXP "\t%s\t%zX\tunknown\t/CN=%zu\n",
		                       i % 7 ? 'V' : 'R', i % 7 ? "" : REV ",superseded", i * 2654435761u,
		                       i);
	char err[200];
	struct index_snapshot *snap = index_parse(text, len, err, sizeof(err));
	assert_non_null(snap);
	assert_int_equal(index_snapshot_count(snap), n);
	for (size_t i = 0; i < n; i++) {
		char hex[32];
		snprintf(hex, sizeof(hex), "%zX", i * 2654435761u);
		struct store_record r = find(snap, hex);
		assert_int_equal(r.status, i % 7 ? STORE_GOOD : STORE_REVOKED);
	}
	index_snapshot_free(snap);
	free(text);
}

/* ---- diff ---- */

static bool has_serial(const struct store_serial *v, size_t n, const char *hex)
{
	struct store_serial s = serial(hex);
	for (size_t i = 0; i < n; i++)
		if (v[i].len == s.len && memcmp(v[i].bytes, s.bytes, s.len) == 0)
			return true;
	return false;
}

static void test_snapshot_diff(void **state)
{
	(void)state;
	static const char a_text[] = "V\t" EXP "\t\t1001\tu\t/CN=same\n"
	                             "R\t" EXP "\t" REV ",superseded\t1002\tu\t/CN=reason changes\n"
	                             "V\t" EXP "\t\t1003\tu\t/CN=removed\n"
	                             "V\t" EXP "\t\t1005\tu\t/CN=gets revoked\n"
	                             "V\t" EXP "\t\t1006\tu\t/CN=expiry changes\n";
	static const char b_text[] = "V\t" EXP "\t\t1001\tu\t/CN=same\n"
	                             "R\t" EXP "\t" REV ",keyCompromise\t1002\tu\t/CN=x\n"
	                             "V\t" EXP "\t\t1004\tu\t/CN=added\n"
	                             "R\t" EXP "\t" REV "\t1005\tu\t/CN=x\n"
	                             "V\t311231235959Z\t\t1006\tu\t/CN=x\n";
	char err[200];
	struct index_snapshot *a = index_parse(a_text, strlen(a_text), err, sizeof(err));
	struct index_snapshot *b = index_parse(b_text, strlen(b_text), err, sizeof(err));
	assert_non_null(a);
	assert_non_null(b);
	size_t n = 99;
	struct store_serial *d = index_snapshot_diff(a, b, &n);
	assert_non_null(d);
	assert_int_equal(n, 5);
	assert_false(has_serial(d, n, "1001"));
	assert_true(has_serial(d, n, "1002"));
	assert_true(has_serial(d, n, "1003"));
	assert_true(has_serial(d, n, "1004"));
	assert_true(has_serial(d, n, "1005"));
	assert_true(has_serial(d, n, "1006"));
	free(d);
	/* Symmetric. */
	d = index_snapshot_diff(b, a, &n);
	assert_int_equal(n, 5);
	assert_false(has_serial(d, n, "1001"));
	free(d);
	/* Nothing changed. */
	d = index_snapshot_diff(a, a, &n);
	assert_non_null(d);
	assert_int_equal(n, 0);
	free(d);
	/* From or to nothing: everything. */
	d = index_snapshot_diff(NULL, b, &n);
	assert_int_equal(n, 5);
	free(d);
	d = index_snapshot_diff(a, NULL, &n);
	assert_int_equal(n, 5);
	free(d);
	index_snapshot_free(a);
	index_snapshot_free(b);
}

static char *numbered_index(size_t n, bool revoke_odd, size_t *len)
{
	char *text = malloc(n * 96 + 1);
	assert_non_null(text);
	size_t l = 0;
	for (size_t i = 0; i < n; i++) {
		bool rev = revoke_odd && (i % 2);
		l += (size_t)sprintf(text + l, "%c\t" EXP "\t%s\t%zX\tunknown\t/CN=%zu\n",
		                     rev ? 'R' : 'V', rev ? REV : "", 0x10000 + i, i);
	}
	*len = l;
	return text;
}

static void test_snapshot_diff_large(void **state)
{
	(void)state;
	size_t la, lb;
	char *ta = numbered_index(300, false, &la), *tb = numbered_index(300, true, &lb);
	char err[200];
	struct index_snapshot *a = index_parse(ta, la, err, sizeof(err));
	struct index_snapshot *b = index_parse(tb, lb, err, sizeof(err));
	size_t n = 0;
	struct store_serial *d = index_snapshot_diff(a, b, &n);
	assert_non_null(d);
	assert_int_equal(n, 150);
	for (size_t i = 0; i < n; i++) {
		struct store_record r;
		assert_true(index_snapshot_find(b, d[i].bytes, d[i].len, &r));
		assert_int_equal(r.status, STORE_REVOKED);
	}
	free(d);
	index_snapshot_free(a);
	index_snapshot_free(b);
	free(ta);
	free(tb);
}

/* ---- the store ---- */

struct lookup_result {
	int calls;
	enum store_error err;
	struct store_record rec;
};

static void on_lookup(void *arg, enum store_error err, const struct store_record *rec)
{
	struct lookup_result *r = arg;
	r->calls++;
	r->err = err;
	if (rec != NULL)
		r->rec = *rec;
}

static struct store_record lookup(struct store *s, const char *hex)
{
	struct store_serial ser = serial(hex);
	struct lookup_result r = {0};
	struct store_query q = {.serial = ser.bytes, .serial_len = ser.len};
	q.issuer = store_issuer(s, "any", NULL, 0, NULL, 0);
	store_lookup(s, &q, on_lookup, &r);
	assert_int_equal(r.calls, 1); /* the in-memory store answers at once */
	assert_int_equal(r.err, STORE_OK);
	return r.rec;
}

static void write_file(const char *path, const char *text)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0); /* as `openssl ca` does */
}

static void test_store_open_and_reload(void **state)
{
	(void)state;
	static const char v1[] = "V\t" EXP "\t\t01\tunknown\t/CN=a\n"
	                         "R\t" EXP "\t" REV ",keyCompromise\t02\tunknown\t/CN=b\n";
	static const char v2[] = "R\t" EXP "\t" REV ",superseded\t01\tunknown\t/CN=a\n"
	                         "R\t" EXP "\t" REV ",keyCompromise\t02\tunknown\t/CN=b\n"
	                         "V\t" EXP "\t\t03\tunknown\t/CN=c\n";
	char *path = testpki_temp_file(v1, strlen(v1));
	char err[512] = "";
	struct store *s = store_index_open(path, 1 << 20, err, sizeof(err));
	if (s == NULL)
		fail_msg("%s", err);
	assert_string_equal(s->ops->kind, "index");
	assert_string_equal(s->name, path);
	struct store_record r = lookup(s, "01");
	assert_int_equal(r.status, STORE_GOOD);
	r = lookup(s, "02");
	assert_int_equal(r.status, STORE_REVOKED);
	assert_int_equal(r.reason, 1);
	r = lookup(s, "03");
	assert_int_equal(r.status, STORE_NOT_ISSUED);
	assert_int_equal(r.reason, STORE_REASON_NONE);
	assert_int_equal(r.revoked_at, 0);

	write_file(path, v2);
	assert_int_equal(store_index_reload(s, err, sizeof(err)), 0);
	r = lookup(s, "01");
	assert_int_equal(r.status, STORE_REVOKED);
	assert_int_equal(r.reason, 4);
	r = lookup(s, "03");
	assert_int_equal(r.status, STORE_GOOD);

	/* A file that does not parse keeps the previous contents. */
	write_file(path, "V\t" EXP "\t\t04\tunknown\t/CN=d\nbroken line\n");
	err[0] = 0;
	assert_int_equal(store_index_reload(s, err, sizeof(err)), -1);
	char want[600];
	snprintf(want, sizeof(want), "%s: line 2: expected 6 tab-separated fields, found 1", path);
	assert_string_equal(err, want);
	r = lookup(s, "03");
	assert_int_equal(r.status, STORE_GOOD);
	r = lookup(s, "04");
	assert_int_equal(r.status, STORE_NOT_ISSUED);

	/* A gone file, too. */
	unlink(path);
	assert_int_equal(store_index_reload(s, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);
	r = lookup(s, "01");
	assert_int_equal(r.status, STORE_REVOKED);

	/* Serials longer than any INTEGER revd keeps are simply not issued. */
	uint8_t big[40] = {1};
	struct lookup_result lr = {0};
	struct store_query bq = {.serial = big, .serial_len = sizeof(big)};
	store_lookup(s, &bq, on_lookup, &lr);
	assert_int_equal(lr.calls, 1);
	assert_int_equal(lr.rec.status, STORE_NOT_ISSUED);

	store_index_unwatch(s); /* not watching: harmless */
	store_free(s);
	store_free(NULL);
	free(path);
}

static void test_store_open_errors(void **state)
{
	(void)state;
	char err[512] = "";
	char want[600];
	assert_null(store_index_open("/nonexistent/index.txt", 1 << 20, err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/index.txt: No such file or directory");
	assert_null(store_index_open("/", 1 << 20, err, sizeof(err)));
	assert_string_equal(err, "/: not a regular file");

	static const char text[] = "V\t" EXP "\t\t01\tunknown\t/CN=a\n"; /* 34 bytes */
	char *path = testpki_temp_file(text, strlen(text));
	struct store *s = store_index_open(path, strlen(text), err, sizeof(err));
	assert_non_null(s); /* exactly at the limit */
	store_free(s);
	assert_null(store_index_open(path, strlen(text) - 1, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: larger than the %zu-byte limit (index_max_bytes)", path,
	         strlen(text) - 1);
	assert_string_equal(err, want);
	unlink(path);
	free(path);

	path = testpki_temp_file("V\tbad\n", 6);
	assert_null(store_index_open(path, 1 << 20, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: line 1: expected 6 tab-separated fields, found 2", path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);
}

/* ---- watching, on a libuv loop ---- */

struct watch_ctx {
	const char *path;
	uv_loop_t *loop;
	uv_timer_t rewrite, give_up;
	int changes;
	size_t n_serials;
	bool saw_02, saw_03;
	bool timed_out;
};

static void on_change(void *arg, struct store *s, const struct store_serial *serials, size_t n)
{
	struct watch_ctx *w = arg;
	(void)s;
	w->changes++;
	w->n_serials = n;
	for (size_t i = 0; i < n; i++) {
		if (serials[i].len == 1 && serials[i].bytes[0] == 0x02)
			w->saw_02 = true;
		if (serials[i].len == 1 && serials[i].bytes[0] == 0x03)
			w->saw_03 = true;
	}
	uv_stop(w->loop);
}

static void on_rewrite(uv_timer_t *t)
{
	struct watch_ctx *w = t->data;
	write_file(w->path, "V\t" EXP "\t\t01\tunknown\t/CN=a\n"
	                    "R\t" EXP "\t" REV "\t02\tunknown\t/CN=b\n"
	                    "V\t" EXP "\t\t03\tunknown\t/CN=c\n");
}

static void on_give_up(uv_timer_t *t)
{
	struct watch_ctx *w = t->data;
	w->timed_out = true;
	uv_stop(w->loop);
}

static void test_store_watch(void **state)
{
	(void)state;
	static const char v1[] = "V\t" EXP "\t\t01\tunknown\t/CN=a\n"
	                         "V\t" EXP "\t\t02\tunknown\t/CN=b\n";
	char *path = testpki_temp_file(v1, strlen(v1));
	char err[512];
	struct store *s = store_index_open(path, 1 << 20, err, sizeof(err));
	assert_non_null(s);
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct watch_ctx w = {.path = path, .loop = &loop};
	assert_int_equal(store_index_watch(s, &loop, 10, on_change, &w), 0);
	uv_timer_init(&loop, &w.rewrite);
	uv_timer_init(&loop, &w.give_up);
	w.rewrite.data = w.give_up.data = &w;
	uv_timer_start(&w.rewrite, on_rewrite, 100, 0);
	uv_timer_start(&w.give_up, on_give_up, 5000, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_false(w.timed_out);
	assert_int_equal(w.changes, 1);
	assert_int_equal(w.n_serials, 2);
	assert_true(w.saw_02);
	assert_true(w.saw_03);
	assert_int_equal(lookup(s, "02").status, STORE_REVOKED);

	store_index_unwatch(s);
	uv_close((uv_handle_t *)&w.rewrite, NULL);
	uv_close((uv_handle_t *)&w.give_up, NULL);
	uv_run(&loop, UV_RUN_DEFAULT); /* close callbacks */
	assert_int_equal(uv_loop_close(&loop), 0);
	store_free(s);
	unlink(path);
	free(path);
}

/* ---- allocation failure ---- */

static void test_parse_torture(void **state)
{
	(void)state;
	size_t len;
	char *text = numbered_index(2100, true, &len); /* grows the entry array twice */
	unsigned long n;
	for (n = 1; n < 1000; n++) {
		char err[200] = "";
		failmalloc_arm(n);
		struct index_snapshot *snap = index_parse(text, len, err, sizeof(err));
		bool fired = failmalloc_fired();
		failmalloc_arm(0);
		if (fired) {
			if (snap != NULL)
				fail_msg("allocation %lu failed, yet the parse succeeded", n);
			assert_string_equal(err, "out of memory");
			continue;
		}
		assert_non_null(snap);
		assert_int_equal(index_snapshot_count(snap), 2100);
		index_snapshot_free(snap);
		break;
	}
	assert_true(n >= 4); /* snapshot, entries (x3 growth), slots */
	assert_true(n < 1000);
	free(text);
}

static void test_diff_torture(void **state)
{
	(void)state;
	size_t la, lb;
	char *ta = numbered_index(200, false, &la), *tb = numbered_index(200, true, &lb);
	char err[200];
	struct index_snapshot *a = index_parse(ta, la, err, sizeof(err));
	struct index_snapshot *b = index_parse(tb, lb, err, sizeof(err));
	unsigned long n;
	for (n = 1; n < 100; n++) {
		size_t count = 0;
		failmalloc_arm(n);
		struct store_serial *d = index_snapshot_diff(a, b, &count);
		bool fired = failmalloc_fired();
		failmalloc_arm(0);
		if (fired) {
			assert_null(d);
			continue;
		}
		assert_non_null(d);
		assert_int_equal(count, 100);
		free(d);
		break;
	}
	assert_true(n > 3);
	index_snapshot_free(a);
	index_snapshot_free(b);
	free(ta);
	free(tb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_every_form),
		cmocka_unit_test(test_empty_and_comment_only),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_duplicate_serials),
		cmocka_unit_test(test_serial_from_hex),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_many_entries),
		cmocka_unit_test(test_snapshot_diff),
		cmocka_unit_test(test_snapshot_diff_large),
		cmocka_unit_test(test_store_open_and_reload),
		cmocka_unit_test(test_store_open_errors),
		cmocka_unit_test(test_store_watch),
		cmocka_unit_test(test_parse_torture),
		cmocka_unit_test(test_diff_torture),
	};
	return cmocka_run_group_tests_name("index", tests, NULL, NULL);
}
