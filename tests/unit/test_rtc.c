/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "common.h"
#include "rtc.h"
#include "snap.h"
#include "unit.h"
#include "unit_snap.h"

#define NSEC 1000000000LL

static int64_t fake_now;
static int64_t fake_clock(void *opaque)
{
	(void)opaque;
	return fake_now;
}

static void outb(struct rtc *r, unsigned off, uint8_t v)
{
	CHECK_EQ(rtc_io(r, off, &v, 1, true), 0);
}

static uint8_t inb(struct rtc *r, unsigned off)
{
	uint8_t v = 0;

	CHECK_EQ(rtc_io(r, off, &v, 1, false), 0);
	return v;
}

static uint8_t cmos_read(struct rtc *r, uint8_t idx)
{
	outb(r, 0, idx);
	return inb(r, 1);
}

static void cmos_write(struct rtc *r, uint8_t idx, uint8_t v)
{
	outb(r, 0, idx);
	outb(r, 1, v);
}

static unsigned bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 15);
}

/* 2024-02-29 23:59:58 UTC, a Thursday. */
#define T0 1709251198LL

static void test_fixed_time_formats(void)
{
	struct rtc r;

	CHECK_EQ(rtc_init(&r, NULL, 512 * MiB, 0), 0);
	fake_now = T0 * NSEC + NSEC / 2;
	rtc_set_clock(&r, fake_clock, NULL);
	/* Default: BCD, 24 h. */
	CHECK_EQ(cmos_read(&r, RTC_SECONDS), 0x58);
	CHECK_EQ(cmos_read(&r, RTC_MINUTES), 0x59);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x23);
	CHECK_EQ(cmos_read(&r, RTC_DAY_OF_WEEK), 5);
	CHECK_EQ(cmos_read(&r, RTC_DAY_OF_MONTH), 0x29);
	CHECK_EQ(cmos_read(&r, RTC_MONTH), 0x02);
	CHECK_EQ(cmos_read(&r, RTC_YEAR), 0x24);
	CHECK_EQ(cmos_read(&r, RTC_CENTURY), 0x20);
	/* 12 h BCD: 23 h is 11 PM. */
	cmos_write(&r, RTC_REG_B, 0x00);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x91);
	/* Binary, 24 h. */
	cmos_write(&r, RTC_REG_B, RTC_B_DM | RTC_B_24H);
	CHECK_EQ(cmos_read(&r, RTC_SECONDS), 58);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 23);
	CHECK_EQ(cmos_read(&r, RTC_YEAR), 24);
	CHECK_EQ(cmos_read(&r, RTC_CENTURY), 20);
	/* Binary 12 h. */
	cmos_write(&r, RTC_REG_B, RTC_B_DM);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x8b);
	/* Two seconds later: a leap day rolls into March. */
	fake_now += 2 * NSEC;
	cmos_write(&r, RTC_REG_B, RTC_B_24H);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x00);
	CHECK_EQ(cmos_read(&r, RTC_DAY_OF_MONTH), 0x01);
	CHECK_EQ(cmos_read(&r, RTC_MONTH), 0x03);
	cmos_write(&r, RTC_REG_B, 0x00);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x12); /* midnight is 12 AM */
	rtc_destroy(&r);
}

static void test_uip(void)
{
	struct rtc r;
	unsigned spins = 0;

	CHECK_EQ(rtc_init(&r, NULL, 512 * MiB, 0), 0);
	rtc_set_clock(&r, fake_clock, NULL);
	fake_now = T0 * NSEC + NSEC / 2;
	CHECK_EQ(cmos_read(&r, RTC_REG_A), 0x26);
	fake_now = T0 * NSEC + NSEC - 1000;
	CHECK_EQ(cmos_read(&r, RTC_REG_A), 0xa6);
	/* Linux's loop: wait for UIP to clear, then read. */
	while (cmos_read(&r, RTC_REG_A) & RTC_A_UIP && spins < 10) {
		fake_now += 100000;
		spins++;
	}
	CHECK(spins > 0 && spins < 10);
	CHECK_EQ(cmos_read(&r, RTC_SECONDS), 0x59);
	/* UIP is read-only. */
	cmos_write(&r, RTC_REG_A, 0xa6);
	fake_now = T0 * NSEC;
	CHECK_EQ(cmos_read(&r, RTC_REG_A), 0x26);
	rtc_destroy(&r);
}

static void read_tm(struct rtc *r, struct tm *tm)
{
	memset(tm, 0, sizeof(*tm));
	tm->tm_sec = (int)bcd(cmos_read(r, RTC_SECONDS));
	tm->tm_min = (int)bcd(cmos_read(r, RTC_MINUTES));
	tm->tm_hour = (int)bcd(cmos_read(r, RTC_HOURS));
	tm->tm_mday = (int)bcd(cmos_read(r, RTC_DAY_OF_MONTH));
	tm->tm_mon = (int)bcd(cmos_read(r, RTC_MONTH)) - 1;
	tm->tm_year = (int)(bcd(cmos_read(r, RTC_CENTURY)) * 100 +
			    bcd(cmos_read(r, RTC_YEAR))) -
		      1900;
}

static void test_host_time(void)
{
	struct rtc r;
	struct tm tm;
	time_t before, after, t;

	CHECK_EQ(rtc_init(&r, NULL, 512 * MiB, 0), 0);
	/*
	 * Read the fields as a guest driver does: again until two reads
	 * agree, so a second (or minute) rolling over between the seconds
	 * and the minutes read cannot give a time up to 59 s in the future
	 * (which a loaded host, preempting between reads, once did).
	 */
	for (unsigned tries = 0; tries < 10; tries++) {
		struct tm again;

		before = time(NULL);
		read_tm(&r, &tm);
		read_tm(&r, &again);
		after = time(NULL);
		if (!memcmp(&tm, &again, sizeof(tm)))
			break;
	}
	t = timegm(&tm);
	CHECK(t >= before - 1 && t <= after);
	/* ...binary mode agrees too. */
	cmos_write(&r, RTC_REG_B, RTC_B_DM | RTC_B_24H);
	before = time(NULL);
	t = (time_t)(rtc_guest_time_ns(&r) / NSEC);
	CHECK(t >= before - 1 && t <= before + 1);
	CHECK_EQ(cmos_read(&r, RTC_YEAR),
		 (unsigned)(gmtime_r(&t, &tm)->tm_year % 100));
	rtc_destroy(&r);
}

static void test_set_time(void)
{
	struct rtc r;

	CHECK_EQ(rtc_init(&r, NULL, 512 * MiB, 0), 0);
	rtc_set_clock(&r, fake_clock, NULL);
	fake_now = T0 * NSEC + 123;
	/* What Linux's mc146818_set_time does: SET, fields, clear SET. */
	cmos_write(&r, RTC_REG_B, RTC_B_SET | RTC_B_24H | RTC_B_UIE);
	CHECK_EQ(cmos_read(&r, RTC_REG_B), RTC_B_SET | RTC_B_24H);
	cmos_write(&r, RTC_SECONDS, 0x30);
	cmos_write(&r, RTC_MINUTES, 0x15);
	cmos_write(&r, RTC_HOURS, 0x08);
	cmos_write(&r, RTC_DAY_OF_MONTH, 0x04);
	cmos_write(&r, RTC_MONTH, 0x07);
	cmos_write(&r, RTC_YEAR, 0x99);
	cmos_write(&r, RTC_CENTURY, 0x19);
	/* Frozen while SET: time does not move. */
	fake_now += 5 * NSEC;
	CHECK_EQ(cmos_read(&r, RTC_SECONDS), 0x30);
	cmos_write(&r, RTC_REG_B, RTC_B_24H);
	CHECK_EQ(rtc_guest_time_ns(&r) / NSEC, 931076130LL);
	fake_now += 3 * NSEC;
	CHECK_EQ(cmos_read(&r, RTC_SECONDS), 0x33);
	CHECK_EQ(cmos_read(&r, RTC_YEAR), 0x99);
	CHECK_EQ(cmos_read(&r, RTC_CENTURY), 0x19);
	/* 12 h entry: 7 PM. */
	cmos_write(&r, RTC_REG_B, RTC_B_SET);
	cmos_write(&r, RTC_HOURS, 0x87);
	cmos_write(&r, RTC_REG_B, RTC_B_24H);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x19);
	/* A lone write without SET moves the running clock. */
	cmos_write(&r, RTC_MINUTES, 0x45);
	CHECK_EQ(cmos_read(&r, RTC_MINUTES), 0x45);
	CHECK_EQ(cmos_read(&r, RTC_HOURS), 0x19);
	/* Garbage BCD is clipped, not trusted. */
	cmos_write(&r, RTC_REG_B, RTC_B_SET | RTC_B_24H);
	cmos_write(&r, RTC_MONTH, 0xff);
	cmos_write(&r, RTC_REG_B, RTC_B_24H);
	CHECK_EQ(cmos_read(&r, RTC_MONTH), 0x12);
	CHECK_EQ(cmos_read(&r, RTC_YEAR), 0x99);
	/* Year 9999 is beyond the ns clock: clipped to a valid date. */
	cmos_write(&r, RTC_REG_B, RTC_B_SET | RTC_B_24H);
	cmos_write(&r, RTC_YEAR, 0xff);
	cmos_write(&r, RTC_CENTURY, 0xff);
	cmos_write(&r, RTC_REG_B, RTC_B_24H);
	CHECK((cmos_read(&r, RTC_YEAR) & 0x0f) <= 9);
	CHECK(cmos_read(&r, RTC_CENTURY) >= 0x20);
	rtc_destroy(&r);
}

static void test_nvram_and_mem(void)
{
	struct rtc r;

	CHECK_EQ(rtc_init(&r, NULL, 2 * GiB, 2 * GiB + 64 * KiB), 0);
	CHECK_EQ(cmos_read(&r, 0x34), 0x00);
	CHECK_EQ(cmos_read(&r, 0x35), 0x7f); /* (2 GiB - 16 MiB) / 64 KiB */
	CHECK_EQ(cmos_read(&r, 0x5b), 0x01);
	CHECK_EQ(cmos_read(&r, 0x5c), 0x80);
	CHECK_EQ(cmos_read(&r, 0x5d), 0x00);
	CHECK_EQ(cmos_read(&r, 0x30), 0xff); /* capped at 0xffff KiB */
	CHECK_EQ(cmos_read(&r, 0x31), 0xff);
	CHECK_EQ(cmos_read(&r, 0x15), 0x80);
	CHECK_EQ(cmos_read(&r, 0x16), 0x02);
	CHECK_EQ(cmos_read(&r, RTC_REG_D), 0x80);
	rtc_destroy(&r);

	CHECK_EQ(rtc_init(&r, NULL, 48 * MiB, 0), 0);
	CHECK_EQ(cmos_read(&r, 0x34) | cmos_read(&r, 0x35) << 8, 512);
	CHECK_EQ(cmos_read(&r, 0x30) | cmos_read(&r, 0x31) << 8, 47 * 1024);
	CHECK_EQ(cmos_read(&r, 0x5b) | cmos_read(&r, 0x5c) |
			 cmos_read(&r, 0x5d),
		 0);
	for (unsigned i = 0x40; i < 0x80; i++)
		cmos_write(&r, (uint8_t)i, (uint8_t)(i * 7));
	/* NMI-disable bit in the index does not change the register. */
	outb(&r, 0, 0x80 | 0x41);
	CHECK_EQ(inb(&r, 1), (uint8_t)(0x41 * 7));
	for (unsigned i = 0x40; i < 0x80; i++)
		CHECK_EQ(cmos_read(&r, (uint8_t)i), (uint8_t)(i * 7));
	CHECK_EQ(inb(&r, 0), 0xff);
	/* C and D are read-only. */
	cmos_write(&r, RTC_REG_C, 0xff);
	CHECK_EQ(cmos_read(&r, RTC_REG_C), 0);
	cmos_write(&r, RTC_REG_D, 0x00);
	CHECK_EQ(cmos_read(&r, RTC_REG_D), 0x80);
	rtc_destroy(&r);
}

static void test_snapshot(void)
{
	struct rtc a, b;
	struct rtc_state st, bad;

	check_desc_exact(&rtc_snap_desc, struct rtc_state, NULL, 0);
	CHECK_EQ(rtc_init(&a, NULL, 256 * MiB, 0), 0);
	CHECK_EQ(rtc_init(&b, NULL, 1 * GiB, 0), 0);
	rtc_set_clock(&a, fake_clock, NULL);
	rtc_set_clock(&b, fake_clock, NULL);
	fake_now = T0 * NSEC;
	rtc_set_guest_time_ns(&a, (T0 - 3600) * NSEC); /* an hour behind */
	cmos_write(&a, 0x50, 0xab);
	cmos_write(&a, RTC_REG_B, RTC_B_DM | RTC_B_24H);
	outb(&a, 0, 0x80 | 0x50);
	rtc_state_save(&a, &st);
	CHECK_EQ(st.saved_guest_ns, (T0 - 3600) * NSEC);
	{
		struct rtc_state back;

		memset(&back, 0, sizeof(back));
		CHECK_EQ(snap_roundtrip(&rtc_snap_desc, &st, &back), 0);
		/* Field by field: the tail padding is not saved. */
		CHECK_EQ(back.offset_ns, st.offset_ns);
		CHECK_EQ(back.saved_guest_ns, st.saved_guest_ns);
		CHECK(!memcmp(back.cmos, st.cmos, sizeof(st.cmos)));
		CHECK_EQ(back.index, st.index);
		CHECK_EQ(back.nmi_disabled, st.nmi_disabled);
		st = back;
	}

	/* Restored 100 s later: keeps the hour-behind offset. */
	fake_now += 100 * NSEC;
	CHECK_EQ(rtc_state_apply(&b, &st), 0);
	CHECK_EQ(rtc_guest_time_ns(&b), (T0 - 3600 + 100) * NSEC);
	CHECK_EQ(inb(&b, 1), 0xab); /* index survived */
	CHECK_EQ(cmos_read(&b, RTC_REG_B), RTC_B_DM | RTC_B_24H);
	CHECK_EQ(cmos_read(&b, 0x34), cmos_read(&a, 0x34));
	/* Or resumes from the saved instant. */
	rtc_clock_continue(&b);
	CHECK_EQ(rtc_guest_time_ns(&b), (T0 - 3600) * NSEC);
	CHECK_EQ(cmos_read(&b, RTC_SECONDS), 58);

	bad = st;
	bad.index = 0x80;
	CHECK_EQ(rtc_state_apply(&b, &bad), -EINVAL);
	bad = st;
	bad.offset_ns = INT64_MAX;
	CHECK_EQ(rtc_state_apply(&b, &bad), -EINVAL);
	rtc_destroy(&a);
	rtc_destroy(&b);
}

/*
 * A guest clock set to the latest date it can hold keeps running: a
 * checkpoint a second later must still be one a restore accepts (its
 * saved guest time went past rtc_state_check's bound; found by
 * tests/fuzz/fuzz_device_load).
 */
static void test_snapshot_at_clock_end(void)
{
	struct rtc a, b;
	struct rtc_state st;

	CHECK_EQ(rtc_init(&a, NULL, 512 * MiB, 0), 0);
	CHECK_EQ(rtc_init(&b, NULL, 512 * MiB, 0), 0);
	rtc_set_clock(&a, fake_clock, NULL);
	rtc_set_clock(&b, fake_clock, NULL);
	fake_now = T0 * NSEC;
	cmos_write(&a, RTC_REG_B, RTC_B_SET | RTC_B_24H);
	cmos_write(&a, RTC_YEAR, 0x99);
	cmos_write(&a, RTC_CENTURY, 0x99);
	cmos_write(&a, RTC_REG_B, RTC_B_24H);
	fake_now += NSEC;
	rtc_state_save(&a, &st);
	CHECK_EQ(rtc_state_check(&st), 0);
	CHECK_EQ(rtc_state_apply(&b, &st), 0);
	/* It stands at its last second rather than run past it. */
	fake_now += 100 * NSEC;
	CHECK(rtc_guest_time_ns(&a) <= INT64_MAX / 2);
	rtc_state_save(&a, &st);
	CHECK_EQ(rtc_state_check(&st), 0);
	rtc_destroy(&a);
	rtc_destroy(&b);
}

/*
 * --keep-clock continues from the saved guest time; from the earliest one
 * rtc_state_check accepts, the offset it derived fell below the check's
 * bound and the next checkpoint could not be restored (found with
 * tests/fuzz/fuzz_device_load, regression rtc-keep-clock-offset).
 */
static void test_keep_clock_at_clock_start(void)
{
	struct rtc a, b;
	struct rtc_state st;

	CHECK_EQ(rtc_init(&a, NULL, 512 * MiB, 0), 0);
	CHECK_EQ(rtc_init(&b, NULL, 512 * MiB, 0), 0);
	rtc_set_clock(&a, fake_clock, NULL);
	rtc_set_clock(&b, fake_clock, NULL);
	fake_now = T0 * NSEC;
	rtc_state_save(&a, &st);
	st.saved_guest_ns = INT64_MIN / 2 + 1;
	CHECK_EQ(rtc_state_apply(&a, &st), 0);
	rtc_clock_continue(&a);
	rtc_state_save(&a, &st);
	CHECK_EQ(rtc_state_check(&st), 0);
	CHECK_EQ(rtc_state_apply(&b, &st), 0);
	rtc_destroy(&a);
	rtc_destroy(&b);
}

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_fuzz(void)
{
	struct rtc r;
	struct rtc_state st;
	unsigned bad = 0;

	CHECK_EQ(rtc_init(&r, NULL, 1 * GiB, 1 * GiB), 0);
	for (unsigned i = 0; i < 100000; i++) {
		uint64_t x = next_rand(), y = next_rand();
		uint8_t buf[8];

		memcpy(buf, &y, sizeof(buf));
		rtc_io(&r, (x >> 1) % 4, buf, 1u << ((x >> 3) & 3), x & 1);
		if (i % 64 == 0) {
			rtc_state_save(&r, &st);
			if (rtc_state_check(&st) < 0)
				bad++;
		}
	}
	CHECK_EQ(bad, 0);
	rtc_destroy(&r);
}

int main(void)
{
	RUN(test_fixed_time_formats);
	RUN(test_uip);
	RUN(test_host_time);
	RUN(test_set_time);
	RUN(test_nvram_and_mem);
	RUN(test_snapshot);
	RUN(test_snapshot_at_clock_end);
	RUN(test_keep_clock_at_clock_start);
	RUN(test_fuzz);
	return unit_done();
}
