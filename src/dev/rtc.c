/* SPDX-License-Identifier: BSD-2-Clause */
/* MC146818 CMOS RTC + NVRAM. */
#include "rtc.h"

#include <string.h>
#include <time.h>

#include "common.h"
#include "log.h"

#define NSEC 1000000000LL

static const struct snap_field rtc_fields[] = {
	SNAP_I64(struct rtc_state, offset_ns, 1),
	SNAP_I64(struct rtc_state, saved_guest_ns, 1),
	SNAP_U8_ARRAY(struct rtc_state, cmos, RTC_CMOS_SIZE, 1),
	SNAP_U8_MAX(struct rtc_state, index, RTC_CMOS_SIZE - 1, 1),
	SNAP_BOOL(struct rtc_state, nmi_disabled, 1),
};

const struct snap_desc rtc_snap_desc =
	SNAP_DESC("rtc", 1, 1, struct rtc_state, rtc_fields);

static int64_t host_realtime(void *opaque)
{
	struct timespec ts;

	(void)opaque;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

static int64_t guest_ns(struct rtc *r)
{
	int64_t ns = r->clock(r->clock_opaque) + r->st.offset_ns;

	/*
	 * Stop at rtc_state_check's bound: a clock set to the latest date
	 * (commit_time's clamp) would otherwise run past it, and every
	 * checkpoint after that would be refused on restore.
	 */
	return ns > INT64_MAX / 2 ? INT64_MAX / 2 : ns;
}

static bool is_time_reg(unsigned idx)
{
	switch (idx) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_DAY_OF_WEEK:
	case RTC_DAY_OF_MONTH:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	}
	return false;
}

static uint8_t to_reg(const struct rtc_state *s, unsigned v)
{
	if (s->cmos[RTC_REG_B] & RTC_B_DM)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

/* Garbage BCD (nibbles > 9) decodes to something large; callers clamp. */
static unsigned from_reg(const struct rtc_state *s, uint8_t v)
{
	if (s->cmos[RTC_REG_B] & RTC_B_DM)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t encode_field(const struct rtc_state *s, unsigned idx,
			    const struct tm *tm)
{
	unsigned h;

	switch (idx) {
	case RTC_SECONDS:
		return to_reg(s, (unsigned)tm->tm_sec);
	case RTC_MINUTES:
		return to_reg(s, (unsigned)tm->tm_min);
	case RTC_HOURS:
		if (s->cmos[RTC_REG_B] & RTC_B_24H)
			return to_reg(s, (unsigned)tm->tm_hour);
		h = (unsigned)tm->tm_hour % 12;
		return to_reg(s, h ? h : 12) | (tm->tm_hour >= 12 ? 0x80 : 0);
	case RTC_DAY_OF_WEEK:
		return to_reg(s, (unsigned)tm->tm_wday + 1);
	case RTC_DAY_OF_MONTH:
		return to_reg(s, (unsigned)tm->tm_mday);
	case RTC_MONTH:
		return to_reg(s, (unsigned)tm->tm_mon + 1);
	case RTC_YEAR:
		return to_reg(s, (unsigned)(tm->tm_year + 1900) % 100);
	case RTC_CENTURY:
		return to_reg(s, (unsigned)(tm->tm_year + 1900) / 100);
	}
	return 0;
}

static void guest_tm(struct rtc *r, struct tm *tm)
{
	int64_t ns = guest_ns(r);
	time_t t = (time_t)(ns / NSEC - (ns % NSEC < 0));

	if (!gmtime_r(&t, tm)) {
		/* Out of range for the C library: show the epoch. */
		t = 0;
		gmtime_r(&t, tm);
	}
}

/* Freeze the running time into the CMOS time bytes (SET mode begins). */
static void capture_time(struct rtc *r)
{
	static const uint8_t regs[] = {
		RTC_SECONDS,	  RTC_MINUTES, RTC_HOURS, RTC_DAY_OF_WEEK,
		RTC_DAY_OF_MONTH, RTC_MONTH,   RTC_YEAR,  RTC_CENTURY};
	struct tm tm;

	guest_tm(r, &tm);
	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++)
		r->st.cmos[regs[i]] = encode_field(&r->st, regs[i], &tm);
}

static int clampi(unsigned v, int lo, int hi)
{
	if ((int)v < lo)
		return lo;
	return (int)v > hi ? hi : (int)v;
}

/* The time bytes become the guest clock; the new second starts now. */
static void commit_time(struct rtc *r)
{
	const struct rtc_state *s = &r->st;
	uint8_t hr = s->cmos[RTC_HOURS];
	struct tm tm;
	unsigned year;
	int hour;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	tm.tm_sec = clampi(from_reg(s, s->cmos[RTC_SECONDS]), 0, 59);
	tm.tm_min = clampi(from_reg(s, s->cmos[RTC_MINUTES]), 0, 59);
	if (s->cmos[RTC_REG_B] & RTC_B_24H) {
		hour = clampi(from_reg(s, hr), 0, 23);
	} else {
		hour = clampi(from_reg(s, hr & 0x7f), 1, 12) % 12;
		if (hr & 0x80)
			hour += 12;
	}
	tm.tm_hour = hour;
	tm.tm_mday = clampi(from_reg(s, s->cmos[RTC_DAY_OF_MONTH]), 1, 31);
	tm.tm_mon = clampi(from_reg(s, s->cmos[RTC_MONTH]), 1, 12) - 1;
	year = (unsigned)clampi(from_reg(s, s->cmos[RTC_CENTURY]), 19, 99) *
		       100 +
	       (unsigned)clampi(from_reg(s, s->cmos[RTC_YEAR]), 0, 99);
	tm.tm_year = (int)year - 1900;
	t = timegm(&tm);
	/* Years up to 9999 are encodable; keep t * NSEC from overflowing. */
	if (t < 0 || t > INT64_MAX / 2 / NSEC)
		t = t < 0 ? 0 : INT64_MAX / 2 / NSEC;
	r->st.offset_ns = (int64_t)t * NSEC - r->clock(r->clock_opaque);
}

static uint8_t reg_a(struct rtc *r)
{
	uint8_t v = r->st.cmos[RTC_REG_A] & 0x7f;
	int64_t ns;

	if (r->st.cmos[RTC_REG_B] & RTC_B_SET)
		return v;
	ns = guest_ns(r) % NSEC;
	if (ns < 0)
		ns += NSEC;
	/* The last 244 us of each second: Linux waits or re-reads. */
	if (ns >= NSEC - RTC_UIP_NS)
		v |= RTC_A_UIP;
	return v;
}

static uint8_t data_read(struct rtc *r)
{
	struct rtc_state *s = &r->st;
	unsigned idx = s->index;
	struct tm tm;
	uint8_t v;

	if (is_time_reg(idx) && !(s->cmos[RTC_REG_B] & RTC_B_SET)) {
		guest_tm(r, &tm);
		return encode_field(s, idx, &tm);
	}
	switch (idx) {
	case RTC_REG_A:
		return reg_a(r);
	case RTC_REG_C:
		/* Flags clear on read. */
		v = s->cmos[RTC_REG_C];
		s->cmos[RTC_REG_C] = 0;
		return v;
	case RTC_REG_D:
		return RTC_D_VRT;
	}
	return s->cmos[idx];
}

static void data_write(struct rtc *r, uint8_t v)
{
	struct rtc_state *s = &r->st;
	unsigned idx = s->index;
	uint8_t old;

	if (is_time_reg(idx)) {
		if (s->cmos[RTC_REG_B] & RTC_B_SET) {
			s->cmos[idx] = v;
		} else {
			/* A lone field write moves the running clock. */
			capture_time(r);
			s->cmos[idx] = v;
			commit_time(r);
		}
		return;
	}
	switch (idx) {
	case RTC_REG_A:
		s->cmos[idx] = v & 0x7f; /* UIP is read-only */
		break;
	case RTC_REG_B:
		old = s->cmos[RTC_REG_B];
		if ((v & RTC_B_SET) && !(old & RTC_B_SET)) {
			capture_time(r);
			v &= (uint8_t)~RTC_B_UIE; /* SET clears UIE */
		} else if (!(v & RTC_B_SET) && (old & RTC_B_SET)) {
			/* Decode in the format the fields were written in. */
			commit_time(r);
		}
		s->cmos[RTC_REG_B] = v;
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		s->cmos[idx] = v;
		break;
	}
}

int rtc_io(void *opaque, uint64_t offset, void *data, unsigned size,
	   bool is_write)
{
	struct rtc *r = opaque;
	uint8_t *p = data;

	if (!r || !data || !size || size > 8)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < size; i++) {
		uint64_t off = offset + i;

		if (off == 0) {
			if (is_write) {
				r->st.index = p[i] & 0x7f;
				r->st.nmi_disabled = p[i] >> 7;
			} else {
				p[i] = 0xff; /* write-only on real chipsets */
			}
		} else if (off == 1) {
			if (is_write)
				data_write(r, p[i]);
			else
				p[i] = data_read(r);
		} else {
			if (!r->warned) {
				log_warn("rtc: access beyond ports 0x70-0x71 "
					 "(offset %#llx); ignored",
					 (unsigned long long)off);
				r->warned = true;
			}
			if (!is_write)
				p[i] = 0xff;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static void put_mem_bytes(uint8_t *cmos, uint64_t low, uint64_t high)
{
	uint64_t v;
	unsigned sum = 0;

	/* 640 KiB of conventional memory. */
	cmos[0x15] = 0x80;
	cmos[0x16] = 0x02;
	v = low > 1 * MiB ? (low - 1 * MiB) / KiB : 0;
	v = MIN(v, 0xffffULL);
	cmos[0x17] = cmos[RTC_MEM_EXT_LO] = (uint8_t)v;
	cmos[0x18] = cmos[RTC_MEM_EXT_LO + 1] = (uint8_t)(v >> 8);
	v = low > 16 * MiB ? (low - 16 * MiB) >> 16 : 0;
	v = MIN(v, 0xffffULL);
	cmos[RTC_MEM_ABOVE_16M_LO] = (uint8_t)v;
	cmos[RTC_MEM_ABOVE_16M_LO + 1] = (uint8_t)(v >> 8);
	v = MIN(high >> 16, 0xffffffULL);
	cmos[RTC_MEM_ABOVE_4G_LO] = (uint8_t)v;
	cmos[RTC_MEM_ABOVE_4G_LO + 1] = (uint8_t)(v >> 8);
	cmos[RTC_MEM_ABOVE_4G_LO + 2] = (uint8_t)(v >> 16);
	/* The classic checksum over 0x10-0x2d, big-endian at 0x2e. */
	for (unsigned i = 0x10; i <= 0x2d; i++)
		sum += cmos[i];
	cmos[0x2e] = (uint8_t)(sum >> 8);
	cmos[0x2f] = (uint8_t)sum;
}

int rtc_init(struct rtc *r, const struct irq_line *irq, uint64_t low_ram,
	     uint64_t high_ram)
{
	int ret;

	if (!r)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	ret = pthread_mutex_init(&r->lock, NULL);
	if (ret)
		return -ret;
	if (irq)
		r->irq = *irq;
	r->clock = host_realtime;
	r->st.cmos[RTC_REG_A] = 0x26; /* 32.768 kHz divider, 1024 Hz rate */
	r->st.cmos[RTC_REG_B] = RTC_B_24H;
	r->st.cmos[RTC_REG_D] = RTC_D_VRT;
	put_mem_bytes(r->st.cmos, low_ram, high_ram);
	return 0;
}

void rtc_destroy(struct rtc *r)
{
	pthread_mutex_destroy(&r->lock);
}

void rtc_set_clock(struct rtc *r, rtc_clock_fn fn, void *opaque)
{
	pthread_mutex_lock(&r->lock);
	r->clock = fn ? fn : host_realtime;
	r->clock_opaque = fn ? opaque : NULL;
	pthread_mutex_unlock(&r->lock);
}

int64_t rtc_guest_time_ns(struct rtc *r)
{
	int64_t ns;

	pthread_mutex_lock(&r->lock);
	ns = guest_ns(r);
	pthread_mutex_unlock(&r->lock);
	return ns;
}

void rtc_set_guest_time_ns(struct rtc *r, int64_t ns)
{
	pthread_mutex_lock(&r->lock);
	r->st.offset_ns = ns - r->clock(r->clock_opaque);
	pthread_mutex_unlock(&r->lock);
}

void rtc_state_save(struct rtc *r, struct rtc_state *st)
{
	pthread_mutex_lock(&r->lock);
	r->st.saved_guest_ns = guest_ns(r);
	*st = r->st;
	pthread_mutex_unlock(&r->lock);
}

int rtc_state_check(const struct rtc_state *st)
{
	if (st->index >= RTC_CMOS_SIZE || st->nmi_disabled > 1)
		return -EINVAL;
	/* Offsets beyond ~290 years would overflow the ns arithmetic. */
	if (st->offset_ns > INT64_MAX / 2 || st->offset_ns < INT64_MIN / 2 ||
	    st->saved_guest_ns > INT64_MAX / 2 ||
	    st->saved_guest_ns < INT64_MIN / 2)
		return -EINVAL;
	return 0;
}

int rtc_state_apply(struct rtc *r, const struct rtc_state *st)
{
	int ret = rtc_state_check(st);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&r->lock);
	r->st = *st;
	/* Read-only bits come from the model, not the file. */
	r->st.cmos[RTC_REG_A] &= 0x7f;
	r->st.cmos[RTC_REG_D] = RTC_D_VRT;
	pthread_mutex_unlock(&r->lock);
	/* No interrupt sources are modelled, so the line stays low. */
	return 0;
}

void rtc_clock_continue(struct rtc *r)
{
	int64_t off;

	pthread_mutex_lock(&r->lock);
	off = r->st.saved_guest_ns - r->clock(r->clock_opaque);
	/* Within rtc_state_check's bound, or no later checkpoint restores
	 * (a saved time long before the host's epoch). */
	r->st.offset_ns = off < INT64_MIN / 2 ? INT64_MIN / 2 : off;
	pthread_mutex_unlock(&r->lock);
}
