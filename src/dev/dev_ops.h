/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The life cycle of a device given with -s: one struct dev_ops per device
 * file, listed once in src/vm_devices.c's table, which drives every
 * device through it (docs/architecture.md, "Device life cycle").
 */
#ifndef KHYVE_DEV_OPS_H
#define KHYVE_DEV_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "guest_mem.h"
#include "iothread.h"
#include "irq.h"
#include "virtio_pci.h"

/* What the machine hands a device it creates. */
struct dev_env {
	const struct guest_mem *mem;
	struct iothread *io; /* shared I/O thread */
	const struct msi_sink *msi;
	/* An ISA/IOAPIC interrupt line: set .gsi and raise it (platform). */
	struct irq_line irq;
	/* The whole machine's configuration, for platform devices. */
	const struct vm_config *cfg;
	unsigned slot, func; /* for messages: "-s SLOT,NAME: ..." */
	/* The host binding comes from a snapshot: create nothing it names. */
	bool from_snapshot;
	/*
	 * Restore: start paused (no I/O, no interrupt) until the vCPUs'
	 * state is in KVM; the machine resumes it then.
	 */
	bool start_paused;
};

/* What a created device is: its own state and its PCI transport. */
struct dev_instance {
	void *dev;	       /* handed back to every op below */
	struct virtio_pci *vp; /* placed on the PCI bus by the machine */
};

/* One statistics counter, e.g. { "read_bytes", 4096 }. */
struct dev_stat {
	const char *name;
	uint64_t value;
};

/* A word on how the device works, shown with its counters, e.g.
 * { "aio", "io_uring" }. */
struct dev_text {
	const char *name;
	const char *value;
};

#define DEV_MAX_TEXTS 2

#define DEV_MAX_STATS 12
#define DEV_MAX_KICKS 4

/*
 * What on the host a device's option string names (docs/security.md):
 * @kind "disk", "tap", "file", "append", "socket", or the back-end's own
 * name when it names nothing ("stdio", "null"); @target the path or
 * interface, "" when none is named (a new TAP, stdio).
 */
#define DEV_BINDING_MAX 512
struct dev_binding {
	char kind[DEV_BINDING_MAX];
	char target[DEV_BINDING_MAX];
};

struct dev_ops {
	const char *name; /* the -s emulation name */
	const char *help; /* one line for `khyve -s help` */
	/*
	 * A platform device: not given with -s but created for every
	 * guest, with an empty option string (its settings come from
	 * env->cfg), no slot and no PCI transport (vp stays NULL). Its
	 * snapshot sections are instance 0.
	 */
	bool platform;
	/*
	 * Parse @conf (the -s option after "NAME,"; the device's own
	 * syntax) and create the device into @out. On failure nothing is
	 * left allocated and @err says why, naming the -s option; the
	 * device logs nothing of it (the caller prints it once). NULL:
	 * nothing to create (the host bridge).
	 */
	int (*create)(const char *conf, const struct dev_env *env,
		      struct dev_instance *out, struct err *err);
	/* Stop and free what create made. */
	void (*destroy)(void *dev);
	/*
	 * The pause contract: start no new request, wait until none is in
	 * flight, then flush what was written to the host once. On return
	 * the device touches neither guest memory nor its back-end and
	 * raises no interrupt until resume. -errno if the flush failed (the
	 * device stays paused). NULL: the device never works on its own
	 * (served on the vCPU thread that kicks it).
	 */
	int (*pause)(void *dev);
	/* Serve whatever arrived while paused. */
	void (*resume)(void *dev);
	/* Fill up to DEV_MAX_STATS counters; how many. */
	unsigned (*stats)(void *dev, struct dev_stat *out);
	/* Fill up to DEV_MAX_TEXTS words beside them; how many. NULL: none. */
	unsigned (*texts)(void *dev, struct dev_text *out);
	/* Eventfd kicking queue @q (bound to a KVM ioeventfd), or -errno
	 * past the last queue. NULL: kicks come as MMIO exits. */
	int (*kick_fd)(void *dev, unsigned q);
	/*
	 * Snapshot: visit each section of the device's state (the same
	 * walk saves and loads), then post_load checks the loaded state
	 * against the host and re-maps what it points at; a refusal says
	 * why in @err (not in the log). Called paused.
	 */
	int (*snap_foreach)(void *dev, uint32_t instance, virtio_snap_fn fn,
			    void *ctx);
	int (*post_load)(void *dev, struct err *err);
	/*
	 * The host resource @conf binds the device to, for `khyvectl
	 * snapshot info` and restore's --strict-bindings (src/config.c),
	 * which requires a non-empty target from the command line. NULL:
	 * the device binds nothing on the host.
	 */
	void (*host_binding)(const char *conf, struct dev_binding *b);
	/*
	 * A fresh boot: write the device's AML (objects for the DSDT's root
	 * scope) into @buf, at most @len bytes; how many, or -ENOSPC.
	 * NULL: nothing in ACPI.
	 */
	int (*dsdt_aml)(void *dev, uint8_t *buf, size_t len);
};

/* The table entry (src/vm_devices.c) for an -s emulation name, or NULL. */
const struct dev_ops *dev_ops_find(const char *name);

#endif
