/* revd presign: watch and steer the pre-signers of every instance sharing a Redis. */
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/redis.h"
#include "cli/cli.h"

static const char presign_usage[] =
	"usage: revd presign [--redis ADDRESS] [--prefix PREFIX] COMMAND\n"
	"\n"
	"Commands:\n"
	"  status        each instance's pre-signer: rounds, answers checked and signed,\n"
	"                signatures per second, queue depth, oldest answer's age,\n"
	"                disagreements with the store, errors, paused\n"
	"  pause         stop pre-signing on every instance (requests are still answered)\n"
	"  resume        start again\n"
	"  rate N        at most N signatures per second per instance (0: no limit)\n"
	"\n"
	"  --redis ADDRESS   HOST:PORT, [V6]:PORT or unix:/PATH (default: $REVD_REDIS or\n"
	"                    127.0.0.1:6379)\n"
	"  --prefix PREFIX   the key prefix of [redis] prefix (default: revd:)\n"
	"  -h, --help        this text\n"
	"\n"
	"Exits 0 on success, 1 when Redis cannot be reached, 2 on a usage error.\n";

enum { OPT_REDIS = 1000, OPT_PREFIX };

static const struct option presign_options[] = {
	{"redis", required_argument, NULL, OPT_REDIS},
	{"prefix", required_argument, NULL, OPT_PREFIX},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static redisReply *run(redisContext *c, int argc, const char **argv)
{
	size_t lens[8];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redisReply *r = redisCommandArgv(c, argc, argv, lens);
	if (r == NULL) {
		fprintf(stderr, "revd presign: redis: %s\n", c->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "revd presign: redis: %s\n", r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static int show_status(redisContext *c, const char *prefix)
{
	char pattern[160];
	snprintf(pattern, sizeof(pattern), "%spresign:stats:*", prefix);
	char key[160];
	snprintf(key, sizeof(key), "%spresign:paused", prefix);
	redisReply *paused = run(c, 2, (const char *[]){"GET", key});
	if (paused == NULL)
		return CLI_FAIL;
	printf("pre-signing: %s\n",
	       paused->type == REDIS_REPLY_STRING && strcmp(paused->str, "0") != 0 ? "paused"
	                                                                          : "running");
	freeReplyObject(paused);
	snprintf(key, sizeof(key), "%spresign:rate", prefix);
	redisReply *rate = run(c, 2, (const char *[]){"GET", key});
	if (rate == NULL)
		return CLI_FAIL;
	if (rate->type == REDIS_REPLY_STRING)
		printf("rate limit: %s signatures/s per instance (set by revd presign rate)\n", rate->str);
	freeReplyObject(rate);
	/* Stats keys are few (one per live instance): a SCAN to the end is cheap. */
	int instances = 0;
	char cursor[32] = "0";
	do {
		redisReply *r = run(c, 6, (const char *[]){"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
		if (r == NULL)
			return CLI_FAIL;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			freeReplyObject(r);
			fprintf(stderr, "revd presign: unexpected SCAN reply\n");
			return CLI_FAIL;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		redisReply *keys = r->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			const char *k = keys->element[i]->str;
			redisReply *h = run(c, 2, (const char *[]){"HGETALL", k});
			if (h == NULL)
				continue;
			printf("instance %s\n", k + strlen(prefix) + strlen("presign:stats:"));
			for (size_t f = 0; f + 1 < h->elements; f += 2)
				printf("  %-20s %s\n", h->element[f]->str, h->element[f + 1]->str);
			freeReplyObject(h);
			instances++;
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	if (instances == 0)
		printf("no instance has reported in the last minute\n");
	return CLI_OK;
}

int cli_presign(int argc, char **argv)
{
	const char *address = getenv("REVD_REDIS");
	const char *prefix = "revd:";
	if (address == NULL)
		address = "127.0.0.1:6379";
	optind = 1;
	opterr = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "+h", presign_options, NULL)) != -1) {
		switch (opt) {
		case OPT_REDIS:
			address = optarg;
			break;
		case OPT_PREFIX:
			prefix = optarg;
			break;
		case 'h':
			fputs(presign_usage, stdout);
			return CLI_OK;
		default:
			fprintf(stderr, "revd presign: unknown or incomplete option '%s'\n%s",
			        argv[optind - 1], presign_usage);
			return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "revd presign: a command is needed\n%s", presign_usage);
		return CLI_USAGE;
	}
	const char *cmd = argv[optind];
	const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	int want_args = strcmp(cmd, "rate") == 0 ? 1 : 0;
	if (argc - optind - 1 != want_args ||
	    (strcmp(cmd, "status") && strcmp(cmd, "pause") && strcmp(cmd, "resume") &&
	     strcmp(cmd, "rate"))) {
		fprintf(stderr, "revd presign: expected status, pause, resume or rate N\n");
		return CLI_USAGE;
	}
	char *end = NULL;
	if (arg != NULL && (strtoull(arg, &end, 10), *end != 0 || arg[0] < '0' || arg[0] > '9')) {
		fprintf(stderr, "revd presign: rate: expected a number of signatures per second, got '%s'\n",
		        arg);
		return CLI_USAGE;
	}
	if (strlen(prefix) > 64) {
		fprintf(stderr, "revd presign: --prefix: at most 64 characters\n");
		return CLI_USAGE;
	}
	char host[256];
	int port;
	bool is_unix;
	if (!rds_parse_address(address, host, sizeof(host), &port, &is_unix)) {
		fprintf(stderr, "revd presign: --redis: expected HOST:PORT, [V6]:PORT or unix:/PATH, got '%s'\n",
		        address);
		return CLI_USAGE;
	}
	struct timeval tv = {.tv_sec = 3, .tv_usec = 0};
	redisContext *c = is_unix ? redisConnectUnixWithTimeout(host, tv)
	                          : redisConnectWithTimeout(host, port, tv);
	if (c == NULL || c->err) {
		fprintf(stderr, "revd presign: cannot connect to redis at %s: %s\n", address,
		        c ? c->errstr : "out of memory");
		redisFree(c);
		return CLI_FAIL;
	}
	redisSetTimeout(c, tv);
	int status = CLI_OK;
	char key[160];
	if (strcmp(cmd, "status") == 0) {
		status = show_status(c, prefix);
	} else if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0) {
		snprintf(key, sizeof(key), "%spresign:paused", prefix);
		bool pause = strcmp(cmd, "pause") == 0;
		redisReply *r = pause ? run(c, 3, (const char *[]){"SET", key, "1"})
		                      : run(c, 2, (const char *[]){"DEL", key});
		if (r == NULL)
			status = CLI_FAIL;
		else
			printf("pre-signing %s on every instance (within 2 s)\n", pause ? "paused" : "resumed");
		freeReplyObject(r);
	} else {
		snprintf(key, sizeof(key), "%spresign:rate", prefix);
		bool none = strtoull(arg, NULL, 10) == 0;
		redisReply *r = none ? run(c, 2, (const char *[]){"DEL", key})
		                     : run(c, 3, (const char *[]){"SET", key, arg});
		if (r == NULL)
			status = CLI_FAIL;
		else if (none)
			printf("rate limit removed (each instance's [presign] rate applies)\n");
		else
			printf("rate limit %s signatures/s per instance (within 2 s)\n", arg);
		freeReplyObject(r);
	}
	redisFree(c);
	return status;
}
