#include "testpki.h"

#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "testpki: %s failed\n", what);
	ERR_print_errors_fp(stderr);
	abort();
}

EVP_PKEY *testpki_key(enum testpki_keytype type)
{
	EVP_PKEY *k = NULL;
	switch (type) {
	case TESTPKI_EC_P256: k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); break;
	case TESTPKI_EC_P384: k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"); break;
	case TESTPKI_EC_P224: k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-224"); break;
	case TESTPKI_ED25519: k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"); break;
	case TESTPKI_RSA2048: k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048); break;
	case TESTPKI_RSA1024: k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024); break;
	}
	if (k == NULL)
		die("EVP_PKEY_Q_keygen");
	return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL || !X509_add_ext(cert, ext, -1))
		die("X509_add_ext");
	X509_EXTENSION_free(ext);
}

X509 *testpki_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                   uint64_t serial, unsigned flags)
{
	X509 *x = X509_new();
	if (x == NULL || !X509_set_version(x, X509_VERSION_3))
		die("X509_new");
	ASN1_INTEGER *sn = ASN1_INTEGER_new();
	if (sn == NULL || !ASN1_INTEGER_set_uint64(sn, serial) || !X509_set_serialNumber(x, sn))
		die("serial");
	ASN1_INTEGER_free(sn);
	X509_NAME *name = X509_NAME_new();
	if (name == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
	                                (const unsigned char *)"revd unit tests", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
	                                -1, 0) ||
	    !X509_set_subject_name(x, name))
		die("subject");
	X509_NAME_free(name);
	if (!X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x)))
		die("issuer");
	if (X509_gmtime_adj(X509_getm_notBefore(x), -86400) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) == NULL)
		die("validity");
	if (!X509_set_pubkey(x, key))
		die("X509_set_pubkey");
	X509 *iss = issuer ? issuer : x;
	add_ext(x, iss, NID_subject_key_identifier, "hash");
	add_ext(x, iss, NID_authority_key_identifier, "keyid:always");
	if (flags & TESTPKI_CA) {
		add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
	} else {
		add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(x, iss, NID_key_usage, "critical,digitalSignature");
	}
	if (flags & (TESTPKI_OCSP_SIGNING | TESTPKI_SERVER_AUTH)) {
		char eku[64] = "";
		if (flags & TESTPKI_OCSP_SIGNING)
			strcat(eku, "OCSPSigning");
		if (flags & TESTPKI_SERVER_AUTH)
			strcat(eku, eku[0] ? ",serverAuth" : "serverAuth");
		add_ext(x, iss, NID_ext_key_usage, eku);
	}
	EVP_PKEY *skey = issuer_key ? issuer_key : key;
	int id = EVP_PKEY_get_base_id(skey);
	const EVP_MD *md = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? NULL : EVP_sha256();
	if (X509_sign(x, skey, md) <= 0)
		die("X509_sign");
	return x;
}

void testpki_init(struct testpki *p)
{
	memset(p, 0, sizeof(*p));
	p->ca_key = testpki_key(TESTPKI_EC_P256);
	p->ca = testpki_cert("revd unit test CA", p->ca_key, NULL, NULL, 1, TESTPKI_CA);
	p->resp_key = testpki_key(TESTPKI_EC_P256);
	p->resp = testpki_cert("revd unit test responder", p->resp_key, p->ca, p->ca_key, 2,
	                       TESTPKI_OCSP_SIGNING);
	p->noeku_key = testpki_key(TESTPKI_EC_P256);
	p->noeku = testpki_cert("revd unit test responder without EKU", p->noeku_key, p->ca,
	                        p->ca_key, 3, TESTPKI_SERVER_AUTH);
	p->leaf_key = testpki_key(TESTPKI_EC_P256);
	p->leaf = testpki_cert("leaf.revd.test", p->leaf_key, p->ca, p->ca_key,
	                       TESTPKI_LEAF_SERIAL, TESTPKI_SERVER_AUTH);
}

void testpki_free(struct testpki *p)
{
	X509_free(p->ca);
	X509_free(p->resp);
	X509_free(p->noeku);
	X509_free(p->leaf);
	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->resp_key);
	EVP_PKEY_free(p->noeku_key);
	EVP_PKEY_free(p->leaf_key);
	memset(p, 0, sizeof(*p));
}

uint8_t *testpki_request(const EVP_MD *md, X509 *issuer, const uint64_t *serials, size_t n,
                         size_t nonce_len, size_t *len)
{
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	if (req == NULL)
		die("OCSP_REQUEST_new");
	const ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(issuer);
	for (size_t i = 0; i < n; i++) {
		ASN1_INTEGER *sn = ASN1_INTEGER_new();
		if (sn == NULL || !ASN1_INTEGER_set_uint64(sn, serials[i]))
			die("serial");
		OCSP_CERTID *id = OCSP_cert_id_new(md, X509_get_subject_name(issuer), key, sn);
		ASN1_INTEGER_free(sn);
		if (id == NULL || OCSP_request_add0_id(req, id) == NULL)
			die("OCSP_request_add0_id");
	}
	if (nonce_len > 0 && !OCSP_request_add1_nonce(req, NULL, (int)nonce_len))
		die("OCSP_request_add1_nonce");
	unsigned char *der = NULL;
	int l = i2d_OCSP_REQUEST(req, &der);
	if (l <= 0)
		die("i2d_OCSP_REQUEST");
	uint8_t *out = malloc((size_t)l);
	if (out == NULL)
		die("malloc");
	memcpy(out, der, (size_t)l);
	OPENSSL_free(der);
	OCSP_REQUEST_free(req);
	*len = (size_t)l;
	return out;
}

char *testpki_temp_file(const void *data, size_t len)
{
	const char *dir = getenv("TMPDIR");
	if (dir == NULL || dir[0] == 0)
		dir = "/tmp";
	size_t n = strlen(dir) + 32;
	char *path = malloc(n);
	if (path == NULL)
		die("malloc");
	snprintf(path, n, "%s/revd-unit-XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp");
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w <= 0)
			die("write");
		p += w;
		len -= (size_t)w;
	}
	close(fd);
	return path;
}

int64_t testpki_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;
	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return INT64_MIN;
	return (int64_t)timegm(&tm);
}
