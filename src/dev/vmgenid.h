/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * VM generation ID (Microsoft's "Virtual Machine Generation ID" spec, as
 * Linux's drivers/virt/vmgenid.c reads it): 16 random bytes in guest RAM
 * at an address the DSDT's VMGENCTR device gives in its ADDR method. khyve
 * writes a fresh ID on every restore (a clone is a restore) before any
 * vCPU runs, then raises an edge on a Generic Event Device (ACPI0013)
 * interrupt whose _EVT does Notify (VGEN, 0x80), on which Linux re-reads
 * the ID and reseeds its RNG. A platform device: on for every guest
 * unless --no-vmgenid; a snapshot has its section if the guest has one.
 */
#ifndef KHYVE_VMGENID_H
#define KHYVE_VMGENID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev_ops.h"
#include "guest_mem.h"
#include "irq.h"
#include "snap_desc.h"

#define VMGENID_SIZE 16
/* The GED's interrupt: an IOAPIC pin no other device uses (edge, high). */
#define VMGENID_GED_GSI 16

/* Saved: where the guest reads the ID and which GSI notifies it. */
struct vmgenid_state {
	uint64_t addr;
	uint32_t gsi;
};

extern const struct snap_desc vmgenid_snap;

struct vmgenid {
	struct vmgenid_state st;
	const struct guest_mem *mem;
	struct irq_line irq;
	bool present;  /* the guest has one (its ACPI names it) */
	bool notify;   /* a fresh ID since the last resume: tell the guest */
	bool migrated; /* --incoming: the same VM moves, its ID with it */
	uint64_t generations; /* IDs written by this process */
};

/* The AML (a Scope (\_SB) with VGEN and GED0) for @addr and @gsi. */
size_t vmgenid_aml(uint8_t *buf, size_t len, uint64_t addr, uint32_t gsi);
/* Write a fresh random ID into guest RAM at g->st.addr. */
int vmgenid_new_id(struct vmgenid *g, struct err *err);

extern const struct dev_ops vmgenid_dev_ops;

#endif
