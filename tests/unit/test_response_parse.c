/*
 * ocsp/response_parse and ocsp_signer_verify: responses from revd's builder and from
 * OpenSSL read back field by field; the same responses cut short, extended and altered
 * one element at a time are refused as they should be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "failmalloc.h"
#include "ocsp/request.h"
#include "ocsp/response.h"
#include "ocsp/response_parse.h"
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
	return buf_steal(&out, len);
}

static bool within(const uint8_t *p, size_t n, const uint8_t *der, size_t len)
{
	return p != NULL && p >= der && n <= len && (size_t)(p - der) <= len - n;
}

static void assert_bytes(const uint8_t *p, size_t n, const uint8_t *want, size_t want_len)
{
	assert_int_equal(n, want_len);
	assert_memory_equal(p, want, n);
}

/* Parses der, which must succeed, and checks what every successful parse guarantees. */
static void parse_ok(const uint8_t *der, size_t len, struct ocsp_parsed_response *p)
{
	enum ocsp_parse_result r = ocsp_response_parse(der, len, p);
	if (r != OCSP_PARSE_OK)
		fail_msg("parse: %s", ocsp_parse_result_str(r));
	assert_int_equal(p->status, OCSP_RESP_SUCCESSFUL);
	assert_true(within(p->tbs, p->tbs_len, der, len));
	assert_int_equal(p->tbs[0], 0x30);
	assert_true(within(p->responder_id, p->responder_id_len, p->tbs, p->tbs_len));
	assert_true(p->n_singles >= 1);
	assert_true(within(p->sigalg, p->sigalg_len, der, len));
	assert_true(p->sigalg == p->tbs + p->tbs_len);
	assert_true(within(p->sig, p->sig_len, der, len));
	assert_true(p->sig_len >= 1);
	if (p->certs != NULL) {
		assert_true(p->certs == p->sig + p->sig_len);
		assert_true(p->certs + p->certs_len == der + len);
	} else {
		assert_true(p->sig + p->sig_len == der + len);
	}
	assert_int_equal(ERR_peek_error(), 0);
}

/* The pieces the signer contributed come back as the signer encoded them. */
static void assert_signed_by(const struct ocsp_parsed_response *p,
                             const struct ocsp_signer *sg)
{
	size_t n;
	const uint8_t *b = ocsp_signer_responder_id(sg, &n);
	assert_bytes(p->responder_id, p->responder_id_len, b, n);
	b = ocsp_signer_sigalg(sg, &n);
	assert_bytes(p->sigalg, p->sigalg_len, b, n);
	b = ocsp_signer_certs(sg, &n);
	if (b == NULL)
		assert_null(p->certs);
	else
		assert_bytes(p->certs, p->certs_len, b, n);
	assert_true(ocsp_signer_verify(sg, p->tbs, p->tbs_len, p->sig, p->sig_len));
	assert_true(ocsp_parsed_signed_by(p, sg));
}

/* OpenSSL's view of the same response: tbsResponseData and signature bytes agree. */
static void assert_openssl_agrees(const uint8_t *der, size_t len,
                                  const struct ocsp_parsed_response *p)
{
	const unsigned char *q = der;
	OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &q, (long)len);
	assert_non_null(resp);
	OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
	assert_non_null(bs);
	unsigned char *tbs = NULL;
	int n = i2d_OCSP_RESPDATA((OCSP_RESPDATA *)OCSP_resp_get0_respdata(bs), &tbs);
	assert_bytes(p->tbs, p->tbs_len, tbs, (size_t)n);
	OPENSSL_free(tbs);
	const ASN1_OCTET_STRING *sig = OCSP_resp_get0_signature(bs);
	assert_bytes(p->sig, p->sig_len, ASN1_STRING_get0_data(sig),
	             (size_t)ASN1_STRING_length(sig));
	assert_int_equal(OCSP_resp_count(bs), (int)p->n_singles);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
}

/* ---- the builder's answers, read back ---- */

static void test_good_by_key(void **state)
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
	struct ocsp_parsed_response p;
	parse_ok(der, len, &p);
	assert_signed_by(&p, ca_signer);
	assert_openssl_agrees(der, len, &p);
	assert_int_equal(p.produced_at, T0 + 5);
	assert_int_equal(p.n_singles, 1);
	assert_int_equal(p.single.status, OCSP_STATUS_GOOD);
	assert_int_equal(p.single.reason, OCSP_REASON_NONE);
	assert_int_equal(p.single.this_update, T0);
	assert_int_equal(p.single.next_update, T0 + 86400);
	assert_int_equal(p.single.invalidity_date, 0);
	assert_int_equal(p.single.certid.hash, OCSP_HASH_SHA1);
	assert_true(p.single.certid.hash_params_null);
	assert_true(ocsp_parsed_matches(&p, &ids.req.certids[0]));
	assert_false(p.has_nonce);
	assert_false(p.extended_revoke);
	assert_null(p.certs);
	assert_int_equal(p.responder_id[0], 0xa2);
	free(der);
	free(ids.der);
}

/* Each status as the first (and only) answer, with and without its optional parts. */
static void test_statuses(void **state)
{
	(void)state;
	static const struct {
		enum ocsp_cert_status status;
		int reason;
		int64_t revoked_at, invalidity;
		bool extended_revoke;
	} cases[] = {
		{OCSP_STATUS_GOOD, OCSP_REASON_NONE, 0, 0, false},
		{OCSP_STATUS_UNKNOWN, OCSP_REASON_NONE, 0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_NONE, T0 - 1001, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_KEY_COMPROMISE, T0 - 1000, T0 - 5000, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_CERTIFICATE_HOLD, 0, 0, true},
		{OCSP_STATUS_REVOKED, OCSP_REASON_UNSPECIFIED, T0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_CA_COMPROMISE, T0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_AFFILIATION_CHANGED, T0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_SUPERSEDED, T0, T0 - 1, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_CESSATION, T0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_REMOVE_FROM_CRL, T0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_PRIVILEGE_WITHDRAWN, T0, 0, false},
		{OCSP_STATUS_REVOKED, OCSP_REASON_AA_COMPROMISE, T0, 0, true},
	};
	static const uint64_t serials[] = {0x2002, 0x7f, 0x80};
	struct ids ids;
	make_ids(&ids, EVP_sha256(), serials, 3, 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ocsp_single s[2] = {good(&ids.req.certids[i % 3]),
		                           good(&ids.req.certids[(i + 1) % 3])};
		s[0].status = cases[i].status;
		s[0].reason = cases[i].reason;
		s[0].revoked_at = cases[i].revoked_at;
		s[0].invalidity_date = cases[i].invalidity;
		s[0].this_update = T0 - (int64_t)i;
		s[0].next_update = T0 + 3600 + (int64_t)i;
		struct ocsp_response_spec spec = {.signer = i % 2 ? resp_signer : ca_signer,
		                                  .produced_at = T0,
		                                  .singles = s,
		                                  .n_singles = 1 + i % 2,
		                                  .extended_revoke = cases[i].extended_revoke};
		size_t len;
		uint8_t *der = build(&spec, &len);
		struct ocsp_parsed_response p;
		parse_ok(der, len, &p);
		assert_signed_by(&p, spec.signer);
		assert_openssl_agrees(der, len, &p);
		assert_int_equal(p.n_singles, spec.n_singles);
		assert_int_equal(p.single.status, cases[i].status);
		assert_int_equal(p.single.this_update, T0 - (int64_t)i);
		assert_int_equal(p.single.next_update, T0 + 3600 + (int64_t)i);
		if (cases[i].status == OCSP_STATUS_REVOKED) {
			assert_int_equal(p.single.reason, cases[i].reason);
			assert_int_equal(p.single.revoked_at, cases[i].revoked_at);
			assert_int_equal(p.single.invalidity_date, cases[i].invalidity);
		} else {
			assert_int_equal(p.single.reason, OCSP_REASON_NONE);
			assert_int_equal(p.single.revoked_at, 0);
			assert_int_equal(p.single.invalidity_date, 0);
		}
		assert_int_equal(p.extended_revoke, cases[i].extended_revoke);
		assert_true(ocsp_parsed_matches(&p, &ids.req.certids[i % 3]));
		assert_false(ocsp_parsed_matches(&p, &ids.req.certids[(i + 1) % 3]));
		free(der);
	}
	free(ids.der);
}

/* Signers of every key type revd signs with; each signature checked, and refused once
 * altered or when checked by another signer. */
static void test_key_types_and_verify(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha1(), serials, 1, 32);
	for (int i = 0; i < 6; i++) {
		EVP_PKEY *key;
		switch (i) {
		case 0: key = testpki_key(TESTPKI_EC_P256); break;
		case 1: key = testpki_key(TESTPKI_EC_P384); break;
		case 2: key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"); break;
		case 3: key = testpki_key(TESTPKI_ED25519); break;
		case 4: key = EVP_PKEY_Q_keygen(NULL, NULL, "ED448"); break;
		default: key = testpki_key(TESTPKI_RSA2048); break;
		}
		assert_non_null(key);
		X509 *cert = testpki_cert("key type responder", key, pki.ca, pki.ca_key,
		                          50 + (uint64_t)i, TESTPKI_OCSP_SIGNING);
		for (int form = 0; form < 2; form++) {
			char err[256] = "";
			struct ocsp_signer *sg = ocsp_signer_new(
				cert, key, NULL, form == 1, form ? OCSP_RID_BY_NAME : OCSP_RID_BY_KEY, err,
				sizeof(err));
			if (sg == NULL)
				fail_msg("key %d: %s", i, err);
			struct ocsp_single s = good(&ids.req.certids[0]);
			struct ocsp_response_spec spec = {.signer = sg,
			                                  .produced_at = T0,
			                                  .singles = &s,
			                                  .n_singles = 1,
			                                  .nonce_ext = form ? ids.req.nonce_ext : NULL,
			                                  .nonce_ext_len = ids.req.nonce_ext_len};
			size_t len;
			uint8_t *der = build(&spec, &len);
			struct ocsp_parsed_response p;
			parse_ok(der, len, &p);
			assert_signed_by(&p, sg);
			assert_openssl_agrees(der, len, &p);
			assert_int_equal(p.has_nonce, form == 1);
			assert_true(ocsp_parsed_matches(&p, &ids.req.certids[0]));

			/* Any bit of the signature or of what it covers, flipped. */
			uint8_t *tbs = malloc(p.tbs_len), *sig = malloc(p.sig_len);
			assert_non_null(tbs);
			assert_non_null(sig);
			for (size_t bit = 0; bit < 8 * p.tbs_len; bit += 8 * p.tbs_len / 13 + 1) {
				memcpy(tbs, p.tbs, p.tbs_len);
				tbs[bit / 8] ^= (uint8_t)(1u << bit % 8);
				assert_false(ocsp_signer_verify(sg, tbs, p.tbs_len, p.sig, p.sig_len));
			}
			for (size_t bit = 0; bit < 8 * p.sig_len; bit += 8 * p.sig_len / 11 + 1) {
				memcpy(sig, p.sig, p.sig_len);
				sig[bit / 8] ^= (uint8_t)(1u << bit % 8);
				assert_false(ocsp_signer_verify(sg, p.tbs, p.tbs_len, sig, p.sig_len));
			}
			assert_false(ocsp_signer_verify(sg, p.tbs, p.tbs_len, p.sig, p.sig_len - 1));
			assert_false(ocsp_signer_verify(sg, p.tbs, p.tbs_len - 1, p.sig, p.sig_len));
			assert_false(ocsp_signer_verify(sg, p.tbs, p.tbs_len, p.sig, 0));
			/* Another key: the CA's. */
			assert_false(ocsp_signer_verify(ca_signer, p.tbs, p.tbs_len, p.sig, p.sig_len));
			assert_false(ocsp_parsed_signed_by(&p, ca_signer));
			assert_false(ocsp_parsed_signed_by(&p, resp_signer));
			/* The same key and certificate, the other ResponderID and certs choice. */
			struct ocsp_signer *twin = ocsp_signer_new(
				cert, key, NULL, form == 0, form ? OCSP_RID_BY_KEY : OCSP_RID_BY_NAME, err,
				sizeof(err));
			assert_non_null(twin);
			assert_true(ocsp_signer_verify(twin, p.tbs, p.tbs_len, p.sig, p.sig_len));
			assert_false(ocsp_parsed_signed_by(&p, twin));
			ocsp_signer_free(twin);
			/* The same, but for the certs choice alone. */
			twin = ocsp_signer_new(cert, key, NULL, form == 0,
			                       form ? OCSP_RID_BY_NAME : OCSP_RID_BY_KEY, err,
			                       sizeof(err));
			assert_non_null(twin);
			assert_false(ocsp_parsed_signed_by(&p, twin));
			ocsp_signer_free(twin);
			/* And for the ResponderID alone. */
			twin = ocsp_signer_new(cert, key, NULL, form == 1,
			                       form ? OCSP_RID_BY_KEY : OCSP_RID_BY_NAME, err,
			                       sizeof(err));
			assert_non_null(twin);
			assert_false(ocsp_parsed_signed_by(&p, twin));
			ocsp_signer_free(twin);
			assert_int_equal(ERR_peek_error(), 0);
			free(tbs);
			free(sig);
			free(der);
			ocsp_signer_free(sg);
		}
		X509_free(cert);
		EVP_PKEY_free(key);
	}
	free(ids.der);
}

static void test_nonce_and_extended_revoke(void **state)
{
	(void)state;
	static const uint64_t serials[] = {0xdead};
	for (size_t nonce = 1; nonce <= OCSP_NONCE_MAX; nonce += 127) {
		struct ids ids;
		make_ids(&ids, EVP_sha384(), serials, 1, nonce);
		struct ocsp_single s = good(&ids.req.certids[0]);
		s.status = OCSP_STATUS_REVOKED;
		s.reason = OCSP_REASON_CERTIFICATE_HOLD;
		struct ocsp_response_spec spec = {.signer = resp_signer,
		                                  .produced_at = T0,
		                                  .singles = &s,
		                                  .n_singles = 1,
		                                  .nonce_ext = ids.req.nonce_ext,
		                                  .nonce_ext_len = ids.req.nonce_ext_len,
		                                  .extended_revoke = true};
		size_t len;
		uint8_t *der = build(&spec, &len);
		struct ocsp_parsed_response p;
		parse_ok(der, len, &p);
		assert_signed_by(&p, resp_signer);
		assert_true(p.has_nonce);
		assert_true(p.extended_revoke);
		assert_int_equal(p.single.certid.hash, OCSP_HASH_SHA384);
		free(der);
		free(ids.der);
	}
}

/* 64 answers: all checked, the first kept. */
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
		s[i].status = (enum ocsp_cert_status)((i + 1) % 3);
		s[i].revoked_at = T0 - i;
		s[i].reason = i % 2 ? OCSP_REASON_SUPERSEDED : OCSP_REASON_NONE;
		s[i].invalidity_date = T0 - 10 * i;
	}
	struct ocsp_response_spec spec = {
		.signer = resp_signer, .produced_at = T0, .singles = s, .n_singles = 64};
	size_t len;
	uint8_t *der = build(&spec, &len);
	struct ocsp_parsed_response p;
	parse_ok(der, len, &p);
	assert_signed_by(&p, resp_signer);
	assert_int_equal(p.n_singles, 64);
	assert_int_equal(p.single.status, OCSP_STATUS_REVOKED);
	assert_int_equal(p.single.reason, OCSP_REASON_NONE);
	assert_int_equal(p.single.revoked_at, T0);
	assert_int_equal(p.single.invalidity_date, T0);
	assert_true(ocsp_parsed_matches(&p, &ids.req.certids[0]));
	assert_false(ocsp_parsed_matches(&p, &ids.req.certids[1]));
	free(der);
	free(ids.der);
}

/* ---- CertID matching ---- */

static void test_matches(void **state)
{
	(void)state;
	static const uint64_t serials[] = {0x1234};
	struct ids ids;
	make_ids(&ids, EVP_sha256(), serials, 1, 0);
	const struct ocsp_certid *id = &ids.req.certids[0];
	struct ocsp_single s = good(id);
	struct ocsp_response_spec spec = {
		.signer = ca_signer, .produced_at = T0, .singles = &s, .n_singles = 1};
	size_t len;
	uint8_t *der = build(&spec, &len);
	struct ocsp_parsed_response p;
	parse_ok(der, len, &p);
	assert_true(ocsp_parsed_matches(&p, id));

	/* Each field changed in turn. */
	uint8_t name[64], key[64], serial[OCSP_MAX_SERIAL + 1];
	for (int field = 0; field < 9; field++) {
		struct ocsp_certid other = *id;
		memcpy(name, id->name_hash, id->name_hash_len);
		memcpy(key, id->key_hash, id->key_hash_len);
		memcpy(serial, id->serial, id->serial_len);
		other.name_hash = name;
		other.key_hash = key;
		other.serial = serial;
		assert_true(ocsp_parsed_matches(&p, &other)); /* copies are as good */
		switch (field) {
		case 0: other.hash = OCSP_HASH_SHA1; break;
		case 1: other.hash = OCSP_HASH_UNKNOWN; break;
		case 2: other.hash_params_null = !other.hash_params_null; break;
		case 3: name[0] ^= 1; break;
		case 4: key[31] ^= 0x80; break;
		case 5: serial[other.serial_len - 1] ^= 1; break;
		case 6: other.serial_len--; break;
		case 7: serial[other.serial_len++] = 0; break;
		default: other.name_hash_len--; break;
		}
		if (ocsp_parsed_matches(&p, &other))
			fail_msg("field %d changed, yet it matches", field);
	}

	/* Nothing matches a response that is not a successful parse. */
	struct ocsp_parsed_response q;
	assert_int_equal(ocsp_response_parse(der, len - 1, &q), OCSP_PARSE_MALFORMED);
	assert_false(ocsp_parsed_matches(&q, id));
	size_t elen;
	const uint8_t *err = ocsp_response_error(OCSP_RESP_TRY_LATER, &elen);
	assert_int_equal(ocsp_response_parse(err, elen, &q), OCSP_PARSE_OK);
	assert_false(ocsp_parsed_matches(&q, id));
	assert_false(ocsp_parsed_signed_by(&q, ca_signer));
	free(der);
	free(ids.der);
}

/* ---- error responses ---- */

static void test_error_responses(void **state)
{
	(void)state;
	static const enum ocsp_resp_status statuses[] = {
		OCSP_RESP_MALFORMED, OCSP_RESP_INTERNAL_ERROR, OCSP_RESP_TRY_LATER,
		OCSP_RESP_SIG_REQUIRED, OCSP_RESP_UNAUTHORIZED};
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		size_t len;
		const uint8_t *der = ocsp_response_error(statuses[i], &len);
		struct ocsp_parsed_response p;
		assert_int_equal(ocsp_response_parse(der, len, &p), OCSP_PARSE_OK);
		assert_int_equal(p.status, statuses[i]);
		assert_null(p.tbs);
		assert_int_equal(p.n_singles, 0);
		for (size_t cut = 0; cut < len; cut++)
			assert_int_equal(ocsp_response_parse(der, cut, &p), OCSP_PARSE_MALFORMED);
	}
	/* Status 4 is unassigned, 7 and beyond unknown; successful needs responseBytes; a
	 * negative or non-minimal ENUMERATED is not one. */
	static const uint8_t bad[][6] = {
		{0x30, 0x03, 0x0a, 0x01, 0x04}, {0x30, 0x03, 0x0a, 0x01, 0x07},
		{0x30, 0x03, 0x0a, 0x01, 0x00}, {0x30, 0x03, 0x0a, 0x01, 0xff},
		{0x30, 0x03, 0x02, 0x01, 0x03}, {0x30, 0x04, 0x0a, 0x02, 0x00, 0x03},
		{0x30, 0x03, 0x0a, 0x01, 0x03, 0x00}, {0x30, 0x80, 0x0a, 0x01, 0x03, 0x00},
	};
	static const size_t bad_len[] = {5, 5, 5, 5, 5, 6, 6, 6};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ocsp_parsed_response p;
		if (ocsp_response_parse(bad[i], bad_len[i], &p) != OCSP_PARSE_MALFORMED)
			fail_msg("bad status %zu accepted", i);
	}
	struct ocsp_parsed_response p;
	assert_int_equal(ocsp_response_parse(bad[0], 0, &p), OCSP_PARSE_MALFORMED);
	assert_string_equal(ocsp_parse_result_str(OCSP_PARSE_OK), "ok");
	assert_string_equal(ocsp_parse_result_str(OCSP_PARSE_MALFORMED), "malformed response");
	assert_string_equal(ocsp_parse_result_str((enum ocsp_parse_result)99), "?");
}

/* ---- every cut, and bytes after the end ---- */

/* The builder's answers of several shapes; returns how many were written to der[]. */
static size_t sample_responses(uint8_t *der[3], size_t len[3], struct ids *ids)
{
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL, 0x80};
	make_ids(ids, EVP_sha1(), serials, 2, 16);
	struct ocsp_single s[2] = {good(&ids->req.certids[0]), good(&ids->req.certids[1])};
	s[0].status = OCSP_STATUS_REVOKED;
	s[0].reason = OCSP_REASON_KEY_COMPROMISE;
	s[0].revoked_at = T0 - 10;
	s[0].invalidity_date = T0 - 20;
	struct ocsp_response_spec spec = {.signer = ca_signer,
	                                  .produced_at = T0,
	                                  .singles = &s[1],
	                                  .n_singles = 1};
	der[0] = build(&spec, &len[0]);
	spec.signer = resp_signer;
	spec.singles = s;
	spec.n_singles = 2;
	spec.nonce_ext = ids->req.nonce_ext;
	spec.nonce_ext_len = ids->req.nonce_ext_len;
	spec.extended_revoke = true;
	der[1] = build(&spec, &len[1]);
	spec.signer = ca_signer;
	spec.nonce_ext = NULL;
	der[2] = build(&spec, &len[2]);
	return 3;
}

static void test_truncated_and_trailing(void **state)
{
	(void)state;
	uint8_t *der[3];
	size_t len[3];
	struct ids ids;
	size_t n = sample_responses(der, len, &ids);
	for (size_t i = 0; i < n; i++) {
		struct ocsp_parsed_response p;
		parse_ok(der[i], len[i], &p);
		/* Each prefix in a buffer of its own size, so that a read past it is caught. */
		for (size_t cut = 0; cut < len[i]; cut++) {
			uint8_t *copy = malloc(cut ? cut : 1);
			assert_non_null(copy);
			memcpy(copy, der[i], cut);
			enum ocsp_parse_result r = ocsp_response_parse(copy, cut, &p);
			if (r != OCSP_PARSE_MALFORMED)
				fail_msg("response %zu cut at %zu of %zu: %s", i, cut, len[i],
				         ocsp_parse_result_str(r));
			/* A refused response leaves nothing behind. */
			assert_null(p.tbs);
			assert_null(p.sig);
			assert_null(p.single.certid.serial);
			assert_int_equal(p.n_singles, 0);
			free(copy);
		}
		/* One byte more, of any value. */
		uint8_t *longer = malloc(len[i] + 1);
		assert_non_null(longer);
		memcpy(longer, der[i], len[i]);
		for (int b = 0; b < 256; b += 51) {
			longer[len[i]] = (uint8_t)b;
			assert_int_equal(ocsp_response_parse(longer, len[i] + 1, &p),
			                 OCSP_PARSE_MALFORMED);
		}
		free(longer);
		free(der[i]);
	}
	free(ids.der);
}

/* Parsing allocates nothing, for any shape of response. */
static void test_no_allocation(void **state)
{
	(void)state;
	uint8_t *der[3];
	size_t len[3];
	struct ids ids;
	size_t n = sample_responses(der, len, &ids);
	for (size_t i = 0; i < n; i++) {
		struct ocsp_parsed_response p;
		failmalloc_arm(1);
		enum ocsp_parse_result r = ocsp_response_parse(der[i], len[i], &p);
		unsigned long seen = failmalloc_seen();
		failmalloc_arm(0);
		assert_int_equal(r, OCSP_PARSE_OK);
		assert_int_equal(seen, 0);
		free(der[i]);
	}
	free(ids.der);
}

/* ---- altered responses: a tree of TLVs, independent of revd's DER code ---- */

#define TLV_KIDS 24

struct tlv {
	int tag;             /* -1: data holds raw bytes, written as they are */
	const uint8_t *data; /* primitive contents (borrowed) */
	size_t len;
	uint8_t *owned; /* data to free with the element, or NULL */
	bool cons;
	size_t n;
	struct tlv *kid[TLV_KIDS];
};

static struct tlv *tlv_new(int tag, const void *data, size_t len)
{
	struct tlv *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->tag = tag;
	t->data = data;
	t->len = len;
	return t;
}

static size_t read_len(const uint8_t *p, size_t *hl)
{
	if (p[1] < 0x80) {
		*hl = 2;
		return p[1];
	}
	size_t n = p[1] & 0x7f, len = 0;
	for (size_t i = 0; i < n; i++)
		len = len << 8 | p[2 + i];
	*hl = 2 + n;
	return len;
}

static struct tlv *tlv_parse(const uint8_t *p, size_t avail, size_t *used)
{
	size_t hl, len = read_len(p, &hl);
	assert_true(hl + len <= avail);
	struct tlv *t = tlv_new(p[0], p + hl, len);
	if (p[0] & 0x20) {
		t->cons = true;
		for (size_t off = 0; off < len;) {
			size_t u;
			assert_true(t->n < TLV_KIDS);
			t->kid[t->n++] = tlv_parse(p + hl + off, len - off, &u);
			off += u;
		}
	}
	*used = hl + len;
	return t;
}

static void tlv_free(struct tlv *t)
{
	for (size_t i = 0; i < t->n; i++)
		tlv_free(t->kid[i]);
	free(t->owned);
	free(t);
}

static void w_put(uint8_t **out, size_t *n, size_t *cap, const void *p, size_t len)
{
	if (*n + len > *cap) {
		*cap = (*n + len) * 2;
		*out = realloc(*out, *cap);
		assert_non_null(*out);
	}
	memcpy(*out + *n, p, len);
	*n += len;
}

static void tlv_write(const struct tlv *t, uint8_t **out, size_t *n, size_t *cap)
{
	if (t->tag < 0) {
		w_put(out, n, cap, t->data, t->len);
		return;
	}
	uint8_t *body = NULL;
	size_t blen = 0, bcap = 0;
	if (t->cons) {
		for (size_t i = 0; i < t->n; i++)
			tlv_write(t->kid[i], &body, &blen, &bcap);
	} else if (t->len > 0) {
		w_put(&body, &blen, &bcap, t->data, t->len);
	}
	uint8_t hdr[4] = {(uint8_t)t->tag};
	size_t hl;
	if (blen < 0x80) {
		hdr[1] = (uint8_t)blen;
		hl = 2;
	} else if (blen < 0x100) {
		hdr[1] = 0x81;
		hdr[2] = (uint8_t)blen;
		hl = 3;
	} else {
		assert_true(blen < 0x10000);
		hdr[1] = 0x82;
		hdr[2] = (uint8_t)(blen >> 8);
		hdr[3] = (uint8_t)blen;
		hl = 4;
	}
	w_put(out, n, cap, hdr, hl);
	if (blen > 0)
		w_put(out, n, cap, body, blen);
	free(body);
}

/* The element at a path of child indexes, ending in -1. */
static struct tlv *tlv_at(struct tlv *t, const int *path)
{
	for (; *path >= 0; path++) {
		assert_true((size_t)*path < t->n);
		t = t->kid[*path];
	}
	return t;
}
#define AT(root, ...) tlv_at(root, (const int[]){__VA_ARGS__, -1})

static void tlv_insert(struct tlv *parent, size_t pos, struct tlv *kid)
{
	assert_true(parent->n < TLV_KIDS && pos <= parent->n);
	memmove(parent->kid + pos + 1, parent->kid + pos, (parent->n - pos) * sizeof(kid));
	parent->kid[pos] = kid;
	parent->n++;
}

static void tlv_remove(struct tlv *parent, size_t pos)
{
	assert_true(pos < parent->n);
	tlv_free(parent->kid[pos]);
	memmove(parent->kid + pos, parent->kid + pos + 1, (parent->n - pos - 1) * sizeof(void *));
	parent->n--;
}

static void tlv_replace(struct tlv *parent, size_t pos, struct tlv *kid)
{
	tlv_free(parent->kid[pos]);
	parent->kid[pos] = kid;
}

/* A raw element. */
static struct tlv *raw(const void *p, size_t n)
{
	return tlv_new(-1, p, n);
}
/* A raw copy of an element's encoding. */
static struct tlv *tlv_clone(const struct tlv *t)
{
	uint8_t *out = NULL;
	size_t n = 0, cap = 0;
	tlv_write(t, &out, &n, &cap);
	struct tlv *r = raw(out, n);
	r->owned = out;
	return r;
}

static void tlv_clear(struct tlv *t)
{
	while (t->n > 0)
		tlv_remove(t, 0);
}
#define RAW(...) raw((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* Paths in a response: the BasicOCSPResponse inside the OCTET STRING is opened up. */
#define P_BYTES 1, 0
#define P_BASIC P_BYTES, 1, 0
#define P_TBS P_BASIC, 0
#define P_SINGLE P_TBS, 2, 0
#define P_CERTID P_SINGLE, 0

static struct tlv *tree_of(const uint8_t *der, size_t len)
{
	size_t used;
	struct tlv *root = tlv_parse(der, len, &used);
	assert_int_equal(used, len);
	struct tlv *octets = AT(root, P_BYTES, 1);
	assert_int_equal(octets->tag, 0x04);
	octets->cons = true;
	octets->kid[octets->n++] = tlv_parse(octets->data, octets->len, &used);
	assert_int_equal(used, octets->len);
	return root;
}

static uint8_t *tree_der(const struct tlv *root, size_t *len)
{
	uint8_t *out = NULL;
	size_t cap = 0;
	*len = 0;
	tlv_write(root, &out, len, &cap);
	return out;
}

/* The bytes the last expect() parsed: *p points into them until the next call. */
static uint8_t *expected;

/* Writes the altered tree out, parses it into *p and frees the tree. */
static void expect(struct tlv *root, enum ocsp_parse_result want, const char *what,
                   struct ocsp_parsed_response *p)
{
	size_t len;
	uint8_t *der = tree_der(root, &len);
	tlv_free(root);
	/* An exact-size copy, so that any read past the end is caught. */
	free(expected);
	uint8_t *copy = expected = malloc(len);
	assert_non_null(copy);
	memcpy(copy, der, len);
	free(der);
	enum ocsp_parse_result r = ocsp_response_parse(copy, len, p);
	if (r != want)
		fail_msg("%s: %s, expected %s", what, ocsp_parse_result_str(r),
		         ocsp_parse_result_str(want));
	if (r != OCSP_PARSE_OK) {
		/* A refused response leaves nothing behind, however far the parse got. */
		static const struct ocsp_parsed_response zero;
		assert_memory_equal(p, &zero, sizeof(zero));
	}
}

/* Two bases: byKey with no extensions; byName with certs, single and response
 * extensions. Both unchanged parse; then one change at a time. */
static void test_altered(void **state)
{
	(void)state;
	uint8_t *der[3];
	size_t len[3];
	struct ids ids;
	sample_responses(der, len, &ids);
	const uint8_t *kd = der[0], *fd = der[1];
	size_t kl = len[0], fl = len[1];
	struct ocsp_parsed_response p;
	struct tlv *t;

	expect(tree_of(kd, kl), OCSP_PARSE_OK, "unchanged byKey", &p);
	assert_true(ocsp_parsed_signed_by(&p, ca_signer));
	expect(tree_of(fd, fl), OCSP_PARSE_OK, "unchanged byName", &p);
	assert_true(p.has_nonce && p.extended_revoke && p.certs != NULL);
	assert_true(ocsp_parsed_signed_by(&p, resp_signer));

	/* -- outer layers -- */
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_BYTES), 0, RAW(0x06, 0x03, 0x2a, 0x03, 0x04));
	expect(t, OCSP_PARSE_UNSUPPORTED, "another responseType", &p);
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_BYTES), 0, RAW(0x06, 0x03, 0x2a, 0x80, 0x04));
	expect(t, OCSP_PARSE_MALFORMED, "responseType OID not minimal", &p);
	t = tree_of(kd, kl);
	tlv_replace(t, 0, RAW(0x0a, 0x01, 0x03));
	expect(t, OCSP_PARSE_MALFORMED, "tryLater with responseBytes", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BYTES, 1), 1, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in the OCTET STRING", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BYTES), 2, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in ResponseBytes", &p);
	t = tree_of(kd, kl);
	tlv_insert(t, 2, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in OCSPResponse", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BASIC), 3, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in BasicOCSPResponse", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC), 4, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "element after the certs", &p);

	/* -- signature -- */
	t = tree_of(kd, kl);
	AT(t, P_BASIC, 2)->data = (const uint8_t[]){0x01, 0xaa, 0xbb};
	AT(t, P_BASIC, 2)->len = 3;
	expect(t, OCSP_PARSE_MALFORMED, "signature with unused bits", &p);
	t = tree_of(kd, kl);
	AT(t, P_BASIC, 2)->len = 1;
	expect(t, OCSP_PARSE_MALFORMED, "empty signature", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BASIC, 1), 1, RAW(0x02, 0x01, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "signatureAlgorithm with INTEGER parameters", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BASIC, 1), 1, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_OK, "signatureAlgorithm with NULL parameters", &p);
	assert_false(ocsp_parsed_signed_by(&p, ca_signer)); /* not the signer's encoding */
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BASIC, 1), 1, RAW(0x30, 0x03, 0x02, 0x01, 0x20));
	expect(t, OCSP_PARSE_OK, "signatureAlgorithm with SEQUENCE parameters", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BASIC, 1), 1, RAW(0x30, 0x80, 0x02, 0x01, 0x20, 0x00, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "signature parameters of indefinite length", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_BASIC, 1), 1, RAW(0x30, 0x05, 0x02, 0x01, 0x20, 0x00, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "end-of-contents in signature parameters", &p);

	/* -- certs -- */
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0), 1,
	           RAW(0x30, 0x0a, 0x30, 0x00, 0x30, 0x03, 0x06, 0x01, 0x2a, 0x03, 0x01, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "a certificate without fields", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0), 1, RAW(0x30, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "an empty certificate", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3), 1, RAW(0x30, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in certs [0]", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0, 0, 0), 0, RAW(0x00, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "end-of-contents in a certificate", &p);
	/* A certificate's fields: each removed or replaced in turn. */
	static const struct {
		int field; /* index in TBSCertificate; -1: in Certificate */
		int remove_or_tag;
		const char *what;
	} cert_cases[] = {
		{1, -1, "no serialNumber"},       {2, -1, "no signature algorithm"},
		{3, -1, "no issuer"},             {4, -1, "no validity"},
		{6, -1, "no subjectPublicKeyInfo"}, {7, -1, "no room after extensions"},
		{1, 0x04, "serial as OCTET STRING"}, {4, 0x31, "validity as SET"},
		{0, 0xa1, "version [1]"},         {7, 0xa4, "extensions [4]"},
	};
	for (size_t i = 0; i < sizeof(cert_cases) / sizeof(cert_cases[0]); i++) {
		t = tree_of(fd, fl);
		struct tlv *tbsc = AT(t, P_BASIC, 3, 0, 0, 0);
		assert_int_equal(tbsc->n, 8); /* testpki's certificates are v3 with extensions */
		static const uint8_t null_der[] = {0x05, 0x00};
		if (i == 5)
			tlv_insert(tbsc, 8, raw(null_der, sizeof(null_der)));
		else if (cert_cases[i].remove_or_tag < 0)
			tlv_remove(tbsc, (size_t)cert_cases[i].field);
		else
			tbsc->kid[cert_cases[i].field]->tag = cert_cases[i].remove_or_tag;
		expect(t, OCSP_PARSE_MALFORMED, cert_cases[i].what, &p);
	}
	t = tree_of(fd, fl);
	tlv_replace(AT(t, P_BASIC, 3, 0, 0, 0, 0), 0, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "a certificate version that is not an INTEGER", &p);
	t = tree_of(fd, fl);
	AT(t, P_BASIC, 3, 0, 0, 0, 4, 0)->tag = 0x02;
	expect(t, OCSP_PARSE_MALFORMED, "notBefore as INTEGER", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0, 0, 0, 4), 2, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "a third time in validity", &p);
	t = tree_of(fd, fl);
	tlv_remove(AT(t, P_BASIC, 3, 0, 0, 0, 6), 1);
	expect(t, OCSP_PARSE_MALFORMED, "a key info without key", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0, 0, 0, 7), 1, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in extensions [3]", &p);
	t = tree_of(fd, fl);
	AT(t, P_BASIC, 3, 0, 0, 2)->data = (const uint8_t[]){0x04, 0xf0};
	AT(t, P_BASIC, 3, 0, 0, 2)->len = 2;
	expect(t, OCSP_PARSE_MALFORMED, "a certificate signature with unused bits", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0, 0, 1), 1, RAW(0x02, 0x01, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "a certificate signature algorithm with INTEGER parameters",
	       &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0, 0, 0, 3), 0, RAW(0x31, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "an empty RDN in the issuer", &p);
	/* Values inside a certificate are carried, not read: a subject CN that is not UTF-8
	 * passes the parse, and ocsp_parsed_signed_by does not vouch for it. */
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0, 0, 0, 5), 0,
	           RAW(0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0xff));
	expect(t, OCSP_PARSE_OK, "a subject CN that is not UTF-8", &p);
	assert_true(ocsp_signer_verify(resp_signer, p.tbs, p.tbs_len, p.sig, p.sig_len));
	assert_false(ocsp_parsed_signed_by(&p, resp_signer));
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_BASIC, 3, 0), 1, tlv_clone(AT(t, P_BASIC, 3, 0, 0)));
	expect(t, OCSP_PARSE_OK, "the certificate twice", &p);
	assert_false(ocsp_parsed_signed_by(&p, resp_signer));
	t = tree_of(fd, fl);
	tlv_clear(AT(t, P_BASIC, 3, 0));
	expect(t, OCSP_PARSE_OK, "an empty certs list", &p);
	assert_non_null(p.certs);
	assert_false(ocsp_parsed_signed_by(&p, resp_signer));
	t = tree_of(kd, kl);
	{
		struct tlv *other = tree_of(fd, fl);
		tlv_insert(AT(t, P_BASIC), 3, tlv_clone(AT(other, P_BASIC, 3)));
		tlv_free(other);
	}
	expect(t, OCSP_PARSE_OK, "certs the signer does not send", &p);
	assert_true(ocsp_signer_verify(ca_signer, p.tbs, p.tbs_len, p.sig, p.sig_len));
	assert_false(ocsp_parsed_signed_by(&p, ca_signer));
	t = tree_of(fd, fl);
	tlv_remove(AT(t, P_BASIC), 3);
	expect(t, OCSP_PARSE_OK, "no certs", &p);
	assert_null(p.certs);
	assert_false(ocsp_parsed_signed_by(&p, resp_signer));

	/* -- ResponseData -- */
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_TBS), 0, RAW(0xa0, 0x03, 0x02, 0x01, 0x00));
	expect(t, OCSP_PARSE_OK, "version v1 written out (tolerated)", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_TBS), 0, RAW(0xa0, 0x03, 0x02, 0x01, 0x01));
	expect(t, OCSP_PARSE_MALFORMED, "version v2", &p);
	t = tree_of(kd, kl);
	AT(t, P_TBS, 0, 0)->len = 19;
	expect(t, OCSP_PARSE_MALFORMED, "KeyHash of 19 octets", &p);
	t = tree_of(kd, kl);
	AT(t, P_TBS, 0)->tag = 0xa3;
	expect(t, OCSP_PARSE_MALFORMED, "ResponderID [3]", &p);
	t = tree_of(kd, kl);
	AT(t, P_TBS, 0)->tag = 0x82;
	AT(t, P_TBS, 0)->cons = false;
	AT(t, P_TBS, 0)->data = (const uint8_t *)"01234567890123456789";
	AT(t, P_TBS, 0)->len = 20;
	expect(t, OCSP_PARSE_MALFORMED, "ResponderID byKey IMPLICIT", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 0, 0), 0, RAW(0x31, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "an empty RDN", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 0, 0), 0,
	           RAW(0x31, 0x09, 0x30, 0x07, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x00));
	expect(t, OCSP_PARSE_OK, "a Name with an empty CN", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 0, 0), 0,
	           RAW(0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0xff));
	expect(t, OCSP_PARSE_OK, "a Name with a UTF8String that is not UTF-8", &p);
	assert_false(ocsp_parsed_signed_by(&p, resp_signer));
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 0, 0), 0, RAW(0x31, 0x04, 0x30, 0x02, 0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "a Name attribute without type", &p);
	t = tree_of(fd, fl);
	tlv_clear(AT(t, P_TBS, 0, 0));
	expect(t, OCSP_PARSE_OK, "an empty Name", &p);
	t = tree_of(kd, kl);
	AT(t, P_TBS, 1)->tag = 0x17;
	AT(t, P_TBS, 1)->data = (const uint8_t *)"231114221320Z";
	AT(t, P_TBS, 1)->len = 13;
	expect(t, OCSP_PARSE_MALFORMED, "producedAt as UTCTime", &p);
	static const char *const bad_times[] = {
		"20231114221320.5Z", "20231114221320+0000", "202311142213Z", "20231314221320Z",
		"20230229221320Z",   "20231114246000Z",     "2023111422132OZ", "20231114221320z",
	};
	for (size_t i = 0; i < sizeof(bad_times) / sizeof(bad_times[0]); i++) {
		t = tree_of(kd, kl);
		AT(t, P_TBS, 1)->data = (const uint8_t *)bad_times[i];
		AT(t, P_TBS, 1)->len = strlen(bad_times[i]);
		expect(t, OCSP_PARSE_MALFORMED, bad_times[i], &p);
	}
	t = tree_of(kd, kl);
	AT(t, P_TBS, 1)->data = (const uint8_t *)"20240229000000Z";
	expect(t, OCSP_PARSE_OK, "a leap day", &p);
	assert_int_equal(p.produced_at, 1709164800);
	t = tree_of(kd, kl);
	tlv_remove(AT(t, P_TBS, 2), 0);
	expect(t, OCSP_PARSE_MALFORMED, "no answers", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_TBS), 3, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in ResponseData", &p);

	/* -- response extensions -- */
	static const uint8_t unknown_ext[] = {0x30, 0x0b, 0x06, 0x03, 0x2a, 0x03, 0x04,
	                                      0x01, 0x01, 0xff, 0x04, 0x01, 0x00};
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3, 0), 1, raw(unknown_ext, sizeof(unknown_ext)));
	expect(t, OCSP_PARSE_UNSUPPORTED, "an unknown critical response extension", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3, 0), 1,
	           RAW(0x30, 0x08, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x01, 0x00));
	expect(t, OCSP_PARSE_OK, "an unknown response extension", &p);
	assert_false(ocsp_parsed_signed_by(&p, resp_signer)); /* what was signed changed */
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3, 0), 1,
	           RAW(0x30, 0x0b, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x01, 0x01, 0x00, 0x04, 0x01, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "critical FALSE written out", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3, 0), 1,
	           RAW(0x30, 0x0b, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x01, 0x01, 0x01, 0x04, 0x01, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "critical TRUE as 0x01", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3, 0), 0, tlv_clone(AT(t, P_TBS, 3, 0, 0)));
	expect(t, OCSP_PARSE_MALFORMED, "the nonce twice", &p);
	t = tree_of(fd, fl);
	AT(t, P_TBS, 3, 0, 0, 1)->data = (const uint8_t[]){0x04, 0x00};
	AT(t, P_TBS, 3, 0, 0, 1)->len = 2;
	expect(t, OCSP_PARSE_MALFORMED, "an empty nonce", &p);
	{
		static uint8_t big[3 + 129] = {0x04, 0x81, 129};
		t = tree_of(fd, fl);
		AT(t, P_TBS, 3, 0, 0, 1)->data = big;
		AT(t, P_TBS, 3, 0, 0, 1)->len = sizeof(big);
		expect(t, OCSP_PARSE_MALFORMED, "a nonce of 129 octets", &p);
		big[2] = 128;
		t = tree_of(fd, fl);
		AT(t, P_TBS, 3, 0, 0, 1)->data = big;
		AT(t, P_TBS, 3, 0, 0, 1)->len = sizeof(big) - 1;
		expect(t, OCSP_PARSE_OK, "a nonce of 128 octets", &p);
		assert_true(p.has_nonce);
	}
	t = tree_of(fd, fl);
	AT(t, P_TBS, 3, 0, 0, 1)->data = (const uint8_t[]){0x05, 0x00};
	AT(t, P_TBS, 3, 0, 0, 1)->len = 2;
	expect(t, OCSP_PARSE_MALFORMED, "a nonce that is not an OCTET STRING", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3, 0, 1), 1, RAW(0x01, 0x01, 0xff));
	expect(t, OCSP_PARSE_MALFORMED, "a critical extended revoke", &p);
	t = tree_of(fd, fl);
	AT(t, P_TBS, 3, 0, 1, 1)->data = (const uint8_t[]){0x05, 0x01, 0x00};
	AT(t, P_TBS, 3, 0, 1, 1)->len = 3;
	expect(t, OCSP_PARSE_MALFORMED, "extended revoke not NULL", &p);
	t = tree_of(fd, fl);
	tlv_remove(AT(t, P_TBS, 3, 0), 1);
	tlv_remove(AT(t, P_TBS, 3, 0), 0);
	expect(t, OCSP_PARSE_MALFORMED, "empty responseExtensions", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 3), 1, RAW(0x30, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in [1]", &p);

	/* -- SingleResponse -- */
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_SINGLE, 4, 0), 1, raw(unknown_ext, sizeof(unknown_ext)));
	expect(t, OCSP_PARSE_UNSUPPORTED, "an unknown critical single extension", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_TBS, 2, 1), 4, RAW(0xa1, 0x0f, 0x30, 0x0d, 0x30, 0x0b, 0x06, 0x03,
	                                       0x2a, 0x03, 0x04, 0x01, 0x01, 0xff, 0x04, 0x01,
	                                       0x00));
	expect(t, OCSP_PARSE_UNSUPPORTED, "an unknown critical extension in the 2nd answer", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_SINGLE, 4, 0), 1,
	           RAW(0x30, 0x08, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x01, 0x00));
	expect(t, OCSP_PARSE_OK, "an unknown single extension", &p);
	assert_int_equal(p.single.invalidity_date, T0 - 20);
	t = tree_of(fd, fl);
	AT(t, P_SINGLE, 4, 0, 0, 1)->data = (const uint8_t *)"\x17\x0d" "231114221320Z";
	AT(t, P_SINGLE, 4, 0, 0, 1)->len = 15;
	expect(t, OCSP_PARSE_MALFORMED, "invalidityDate as UTCTime", &p);
	t = tree_of(fd, fl);
	AT(t, P_SINGLE, 1, 1, 0)->data = (const uint8_t[]){7};
	expect(t, OCSP_PARSE_MALFORMED, "reason 7", &p);
	t = tree_of(fd, fl);
	AT(t, P_SINGLE, 1, 1, 0)->data = (const uint8_t[]){11};
	expect(t, OCSP_PARSE_MALFORMED, "reason 11", &p);
	t = tree_of(fd, fl);
	AT(t, P_SINGLE, 1, 1, 0)->tag = 0x02;
	expect(t, OCSP_PARSE_MALFORMED, "reason as INTEGER", &p);
	t = tree_of(fd, fl);
	AT(t, P_SINGLE, 1, 1)->tag = 0x80;
	AT(t, P_SINGLE, 1, 1)->cons = false;
	AT(t, P_SINGLE, 1, 1)->data = (const uint8_t[]){0x01};
	AT(t, P_SINGLE, 1, 1)->len = 1;
	expect(t, OCSP_PARSE_MALFORMED, "reason IMPLICIT", &p);
	t = tree_of(fd, fl);
	tlv_insert(AT(t, P_SINGLE, 1), 2, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in RevokedInfo", &p);
	t = tree_of(fd, fl);
	tlv_remove(AT(t, P_SINGLE, 1), 1);
	expect(t, OCSP_PARSE_OK, "revoked without a reason", &p);
	assert_int_equal(p.single.reason, OCSP_REASON_NONE);
	t = tree_of(kd, kl);
	AT(t, P_SINGLE, 1)->data = (const uint8_t[]){0x00};
	AT(t, P_SINGLE, 1)->len = 1;
	expect(t, OCSP_PARSE_MALFORMED, "good with contents", &p);
	t = tree_of(kd, kl);
	AT(t, P_SINGLE, 1)->tag = 0x83;
	expect(t, OCSP_PARSE_MALFORMED, "certStatus [3]", &p);
	t = tree_of(kd, kl);
	AT(t, P_SINGLE, 1)->tag = 0xa0;
	expect(t, OCSP_PARSE_MALFORMED, "good constructed", &p);
	t = tree_of(kd, kl);
	AT(t, P_SINGLE, 1)->tag = 0x82;
	expect(t, OCSP_PARSE_OK, "unknown", &p);
	assert_int_equal(p.single.status, OCSP_STATUS_UNKNOWN);
	t = tree_of(kd, kl);
	tlv_remove(AT(t, P_SINGLE), 3);
	expect(t, OCSP_PARSE_OK, "no nextUpdate", &p);
	assert_int_equal(p.single.next_update, 0);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_SINGLE, 3), 1, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in nextUpdate", &p);
	t = tree_of(kd, kl);
	tlv_remove(AT(t, P_SINGLE), 2);
	expect(t, OCSP_PARSE_MALFORMED, "no thisUpdate", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_SINGLE), 4, RAW(0x05, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "trailing element in SingleResponse", &p);
	t = tree_of(kd, kl);
	tlv_insert(AT(t, P_TBS, 2), 1, RAW(0x30, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "an empty second answer", &p);

	/* -- CertID -- */
	t = tree_of(kd, kl);
	tlv_remove(AT(t, P_CERTID, 0), 1);
	expect(t, OCSP_PARSE_OK, "hash parameters absent", &p);
	assert_false(p.single.certid.hash_params_null);
	assert_false(ocsp_parsed_matches(&p, &ids.req.certids[1]));
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_CERTID, 0), 1, RAW(0x02, 0x01, 0x00));
	expect(t, OCSP_PARSE_MALFORMED, "hash parameters not NULL", &p);
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_CERTID, 0), 0,
	            RAW(0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05));
	expect(t, OCSP_PARSE_OK, "MD5 CertID", &p);
	assert_int_equal(p.single.certid.hash, OCSP_HASH_UNKNOWN);
	assert_false(ocsp_parsed_matches(&p, &ids.req.certids[1]));
	struct ocsp_certid unknown = p.single.certid;
	assert_false(ocsp_parsed_matches(&p, &unknown)); /* not even itself */
	t = tree_of(kd, kl);
	AT(t, P_CERTID, 1)->len = 19;
	expect(t, OCSP_PARSE_MALFORMED, "SHA-1 name hash of 19 octets", &p);
	t = tree_of(kd, kl);
	AT(t, P_CERTID, 1)->tag = 0x03;
	expect(t, OCSP_PARSE_MALFORMED, "name hash as BIT STRING", &p);
	t = tree_of(kd, kl);
	AT(t, P_CERTID, 2)->tag = 0x0c;
	expect(t, OCSP_PARSE_MALFORMED, "key hash as UTF8String", &p);
	t = tree_of(kd, kl);
	AT(t, P_CERTID, 3)->data = (const uint8_t[]){0x00, 0x01};
	AT(t, P_CERTID, 3)->len = 2;
	expect(t, OCSP_PARSE_MALFORMED, "serial not minimal", &p);
	{
		static const uint8_t long_serial[OCSP_MAX_SERIAL + 1] = {0x01};
		t = tree_of(kd, kl);
		AT(t, P_CERTID, 3)->data = long_serial;
		AT(t, P_CERTID, 3)->len = OCSP_MAX_SERIAL;
		expect(t, OCSP_PARSE_OK, "longest serial", &p);
		t = tree_of(kd, kl);
		AT(t, P_CERTID, 3)->data = long_serial;
		AT(t, P_CERTID, 3)->len = OCSP_MAX_SERIAL + 1;
		expect(t, OCSP_PARSE_MALFORMED, "serial too long", &p);
	}
	t = tree_of(kd, kl);
	AT(t, P_CERTID, 3)->data = (const uint8_t[]){0xff};
	AT(t, P_CERTID, 3)->len = 1;
	expect(t, OCSP_PARSE_OK, "negative serial", &p);

	/* -- BER where DER is due -- */
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_SINGLE), 3, RAW(0xa0, 0x81, 0x11, 0x18, 0x0f, '2', '0', '2', '3', '1',
	                                    '1', '1', '4', '2', '2', '1', '3', '2', '0', 'Z'));
	expect(t, OCSP_PARSE_MALFORMED, "a length in long form", &p);
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_SINGLE), 3, RAW(0xa0, 0x80, 0x18, 0x0f, '2', '0', '2', '3', '1', '1',
	                                    '1', '4', '2', '2', '1', '3', '2', '0', 'Z', 0, 0));
	expect(t, OCSP_PARSE_MALFORMED, "an indefinite length", &p);
	t = tree_of(kd, kl);
	tlv_replace(AT(t, P_SINGLE), 3, RAW(0xa0, 0x13, 0x38, 0x11, 0x04, 0x0f, '2', '0', '2', '3',
	                                    '1', '1', '1', '4', '2', '2', '1', '3', '2', '0', 'Z'));
	expect(t, OCSP_PARSE_MALFORMED, "a constructed GeneralizedTime", &p);

	free(expected);
	expected = NULL;
	for (int i = 0; i < 3; i++)
		free(der[i]);
	free(ids.der);
}

/* ---- responses made by others ---- */

static uint8_t *openssl_response(OCSP_BASICRESP *bs, size_t *len)
{
	OCSP_RESPONSE *resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
	assert_non_null(resp);
	unsigned char *der = NULL;
	int n = i2d_OCSP_RESPONSE(resp, &der);
	assert_true(n > 0);
	uint8_t *out = malloc((size_t)n);
	assert_non_null(out);
	memcpy(out, der, (size_t)n);
	OPENSSL_free(der);
	OCSP_RESPONSE_free(resp);
	*len = (size_t)n;
	return out;
}

static void test_openssl_made(void **state)
{
	(void)state;
	static const uint64_t serials[] = {TESTPKI_LEAF_SERIAL};
	struct ids ids;
	make_ids(&ids, EVP_sha256(), serials, 1, 0);
	for (int form = 0; form < 2; form++) {
		OCSP_CERTID *cid = OCSP_cert_to_id(EVP_sha256(), pki.leaf, pki.ca);
		assert_non_null(cid);
		OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
		ASN1_GENERALIZEDTIME *rev = ASN1_GENERALIZEDTIME_set(NULL, (time_t)(T0 - 100));
		ASN1_GENERALIZEDTIME *tu = ASN1_GENERALIZEDTIME_set(NULL, (time_t)T0);
		ASN1_GENERALIZEDTIME *nu = ASN1_GENERALIZEDTIME_set(NULL, (time_t)(T0 + 3600));
		if (form == 0) {
			/* Revoked with a reason and a nonce; byName, the signer's certificate sent. */
			assert_non_null(OCSP_basic_add1_status(bs, cid, V_OCSP_CERTSTATUS_REVOKED,
			                                       OCSP_REVOKED_STATUS_KEYCOMPROMISE, rev,
			                                       tu, nu));
			assert_int_equal(OCSP_basic_add1_nonce(bs, NULL, 16), 1);
			assert_int_equal(OCSP_basic_sign(bs, pki.resp, pki.resp_key, EVP_sha256(),
			                                 NULL, 0),
			                 1);
		} else {
			/* Good with no nextUpdate; byKey, no certificates. */
			assert_non_null(OCSP_basic_add1_status(bs, cid, V_OCSP_CERTSTATUS_GOOD, 0,
			                                       NULL, tu, NULL));
			assert_int_equal(OCSP_basic_sign(bs, pki.ca, pki.ca_key, EVP_sha256(), NULL,
			                                 OCSP_RESPID_KEY | OCSP_NOCERTS),
			                 1);
		}
		size_t len;
		uint8_t *der = openssl_response(bs, &len);
		struct ocsp_parsed_response p;
		parse_ok(der, len, &p);
		assert_openssl_agrees(der, len, &p);
		/* OpenSSL encodes the signer's pieces as revd does. */
		assert_signed_by(&p, form == 0 ? resp_signer : ca_signer);
		assert_true(ocsp_parsed_matches(&p, &ids.req.certids[0]));
		int64_t now = (int64_t)time(NULL);
		assert_true(p.produced_at >= now - 60 && p.produced_at <= now + 60);
		assert_int_equal(p.single.this_update, T0);
		if (form == 0) {
			assert_int_equal(p.single.status, OCSP_STATUS_REVOKED);
			assert_int_equal(p.single.reason, OCSP_REASON_KEY_COMPROMISE);
			assert_int_equal(p.single.revoked_at, T0 - 100);
			assert_int_equal(p.single.next_update, T0 + 3600);
			assert_true(p.has_nonce);
		} else {
			assert_int_equal(p.single.status, OCSP_STATUS_GOOD);
			assert_int_equal(p.single.next_update, 0);
			assert_false(p.has_nonce);
		}
		free(der);
		ASN1_GENERALIZEDTIME_free(rev);
		ASN1_GENERALIZEDTIME_free(tu);
		ASN1_GENERALIZEDTIME_free(nu);
		OCSP_CERTID_free(cid);
		OCSP_BASICRESP_free(bs);
	}
	free(ids.der);
}

#ifdef REVD_VECTORS_DIR
static uint8_t *read_vector(const char *name, size_t *len)
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

/* The RFC 9919 appendix response: parsed, matched to its request, its signature
 * checked with the responder certificate over the bytes revd says were signed. */
static void test_rfc9919_response(void **state)
{
	(void)state;
	size_t len, rlen;
	uint8_t *der = read_vector("response.der", &len);
	uint8_t *req_der = read_vector("request.der", &rlen);
	struct ocsp_request req;
	assert_int_equal(ocsp_request_decode(req_der, rlen, 20, &req), OCSP_DECODE_OK);
	struct ocsp_parsed_response p;
	parse_ok(der, len, &p);
	assert_openssl_agrees(der, len, &p);
	assert_true(ocsp_parsed_matches(&p, &req.certids[0]));
	assert_int_equal(p.single.status, OCSP_STATUS_GOOD);
	assert_int_equal(p.produced_at, 1712061467); /* 2024-04-02T12:37:47Z */
	assert_int_equal(p.single.this_update, 1712061467 + 86400);
	assert_int_equal(p.single.next_update, 1712061467 + 8 * 86400);
	assert_int_equal(p.responder_id[0], 0xa2);
	assert_non_null(p.certs);
	assert_false(p.has_nonce);

	char path[512];
	snprintf(path, sizeof(path), "%s/rfc9919/responder.pem", REVD_VECTORS_DIR);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509 *rc = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(rc);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha384(), NULL, X509_get0_pubkey(rc)),
	                 1);
	assert_int_equal(EVP_DigestVerify(ctx, p.sig, p.sig_len, p.tbs, p.tbs_len), 1);
	EVP_MD_CTX_free(ctx);
	X509_free(rc);
	for (size_t cut = 0; cut < len; cut++)
		assert_int_not_equal(ocsp_response_parse(der, cut, &p), OCSP_PARSE_OK);
	free(req_der);
	free(der);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_by_key),
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_key_types_and_verify),
		cmocka_unit_test(test_nonce_and_extended_revoke),
		cmocka_unit_test(test_many_singles),
		cmocka_unit_test(test_matches),
		cmocka_unit_test(test_error_responses),
		cmocka_unit_test(test_truncated_and_trailing),
		cmocka_unit_test(test_no_allocation),
		cmocka_unit_test(test_altered),
		cmocka_unit_test(test_openssl_made),
#ifdef REVD_VECTORS_DIR
		cmocka_unit_test(test_rfc9919_response),
#endif
	};
	return cmocka_run_group_tests_name("response_parse", tests, setup, teardown);
}
