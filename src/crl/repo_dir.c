/*
 * CRLs kept in a directory, for issuers read from an index file: STEM.crl and
 * STEM-delta.crl as published, STEM.head with the numbers ("FULL DELTA LAST"), and
 * STEM.lock, flock'd by the generator. Files are replaced by rename after fsync, so a
 * reader (or a crash) sees the old CRL or the new one, never a piece.
 */
#include "crl/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "crl/crl.h"

struct dir_repo {
	struct crl_repo base;
	char *dir;
	size_t max_bytes; /* a larger CRL file is refused, not read */
	int lock_fd; /* the series this process generates now; -1: none */
};

void crl_blob_clear(struct crl_blob *b)
{
	free(b->der);
	memset(b, 0, sizeof(*b));
}

static void path_of(const struct dir_repo *r, const char *stem, const char *suffix, char *out,
                    size_t outlen)
{
	snprintf(out, outlen, "%s/%s%s", r->dir, stem, suffix);
}

/* Reads a whole file; a missing one leaves b empty and succeeds. */
static int read_file(const struct dir_repo *r, const char *path, struct crl_blob *b, char *err,
                     size_t errlen)
{
	return file_read(path, r->max_bytes, &b->der, &b->len, err, errlen) < 0 ? -1 : 0;
}

static int read_head(const struct dir_repo *r, const char *stem, uint64_t v[3], char *err,
                     size_t errlen)
{
	char path[4096];
	path_of(r, stem, ".head", path, sizeof(path));
	v[0] = v[1] = v[2] = 0;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	int n = fscanf(f, "%" SCNu64 " %" SCNu64 " %" SCNu64, &v[0], &v[1], &v[2]);
	fclose(f);
	if (n != 3) {
		snprintf(err, errlen, "%s: expected three CRL numbers", path);
		return -1;
	}
	return 0;
}

static uint64_t number_of(const struct crl_blob *b)
{
	struct crl_info info;
	return b->der != NULL && crl_parse(b->der, b->len, &info) && info.has_number ? info.number
	                                                                            : 0;
}

static int dir_load(struct crl_repo *base, const struct crl_series_id *s, uint64_t have_full,
                    uint64_t have_delta, struct crl_blob *full, struct crl_blob *delta,
                    uint64_t *last, char *err, size_t errlen)
{
	(void)have_full; /* local files: read whole every time */
	(void)have_delta;
	struct dir_repo *r = (struct dir_repo *)base;
	char path[4096];
	uint64_t head[3];
	if (read_head(r, s->stem, head, err, errlen) != 0)
		return -1;
	path_of(r, s->stem, ".crl", path, sizeof(path));
	if (read_file(r, path, full, err, errlen) != 0)
		return -1;
	path_of(r, s->stem, "-delta.crl", path, sizeof(path));
	if (read_file(r, path, delta, err, errlen) != 0) {
		crl_blob_clear(full);
		return -1;
	}
	full->number = number_of(full);
	delta->number = number_of(delta);
	if ((full->der != NULL && full->number == 0) || (delta->der != NULL && delta->number == 0)) {
		snprintf(err, errlen, "%s/%s: a CRL file that is not a numbered CRL", r->dir, s->stem);
		crl_blob_clear(full);
		crl_blob_clear(delta);
		return -1;
	}
	/* Numbers only grow: the highest of what the files and the head say. */
	uint64_t m = head[2];
	if (full->number > m)
		m = full->number;
	if (delta->number > m)
		m = delta->number;
	*last = m;
	return 0;
}

static int dir_head(struct crl_repo *base, const struct crl_series_id *s, uint64_t *full,
                    uint64_t *delta, char *err, size_t errlen)
{
	struct dir_repo *r = (struct dir_repo *)base;
	uint64_t head[3];
	if (read_head(r, s->stem, head, err, errlen) != 0)
		return -1;
	*full = head[0];
	*delta = head[1];
	return 0;
}

static int dir_lock(struct crl_repo *base, const struct crl_series_id *s, char *err,
                    size_t errlen)
{
	struct dir_repo *r = (struct dir_repo *)base;
	char path[4096];
	path_of(r, s->stem, ".lock", path, sizeof(path));
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -1;
	}
	r->lock_fd = fd;
	return 1;
}

static int dir_publish(struct crl_repo *base, const struct crl_series_id *s, uint64_t number,
                       uint64_t delta_base, int64_t this_update, int64_t next_update,
                       const uint8_t *der, size_t len, char *err, size_t errlen)
{
	(void)this_update;
	(void)next_update;
	struct dir_repo *r = (struct dir_repo *)base;
	char path[4096];
	uint64_t head[3];
	if (r->lock_fd < 0 || read_head(r, s->stem, head, err, errlen) != 0)
		return -1;
	if (number <= head[2]) {
		snprintf(err, errlen, "CRL number %llu is not above %llu", (unsigned long long)number,
		         (unsigned long long)head[2]);
		return -1;
	}
	/* The head goes first: a crash after it leaves a gap in the numbers, never a repeat. */
	head[2] = number;
	char line[80];
	int n = snprintf(line, sizeof(line), "%llu %llu %llu\n", (unsigned long long)head[0],
	                 (unsigned long long)head[1], (unsigned long long)head[2]);
	path_of(r, s->stem, ".head", path, sizeof(path));
	if (file_write_atomic(path, line, (size_t)n, err, errlen) != 0)
		return -1;
	path_of(r, s->stem, delta_base ? "-delta.crl" : ".crl", path, sizeof(path));
	if (file_write_atomic(path, der, len, err, errlen) != 0)
		return -1;
	head[delta_base ? 1 : 0] = number;
	n = snprintf(line, sizeof(line), "%llu %llu %llu\n", (unsigned long long)head[0],
	             (unsigned long long)head[1], (unsigned long long)head[2]);
	path_of(r, s->stem, ".head", path, sizeof(path));
	return file_write_atomic(path, line, (size_t)n, err, errlen);
}

static int dir_unlock(struct crl_repo *base, const struct crl_series_id *s, bool commit,
                      char *err, size_t errlen)
{
	(void)s;
	(void)err;
	(void)errlen;
	/* Each file was complete and synced when renamed in: nothing to undo or finish. */
	struct dir_repo *r = (struct dir_repo *)base;
	if (r->lock_fd >= 0) {
		flock(r->lock_fd, LOCK_UN);
		close(r->lock_fd);
		r->lock_fd = -1;
	}
	return commit ? 0 : -1;
}

static void dir_free(struct crl_repo *base)
{
	struct dir_repo *r = (struct dir_repo *)base;
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	free(r->dir);
	free(r);
}

static const struct crl_repo_ops dir_ops = {
	.kind = "directory",
	.load = dir_load,
	.head = dir_head,
	.lock = dir_lock,
	.publish = dir_publish,
	.unlock = dir_unlock,
	.free = dir_free,
};

struct crl_repo *crl_repo_dir_new(const char *dir, size_t max_bytes, char *err, size_t errlen)
{
	if (dir == NULL) {
		snprintf(err, errlen, "no [crl] dir");
		return NULL;
	}
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	struct dir_repo *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->dir = strdup(dir)) == NULL) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base.ops = &dir_ops;
	r->max_bytes = max_bytes;
	r->lock_fd = -1;
	return &r->base;
}
