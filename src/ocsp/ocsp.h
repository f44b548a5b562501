/* Vocabulary shared by the OCSP request decoder, issuer table and response builder. */
#ifndef REVD_OCSP_OCSP_H
#define REVD_OCSP_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CertID hash algorithms revd recognises. */
enum ocsp_hash {
	OCSP_HASH_SHA1,
	OCSP_HASH_SHA256,
	OCSP_HASH_SHA384,
	OCSP_HASH_SHA512,
	OCSP_HASH_COUNT,
	OCSP_HASH_UNKNOWN = -1,
};

/* Digest length of a CertID hash algorithm. */
size_t ocsp_hash_len(enum ocsp_hash h);
/* "sha1", "sha256", ... for logs and OpenSSL's EVP_get_digestbyname. */
const char *ocsp_hash_name(enum ocsp_hash h);

/* OCSPResponseStatus (RFC 6960 §4.2.1). */
enum ocsp_resp_status {
	OCSP_RESP_SUCCESSFUL = 0,
	OCSP_RESP_MALFORMED = 1,
	OCSP_RESP_INTERNAL_ERROR = 2,
	OCSP_RESP_TRY_LATER = 3,
	OCSP_RESP_SIG_REQUIRED = 5,
	OCSP_RESP_UNAUTHORIZED = 6,
};

/* CertStatus. */
enum ocsp_cert_status { OCSP_STATUS_GOOD, OCSP_STATUS_REVOKED, OCSP_STATUS_UNKNOWN };

/* CRLReason values (RFC 5280 §5.3.1); OCSP_REASON_NONE omits the field. */
enum {
	OCSP_REASON_NONE = -1,
	OCSP_REASON_UNSPECIFIED = 0,
	OCSP_REASON_KEY_COMPROMISE = 1,
	OCSP_REASON_CA_COMPROMISE = 2,
	OCSP_REASON_AFFILIATION_CHANGED = 3,
	OCSP_REASON_SUPERSEDED = 4,
	OCSP_REASON_CESSATION = 5,
	OCSP_REASON_CERTIFICATE_HOLD = 6,
	OCSP_REASON_REMOVE_FROM_CRL = 8,
	OCSP_REASON_PRIVILEGE_WITHDRAWN = 9,
	OCSP_REASON_AA_COMPROMISE = 10,
};

/* Longest serial revd accepts, in INTEGER content octets (RFC 5280 allows 20). */
#define OCSP_MAX_SERIAL 32
/* Most CertIDs any request may carry; the configured limit is at most this. */
#define OCSP_MAX_CERTIDS 64
/* Nonce length bounds (RFC 9654). */
#define OCSP_NONCE_MIN 1
#define OCSP_NONCE_MAX 128

/* One CertID. Pointers borrow the bytes the request was decoded from. */
struct ocsp_certid {
	enum ocsp_hash hash;      /* OCSP_HASH_UNKNOWN: an algorithm revd does not serve */
	bool hash_params_null;    /* parameters present as NULL (else absent) */
	const uint8_t *name_hash; /* issuerNameHash */
	size_t name_hash_len;
	const uint8_t *key_hash; /* issuerKeyHash */
	size_t key_hash_len;
	const uint8_t *serial; /* INTEGER contents, minimal two's complement */
	size_t serial_len;
};

/* The CertID's hash algorithm and parameter encoding as one number below
 * 2 * OCSP_HASH_COUNT: answers differ by it, so caches key on it. */
static inline unsigned ocsp_certid_variant(const struct ocsp_certid *id)
{
	return (unsigned)id->hash * 2 + (id->hash_params_null ? 1 : 0);
}

#endif
