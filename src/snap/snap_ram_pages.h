/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest RAM page by page, as the RAM file code (src/snap/snap_ram_*.c)
 * sees it: where a flat RAM offset lives in this process, which pages can
 * hold data at all (so a save never reads untouched RAM), and the page
 * bitmaps a save keeps (pages written since the last pass, pages the file
 * holds data for). Not for use outside src/snap/.
 */
#ifndef KHYVE_SNAP_RAM_PAGES_H
#define KHYVE_SNAP_RAM_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_mem.h"

/* Host pointer of flat RAM offset @off, and bytes contiguous from there
 * (in *@avail); NULL if no region holds it. */
uint8_t *snap_ram_ptr(const struct guest_mem *m, uint64_t off, uint64_t *avail);
/* 0 if the regions tile [0, ram_size) in whole pages, else -EINVAL. */
int snap_ram_check_layout(const struct guest_mem *m);
bool snap_ram_page_is_zero(const uint8_t *p);

/*
 * Which pages can hold data: a page of an anonymous mapping that is
 * neither present nor swapped out reads as zero (/proc/self/pagemap); a
 * page of a file mapping (guest RAM after a mapped restore) always may.
 */
struct snap_ram_file_range {
	uintptr_t start, end; /* host addresses of a non-anonymous mapping */
};

struct snap_ram_pages {
	const struct guest_mem *m;
	int pagemap; /* -1: unavailable, every page may hold data */
	struct snap_ram_file_range *files;
	unsigned nfiles;
};

/*
 * Open /proc/self/pagemap now and use that descriptor from then on (main's
 * confinement, before it drops privileges: src/confine.c); 0 or -errno.
 */
int snap_ram_pages_keep_pagemap(void);
/* Never fails: without pagemap (or the mapping list) every page counts. */
void snap_ram_pages_open(struct snap_ram_pages *pp, const struct guest_mem *m);
void snap_ram_pages_close(struct snap_ram_pages *pp);
/*
 * For @n pages from host address @hva (all in one region): need[i] = 1
 * when page i may hold data, else 0.
 */
int snap_ram_pages_needed(const struct snap_ram_pages *pp, const uint8_t *hva,
			  uint64_t n, uint64_t *need);

/* Page bitmaps: bit i = flat RAM page i. */
static inline bool snap_bit_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static inline void snap_bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

static inline void snap_bit_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ULL << (i % 64));
}

/* Chunks (SNAP_RAM_CHUNK_SIZE) holding a page of @dirty, counted up to
 * @max. */
uint64_t snap_ram_dirty_chunks(uint64_t npages, const uint64_t *dirty,
			       uint64_t max);
/*
 * The pages of @dirty in chunk @c, as a chunk-relative bitmap in @sel
 * (SNAP_RAM_CHUNK_SIZE / PAGE_SIZE bits, cleared first); false if none.
 */
bool snap_ram_chunk_dirty(uint64_t npages, const uint64_t *dirty, uint64_t c,
			  uint64_t *sel);

#endif
