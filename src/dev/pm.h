/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Power management ports for an ACPI hardware-reduced platform:
 *   0x600  SLEEP_CONTROL_REG (FADT): SLP_EN (bit 5) with SLP_TYP (bits 2-4)
 *          == 5 (the DSDT's _S5 value) powers off; other sleep states are
 *          not supported and ignored.
 *   0x601  SLEEP_STATUS_REG: WAK_STS (bit 7), write 1 to clear.
 *   0xcf9  reset control register (also the FADT RESET_REG): RST_CPU
 *          (bit 2) resets; SYS_RST/FULL_RST (bits 1, 3) are kept for reads.
 *
 * No SCI is modelled (no events to signal), so there is no IRQ line.
 * 0xcf9 sits inside the PCI CONFIG_ADDRESS dword at 0xcf8: the PCI host
 * bridge must forward byte accesses at 0xcf9 to pm_reset_io() if it owns
 * 0xcf8-0xcfb on the bus.
 */
#ifndef KHYVE_PM_H
#define KHYVE_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "snap_desc.h"

#define PM_SLEEP_CTL_PORT 0x600
#define PM_SLEEP_STS_PORT 0x601
#define PM_SLEEP_NR_PORTS 2
#define PM_RESET_PORT	  0xcf9

#define PM_SLP_EN	 0x20
#define PM_SLP_TYP_SHIFT 2
#define PM_SLP_TYP_MASK	 0x1c
#define PM_SLP_TYP_S5	 5
#define PM_WAK_STS	 0x80
#define PM_SYS_RST	 0x02
#define PM_RST_CPU	 0x04
#define PM_FULL_RST	 0x08

struct pm_state {
	uint8_t sleep_ctl; /* SLP_TYP bits last written (SLP_EN reads 0) */
	uint8_t sleep_sts; /* WAK_STS */
	uint8_t rcr;	   /* SYS_RST | FULL_RST as last written */
};

extern const struct snap_desc pm_snap_desc;

typedef void (*pm_event_fn)(void *opaque);

struct pm {
	pthread_mutex_t lock;
	struct pm_state st;
	pm_event_fn poweroff, reset;
	void *opaque;
	uint64_t poweroffs, resets;
	bool warned;
};

/*
 * The callbacks run on the vCPU thread that did the write, without the
 * device lock held; either may be NULL. The VMM decides what they mean
 * (stop the VM, reboot or exit).
 */
int pm_init(struct pm *pm, pm_event_fn poweroff, pm_event_fn reset,
	    void *opaque);
void pm_destroy(struct pm *pm);
/* Registered for PM_SLEEP_NR_PORTS ports at PM_SLEEP_CTL_PORT. */
int pm_sleep_io(void *opaque, uint64_t offset, void *data, unsigned size,
		bool is_write);
/* Registered for one port at PM_RESET_PORT. */
int pm_reset_io(void *opaque, uint64_t offset, void *data, unsigned size,
		bool is_write);

void pm_state_save(struct pm *pm, struct pm_state *st);
int pm_state_check(const struct pm_state *st);
int pm_state_apply(struct pm *pm, const struct pm_state *st);

#endif
