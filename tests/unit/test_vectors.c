/*
 * The RFC 9919 appendix example (../shared/vectors/rfc9919): revd's decoder must read
 * its request, and the issuer table built from its CA certificate must find the CA
 * from the request's CertID, which proves the name and key hashes are computed as the
 * RFC's authors computed them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/ocsp.h>

#include "core/pem.h"
#include "ocsp/issuers.h"
#include "ocsp/request.h"

#ifndef REVD_VECTORS_DIR
#error "REVD_VECTORS_DIR must name shared/vectors"
#endif

static uint8_t *read_file(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/rfc9919/%s", REVD_VECTORS_DIR, name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	uint8_t *buf = malloc(65536);
	assert_non_null(buf);
	*len = fread(buf, 1, 65536, f);
	fclose(f);
	return buf;
}

static void test_rfc9919_request_decodes(void **state)
{
	size_t len;
	uint8_t *der = read_file("request.der", &len);
	struct ocsp_request req;
	assert_int_equal(ocsp_request_decode(der, len, 20, &req), OCSP_DECODE_OK);
	assert_int_equal(req.n_certids, 1);
	const struct ocsp_certid *id = &req.certids[0];
	assert_int_equal(id->hash, OCSP_HASH_SHA256);
	assert_true(id->hash_params_null);
	static const uint8_t serial[] = {0x01, 0xaa, 0xf0, 0x0d};
	assert_int_equal(id->serial_len, sizeof(serial));
	assert_memory_equal(id->serial, serial, sizeof(serial));
	static const uint8_t name_hash[] = {
		0x3a, 0x99, 0x46, 0x77, 0x56, 0x80, 0x73, 0xa7, 0x07, 0xbf, 0xde,
		0x50, 0x18, 0x63, 0x45, 0xe4, 0xcd, 0x61, 0x34, 0xdb, 0x08, 0x5e,
		0xba, 0xa1, 0xd1, 0x04, 0x25, 0xf0, 0x3b, 0x6f, 0x08, 0xea};
	assert_int_equal(id->name_hash_len, 32);
	assert_memory_equal(id->name_hash, name_hash, 32);
	assert_false(req.has_nonce);
	/* Every strict prefix is refused. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_not_equal(ocsp_request_decode(der, cut, 20, &req), OCSP_DECODE_OK);
	free(der);
}

/* OpenSSL's CertID for the RFC's CA and serial must equal what revd decoded. */
static void test_rfc9919_certid_matches_openssl(void **state)
{
	char err[256], path[512];
	snprintf(path, sizeof(path), "%s/rfc9919/ca.pem", REVD_VECTORS_DIR);
	STACK_OF(X509) *ca = pem_load_certs(path, err, sizeof(err));
	assert_non_null(ca);
	snprintf(path, sizeof(path), "%s/rfc9919/ee.pem", REVD_VECTORS_DIR);
	STACK_OF(X509) *ee = pem_load_certs(path, err, sizeof(err));
	assert_non_null(ee);
	OCSP_CERTID *cid = OCSP_cert_to_id(EVP_sha256(), sk_X509_value(ee, 0), sk_X509_value(ca, 0));
	assert_non_null(cid);
	ASN1_OCTET_STRING *name_hash = NULL, *key_hash = NULL;
	ASN1_INTEGER *serial = NULL;
	assert_int_equal(OCSP_id_get0_info(&name_hash, NULL, &key_hash, &serial, cid), 1);

	size_t len;
	uint8_t *der = read_file("request.der", &len);
	struct ocsp_request req;
	assert_int_equal(ocsp_request_decode(der, len, 20, &req), OCSP_DECODE_OK);
	const struct ocsp_certid *id = &req.certids[0];
	assert_int_equal(id->name_hash_len, (size_t)ASN1_STRING_length(name_hash));
	assert_memory_equal(id->name_hash, ASN1_STRING_get0_data(name_hash), id->name_hash_len);
	assert_int_equal(id->key_hash_len, (size_t)ASN1_STRING_length(key_hash));
	assert_memory_equal(id->key_hash, ASN1_STRING_get0_data(key_hash), id->key_hash_len);
	assert_int_equal(id->serial_len, (size_t)ASN1_STRING_length(serial));
	assert_memory_equal(id->serial, ASN1_STRING_get0_data(serial), id->serial_len);

	OCSP_CERTID_free(cid);
	free(der);
	sk_X509_pop_free(ca, X509_free);
	sk_X509_pop_free(ee, X509_free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc9919_request_decodes),
		cmocka_unit_test(test_rfc9919_certid_matches_openssl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
