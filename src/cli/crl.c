/* revd crl: brings the configured issuers' CRLs up to date and writes them to files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "crl/publisher.h"
#include "http/responder.h"

static const char crl_usage[] =
	"usage: revd crl --config FILE --out DIR [--issuer NAME]\n"
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

int cli_crl(int argc, char **argv)
{
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
	config_init(&cfg);
	int status = CLI_USAGE;
	struct responder *r = NULL;
	if (config_load_file(&cfg, config, err, sizeof(err)) != 0 ||
	    config_validate(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "revd crl: %s\n", err);
		goto done;
	}
	if (issuer != NULL) {
		/* Only that issuer: the others are not even loaded. */
		bool found = false;
		for (size_t i = 0; i < cfg.n_issuers; i++) {
			struct config_issuer *ci = &cfg.issuers[i];
			if (strcmp(ci->name, issuer) == 0)
				found = ci->crl;
			else
				ci->crl = false;
		}
		if (!found) {
			fprintf(stderr, "revd crl: no issuer '%s' with CRLs in %s\n", issuer, config);
			goto done;
		}
	}
	log_set_level((enum log_level)cfg.log_level);
	status = CLI_FAIL;
	r = responder_new(&cfg, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "revd crl: %s\n", err);
		goto done;
	}
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
