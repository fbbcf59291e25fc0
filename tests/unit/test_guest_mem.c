/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>

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

int main(void)
{
	RUN(test_layout_small);
	RUN(test_layout_above_4g);
	RUN(test_layout_bad);
	RUN(test_ptr_bounds);
	return unit_done();
}
