/* From a store's record to what an OCSP client is told. No I/O. */
#ifndef REVD_OCSP_STATUS_H
#define REVD_OCSP_STATUS_H

#include "db/store.h"
#include "ocsp/response.h"

/* What to answer for a serial the issuer never issued. Never "good". */
enum ocsp_not_issued {
	OCSP_NOT_ISSUED_UNKNOWN,      /* certStatus unknown (RFC 6960 default) */
	OCSP_NOT_ISSUED_UNAUTHORIZED, /* the whole response: unauthorized */
	OCSP_NOT_ISSUED_REVOKED,      /* revoked, with the Extended Revoked Definition (§2.2) */
};

/*
 * Fills s's status fields from rec. Returns false when the request must instead be
 * answered `unauthorized` (a serial not issued, under that policy). Sets
 * *extended_revoke when the response must carry the Extended Revoked Definition.
 *
 * An expired certificate keeps the status it had: revocation status does not lapse with
 * validity, and a revoked certificate stays revoked.
 */
bool ocsp_status_decide(const struct store_record *rec, enum ocsp_not_issued policy,
                        struct ocsp_single *s, bool *extended_revoke);

/* 1970-01-01T00:00:00Z: the revocationTime of a not-issued serial (RFC 6960 §2.2). */
#define OCSP_EXTENDED_REVOKE_TIME 0

#endif
