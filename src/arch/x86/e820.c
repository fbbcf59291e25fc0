/* SPDX-License-Identifier: BSD-2-Clause */
#include "e820.h"

#include <errno.h>

#include "common.h"
#include "layout.h"

static int e820_add(struct e820_entry *tab, unsigned max, unsigned *n,
		    uint64_t addr, uint64_t size, uint32_t type)
{
	if (!size)
		return 0;
	if (*n >= max)
		return -ENOSPC;
	tab[*n] = (struct e820_entry){.addr = addr, .size = size, .type = type};
	(*n)++;
	return 0;
}

int e820_build(const struct guest_mem *m, struct e820_entry *tab, unsigned max)
{
	uint64_t low_end;
	unsigned n = 0;
	int ret;

	if (!m->nr || m->r[0].gpa != 0 || m->r[0].size < 2 * MiB)
		return -EINVAL;
	low_end = m->r[0].size;

	/* Entries are added in address order, so the table comes out sorted. */
	ret = e820_add(tab, max, &n, 0, BOOT_EBDA_START, E820_RAM);
	if (!ret)
		ret = e820_add(tab, max, &n, BOOT_EBDA_START,
			       BOOT_LOWMEM_END - BOOT_EBDA_START,
			       E820_RESERVED);
	/* 0xa0000-0xe0000 is the legacy VGA/option-ROM hole: not listed. */
	if (!ret)
		ret = e820_add(tab, max, &n, BOOT_FW_AREA_START,
			       BOOT_FW_AREA_END - BOOT_FW_AREA_START,
			       E820_RESERVED);
	if (!ret)
		ret = e820_add(tab, max, &n, BOOT_FW_AREA_END,
			       low_end - BOOT_FW_AREA_END, E820_RAM);
	for (unsigned i = 1; !ret && i < m->nr; i++)
		ret = e820_add(tab, max, &n, m->r[i].gpa, m->r[i].size,
			       E820_RAM);
	return ret ? ret : (int)n;
}

void e820_pack(void *dst, const struct e820_entry *tab, unsigned n)
{
	uint8_t *p = dst;

	for (unsigned i = 0; i < n; i++, p += E820_ENTRY_SIZE) {
		put_le64(p, tab[i].addr);
		put_le64(p + 8, tab[i].size);
		put_le32(p + 16, tab[i].type);
	}
}
