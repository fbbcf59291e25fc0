/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Writing a RAM file, live or at once: see snap_ram_live.h. A pass streams
 * the RAM chunk by chunk: hash it, find the non-zero page runs and pwrite
 * each run whole, so the cost is hashing plus big writes.
 */
#include "snap_ram_live.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap_fault.h"
#include "snap_file.h"
#include "snap_ram_pages.h"
#include "snap_stale.h"

#define PAGES_PER_CHUNK (SNAP_RAM_CHUNK_SIZE / PAGE_SIZE) /* 512 */

struct snap_ram_live {
	const struct guest_mem *m;
	struct snap_tmpfile f; /* the RAM file being written */
	uint8_t id[SNAP_SAVE_ID_LEN];
	bool has_id; /* a trailer follows the RAM */
	struct snap_ram_pages pages;
	uint64_t npages, nchunks;
	uint64_t *hashes;
	uint64_t *data;	    /* page bitmap: the file holds data there */
	uint64_t zero_hash; /* of a full all-zero chunk */
	uint64_t written;   /* bytes written so far */
	uint64_t hashed;    /* bytes of chunks (re)hashed so far */
	XXH3_state_t *hs;
};

static const uint8_t zero_buf[64 * 1024];

static const char *last_component(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* Every write of RAM data may be made to fail (snap_fault.h). */
static int ram_pwrite(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	int rc = snap_fault(SNAP_FAULT_RAM_WRITE);

	return rc ? rc : snap_pwrite_full(fd, p, len, off);
}

static int punch_page(int fd, uint64_t off)
{
	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       (off_t)off, PAGE_SIZE))
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return ram_pwrite(fd, zero_buf, PAGE_SIZE, off);
}

/*
 * need[] for chunk [off, end): which of its pages may hold data. *@any:
 * some page may, or the file holds data for one (it may have to go).
 */
static int chunk_scan(const struct snap_ram_live *lv, uint64_t off,
		      uint64_t end, uint64_t *need, bool *any)
{
	*any = false;
	for (uint64_t o = off; o < end;) {
		uint64_t avail, n;
		const uint8_t *p = snap_ram_ptr(lv->m, o, &avail);
		uint64_t pg0 = (o - off) / PAGE_SIZE;
		int rc;

		n = MIN(avail, end - o);
		rc = snap_ram_pages_needed(&lv->pages, p, n / PAGE_SIZE,
					   need + pg0);
		if (rc)
			return rc;
		for (uint64_t i = 0; i < n / PAGE_SIZE; i++)
			*any |= need[pg0 + i] ||
				snap_bit_test(lv->data,
					      off / PAGE_SIZE + pg0 + i);
		o += n;
	}
	return 0;
}

/* A run of data pages, contiguous in memory and in the file. */
struct run {
	const uint8_t *p;
	uint64_t off, len;
};

/* Write out @r (if any) and start none. */
static int run_flush(struct snap_ram_live *lv, struct run *r, uint64_t *written)
{
	int rc = 0;

	if (r->p) {
		rc = ram_pwrite(lv->f.fd, r->p, r->len, r->off);
		*written += r->len;
	}
	r->p = NULL;
	return rc;
}

/*
 * One selected page at flat offset @fo (host @p): a data page joins the
 * current run (flushed first when not contiguous); a zero page ends it and
 * becomes a hole again if the file held data there.
 */
static int page_out(struct snap_ram_live *lv, struct run *r, const uint8_t *p,
		    uint64_t fo, bool zero, uint64_t *written)
{
	uint64_t fpg = fo / PAGE_SIZE;
	int rc = 0;

	if (zero || !r->p || r->p + r->len != p || r->off + r->len != fo)
		rc = run_flush(lv, r, written);
	if (rc)
		return rc;
	if (zero) {
		if (snap_bit_test(lv->data, fpg)) {
			rc = punch_page(lv->f.fd, fo);
			snap_bit_clear(lv->data, fpg);
		}
		return rc;
	}
	snap_bit_set(lv->data, fpg);
	if (!r->p)
		*r = (struct run){p, fo, 0};
	r->len += PAGE_SIZE;
	return 0;
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
	uint64_t off = c * SNAP_RAM_CHUNK_SIZE;
	uint64_t end = MIN(off + SNAP_RAM_CHUNK_SIZE, lv->m->ram_size);
	uint64_t need[PAGES_PER_CHUNK];
	struct run r = {NULL, 0, 0};
	bool any;
	int rc = chunk_scan(lv, off, end, need, &any);

	if (rc)
		return rc;
	if (!any && end - off == SNAP_RAM_CHUNK_SIZE) {
		lv->hashes[c] =
			lv->zero_hash; /* never touched: nothing to read */
		return 0;
	}
	XXH3_64bits_reset(hs);
	for (uint64_t o = off; o < end && !rc;) {
		uint64_t avail, n;
		const uint8_t *p = snap_ram_ptr(lv->m, o, &avail);

		n = MIN(avail, end - o);
		for (uint64_t i = 0; i < n && !rc; i += PAGE_SIZE) {
			uint64_t pg = (o + i - off) / PAGE_SIZE;
			bool selected = !sel || snap_bit_test(sel, pg);

			XXH3_64bits_update(hs, need[pg] ? p + i : zero_buf,
					   PAGE_SIZE);
			if (selected)
				rc = page_out(
					lv, &r, p + i, o + i,
					!need[pg] ||
						snap_ram_page_is_zero(p + i),
					written);
		}
		o += n;
	}
	if (!rc)
		rc = run_flush(lv, &r, written);
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

static void job_fail(struct copy_job *j, int rc)
{
	int zero = 0;

	__atomic_compare_exchange_n(&j->rc, &zero, rc, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

static int copy_loop(struct copy_job *j, XXH3_state_t *hs, bool reporter)
{
	struct snap_ram_live *lv = j->lv;
	uint64_t written = 0;
	int rc = 0;

	for (;;) {
		uint64_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		uint64_t sel[PAGES_PER_CHUNK / 64];
		bool any;

		if (c >= lv->nchunks ||
		    __atomic_load_n(&j->rc, __ATOMIC_RELAXED))
			break;
		any = j->dirty &&
		      snap_ram_chunk_dirty(lv->npages, j->dirty, c, sel);
		if (!j->dirty || any) {
			rc = do_chunk(lv, hs, &written, c,
				      j->dirty ? sel : NULL);
			__atomic_add_fetch(&j->hashed, 1, __ATOMIC_RELAXED);
		}
		if (rc) {
			job_fail(j, rc);
			break;
		}
		c = __atomic_add_fetch(&j->done, 1, __ATOMIC_RELAXED);
		/* Only the caller's thread reports (the callback is its). */
		if (reporter && !j->dirty)
			snap_ram_report(
				j->pg,
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
		job_fail(j, -ENOMEM);
		return NULL;
	}
	copy_loop(j, hs, false);
	XXH3_freeState(hs);
	return NULL;
}

int snap_ram_live_copy(struct snap_ram_live *lv, const uint64_t *dirty,
		       const struct snap_ram_progress *pg)
{
	struct copy_job j = {.lv = lv, .dirty = dirty, .pg = pg};
	pthread_t th[COPY_THREADS_MAX - 1];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = 0, want;

	want = cpus > 1 ? (unsigned)MIN(cpus, COPY_THREADS_MAX) : 1;
	if ((dirty ? snap_ram_dirty_chunks(lv->npages, dirty, 16)
		   : lv->nchunks) < 16)
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

/* The bookkeeping of a save of @m: bitmaps, hashes, page tracking. */
static int live_alloc(struct snap_ram_live *lv, const struct guest_mem *m,
		      const uint8_t *save_id)
{
	uint8_t *zeros;

	lv->m = m;
	if (save_id) {
		memcpy(lv->id, save_id, SNAP_SAVE_ID_LEN);
		lv->has_id = true;
	}
	lv->npages = m->ram_size / PAGE_SIZE;
	lv->nchunks =
		(m->ram_size + SNAP_RAM_CHUNK_SIZE - 1) / SNAP_RAM_CHUNK_SIZE;
	lv->hashes = calloc(lv->nchunks, sizeof(*lv->hashes));
	lv->data = calloc((lv->npages + 63) / 64, 8);
	lv->hs = XXH3_createState();
	zeros = calloc(1, SNAP_RAM_CHUNK_SIZE);
	if (!lv->hashes || !lv->data || !lv->hs || !zeros) {
		free(zeros);
		return -ENOMEM;
	}
	lv->zero_hash = XXH3_64bits(zeros, SNAP_RAM_CHUNK_SIZE);
	free(zeros);
	snap_ram_pages_open(&lv->pages, m);
	return 0;
}

int snap_ram_live_open(const struct guest_mem *m, const char *path,
		       const uint8_t *save_id, struct snap_ram_live **out)
{
	const char *base = last_component(path);
	uint8_t t[SNAP_RAM_TRAILER];
	struct snap_ram_live *lv;
	int rc;

	*out = NULL;
	if (!*base || strlen(base) > SNAP_RAM_MAX_NAME)
		return -EINVAL;
	rc = snap_ram_check_layout(m);
	if (rc)
		return rc;
	if ((m->ram_size + SNAP_RAM_CHUNK_SIZE - 1) / SNAP_RAM_CHUNK_SIZE >
	    UINT32_MAX)
		return -EFBIG;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	lv->f.fd = lv->f.hold = -1;
	lv->pages.pagemap = -1;
	rc = live_alloc(lv, m, save_id);
	if (!rc)
		rc = snap_tmpfile_open(&lv->f, path);
	if (rc)
		goto fail;
	/* Full size first: pages we never write stay holes. */
	if (ftruncate(lv->f.fd, (off_t)(m->ram_size +
					(lv->has_id ? SNAP_RAM_TRAILER : 0)))) {
		rc = -errno;
		goto fail;
	}
	if (lv->has_id) {
		snap_ram_trailer_build(t, lv->id, m->ram_size);
		rc = ram_pwrite(lv->f.fd, t, sizeof(t), m->ram_size);
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
	snap_tmpfile_discard(&lv->f);
	snap_ram_pages_close(&lv->pages);
	if (lv->hs)
		XXH3_freeState(lv->hs);
	free(lv->hashes);
	free(lv->data);
	free(lv);
}

int snap_ram_live_flush(struct snap_ram_live *lv)
{
	return fdatasync(lv->f.fd) ? -errno : 0;
}

/* Describe @lv's RAM file in @info, which takes ownership of @hashes. */
static void live_fill_info(const struct snap_ram_live *lv,
			   struct snap_ram_info *info, uint64_t *hashes)
{
	snap_ram_info_free(info);
	snprintf(info->file, sizeof(info->file), "%s",
		 last_component(lv->f.path));
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
	int rc;

	if (!info || (flags & ~SNAP_RAM_FSYNC)) {
		snap_ram_live_abort(lv);
		return -EINVAL;
	}
	rc = snap_tmpfile_commit(&lv->f, flags & SNAP_RAM_FSYNC, NULL);
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
static int link_backup(const char *path, char **backup, int *hold)
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
			int fd = open(b, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
						 O_CLOEXEC);

			/* Locked: the next save tells it from a dead one's. */
			*hold = fd < 0 ? -1 : snap_stale_hold(fd);
			if (fd >= 0)
				close(fd);
			*backup = b;
			return 0;
		}
		free(b);
		if (errno != EEXIST)
			return 0; /* no hard links here: commit without */
	}
	return 0;
}

/* Second names of earlier RAM files that killed saves left beside @path. */
static void sweep_backups(const char *path)
{
	const char *base = last_component(path);
	char dir[4096], prefix[4096];

	if (base == path)
		strcpy(dir, ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(base - path), path);
	if ((size_t)snprintf(prefix, sizeof(prefix), ".%s.old-", base) <
	    sizeof(prefix))
		snap_stale_sweep(dir, prefix, 12);
}

/*
 * The state file could not be put in place after this save's RAM file
 * was: put the previous RAM file back (or, there was none, remove this
 * one). If that fails too, the backup stays and @err says where.
 */
static void rollback_ram(const char *path, char **backup, struct err *err)
{
	int rc = snap_fault(SNAP_FAULT_ROLLBACK);
	size_t n;

	if (!rc && (*backup ? rename(*backup, path) : unlink(path)))
		rc = -errno;
	if (rc) {
		n = strlen(err->msg);
		/* Keep the old RAM file's backup: it is the data. */
		snprintf(err->msg + n, sizeof(err->msg) - n,
			 "; putting the previous RAM file back failed too "
			 "(%s): the state file and %s are now from different "
			 "saves and a restore refuses them%s%s",
			 strerror(-rc), path,
			 *backup ? "; the previous RAM file is " : "",
			 *backup ? *backup : "");
	}
	free(*backup);
	*backup = NULL;
}

/* Seal both files under their temporary names. */
static int pair_seal(struct snap_ram_live *lv, struct snap_writer *w, bool sync,
		     struct err *err)
{
	int rc = snap_tmpfile_seal(&lv->f, sync, err);

	if (rc)
		return rc;
	rc = snap_writer_seal(w);
	if (rc)
		err_set(err, rc, "%s", snap_writer_error(w));
	return rc;
}

int snap_ram_pair_commit(struct snap_ram_live *lv, struct snap_writer *w,
			 unsigned flags, struct err *err)
{
	bool sync = flags & SNAP_RAM_FSYNC;
	char *backup = NULL;
	int rc, hold = -1;

	if (!lv || !w || (flags & ~SNAP_RAM_FSYNC)) {
		rc = err_set(err, -EINVAL, "snapshot commit: bad call");
		goto out;
	}
	rc = pair_seal(lv, w, sync, err);
	if (rc)
		goto out;
	/*
	 * Two renames, RAM first. The previous RAM file keeps a second name
	 * until the new state file is in place: if that rename fails, it
	 * goes back and the previous pair is exactly as it was.
	 */
	rc = link_backup(lv->f.path, &backup, &hold);
	if (rc) {
		err_set(err, rc, "%s: %s", lv->f.path, strerror(-rc));
		goto out;
	}
	rc = snap_fault(SNAP_FAULT_RAM_COMMIT);
	if (rc) {
		err_set(err, rc, "%s: rename: %s (injected fault)", lv->f.path,
			strerror(-rc));
		goto out;
	}
	rc = snap_tmpfile_publish(&lv->f, false, err);
	if (rc)
		goto out;
	rc = snap_writer_publish(w, false);
	if (rc) {
		err_set(err, rc, "%s", snap_writer_error(w));
		rollback_ram(lv->f.path, &backup, err);
		goto out;
	}
	/* Committed; if the backup name cannot go, only a stray name is left.
	 */
	if (backup && unlink(backup)) {
	}
	free(backup);
	backup = NULL;
	sweep_backups(lv->f.path); /* superseded now, if a save died */
	rc = sync ? snap_fsync_dir(lv->f.dir) : 0;
	if (rc)
		err_set(err, rc, "%s: fsync of its directory: %s", lv->f.path,
			strerror(-rc));
out:
	if (backup) {
		unlink(backup);
		free(backup);
	}
	if (hold >= 0)
		close(hold);
	snap_writer_abort(w);
	snap_ram_live_abort(lv);
	return rc;
}

int snap_ram_save(const struct guest_mem *m, const char *path, unsigned flags,
		  struct snap_ram_info *info,
		  const struct snap_ram_progress *pg)
{
	struct snap_ram_live *lv;
	int rc;

	if (!info || (flags & ~SNAP_RAM_FSYNC))
		return -EINVAL;
	rc = snap_ram_live_open(m, path, NULL, &lv);
	if (rc)
		return rc;
	rc = snap_ram_live_copy(lv, NULL, pg);
	if (rc) {
		snap_ram_live_abort(lv);
		return rc;
	}
	return snap_ram_live_commit(lv, flags, info);
}
