/*
 * An OCSP signer: a key and its certificate, with everything a response needs from
 * them encoded once (ResponderID, signatureAlgorithm, the certs field). Immutable
 * after creation, so any number of threads may sign with it at once.
 */
#ifndef REVD_OCSP_SIGNER_H
#define REVD_OCSP_SIGNER_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "core/buf.h"

enum ocsp_responder_id { OCSP_RID_BY_KEY, OCSP_RID_BY_NAME };

struct ocsp_signer;

/*
 * Borrows cert, key and extra (taking references of its own). extra: further certs
 * to send in the certs field (may be NULL). include_cert: send cert itself (needed
 * when it is a delegated responder). Returns NULL and a message in err on failure:
 * a key that does not match the certificate, or a key type revd cannot sign with.
 */
struct ocsp_signer *ocsp_signer_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *extra,
                                    bool include_cert, enum ocsp_responder_id rid, char *err,
                                    size_t errlen);

/* Another holder: the signer is freed when the last one lets go. */
struct ocsp_signer *ocsp_signer_ref(struct ocsp_signer *s);
void ocsp_signer_free(struct ocsp_signer *s);

/*
 * May s answer for issuer? Yes when s's certificate is the issuer's own, or was issued
 * and signed by it with extended key usage id-kp-OCSPSigning (RFC 6960 §4.2.2.2).
 * Sets *delegated accordingly. On refusal, says why in err.
 */
bool ocsp_signer_can_answer_for(const struct ocsp_signer *s, X509 *issuer, bool *delegated,
                                char *err, size_t errlen);

X509 *ocsp_signer_cert(const struct ocsp_signer *s);

/* Encoded pieces the response builder copies in. */
const uint8_t *ocsp_signer_responder_id(const struct ocsp_signer *s, size_t *len);
const uint8_t *ocsp_signer_sigalg(const struct ocsp_signer *s, size_t *len);
const uint8_t *ocsp_signer_certs(const struct ocsp_signer *s, size_t *len); /* NULL: none */

/* Upper bound of a signature's length. */
size_t ocsp_signer_max_sig(const struct ocsp_signer *s);

/* Signs data; writes the signature to sig (room for ocsp_signer_max_sig) and its length. */
bool ocsp_signer_sign(const struct ocsp_signer *s, const uint8_t *data, size_t len,
                      uint8_t *sig, size_t *siglen);

/*
 * Checks sig over data with s's certificate's public key, by the scheme s signs with
 * (EdDSA one-shot; RSA PKCS#1 v1.5 or ECDSA with s's digest). For responses read back
 * from a shared cache: true only for a signature s could have made.
 */
bool ocsp_signer_verify(const struct ocsp_signer *s, const uint8_t *data, size_t len,
                        const uint8_t *sig, size_t siglen);

/* "ECDSA P-256 with SHA-256" and the like, for logs. */
const char *ocsp_signer_describe(const struct ocsp_signer *s);

#endif
