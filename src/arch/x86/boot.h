/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * x86 kernel loading: detects bzImage / ELF, loads kernel, initrd and
 * command line, and writes the boot structures (zero page or PVH start
 * info, e820, ACPI, MP table, identity page tables, GDT) into guest memory.
 * Pure logic over struct guest_mem: the VMM sets the vCPU registers from
 * struct boot_info.
 *
 * Entry state the VMM must establish (boot.rst, "64-bit boot protocol";
 * Xen's pvh.pandoc):
 *   BOOT_MODE_LINUX64: long mode, paging on with CR3 = bi->cr3 (identity
 *     map of 0-4 GiB), CS = BOOT_SEL_CODE64, DS/ES/SS = BOOT_SEL_DATA,
 *     GDT at bi->gdt_gpa/gdt_limit, RSI = bi->boot_params_gpa,
 *     RIP = bi->entry, interrupts off.
 *   BOOT_MODE_PVH: 32-bit protected mode, paging off, CS = BOOT_SEL_CODE32,
 *     DS/ES/SS = BOOT_SEL_DATA, EBX = bi->start_info_gpa, RIP = bi->entry,
 *     CR0.PE = 1, interrupts off.
 */
#ifndef KHYVE_X86_BOOT_H
#define KHYVE_X86_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acpi.h"
#include "err.h"
#include "guest_mem.h"

enum boot_mode {
	BOOT_MODE_LINUX64 = 1, /* 64-bit entry, RSI = boot_params */
	BOOT_MODE_PVH = 2,     /* 32-bit entry, EBX = hvm_start_info */
};

enum kernel_format {
	KERNEL_FMT_BZIMAGE = 1,		 /* decompressor runs in the guest */
	KERNEL_FMT_BZIMAGE_UNPACKED = 2, /* decompressed on the host */
	KERNEL_FMT_ELF = 3,		 /* ELF vmlinux (or PVH guest) */
};

/* GDT selectors (Linux wants __BOOT_CS 0x10 and __BOOT_DS 0x18). */
#define BOOT_SEL_CODE32	 0x08
#define BOOT_SEL_CODE64	 0x10
#define BOOT_SEL_DATA	 0x18
#define BOOT_SEL_TSS	 0x20
#define BOOT_GDT_ENTRIES 5

/* kernel_load() flags (boot_config.flags). */
#define BOOT_F_NO_UNPACK  0x1 /* bzImage: let the guest decompress itself */
#define BOOT_F_PREFER_PVH 0x2 /* use PVH when the kernel offers both */
#define BOOT_F_NO_MPTABLE 0x4
#define BOOT_F_NO_ACPI	  0x8

struct boot_config {
	const char *kernel_path;
	const char *initrd_path; /* NULL: no initrd */
	const char *cmdline;	 /* NULL: empty */
	/* Appended to @cmdline only when the kernel is Linux (NULL: none). */
	const char *linux_extra;
	unsigned ncpus;
	unsigned flags; /* BOOT_F_* */
	/* Extra ACPI tables (e.g. MCFG) and DSDT AML, see acpi.h. */
	const struct acpi_table_blob *acpi_extra;
	unsigned acpi_nextra;
	const uint8_t *dsdt_aml;
	size_t dsdt_aml_len;
};

struct boot_info {
	enum boot_mode mode; /* what to use; see has_* for what is possible */
	enum kernel_format format;
	uint64_t entry; /* RIP for @mode */
	bool has_linux64, has_pvh;
	bool is_linux;	       /* bzImage, or ELF with Linux's notes */
	bool cmdline_appended; /* linux_extra was added to the command line */
	uint64_t linux64_entry, pvh_entry;
	uint64_t boot_params_gpa; /* RSI (0 unless has_linux64) */
	uint64_t start_info_gpa;  /* EBX (0 unless has_pvh) */
	uint16_t protocol;	  /* bzImage boot protocol version, else 0 */
	uint64_t kernel_start, kernel_end; /* guest range the kernel owns */
	uint64_t initrd_gpa, initrd_size;
	uint64_t cmdline_gpa;
	uint32_t cmdline_len; /* without the NUL */
	uint64_t cr3;	      /* identity page tables (LINUX64 mode) */
	uint64_t gdt_gpa;
	uint16_t gdt_limit;
	uint64_t idt_gpa; /* empty IDT; limit 0 */
	uint64_t stack_top;
	uint64_t rsdp_gpa;    /* 0 with BOOT_F_NO_ACPI */
	uint64_t mptable_gpa; /* 0 with BOOT_F_NO_MPTABLE */
	unsigned e820_entries;
};

/*
 * Load cfg->kernel_path (bzImage or ELF), the optional initrd and command
 * line into @m as @cfg says. On failure returns -errno and writes one line
 * naming the problem to @err.
 */
int kernel_load(const struct guest_mem *m, const struct boot_config *cfg,
		struct boot_info *bi, struct err *err);
/* Same from memory; cfg->kernel_path/initrd_path are only used in messages. */
int kernel_load_buf(const struct guest_mem *m, const struct boot_config *cfg,
		    const uint8_t *kernel, size_t klen, const uint8_t *initrd,
		    size_t ilen, struct boot_info *bi, struct err *err);

/* Identity-map [0, 4 GiB) with 2 MiB pages at BOOT_PML4_ADDR. */
int boot_build_page_tables(const struct guest_mem *m, uint64_t *cr3);
/* Write the boot GDT (null, code32, code64, data, TSS) at BOOT_GDT_ADDR. */
int boot_build_gdt(const struct guest_mem *m, uint64_t *base, uint16_t *limit);
/* A reset stub at the real-mode reset vector (layout.h BOOT_RESET_VECTOR). */
int boot_write_reset_vector(const struct guest_mem *m);
/* The raw descriptor for a BOOT_SEL_* selector (0 for unknown ones). */
uint64_t boot_gdt_entry(unsigned sel);

/* Segment register contents decoded from a descriptor (maps to kvm_segment). */
struct boot_segment {
	uint64_t base;
	uint32_t limit; /* in bytes, granularity applied */
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl;
};
void boot_segment_from_gdt(unsigned sel, struct boot_segment *seg);

/* --- ELF helpers shared with pvh.c and the unpack path --- */
#define BOOT_ELF_MAX_PHDRS 64

struct boot_phdr {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

struct boot_elf {
	bool is64;
	uint64_t entry;
	unsigned phnum;
	struct boot_phdr ph[BOOT_ELF_MAX_PHDRS];
};

/* Parse an x86 ELF32/ELF64 executable header and program headers, with
 * every offset checked against @len. 0 or -EINVAL / -ENOEXEC (not ELF). */
int boot_elf_parse(const uint8_t *img, size_t len, struct boot_elf *e);

#endif
