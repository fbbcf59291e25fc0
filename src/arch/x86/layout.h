/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fixed guest-physical addresses used while booting an x86 guest. Everything
 * below 1 MiB is ours: the kernel is loaded at or above 1 MiB, so nothing
 * here can collide with it. e820 reports [0x9fc00, 0xa0000) and
 * [0xe0000, 0x100000) reserved so the guest keeps the firmware tables.
 */
#ifndef KHYVE_X86_LAYOUT_H
#define KHYVE_X86_LAYOUT_H

/* Boot GDT (5 descriptors, see boot.h) and an empty IDT right after it. */
#define BOOT_GDT_ADDR 0x500ULL
#define BOOT_IDT_ADDR 0x540ULL

/* PVH: hvm_start_info, then the module list, then the memory map. */
#define PVH_START_INFO_ADDR 0x6000ULL
#define PVH_MODLIST_ADDR    0x6040ULL
#define PVH_MEMMAP_ADDR	    0x6080ULL
#define PVH_AREA_END	    0x7000ULL

/* Linux zero page (struct boot_params, 4 KiB). */
#define BOOT_ZERO_PAGE_ADDR 0x7000ULL

/* Initial stack for the boot CPU (grows down from here; 0x8000-0x8fff). */
#define BOOT_STACK_TOP 0x8ff0ULL

/*
 * Identity page tables covering [0, 4 GiB) with 2 MiB pages: one PML4, one
 * PDPT and four page directories (one per GiB).
 */
#define BOOT_PML4_ADDR 0x9000ULL
#define BOOT_PDPT_ADDR 0xa000ULL
#define BOOT_PD_ADDR   0xb000ULL /* 4 pages: 0xb000-0xefff */
#define BOOT_PD_COUNT  4

/* Kernel command line, NUL-terminated; 64 KiB area. */
#define BOOT_CMDLINE_ADDR 0x20000ULL
#define BOOT_CMDLINE_MAX  0x10000ULL

/* End of conventional RAM reported to the guest (EBDA-sized hole after). */
#define BOOT_EBDA_START 0x9fc00ULL
#define BOOT_LOWMEM_END 0xa0000ULL

/* ACPI tables (RSDP first so legacy scanning of 0xe0000.. finds it). */
#define ACPI_AREA_START 0xe0000ULL
#define ACPI_AREA_END	0xef000ULL
#define ACPI_RSDP_ADDR	ACPI_AREA_START

/*
 * The VM generation ID (src/dev/vmgenid.c): a page of its own in the
 * e820-reserved firmware area, the 16-byte ID at its start. A restore
 * takes the address from the snapshot, not from here.
 */
#define BOOT_VMGENID_ADDR 0xef000ULL

/* Intel MP table: floating pointer, then the configuration table. */
#define MPTABLE_START 0xf0000ULL
#define MPTABLE_END   0xffff0ULL

/*
 * The real-mode reset vector (f000:fff0). khyve has no BIOS; a guest that
 * "reboots through the BIOS" jumps here (Linux does on a hardware-reduced
 * ACPI machine without EFI: its reboot_type becomes BOOT_EFI, then
 * BOOT_BIOS), so a 16-byte stub here asks for a reset through 0xcf9.
 */
#define BOOT_RESET_VECTOR 0xffff0ULL

/* Firmware area the e820 map reserves. */
#define BOOT_FW_AREA_START 0xe0000ULL
#define BOOT_FW_AREA_END   0x100000ULL

/* Classic load address of the protected-mode kernel. */
#define BOOT_KERNEL_ADDR 0x100000ULL

/* Interrupt controller addresses the tables describe. */
#define BOOT_IOAPIC_ADDR 0xfec00000ULL
#define BOOT_LAPIC_ADDR	 0xfee00000ULL

/* Ports of the VMM's ACPI power-management and reset registers. */
#define BOOT_ACPI_SLEEP_CTL_PORT 0x600
#define BOOT_ACPI_SLEEP_STS_PORT 0x601
#define BOOT_ACPI_RESET_PORT	 0xcf9
#define BOOT_ACPI_RESET_VALUE	 0x6
#define BOOT_ACPI_SCI_IRQ	 9

/* Most vCPUs the tables can describe: xAPIC ids 0..254, IOAPIC id ncpus. */
#define BOOT_MAX_CPUS 254

#endif
