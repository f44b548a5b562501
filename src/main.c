#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
	"usage: revd COMMAND [options]\n"
	"\n"
	"revd is an OCSP responder (RFC 6960, RFC 9919) and revocation server.\n"
	"\n"
	"commands:\n"
	"  serve      answer OCSP requests over HTTP (see revd serve --help)\n"
	"  db         create or upgrade the PostgreSQL schema, register issuers\n"
	"  import     load issued certificates into PostgreSQL (index.txt or certificates)\n"
	"  revoke     revoke a certificate in PostgreSQL, or release a hold\n"
	"  status     what an OCSP client would be told about a serial, and why\n"
	"  presign    watch, pause or throttle the pre-signers sharing a Redis\n"
	"  crl        bring the CRLs up to date and write them to files\n"
	"  config     check a configuration file (revd config check --config FILE)\n"
	"  healthcheck  ask a running revd whether it is ready (container probes)\n"
	"  staple     fetch a certificate's OCSP answer into a file for TLS stapling\n"
	"  version    print the version\n"
	"  help       this text\n";

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *cmd = argv[1];
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{"serve", cli_serve},   {"db", cli_db},         {"import", cli_import},
		{"revoke", cli_revoke}, {"status", cli_status}, {"presign", cli_presign},
		{"crl", cli_crl},       {"config", cli_config}, {"healthcheck", cli_healthcheck},
		{"staple", cli_staple},
	};
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("revd %s\n", REVD_VERSION);
		return CLI_OK;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		fputs(usage, stdout);
		return CLI_OK;
	}
	fprintf(stderr, "revd: unknown command '%s'\n%s", cmd, usage);
	return CLI_USAGE;
}
