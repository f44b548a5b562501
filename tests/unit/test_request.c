/* ocsp/request: the OCSPRequest decoder and the GET path decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <stdlib.h>
#include <string.h>

#include "ocsp/request.h"
#include "testpki.h"

static struct testpki pki;

static int setup(void **state)
{
	(void)state;
	testpki_init(&pki);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	testpki_free(&pki);
	return 0;
}

/* ---- a small DER writer, independent of revd's ---- */

struct w {
	uint8_t b[32768];
	size_t n;
	size_t open[32];
	int depth;
};

static void w_raw(struct w *w, const void *p, size_t n)
{
	assert_true(w->n + n <= sizeof(w->b));
	if (n > 0)
		memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void w_open(struct w *w, uint8_t tag)
{
	w_raw(w, &tag, 1);
	w->open[w->depth++] = w->n;
}

static void w_close(struct w *w)
{
	size_t start = w->open[--w->depth];
	size_t len = w->n - start;
	uint8_t hdr[5];
	size_t hl;
	if (len < 0x80) {
		hdr[0] = (uint8_t)len;
		hl = 1;
	} else if (len < 0x100) {
		hdr[0] = 0x81;
		hdr[1] = (uint8_t)len;
		hl = 2;
	} else {
		assert_true(len < 0x10000);
		hdr[0] = 0x82;
		hdr[1] = (uint8_t)(len >> 8);
		hdr[2] = (uint8_t)len;
		hl = 3;
	}
	assert_true(w->n + hl <= sizeof(w->b));
	memmove(w->b + start + hl, w->b + start, len);
	memcpy(w->b + start, hdr, hl);
	w->n += hl;
}

static void w_tlv(struct w *w, uint8_t tag, const void *p, size_t n)
{
	w_open(w, tag);
	w_raw(w, p, n);
	w_close(w);
}

static const uint8_t oid_sha1[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
static const uint8_t oid_sha256[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
static const uint8_t oid_md5[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05};
static const uint8_t oid_nonce[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02};
static const uint8_t oid_cutoff[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x06};
static const uint8_t oid_ecdsa_sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

struct ext {
	const uint8_t *oid;
	size_t oid_len;
	int critical; /* -1: absent; 0: explicit FALSE; 1: TRUE; 2: BOOLEAN 0x01 (BER) */
	const uint8_t *value; /* extnValue contents */
	size_t value_len;
};

static void put_exts(struct w *w, const struct ext *e, size_t n)
{
	w_open(w, 0x30);
	for (size_t i = 0; i < n; i++) {
		w_open(w, 0x30);
		w_tlv(w, 0x06, e[i].oid, e[i].oid_len);
		if (e[i].critical >= 0) {
			uint8_t v = e[i].critical == 0 ? 0x00 : e[i].critical == 1 ? 0xff : 0x01;
			w_tlv(w, 0x01, &v, 1);
		}
		w_tlv(w, 0x04, e[i].value, e[i].value_len);
		w_close(w);
	}
	w_close(w);
}

struct req_opts {
	int n_certids; /* 0: one */
	const uint8_t *oid;
	size_t oid_len;
	int params; /* 0: NULL; 1: absent; 2: INTEGER 0; 3: NULL with content */
	int name_len, key_len; /* 0: 20 */
	const uint8_t *serial;
	int serial_len; /* 0: 02 10 01 */
	int version;    /* 0: absent (the DEFAULT); n: explicit [0] INTEGER n-1 */
	bool requestor;
	const uint8_t *requestor_tlv; /* what goes inside [1]; NULL: a directoryName */
	size_t requestor_len;
	const struct ext *exts;
	size_t n_exts;
	bool empty_exts;
	const struct ext *single_exts;
	size_t n_single_exts;
	/* 0: none; 1: a full Signature; 2: [0] { SEQUENCE {} }; 3: a Signature whose BIT
	 * STRING has non-zero unused bits; 4: one whose AlgorithmIdentifier has a long-form
	 * length for a short one (both BER, not DER) */
	int signature;
	bool empty_list;
	size_t trailing; /* bytes appended after the whole OCSPRequest */
};

static void build_request(struct w *w, const struct req_opts *o)
{
	memset(w, 0, sizeof(*w));
	static const uint8_t default_serial[] = {0x10, 0x01};
	uint8_t hash[80];
	memset(hash, 0x11, sizeof(hash));
	w_open(w, 0x30);     /* OCSPRequest */
	w_open(w, 0x30);     /* TBSRequest */
	if (o->version > 0) {
		w_open(w, 0xa0);
		uint8_t v = (uint8_t)(o->version - 1);
		w_tlv(w, 0x02, &v, 1);
		w_close(w);
	}
	if (o->requestor) {
		w_open(w, 0xa1);
		if (o->requestor_tlv != NULL) {
			w_raw(w, o->requestor_tlv, o->requestor_len);
		} else {
			w_open(w, 0xa4); /* directoryName [4] EXPLICIT Name */
			w_open(w, 0x30);
			w_open(w, 0x31);
			w_open(w, 0x30);
			w_tlv(w, 0x06, (const uint8_t[]){0x55, 0x04, 0x03}, 3);
			w_tlv(w, 0x0c, "client", 6);
			w_close(w);
			w_close(w);
			w_close(w);
			w_close(w);
		}
		w_close(w);
	}
	w_open(w, 0x30); /* requestList */
	int n = o->empty_list ? 0 : o->n_certids > 0 ? o->n_certids : 1;
	for (int i = 0; i < n; i++) {
		w_open(w, 0x30); /* Request */
		w_open(w, 0x30); /* CertID */
		w_open(w, 0x30); /* AlgorithmIdentifier */
		if (o->oid)
			w_tlv(w, 0x06, o->oid, o->oid_len);
		else
			w_tlv(w, 0x06, oid_sha1, sizeof(oid_sha1));
		if (o->params == 0)
			w_tlv(w, 0x05, NULL, 0);
		else if (o->params == 2)
			w_tlv(w, 0x02, (const uint8_t[]){0}, 1);
		else if (o->params == 3)
			w_tlv(w, 0x05, (const uint8_t[]){0}, 1);
		w_close(w);
		w_tlv(w, 0x04, hash, (size_t)(o->name_len ? o->name_len : 20));
		w_tlv(w, 0x04, hash, (size_t)(o->key_len ? o->key_len : 20));
		if (o->serial_len > 0) {
			w_tlv(w, 0x02, o->serial, (size_t)o->serial_len);
		} else if (o->serial_len < 0) {
			w_tlv(w, 0x02, NULL, 0);
		} else {
			uint8_t s[2] = {default_serial[0], (uint8_t)(default_serial[1] + i)};
			w_tlv(w, 0x02, s, 2);
		}
		w_close(w); /* CertID */
		if (o->n_single_exts > 0) {
			w_open(w, 0xa0);
			put_exts(w, o->single_exts, o->n_single_exts);
			w_close(w);
		}
		w_close(w); /* Request */
	}
	w_close(w); /* requestList */
	if (o->n_exts > 0 || o->empty_exts) {
		w_open(w, 0xa2);
		put_exts(w, o->exts, o->n_exts);
		w_close(w);
	}
	w_close(w); /* TBSRequest */
	if (o->signature == 1) {
		w_open(w, 0xa0);
		w_open(w, 0x30);
		w_open(w, 0x30);
		w_tlv(w, 0x06, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256));
		w_close(w);
		w_tlv(w, 0x03, (const uint8_t[]){0x00, 0x01, 0x02, 0x03}, 4);
		w_close(w);
		w_close(w);
	} else if (o->signature == 2) {
		w_open(w, 0xa0);
		w_tlv(w, 0x30, NULL, 0);
		w_close(w);
	} else if (o->signature == 3) {
		w_open(w, 0xa0);
		w_open(w, 0x30);
		w_open(w, 0x30);
		w_tlv(w, 0x06, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256));
		w_close(w);
		w_tlv(w, 0x03, (const uint8_t[]){0x02, 0x01, 0x02, 0x03}, 4); /* 2 unused: 0b11 */
		w_close(w);
		w_close(w);
	} else if (o->signature == 4) {
		w_open(w, 0xa0);
		w_open(w, 0x30);
		w_raw(w, (const uint8_t[]){0x30, 0x81, 0x0a}, 3);
		w_tlv(w, 0x06, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256));
		w_tlv(w, 0x03, (const uint8_t[]){0x00, 0x01, 0x02, 0x03}, 4);
		w_close(w);
		w_close(w);
	}
	w_close(w); /* OCSPRequest */
	for (size_t i = 0; i < o->trailing; i++)
		w_raw(w, (const uint8_t[]){0}, 1);
}

static enum ocsp_decode_result decode_opts(const struct req_opts *o, size_t max,
                                           struct ocsp_request *req)
{
	static struct w w;
	build_request(&w, o);
	return ocsp_request_decode(w.b, w.n, max, req);
}

#define OPTS(...) (&(const struct req_opts){__VA_ARGS__})

/*
 * OpenSSL's view of der must agree with revd's decoding: same CertIDs (hash OID, name
 * and key hashes, serial INTEGER), same nonce, and OpenSSL re-encodes der exactly.
 */
static void check_with_openssl(const uint8_t *der, size_t len, const struct ocsp_request *req)
{
	const unsigned char *p = der;
	OCSP_REQUEST *o = d2i_OCSP_REQUEST(NULL, &p, (long)len);
	if (o == NULL) {
		ERR_clear_error();
		fail_msg("revd accepted a request OpenSSL cannot parse");
	}
	assert_ptr_equal(p, der + len);
	assert_int_equal(OCSP_request_onereq_count(o), (int)req->n_certids);
	for (size_t i = 0; i < req->n_certids; i++) {
		const struct ocsp_certid *id = &req->certids[i];
		OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(o, (int)i));
		ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
		ASN1_OBJECT *md = NULL;
		ASN1_INTEGER *sn = NULL;
		assert_int_equal(OCSP_id_get0_info(&nh, &md, &kh, &sn, cid), 1);
		static const int nids[] = {NID_sha1, NID_sha256, NID_sha384, NID_sha512};
		int nid = OBJ_obj2nid(md);
		if (id->hash == OCSP_HASH_UNKNOWN)
			assert_true(nid != NID_sha1 && nid != NID_sha256 && nid != NID_sha384 &&
			            nid != NID_sha512);
		else
			assert_int_equal(nid, nids[id->hash]);
		assert_int_equal(ASN1_STRING_length(nh), (int)id->name_hash_len);
		assert_memory_equal(ASN1_STRING_get0_data(nh), id->name_hash, id->name_hash_len);
		assert_int_equal(ASN1_STRING_length(kh), (int)id->key_hash_len);
		assert_memory_equal(ASN1_STRING_get0_data(kh), id->key_hash, id->key_hash_len);
		unsigned char *ider = NULL;
		int il = i2d_ASN1_INTEGER(sn, &ider);
		assert_true(il >= 2);
		size_t hl = ider[1] < 0x80 ? 2 : 2 + (ider[1] & 0x7f);
		assert_int_equal((size_t)il - hl, id->serial_len);
		assert_memory_equal(ider + hl, id->serial, id->serial_len);
		OPENSSL_free(ider);
	}
	int ni = OCSP_REQUEST_get_ext_by_NID(o, NID_id_pkix_OCSP_Nonce, -1);
	if (req->has_nonce) {
		assert_true(ni >= 0);
		ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(OCSP_REQUEST_get_ext(o, ni));
		assert_int_equal(ASN1_STRING_length(v), (int)req->nonce_ext_len);
		assert_memory_equal(ASN1_STRING_get0_data(v), req->nonce_ext, req->nonce_ext_len);
	}
	unsigned char *out = NULL;
	int ol = i2d_OCSP_REQUEST(o, &out);
	assert_int_equal(ol, (int)len);
	assert_memory_equal(out, der, len);
	OPENSSL_free(out);
	OCSP_REQUEST_free(o);
}

/* ---- requests made by OpenSSL ---- */

static void test_openssl_requests(void **state)
{
	(void)state;
	const EVP_MD *mds[] = {EVP_sha1(), EVP_sha256(), EVP_sha384(), EVP_sha512()};
	static const enum ocsp_hash hashes[] = {OCSP_HASH_SHA1, OCSP_HASH_SHA256, OCSP_HASH_SHA384,
	                                        OCSP_HASH_SHA512};
	static const uint64_t serials[] = {0x1001, 0x80, 0x7f, 0, 0xffffffffffffffffULL};
	static const uint8_t want_serial[5][9] = {
		{0x10, 0x01}, {0x00, 0x80}, {0x7f}, {0x00},
		{0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
	static const size_t want_serial_len[5] = {2, 2, 1, 1, 9};
	static const size_t nonces[] = {0, 1, 16, 32, 128};
	for (size_t m = 0; m < 4; m++) {
		for (size_t k = 0; k < sizeof(nonces) / sizeof(nonces[0]); k++) {
			size_t n_serials = 1 + (m + k) % 5;
			size_t len;
			uint8_t *der = testpki_request(mds[m], pki.ca, serials, n_serials, nonces[k], &len);
			struct ocsp_request req;
			memset(&req, 0xcc, sizeof(req));
			assert_int_equal(ocsp_request_decode(der, len, 20, &req), OCSP_DECODE_OK);
			assert_int_equal(req.n_certids, n_serials);
			for (size_t i = 0; i < n_serials; i++) {
				const struct ocsp_certid *id = &req.certids[i];
				assert_int_equal(id->hash, hashes[m]);
				assert_true(id->hash_params_null); /* OpenSSL writes NULL parameters */
				assert_int_equal(id->name_hash_len, ocsp_hash_len(hashes[m]));
				assert_int_equal(id->key_hash_len, ocsp_hash_len(hashes[m]));
				assert_int_equal(id->serial_len, want_serial_len[i]);
				assert_memory_equal(id->serial, want_serial[i], want_serial_len[i]);
				/* Pointers borrow from the input. */
				assert_true(id->serial > der && id->serial < der + len);
			}
			/* The hashes are the CA's, as OpenSSL computed them. */
			uint8_t nh[64];
			unsigned int nl = 0;
			unsigned char *name = NULL;
			int namelen = i2d_X509_NAME(X509_get_subject_name(pki.ca), &name);
			assert_int_equal(EVP_Digest(name, (size_t)namelen, nh, &nl, mds[m], NULL), 1);
			OPENSSL_free(name);
			assert_memory_equal(req.certids[0].name_hash, nh, nl);
			if (nonces[k] == 0) {
				assert_false(req.has_nonce);
				assert_null(req.nonce_ext);
			} else {
				assert_true(req.has_nonce);
				assert_int_equal(req.nonce_len, nonces[k]);
				assert_int_equal(req.nonce_ext_len, nonces[k] + (nonces[k] < 128 ? 2 : 3));
				assert_int_equal(req.nonce_ext[0], 0x04);
			}
			check_with_openssl(der, len, &req);
			free(der);
		}
	}
}

static void test_max_certids(void **state)
{
	(void)state;
	uint64_t serials[OCSP_MAX_CERTIDS + 1];
	for (size_t i = 0; i < OCSP_MAX_CERTIDS + 1; i++)
		serials[i] = 1000 + i;
	struct ocsp_request req;
	size_t len;
	uint8_t *der = testpki_request(EVP_sha1(), pki.ca, serials, 3, 0, &len);
	assert_int_equal(ocsp_request_decode(der, len, 3, &req), OCSP_DECODE_OK);
	assert_int_equal(ocsp_request_decode(der, len, 2, &req), OCSP_DECODE_TOO_MANY);
	assert_int_equal(ocsp_request_decode(der, len, 1, &req), OCSP_DECODE_TOO_MANY);
	free(der);
	der = testpki_request(EVP_sha1(), pki.ca, serials, OCSP_MAX_CERTIDS, 0, &len);
	assert_int_equal(ocsp_request_decode(der, len, OCSP_MAX_CERTIDS, &req), OCSP_DECODE_OK);
	assert_int_equal(req.n_certids, OCSP_MAX_CERTIDS);
	/* 0 and anything above OCSP_MAX_CERTIDS mean OCSP_MAX_CERTIDS. */
	assert_int_equal(ocsp_request_decode(der, len, 0, &req), OCSP_DECODE_OK);
	assert_int_equal(ocsp_request_decode(der, len, 1000, &req), OCSP_DECODE_OK);
	free(der);
	der = testpki_request(EVP_sha1(), pki.ca, serials, OCSP_MAX_CERTIDS + 1, 0, &len);
	assert_int_equal(ocsp_request_decode(der, len, 0, &req), OCSP_DECODE_TOO_MANY);
	assert_int_equal(ocsp_request_decode(der, len, 1000, &req), OCSP_DECODE_TOO_MANY);
	free(der);
}

/* ---- handcrafted requests ---- */

static void test_handcrafted_certids(void **state)
{
	(void)state;
	struct ocsp_request req;
	static const uint8_t serial32[32] = {0x7f, 1, 2, 3};
	static const uint8_t serial33[33] = {0x7f, 1, 2, 3};
	static const uint8_t neg[] = {0xff};
	static const uint8_t nonminimal[] = {0x00, 0x01};
	static const uint8_t oid_bad_end[] = {0x2b, 0x0e, 0x83};
	static const uint8_t oid_bad_pad[] = {0x2b, 0x80, 0x0e};

	assert_int_equal(decode_opts(OPTS(), 20, &req), OCSP_DECODE_OK);
	assert_int_equal(req.n_certids, 1);
	assert_int_equal(req.certids[0].hash, OCSP_HASH_SHA1);
	assert_true(req.certids[0].hash_params_null);
	assert_int_equal(req.certids[0].serial_len, 2);

	assert_int_equal(decode_opts(OPTS(.params = 1), 20, &req), OCSP_DECODE_OK);
	assert_false(req.certids[0].hash_params_null);
	assert_int_equal(decode_opts(OPTS(.params = 2), 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.params = 3), 20, &req), OCSP_DECODE_MALFORMED);

	/* A hash revd does not serve is still decoded (the answer is then "unknown"). */
	assert_int_equal(decode_opts(OPTS(.oid = oid_md5, .oid_len = sizeof(oid_md5),
	                                  .name_len = 16, .key_len = 16),
	                             20, &req),
	                 OCSP_DECODE_OK);
	assert_int_equal(req.certids[0].hash, OCSP_HASH_UNKNOWN);
	assert_int_equal(req.certids[0].name_hash_len, 16);
	assert_int_equal(decode_opts(OPTS(.oid = oid_md5, .oid_len = sizeof(oid_md5),
	                                  .name_len = 64, .key_len = 64),
	                             20, &req),
	                 OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.oid = oid_md5, .oid_len = sizeof(oid_md5),
	                                  .name_len = 65, .key_len = 16),
	                             20, &req),
	                 OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.oid = oid_bad_end, .oid_len = sizeof(oid_bad_end)), 20,
	                             &req),
	                 OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.oid = oid_bad_pad, .oid_len = sizeof(oid_bad_pad)), 20,
	                             &req),
	                 OCSP_DECODE_MALFORMED);

	/* A known hash fixes the hash lengths. */
	assert_int_equal(decode_opts(OPTS(.name_len = 19), 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.key_len = 32), 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.oid = oid_sha256, .oid_len = sizeof(oid_sha256)), 20,
	                             &req),
	                 OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.oid = oid_sha256, .oid_len = sizeof(oid_sha256),
	                                  .name_len = 32, .key_len = 32),
	                             20, &req),
	                 OCSP_DECODE_OK);
	assert_int_equal(req.certids[0].hash, OCSP_HASH_SHA256);

	/* Serials: up to 32 octets, minimal, any sign. */
	assert_int_equal(decode_opts(OPTS(.serial = serial32, .serial_len = 32), 20, &req),
	                 OCSP_DECODE_OK);
	assert_int_equal(req.certids[0].serial_len, 32);
	assert_memory_equal(req.certids[0].serial, serial32, 32);
	assert_int_equal(decode_opts(OPTS(.serial = serial33, .serial_len = 33), 20, &req),
	                 OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.serial = neg, .serial_len = 1), 20, &req),
	                 OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.serial = nonminimal, .serial_len = 2), 20, &req),
	                 OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.serial_len = -1), 20, &req), OCSP_DECODE_MALFORMED);

	assert_int_equal(decode_opts(OPTS(.empty_list = true), 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.n_certids = 64), 64, &req), OCSP_DECODE_OK);
	assert_int_equal(req.n_certids, 64);
	assert_int_equal(req.certids[63].serial[1], 0x01 + 63);
	assert_int_equal(decode_opts(OPTS(.n_certids = 65), 64, &req), OCSP_DECODE_TOO_MANY);
}

static void test_handcrafted_envelope(void **state)
{
	(void)state;
	struct ocsp_request req;
	assert_int_equal(decode_opts(OPTS(.version = 1), 20, &req), OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.version = 2), 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.requestor = true), 20, &req), OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.signature = 1), 20, &req), OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.requestor = true, .signature = 1, .version = 1), 20,
	                             &req),
	                 OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.trailing = 1), 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.trailing = 2), 20, &req), OCSP_DECODE_MALFORMED);
	/* Nothing at all. */
	assert_int_equal(ocsp_request_decode(NULL, 0, 20, &req), OCSP_DECODE_MALFORMED);
	assert_int_equal(ocsp_request_decode((const uint8_t *)"\x30\x00", 2, 20, &req),
	                 OCSP_DECODE_MALFORMED);
	/* Indefinite lengths (BER) are refused. */
	static struct w w;
	build_request(&w, OPTS());
	uint8_t ber[300];
	assert_true(w.n + 2 < sizeof(ber) && w.b[1] < 0x80);
	ber[0] = 0x30;
	ber[1] = 0x80;
	memcpy(ber + 2, w.b + 2, w.n - 2);
	ber[w.n] = 0;
	ber[w.n + 1] = 0;
	assert_int_equal(ocsp_request_decode(ber, w.n + 2, 20, &req), OCSP_DECODE_MALFORMED);
}

static void test_handcrafted_extensions(void **state)
{
	(void)state;
	struct ocsp_request req;
	uint8_t nonce_val[140];
	nonce_val[0] = 0x04;
	for (size_t i = 2; i < sizeof(nonce_val); i++)
		nonce_val[i] = (uint8_t)i;

	/* Nonce lengths 1..128 octets (RFC 9654). */
	static const size_t ok_lens[] = {1, 16, 32, 127};
	for (size_t i = 0; i < sizeof(ok_lens) / sizeof(ok_lens[0]); i++) {
		nonce_val[1] = (uint8_t)ok_lens[i];
		struct ext e = {oid_nonce, sizeof(oid_nonce), -1, nonce_val, ok_lens[i] + 2};
		assert_int_equal(decode_opts(OPTS(.exts = &e, .n_exts = 1), 20, &req), OCSP_DECODE_OK);
		assert_true(req.has_nonce);
		assert_int_equal(req.nonce_len, ok_lens[i]);
		assert_int_equal(req.nonce_ext_len, ok_lens[i] + 2);
		assert_int_equal(req.nonce_ext[0], 0x04);
		assert_int_equal(req.nonce_ext[1], ok_lens[i]);
		assert_int_equal(req.nonce_ext[2], 2);
	}
	uint8_t long_nonce[3 + 129];
	long_nonce[0] = 0x04;
	long_nonce[1] = 0x81;
	long_nonce[2] = 128;
	memset(long_nonce + 3, 0x77, 129);
	struct ext e128 = {oid_nonce, sizeof(oid_nonce), -1, long_nonce, 3 + 128};
	assert_int_equal(decode_opts(OPTS(.exts = &e128, .n_exts = 1), 20, &req), OCSP_DECODE_OK);
	assert_int_equal(req.nonce_len, 128);
	long_nonce[2] = 129;
	struct ext e129 = {oid_nonce, sizeof(oid_nonce), -1, long_nonce, 3 + 129};
	assert_int_equal(decode_opts(OPTS(.exts = &e129, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_BAD_NONCE);
	static const uint8_t empty_nonce[] = {0x04, 0x00};
	struct ext e0 = {oid_nonce, sizeof(oid_nonce), -1, empty_nonce, 2};
	assert_int_equal(decode_opts(OPTS(.exts = &e0, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_BAD_NONCE);
	/* A bare nonce without its OCTET STRING wrapper. */
	static const uint8_t bare[] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
	struct ext eb = {oid_nonce, sizeof(oid_nonce), -1, bare, sizeof(bare)};
	assert_int_equal(decode_opts(OPTS(.exts = &eb, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_BAD_NONCE);
	static const uint8_t nonce_trailing[] = {0x04, 0x01, 0xaa, 0x00};
	struct ext et = {oid_nonce, sizeof(oid_nonce), -1, nonce_trailing, sizeof(nonce_trailing)};
	assert_int_equal(decode_opts(OPTS(.exts = &et, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_BAD_NONCE);

	static const uint8_t nonce16[] = {0x04, 0x02, 0xab, 0xcd};
	struct ext crit_nonce = {oid_nonce, sizeof(oid_nonce), 1, nonce16, sizeof(nonce16)};
	assert_int_equal(decode_opts(OPTS(.exts = &crit_nonce, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_OK);
	assert_true(req.has_nonce);

	/* Unknown extensions: ignored unless critical. */
	static const uint8_t val[] = {0x05, 0x00};
	struct ext unk = {oid_cutoff, sizeof(oid_cutoff), -1, val, 2};
	assert_int_equal(decode_opts(OPTS(.exts = &unk, .n_exts = 1), 20, &req), OCSP_DECODE_OK);
	assert_false(req.has_nonce);
	struct ext unk_crit = {oid_cutoff, sizeof(oid_cutoff), 1, val, 2};
	assert_int_equal(decode_opts(OPTS(.exts = &unk_crit, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_UNSUPPORTED);
	/* critical FALSE is the DEFAULT, and DER leaves it out. */
	struct ext unk_false = {oid_cutoff, sizeof(oid_cutoff), 0, val, 2};
	assert_int_equal(decode_opts(OPTS(.exts = &unk_false, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_MALFORMED);
	struct ext unk_ber = {oid_cutoff, sizeof(oid_cutoff), 2, val, 2};
	assert_int_equal(decode_opts(OPTS(.exts = &unk_ber, .n_exts = 1), 20, &req),
	                 OCSP_DECODE_MALFORMED);
	/* The same extension twice; an empty list. */
	struct ext twice[2] = {{oid_nonce, sizeof(oid_nonce), -1, nonce16, sizeof(nonce16)},
	                       {oid_nonce, sizeof(oid_nonce), -1, nonce16, sizeof(nonce16)}};
	assert_int_equal(decode_opts(OPTS(.exts = twice, .n_exts = 2), 20, &req),
	                 OCSP_DECODE_MALFORMED);
	assert_int_equal(decode_opts(OPTS(.empty_exts = true), 20, &req), OCSP_DECODE_MALFORMED);
	/* At most 16 extensions. */
	uint8_t oids[17][10];
	struct ext many[17];
	for (int i = 0; i < 17; i++) {
		memcpy(oids[i], oid_cutoff, sizeof(oid_cutoff));
		oids[i][8] = (uint8_t)(0x10 + i);
		many[i] = (struct ext){oids[i], sizeof(oid_cutoff), -1, val, 2};
	}
	assert_int_equal(decode_opts(OPTS(.exts = many, .n_exts = 16), 20, &req), OCSP_DECODE_OK);
	assert_int_equal(decode_opts(OPTS(.exts = many, .n_exts = 17), 20, &req),
	                 OCSP_DECODE_MALFORMED);

	/* A nonce among a single request's extensions is not the request's nonce. */
	assert_int_equal(decode_opts(OPTS(.single_exts = &crit_nonce, .n_single_exts = 1), 20,
	                             &req),
	                 OCSP_DECODE_UNSUPPORTED);
	struct ext single_nonce = {oid_nonce, sizeof(oid_nonce), -1, nonce16, sizeof(nonce16)};
	assert_int_equal(decode_opts(OPTS(.single_exts = &single_nonce, .n_single_exts = 1), 20,
	                             &req),
	                 OCSP_DECODE_OK);
	assert_false(req.has_nonce);
	assert_int_equal(decode_opts(OPTS(.single_exts = &unk_crit, .n_single_exts = 1), 20, &req),
	                 OCSP_DECODE_UNSUPPORTED);
	/* The same OID in a single request and in the request is not a repetition. */
	assert_int_equal(decode_opts(OPTS(.single_exts = &single_nonce, .n_single_exts = 1,
	                                  .exts = &single_nonce, .n_exts = 1),
	                             20, &req),
	                 OCSP_DECODE_OK);
	assert_true(req.has_nonce);
}

/* Every accepted handcrafted request must be one OpenSSL parses and re-encodes alike. */
static void test_accepted_requests_agree_with_openssl(void **state)
{
	(void)state;
	static const uint8_t nonce16[] = {0x04, 0x02, 0xab, 0xcd};
	struct ext n = {oid_nonce, sizeof(oid_nonce), -1, nonce16, sizeof(nonce16)};
	struct ext nc = {oid_nonce, sizeof(oid_nonce), 1, nonce16, sizeof(nonce16)};
	const struct req_opts *cases[] = {
		OPTS(),
		OPTS(.params = 1),
		OPTS(.version = 1),
		OPTS(.requestor = true),
		OPTS(.signature = 1),
		OPTS(.exts = &n, .n_exts = 1),
		OPTS(.exts = &nc, .n_exts = 1),
		OPTS(.single_exts = &n, .n_single_exts = 1, .n_certids = 3),
		OPTS(.oid = oid_md5, .oid_len = sizeof(oid_md5), .name_len = 16, .key_len = 16),
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct w w;
		build_request(&w, cases[i]);
		struct ocsp_request req;
		assert_int_equal(ocsp_request_decode(w.b, w.n, 20, &req), OCSP_DECODE_OK);
		check_with_openssl(w.b, w.n, &req);
	}
}

/*
 * requestorName [1] and optionalSignature [0] are ignored, but must still be a
 * GeneralName and a Signature: OpenSSL's d2i_OCSP_REQUEST refuses these requests, and
 * so must revd (the fuzz_request differential target found the difference).
 */
static void test_requestor_and_signature_must_have_their_types(void **state)
{
	(void)state;
	static const uint8_t not_a_general_name[] = {0x05, 0x00}; /* NULL */
	static const uint8_t sequence[] = {0x30, 0x00};
	const struct req_opts *cases[] = {
		OPTS(.requestor = true, .requestor_tlv = not_a_general_name,
		     .requestor_len = sizeof(not_a_general_name)),
		OPTS(.requestor = true, .requestor_tlv = sequence, .requestor_len = sizeof(sequence)),
		OPTS(.signature = 2),
	};
	int wrong = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct w w;
		build_request(&w, cases[i]);
		const unsigned char *p = w.b;
		OCSP_REQUEST *o = d2i_OCSP_REQUEST(NULL, &p, (long)w.n);
		assert_null(o); /* not an OCSPRequest to OpenSSL */
		ERR_clear_error();
		struct ocsp_request req;
		enum ocsp_decode_result r = ocsp_request_decode(w.b, w.n, 20, &req);
		if (r != OCSP_DECODE_MALFORMED) {
			print_error("case %zu: %s, want malformed request\n", i,
			            ocsp_decode_result_str(r));
			wrong++;
		}
	}
	assert_int_equal(wrong, 0);
}

/*
 * Inside the ignored fields, BER that is not DER must be refused too: OpenSSL parses
 * these two requests but re-encodes them differently (it clears a BIT STRING's unused
 * bits, and writes lengths in the short form). Found by fuzz_request.
 */
static void test_ignored_fields_must_be_der(void **state)
{
	(void)state;
	const struct req_opts *cases[] = {OPTS(.signature = 3), OPTS(.signature = 4)};
	int wrong = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static struct w w;
		build_request(&w, cases[i]);
		const unsigned char *p = w.b;
		OCSP_REQUEST *o = d2i_OCSP_REQUEST(NULL, &p, (long)w.n);
		assert_non_null(o); /* OpenSSL reads it... */
		unsigned char *out = NULL;
		int ol = i2d_OCSP_REQUEST(o, &out);
		assert_true(ol != (int)w.n || memcmp(out, w.b, w.n) != 0); /* ...but it is not DER */
		OPENSSL_free(out);
		OCSP_REQUEST_free(o);
		struct ocsp_request req;
		enum ocsp_decode_result r = ocsp_request_decode(w.b, w.n, 20, &req);
		if (r != OCSP_DECODE_MALFORMED) {
			print_error("case %zu: %s, want malformed request\n", i,
			            ocsp_decode_result_str(r));
			wrong++;
		}
	}
	assert_int_equal(wrong, 0);
}

static void test_every_truncation_refused(void **state)
{
	(void)state;
	static const uint64_t serials[] = {1, 2, 3};
	size_t len;
	uint8_t *der = testpki_request(EVP_sha256(), pki.ca, serials, 3, 32, &len);
	struct ocsp_request req;
	assert_int_equal(ocsp_request_decode(der, len, 20, &req), OCSP_DECODE_OK);
	for (size_t n = 0; n < len; n++) {
		/* A copy of exactly n bytes, so that ASan sees any read beyond them. */
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, der, n);
		if (ocsp_request_decode(cut, n, 20, &req) == OCSP_DECODE_OK)
			fail_msg("a %zu-byte prefix of a %zu-byte request was accepted", n, len);
		free(cut);
	}
	free(der);
}

/* Each single-bit change either is refused or yields a request OpenSSL agrees with. */
static void test_bit_flips(void **state)
{
	(void)state;
	static const uint64_t serials[] = {0x1001, 0x80};
	size_t len;
	uint8_t *der = testpki_request(EVP_sha1(), pki.ca, serials, 2, 16, &len);
	size_t accepted = 0;
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			der[i] ^= (uint8_t)(1u << bit);
			struct ocsp_request req;
			if (ocsp_request_decode(der, len, 20, &req) == OCSP_DECODE_OK) {
				check_with_openssl(der, len, &req);
				accepted++;
			}
			der[i] ^= (uint8_t)(1u << bit);
		}
	}
	/* Flips inside hashes, serials and the nonce are still requests. */
	assert_true(accepted > 8 * (20 + 20 + 16));
	assert_true(accepted < 8 * len);
	free(der);
}

/* ---- GET paths ---- */

static void expect_path(const char *path, const uint8_t *want, long want_len)
{
	uint8_t out[256];
	memset(out, 0xee, sizeof(out));
	long n = ocsp_get_path_decode(path, strlen(path), out, sizeof(out));
	if (n != want_len)
		fail_msg("'%s': %ld, want %ld", path, n, want_len);
	if (n > 0)
		assert_memory_equal(out, want, (size_t)n);
}

static void test_get_path_alphabets(void **state)
{
	(void)state;
	static const uint8_t fb[] = {0xfb};       /* "+w==" */
	static const uint8_t ff[] = {0xff, 0xff}; /* "//8=" */
	static const uint8_t abc[] = {'a', 'b', 'c'};
	expect_path("YWJj", abc, 3);
	expect_path("+w==", fb, 1);
	expect_path("+w", fb, 1);
	expect_path("+w%3D%3D", fb, 1);
	expect_path("+w%3d%3d", fb, 1);
	expect_path("%2Bw==", fb, 1);
	expect_path("%2bw%3D=", fb, 1);
	expect_path(" w==", fb, 1); /* a '+' a proxy turned into a space */
	expect_path("-w==", fb, 1); /* URL-safe */
	expect_path("//8=", ff, 2);
	expect_path("%2F%2F8%3D", ff, 2);
	expect_path("__8", ff, 2);
	expect_path("_/8", ff, 2);
}

static void test_get_path_refusals(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",         "=",        "==",        "A",        "A===",   "AA=",    "AAA==",
		"AAAAA",    "AB==",     "AAB=",      "YWJj=",    "YW=Jj",  "YW==Jj", "YWJ*",
		"YWJj\n",   "%",        "%2",        "%zz",      "%2G",    "%25YWJj", "%00",
		"YWJj%",    "%%YWJj",   "YW Jj=",    "YWJj====", ".YWJj",  "YWJj/",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t out[64];
		long n = ocsp_get_path_decode(bad[i], strlen(bad[i]), out, sizeof(out));
		if (n != -1)
			fail_msg("'%s' decoded to %ld bytes", bad[i], n);
	}
}

static void test_get_path_out_max(void **state)
{
	(void)state;
	/* 52 base64 symbols: exactly 39 bytes. */
	const char *path = "MEUwQzBBMD8wPTAJBgUrDgMCGgUABBQAAAAAAAAAAAAAAAAAAAAA";
	size_t plen = strlen(path);
	uint8_t want[64];
	long full = ocsp_get_path_decode(path, plen, want, sizeof(want));
	assert_int_equal(full, 39);
	for (size_t max = 0; max <= 40; max++) {
		uint8_t out[64 + 16];
		memset(out, 0xee, sizeof(out));
		long n = ocsp_get_path_decode(path, plen, out, max);
		if (max < 39) {
			assert_int_equal(n, -1);
		} else {
			assert_int_equal(n, 39);
			assert_memory_equal(out, want, 39);
		}
		for (size_t i = max; i < sizeof(out); i++)
			if (out[i] != 0xee)
				fail_msg("out_max %zu: byte %zu written", max, i);
	}
}

/* Random bytes, encoded by OpenSSL, in every alphabet revd accepts. */
static void test_get_path_matches_openssl_base64(void **state)
{
	(void)state;
	uint32_t x = 12345;
	for (size_t len = 1; len <= 300; len++) {
		uint8_t raw[300];
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			raw[i] = (uint8_t)(x >> 16);
		}
		char b64[420];
		int bl = EVP_EncodeBlock((unsigned char *)b64, raw, (int)len);
		assert_true(bl > 0);
		/* standard; percent-escaped; URL-safe; unpadded */
		char esc[1300], url[420];
		size_t e = 0, u = 0;
		for (int i = 0; i < bl; i++) {
			char c = b64[i];
			if (c == '+' || c == '/' || c == '=') {
				e += (size_t)snprintf(esc + e, sizeof(esc) - e, "%%%02X", (unsigned)c);
			} else {
				esc[e++] = c;
			}
			if (c != '=')
				url[u++] = c == '+' ? '-' : c == '/' ? '_' : c;
		}
		uint8_t out[300];
		assert_int_equal(ocsp_get_path_decode(b64, (size_t)bl, out, sizeof(out)), (long)len);
		assert_memory_equal(out, raw, len);
		assert_int_equal(ocsp_get_path_decode(esc, e, out, sizeof(out)), (long)len);
		assert_memory_equal(out, raw, len);
		assert_int_equal(ocsp_get_path_decode(url, u, out, sizeof(out)), (long)len);
		assert_memory_equal(out, raw, len);
	}
}

static void test_result_strings(void **state)
{
	(void)state;
	assert_string_equal(ocsp_decode_result_str(OCSP_DECODE_OK), "ok");
	assert_string_equal(ocsp_decode_result_str(OCSP_DECODE_MALFORMED), "malformed request");
	assert_string_equal(ocsp_decode_result_str(OCSP_DECODE_TOO_MANY), "too many CertIDs");
	assert_string_equal(ocsp_decode_result_str(OCSP_DECODE_BAD_NONCE),
	                    "nonce length out of range");
	assert_string_equal(ocsp_decode_result_str(OCSP_DECODE_UNSUPPORTED),
	                    "unsupported critical extension");
	assert_int_equal(ocsp_hash_len(OCSP_HASH_SHA1), 20);
	assert_int_equal(ocsp_hash_len(OCSP_HASH_SHA512), 64);
	assert_int_equal(ocsp_hash_len(OCSP_HASH_UNKNOWN), 0);
	assert_string_equal(ocsp_hash_name(OCSP_HASH_SHA384), "sha384");
	assert_string_equal(ocsp_hash_name(OCSP_HASH_UNKNOWN), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openssl_requests),
		cmocka_unit_test(test_max_certids),
		cmocka_unit_test(test_handcrafted_certids),
		cmocka_unit_test(test_handcrafted_envelope),
		cmocka_unit_test(test_handcrafted_extensions),
		cmocka_unit_test(test_accepted_requests_agree_with_openssl),
		cmocka_unit_test(test_requestor_and_signature_must_have_their_types),
		cmocka_unit_test(test_ignored_fields_must_be_der),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_get_path_alphabets),
		cmocka_unit_test(test_get_path_refusals),
		cmocka_unit_test(test_get_path_out_max),
		cmocka_unit_test(test_get_path_matches_openssl_base64),
		cmocka_unit_test(test_result_strings),
	};
	return cmocka_run_group_tests_name("request", tests, setup, teardown);
}
