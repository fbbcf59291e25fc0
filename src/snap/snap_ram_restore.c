/* SPDX-License-Identifier: BSD-2-Clause */
/* Guest RAM from a RAM file, mapped or eager: see snap_ram_restore.h. */
#include "snap_ram_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "snap_ram_pages.h"

#define MAX_RUN (64ULL * 1024 * 1024) /* bytes per pread */

int snap_ram_map(const struct guest_mem *m, const char *path,
		 const struct snap_ram_info *info, int *keep_fd,
		 struct err *err)
{
	void *p;
	int fd, rc;

	if (keep_fd)
		*keep_fd = -1;
	if (!m || !m->base || snap_ram_check_layout(m))
		return err_set(err, -EINVAL, "%s: guest RAM is not mapped",
			       path);
	fd = snap_ram_open(path, m->ram_size, info, err);
	if (fd < 0)
		return fd;
	p = mmap(m->base, m->ram_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return err_set(err, rc, "%s: mmap: %s", path, strerror(-rc));
	}
	rc = guest_mem_dontdump(m, err);
	if (rc) {
		close(fd);
		return rc;
	}
	if (keep_fd)
		*keep_fd = fd;
	else
		close(fd);
	return 0;
}

/* Zero [p, p+len) without touching pages that already read as zero. */
static void zero_range(uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += PAGE_SIZE)
		if (!snap_ram_page_is_zero(p + i))
			memset(p + i, 0, PAGE_SIZE);
}

/* Read [off, off + n) of the file into @p, reporting as it goes. */
static int read_run(int fd, uint8_t *p, uint64_t off, uint64_t n,
		    uint64_t ram_size, const struct snap_ram_progress *pg)
{
	/* smaller reads when someone watches the progress */
	uint64_t max = pg ? 8 * MiB : MAX_RUN;

	while (n) {
		ssize_t got = pread(fd, p, MIN(n, max), (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		p += got;
		off += (uint64_t)got;
		n -= (uint64_t)got;
		snap_ram_report(pg, off, ram_size);
	}
	return 0;
}

int snap_ram_load_eager(const struct guest_mem *m, const char *path,
			const struct snap_ram_info *info,
			const struct snap_ram_progress *pg, struct err *err)
{
	uint64_t off = 0;
	int fd, rc = 0;

	if (snap_ram_check_layout(m))
		return err_set(err, -EINVAL, "%s: bad guest RAM layout", path);
	fd = snap_ram_open(path, m->ram_size, info, err);
	if (fd < 0)
		return fd;
	while (off < m->ram_size && !rc) {
		uint64_t avail, data, hole;
		uint8_t *p = snap_ram_ptr(m, off, &avail);
		off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;

		/* Holes need no read: fresh anonymous RAM is zero already. */
		if (d < 0 && errno != ENXIO)
			d = (off_t)off; /* no SEEK_DATA: read everything */
		else if (d < 0)
			d = (off_t)m->ram_size;
		data = MIN((uint64_t)d, off + avail);
		zero_range(p, data - off);
		p += data - off;
		avail -= data - off;
		off = data;
		if (!avail)
			continue;
		h = lseek(fd, (off_t)off, SEEK_HOLE);
		hole = h < 0 ? m->ram_size : (uint64_t)h;
		hole = MIN(hole, off + avail);
		rc = read_run(fd, p, off, hole - off, m->ram_size, pg);
		off = hole;
	}
	close(fd);
	if (rc)
		return err_set(err, rc, "%s: read: %s", path, strerror(-rc));
	return 0;
}
