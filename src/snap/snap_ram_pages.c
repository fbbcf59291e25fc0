/* SPDX-License-Identifier: BSD-2-Clause */
/* Guest RAM page by page for the RAM file code: see snap_ram_pages.h. */
#include "snap_ram_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "snap_file.h"
#include "snap_ram.h"

uint8_t *snap_ram_ptr(const struct guest_mem *m, uint64_t off, uint64_t *avail)
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
int snap_ram_check_layout(const struct guest_mem *m)
{
	uint64_t off = 0, avail;

	if (!m || !m->ram_size || m->ram_size % PAGE_SIZE)
		return -EINVAL;
	while (off < m->ram_size) {
		if (!snap_ram_ptr(m, off, &avail) || avail % PAGE_SIZE)
			return -EINVAL;
		off += avail;
	}
	return off == m->ram_size ? 0 : -EINVAL;
}

bool snap_ram_page_is_zero(const uint8_t *p)
{
	uint64_t first;

	/* Cheap reject on the first word, then glibc's vectorised memcmp. */
	memcpy(&first, p, sizeof(first));
	return !first && !memcmp(p, p + 8, PAGE_SIZE - 8);
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
#define PM_PRESENT (1ULL << 63)
#define PM_SWAP	   (1ULL << 62)

/* Does the mapping [start, end) overlap guest RAM? */
static bool overlaps_ram(const struct guest_mem *m, uintptr_t start,
			 uintptr_t end)
{
	for (unsigned i = 0; i < m->nr; i++) {
		uint64_t avail;
		uint8_t *b = snap_ram_ptr(m, m->r[i].offset, &avail);

		if (b && start < (uintptr_t)b + avail && end > (uintptr_t)b)
			return true;
	}
	return false;
}

/* Non-anonymous mappings overlapping guest RAM, from /proc/self/maps. */
static int find_file_ranges(struct snap_ram_pages *pp)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[4096];
	int rc = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, ino, pgoff;
		struct snap_ram_file_range *n;
		unsigned maj, min;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end,
			   perms, &pgoff, &maj, &min, &ino) != 7) {
			rc = -EINVAL;
			break;
		}
		if (!ino && !maj && !min)
			continue; /* anonymous */
		if (!overlaps_ram(pp->m, start, end))
			continue;
		/*
		 * One range for adjacent mappings: a mapped restore of an
		 * incremental chain leaves one per run of changed pages (up
		 * to thousands), all of them file pages alike.
		 */
		if (pp->nfiles && pp->files[pp->nfiles - 1].end == start) {
			pp->files[pp->nfiles - 1].end = end;
			continue;
		}
		n = realloc(pp->files, (pp->nfiles + 1) * sizeof(*n));
		if (!n) {
			rc = -ENOMEM;
			break;
		}
		pp->files = n;
		n[pp->nfiles++] = (struct snap_ram_file_range){start, end};
	}
	fclose(f);
	return rc;
}

/*
 * /proc/self/pagemap opened before khyve dropped its privileges: a
 * process that changed uid is not dumpable, and its own /proc files then
 * belong to root (docs/security.md, "Confinement").
 */
static int kept_pagemap = -1;

int snap_ram_pages_keep_pagemap(void)
{
	if (kept_pagemap < 0)
		kept_pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return kept_pagemap < 0 ? -errno : 0;
}

void snap_ram_pages_open(struct snap_ram_pages *pp, const struct guest_mem *m)
{
	memset(pp, 0, sizeof(*pp));
	pp->m = m;
	pp->pagemap =
		kept_pagemap >= 0
			? fcntl(kept_pagemap, F_DUPFD_CLOEXEC, 0)
			: open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	/* Without the mapping list we cannot tell file pages: read all. */
	if (pp->pagemap >= 0 && find_file_ranges(pp)) {
		close(pp->pagemap);
		pp->pagemap = -1;
	}
}

void snap_ram_pages_close(struct snap_ram_pages *pp)
{
	if (pp->pagemap >= 0)
		close(pp->pagemap);
	free(pp->files);
	pp->pagemap = -1;
	pp->files = NULL;
	pp->nfiles = 0;
}

/* The ranges are in address order, as /proc/self/maps lists them. */
static bool in_file_range(const struct snap_ram_pages *pp, uintptr_t a)
{
	unsigned lo = 0, hi = pp->nfiles;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (a < pp->files[mid].start)
			hi = mid;
		else if (a >= pp->files[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

int snap_ram_pages_needed(const struct snap_ram_pages *pp, const uint8_t *hva,
			  uint64_t n, uint64_t *need)
{
	int rc = 0;

	/* Without pagemap every entry says "present". */
	if (pp->pagemap < 0)
		for (uint64_t i = 0; i < n; i++)
			need[i] = PM_PRESENT;
	else
		rc = snap_pread_full(pp->pagemap, need, n * 8,
				     (off_t)((uintptr_t)hva / PAGE_SIZE * 8));
	if (rc)
		return rc;
	for (uint64_t i = 0; i < n; i++)
		need[i] = (need[i] & (PM_PRESENT | PM_SWAP)) ||
			  in_file_range(pp, (uintptr_t)(hva + i * PAGE_SIZE));
	return 0;
}

uint64_t snap_ram_dirty_chunks(uint64_t npages, const uint64_t *dirty,
			       uint64_t max)
{
	const uint64_t per = SNAP_RAM_CHUNK_SIZE / PAGE_SIZE / 64; /* words */
	uint64_t words = (npages + 63) / 64, n = 0;

	for (uint64_t w0 = 0; w0 < words && n < max; w0 += per)
		for (uint64_t w = w0; w < MIN(w0 + per, words); w++)
			if (dirty[w]) {
				n++;
				break;
			}
	return n;
}

bool snap_ram_chunk_dirty(uint64_t npages, const uint64_t *dirty, uint64_t c,
			  uint64_t *sel)
{
	const uint64_t per = SNAP_RAM_CHUNK_SIZE / PAGE_SIZE; /* 512 */
	uint64_t p0 = c * per, p1 = MIN(p0 + per, npages);
	bool any = false;

	memset(sel, 0, per / 8);
	for (uint64_t p = p0; p < p1; p++)
		if (snap_bit_test(dirty, p)) {
			snap_bit_set(sel, p - p0);
			any = true;
		}
	return any;
}
