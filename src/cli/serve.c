#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <systemd/sd-daemon.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli/cli.h"

extern char **environ;
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "http/api.h"
#include "http/http.h"
#include "http/responder.h"

static const char serve_usage[] =
	"usage: revd serve [--config FILE] [options]\n"
	"\n"
	"Answers OCSP requests over HTTP for the configured issuers. Without --config, the\n"
	"options below describe one issuer, as `openssl ocsp` does (single-dash forms such as\n"
	"-index and -CA are accepted too).\n"
	"\n"
	"  --config FILE        INI configuration: [server], [ocsp] and [issuer NAME] sections\n"
	"  --index FILE         OpenSSL CA database (index.txt) with the certificates' status\n"
	"  --CA FILE            the issuing CA certificate(s) that index.txt belongs to\n"
	"  --rsigner FILE       responder certificate (default: the CA signs its own answers)\n"
	"  --rkey FILE          responder private key\n"
	"  --rother FILE        further certificates to include in responses\n"
	"  --resp_no_certs      do not include the responder certificate\n"
	"  --resp_key_id        identify the responder by key hash (the default)\n"
	"  --resp_by_name       identify the responder by name\n"
	"  --port PORT          listen on all addresses at PORT\n"
	"  --listen ADDR:PORT   listen on ADDR:PORT (comma-separated list; default 127.0.0.1:8080)\n"
	"  --ndays N, --nmin N  validity of answers (nextUpdate - thisUpdate); 8h to 10 days\n"
	"  --nonce ignore|sign  serve pre-signed answers (default) or sign live and echo nonces\n"
	"  --not-issued unknown|unauthorized|revoked\n"
	"                       the answer for a serial the CA never issued (default unknown)\n"
	"  --path PREFIX        URL path for GET requests (default /)\n"
	"  --workers N          event loops (default: one per core)\n"
	"  --log-level LEVEL    error, warn, info (default) or debug\n"
	"  -h, --help           this text\n";

enum {
	OPT_CONFIG = 1000, OPT_INDEX, OPT_CA, OPT_RSIGNER, OPT_RKEY, OPT_ROTHER, OPT_NO_CERTS,
	OPT_KEY_ID, OPT_BY_NAME, OPT_PORT, OPT_LISTEN, OPT_NDAYS, OPT_NMIN, OPT_NONCE,
	OPT_NOT_ISSUED, OPT_PATH, OPT_WORKERS, OPT_LOG_LEVEL,
};

static const struct option serve_options[] = {
	{"config", required_argument, NULL, OPT_CONFIG},
	{"index", required_argument, NULL, OPT_INDEX},
	{"CA", required_argument, NULL, OPT_CA},
	{"ca", required_argument, NULL, OPT_CA},
	{"rsigner", required_argument, NULL, OPT_RSIGNER},
	{"rkey", required_argument, NULL, OPT_RKEY},
	{"rother", required_argument, NULL, OPT_ROTHER},
	{"resp_no_certs", no_argument, NULL, OPT_NO_CERTS},
	{"resp_key_id", no_argument, NULL, OPT_KEY_ID},
	{"resp_by_name", no_argument, NULL, OPT_BY_NAME},
	{"port", required_argument, NULL, OPT_PORT},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"ndays", required_argument, NULL, OPT_NDAYS},
	{"nmin", required_argument, NULL, OPT_NMIN},
	{"nonce", required_argument, NULL, OPT_NONCE},
	{"not-issued", required_argument, NULL, OPT_NOT_ISSUED},
	{"path", required_argument, NULL, OPT_PATH},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

#define FLAG_ISSUER "issuer default"

static int apply_option(struct config *c, int opt, const char *arg, char *err, size_t errlen)
{
	char tmp[64];
	switch (opt) {
	case OPT_INDEX: return config_set(c, FLAG_ISSUER, "index", arg, err, errlen);
	case OPT_CA: return config_set(c, FLAG_ISSUER, "ca", arg, err, errlen);
	case OPT_RSIGNER: return config_set(c, FLAG_ISSUER, "signer_cert", arg, err, errlen);
	case OPT_RKEY: return config_set(c, FLAG_ISSUER, "signer_key", arg, err, errlen);
	case OPT_ROTHER: return config_set(c, FLAG_ISSUER, "signer_other", arg, err, errlen);
	case OPT_NO_CERTS: return config_set(c, FLAG_ISSUER, "include_signer_cert", "no", err, errlen);
	case OPT_KEY_ID: return config_set(c, "ocsp", "responder_id", "key", err, errlen);
	case OPT_BY_NAME: return config_set(c, "ocsp", "responder_id", "name", err, errlen);
	case OPT_PORT: return config_set(c, "server", "listen", arg, err, errlen);
	case OPT_LISTEN: return config_set(c, "server", "listen", arg, err, errlen);
	case OPT_NDAYS:
		snprintf(tmp, sizeof(tmp), "%sd", arg);
		return config_set(c, "ocsp", "validity", tmp, err, errlen);
	case OPT_NMIN:
		snprintf(tmp, sizeof(tmp), "%smin", arg);
		return config_set(c, "ocsp", "validity", tmp, err, errlen);
	case OPT_NONCE: return config_set(c, "ocsp", "nonce", arg, err, errlen);
	case OPT_NOT_ISSUED: return config_set(c, "ocsp", "not_issued", arg, err, errlen);
	case OPT_PATH: return config_set(c, "ocsp", "path", arg, err, errlen);
	case OPT_WORKERS: return config_set(c, "server", "workers", arg, err, errlen);
	case OPT_LOG_LEVEL: return config_set(c, "server", "log_level", arg, err, errlen);
	default: return 0;
	}
}

struct serve_state {
	uv_loop_t loop;
	uv_signal_t sigint, sigterm, sighup;
	uv_timer_t ready_tick;
	uv_timer_t watchdog; /* systemd's, when it asks for one */
	int argc;
	char **argv; /* read again on SIGHUP */
	bool watchdog_on;
	int64_t watchdog_secs;
	struct http_server *server;
	struct responder *responder;
	struct api *api; /* NULL without [api] */
	bool stopped;
};

static void on_stop_signal(uv_signal_t *h, int signum)
{
	struct serve_state *st = h->data;
	if (st->stopped)
		return;
	st->stopped = true;
	sd_notify(0, "STOPPING=1");
	if (st->watchdog_on)
		uv_close((uv_handle_t *)&st->watchdog, NULL);
	log_info("%s: finishing requests in flight, then exiting", strsignal(signum));
	api_stop(st->api);
	http_server_stop(st->server);
	responder_unwatch(st->responder);
	uv_close((uv_handle_t *)&st->sigint, NULL);
	uv_close((uv_handle_t *)&st->sigterm, NULL);
	uv_close((uv_handle_t *)&st->sighup, NULL);
}

static int read_config(int argc, char **argv, struct config *cfg, bool *help, char *err,
                       size_t errlen);

/*
 * SIGHUP: the configuration is read again. Signers (keys and certificates) and the log
 * level and format are replaced without closing a connection; a configuration that does
 * not load, or whose new signers do not, is refused and the running one kept. Other
 * changes need a restart, which is said.
 */
static void on_hup(uv_signal_t *h, int signum)
{
	(void)signum;
	struct serve_state *st = h->data;
	struct config nc;
	char err[4096];
	bool help;
	config_init(&nc);
	sd_notify(0, "RELOADING=1");
	struct api_tls *tls = NULL;
	if (read_config(st->argc, st->argv, &nc, &help, err, sizeof(err)) != CLI_OK || help) {
		log_error("SIGHUP: the configuration is refused, the running one kept: %s", err);
	} else if (st->api != NULL && nc.n_api_listen > 0 &&
	           (tls = api_tls_load(&nc, err, sizeof(err))) == NULL) {
		log_error("SIGHUP: the revocation API's credentials are refused, nothing reloaded: %s",
		          err);
	} else if (responder_reload_signers(st->responder, &nc, err, sizeof(err)) != 0) {
		api_tls_free(tls);
		log_error("SIGHUP: the new signers are refused, the running ones kept: %s", err);
	} else {
		if (tls != NULL)
			api_tls_use(st->api, tls);
		log_set_level((enum log_level)nc.log_level);
		log_set_json(nc.log_json);
		log_info("SIGHUP: signers%s and logging reloaded; other changes take effect at the "
		         "next restart", tls != NULL ? ", the revocation API's credentials" : "");
	}
	config_free(&nc);
	sd_notify(0, "READY=1");
}

/* systemd's watchdog is fed only while every worker loop still turns: each updates its
 * Date string once a second, so one that has not for longer than the watchdog period is
 * stuck, and systemd should restart revd. */
static void on_watchdog(uv_timer_t *t)
{
	struct serve_state *st = t->data;
	int64_t now = clock_now();
	for (unsigned i = 0; i < st->server->n_workers; i++) {
		int64_t seen = __atomic_load_n(&st->server->workers[i].date_sec, __ATOMIC_RELAXED);
		if (now - seen > st->watchdog_secs) {
			log_error("worker %u has not turned for %llds: not telling systemd all is well", i,
			          (long long)(now - seen));
			return;
		}
	}
	sd_notify(0, "WATCHDOG=1");
}

/* Runs as [server] user from here on: the ports are bound and the keys read. */
static int drop_privileges(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen, "[server] user: no user '%s'", user);
		return -1;
	}
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
		return 0;
	if (geteuid() != 0) {
		snprintf(err, errlen, "[server] user: only root can become '%s'", user);
		return -1;
	}
	if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		snprintf(err, errlen, "[server] user: cannot become '%s': %s", user, strerror(errno));
		return -1;
	}
	/* Dropped for good: root cannot be regained. */
	if (setuid(0) == 0) {
		snprintf(err, errlen, "[server] user: '%s' could become root again", user);
		return -1;
	}
	log_info("running as %s (uid %u, gid %u)", user, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	return 0;
}

static void on_ready_tick(uv_timer_t *t)
{
	/* Only wakes the loop so the readiness check below runs. */
}

/*
 * Gives the stores a moment (at most READY_WAIT_MS) to connect and match their issuers
 * before accepting requests, so the first clients are not told tryLater for nothing.
 * A store that is not ready by then does not hold revd back: its issuers get tryLater
 * until it is.
 */
#define READY_WAIT_MS 2000
static void wait_ready(struct serve_state *st)
{
	uv_timer_t *tick = &st->ready_tick;
	uv_timer_init(&st->loop, tick);
	uv_timer_start(tick, on_ready_tick, 20, 20);
	uint64_t deadline = uv_now(&st->loop) + READY_WAIT_MS;
	/* The CRLs too: loaded or built, so that the first requests for them find them. */
	while ((!responder_ready(st->responder) || !crl_publisher_settled(st->responder->crl)) &&
	       uv_now(&st->loop) < deadline)
		uv_run(&st->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)tick, NULL);
	if (!responder_ready(st->responder))
		log_warn("not ready: PostgreSQL unreachable or an issuer not matched; its requests get "
		         "tryLater until it is");
}

/* The configuration from the file, then the environment, then the flags; validated.
 * CLI_OK (and *help when the flags asked for it), or CLI_USAGE with the reason in err. */
static int read_config(int argc, char **argv, struct config *cfg, bool *help, char *err,
                       size_t errlen)
{
	*help = false;
	/* The file first, so flags override it whatever their order. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "--config") == 0 || strcmp(a, "-config") == 0) && i + 1 < argc &&
		    config_load_file(cfg, argv[i + 1], err, errlen) != 0)
			return CLI_USAGE;
	}
	/* Then the environment (containers), then the flags. */
	if (config_apply_env(cfg, environ, err, errlen) != 0)
		return CLI_USAGE;
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long_only(argc, argv, "h", serve_options, NULL)) != -1) {
		if (opt == 'h') {
			*help = true;
			return CLI_OK;
		}
		if (opt == '?' || opt == ':') {
			snprintf(err, errlen, "unknown or incomplete option '%s'\n%s", argv[optind - 1],
			         serve_usage);
			return CLI_USAGE;
		}
		if (apply_option(cfg, opt, optarg, err, errlen) != 0)
			return CLI_USAGE;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return CLI_USAGE;
	}
	if (cfg->n_listen == 0)
		config_set(cfg, "server", "listen", "127.0.0.1:8080", err, errlen);
	return config_validate(cfg, err, errlen) == 0 ? CLI_OK : CLI_USAGE;
}

int cli_serve(int argc, char **argv)
{
	struct config cfg;
	char err[4096];
	int status = CLI_FAIL;
	config_init(&cfg);
	bool help;
	int rc = read_config(argc, argv, &cfg, &help, err, sizeof(err));
	if (rc != CLI_OK || help) {
		if (help)
			fputs(serve_usage, stdout);
		else
			fprintf(stderr, "revd serve: %s\n", err);
		config_free(&cfg);
		return rc;
	}
	log_set_level((enum log_level)cfg.log_level);
	log_set_json(cfg.log_json);
	signal(SIGPIPE, SIG_IGN);
	if (getenv("UV_THREADPOOL_SIZE") == NULL) {
		/* Signing runs on libuv's pool: one thread per core, four at least. */
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		char v[24];
		snprintf(v, sizeof(v), "%ld", n > 4 ? n : 4);
		setenv("UV_THREADPOOL_SIZE", v, 1);
	}

	struct serve_state st = {0};
	st.argc = argc;
	st.argv = argv;
	st.responder = responder_new(&cfg, err, sizeof(err));
	if (st.responder == NULL) {
		fprintf(stderr, "revd serve: %s\n", err);
		goto out;
	}
	st.server = http_server_new(&cfg, st.responder, err, sizeof(err));
	if (st.server == NULL) {
		fprintf(stderr, "revd serve: %s\n", err);
		goto out;
	}
	if (cfg.n_api_listen > 0 && (st.api = api_new(&cfg, st.responder, err, sizeof(err))) == NULL) {
		fprintf(stderr, "revd serve: %s\n", err);
		goto out;
	}
	st.server->api = st.api;
	if (cfg.user != NULL && drop_privileges(cfg.user, err, sizeof(err)) != 0) {
		fprintf(stderr, "revd serve: %s\n", err);
		goto out;
	}
	uv_loop_init(&st.loop);
	uv_signal_init(&st.loop, &st.sigint);
	uv_signal_init(&st.loop, &st.sigterm);
	uv_signal_init(&st.loop, &st.sighup);
	st.sigint.data = st.sigterm.data = st.sighup.data = &st;
	uv_signal_start(&st.sigint, on_stop_signal, SIGINT);
	uv_signal_start(&st.sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&st.sighup, on_hup, SIGHUP);
	if (responder_watch(st.responder, &st.loop) != 0) {
		fprintf(stderr, "revd serve: cannot watch the status stores\n");
		goto out;
	}
	wait_ready(&st);
	if (st.api != NULL && api_start(st.api, &st.loop, err, sizeof(err)) != 0) {
		fprintf(stderr, "revd serve: %s\n", err);
		_exit(CLI_FAIL); /* threads may be running: no orderly teardown from here */
	}
	if (http_server_start(st.server, err, sizeof(err)) != 0) {
		fprintf(stderr, "revd serve: %s\n", err);
		_exit(CLI_FAIL); /* threads may be running: no orderly teardown from here */
	}
	log_info("revd %s ready", REVD_VERSION);
	sd_notifyf(0, "READY=1\nSTATUS=serving on %s", st.server->bound[0]);
	uint64_t wd_usec = 0;
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		st.watchdog_secs = (int64_t)(wd_usec / 1000000) > 2 ? (int64_t)(wd_usec / 1000000) : 2;
		uv_timer_init(&st.loop, &st.watchdog);
		st.watchdog.data = &st;
		uint64_t every = wd_usec / 2000 > 0 ? wd_usec / 2000 : 1;
		uv_timer_start(&st.watchdog, on_watchdog, every, every);
		st.watchdog_on = true;
	}
	uv_run(&st.loop, UV_RUN_DEFAULT);
	if (api_stuck(st.api)) {
		/* A revocation API writer is still inside a database that does not answer:
		 * what it uses cannot be freed, so no teardown. */
		log_info("stopped (leaving a writer stuck in the database)");
		fflush(stderr);
		_exit(CLI_OK);
	}
	uv_loop_close(&st.loop);
	log_info("stopped");
	status = CLI_OK;
out:
	api_free(st.api);
	http_server_free(st.server);
	responder_free(st.responder);
	config_free(&cfg);
	return status;
}
