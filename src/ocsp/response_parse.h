/*
 * Decoding an OCSPResponse (RFC 6960 §4.2.1), strictly (DER). No I/O; borrows its input.
 * revd reads back responses it stored in a shared cache with this before serving them.
 */
#ifndef REVD_OCSP_RESPONSE_PARSE_H
#define REVD_OCSP_RESPONSE_PARSE_H

#include "ocsp/ocsp.h"

struct ocsp_signer;

struct ocsp_parsed_single {
	struct ocsp_certid certid; /* pointers into the input */
	enum ocsp_cert_status status;
	int64_t revoked_at;      /* REVOKED */
	int reason;              /* REVOKED: CRLReason or OCSP_REASON_NONE */
	int64_t invalidity_date; /* the invalidityDate extension; 0 when absent */
	int64_t this_update;
	int64_t next_update; /* 0 when absent */
};

struct ocsp_parsed_response {
	enum ocsp_resp_status status; /* responseStatus; the rest is set only when SUCCESSFUL */
	const uint8_t *tbs;           /* tbsResponseData, whole TLV: what is signed */
	size_t tbs_len;
	const uint8_t *responder_id; /* the whole [1] byName or [2] byKey TLV */
	size_t responder_id_len;
	int64_t produced_at;
	size_t n_singles;                 /* at least 1 */
	struct ocsp_parsed_single single; /* the first SingleResponse */
	bool has_nonce;
	bool extended_revoke; /* the Extended Revoked Definition extension */
	const uint8_t *sigalg; /* signatureAlgorithm, whole TLV */
	size_t sigalg_len;
	const uint8_t *sig; /* BIT STRING contents after the unused-bits octet (which is 0) */
	size_t sig_len;
	const uint8_t *certs; /* the [0] EXPLICIT certs TLV, or NULL */
	size_t certs_len;
};

enum ocsp_parse_result {
	OCSP_PARSE_OK = 0,
	OCSP_PARSE_MALFORMED,   /* not a DER OCSPResponse, or violates RFC 6960/9654 */
	OCSP_PARSE_UNSUPPORTED, /* well formed, but not id-pkix-ocsp-basic, or carries a
	                           critical extension revd does not understand */
};

/*
 * Decodes der[0..len) into *out. On OCSP_PARSE_OK out's pointers point into der; on
 * anything else *out is cleared and means nothing. A response with an error status has
 * no responseBytes and parses with only status set. Allocates nothing.
 *
 * Everything revd reads is checked as DER and against RFC 6960. What it only passes on,
 * a byName ResponderID's attribute values and the certificates' fields, must be DER
 * TLVs of the right shape but is not interpreted (OpenSSL's X.509 decoding costs
 * hundreds of times this parse): ocsp_parsed_signed_by vouches for those. The signature is
 * not verified and no time is compared with the clock: the caller decides what is fresh.
 */
enum ocsp_parse_result ocsp_response_parse(const uint8_t *der, size_t len,
                                           struct ocsp_parsed_response *out);

const char *ocsp_parse_result_str(enum ocsp_parse_result r);

/*
 * True when p (parsed OK and successful) answers first for id: the same hash algorithm
 * (one revd knows), parameters form (NULL or absent), both hashes and serial.
 */
bool ocsp_parsed_matches(const struct ocsp_parsed_response *p, const struct ocsp_certid *id);

/*
 * True when p (parsed OK and successful) is as s would have made it: the ResponderID,
 * signatureAlgorithm and certs byte for byte those s writes, and a signature over tbs
 * that verifies with s's key (ocsp_signer_verify).
 */
bool ocsp_parsed_signed_by(const struct ocsp_parsed_response *p, const struct ocsp_signer *s);

#endif
