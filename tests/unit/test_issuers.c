/* ocsp/issuers: which configured CA a CertID names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocsp/issuers.h"
#include "ocsp/request.h"
#include "testpki.h"

static struct testpki pki;
static struct ocsp_signer *ca_signer, *resp_signer, *noeku_signer;

static int setup(void **state)
{
	(void)state;
	testpki_init(&pki);
	char err[256];
	ca_signer = ocsp_signer_new(pki.ca, pki.ca_key, NULL, false, OCSP_RID_BY_KEY, err,
	                            sizeof(err));
	resp_signer = ocsp_signer_new(pki.resp, pki.resp_key, NULL, true, OCSP_RID_BY_KEY, err,
	                              sizeof(err));
	noeku_signer = ocsp_signer_new(pki.noeku, pki.noeku_key, NULL, true, OCSP_RID_BY_KEY, err,
	                               sizeof(err));
	return ca_signer && resp_signer && noeku_signer ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	ocsp_signer_free(ca_signer);
	ocsp_signer_free(resp_signer);
	ocsp_signer_free(noeku_signer);
	testpki_free(&pki);
	return 0;
}

struct ids {
	uint8_t *der;
	size_t len;
	struct ocsp_request req;
};

static void make_ids(struct ids *r, const EVP_MD *md, X509 *issuer, uint64_t serial)
{
	r->der = testpki_request(md, issuer, &serial, 1, 0, &r->len);
	assert_int_equal(ocsp_request_decode(r->der, r->len, 1, &r->req), OCSP_DECODE_OK);
}

static void test_find_every_hash(void **state)
{
	(void)state;
	struct ocsp_issuers *t = ocsp_issuers_new();
	assert_non_null(t);
	char err[256] = "";
	struct ocsp_issuer *is = ocsp_issuers_add(t, "ca1", pki.ca, ca_signer, err, sizeof(err));
	assert_non_null(is);
	assert_int_equal(is->id, 0);
	assert_string_equal(is->name, "ca1");
	assert_false(is->delegated);
	assert_ptr_equal(is->signer, ca_signer);
	assert_int_equal(X509_cmp(is->cert, pki.ca), 0);
	assert_null(is->user);
	const EVP_MD *mds[] = {EVP_sha1(), EVP_sha256(), EVP_sha384(), EVP_sha512()};
	for (int m = 0; m < 4; m++) {
		struct ids ids;
		make_ids(&ids, mds[m], pki.ca, TESTPKI_LEAF_SERIAL);
		assert_int_equal(ids.req.certids[0].hash, (enum ocsp_hash)m);
		assert_ptr_equal(ocsp_issuers_find(t, &ids.req.certids[0]), is);
		/* The table's precomputed hashes are the ones OpenSSL put in the CertID. */
		assert_memory_equal(is->name_hash[m], ids.req.certids[0].name_hash,
		                    ocsp_hash_len((enum ocsp_hash)m));
		assert_memory_equal(is->key_hash[m], ids.req.certids[0].key_hash,
		                    ocsp_hash_len((enum ocsp_hash)m));
		free(ids.der);
	}
	ocsp_issuers_free(t);
}

/* The hashes a table would hold, for tools that build CertIDs without a table. */
static void test_issuer_hashes(void **state)
{
	(void)state;
	uint8_t nh[OCSP_HASH_COUNT][64], kh[OCSP_HASH_COUNT][64];
	memset(nh, 0, sizeof(nh));
	memset(kh, 0, sizeof(kh));
	assert_true(ocsp_issuer_hashes(pki.ca, nh, kh));
	const EVP_MD *mds[] = {EVP_sha1(), EVP_sha256(), EVP_sha384(), EVP_sha512()};
	for (int m = 0; m < OCSP_HASH_COUNT; m++) {
		struct ids ids;
		make_ids(&ids, mds[m], pki.ca, 1);
		size_t hl = ocsp_hash_len((enum ocsp_hash)m);
		assert_memory_equal(nh[m], ids.req.certids[0].name_hash, hl);
		assert_memory_equal(kh[m], ids.req.certids[0].key_hash, hl);
		free(ids.der);
	}
	/* Another CA, other hashes. */
	uint8_t nh2[OCSP_HASH_COUNT][64], kh2[OCSP_HASH_COUNT][64];
	assert_true(ocsp_issuer_hashes(pki.resp, nh2, kh2));
	assert_memory_not_equal(nh[OCSP_HASH_SHA256], nh2[OCSP_HASH_SHA256], 32);
	assert_memory_not_equal(kh[OCSP_HASH_SHA256], kh2[OCSP_HASH_SHA256], 32);
}

static void test_both_hashes_must_match(void **state)
{
	(void)state;
	struct ocsp_issuers *t = ocsp_issuers_new();
	char err[256];
	assert_non_null(ocsp_issuers_add(t, "ca1", pki.ca, ca_signer, err, sizeof(err)));
	struct ids ids;
	make_ids(&ids, EVP_sha256(), pki.ca, 1);
	struct ocsp_certid id = ids.req.certids[0];
	uint8_t name[64], key[64];
	memcpy(name, id.name_hash, 32);
	memcpy(key, id.key_hash, 32);
	id.name_hash = name;
	id.key_hash = key;
	assert_non_null(ocsp_issuers_find(t, &id));
	key[31] ^= 1; /* right name, wrong key */
	assert_null(ocsp_issuers_find(t, &id));
	key[31] ^= 1;
	name[0] ^= 0x80; /* wrong name, right key */
	assert_null(ocsp_issuers_find(t, &id));
	name[0] ^= 0x80;
	assert_non_null(ocsp_issuers_find(t, &id));
	/* Lengths must be the algorithm's. */
	id.name_hash_len = 20;
	assert_null(ocsp_issuers_find(t, &id));
	id.name_hash_len = 32;
	id.key_hash_len = 64;
	assert_null(ocsp_issuers_find(t, &id));
	id.key_hash_len = 32;
	/* The right bytes under the wrong algorithm. */
	id.hash = OCSP_HASH_SHA1;
	assert_null(ocsp_issuers_find(t, &id));
	id.hash = OCSP_HASH_UNKNOWN;
	assert_null(ocsp_issuers_find(t, &id));
	id.hash = OCSP_HASH_SHA256;
	assert_non_null(ocsp_issuers_find(t, &id));
	free(ids.der);
	ocsp_issuers_free(t);
}

/* A re-keyed CA shares its name with the old one; a CertID still names exactly one. */
static void test_same_name_other_key(void **state)
{
	(void)state;
	EVP_PKEY *k2 = testpki_key(TESTPKI_EC_P256);
	X509 *ca2 = testpki_cert("revd unit test CA", k2, NULL, NULL, 2, TESTPKI_CA);
	char err[256];
	struct ocsp_signer *s2 = ocsp_signer_new(ca2, k2, NULL, false, OCSP_RID_BY_KEY, err,
	                                         sizeof(err));
	assert_non_null(s2);
	struct ocsp_issuers *t = ocsp_issuers_new();
	struct ocsp_issuer *a = ocsp_issuers_add(t, "old", pki.ca, ca_signer, err, sizeof(err));
	struct ocsp_issuer *b = ocsp_issuers_add(t, "new", ca2, s2, err, sizeof(err));
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(b->id, 1);
	assert_memory_equal(a->name_hash[OCSP_HASH_SHA1], b->name_hash[OCSP_HASH_SHA1], 20);
	assert_memory_not_equal(a->key_hash[OCSP_HASH_SHA1], b->key_hash[OCSP_HASH_SHA1], 20);
	struct ids ia, ib;
	make_ids(&ia, EVP_sha1(), pki.ca, 5);
	make_ids(&ib, EVP_sha1(), ca2, 5);
	assert_ptr_equal(ocsp_issuers_find(t, &ia.req.certids[0]), a);
	assert_ptr_equal(ocsp_issuers_find(t, &ib.req.certids[0]), b);
	/* Right name, key hash of the other CA: not found unless both match one CA. */
	struct ocsp_certid mixed = ia.req.certids[0];
	mixed.key_hash = b->key_hash[OCSP_HASH_SHA1];
	mixed.name_hash = a->name_hash[OCSP_HASH_SHA1];
	assert_ptr_equal(ocsp_issuers_find(t, &mixed), b);
	uint8_t other_name[20];
	memset(other_name, 0x33, sizeof(other_name));
	mixed.name_hash = other_name;
	assert_null(ocsp_issuers_find(t, &mixed));
	free(ia.der);
	free(ib.der);
	ocsp_issuers_free(t);
	ocsp_signer_free(s2);
	X509_free(ca2);
	EVP_PKEY_free(k2);
}

static void test_delegated_signers(void **state)
{
	(void)state;
	char err[256];
	struct ocsp_issuers *t = ocsp_issuers_new();
	struct ocsp_issuer *is = ocsp_issuers_add(t, "ca", pki.ca, resp_signer, err, sizeof(err));
	assert_non_null(is);
	assert_true(is->delegated);
	ocsp_issuers_free(t);

	/* A delegated signer without the OCSPSigning EKU is refused. */
	t = ocsp_issuers_new();
	err[0] = 0;
	assert_null(ocsp_issuers_add(t, "ca", pki.ca, noeku_signer, err, sizeof(err)));
	assert_string_equal(err, "a delegated signer certificate needs extended key usage "
	                         "OCSPSigning");
	assert_int_equal(ocsp_issuers_count(t), 0);
	/* So is a responder certificate issued by another CA. */
	EVP_PKEY *k2 = testpki_key(TESTPKI_EC_P256);
	X509 *ca2 = testpki_cert("another CA", k2, NULL, NULL, 9, TESTPKI_CA);
	err[0] = 0;
	assert_null(ocsp_issuers_add(t, "ca2", ca2, resp_signer, err, sizeof(err)));
	assert_true(strstr(err, "not issued by this CA") != NULL);
	assert_int_equal(ocsp_issuers_count(t), 0);
	assert_int_equal(ERR_peek_error(), 0);
	ocsp_issuers_free(t);
	X509_free(ca2);
	EVP_PKEY_free(k2);
}

static void test_duplicates_and_accessors(void **state)
{
	(void)state;
	char err[256];
	struct ocsp_issuers *t = ocsp_issuers_new();
	assert_int_equal(ocsp_issuers_count(t), 0);
	assert_null(ocsp_issuers_get(t, 0));
	struct ocsp_issuer *a = ocsp_issuers_add(t, "first", pki.ca, ca_signer, err, sizeof(err));
	assert_non_null(a);
	err[0] = 0;
	assert_null(ocsp_issuers_add(t, "again", pki.ca, resp_signer, err, sizeof(err)));
	assert_string_equal(err, "this CA certificate is already configured as issuer 'first'");
	assert_int_equal(ocsp_issuers_count(t), 1);
	assert_ptr_equal(ocsp_issuers_get(t, 0), a);
	assert_null(ocsp_issuers_get(t, 1));
	assert_null(ocsp_issuers_get(t, (size_t)-1));
	int marker;
	a->user = &marker;
	struct ids ids;
	make_ids(&ids, EVP_sha1(), pki.ca, 1);
	assert_ptr_equal(ocsp_issuers_find(t, &ids.req.certids[0])->user, &marker);
	free(ids.der);
	ocsp_issuers_free(t);
	ocsp_issuers_free(NULL);
}

/* The table keeps its own references: the caller may let go of cert and signer. */
static void test_table_holds_references(void **state)
{
	(void)state;
	EVP_PKEY *k = testpki_key(TESTPKI_EC_P256);
	X509 *ca = testpki_cert("short-lived CA", k, NULL, NULL, 3, TESTPKI_CA);
	char err[256];
	struct ocsp_signer *s = ocsp_signer_new(ca, k, NULL, false, OCSP_RID_BY_KEY, err,
	                                        sizeof(err));
	assert_non_null(s);
	struct ocsp_issuers *t = ocsp_issuers_new();
	assert_non_null(ocsp_issuers_add(t, "x", ca, s, err, sizeof(err)));
	struct ids ids;
	make_ids(&ids, EVP_sha384(), ca, 1);
	ocsp_signer_free(s);
	X509_free(ca);
	EVP_PKEY_free(k);
	const struct ocsp_issuer *is = ocsp_issuers_find(t, &ids.req.certids[0]);
	assert_non_null(is);
	assert_non_null(X509_get_subject_name(is->cert));
	uint8_t sig[256];
	size_t siglen;
	assert_true(ocsp_signer_sign(is->signer, (const uint8_t *)"x", 1, sig, &siglen));
	free(ids.der);
	ocsp_issuers_free(t); /* frees the last references (LeakSanitizer checks) */
}

/* A bare self-signed certificate: cheap enough to make a thousand of. */
static X509 *bare_ca(EVP_PKEY *k, int i)
{
	X509 *x = X509_new();
	assert_non_null(x);
	char cn[32];
	snprintf(cn, sizeof(cn), "CA %d", i);
	X509_NAME *name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)cn, -1, -1, 0),
	                 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), i + 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, k), 1);
	assert_true(X509_sign(x, k, NULL) > 0);
	return x;
}

static void test_table_full(void **state)
{
	(void)state;
	EVP_PKEY *k = testpki_key(TESTPKI_ED25519);
	struct ocsp_issuers *t = ocsp_issuers_new();
	char err[256];
	X509 *last = NULL;
	for (int i = 0; i <= OCSP_MAX_ISSUERS; i++) {
		X509 *ca = bare_ca(k, i);
		struct ocsp_signer *s = ocsp_signer_new(ca, k, NULL, false, OCSP_RID_BY_KEY, err,
		                                        sizeof(err));
		assert_non_null(s);
		struct ocsp_issuer *is = ocsp_issuers_add(t, "ca", ca, s, err, sizeof(err));
		if (i < OCSP_MAX_ISSUERS) {
			assert_non_null(is);
			assert_int_equal(is->id, (unsigned)i);
		} else {
			assert_null(is);
			assert_string_equal(err, "too many issuers (at most 1024)");
		}
		ocsp_signer_free(s);
		if (i == OCSP_MAX_ISSUERS - 1)
			last = X509_dup(ca);
		X509_free(ca);
	}
	assert_int_equal(ocsp_issuers_count(t), OCSP_MAX_ISSUERS);
	/* The last one is found among the 1024 (same key for all: the name decides). */
	struct ids ids;
	make_ids(&ids, EVP_sha256(), last, 1);
	const struct ocsp_issuer *is = ocsp_issuers_find(t, &ids.req.certids[0]);
	assert_non_null(is);
	assert_int_equal(is->id, OCSP_MAX_ISSUERS - 1);
	free(ids.der);
	X509_free(last);
	ocsp_issuers_free(t);
	EVP_PKEY_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_every_hash),
		cmocka_unit_test(test_issuer_hashes),
		cmocka_unit_test(test_both_hashes_must_match),
		cmocka_unit_test(test_same_name_other_key),
		cmocka_unit_test(test_delegated_signers),
		cmocka_unit_test(test_duplicates_and_accessors),
		cmocka_unit_test(test_table_holds_references),
		cmocka_unit_test(test_table_full),
	};
	return cmocka_run_group_tests_name("issuers", tests, setup, teardown);
}
