/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "pm.h"
#include "snap.h"
#include "unit.h"
#include "unit_snap.h"

static unsigned poweroffs, resets;

static void on_poweroff(void *opaque)
{
	struct pm *pm = opaque;
	struct pm_state st;

	/* The lock is not held during the callback. */
	pm_state_save(pm, &st);
	poweroffs++;
}

static void on_reset(void *opaque)
{
	(void)opaque;
	resets++;
}

static void outb(struct pm *pm, unsigned port, uint8_t v)
{
	if (port == PM_RESET_PORT)
		CHECK_EQ(pm_reset_io(pm, 0, &v, 1, true), 0);
	else
		CHECK_EQ(pm_sleep_io(pm, port - PM_SLEEP_CTL_PORT, &v, 1, true),
			 0);
}

static uint8_t inb(struct pm *pm, unsigned port)
{
	uint8_t v = 0;

	if (port == PM_RESET_PORT)
		CHECK_EQ(pm_reset_io(pm, 0, &v, 1, false), 0);
	else
		CHECK_EQ(
			pm_sleep_io(pm, port - PM_SLEEP_CTL_PORT, &v, 1, false),
			0);
	return v;
}

static void setup(struct pm *pm)
{
	poweroffs = resets = 0;
	CHECK_EQ(pm_init(pm, on_poweroff, on_reset, pm), 0);
}

static void test_poweroff(void)
{
	struct pm pm;

	setup(&pm);
	CHECK_EQ(inb(&pm, PM_SLEEP_CTL_PORT), 0);
	CHECK_EQ(inb(&pm, PM_SLEEP_STS_PORT), 0);
	/* SLP_TYP=5 without SLP_EN only latches the type. */
	outb(&pm, PM_SLEEP_CTL_PORT, 5 << 2);
	CHECK_EQ(poweroffs, 0);
	CHECK_EQ(inb(&pm, PM_SLEEP_CTL_PORT), 5 << 2);
	/* Other sleep states are ignored. */
	outb(&pm, PM_SLEEP_CTL_PORT, PM_SLP_EN | 3 << 2);
	outb(&pm, PM_SLEEP_CTL_PORT, PM_SLP_EN | 1 << 2);
	CHECK_EQ(poweroffs, 0);
	/* What Linux's acpi_hw_extended_sleep() writes for S5. */
	outb(&pm, PM_SLEEP_CTL_PORT, PM_SLP_EN | 5 << 2);
	CHECK_EQ(poweroffs, 1);
	CHECK_EQ(resets, 0);
	CHECK_EQ(inb(&pm, PM_SLEEP_CTL_PORT), 5 << 2); /* SLP_EN reads 0 */
	/* A 16-bit write covers both registers. */
	{
		uint16_t v = PM_SLP_EN | 5 << 2 | 0xff00;

		CHECK_EQ(pm_sleep_io(&pm, 0, &v, 2, true), 0);
		CHECK_EQ(poweroffs, 2);
	}
	CHECK_EQ(pm.poweroffs, 2);
	pm_destroy(&pm);
}

static void test_reset(void)
{
	struct pm pm;

	setup(&pm);
	CHECK_EQ(inb(&pm, PM_RESET_PORT), 0);
	/* Linux reboot=pci: 0x02 then 0x06. */
	outb(&pm, PM_RESET_PORT, 0x02);
	CHECK_EQ(resets, 0);
	CHECK_EQ(inb(&pm, PM_RESET_PORT), 0x02);
	outb(&pm, PM_RESET_PORT, 0x06);
	CHECK_EQ(resets, 1);
	CHECK_EQ(inb(&pm, PM_RESET_PORT), 0x02); /* RST_CPU self-clears */
	outb(&pm, PM_RESET_PORT, 0x0e);
	CHECK_EQ(resets, 2);
	CHECK_EQ(inb(&pm, PM_RESET_PORT), 0x0a);
	CHECK_EQ(poweroffs, 0);
	/* No callbacks: still fine. */
	pm.reset = NULL;
	outb(&pm, PM_RESET_PORT, 0x04);
	CHECK_EQ(pm.resets, 3);
	pm_destroy(&pm);
}

static void test_snapshot(void)
{
	struct pm a, b;
	struct pm_state st, bad;

	CHECK_EQ(pm_snap_desc.state_size, sizeof(struct pm_state));
	CHECK_EQ(pm_snap_desc.nfields, 3);
	for (unsigned i = 0; i < pm_snap_desc.nfields; i++) {
		CHECK_EQ(pm_snap_desc.fields[i].offset, i);
		CHECK_EQ(pm_snap_desc.fields[i].type, SNAP_T_U8);
		CHECK_EQ(pm_snap_desc.fields[i].count, 1);
	}
	setup(&a);
	outb(&a, PM_SLEEP_CTL_PORT, 5 << 2);
	outb(&a, PM_RESET_PORT, 0x08);
	pm_state_save(&a, &st);
	{
		struct pm_state back;

		memset(&back, 0, sizeof(back));
		CHECK_EQ(snap_roundtrip(&pm_snap_desc, &st, &back), 0);
		CHECK(!memcmp(&back, &st, sizeof(st)));
		st = back;
	}
	setup(&b);
	CHECK_EQ(pm_state_apply(&b, &st), 0);
	CHECK_EQ(inb(&b, PM_SLEEP_CTL_PORT), 5 << 2);
	CHECK_EQ(inb(&b, PM_RESET_PORT), 0x08);
	bad = st;
	bad.rcr = 0x04;
	CHECK_EQ(pm_state_apply(&b, &bad), -EINVAL);
	bad = st;
	bad.sleep_ctl = PM_SLP_EN;
	CHECK_EQ(pm_state_apply(&b, &bad), -EINVAL);
	pm_destroy(&a);
	pm_destroy(&b);
}

static uint64_t rng = 0xdeadbeefcafef00dULL;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_fuzz(void)
{
	struct pm pm;
	struct pm_state st;
	unsigned bad = 0, want_off = 0, want_rst = 0;

	setup(&pm);
	for (unsigned i = 0; i < 100000; i++) {
		uint64_t x = next_rand(), y = next_rand();
		unsigned off = (x >> 1) % 3;
		uint8_t buf[8];

		memcpy(buf, &y, sizeof(buf));
		if ((x >> 8) & 1) {
			if (x & 1 && off == 0 && (buf[0] & PM_RST_CPU))
				want_rst++;
			pm_reset_io(&pm, off, buf, 1, x & 1);
		} else {
			pm_sleep_io(&pm, off, buf, 1, x & 1);
			/* SLP_EN with SLP_TYP 5 */
			if (x & 1 && off == 0 && (buf[0] & 0x3c) == 0x34)
				want_off++;
		}
		pm_state_save(&pm, &st);
		if (pm_state_check(&st) < 0)
			bad++;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(resets, want_rst);
	CHECK_EQ(poweroffs, want_off);
	CHECK(poweroffs > 0 && resets > 0);
	pm_destroy(&pm);
}

int main(void)
{
	RUN(test_poweroff);
	RUN(test_reset);
	RUN(test_snapshot);
	RUN(test_fuzz);
	return unit_done();
}
