/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Helpers for the save/restore test modes: kvmclock and CMOS RTC readers
 * (the "clock" lines of the counter) and the per-AP progress counters of
 * the "busy" mode. Kernel code (kern.c) sets kvmclock up, user code reads.
 */
#ifndef GUEST_SNAPMODES_H
#define GUEST_SNAPMODES_H

#include <stdint.h>
#include "layout.h"

/* APs bump their counter forever once their slice is done (busy mode). */
extern volatile uint64_t ap_spins[GUEST_MAX_CPUS];

/* kern.c: 1 when MSR_KVM_SYSTEM_TIME_NEW / WALL_CLOCK_NEW were written. */
extern int kvmclock_on;
void kvmclock_enable(void); /* kernel mode */

/* kvmclock ns since the VM's clock zero (0 if kvmclock is off). */
uint64_t kvmclock_ns(void);
/* Wall clock from kvmclock: wall time at boot + kvmclock, in ns. */
uint64_t kvmclock_wall_ns(void);
/* CMOS RTC as seconds since the epoch (UTC), or 0 if it reads as garbage. */
uint64_t rtc_epoch(void);
/* virtio.c: tests=vstream (user mode). */
void vstream_test(void);
/* virtio.c, for "genid": a virtio-rng on the shared ring; the MAC. */
int genid_rng_start(void);
int genid_rng_read(uint8_t *out, uint32_t len); /* bytes the device gave */
int genid_mac_read(uint8_t mac[6]);
/* "genid": find the VM generation ID; one "KHYVE-GENID" line a tick. */
void genid_setup(void);
void genid_line(uint64_t n);
/* virtio.c, for "disk_blocks=N": the counter's disk writes and checks. */
int cdisk_start(void);
int cdisk_tick(uint64_t n);
int cdisk_check(uint64_t n);
/* One "KHYVE-CLOCK" line for counter tick @n (checks monotonicity). */
void clock_line(uint64_t n);

#endif
