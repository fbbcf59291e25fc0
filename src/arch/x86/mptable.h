/* SPDX-License-Identifier: BSD-2-Clause */
/* Intel MultiProcessor Specification 1.4 tables (legacy SMP discovery). */
#ifndef KHYVE_X86_MPTABLE_H
#define KHYVE_X86_MPTABLE_H

#include <stdint.h>

#include "guest_mem.h"

#define MP_PCI_BUS_ID 0
#define MP_ISA_BUS_ID 1

/*
 * Write the MP floating pointer at MPTABLE_START and the configuration
 * table right after it: one processor per vCPU (APIC id = index, BSP = 0),
 * buses PCI 0 and ISA 1, one IOAPIC (id @ncpus, 0xfec00000), ISA IRQs 0-15
 * routed to IOAPIC pins (IRQ0 -> pin 2, IRQ2 is the cascade and omitted),
 * ExtINT on LINT0 and NMI on LINT1 of every local APIC.
 * Returns 0, -EINVAL for a bad @ncpus, -ENOSPC/-EFAULT if it does not fit.
 * @gpa_out (may be NULL) receives the floating pointer's address.
 */
int mptable_build(const struct guest_mem *m, unsigned ncpus, uint64_t *gpa_out);

#endif
