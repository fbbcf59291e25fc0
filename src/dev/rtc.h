/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * MC146818-compatible CMOS RTC and NVRAM at ports 0x70 (index, bit 7 = NMI
 * disable) and 0x71 (data). The VMM registers rtc_io() for RTC_NR_PORTS
 * ports at RTC_BASE.
 *
 * Guest time = host CLOCK_REALTIME + offset_ns. The offset is what a
 * snapshot keeps: rtc_state_apply() leaves the guest clock as far from host
 * time as it was (re-synced to the host's passage of time), while
 * rtc_clock_continue() afterwards makes the guest clock resume from the
 * instant it was saved instead.
 *
 * Periodic, alarm and update-ended interrupts are not implemented: the
 * PIE/AIE/UIE bits are stored but IRQ 8 is never raised and register C
 * reads 0. The divider-chain bits of register A do not stop the clock.
 */
#ifndef KHYVE_RTC_H
#define KHYVE_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "irq.h"
#include "snap_desc.h"

#define RTC_BASE      0x70
#define RTC_NR_PORTS  2
#define RTC_IRQ	      8
#define RTC_CMOS_SIZE 128

/* CMOS indexes the firmware/OS side cares about. */
#define RTC_SECONDS	     0x00
#define RTC_MINUTES	     0x02
#define RTC_HOURS	     0x04
#define RTC_DAY_OF_WEEK	     0x06
#define RTC_DAY_OF_MONTH     0x07
#define RTC_MONTH	     0x08
#define RTC_YEAR	     0x09
#define RTC_REG_A	     0x0a
#define RTC_REG_B	     0x0b
#define RTC_REG_C	     0x0c
#define RTC_REG_D	     0x0d
#define RTC_CENTURY	     0x32
#define RTC_MEM_EXT_LO	     0x30 /* KiB above 1 MiB (also 0x17/0x18) */
#define RTC_MEM_ABOVE_16M_LO 0x34 /* 64 KiB units above 16 MiB, < 4 GiB */
#define RTC_MEM_ABOVE_4G_LO  0x5b /* 64 KiB units above 4 GiB, 3 bytes */

#define RTC_B_SET 0x80
#define RTC_B_PIE 0x40
#define RTC_B_AIE 0x20
#define RTC_B_UIE 0x10
#define RTC_B_DM  0x04 /* binary (1) or BCD (0) */
#define RTC_B_24H 0x02
#define RTC_A_UIP 0x80
#define RTC_D_VRT 0x80
/* UIP is set this long before each second update (tBUC, 32.768 kHz). */
#define RTC_UIP_NS 244000

/* Saveable state; only tail padding is left undescribed. */
struct rtc_state {
	int64_t offset_ns;	/* guest wall clock minus host CLOCK_REALTIME */
	int64_t saved_guest_ns; /* guest wall clock when the state was saved */
	uint8_t cmos[RTC_CMOS_SIZE];
	uint8_t index;
	uint8_t nmi_disabled;
};

extern const struct snap_desc rtc_snap_desc;

typedef int64_t (*rtc_clock_fn)(void *opaque);

struct rtc {
	pthread_mutex_t lock;
	struct rtc_state st;
	struct irq_line irq; /* IRQ 8; kept for the wiring, never raised */
	rtc_clock_fn clock;  /* host wall clock in ns; tests may replace it */
	void *clock_opaque;
	bool warned;
};

/*
 * @low_ram: bytes of RAM below the PCI hole, @high_ram: bytes above 4 GiB;
 * they go into the CMOS memory-size bytes. The guest clock starts at host
 * time (UTC).
 */
int rtc_init(struct rtc *r, const struct irq_line *irq, uint64_t low_ram,
	     uint64_t high_ram);
void rtc_destroy(struct rtc *r);
/* Bus handler: offset 0 = index port, 1 = data port. */
int rtc_io(void *opaque, uint64_t offset, void *data, unsigned size,
	   bool is_write);
/* Replace the host clock (ns since the epoch); NULL restores the default. */
void rtc_set_clock(struct rtc *r, rtc_clock_fn fn, void *opaque);
/* The guest's wall clock now, ns since the epoch. */
int64_t rtc_guest_time_ns(struct rtc *r);
/* Set the guest's wall clock (e.g. for a localtime guest). */
void rtc_set_guest_time_ns(struct rtc *r, int64_t ns);

void rtc_state_save(struct rtc *r, struct rtc_state *st);
int rtc_state_check(const struct rtc_state *st);
/* Validate and install; -EINVAL leaves @r unchanged. */
int rtc_state_apply(struct rtc *r, const struct rtc_state *st);
/* After apply: resume the guest clock from saved_guest_ns. */
void rtc_clock_continue(struct rtc *r);

#endif
