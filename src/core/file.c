#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read(const char *path, size_t max, uint8_t **data, size_t *len, char *err,
              size_t errlen)
{
	*data = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	int rc = -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		snprintf(err, errlen, "%.300s: not a regular file of at most %zu bytes", path, max);
		goto out;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size > 0 ? size : 1);
	if (buf == NULL) {
		snprintf(err, errlen, "%.300s: out of memory", path);
		goto out;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%.300s: %s", path,
			         n < 0 ? strerror(errno) : "shorter than its size");
			free(buf);
			goto out;
		}
		got += (size_t)n;
	}
	*data = buf;
	*len = got;
	rc = 0;
out:
	close(fd);
	return rc;
}

int file_write_atomic(const char *path, const void *data, size_t len, char *err,
                      size_t errlen)
{
	char tmp[4200];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err, errlen, "%.300s: path too long", path);
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "%.300s: %s", tmp, strerror(errno));
		return -1;
	}
	const uint8_t *p = data;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	bool ok = done == len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}
