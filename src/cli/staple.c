/*
 * revd staple: fetches the OCSP answer for a certificate and writes it where a TLS server
 * staples it from (HAProxy's .ocsp file, nginx ssl_stapling_file, Envoy's
 * ocsp_staple), replacing the file atomically; with --watch, keeps it fresh.
 */
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/httpc.h"
#include "core/file.h"
#include "core/pem.h"

static const char staple_usage[] =
	"usage: revd staple --cert FILE --issuer FILE --out FILE [--url URL] [--watch]\n"
	"\n"
	"Asks the OCSP responder for the certificate's status and writes the DER answer to\n"
	"FILE (replaced atomically), for HAProxy (the .ocsp file beside the certificate),\n"
	"nginx ssl_stapling_file or Envoy. The answer is checked first: signed by the issuer\n"
	"or its delegated responder, for this certificate, current; a bad or missing answer\n"
	"leaves FILE as it was.\n"
	"\n"
	"  --cert FILE     the server certificate (PEM; the first one in the file)\n"
	"  --issuer FILE   its issuer's certificate (PEM)\n"
	"  --out FILE      where to write the answer\n"
	"  --url URL       the responder (default: the certificate's AIA OCSP URL); http only\n"
	"  --watch         keep running: fetch again at half the answer's validity (after a\n"
	"                  failure, a minute later) until SIGTERM\n"
	"  --timeout SECS  per request (default 10)\n"
	"  -h, --help      this text\n"
	"\n"
	"Exits 0 when an answer was written (its status is printed: good, revoked or\n"
	"unknown), 1 when none could be, 2 on a usage error.\n";

enum { OPT_CERT = 1000, OPT_ISSUER, OPT_OUT, OPT_URL, OPT_WATCH, OPT_TIMEOUT };

static const struct option staple_options[] = {
	{"cert", required_argument, NULL, OPT_CERT},
	{"issuer", required_argument, NULL, OPT_ISSUER},
	{"out", required_argument, NULL, OPT_OUT},
	{"url", required_argument, NULL, OPT_URL},
	{"watch", no_argument, NULL, OPT_WATCH},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* One fetch: checked, written. Returns the answer's nextUpdate (seconds since the
 * epoch), or -1 with the reason in err. */
static int64_t fetch(X509 *cert, X509 *issuer, const char *url, const char *out, int timeout_s,
                     char *err, size_t errlen)
{
	int64_t next = -1;
	char host[256], port[16], path[2048];
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
	OCSP_CERTID *id_kept = OCSP_CERTID_dup(id);
	unsigned char *der = NULL;
	int der_len;
	struct httpc_result res = {0};
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509_STORE *store = X509_STORE_new();
	if (req == NULL || id == NULL || id_kept == NULL || chain == NULL || store == NULL ||
	    OCSP_request_add0_id(req, id) == NULL) {
		snprintf(err, errlen, "cannot make the OCSP request");
		goto out;
	}
	id = NULL;
	if ((der_len = i2d_OCSP_REQUEST(req, &der)) <= 0) {
		snprintf(err, errlen, "cannot encode the OCSP request");
		goto out;
	}
	if (httpc_split_url(url, host, port, path, err, errlen) != 0 ||
	    httpc_request(host, port, "POST", path, der, (size_t)der_len, "application/ocsp-request",
	                  timeout_s, 1 << 20, &res, err, errlen) != 0)
		goto out;
	if (res.status != 200) {
		snprintf(err, errlen, "%s: HTTP %d", url, res.status);
		goto out;
	}
	const unsigned char *p = res.body;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)res.len);
	if (resp == NULL || p != res.body + res.len) {
		snprintf(err, errlen, "%s: not an OCSP response", url);
		goto out;
	}
	int st = OCSP_response_status(resp);
	if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		snprintf(err, errlen, "%s: %s", url, OCSP_response_status_str(st));
		goto out;
	}
	if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
		snprintf(err, errlen, "%s: not a basic OCSP response", url);
		goto out;
	}
	/* Signed by the issuer, or by a responder it delegated to (the answer carries it). */
	sk_X509_push(chain, issuer);
	X509_STORE_add_cert(store, issuer);
	/* The issuer is trusted as it is (it is usually an intermediate, not a root). */
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	if (OCSP_basic_verify(bs, chain, store, OCSP_TRUSTOTHER) <= 0) {
		snprintf(err, errlen, "%s: the answer's signature does not verify with the issuer",
		         url);
		goto out;
	}
	int status, reason;
	ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
	if (OCSP_resp_find_status(bs, id_kept, &status, &reason, &rev, &thisupd, &nextupd) != 1) {
		snprintf(err, errlen, "%s: the answer is not about this certificate", url);
		goto out;
	}
	if (nextupd == NULL || OCSP_check_validity(thisupd, nextupd, 300, -1) != 1) {
		snprintf(err, errlen, "%s: the answer is not current", url);
		goto out;
	}
	struct tm tm;
	if (ASN1_TIME_to_tm(nextupd, &tm) != 1) {
		snprintf(err, errlen, "%s: an unreadable nextUpdate", url);
		goto out;
	}
	if (file_write_atomic(out, res.body, res.len, err, errlen) != 0)
		goto out;
	next = (int64_t)timegm(&tm);
	printf("%s: %s, valid until %s", out, OCSP_cert_status_str(status),
	       asctime(&tm));
	fflush(stdout);
out:
	ERR_clear_error();
	sk_X509_free(chain);
	X509_STORE_free(store);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	free(res.body);
	OPENSSL_free(der);
	OCSP_CERTID_free(id);
	OCSP_CERTID_free(id_kept);
	OCSP_REQUEST_free(req);
	return next;
}

int cli_staple(int argc, char **argv)
{
	const char *cert_path = NULL, *issuer_path = NULL, *out = NULL, *url = NULL;
	bool watch = false;
	int timeout_s = 10;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", staple_options, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(staple_usage, stdout); return CLI_OK;
		case OPT_CERT: cert_path = optarg; break;
		case OPT_ISSUER: issuer_path = optarg; break;
		case OPT_OUT: out = optarg; break;
		case OPT_URL: url = optarg; break;
		case OPT_WATCH: watch = true; break;
		case OPT_TIMEOUT:
			timeout_s = atoi(optarg);
			if (timeout_s < 1 || timeout_s > 300) {
				fprintf(stderr, "revd staple: --timeout takes 1 to 300 seconds\n");
				return CLI_USAGE;
			}
			break;
		default:
			fprintf(stderr, "revd staple: unknown or incomplete option '%s'\n%s",
			        argv[optind - 1], staple_usage);
			return CLI_USAGE;
		}
	}
	if (cert_path == NULL || issuer_path == NULL || out == NULL || optind < argc) {
		fprintf(stderr, "revd staple: --cert, --issuer and --out are required\n%s",
		        staple_usage);
		return CLI_USAGE;
	}
	char err[512];
	STACK_OF(X509) *certs = pem_load_certs(cert_path, err, sizeof(err));
	STACK_OF(X509) *issuers = certs ? pem_load_certs(issuer_path, err, sizeof(err)) : NULL;
	STACK_OF(OPENSSL_STRING) *aia = NULL;
	int status = CLI_USAGE;
	if (certs == NULL || issuers == NULL) {
		fprintf(stderr, "revd staple: %s\n", err);
		goto done;
	}
	X509 *cert = sk_X509_value(certs, 0), *issuer = sk_X509_value(issuers, 0);
	if (X509_check_issued(issuer, cert) != X509_V_OK) {
		fprintf(stderr, "revd staple: %s did not issue %s\n", issuer_path, cert_path);
		goto done;
	}
	if (url == NULL) {
		aia = X509_get1_ocsp(cert);
		if (aia == NULL || sk_OPENSSL_STRING_num(aia) == 0) {
			fprintf(stderr, "revd staple: %s names no OCSP responder: give --url\n", cert_path);
			goto done;
		}
		url = sk_OPENSSL_STRING_value(aia, 0);
	}
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	status = CLI_FAIL;
	for (;;) {
		int64_t next = fetch(cert, issuer, url, out, timeout_s, err, sizeof(err));
		if (next < 0)
			fprintf(stderr, "revd staple: %s\n", err);
		if (!watch) {
			status = next < 0 ? CLI_FAIL : CLI_OK;
			break;
		}
		/* Half the remaining validity, at least a minute; a minute after a failure. */
		int64_t now = (int64_t)time(NULL);
		int64_t wait = next < 0 ? 60 : (next - now) / 2;
		if (wait < 60)
			wait = 60;
		for (int64_t t = 0; t < wait * 10 && !stop_requested; t++) {
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (stop_requested) {
			status = CLI_OK;
			break;
		}
	}
done:
	X509_email_free(aia);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(issuers, X509_free);
	return status;
}
