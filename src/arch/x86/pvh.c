/* SPDX-License-Identifier: BSD-2-Clause */
#include "pvh.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#include "boot.h"
#include "common.h"
#include "layout.h"

int pvh_find_entry(const uint8_t *img, size_t len, uint64_t *entry)
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
			if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
			    !memcmp(n + name_off, "Xen", 4)) {
				/* Linux emits the entry as a pointer-sized
				 * value (8 bytes on x86-64), others as 4. */
				if (descsz == 4)
					*entry = get_le32(n + desc_off);
				else if (descsz == 8)
					*entry = get_le64(n + desc_off);
				else
					return -EINVAL;
				/* The entry runs in 32-bit mode. */
				if (*entry >= GUEST_PCI_HOLE_END)
					return -EINVAL;
				return 0;
			}
			off += next;
		}
	}
	return -ENOENT;
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
