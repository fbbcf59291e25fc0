/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>

#include "boot.h"
#include "common.h"
#include "data/x86boot_fixtures.h"
#include "e820.h"
#include "layout.h"
#include "pvh.h"
#include "unit.h"

static void test_note_elf64(void)
{
	struct fx_elf_opts o = fx_vmlinux_opts(true);
	uint64_t entry = 0;
	size_t len;
	uint8_t *img = fx_elf(&o, &len);

	CHECK(img != NULL);
	if (!img)
		return;
	CHECK_EQ(pvh_find_entry(img, len, &entry), 0);
	CHECK_EQ(entry, 0x1000040);
	free(img);

	o.pvh = 0;
	img = fx_elf(&o, &len);
	if (!img)
		return;
	CHECK_EQ(pvh_find_entry(img, len, &entry), -ENOENT);
	free(img);
}

static void test_note_elf32(void)
{
	struct fx_elf_opts o = {.is64 = false,
				.paddr = 0x100000,
				.entry = 0x100000,
				.pvh = 0x100010,
				.pvh_size = 4,
				.text = 256,
				.data = 64,
				.bss = 128};
	uint64_t entry = 0;
	size_t len;
	uint8_t *img = fx_elf(&o, &len);

	if (!img)
		return;
	CHECK_EQ(pvh_find_entry(img, len, &entry), 0);
	CHECK_EQ(entry, 0x100010);
	free(img);
}

static void test_note_malformed(void)
{
	struct fx_elf_opts o = fx_vmlinux_opts(true);
	struct boot_elf e;
	uint64_t entry = 0;
	size_t len;
	uint8_t *img = fx_elf(&o, &len);

	if (!img)
		return;
	CHECK_EQ(boot_elf_parse(img, len, &e), 0);
	/* Corrupt the GNU note's descsz: the walk must stop, not overrun. */
	put_le32(img + e.ph[2].offset + 4, 0xfffffff0);
	CHECK_EQ(pvh_find_entry(img, len, &entry), -ENOENT);
	/* Note segment pointing past the end of the file. */
	put_le64(img + 64 + 2 * 56 + 8, len + 100);
	CHECK(pvh_find_entry(img, len, &entry) < 0);
	/* Truncated images and garbage. */
	for (size_t l = 0; l < 300; l += 7)
		CHECK(pvh_find_entry(img, l, &entry) < 0);
	memset(img, 0x41, len);
	CHECK_EQ(pvh_find_entry(img, len, &entry), -ENOEXEC);
	free(img);
}

static void test_start_info(void)
{
	struct guest_mem m;
	struct e820_entry t[E820_MAX_ENTRIES];
	struct pvh_start ps = {.cmdline_gpa = 0x20000,
			       .initrd_gpa = 0x3000000,
			       .initrd_size = 12345,
			       .rsdp_gpa = 0xe0000};
	uint64_t gpa = 0;
	uint8_t *si, *e;
	int n;

	if (fx_mem(&m, 64 * MiB))
		return;
	n = e820_build(&m, t, E820_MAX_ENTRIES);
	CHECK_EQ(n, 4);
	ps.e820 = t;
	ps.e820_entries = (unsigned)n;
	CHECK_EQ(pvh_build_start_info(&m, &ps, &gpa), 0);
	CHECK_EQ(gpa, PVH_START_INFO_ADDR);
	si = guest_mem_ptr(&m, gpa, HVM_START_INFO_SIZE);
	CHECK_EQ(get_le32(si), 0x336ec578);
	CHECK_EQ(get_le32(si + 4), 1);
	CHECK_EQ(get_le32(si + 12), 1);
	CHECK_EQ(get_le64(si + 24), 0x20000);
	CHECK_EQ(get_le64(si + 32), 0xe0000);
	CHECK_EQ(get_le32(si + 48), n);
	e = guest_mem_ptr(&m, get_le64(si + 16), HVM_MODLIST_ENTRY_SIZE);
	CHECK(e != NULL);
	if (e) {
		CHECK_EQ(get_le64(e), 0x3000000);
		CHECK_EQ(get_le64(e + 8), 12345);
		CHECK_EQ(get_le64(e + 16), 0);
	}
	e = guest_mem_ptr(&m, get_le64(si + 40), n * HVM_MEMMAP_ENTRY_SIZE);
	CHECK(e != NULL);
	for (int i = 0; e && i < n; i++, e += HVM_MEMMAP_ENTRY_SIZE) {
		CHECK_EQ(get_le64(e), t[i].addr);
		CHECK_EQ(get_le64(e + 8), t[i].size);
		CHECK_EQ(get_le32(e + 16), t[i].type);
	}
	/* No initrd: no module. */
	ps.initrd_size = 0;
	CHECK_EQ(pvh_build_start_info(&m, &ps, &gpa), 0);
	CHECK_EQ(get_le32(si + 12), 0);
	/* A memmap larger than the area is refused. */
	ps.e820_entries = 200;
	CHECK_EQ(pvh_build_start_info(&m, &ps, &gpa), -ENOSPC);
	fx_mem_free(&m);
}

/* A PVH ELF given as the kernel boots through PVH with the initrd. */
static void test_load_pvh_elf(void)
{
	struct guest_mem m;
	struct fx_elf_opts o = {.is64 = false,
				.paddr = 0x100000,
				.entry = 0x100000,
				.pvh = 0x100020,
				.pvh_size = 4,
				.text = 5000,
				.data = 100,
				.bss = 9000};
	struct boot_config cfg = {.ncpus = 2, .cmdline = "console=ttyS0"};
	struct boot_info bi;
	uint8_t initrd[3000];
	struct err err = {0};
	uint8_t *img, *si, *mod, *p;
	size_t len;

	if (fx_mem(&m, 32 * MiB))
		return;
	img = fx_elf(&o, &len);
	if (!img)
		goto out;
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i * 13);
	/* Stale data where the bss goes must be cleared. */
	memset(m.base + fx_elf_data_paddr(&o), 0xaa, 20000);
	CHECK_EQ(kernel_load_buf(&m, &cfg, img, len, initrd, sizeof(initrd),
				 &bi, &err),
		 0);
	CHECK_EQ(bi.mode, BOOT_MODE_PVH);
	CHECK_EQ(bi.format, KERNEL_FMT_ELF);
	CHECK(bi.has_pvh);
	CHECK(!bi.has_linux64);
	CHECK_EQ(bi.entry, 0x100020);
	CHECK_EQ(bi.start_info_gpa, PVH_START_INFO_ADDR);
	CHECK_EQ(bi.boot_params_gpa, 0);
	p = m.base + 0x100000;
	CHECK(p[0] == fx_pat(0, 0) && p[4999] == fx_pat(0, 4999));
	p = m.base + fx_elf_data_paddr(&o);
	CHECK(p[99] == fx_pat(1, 99));
	CHECK(p[100] == 0 && p[100 + 8999] == 0);
	CHECK_EQ(p[100 + 9000], 0xaa);

	si = m.base + PVH_START_INFO_ADDR;
	CHECK_EQ(get_le32(si), HVM_START_MAGIC);
	CHECK(!strcmp((char *)m.base + get_le64(si + 24), "console=ttyS0"));
	CHECK_EQ(get_le64(si + 32), bi.rsdp_gpa);
	CHECK_EQ(get_le64(si + 32), 0xe0000);
	CHECK_EQ(get_le32(si + 48), bi.e820_entries);
	mod = m.base + get_le64(si + 16);
	CHECK_EQ(get_le64(mod), bi.initrd_gpa);
	CHECK_EQ(get_le64(mod + 8), sizeof(initrd));
	CHECK(!memcmp(m.base + bi.initrd_gpa, initrd, sizeof(initrd)));
	/* Highest page-aligned spot in low RAM. */
	CHECK_EQ(bi.initrd_gpa, ALIGN_DOWN(32 * MiB - sizeof(initrd), 4096));
	free(img);
out:
	fx_mem_free(&m);
}

static void test_is_linux(void)
{
	struct fx_elf_opts o = fx_vmlinux_opts(true);
	size_t len;
	uint8_t *img = fx_elf(&o, &len);

	/* A PVH guest with only GNU and Xen notes is not Linux. */
	CHECK(img && !elf_is_linux(img, len));
	free(img);
	o.linux_note = true;
	img = fx_elf(&o, &len);
	CHECK(img && elf_is_linux(img, len));
	if (img) {
		uint64_t entry = 0;

		/* The PVH entry is still found past the extra note. */
		CHECK_EQ(pvh_find_entry(img, len, &entry), 0);
		CHECK_EQ(entry, 0x1000040);
		/* Truncations never read past the end. */
		for (size_t l = 0; l < len; l += 5)
			(void)elf_is_linux(img, l);
	}
	free(img);
}

int main(void)
{
	RUN(test_note_elf64);
	RUN(test_note_elf32);
	RUN(test_note_malformed);
	RUN(test_start_info);
	RUN(test_load_pvh_elf);
	RUN(test_is_linux);
	return unit_done();
}
