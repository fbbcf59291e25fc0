/* SPDX-License-Identifier: BSD-2-Clause */
#include "boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "e820.h"
#include "kernel_unpack.h"
#include "layout.h"
#include "log.h"
#include "mptable.h"
#include "pvh.h"

/* Setup header offsets (Documentation/arch/x86/boot.rst). */
#define HDR_SETUP_SECTS	     0x1f1
#define HDR_SYSSIZE	     0x1f4
#define HDR_BOOT_FLAG	     0x1fe
#define HDR_JUMP	     0x200
#define HDR_MAGIC	     0x202
#define HDR_VERSION	     0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS	     0x211
#define HDR_CODE32_START     0x214
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21c
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE	     0x234
#define HDR_XLOADFLAGS	     0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_SETUP_DATA	     0x250
#define HDR_PREF_ADDRESS     0x258
#define HDR_INIT_SIZE	     0x260
/* The header never extends past here (edd_mbr_sig_buffer follows). */
#define HDR_LIMIT 0x290

/* Zero page (boot_params) offsets outside the setup header. */
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES	     0x1e8
#define BP_SENTINEL	     0x1ef
#define BP_E820_TABLE	     0x2d0
#define BP_SIZE		     4096

#define HDRS_MAGIC		0x53726448 /* "HdrS" */
#define LOADED_HIGH		0x01
#define KASLR_FLAG		0x02
#define KEEP_SEGMENTS		0x40
#define XLF_KERNEL_64		0x01
#define DEFAULT_INITRD_ADDR_MAX 0x37ffffffULL

#define PTE_P  0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL

/* Everything kernel_load_buf() learns while loading, before the zero page. */
struct kload {
	uint64_t start, end; /* lowest / highest byte loaded + 1 */
	uint64_t
		reserved_end; /* the kernel's memory ends here (initrd after) */
	bool has_linux64, has_pvh;
	bool is_linux; /* a bzImage, or an ELF with Linux's notes */
	uint64_t linux64_entry, pvh_entry;
	const uint8_t *hdr; /* bzImage setup header source, or NULL */
	size_t hdr_len;	    /* bytes from 0 up to the end of the header */
	uint16_t protocol;
	uint64_t cmdline_max; /* excluding the NUL */
	uint64_t initrd_max;  /* highest address + 1 the initrd may use */
	enum kernel_format format;
};

/* --- ELF --- */

int boot_elf_parse(const uint8_t *img, size_t len, struct boot_elf *e)
{
	uint64_t phoff;
	unsigned phentsize, phnum;
	uint16_t machine;

	memset(e, 0, sizeof(*e));
	if (len < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG))
		return -ENOEXEC;
	if (img[EI_DATA] != ELFDATA2LSB)
		return -EINVAL;
	if (img[EI_CLASS] == ELFCLASS64) {
		if (len < sizeof(Elf64_Ehdr))
			return -EINVAL;
		e->is64 = true;
		machine = get_le16(img + offsetof(Elf64_Ehdr, e_machine));
		e->entry = get_le64(img + offsetof(Elf64_Ehdr, e_entry));
		phoff = get_le64(img + offsetof(Elf64_Ehdr, e_phoff));
		phentsize = get_le16(img + offsetof(Elf64_Ehdr, e_phentsize));
		phnum = get_le16(img + offsetof(Elf64_Ehdr, e_phnum));
		if (machine != EM_X86_64 || phentsize < sizeof(Elf64_Phdr))
			return -EINVAL;
	} else if (img[EI_CLASS] == ELFCLASS32) {
		if (len < sizeof(Elf32_Ehdr))
			return -EINVAL;
		machine = get_le16(img + offsetof(Elf32_Ehdr, e_machine));
		e->entry = get_le32(img + offsetof(Elf32_Ehdr, e_entry));
		phoff = get_le32(img + offsetof(Elf32_Ehdr, e_phoff));
		phentsize = get_le16(img + offsetof(Elf32_Ehdr, e_phentsize));
		phnum = get_le16(img + offsetof(Elf32_Ehdr, e_phnum));
		if (machine != EM_386 || phentsize < sizeof(Elf32_Phdr))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (phnum > BOOT_ELF_MAX_PHDRS || phoff > len ||
	    (uint64_t)phnum * phentsize > len - phoff)
		return -EINVAL;
	e->phnum = phnum;
	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *p = img + phoff + (uint64_t)i * phentsize;
		struct boot_phdr *ph = &e->ph[i];

		if (e->is64) {
			ph->type = get_le32(p + offsetof(Elf64_Phdr, p_type));
			ph->offset =
				get_le64(p + offsetof(Elf64_Phdr, p_offset));
			ph->vaddr = get_le64(p + offsetof(Elf64_Phdr, p_vaddr));
			ph->paddr = get_le64(p + offsetof(Elf64_Phdr, p_paddr));
			ph->filesz =
				get_le64(p + offsetof(Elf64_Phdr, p_filesz));
			ph->memsz = get_le64(p + offsetof(Elf64_Phdr, p_memsz));
			ph->align = get_le64(p + offsetof(Elf64_Phdr, p_align));
		} else {
			ph->type = get_le32(p + offsetof(Elf32_Phdr, p_type));
			ph->offset =
				get_le32(p + offsetof(Elf32_Phdr, p_offset));
			ph->vaddr = get_le32(p + offsetof(Elf32_Phdr, p_vaddr));
			ph->paddr = get_le32(p + offsetof(Elf32_Phdr, p_paddr));
			ph->filesz =
				get_le32(p + offsetof(Elf32_Phdr, p_filesz));
			ph->memsz = get_le32(p + offsetof(Elf32_Phdr, p_memsz));
			ph->align = get_le32(p + offsetof(Elf32_Phdr, p_align));
		}
		/* Bounds of every segment's file bytes, checked once here. */
		if (ph->offset > len || ph->filesz > len - ph->offset)
			return -EINVAL;
	}
	return 0;
}

/*
 * Copy the PT_LOAD segments to their physical addresses and record the
 * span they cover in @kl.
 */
static int load_elf_segments(const struct guest_mem *m, const uint8_t *img,
			     const struct boot_elf *e, struct kload *kl,
			     struct err *err)
{
	bool have = false;

	kl->start = UINT64_MAX;
	kl->end = 0;
	for (unsigned i = 0; i < e->phnum; i++) {
		const struct boot_phdr *ph = &e->ph[i];
		uint8_t *dst;

		if (ph->type != PT_LOAD || !ph->memsz)
			continue;
		if (ph->filesz > ph->memsz)
			return err_set(
				err, -ENOEXEC,
				"malformed ELF: segment %u filesz > memsz", i);
		if (ph->paddr < BOOT_KERNEL_ADDR)
			return err_set(
				err, -ENOEXEC,
				"ELF segment at %#llx overlaps the boot area "
				"below 1 MiB",
				(unsigned long long)ph->paddr);
		dst = guest_mem_ptr(m, ph->paddr, ph->memsz);
		if (!dst)
			return err_set(
				err, -EFBIG,
				"kernel too big for guest memory (segment "
				"%#llx+%#llx outside RAM)",
				(unsigned long long)ph->paddr,
				(unsigned long long)ph->memsz);
		memcpy(dst, img + ph->offset, ph->filesz);
		/* The bss part: guest RAM may hold an earlier guest's data. */
		memset(dst + ph->filesz, 0, ph->memsz - ph->filesz);
		kl->start = MIN(kl->start, ph->paddr);
		kl->end = MAX(kl->end, ph->paddr + ph->memsz);
		have = true;
	}
	if (!have)
		return err_set(err, -ENOEXEC,
			       "ELF image has no loadable segments");
	return 0;
}

/*
 * The physical address of a 64-bit ELF's entry point: e_entry itself if a
 * segment's physical range holds it, else translated from the first segment
 * whose virtual range does. Leaves @phys alone and returns false if none.
 */
static bool elf_entry_phys(const struct boot_elf *e, uint64_t *phys)
{
	for (unsigned i = 0; i < e->phnum; i++) {
		const struct boot_phdr *ph = &e->ph[i];

		if (ph->type != PT_LOAD)
			continue;
		if (e->entry >= ph->paddr && e->entry - ph->paddr < ph->memsz) {
			*phys = e->entry;
			return true;
		}
	}
	for (unsigned i = 0; i < e->phnum; i++) {
		const struct boot_phdr *ph = &e->ph[i];

		if (ph->type != PT_LOAD)
			continue;
		if (e->entry >= ph->vaddr && e->entry - ph->vaddr < ph->memsz) {
			*phys = e->entry - ph->vaddr + ph->paddr;
			return true;
		}
	}
	return false;
}

/*
 * Load the PT_LOAD segments at their physical addresses. x86-64 vmlinux is
 * linked with ENTRY(phys_startup_64), so e_entry is already physical; an
 * entry that only matches a segment's virtual range is translated.
 */
static int load_elf(const struct guest_mem *m, const uint8_t *img, size_t len,
		    struct kload *kl, struct err *err)
{
	struct boot_elf e;
	uint64_t pvh;
	int ret;

	ret = boot_elf_parse(img, len, &e);
	if (ret)
		return err_set(err, -ENOEXEC, "malformed or non-x86 ELF image");
	ret = load_elf_segments(m, img, &e, kl, err);
	if (ret)
		return ret;
	kl->reserved_end = MAX(kl->reserved_end, kl->end);

	ret = pvh_find_entry(img, len, &pvh);
	if (ret == 0) {
		kl->has_pvh = true;
		kl->pvh_entry = pvh;
	} else if (ret != -ENOENT) {
		return err_set(err, -ENOEXEC,
			       "malformed PVH note in ELF image");
	}

	/* A 32-bit ELF can only be entered through PVH. */
	if (e.is64)
		kl->has_linux64 = elf_entry_phys(&e, &kl->linux64_entry);
	if (!kl->has_linux64 && !kl->has_pvh)
		return err_set(
			err, -ENOEXEC,
			e.is64 ? "ELF entry point %#llx is outside its segments"
			       : "32-bit ELF image without a PVH note (entry "
				 "%#llx)",
			(unsigned long long)e.entry);
	return 0;
}

/* --- bzImage --- */

/*
 * Check the setup header and take from it what the loader needs later:
 * where the protected-mode code starts (@pm_off) and how long it is
 * (@pm_len), and the header's own limits in @kl.
 */
static int bzimage_read_header(const uint8_t *k, size_t klen, struct kload *kl,
			       uint64_t *pm_off, uint64_t *pm_len,
			       struct err *err)
{
	unsigned setup_sects;
	uint16_t ver;

	if (klen < HDR_LIMIT)
		return err_set(err, -ENOEXEC, "truncated bzImage (%zu bytes)",
			       klen);
	ver = get_le16(k + HDR_VERSION);
	kl->protocol = ver;
	/* xloadflags and the 64-bit entry arrived in 2.12. */
	if (ver < 0x20c)
		return err_set(
			err, -ENOEXEC,
			"unsupported boot protocol version %u.%02u (need 2.12+ "
			"for 64-bit entry)",
			ver >> 8, ver & 0xff);
	if (!(get_le16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return err_set(
			err, -ENOEXEC,
			"bzImage has no 64-bit entry point (XLF_KERNEL_64 "
			"clear)");
	setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
	*pm_off = (setup_sects + 1) * 512ULL;
	if (*pm_off >= klen)
		return err_set(err, -ENOEXEC,
			       "truncated bzImage (setup %llu bytes, file %zu)",
			       (unsigned long long)*pm_off, klen);
	*pm_len = klen - *pm_off;
	/* syssize (16-byte units) tells how much protected-mode code follows.
	 */
	if ((uint64_t)get_le32(k + HDR_SYSSIZE) * 16 > *pm_len)
		return err_set(
			err, -ENOEXEC,
			"truncated bzImage (%llu of %llu kernel bytes present)",
			(unsigned long long)*pm_len,
			(unsigned long long)get_le32(k + HDR_SYSSIZE) * 16);
	kl->hdr = k;
	/* The header ends at 0x202 + the jump's 8-bit displacement. */
	kl->hdr_len = MIN((size_t)(0x202 + k[HDR_JUMP + 1]), (size_t)HDR_LIMIT);
	kl->cmdline_max = get_le32(k + HDR_CMDLINE_SIZE);
	kl->initrd_max = (uint64_t)get_le32(k + HDR_INITRD_ADDR_MAX) + 1;
	if (kl->initrd_max == 1)
		kl->initrd_max = DEFAULT_INITRD_ADDR_MAX + 1;
	return 0;
}

/*
 * Decompress the bzImage on the host and load the vmlinux inside it, which
 * saves the guest its slow decompression. Sets *@loaded only if that
 * worked; a kernel we cannot unpack is not an error (the guest can still
 * decompress what we cannot).
 */
static int load_unpacked(const struct guest_mem *m, const uint8_t *k,
			 size_t klen, struct kload *kl, bool *loaded,
			 struct err *err)
{
	uint8_t *elf = NULL;
	size_t elflen = 0;
	struct err ue = {0};
	int ret;

	*loaded = false;
	ret = kernel_unpack_bzimage(k, klen, &elf, &elflen, NULL, &ue);
	if (ret) {
		log_warn("cannot unpack bzImage on the host (%s); "
			 "booting it with in-guest decompression",
			 err_msg(&ue));
		return 0;
	}
	ret = load_elf(m, elf, elflen, kl, err);
	free(elf);
	if (ret)
		return ret;
	if (!kl->has_linux64)
		return err_set(err, -ENOEXEC,
			       "unpacked vmlinux has no 64-bit entry");
	kl->format = KERNEL_FMT_BZIMAGE_UNPACKED;
	*loaded = true;
	return 0;
}

/*
 * Classic path. A relocatable kernel decompresses in place when it is
 * loaded at pref_address (saves a copy); others at 1 MiB copy
 * themselves to LOAD_PHYSICAL_ADDR (= pref_address) anyway. Either
 * way the decompressor needs init_size bytes from pref_address on.
 */
static int load_compressed(const struct guest_mem *m, const uint8_t *k,
			   uint64_t pm_off, uint64_t pm_len, struct kload *kl,
			   struct err *err)
{
	uint64_t low_end = m->r[0].size, load, pref, init_size;

	pref = get_le64(k + HDR_PREF_ADDRESS);
	init_size = get_le32(k + HDR_INIT_SIZE);
	load = BOOT_KERNEL_ADDR;
	if (k[HDR_RELOCATABLE] && pref >= BOOT_KERNEL_ADDR &&
	    pref + MAX(pm_len, init_size) <= low_end)
		load = pref;
	kl->start = load;
	kl->end = load + pm_len;
	kl->reserved_end = MAX(kl->end, MAX(load, pref) + init_size);
	if (kl->reserved_end > low_end ||
	    guest_mem_write(m, load, k + pm_off, pm_len))
		return err_set(
			err, -EFBIG,
			"kernel too big for guest memory (needs %llu MiB below "
			"%llu MiB)",
			(unsigned long long)(kl->reserved_end >> 20),
			(unsigned long long)(low_end >> 20));
	/* startup_64 sits 0x200 into the protected-mode code. */
	kl->linux64_entry = load + 0x200;
	kl->has_linux64 = true;
	kl->format = KERNEL_FMT_BZIMAGE;
	return 0;
}

static int load_bzimage(const struct guest_mem *m, const uint8_t *k,
			size_t klen, unsigned flags, struct kload *kl,
			struct err *err)
{
	/* Set on success only; gcc cannot see that err_set returns nonzero. */
	uint64_t pm_off = 0, pm_len = 0;
	bool loaded;
	int ret;

	ret = bzimage_read_header(k, klen, kl, &pm_off, &pm_len, err);
	if (ret)
		return ret;
	if (!(flags & BOOT_F_NO_UNPACK)) {
		ret = load_unpacked(m, k, klen, kl, &loaded, err);
		if (ret || loaded)
			return ret;
	}
	return load_compressed(m, k, pm_off, pm_len, kl, err);
}

/* --- zero page --- */

static int build_zero_page(const struct guest_mem *m, const struct kload *kl,
			   const struct boot_info *bi,
			   const struct e820_entry *e820, unsigned ne820)
{
	uint8_t *bp = calloc(1, BP_SIZE);
	uint8_t lf;
	int ret;

	if (!bp)
		return -ENOMEM;
	/*
	 * The page is zeroed before the setup header is copied in, which
	 * also leaves the sentinel (0x1ef) zero: a non-zero sentinel makes
	 * Linux assume a sloppy loader and wipe fields we set.
	 */
	if (kl->hdr) {
		memcpy(bp + HDR_SETUP_SECTS, kl->hdr + HDR_SETUP_SECTS,
		       kl->hdr_len - HDR_SETUP_SECTS);
	} else {
		/* Minimal header for an ELF vmlinux given directly. */
		put_le16(bp + HDR_BOOT_FLAG, 0xaa55);
		put_le32(bp + HDR_MAGIC, HDRS_MAGIC);
		put_le16(bp + HDR_VERSION, 0x020f);
		put_le32(bp + HDR_KERNEL_ALIGNMENT, 0x1000000);
		put_le32(bp + HDR_CMDLINE_SIZE, (uint32_t)kl->cmdline_max);
		put_le32(bp + HDR_INITRD_ADDR_MAX,
			 (uint32_t)(kl->initrd_max - 1));
	}
	bp[BP_SENTINEL] = 0;
	bp[HDR_TYPE_OF_LOADER] = 0xff; /* undefined loader */
	/* No KASLR happened (the guest decompressor sets it if it does). */
	lf = bp[HDR_LOADFLAGS];
	lf |= LOADED_HIGH;
	lf &= (uint8_t) ~(KASLR_FLAG | KEEP_SEGMENTS);
	bp[HDR_LOADFLAGS] = lf;
	put_le32(bp + HDR_CODE32_START, (uint32_t)kl->start);
	put_le64(bp + HDR_SETUP_DATA, 0);

	put_le32(bp + HDR_CMD_LINE_PTR, (uint32_t)bi->cmdline_gpa);
	put_le32(bp + BP_EXT_CMD_LINE_PTR, (uint32_t)(bi->cmdline_gpa >> 32));
	put_le32(bp + HDR_RAMDISK_IMAGE, (uint32_t)bi->initrd_gpa);
	put_le32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(bi->initrd_gpa >> 32));
	put_le32(bp + HDR_RAMDISK_SIZE, (uint32_t)bi->initrd_size);
	put_le32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(bi->initrd_size >> 32));
	put_le64(bp + BP_ACPI_RSDP_ADDR, bi->rsdp_gpa);
	bp[BP_E820_ENTRIES] = (uint8_t)ne820;
	e820_pack(bp + BP_E820_TABLE, e820, ne820);

	ret = guest_mem_write(m, BOOT_ZERO_PAGE_ADDR, bp, BP_SIZE);
	free(bp);
	return ret;
}

/* --- page tables and GDT --- */

int boot_build_page_tables(const struct guest_mem *m, uint64_t *cr3)
{
	const uint64_t len =
		BOOT_PD_ADDR + BOOT_PD_COUNT * PAGE_SIZE - BOOT_PML4_ADDR;
	uint8_t *p = guest_mem_ptr(m, BOOT_PML4_ADDR, len);
	uint8_t *pd;

	if (!p)
		return -EFAULT;
	memset(p, 0, len);
	put_le64(p, BOOT_PDPT_ADDR | PTE_P | PTE_RW);
	for (unsigned i = 0; i < BOOT_PD_COUNT; i++) {
		put_le64(p + (BOOT_PDPT_ADDR - BOOT_PML4_ADDR) + 8 * i,
			 (BOOT_PD_ADDR + i * PAGE_SIZE) | PTE_P | PTE_RW);
		pd = p + (BOOT_PD_ADDR - BOOT_PML4_ADDR) + i * PAGE_SIZE;
		for (unsigned j = 0; j < 512; j++)
			put_le64(pd + 8 * j, ((uint64_t)i * GiB + j * 2 * MiB) |
						     PTE_P | PTE_RW | PTE_PS);
	}
	if (cr3)
		*cr3 = BOOT_PML4_ADDR;
	return 0;
}

uint64_t boot_gdt_entry(unsigned sel)
{
	switch (sel) {
	case BOOT_SEL_CODE32: /* flat 4 GiB, 32-bit, execute/read */
		return 0x00cf9b000000ffffULL;
	case BOOT_SEL_CODE64: /* long mode (L=1, D=0), execute/read */
		return 0x00af9b000000ffffULL;
	case BOOT_SEL_DATA: /* flat 4 GiB, read/write */
		return 0x00cf93000000ffffULL;
	case BOOT_SEL_TSS: /* busy 32/64-bit TSS, base 0, limit 0x67 */
		return 0x00008b0000000067ULL;
	default:
		return 0;
	}
}

int boot_write_reset_vector(const struct guest_mem *m)
{
	/*
	 * 16-bit code at f000:fff0: mov al, 6; mov dx, 0xcf9; out dx, al
	 * (RST_CPU | SYS_RST: khyve ends with the reboot status); hlt; jmp
	 * back to the hlt.
	 */
	static const uint8_t stub[16] = {0xb0, 0x06, 0xba, 0xf9, 0x0c,
					 0xee, 0xf4, 0xeb, 0xfd};

	return guest_mem_write(m, BOOT_RESET_VECTOR, stub, sizeof(stub));
}

int boot_build_gdt(const struct guest_mem *m, uint64_t *base, uint16_t *limit)
{
	uint8_t gdt[BOOT_GDT_ENTRIES * 8];
	int ret;

	for (unsigned i = 0; i < BOOT_GDT_ENTRIES; i++)
		put_le64(gdt + 8 * i, boot_gdt_entry(i * 8));
	ret = guest_mem_write(m, BOOT_GDT_ADDR, gdt, sizeof(gdt));
	if (ret)
		return ret;
	/* An empty IDT next to it: the guest installs its own first. */
	ret = guest_mem_write(m, BOOT_IDT_ADDR, (uint8_t[8]){0}, 8);
	if (ret)
		return ret;
	if (base)
		*base = BOOT_GDT_ADDR;
	if (limit)
		*limit = sizeof(gdt) - 1;
	return 0;
}

void boot_segment_from_gdt(unsigned sel, struct boot_segment *s)
{
	uint64_t d = boot_gdt_entry(sel);

	memset(s, 0, sizeof(*s));
	s->selector = (uint16_t)sel;
	s->base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
	s->limit = (uint32_t)((d & 0xffff) | (((d >> 48) & 0xf) << 16));
	s->type = (d >> 40) & 0xf;
	s->s = (d >> 44) & 1;
	s->dpl = (d >> 45) & 3;
	s->present = (d >> 47) & 1;
	s->avl = (d >> 52) & 1;
	s->l = (d >> 53) & 1;
	s->db = (d >> 54) & 1;
	s->g = (d >> 55) & 1;
	if (s->g)
		s->limit = (s->limit << 12) | 0xfff;
}

/* --- top level --- */

/* A failed write of boot data: the guest memory map itself is wrong. */
static int boot_fault(int ret, struct err *err)
{
	return err_set(err, ret, "cannot write boot data to guest memory: %s",
		       strerror(-ret));
}

/* Recognise the kernel's format by its magic and load it. */
static int load_kernel_image(const struct guest_mem *m,
			     const struct boot_config *cfg,
			     const uint8_t *kernel, size_t klen,
			     struct kload *kl, struct err *err)
{
	const char *kname = cfg->kernel_path ? cfg->kernel_path : "kernel";
	int ret;

	if (klen >= HDR_MAGIC + 4 &&
	    get_le32(kernel + HDR_MAGIC) == HDRS_MAGIC &&
	    get_le16(kernel + HDR_BOOT_FLAG) == 0xaa55) {
		ret = load_bzimage(m, kernel, klen, cfg->flags, kl, err);
		kl->is_linux = true;
	} else if (klen >= SELFMAG && !memcmp(kernel, ELFMAG, SELFMAG)) {
		ret = load_elf(m, kernel, klen, kl, err);
		kl->format = KERNEL_FMT_ELF;
		kl->is_linux = elf_is_linux(kernel, klen);
	} else {
		return err_set(err, -ENOEXEC,
			       "%s: not a kernel (no bzImage header, no ELF)",
			       kname);
	}
	return ret;
}

/*
 * Write the command line (plus the Linux-only words for a Linux kernel)
 * to its area, within both the kernel's and our own size limit.
 */
static int write_cmdline(const struct guest_mem *m,
			 const struct boot_config *cfg, struct kload *kl,
			 struct boot_info *bi, struct err *err)
{
	const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
	size_t clen = strlen(cmdline);
	char full[BOOT_CMDLINE_MAX];
	int ret;

	/* Linux-only words (e.g. the CPU policy's) never reach other guests. */
	if (kl->is_linux && cfg->linux_extra && *cfg->linux_extra) {
		size_t elen = strlen(cfg->linux_extra);

		if (clen + 1 + elen >= sizeof(full))
			return err_set(
				err, -E2BIG,
				"command line too long (%zu bytes with \"%s\")",
				clen + 1 + elen, cfg->linux_extra);
		snprintf(full, sizeof(full), "%s%s%s", cmdline, clen ? " " : "",
			 cfg->linux_extra);
		cmdline = full;
		clen = strlen(full);
		bi->cmdline_appended = true;
	}

	/* Command line: the bzImage's cmdline_size bounds it, then our area. */
	kl->cmdline_max = MIN(kl->cmdline_max, BOOT_CMDLINE_MAX - 1);
	if (clen > kl->cmdline_max)
		return err_set(
			err, -E2BIG,
			"command line too long (%zu bytes, kernel accepts "
			"%llu)",
			clen, (unsigned long long)kl->cmdline_max);
	ret = guest_mem_write(m, BOOT_CMDLINE_ADDR, cmdline, clen + 1);
	if (ret)
		return boot_fault(ret, err);
	bi->cmdline_gpa = BOOT_CMDLINE_ADDR;
	bi->cmdline_len = (uint32_t)clen;
	return 0;
}

/*
 * Initrd as high as possible below min(low RAM end, initrd_addr_max),
 * page-aligned, and above everything the kernel reserved for itself
 * (including the decompressor's init_size work area).
 */
static int place_initrd(const struct guest_mem *m, const struct kload *kl,
			const uint8_t *initrd, size_t ilen,
			struct boot_info *bi, struct err *err)
{
	uint64_t top = MIN(m->r[0].size, kl->initrd_max);
	uint64_t floor = ALIGN_UP(kl->reserved_end, PAGE_SIZE);
	uint64_t addr;
	int ret;

	if (ilen > top || ALIGN_DOWN(top - ilen, PAGE_SIZE) < floor)
		return err_set(
			err, -EFBIG,
			"initrd too big for guest memory (%zu bytes, "
			"%llu free below %#llx)",
			ilen,
			(unsigned long long)(top > floor ? top - floor : 0),
			(unsigned long long)top);
	addr = ALIGN_DOWN(top - ilen, PAGE_SIZE);
	ret = guest_mem_write(m, addr, initrd, ilen);
	if (ret)
		return boot_fault(ret, err);
	bi->initrd_gpa = addr;
	bi->initrd_size = ilen;
	return 0;
}

/* The firmware tables (ACPI, MP) a guest finds its CPUs and devices by. */
static int build_firmware_tables(const struct guest_mem *m,
				 const struct boot_config *cfg,
				 struct boot_info *bi, struct err *err)
{
	int ret;

	if (!(cfg->flags & BOOT_F_NO_ACPI)) {
		struct acpi_config ac = {
			.ncpus = cfg->ncpus,
			.dsdt_aml = cfg->dsdt_aml,
			.dsdt_aml_len = cfg->dsdt_aml_len,
			.extra = cfg->acpi_extra,
			.nextra = cfg->acpi_nextra,
		};

		ret = acpi_build(m, &ac, &bi->rsdp_gpa);
		if (ret)
			return err_set(err, ret, "cannot build ACPI tables: %s",
				       strerror(-ret));
	}
	if (!(cfg->flags & BOOT_F_NO_MPTABLE)) {
		ret = mptable_build(m, cfg->ncpus, &bi->mptable_gpa);
		if (ret)
			return err_set(err, ret, "cannot build MP table: %s",
				       strerror(-ret));
	}
	return 0;
}

/* Page tables, GDT, IDT and reset vector: what the boot vCPU starts on. */
static int build_cpu_structures(const struct guest_mem *m, struct boot_info *bi)
{
	int ret;

	ret = boot_build_page_tables(m, &bi->cr3);
	if (!ret)
		ret = boot_build_gdt(m, &bi->gdt_gpa, &bi->gdt_limit);
	if (!ret)
		ret = boot_write_reset_vector(m);
	if (ret)
		return ret;
	bi->idt_gpa = BOOT_IDT_ADDR;
	bi->stack_top = BOOT_STACK_TOP;
	return 0;
}

/*
 * The structures that point at everything written so far: the zero page
 * for the 64-bit Linux protocol, the start info for PVH (both if the kernel
 * offers both, so either entry works).
 */
static int build_boot_params(const struct guest_mem *m, const struct kload *kl,
			     struct boot_info *bi,
			     const struct e820_entry *e820, unsigned ne820)
{
	int ret;

	if (kl->has_linux64) {
		ret = build_zero_page(m, kl, bi, e820, ne820);
		if (ret)
			return ret;
		bi->boot_params_gpa = BOOT_ZERO_PAGE_ADDR;
	}
	if (kl->has_pvh) {
		struct pvh_start ps = {
			.cmdline_gpa = bi->cmdline_gpa,
			.initrd_gpa = bi->initrd_gpa,
			.initrd_size = bi->initrd_size,
			.rsdp_gpa = bi->rsdp_gpa,
			.e820 = e820,
			.e820_entries = ne820,
		};

		ret = pvh_build_start_info(m, &ps, &bi->start_info_gpa);
		if (ret)
			return ret;
	}
	return 0;
}

/* Report what was loaded and pick the entry protocol. */
static void fill_boot_info(const struct boot_config *cfg,
			   const struct kload *kl, struct boot_info *bi)
{
	bi->format = kl->format;
	bi->protocol = kl->protocol;
	bi->kernel_start = kl->start;
	bi->kernel_end = kl->reserved_end;
	bi->has_linux64 = kl->has_linux64;
	bi->has_pvh = kl->has_pvh;
	bi->is_linux = kl->is_linux;
	bi->linux64_entry = kl->linux64_entry;
	bi->pvh_entry = kl->pvh_entry;
	/*
	 * A direct ELF with a PVH note is a PVH kernel (its e_entry may be
	 * 32-bit code); an unpacked bzImage defaults to the 64-bit protocol.
	 */
	if (kl->has_pvh && (!kl->has_linux64 || kl->format == KERNEL_FMT_ELF ||
			    (cfg->flags & BOOT_F_PREFER_PVH))) {
		bi->mode = BOOT_MODE_PVH;
		bi->entry = kl->pvh_entry;
	} else {
		bi->mode = BOOT_MODE_LINUX64;
		bi->entry = kl->linux64_entry;
	}
}

int kernel_load_buf(const struct guest_mem *m, const struct boot_config *cfg,
		    const uint8_t *kernel, size_t klen, const uint8_t *initrd,
		    size_t ilen, struct boot_info *bi, struct err *err)
{
	struct e820_entry e820[E820_MAX_ENTRIES];
	struct kload kl = {0};
	int n, ret;

	memset(bi, 0, sizeof(*bi));
	if (cfg->ncpus == 0 || cfg->ncpus > BOOT_MAX_CPUS)
		return err_set(err, -EINVAL, "bad vCPU count %u (1-%u)",
			       cfg->ncpus, BOOT_MAX_CPUS);
	n = e820_build(m, e820, E820_MAX_ENTRIES);
	if (n < 0)
		return err_set(err, n,
			       "guest memory too small (need at least 2 MiB)");
	bi->e820_entries = (unsigned)n;
	/* Our own limits; a bzImage's header may lower them. */
	kl.cmdline_max = BOOT_CMDLINE_MAX - 1;
	kl.initrd_max = m->r[0].size;

	ret = load_kernel_image(m, cfg, kernel, klen, &kl, err);
	if (ret)
		return ret;
	ret = write_cmdline(m, cfg, &kl, bi, err);
	if (ret)
		return ret;
	if (ilen) {
		ret = place_initrd(m, &kl, initrd, ilen, bi, err);
		if (ret)
			return ret;
	}

	/* Firmware tables, then the structures that point at them. */
	ret = build_firmware_tables(m, cfg, bi, err);
	if (ret)
		return ret;
	ret = build_cpu_structures(m, bi);
	if (!ret)
		ret = build_boot_params(m, &kl, bi, e820, (unsigned)n);
	if (ret)
		return boot_fault(ret, err);
	fill_boot_info(cfg, &kl, bi);
	return 0;
}

/* Read a whole regular file of at most @max bytes. */
static int read_file(const char *what, const char *path, uint64_t max,
		     uint8_t **buf, size_t *len, struct err *err)
{
	struct stat st;
	uint8_t *p = NULL;
	size_t off = 0;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		return err_set(err, ret, "cannot open %s %s: %s", what, path,
			       strerror(errno));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		err_set(err, ret, "%s %s: not a regular file", what, path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		ret = -EFBIG;
		err_set(err, ret,
			"%s %s too big for guest memory (%lld bytes, at most "
			"%llu)",
			what, path, (long long)st.st_size,
			(unsigned long long)max);
		goto out;
	}
	p = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!p) {
		ret = -ENOMEM;
		err_set(err, ret, "%s %s: out of memory", what, path);
		goto out;
	}
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, p + off, (size_t)st.st_size - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ret = r < 0 ? -errno : -EIO;
			err_set(err, ret, "cannot read %s %s: %s", what, path,
				r < 0 ? strerror(errno) : "short read");
			goto out;
		}
		off += (size_t)r;
	}
	*buf = p;
	*len = off;
	p = NULL;
	ret = 0;
out:
	free(p);
	close(fd);
	return ret;
}

int kernel_load(const struct guest_mem *m, const struct boot_config *cfg,
		struct boot_info *bi, struct err *err)
{
	uint8_t *k = NULL, *ird = NULL;
	size_t klen = 0, ilen = 0;
	int ret;

	if (!cfg->kernel_path)
		return err_set(err, -EINVAL, "no kernel given");
	ret = read_file("kernel", cfg->kernel_path, m->ram_size, &k, &klen,
			err);
	if (ret)
		return ret;
	if (cfg->initrd_path) {
		ret = read_file("initrd", cfg->initrd_path, m->r[0].size, &ird,
				&ilen, err);
		if (ret)
			goto out;
	}
	ret = kernel_load_buf(m, cfg, k, klen, ird, ilen, bi, err);
out:
	free(k);
	free(ird);
	return ret;
}
