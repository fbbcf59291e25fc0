/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>

#include "common.h"
#include "e820.h"
#include "guest_mem.h"
#include "layout.h"
#include "unit.h"

/* Sorted, non-overlapping, no empty entries; returns total RAM bytes. */
static uint64_t check_sane(const struct e820_entry *t, int n)
{
	uint64_t ram = 0;

	for (int i = 0; i < n; i++) {
		CHECK(t[i].size > 0);
		if (i)
			CHECK(t[i].addr >= t[i - 1].addr + t[i - 1].size);
		if (t[i].type == E820_RAM)
			ram += t[i].size;
	}
	return ram;
}

static void test_e820_256m(void)
{
	struct guest_mem m;
	struct e820_entry t[E820_MAX_ENTRIES];
	int n;

	guest_mem_layout(&m, 256 * MiB);
	n = e820_build(&m, t, E820_MAX_ENTRIES);
	CHECK_EQ(n, 4);
	CHECK_EQ(t[0].addr, 0);
	CHECK_EQ(t[0].size, 0x9fc00);
	CHECK_EQ(t[0].type, E820_RAM);
	CHECK_EQ(t[1].addr, 0x9fc00);
	CHECK_EQ(t[1].size, 0x400);
	CHECK_EQ(t[1].type, E820_RESERVED);
	CHECK_EQ(t[2].addr, 0xe0000);
	CHECK_EQ(t[2].size, 0x20000);
	CHECK_EQ(t[2].type, E820_RESERVED);
	CHECK_EQ(t[3].addr, MiB);
	CHECK_EQ(t[3].size, 255 * MiB);
	CHECK_EQ(t[3].type, E820_RAM);
	/* Everything but the 0x9fc00-0x100000 window is usable. */
	CHECK_EQ(check_sane(t, n), 256 * MiB - (MiB - 0x9fc00));
}

static void test_e820_3g(void)
{
	struct guest_mem m;
	struct e820_entry t[E820_MAX_ENTRIES];
	int n;

	guest_mem_layout(&m, 3 * GiB);
	n = e820_build(&m, t, E820_MAX_ENTRIES);
	CHECK_EQ(n, 4);
	CHECK_EQ(t[3].addr + t[3].size, GUEST_PCI_HOLE_START);
	check_sane(t, n);
}

static void test_e820_6g(void)
{
	struct guest_mem m;
	struct e820_entry t[E820_MAX_ENTRIES];
	int n;

	guest_mem_layout(&m, 6 * GiB);
	n = e820_build(&m, t, E820_MAX_ENTRIES);
	CHECK_EQ(n, 5);
	CHECK_EQ(t[3].addr + t[3].size, 3 * GiB);
	CHECK_EQ(t[4].addr, 4 * GiB);
	CHECK_EQ(t[4].size, 3 * GiB);
	CHECK_EQ(t[4].type, E820_RAM);
	/* Nothing may claim the PCI hole. */
	for (int i = 0; i < n; i++)
		CHECK(t[i].addr + t[i].size <= GUEST_PCI_HOLE_START ||
		      t[i].addr >= GUEST_PCI_HOLE_END);
	CHECK_EQ(check_sane(t, n), 6 * GiB - (MiB - 0x9fc00));
}

static void test_e820_errors(void)
{
	struct guest_mem m;
	struct e820_entry t[8];

	guest_mem_layout(&m, MiB);
	CHECK_EQ(e820_build(&m, t, 8), -EINVAL);
	guest_mem_layout(&m, 6 * GiB);
	CHECK_EQ(e820_build(&m, t, 4), -ENOSPC);
	CHECK_EQ(e820_build(&m, t, 5), 5);
}

static void test_e820_pack(void)
{
	struct e820_entry t[2] = {{0x1122334455667788ULL, 0x99, 1},
				  {0x100000, 0x200000, 2}};
	uint8_t buf[2 * E820_ENTRY_SIZE + 1];

	buf[40] = 0xee;
	e820_pack(buf, t, 2);
	CHECK_EQ(get_le64(buf), 0x1122334455667788ULL);
	CHECK_EQ(get_le64(buf + 8), 0x99);
	CHECK_EQ(get_le32(buf + 16), 1);
	CHECK_EQ(get_le64(buf + 20), 0x100000);
	CHECK_EQ(get_le32(buf + 36), 2);
	CHECK_EQ(buf[40], 0xee);
}

int main(void)
{
	RUN(test_e820_256m);
	RUN(test_e820_3g);
	RUN(test_e820_6g);
	RUN(test_e820_errors);
	RUN(test_e820_pack);
	return unit_done();
}
