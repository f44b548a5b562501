#include "ocsp/status.h"

bool ocsp_status_decide(const struct store_record *rec, enum ocsp_not_issued policy,
                        struct ocsp_single *s, bool *extended_revoke)
{
	s->revoked_at = 0;
	s->reason = OCSP_REASON_NONE;
	s->invalidity_date = 0;
	switch (rec->status) {
	case STORE_GOOD:
		s->status = OCSP_STATUS_GOOD;
		return true;
	case STORE_REVOKED:
		s->status = OCSP_STATUS_REVOKED;
		s->revoked_at = rec->revoked_at;
		s->reason = rec->reason >= 0 && rec->reason <= 10 && rec->reason != 7
		                    ? rec->reason
		                    : OCSP_REASON_NONE;
		s->invalidity_date = rec->invalidity_date;
		return true;
	case STORE_NOT_ISSUED:
		break;
	}
	switch (policy) {
	case OCSP_NOT_ISSUED_UNAUTHORIZED:
		return false;
	case OCSP_NOT_ISSUED_REVOKED:
		s->status = OCSP_STATUS_REVOKED;
		s->revoked_at = OCSP_EXTENDED_REVOKE_TIME;
		s->reason = OCSP_REASON_CERTIFICATE_HOLD;
		*extended_revoke = true;
		return true;
	case OCSP_NOT_ISSUED_UNKNOWN:
	default:
		s->status = OCSP_STATUS_UNKNOWN;
		return true;
	}
}
