#include "ocsp/response.h"

#include <string.h>

#include "ocsp/der.h"

static const uint8_t oid_sha1[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
static const uint8_t oid_sha256[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
static const uint8_t oid_sha384[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02};
static const uint8_t oid_sha512[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03};
static const uint8_t oid_basic[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01};
static const uint8_t oid_nonce[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02};
static const uint8_t oid_ext_revoke[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x09};
static const uint8_t oid_invalidity[] = {0x55, 0x1d, 0x18};

static bool put_certid(struct buf *b, const struct ocsp_certid *id)
{
	const uint8_t *oid;
	size_t oid_len;
	switch (id->hash) {
	case OCSP_HASH_SHA1: oid = oid_sha1; oid_len = sizeof(oid_sha1); break;
	case OCSP_HASH_SHA256: oid = oid_sha256; oid_len = sizeof(oid_sha256); break;
	case OCSP_HASH_SHA384: oid = oid_sha384; oid_len = sizeof(oid_sha384); break;
	case OCSP_HASH_SHA512: oid = oid_sha512; oid_len = sizeof(oid_sha512); break;
	default: return false;
	}
	size_t m = der_begin(b, DER_SEQUENCE);
	size_t a = der_begin(b, DER_SEQUENCE);
	der_put(b, DER_OID, oid, oid_len);
	if (id->hash_params_null)
		der_put(b, DER_NULL, NULL, 0);
	der_end(b, a);
	der_put(b, DER_OCTET_STRING, id->name_hash, id->name_hash_len);
	der_put(b, DER_OCTET_STRING, id->key_hash, id->key_hash_len);
	der_put(b, DER_INTEGER, id->serial, id->serial_len);
	return der_end(b, m);
}

static bool put_single(struct buf *b, const struct ocsp_single *s)
{
	size_t m = der_begin(b, DER_SEQUENCE);
	if (!put_certid(b, s->certid))
		return false;
	switch (s->status) {
	case OCSP_STATUS_GOOD:
		der_put(b, DER_CTX_PRIM(0), NULL, 0);
		break;
	case OCSP_STATUS_REVOKED: {
		size_t r = der_begin(b, DER_CTX_CONS(1));
		der_put_gentime(b, s->revoked_at);
		if (s->reason != OCSP_REASON_NONE) {
			size_t rr = der_begin(b, DER_CTX_CONS(0));
			der_put_uint(b, DER_ENUMERATED, (uint64_t)s->reason);
			der_end(b, rr);
		}
		der_end(b, r);
		break;
	}
	case OCSP_STATUS_UNKNOWN:
		der_put(b, DER_CTX_PRIM(2), NULL, 0);
		break;
	}
	der_put_gentime(b, s->this_update);
	size_t nu = der_begin(b, DER_CTX_CONS(0));
	der_put_gentime(b, s->next_update);
	der_end(b, nu);
	if (s->status == OCSP_STATUS_REVOKED && s->invalidity_date != 0) {
		size_t e0 = der_begin(b, DER_CTX_CONS(1));
		size_t e1 = der_begin(b, DER_SEQUENCE);
		size_t e2 = der_begin(b, DER_SEQUENCE);
		der_put(b, DER_OID, oid_invalidity, sizeof(oid_invalidity));
		size_t v = der_begin(b, DER_OCTET_STRING);
		der_put_gentime(b, s->invalidity_date);
		der_end(b, v);
		der_end(b, e2);
		der_end(b, e1);
		der_end(b, e0);
	}
	return der_end(b, m);
}

static bool put_response_extensions(struct buf *b, const struct ocsp_response_spec *spec)
{
	if (spec->nonce_ext == NULL && !spec->extended_revoke)
		return true;
	size_t e0 = der_begin(b, DER_CTX_CONS(1));
	size_t e1 = der_begin(b, DER_SEQUENCE);
	if (spec->nonce_ext != NULL) {
		size_t e = der_begin(b, DER_SEQUENCE);
		der_put(b, DER_OID, oid_nonce, sizeof(oid_nonce));
		der_put(b, DER_OCTET_STRING, spec->nonce_ext, spec->nonce_ext_len);
		der_end(b, e);
	}
	if (spec->extended_revoke) {
		static const uint8_t null_der[] = {0x05, 0x00};
		size_t e = der_begin(b, DER_SEQUENCE);
		der_put(b, DER_OID, oid_ext_revoke, sizeof(oid_ext_revoke));
		der_put(b, DER_OCTET_STRING, null_der, sizeof(null_der));
		der_end(b, e);
	}
	der_end(b, e1);
	return der_end(b, e0);
}

bool ocsp_response_build(const struct ocsp_response_spec *spec, struct buf *out)
{
	static const uint8_t successful = 0;
	size_t len;
	const uint8_t *p;

	size_t m_resp = der_begin(out, DER_SEQUENCE);
	der_put(out, DER_ENUMERATED, &successful, 1);
	size_t m_bytes0 = der_begin(out, DER_CTX_CONS(0));
	size_t m_bytes = der_begin(out, DER_SEQUENCE);
	der_put(out, DER_OID, oid_basic, sizeof(oid_basic));
	size_t m_octets = der_begin(out, DER_OCTET_STRING);
	size_t m_basic = der_begin(out, DER_SEQUENCE);

	/* ResponseData; version v1 is the DEFAULT and so left out. */
	size_t tbs_start = out->len;
	size_t m_tbs = der_begin(out, DER_SEQUENCE);
	p = ocsp_signer_responder_id(spec->signer, &len);
	buf_append(out, p, len);
	der_put_gentime(out, spec->produced_at);
	size_t m_list = der_begin(out, DER_SEQUENCE);
	for (size_t i = 0; i < spec->n_singles; i++)
		if (!put_single(out, &spec->singles[i]))
			return false;
	der_end(out, m_list);
	put_response_extensions(out, spec);
	if (!der_end(out, m_tbs))
		return false;

	/* Sign ResponseData as encoded, then append the signature as a BIT STRING. */
	size_t max_sig = ocsp_signer_max_sig(spec->signer);
	size_t siglen = 0;
	uint8_t sig[1024];
	if (max_sig > sizeof(sig) ||
	    !ocsp_signer_sign(spec->signer, out->data + tbs_start, out->len - tbs_start, sig,
	                      &siglen)) {
		out->failed = true;
		return false;
	}
	p = ocsp_signer_sigalg(spec->signer, &len);
	buf_append(out, p, len);
	size_t m_sig = der_begin(out, DER_BIT_STRING);
	buf_append_byte(out, 0); /* no unused bits */
	buf_append(out, sig, siglen);
	der_end(out, m_sig);
	p = ocsp_signer_certs(spec->signer, &len);
	if (p != NULL)
		buf_append(out, p, len);

	der_end(out, m_basic);
	der_end(out, m_octets);
	der_end(out, m_bytes);
	der_end(out, m_bytes0);
	return der_end(out, m_resp) && !out->failed;
}

const uint8_t *ocsp_response_error(enum ocsp_resp_status status, size_t *len)
{
	static const uint8_t codes[7][5] = {
		{0x30, 0x03, 0x0a, 0x01, 0x00}, {0x30, 0x03, 0x0a, 0x01, 0x01},
		{0x30, 0x03, 0x0a, 0x01, 0x02}, {0x30, 0x03, 0x0a, 0x01, 0x03},
		{0x30, 0x03, 0x0a, 0x01, 0x04}, {0x30, 0x03, 0x0a, 0x01, 0x05},
		{0x30, 0x03, 0x0a, 0x01, 0x06},
	};
	unsigned i = (unsigned)status;
	if (i > 6 || i == 0 || i == 4)
		i = OCSP_RESP_INTERNAL_ERROR;
	*len = 5;
	return codes[i];
}
