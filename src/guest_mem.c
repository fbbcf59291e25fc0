/* SPDX-License-Identifier: BSD-2-Clause */
#include "guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"

int guest_mem_layout(struct guest_mem *m, uint64_t ram_size)
{
	uint64_t low;

	if (ram_size == 0 || ram_size % PAGE_SIZE)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->ram_size = ram_size;
	low = MIN(ram_size, GUEST_PCI_HOLE_START);
	m->r[0] = (struct guest_mem_region){.gpa = 0, .size = low, .offset = 0};
	m->nr = 1;
	if (ram_size > low) {
		m->r[1] = (struct guest_mem_region){.gpa = GUEST_PCI_HOLE_END,
						    .size = ram_size - low,
						    .offset = low};
		m->nr = 2;
	}
	return 0;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->nr; i++) {
		const struct guest_mem_region *r = &m->r[i];

		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		if (len > r->size - (gpa - r->gpa) || !r->hva)
			return NULL;
		return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf,
		   uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf,
		    uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	guest_mem_mark_dirty(m, gpa, len);
	return 0;
}

static uint64_t dirty_words(const struct guest_mem *m)
{
	return (m->ram_size / PAGE_SIZE + 63) / 64;
}

int guest_mem_dirty_start(struct guest_mem *m)
{
	uint64_t n = dirty_words(m);

	if (!m->dirty) {
		m->dirty = calloc(n, sizeof(*m->dirty));
		if (!m->dirty)
			return -ENOMEM;
	} else {
		/* Atomic: a writer that saw the last run on may still mark. */
		for (uint64_t w = 0; w < n; w++)
			__atomic_store_n(&m->dirty[w], 0, __ATOMIC_RELAXED);
	}
	/*
	 * The bitmap is published by this store. The fence pairs with the
	 * one in guest_mem_dirty_active() (store-buffering pattern): a writer
	 * either sees tracking on, or its write came before the fence and a
	 * copy of RAM started after we return reads it.
	 */
	__atomic_store_n(&m->dirty_on, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

void guest_mem_dirty_collect(struct guest_mem *m, uint64_t *bm)
{
	if (!m->dirty)
		return;
	for (uint64_t w = 0, n = dirty_words(m); w < n; w++) {
		/* A mark this load misses stays for the next collect. */
		if (!__atomic_load_n(&m->dirty[w], __ATOMIC_RELAXED))
			continue;
		/* Acquire: the marked writes are visible to our copy. */
		bm[w] |= __atomic_exchange_n(&m->dirty[w], 0, __ATOMIC_ACQ_REL);
	}
}

void guest_mem_dirty_stop(struct guest_mem *m)
{
	__atomic_store_n(&m->dirty_on, 0, __ATOMIC_SEQ_CST);
}

void guest_mem_dirty_free(struct guest_mem *m)
{
	guest_mem_dirty_stop(m);
	free(m->dirty);
	m->dirty = NULL;
}

bool guest_mem_dirty_active(const struct guest_mem *m)
{
	/* See guest_mem_dirty_start(): the write being marked is done. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&m->dirty_on, __ATOMIC_ACQUIRE);
}

/* Set the bits of flat RAM bytes [off, off + len), len > 0. */
static void mark_flat(const struct guest_mem *m, uint64_t off, uint64_t len)
{
	uint64_t pg = off / PAGE_SIZE, last = (off + len - 1) / PAGE_SIZE;

	while (pg <= last) {
		uint64_t b = pg % 64, n = MIN(64 - b, last - pg + 1);
		uint64_t mask = (n == 64 ? ~0ULL : (1ULL << n) - 1) << b;

		/* Release: the write is visible to whoever collects the bit. */
		__atomic_fetch_or(&m->dirty[pg / 64], mask, __ATOMIC_RELEASE);
		pg += n;
	}
}

void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (!len || !guest_mem_dirty_active(m))
		return;
	for (unsigned i = 0; i < m->nr; i++) {
		const struct guest_mem_region *r = &m->r[i];

		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		mark_flat(m, r->offset + (gpa - r->gpa),
			  MIN(len, r->size - (gpa - r->gpa)));
		return;
	}
}

void guest_mem_mark_dirty_hva(const struct guest_mem *m, const void *hva,
			      uint64_t len)
{
	uintptr_t a = (uintptr_t)hva;

	if (!len || !guest_mem_dirty_active(m))
		return;
	for (unsigned i = 0; i < m->nr; i++) {
		const struct guest_mem_region *r = &m->r[i];
		const uint8_t *base = r->hva;

		if (!base && m->base)
			base = m->base + r->offset;
		if (!base || a < (uintptr_t)base ||
		    a - (uintptr_t)base >= r->size)
			continue;
		mark_flat(m, r->offset + (a - (uintptr_t)base),
			  MIN(len, r->size - (a - (uintptr_t)base)));
		return;
	}
}

uint64_t guest_mem_end(const struct guest_mem *m)
{
	const struct guest_mem_region *r = &m->r[m->nr - 1];

	return r->gpa + r->size;
}

int guest_mem_dontdump(const struct guest_mem *m, struct err *e)
{
	/* A private file mapping (a mapped restore) starts without the flag. */
	if (madvise(m->base, m->ram_size, MADV_DONTDUMP) < 0)
		return err_sys(e, "madvise(MADV_DONTDUMP) of guest RAM");
	return 0;
}
