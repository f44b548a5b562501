/*
 * crl_parse, differentially against OpenSSL: whatever revd accepts must be a CRL to
 * d2i_X509_CRL, which consumes every byte and re-encodes (i2d) to the same bytes, with
 * the same thisUpdate, nextUpdate, cRLNumber, delta base and entries (count, and each
 * entry's serial, revocationDate, reason and invalidityDate, in order). crl_next_entry
 * gives back exactly the n_entries entries crl_parse counted and never fails on them.
 *
 * The issuer's attribute values are not crl_parse's to read (revd compares the Name byte
 * for byte, as it does a response's byName ResponderID), and OpenSSL refuses some on its
 * own (an invalid UTF8String, an odd-length BMPString). So: OpenSSL may refuse a CRL
 * revd accepts only when the issuer is a Name in shape whose values OpenSSL refuses, and
 * then the same CRL with a plain issuer must pass both ways as above.
 */
#define _GNU_SOURCE /* timegm */
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crl/crl.h"
#include "fuzz.h"

static bool within(const struct der_cursor *c, const uint8_t *data, size_t size)
{
	return c->p != NULL && c->p >= data && c->p <= c->end && c->end <= data + size;
}

static bool same(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static int64_t secs(const ASN1_TIME *t, const char *what)
{
	struct tm tm;
	FUZZ_CHECK(t != NULL && ASN1_TIME_to_tm(t, &tm) == 1, "OpenSSL cannot read %s", what);
	return (int64_t)timegm(&tm);
}

/* What crl_parse says of the CRL's layout, before OpenSSL is asked. */
static void check_revd_invariants(const struct crl_info *info, const uint8_t *data,
                                  size_t size)
{
	FUZZ_CHECK(within(&info->tbs, data, size) && info->tbs.p > data, "tbs outside input");
	FUZZ_CHECK(info->tbs.p[0] == DER_SEQUENCE, "tbs tag %02x", info->tbs.p[0]);
	FUZZ_CHECK(info->sigalg.p == info->tbs.end && within(&info->sigalg, data, size),
	           "sigalg not right after tbs");
	FUZZ_CHECK(within(&info->sig, data, size) && info->sig.end == data + size &&
	               der_len(&info->sig) >= 1,
	           "signature does not end the input");
	FUZZ_CHECK(within(&info->issuer, info->tbs.p, der_len(&info->tbs)), "issuer outside tbs");
	FUZZ_CHECK(info->issuer.p[0] == DER_SEQUENCE, "issuer tag");
	FUZZ_CHECK(info->is_delta || info->delta_base == 0, "a delta base without a delta");
	FUZZ_CHECK(info->has_number || info->number == 0, "a number without cRLNumber");
	FUZZ_CHECK(der_len(&info->idp) == 0 || within(&info->idp, info->tbs.p, der_len(&info->tbs)),
	           "idp outside tbs");
	FUZZ_CHECK(info->n_entries == 0 ? der_len(&info->entries) == 0
	                                : within(&info->entries, info->tbs.p, der_len(&info->tbs)),
	           "entries outside tbs");
}

static void check_entry(const struct crl_entry *e, X509_REVOKED *rev, size_t i)
{
	FUZZ_CHECK(e->serial_len >= 1 && e->serial_len <= CRL_MAX_SERIAL, "entry %zu serial %u",
	           i, e->serial_len);
	FUZZ_CHECK(e->reason == CRL_ENTRY_NO_REASON ||
	               (e->reason >= 0 && e->reason <= 10 && e->reason != 7),
	           "entry %zu reason %d", i, e->reason);

	unsigned char *der = NULL;
	int n = i2d_ASN1_INTEGER(X509_REVOKED_get0_serialNumber(rev), &der);
	FUZZ_CHECK(n >= 3, "entry %zu: serial re-encodes to %d bytes", i, n);
	size_t hl = der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f);
	FUZZ_CHECK(same(der + hl, (size_t)n - hl, e->serial, e->serial_len),
	           "entry %zu: serial differs", i);
	OPENSSL_free(der);

	FUZZ_CHECK(secs(X509_REVOKED_get0_revocationDate(rev), "a revocationDate") ==
	               e->revoked_at,
	           "entry %zu: revocationDate differs", i);

	int crit = 0;
	ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
	if (e->reason == CRL_ENTRY_NO_REASON) {
		FUZZ_CHECK(reason == NULL && crit == -1, "entry %zu: a reason to OpenSSL only", i);
	} else {
		FUZZ_CHECK(reason != NULL, "entry %zu: reason %d to revd only (%d)", i, e->reason,
		           crit);
		FUZZ_CHECK(ASN1_ENUMERATED_get(reason) == e->reason, "entry %zu: reason %ld vs %d",
		           i, ASN1_ENUMERATED_get(reason), e->reason);
	}
	ASN1_ENUMERATED_free(reason);

	ASN1_GENERALIZEDTIME *inv = X509_REVOKED_get_ext_d2i(rev, NID_invalidity_date, &crit, NULL);
	if (e->invalidity_date == 0) {
		/* 0 is also 1970-01-01T00:00:00Z: then OpenSSL has it, at 0. */
		FUZZ_CHECK(inv == NULL || secs(inv, "an invalidityDate") == 0,
		           "entry %zu: an invalidityDate to OpenSSL only", i);
	} else {
		FUZZ_CHECK(inv != NULL, "entry %zu: an invalidityDate to revd only", i);
		FUZZ_CHECK(secs(inv, "an invalidityDate") == e->invalidity_date,
		           "entry %zu: invalidityDate differs", i);
	}
	ASN1_GENERALIZEDTIME_free(inv);
}

/* An ASN1_INTEGER extension (cRLNumber, Delta CRL Indicator) as OpenSSL reads it. */
static void check_number_ext(X509_CRL *crl, int nid, bool present, uint64_t want,
                             const char *what)
{
	int crit = 0;
	ASN1_INTEGER *v = X509_CRL_get_ext_d2i(crl, nid, &crit, NULL);
	if (!present) {
		FUZZ_CHECK(v == NULL && crit == -1, "%s to OpenSSL only (%d)", what, crit);
		return;
	}
	uint64_t got = 0;
	FUZZ_CHECK(v != NULL && ASN1_INTEGER_get_uint64(&got, v) == 1, "%s to revd only (%d)",
	           what, crit);
	FUZZ_CHECK(got == want, "%s %llu vs %llu", what, (unsigned long long)got,
	           (unsigned long long)want);
	ASN1_INTEGER_free(v);
}

/* Every element DER, down to depth levels. */
static bool tree_valid(struct der_cursor c, int depth)
{
	while (!der_at_end(&c)) {
		int tag;
		struct der_cursor inner;
		if (!der_read_any(&c, &tag, &inner, NULL) || tag == 0)
			return false;
		if ((tag & DER_CONSTRUCTED) && (depth == 0 || !tree_valid(inner, depth - 1)))
			return false;
	}
	return true;
}

/* Name ::= SEQUENCE OF RelativeDistinguishedName, RDN ::= SET SIZE (1..MAX) OF
 * SEQUENCE { type OBJECT IDENTIFIER, value ANY }, all of it DER. */
static bool name_shaped(const struct der_cursor *issuer)
{
	struct der_cursor c = *issuer, name;
	if (!der_read(&c, DER_SEQUENCE, &name) || !der_at_end(&c) || !tree_valid(name, 8))
		return false;
	while (!der_at_end(&name)) {
		struct der_cursor rdn;
		if (!der_read(&name, DER_SET, &rdn) || der_at_end(&rdn))
			return false;
		while (!der_at_end(&rdn)) {
			struct der_cursor atv, oid;
			if (!der_read(&rdn, DER_SEQUENCE, &atv) || !der_read_oid(&atv, &oid) ||
			    !der_read_any(&atv, NULL, NULL, NULL) || !der_at_end(&atv))
				return false;
		}
	}
	return true;
}

static bool openssl_reads_name(const struct der_cursor *issuer)
{
	const unsigned char *p = issuer->p;
	X509_NAME *name = d2i_X509_NAME(NULL, &p, (long)der_len(issuer));
	bool ok = name != NULL && p == issuer->end;
	X509_NAME_free(name);
	ERR_clear_error();
	return ok;
}

static bool openssl_reads_algorithm(const struct der_cursor *alg)
{
	const unsigned char *p = alg->p;
	X509_ALGOR *a = d2i_X509_ALGOR(NULL, &p, (long)der_len(alg));
	bool ok = a != NULL && p == alg->end;
	X509_ALGOR_free(a);
	ERR_clear_error();
	return ok;
}

/* The CRL with its issuer replaced by CN=revd. A malloc'd CertificateList; its length
 * to *len. */
static uint8_t *with_plain_issuer(const struct crl_info *info, size_t *len)
{
	static const uint8_t plain[] = {0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55,
	                                0x04, 0x03, 0x0c, 0x04, 'r',  'e',  'v',  'd'};
	struct der_cursor t = info->tbs, tc;
	FUZZ_CHECK(der_read(&t, DER_SEQUENCE, &tc), "tbs");
	size_t before = (size_t)(info->issuer.p - tc.p);
	size_t after = (size_t)(tc.end - info->issuer.end);
	size_t tbs_c = before + sizeof(plain) + after;
	size_t sig_c = 1 + der_len(&info->sig);
	size_t list_c = fuzz_der_hdr_len(tbs_c) + tbs_c + der_len(&info->sigalg) + fuzz_der_hdr_len(sig_c) + sig_c;
	*len = fuzz_der_hdr_len(list_c) + list_c;
	uint8_t *out = malloc(*len), *o = out;
	FUZZ_CHECK(out != NULL, "malloc");
	o = fuzz_der_put(o, DER_SEQUENCE, list_c);
	o = fuzz_der_put(o, DER_SEQUENCE, tbs_c);
	o = fuzz_put_bytes(o, tc.p, before);
	o = fuzz_put_bytes(o, plain, sizeof(plain));
	o = fuzz_put_bytes(o, info->issuer.end, after);
	o = fuzz_put_bytes(o, info->sigalg.p, der_len(&info->sigalg));
	o = fuzz_der_put(o, DER_BIT_STRING, sig_c);
	*o++ = 0;
	o = fuzz_put_bytes(o, info->sig.p, der_len(&info->sig));
	FUZZ_CHECK(o == out + *len, "CRL with a plain issuer: length");
	return out;
}

/* OpenSSL's reading of data[0..size) against revd's info; false if OpenSSL refuses it. */
static bool compare(const uint8_t *data, size_t size, const struct crl_info *info)
{
	const unsigned char *p = data;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)size);
	if (crl == NULL) {
		ERR_clear_error();
		return false;
	}
	FUZZ_CHECK(p == data + size, "OpenSSL reads %zu of %zu bytes", (size_t)(p - data), size);
	unsigned char *again = NULL;
	int len = i2d_X509_CRL(crl, &again);
	FUZZ_CHECK(len > 0 && same(again, (size_t)len, data, size),
	           "OpenSSL re-encodes the CRL differently (not DER)");
	OPENSSL_free(again);

	FUZZ_CHECK(X509_CRL_get_version(crl) == X509_CRL_VERSION_2, "version %ld",
	           X509_CRL_get_version(crl));
	FUZZ_CHECK(secs(X509_CRL_get0_lastUpdate(crl), "thisUpdate") == info->this_update,
	           "thisUpdate differs");
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	if (next == NULL)
		FUZZ_CHECK(info->next_update == 0, "nextUpdate to revd only");
	else
		FUZZ_CHECK(secs(next, "nextUpdate") == info->next_update, "nextUpdate differs");
	check_number_ext(crl, NID_crl_number, info->has_number, info->number, "cRLNumber");
	check_number_ext(crl, NID_delta_crl, info->is_delta, info->delta_base, "delta base");
	int crit = 0;
	ISSUING_DIST_POINT *idp =
		X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &crit, NULL);
	if (der_len(&info->idp) > 0)
		FUZZ_CHECK(crit >= 0, "an IssuingDistributionPoint to revd only");
	ISSUING_DIST_POINT_free(idp);

	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
	int count = revs == NULL ? 0 : sk_X509_REVOKED_num(revs);
	FUZZ_CHECK(count == (int)info->n_entries, "OpenSSL %d entries, revd %zu", count,
	           info->n_entries);
	struct der_cursor it = info->entries;
	struct crl_entry e;
	for (int i = 0; i < count; i++) {
		FUZZ_CHECK(crl_next_entry(&it, &e), "crl_next_entry failed at %d", i);
		check_entry(&e, sk_X509_REVOKED_value(revs, i), (size_t)i);
	}
	X509_CRL_free(crl);
	ERR_clear_error();
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crl_info info;
	if (!crl_parse(data, size, &info))
		return 0;
	FUZZ_CHECK(ERR_peek_error() == 0, "OpenSSL errors left behind");
	check_revd_invariants(&info, data, size);

	/* Every entry crl_parse counted comes back, and nothing more. */
	struct der_cursor it = info.entries;
	struct crl_entry e;
	size_t n = 0;
	while (!der_at_end(&it)) {
		FUZZ_CHECK(crl_next_entry(&it, &e), "crl_next_entry failed at %zu of %zu", n,
		           info.n_entries);
		n++;
	}
	FUZZ_CHECK(n == info.n_entries, "%zu entries read, %zu counted", n, info.n_entries);
	FUZZ_CHECK(!crl_next_entry(&it, &e), "an entry after the end");

	if (compare(data, size, &info))
		return 0;
	FUZZ_CHECK(openssl_reads_algorithm(&info.sigalg),
	           "revd accepted a CRL whose signature AlgorithmIdentifier OpenSSL does not read");
	FUZZ_CHECK(name_shaped(&info.issuer),
	           "revd accepted a CRL whose issuer is not a Name (OpenSSL does not read it)");
	FUZZ_CHECK(!openssl_reads_name(&info.issuer),
	           "revd accepted a CRL that OpenSSL does not read, issuer Name and all");
	/* OpenSSL refuses the issuer's values on its own: without them, both agree. */
	size_t slen;
	uint8_t *s = with_plain_issuer(&info, &slen);
	struct crl_info sinfo;
	FUZZ_CHECK(crl_parse(s, slen, &sinfo), "revd refuses the CRL with a plain issuer");
	FUZZ_CHECK(compare(s, slen, &sinfo),
	           "revd accepted a CRL that OpenSSL does not read, even with a plain issuer");
	free(s);
	return 0;
}
