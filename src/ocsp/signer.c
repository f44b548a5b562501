#include "ocsp/signer.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocsp/der.h"

struct ocsp_signer {
	_Atomic int refs;
	X509 *cert;
	EVP_PKEY *key;
	EVP_MD *md; /* NULL for EdDSA, which hashes internally */
	char md_name[16];
	/* Initialized once; each signature starts from a copy. Initializing per signature
	 * (fetching the algorithm from the provider) cost about 10% of an ECDSA P-256
	 * signature; a copy is nearly free. Only read after creation, so threads share it. */
	EVP_MD_CTX *tmpl;
	size_t max_sig;
	uint8_t *rid;
	size_t rid_len;
	uint8_t *sigalg;
	size_t sigalg_len;
	uint8_t *certs;
	size_t certs_len;
	char describe[64];
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Picks the digest a key signs with: the strength of the key decides. */
static bool choose_digest(struct ocsp_signer *s, int *md_nid, char *err, size_t errlen)
{
	int id = EVP_PKEY_get_base_id(s->key);
	const char *curve = "";
	switch (id) {
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(s->key) < 2048) {
			set_err(err, errlen, "%s", "RSA signer keys must have at least 2048 bits");
			return false;
		}
		*md_nid = NID_sha256;
		snprintf(s->describe, sizeof(s->describe), "RSA-%d with SHA-256",
		         EVP_PKEY_get_bits(s->key));
		return true;
	case EVP_PKEY_EC: {
		char name[64] = "";
		size_t nl = 0;
		if (!EVP_PKEY_get_utf8_string_param(s->key, OSSL_PKEY_PARAM_GROUP_NAME, name,
		                                    sizeof(name), &nl))
			name[0] = 0;
		if (strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0) {
			*md_nid = NID_sha256;
			curve = "P-256 with SHA-256";
		} else if (strcmp(name, "secp384r1") == 0 || strcmp(name, "P-384") == 0) {
			*md_nid = NID_sha384;
			curve = "P-384 with SHA-384";
		} else if (strcmp(name, "secp521r1") == 0 || strcmp(name, "P-521") == 0) {
			*md_nid = NID_sha512;
			curve = "P-521 with SHA-512";
		} else {
			set_err(err, errlen, "unsupported EC curve %s (use P-256, P-384 or P-521)",
			        name[0] ? name : "(unnamed)");
			return false;
		}
		snprintf(s->describe, sizeof(s->describe), "ECDSA %s", curve);
		return true;
	}
	case EVP_PKEY_ED25519:
		*md_nid = NID_undef;
		snprintf(s->describe, sizeof(s->describe), "Ed25519");
		return true;
	case EVP_PKEY_ED448:
		*md_nid = NID_undef;
		snprintf(s->describe, sizeof(s->describe), "Ed448");
		return true;
	default:
		set_err(err, errlen, "unsupported signer key type %s",
		        OBJ_nid2sn(id) ? OBJ_nid2sn(id) : "?");
		return false;
	}
}

static bool encode_sigalg(struct ocsp_signer *s, int md_nid, char *err, size_t errlen)
{
	int sig_nid;
	int pkey_nid = EVP_PKEY_get_base_id(s->key);
	/* EdDSA names its signature by the key's own OID (RFC 8410 §3). */
	if (pkey_nid == EVP_PKEY_ED25519 || pkey_nid == EVP_PKEY_ED448)
		sig_nid = pkey_nid;
	else if (!OBJ_find_sigid_by_algs(&sig_nid, md_nid, pkey_nid)) {
		set_err(err, errlen, "%s", "no signature algorithm for this key and digest");
		return false;
	}
	X509_ALGOR *alg = X509_ALGOR_new();
	if (alg == NULL)
		return false;
	/* RSA PKCS#1 v1.5 carries NULL parameters; ECDSA and EdDSA none (RFC 5758, 8410). */
	int ptype = pkey_nid == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF;
	bool ok = X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), ptype, NULL) == 1;
	unsigned char *der = NULL;
	int n = ok ? i2d_X509_ALGOR(alg, &der) : -1;
	X509_ALGOR_free(alg);
	if (n <= 0) {
		set_err(err, errlen, "%s", "cannot encode the signature algorithm");
		return false;
	}
	s->sigalg = malloc((size_t)n);
	if (s->sigalg == NULL) {
		OPENSSL_free(der);
		return false;
	}
	memcpy(s->sigalg, der, (size_t)n);
	s->sigalg_len = (size_t)n;
	OPENSSL_free(der);
	return true;
}

static bool encode_responder_id(struct ocsp_signer *s, enum ocsp_responder_id rid)
{
	struct buf b;
	buf_init(&b, 64 * 1024);
	if (rid == OCSP_RID_BY_KEY) {
		/* KeyHash: SHA-1 of the subjectPublicKey BIT STRING's value (RFC 6960 §4.2.1). */
		uint8_t md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		if (!X509_pubkey_digest(s->cert, EVP_sha1(), md, &mdlen))
			goto fail;
		size_t m = der_begin(&b, DER_CTX_CONS(2));
		der_put(&b, DER_OCTET_STRING, md, mdlen);
		der_end(&b, m);
	} else {
		unsigned char *name = NULL;
		int n = i2d_X509_NAME(X509_get_subject_name(s->cert), &name);
		if (n <= 0)
			goto fail;
		size_t m = der_begin(&b, DER_CTX_CONS(1));
		buf_append(&b, name, (size_t)n);
		der_end(&b, m);
		OPENSSL_free(name);
	}
	if (b.failed)
		goto fail;
	s->rid = buf_steal(&b, &s->rid_len);
	return true;
fail:
	buf_free(&b);
	return false;
}

static bool append_cert(struct buf *b, X509 *x)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	if (n <= 0)
		return false;
	bool ok = buf_append(b, der, (size_t)n);
	OPENSSL_free(der);
	return ok;
}

static bool encode_certs(struct ocsp_signer *s, STACK_OF(X509) *extra, bool include_cert)
{
	int n_extra = extra ? sk_X509_num(extra) : 0;
	if (!include_cert && n_extra == 0)
		return true;
	struct buf b;
	buf_init(&b, 1024 * 1024);
	size_t m0 = der_begin(&b, DER_CTX_CONS(0));
	size_t m1 = der_begin(&b, DER_SEQUENCE);
	bool ok = true;
	if (include_cert)
		ok = append_cert(&b, s->cert);
	for (int i = 0; ok && i < n_extra; i++)
		ok = append_cert(&b, sk_X509_value(extra, i));
	ok = ok && der_end(&b, m1) && der_end(&b, m0);
	if (!ok) {
		buf_free(&b);
		return false;
	}
	s->certs = buf_steal(&b, &s->certs_len);
	return true;
}

struct ocsp_signer *ocsp_signer_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *extra,
                                    bool include_cert, enum ocsp_responder_id rid, char *err,
                                    size_t errlen)
{
	struct ocsp_signer *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	atomic_init(&s->refs, 1);
	X509_up_ref(cert);
	s->cert = cert;
	EVP_PKEY_up_ref(key);
	s->key = key;
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		set_err(err, errlen, "%s", "the signer key does not match the signer certificate");
		goto fail;
	}
	int md_nid;
	if (!choose_digest(s, &md_nid, err, errlen))
		goto fail;
	if (md_nid != NID_undef) {
		snprintf(s->md_name, sizeof(s->md_name), "%s", OBJ_nid2sn(md_nid));
		s->md = EVP_MD_fetch(NULL, s->md_name, NULL);
		if (s->md == NULL) {
			set_err(err, errlen, "cannot fetch digest %s", s->md_name);
			goto fail;
		}
	}
	s->max_sig = (size_t)EVP_PKEY_get_size(key);
	s->tmpl = EVP_MD_CTX_new();
	if (s->tmpl == NULL ||
	    EVP_DigestSignInit_ex(s->tmpl, NULL, s->md ? s->md_name : NULL, NULL, NULL, key,
	                          NULL) != 1) {
		set_err(err, errlen, "%s", "cannot initialize signing with this key");
		goto fail;
	}
	if (!encode_sigalg(s, md_nid, err, errlen))
		goto fail;
	if (!encode_responder_id(s, rid) || !encode_certs(s, extra, include_cert)) {
		set_err(err, errlen, "%s", "cannot encode the responder identity or certificates");
		goto fail;
	}
	return s;
fail:
	ERR_clear_error();
	ocsp_signer_free(s);
	return NULL;
}

struct ocsp_signer *ocsp_signer_ref(struct ocsp_signer *s)
{
	atomic_fetch_add(&s->refs, 1);
	return s;
}

void ocsp_signer_free(struct ocsp_signer *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	X509_free(s->cert);
	EVP_PKEY_free(s->key);
	EVP_MD_free(s->md);
	EVP_MD_CTX_free(s->tmpl);
	free(s->rid);
	free(s->sigalg);
	free(s->certs);
	free(s);
}

bool ocsp_signer_can_answer_for(const struct ocsp_signer *s, X509 *issuer, bool *delegated,
                                char *err, size_t errlen)
{
	if (X509_cmp(s->cert, issuer) == 0) {
		*delegated = false;
		return true;
	}
	*delegated = true;
	if (X509_check_issued(issuer, s->cert) != X509_V_OK) {
		set_err(err, errlen, "%s",
		        "the signer certificate was not issued by this CA (its issuer name or "
		        "authority key identifier does not match)");
		return false;
	}
	EVP_PKEY *ipk = X509_get0_pubkey(issuer);
	if (ipk == NULL || X509_verify(s->cert, ipk) != 1) {
		ERR_clear_error();
		set_err(err, errlen, "%s", "the signer certificate's signature does not verify with this CA's key");
		return false;
	}
	uint32_t xku = X509_get_extended_key_usage(s->cert);
	if (!(X509_get_extension_flags(s->cert) & EXFLAG_XKUSAGE) || !(xku & XKU_OCSP_SIGN)) {
		set_err(err, errlen, "%s",
		        "a delegated signer certificate needs extended key usage OCSPSigning");
		return false;
	}
	return true;
}

X509 *ocsp_signer_cert(const struct ocsp_signer *s)
{
	return s->cert;
}

const uint8_t *ocsp_signer_responder_id(const struct ocsp_signer *s, size_t *len)
{
	*len = s->rid_len;
	return s->rid;
}

const uint8_t *ocsp_signer_sigalg(const struct ocsp_signer *s, size_t *len)
{
	*len = s->sigalg_len;
	return s->sigalg;
}

const uint8_t *ocsp_signer_certs(const struct ocsp_signer *s, size_t *len)
{
	*len = s->certs_len;
	return s->certs;
}

size_t ocsp_signer_max_sig(const struct ocsp_signer *s)
{
	return s->max_sig;
}

const char *ocsp_signer_describe(const struct ocsp_signer *s)
{
	return s->describe;
}

bool ocsp_signer_sign(const struct ocsp_signer *s, const uint8_t *data, size_t len,
                      uint8_t *sig, size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = false;
	if (ctx == NULL)
		return false;
	if (EVP_MD_CTX_copy_ex(ctx, s->tmpl) != 1)
		goto out;
	*siglen = s->max_sig;
	ok = EVP_DigestSign(ctx, sig, siglen, data, len) == 1;
out:
	if (!ok)
		ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	return ok;
}

bool ocsp_signer_verify(const struct ocsp_signer *s, const uint8_t *data, size_t len,
                        const uint8_t *sig, size_t siglen)
{
	/* The certificate's key, not s->key: verifying needs no private key (nor a token). */
	EVP_PKEY *pub = X509_get0_pubkey(s->cert);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = pub != NULL && ctx != NULL &&
	          EVP_DigestVerifyInit_ex(ctx, NULL, s->md ? s->md_name : NULL, NULL, NULL, pub,
	                                  NULL) == 1 &&
	          EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	return ok;
}
