/* core/pem: loading certificates and keys from PEM or DER files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pem.h"
#include "testpki.h"

static struct testpki pki;

static int setup(void **state)
{
	(void)state;
	testpki_init(&pki);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	testpki_free(&pki);
	return 0;
}

/* Writes what a BIO collected to a temporary file. */
static char *bio_to_file(BIO *bio)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	assert_true(n >= 0);
	char *path = testpki_temp_file(data, (size_t)n);
	BIO_free(bio);
	return path;
}

static void test_certs_pem_bundle(void **state)
{
	(void)state;
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(BIO_puts(bio, "leading text is ignored\n") > 0, 1);
	assert_int_equal(PEM_write_bio_X509(bio, pki.ca), 1);
	assert_int_equal(PEM_write_bio_X509(bio, pki.resp), 1);
	assert_int_equal(PEM_write_bio_X509(bio, pki.leaf), 1);
	char *path = bio_to_file(bio);
	char err[256] = "";
	STACK_OF(X509) *certs = pem_load_certs(path, err, sizeof(err));
	assert_non_null(certs);
	assert_int_equal(sk_X509_num(certs), 3);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 0), pki.ca), 0);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 1), pki.resp), 0);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 2), pki.leaf), 0);
	sk_X509_pop_free(certs, X509_free);
	assert_int_equal(ERR_peek_error(), 0); /* no stale errors for the next caller */
	unlink(path);
	free(path);
}

static void test_certs_der(void **state)
{
	(void)state;
	BIO *bio = BIO_new(BIO_s_mem());
	assert_true(i2d_X509_bio(bio, pki.resp) == 1);
	char *path = bio_to_file(bio);
	char err[256] = "";
	STACK_OF(X509) *certs = pem_load_certs(path, err, sizeof(err));
	assert_non_null(certs);
	assert_int_equal(sk_X509_num(certs), 1);
	assert_int_equal(X509_cmp(sk_X509_value(certs, 0), pki.resp), 0);
	sk_X509_pop_free(certs, X509_free);
	unlink(path);
	free(path);
}

static void test_certs_errors(void **state)
{
	(void)state;
	char err[256] = "";
	char want[512];
	assert_null(pem_load_certs("/nonexistent/ca.pem", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/ca.pem: No such file or directory");

	char *path = testpki_temp_file("", 0);
	assert_null(pem_load_certs(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: no certificate found (expected PEM or DER)", path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);

	/* A key is not a certificate. */
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pki.leaf_key, NULL, NULL, 0, NULL, NULL), 1);
	path = bio_to_file(bio);
	assert_null(pem_load_certs(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: no certificate found (expected PEM or DER)", path);
	assert_string_equal(err, want);
	assert_int_equal(ERR_peek_error(), 0);
	unlink(path);
	free(path);
}

static void test_key_pem_and_der(void **state)
{
	(void)state;
	char err[256] = "";
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pki.resp_key, NULL, NULL, 0, NULL, NULL), 1);
	char *path = bio_to_file(bio);
	EVP_PKEY *k = pem_load_key(path, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_eq(k, pki.resp_key), 1);
	EVP_PKEY_free(k);
	unlink(path);
	free(path);

	bio = BIO_new(BIO_s_mem());
	assert_int_equal(i2d_PrivateKey_bio(bio, pki.ca_key), 1);
	path = bio_to_file(bio);
	k = pem_load_key(path, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_eq(k, pki.ca_key), 1);
	EVP_PKEY_free(k);
	unlink(path);
	free(path);

	EVP_PKEY *ed = testpki_key(TESTPKI_ED25519);
	bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, ed, NULL, NULL, 0, NULL, NULL), 1);
	path = bio_to_file(bio);
	k = pem_load_key(path, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_eq(k, ed), 1);
	EVP_PKEY_free(k);
	EVP_PKEY_free(ed);
	unlink(path);
	free(path);
}

static void test_key_errors_do_not_leak_key_bytes(void **state)
{
	(void)state;
	char err[512] = "";
	char want[600];
	assert_null(pem_load_key("/nonexistent/key.pem", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/key.pem: No such file or directory");

	/* An encrypted key cannot be used without a passphrase, and must not prompt. */
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pki.resp_key, EVP_aes_128_cbc(),
	                                          (unsigned char *)"secret", 6, NULL, NULL),
	                 1);
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	char *pem_text = strndup(data, (size_t)n);
	char *path = bio_to_file(bio);
	assert_null(pem_load_key(path, err, sizeof(err)));
	snprintf(want, sizeof(want),
	         "%s: no usable private key (expected an unencrypted PEM or DER key)", path);
	assert_string_equal(err, want);
	assert_int_equal(ERR_peek_error(), 0);
	/* No line of the key's text shows up in the message. */
	for (char *line = strtok(pem_text, "\n"); line != NULL; line = strtok(NULL, "\n"))
		if (strlen(line) > 16 && line[0] != '-')
			assert_null(strstr(err, line));
	free(pem_text);
	unlink(path);
	free(path);

	/* A certificate is not a key. */
	bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_X509(bio, pki.ca), 1);
	path = bio_to_file(bio);
	assert_null(pem_load_key(path, err, sizeof(err)));
	snprintf(want, sizeof(want),
	         "%s: no usable private key (expected an unencrypted PEM or DER key)", path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_certs_pem_bundle),
		cmocka_unit_test(test_certs_der),
		cmocka_unit_test(test_certs_errors),
		cmocka_unit_test(test_key_pem_and_der),
		cmocka_unit_test(test_key_errors_do_not_leak_key_bytes),
	};
	return cmocka_run_group_tests_name("pem", tests, setup, teardown);
}
