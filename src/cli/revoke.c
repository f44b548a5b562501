/* revd revoke: revokes one certificate in the database, or releases a hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pgcli.h"

static const char revoke_usage[] =
	"usage: revd revoke [--dsn DSN] --issuer NAME --serial HEX --reason REASON\n"
	"                   [--invalidity-date TIME] [--time TIME]\n"
	"       revd revoke [--dsn DSN] --unhold --issuer NAME --serial HEX\n"
	"\n"
	"Revokes a certificate the issuer issued (it must be in the database), or releases\n"
	"a certificateHold. A revoked certificate stays revoked; only a certificateHold may\n"
	"become another reason (keeping its revocation time) or be released.\n"
	"\n"
	"  --dsn DSN               libpq connection string or URI (default: $REVD_DSN)\n"
	"  --issuer NAME           the issuer, as registered with `revd db add-issuer`\n"
	"  --serial HEX            the serial number in hex, as openssl prints it\n"
	"  --reason REASON         unspecified, keyCompromise, cACompromise,\n"
	"                          affiliationChanged, superseded, cessationOfOperation,\n"
	"                          certificateHold, privilegeWithdrawn or aACompromise\n"
	"  --invalidity-date TIME  when the key was (or may have been) compromised\n"
	"  --time TIME             the revocation time (default: now)\n"
	"  --unhold                release a certificateHold\n"
	"  -h, --help              this text\n"
	"\n"
	"TIME: YYYYMMDDHHMMSSZ or ISO 8601 (2024-01-02T03:04:05Z, or with an offset).\n";

enum { OPT_DSN = 1000, OPT_ISSUER, OPT_SERIAL, OPT_REASON, OPT_INVALIDITY, OPT_TIME, OPT_UNHOLD };

#define CMD "revoke"

struct revoke_args {
	const char *dsn, *issuer, *serial_text;
	struct revoke_change ch;
	char serial_hex[REVOKE_SERIAL_HEX_LEN];
	char time[REVOKE_TIME_LEN], invalidity[REVOKE_TIME_LEN];
};

/* Says what revoke_apply did, or why it did nothing. */
static int report(const struct revoke_args *a, enum revoke_result res,
                  const struct revoke_state *before, const struct revoke_state *after,
                  const char *err)
{
	const char *sx = a->serial_hex, *is = a->issuer;
	char was[REVOKE_TIME_LEN], at[REVOKE_TIME_LEN];
	revoke_time_format(before->revoked_at, was);
	revoke_time_format(after->revoked_at, at);
	switch (res) {
	case REVOKE_REVOKED:
		printf("revoked serial %s of %s at %s, reason %s%s%s\n", sx, is, at,
		       revoke_reason_name(a->ch.reason), a->ch.invalidity_date ? ", invalidity date " : "",
		       a->ch.invalidity_date ? a->invalidity : "");
		return CLI_OK;
	case REVOKE_REASON_CHANGED:
		printf("serial %s of %s, on hold since %s, is now revoked: %s (revocation time "
		       "kept%s)\n", sx, is, was, revoke_reason_name(a->ch.reason),
		       a->ch.revoked_at ? "; --time ignored" : "");
		return CLI_OK;
	case REVOKE_RELEASED:
		printf("released serial %s of %s from certificateHold (held since %s)\n", sx, is, was);
		return CLI_OK;
	case REVOKE_UNKNOWN_ISSUER:
		pgcli_error(CMD, "no issuer named '%s' in the database (add it with "
		                 "`revd db add-issuer`)", is);
		break;
	case REVOKE_NOT_ISSUED:
		pgcli_error(CMD, "serial %s is not in the database: not issued by %s", sx, is);
		break;
	case REVOKE_ALREADY:
		pgcli_error(CMD, "serial %s of %s is already revoked (at %s, %s)", sx, is, was,
		            revoke_reason_name(before->reason));
		break;
	case REVOKE_NOT_REVOKED:
		pgcli_error(CMD, "serial %s of %s is not revoked: there is no hold to release", sx, is);
		break;
	case REVOKE_NOT_HELD:
		pgcli_error(CMD, "serial %s of %s is revoked (%s, at %s), not on hold: only a "
		                 "certificateHold can be released", sx, is,
		            revoke_reason_name(before->reason), was);
		break;
	case REVOKE_BAD_TIME:
		pgcli_error(CMD, "--invalidity-date %s is after the time serial %s of %s was put on "
		                 "hold (%s), which its revocation keeps", a->invalidity, sx, is, was);
		break;
	case REVOKE_FAILED:
		pgcli_error(CMD, "%s", err);
		break;
	}
	return CLI_FAIL;
}

static int parse_time_arg(const char *opt, const char *text, int64_t *t,
                          char out[REVOKE_TIME_LEN])
{
	if (!revoke_time_parse(text, t) || *t <= 0)
		return pgcli_value_error(CMD, "%s: '%s' is not YYYYMMDDHHMMSSZ or ISO 8601 "
		                              "(2024-01-02T03:04:05Z) after 1970", opt, text);
	revoke_time_format(*t, out);
	return CLI_OK;
}

/* Checks what the options say together; CLI_OK or CLI_USAGE after a message. */
static int check_args(struct revoke_args *a, const char *reason)
{
	if (a->dsn == NULL || a->issuer == NULL || a->serial_text == NULL)
		return pgcli_usage_error(CMD, revoke_usage, "%s is required",
		                         a->dsn == NULL      ? "--dsn (or REVD_DSN)"
		                         : a->issuer == NULL ? "--issuer"
		                                             : "--serial");
	if (!revoke_serial_parse(a->serial_text, &a->ch.serial))
		return pgcli_value_error(CMD, "--serial: '%s' is not a serial number in hex (1 to "
		                              "%d octets)", a->serial_text, STORE_MAX_SERIAL);
	revoke_serial_hex(&a->ch.serial, a->serial_hex);
	a->ch.issuer = a->issuer;
	if (a->ch.op == REVOKE_OP_UNHOLD) {
		if (reason != NULL || a->ch.revoked_at || a->ch.invalidity_date)
			return pgcli_usage_error(CMD, revoke_usage, "--unhold takes no --reason, "
			                                            "--time or --invalidity-date");
		return CLI_OK;
	}
	if (reason == NULL)
		return pgcli_usage_error(CMD, revoke_usage, "--reason is required");
	a->ch.reason = revoke_reason_parse(reason);
	if (a->ch.reason < 0)
		return pgcli_value_error(CMD, "--reason: unknown reason '%s'", reason);
	return CLI_OK;
}

int cli_revoke(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dsn", required_argument, NULL, OPT_DSN},
		{"issuer", required_argument, NULL, OPT_ISSUER},
		{"serial", required_argument, NULL, OPT_SERIAL},
		{"reason", required_argument, NULL, OPT_REASON},
		{"invalidity-date", required_argument, NULL, OPT_INVALIDITY},
		{"time", required_argument, NULL, OPT_TIME},
		{"unhold", no_argument, NULL, OPT_UNHOLD},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct revoke_args a = {0};
	const char *reason = NULL;
	int opt, status = CLI_OK;
	while (status == CLI_OK &&
	       (opt = pgcli_getopt(CMD, revoke_usage, argc, argv, opts, &status)) != -1) {
		switch (opt) {
		case PGCLI_OPT_EXIT: return status;
		case OPT_DSN: a.dsn = optarg; break;
		case OPT_ISSUER: a.issuer = optarg; break;
		case OPT_SERIAL: a.serial_text = optarg; break;
		case OPT_REASON: reason = optarg; break;
		case OPT_UNHOLD: a.ch.op = REVOKE_OP_UNHOLD; break;
		case OPT_INVALIDITY:
			status = parse_time_arg("--invalidity-date", optarg, &a.ch.invalidity_date,
			                        a.invalidity);
			break;
		case OPT_TIME:
			status = parse_time_arg("--time", optarg, &a.ch.revoked_at, a.time);
			break;
		}
	}
	if (status != CLI_OK)
		return status;
	if (optind < argc)
		return pgcli_usage_error(CMD, revoke_usage, "unexpected argument '%s'", argv[optind]);
	a.dsn = pgcli_dsn(a.dsn);
	if ((status = check_args(&a, reason)) != CLI_OK)
		return status;

	struct pgcli c;
	if (!pgcli_connect(&c, CMD, a.dsn))
		return CLI_FAIL;
	struct revoke_state before, after;
	char err[512];
	enum revoke_result res = revoke_apply(c.conn, &a.ch, &before, &after, err, sizeof(err));
	status = report(&a, res, &before, &after, err);
	pgcli_close(&c);
	return status;
}
