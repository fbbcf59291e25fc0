/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The machine's devices: legacy platform devices at fixed ports, the PCI
 * bus and the -s devices on it, and their snapshot sections.
 */
#ifndef KHYVE_VM_DEVICES_H
#define KHYVE_VM_DEVICES_H

#include <stdbool.h>
#include <stdio.h>

#include "snap.h"

struct vm;

/* `khyve -s help`. */
void vm_devices_list(FILE *out);
/* The console input fd to poll, or -1 while the UART has no room. */
int vm_devices_console_wait_fd(struct vm *vm);
/* Every device's state into the snapshot / back from it. */
int vm_devices_save(struct vm *vm, struct snap_writer *w, char *err,
		    size_t errlen);
int vm_devices_load(struct vm *vm, struct snap_reader *r, char *err,
		    size_t errlen);
/* Wait for in-flight block requests and flush the images. */
int vm_devices_drain(struct vm *vm, char *err, size_t errlen);
/* Wall clock of the guest's RTC, for restore's time policy. */
void vm_devices_rtc_resync(struct vm *vm, bool keep_clock);

#endif
