/*
 * ocsp/response and ocsp/signer: responses built by revd, read back and verified by
 * OpenSSL; signer construction and delegation rules; allocation-failure torture.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "failmalloc.h"
#include "ocsp/request.h"
#include "ocsp/response.h"
#include "ocsp/signer.h"
#include "testpki.h"

#define T0 ((int64_t)1700000000) /* 2023-11-14T22:13:20Z */

static struct testpki pki;
static struct ocsp_signer *ca_signer;   /* the CA itself, ResponderID byKey, no certs */
static struct ocsp_signer *resp_signer; /* delegated, byName, sends its certificate */

static int setup(void **state)
{
	(void)state;
	testpki_init(&pki);
	char err[256] = "";
	ca_signer = ocsp_signer_new(pki.ca, pki.ca_key, NULL, false, OCSP_RID_BY_KEY, err,
	                            sizeof(err));
	resp_signer = ocsp_signer_new(pki.resp, pki.resp_key, NULL, true, OCSP_RID_BY_NAME, err,
	                              sizeof(err));
	if (ca_signer == NULL || resp_signer == NULL) {
		fprintf(stderr, "signer: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ocsp_signer_free(ca_signer);
	ocsp_signer_free(resp_signer);
	testpki_free(&pki);
	return 0;
}

/* CertIDs as a client sends them: an OpenSSL request, decoded by revd. */
struct ids {
	uint8_t *der;
	size_t len;
	struct ocsp_request req;
};

static void make_ids(struct ids *r, const EVP_MD *md, const uint64_t *serials, size_t n,
                     size_t nonce_len)
{
	r->der = testpki_request(md, pki.ca, serials, n, nonce_len, &r->len);
	assert_int_equal(ocsp_request_decode(r->der, r->len, 64, &r->req), OCSP_DECODE_OK);
}

static struct ocsp_single good(const struct ocsp_certid *id)
{
	struct ocsp_single s = {.certid = id,
	                        .status = OCSP_STATUS_GOOD,
	                        .reason = OCSP_REASON_NONE,
	                        .this_update = T0,
	                        .next_update = T0 + 86400};
	return s;
}

static uint8_t *build(const struct ocsp_response_spec *spec, size_t *len)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	assert_true(ocsp_response_build(spec, &out));
	assert_false(out.failed);
	return buf_steal(&out, len);
}

/*
 * Parses der as OpenSSL does, checks that OpenSSL re-encodes both the OCSPResponse and
 * the BasicOCSPResponse inside it to the same bytes (revd writes canonical DER), and
 * returns the BasicOCSPResponse.
 */
static OCSP_BASICRESP *parse_basic(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	assert_non_null(resp);
	assert_ptr_equal(p, der + len);
	assert_int_equal(OCSP_response_status(resp), OCSP_RESPONSE_STATUS_SUCCESSFUL);
	unsigned char *re = NULL;
	int rl = i2d_OCSP_RESPONSE(resp, &re);
	assert_int_equal(rl, (int)len);
	assert_memory_equal(re, der, len);
	OPENSSL_free(re);
	OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
	assert_non_null(bs);
	OCSP_RESPONSE_free(resp);
	re = NULL;
	rl = i2d_OCSP_BASICRESP(bs, &re);
	assert_true(rl > 0);
	assert_non_null(memmem(der, len, re, (size_t)rl));
	OPENSSL_free(re);
	return bs;
}

/*
 * A full verification with the CA as the trust anchor: the signer is looked for in the
 * response's certs and in untrusted (NULL: the CA certificate, as `openssl ocsp
 * -issuer` gives it), then its chain, EKU and issuer match are checked.
 */
static int verify_with_ca(OCSP_BASICRESP *bs, STACK_OF(X509) *untrusted)
{
	X509_STORE *st = X509_STORE_new();
	assert_int_equal(X509_STORE_add_cert(st, pki.ca), 1);
	STACK_OF(X509) *ca_only = sk_X509_new_null();
	sk_X509_push(ca_only, pki.ca);
	int r = OCSP_basic_verify(bs, untrusted ? untrusted : ca_only, st, 0);
	sk_X509_free(ca_only);
	X509_STORE_free(st);
	ERR_clear_error();
	return r;
}

/* Only the signature, with signer given as trusted. */
static int verify_trust_other(OCSP_BASICRESP *bs, X509 *signer)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	sk_X509_push(certs, signer);
	X509_STORE *st = X509_STORE_new();
	int r = OCSP_basic_verify(bs, certs, st, OCSP_TRUSTOTHER);
	X509_STORE_free(st);
	sk_X509_free(certs);
	ERR_clear_error();
	return r;
}

static void find_status(OCSP_BASICRESP *bs, const EVP_MD *md, uint64_t serial, int *status,
                        int *reason, int64_t *rev, int64_t *thisupd, int64_t *nextupd)
{
	ASN1_INTEGER *sn = ASN1_INTEGER_new();
	assert_int_equal(ASN1_INTEGER_set_uint64(sn, serial), 1);
	OCSP_CERTID *id = OCSP_cert_id_new(md, X509_get_subject_name(pki.ca),
	                                   X509_get0_pubkey_bitstr(pki.ca), sn);
	ASN1_INTEGER_free(sn);
	ASN1_GENERALIZEDTIME *r = NULL, *tu = NULL, *nu = NULL;
	*reason = -99;
	int ok = OCSP_resp_find_status(bs, id, status, reason, &r, &tu, &nu);
	OCSP_CERTID_free(id);
	assert_int_equal(ok, 1);
	*rev = r ? testpki_asn1_time(r) : INT64_MIN;
	*thisupd = tu ? testpki_asn1_time(tu) : INT64_MIN;
	*nextupd = nu ? testpki_asn1_time(nu) : INT64_MIN;
}

static void test_good_direct_by_key(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 0);
	struct ocsp_single s = good(&ids.req.certids[0]);
	struct ocsp_response_spec spec = {
		.signer = ca_signer, .produced_at = T0 + 5, .singles = &s, .n_singles = 1};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);

	assert_int_equal(verify_with_ca(bs, NULL), 1);
	assert_int_equal(verify_trust_other(bs, pki.ca), 1);
	/* Signed by the CA, so the delegated responder's key does not verify it. */
	assert_true(verify_trust_other(bs, pki.resp) <= 0);

	int status, reason;
	int64_t rev, tu, nu;
	find_status(bs, EVP_sha1(), TESTPKI_LEAF_SERIAL, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(status, V_OCSP_CERTSTATUS_GOOD);
	assert_int_equal(tu, T0);
	assert_int_equal(nu, T0 + 86400);
	assert_int_equal(testpki_asn1_time(OCSP_resp_get0_produced_at(bs)), T0 + 5);
	assert_int_equal(OCSP_resp_count(bs), 1);

	/* ResponderID byKey: SHA-1 of the CA's public key BIT STRING value. */
	const ASN1_OCTET_STRING *kid = NULL;
	const X509_NAME *rname = NULL;
	assert_int_equal(OCSP_resp_get0_id(bs, &kid, &rname), 1);
	assert_null(rname);
	assert_non_null(kid);
	uint8_t md[20];
	unsigned int mdlen;
	assert_int_equal(X509_pubkey_digest(pki.ca, EVP_sha1(), md, &mdlen), 1);
	assert_int_equal(ASN1_STRING_length(kid), 20);
	assert_memory_equal(ASN1_STRING_get0_data(kid), md, 20);

	assert_null(OCSP_resp_get0_certs(bs)); /* no certs field at all */
	assert_int_equal(OBJ_obj2nid(OCSP_resp_get0_tbs_sigalg(bs)->algorithm),
	                 NID_ecdsa_with_SHA256);
	assert_int_equal(OCSP_BASICRESP_get_ext_count(bs), 0);
	/* The version is the DEFAULT v1, so left out: ResponseData starts with [2] byKey. */
	assert_non_null(memmem(der, len, (const uint8_t[]){0xa2, 0x16, 0x04, 0x14}, 4));

	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

static void test_good_delegated_by_name(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL, 77};
	struct ids ids;
	make_ids(&ids, EVP_sha256(), serials, 2, 0);
	struct ocsp_single s[2] = {good(&ids.req.certids[0]), good(&ids.req.certids[1])};
	s[1].status = OCSP_STATUS_UNKNOWN;
	struct ocsp_response_spec spec = {
		.signer = resp_signer, .produced_at = T0, .singles = s, .n_singles = 2};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);

	/* The chain responder -> CA, the OCSPSigning EKU and the issuer match all check. */
	assert_int_equal(verify_with_ca(bs, NULL), 1);
	const STACK_OF(X509) *certs = OCSP_resp_get0_certs(bs);
	assert_int_equal(sk_X509_num(certs), 1);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 0), pki.resp), 0);

	const ASN1_OCTET_STRING *kid = NULL;
	const X509_NAME *rname = NULL;
	assert_int_equal(OCSP_resp_get0_id(bs, &kid, &rname), 1);
	assert_null(kid);
	assert_non_null(rname);
	assert_int_equal(X509_NAME_cmp(rname, X509_get_subject_name(pki.resp)), 0);

	int status, reason;
	int64_t rev, tu, nu;
	find_status(bs, EVP_sha256(), TESTPKI_LEAF_SERIAL, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(status, V_OCSP_CERTSTATUS_GOOD);
	find_status(bs, EVP_sha256(), 77, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(status, V_OCSP_CERTSTATUS_UNKNOWN);
	assert_int_equal(tu, T0);
	assert_int_equal(nu, T0 + 86400);
	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

static void test_revoked_with_reason_and_invalidity_date(void **state)
{
	(void)state;
	static const uint64_t serials[] = {0x2002, 0x2003, 0x2004};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 3, 0);
	struct ocsp_single s[3];
	for (int i = 0; i < 3; i++) {
		s[i] = good(&ids.req.certids[i]);
		s[i].status = OCSP_STATUS_REVOKED;
		s[i].revoked_at = T0 - 1000 - i;
	}
	s[0].reason = OCSP_REASON_KEY_COMPROMISE;
	s[0].invalidity_date = T0 - 5000;
	s[1].reason = OCSP_REASON_NONE;
	s[2].reason = OCSP_REASON_AA_COMPROMISE;
	struct ocsp_response_spec spec = {
		.signer = ca_signer, .produced_at = T0, .singles = s, .n_singles = 3};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	assert_int_equal(verify_with_ca(bs, NULL), 1);

	int status, reason;
	int64_t rev, tu, nu;
	find_status(bs, EVP_sha1(), 0x2002, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(status, V_OCSP_CERTSTATUS_REVOKED);
	assert_int_equal(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
	assert_int_equal(rev, T0 - 1000);
	assert_int_equal(tu, T0);
	assert_int_equal(nu, T0 + 86400);
	find_status(bs, EVP_sha1(), 0x2003, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(status, V_OCSP_CERTSTATUS_REVOKED);
	assert_int_equal(reason, OCSP_REVOKED_STATUS_NOSTATUS); /* revocationReason left out */
	assert_int_equal(rev, T0 - 1001);
	find_status(bs, EVP_sha1(), 0x2004, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(reason, OCSP_REVOKED_STATUS_AACOMPROMISE);

	/* invalidityDate: a singleExtension of the first answer only, not critical. */
	OCSP_SINGLERESP *one = OCSP_resp_get0(bs, 0);
	assert_int_equal(OCSP_SINGLERESP_get_ext_count(one), 1);
	int idx = OCSP_SINGLERESP_get_ext_by_NID(one, NID_invalidity_date, -1);
	assert_int_equal(idx, 0);
	X509_EXTENSION *ext = OCSP_SINGLERESP_get_ext(one, idx);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 0);
	ASN1_GENERALIZEDTIME *inv = X509V3_EXT_d2i(ext);
	assert_non_null(inv);
	assert_int_equal(testpki_asn1_time(inv), T0 - 5000);
	ASN1_GENERALIZEDTIME_free(inv);
	assert_int_equal(OCSP_SINGLERESP_get_ext_count(OCSP_resp_get0(bs, 1)), 0);
	assert_int_equal(OCSP_SINGLERESP_get_ext_count(OCSP_resp_get0(bs, 2)), 0);
	assert_int_equal(OCSP_BASICRESP_get_ext_count(bs), 0);
	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

/* Every CRLReason revd writes comes back as itself. */
static void test_every_reason(void **state)
{
	(void)state;
	static const int reasons[] = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10};
	uint64_t serials[10];
	for (int i = 0; i < 10; i++)
		serials[i] = 100 + (uint64_t)i;
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 10, 0);
	struct ocsp_single s[10];
	for (int i = 0; i < 10; i++) {
		s[i] = good(&ids.req.certids[i]);
		s[i].status = OCSP_STATUS_REVOKED;
		s[i].revoked_at = T0;
		s[i].reason = reasons[i];
	}
	struct ocsp_response_spec spec = {
		.signer = ca_signer, .produced_at = T0, .singles = s, .n_singles = 10};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	for (int i = 0; i < 10; i++) {
		int status, reason;
		int64_t rev, tu, nu;
		find_status(bs, EVP_sha1(), serials[i], &status, &reason, &rev, &tu, &nu);
		assert_int_equal(status, V_OCSP_CERTSTATUS_REVOKED);
		assert_int_equal(reason, reasons[i]);
	}
	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

static void test_nonce_echo(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 32);
	assert_true(ids.req.has_nonce);
	const unsigned char *p = ids.der;
	OCSP_REQUEST *oreq = d2i_OCSP_REQUEST(NULL, &p, (long)ids.len);
	assert_non_null(oreq);

	struct ocsp_single s = good(&ids.req.certids[0]);
	struct ocsp_response_spec spec = {.signer = ca_signer,
	                                  .produced_at = T0,
	                                  .singles = &s,
	                                  .n_singles = 1,
	                                  .nonce_ext = ids.req.nonce_ext,
	                                  .nonce_ext_len = ids.req.nonce_ext_len};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	assert_int_equal(verify_with_ca(bs, NULL), 1);
	assert_int_equal(OCSP_check_nonce(oreq, bs), 1);
	assert_int_equal(OCSP_BASICRESP_get_ext_count(bs), 1);
	X509_EXTENSION *ext = OCSP_BASICRESP_get_ext(bs, 0);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 0);
	OCSP_BASICRESP_free(bs);
	free(der);

	/* Not echoing: OpenSSL sees a nonce in the request only. */
	spec.nonce_ext = NULL;
	spec.nonce_ext_len = 0;
	der = build(&spec, &len);
	bs = parse_basic(der, len);
	assert_int_equal(OCSP_check_nonce(oreq, bs), -1);
	OCSP_BASICRESP_free(bs);
	free(der);
	OCSP_REQUEST_free(oreq);
	free(ids.der);
}

/* RFC 6960 §2.2: a serial never issued, answered "revoked" with certificateHold at the
 * epoch, and the Extended Revoked Definition extension. */
static void test_extended_revoke(void **state)
{
	(void)state;
	static const uint64_t serials[] = {0xdead};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 16);
	struct ocsp_single s = good(&ids.req.certids[0]);
	s.status = OCSP_STATUS_REVOKED;
	s.revoked_at = 0;
	s.reason = OCSP_REASON_CERTIFICATE_HOLD;
	struct ocsp_response_spec spec = {.signer = ca_signer,
	                                  .produced_at = T0,
	                                  .singles = &s,
	                                  .n_singles = 1,
	                                  .nonce_ext = ids.req.nonce_ext,
	                                  .nonce_ext_len = ids.req.nonce_ext_len,
	                                  .extended_revoke = true};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	assert_int_equal(verify_with_ca(bs, NULL), 1);
	int status, reason;
	int64_t rev, tu, nu;
	find_status(bs, EVP_sha1(), 0xdead, &status, &reason, &rev, &tu, &nu);
	assert_int_equal(status, V_OCSP_CERTSTATUS_REVOKED);
	assert_int_equal(reason, OCSP_REVOKED_STATUS_CERTIFICATEHOLD);
	assert_int_equal(rev, 0);
	/* 19700101000000Z, as a GeneralizedTime. */
	assert_non_null(memmem(der, len, "\x18\x0f" "19700101000000Z", 17));

	ASN1_OBJECT *ext_revoke = OBJ_txt2obj("1.3.6.1.5.5.7.48.1.9", 1);
	int idx = OCSP_BASICRESP_get_ext_by_OBJ(bs, ext_revoke, -1);
	ASN1_OBJECT_free(ext_revoke);
	assert_true(idx >= 0);
	X509_EXTENSION *ext = OCSP_BASICRESP_get_ext(bs, idx);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 0);
	ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
	assert_int_equal(ASN1_STRING_length(v), 2);
	assert_memory_equal(ASN1_STRING_get0_data(v), "\x05\x00", 2);
	assert_int_equal(OCSP_BASICRESP_get_ext_count(bs), 2);
	assert_int_equal(OCSP_BASICRESP_get_ext_by_NID(bs, NID_id_pkix_OCSP_Nonce, -1) >= 0, 1);
	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

static void test_validity_window(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 0);
	int64_t now = (int64_t)time(NULL);
	struct ocsp_single s = good(&ids.req.certids[0]);
	s.this_update = now - 60;
	s.next_update = now + 3600;
	struct ocsp_response_spec spec = {
		.signer = ca_signer, .produced_at = now, .singles = &s, .n_singles = 1};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	OCSP_SINGLERESP *one = OCSP_resp_get0(bs, 0);
	ASN1_GENERALIZEDTIME *tu = NULL, *nu = NULL;
	int reason;
	assert_int_equal(OCSP_single_get0_status(one, &reason, NULL, &tu, &nu),
	                 V_OCSP_CERTSTATUS_GOOD);
	assert_int_equal(OCSP_check_validity(tu, nu, 300, -1), 1);
	assert_int_equal(OCSP_check_validity(tu, nu, 300, 30), 0); /* older than 30 s */
	OCSP_BASICRESP_free(bs);
	free(der);

	s.this_update = now - 7200;
	s.next_update = now - 3600; /* expired */
	der = build(&spec, &len);
	bs = parse_basic(der, len);
	one = OCSP_resp_get0(bs, 0);
	assert_int_equal(OCSP_single_get0_status(one, &reason, NULL, &tu, &nu),
	                 V_OCSP_CERTSTATUS_GOOD);
	assert_int_equal(OCSP_check_validity(tu, nu, 300, -1), 0);
	ERR_clear_error();
	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

/* 64 answers with SHA-512 CertIDs: lengths of three octets at the outer levels. */
static void test_many_singles(void **state)
{
	(void)state;
	uint64_t serials[64];
	for (int i = 0; i < 64; i++)
		serials[i] = 0x8000000000000000ULL + (uint64_t)i * 977;
	struct ids ids;
	make_ids(&ids, EVP_sha512(), serials, 64, 0);
	struct ocsp_single s[64];
	for (int i = 0; i < 64; i++) {
		s[i] = good(&ids.req.certids[i]);
		s[i].status = (enum ocsp_cert_status)(i % 3);
		s[i].revoked_at = T0 - i;
		s[i].reason = i % 2 ? OCSP_REASON_SUPERSEDED : OCSP_REASON_NONE;
		s[i].invalidity_date = i % 4 == 1 ? T0 - 10 * i : 0;
	}
	struct ocsp_response_spec spec = {
		.signer = resp_signer, .produced_at = T0, .singles = s, .n_singles = 64};
	size_t len;
	uint8_t *der = build(&spec, &len);
	assert_true(len > 65536 / 16);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	assert_int_equal(verify_with_ca(bs, NULL), 1);
	assert_int_equal(OCSP_resp_count(bs), 64);
	for (int i = 0; i < 64; i++) {
		int status, reason;
		int64_t rev, tu, nu;
		find_status(bs, EVP_sha512(), serials[i], &status, &reason, &rev, &tu, &nu);
		static const int want[3] = {V_OCSP_CERTSTATUS_GOOD, V_OCSP_CERTSTATUS_REVOKED,
		                            V_OCSP_CERTSTATUS_UNKNOWN};
		assert_int_equal(status, want[i % 3]);
		if (status == V_OCSP_CERTSTATUS_REVOKED) {
			assert_int_equal(rev, T0 - i);
			assert_int_equal(reason, i % 2 ? OCSP_REVOKED_STATUS_SUPERSEDED
			                                : OCSP_REVOKED_STATUS_NOSTATUS);
			int n_ext = OCSP_SINGLERESP_get_ext_count(OCSP_resp_get0(bs, i));
			assert_int_equal(n_ext, i % 4 == 1 ? 1 : 0);
		} else {
			/* invalidityDate belongs to revoked answers only. */
			assert_int_equal(OCSP_SINGLERESP_get_ext_count(OCSP_resp_get0(bs, i)), 0);
		}
	}
	OCSP_BASICRESP_free(bs);
	free(der);
	free(ids.der);
}

/* The CertID goes back exactly as it came: algorithm, parameters, hashes, serial. */
static void test_certid_echoed_verbatim(void **state)
{
	(void)state;
	const EVP_MD *mds[] = {EVP_sha1(), EVP_sha256(), EVP_sha384(), EVP_sha512()};
	for (int m = 0; m < 4; m++) {
		static const uint64_t serials[] = {0x80, 0x7fff};
		struct ids ids;
		make_ids(&ids, mds[m], serials, 2, 0);
		struct ocsp_certid id0 = ids.req.certids[0];
		id0.hash_params_null = false; /* as if the client left the parameters out */
		struct ocsp_single s[2] = {good(&id0), good(&ids.req.certids[1])};
		struct ocsp_response_spec spec = {
			.signer = ca_signer, .produced_at = T0, .singles = s, .n_singles = 2};
		size_t len;
		uint8_t *der = build(&spec, &len);
		OCSP_BASICRESP *bs = parse_basic(der, len);
		assert_int_equal(verify_with_ca(bs, NULL), 1);
		int status, reason;
		int64_t rev, tu, nu;
		find_status(bs, mds[m], 0x80, &status, &reason, &rev, &tu, &nu);
		assert_int_equal(status, V_OCSP_CERTSTATUS_GOOD);
		find_status(bs, mds[m], 0x7fff, &status, &reason, &rev, &tu, &nu);
		assert_int_equal(status, V_OCSP_CERTSTATUS_GOOD);
		/* The second CertID's encoding, NULL parameters included, is in the response. */
		const unsigned char *p = ids.der;
		OCSP_REQUEST *oreq = d2i_OCSP_REQUEST(NULL, &p, (long)ids.len);
		unsigned char *cder = NULL;
		int cl = i2d_OCSP_CERTID(OCSP_onereq_get0_id(OCSP_request_onereq_get0(oreq, 1)),
		                         &cder);
		assert_true(cl > 0);
		assert_non_null(memmem(der, len, cder, (size_t)cl));
		OPENSSL_free(cder);
		/* The first, without parameters. */
		OCSP_SINGLERESP *one = OCSP_resp_get0(bs, 0);
		const OCSP_CERTID *rid = OCSP_SINGLERESP_get0_id(one);
		cder = NULL;
		cl = i2d_OCSP_CERTID((OCSP_CERTID *)rid, &cder);
		assert_true(cl > 0);
		/* SEQUENCE { SEQUENCE { OID } ...: the AlgorithmIdentifier holds the OID only. */
		size_t hl = cder[1] < 0x80 ? 2 : 3;
		assert_int_equal(cder[hl], 0x30);
		assert_int_equal(cder[hl + 1], 2 + cder[hl + 3]);
		OPENSSL_free(cder);
		OCSP_REQUEST_free(oreq);
		OCSP_BASICRESP_free(bs);
		free(der);
		free(ids.der);
	}
}

/* Signers of every key type revd supports, each answer checked against its key. */
static void test_key_types(void **state)
{
	(void)state;
	static const struct {
		enum testpki_keytype type;
		int sig_nid;
		bool null_params;
		const char *describe;
	} types[] = {
		{TESTPKI_EC_P256, NID_ecdsa_with_SHA256, false, "ECDSA P-256 with SHA-256"},
		{TESTPKI_EC_P384, NID_ecdsa_with_SHA384, false, "ECDSA P-384 with SHA-384"},
		{TESTPKI_ED25519, NID_ED25519, false, "Ed25519"},
		{TESTPKI_RSA2048, NID_sha256WithRSAEncryption, true, "RSA-2048 with SHA-256"},
	};
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 0);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		EVP_PKEY *key = testpki_key(types[i].type);
		X509 *cert = testpki_cert("key type responder", key, pki.ca, pki.ca_key, 50 + i,
		                          TESTPKI_OCSP_SIGNING);
		char err[256] = "";
		struct ocsp_signer *sg =
			ocsp_signer_new(cert, key, NULL, true, OCSP_RID_BY_KEY, err, sizeof(err));
		if (sg == NULL)
			fail_msg("%s: %s", types[i].describe, err);
		assert_string_equal(ocsp_signer_describe(sg), types[i].describe);
		assert_ptr_equal(ocsp_signer_cert(sg), cert);
		struct ocsp_single s = good(&ids.req.certids[0]);
		struct ocsp_response_spec spec = {
			.signer = sg, .produced_at = T0, .singles = &s, .n_singles = 1};
		size_t len;
		uint8_t *der = build(&spec, &len);
		OCSP_BASICRESP *bs = parse_basic(der, len);
		assert_int_equal(verify_trust_other(bs, cert), 1);
		assert_int_equal(verify_with_ca(bs, NULL), 1);
		const X509_ALGOR *alg = OCSP_resp_get0_tbs_sigalg(bs);
		assert_int_equal(OBJ_obj2nid(alg->algorithm), types[i].sig_nid);
		int ptype;
		const void *pval;
		X509_ALGOR_get0(NULL, &ptype, &pval, alg);
		assert_int_equal(ptype, types[i].null_params ? V_ASN1_NULL : V_ASN1_UNDEF);
		OCSP_BASICRESP_free(bs);
		free(der);
		ocsp_signer_free(sg);
		X509_free(cert);
		EVP_PKEY_free(key);
	}
	free(ids.der);
}

static void test_extra_certs_and_no_cert(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 0);
	struct ocsp_single s = good(&ids.req.certids[0]);
	STACK_OF(X509) *extra = sk_X509_new_null();
	sk_X509_push(extra, pki.ca);
	char err[256];
	/* Delegated, its certificate plus the CA's. */
	struct ocsp_signer *sg = ocsp_signer_new(pki.resp, pki.resp_key, extra, true,
	                                         OCSP_RID_BY_KEY, err, sizeof(err));
	assert_non_null(sg);
	struct ocsp_response_spec spec = {
		.signer = sg, .produced_at = T0, .singles = &s, .n_singles = 1};
	size_t len;
	uint8_t *der = build(&spec, &len);
	OCSP_BASICRESP *bs = parse_basic(der, len);
	const STACK_OF(X509) *certs = OCSP_resp_get0_certs(bs);
	assert_int_equal(sk_X509_num(certs), 2);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 0), pki.resp), 0);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 1), pki.ca), 0);
	assert_int_equal(verify_with_ca(bs, NULL), 1);
	OCSP_BASICRESP_free(bs);
	free(der);
	ocsp_signer_free(sg);

	/* Delegated without its certificate: the client must be given it. */
	sg = ocsp_signer_new(pki.resp, pki.resp_key, NULL, false, OCSP_RID_BY_NAME, err,
	                     sizeof(err));
	assert_non_null(sg);
	spec.signer = sg;
	der = build(&spec, &len);
	bs = parse_basic(der, len);
	assert_null(OCSP_resp_get0_certs(bs)); /* no certs field at all */
	assert_true(verify_with_ca(bs, NULL) <= 0); /* signer not found */
	STACK_OF(X509) *given = sk_X509_new_null();
	sk_X509_push(given, pki.resp);
	assert_int_equal(verify_with_ca(bs, given), 1);
	sk_X509_free(given);
	OCSP_BASICRESP_free(bs);
	free(der);
	ocsp_signer_free(sg);
	sk_X509_free(extra);
	free(ids.der);
}

static void test_build_appends(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 0);
	struct ocsp_single s = good(&ids.req.certids[0]);
	struct ocsp_response_spec spec = {
		.signer = ca_signer, .produced_at = T0, .singles = &s, .n_singles = 1};
	struct buf out;
	buf_init(&out, 1 << 16);
	assert_true(buf_append(&out, "HTTP/1.1 200 OK\r\n\r\n", 19));
	assert_true(ocsp_response_build(&spec, &out));
	assert_memory_equal(out.data, "HTTP/1.1 200 OK\r\n\r\n", 19);
	OCSP_BASICRESP *bs = parse_basic(out.data + 19, out.len - 19);
	assert_int_equal(verify_with_ca(bs, NULL), 1);
	OCSP_BASICRESP_free(bs);
	buf_free(&out);
	free(ids.der);
}

static void test_build_failures(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 0);
	struct ocsp_single s = good(&ids.req.certids[0]);
	/* Ed25519 signatures have one length, so the answer's length is fixed. */
	EVP_PKEY *ek = testpki_key(TESTPKI_ED25519);
	X509 *ec = testpki_cert("ed25519 responder", ek, pki.ca, pki.ca_key, 70,
	                        TESTPKI_OCSP_SIGNING);
	char err[256];
	struct ocsp_signer *ed = ocsp_signer_new(ec, ek, NULL, true, OCSP_RID_BY_KEY, err,
	                                         sizeof(err));
	assert_non_null(ed);
	struct ocsp_response_spec spec = {
		.signer = ed, .produced_at = T0, .singles = &s, .n_singles = 1};
	/* Too small a buffer, at every size short of the answer. */
	size_t full;
	uint8_t *der = build(&spec, &full);
	free(der);
	size_t built_short = 0;
	for (size_t max = 0; max <= full; max++) {
		struct buf out;
		buf_init(&out, max);
		bool ok = ocsp_response_build(&spec, &out);
		if (ok && max < full)
			built_short++;
		if (max == full)
			assert_true(ok);
		buf_free(&out);
	}
	assert_int_equal(built_short, 0);
	ocsp_signer_free(ed);
	X509_free(ec);
	EVP_PKEY_free(ek);
	spec.signer = ca_signer;
	/* A CertID with a hash revd cannot name. */
	struct ocsp_certid odd = ids.req.certids[0];
	odd.hash = OCSP_HASH_UNKNOWN;
	s.certid = &odd;
	struct buf out;
	buf_init(&out, 1 << 16);
	assert_false(ocsp_response_build(&spec, &out));
	buf_free(&out);
	/* A time with no GeneralizedTime. */
	s.certid = &ids.req.certids[0];
	s.next_update = 253402300800LL; /* year 10000 */
	buf_init(&out, 1 << 16);
	assert_false(ocsp_response_build(&spec, &out));
	buf_free(&out);
	free(ids.der);
}

static void test_error_responses(void **state)
{
	(void)state;
	static const struct {
		enum ocsp_resp_status in;
		int out;
	} cases[] = {
		{OCSP_RESP_MALFORMED, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST},
		{OCSP_RESP_INTERNAL_ERROR, OCSP_RESPONSE_STATUS_INTERNALERROR},
		{OCSP_RESP_TRY_LATER, OCSP_RESPONSE_STATUS_TRYLATER},
		{OCSP_RESP_SIG_REQUIRED, OCSP_RESPONSE_STATUS_SIGREQUIRED},
		{OCSP_RESP_UNAUTHORIZED, OCSP_RESPONSE_STATUS_UNAUTHORIZED},
		/* Not error statuses: internalError rather than something invalid. */
		{OCSP_RESP_SUCCESSFUL, OCSP_RESPONSE_STATUS_INTERNALERROR},
		{(enum ocsp_resp_status)4, OCSP_RESPONSE_STATUS_INTERNALERROR},
		{(enum ocsp_resp_status)7, OCSP_RESPONSE_STATUS_INTERNALERROR},
		{(enum ocsp_resp_status)-1, OCSP_RESPONSE_STATUS_INTERNALERROR},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = 0;
		const uint8_t *der = ocsp_response_error(cases[i].in, &len);
		assert_int_equal(len, 5);
		const uint8_t want[5] = {0x30, 0x03, 0x0a, 0x01, (uint8_t)cases[i].out};
		assert_memory_equal(der, want, 5);
		const unsigned char *p = der;
		OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
		assert_non_null(r);
		assert_int_equal(OCSP_response_status(r), cases[i].out);
		assert_null(OCSP_response_get1_basic(r));
		ERR_clear_error();
		OCSP_RESPONSE_free(r);
	}
}

/* ---- signer ---- */

static void test_signer_refusals(void **state)
{
	(void)state;
	char err[256];
	/* A key that is not the certificate's. */
	err[0] = 0;
	assert_null(ocsp_signer_new(pki.resp, pki.ca_key, NULL, true, OCSP_RID_BY_KEY, err,
	                            sizeof(err)));
	assert_string_equal(err, "the signer key does not match the signer certificate");
	assert_int_equal(ERR_peek_error(), 0);
	/* RSA below 2048 bits. */
	EVP_PKEY *rsa = testpki_key(TESTPKI_RSA1024);
	X509 *c = testpki_cert("weak", rsa, pki.ca, pki.ca_key, 60, TESTPKI_OCSP_SIGNING);
	assert_null(ocsp_signer_new(c, rsa, NULL, true, OCSP_RID_BY_KEY, err, sizeof(err)));
	assert_string_equal(err, "RSA signer keys must have at least 2048 bits");
	X509_free(c);
	EVP_PKEY_free(rsa);
	/* A curve revd does not sign with. */
	EVP_PKEY *p224 = testpki_key(TESTPKI_EC_P224);
	c = testpki_cert("p224", p224, pki.ca, pki.ca_key, 61, TESTPKI_OCSP_SIGNING);
	assert_null(ocsp_signer_new(c, p224, NULL, true, OCSP_RID_BY_KEY, err, sizeof(err)));
	assert_string_equal(err, "unsupported EC curve secp224r1 (use P-256, P-384 or P-521)");
	X509_free(c);
	EVP_PKEY_free(p224);
	/* err may be NULL. */
	assert_null(ocsp_signer_new(pki.resp, pki.ca_key, NULL, true, OCSP_RID_BY_KEY, NULL, 0));
}

static void test_signer_references(void **state)
{
	(void)state;
	char err[256];
	struct ocsp_signer *sg = ocsp_signer_new(pki.ca, pki.ca_key, NULL, false, OCSP_RID_BY_KEY,
	                                         err, sizeof(err));
	assert_non_null(sg);
	assert_ptr_equal(ocsp_signer_ref(sg), sg);
	assert_ptr_equal(ocsp_signer_ref(sg), sg);
	ocsp_signer_free(sg);
	ocsp_signer_free(sg);
	/* Still usable with one holder left. */
	size_t len;
	assert_non_null(ocsp_signer_responder_id(sg, &len));
	assert_int_equal(len, 2 + 2 + 20);
	assert_null(ocsp_signer_certs(sg, &len));
	assert_int_equal(ocsp_signer_max_sig(sg), (size_t)EVP_PKEY_get_size(pki.ca_key));
	ocsp_signer_free(sg);
	ocsp_signer_free(NULL);
	/* The signer holds its own references to the certificate and the key. */
	EVP_PKEY *k = testpki_key(TESTPKI_EC_P256);
	X509 *c = testpki_cert("short-lived", k, pki.ca, pki.ca_key, 62, TESTPKI_OCSP_SIGNING);
	sg = ocsp_signer_new(c, k, NULL, true, OCSP_RID_BY_NAME, err, sizeof(err));
	assert_non_null(sg);
	X509_free(c);
	EVP_PKEY_free(k);
	static const uint8_t data[] = "to be signed";
	uint8_t sig[512];
	size_t siglen = 0;
	assert_true(ocsp_signer_max_sig(sg) <= sizeof(sig));
	assert_true(ocsp_signer_sign(sg, data, sizeof(data), sig, &siglen));
	assert_true(siglen > 0 && siglen <= ocsp_signer_max_sig(sg));
	EVP_PKEY *pub = X509_get0_pubkey(ocsp_signer_cert(sg));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(ctx, sig, siglen, data, sizeof(data)), 1);
	EVP_MD_CTX_free(ctx);
	ocsp_signer_free(sg);
}

static void test_signer_can_answer_for(void **state)
{
	(void)state;
	char err[256];
	bool delegated = true;
	assert_true(ocsp_signer_can_answer_for(ca_signer, pki.ca, &delegated, err, sizeof(err)));
	assert_false(delegated);
	delegated = false;
	assert_true(ocsp_signer_can_answer_for(resp_signer, pki.ca, &delegated, err, sizeof(err)));
	assert_true(delegated);

	/* Issued by the CA, but without OCSPSigning. */
	struct ocsp_signer *noeku = ocsp_signer_new(pki.noeku, pki.noeku_key, NULL, true,
	                                            OCSP_RID_BY_KEY, err, sizeof(err));
	assert_non_null(noeku);
	err[0] = 0;
	assert_false(ocsp_signer_can_answer_for(noeku, pki.ca, &delegated, err, sizeof(err)));
	assert_string_equal(err, "a delegated signer certificate needs extended key usage "
	                         "OCSPSigning");
	ocsp_signer_free(noeku);

	/* A responder of another CA. */
	EVP_PKEY *k2 = testpki_key(TESTPKI_EC_P256);
	X509 *ca2 = testpki_cert("another CA", k2, NULL, NULL, 1, TESTPKI_CA);
	assert_false(ocsp_signer_can_answer_for(resp_signer, ca2, &delegated, err, sizeof(err)));
	assert_string_equal(err, "the signer certificate was not issued by this CA (its issuer "
	                         "name or authority key identifier does not match)");
	/* The CA itself cannot answer for another CA. */
	assert_false(ocsp_signer_can_answer_for(ca_signer, ca2, &delegated, err, sizeof(err)));
	/* A CA with the same name as ours but another key (re-keyed): the signature fails. */
	X509 *twin = testpki_cert("revd unit test CA", k2, NULL, NULL, 1, TESTPKI_CA);
	X509 *forged = testpki_cert("revd unit test responder", pki.resp_key, twin, k2, 2,
	                            TESTPKI_OCSP_SIGNING);
	struct ocsp_signer *fs = ocsp_signer_new(forged, pki.resp_key, NULL, true,
	                                         OCSP_RID_BY_KEY, err, sizeof(err));
	assert_non_null(fs);
	err[0] = 0;
	assert_false(ocsp_signer_can_answer_for(fs, pki.ca, &delegated, err, sizeof(err)));
	assert_true(err[0] != 0);
	assert_int_equal(ERR_peek_error(), 0);
	ocsp_signer_free(fs);
	X509_free(forged);
	X509_free(twin);
	X509_free(ca2);
	EVP_PKEY_free(k2);
}

/* ---- allocation failure ---- */

static void test_build_torture(void **state)
{
	(void)state;
	uint64_t serials[40];
	for (int i = 0; i < 40; i++)
		serials[i] = 5000 + (uint64_t)i;
	struct ids ids;
	make_ids(&ids, EVP_sha256(), serials, 40, 32);
	struct ocsp_single s[40];
	for (int i = 0; i < 40; i++) {
		s[i] = good(&ids.req.certids[i]);
		s[i].status = i % 2 ? OCSP_STATUS_REVOKED : OCSP_STATUS_GOOD;
		s[i].revoked_at = T0 - 1;
		s[i].reason = OCSP_REASON_KEY_COMPROMISE;
		s[i].invalidity_date = T0 - 2;
	}
	struct ocsp_response_spec spec = {.signer = resp_signer,
	                                  .produced_at = T0,
	                                  .singles = s,
	                                  .n_singles = 40,
	                                  .nonce_ext = ids.req.nonce_ext,
	                                  .nonce_ext_len = ids.req.nonce_ext_len,
	                                  .extended_revoke = true};
	unsigned long n;
	for (n = 1; n < 1000; n++) {
		struct buf out;
		buf_init(&out, 1 << 20);
		failmalloc_arm(n);
		bool ok = ocsp_response_build(&spec, &out);
		bool fired = failmalloc_fired();
		failmalloc_arm(0);
		if (fired) {
			if (ok)
				fail_msg("allocation %lu failed, yet the build reported success", n);
			assert_true(out.failed);
			buf_free(&out);
			continue;
		}
		assert_true(ok);
		OCSP_BASICRESP *bs = parse_basic(out.data, out.len);
		assert_int_equal(verify_with_ca(bs, NULL), 1);
		OCSP_BASICRESP_free(bs);
		buf_free(&out);
		break;
	}
	assert_true(n > 2); /* the response needed several allocations, each failed once */
	assert_true(n < 1000);
	free(ids.der);
}

static void test_signer_new_torture(void **state)
{
	(void)state;
	STACK_OF(X509) *extra = sk_X509_new_null();
	sk_X509_push(extra, pki.ca);
	const enum ocsp_responder_id rids[2] = {OCSP_RID_BY_KEY, OCSP_RID_BY_NAME};
	for (int r = 0; r < 2; r++) {
		unsigned long n;
		for (n = 1; n < 1000; n++) {
			char err[256];
			failmalloc_arm(n);
			struct ocsp_signer *sg = ocsp_signer_new(pki.resp, pki.resp_key, extra, true,
			                                         rids[r], err, sizeof(err));
			bool fired = failmalloc_fired();
			failmalloc_arm(0);
			if (fired) {
				assert_null(sg);
				continue;
			}
			assert_non_null(sg);
			ocsp_signer_free(sg);
			break;
		}
		assert_true(n > 3);
		assert_true(n < 1000);
	}
	sk_X509_free(extra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_direct_by_key),
		cmocka_unit_test(test_good_delegated_by_name),
		cmocka_unit_test(test_revoked_with_reason_and_invalidity_date),
		cmocka_unit_test(test_every_reason),
		cmocka_unit_test(test_nonce_echo),
		cmocka_unit_test(test_extended_revoke),
		cmocka_unit_test(test_validity_window),
		cmocka_unit_test(test_many_singles),
		cmocka_unit_test(test_certid_echoed_verbatim),
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_extra_certs_and_no_cert),
		cmocka_unit_test(test_build_appends),
		cmocka_unit_test(test_build_failures),
		cmocka_unit_test(test_error_responses),
		cmocka_unit_test(test_signer_refusals),
		cmocka_unit_test(test_signer_references),
		cmocka_unit_test(test_signer_can_answer_for),
		cmocka_unit_test(test_build_torture),
		cmocka_unit_test(test_signer_new_torture),
	};
	return cmocka_run_group_tests_name("response", tests, setup, teardown);
}
