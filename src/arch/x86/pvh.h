/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * PVH direct boot (Xen's x86 PVH ABI, also used by QEMU/Firecracker/CH):
 * the kernel advertises a 32-bit entry point in an ELF note and is started
 * in protected mode with EBX pointing at struct hvm_start_info.
 */
#ifndef KHYVE_X86_PVH_H
#define KHYVE_X86_PVH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "e820.h"
#include "guest_mem.h"

#define XEN_ELFNOTE_GUEST_OS	 6
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC		 0x336ec578
#define HVM_START_INFO_SIZE	 56
#define HVM_MODLIST_ENTRY_SIZE	 32
#define HVM_MEMMAP_ENTRY_SIZE	 24

/*
 * Look for the PHYS32_ENTRY note (owner "Xen") in the PT_NOTE segments of
 * ELF image @img. Returns 0 and the entry in @entry, -ENOENT if there is
 * none, -EINVAL/-ENOEXEC for a malformed image.
 */
int pvh_find_entry(const uint8_t *img, size_t len, uint64_t *entry);

/*
 * True if ELF image @img carries Linux's own notes (owner "Linux", or a
 * Xen GUEST_OS note saying "linux"): it is a Linux kernel, whose command
 * line takes Linux's words. Another PVH guest's command line is its own.
 */
bool elf_is_linux(const uint8_t *img, size_t len);

struct pvh_start {
	uint64_t cmdline_gpa;		  /* 0: none */
	uint64_t initrd_gpa, initrd_size; /* size 0: no module */
	uint64_t rsdp_gpa;
	const struct e820_entry *e820;
	unsigned e820_entries;
};

/*
 * Write hvm_start_info (version 1) at PVH_START_INFO_ADDR with its module
 * list and memory map after it. Returns 0 and the address in @gpa, -ENOSPC
 * if the memory map does not fit, -EFAULT if the area is not RAM.
 */
int pvh_build_start_info(const struct guest_mem *m, const struct pvh_start *p,
			 uint64_t *gpa);

#endif
