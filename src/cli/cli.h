/* Subcommands of the revd command line. Each returns the process exit status. */
#ifndef REVD_CLI_CLI_H
#define REVD_CLI_CLI_H

#include <stddef.h>

int cli_serve(int argc, char **argv);
/* The database tools (blocking libpq): src/cli/db.c, import.c, revoke.c, status.c. */
int cli_db(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_revoke(int argc, char **argv);
int cli_status(int argc, char **argv);
/* Pre-signer control through Redis: src/cli/presign.c. */
int cli_presign(int argc, char **argv);
/* CRLs brought up to date and written to files: src/cli/crl.c. */
int cli_crl(int argc, char **argv);
/* revd config check: src/cli/config.c; revd healthcheck: src/cli/healthcheck.c. */
int cli_config(int argc, char **argv);

struct config;
/* A configuration file, then the REVD_CONF_ environment, validated: 0, or -1 with
 * "FILE:LINE: what" or the variable's name in err. (src/cli/config.c) */
int cli_read_config(const char *path, struct config *cfg, char *err, size_t errlen);
int cli_healthcheck(int argc, char **argv);
/* revd staple: src/cli/staple.c. */
int cli_staple(int argc, char **argv);

/* Exit statuses shared by every subcommand. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

#endif
