/* SPDX-License-Identifier: BSD-2-Clause */
/* Leftovers of killed saves: see snap_stale.h. */
#include "snap_stale.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* @name is @prefix plus @n letters and digits? */
static bool is_ours(const char *name, const char *prefix, size_t n)
{
	size_t pl = strlen(prefix);

	if (strncmp(name, prefix, pl) || strlen(name + pl) != n)
		return false;
	for (const char *p = name + pl; *p; p++)
		if (!isalnum((unsigned char)*p))
			return false;
	return true;
}

/* Unlink @name if it is a plain file of ours whose lock nobody holds. */
static bool sweep_one(int dfd, const char *name)
{
	struct stat st;
	bool gone = false;
	int fd = openat(dfd, name,
			O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
				O_CLOEXEC);

	if (fd < 0)
		return false;
	/* The lock is taken and kept: no save can start on it meanwhile. */
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !flock(fd, LOCK_EX | LOCK_NB))
		gone = !unlinkat(dfd, name, 0);
	close(fd);
	return gone;
}

unsigned snap_stale_sweep(const char *dir, const char *prefix,
			  size_t suffix_len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (is_ours(de->d_name, prefix, suffix_len) &&
		    sweep_one(dirfd(d), de->d_name))
			n++;
	closedir(d);
	return n;
}

int snap_stale_hold(int fd)
{
	int h = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (h >= 0 && flock(h, LOCK_EX | LOCK_NB)) {
		close(h);
		h = -1;
	}
	return h;
}
