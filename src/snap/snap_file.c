/* SPDX-License-Identifier: BSD-2-Clause */
/* Write-to-temporary, sync, rename, sync the directory: see snap_file.h. */
#include "snap_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "snap_stale.h"

#define MAX_IO (64ULL * 1024 * 1024) /* bytes per pwrite */

/* Temporaries of @base that a killed save left in @dir. */
static void sweep_tmp(const char *dir, const char *base)
{
	char prefix[4096];

	if ((size_t)snprintf(prefix, sizeof(prefix), ".%s.tmp-", base) <
	    sizeof(prefix))
		snap_stale_sweep(dir, prefix, 6); /* mkostemp's XXXXXX */
}

int snap_tmpfile_open(struct snap_tmpfile *t, const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;

	memset(t, 0, sizeof(*t));
	t->fd = t->hold = -1;
	if (!*base)
		return -EISDIR;
	t->path = strdup(path);
	if (!slash)
		t->dir = strdup(".");
	else
		t->dir = strndup(path,
				 slash == path ? 1 : (size_t)(slash - path));
	if (!t->path || !t->dir ||
	    asprintf(&t->tmp, "%s/.%s.tmp-XXXXXX", t->dir, base) < 0) {
		t->tmp = NULL;
		snap_tmpfile_discard(t);
		return -ENOMEM;
	}
	sweep_tmp(t->dir, base);
	t->fd = mkostemp(t->tmp, O_CLOEXEC);
	if (t->fd < 0) {
		int rc = -errno;

		free(t->tmp);
		t->tmp = NULL;
		snap_tmpfile_discard(t);
		return rc;
	}
	t->hold = snap_stale_hold(t->fd);
	return 0;
}

int snap_tmpfile_seal(struct snap_tmpfile *t, bool sync, struct err *err)
{
	int rc;

	if (t->fd < 0 || !t->tmp)
		return err_set(err, -EINVAL, "%s: not open", t->path);
	if (sync && fsync(t->fd))
		return err_set(err, -errno, "%s: fsync: %s", t->tmp,
			       strerror(errno));
	rc = close(t->fd) ? -errno : 0;
	t->fd = -1;
	if (rc)
		return err_set(err, rc, "%s: close: %s", t->tmp, strerror(-rc));
	return 0;
}

int snap_tmpfile_publish(struct snap_tmpfile *t, bool sync_dir, struct err *err)
{
	int rc;

	if (t->fd >= 0 || !t->tmp)
		return err_set(err, -EINVAL, "%s: not sealed", t->path);
	/*
	 * A new inode, not an overwrite: a guest restored by mapping the old
	 * RAM file keeps its private view of it while we replace it.
	 */
	if (rename(t->tmp, t->path))
		return err_set(err, -errno, "%s: rename: %s", t->path,
			       strerror(errno));
	free(t->tmp);
	t->tmp = NULL; /* it is the real file now: discard must not unlink */
	if (t->hold >= 0)
		close(t->hold);
	t->hold = -1;
	rc = sync_dir ? snap_fsync_dir(t->dir) : 0;
	if (rc)
		return err_set(err, rc, "%s: fsync of its directory: %s",
			       t->path, strerror(-rc));
	return 0;
}

int snap_tmpfile_commit(struct snap_tmpfile *t, bool sync, struct err *err)
{
	int rc = snap_tmpfile_seal(t, sync, err);

	return rc ? rc : snap_tmpfile_publish(t, sync, err);
}

void snap_tmpfile_discard(struct snap_tmpfile *t)
{
	if (t->fd >= 0)
		close(t->fd);
	if (t->tmp)
		unlink(t->tmp);
	if (t->hold >= 0)
		close(t->hold); /* after the unlink: never swept while ours */
	free(t->tmp);
	free(t->path);
	free(t->dir);
	memset(t, 0, sizeof(*t));
	t->fd = t->hold = -1;
}

int snap_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	/* Some filesystems cannot fsync directories; nothing to do there. */
	if (fsync(fd) && errno != EINVAL)
		rc = -errno;
	close(fd);
	return rc;
}

int snap_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int snap_pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, MIN(len, MAX_IO), (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int snap_pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}
