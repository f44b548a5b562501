/* Building and signing OCSP responses (RFC 6960 §4.2). No I/O. */
#ifndef REVD_OCSP_RESPONSE_H
#define REVD_OCSP_RESPONSE_H

#include "core/buf.h"
#include "ocsp/ocsp.h"
#include "ocsp/signer.h"

/* One SingleResponse. */
struct ocsp_single {
	const struct ocsp_certid *certid; /* borrowed; echoed with the request's algorithm */
	enum ocsp_cert_status status;
	int64_t revoked_at;      /* OCSP_STATUS_REVOKED only */
	int reason;              /* OCSP_REASON_*; OCSP_REASON_NONE leaves it out */
	int64_t invalidity_date; /* 0: none; else the invalidityDate extension */
	int64_t this_update;
	int64_t next_update; /* always sent */
};

struct ocsp_response_spec {
	const struct ocsp_signer *signer;
	int64_t produced_at;
	const struct ocsp_single *singles;
	size_t n_singles;
	const uint8_t *nonce_ext; /* a nonce extnValue to echo, or NULL */
	size_t nonce_ext_len;
	bool extended_revoke; /* the Extended Revoked Definition extension (RFC 6960 §2.2) */
};

/* Appends a signed, successful OCSPResponse to out. False on failure (out is then unusable). */
bool ocsp_response_build(const struct ocsp_response_spec *spec, struct buf *out);

/* The unsigned OCSPResponse for a non-successful status: static bytes. */
const uint8_t *ocsp_response_error(enum ocsp_resp_status status, size_t *len);

#endif
