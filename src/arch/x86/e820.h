/* SPDX-License-Identifier: BSD-2-Clause */
/* The BIOS e820 memory map the guest is told about (zero page, PVH). */
#ifndef KHYVE_X86_E820_H
#define KHYVE_X86_E820_H

#include <stdint.h>

#include "guest_mem.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3
#define E820_NVS      4
#define E820_UNUSABLE 5

/* Linux's zero page holds at most this many entries. */
#define E820_MAX_ENTRIES 128
/* Size of one entry as laid out in the zero page (packed). */
#define E820_ENTRY_SIZE 20

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/*
 * Fill @tab with the map for @m: RAM [0, 0x9fc00), reserved
 * [0x9fc00, 0xa0000) and [0xe0000, 0x100000), RAM [1 MiB, low end), RAM
 * above 4 GiB. Sorted, non-overlapping. Returns the number of entries,
 * -ENOSPC if @max is too small, -EINVAL if the guest has less than 2 MiB.
 */
int e820_build(const struct guest_mem *m, struct e820_entry *tab, unsigned max);

/* Write @n entries packed (20 bytes each) to @dst. */
void e820_pack(void *dst, const struct e820_entry *tab, unsigned n);

#endif
