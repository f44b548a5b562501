#include "ocsp/request.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <string.h>

#include "core/hex.h"
#include "ocsp/der.h"

/* DER of the OIDs revd recognises in requests (contents only). */
static const uint8_t oid_sha1[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
static const uint8_t oid_sha256[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
static const uint8_t oid_sha384[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02};
static const uint8_t oid_sha512[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03};
static const uint8_t oid_nonce[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02};

size_t ocsp_hash_len(enum ocsp_hash h)
{
	switch (h) {
	case OCSP_HASH_SHA1: return 20;
	case OCSP_HASH_SHA256: return 32;
	case OCSP_HASH_SHA384: return 48;
	case OCSP_HASH_SHA512: return 64;
	default: return 0;
	}
}

const char *ocsp_hash_name(enum ocsp_hash h)
{
	switch (h) {
	case OCSP_HASH_SHA1: return "sha1";
	case OCSP_HASH_SHA256: return "sha256";
	case OCSP_HASH_SHA384: return "sha384";
	case OCSP_HASH_SHA512: return "sha512";
	default: return "unknown";
	}
}

const char *ocsp_decode_result_str(enum ocsp_decode_result r)
{
	switch (r) {
	case OCSP_DECODE_OK: return "ok";
	case OCSP_DECODE_MALFORMED: return "malformed request";
	case OCSP_DECODE_TOO_MANY: return "too many CertIDs";
	case OCSP_DECODE_BAD_NONCE: return "nonce length out of range";
	case OCSP_DECODE_UNSUPPORTED: return "unsupported critical extension";
	}
	return "?";
}

static enum ocsp_hash hash_from_oid(const struct der_cursor *oid)
{
	if (der_equals(oid, oid_sha1, sizeof(oid_sha1)))
		return OCSP_HASH_SHA1;
	if (der_equals(oid, oid_sha256, sizeof(oid_sha256)))
		return OCSP_HASH_SHA256;
	if (der_equals(oid, oid_sha384, sizeof(oid_sha384)))
		return OCSP_HASH_SHA384;
	if (der_equals(oid, oid_sha512, sizeof(oid_sha512)))
		return OCSP_HASH_SHA512;
	return OCSP_HASH_UNKNOWN;
}

bool ocsp_certid_decode(struct der_cursor *c, struct ocsp_certid *id)
{
	struct der_cursor seq, alg, oid, name, key, serial;
	if (!der_read(c, DER_SEQUENCE, &seq) || !der_read(&seq, DER_SEQUENCE, &alg) ||
	    !der_read_oid(&alg, &oid))
		return false;
	id->hash = hash_from_oid(&oid);
	id->hash_params_null = false;
	if (!der_at_end(&alg)) {
		struct der_cursor params;
		if (!der_read(&alg, DER_NULL, &params) || der_len(&params) != 0 || !der_at_end(&alg))
			return false;
		id->hash_params_null = true;
	}
	if (!der_read(&seq, DER_OCTET_STRING, &name) || !der_read(&seq, DER_OCTET_STRING, &key) ||
	    !der_read_integer(&seq, &serial) || !der_at_end(&seq))
		return false;
	if (id->hash != OCSP_HASH_UNKNOWN) {
		size_t hl = ocsp_hash_len(id->hash);
		if (der_len(&name) != hl || der_len(&key) != hl)
			return false;
	} else if (der_len(&name) > 64 || der_len(&key) > 64) {
		return false;
	}
	if (der_len(&serial) > OCSP_MAX_SERIAL)
		return false;
	id->name_hash = name.p;
	id->name_hash_len = der_len(&name);
	id->key_hash = key.p;
	id->key_hash_len = der_len(&key);
	id->serial = serial.p;
	id->serial_len = der_len(&serial);
	return true;
}

/*
 * Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension. A nonce is taken only from the
 * request's own extensions (nonce_ok); a critical extension revd does not know
 * refuses the request (RFC 5280 §4.2); a repeated extension is malformed.
 */
static enum ocsp_decode_result decode_extensions(struct der_cursor *c, bool nonce_ok,
                                                 struct ocsp_request *req)
{
	struct der_cursor exts;
	if (!der_read(c, DER_SEQUENCE, &exts) || der_at_end(&exts))
		return OCSP_DECODE_MALFORMED;
	const uint8_t *seen[16];
	size_t seen_len[16], n_seen = 0;
	while (!der_at_end(&exts)) {
		struct der_cursor ext, oid, value;
		bool critical = false;
		if (!der_read(&exts, DER_SEQUENCE, &ext) || !der_read_oid(&ext, &oid))
			return OCSP_DECODE_MALFORMED;
		if (der_peek_tag(&ext) == DER_BOOLEAN) {
			/* DER omits a DEFAULT value: an explicit FALSE is not DER. */
			if (!der_read_boolean(&ext, &critical) || !critical)
				return OCSP_DECODE_MALFORMED;
		}
		if (!der_read(&ext, DER_OCTET_STRING, &value) || !der_at_end(&ext))
			return OCSP_DECODE_MALFORMED;
		for (size_t i = 0; i < n_seen; i++)
			if (der_equals(&oid, seen[i], seen_len[i]))
				return OCSP_DECODE_MALFORMED;
		if (n_seen == 16)
			return OCSP_DECODE_MALFORMED;
		seen[n_seen] = oid.p;
		seen_len[n_seen++] = der_len(&oid);

		if (nonce_ok && der_equals(&oid, oid_nonce, sizeof(oid_nonce))) {
			/* RFC 9654: extnValue holds Nonce ::= OCTET STRING (SIZE(1..128)). */
			struct der_cursor inner = value, nonce;
			if (!der_read(&inner, DER_OCTET_STRING, &nonce) || !der_at_end(&inner))
				return OCSP_DECODE_BAD_NONCE;
			if (der_len(&nonce) < OCSP_NONCE_MIN || der_len(&nonce) > OCSP_NONCE_MAX)
				return OCSP_DECODE_BAD_NONCE;
			req->has_nonce = true;
			req->nonce_ext = value.p;
			req->nonce_ext_len = der_len(&value);
			req->nonce_len = der_len(&nonce);
		} else if (critical) {
			return OCSP_DECODE_UNSUPPORTED;
		}
	}
	return OCSP_DECODE_OK;
}

/* OpenSSL reads BER; its re-encoding equal to the input proves the input was DER. */
static bool openssl_accepts(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	unsigned char *again = NULL;
	OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
	bool ok = req != NULL && p == der + len;
	if (ok) {
		int n = i2d_OCSP_REQUEST(req, &again);
		ok = n > 0 && (size_t)n == len && memcmp(again, der, len) == 0;
	}
	OPENSSL_free(again);
	OCSP_REQUEST_free(req);
	ERR_clear_error();
	return ok;
}

enum ocsp_decode_result ocsp_request_decode(const uint8_t *der, size_t len, size_t max_certids,
                                            struct ocsp_request *req)
{
	req->n_certids = 0;
	req->has_nonce = false;
	req->nonce_ext = NULL;
	req->nonce_ext_len = 0;
	req->nonce_len = 0;
	if (max_certids == 0 || max_certids > OCSP_MAX_CERTIDS)
		max_certids = OCSP_MAX_CERTIDS;

	struct der_cursor top = der_cursor_init(der, len), ocsp_req, tbs, list;
	enum ocsp_decode_result r;
	if (!der_read(&top, DER_SEQUENCE, &ocsp_req) || !der_at_end(&top))
		return OCSP_DECODE_MALFORMED;
	if (!der_read(&ocsp_req, DER_SEQUENCE, &tbs))
		return OCSP_DECODE_MALFORMED;
	/* optionalSignature [0] EXPLICIT Signature: accepted, not verified (RFC 6960 §4.1.2). */
	bool rare_parts = false;
	if (der_peek_tag(&ocsp_req) == DER_CTX_CONS(0)) {
		struct der_cursor sig, sig_seq;
		if (!der_read(&ocsp_req, DER_CTX_CONS(0), &sig) ||
		    !der_read(&sig, DER_SEQUENCE, &sig_seq) || !der_at_end(&sig))
			return OCSP_DECODE_MALFORMED;
		rare_parts = true;
	}
	if (!der_at_end(&ocsp_req))
		return OCSP_DECODE_MALFORMED;

	/* version [0] EXPLICIT Version DEFAULT v1: only v1 exists. Writing the DEFAULT out
	 * is not DER, yet OpenSSL accepts it and re-encodes it as sent, and a client that
	 * does it asks nothing unusual: the one leniency of this decoder. */
	if (der_peek_tag(&tbs) == DER_CTX_CONS(0)) {
		struct der_cursor ver;
		int v;
		if (!der_read(&tbs, DER_CTX_CONS(0), &ver) ||
		    !der_read_small_uint(&ver, DER_INTEGER, &v) || !der_at_end(&ver) || v != 0)
			return OCSP_DECODE_MALFORMED;
	}
	/* requestorName [1] EXPLICIT GeneralName: ignored. */
	if (der_peek_tag(&tbs) == DER_CTX_CONS(1)) {
		struct der_cursor name, inner;
		int tag;
		if (!der_read(&tbs, DER_CTX_CONS(1), &name) ||
		    !der_read_any(&name, &tag, &inner, NULL) || !der_at_end(&name))
			return OCSP_DECODE_MALFORMED;
		rare_parts = true;
	}
	if (!der_read(&tbs, DER_SEQUENCE, &list) || der_at_end(&list))
		return OCSP_DECODE_MALFORMED;
	while (!der_at_end(&list)) {
		struct der_cursor one;
		if (req->n_certids == max_certids)
			return OCSP_DECODE_TOO_MANY;
		if (!der_read(&list, DER_SEQUENCE, &one))
			return OCSP_DECODE_MALFORMED;
		if (!ocsp_certid_decode(&one, &req->certids[req->n_certids]))
			return OCSP_DECODE_MALFORMED;
		/* singleRequestExtensions [0] EXPLICIT Extensions */
		if (der_peek_tag(&one) == DER_CTX_CONS(0)) {
			struct der_cursor ext;
			if (!der_read(&one, DER_CTX_CONS(0), &ext))
				return OCSP_DECODE_MALFORMED;
			r = decode_extensions(&ext, false, req);
			if (r != OCSP_DECODE_OK)
				return r;
			if (!der_at_end(&ext))
				return OCSP_DECODE_MALFORMED;
		}
		if (!der_at_end(&one))
			return OCSP_DECODE_MALFORMED;
		req->n_certids++;
	}
	/* requestExtensions [2] EXPLICIT Extensions */
	if (der_peek_tag(&tbs) == DER_CTX_CONS(2)) {
		struct der_cursor ext;
		if (!der_read(&tbs, DER_CTX_CONS(2), &ext))
			return OCSP_DECODE_MALFORMED;
		r = decode_extensions(&ext, true, req);
		if (r != OCSP_DECODE_OK)
			return r;
		if (!der_at_end(&ext))
			return OCSP_DECODE_MALFORMED;
	}
	if (!der_at_end(&tbs))
		return OCSP_DECODE_MALFORMED;
	/*
	 * A requestorName or signature is ignored, but must still be what RFC 6960 says it
	 * is (a GeneralName; a Signature with its certificates). Rather than parse X.509
	 * here for fields revd never uses, such requests (rare) must also satisfy OpenSSL.
	 */
	if (rare_parts && !openssl_accepts(der, len))
		return OCSP_DECODE_MALFORMED;
	return OCSP_DECODE_OK;
}

/* Base64 symbol values plus one (0: not base64): the standard and URL-safe alphabets,
 * and ' ' read as '+' (some proxies turn a '+' into a space). */
enum { B64_BAD = 0, B64_PAD = 65, B64_PCT = 66 };
static const uint8_t b64_table[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7,
	['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
	['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
	['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
	['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
	[' '] = 63, ['-'] = 63, ['/'] = 64, ['_'] = 64, ['='] = B64_PAD, ['%'] = B64_PCT,
};

long ocsp_get_path_decode(const char *path, size_t len, uint8_t *out, size_t out_max)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0, pad = 0, symbols = 0;
	for (size_t i = 0; i < len; i++) {
		/* Fast path: four plain symbols make three octets. */
		while (bits == 0 && pad == 0 && len - i >= 4 && out_max - n >= 3) {
			unsigned a = b64_table[(unsigned char)path[i]] - 1u;
			unsigned b = b64_table[(unsigned char)path[i + 1]] - 1u;
			unsigned c = b64_table[(unsigned char)path[i + 2]] - 1u;
			unsigned d = b64_table[(unsigned char)path[i + 3]] - 1u;
			if ((a | b | c | d) >= 64) /* a special or invalid one among them */
				break;
			uint32_t w = a << 18 | b << 12 | c << 6 | d;
			out[n] = (uint8_t)(w >> 16);
			out[n + 1] = (uint8_t)(w >> 8);
			out[n + 2] = (uint8_t)w;
			n += 3;
			symbols += 4;
			i += 4;
		}
		if (i == len)
			break;
		int t = b64_table[(unsigned char)path[i]];
		if (t == B64_BAD || t > 64) {
			if (t == B64_PCT) {
				if (len - i < 3)
					return -1;
				int hi = hex_digit(path[i + 1]), lo = hex_digit(path[i + 2]);
				if (hi < 0 || lo < 0)
					return -1;
				i += 2;
				t = b64_table[hi << 4 | lo];
				if (t == B64_PCT) /* an escaped '%' is data, and not base64 */
					return -1;
			}
			if (t == B64_PAD) {
				if (++pad > 2)
					return -1;
				continue;
			}
			if (t == B64_BAD || t > 64)
				return -1;
		}
		uint32_t v = (uint32_t)(t - 1);
		if (pad > 0) /* data after padding */
			return -1;
		symbols++;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == out_max)
				return -1;
			out[n++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* A lone trailing symbol carries no whole octet; leftover bits must be zero. */
	if (symbols % 4 == 1 || acc != 0)
		return -1;
	if (pad > 0 && (symbols + pad) % 4 != 0)
		return -1;
	if (n == 0)
		return -1;
	return (long)n;
}
