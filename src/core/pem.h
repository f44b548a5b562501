/* Reading certificates and keys from PEM (or DER) files, with messages fit for an operator. */
#ifndef REVD_CORE_PEM_H
#define REVD_CORE_PEM_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Every certificate in path (PEM, or a single DER certificate). NULL, with the reason in
 * err, if the file cannot be read or holds no certificate. */
STACK_OF(X509) *pem_load_certs(const char *path, char *err, size_t errlen);

/* The one private key in path (PEM or DER, unencrypted). The key's bytes never reach
 * a log or an error message. */
EVP_PKEY *pem_load_key(const char *path, char *err, size_t errlen);

#endif
