/*
 * ocsp_response_parse, differentially against OpenSSL: whatever revd accepts must be an
 * OCSPResponse to d2i_OCSP_RESPONSE, and its BasicOCSPResponse to d2i_OCSP_BASICRESP,
 * both re-encoding (i2d) to exactly the input bytes (revd accepts only DER), with the
 * same status, times, first CertID, extensions, signature and certificates.
 *
 * revd does not interpret what it only carries (a byName ResponderID's attribute
 * values, the certificates' fields; see response_parse.h). So: the response with those
 * parts taken out must pass both ways as above, always; the response as it is must too,
 * unless OpenSSL refuses one of those parts on its own.
 */
#define _GNU_SOURCE /* timegm */
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "ocsp/response_parse.h"

static bool within(const uint8_t *p, size_t n, const uint8_t *data, size_t size)
{
	return p != NULL && p >= data && n <= size && p - data <= (ptrdiff_t)(size - n);
}

static bool same(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void check_certid(const struct ocsp_certid *id, const uint8_t *data, size_t size)
{
	FUZZ_CHECK(id->serial_len >= 1 && id->serial_len <= OCSP_MAX_SERIAL, "serial %zu",
	           id->serial_len);
	FUZZ_CHECK(within(id->serial, id->serial_len, data, size), "serial outside input");
	FUZZ_CHECK(within(id->name_hash, id->name_hash_len, data, size) || id->name_hash_len == 0,
	           "name hash outside");
	FUZZ_CHECK(within(id->key_hash, id->key_hash_len, data, size) || id->key_hash_len == 0,
	           "key hash outside");
	if (id->hash != OCSP_HASH_UNKNOWN) {
		FUZZ_CHECK(id->hash >= 0 && id->hash < OCSP_HASH_COUNT, "hash %d", id->hash);
		FUZZ_CHECK(id->name_hash_len == ocsp_hash_len(id->hash) &&
		               id->key_hash_len == ocsp_hash_len(id->hash),
		           "hash lengths %zu/%zu", id->name_hash_len, id->key_hash_len);
	}
}

static void check_revd_invariants(const struct ocsp_parsed_response *p, const uint8_t *data,
                                  size_t size)
{
	if (p->status != OCSP_RESP_SUCCESSFUL) {
		FUZZ_CHECK(size == 5, "an error response of %zu bytes", size);
		FUZZ_CHECK(p->tbs == NULL && p->n_singles == 0 && p->sig == NULL,
		           "error response with contents");
		return;
	}
	FUZZ_CHECK(within(p->tbs, p->tbs_len, data, size), "tbs outside input");
	FUZZ_CHECK(within(p->responder_id, p->responder_id_len, p->tbs, p->tbs_len),
	           "responder id outside tbs");
	FUZZ_CHECK(p->responder_id[0] == 0xa1 || p->responder_id[0] == 0xa2, "responder id %02x",
	           p->responder_id[0]);
	FUZZ_CHECK(p->n_singles >= 1, "no answers");
	check_certid(&p->single.certid, data, size);
	FUZZ_CHECK(within(p->single.certid.serial, p->single.certid.serial_len, p->tbs,
	                  p->tbs_len),
	           "serial outside tbs");
	FUZZ_CHECK(p->single.status == OCSP_STATUS_REVOKED || p->single.reason == OCSP_REASON_NONE,
	           "a reason without revocation");
	FUZZ_CHECK(p->single.reason == OCSP_REASON_NONE ||
	               (p->single.reason >= 0 && p->single.reason <= 10 && p->single.reason != 7),
	           "reason %d", p->single.reason);
	FUZZ_CHECK(within(p->sigalg, p->sigalg_len, data, size) && p->sigalg == p->tbs + p->tbs_len,
	           "sigalg not after tbs");
	FUZZ_CHECK(within(p->sig, p->sig_len, data, size) && p->sig_len >= 1, "sig");
	const uint8_t *end = p->certs ? p->certs + p->certs_len : p->sig + p->sig_len;
	FUZZ_CHECK(end == data + size, "BasicOCSPResponse does not end the input");
	if (p->certs != NULL)
		FUZZ_CHECK(p->certs == p->sig + p->sig_len && p->certs[0] == 0xa0, "certs");
	/* A CertID with a hash revd knows matches itself, and only then. */
	FUZZ_CHECK(ocsp_parsed_matches(p, &p->single.certid) ==
	               (p->single.certid.hash != OCSP_HASH_UNKNOWN),
	           "self match");
}

/* The contents of the OCTET STRING in responseBytes, by a reader of its own. The parse
 * succeeded, so the shape is known: SEQUENCE { ENUMERATED, [0] { SEQUENCE { OID,
 * OCTET STRING } } }. */
static const uint8_t *header(const uint8_t *p, size_t *len)
{
	size_t n = p[1] & 0x7f;
	if (!(p[1] & 0x80)) {
		*len = p[1];
		return p + 2;
	}
	*len = 0;
	for (size_t i = 0; i < n; i++)
		*len = *len << 8 | p[2 + i];
	return p + 2 + n;
}

static const uint8_t *basic_bytes(const uint8_t *data, size_t *len)
{
	const uint8_t *p = header(data, len);  /* OCSPResponse */
	p += 3;                                /* responseStatus */
	p = header(p, len);                    /* [0] */
	p = header(p, len);                    /* ResponseBytes */
	size_t oid_len;
	const uint8_t *oid = header(p, &oid_len);
	return header(oid + oid_len, len); /* response OCTET STRING */
}

static int64_t secs(const ASN1_TIME *t)
{
	struct tm tm;
	FUZZ_CHECK(t != NULL && ASN1_TIME_to_tm(t, &tm) == 1, "OpenSSL cannot read a time");
	return (int64_t)timegm(&tm);
}

static void check_single(OCSP_SINGLERESP *one, const struct ocsp_parsed_single *s)
{
	int reason = -99;
	ASN1_GENERALIZEDTIME *rev = NULL, *tu = NULL, *nu = NULL;
	int st = OCSP_single_get0_status(one, &reason, &rev, &tu, &nu);
	static const int want[3] = {V_OCSP_CERTSTATUS_GOOD, V_OCSP_CERTSTATUS_REVOKED,
	                            V_OCSP_CERTSTATUS_UNKNOWN};
	FUZZ_CHECK(st == want[s->status], "status %d vs %d", st, (int)s->status);
	FUZZ_CHECK(secs(tu) == s->this_update, "thisUpdate");
	if (nu == NULL)
		FUZZ_CHECK(s->next_update == 0, "nextUpdate only to revd");
	else
		FUZZ_CHECK(secs(nu) == s->next_update, "nextUpdate");
	if (s->status == OCSP_STATUS_REVOKED) {
		FUZZ_CHECK(secs(rev) == s->revoked_at, "revocationTime");
		FUZZ_CHECK(reason == (s->reason == OCSP_REASON_NONE ? OCSP_REVOKED_STATUS_NOSTATUS
		                                                    : s->reason),
		           "reason %d vs %d", reason, s->reason);
	}
	int inv = OCSP_SINGLERESP_get_ext_by_NID(one, NID_invalidity_date, -1);
	if (s->invalidity_date != 0)
		FUZZ_CHECK(inv >= 0, "invalidityDate only to revd");

	const OCSP_CERTID *cid = OCSP_SINGLERESP_get0_id(one);
	ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
	ASN1_OBJECT *md = NULL;
	ASN1_INTEGER *sn = NULL;
	FUZZ_CHECK(OCSP_id_get0_info(&nh, &md, &kh, &sn, (OCSP_CERTID *)cid) == 1, "CertID");
	static const int nids[OCSP_HASH_COUNT] = {NID_sha1, NID_sha256, NID_sha384, NID_sha512};
	int nid = OBJ_obj2nid(md);
	const struct ocsp_certid *id = &s->certid;
	if (id->hash == OCSP_HASH_UNKNOWN)
		FUZZ_CHECK(nid != NID_sha1 && nid != NID_sha256 && nid != NID_sha384 &&
		               nid != NID_sha512,
		           "OpenSSL knows hash %d, revd does not", nid);
	else
		FUZZ_CHECK(nid == nids[id->hash], "hash %d vs %d", nid, nids[id->hash]);
	FUZZ_CHECK(same(ASN1_STRING_get0_data(nh), (size_t)ASN1_STRING_length(nh), id->name_hash,
	                id->name_hash_len),
	           "issuerNameHash differs");
	FUZZ_CHECK(same(ASN1_STRING_get0_data(kh), (size_t)ASN1_STRING_length(kh), id->key_hash,
	                id->key_hash_len),
	           "issuerKeyHash differs");
	unsigned char *ider = NULL;
	int il = i2d_ASN1_INTEGER(sn, &ider);
	FUZZ_CHECK(il >= 3, "serial re-encodes to %d bytes", il);
	size_t hl = ider[1] < 0x80 ? 2 : 2 + (size_t)(ider[1] & 0x7f);
	FUZZ_CHECK(same(ider + hl, (size_t)il - hl, id->serial, id->serial_len), "serial differs");
	OPENSSL_free(ider);
}

static void check_basic(OCSP_BASICRESP *bs, const struct ocsp_parsed_response *p)
{
	unsigned char *der = NULL;
	int n = i2d_OCSP_RESPDATA((OCSP_RESPDATA *)OCSP_resp_get0_respdata(bs), &der);
	FUZZ_CHECK(n > 0 && same(der, (size_t)n, p->tbs, p->tbs_len), "tbsResponseData differs");
	OPENSSL_free(der);
	der = NULL;
	n = i2d_X509_ALGOR(OCSP_resp_get0_tbs_sigalg(bs), &der);
	FUZZ_CHECK(n > 0 && same(der, (size_t)n, p->sigalg, p->sigalg_len), "sigalg differs");
	OPENSSL_free(der);
	const ASN1_OCTET_STRING *sig = OCSP_resp_get0_signature(bs);
	FUZZ_CHECK(same(ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig), p->sig,
	                p->sig_len),
	           "signature differs");
	FUZZ_CHECK((OCSP_resp_get0_certs(bs) != NULL) == (p->certs != NULL),
	           "certs present to one only");
	FUZZ_CHECK(secs(OCSP_resp_get0_produced_at(bs)) == p->produced_at, "producedAt");

	const ASN1_OCTET_STRING *kid = NULL;
	const X509_NAME *name = NULL;
	FUZZ_CHECK(OCSP_resp_get0_id(bs, &kid, &name) == 1, "ResponderID");
	if (p->responder_id[0] == 0xa2)
		FUZZ_CHECK(kid != NULL && same(ASN1_STRING_get0_data(kid),
		                               (size_t)ASN1_STRING_length(kid),
		                               p->responder_id + 4, p->responder_id_len - 4),
		           "byKey differs");
	else
		FUZZ_CHECK(name != NULL, "byName to revd only");

	FUZZ_CHECK(OCSP_resp_count(bs) == (int)p->n_singles, "OpenSSL %d answers, revd %zu",
	           OCSP_resp_count(bs), p->n_singles);
	check_single(OCSP_resp_get0(bs, 0), &p->single);

	int ni = OCSP_BASICRESP_get_ext_by_NID(bs, NID_id_pkix_OCSP_Nonce, -1);
	FUZZ_CHECK((ni >= 0) == p->has_nonce, "nonce to one only");
	static ASN1_OBJECT *ext_revoke;
	if (ext_revoke == NULL)
		ext_revoke = OBJ_txt2obj("1.3.6.1.5.5.7.48.1.9", 1);
	int xi = OCSP_BASICRESP_get_ext_by_OBJ(bs, ext_revoke, -1);
	FUZZ_CHECK((xi >= 0) == p->extended_revoke, "extended revoke to one only");
}

/* OpenSSL's reading of exactly data[0..size) as an `it`, or NULL if it refuses. What it
 * reads must re-encode (i2d) to the same bytes. */
static void *openssl_read(const ASN1_ITEM *it, const uint8_t *data, size_t size,
                          const char *what)
{
	const unsigned char *q = data;
	ASN1_VALUE *v = ASN1_item_d2i(NULL, &q, (long)size, it);
	if (v == NULL || q != data + size) {
		ASN1_item_free(v, it);
		ERR_clear_error();
		return NULL;
	}
	unsigned char *again = NULL;
	int n = ASN1_item_i2d(v, &again, it);
	FUZZ_CHECK(n > 0 && same(again, (size_t)n, data, size),
	           "OpenSSL re-encodes the %s differently (not DER)", what);
	OPENSSL_free(again);
	return v;
}

static void *openssl_must_read(const ASN1_ITEM *it, const uint8_t *data, size_t size,
                               const char *what)
{
	void *v = openssl_read(it, data, size, what);
	FUZZ_CHECK(v != NULL, "revd accepted a %s of %zu bytes that OpenSSL does not read", what,
	           size);
	return v;
}

/* The length of the TLV at p (a complete DER element). */
static size_t tlv_len(const uint8_t *p)
{
	size_t len;
	return (size_t)(header(p, &len) - p) + len;
}

/* Does OpenSSL refuse, on its own, one of the parts revd carries without reading them? */
static bool openssl_refuses_carried(const struct ocsp_parsed_response *p)
{
	size_t len;
	bool refused = false;
	if (p->responder_id[0] == 0xa1) {
		const uint8_t *name = header(p->responder_id, &len);
		X509_NAME *n = openssl_read(ASN1_ITEM_rptr(X509_NAME), name, len, "Name");
		refused = n == NULL;
		X509_NAME_free(n);
	}
	if (p->certs != NULL) {
		const uint8_t *list = header(p->certs, &len);
		const uint8_t *c = header(list, &len), *end = c + len;
		for (; !refused && c < end; c += tlv_len(c)) {
			X509 *x = openssl_read(ASN1_ITEM_rptr(X509), c, tlv_len(c), "Certificate");
			refused = x == NULL;
			X509_free(x);
		}
	}
	return refused;
}

/*
 * p's response without the parts revd carries unread: no certs, and a byName
 * ResponderID replaced by a byKey one. A malloc'd OCSPResponse; its length to *len.
 */
static uint8_t *stripped(const struct ocsp_parsed_response *p, size_t *len)
{
	static const uint8_t by_key[24] = {0xa2, 0x16, 0x04, 0x14};
	static const uint8_t basic_oid[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
	                                    0x05, 0x07, 0x30, 0x01, 0x01};
	size_t tlen;
	const uint8_t *tc = header(p->tbs, &tlen);
	const uint8_t *rid_end = p->responder_id + p->responder_id_len;
	const uint8_t *rid = p->responder_id[0] == 0xa1 ? by_key : p->responder_id;
	size_t rid_len = p->responder_id[0] == 0xa1 ? sizeof(by_key) : p->responder_id_len;
	size_t before = (size_t)(p->responder_id - tc), after = (size_t)(tc + tlen - rid_end);
	size_t tbs_c = before + rid_len + after;
	size_t basic_c = fuzz_der_hdr_len(tbs_c) + tbs_c + p->sigalg_len + fuzz_der_hdr_len(1 + p->sig_len) + 1 +
	                 p->sig_len;
	size_t octets = fuzz_der_hdr_len(basic_c) + basic_c;
	size_t bytes_c = sizeof(basic_oid) + fuzz_der_hdr_len(octets) + octets;
	size_t tagged = fuzz_der_hdr_len(bytes_c) + bytes_c;
	size_t resp_c = 3 + fuzz_der_hdr_len(tagged) + tagged;
	*len = fuzz_der_hdr_len(resp_c) + resp_c;
	uint8_t *out = malloc(*len), *o = out;
	FUZZ_CHECK(out != NULL, "malloc");
	o = fuzz_der_put(o, 0x30, resp_c);
	o = fuzz_put_bytes(o, "\x0a\x01\x00", 3);
	o = fuzz_der_put(o, 0xa0, tagged);
	o = fuzz_der_put(o, 0x30, bytes_c);
	o = fuzz_put_bytes(o, basic_oid, sizeof(basic_oid));
	o = fuzz_der_put(o, 0x04, octets);
	o = fuzz_der_put(o, 0x30, basic_c);
	o = fuzz_der_put(o, 0x30, tbs_c);
	o = fuzz_put_bytes(o, tc, before);
	o = fuzz_put_bytes(o, rid, rid_len);
	o = fuzz_put_bytes(o, rid_end, after);
	o = fuzz_put_bytes(o, p->sigalg, p->sigalg_len);
	o = fuzz_der_put(o, 0x03, 1 + p->sig_len);
	*o++ = 0;
	o = fuzz_put_bytes(o, p->sig, p->sig_len);
	FUZZ_CHECK(o == out + *len, "stripped response length");
	return out;
}

/* revd's reading of a successful response against OpenSSL's; false if OpenSSL refuses
 * the BasicOCSPResponse. */
static bool compare_successful(const uint8_t *data, size_t size,
                               const struct ocsp_parsed_response *p)
{
	size_t blen;
	const uint8_t *b = basic_bytes(data, &blen);
	FUZZ_CHECK(b + blen == data + size && p->tbs > b, "BasicOCSPResponse bounds");
	OCSP_BASICRESP *bs =
		openssl_read(ASN1_ITEM_rptr(OCSP_BASICRESP), b, blen, "BasicOCSPResponse");
	if (bs == NULL)
		return false;
	check_basic(bs, p);
	OCSP_BASICRESP_free(bs);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ocsp_parsed_response p;
	enum ocsp_parse_result r = ocsp_response_parse(data, size, &p);
	FUZZ_CHECK(r == OCSP_PARSE_OK || r == OCSP_PARSE_MALFORMED || r == OCSP_PARSE_UNSUPPORTED,
	           "result %d", (int)r);
	FUZZ_CHECK(ERR_peek_error() == 0, "OpenSSL errors left behind");
	if (r != OCSP_PARSE_OK) {
		static const struct ocsp_parsed_response zero;
		FUZZ_CHECK(memcmp(&p, &zero, sizeof(p)) == 0, "a refused parse left fields set");
		return 0;
	}
	check_revd_invariants(&p, data, size);

	OCSP_RESPONSE *resp =
		openssl_must_read(ASN1_ITEM_rptr(OCSP_RESPONSE), data, size, "OCSPResponse");
	FUZZ_CHECK(OCSP_response_status(resp) == (int)p.status, "status %d vs %d",
	           OCSP_response_status(resp), (int)p.status);
	OCSP_RESPONSE_free(resp);
	if (p.status != OCSP_RESP_SUCCESSFUL)
		return 0;

	/* Without the carried parts: revd and OpenSSL both accept it, and agree. */
	size_t slen;
	uint8_t *s = stripped(&p, &slen);
	struct ocsp_parsed_response sp;
	FUZZ_CHECK(ocsp_response_parse(s, slen, &sp) == OCSP_PARSE_OK,
	           "revd refuses the response without its carried parts");
	FUZZ_CHECK(sp.certs == NULL && sp.responder_id[0] == 0xa2, "stripped");
	resp = openssl_must_read(ASN1_ITEM_rptr(OCSP_RESPONSE), s, slen, "stripped OCSPResponse");
	OCSP_RESPONSE_free(resp);
	FUZZ_CHECK(compare_successful(s, slen, &sp),
	           "revd accepted a BasicOCSPResponse that OpenSSL does not read, even without "
	           "the certificates and Name");
	free(s);

	/* As it is: the same, unless OpenSSL refuses a carried part on its own. */
	if (!compare_successful(data, size, &p))
		FUZZ_CHECK(openssl_refuses_carried(&p),
		           "revd accepted a BasicOCSPResponse that OpenSSL does not read");
	ERR_clear_error();
	return 0;
}
