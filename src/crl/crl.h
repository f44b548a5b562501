/*
 * X.509 v2 CRLs (RFC 5280 §5): a builder (entries in, signed DER out) and a strict
 * reader for CRLs revd or the CA made. No I/O.
 */
#ifndef REVD_CRL_CRL_H
#define REVD_CRL_CRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "ocsp/der.h"
#include "ocsp/signer.h"

#define CRL_MAX_SERIAL 32
#define CRL_ENTRY_NO_REASON (-1)
#define CRL_ENTRY_UNSPECIFIED 0
#define CRL_ENTRY_HOLD 6
#define CRL_ENTRY_REMOVE 8 /* removeFromCRL: delta CRLs only */

struct crl_entry {
	uint8_t serial_len;
	uint8_t serial[CRL_MAX_SERIAL]; /* INTEGER contents, minimal */
	int reason;                     /* CRLReason, or CRL_ENTRY_NO_REASON */
	int64_t revoked_at;
	int64_t invalidity_date; /* 0: none */
};

/* What a CRL says beyond its entries. */
struct crl_spec {
	const uint8_t *issuer_name; /* the CA's subject Name, DER; borrowed */
	size_t issuer_name_len;
	const uint8_t *key_id; /* the CA's subject key identifier, for the AKI; may be NULL */
	size_t key_id_len;
	uint64_t number;     /* cRLNumber */
	uint64_t delta_base; /* 0: a full CRL; else a delta CRL on the full CRL so numbered */
	int64_t this_update;
	int64_t next_update;
	const char *idp_uri;      /* NULL, or the distribution point this CRL covers alone */
	const char *freshest_uri; /* full CRLs: where their delta CRL is published; NULL: none */
};

/* Orders serials as integers (minimal encodings of non-negative values): shorter first. */
int crl_serial_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/*
 * Builds and signs a CRL into out. entries must be in crl_serial_cmp order without
 * repeats; a reason of unspecified is left out, as RFC 5280 §5.3.1 asks. Returns false
 * with a message in err (an entry out of order, a time out of range, a full buffer, a
 * failed signature).
 */
bool crl_build(const struct crl_spec *spec, const struct crl_entry *entries, size_t n,
               const struct ocsp_signer *signer, struct buf *out, char *err, size_t errlen);

/* A CRL as read: cursors borrow the input. */
struct crl_info {
	struct der_cursor tbs;    /* TBSCertList, whole encoding (what the signature covers) */
	struct der_cursor sigalg; /* AlgorithmIdentifier, whole encoding */
	struct der_cursor sig;    /* the signature's bits (unused-bits octet checked, removed) */
	struct der_cursor issuer; /* Name, whole encoding */
	int64_t this_update;
	int64_t next_update; /* 0: absent */
	bool has_number;
	uint64_t number;
	bool is_delta;
	uint64_t delta_base;
	struct der_cursor idp; /* IssuingDistributionPoint extnValue contents; empty if absent */
	struct der_cursor entries; /* revokedCertificates contents; read with crl_next_entry */
	size_t n_entries;
};

/*
 * Reads a DER CRL: v2 only, strict DER, CRL and entry numbers within 64 bits and
 * serials within CRL_MAX_SERIAL octets, no unknown critical extension. Every entry is
 * checked here, so crl_next_entry on info->entries cannot fail afterwards.
 */
bool crl_parse(const uint8_t *der, size_t len, struct crl_info *info);

/* The next entry of a parsed CRL's entries; false at the end. */
bool crl_next_entry(struct der_cursor *entries, struct crl_entry *e);

#endif
