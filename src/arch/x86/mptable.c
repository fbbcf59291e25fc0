/* SPDX-License-Identifier: BSD-2-Clause */
#include "mptable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "layout.h"

/* Sizes and codes from the MP spec 1.4, chapter 4. */
#define MPF_SIZE       16
#define MPC_HDR_SIZE   44
#define MPC_CPU_SIZE   20
#define MPC_SMALL_SIZE 8 /* bus, IOAPIC, IO and local interrupt entries */

#define MP_ENT_CPU    0
#define MP_ENT_BUS    1
#define MP_ENT_IOAPIC 2
#define MP_ENT_IOINT  3
#define MP_ENT_LINT   4

#define MP_INT_INT    0
#define MP_INT_NMI    1
#define MP_INT_EXTINT 3

#define MP_CPU_EN	  0x1
#define MP_CPU_BP	  0x2
#define MP_APIC_VERSION	  0x14
#define MP_IOAPIC_VERSION 0x11
/* Family 6 signature; features FPU (bit 0) and APIC (bit 9). */
#define MP_CPU_SIGNATURE 0x600
#define MP_CPU_FEATURES	 0x201

static uint8_t mp_csum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

static uint8_t *mp_small(uint8_t *p, uint8_t type, uint8_t a, uint16_t flags,
			 uint8_t bus, uint8_t irq, uint8_t dst, uint8_t pin)
{
	p[0] = type;
	p[1] = a;
	put_le16(p + 2, flags);
	p[4] = bus;
	p[5] = irq;
	p[6] = dst;
	p[7] = pin;
	return p + MPC_SMALL_SIZE;
}

/* Floating pointer: feature byte 1 = 0 means "config table present". */
static void mp_floating(uint8_t *p, uint64_t cfg_gpa)
{
	memcpy(p, "_MP_", 4);
	put_le32(p + 4, (uint32_t)cfg_gpa);
	p[8] = 1; /* length in 16-byte units */
	p[9] = 4; /* spec revision 1.4 */
	p[10] = mp_csum(p, MPF_SIZE);
}

/* One processor entry per vCPU; vCPU 0 is the bootstrap processor. */
static uint8_t *mp_cpus(uint8_t *p, unsigned ncpus)
{
	for (unsigned i = 0; i < ncpus; i++, p += MPC_CPU_SIZE) {
		p[0] = MP_ENT_CPU;
		p[1] = (uint8_t)i;
		p[2] = MP_APIC_VERSION;
		p[3] = MP_CPU_EN | (i == 0 ? MP_CPU_BP : 0);
		put_le32(p + 4, MP_CPU_SIGNATURE);
		put_le32(p + 8, MP_CPU_FEATURES);
	}
	return p;
}

/* The PCI and ISA buses and the one IOAPIC. */
static uint8_t *mp_buses_ioapic(uint8_t *p, uint8_t ioapic_id)
{
	p[0] = MP_ENT_BUS;
	p[1] = MP_PCI_BUS_ID;
	memcpy(p + 2, "PCI   ", 6);
	p += MPC_SMALL_SIZE;
	p[0] = MP_ENT_BUS;
	p[1] = MP_ISA_BUS_ID;
	memcpy(p + 2, "ISA   ", 6);
	p += MPC_SMALL_SIZE;
	p[0] = MP_ENT_IOAPIC;
	p[1] = ioapic_id;
	p[2] = MP_IOAPIC_VERSION;
	p[3] = 1; /* enabled */
	put_le32(p + 4, (uint32_t)BOOT_IOAPIC_ADDR);
	return p + MPC_SMALL_SIZE;
}

/* The ISA IRQs' IOAPIC pins, then the local APICs' LINT0/LINT1. */
static uint8_t *mp_interrupts(uint8_t *p, uint8_t ioapic_id)
{
	for (unsigned irq = 0; irq < 16; irq++) {
		/*
		 * The PIT's IRQ0 arrives on IOAPIC pin 2 (the ISA override the
		 * MADT also reports); pin 0 carries the 8259's ExtINT, so ISA
		 * IRQ2 (the cascade) has no pin of its own.
		 */
		if (irq == 2)
			continue;
		p = mp_small(p, MP_ENT_IOINT, MP_INT_INT, 0, MP_ISA_BUS_ID,
			     (uint8_t)irq, ioapic_id,
			     (uint8_t)(irq == 0 ? 2 : irq));
	}
	/* Destination 0xff: every local APIC. */
	p = mp_small(p, MP_ENT_LINT, MP_INT_EXTINT, 0, MP_ISA_BUS_ID, 0, 0xff,
		     0);
	return mp_small(p, MP_ENT_LINT, MP_INT_NMI, 0, MP_ISA_BUS_ID, 0, 0xff,
			1);
}

/* Config table header; written last since its checksum covers the entries. */
static void mp_config_header(uint8_t *p, size_t cfg_len, unsigned nent)
{
	memcpy(p, "PCMP", 4);
	put_le16(p + 4, (uint16_t)cfg_len);
	p[6] = 4;
	memcpy(p + 8, "KHYVE   ", 8);
	memcpy(p + 16, "KHYVE VM    ", 12);
	put_le16(p + 34, (uint16_t)nent);
	put_le32(p + 36, (uint32_t)BOOT_LAPIC_ADDR);
	p[7] = mp_csum(p, cfg_len);
}

int mptable_build(const struct guest_mem *m, unsigned ncpus, uint64_t *gpa_out)
{
	uint8_t ioapic_id = (uint8_t)ncpus;
	unsigned nent;
	uint8_t *buf, *p;
	size_t len;
	int ret;

	if (ncpus == 0 || ncpus > BOOT_MAX_CPUS)
		return -EINVAL;
	/* CPUs, 2 buses, 1 IOAPIC, 15 ISA IRQs (no IRQ2), 2 local ints. */
	nent = ncpus + 2 + 1 + 15 + 2;
	len = MPF_SIZE + MPC_HDR_SIZE + ncpus * MPC_CPU_SIZE +
	      (nent - ncpus) * MPC_SMALL_SIZE;
	if (MPTABLE_START + len > MPTABLE_END)
		return -ENOSPC;
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;

	mp_floating(buf, MPTABLE_START + MPF_SIZE);
	/* Entries must appear grouped by type in ascending type order. */
	p = buf + MPF_SIZE + MPC_HDR_SIZE;
	p = mp_cpus(p, ncpus);
	p = mp_buses_ioapic(p, ioapic_id);
	mp_interrupts(p, ioapic_id);
	mp_config_header(buf + MPF_SIZE, len - MPF_SIZE, nent);

	ret = guest_mem_write(m, MPTABLE_START, buf, len);
	free(buf);
	if (!ret && gpa_out)
		*gpa_out = MPTABLE_START;
	return ret;
}
