/* The revocation API's parsers: JSON bodies, status queries, client identities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509v3.h>

#include "http/api.h"
#include "testpki.h"

static int body(enum api_op op, const char *json, struct api_call *c, char *err)
{
	return api_parse_body(op, (const uint8_t *)json, strlen(json), c, err, 256);
}

static void test_revoke_body(void **state)
{
	(void)state;
	struct api_call c;
	char err[256];
	assert_int_equal(body(API_REVOKE,
	                      "{\"issuer\": \"main\", \"serial\": \"0x01AF\", \"reason\": "
	                      "\"KEYCOMPROMISE\", \"invalidity_date\": \"2024-01-02T03:04:05Z\", "
	                      "\"revoked_at\": \"20240203040506Z\"}",
	                      &c, err),
	                 0);
	assert_string_equal(c.issuer, "main");
	assert_int_equal(c.ch.op, REVOKE_OP_REVOKE);
	assert_int_equal(c.ch.serial.len, 2);
	assert_memory_equal(c.ch.serial.bytes, "\x01\xaf", 2);
	assert_int_equal(c.ch.reason, 1);
	assert_int_equal(c.ch.invalidity_date, 1704164645);
	assert_int_equal(c.ch.revoked_at, 1706933106);
	assert_null(c.ch.issuer);
	/* Times and the invalidity date are optional. */
	assert_int_equal(body(API_REVOKE, "{\"issuer\":\"a b\",\"serial\":\"ff\",\"reason\":"
	                                  "\"certificateHold\"}", &c, err), 0);
	assert_int_equal(c.ch.reason, REVOKE_REASON_HOLD);
	assert_int_equal(c.ch.revoked_at, 0);
	assert_int_equal(c.ch.serial.len, 2); /* 0x00FF: positive */
}

static void expect_error(enum api_op op, const char *json, const char *msg)
{
	struct api_call c;
	char err[256];
	assert_int_equal(body(op, json, &c, err), -1);
	if (strstr(err, msg) == NULL)
		fail_msg("'%s': expected an error containing '%s', got '%s'", json, msg, err);
}

static void test_bad_bodies(void **state)
{
	(void)state;
	expect_error(API_REVOKE, "", "not JSON");
	expect_error(API_REVOKE, "{\"issuer\":\"main\"", "not JSON");
	expect_error(API_REVOKE, "[\"main\"]", "expected a JSON object");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"serial\":\"1\"}", "'reason' is required");
	expect_error(API_REVOKE, "{\"serial\":\"1\",\"reason\":\"superseded\"}",
	             "'issuer' is required");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"reason\":\"superseded\"}",
	             "'serial' is required");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"serial\":\"1\",\"reason\":\"superseded\","
	                         "\"comment\":\"x\"}", "unknown field 'comment'");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"issuer\":\"other\",\"serial\":\"1\","
	                         "\"reason\":\"superseded\"}", "not JSON");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"serial\":1,\"reason\":\"superseded\"}",
	             "serial: expected a string");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"serial\":\"xyz\",\"reason\":\"superseded\"}",
	             "serial: expected a serial number");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"serial\":\"1\",\"reason\":\"removeFromCRL\"}",
	             "reason: unknown reason");
	expect_error(API_REVOKE, "{\"issuer\":\"main\",\"serial\":\"1\",\"reason\":\"superseded\","
	                         "\"revoked_at\":\"yesterday\"}", "revoked_at: expected a time");
	expect_error(API_REVOKE, "{\"issuer\":\"ma\\u0000in\",\"serial\":\"1\",\"reason\":\"x\"}",
	             "not JSON"); /* jansson refuses NUL in strings */
	expect_error(API_REVOKE, "{\"issuer\":\"ma\\u00e9in\",\"serial\":\"1\",\"reason\":\"x\"}",
	             "issuer: expected");
	expect_error(API_REVOKE, "{\"issuer\":\"\",\"serial\":\"1\",\"reason\":\"x\"}",
	             "issuer: expected");
	/* An unhold takes no reason or time. */
	expect_error(API_UNHOLD, "{\"issuer\":\"main\",\"serial\":\"1\",\"reason\":\"superseded\"}",
	             "unknown field 'reason'");
	struct api_call c;
	char err[256];
	assert_int_equal(body(API_UNHOLD, "{\"issuer\":\"main\",\"serial\":\"1\"}", &c, err), 0);
	assert_int_equal(c.ch.op, REVOKE_OP_UNHOLD);
	/* Over the body limit: refused before it is parsed. */
	static uint8_t big[API_MAX_BODY + 1];
	memset(big, ' ', sizeof(big));
	assert_int_equal(api_parse_body(API_REVOKE, big, sizeof(big), &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "larger than"));
}

static int query(const char *q, struct api_call *c, char *err)
{
	return api_parse_query(q, strlen(q), c, err, 256);
}

static void test_queries(void **state)
{
	(void)state;
	struct api_call c;
	char err[256];
	assert_int_equal(query("issuer=my%20ca&serial=0x1001", &c, err), 0);
	assert_string_equal(c.issuer, "my ca");
	assert_int_equal(c.op, API_STATUS);
	assert_memory_equal(c.ch.serial.bytes, "\x10\x01", 2);
	assert_int_equal(query("serial=FF&issuer=a+b", &c, err), 0);
	assert_string_equal(c.issuer, "a b");
	static const char *const bad[] = {
		"", "issuer=main", "serial=1", "issuer=main&serial=1&serial=2", "issuer=main&serial",
		"issuer=main&serial=1&x=2", "issuer=m%2&serial=1", "issuer=m%00&serial=1",
		"issuer=%ff&serial=1", "issuer=main&serial=%zz",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (query(bad[i], &c, err) != -1)
			fail_msg("query '%s' was accepted", bad[i]);
}

/* A certificate with these subjectAltNames (NULL: none). */
static X509 *cert_with(const char *cn, const char *san)
{
	EVP_PKEY *k = testpki_key(TESTPKI_EC_P256);
	X509 *x = testpki_cert(cn, k, NULL, k, 7, 0);
	if (san != NULL) {
		X509V3_CTX ctx;
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		assert_non_null(e);
		assert_int_equal(X509_add_ext(x, e, -1), 1);
		X509_EXTENSION_free(e);
		assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	}
	EVP_PKEY_free(k);
	return x;
}

static bool allowed(const char *cn, const char *san, char *who)
{
	static char *const allow[] = {"ca-service.example", "spiffe://example.org/ca",
	                              "Payments client"};
	X509 *x = cert_with(cn, san);
	bool ok = api_identity_allowed(x, allow, 3, who, 128);
	X509_free(x);
	return ok;
}

static void test_identities(void **state)
{
	(void)state;
	char who[128];
	assert_true(allowed("x", "DNS:CA-Service.Example", who));
	assert_string_equal(who, "CA-Service.Example");
	assert_true(allowed("x", "DNS:other.example, URI:spiffe://example.org/ca", who));
	assert_string_equal(who, "spiffe://example.org/ca");
	/* URIs match exactly. */
	assert_false(allowed("x", "URI:SPIFFE://example.org/ca", who));
	assert_false(allowed("ca-service.example", "DNS:other.example", who));
	assert_string_equal(who, "other.example");
	/* The common name counts only without DNS or URI names. */
	assert_true(allowed("Payments client", NULL, who));
	assert_string_equal(who, "CN=Payments client");
	assert_true(allowed("Payments client", "email:a@example.org", who));
	assert_false(allowed("Payments client", "DNS:pay.example", who));
	assert_false(allowed("payments client", NULL, who));
	/* An entry with "://" is a URI and matches URIs only; the others match DNS names
	 * (and commonNames) only. */
	assert_false(allowed("x", "DNS:spiffe://example.org/ca", who));
	assert_false(allowed("x", "URI:ca-service.example", who));
	/* A DNS name that cannot match (not printable) still hides the commonName. */
	assert_false(allowed("ca-service.example", "DNS:bad\x01name", who));
	assert_false(allowed("Payments client", "URI:spiffe://other/x", who));
		/* No certificate. */
	assert_false(api_identity_allowed(NULL, NULL, 0, who, sizeof(who)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_revoke_body),
		cmocka_unit_test(test_bad_bodies),
		cmocka_unit_test(test_queries),
		cmocka_unit_test(test_identities),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
