/* revd healthcheck: a container probe: GET /readyz (or /healthz) on a running revd. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/httpc.h"

static const char healthcheck_usage[] =
	"usage: revd healthcheck [--address HOST:PORT] [--live] [--timeout SECONDS]\n"
	"\n"
	"Asks a running revd whether it is ready (GET /readyz: its stores answer and its\n"
	"signers are loaded) or, with --live, only alive (GET /healthz). For container\n"
	"health checks: no curl or wget needed in the image.\n"
	"\n"
	"  --address HOST:PORT  where revd listens (default 127.0.0.1:8080)\n"
	"  --live               alive rather than ready\n"
	"  --timeout SECONDS    give up after this long (default 3)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exits 0 when revd answers 200, 1 otherwise (the reason is printed).\n";

static const struct option hc_options[] = {
	{"address", required_argument, NULL, 'a'},
	{"live", no_argument, NULL, 'l'},
	{"timeout", required_argument, NULL, 't'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int probe(const char *address, const char *path, int timeout_s)
{
	char host[256], port[16], ignored[2048], err[512];
	struct httpc_result res;
	if (httpc_split_url(address, host, port, ignored, err, sizeof(err)) != 0) {
		fprintf(stderr, "revd healthcheck: %s\n", err);
		return CLI_USAGE;
	}
	if (httpc_request(host, port, "GET", path, NULL, 0, NULL, timeout_s, 4096, &res, err,
	                  sizeof(err)) != 0) {
		fprintf(stderr, "revd healthcheck: %s\n", err);
		return CLI_FAIL;
	}
	size_t bl = strcspn((const char *)res.body, "\n");
	int status = res.status == 200 ? CLI_OK : CLI_FAIL;
	if (status == CLI_OK)
		printf("%s%s: %.*s\n", address, path, (int)bl, (const char *)res.body);
	else
		fprintf(stderr, "revd healthcheck: %s%s: %d %.*s\n", address, path, res.status, (int)bl,
		        (const char *)res.body);
	free(res.body);
	return status;
}

int cli_healthcheck(int argc, char **argv)
{
	const char *address = "127.0.0.1:8080";
	bool live = false;
	int timeout_s = 3;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "h", hc_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(healthcheck_usage, stdout);
			return CLI_OK;
		case 'a':
			address = optarg;
			break;
		case 'l':
			live = true;
			break;
		case 't':
			timeout_s = atoi(optarg);
			if (timeout_s < 1 || timeout_s > 300) {
				fprintf(stderr, "revd healthcheck: --timeout takes 1 to 300 seconds\n");
				return CLI_USAGE;
			}
			break;
		default:
			fprintf(stderr, "revd healthcheck: unknown or incomplete option '%s'\n%s",
			        argv[optind - 1], healthcheck_usage);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "revd healthcheck: unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	return probe(address, live ? "/healthz" : "/readyz", timeout_s);
}
