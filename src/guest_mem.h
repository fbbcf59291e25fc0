/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest physical memory: up to two RAM regions around the 32-bit PCI hole.
 *
 *   [0, low_size)                       low RAM (low_size <= 3 GiB)
 *   [3 GiB, 4 GiB)                      MMIO hole: PCI BARs, IOAPIC, LAPIC
 *   [4 GiB, 4 GiB + ram - low_size)     high RAM
 *
 * guest_mem_ptr() is the only way device models touch guest memory: it
 * bounds-checks every access so a hostile guest cannot point a device
 * outside the memory it was given.
 *
 * Dirty tracking of the VMM's own writes: while a live checkpoint copies
 * RAM, KVM's dirty log sees what vCPUs (and KVM itself) write, but not
 * what khyve's threads write through their own mapping (device data,
 * used rings, emulated instructions). Every such write is marked here,
 * after it is done: guest_mem_write() does it, virtq_push() marks a
 * chain's device-writable buffers and the used ring, and anything else
 * writing through guest_mem_ptr() at run time must call
 * guest_mem_mark_dirty(). Marking costs a fence and a load while no
 * checkpoint runs.
 */
#ifndef KHYVE_GUEST_MEM_H
#define KHYVE_GUEST_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define GUEST_MEM_MAX_REGIONS 2
#define GUEST_PCI_HOLE_START  0xC0000000ULL
#define GUEST_PCI_HOLE_END    0x100000000ULL

struct guest_mem_region {
	uint64_t gpa;	 /* guest physical base */
	uint64_t size;	 /* bytes */
	uint64_t offset; /* offset of this region in the flat RAM (and RAM file)
			  */
	uint8_t *hva;	 /* host mapping, NULL until mapped */
};

struct guest_mem {
	uint64_t ram_size; /* total bytes of RAM */
	unsigned nr;
	struct guest_mem_region r[GUEST_MEM_MAX_REGIONS];
	uint8_t *base; /* one host mapping of all RAM, regions point into it */
	/*
	 * Flat RAM pages (bit i = bytes [i * 4096, +4096) of the flat RAM)
	 * the VMM wrote while dirty_on; allocated by the first
	 * guest_mem_dirty_start() and kept until guest_mem_dirty_free(), so
	 * a writer that saw dirty_on never touches freed memory.
	 */
	uint64_t *dirty;
	int dirty_on; /* atomic */
};

/*
 * Keep guest RAM (m->base, m->ram_size) out of core dumps (MADV_DONTDUMP):
 * after it is mapped, and again whenever a MAP_FIXED mapping replaces part
 * of it (a mapped restore), since a new mapping starts without the flag.
 */
int guest_mem_dontdump(const struct guest_mem *m, struct err *e);
/* Compute the region layout for @ram_size bytes (pure; maps nothing). */
int guest_mem_layout(struct guest_mem *m, uint64_t ram_size);
/* Host pointer for [gpa, gpa+len) if it lies entirely inside one region. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Copy helpers; -EFAULT if the range is not guest RAM. */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf,
		   uint64_t len);
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf,
		    uint64_t len);
/*
 * Own dirty tracking (see above). _start clears the bitmap and turns
 * marking on (-ENOMEM if the bitmap cannot be allocated); a copy of RAM
 * begun after it returns misses no later write. _collect moves the pages
 * marked so far into @bm (flat RAM page bitmap, ORed) and clears them,
 * atomically per word, so it may run while writers mark: a write marked
 * after its page was collected is collected next time. _stop turns
 * marking off; _free releases the bitmap (no writer may be left).
 */
int guest_mem_dirty_start(struct guest_mem *m);
void guest_mem_dirty_collect(struct guest_mem *m, uint64_t *bm);
void guest_mem_dirty_stop(struct guest_mem *m);
void guest_mem_dirty_free(struct guest_mem *m);
/* Is tracking on? (One fence and load; the markers below check it.) */
bool guest_mem_dirty_active(const struct guest_mem *m);
/* Mark guest RAM the VMM has written: by guest physical address ... */
void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa,
			  uint64_t len);
/* ... or by host address inside a region's mapping (iovecs). */
void guest_mem_mark_dirty_hva(const struct guest_mem *m, const void *hva,
			      uint64_t len);

/* Highest guest physical address of RAM plus one. */
uint64_t guest_mem_end(const struct guest_mem *m);

#endif
