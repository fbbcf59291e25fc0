/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "data/x86boot_fixtures.h"
#include "layout.h"
#include "mptable.h"
#include "unit.h"

/* Linux's scan: 16-byte aligned "_MP_" with a valid checksum. */
static uint64_t scan_mpf(const struct guest_mem *m)
{
	for (uint64_t a = 0xf0000; a < 0x100000; a += 16) {
		uint8_t *p = guest_mem_ptr(m, a, 16);

		if (p && !memcmp(p, "_MP_", 4) && fx_sum(p, 16) == 0)
			return a;
	}
	return 0;
}

static void check_table(unsigned ncpus)
{
	struct guest_mem m;
	uint64_t gpa = 0, cfg;
	unsigned ncpu = 0, nbus = 0, nioapic = 0, nint = 0, nlint = 0, bsp = 0;
	bool irq_seen[16] = {0};
	uint8_t *mpf, *c, *p, *end, last_type = 0;

	if (fx_mem(&m, 2 * MiB))
		return;
	CHECK_EQ(mptable_build(&m, ncpus, &gpa), 0);
	CHECK_EQ(gpa, MPTABLE_START);
	CHECK_EQ(scan_mpf(&m), MPTABLE_START);
	mpf = guest_mem_ptr(&m, gpa, 16);
	CHECK_EQ(mpf[8], 1);
	CHECK_EQ(mpf[9], 4);
	CHECK_EQ(mpf[11], 0); /* config table present, no default config */
	cfg = get_le32(mpf + 4);
	c = guest_mem_ptr(&m, cfg, 44);
	CHECK(c && !memcmp(c, "PCMP", 4));
	if (!c)
		goto out;
	c = guest_mem_ptr(&m, cfg, get_le16(c + 4));
	CHECK(c != NULL);
	if (!c)
		goto out;
	CHECK_EQ(fx_sum(c, get_le16(c + 4)), 0);
	CHECK_EQ(c[6], 4);
	CHECK(!memcmp(c + 8, "KHYVE   ", 8));
	CHECK_EQ(get_le32(c + 36), 0xfee00000);
	CHECK(cfg + get_le16(c + 4) <= MPTABLE_END);

	p = c + 44;
	end = c + get_le16(c + 4);
	for (unsigned i = 0; i < get_le16(c + 34); i++) {
		CHECK(p < end);
		if (p >= end)
			break;
		/* Entries grouped in ascending type order. */
		CHECK(p[0] >= last_type);
		last_type = p[0];
		switch (p[0]) {
		case 0:
			CHECK_EQ(p[1], ncpu);
			CHECK(p[3] & 1);
			if (p[3] & 2) {
				bsp++;
				CHECK_EQ(p[1], 0);
			}
			ncpu++;
			p += 20;
			break;
		case 1:
			CHECK(!memcmp(p + 2, nbus == 0 ? "PCI   " : "ISA   ",
				      6));
			CHECK_EQ(p[1], nbus);
			nbus++;
			p += 8;
			break;
		case 2:
			CHECK_EQ(p[1], ncpus);
			CHECK_EQ(p[3], 1);
			CHECK_EQ(get_le32(p + 4), 0xfec00000);
			nioapic++;
			p += 8;
			break;
		case 3:
			CHECK_EQ(p[1], 0);
			CHECK_EQ(p[4], MP_ISA_BUS_ID);
			CHECK_EQ(p[6], ncpus);
			CHECK(p[5] < 16);
			if (p[5] < 16)
				irq_seen[p[5]] = true;
			CHECK_EQ(p[7], p[5] == 0 ? 2 : p[5]);
			nint++;
			p += 8;
			break;
		case 4:
			CHECK_EQ(p[1], nlint == 0 ? 3 : 1); /* ExtINT, NMI */
			CHECK_EQ(p[6], 0xff);
			CHECK_EQ(p[7], nlint);
			nlint++;
			p += 8;
			break;
		default:
			CHECK(0);
			goto out;
		}
	}
	CHECK(p == end);
	CHECK_EQ(ncpu, ncpus);
	CHECK_EQ(bsp, 1);
	CHECK_EQ(nbus, 2);
	CHECK_EQ(nioapic, 1);
	CHECK_EQ(nint, 15);
	CHECK(!irq_seen[2]);
	CHECK(irq_seen[0] && irq_seen[1] && irq_seen[15]);
	CHECK_EQ(nlint, 2);
out:
	fx_mem_free(&m);
}

static void test_mptable_1(void)
{
	check_table(1);
}

static void test_mptable_2(void)
{
	check_table(2);
}

static void test_mptable_8(void)
{
	check_table(8);
}

static void test_mptable_64(void)
{
	check_table(64);
}

static void test_mptable_max(void)
{
	check_table(BOOT_MAX_CPUS);
}

static void test_mptable_errors(void)
{
	struct guest_mem m;

	if (fx_mem(&m, 2 * MiB))
		return;
	CHECK_EQ(mptable_build(&m, 0, NULL), -EINVAL);
	CHECK_EQ(mptable_build(&m, BOOT_MAX_CPUS + 1, NULL), -EINVAL);
	fx_mem_free(&m);
	/* Guest RAM ending before 0xf0000: nothing is written. */
	if (fx_mem(&m, 0xf0000))
		return;
	CHECK_EQ(mptable_build(&m, 1, NULL), -EFAULT);
	fx_mem_free(&m);
}

int main(void)
{
	RUN(test_mptable_1);
	RUN(test_mptable_2);
	RUN(test_mptable_8);
	RUN(test_mptable_64);
	RUN(test_mptable_max);
	RUN(test_mptable_errors);
	return unit_done();
}
