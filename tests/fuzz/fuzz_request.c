/*
 * ocsp_request_decode, differentially against OpenSSL: whatever revd accepts must be an
 * OCSPRequest to d2i_OCSP_REQUEST, with the same CertIDs and nonce, and, since revd
 * accepts only DER, OpenSSL's i2d must give back exactly the input.
 */
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "fuzz.h"
#include "ocsp/request.h"

static bool within(const uint8_t *p, size_t n, const uint8_t *data, size_t size)
{
	return p >= data && n <= size && p - data <= (ptrdiff_t)(size - n);
}

static void check_revd_invariants(const struct ocsp_request *req, const uint8_t *data,
                                  size_t size)
{
	FUZZ_CHECK(req->n_certids >= 1 && req->n_certids <= OCSP_MAX_CERTIDS, "%zu CertIDs",
	           req->n_certids);
	for (size_t i = 0; i < req->n_certids; i++) {
		const struct ocsp_certid *id = &req->certids[i];
		FUZZ_CHECK(id->serial_len >= 1 && id->serial_len <= OCSP_MAX_SERIAL, "serial %zu",
		           id->serial_len);
		FUZZ_CHECK(within(id->serial, id->serial_len, data, size), "serial outside input");
		FUZZ_CHECK(within(id->name_hash, id->name_hash_len, data, size), "name hash outside");
		FUZZ_CHECK(within(id->key_hash, id->key_hash_len, data, size), "key hash outside");
		if (id->hash != OCSP_HASH_UNKNOWN) {
			FUZZ_CHECK(id->hash >= 0 && id->hash < OCSP_HASH_COUNT, "hash %d", id->hash);
			FUZZ_CHECK(id->name_hash_len == ocsp_hash_len(id->hash) &&
			               id->key_hash_len == ocsp_hash_len(id->hash),
			           "hash lengths %zu/%zu", id->name_hash_len, id->key_hash_len);
		}
	}
	if (req->has_nonce) {
		FUZZ_CHECK(req->nonce_len >= OCSP_NONCE_MIN && req->nonce_len <= OCSP_NONCE_MAX,
		           "nonce %zu", req->nonce_len);
		FUZZ_CHECK(within(req->nonce_ext, req->nonce_ext_len, data, size), "nonce outside");
		FUZZ_CHECK(req->nonce_ext_len > req->nonce_len, "nonce ext %zu, nonce %zu",
		           req->nonce_ext_len, req->nonce_len);
	} else {
		FUZZ_CHECK(req->nonce_ext == NULL && req->nonce_len == 0, "stale nonce");
	}
}

/* Does OpenSSL parse data as one OCSPRequest, and re-encode it to the same bytes? */
static bool openssl_round_trips(const uint8_t *data, size_t size, OCSP_REQUEST **parsed)
{
	const unsigned char *p = data;
	OCSP_REQUEST *o = d2i_OCSP_REQUEST(NULL, &p, (long)size);
	bool same = false;
	if (o != NULL && p == data + size) {
		unsigned char *out = NULL;
		int ol = i2d_OCSP_REQUEST(o, &out);
		same = ol == (int)size && memcmp(out, data, size) == 0;
		OPENSSL_free(out);
	}
	ERR_clear_error();
	if (parsed != NULL)
		*parsed = o;
	else
		OCSP_REQUEST_free(o);
	return same;
}

static void check_against_openssl(const struct ocsp_request *req, const uint8_t *data,
                                  size_t size)
{
	OCSP_REQUEST *o = NULL;
	if (!openssl_round_trips(data, size, &o))
		FUZZ_CHECK(false, "revd accepted %zu bytes that OpenSSL %s", size,
		           o == NULL ? "does not parse" : "re-encodes differently (not DER)");
	FUZZ_CHECK(OCSP_request_onereq_count(o) == (int)req->n_certids, "OpenSSL %d, revd %zu",
	           OCSP_request_onereq_count(o), req->n_certids);
	static const int nids[OCSP_HASH_COUNT] = {NID_sha1, NID_sha256, NID_sha384, NID_sha512};
	for (size_t i = 0; i < req->n_certids; i++) {
		const struct ocsp_certid *id = &req->certids[i];
		OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(o, (int)i));
		ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
		ASN1_OBJECT *md = NULL;
		ASN1_INTEGER *sn = NULL;
		FUZZ_CHECK(OCSP_id_get0_info(&nh, &md, &kh, &sn, cid) == 1, "CertID %zu", i);
		int nid = OBJ_obj2nid(md);
		if (id->hash == OCSP_HASH_UNKNOWN)
			FUZZ_CHECK(nid != NID_sha1 && nid != NID_sha256 && nid != NID_sha384 &&
			               nid != NID_sha512,
			           "CertID %zu: OpenSSL knows hash %d, revd does not", i, nid);
		else
			FUZZ_CHECK(nid == nids[id->hash], "CertID %zu: hash %d vs %d", i, nid,
			           nids[id->hash]);
		FUZZ_CHECK(ASN1_STRING_length(nh) == (int)id->name_hash_len &&
		               memcmp(ASN1_STRING_get0_data(nh), id->name_hash, id->name_hash_len) == 0,
		           "CertID %zu: issuerNameHash differs", i);
		FUZZ_CHECK(ASN1_STRING_length(kh) == (int)id->key_hash_len &&
		               memcmp(ASN1_STRING_get0_data(kh), id->key_hash, id->key_hash_len) == 0,
		           "CertID %zu: issuerKeyHash differs", i);
		unsigned char *ider = NULL;
		int il = i2d_ASN1_INTEGER(sn, &ider);
		FUZZ_CHECK(il >= 3, "CertID %zu: serial re-encodes to %d bytes", i, il);
		size_t hl = ider[1] < 0x80 ? 2 : 2 + (size_t)(ider[1] & 0x7f);
		FUZZ_CHECK((size_t)il - hl == id->serial_len &&
		               memcmp(ider + hl, id->serial, id->serial_len) == 0,
		           "CertID %zu: serialNumber differs", i);
		OPENSSL_free(ider);
	}
	int ni = OCSP_REQUEST_get_ext_by_NID(o, NID_id_pkix_OCSP_Nonce, -1);
	if (req->has_nonce) {
		FUZZ_CHECK(ni >= 0, "revd found a nonce, OpenSSL none");
		ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(OCSP_REQUEST_get_ext(o, ni));
		FUZZ_CHECK(ASN1_STRING_length(v) == (int)req->nonce_ext_len &&
		               memcmp(ASN1_STRING_get0_data(v), req->nonce_ext, req->nonce_ext_len) == 0,
		           "nonce differs");
	} else {
		FUZZ_CHECK(ni < 0, "OpenSSL found a nonce, revd none");
	}
	OCSP_REQUEST_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ocsp_request req;
	enum ocsp_decode_result r = ocsp_request_decode(data, size, OCSP_MAX_CERTIDS, &req);
	FUZZ_CHECK(r == OCSP_DECODE_OK || r == OCSP_DECODE_MALFORMED || r == OCSP_DECODE_TOO_MANY ||
	               r == OCSP_DECODE_BAD_NONCE || r == OCSP_DECODE_UNSUPPORTED,
	           "result %d", (int)r);
	if (r != OCSP_DECODE_OK) {
		ERR_clear_error();
		return 0;
	}
	check_revd_invariants(&req, data, size);
	/* One CertID fewer allowed than there are: exactly TOO_MANY. */
	if (req.n_certids > 1) {
		struct ocsp_request fewer;
		enum ocsp_decode_result r2 =
			ocsp_request_decode(data, size, req.n_certids - 1, &fewer);
		FUZZ_CHECK(r2 == OCSP_DECODE_TOO_MANY, "with max %zu: result %d", req.n_certids - 1,
		           (int)r2);
	}
	check_against_openssl(&req, data, size);
	ERR_clear_error();
	return 0;
}
