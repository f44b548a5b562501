/* revd config check: validates a configuration as revd serve would load it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "crl/publisher.h"
#include "http/api.h"
#include "http/responder.h"
#include "ocsp/issuers.h"

extern char **environ;

static const char config_usage[] =
	"usage: revd config check --config FILE\n"
	"\n"
	"Reads FILE, then the REVD_CONF_<SECTION>_<KEY> environment overrides, as revd serve\n"
	"does; checks every key and how they fit together; loads every CA certificate,\n"
	"signer certificate and key and index file it names, and the revocation API's\n"
	"certificate, key, client CA and client CRL. Prints what would be served,\n"
	"or what is wrong and where (FILE:LINE for the file, the variable's name for the\n"
	"environment). Servers (PostgreSQL, Redis) are not contacted.\n"
	"\n"
	"  --config FILE   the configuration to check\n"
	"  -h, --help      this text\n"
	"\n"
	"Exits 0 when revd serve would start with it, 2 when it would not.\n";

static const struct option config_options[] = {
	{"config", required_argument, NULL, 'c'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

int cli_read_config(const char *path, struct config *cfg, char *err, size_t errlen)
{
	return config_load_file(cfg, path, err, errlen) != 0 ||
	               config_apply_env(cfg, environ, err, errlen) != 0 ||
	               config_validate(cfg, err, errlen) != 0
	       ? -1
	       : 0;
}

int cli_config(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
			fputs(config_usage, stdout);
			return CLI_OK;
		}
		fprintf(stderr, "revd config: expected the command 'check'\n%s", config_usage);
		return CLI_USAGE;
	}
	argc--;
	argv++;
	const char *path = NULL;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", config_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(config_usage, stdout);
			return CLI_OK;
		} else if (opt == 'c') {
			path = optarg;
		} else {
			fprintf(stderr, "revd config check: unknown or incomplete option '%s'\n%s",
			        argv[optind - 1], config_usage);
			return CLI_USAGE;
		}
	}
	if (path == NULL || optind < argc) {
		fprintf(stderr, "revd config check: --config FILE is required, and nothing else\n%s",
		        config_usage);
		return CLI_USAGE;
	}
	struct config cfg;
	char err[512];
	config_init(&cfg);
	int status = CLI_USAGE;
	struct responder *r = NULL;
	if (cli_read_config(path, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "revd config check: %s\n", err);
		goto done;
	}
	/* Only errors: the summary below says what was loaded. */
	log_set_level(LOG_ERROR);
	r = responder_new(&cfg, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "revd config check: %s: %s\n", path, err);
		goto done;
	}
	if (cfg.n_api_listen > 0) {
		struct api *api = api_new(&cfg, NULL, err, sizeof(err)); /* credentials only */
		if (api == NULL) {
			fprintf(stderr, "revd config check: %s: %s\n", path, err);
			goto done;
		}
		api_free(api);
	}
	size_t n = ocsp_issuers_count(r->issuers);
	printf("%s: OK\n", path);
	printf("  listen: ");
	for (size_t i = 0; i < cfg.n_listen; i++)
		printf("%s%s", i ? ", " : "", cfg.listen[i]);
	printf("%s\n", cfg.n_listen ? "" : "127.0.0.1:8080 (default)");
	printf("  issuers: %zu CA certificate%s in %zu section%s; CRLs: %zu\n", n, n == 1 ? "" : "s",
	       cfg.n_issuers, cfg.n_issuers == 1 ? "" : "s", crl_publisher_count(r->crl));
	for (size_t i = 0; i < n; i++) {
		const struct ocsp_issuer *is = ocsp_issuers_get(r->issuers, i);
		printf("    %s: signed by %s (%s)\n", is->name,
		       is->delegated ? "a delegated responder" : "the CA itself",
		       ocsp_signer_describe(is->signer));
	}
	printf("  status: %s%s\n", cfg.pg_dsn ? "PostgreSQL" : "index files",
	       cfg.redis_address ? ", shared answers in Redis" : "");
	if (cfg.n_api_listen > 0) {
		printf("  revocation API: https://%s, clients from %s%s, allowed:", cfg.api_listen[0],
		       cfg.api_client_ca, cfg.api_client_crl ? " (CRL checked)" : "");
		for (size_t i = 0; i < cfg.n_api_allow; i++)
			printf(" %s", cfg.api_allow[i]);
		printf("\n");
	}
	status = CLI_OK;
done:
	responder_free(r);
	config_free(&cfg);
	return status;
}
