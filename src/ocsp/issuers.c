#include "ocsp/issuers.h"

#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ocsp_issuers {
	size_t n;
	struct ocsp_issuer *v[OCSP_MAX_ISSUERS];
	struct ocsp_signer **retired; /* replaced signers, freed with the table */
	size_t n_retired;
};

struct ocsp_issuers *ocsp_issuers_new(void)
{
	return calloc(1, sizeof(struct ocsp_issuers));
}

void ocsp_issuers_free(struct ocsp_issuers *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		X509_free(t->v[i]->cert);
		ocsp_signer_free(t->v[i]->signer);
		free(t->v[i]->name);
		free(t->v[i]);
	}
	for (size_t i = 0; i < t->n_retired; i++)
		ocsp_signer_free(t->retired[i]);
	free(t->retired);
	free(t);
}

/* issuerNameHash over the DER of the CA's subject; issuerKeyHash over its public key's
 * BIT STRING value, excluding tag, length and unused-bits octet (RFC 6960 §4.1.1). */
bool ocsp_issuer_hashes(X509 *ca, uint8_t name_hash[OCSP_HASH_COUNT][64],
                        uint8_t key_hash[OCSP_HASH_COUNT][64])
{
	unsigned char *name = NULL;
	int name_len = i2d_X509_NAME(X509_get_subject_name(ca), &name);
	if (name_len <= 0)
		return false;
	const ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(ca);
	bool ok = key != NULL;
	for (int h = 0; ok && h < OCSP_HASH_COUNT; h++) {
		const EVP_MD *md = EVP_get_digestbyname(ocsp_hash_name((enum ocsp_hash)h));
		unsigned int len;
		ok = md != NULL &&
		     EVP_Digest(name, (size_t)name_len, name_hash[h], &len, md, NULL) == 1 &&
		     EVP_Digest(ASN1_STRING_get0_data(key), (size_t)ASN1_STRING_length(key),
		                key_hash[h], &len, md, NULL) == 1;
	}
	OPENSSL_free(name);
	return ok;
}

struct ocsp_issuer *ocsp_issuers_add(struct ocsp_issuers *t, const char *name, X509 *cert,
                                     struct ocsp_signer *signer, char *err, size_t errlen)
{
	if (t->n == OCSP_MAX_ISSUERS) {
		snprintf(err, errlen, "too many issuers (at most %d)", OCSP_MAX_ISSUERS);
		return NULL;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (X509_cmp(t->v[i]->cert, cert) == 0) {
			snprintf(err, errlen, "this CA certificate is already configured as issuer '%s'",
			         t->v[i]->name);
			return NULL;
		}
	}
	bool delegated;
	if (!ocsp_signer_can_answer_for(signer, cert, &delegated, err, errlen))
		return NULL;
	struct ocsp_issuer *is = calloc(1, sizeof(*is));
	if (is == NULL || (is->name = strdup(name)) == NULL) {
		free(is);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	X509_up_ref(cert);
	is->cert = cert;
	if (!ocsp_issuer_hashes(is->cert, is->name_hash, is->key_hash)) {
		X509_free(cert);
		free(is->name);
		free(is);
		snprintf(err, errlen, "cannot hash the CA's name and key");
		return NULL;
	}
	is->signer = ocsp_signer_ref(signer);
	is->delegated = delegated;
	is->id = (unsigned)t->n;
	t->v[t->n++] = is;
	return is;
}

bool ocsp_issuers_replace_signer(struct ocsp_issuers *t, struct ocsp_issuer *is,
                                 struct ocsp_signer *signer, char *err, size_t errlen)
{
	bool delegated;
	if (!ocsp_signer_can_answer_for(signer, is->cert, &delegated, err, errlen))
		return false;
	struct ocsp_signer **r = realloc(t->retired, (t->n_retired + 1) * sizeof(*r));
	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	t->retired = r;
	struct ocsp_signer *old = atomic_exchange(&is->signer, ocsp_signer_ref(signer));
	atomic_store(&is->delegated, delegated);
	t->retired[t->n_retired++] = old;
	return true;
}

const struct ocsp_issuer *ocsp_issuers_find(const struct ocsp_issuers *t,
                                            const struct ocsp_certid *id)
{
	if (id->hash == OCSP_HASH_UNKNOWN)
		return NULL;
	size_t hl = ocsp_hash_len(id->hash);
	if (id->name_hash_len != hl || id->key_hash_len != hl)
		return NULL;
	/* Both hashes must match: two CAs may share a name (re-keyed) or a key (renamed). */
	for (size_t i = 0; i < t->n; i++) {
		const struct ocsp_issuer *is = t->v[i];
		if (memcmp(is->key_hash[id->hash], id->key_hash, hl) == 0 &&
		    memcmp(is->name_hash[id->hash], id->name_hash, hl) == 0)
			return is;
	}
	return NULL;
}

size_t ocsp_issuers_count(const struct ocsp_issuers *t)
{
	return t->n;
}

struct ocsp_issuer *ocsp_issuers_get(const struct ocsp_issuers *t, size_t i)
{
	return i < t->n ? t->v[i] : NULL;
}

void ocsp_issuer_certid(const struct ocsp_issuer *is, enum ocsp_hash h, bool params_null,
                        const uint8_t *serial, size_t serial_len, struct ocsp_certid *id)
{
	*id = (struct ocsp_certid){
		.hash = h,
		.hash_params_null = params_null,
		.name_hash = is->name_hash[h],
		.name_hash_len = ocsp_hash_len(h),
		.key_hash = is->key_hash[h],
		.key_hash_len = ocsp_hash_len(h),
		.serial = serial,
		.serial_len = serial_len,
	};
}
