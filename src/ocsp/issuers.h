/* The issuers revd answers for, found by a request's CertID. No I/O. */
#ifndef REVD_OCSP_ISSUERS_H
#define REVD_OCSP_ISSUERS_H

#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "ocsp/ocsp.h"
#include "ocsp/signer.h"

#define OCSP_MAX_ISSUERS 1024

struct ocsp_issuer {
	unsigned id; /* index in its table: stable for the table's life */
	char *name;
	X509 *cert;
	/* Holds a reference. Replaced while serving (a reload): read it once per use. */
	struct ocsp_signer *_Atomic signer;
	_Atomic bool delegated; /* signer is a delegated responder, not the CA itself */
	uint8_t name_hash[OCSP_HASH_COUNT][64];
	uint8_t key_hash[OCSP_HASH_COUNT][64];
	void *user; /* the layer above attaches its per-issuer state here; borrowed */
};

struct ocsp_issuers;

struct ocsp_issuers *ocsp_issuers_new(void);
void ocsp_issuers_free(struct ocsp_issuers *t);

/*
 * Adds an issuer: borrows cert (takes its own reference) and takes a new reference to
 * signer. Refuses (NULL, reason in err) a signer that may not answer for cert, a CA
 * already in the table, or a table that is full.
 */
struct ocsp_issuer *ocsp_issuers_add(struct ocsp_issuers *t, const char *name, X509 *cert,
                                     struct ocsp_signer *signer, char *err, size_t errlen);

/* The CertID hashes of a CA certificate for every algorithm (lengths: ocsp_hash_len). */
bool ocsp_issuer_hashes(X509 *ca, uint8_t name_hash[OCSP_HASH_COUNT][64],
                        uint8_t key_hash[OCSP_HASH_COUNT][64]);

/* The issuer a CertID names, or NULL (an unknown issuer or hash algorithm). */
const struct ocsp_issuer *ocsp_issuers_find(const struct ocsp_issuers *t,
                                            const struct ocsp_certid *id);

size_t ocsp_issuers_count(const struct ocsp_issuers *t);

/*
 * Makes signer (a new reference is taken) is's signer for every answer signed from now
 * on, if it may answer for is's CA (else false and why in err). The one it replaces
 * stays alive until the table is freed, so answers being signed with it finish with it.
 * One caller at a time.
 */
bool ocsp_issuers_replace_signer(struct ocsp_issuers *t, struct ocsp_issuer *is,
                                 struct ocsp_signer *signer, char *err, size_t errlen);
/* The CertID naming serial under is, with hash algorithm h (a known one) and its
 * parameters NULL or absent. id borrows serial and is's hashes. */
void ocsp_issuer_certid(const struct ocsp_issuer *is, enum ocsp_hash h, bool params_null,
                        const uint8_t *serial, size_t serial_len, struct ocsp_certid *id);
struct ocsp_issuer *ocsp_issuers_get(const struct ocsp_issuers *t, size_t i);

#endif
