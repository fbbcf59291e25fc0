/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The machine's devices: legacy platform devices at fixed ports, the PCI
 * bus and the -s devices on it (each through its struct dev_ops, from
 * one table), and their snapshot sections. What the devices need from
 * the VM comes in as callbacks (struct vm_devices_host): this file never
 * calls into vm.c, vm.c calls in here.
 */
#ifndef KHYVE_VM_DEVICES_H
#define KHYVE_VM_DEVICES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "bus.h"
#include "config.h"
#include "err.h"
#include "guest_mem.h"
#include "snap.h"

struct vm_devices;

/* What the devices get from the machine they are part of. */
struct vm_devices_host {
	const struct vm_config *cfg; /* -s devices, console, restore */
	const struct guest_mem *mem;
	struct bus *pio, *mmio;
	void *opaque; /* handed back to every callback */
	/* Raise/lower a GSI; send an MSI (each 0 or -errno). */
	int (*irq_line)(void *opaque, unsigned gsi, int level);
	int (*send_msi)(void *opaque, uint64_t addr, uint32_t data);
	/* Bind/unbind a queue kick eventfd to a 2-byte guest write. */
	int (*ioeventfd)(void *opaque, uint64_t addr, int fd, bool assign);
	/* The guest powered off or reset: stop with @status (khyve_exit). */
	void (*request_stop)(void *opaque, int status);
	/* Wake the main loop: the UART has room for console input again. */
	void (*wake)(void *opaque);
};

/* `khyve -s help`. */
void vm_devices_list(FILE *out);
/*
 * Create every device of @host->cfg. *@devs is set even on failure, for
 * vm_devices_destroy(). When restoring, the devices start paused.
 */
int vm_devices_create(struct vm_devices **devs,
		      const struct vm_devices_host *host, struct err *err);
void vm_devices_destroy(struct vm_devices *d);
/* A boot: the devices' AML for the DSDT into @buf; bytes, or -errno. */
int vm_devices_dsdt_aml(struct vm_devices *d, uint8_t *buf, size_t len,
			struct err *err);

/*
 * The only way device I/O stops (vCPUs parked first): each device starts
 * no new request, waits until none is in flight, then flushes once.
 * Idempotent. On failure every device runs again and @err says which.
 */
int vm_devices_pause(struct vm_devices *d, struct err *err);
/* Serve what arrived while paused; nothing if not paused. */
void vm_devices_resume(struct vm_devices *d);

/* The console input fd to poll, or -1 while the UART has no room. */
int vm_devices_console_wait_fd(struct vm_devices *d);
/* Feed console input to the UART (main loop). */
void vm_devices_console_input(struct vm_devices *d);
/*
 * Ctrl+Alt+Del on the i8042 keyboard, with IRQ 1 (the Firecracker API's
 * SendCtrlAltDel): 0, or -errno with the reason in @err.
 */
int vm_devices_ctrl_alt_del(struct vm_devices *d, struct err *err);
/* Per-device statistics as a JSON object. */
json_t *vm_devices_stats(struct vm_devices *d);

/* Every device's state into the snapshot / back from it (paused). */
int vm_devices_save(struct vm_devices *d, struct snap_writer *w,
		    struct err *err);
int vm_devices_load(struct vm_devices *d, struct snap_reader *r,
		    struct err *err);
/* Wall clock of the guest's RTC, for restore's time policy. */
void vm_devices_rtc_resync(struct vm_devices *d, bool keep_clock);

#endif
