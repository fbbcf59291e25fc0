/* SPDX-License-Identifier: BSD-2-Clause */
/* Incremental snapshot chains: see snap_chain.h. */
#include "snap_chain.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common.h"
#include "snap_file.h"
#include "snap_ram_live.h"
#include "snap_ram_pages.h"
#include "snap_ram_restore.h"

#define PAR_HDR	      48  /* fixed part of the "parent" payload */
#define RUN_MAX_PAGES 256 /* pages per pread when applying a link */

void snap_chain_parent_free(struct snap_chain_parent *p)
{
	if (!p)
		return;
	free(p->pages);
	p->pages = NULL;
}

static uint64_t words_of(uint64_t npages)
{
	return (npages + 63) / 64;
}

int snap_chain_write_section(struct snap_writer *w,
			     const struct snap_chain_parent *p)
{
	size_t nlen = strlen(p->file), words = words_of(p->npages);
	size_t len = PAR_HDR + nlen + words * 8;
	uint8_t *buf;
	int rc;

	if (!snap_ram_name_ok(p->file) || nlen > SNAP_RAM_MAX_NAME || !p->pages)
		return -EINVAL;
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, p->id, SNAP_SAVE_ID_LEN);
	put_le64(buf + 16, p->state_hash);
	put_le32(buf + 24, p->depth);
	put_le16(buf + 28, (uint16_t)nlen);
	put_le64(buf + 32, p->npages);
	put_le64(buf + 40, p->held);
	memcpy(buf + PAR_HDR, p->file, nlen);
	for (size_t i = 0; i < words; i++)
		put_le64(buf + PAR_HDR + nlen + i * 8, p->pages[i]);
	/* Required: a khyve that cannot follow the chain must refuse it. */
	rc = snap_write_blob(w, SNAP_CHAIN_SECTION, 0, SNAP_CHAIN_VERSION, 0,
			     buf, len);
	free(buf);
	return rc;
}

int snap_chain_decode(const void *data, size_t len, uint64_t ram_size,
		      struct snap_chain_parent *p, const char *what,
		      struct err *err)
{
	const uint8_t *b = data;
	uint64_t words, held = 0;
	uint16_t nlen;

	memset(p, 0, sizeof(*p));
	if (len < PAR_HDR)
		return err_set(err, -EPROTO,
			       "%s: section 'parent': truncated (%zu bytes)",
			       what, len);
	memcpy(p->id, b, SNAP_SAVE_ID_LEN);
	p->state_hash = get_le64(b + 16);
	p->depth = get_le32(b + 24);
	nlen = get_le16(b + 28);
	p->npages = get_le64(b + 32);
	p->held = get_le64(b + 40);
	if (get_le16(b + 30))
		return err_set(err, -EPROTO,
			       "%s: section 'parent': reserved bytes not zero",
			       what);
	if (p->depth < 1 || p->depth >= SNAP_CHAIN_MAX)
		return err_set(err, -EPROTO,
			       "%s: section 'parent': field 'depth': %u is "
			       "not in 1..%u",
			       what, p->depth, SNAP_CHAIN_MAX - 1);
	if (p->npages != ram_size / PAGE_SIZE)
		return err_set(err, -EPROTO,
			       "%s: section 'parent': field 'pages': %" PRIu64
			       " pages for %" PRIu64 " bytes of RAM",
			       what, p->npages, ram_size);
	words = words_of(p->npages);
	if (!nlen || nlen > SNAP_RAM_MAX_NAME ||
	    len != PAR_HDR + nlen + words * 8)
		return err_set(err, -EPROTO,
			       "%s: section 'parent': %zu bytes do not match "
			       "its name and page bitmap",
			       what, len);
	memcpy(p->file, b + PAR_HDR, nlen);
	p->file[nlen] = '\0';
	if (strlen(p->file) != nlen || !snap_ram_name_ok(p->file))
		return err_set(err, -EPROTO,
			       "%s: section 'parent': the parent must be a "
			       "bare file name beside it",
			       what);
	p->pages = malloc(words * 8 + 8);
	if (!p->pages)
		return err_set(err, -ENOMEM, "%s: out of memory", what);
	for (uint64_t i = 0; i < words; i++) {
		p->pages[i] = get_le64(b + PAR_HDR + nlen + i * 8);
		held += (uint64_t)__builtin_popcountll(p->pages[i]);
	}
	if ((p->npages % 64 && p->pages[words - 1] >> (p->npages % 64)) ||
	    held != p->held) {
		snap_chain_parent_free(p);
		return err_set(err, -EPROTO,
			       "%s: section 'parent': the page bitmap does "
			       "not match its count",
			       what);
	}
	return 0;
}

int snap_chain_read_section(struct snap_reader *r, struct snap_chain_parent *p,
			    struct err *err)
{
	struct snap_ram_info ri = {0};
	const void *data;
	size_t len;
	uint16_t ver;
	int rc;

	memset(p, 0, sizeof(*p));
	if (!snap_has_section(r, SNAP_CHAIN_SECTION, 0))
		return -ENOENT;
	rc = snap_read_blob(r, SNAP_CHAIN_SECTION, 0, &data, &len, &ver, err);
	if (rc)
		return rc;
	if (ver != SNAP_CHAIN_VERSION)
		return err_set(err, -EPROTO,
			       "%s: section 'parent': version %u, this khyve "
			       "reads %u",
			       snap_reader_path(r), ver, SNAP_CHAIN_VERSION);
	rc = snap_ram_read_section(r, &ri, err);
	if (rc)
		return rc;
	rc = snap_chain_decode(data, len, ri.ram_size, p, snap_reader_path(r),
			       err);
	snap_ram_info_free(&ri);
	return rc;
}

/* Next run of set bits of @bm at or after *@pg, below @end: *@len pages. */
static bool next_run(const uint64_t *bm, uint64_t end, uint64_t *pg,
		     uint64_t *len, uint64_t max)
{
	uint64_t p = *pg;

	while (p < end) {
		uint64_t w = bm[p / 64] >> (p % 64);

		if (!w) {
			p = (p / 64 + 1) * 64;
			continue;
		}
		p += (uint64_t)__builtin_ctzll(w);
		break;
	}
	if (p >= end)
		return false;
	*pg = p;
	*len = 0;
	while (p + *len < end && *len < max && snap_bit_test(bm, p + *len))
		(*len)++;
	return true;
}

void snap_chain_keep_hashes(struct snap_ram_info *ram,
			    const uint64_t *parent_hashes,
			    const uint64_t *pages)
{
	uint64_t per = ram->chunk_size / PAGE_SIZE;
	uint64_t npages = ram->ram_size / PAGE_SIZE;

	for (uint32_t k = 0; k < ram->nchunks; k++) {
		uint64_t pg = k * per, n;

		if (!next_run(pages, MIN(npages, pg + per), &pg, &n, 1))
			ram->hashes[k] = parent_hashes[k];
	}
}

int snap_state_hash(const char *path, uint64_t *hash, struct err *err)
{
	XXH3_state_t *hs = XXH3_createState();
	uint8_t *buf = malloc(1 * MiB);
	struct stat st;
	off_t off = 0;
	int fd, rc = 0;

	if (!hs || !buf) {
		rc = err_set(err, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	fd = snap_open_regular(path, O_RDONLY, &st, err);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	XXH3_64bits_reset(hs);
	for (;;) {
		ssize_t n = pread(fd, buf, 1 * MiB, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = err_sys(err, "%s: read", path);
		if (n <= 0)
			break;
		XXH3_64bits_update(hs, buf, (size_t)n);
		off += n;
	}
	close(fd);
	*hash = XXH3_64bits_digest(hs);
out:
	free(buf);
	if (hs)
		XXH3_freeState(hs);
	return rc;
}

/* ---- opening a chain ---- */

/* Link @k read from @path; @child (NULL for the tip) says what it must be. */
static int link_read(struct snap_chain_link *k, const char *path,
		     const struct snap_chain_link *child, struct err *err)
{
	char have[SNAP_SAVE_ID_STR], need[SNAP_SAVE_ID_STR];
	struct snap_reader *r = NULL;
	int rc;

	snprintf(k->path, sizeof(k->path), "%s", path);
	rc = snap_reader_open(&r, path, err);
	if (rc)
		goto out;
	k->hdr = *snap_reader_header(r);
	k->state_hash = snap_reader_hash(r);
	if (child &&
	    (!k->hdr.has_save_id ||
	     memcmp(k->hdr.save_id, child->par.id, SNAP_SAVE_ID_LEN))) {
		snap_save_id_str(k->hdr.save_id, have);
		snap_save_id_str(child->par.id, need);
		rc = err_set(err, -ESTALE,
			     "%s: is save %s, but its child %s was taken "
			     "from save %s: not its parent (replaced, "
			     "reordered or renamed)",
			     path, have, child->path, need);
		goto out;
	}
	if (child && k->state_hash != child->par.state_hash) {
		rc = err_set(err, -ESTALE,
			     "%s: changed since its child %s was taken (state "
			     "file hash %016" PRIx64 ", recorded %016" PRIx64
			     ")",
			     path, child->path, k->state_hash,
			     child->par.state_hash);
		goto out;
	}
	rc = snap_ram_read_section(r, &k->ram, err);
	if (rc)
		goto out;
	if (child && k->ram.ram_size != child->ram.ram_size) {
		rc = err_set(err, -ESTALE,
			     "%s: %" PRIu64 " bytes of RAM, its child %s has "
			     "%" PRIu64,
			     path, k->ram.ram_size, child->path,
			     child->ram.ram_size);
		goto out;
	}
	rc = snap_chain_read_section(r, &k->par, err);
	if (rc == -ENOENT)
		rc = 0;
	if (rc)
		goto out;
	if (child && k->par.depth + 1 != child->par.depth) {
		rc = err_set(err, -ESTALE,
			     "%s: is %u links above a full snapshot, its "
			     "child %s says %u: a link is missing or "
			     "reordered",
			     path, k->par.depth, child->path,
			     child->par.depth - 1);
		goto out;
	}
	rc = snap_ram_resolve(path, k->ram.file, k->ram_path,
			      sizeof(k->ram_path));
	if (rc) {
		err_set(err, rc, "%s: section 'ram': bad RAM file name", path);
		goto out;
	}
	rc = snap_ram_check_file(k->ram_path, &k->ram, err);
out:
	snap_reader_close(r);
	return rc;
}

static void link_free(struct snap_chain_link *k)
{
	snap_ram_info_free(&k->ram);
	snap_chain_parent_free(&k->par);
}

int snap_chain_open(const char *tip, struct snap_chain *c, struct err *err)
{
	struct snap_chain_link *l = calloc(SNAP_CHAIN_MAX, sizeof(*l));
	unsigned n = 0;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	if (!l)
		return err_set(err, -ENOMEM, "%s: out of memory", tip);
	/* Tip first, down to the base; then reversed. */
	for (;;) {
		struct snap_chain_link *child = n ? &l[n - 1] : NULL;
		char path[4096];

		if (child && snap_ram_resolve(child->path, child->par.file,
					      path, sizeof(path))) {
			rc = err_set(err, -ENAMETOOLONG,
				     "%s: parent name too long", child->path);
			break;
		}
		rc = link_read(&l[n], child ? path : tip, child, err);
		if (rc && child)
			err_prefix(err, "parent of %s: ", child->path);
		if (rc)
			break;
		n++;
		if (!l[n - 1].par.pages)
			break; /* a full snapshot: the base */
		if (n == SNAP_CHAIN_MAX) {
			rc = err_set(err, -ELOOP,
				     "%s: chain longer than %u links", tip,
				     SNAP_CHAIN_MAX);
			break;
		}
	}
	if (rc) {
		for (unsigned i = 0; i <= n && i < SNAP_CHAIN_MAX; i++)
			link_free(&l[i]);
		free(l);
		return rc;
	}
	for (unsigned i = 0; i < n / 2; i++) {
		struct snap_chain_link t = l[i];

		l[i] = l[n - 1 - i];
		l[n - 1 - i] = t;
	}
	c->l = l;
	c->n = n;
	return 0;
}

void snap_chain_close(struct snap_chain *c)
{
	if (!c->l)
		return;
	for (unsigned i = 0; i < c->n; i++)
		link_free(&c->l[i]);
	free(c->l);
	c->l = NULL;
	c->n = 0;
}

/* ---- guest RAM from a chain ---- */

/* One increment's held pages into @m; zero pages stay untouched if zero. */
static int apply_link(const struct guest_mem *m,
		      const struct snap_chain_link *k, uint8_t *buf,
		      struct err *err)
{
	uint64_t pg = 0, n;
	int fd, rc = 0;

	fd = snap_ram_open(k->ram_path, m->ram_size, &k->ram, err);
	if (fd < 0)
		return fd;
	while (!rc &&
	       next_run(k->par.pages, k->par.npages, &pg, &n, RUN_MAX_PAGES)) {
		rc = snap_pread_full(fd, buf, n * PAGE_SIZE,
				     (off_t)(pg * PAGE_SIZE));
		if (rc) {
			err_set(err, rc, "%s: read: %s", k->ram_path,
				strerror(-rc));
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			const uint8_t *src = buf + i * PAGE_SIZE;
			uint64_t avail;
			uint8_t *dst =
				snap_ram_ptr(m, (pg + i) * PAGE_SIZE, &avail);

			if (!dst) {
				rc = err_set(err, -EINVAL,
					     "%s: bad guest RAM layout",
					     k->ram_path);
				break;
			}
			if (!snap_ram_page_is_zero(src))
				memcpy(dst, src, PAGE_SIZE);
			else if (!snap_ram_page_is_zero(dst))
				memset(dst, 0, PAGE_SIZE); /* became zero */
		}
		pg += n;
	}
	close(fd);
	return rc;
}

int snap_chain_load_eager(const struct guest_mem *m, const struct snap_chain *c,
			  const struct snap_ram_progress *pg, struct err *err)
{
	uint8_t *buf;
	int rc;

	if (!c->n)
		return err_set(err, -EINVAL, "empty snapshot chain");
	rc = snap_ram_load_eager(m, c->l[0].ram_path, &c->l[0].ram, pg, err);
	if (rc || c->n == 1)
		return rc;
	buf = malloc(RUN_MAX_PAGES * PAGE_SIZE);
	if (!buf)
		return err_set(err, -ENOMEM, "out of memory");
	for (unsigned i = 1; i < c->n && !rc; i++)
		rc = apply_link(m, &c->l[i], buf, err);
	free(buf);
	return rc;
}

int snap_chain_check_hashes(const struct guest_mem *m,
			    const struct snap_chain *c, struct err *err)
{
	const struct snap_chain_link *t = &c->l[c->n - 1];

	for (uint32_t i = 0; i < t->ram.nchunks; i++) {
		uint64_t off = (uint64_t)i * t->ram.chunk_size;
		uint64_t n = MIN(t->ram.chunk_size, m->ram_size - off);

		if (XXH3_64bits(m->base + off, n) != t->ram.hashes[i])
			return err_set(err, -EBADMSG,
				       "%s: chunk %u (offset 0x%" PRIx64
				       ") of the RAM its chain gives does "
				       "not match its hash in the state file",
				       t->path, i, off);
	}
	return 0;
}

/* Page i's newest holder: 0 the base, else the link index. */
static uint8_t *owners(const struct snap_chain *c, uint64_t npages)
{
	uint8_t *o = calloc(npages ? npages : 1, 1);

	if (!o)
		return NULL;
	for (unsigned k = 1; k < c->n; k++) {
		uint64_t pg = 0, n;

		while (next_run(c->l[k].par.pages, npages, &pg, &n,
				UINT64_MAX)) {
			memset(o + pg, (int)k, n);
			pg += n;
		}
	}
	return o;
}

/* Runs of pages with one increment as newest holder. */
static uint64_t count_runs(const uint8_t *o, uint64_t npages)
{
	uint64_t runs = 0;

	for (uint64_t i = 0; i < npages; i++)
		if (o[i] && (!i || o[i - 1] != o[i]))
			runs++;
	return runs;
}

uint64_t snap_chain_map_runs(const struct snap_chain *c)
{
	uint64_t npages = c->l[0].ram.ram_size / PAGE_SIZE, runs;
	uint8_t *o;

	if (c->n < 2)
		return 0;
	o = owners(c, npages);
	if (!o)
		return UINT64_MAX;
	runs = count_runs(o, npages);
	free(o);
	return runs;
}

int snap_chain_map(const struct guest_mem *m, const struct snap_chain *c,
		   int *base_fd, uint64_t *runs, struct err *err)
{
	uint64_t npages = m->ram_size / PAGE_SIZE;
	int fds[SNAP_CHAIN_MAX];
	uint8_t *o = NULL;
	unsigned opened = 1;
	int rc = 0;

	*base_fd = -1;
	*runs = 0;
	if (c->n > 1) {
		o = owners(c, npages);
		if (!o)
			return err_set(err, -ENOMEM, "out of memory");
		*runs = count_runs(o, npages);
		if (*runs > SNAP_CHAIN_MAP_MAX) {
			free(o);
			return err_set(err, -E2BIG,
				       "%s: %" PRIu64 " runs of changed pages "
				       "would need as many mappings (more "
				       "than %u)",
				       c->l[c->n - 1].path, *runs,
				       SNAP_CHAIN_MAP_MAX);
		}
	}
	/* Every file opened and checked before guest RAM changes. */
	for (; opened < c->n; opened++) {
		fds[opened] = snap_ram_open(c->l[opened].ram_path, m->ram_size,
					    &c->l[opened].ram, err);
		if (fds[opened] < 0) {
			rc = fds[opened];
			goto out;
		}
	}
	rc = snap_ram_map(m, c->l[0].ram_path, &c->l[0].ram, base_fd, err);
	for (uint64_t i = 0; !rc && o && i < npages;) {
		uint64_t j = i + 1;

		if (!o[i]) {
			i++;
			continue;
		}
		while (j < npages && o[j] == o[i])
			j++;
		if (mmap(m->base + i * PAGE_SIZE, (j - i) * PAGE_SIZE,
			 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
			 fds[o[i]], (off_t)(i * PAGE_SIZE)) == MAP_FAILED)
			rc = err_sys(err, "%s: mmap", c->l[o[i]].ram_path);
		i = j;
	}
	if (!rc && o)
		rc = guest_mem_dontdump(m, err); /* the overlays came without */
out:
	for (unsigned k = 1; k < opened; k++)
		close(fds[k]);
	free(o);
	return rc;
}

/* ---- verify ---- */

/* Chunk @ci of link @k's RAM file: its held pages over @buf. */
static int chunk_apply(int fd, const struct snap_chain_link *k, uint64_t ci,
		       uint64_t csize, uint64_t ram_size, uint8_t *buf,
		       struct err *err)
{
	uint64_t first = ci * csize / PAGE_SIZE;
	uint64_t end = MIN(ci * csize + csize, ram_size) / PAGE_SIZE;
	uint64_t pg = first, n;
	int rc;

	while (next_run(k->par.pages, end, &pg, &n, UINT64_MAX)) {
		rc = snap_pread_full(fd, buf + (pg - first) * PAGE_SIZE,
				     n * PAGE_SIZE, (off_t)(pg * PAGE_SIZE));
		if (rc)
			return err_set(err, rc, "%s: read: %s", k->ram_path,
				       strerror(-rc));
		pg += n;
	}
	return 0;
}

int snap_chain_verify(const struct snap_chain *c, FILE *out, struct err *err)
{
	const struct snap_chain_link *b = &c->l[0];
	uint64_t cs = b->ram.chunk_size, ram_size = b->ram.ram_size;
	int fds[SNAP_CHAIN_MAX];
	unsigned opened = 0;
	uint8_t *buf = NULL;
	int rc = 0;

	for (unsigned k = 1; k < c->n; k++)
		if (c->l[k].ram.chunk_size != cs)
			return err_set(err, -EPROTO,
				       "%s: chunk size %" PRIu64
				       " differs from its base's",
				       c->l[k].path, c->l[k].ram.chunk_size);
	for (; opened < c->n; opened++) {
		fds[opened] = snap_ram_open(c->l[opened].ram_path, ram_size,
					    &c->l[opened].ram, err);
		if (fds[opened] < 0) {
			rc = fds[opened];
			goto out;
		}
		posix_fadvise(fds[opened], 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	buf = malloc(cs);
	if (!buf) {
		rc = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t ci = 0; !rc && ci < b->ram.nchunks; ci++) {
		uint64_t off = ci * cs, n = MIN(cs, ram_size - off);

		rc = snap_pread_full(fds[0], buf, n, (off_t)off);
		if (rc) {
			err_set(err, rc, "%s: read: %s", b->ram_path,
				strerror(-rc));
			break;
		}
		for (unsigned k = 0; !rc && k < c->n; k++) {
			if (k)
				rc = chunk_apply(fds[k], &c->l[k], ci, cs,
						 ram_size, buf, err);
			if (!rc &&
			    XXH3_64bits(buf, n) != c->l[k].ram.hashes[ci])
				rc = err_set(err, -EBADMSG,
					     "%s: chunk %u (offset 0x%" PRIx64
					     ") does not match its hash%s",
					     c->l[k].ram_path, ci, off,
					     k ? " (with its chain below)"
					       : "");
		}
	}
	for (unsigned k = 0; !rc && k < c->n; k++)
		fprintf(out, "link %u %s: ok (%s, %u chunks%s)\n", k,
			c->l[k].path, k ? "increment" : "full", b->ram.nchunks,
			k ? ", with the links below" : "");
out:
	for (unsigned k = 0; k < opened; k++)
		close(fds[k]);
	free(buf);
	return rc;
}

/* ---- merge ---- */

/* What a merge replaces: nothing, a regular file, or the tip itself. */
static int merge_dest_ok(const struct snap_chain *c, const char *out,
			 struct err *err)
{
	struct stat st, ls;

	if (lstat(out, &st))
		return errno == ENOENT ? 0 : err_sys(err, "%s", out);
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EEXIST,
			       "%s: %s is there, not a regular file: not "
			       "replacing it",
			       out, snap_file_type(st.st_mode));
	for (unsigned k = 0; k + 1 < c->n; k++)
		if (!stat(c->l[k].path, &ls) && ls.st_dev == st.st_dev &&
		    ls.st_ino == st.st_ino)
			return err_set(err, -EBUSY,
				       "%s: is link %u of the chain being "
				       "merged: its children would lose their "
				       "parent",
				       out, k);
	return 0;
}

int snap_scratch_mem(struct guest_mem *m, uint64_t size, struct err *err)
{
	void *p;

	if (guest_mem_layout(m, size))
		return err_set(err, -EINVAL, "bad RAM size %" PRIu64, size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return err_sys(err, "mmap of %" PRIu64 " bytes", size);
	m->base = p;
	for (unsigned i = 0; i < m->nr; i++)
		m->r[i].hva = m->base + m->r[i].offset;
	return 0;
}

void snap_scratch_free(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->ram_size);
	m->base = NULL;
}

/* The tip's state file with the merged RAM file's section, no parent. */
static int merge_state(const struct snap_chain_link *t, const char *out,
		       const struct snap_ram_info *ram, const uint8_t *id,
		       struct snap_writer **wp, struct err *err)
{
	struct snap_reader *r = NULL;
	struct snap_writer *w = NULL;
	int rc = snap_reader_open(&r, t->path, err);

	if (rc)
		return rc;
	if (snap_reader_hash(r) != t->state_hash) {
		rc = err_set(err, -ESTALE, "%s: changed while merging",
			     t->path);
		goto out;
	}
	rc = snap_writer_open(&w, out, &t->hdr.host, id);
	if (rc) {
		err_set(err, rc, "%s: %s", out, strerror(-rc));
		goto out;
	}
	for (unsigned i = 0; !rc && i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;

		snap_reader_section(r, i, &si);
		if (!strcmp(si.name, SNAP_CHAIN_SECTION))
			continue;
		if (!strcmp(si.name, SNAP_RAM_SECTION))
			rc = snap_ram_write_section(w, ram);
		else
			rc = snap_write_copy(w, r, i);
	}
	if (rc) {
		err_set(err, rc, "%s: %s", out, snap_writer_why(w, rc));
		snap_writer_abort(w);
		goto out;
	}
	*wp = w;
out:
	snap_reader_close(r);
	return rc;
}

int snap_chain_merge(const char *tip, const char *out, bool fsync,
		     struct err *err)
{
	struct snap_chain c;
	struct guest_mem m = {0};
	struct snap_ram_live *lv = NULL;
	struct snap_writer *w = NULL;
	struct snap_ram_info info = {0};
	uint8_t id[SNAP_SAVE_ID_LEN];
	char ram_out[4096];
	int rc;

	rc = snap_chain_open(tip, &c, err);
	if (rc)
		return rc;
	rc = merge_dest_ok(&c, out, err);
	if (!rc && snap_ram_default_path(out, ram_out, sizeof(ram_out)))
		rc = err_set(err, -ENAMETOOLONG, "%s: name too long", out);
	if (!rc)
		rc = snap_scratch_mem(&m, c.l[0].ram.ram_size, err);
	if (rc)
		goto out;
	/* Composed and checked in memory first: the writer is a save's. */
	rc = snap_chain_load_eager(&m, &c, NULL, err);
	if (!rc)
		rc = snap_chain_check_hashes(&m, &c, err);
	if (!rc && (rc = snap_save_id_new(id)))
		err_set(err, rc, "no random save id: %s", strerror(-rc));
	if (rc)
		goto out;
	rc = snap_ram_live_open(&m, ram_out, id, &lv);
	if (!rc)
		rc = snap_ram_live_copy(lv, NULL, NULL);
	if (!rc)
		rc = snap_ram_live_info(lv, &info);
	if (rc) {
		err_set(err, rc, "%s: %s", ram_out, strerror(-rc));
		goto out;
	}
	if (memcmp(info.hashes, c.l[c.n - 1].ram.hashes,
		   info.nchunks * sizeof(*info.hashes))) {
		rc = err_set(err, -EIO, "%s: merged RAM hashes differ",
			     ram_out);
		goto out;
	}
	rc = merge_state(&c.l[c.n - 1], out, &info, id, &w, err);
	if (rc)
		goto out;
	rc = snap_ram_pair_commit(lv, w, fsync ? SNAP_RAM_FSYNC : 0, err);
	lv = NULL;
out:
	snap_ram_live_abort(lv);
	snap_ram_info_free(&info);
	snap_scratch_free(&m);
	snap_chain_close(&c);
	return rc;
}
