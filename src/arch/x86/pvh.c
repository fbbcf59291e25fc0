/* SPDX-License-Identifier: BSD-2-Clause */
#include "pvh.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#include "boot.h"
#include "common.h"
#include "layout.h"

/*
 * Walk the notes of every PT_NOTE segment, calling @fn(name, namesz, type,
 * desc, descsz, arg) until it returns non-zero (that value is returned).
 * 0 when no callback stopped the walk; -ENOEXEC for an image that is not a
 * valid ELF.
 */
typedef int (*note_fn)(const uint8_t *name, uint64_t namesz, uint32_t type,
		       const uint8_t *desc, uint64_t descsz, void *arg);

static int elf_walk_notes(const uint8_t *img, size_t len, note_fn fn, void *arg)
{
	struct boot_elf e;
	int ret;

	ret = boot_elf_parse(img, len, &e);
	if (ret)
		return ret;
	for (unsigned i = 0; i < e.phnum; i++) {
		const struct boot_phdr *ph = &e.ph[i];
		/*
		 * Notes are padded to 4 bytes in practice even in ELF64 (Linux
		 * emits them so); honour 8 only when the segment asks for it.
		 */
		uint64_t al = ph->align == 8 ? 8 : 4;
		uint64_t off = 0;

		if (ph->type != PT_NOTE)
			continue;
		/* boot_elf_parse checked offset + filesz against len. */
		while (ph->filesz - off >= 12) {
			const uint8_t *n = img + ph->offset + off;
			uint64_t namesz = get_le32(n), descsz = get_le32(n + 4);
			uint32_t type = get_le32(n + 8);
			uint64_t name_off = 12, desc_off, next;

			desc_off = name_off + ALIGN_UP(namesz, al);
			next = desc_off + ALIGN_UP(descsz, al);
			if (namesz > ph->filesz || descsz > ph->filesz ||
			    next > ph->filesz - off)
				break;
			ret = fn(n + name_off, namesz, type, n + desc_off,
				 descsz, arg);
			if (ret)
				return ret;
			off += next;
		}
	}
	return 0;
}

static bool note_named(const uint8_t *name, uint64_t namesz, const char *want)
{
	size_t wl = strlen(want);

	/* namesz counts the NUL; tolerate producers that leave it out. */
	return (namesz == wl + 1 || namesz == wl) && !memcmp(name, want, wl) &&
	       (namesz == wl || name[wl] == 0);
}

static int pvh_entry_note(const uint8_t *name, uint64_t namesz, uint32_t type,
			  const uint8_t *desc, uint64_t descsz, void *arg)
{
	uint64_t *entry = arg;

	if (type != XEN_ELFNOTE_PHYS32_ENTRY ||
	    !note_named(name, namesz, "Xen"))
		return 0;
	/* Linux emits the entry as a pointer-sized value (8 bytes on x86-64),
	 * others as 4. */
	if (descsz == 4)
		*entry = get_le32(desc);
	else if (descsz == 8)
		*entry = get_le64(desc);
	else
		return -EINVAL;
	/* The entry runs in 32-bit mode. */
	if (*entry >= GUEST_PCI_HOLE_END)
		return -EINVAL;
	return 1;
}

int pvh_find_entry(const uint8_t *img, size_t len, uint64_t *entry)
{
	int ret = elf_walk_notes(img, len, pvh_entry_note, entry);

	return ret == 1 ? 0 : ret ? ret : -ENOENT;
}

static int linux_note(const uint8_t *name, uint64_t namesz, uint32_t type,
		      const uint8_t *desc, uint64_t descsz, void *arg)
{
	(void)arg;
	/* init/version.c always emits Linux's build-salt note ("Linux"). */
	if (note_named(name, namesz, "Linux"))
		return 1;
	/* Xen's GUEST_OS note, "linux" on a kernel built with Xen support. */
	if (type == XEN_ELFNOTE_GUEST_OS && note_named(name, namesz, "Xen") &&
	    descsz >= 5 && !memcmp(desc, "linux", 5))
		return 1;
	return 0;
}

bool elf_is_linux(const uint8_t *img, size_t len)
{
	return elf_walk_notes(img, len, linux_note, NULL) == 1;
}

int pvh_build_start_info(const struct guest_mem *m, const struct pvh_start *p,
			 uint64_t *gpa)
{
	uint8_t si[HVM_START_INFO_SIZE] = {0};
	uint8_t mod[HVM_MODLIST_ENTRY_SIZE] = {0};
	uint8_t ent[HVM_MEMMAP_ENTRY_SIZE];
	int ret;

	if (PVH_MEMMAP_ADDR +
		    (uint64_t)p->e820_entries * HVM_MEMMAP_ENTRY_SIZE >
	    PVH_AREA_END)
		return -ENOSPC;

	/* Layout from xen/include/public/arch-x86/hvm/start_info.h. */
	put_le32(si + 0, HVM_START_MAGIC);
	put_le32(si + 4, 1); /* version 1: has the memory map */
	put_le32(si + 8, 0); /* flags */
	if (p->initrd_size) {
		put_le32(si + 12, 1);
		put_le64(si + 16, PVH_MODLIST_ADDR);
	}
	put_le64(si + 24, p->cmdline_gpa);
	put_le64(si + 32, p->rsdp_gpa);
	put_le64(si + 40, PVH_MEMMAP_ADDR);
	put_le32(si + 48, p->e820_entries);

	put_le64(mod + 0, p->initrd_gpa);
	put_le64(mod + 8, p->initrd_size);

	ret = guest_mem_write(m, PVH_START_INFO_ADDR, si, sizeof(si));
	if (!ret)
		ret = guest_mem_write(m, PVH_MODLIST_ADDR, mod, sizeof(mod));
	for (unsigned i = 0; !ret && i < p->e820_entries; i++) {
		/* The memmap types are the e820 types. */
		put_le64(ent + 0, p->e820[i].addr);
		put_le64(ent + 8, p->e820[i].size);
		put_le32(ent + 16, p->e820[i].type);
		put_le32(ent + 20, 0);
		ret = guest_mem_write(
			m,
			PVH_MEMMAP_ADDR + (uint64_t)i * HVM_MEMMAP_ENTRY_SIZE,
			ent, sizeof(ent));
	}
	if (!ret && gpa)
		*gpa = PVH_START_INFO_ADDR;
	return ret;
}
