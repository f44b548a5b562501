/* Decoding an OCSPRequest (RFC 6960 §4.1). No I/O; borrows its input. */
#ifndef REVD_OCSP_REQUEST_H
#define REVD_OCSP_REQUEST_H

#include "ocsp/ocsp.h"

struct ocsp_request {
	size_t n_certids;
	struct ocsp_certid certids[OCSP_MAX_CERTIDS];
	bool has_nonce;
	/* The nonce extension's extnValue contents (a DER OCTET STRING), echoed verbatim. */
	const uint8_t *nonce_ext;
	size_t nonce_ext_len;
	size_t nonce_len; /* octets inside that OCTET STRING */
};

enum ocsp_decode_result {
	OCSP_DECODE_OK = 0,
	OCSP_DECODE_MALFORMED,    /* not a DER OCSPRequest, or violates RFC 6960/9654 */
	OCSP_DECODE_TOO_MANY,     /* more CertIDs than max_certids */
	OCSP_DECODE_BAD_NONCE,    /* nonce of 0 or more than OCSP_NONCE_MAX octets */
	OCSP_DECODE_UNSUPPORTED,  /* a critical extension revd does not understand */
};

/*
 * Decodes der[0..len) into *req. max_certids (1..OCSP_MAX_CERTIDS) bounds the request
 * list. The signature, requestorName and non-critical extensions are read and ignored.
 * On success req's pointers point into der.
 */
enum ocsp_decode_result ocsp_request_decode(const uint8_t *der, size_t len, size_t max_certids,
                                            struct ocsp_request *req);

const char *ocsp_decode_result_str(enum ocsp_decode_result r);

struct der_cursor;
/*
 * CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }, read
 * from c with the limits revd applies to requests and responses alike (hashes of their
 * algorithm's length, at most 64 octets for an unknown one; a serial of at most
 * OCSP_MAX_SERIAL octets). id's pointers point into c's input. false: malformed.
 */
bool ocsp_certid_decode(struct der_cursor *c, struct ocsp_certid *id);

/*
 * Decodes a GET path's request part (RFC 6960 Appendix A.1): percent-decoding, then
 * base64. '+', '/' and '=' may come escaped or not; a space (a '+' turned into ' ' by
 * some proxy) counts as '+'; the URL-safe alphabet is accepted too. Writes at most
 * out_max bytes to out and returns their count, or -1 if the text is not that.
 */
long ocsp_get_path_decode(const char *path, size_t len, uint8_t *out, size_t out_max);

#endif
