/*
 * crl/crl: CRLs built by revd, read back and verified by OpenSSL (signature, fields,
 * extensions, every entry); crl_parse on revd's CRLs, on OpenSSL's and on the NIST
 * PKITS ones, and its refusals; the builder's refusals and allocation-failure torture.
 */
#define _GNU_SOURCE /* memmem, alphasort */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crl/crl.h"
#include "failmalloc.h"
#include "ocsp/signer.h"
#include "testpki.h"

#define T0 ((int64_t)1700000000)         /* 2023-11-14T22:13:20Z */
#define UTC_FIRST ((int64_t)-631152000)  /* 1950-01-01T00:00:00Z: the first UTCTime */
#define UTC_END ((int64_t)2524608000)    /* 2050-01-01T00:00:00Z: GeneralizedTime again */
#define KEY_COMPROMISE 1
#define REASON_UNASSIGNED 7 /* unassigned */

/* A CA that signs CRLs: its certificate, key, the signer revd makes of them, and the
 * pieces of its certificate a CRL repeats. */
struct ca {
	const char *what;
	EVP_PKEY *key;
	X509 *cert;
	struct ocsp_signer *signer;
	uint8_t *name; /* subject Name, DER */
	size_t name_len;
	const ASN1_OCTET_STRING *skid;
};

static struct testpki pki;
static struct ca cas[2]; /* EC P-256 (testpki's CA), RSA-2048 */

static void ca_init(struct ca *ca, const char *what, EVP_PKEY *key, X509 *cert)
{
	ca->what = what;
	ca->key = key;
	ca->cert = cert;
	char err[256] = "";
	ca->signer = ocsp_signer_new(cert, key, NULL, false, OCSP_RID_BY_KEY, err, sizeof(err));
	if (ca->signer == NULL)
		fail_msg("ocsp_signer_new(%s): %s", what, err);
	unsigned char *der = NULL;
	int n = i2d_X509_NAME(X509_get_subject_name(cert), &der);
	assert_true(n > 0);
	ca->name = malloc((size_t)n);
	assert_non_null(ca->name);
	memcpy(ca->name, der, (size_t)n);
	ca->name_len = (size_t)n;
	OPENSSL_free(der);
	ca->skid = X509_get0_subject_key_id(cert);
	assert_non_null(ca->skid);
}

static int setup(void **state)
{
	(void)state;
	testpki_init(&pki);
	ca_init(&cas[0], "EC P-256 CA", pki.ca_key, pki.ca);
	EVP_PKEY *rsa = testpki_key(TESTPKI_RSA2048);
	X509 *rsa_ca = testpki_cert("revd unit test RSA CA", rsa, NULL, NULL, 1, TESTPKI_CA);
	ca_init(&cas[1], "RSA-2048 CA", rsa, rsa_ca);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++) {
		ocsp_signer_free(cas[i].signer);
		free(cas[i].name);
	}
	X509_free(cas[1].cert);
	EVP_PKEY_free(cas[1].key);
	testpki_free(&pki);
	return 0;
}

/* Entries of every kind, in crl_serial_cmp order. */
static const struct crl_entry sample[] = {
	/* one octet, no reason */
	{.serial_len = 1, .serial = {0x01}, .reason = CRL_ENTRY_NO_REASON,
	 .revoked_at = T0 - 86400},
	/* unspecified: left out of the encoding */
	{.serial_len = 1, .serial = {0x05}, .reason = CRL_ENTRY_UNSPECIFIED,
	 .revoked_at = T0 - 7200},
	/* the top bit set, so a leading 0x00; keyCompromise with an invalidity date */
	{.serial_len = 2, .serial = {0x00, 0xc3}, .reason = KEY_COMPROMISE,
	 .revoked_at = T0 - 3600, .invalidity_date = T0 - 90000},
	{.serial_len = 4, .serial = {0x12, 0x34, 0x56, 0x78}, .reason = CRL_ENTRY_HOLD,
	 .revoked_at = T0 - 60},
	/* twenty octets, the most RFC 5280 allows a CA; keyCompromise, no invalidity date */
	{.serial_len = 20,
	 .serial = {0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
	 .reason = KEY_COMPROMISE,
	 .revoked_at = T0 - 1},
	/* no reason, but an invalidity date; unspecified with one too */
	{.serial_len = 20,
	 .serial = {0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20},
	 .reason = CRL_ENTRY_NO_REASON,
	 .revoked_at = T0 - 2,
	 .invalidity_date = T0 - 100000},
	{.serial_len = 21,
	 .serial = {0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
	 .reason = CRL_ENTRY_UNSPECIFIED,
	 .revoked_at = T0 - 3,
	 .invalidity_date = T0 - 5},
};
#define N_SAMPLE (sizeof(sample) / sizeof(sample[0]))

static struct crl_spec spec_for(const struct ca *ca, uint64_t number, uint64_t delta_base)
{
	struct crl_spec s = {.issuer_name = ca->name,
	                     .issuer_name_len = ca->name_len,
	                     .key_id = ASN1_STRING_get0_data(ca->skid),
	                     .key_id_len = (size_t)ASN1_STRING_length(ca->skid),
	                     .number = number,
	                     .delta_base = delta_base,
	                     .this_update = T0,
	                     .next_update = T0 + 7 * 86400};
	return s;
}

static uint8_t *build(const struct crl_spec *spec, const struct crl_entry *e, size_t n,
                      const struct ca *ca, size_t *len)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	char err[256] = "";
	if (!crl_build(spec, e, n, ca->signer, &out, err, sizeof(err)))
		fail_msg("crl_build (%s): %s", ca->what, err);
	assert_false(out.failed);
	return buf_steal(&out, len);
}

static void build_refused(const struct crl_spec *spec, const struct crl_entry *e, size_t n,
                          const char *why)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	char err[256] = "";
	if (crl_build(spec, e, n, cas[0].signer, &out, err, sizeof(err)))
		fail_msg("crl_build accepted %s", why);
	if (err[0] == '\0')
		fail_msg("crl_build refused %s without a message", why);
	assert_int_equal(out.len, 0); /* refused before writing anything */
	buf_free(&out);
}

/* ---- OpenSSL as the reference ---- */

/* d2i_X509_CRL of exactly der[0..len), which re-encodes to the same bytes. */
static X509_CRL *openssl_crl(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
	assert_non_null(crl);
	assert_ptr_equal(p, der + len);
	unsigned char *re = NULL;
	int n = i2d_X509_CRL(crl, &re);
	assert_int_equal(n, (int)len);
	assert_memory_equal(re, der, len);
	OPENSSL_free(re);
	return crl;
}

static int want_time_type(int64_t t)
{
	return t >= UTC_FIRST && t < UTC_END ? V_ASN1_UTCTIME : V_ASN1_GENERALIZEDTIME;
}

static void expect_time(const ASN1_TIME *t, int64_t want, const char *what)
{
	assert_non_null(t);
	if (testpki_asn1_time(t) != want)
		fail_msg("%s: %lld, not %lld", what, (long long)testpki_asn1_time(t),
		         (long long)want);
	if (ASN1_STRING_type(t) != want_time_type(want))
		fail_msg("%s (%lld) is a %s", what, (long long)want,
		         ASN1_STRING_type(t) == V_ASN1_UTCTIME ? "UTCTime" : "GeneralizedTime");
}

static ASN1_INTEGER *serial_integer(const uint8_t *serial, size_t len)
{
	uint8_t der[2 + CRL_MAX_SERIAL];
	der[0] = DER_INTEGER;
	der[1] = (uint8_t)len;
	memcpy(der + 2, serial, len);
	const unsigned char *p = der;
	ASN1_INTEGER *ai = d2i_ASN1_INTEGER(NULL, &p, (long)(2 + len));
	assert_non_null(ai);
	return ai;
}

/* The contents of an ASN1_INTEGER's DER encoding. */
static size_t integer_contents(const ASN1_INTEGER *ai, uint8_t *out, size_t max)
{
	unsigned char *der = NULL;
	int n = i2d_ASN1_INTEGER(ai, &der);
	assert_true(n >= 3 && der[1] < 0x80 && (size_t)n - 2 <= max);
	memcpy(out, der + 2, (size_t)n - 2);
	OPENSSL_free(der);
	return (size_t)n - 2;
}

/* The one URI of a DistributionPointName's fullName. */
static void expect_dp_uri(const DIST_POINT_NAME *dpn, const char *uri)
{
	assert_non_null(dpn);
	assert_int_equal(dpn->type, 0); /* fullName */
	assert_int_equal(sk_GENERAL_NAME_num(dpn->name.fullname), 1);
	const GENERAL_NAME *gn = sk_GENERAL_NAME_value(dpn->name.fullname, 0);
	assert_int_equal(gn->type, GEN_URI);
	const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;
	assert_int_equal(ASN1_STRING_length(s), (int)strlen(uri));
	assert_memory_equal(ASN1_STRING_get0_data(s), uri, strlen(uri));
}

/* Everything OpenSSL reads of a CRL revd built from spec and entries, checked. */
static void openssl_agrees(const uint8_t *der, size_t len, const struct ca *ca,
                           const struct crl_spec *spec, const struct crl_entry *e, size_t n)
{
	X509_CRL *crl = openssl_crl(der, len);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca->cert)), 1);
	/* Not by another key. */
	const struct ca *other = ca == &cas[0] ? &cas[1] : &cas[0];
	assert_true(X509_CRL_verify(crl, X509_get0_pubkey(other->cert)) <= 0);
	ERR_clear_error();
	assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca->cert)),
	                 0);
	expect_time(X509_CRL_get0_lastUpdate(crl), spec->this_update, "thisUpdate");
	expect_time(X509_CRL_get0_nextUpdate(crl), spec->next_update, "nextUpdate");

	int crit = -9;
	ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
	assert_non_null(num);
	assert_int_equal(crit, 0);
	uint64_t v = 0;
	assert_int_equal(ASN1_INTEGER_get_uint64(&v, num), 1);
	assert_true(v == spec->number);
	ASN1_INTEGER_free(num);

	AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
	assert_non_null(aki);
	assert_int_equal(crit, 0);
	assert_non_null(aki->keyid);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki->keyid, ca->skid), 0);
	assert_null(aki->issuer);
	assert_null(aki->serial);
	AUTHORITY_KEYID_free(aki);

	ASN1_INTEGER *base = X509_CRL_get_ext_d2i(crl, NID_delta_crl, &crit, NULL);
	if (spec->delta_base == 0) {
		assert_null(base);
		assert_int_equal(crit, -1);
	} else {
		assert_non_null(base);
		assert_int_equal(crit, 1);
		assert_int_equal(ASN1_INTEGER_get_uint64(&v, base), 1);
		assert_true(v == spec->delta_base);
		ASN1_INTEGER_free(base);
	}

	ISSUING_DIST_POINT *idp =
		X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &crit, NULL);
	if (spec->idp_uri == NULL) {
		assert_null(idp);
		assert_int_equal(crit, -1);
	} else {
		assert_non_null(idp);
		assert_int_equal(crit, 1);
		expect_dp_uri(idp->distpoint, spec->idp_uri);
		assert_int_equal(idp->onlyuser, 0);
		assert_int_equal(idp->onlyCA, 0);
		assert_int_equal(idp->onlyattr, 0);
		assert_int_equal(idp->indirectCRL, 0);
		assert_null(idp->onlysomereasons);
		ISSUING_DIST_POINT_free(idp);
	}

	CRL_DIST_POINTS *fresh = X509_CRL_get_ext_d2i(crl, NID_freshest_crl, &crit, NULL);
	if (spec->freshest_uri == NULL || spec->delta_base != 0) {
		assert_null(fresh);
		assert_int_equal(crit, -1);
	} else {
		assert_non_null(fresh);
		assert_int_equal(crit, 0);
		assert_int_equal(sk_DIST_POINT_num(fresh), 1);
		const DIST_POINT *dp = sk_DIST_POINT_value(fresh, 0);
		expect_dp_uri(dp->distpoint, spec->freshest_uri);
		assert_null(dp->reasons);
		assert_null(dp->CRLissuer);
		CRL_DIST_POINTS_free(fresh);
	}
	/* Nothing else. */
	int want_exts = 2 + (spec->delta_base != 0) + (spec->idp_uri != NULL) +
	                (spec->freshest_uri != NULL && spec->delta_base == 0);
	assert_int_equal(X509_CRL_get_ext_count(crl), want_exts);

	/* The entries, in the order given (before X509_CRL_get0_by_serial sorts them). */
	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
	if (n == 0)
		assert_true(revs == NULL || sk_X509_REVOKED_num(revs) == 0);
	else
		assert_int_equal(sk_X509_REVOKED_num(revs), (int)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t got[CRL_MAX_SERIAL + 8];
		size_t gl = integer_contents(
			X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, (int)i)), got,
			sizeof(got));
		assert_int_equal(gl, e[i].serial_len);
		assert_memory_equal(got, e[i].serial, gl);
	}
	for (size_t i = 0; i < n; i++) {
		ASN1_INTEGER *sn = serial_integer(e[i].serial, e[i].serial_len);
		X509_REVOKED *rev = NULL;
		int found = X509_CRL_get0_by_serial(crl, &rev, sn);
		ASN1_INTEGER_free(sn);
		if (found != (e[i].reason == CRL_ENTRY_REMOVE ? 2 : 1))
			fail_msg("entry %zu: X509_CRL_get0_by_serial %d", i, found);
		expect_time(X509_REVOKED_get0_revocationDate(rev), e[i].revoked_at,
		            "revocationDate");
		int want_exts_e = 0;
		ASN1_ENUMERATED *reason =
			X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
		if (e[i].reason == CRL_ENTRY_NO_REASON || e[i].reason == CRL_ENTRY_UNSPECIFIED) {
			if (reason != NULL)
				fail_msg("entry %zu: reason %ld in the CRL", i,
				         ASN1_ENUMERATED_get(reason));
			assert_int_equal(crit, -1);
		} else {
			assert_non_null(reason);
			assert_int_equal(crit, 0);
			assert_int_equal(ASN1_ENUMERATED_get(reason), e[i].reason);
			ASN1_ENUMERATED_free(reason);
			want_exts_e++;
		}
		ASN1_GENERALIZEDTIME *inv =
			X509_REVOKED_get_ext_d2i(rev, NID_invalidity_date, &crit, NULL);
		if (e[i].invalidity_date == 0) {
			assert_null(inv);
		} else {
			assert_non_null(inv);
			assert_int_equal(crit, 0);
			assert_int_equal(ASN1_STRING_type(inv), V_ASN1_GENERALIZEDTIME);
			assert_int_equal(testpki_asn1_time(inv), e[i].invalidity_date);
			ASN1_GENERALIZEDTIME_free(inv);
			want_exts_e++;
		}
		assert_int_equal(X509_REVOKED_get_ext_count(rev), want_exts_e);
	}
	/* Serials that are not there. */
	static const uint8_t absent[][2] = {{0x7e}, {0x00, 0xfe}};
	for (int i = 0; i < 2; i++) {
		ASN1_INTEGER *sn = serial_integer(absent[i], (size_t)i + 1);
		X509_REVOKED *rev = NULL;
		assert_int_equal(X509_CRL_get0_by_serial(crl, &rev, sn), 0);
		ASN1_INTEGER_free(sn);
	}
	X509_CRL_free(crl);
	ERR_clear_error();
}

/* ---- crl_parse of what was built ---- */

static void parse_ok(const uint8_t *der, size_t len, struct crl_info *info)
{
	if (!crl_parse(der, len, info))
		fail_msg("crl_parse refused a CRL of %zu bytes", len);
}

static void expect_entries(struct der_cursor entries, const struct crl_entry *e, size_t n)
{
	struct crl_entry got;
	for (size_t i = 0; i < n; i++) {
		memset(&got, 0xa5, sizeof(got));
		if (!crl_next_entry(&entries, &got))
			fail_msg("crl_next_entry stopped at %zu of %zu", i, n);
		assert_int_equal(got.serial_len, e[i].serial_len);
		assert_memory_equal(got.serial, e[i].serial, e[i].serial_len);
		/* unspecified is not written, so it reads back as none */
		int want = e[i].reason == CRL_ENTRY_UNSPECIFIED ? CRL_ENTRY_NO_REASON : e[i].reason;
		assert_int_equal(got.reason, want);
		assert_int_equal(got.revoked_at, e[i].revoked_at);
		assert_int_equal(got.invalidity_date, e[i].invalidity_date);
	}
	assert_false(crl_next_entry(&entries, &got));
	assert_true(der_at_end(&entries));
}

/* crl_parse gives back every field of spec and entries, and its tbs is what was signed. */
static void round_trip(const uint8_t *der, size_t len, const struct ca *ca,
                       const struct crl_spec *spec, const struct crl_entry *e, size_t n)
{
	struct crl_info info;
	parse_ok(der, len, &info);
	assert_true(info.has_number);
	assert_true(info.number == spec->number);
	assert_int_equal(info.is_delta, spec->delta_base != 0);
	assert_true(info.delta_base == spec->delta_base);
	assert_int_equal(info.this_update, spec->this_update);
	assert_int_equal(info.next_update, spec->next_update);
	assert_int_equal(info.n_entries, n);
	assert_true(der_equals(&info.issuer, ca->name, ca->name_len));
	size_t alen;
	const uint8_t *alg = ocsp_signer_sigalg(ca->signer, &alen);
	assert_true(der_equals(&info.sigalg, alg, alen));
	if (spec->idp_uri == NULL) {
		assert_int_equal(der_len(&info.idp), 0);
	} else {
		/* [0] { [0] { [6] uri } }, the contents of the IssuingDistributionPoint */
		size_t ul = strlen(spec->idp_uri);
		assert_true(ul < 120);
		uint8_t want[128] = {0xa0, (uint8_t)(ul + 4), 0xa0, (uint8_t)(ul + 2), 0x86,
		                     (uint8_t)ul};
		memcpy(want + 6, spec->idp_uri, ul);
		assert_true(der_equals(&info.idp, want, ul + 6));
	}

	/* tbs: the TBSCertList TLV right after the outer header, sigalg right after it. */
	assert_true(info.tbs.p == der + 2 || info.tbs.p == der + 3 || info.tbs.p == der + 4);
	assert_int_equal(info.tbs.p[0], DER_SEQUENCE);
	assert_ptr_equal(info.tbs.end, info.sigalg.p);
	assert_ptr_equal(info.sig.end, der + len);
	assert_true(ocsp_signer_verify(ca->signer, info.tbs.p, der_len(&info.tbs), info.sig.p,
	                               der_len(&info.sig)));
	/* One bit off anywhere in it, and the signature no longer covers it. */
	uint8_t *copy = malloc(der_len(&info.tbs));
	assert_non_null(copy);
	for (size_t at = 0; at < der_len(&info.tbs); at += der_len(&info.tbs) / 7 + 1) {
		memcpy(copy, info.tbs.p, der_len(&info.tbs));
		copy[at] ^= 0x01;
		assert_false(ocsp_signer_verify(ca->signer, copy, der_len(&info.tbs), info.sig.p,
		                                der_len(&info.sig)));
	}
	/* The part before tbs is one whole header, the part after it the signature. */
	memcpy(copy, info.tbs.p, der_len(&info.tbs));
	assert_false(ocsp_signer_verify(ca->signer, copy + 1, der_len(&info.tbs) - 1, info.sig.p,
	                                der_len(&info.sig)));
	free(copy);
	expect_entries(info.entries, e, n);
}

/* ---- building ---- */

static void test_full_crl(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		const struct ca *ca = &cas[c];
		struct crl_spec spec = spec_for(ca, 42, 0);
		size_t len;
		uint8_t *der = build(&spec, sample, N_SAMPLE, ca, &len);
		openssl_agrees(der, len, ca, &spec, sample, N_SAMPLE);
		round_trip(der, len, ca, &spec, sample, N_SAMPLE);
		free(der);
	}
}

/* A number as large as a cRLNumber revd reads, and as small. */
static void test_numbers(void **state)
{
	(void)state;
	static const uint64_t numbers[] = {1, 127, 128, 255, 256, 0x7fffffffffffffffULL,
	                                   0x8000000000000000ULL, UINT64_MAX};
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		struct crl_spec spec = spec_for(&cas[0], numbers[i], 0);
		size_t len;
		uint8_t *der = build(&spec, sample, 1, &cas[0], &len);
		openssl_agrees(der, len, &cas[0], &spec, sample, 1);
		round_trip(der, len, &cas[0], &spec, sample, 1);
		free(der);
		/* And as the base of a delta. */
		spec = spec_for(&cas[0], UINT64_MAX, numbers[i]);
		der = build(&spec, sample, 1, &cas[0], &len);
		openssl_agrees(der, len, &cas[0], &spec, sample, 1);
		round_trip(der, len, &cas[0], &spec, sample, 1);
		free(der);
	}
}

/* The tag each of thisUpdate, nextUpdate and the revocationDates carries in the DER. */
static void time_tags(const uint8_t *der, size_t len, int *this_tag, int *next_tag,
                      int *entry_tags, size_t n)
{
	struct der_cursor c = der_cursor_init(der, len), list, tbs, entries, ent;
	assert_true(der_read(&c, DER_SEQUENCE, &list));
	assert_true(der_read(&list, DER_SEQUENCE, &tbs));
	assert_true(der_read(&tbs, DER_INTEGER, NULL));
	assert_true(der_read(&tbs, DER_SEQUENCE, NULL)); /* signature */
	assert_true(der_read(&tbs, DER_SEQUENCE, NULL)); /* issuer */
	*this_tag = der_peek_tag(&tbs);
	assert_true(der_read(&tbs, *this_tag, NULL));
	*next_tag = der_peek_tag(&tbs);
	assert_true(der_read(&tbs, *next_tag, NULL));
	if (n == 0)
		return;
	assert_true(der_read(&tbs, DER_SEQUENCE, &entries));
	for (size_t i = 0; i < n; i++) {
		assert_true(der_read(&entries, DER_SEQUENCE, &ent));
		assert_true(der_read(&ent, DER_INTEGER, NULL));
		entry_tags[i] = der_peek_tag(&ent);
	}
}

static int want_tag(int64_t t)
{
	return t >= UTC_FIRST && t < UTC_END ? DER_UTC_TIME : DER_GENERALIZED_TIME;
}

/* UTCTime for 1950 through 2049, GeneralizedTime before and after (RFC 5280 §5.1.2.4). */
static void test_time_encodings(void **state)
{
	(void)state;
	const int64_t last_1949 = UTC_FIRST - 1, last_2049 = UTC_END - 1;
	static const struct {
		int64_t this_update, next_update;
	} windows[] = {
		{T0, T0 + 86400},
		{UTC_END - 1, UTC_END},               /* 2049-12-31T23:59:59Z, 2050-01-01 */
		{UTC_END, UTC_END + 86400},           /* both GeneralizedTime */
		{4102444800LL, 4102444800LL + 3600},  /* 2100 */
		{UTC_FIRST - 1, UTC_FIRST},           /* 1949-12-31T23:59:59Z, 1950-01-01 */
		{UTC_FIRST, UTC_FIRST + 1},           /* both UTCTime */
		{-946771200LL, -946771200LL + 86400}, /* 1940 */
	};
	const struct crl_entry entries[] = {
		{.serial_len = 1, .serial = {1}, .reason = CRL_ENTRY_NO_REASON,
		 .revoked_at = last_1949},
		{.serial_len = 1, .serial = {2}, .reason = CRL_ENTRY_NO_REASON,
		 .revoked_at = UTC_FIRST},
		{.serial_len = 1, .serial = {3}, .reason = KEY_COMPROMISE, .revoked_at = T0,
		 .invalidity_date = last_1949},
		{.serial_len = 1, .serial = {4}, .reason = CRL_ENTRY_NO_REASON,
		 .revoked_at = last_2049, .invalidity_date = UTC_FIRST},
		{.serial_len = 1, .serial = {5}, .reason = CRL_ENTRY_HOLD, .revoked_at = UTC_END,
		 .invalidity_date = last_2049},
		{.serial_len = 1, .serial = {6}, .reason = CRL_ENTRY_NO_REASON,
		 .revoked_at = 4102444800LL, .invalidity_date = UTC_END},
	};
	const size_t n = sizeof(entries) / sizeof(entries[0]);
	for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
		for (int c = 0; c < 2; c++) {
			struct crl_spec spec = spec_for(&cas[c], 7 + w, 0);
			spec.this_update = windows[w].this_update;
			spec.next_update = windows[w].next_update;
			size_t len;
			uint8_t *der = build(&spec, entries, n, &cas[c], &len);
			int this_tag, next_tag, tags[sizeof(entries) / sizeof(entries[0])];
			time_tags(der, len, &this_tag, &next_tag, tags, n);
			if (this_tag != want_tag(spec.this_update) ||
			    next_tag != want_tag(spec.next_update))
				fail_msg("window %zu: tags 0x%02x 0x%02x", w, this_tag, next_tag);
			for (size_t i = 0; i < n; i++)
				if (tags[i] != want_tag(entries[i].revoked_at))
					fail_msg("entry %zu: tag 0x%02x", i, tags[i]);
			openssl_agrees(der, len, &cas[c], &spec, entries, n);
			round_trip(der, len, &cas[c], &spec, entries, n);
			free(der);
		}
	}
}

static void test_delta_crl(void **state)
{
	(void)state;
	const struct crl_entry delta[] = {
		{.serial_len = 1, .serial = {0x03}, .reason = KEY_COMPROMISE,
		 .revoked_at = T0 - 10},
		{.serial_len = 1, .serial = {0x04}, .reason = CRL_ENTRY_REMOVE,
		 .revoked_at = T0 - 9},
		{.serial_len = 2, .serial = {0x00, 0x99}, .reason = CRL_ENTRY_HOLD,
		 .revoked_at = T0 - 8},
		{.serial_len = 3, .serial = {0x01, 0x00, 0x00}, .reason = CRL_ENTRY_REMOVE,
		 .revoked_at = T0 - 7, .invalidity_date = T0 - 100},
	};
	const size_t n = sizeof(delta) / sizeof(delta[0]);
	for (int c = 0; c < 2; c++) {
		const struct ca *ca = &cas[c];
		/* A delta on full CRL 41; freshest_uri is for full CRLs and is left out. */
		struct crl_spec spec = spec_for(ca, 43, 41);
		spec.freshest_uri = "http://crl.revd.test/delta.crl";
		spec.idp_uri = "http://crl.revd.test/delta.crl";
		size_t len;
		uint8_t *der = build(&spec, delta, n, ca, &len);
		assert_null(memmem(der, len, "\x06\x03\x55\x1d\x2e", 5)); /* no freshestCRL OID */
		openssl_agrees(der, len, ca, &spec, delta, n);
		round_trip(der, len, ca, &spec, delta, n);
		free(der);

		/* The full CRL it is based on names where the delta is published. */
		struct crl_spec full = spec_for(ca, 41, 0);
		full.freshest_uri = "http://crl.revd.test/delta.crl";
		der = build(&full, sample, N_SAMPLE, ca, &len);
		openssl_agrees(der, len, ca, &full, sample, N_SAMPLE);
		round_trip(der, len, ca, &full, sample, N_SAMPLE);
		free(der);

		/* removeFromCRL in a full CRL is refused. */
		full.freshest_uri = NULL;
		build_refused(&full, delta, n, "removeFromCRL in a full CRL");
	}
}

static void test_issuing_distribution_point(void **state)
{
	(void)state;
	static const char *const uris[] = {
		"http://crl.revd.test/ca-2024/part%201.crl?x=y&z",
		"ldap://ldap.revd.test/cn=CA,o=revd?certificateRevocationList;binary",
		"h",
	};
	for (size_t u = 0; u < sizeof(uris) / sizeof(uris[0]); u++) {
		for (int c = 0; c < 2; c++) {
			struct crl_spec spec = spec_for(&cas[c], 100 + u, 0);
			spec.idp_uri = uris[u];
			spec.freshest_uri = uris[(u + 1) % 3];
			size_t len;
			uint8_t *der = build(&spec, sample, N_SAMPLE, &cas[c], &len);
			openssl_agrees(der, len, &cas[c], &spec, sample, N_SAMPLE);
			round_trip(der, len, &cas[c], &spec, sample, N_SAMPLE);
			free(der);
		}
	}
	/* A URI whose length needs the long form, inside elements that then do too. */
	char longuri[300];
	memset(longuri, 'a', sizeof(longuri) - 1);
	memcpy(longuri, "http://", 7);
	longuri[sizeof(longuri) - 1] = '\0';
	struct crl_spec spec = spec_for(&cas[0], 5, 0);
	spec.idp_uri = longuri;
	spec.freshest_uri = longuri;
	size_t len;
	uint8_t *der = build(&spec, NULL, 0, &cas[0], &len);
	openssl_agrees(der, len, &cas[0], &spec, NULL, 0);
	struct crl_info info;
	parse_ok(der, len, &info);
	assert_true(der_len(&info.idp) > strlen(longuri));
	assert_non_null(memmem(info.idp.p, der_len(&info.idp), longuri, strlen(longuri)));
	free(der);
}

static void test_empty_crl(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		struct crl_spec spec = spec_for(&cas[c], 9, c == 0 ? 0 : 8);
		size_t len;
		uint8_t *der = build(&spec, NULL, 0, &cas[c], &len);
		/* No revokedCertificates field: crlExtensions right after nextUpdate. */
		X509_CRL *crl = openssl_crl(der, len);
		assert_null(X509_CRL_get_REVOKED(crl));
		X509_CRL_free(crl);
		int this_tag, next_tag;
		time_tags(der, len, &this_tag, &next_tag, NULL, 0);
		struct crl_info info;
		parse_ok(der, len, &info);
		struct der_cursor tbs = info.tbs, body;
		assert_true(der_read(&tbs, DER_SEQUENCE, &body));
		for (int i = 0; i < 5; i++) /* version, signature, issuer, this, next */
			assert_true(der_read_any(&body, NULL, NULL, NULL));
		assert_int_equal(der_peek_tag(&body), DER_CTX_CONS(0));
		assert_int_equal(info.n_entries, 0);
		openssl_agrees(der, len, &cas[c], &spec, NULL, 0);
		round_trip(der, len, &cas[c], &spec, NULL, 0);
		free(der);
	}
}

static void test_build_refusals(void **state)
{
	(void)state;
	struct crl_spec spec = spec_for(&cas[0], 1, 0);
	struct crl_entry e[3];
	memcpy(e, sample, sizeof(e));

	/* Out of order, by value and by length. */
	struct crl_entry swapped[2] = {sample[1], sample[0]};
	build_refused(&spec, swapped, 2, "entries out of order");
	struct crl_entry by_len[2] = {sample[2], sample[0]};
	build_refused(&spec, by_len, 2, "a longer serial before a shorter one");
	struct crl_entry twice[3] = {sample[0], sample[1], sample[1]};
	build_refused(&spec, twice, 3, "a repeated serial");
	struct crl_entry bad[1] = {sample[0]};
	bad[0].serial_len = 0;
	build_refused(&spec, bad, 1, "an empty serial");
	bad[0].serial_len = CRL_MAX_SERIAL + 1;
	build_refused(&spec, bad, 1, "a serial longer than CRL_MAX_SERIAL");

	/* Reasons: 7 is unassigned, 8 only in deltas, nothing above 10 or below none. */
	static const int reasons[] = {REASON_UNASSIGNED, CRL_ENTRY_REMOVE, 11, 255, -2, 257};
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		e[1].reason = reasons[i];
		build_refused(&spec, e, 3, "a reason out of range");
	}
	struct crl_spec delta = spec_for(&cas[0], 2, 1);
	e[1].reason = REASON_UNASSIGNED;
	build_refused(&delta, e, 3, "reason 7 in a delta");
	e[1].reason = CRL_ENTRY_REMOVE;
	size_t len;
	uint8_t *der = build(&delta, e, 3, &cas[0], &len); /* 8 in a delta is fine */
	free(der);
	e[1] = sample[1];

	/* The CRL's own fields. */
	struct crl_spec s = spec;
	s.number = 0;
	build_refused(&s, e, 3, "cRLNumber 0");
	s = spec;
	s.next_update = s.this_update;
	build_refused(&s, e, 3, "nextUpdate equal to thisUpdate");
	s.next_update = s.this_update - 1;
	build_refused(&s, e, 3, "nextUpdate before thisUpdate");
	/* Times no Time can hold (year 10000) fail cleanly too. */
	s = spec;
	s.next_update = 253402300800LL;
	struct buf out;
	buf_init(&out, 1 << 20);
	char err[256] = "";
	assert_false(crl_build(&s, e, 3, cas[0].signer, &out, err, sizeof(err)));
	assert_true(err[0] != '\0');
	buf_free(&out);
	e[2].revoked_at = 253402300800LL;
	buf_init(&out, 1 << 20);
	err[0] = '\0';
	assert_false(crl_build(&spec, e, 3, cas[0].signer, &out, err, sizeof(err)));
	assert_true(err[0] != '\0');
	buf_free(&out);
	/* err may be NULL. */
	buf_init(&out, 1 << 20);
	assert_false(crl_build(&s, e, 3, cas[0].signer, &out, NULL, 0));
	buf_free(&out);
}

/* A buffer too small for the CRL: refused with a message, at every size below the one
 * it needs, and the CRL built at exactly that size. */
static void test_buffer_too_small(void **state)
{
	(void)state;
	struct crl_spec spec = spec_for(&cas[0], 3, 0);
	spec.idp_uri = "http://crl.revd.test/a.crl";
	spec.freshest_uri = "http://crl.revd.test/a-delta.crl";
	struct buf out;
	buf_init(&out, 200);
	char err[256] = "";
	assert_false(crl_build(&spec, sample, N_SAMPLE, cas[0].signer, &out, err, sizeof(err)));
	assert_true(out.failed);
	assert_true(err[0] != '\0');
	assert_true(out.len <= 200);
	buf_free(&out);

	/* RSA PKCS#1 v1.5: every signature has the same length, so the CRL has too. */
	const struct ca *ca = &cas[1];
	spec = spec_for(ca, 3, 0);
	spec.freshest_uri = "http://crl.revd.test/a-delta.crl";
	size_t need;
	uint8_t *want = build(&spec, sample, N_SAMPLE, ca, &need);
	for (size_t max = 0; max <= need; max++) {
		buf_init(&out, max);
		err[0] = '\0';
		bool ok = crl_build(&spec, sample, N_SAMPLE, ca->signer, &out, err, sizeof(err));
		if (max < need) {
			if (ok)
				fail_msg("built a %zu-byte CRL in %zu bytes", need, max);
			assert_true(out.failed);
			assert_true(err[0] != '\0');
		} else {
			if (!ok)
				fail_msg("no CRL in exactly %zu bytes: %s", max, err);
			assert_int_equal(out.len, need);
			assert_memory_equal(out.data, want, need); /* deterministic signature */
		}
		buf_free(&out);
	}
	free(want);
}

/* ---- crl_parse ---- */

static void test_truncated_and_trailing(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		struct crl_spec spec = spec_for(&cas[c], 77, c);
		spec.idp_uri = "http://crl.revd.test/x.crl";
		size_t len;
		uint8_t *der = build(&spec, sample, N_SAMPLE, &cas[c], &len);
		struct crl_info info;
		parse_ok(der, len, &info);
		/* Each prefix in a buffer of its own size, so that a read past it is caught. */
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *copy = malloc(cut ? cut : 1);
			assert_non_null(copy);
			memcpy(copy, der, cut);
			if (crl_parse(copy, cut, &info))
				fail_msg("%s: a CRL cut at %zu of %zu accepted", cas[c].what, cut,
				         len);
			free(copy);
		}
		/* The signature BIT STRING with unused bits. */
		parse_ok(der, len, &info);
		size_t unused = (size_t)(info.sig.p - der) - 1;
		assert_int_equal(der[unused], 0);
		der[unused] = 1;
		assert_false(crl_parse(der, len, &info));
		der[unused] = 0;
		uint8_t *longer = malloc(len + 2);
		assert_non_null(longer);
		memcpy(longer, der, len);
		for (int b = 0; b < 256; b += 51) {
			longer[len] = (uint8_t)b;
			longer[len + 1] = 0;
			assert_false(crl_parse(longer, len + 1, &info));
			assert_false(crl_parse(longer, len + 2, &info));
		}
		free(longer);
		free(der);
	}
}

/* Parsing allocates nothing, and neither does reading the entries. */
static void test_parse_no_allocation(void **state)
{
	(void)state;
	struct crl_spec spec = spec_for(&cas[0], 5, 0);
	size_t len;
	uint8_t *der = build(&spec, sample, N_SAMPLE, &cas[0], &len);
	struct crl_info info;
	failmalloc_arm(1);
	bool ok = crl_parse(der, len, &info);
	struct crl_entry e;
	size_t n = 0;
	while (ok && crl_next_entry(&info.entries, &e))
		n++;
	unsigned long seen = failmalloc_seen();
	failmalloc_arm(0);
	assert_true(ok);
	assert_int_equal(n, N_SAMPLE);
	assert_int_equal(seen, 0);
	free(der);
}

/* Signature algorithm patched in one place only: refused; in both: read (the signature
 * is not crl_parse's to check). */
static void test_sigalg_mismatch(void **state)
{
	(void)state;
	for (int c = 0; c < 2; c++) {
		struct crl_spec spec = spec_for(&cas[c], 5, 0);
		size_t len;
		uint8_t *der = build(&spec, sample, 2, &cas[c], &len);
		struct crl_info info;
		parse_ok(der, len, &info);
		size_t alen;
		const uint8_t *alg = ocsp_signer_sigalg(cas[c].signer, &alen);
		size_t outer = (size_t)(info.sigalg.p - der);
		const uint8_t *in = memmem(info.tbs.p, der_len(&info.tbs), alg, alen);
		assert_non_null(in);
		size_t inner = (size_t)(in - der);
		/* the OID's last octet: sha256 -> sha384 with RSA, ecdsa-with-SHA256 -> 384 */
		size_t oid_last = 2 + 2 + (size_t)alg[3] - 1;
		assert_int_equal(alg[2], DER_OID);
		uint8_t *copy = malloc(len);
		assert_non_null(copy);
		for (int which = 0; which < 3; which++) {
			memcpy(copy, der, len);
			if (which != 1)
				copy[outer + oid_last]++;
			if (which != 0)
				copy[inner + oid_last]++;
			bool ok = crl_parse(copy, len, &info);
			if (ok != (which == 2))
				fail_msg("%s: sigalg patched (%d): %s", cas[c].what, which,
				         ok ? "accepted" : "refused");
			/* OpenSSL reads all three; only its verification sees a mismatch. */
			X509_CRL *crl = openssl_crl(copy, len);
			assert_true(X509_CRL_verify(crl, X509_get0_pubkey(cas[c].cert)) <= 0);
			X509_CRL_free(crl);
			ERR_clear_error();
		}
		free(copy);
		free(der);
	}
}

/* A CRL made by OpenSSL's X509_CRL API from the EC CA: version 2 unless v1, thisUpdate
 * T0, nextUpdate T0 + 1 day if next; v2: an AKI, cRLNumber 5. Not signed yet. */
static X509_CRL *ossl_crl_with(bool v2, bool next)
{
	X509_CRL *crl = X509_CRL_new();
	assert_non_null(crl);
	if (v2)
		assert_int_equal(X509_CRL_set_version(crl, X509_CRL_VERSION_2), 1);
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(pki.ca)), 1);
	ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)T0);
	assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
	ASN1_TIME_set(t, (time_t)(T0 + 86400));
	if (next)
		assert_int_equal(X509_CRL_set1_nextUpdate(crl, t), 1);
	ASN1_TIME_free(t);
	if (v2) {
		X509V3_CTX ctx;
		X509V3_set_ctx(&ctx, pki.ca, NULL, NULL, crl, 0);
		X509_EXTENSION *aki = X509V3_EXT_conf_nid(NULL, &ctx,
		                                          NID_authority_key_identifier,
		                                          "keyid:always");
		assert_non_null(aki);
		assert_int_equal(X509_CRL_add_ext(crl, aki, -1), 1);
		X509_EXTENSION_free(aki);
		ASN1_INTEGER *num = ASN1_INTEGER_new();
		ASN1_INTEGER_set_uint64(num, 5);
		assert_int_equal(X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0), 1);
		ASN1_INTEGER_free(num);
	}
	return crl;
}

static X509_CRL *ossl_crl(bool v2)
{
	return ossl_crl_with(v2, true);
}

/* An entry for ossl_crl; reason CRL_ENTRY_NO_REASON and invalidity 0: without. Returns it
 * for more extensions; X509_CRL_add0_revoked takes it. */
static X509_REVOKED *ossl_entry(uint64_t serial, int64_t when, int reason, int64_t inv)
{
	X509_REVOKED *rev = X509_REVOKED_new();
	assert_non_null(rev);
	ASN1_INTEGER *sn = ASN1_INTEGER_new();
	ASN1_INTEGER_set_uint64(sn, serial);
	assert_int_equal(X509_REVOKED_set_serialNumber(rev, sn), 1);
	ASN1_INTEGER_free(sn);
	ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)when);
	assert_int_equal(X509_REVOKED_set_revocationDate(rev, t), 1);
	ASN1_TIME_free(t);
	if (reason != CRL_ENTRY_NO_REASON) {
		ASN1_ENUMERATED *r = ASN1_ENUMERATED_new();
		ASN1_ENUMERATED_set(r, reason);
		assert_int_equal(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, r, 0, 0), 1);
		ASN1_ENUMERATED_free(r);
	}
	if (inv != 0) {
		ASN1_GENERALIZEDTIME *g = ASN1_GENERALIZEDTIME_set(NULL, (time_t)inv);
		assert_int_equal(X509_REVOKED_add1_ext_i2d(rev, NID_invalidity_date, g, 0, 0), 1);
		ASN1_GENERALIZEDTIME_free(g);
	}
	return rev;
}

/* An extension of an OID revd does not know, with value NULL. */
static X509_EXTENSION *unknown_ext(bool critical)
{
	ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.4.1.55555.1.2", 1);
	ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
	assert_int_equal(ASN1_OCTET_STRING_set(val, (const unsigned char *)"\x05\x00", 2), 1);
	X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, obj, critical ? 1 : 0, val);
	assert_non_null(ext);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(val);
	return ext;
}

/* Sorts, signs (EC CA, SHA-256) and encodes crl; frees it. */
static uint8_t *ossl_der(X509_CRL *crl, size_t *len)
{
	assert_int_equal(X509_CRL_sort(crl), 1);
	assert_true(X509_CRL_sign(crl, pki.ca_key, EVP_sha256()) > 0);
	unsigned char *der = NULL;
	int n = i2d_X509_CRL(crl, &der);
	assert_true(n > 0);
	uint8_t *out = malloc((size_t)n);
	assert_non_null(out);
	memcpy(out, der, (size_t)n);
	OPENSSL_free(der);
	X509_CRL_free(crl);
	*len = (size_t)n;
	return out;
}

static void test_openssl_made(void **state)
{
	(void)state;
	X509_CRL *crl = ossl_crl(true);
	/* Added out of order: X509_CRL_sort puts them in serial order, as revd wants. */
	X509_CRL_add0_revoked(crl, ossl_entry(0x1234567890abcdefULL, T0 - 5, CRL_ENTRY_HOLD, 0));
	X509_CRL_add0_revoked(crl, ossl_entry(7, T0 - 100, CRL_ENTRY_NO_REASON, 0));
	X509_CRL_add0_revoked(crl, ossl_entry(0x80, T0 - 50, KEY_COMPROMISE, T0 - 1000));
	X509_CRL_add0_revoked(crl, ossl_entry(0xffffffffffffffffULL, UTC_END + 10,
	                                      CRL_ENTRY_UNSPECIFIED, 0));
	X509_CRL_add0_revoked(crl, ossl_entry(0x9000, UTC_FIRST - 10, 10, UTC_FIRST - 20));
	size_t len;
	uint8_t *der = ossl_der(crl, &len);
	const struct crl_entry want[] = {
		{.serial_len = 1, .serial = {7}, .reason = CRL_ENTRY_NO_REASON,
		 .revoked_at = T0 - 100},
		{.serial_len = 2, .serial = {0x00, 0x80}, .reason = KEY_COMPROMISE,
		 .revoked_at = T0 - 50, .invalidity_date = T0 - 1000},
		{.serial_len = 3, .serial = {0x00, 0x90, 0x00}, .reason = 10,
		 .revoked_at = UTC_FIRST - 10, .invalidity_date = UTC_FIRST - 20},
		{.serial_len = 8, .serial = {0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef},
		 .reason = CRL_ENTRY_HOLD, .revoked_at = T0 - 5},
		/* OpenSSL writes unspecified; it reads back as such */
		{.serial_len = 9,
		 .serial = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		 .reason = CRL_ENTRY_UNSPECIFIED,
		 .revoked_at = UTC_END + 10},
	};
	const size_t n = sizeof(want) / sizeof(want[0]);
	struct crl_info info;
	parse_ok(der, len, &info);
	assert_true(info.has_number);
	assert_true(info.number == 5);
	assert_false(info.is_delta);
	assert_int_equal(info.this_update, T0);
	assert_int_equal(info.next_update, T0 + 86400);
	assert_int_equal(info.n_entries, n);
	assert_true(der_equals(&info.issuer, cas[0].name, cas[0].name_len));
	assert_true(ocsp_signer_verify(cas[0].signer, info.tbs.p, der_len(&info.tbs), info.sig.p,
	                               der_len(&info.sig)));
	struct der_cursor it = info.entries;
	struct crl_entry got;
	for (size_t i = 0; i < n; i++) {
		assert_true(crl_next_entry(&it, &got));
		assert_int_equal(got.serial_len, want[i].serial_len);
		assert_memory_equal(got.serial, want[i].serial, want[i].serial_len);
		assert_int_equal(got.reason, want[i].reason);
		assert_int_equal(got.revoked_at, want[i].revoked_at);
		assert_int_equal(got.invalidity_date, want[i].invalidity_date);
		if (i > 0)
			assert_true(crl_serial_cmp(want[i - 1].serial, want[i - 1].serial_len,
			                           got.serial, got.serial_len) < 0);
	}
	assert_false(crl_next_entry(&it, &got));
	free(der);

	/* No entries, no nextUpdate. */
	crl = ossl_crl_with(true, false);
	der = ossl_der(crl, &len);
	parse_ok(der, len, &info);
	assert_int_equal(info.next_update, 0);
	assert_int_equal(info.n_entries, 0);
	free(der);
}

static void expect_refused(X509_CRL *crl, const char *why)
{
	size_t len;
	uint8_t *der = ossl_der(crl, &len);
	struct crl_info info;
	/* OpenSSL reads what it made, */
	X509_CRL_free(openssl_crl(der, len));
	ERR_clear_error();
	/* but revd does not. */
	if (crl_parse(der, len, &info))
		fail_msg("crl_parse accepted %s", why);
	free(der);
}

static void expect_accepted(X509_CRL *crl, const char *what, struct crl_info *info,
                            uint8_t **der)
{
	size_t len;
	*der = ossl_der(crl, &len);
	if (!crl_parse(*der, len, info))
		fail_msg("crl_parse refused %s", what);
}

/*
 * A CRL from the EC CA's pieces with revokedCertificates (whole TLV) and the SEQUENCE OF
 * Extension inside crlExtensions [0] given verbatim (NULL: left out). Its signature is
 * four bytes of nothing: crl_parse does not check signatures, and OpenSSL reads it.
 */
static uint8_t *hand_crl(const uint8_t *revoked, size_t rlen, const uint8_t *exts, size_t elen,
                         size_t *len)
{
	static const uint8_t v2 = 1, sig[4] = {0};
	size_t alen;
	const uint8_t *alg = ocsp_signer_sigalg(cas[0].signer, &alen);
	struct buf b;
	buf_init(&b, 4096);
	size_t list = der_begin(&b, DER_SEQUENCE);
	size_t tbs = der_begin(&b, DER_SEQUENCE);
	der_put(&b, DER_INTEGER, &v2, 1);
	buf_append(&b, alg, alen);
	buf_append(&b, cas[0].name, cas[0].name_len);
	der_put_time(&b, T0);
	der_put_time(&b, T0 + 86400);
	if (revoked != NULL)
		buf_append(&b, revoked, rlen);
	if (exts != NULL) {
		size_t x = der_begin(&b, DER_CTX_CONS(0));
		buf_append(&b, exts, elen);
		der_end(&b, x);
	}
	der_end(&b, tbs);
	buf_append(&b, alg, alen);
	size_t bits = der_begin(&b, DER_BIT_STRING);
	buf_append_byte(&b, 0);
	buf_append(&b, sig, sizeof(sig));
	der_end(&b, bits);
	assert_true(der_end(&b, list));
	assert_false(b.failed);
	return buf_steal(&b, len);
}

#define UTC_T0 0x17, 0x0d, '2', '3', '1', '1', '1', '4', '2', '2', '1', '3', '2', '0', 'Z'
#define CRL_NUMBER_5 0x06, 0x03, 0x55, 0x1d, 0x14, 0x04, 0x03, 0x02, 0x01, 0x05

/* What DER and RFC 5280 leave out or spell one way only, written the other way: OpenSSL
 * reads every one of these, crl_parse none but the controls. */
static void test_hand_made(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		bool ok;
		uint8_t revoked[64];
		size_t rlen;
		uint8_t exts[40];
		size_t elen;
	} cases[] = {
		{"control: one entry, cRLNumber 5", true,
		 {0x30, 0x14, 0x30, 0x12, 0x02, 0x01, 0x03, UTC_T0}, 22,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
		{"control: cRLNumber marked critical", true, {0}, 0,
		 {0x30, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x1d, 0x14, 0x01, 0x01, 0xff,
		  0x04, 0x03, 0x02, 0x01, 0x05}, 17},
		{"control: keyCompromise", true,
		 {0x30, 0x22, 0x30, 0x20, 0x02, 0x01, 0x03, UTC_T0, 0x30, 0x0c, 0x30, 0x0a,
		  0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x01}, 36,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
		{"control: an invalidityDate", true,
		 {0x30, 0x30, 0x30, 0x2e, 0x02, 0x01, 0x03, UTC_T0, 0x30, 0x1a, 0x30, 0x18,
		  0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11, 0x18, 0x0f, '2', '0', '2', '3',
		  '1', '1', '1', '4', '2', '2', '1', '3', '2', '0', 'Z'}, 50,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
		{"an empty revokedCertificates", false, {0x30, 0x00}, 2,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
		{"an entry with empty crlEntryExtensions", false,
		 {0x30, 0x16, 0x30, 0x14, 0x02, 0x01, 0x03, UTC_T0, 0x30, 0x00}, 24,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
		{"empty crlExtensions", false, {0}, 0, {0x30, 0x00}, 2},
		{"critical FALSE written out", false, {0}, 0,
		 {0x30, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x1d, 0x14, 0x01, 0x01, 0x00,
		  0x04, 0x03, 0x02, 0x01, 0x05}, 17},
		{"critical TRUE as 0x01 (BER)", false, {0}, 0,
		 {0x30, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x1d, 0x14, 0x01, 0x01, 0x01,
		  0x04, 0x03, 0x02, 0x01, 0x05}, 17},
		{"a cRLNumber with bytes after the number", false, {0}, 0,
		 {0x30, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x14, 0x04, 0x05, 0x02,
		  0x01, 0x05, 0x05, 0x00}, 16},
		{"a reason that is an INTEGER", false,
		 {0x30, 0x22, 0x30, 0x20, 0x02, 0x01, 0x03, UTC_T0, 0x30, 0x0c, 0x30, 0x0a,
		  0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x02, 0x01, 0x01}, 36,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
		{"an invalidityDate in UTCTime", false,
		 {0x30, 0x2e, 0x30, 0x2c, 0x02, 0x01, 0x03, UTC_T0, 0x30, 0x18, 0x30, 0x16,
		  0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x0f, UTC_T0}, 48,
		 {0x30, 0x0c, 0x30, 0x0a, CRL_NUMBER_5}, 14},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *der = hand_crl(cases[i].rlen ? cases[i].revoked : NULL, cases[i].rlen,
		                        cases[i].exts, cases[i].elen, &len);
		const unsigned char *p = der;
		X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
		if (crl == NULL || p != der + len)
			fail_msg("%s: OpenSSL does not read it", cases[i].what);
		X509_CRL_free(crl);
		struct crl_info info;
		if (crl_parse(der, len, &info) != cases[i].ok)
			fail_msg("%s: %s", cases[i].what, cases[i].ok ? "refused" : "accepted");
		if (i == 0) {
			assert_int_equal(info.n_entries, 1);
			assert_true(info.number == 5);
		}
		free(der);
	}
	ERR_clear_error();
}

static void test_parse_refusals(void **state)
{
	(void)state;
	struct crl_info info;
	uint8_t *der;

	/* v1: no version field. The same CRL as v2 is read (entries make v1 a CRL too). */
	X509_CRL *crl = ossl_crl(false);
	X509_REVOKED *rev;
	X509_CRL_add0_revoked(crl, ossl_entry(3, T0 - 1, CRL_ENTRY_NO_REASON, 0));
	expect_refused(crl, "a v1 CRL");
	crl = ossl_crl(true);
	X509_CRL_add0_revoked(crl, ossl_entry(3, T0 - 1, CRL_ENTRY_NO_REASON, 0));
	expect_accepted(crl, "the same CRL as v2", &info, &der);
	free(der);

	/* Version 1 written out (INTEGER 0), and a version 3 that CRLs do not have. */
	for (long v = 0; v <= 2; v += 2) {
		crl = ossl_crl(true);
		assert_int_equal(X509_CRL_set_version(crl, v), 1);
		expect_refused(crl, "an explicit version other than v2");
	}

	/* Unknown extensions: non-critical ones are passed over, critical ones refused, in
	 * the CRL and in an entry. */
	crl = ossl_crl(true);
	X509_EXTENSION *ext = unknown_ext(false);
	X509_CRL_add_ext(crl, ext, -1);
	X509_EXTENSION_free(ext);
	rev = ossl_entry(3, T0 - 1, KEY_COMPROMISE, 0);
	ext = unknown_ext(false);
	X509_REVOKED_add_ext(rev, ext, -1);
	X509_EXTENSION_free(ext);
	X509_CRL_add0_revoked(crl, rev);
	expect_accepted(crl, "unknown non-critical extensions", &info, &der);
	assert_int_equal(info.n_entries, 1);
	free(der);

	crl = ossl_crl(true);
	ext = unknown_ext(true);
	X509_CRL_add_ext(crl, ext, -1);
	X509_EXTENSION_free(ext);
	expect_refused(crl, "an unknown critical CRL extension");

	crl = ossl_crl(true);
	rev = ossl_entry(3, T0 - 1, KEY_COMPROMISE, 0);
	ext = unknown_ext(true);
	X509_REVOKED_add_ext(rev, ext, -1);
	X509_EXTENSION_free(ext);
	X509_CRL_add0_revoked(crl, rev);
	expect_refused(crl, "an unknown critical entry extension");

	/* certificateIssuer (critical, as RFC 5280 wants): an indirect CRL's entry. */
	crl = ossl_crl(true);
	rev = ossl_entry(3, T0 - 1, CRL_ENTRY_NO_REASON, 0);
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	gn->type = GEN_DIRNAME;
	gn->d.directoryName = X509_NAME_dup(X509_get_subject_name(pki.ca));
	sk_GENERAL_NAME_push(gens, gn);
	assert_int_equal(X509_REVOKED_add1_ext_i2d(rev, NID_certificate_issuer, gens, 1, 0), 1);
	GENERAL_NAMES_free(gens);
	X509_CRL_add0_revoked(crl, rev);
	expect_refused(crl, "a certificateIssuer entry extension");

	/* cRLNumber: up to 2^64 - 1; 2^64 and negative numbers refused. */
	BIGNUM *bn = BN_new();
	for (int k = 0; k < 4; k++) {
		crl = ossl_crl(true);
		assert_int_equal(BN_set_word(bn, 1), 1);
		assert_int_equal(BN_lshift(bn, bn, k == 3 ? 2 : 64), 1);
		if (k == 0)
			assert_int_equal(BN_sub_word(bn, 1), 1);
		if (k >= 2)
			BN_set_negative(bn, 1);
		ASN1_INTEGER *num = BN_to_ASN1_INTEGER(bn, NULL);
		assert_int_equal(
			X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_REPLACE), 1);
		ASN1_INTEGER_free(num);
		if (k == 0) {
			expect_accepted(crl, "cRLNumber 2^64 - 1", &info, &der);
			assert_true(info.number == UINT64_MAX);
			free(der);
		} else {
			expect_refused(crl, k == 1   ? "cRLNumber 2^64"
			                    : k == 2 ? "cRLNumber -2^64"
			                             : "cRLNumber -4");
		}
	}
	/* Delta CRL Indicator: it must be critical, and its base fit 64 bits. */
	for (int k = 0; k < 3; k++) {
		crl = ossl_crl(true);
		assert_int_equal(BN_set_word(bn, k == 2 ? 1 : 4), 1);
		if (k == 2)
			assert_int_equal(BN_lshift(bn, bn, 64), 1);
		ASN1_INTEGER *base = BN_to_ASN1_INTEGER(bn, NULL);
		assert_int_equal(X509_CRL_add1_ext_i2d(crl, NID_delta_crl, base, k != 1, 0), 1);
		ASN1_INTEGER_free(base);
		if (k == 0) {
			expect_accepted(crl, "a delta CRL", &info, &der);
			assert_true(info.is_delta);
			assert_true(info.delta_base == 4);
			free(der);
		} else {
			expect_refused(crl, k == 1 ? "a non-critical Delta CRL Indicator"
			                           : "a delta base of 2^64");
		}
	}
	BN_free(bn);

	/* A known extension twice. */
	crl = ossl_crl(true);
	ASN1_INTEGER *num = ASN1_INTEGER_new();
	ASN1_INTEGER_set_uint64(num, 6);
	assert_int_equal(X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, X509V3_ADD_APPEND), 1);
	ASN1_INTEGER_free(num);
	expect_refused(crl, "two cRLNumbers");
	crl = ossl_crl(true);
	rev = ossl_entry(3, T0 - 1, KEY_COMPROMISE, 0);
	ASN1_ENUMERATED *r = ASN1_ENUMERATED_new();
	ASN1_ENUMERATED_set(r, 4);
	assert_int_equal(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, r, 0, X509V3_ADD_APPEND),
	                 1);
	ASN1_ENUMERATED_free(r);
	X509_CRL_add0_revoked(crl, rev);
	expect_refused(crl, "two reasons in an entry");

	/* Reasons 7 and 11: not CRLReasons. */
	static const int bad_reasons[] = {7, 11};
	for (int i = 0; i < 2; i++) {
		crl = ossl_crl(true);
		X509_CRL_add0_revoked(crl, ossl_entry(3, T0 - 1, bad_reasons[i], 0));
		expect_refused(crl, "reason 7 or 11");
	}
	/* A serial longer than CRL_MAX_SERIAL octets. */
	crl = ossl_crl(true);
	rev = ossl_entry(3, T0 - 1, CRL_ENTRY_NO_REASON, 0);
	uint8_t big[CRL_MAX_SERIAL + 1];
	memset(big, 0x11, sizeof(big));
	ASN1_INTEGER *sn = ASN1_INTEGER_new();
	assert_int_equal(ASN1_STRING_set(sn, big, sizeof(big)), 1);
	assert_int_equal(X509_REVOKED_set_serialNumber(rev, sn), 1);
	ASN1_INTEGER_free(sn);
	X509_CRL_add0_revoked(crl, rev);
	expect_refused(crl, "a 33-octet serial");
}

static void test_serial_cmp(void **state)
{
	(void)state;
	static const struct {
		uint8_t a[4];
		size_t alen;
		uint8_t b[4];
		size_t blen;
		int sign;
	} cases[] = {
		{{0x01}, 1, {0x01}, 1, 0},
		{{0x01}, 1, {0x02}, 1, -1},
		{{0x7f}, 1, {0x00, 0x80}, 2, -1}, /* 127 < 128 */
		{{0x7f}, 1, {0x01, 0x00}, 2, -1},
		{{0x01, 0x00}, 2, {0x00, 0x80}, 2, 1}, /* 256 > 128 */
		{{0x00, 0xff}, 2, {0x01, 0x00}, 2, -1},
		{{0x12, 0x34, 0x56}, 3, {0x12, 0x34, 0x57}, 3, -1},
		{{0x12, 0x34, 0x56}, 3, {0x12, 0x34}, 2, 1},
		{{0x00}, 1, {0x00, 0x80, 0x00}, 3, -1},
		{{0x01}, 0, {0x00}, 1, -1}, /* empty first */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ab = crl_serial_cmp(cases[i].a, cases[i].alen, cases[i].b, cases[i].blen);
		int ba = crl_serial_cmp(cases[i].b, cases[i].blen, cases[i].a, cases[i].alen);
		int s = (ab > 0) - (ab < 0);
		if (s != cases[i].sign || (ba > 0) - (ba < 0) != -cases[i].sign)
			fail_msg("case %zu: %d and %d", i, ab, ba);
	}
	/* The sample is in that order. */
	for (size_t i = 1; i < N_SAMPLE; i++)
		assert_true(crl_serial_cmp(sample[i - 1].serial, sample[i - 1].serial_len,
		                           sample[i].serial, sample[i].serial_len) < 0);
}

/* ---- allocation failure ---- */

static void test_build_torture(void **state)
{
	(void)state;
	struct crl_spec spec = spec_for(&cas[0], 3, 2);
	spec.idp_uri = "http://crl.revd.test/a.crl";
	unsigned long n;
	for (n = 1; n < 1000; n++) {
		struct buf out;
		buf_init(&out, 1 << 20);
		char err[256] = "";
		failmalloc_arm(n);
		bool ok = crl_build(&spec, sample, N_SAMPLE, cas[0].signer, &out, err, sizeof(err));
		bool fired = failmalloc_fired();
		failmalloc_arm(0);
		if (fired) {
			if (ok)
				fail_msg("allocation %lu failed, yet the build succeeded", n);
			assert_true(out.failed);
			assert_true(err[0] != '\0');
			buf_free(&out);
			continue;
		}
		assert_true(ok);
		openssl_agrees(out.data, out.len, &cas[0], &spec, sample, N_SAMPLE);
		buf_free(&out);
		break;
	}
	assert_true(n > 1);
	assert_true(n < 1000);
}

/* ---- NIST PKITS ---- */

#ifdef REVD_VECTORS_DIR
static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	uint8_t *buf = malloc(1 << 16);
	assert_non_null(buf);
	*len = fread(buf, 1, 1 << 16, f);
	fclose(f);
	return buf;
}

/* Every PKITS CRL that crl_parse accepts reads the same to OpenSSL; the v2 ones of the
 * usual shape are accepted, and the delta CRLs are seen as such. */
static void test_pkits(void **state)
{
	(void)state;
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/pkits/crls", REVD_VECTORS_DIR);
	struct dirent **names;
	int nf = scandir(dir, &names, NULL, alphasort);
	assert_true(nf > 100);
	int accepted = 0, deltas = 0;
	for (int i = 0; i < nf; i++) {
		const char *name = names[i]->d_name;
		if (strstr(name, ".crl") == NULL) {
			free(names[i]);
			continue;
		}
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		size_t len;
		uint8_t *der = read_file(path, &len);
		struct crl_info info;
		bool ok = crl_parse(der, len, &info);
		const unsigned char *p = der;
		X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
		assert_non_null(crl);
		bool critical_unknown = strstr(name, "UnknownCRL") != NULL;
		if (critical_unknown && ok)
			fail_msg("%s: accepted", name);
		if (strcmp(name, "TrustAnchorRootCRL.crl") == 0 ||
		    strcmp(name, "deltaCRLCA1deltaCRL.crl") == 0 ||
		    strcmp(name, "onlyContainsUserCertsCACRL.crl") == 0 ||
		    strcmp(name, "LongSerialNumberCACRL.crl") == 0 ||
		    strcmp(name, "GeneralizedTimeCRLnextUpdateCACRL.crl") == 0)
			if (!ok)
				fail_msg("%s: refused", name);
		if (ok) {
			accepted++;
			STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
			int count = revs == NULL ? 0 : sk_X509_REVOKED_num(revs);
			assert_int_equal(count, (int)info.n_entries);
			struct der_cursor it = info.entries;
			struct crl_entry e;
			for (size_t k = 0; k < info.n_entries; k++) {
				assert_true(crl_next_entry(&it, &e));
				X509_REVOKED *rev = sk_X509_REVOKED_value(revs, (int)k);
				uint8_t s[CRL_MAX_SERIAL + 8];
				size_t sl = integer_contents(X509_REVOKED_get0_serialNumber(rev), s,
				                             sizeof(s));
				assert_int_equal(sl, e.serial_len);
				assert_memory_equal(s, e.serial, sl);
				const ASN1_TIME *when = X509_REVOKED_get0_revocationDate(rev);
				assert_int_equal(testpki_asn1_time(when), e.revoked_at);
				int crit;
				ASN1_ENUMERATED *r =
					X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
				long reason = r ? ASN1_ENUMERATED_get(r) : CRL_ENTRY_NO_REASON;
				assert_int_equal(reason, e.reason);
				ASN1_ENUMERATED_free(r);
			}
			assert_false(crl_next_entry(&it, &e));
			int crit;
			ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
			assert_int_equal(num != NULL, info.has_number);
			uint64_t v;
			if (num != NULL) {
				assert_int_equal(ASN1_INTEGER_get_uint64(&v, num), 1);
				assert_true(v == info.number);
			}
			ASN1_INTEGER_free(num);
			ASN1_INTEGER *base = X509_CRL_get_ext_d2i(crl, NID_delta_crl, &crit, NULL);
			assert_int_equal(base != NULL, info.is_delta);
			deltas += info.is_delta;
			ASN1_INTEGER_free(base);
			assert_int_equal(testpki_asn1_time(X509_CRL_get0_lastUpdate(crl)),
			                 info.this_update);
		}
		X509_CRL_free(crl);
		free(der);
		free(names[i]);
	}
	free(names);
	ERR_clear_error();
	assert_true(accepted > 100);
	assert_true(deltas >= 3);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_crl),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_time_encodings),
		cmocka_unit_test(test_delta_crl),
		cmocka_unit_test(test_issuing_distribution_point),
		cmocka_unit_test(test_empty_crl),
		cmocka_unit_test(test_build_refusals),
		cmocka_unit_test(test_buffer_too_small),
		cmocka_unit_test(test_truncated_and_trailing),
		cmocka_unit_test(test_parse_no_allocation),
		cmocka_unit_test(test_sigalg_mismatch),
		cmocka_unit_test(test_openssl_made),
		cmocka_unit_test(test_parse_refusals),
		cmocka_unit_test(test_hand_made),
		cmocka_unit_test(test_serial_cmp),
		cmocka_unit_test(test_build_torture),
#ifdef REVD_VECTORS_DIR
		cmocka_unit_test(test_pkits),
#endif
	};
	return cmocka_run_group_tests_name("crl", tests, setup, teardown);
}
