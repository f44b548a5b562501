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
	"  version    print the version\n"
	"  help       this text\n";

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return cli_serve(argc - 1, argv + 1);
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
