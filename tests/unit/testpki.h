/*
 * Certificates, keys and OCSP requests made in memory with OpenSSL, so that unit tests
 * need no files and no `openssl` binary. Not part of revd: test support only.
 */
#ifndef REVD_TESTS_TESTPKI_H
#define REVD_TESTS_TESTPKI_H

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum testpki_keytype { TESTPKI_EC_P256, TESTPKI_EC_P384, TESTPKI_EC_P224, TESTPKI_ED25519,
	                   TESTPKI_RSA2048, TESTPKI_RSA1024 };

/* A new key; aborts the test program if OpenSSL cannot make one. */
EVP_PKEY *testpki_key(enum testpki_keytype type);

#define TESTPKI_CA 0x1u           /* basicConstraints CA:TRUE, keyCertSign */
#define TESTPKI_OCSP_SIGNING 0x2u /* extendedKeyUsage OCSPSigning */
#define TESTPKI_SERVER_AUTH 0x4u  /* extendedKeyUsage serverAuth */

/*
 * A certificate for key with subject "O=revd unit tests, CN=cn", valid from a day ago
 * for ten years, signed by issuer_key (issuer NULL: self-signed). Returns a new
 * reference; aborts on failure.
 */
X509 *testpki_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                   uint64_t serial, unsigned flags);

/* A CA, a delegated responder (EKU OCSPSigning) and a responder without that EKU
 * issued by it, and one leaf. All EC P-256. */
struct testpki {
	EVP_PKEY *ca_key;
	X509 *ca;
	EVP_PKEY *resp_key;
	X509 *resp;
	EVP_PKEY *noeku_key;
	X509 *noeku;
	EVP_PKEY *leaf_key;
	X509 *leaf; /* serial TESTPKI_LEAF_SERIAL */
};
#define TESTPKI_LEAF_SERIAL 0x1001

void testpki_init(struct testpki *p);
void testpki_free(struct testpki *p);

/* A DER OCSPRequest for the given serials under issuer, made by OpenSSL. nonce_len 0:
 * no nonce. Returns a malloc'd buffer (caller frees) and its length in *len. */
uint8_t *testpki_request(const EVP_MD *md, X509 *issuer, const uint64_t *serials, size_t n,
                         size_t nonce_len, size_t *len);

/* Writes len bytes to a new file under $TMPDIR (or /tmp); returns its malloc'd path.
 * The caller unlinks and frees it. */
char *testpki_temp_file(const void *data, size_t len);

/* Seconds since the epoch of an ASN1_TIME, or INT64_MIN if it cannot be read. */
int64_t testpki_asn1_time(const ASN1_TIME *t);

#endif
