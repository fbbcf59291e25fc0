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
 */
#ifndef KHYVE_GUEST_MEM_H
#define KHYVE_GUEST_MEM_H

#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 2
#define GUEST_PCI_HOLE_START 0xC0000000ULL
#define GUEST_PCI_HOLE_END 0x100000000ULL

struct guest_mem_region {
	uint64_t gpa;	 /* guest physical base */
	uint64_t size;	 /* bytes */
	uint64_t offset; /* offset of this region in the flat RAM (and RAM file) */
	uint8_t *hva;	 /* host mapping, NULL until mapped */
};

struct guest_mem {
	uint64_t ram_size; /* total bytes of RAM */
	unsigned nr;
	struct guest_mem_region r[GUEST_MEM_MAX_REGIONS];
	uint8_t *base; /* one host mapping of all RAM, regions point into it */
};

/* Compute the region layout for @ram_size bytes (pure; maps nothing). */
int guest_mem_layout(struct guest_mem *m, uint64_t ram_size);
/* Host pointer for [gpa, gpa+len) if it lies entirely inside one region. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Copy helpers; -EFAULT if the range is not guest RAM. */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf,
		   uint64_t len);
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf,
		    uint64_t len);
/* Highest guest physical address of RAM plus one. */
uint64_t guest_mem_end(const struct guest_mem *m);

#endif
