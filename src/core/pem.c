#include "core/pem.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

STACK_OF(X509) *pem_load_certs(const char *path, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "rb");
	if (bio == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : ENOENT));
		ERR_clear_error();
		return NULL;
	}
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509 *x;
	while (certs != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(certs, x)) {
			X509_free(x);
			break;
		}
	}
	ERR_clear_error(); /* PEM_read's "no start line" at the end of the file */
	if (certs != NULL && sk_X509_num(certs) == 0) {
		/* Not PEM: perhaps one DER certificate. */
		(void)BIO_reset(bio);
		x = d2i_X509_bio(bio, NULL);
		ERR_clear_error();
		if (x != NULL && !sk_X509_push(certs, x))
			X509_free(x);
	}
	BIO_free(bio);
	if (certs == NULL || sk_X509_num(certs) == 0) {
		snprintf(err, errlen, "%s: no certificate found (expected PEM or DER)", path);
		sk_X509_pop_free(certs, X509_free);
		return NULL;
	}
	return certs;
}

EVP_PKEY *pem_load_key(const char *path, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "rb");
	if (bio == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : ENOENT));
		ERR_clear_error();
		return NULL;
	}
	EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	if (key == NULL) {
		(void)BIO_reset(bio);
		key = d2i_PrivateKey_bio(bio, NULL);
	}
	ERR_clear_error();
	BIO_free(bio);
	if (key == NULL)
		snprintf(err, errlen,
		         "%s: no usable private key (expected an unencrypted PEM or DER key)", path);
	return key;
}
