/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ACPI tables for a firmware-less guest: RSDP (v2) -> XSDT -> FADT (hardware
 * reduced, sleep/reset registers in I/O space), MADT, plus optional extra
 * tables (e.g. MCFG); FADT -> DSDT holding \_S5_ so the guest can power off.
 * Everything lives in [ACPI_AREA_START, ACPI_AREA_END) with the RSDP first.
 */
#ifndef KHYVE_X86_ACPI_H
#define KHYVE_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

#define ACPI_HDR_SIZE	  36
#define ACPI_RSDP_SIZE	  36
#define ACPI_FADT_SIZE	  276
#define ACPI_OEM_ID	  "KHYVE "
#define ACPI_OEM_TABLE_ID "KHYVEVM "

/* FADT flags and IA-PC boot architecture flags we use. */
#define ACPI_FADT_F_PWR_BUTTON	  (1u << 4)
#define ACPI_FADT_F_SLP_BUTTON	  (1u << 5)
#define ACPI_FADT_F_RESET_REG_SUP (1u << 10)
#define ACPI_FADT_F_HW_REDUCED	  (1u << 20)
#define ACPI_IAPC_LEGACY_DEVICES  (1u << 0)
#define ACPI_IAPC_8042		  (1u << 1)
#define ACPI_IAPC_NO_VGA	  (1u << 2)

/* Sleep control register value the guest writes to enter S5 (poweroff):
 * SLP_TYP (bits 2-4) = 5 from \_S5_, SLP_EN (bit 5). */
#define ACPI_SLEEP_CTL_S5 ((5u << 2) | (1u << 5))

/*
 * A complete table supplied by another component (e.g. MCFG for PCIe ECAM):
 * at least ACPI_HDR_SIZE bytes with the header's length field == @len. It is
 * copied and linked from the XSDT; its checksum is recomputed here.
 */
struct acpi_table_blob {
	const void *data;
	size_t len;
};

struct acpi_config {
	unsigned ncpus;
	/* AML appended to the DSDT body after \_S5_ (may be NULL). */
	const uint8_t *dsdt_aml;
	size_t dsdt_aml_len;
	const struct acpi_table_blob *extra;
	unsigned nextra;
};

/*
 * Build all tables into guest memory. Returns 0 and the RSDP address in
 * @rsdp_gpa (always ACPI_RSDP_ADDR), -EINVAL for bad input, -ENOSPC if the
 * tables overflow the area, -EFAULT if the area is not guest RAM.
 */
int acpi_build(const struct guest_mem *m, const struct acpi_config *cfg,
	       uint64_t *rsdp_gpa);

/* 8-bit checksum byte that makes @len bytes at @p sum to zero. */
uint8_t acpi_checksum(const void *p, size_t len);

#endif
