/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest RAM file. Layout and rationale: docs/snapshot-format.md.
 * Save streams the RAM once per chunk: hash it, find the non-zero page
 * runs and pwrite each run whole, so the cost is hashing plus big writes.
 */
#include "snap_ram.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"

#define RAM_HDR 24
#define MAX_RUN (64ULL * 1024 * 1024) /* bytes per pwrite */

/* Host pointer of flat RAM offset @off and bytes contiguous from there. */
static uint8_t *ram_ptr(const struct guest_mem *m, uint64_t off,
			uint64_t *avail)
{
	for (unsigned i = 0; i < m->nr; i++) {
		const struct guest_mem_region *r = &m->r[i];
		uint8_t *base = r->hva ? r->hva
				       : (m->base ? m->base + r->offset : NULL);

		if (off < r->offset || off - r->offset >= r->size || !base)
			continue;
		*avail = r->size - (off - r->offset);
		return base + (off - r->offset);
	}
	return NULL;
}

/* Regions must tile [0, ram_size) exactly so the file has no gaps. */
static int check_layout(const struct guest_mem *m)
{
	uint64_t off = 0, avail;

	if (!m || !m->ram_size || m->ram_size % PAGE_SIZE)
		return -EINVAL;
	while (off < m->ram_size) {
		if (!ram_ptr(m, off, &avail) || avail % PAGE_SIZE)
			return -EINVAL;
		off += avail;
	}
	return off == m->ram_size ? 0 : -EINVAL;
}

static bool page_is_zero(const uint8_t *p)
{
	uint64_t first;

	/* Cheap reject on the first word, then glibc's vectorised memcmp. */
	memcpy(&first, p, sizeof(first));
	return !first && !memcmp(p, p + 8, PAGE_SIZE - 8);
}

static int pwrite_full(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, MIN(len, MAX_RUN), (off_t)off);

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

void snap_ram_info_free(struct snap_ram_info *info)
{
	if (!info)
		return;
	free(info->hashes);
	info->hashes = NULL;
	info->nchunks = 0;
}

static const char *last_component(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

int snap_ram_default_path(const char *state_path, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s.ram", state_path);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

int snap_ram_resolve(const char *state_path, const char *recorded, char *out,
		     size_t outlen)
{
	const char *slash = strrchr(state_path, '/');
	int n;

	if (!*recorded)
		return -EINVAL;
	if (recorded[0] == '/' || !slash)
		n = snprintf(out, outlen, "%s", recorded);
	else
		n = snprintf(out, outlen, "%.*s/%s", (int)(slash - state_path),
			     state_path, recorded);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

static void report(const struct snap_ram_progress *pg, uint64_t done,
		   uint64_t total)
{
	if (pg && pg->fn)
		pg->fn(pg->opaque, done, total);
}

static int save_to(const struct guest_mem *m, int fd, uint64_t *hashes,
		   const struct snap_ram_progress *pg)
{
	uint64_t nchunks =
		(m->ram_size + SNAP_RAM_CHUNK_SIZE - 1) / SNAP_RAM_CHUNK_SIZE;
	const uint8_t *run = NULL;
	uint64_t run_off = 0, run_len = 0;
	XXH3_state_t *hs = XXH3_createState();
	int rc = 0;

	if (!hs)
		return -ENOMEM;
	for (uint64_t c = 0; c < nchunks && !rc; c++) {
		uint64_t off = c * SNAP_RAM_CHUNK_SIZE;
		uint64_t end = MIN(off + SNAP_RAM_CHUNK_SIZE, m->ram_size);

		XXH3_64bits_reset(hs);
		while (off < end && !rc) {
			uint64_t avail, n;
			const uint8_t *p = ram_ptr(m, off, &avail);

			n = MIN(avail, end - off);
			XXH3_64bits_update(hs, p, n);
			for (uint64_t i = 0; i < n; i += PAGE_SIZE) {
				bool contig = run && run + run_len == p + i &&
					      run_off + run_len == off + i &&
					      run_len < MAX_RUN;

				if (page_is_zero(p + i)) {
					if (run)
						rc = pwrite_full(fd, run,
								 run_len,
								 run_off);
					run = NULL;
					if (rc)
						break;
					continue;
				}
				if (contig) {
					run_len += PAGE_SIZE;
					continue;
				}
				if (run)
					rc = pwrite_full(fd, run, run_len,
							 run_off);
				if (rc)
					break;
				run = p + i;
				run_off = off + i;
				run_len = PAGE_SIZE;
			}
			off += n;
		}
		hashes[c] = XXH3_64bits_digest(hs);
		report(pg, end, m->ram_size);
	}
	if (!rc && run)
		rc = pwrite_full(fd, run, run_len, run_off);
	XXH3_freeState(hs);
	return rc;
}

static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path,
				    slash == path ? 1 : (size_t)(slash - path))
			  : strdup(".");
	int fd, rc = 0;

	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	if (fsync(fd) && errno != EINVAL)
		rc = -errno;
	close(fd);
	return rc;
}

static int save_file(const struct guest_mem *m, const char *path,
		     unsigned flags, struct snap_ram_info *info,
		     const struct snap_ram_progress *pg)
{
	const char *base = last_component(path);
	uint64_t nchunks;
	uint64_t *hashes = NULL;
	char *tmp = NULL;
	int fd = -1, rc;

	if (!info || !*base || strlen(base) > SNAP_RAM_MAX_NAME ||
	    (flags & ~SNAP_RAM_FSYNC))
		return -EINVAL;
	rc = check_layout(m);
	if (rc)
		return rc;
	nchunks = (m->ram_size + SNAP_RAM_CHUNK_SIZE - 1) / SNAP_RAM_CHUNK_SIZE;
	if (nchunks > UINT32_MAX)
		return -EFBIG;
	hashes = calloc(nchunks, sizeof(*hashes));
	if (!hashes)
		return -ENOMEM;
	if (asprintf(&tmp, "%.*s.%s.tmp-XXXXXX", (int)(base - path), path,
		     base) < 0) {
		tmp = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	/* Full size first: pages we never write stay holes. */
	if (ftruncate(fd, (off_t)m->ram_size)) {
		rc = -errno;
		goto fail;
	}
	rc = save_to(m, fd, hashes, pg);
	if (rc)
		goto fail;
	if ((flags & SNAP_RAM_FSYNC) && fsync(fd)) {
		rc = -errno;
		goto fail;
	}
	if (close(fd)) {
		fd = -1;
		rc = -errno;
		goto fail;
	}
	fd = -1;
	/*
	 * A new inode, not an overwrite: a guest restored by mapping the old
	 * file keeps its private view of it while we replace it.
	 */
	if (rename(tmp, path)) {
		rc = -errno;
		goto fail;
	}
	free(tmp);
	if (flags & SNAP_RAM_FSYNC) {
		rc = fsync_parent(path);
		if (rc) {
			free(hashes);
			return rc;
		}
	}
	snap_ram_info_free(info);
	snprintf(info->file, sizeof(info->file), "%s", base);
	info->ram_size = m->ram_size;
	info->chunk_size = SNAP_RAM_CHUNK_SIZE;
	info->nchunks = (uint32_t)nchunks;
	info->hashes = hashes;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(hashes);
	return rc;
}

int snap_ram_save(const struct guest_mem *m, const char *path, unsigned flags,
		  struct snap_ram_info *info)
{
	return save_file(m, path, flags, info, NULL);
}

int snap_ram_save_beside_progress(const struct guest_mem *m,
				  const char *state_path, unsigned flags,
				  struct snap_ram_info *info,
				  const struct snap_ram_progress *pg)
{
	char path[4096];
	int rc = snap_ram_default_path(state_path, path, sizeof(path));

	return rc ? rc : save_file(m, path, flags, info, pg);
}

int snap_ram_save_beside(const struct guest_mem *m, const char *state_path,
			 unsigned flags, struct snap_ram_info *info)
{
	return snap_ram_save_beside_progress(m, state_path, flags, info, NULL);
}

static int open_sized(const char *path, uint64_t want, struct snap_err *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return snap_seterr(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		int rc = -errno;

		close(fd);
		return snap_seterr(err, rc, "%s: %s", path, strerror(-rc));
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != want) {
		close(fd);
		return snap_seterr(err, -EINVAL,
			      "%s: size %lld does not match the RAM size %llu",
			      path, (long long)st.st_size,
			      (unsigned long long)want);
	}
	return fd;
}

int snap_ram_map(const struct guest_mem *m, const char *path,
		 struct snap_err *err)
{
	void *p;
	int fd;

	if (!m || !m->base || check_layout(m))
		return snap_seterr(err, -EINVAL, "%s: guest RAM is not mapped",
			      path);
	fd = open_sized(path, m->ram_size, err);
	if (fd < 0)
		return fd;
	p = mmap(m->base, m->ram_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return snap_seterr(err, -errno, "%s: mmap: %s", path,
			      strerror(errno));
	return 0;
}

/* Zero [p, p+len) without touching pages that already read as zero. */
static void zero_range(uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += PAGE_SIZE)
		if (!page_is_zero(p + i))
			memset(p + i, 0, PAGE_SIZE);
}

int snap_ram_load_eager_progress(const struct guest_mem *m, const char *path,
				 struct snap_err *err,
				 const struct snap_ram_progress *pg)
{
	uint64_t off = 0;
	int fd, rc = 0;

	if (check_layout(m))
		return snap_seterr(err, -EINVAL, "%s: bad guest RAM layout", path);
	fd = open_sized(path, m->ram_size, err);
	if (fd < 0)
		return fd;
	while (off < m->ram_size && !rc) {
		uint64_t avail, data, hole, n;
		uint8_t *p = ram_ptr(m, off, &avail);
		off_t d = lseek(fd, (off_t)off, SEEK_DATA);

		/* Holes need no read: fresh anonymous RAM is zero already. */
		if (d < 0 && errno != ENXIO) {
			d = (off_t)off; /* no SEEK_DATA: read everything */
		} else if (d < 0) {
			d = (off_t)m->ram_size;
		}
		data = MIN((uint64_t)d, off + avail);
		zero_range(p, data - off);
		p += data - off;
		avail -= data - off;
		off = data;
		if (!avail)
			continue;
		{
			off_t h = lseek(fd, (off_t)off, SEEK_HOLE);

			hole = h < 0 ? m->ram_size : (uint64_t)h;
		}
		n = MIN(hole, off + avail) - off;
		while (n) {
			/* smaller reads when someone watches the progress */
			uint64_t max = pg ? 8 * MiB : MAX_RUN;
			ssize_t got = pread(fd, p, MIN(n, max), (off_t)off);

			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				rc = got < 0 ? -errno : -EIO;
				break;
			}
			p += got;
			off += (uint64_t)got;
			n -= (uint64_t)got;
			report(pg, off, m->ram_size);
		}
	}
	close(fd);
	if (rc)
		return snap_seterr(err, rc, "%s: read: %s", path, strerror(-rc));
	return 0;
}

int snap_ram_load_eager(const struct guest_mem *m, const char *path,
			struct snap_err *err)
{
	return snap_ram_load_eager_progress(m, path, err, NULL);
}

static int check_info(const struct snap_ram_info *info, const char *what,
		      struct snap_err *err)
{
	if (!info->ram_size || info->ram_size % PAGE_SIZE ||
	    info->chunk_size < PAGE_SIZE || info->chunk_size > GiB ||
	    (info->chunk_size & (info->chunk_size - 1)))
		return snap_seterr(err, -EPROTO,
			      "%s: bad RAM geometry (size %llu, chunk %llu)",
			      what, (unsigned long long)info->ram_size,
			      (unsigned long long)info->chunk_size);
	/* Written without an addition that could wrap. */
	if (info->ram_size / info->chunk_size +
		    !!(info->ram_size % info->chunk_size) !=
	    info->nchunks)
		return snap_seterr(err, -EPROTO,
			      "%s: %u chunk hashes for %llu bytes of RAM", what,
			      info->nchunks,
			      (unsigned long long)info->ram_size);
	return 0;
}

/*
 * pread, not mmap: reading a hole through a shared mapping makes tmpfs
 * allocate a page for it, so a sparse RAM file bigger than the free space
 * of its tmpfs would kill us with SIGBUS; pread returns zeros for holes.
 */
int snap_ram_verify(const char *path, const struct snap_ram_info *info,
		    struct snap_err *err)
{
	uint8_t *buf;
	int fd, rc;

	rc = check_info(info, path, err);
	if (rc)
		return rc;
	if (!info->hashes)
		return snap_seterr(err, -EINVAL, "%s: no chunk hashes", path);
	fd = open_sized(path, info->ram_size, err);
	if (fd < 0)
		return fd;
	buf = malloc(info->chunk_size);
	if (!buf) {
		close(fd);
		return snap_seterr(err, -ENOMEM, "%s: out of memory", path);
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (uint32_t c = 0; c < info->nchunks && !rc; c++) {
		uint64_t off = c * info->chunk_size;
		uint64_t n = MIN(info->chunk_size, info->ram_size - off);
		uint64_t got = 0;

		while (got < n) {
			ssize_t k = pread(fd, buf + got, n - got,
					  (off_t)(off + got));

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				rc = snap_seterr(err, k < 0 ? -errno : -EIO,
					    "%s: read at 0x%llx: %s", path,
					    (unsigned long long)(off + got),
					    k < 0 ? strerror(errno)
						  : "unexpected end of file");
				break;
			}
			got += (uint64_t)k;
		}
		if (!rc && XXH3_64bits(buf, n) != info->hashes[c])
			rc = snap_seterr(err, -EBADMSG,
				    "%s: chunk %u (offset 0x%llx) does not "
				    "match its hash",
				    path, c, (unsigned long long)off);
	}
	free(buf);
	close(fd);
	return rc;
}

int snap_ram_write_section(struct snap_writer *w,
			   const struct snap_ram_info *info)
{
	size_t nlen, len;
	uint8_t *buf;
	int rc;

	if (!w || !info || check_info(info, "ram", NULL) || !info->hashes)
		return -EINVAL;
	nlen = strnlen(info->file, sizeof(info->file));
	if (!nlen || nlen > SNAP_RAM_MAX_NAME)
		return -EINVAL;
	len = RAM_HDR + nlen + (size_t)info->nchunks * 8;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	put_le64(buf, info->ram_size);
	put_le64(buf + 8, info->chunk_size);
	put_le32(buf + 16, info->nchunks);
	put_le16(buf + 20, (uint16_t)nlen);
	put_le16(buf + 22, 0);
	memcpy(buf + RAM_HDR, info->file, nlen);
	for (uint32_t i = 0; i < info->nchunks; i++)
		put_le64(buf + RAM_HDR + nlen + 8 * (size_t)i, info->hashes[i]);
	rc = snap_write_blob(w, SNAP_RAM_SECTION, 0, SNAP_RAM_VERSION, buf,
			     len);
	free(buf);
	return rc;
}

int snap_ram_decode(const void *data, size_t len, struct snap_ram_info *info,
		    const char *what, struct snap_err *err)
{
	const uint8_t *b = data;
	size_t nlen;
	int rc;

	memset(info, 0, sizeof(*info));
	if (len < RAM_HDR)
		return snap_seterr(err, -EPROTO, "%s: 'ram' section too short",
			      what);
	info->ram_size = get_le64(b);
	info->chunk_size = get_le64(b + 8);
	info->nchunks = get_le32(b + 16);
	nlen = get_le16(b + 20);
	if (get_le16(b + 22) || !nlen || nlen > SNAP_RAM_MAX_NAME ||
	    len != RAM_HDR + nlen + (uint64_t)info->nchunks * 8 ||
	    memchr(b + RAM_HDR, 0, nlen))
		return snap_seterr(err, -EPROTO,
			      "%s: 'ram' section: bad layout (%zu bytes)", what,
			      len);
	rc = check_info(info, what, err);
	if (rc)
		return rc;
	memcpy(info->file, b + RAM_HDR, nlen);
	info->file[nlen] = 0;
	info->hashes = malloc((size_t)info->nchunks * 8);
	if (!info->hashes)
		return snap_seterr(err, -ENOMEM, "%s: out of memory", what);
	for (uint32_t i = 0; i < info->nchunks; i++)
		info->hashes[i] = get_le64(b + RAM_HDR + nlen + 8 * (size_t)i);
	return 0;
}

int snap_ram_read_section(struct snap_reader *r, struct snap_ram_info *info,
			  struct snap_err *err)
{
	const void *data;
	size_t len;
	uint16_t ver;
	int rc;

	memset(info, 0, sizeof(*info));
	rc = snap_read_blob(r, SNAP_RAM_SECTION, 0, &data, &len, &ver, err);
	if (rc)
		return rc;
	if (ver != SNAP_RAM_VERSION)
		return snap_seterr(err, -EPROTO,
			      "%s: section 'ram' #0: version %u is not %u",
			      snap_reader_path(r), ver, SNAP_RAM_VERSION);
	return snap_ram_decode(data, len, info, snap_reader_path(r), err);
}
