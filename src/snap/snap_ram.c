/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The RAM file format (docs/snapshot-format.md): the state file's "ram"
 * section, the RAM file's name beside the state file and its trailer,
 * opening a RAM file of a pair and verifying it against its hashes.
 */
#include "snap_ram.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap_file.h"

#define RAM_HDR 24

/*
 * The pair trailer (format 1.1): SNAP_RAM_TRAILER bytes right after the
 * RAM, so the RAM itself still starts at offset 0 and maps as it is.
 */
#define TRL_MAGIC   "KHYVSRAM"
#define TRL_VERSION 1
#define TRL_SUM	    (SNAP_RAM_TRAILER - 8) /* checksum covers [0, this) */

void snap_ram_info_free(struct snap_ram_info *info)
{
	if (!info)
		return;
	free(info->hashes);
	info->hashes = NULL;
	info->nchunks = 0;
}

int snap_ram_default_path(const char *state_path, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s.ram", state_path);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

bool snap_ram_name_ok(const char *name)
{
	return *name && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

int snap_ram_resolve(const char *state_path, const char *recorded, char *out,
		     size_t outlen)
{
	const char *slash = strrchr(state_path, '/');
	int n;

	/* A bare name beside the state file, never a path elsewhere. */
	if (!snap_ram_name_ok(recorded))
		return -EINVAL;
	if (!slash)
		n = snprintf(out, outlen, "%s", recorded);
	else
		n = snprintf(out, outlen, "%.*s/%s", (int)(slash - state_path),
			     state_path, recorded);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

void snap_ram_trailer_build(uint8_t t[SNAP_RAM_TRAILER], const uint8_t *id,
			    uint64_t ram_size)
{
	memset(t, 0, SNAP_RAM_TRAILER);
	memcpy(t, TRL_MAGIC, 8);
	put_le16(t + 8, TRL_VERSION);
	put_le32(t + 12, SNAP_RAM_TRAILER);
	memcpy(t + 16, id, SNAP_SAVE_ID_LEN);
	put_le64(t + 32, ram_size);
	put_le64(t + TRL_SUM, XXH3_64bits(t, TRL_SUM));
}

/* The trailer at @want in @fd must carry save id @id. */
static int trailer_check(int fd, const char *path, uint64_t want,
			 const uint8_t *id, struct err *err)
{
	char have[SNAP_SAVE_ID_STR], need[SNAP_SAVE_ID_STR];
	uint8_t t[SNAP_RAM_TRAILER];
	int rc = snap_pread_full(fd, t, sizeof(t), (off_t)want);

	if (rc)
		return err_set(err, rc, "%s: read: %s", path, strerror(-rc));
	if (memcmp(t, TRL_MAGIC, 8) || get_le16(t + 8) != TRL_VERSION ||
	    get_le32(t + 12) != SNAP_RAM_TRAILER || get_le64(t + 32) != want ||
	    XXH3_64bits(t, TRL_SUM) != get_le64(t + TRL_SUM))
		return err_set(err, -EINVAL,
			       "%s: damaged RAM file trailer (no valid "
			       "save id)",
			       path);
	if (memcmp(t + 16, id, SNAP_SAVE_ID_LEN)) {
		snap_save_id_str(t + 16, have);
		snap_save_id_str(id, need);
		return err_set(err, -EINVAL,
			       "%s: written by save %s, the state file is "
			       "from save %s: the two files come from "
			       "different saves",
			       path, have, need);
	}
	return 0;
}

/* Cheap: one fstat and one 64-byte read, whatever the RAM size. */
int snap_ram_open(const char *path, uint64_t want,
		  const struct snap_ram_info *info, struct err *err)
{
	const uint8_t *id = info && info->has_id ? info->save_id : NULL;
	uint64_t expect = want + (id ? SNAP_RAM_TRAILER : 0);
	char need[SNAP_SAVE_ID_STR];
	struct stat st;
	int fd, rc;

	fd = snap_open_regular(path, O_RDONLY, &st, err);
	if (fd < 0)
		return fd;
	if (id && (uint64_t)st.st_size == want) {
		snap_save_id_str(id, need);
		rc = err_set(err, -EINVAL,
			     "%s: has no save id, the state file wants "
			     "save %s: not the RAM file of this snapshot "
			     "(the two files come from different saves)",
			     path, need);
		goto fail;
	}
	if ((uint64_t)st.st_size != expect) {
		rc = err_set(err, -EINVAL,
			     "%s: size %lld does not match the RAM size %llu%s",
			     path, (long long)st.st_size,
			     (unsigned long long)want,
			     id ? " (plus its 64-byte trailer)" : "");
		goto fail;
	}
	rc = id ? trailer_check(fd, path, want, id, err) : 0;
	if (!rc)
		return fd;
fail:
	close(fd);
	return rc;
}

int snap_ram_check_file(const char *path, const struct snap_ram_info *info,
			struct err *err)
{
	int fd = snap_ram_open(path, info->ram_size, info, err);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static int check_info(const struct snap_ram_info *info, const char *what,
		      struct err *err)
{
	if (!info->ram_size || info->ram_size % PAGE_SIZE ||
	    info->chunk_size < PAGE_SIZE || info->chunk_size > GiB ||
	    (info->chunk_size & (info->chunk_size - 1)))
		return err_set(err, -EPROTO,
			       "%s: bad RAM geometry (size %llu, chunk %llu)",
			       what, (unsigned long long)info->ram_size,
			       (unsigned long long)info->chunk_size);
	/* Written without an addition that could wrap. */
	if (info->ram_size / info->chunk_size +
		    !!(info->ram_size % info->chunk_size) !=
	    info->nchunks)
		return err_set(err, -EPROTO,
			       "%s: %u chunk hashes for %llu bytes of RAM",
			       what, info->nchunks,
			       (unsigned long long)info->ram_size);
	return 0;
}

/*
 * pread, not mmap: reading a hole through a shared mapping makes tmpfs
 * allocate a page for it, so a sparse RAM file bigger than the free space
 * of its tmpfs would kill us with SIGBUS; pread returns zeros for holes.
 */
int snap_ram_verify(const char *path, const struct snap_ram_info *info,
		    struct err *err)
{
	uint8_t *buf;
	int fd, rc;

	rc = check_info(info, path, err);
	if (rc)
		return rc;
	if (!info->hashes)
		return err_set(err, -EINVAL, "%s: no chunk hashes", path);
	fd = snap_ram_open(path, info->ram_size, info, err);
	if (fd < 0)
		return fd;
	buf = malloc(info->chunk_size);
	if (!buf) {
		close(fd);
		return err_set(err, -ENOMEM, "%s: out of memory", path);
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
				rc = err_set(err, k < 0 ? -errno : -EIO,
					     "%s: read at 0x%llx: %s", path,
					     (unsigned long long)(off + got),
					     k < 0 ? strerror(errno)
						   : "unexpected end of file");
				break;
			}
			got += (uint64_t)k;
		}
		if (!rc && XXH3_64bits(buf, n) != info->hashes[c])
			rc = err_set(err, -EBADMSG,
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
	rc = snap_write_blob(w, SNAP_RAM_SECTION, 0, SNAP_RAM_VERSION, 0, buf,
			     len);
	free(buf);
	return rc;
}

int snap_ram_decode(const void *data, size_t len, struct snap_ram_info *info,
		    const char *what, struct err *err)
{
	const uint8_t *b = data;
	size_t nlen;
	int rc;

	memset(info, 0, sizeof(*info));
	if (len < RAM_HDR)
		return err_set(err, -EPROTO, "%s: 'ram' section too short",
			       what);
	info->ram_size = get_le64(b);
	info->chunk_size = get_le64(b + 8);
	info->nchunks = get_le32(b + 16);
	nlen = get_le16(b + 20);
	if (get_le16(b + 22) || !nlen || nlen > SNAP_RAM_MAX_NAME ||
	    len != RAM_HDR + nlen + (uint64_t)info->nchunks * 8 ||
	    memchr(b + RAM_HDR, 0, nlen))
		return err_set(err, -EPROTO,
			       "%s: 'ram' section: bad layout (%zu bytes)",
			       what, len);
	rc = check_info(info, what, err);
	if (rc)
		return rc;
	memcpy(info->file, b + RAM_HDR, nlen);
	info->file[nlen] = 0;
	/* Only ever a name in the state file's directory (docs/security.md). */
	if (!snap_ram_name_ok(info->file))
		return err_set(err, -EPROTO,
			       "%s: section 'ram': RAM file name '%s' is "
			       "not a bare file name beside the state file",
			       what, info->file);
	info->hashes = malloc((size_t)info->nchunks * 8);
	if (!info->hashes)
		return err_set(err, -ENOMEM, "%s: out of memory", what);
	for (uint32_t i = 0; i < info->nchunks; i++)
		info->hashes[i] = get_le64(b + RAM_HDR + nlen + 8 * (size_t)i);
	return 0;
}

int snap_ram_read_section(struct snap_reader *r, struct snap_ram_info *info,
			  struct err *err)
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
		return err_set(err, -EPROTO,
			       "%s: section 'ram' #0: version %u is not %u",
			       snap_reader_path(r), ver, SNAP_RAM_VERSION);
	rc = snap_ram_decode(data, len, info, snap_reader_path(r), err);
	if (rc)
		return rc;
	/* The pair's identity comes from the state file's header. */
	memcpy(info->save_id, snap_reader_header(r)->save_id, SNAP_SAVE_ID_LEN);
	info->has_id = snap_reader_header(r)->has_save_id;
	return 0;
}
