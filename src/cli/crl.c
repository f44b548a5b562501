/* revd crl: brings the configured issuers' CRLs up to date and writes them to files. */
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "core/config.h"
#include "core/log.h"
#include "crl/publisher.h"
#include "http/responder.h"

static const char crl_usage[] =
	"usage: revd crl --config FILE --out DIR [--issuer NAME]\n"
	"       revd crl import --config FILE --issuer NAME CRLFILE...\n"
	"\n"
	"Brings the CRLs of every issuer with `crl = yes` up to date, as a running revd\n"
	"would (a full or delta CRL is built and signed only when due, numbered and\n"
	"published through PostgreSQL or [crl] dir, so running instances serve the same\n"
	"ones), then writes the current ones into DIR as NAME.crl and NAME-delta.crl\n"
	"(NAME-K.crl for shard K of a partitioned issuer), DER, for publishing elsewhere.\n"
	"\n"
	"  --config FILE   revd's configuration\n"
	"  --out DIR       where to write the CRLs (an existing directory)\n"
	"  --issuer NAME   only this issuer's CRLs\n"
	"  -h, --help      this text\n"
	"\n"
	"import publishes CRLs the CA signed itself (an issuer with crl_import = yes, or\n"
	"any issuer with CRLs): each file (PEM or DER, full or delta) must name the CA,\n"
	"verify with its key and carry a number above every one published; every revd\n"
	"instance then serves it.\n"
	"\n"
	"Exits 0 when every CRL is current and written, 1 when one could not be built or\n"
	"written (the reason is printed), 2 on a usage or configuration error.\n";

enum { OPT_CONFIG = 1000, OPT_OUT, OPT_ISSUER };

static const struct option crl_options[] = {
	{"config", required_argument, NULL, OPT_CONFIG},
	{"out", required_argument, NULL, OPT_OUT},
	{"issuer", required_argument, NULL, OPT_ISSUER},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* A CRL file's DER: the bytes of a PEM "X509 CRL" block as they are, or the file. */
static uint8_t *read_crl_file(const char *path, size_t *len, char *err, size_t errlen)
{
	uint8_t *data = NULL;
	size_t n = 0;
	int rc = file_read(path, (size_t)4 << 30, &data, &n, err, errlen);
	if (rc != 0) {
		if (rc > 0)
			snprintf(err, errlen, "%.300s: %s", path, strerror(ENOENT));
		return NULL;
	}
	if (n > 0 && data[0] == 0x30) {
		*len = n;
		return data;
	}
	BIO *bio = BIO_new_mem_buf(data, (int)n);
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long dlen = 0;
	uint8_t *out = NULL;
	if (bio != NULL && n <= INT32_MAX && PEM_read_bio(bio, &name, &header, &der, &dlen) == 1 &&
	    strcmp(name, "X509 CRL") == 0 && (out = malloc((size_t)dlen + 1)) != NULL) {
		memcpy(out, der, (size_t)dlen);
		*len = (size_t)dlen;
	} else {
		snprintf(err, errlen, "%.300s: neither DER nor a PEM X509 CRL", path);
	}
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(bio);
	ERR_clear_error();
	free(data);
	return out;
}

/*
 * The configuration at path (then the environment), with CRLs for issuer alone when it
 * is given, loaded into a responder. NULL (the reason printed, *status set) on failure;
 * cfg is initialized either way, for the caller to free.
 */
static struct responder *load(struct config *cfg, const char *cmd, const char *path,
                              const char *issuer, int *status)
{
	char err[512];
	*status = CLI_USAGE;
	config_init(cfg);
	if (cli_read_config(path, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", cmd, err);
		return NULL;
	}
	if (issuer != NULL) {
		/* Only that issuer's CRLs: the others' are not even loaded. */
		bool found = false;
		for (size_t i = 0; i < cfg->n_issuers; i++) {
			struct config_issuer *ci = &cfg->issuers[i];
			if (strcmp(ci->name, issuer) == 0)
				found = ci->crl;
			else
				ci->crl = false;
		}
		if (!found) {
			fprintf(stderr, "%s: no issuer '%s' with CRLs in %s\n", cmd, issuer, path);
			return NULL;
		}
	}
	log_set_level((enum log_level)cfg->log_level);
	log_set_json(cfg->log_json);
	*status = CLI_FAIL;
	struct responder *r = responder_new(cfg, err, sizeof(err));
	if (r == NULL)
		fprintf(stderr, "%s: %s\n", cmd, err);
	return r;
}

static int crl_import(int argc, char **argv)
{
	const char *config = NULL, *issuer = NULL;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", crl_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(crl_usage, stdout);
			return CLI_OK;
		} else if (opt == OPT_CONFIG) {
			config = optarg;
		} else if (opt == OPT_ISSUER) {
			issuer = optarg;
		} else {
			fprintf(stderr, "revd crl import: unknown or incomplete option '%s'\n%s",
			        argv[optind - 1], crl_usage);
			return CLI_USAGE;
		}
	}
	if (config == NULL || issuer == NULL || optind == argc) {
		fprintf(stderr, "revd crl import: --config, --issuer and a CRL file are required\n%s",
		        crl_usage);
		return CLI_USAGE;
	}
	struct config cfg;
	char err[512];
	int status;
	struct responder *r = load(&cfg, "revd crl import", config, issuer, &status);
	if (r == NULL)
		goto done;
	int failed = 0;
	for (int i = optind; i < argc; i++) {
		size_t len = 0;
		uint8_t *der = read_crl_file(argv[i], &len, err, sizeof(err));
		if (der == NULL || crl_publisher_import(r->crl, issuer, der, len, err, sizeof(err)) != 0) {
			fprintf(stderr, "revd crl import: %s%s%s\n", der ? argv[i] : "", der ? ": " : "",
			        err);
			failed++;
		} else {
			printf("%s: published\n", argv[i]);
		}
		free(der);
	}
	status = failed ? CLI_FAIL : CLI_OK;
done:
	responder_free(r);
	config_free(&cfg);
	return status;
}

int cli_crl(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "import") == 0)
		return crl_import(argc - 1, argv + 1);
	const char *config = NULL, *out = NULL, *issuer = NULL;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", crl_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(crl_usage, stdout);
			return CLI_OK;
		case OPT_CONFIG:
			config = optarg;
			break;
		case OPT_OUT:
			out = optarg;
			break;
		case OPT_ISSUER:
			issuer = optarg;
			break;
		default:
			fprintf(stderr, "revd crl: unknown or incomplete option '%s'\n%s", argv[optind - 1],
			        crl_usage);
			return CLI_USAGE;
		}
	}
	if (optind < argc || config == NULL || out == NULL) {
		fprintf(stderr, "revd crl: %s\n%s",
		        optind < argc ? "unexpected argument" : "--config and --out are required",
		        crl_usage);
		return CLI_USAGE;
	}
	struct config cfg;
	char err[512];
	int status;
	struct responder *r = load(&cfg, "revd crl", config, issuer, &status);
	if (r == NULL)
		goto done;
	status = CLI_FAIL;
	if (crl_publisher_count(r->crl) == 0) {
		fprintf(stderr, "revd crl: no issuer publishes CRLs (set crl = yes in an [issuer] "
		                "section)\n");
		status = CLI_USAGE;
		goto done;
	}
	int failed = crl_publisher_run_once(r->crl);
	long n = crl_publisher_write(r->crl, out, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "revd crl: %s\n", err);
		goto done;
	}
	printf("%ld CRL file%s written to %s\n", n, n == 1 ? "" : "s", out);
	if (failed > 0) {
		fprintf(stderr, "revd crl: %d CRL%s could not be brought up to date (see above)\n",
		        failed, failed == 1 ? "" : "s");
		goto done;
	}
	status = CLI_OK;
done:
	responder_free(r);
	config_free(&cfg);
	return status;
}
