/* SPDX-License-Identifier: BSD-2-Clause */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "guest_mem.h"
#include "unit.h"

static void test_layout_small(void)
{
	struct guest_mem m;

	CHECK_EQ(guest_mem_layout(&m, 512 * MiB), 0);
	CHECK_EQ(m.nr, 1);
	CHECK_EQ(m.r[0].size, 512 * MiB);
	CHECK_EQ(guest_mem_end(&m), 512 * MiB);
}

static void test_layout_above_4g(void)
{
	struct guest_mem m;

	CHECK_EQ(guest_mem_layout(&m, 6 * GiB), 0);
	CHECK_EQ(m.nr, 2);
	CHECK_EQ(m.r[0].size, 3 * GiB);
	CHECK_EQ(m.r[1].gpa, 4 * GiB);
	CHECK_EQ(m.r[1].size, 3 * GiB);
	CHECK_EQ(m.r[1].offset, 3 * GiB);
	CHECK_EQ(guest_mem_end(&m), 7 * GiB);
}

static void test_layout_bad(void)
{
	struct guest_mem m;

	CHECK_EQ(guest_mem_layout(&m, 0), -EINVAL);
	CHECK_EQ(guest_mem_layout(&m, 4097), -EINVAL);
}

static void test_ptr_bounds(void)
{
	struct guest_mem m;
	uint8_t *ram = calloc(1, 64 * KiB);

	guest_mem_layout(&m, 64 * KiB);
	m.r[0].hva = ram;
	CHECK(guest_mem_ptr(&m, 0, 64 * KiB) == ram);
	CHECK(guest_mem_ptr(&m, 64 * KiB - 1, 1) == ram + 64 * KiB - 1);
	CHECK(guest_mem_ptr(&m, 64 * KiB - 1, 2) == NULL);
	CHECK(guest_mem_ptr(&m, 64 * KiB, 1) == NULL);
	CHECK(guest_mem_ptr(&m, 8, UINT64_MAX) == NULL);
	CHECK(guest_mem_ptr(&m, UINT64_MAX, 1) == NULL);
	CHECK_EQ(guest_mem_write(&m, 100, "abc", 3), 0);
	CHECK(ram[101] == 'b');
	CHECK_EQ(guest_mem_read(&m, 64 * KiB - 2, ram, 3), -EFAULT);
	free(ram);
}

/* ---- own dirty tracking ---- */

static bool bit(const uint64_t *bm, uint64_t pg)
{
	return bm[pg / 64] >> (pg % 64) & 1;
}

static uint64_t nbits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

/* Off (the normal case): writes mark nothing and allocate nothing. */
static void test_dirty_off(void)
{
	struct guest_mem m;
	uint8_t *ram = calloc(1, 64 * KiB);
	uint64_t bm[1] = {0};

	guest_mem_layout(&m, 64 * KiB);
	m.r[0].hva = ram;
	CHECK(!guest_mem_dirty_active(&m));
	CHECK_EQ(guest_mem_write(&m, 100, "abc", 3), 0);
	guest_mem_mark_dirty(&m, 0, 4096);
	guest_mem_mark_dirty_hva(&m, ram, 4096);
	CHECK(m.dirty == NULL);
	guest_mem_dirty_collect(&m, bm); /* no bitmap: nothing, no crash */
	CHECK_EQ(bm[0], 0);
	guest_mem_dirty_free(&m);
	free(ram);
}

/* Pages by guest physical address, both regions, edges and clamping. */
static void test_dirty_mark_gpa(void)
{
	struct guest_mem m;
	uint64_t words, *bm;
	const uint64_t hi = 3 * GiB / PAGE_SIZE; /* flat page of 4 GiB */

	guest_mem_layout(&m, 4 * GiB); /* 3 GiB low + 1 GiB high */
	words = m.ram_size / PAGE_SIZE / 64;
	bm = calloc(words, 8);
	CHECK_EQ(guest_mem_dirty_start(&m), 0);
	CHECK(guest_mem_dirty_active(&m));
	guest_mem_mark_dirty(&m, 0, 1);			 /* page 0 */
	guest_mem_mark_dirty(&m, 2 * 4096 - 1, 2);	 /* pages 1, 2 */
	guest_mem_mark_dirty(&m, 63 * 4096 + 5, 4096);	 /* 63, 64 */
	guest_mem_mark_dirty(&m, 128 * 4096, 64 * 4096); /* one whole word */
	guest_mem_mark_dirty(&m, 300 * 4096, 0);	 /* empty */
	/* Past low RAM's end: clamped, the high region is not touched. */
	guest_mem_mark_dirty(&m, 3 * GiB - 4096, 3 * 4096);
	guest_mem_mark_dirty(&m, 3 * GiB + 4096, 8); /* PCI hole: nothing */
	guest_mem_mark_dirty(&m, 4 * GiB + 5 * 4096, 4096); /* high RAM */
	guest_mem_mark_dirty(&m, 5 * GiB, 4096);	    /* beyond RAM */
	guest_mem_dirty_collect(&m, bm);
	CHECK(bit(bm, 0) && bit(bm, 1) && bit(bm, 2) && !bit(bm, 3));
	CHECK(!bit(bm, 62) && bit(bm, 63) && bit(bm, 64) && !bit(bm, 65));
	CHECK_EQ(bm[2], ~0ULL);
	CHECK(!bit(bm, 300));
	CHECK(bit(bm, hi - 1) && !bit(bm, hi));
	CHECK(bit(bm, hi + 5));
	CHECK_EQ(nbits(bm, words), 3 + 2 + 64 + 1 + 1);
	/* Collecting cleared them; only new marks come next time. */
	memset(bm, 0, words * 8);
	guest_mem_mark_dirty(&m, 4096 * 7, 1);
	guest_mem_dirty_collect(&m, bm);
	CHECK_EQ(nbits(bm, words), 1);
	CHECK(bit(bm, 7));
	/* Off: no marks; on again: starts clean. */
	guest_mem_dirty_stop(&m);
	CHECK(!guest_mem_dirty_active(&m));
	guest_mem_mark_dirty(&m, 4096 * 9, 1);
	CHECK_EQ(guest_mem_dirty_start(&m), 0);
	memset(bm, 0, words * 8);
	guest_mem_dirty_collect(&m, bm);
	CHECK_EQ(nbits(bm, words), 0);
	guest_mem_dirty_free(&m);
	CHECK(m.dirty == NULL && !guest_mem_dirty_active(&m));
	free(bm);
}

/* By host address (iovecs): regions in separate buffers, no base. */
static void test_dirty_mark_hva(void)
{
	struct guest_mem m;
	uint8_t *lo = calloc(1, 4 * MiB), *hi = calloc(1, 4 * MiB);
	uint64_t bm[(3 * GiB + 4 * MiB) / PAGE_SIZE / 64];
	const uint64_t hp = 3 * GiB / PAGE_SIZE;
	uint8_t other[16];

	memset(bm, 0, sizeof(bm));
	/* 3 GiB + 4 MiB: only the first 4 MiB of low RAM are backed here. */
	guest_mem_layout(&m, 3 * GiB + 4 * MiB);
	m.r[0].hva = lo;
	m.r[1].hva = hi;
	CHECK_EQ(guest_mem_dirty_start(&m), 0);
	guest_mem_mark_dirty_hva(&m, lo + 4096 * 3 + 1, 4096); /* 3, 4 */
	guest_mem_mark_dirty_hva(&m, hi + 4096 * 2, 1);	       /* high 2 */
	guest_mem_mark_dirty_hva(&m, hi + 4 * MiB - 1, 4096);  /* clamped */
	guest_mem_mark_dirty_hva(&m, other, sizeof(other));    /* not RAM */
	CHECK_EQ(guest_mem_write(&m, 4 * GiB + 4096 * 9, "z", 1), 0);
	CHECK(hi[4096 * 9] == 'z');
	guest_mem_dirty_collect(&m, bm);
	CHECK(bit(bm, 3) && bit(bm, 4) && !bit(bm, 5));
	CHECK(bit(bm, hp + 2) && bit(bm, hp + 9));
	CHECK(bit(bm, hp + 1023));
	CHECK_EQ(nbits(bm, ARRAY_SIZE(bm)), 5);
	guest_mem_dirty_free(&m);
	free(lo);
	free(hi);
}

/*
 * Writers mark while the collector collects (a pre-copy round while
 * devices run): every mark ends up in exactly the union of what was
 * collected, none is lost between the exchange and a concurrent OR.
 */
#define RACE_PAGES   4096
#define RACE_THREADS 3

struct race {
	struct guest_mem *m;
	unsigned id;
	uint8_t *ram;
};

static void *race_writer(void *arg)
{
	struct race *r = arg;

	for (unsigned rep = 0; rep < 20; rep++)
		for (uint64_t pg = r->id; pg < RACE_PAGES; pg += RACE_THREADS) {
			/* The write, then its mark (as virtq_push does). */
			r->ram[pg * PAGE_SIZE] = (uint8_t)rep;
			guest_mem_mark_dirty_hva(r->m, r->ram + pg * PAGE_SIZE,
						 1);
		}
	return NULL;
}

static void test_dirty_concurrent_collect(void)
{
	struct guest_mem m;
	uint8_t *ram = calloc(1, RACE_PAGES * PAGE_SIZE);
	uint64_t all[RACE_PAGES / 64] = {0}, bm[RACE_PAGES / 64];
	pthread_t th[RACE_THREADS];
	struct race rc[RACE_THREADS];
	unsigned rounds = 0;

	guest_mem_layout(&m, RACE_PAGES * PAGE_SIZE);
	m.r[0].hva = ram;
	CHECK_EQ(guest_mem_dirty_start(&m), 0);
	for (unsigned i = 0; i < RACE_THREADS; i++) {
		rc[i] = (struct race){&m, i, ram};
		CHECK_EQ(pthread_create(&th[i], NULL, race_writer, &rc[i]), 0);
	}
	for (; rounds < 200; rounds++) {
		memset(bm, 0, sizeof(bm));
		guest_mem_dirty_collect(&m, bm);
		for (unsigned w = 0; w < ARRAY_SIZE(bm); w++)
			all[w] |= bm[w];
	}
	for (unsigned i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	/* The last marks are there for the final collect (writers gone). */
	guest_mem_dirty_collect(&m, all);
	CHECK_EQ(nbits(all, ARRAY_SIZE(all)), RACE_PAGES);
	memset(bm, 0, sizeof(bm));
	guest_mem_dirty_collect(&m, bm);
	CHECK_EQ(nbits(bm, ARRAY_SIZE(bm)), 0);
	guest_mem_dirty_free(&m);
	free(ram);
}

int main(void)
{
	RUN(test_layout_small);
	RUN(test_layout_above_4g);
	RUN(test_layout_bad);
	RUN(test_ptr_bounds);
	RUN(test_dirty_off);
	RUN(test_dirty_mark_gpa);
	RUN(test_dirty_mark_hva);
	RUN(test_dirty_concurrent_collect);
	return unit_done();
}
