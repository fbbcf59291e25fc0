/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest RAM file. Layout and rationale: docs/snapshot-format.md.
 * Save streams the RAM once per chunk: hash it, find the non-zero page
 * runs and pwrite each run whole, so the cost is hashing plus big writes.
 */
#include "snap_ram.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap_fault.h"

#define RAM_HDR 24
#define MAX_RUN (64ULL * 1024 * 1024) /* bytes per pwrite */

/*
 * The pair trailer (format 1.1): SNAP_RAM_TRAILER bytes right after the
 * RAM, so the RAM itself still starts at offset 0 and maps as it is.
 */
#define TRL_MAGIC   "KHYVSRAM"
#define TRL_VERSION 1
#define TRL_SUM	    (SNAP_RAM_TRAILER - 8) /* checksum covers [0, this) */

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
	int rc = snap_fault(SNAP_FAULT_RAM_WRITE);

	if (rc)
		return rc;
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

static void report(const struct snap_ram_progress *pg, uint64_t done,
		   uint64_t total)
{
	if (pg && pg->fn)
		pg->fn(pg->opaque, done, total);
}

/*
 * ---- Which pages can hold data ----
 *
 * Guest RAM is a private anonymous mapping, or (after a mapped restore) a
 * private mapping of the previous RAM file. In an anonymous mapping a page
 * that is neither present nor swapped out was never written and reads as
 * zero: /proc/self/pagemap tells that without touching the page, so the
 * save never reads (nor hashes, nor zero-checks) untouched guest RAM. In
 * a file mapping a page that is not present still has data in the file:
 * every page of such a mapping is read. Without pagemap everything is
 * read, as before.
 */
#define PM_PRESENT    (1ULL << 63)
#define PM_SWAP	      (1ULL << 62)

struct file_range {
	uintptr_t start, end; /* host addresses of a non-anonymous mapping */
};

struct snap_ram_live {
	const struct guest_mem *m;
	char *path, *tmp;
	int fd;
	uint8_t id[SNAP_SAVE_ID_LEN];
	bool has_id; /* a trailer follows the RAM */
	int pagemap; /* -1: unavailable, every page is read */
	uint64_t npages, nchunks;
	uint64_t *hashes;
	uint64_t *data; /* page bitmap: the file holds data there */
	struct file_range *files;
	unsigned nfiles;
	uint64_t zero_hash; /* of a full all-zero chunk */
	uint64_t written;   /* bytes written so far */
	uint64_t hashed;    /* bytes of chunks (re)hashed so far */
	XXH3_state_t *hs;
};

static const uint8_t zero_buf[64 * 1024];

static inline bool bit_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static inline void bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

static inline void bit_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ULL << (i % 64));
}

/* Non-anonymous mappings overlapping guest RAM, from /proc/self/maps. */
static int find_file_ranges(struct snap_ram_live *lv)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[4096];
	int rc = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, ino;
		char perms[8];
		unsigned maj, min;
		unsigned long long pgoff;
		struct file_range *n;
		bool hit = false;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end,
			   perms, &pgoff, &maj, &min, &ino) != 7) {
			rc = -EINVAL;
			break;
		}
		if (!ino && !maj && !min)
			continue; /* anonymous */
		for (unsigned i = 0; i < lv->m->nr; i++) {
			uint64_t avail;
			uint8_t *b = ram_ptr(lv->m, lv->m->r[i].offset, &avail);

			if (b && start < (uintptr_t)b + avail &&
			    end > (uintptr_t)b)
				hit = true;
		}
		if (!hit)
			continue;
		n = realloc(lv->files, (lv->nfiles + 1) * sizeof(*n));
		if (!n) {
			rc = -ENOMEM;
			break;
		}
		lv->files = n;
		n[lv->nfiles++] = (struct file_range){start, end};
	}
	fclose(f);
	return rc;
}

static bool in_file_range(const struct snap_ram_live *lv, uintptr_t a)
{
	for (unsigned i = 0; i < lv->nfiles; i++)
		if (a >= lv->files[i].start && a < lv->files[i].end)
			return true;
	return false;
}

static int pread_full(int fd, void *buf, size_t len, off_t off)
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

/*
 * Pagemap entries of @n pages from host address @hva (all in one
 * mapping); without pagemap every entry says "present".
 */
static int pagemap_read(int fd, const uint8_t *hva, uint64_t n, uint64_t *ent)
{
	if (fd < 0) {
		for (uint64_t i = 0; i < n; i++)
			ent[i] = PM_PRESENT;
		return 0;
	}
	return pread_full(fd, ent, n * 8,
			  (off_t)((uintptr_t)hva / PAGE_SIZE * 8));
}

/* A page that may hold data must be read; others are zero. */
static bool page_needed(const struct snap_ram_live *lv, const uint8_t *hva,
			uint64_t ent)
{
	return (ent & (PM_PRESENT | PM_SWAP)) ||
	       in_file_range(lv, (uintptr_t)hva);
}

static int punch_page(int fd, uint64_t off)
{
	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       (off_t)off, PAGE_SIZE))
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return pwrite_full(fd, zero_buf, PAGE_SIZE, off);
}

/*
 * (Re)write chunk @c: of the pages selected by @sel (chunk-relative bit
 * mask; NULL: all), data pages are written and pages that became zero are
 * made holes again; the chunk's hash is recomputed over all of it (pages
 * that cannot hold data hash as the zeros they are). A chunk is hashed in
 * the same loop that zero-checks it, so each page is read once.
 */
static int do_chunk(struct snap_ram_live *lv, XXH3_state_t *hs,
		    uint64_t *written, uint64_t c, const uint64_t *sel)
{
	const struct guest_mem *m = lv->m;
	uint64_t off = c * SNAP_RAM_CHUNK_SIZE;
	uint64_t end = MIN(off + SNAP_RAM_CHUNK_SIZE, m->ram_size);
	uint64_t ent[SNAP_RAM_CHUNK_SIZE / PAGE_SIZE];
	bool need_any = false, data_any = false;
	uint64_t run_off = 0, run_len = 0;
	const uint8_t *run = NULL;
	int rc = 0;

	/* Pagemap entries for the chunk, piece by piece (regions). */
	for (uint64_t o = off; o < end;) {
		uint64_t avail, n;
		const uint8_t *p = ram_ptr(m, o, &avail);

		n = MIN(avail, end - o);
		rc = pagemap_read(lv->pagemap, p, n / PAGE_SIZE,
				  ent + (o - off) / PAGE_SIZE);
		if (rc)
			return rc;
		for (uint64_t i = 0; i < n / PAGE_SIZE; i++) {
			uint64_t pg = (o - off) / PAGE_SIZE + i;

			ent[pg] = page_needed(lv, p + i * PAGE_SIZE, ent[pg]);
			need_any |= ent[pg];
			data_any |= bit_test(lv->data, off / PAGE_SIZE + pg);
		}
		o += n;
	}
	if (!need_any && !data_any && end - off == SNAP_RAM_CHUNK_SIZE) {
		lv->hashes[c] =
			lv->zero_hash; /* never touched: nothing to read */
		return 0;
	}
	XXH3_64bits_reset(hs);
	for (uint64_t o = off; o < end && !rc;) {
		uint64_t avail, n;
		const uint8_t *p = ram_ptr(m, o, &avail);

		n = MIN(avail, end - o);
		for (uint64_t i = 0; i < n && !rc; i += PAGE_SIZE) {
			uint64_t pg = (o + i - off) / PAGE_SIZE;
			uint64_t fpg = (o + i) / PAGE_SIZE;
			bool selected = !sel || bit_test(sel, pg);
			bool zero;

			if (ent[pg]) {
				XXH3_64bits_update(hs, p + i, PAGE_SIZE);
				zero = !selected || page_is_zero(p + i);
			} else {
				XXH3_64bits_update(hs, zero_buf, PAGE_SIZE);
				zero = true;
			}
			if (!selected)
				continue;
			if (zero || !run || run + run_len != p + i ||
			    run_off + run_len != o + i) {
				if (run)
					rc = pwrite_full(lv->fd, run, run_len,
							 run_off);
				*written += run ? run_len : 0;
				run = NULL;
			}
			if (rc)
				break;
			if (zero) {
				if (bit_test(lv->data, fpg)) {
					rc = punch_page(lv->fd, o + i);
					bit_clear(lv->data, fpg);
				}
				continue;
			}
			bit_set(lv->data, fpg);
			if (!run) {
				run = p + i;
				run_off = o + i;
				run_len = 0;
			}
			run_len += PAGE_SIZE;
		}
		o += n;
	}
	if (!rc && run) {
		rc = pwrite_full(lv->fd, run, run_len, run_off);
		*written += run_len;
	}
	lv->hashes[c] = XXH3_64bits_digest(hs);
	return rc;
}

/*
 * Chunks are independent (own hash, own pages, own words of the data
 * bitmap, pwrite at their own offsets), so a pass spreads them over a few
 * threads: hashing and zero-checking are the CPU cost of a save, and the
 * writes serialise in the file system anyway.
 */
#define COPY_THREADS_MAX 4

struct copy_job {
	struct snap_ram_live *lv;
	const uint64_t *dirty;
	const struct snap_ram_progress *pg;
	uint64_t next;	  /* next chunk to take (atomic) */
	uint64_t done;	  /* chunks finished (atomic) */
	uint64_t written; /* bytes written (atomic) */
	uint64_t hashed;  /* chunks (re)hashed (atomic) */
	int rc;		  /* first error (atomic) */
};

static int copy_loop(struct copy_job *j, XXH3_state_t *hs, bool reporter)
{
	const uint64_t per = SNAP_RAM_CHUNK_SIZE / PAGE_SIZE; /* 512 */
	struct snap_ram_live *lv = j->lv;
	uint64_t written = 0;
	int rc = 0;

	for (;;) {
		uint64_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		uint64_t sel[SNAP_RAM_CHUNK_SIZE / PAGE_SIZE / 64] = {0};
		bool any = false;

		if (c >= lv->nchunks ||
		    __atomic_load_n(&j->rc, __ATOMIC_RELAXED))
			break;
		if (j->dirty) {
			uint64_t p0 = c * per;
			uint64_t p1 = MIN(p0 + per, lv->npages);

			for (uint64_t p = p0; p < p1; p++)
				if (bit_test(j->dirty, p)) {
					bit_set(sel, p - p0);
					any = true;
				}
		}
		if (!j->dirty || any) {
			rc = do_chunk(lv, hs, &written, c,
				      j->dirty ? sel : NULL);
			__atomic_add_fetch(&j->hashed, 1, __ATOMIC_RELAXED);
		}
		if (rc) {
			int zero = 0;

			__atomic_compare_exchange_n(&j->rc, &zero, rc, false,
						    __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
			break;
		}
		c = __atomic_add_fetch(&j->done, 1, __ATOMIC_RELAXED);
		/* Only the caller's thread reports (the callback is its). */
		if (reporter && !j->dirty)
			report(j->pg,
			       MIN(c * SNAP_RAM_CHUNK_SIZE, lv->m->ram_size),
			       lv->m->ram_size);
	}
	__atomic_add_fetch(&j->written, written, __ATOMIC_RELAXED);
	return rc;
}

static void *copy_thread(void *arg)
{
	struct copy_job *j = arg;
	XXH3_state_t *hs = XXH3_createState();

	if (!hs) {
		int zero = 0;

		__atomic_compare_exchange_n(&j->rc, &zero, -ENOMEM, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		return NULL;
	}
	copy_loop(j, hs, false);
	XXH3_freeState(hs);
	return NULL;
}

/* Chunks holding a page of @dirty, counted up to @max. */
static uint64_t dirty_chunks(const struct snap_ram_live *lv,
			     const uint64_t *dirty, uint64_t max)
{
	const uint64_t per = SNAP_RAM_CHUNK_SIZE / PAGE_SIZE / 64; /* words */
	uint64_t words = (lv->npages + 63) / 64, n = 0;

	for (uint64_t w0 = 0; w0 < words && n < max; w0 += per)
		for (uint64_t w = w0; w < MIN(w0 + per, words); w++)
			if (dirty[w]) {
				n++;
				break;
			}
	return n;
}

int snap_ram_live_copy(struct snap_ram_live *lv, const uint64_t *dirty,
		       const struct snap_ram_progress *pg)
{
	struct copy_job j = {.lv = lv, .dirty = dirty, .pg = pg};
	pthread_t th[COPY_THREADS_MAX - 1];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = 0, want;

	want = cpus > 1 ? (unsigned)MIN(cpus, COPY_THREADS_MAX) : 1;
	if ((dirty ? dirty_chunks(lv, dirty, 16) : lv->nchunks) < 16)
		want = 1; /* not worth a thread (nor its start in a pause) */
	for (; n + 1 < want; n++)
		if (pthread_create(&th[n], NULL, copy_thread, &j))
			break; /* fewer threads: still correct */
	copy_loop(&j, lv->hs, true);
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	lv->written += j.written;
	lv->hashed += j.hashed * SNAP_RAM_CHUNK_SIZE;
	return j.rc;
}

uint64_t snap_ram_live_written(const struct snap_ram_live *lv)
{
	return lv->written;
}

uint64_t snap_ram_live_hashed(const struct snap_ram_live *lv)
{
	return lv->hashed;
}

static void trailer_build(uint8_t *t, const uint8_t *id, uint64_t ram_size)
{
	memset(t, 0, SNAP_RAM_TRAILER);
	memcpy(t, TRL_MAGIC, 8);
	put_le16(t + 8, TRL_VERSION);
	put_le32(t + 12, SNAP_RAM_TRAILER);
	memcpy(t + 16, id, SNAP_SAVE_ID_LEN);
	put_le64(t + 32, ram_size);
	put_le64(t + TRL_SUM, XXH3_64bits(t, TRL_SUM));
}

int snap_ram_live_open(const struct guest_mem *m, const char *path,
		       struct snap_ram_live **out)
{
	return snap_ram_live_open_id(m, path, NULL, out);
}

int snap_ram_live_open_id(const struct guest_mem *m, const char *path,
			  const uint8_t *save_id, struct snap_ram_live **out)
{
	const char *base = last_component(path);
	struct snap_ram_live *lv;
	uint8_t *zeros;
	int rc;

	*out = NULL;
	if (!*base || strlen(base) > SNAP_RAM_MAX_NAME)
		return -EINVAL;
	rc = check_layout(m);
	if (rc)
		return rc;
	if ((m->ram_size + SNAP_RAM_CHUNK_SIZE - 1) / SNAP_RAM_CHUNK_SIZE >
	    UINT32_MAX)
		return -EFBIG;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	lv->m = m;
	lv->fd = -1;
	if (save_id) {
		memcpy(lv->id, save_id, SNAP_SAVE_ID_LEN);
		lv->has_id = true;
	}
	lv->npages = m->ram_size / PAGE_SIZE;
	lv->nchunks =
		(m->ram_size + SNAP_RAM_CHUNK_SIZE - 1) / SNAP_RAM_CHUNK_SIZE;
	lv->hashes = calloc(lv->nchunks, sizeof(*lv->hashes));
	lv->data = calloc((lv->npages + 63) / 64, 8);
	lv->path = strdup(path);
	lv->hs = XXH3_createState();
	lv->pagemap = -1;
	zeros = calloc(1, SNAP_RAM_CHUNK_SIZE);
	if (!lv->hashes || !lv->data || !lv->path || !lv->hs || !zeros) {
		free(zeros);
		rc = -ENOMEM;
		goto fail;
	}
	lv->zero_hash = XXH3_64bits(zeros, SNAP_RAM_CHUNK_SIZE);
	free(zeros);
	lv->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	/* Without the mapping list we cannot tell file pages: read all. */
	if (lv->pagemap >= 0 && find_file_ranges(lv)) {
		close(lv->pagemap);
		lv->pagemap = -1;
	}
	if (asprintf(&lv->tmp, "%.*s.%s.tmp-XXXXXX", (int)(base - path), path,
		     base) < 0) {
		lv->tmp = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	lv->fd = mkostemp(lv->tmp, O_CLOEXEC);
	if (lv->fd < 0) {
		rc = -errno;
		free(lv->tmp);
		lv->tmp = NULL;
		goto fail;
	}
	/* Full size first: pages we never write stay holes. */
	if (ftruncate(lv->fd, (off_t)(m->ram_size +
				      (lv->has_id ? SNAP_RAM_TRAILER : 0)))) {
		rc = -errno;
		goto fail;
	}
	if (lv->has_id) {
		uint8_t t[SNAP_RAM_TRAILER];

		trailer_build(t, lv->id, m->ram_size);
		rc = pwrite_full(lv->fd, t, sizeof(t), m->ram_size);
		if (rc)
			goto fail;
	}
	*out = lv;
	return 0;
fail:
	snap_ram_live_abort(lv);
	return rc;
}

void snap_ram_live_abort(struct snap_ram_live *lv)
{
	if (!lv)
		return;
	if (lv->fd >= 0)
		close(lv->fd);
	if (lv->tmp) {
		unlink(lv->tmp);
		free(lv->tmp);
	}
	if (lv->pagemap >= 0)
		close(lv->pagemap);
	if (lv->hs)
		XXH3_freeState(lv->hs);
	free(lv->files);
	free(lv->path);
	free(lv->hashes);
	free(lv->data);
	free(lv);
}

int snap_ram_live_flush(struct snap_ram_live *lv)
{
	return fdatasync(lv->fd) ? -errno : 0;
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

/* Describe @lv's RAM file in @info, which takes ownership of @hashes. */
static void live_fill_info(const struct snap_ram_live *lv,
			   struct snap_ram_info *info, uint64_t *hashes)
{
	snap_ram_info_free(info);
	snprintf(info->file, sizeof(info->file), "%s",
		 last_component(lv->path));
	info->ram_size = lv->m->ram_size;
	info->chunk_size = SNAP_RAM_CHUNK_SIZE;
	info->nchunks = (uint32_t)lv->nchunks;
	info->hashes = hashes;
	memcpy(info->save_id, lv->id, SNAP_SAVE_ID_LEN);
	info->has_id = lv->has_id;
}

int snap_ram_live_info(const struct snap_ram_live *lv,
		       struct snap_ram_info *info)
{
	uint64_t *h = malloc(lv->nchunks * sizeof(*h));

	if (!h)
		return -ENOMEM;
	memcpy(h, lv->hashes, lv->nchunks * sizeof(*h));
	live_fill_info(lv, info, h);
	return 0;
}

int snap_ram_live_commit(struct snap_ram_live *lv, unsigned flags,
			 struct snap_ram_info *info)
{
	int rc = 0;

	if (!info || (flags & ~SNAP_RAM_FSYNC)) {
		snap_ram_live_abort(lv);
		return -EINVAL;
	}
	if ((flags & SNAP_RAM_FSYNC) && fsync(lv->fd))
		rc = -errno;
	if (close(lv->fd) && !rc)
		rc = -errno;
	lv->fd = -1;
	/*
	 * A new inode, not an overwrite: a guest restored by mapping the old
	 * file keeps its private view of it while we replace it.
	 */
	if (!rc && rename(lv->tmp, lv->path))
		rc = -errno;
	if (rc) {
		snap_ram_live_abort(lv);
		return rc;
	}
	free(lv->tmp);
	lv->tmp = NULL;
	if (flags & SNAP_RAM_FSYNC)
		rc = fsync_parent(lv->path);
	if (!rc) {
		live_fill_info(lv, info, lv->hashes);
		lv->hashes = NULL;
	}
	snap_ram_live_abort(lv);
	return rc;
}

/*
 * A link to the previous RAM file at a fresh temporary name beside it, so
 * it can be put back if the state file cannot be. *@backup NULL: there was
 * no previous file (or links are not possible here: then no rollback).
 */
static int link_backup(const char *path, char **backup)
{
	const char *base = last_component(path);
	struct stat st;

	*backup = NULL;
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	for (unsigned tries = 0; tries < 64; tries++) {
		uint8_t rnd[6];
		char *b;

		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
			return -EIO;
		if (asprintf(&b, "%.*s.%s.old-%02x%02x%02x%02x%02x%02x",
			     (int)(base - path), path, base, rnd[0], rnd[1],
			     rnd[2], rnd[3], rnd[4], rnd[5]) < 0)
			return -ENOMEM;
		if (!link(path, b)) {
			*backup = b;
			return 0;
		}
		free(b);
		if (errno != EEXIST)
			return 0; /* no hard links here: commit without */
	}
	return 0;
}

int snap_ram_pair_commit(struct snap_ram_live *lv, struct snap_writer *w,
			 unsigned flags, struct snap_err *err)
{
	bool sync = flags & SNAP_RAM_FSYNC;
	char *backup = NULL;
	int rc, rc2;

	if (!lv || !w || (flags & ~SNAP_RAM_FSYNC)) {
		rc = snap_seterr(err, -EINVAL, "snapshot commit: bad call");
		goto abort;
	}
	/* Both files complete under their temporary names first. */
	if (sync && fsync(lv->fd)) {
		rc = snap_seterr(err, -errno, "%s: fsync: %s", lv->tmp,
				 strerror(errno));
		goto abort;
	}
	rc = close(lv->fd) ? -errno : 0;
	lv->fd = -1;
	if (rc) {
		snap_seterr(err, rc, "%s: close: %s", lv->tmp, strerror(-rc));
		goto abort;
	}
	rc = snap_writer_seal(w);
	if (rc) {
		snap_seterr(err, rc, "%s", snap_writer_error(w));
		goto abort;
	}
	/*
	 * Two renames, RAM first. The previous RAM file keeps a second name
	 * until the new state file is in place: if that rename fails, it
	 * goes back and the previous pair is exactly as it was.
	 */
	rc = link_backup(lv->path, &backup);
	if (rc) {
		snap_seterr(err, rc, "%s: %s", lv->path, strerror(-rc));
		goto abort;
	}
	rc = snap_fault(SNAP_FAULT_RAM_COMMIT);
	if (rc) {
		snap_seterr(err, rc, "%s: rename: %s (injected fault)",
			    lv->path, strerror(-rc));
		goto abort;
	}
	if (rename(lv->tmp, lv->path)) {
		rc = snap_seterr(err, -errno, "%s: rename: %s", lv->path,
				 strerror(errno));
		goto abort;
	}
	free(lv->tmp);
	lv->tmp = NULL;
	rc = snap_writer_publish(w, false);
	if (rc) {
		snap_seterr(err, rc, "%s", snap_writer_error(w));
		/* No previous RAM file: this save's must not stay behind. */
		rc2 = snap_fault(SNAP_FAULT_ROLLBACK);
		if (!rc2 && (backup ? rename(backup, lv->path)
				    : unlink(lv->path)))
			rc2 = -errno;
		if (!rc2) {
			free(backup);
			backup = NULL;
		} else {
			size_t n = strlen(err->msg);

			/* Keep the old RAM file's backup: it is the data. */
			snprintf(err->msg + n, sizeof(err->msg) - n,
				 "; putting the previous RAM file back "
				 "failed too (%s): the state file and %s are "
				 "now from different saves and a restore "
				 "refuses them%s%s",
				 strerror(-rc2), lv->path,
				 backup ? "; the previous RAM file is " : "",
				 backup ? backup : "");
			free(backup);
			backup = NULL;
		}
		goto abort;
	}
	if (backup && unlink(backup)) {
		/* Committed; only a stray name is left. */
	}
	free(backup);
	backup = NULL;
	rc = sync ? fsync_parent(lv->path) : 0;
	if (rc)
		snap_seterr(err, rc, "%s: fsync of its directory: %s",
			    lv->path, strerror(-rc));
	snap_writer_abort(w);
	snap_ram_live_abort(lv);
	return rc;
abort:
	if (backup) {
		unlink(backup);
		free(backup);
	}
	snap_writer_abort(w);
	snap_ram_live_abort(lv);
	return rc;
}

static int save_file(const struct guest_mem *m, const char *path,
		     unsigned flags, struct snap_ram_info *info,
		     const struct snap_ram_progress *pg)
{
	struct snap_ram_live *lv;
	int rc;

	if (!info || (flags & ~SNAP_RAM_FSYNC))
		return -EINVAL;
	rc = snap_ram_live_open(m, path, &lv);
	if (rc)
		return rc;
	rc = snap_ram_live_copy(lv, NULL, pg);
	if (rc) {
		snap_ram_live_abort(lv);
		return rc;
	}
	return snap_ram_live_commit(lv, flags, info);
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

/*
 * Open the RAM file of a pair: a regular file (snap_open_regular) of
 * exactly @want bytes, or, when the state file has a save id (@id), of
 * @want bytes plus a trailer carrying that id. Cheap: one fstat and one
 * 64-byte read, whatever the RAM size.
 */
static int ram_open(const char *path, uint64_t want, const uint8_t *id,
		    struct snap_err *err)
{
	uint64_t expect = want + (id ? SNAP_RAM_TRAILER : 0);
	uint8_t t[SNAP_RAM_TRAILER];
	char have[SNAP_SAVE_ID_STR], need[SNAP_SAVE_ID_STR];
	struct stat st;
	int fd, rc;

	fd = snap_open_regular(path, O_RDONLY, &st, err);
	if (fd < 0)
		return fd;
	if (id && (uint64_t)st.st_size == want) {
		snap_save_id_str(id, need);
		rc = snap_seterr(err, -EINVAL,
				 "%s: has no save id, the state file wants "
				 "save %s: not the RAM file of this snapshot "
				 "(the two files come from different saves)",
				 path, need);
		goto fail;
	}
	if ((uint64_t)st.st_size != expect) {
		rc = snap_seterr(
			err, -EINVAL,
			"%s: size %lld does not match the RAM size %llu%s", path,
			(long long)st.st_size, (unsigned long long)want,
			id ? " (plus its 64-byte trailer)" : "");
		goto fail;
	}
	if (!id)
		return fd;
	rc = pread_full(fd, t, sizeof(t), (off_t)want);
	if (rc) {
		snap_seterr(err, rc, "%s: read: %s", path, strerror(-rc));
		goto fail;
	}
	if (memcmp(t, TRL_MAGIC, 8) || get_le16(t + 8) != TRL_VERSION ||
	    get_le32(t + 12) != SNAP_RAM_TRAILER ||
	    get_le64(t + 32) != want ||
	    XXH3_64bits(t, TRL_SUM) != get_le64(t + TRL_SUM)) {
		rc = snap_seterr(err, -EINVAL,
				 "%s: damaged RAM file trailer (no valid save "
				 "id)",
				 path);
		goto fail;
	}
	if (memcmp(t + 16, id, SNAP_SAVE_ID_LEN)) {
		snap_save_id_str(t + 16, have);
		snap_save_id_str(id, need);
		rc = snap_seterr(err, -EINVAL,
				 "%s: written by save %s, the state file is "
				 "from save %s: the two files come from "
				 "different saves",
				 path, have, need);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

static const uint8_t *info_id(const struct snap_ram_info *info)
{
	return info && info->has_id ? info->save_id : NULL;
}

int snap_ram_check_file(const char *path, const struct snap_ram_info *info,
			struct snap_err *err)
{
	int fd = ram_open(path, info->ram_size, info_id(info), err);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int snap_ram_map_pair(const struct guest_mem *m, const char *path,
		      const struct snap_ram_info *info, int *keep_fd,
		      struct snap_err *err)
{
	void *p;
	int fd;

	if (keep_fd)
		*keep_fd = -1;
	if (!m || !m->base || check_layout(m))
		return snap_seterr(err, -EINVAL, "%s: guest RAM is not mapped",
				   path);
	fd = ram_open(path, m->ram_size, info_id(info), err);
	if (fd < 0)
		return fd;
	p = mmap(m->base, m->ram_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;

		close(fd);
		return snap_seterr(err, rc, "%s: mmap: %s", path,
				   strerror(-rc));
	}
	if (keep_fd)
		*keep_fd = fd;
	else
		close(fd);
	return 0;
}

int snap_ram_map(const struct guest_mem *m, const char *path,
		 struct snap_err *err)
{
	return snap_ram_map_pair(m, path, NULL, NULL, err);
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
	return snap_ram_load_eager_pair(m, path, NULL, err, pg);
}

int snap_ram_load_eager_pair(const struct guest_mem *m, const char *path,
			     const struct snap_ram_info *info,
			     struct snap_err *err,
			     const struct snap_ram_progress *pg)
{
	uint64_t off = 0;
	int fd, rc = 0;

	if (check_layout(m))
		return snap_seterr(err, -EINVAL, "%s: bad guest RAM layout",
				   path);
	fd = ram_open(path, m->ram_size, info_id(info), err);
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
		return snap_seterr(err, rc, "%s: read: %s", path,
				   strerror(-rc));
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
		return snap_seterr(
			err, -EPROTO,
			"%s: bad RAM geometry (size %llu, chunk %llu)", what,
			(unsigned long long)info->ram_size,
			(unsigned long long)info->chunk_size);
	/* Written without an addition that could wrap. */
	if (info->ram_size / info->chunk_size +
		    !!(info->ram_size % info->chunk_size) !=
	    info->nchunks)
		return snap_seterr(err, -EPROTO,
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
		    struct snap_err *err)
{
	uint8_t *buf;
	int fd, rc;

	rc = check_info(info, path, err);
	if (rc)
		return rc;
	if (!info->hashes)
		return snap_seterr(err, -EINVAL, "%s: no chunk hashes", path);
	fd = ram_open(path, info->ram_size, info_id(info), err);
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
				rc = snap_seterr(
					err, k < 0 ? -errno : -EIO,
					"%s: read at 0x%llx: %s", path,
					(unsigned long long)(off + got),
					k < 0 ? strerror(errno)
					      : "unexpected end of file");
				break;
			}
			got += (uint64_t)k;
		}
		if (!rc && XXH3_64bits(buf, n) != info->hashes[c])
			rc = snap_seterr(
				err, -EBADMSG,
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
				   "%s: 'ram' section: bad layout (%zu bytes)",
				   what, len);
	rc = check_info(info, what, err);
	if (rc)
		return rc;
	memcpy(info->file, b + RAM_HDR, nlen);
	info->file[nlen] = 0;
	/* Only ever a name in the state file's directory (docs/security.md). */
	if (!snap_ram_name_ok(info->file))
		return snap_seterr(err, -EPROTO,
				   "%s: section 'ram': RAM file name '%s' is "
				   "not a bare file name beside the state file",
				   what, info->file);
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
	rc = snap_ram_decode(data, len, info, snap_reader_path(r), err);
	if (rc)
		return rc;
	/* The pair's identity comes from the state file's header. */
	memcpy(info->save_id, snap_reader_header(r)->save_id,
	       SNAP_SAVE_ID_LEN);
	info->has_id = snap_reader_header(r)->has_save_id;
	return 0;
}
