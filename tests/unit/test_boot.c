/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot.h"
#include "common.h"
#include "data/x86boot_fixtures.h"
#include "e820.h"
#include "layout.h"
#include "log.h"
#include "unit.h"

#define MEM (64 * MiB)

static uint8_t *gzip_vmlinux(bool pvh, size_t *len)
{
	struct fx_elf_opts o = fx_vmlinux_opts(pvh);
	size_t elen;
	uint8_t *elf = fx_elf(&o, &elen), *z;

	if (!elf)
		return NULL;
	z = fx_compress(KCOMP_GZIP, elf, elen, len);
	free(elf);
	return z;
}

static uint8_t *make_bz(const struct fx_bz_opts *o, size_t *len)
{
	size_t plen;
	uint8_t *pl = gzip_vmlinux(false, &plen), *bz;

	if (!pl)
		return NULL;
	bz = fx_bzimage(o, pl, plen, len);
	free(pl);
	return bz;
}

/* Fields every zero page must carry, whatever the kernel format. */
static void check_zero_page(const struct guest_mem *m,
			    const struct boot_info *bi, const char *cmdline)
{
	uint8_t *bp = guest_mem_ptr(m, bi->boot_params_gpa, 4096);
	struct e820_entry t[E820_MAX_ENTRIES];
	uint8_t packed[E820_MAX_ENTRIES * E820_ENTRY_SIZE];
	int n = e820_build(m, t, E820_MAX_ENTRIES);

	CHECK(bp != NULL);
	if (!bp)
		return;
	CHECK_EQ(get_le16(bp + 0x1fe), 0xaa55);
	CHECK_EQ(get_le32(bp + 0x202), 0x53726448);
	CHECK_EQ(bp[0x210], 0xff);
	CHECK(bp[0x211] & 0x01);    /* LOADED_HIGH */
	CHECK(!(bp[0x211] & 0x02)); /* KASLR_FLAG cleared */
	CHECK_EQ(bp[0x1ef], 0);	    /* sentinel */
	CHECK_EQ(get_le32(bp + 0x228) | (uint64_t)get_le32(bp + 0xc8) << 32,
		 bi->cmdline_gpa);
	CHECK(!strcmp((char *)guest_mem_ptr(m, bi->cmdline_gpa, 1), cmdline));
	CHECK_EQ(get_le32(bp + 0x218) | (uint64_t)get_le32(bp + 0xc0) << 32,
		 bi->initrd_gpa);
	CHECK_EQ(get_le32(bp + 0x21c), bi->initrd_size);
	CHECK_EQ(get_le64(bp + 0x70), 0xe0000);
	CHECK_EQ(bp[0x1e8], n);
	CHECK_EQ(bi->e820_entries, n);
	e820_pack(packed, t, (unsigned)n);
	CHECK(!memcmp(bp + 0x2d0, packed, (size_t)n * E820_ENTRY_SIZE));
}

static void test_bzimage_classic(void)
{
	struct guest_mem m;
	struct fx_bz_opts o = fx_bz_default();
	struct boot_config cfg = {.ncpus = 4,
				  .cmdline = "console=ttyS0 quiet",
				  .flags = BOOT_F_NO_UNPACK};
	struct boot_info bi;
	uint8_t initrd[10000];
	struct err err = {0};
	size_t len;
	uint8_t *bz, *bp;

	if (fx_mem(&m, MEM))
		return;
	bz = make_bz(&o, &len);
	if (!bz)
		goto out;
	memset(initrd, 0x5a, sizeof(initrd));
	CHECK_EQ(kernel_load_buf(&m, &cfg, bz, len, initrd, sizeof(initrd), &bi,
				 &err),
		 0);
	CHECK_EQ(bi.format, KERNEL_FMT_BZIMAGE);
	CHECK_EQ(bi.mode, BOOT_MODE_LINUX64);
	CHECK_EQ(bi.protocol, 0x020f);
	/* Relocatable: loaded at pref_address, entered at startup_64. */
	CHECK_EQ(bi.kernel_start, 0x1000000);
	CHECK_EQ(bi.entry, 0x1000200);
	CHECK_EQ(bi.boot_params_gpa, BOOT_ZERO_PAGE_ADDR);
	CHECK(!memcmp(m.base + 0x1000000, bz + FX_BZ_PM_OFF,
		      len - FX_BZ_PM_OFF));
	/* The decompressor's init_size area stays clear of the initrd. */
	CHECK_EQ(bi.kernel_end, 0x1000000 + 0x200000);
	CHECK(bi.initrd_gpa >= bi.kernel_end);
	CHECK_EQ(bi.initrd_gpa, ALIGN_DOWN(MEM - sizeof(initrd), 4096));
	CHECK(!memcmp(m.base + bi.initrd_gpa, initrd, sizeof(initrd)));
	check_zero_page(&m, &bi, "console=ttyS0 quiet");
	bp = m.base + BOOT_ZERO_PAGE_ADDR;
	/* Setup header copied up to its end (0x202 + jump byte), no more. */
	CHECK_EQ(bp[0x1f1], FX_BZ_SETUP_SECTS);
	CHECK_EQ(get_le32(bp + 0x24c), get_le32(bz + 0x24c));
	CHECK_EQ(get_le32(bp + 0x260), 0x200000);
	CHECK_EQ(bp[0x270], 0);
	CHECK_EQ(get_le32(bp + 0x214), 0x1000000);
	free(bz);

	/* Not relocatable: classic 1 MiB load address. */
	o.relocatable = 0;
	bz = make_bz(&o, &len);
	if (!bz)
		goto out;
	CHECK_EQ(kernel_load_buf(&m, &cfg, bz, len, NULL, 0, &bi, &err),
		 0);
	CHECK_EQ(bi.kernel_start, 0x100000);
	CHECK_EQ(bi.entry, 0x100200);
	CHECK_EQ(bi.initrd_size, 0);
	check_zero_page(&m, &bi, "console=ttyS0 quiet");
	free(bz);
out:
	fx_mem_free(&m);
}

static void test_elf_linux64(void)
{
	struct guest_mem m;
	struct fx_elf_opts o = fx_vmlinux_opts(false);
	struct boot_config cfg = {.ncpus = 1};
	struct boot_info bi;
	struct err err = {0};
	size_t len;
	uint8_t *img, *bp;

	if (fx_mem(&m, MEM))
		return;
	img = fx_elf(&o, &len);
	if (!img)
		goto out;
	CHECK_EQ(kernel_load_buf(&m, &cfg, img, len, NULL, 0, &bi, &err),
		 0);
	CHECK_EQ(bi.format, KERNEL_FMT_ELF);
	CHECK_EQ(bi.mode, BOOT_MODE_LINUX64);
	CHECK_EQ(bi.entry, 0x1000000);
	CHECK(!bi.has_pvh);
	CHECK_EQ(bi.start_info_gpa, 0);
	CHECK(m.base[0x1000000] == fx_pat(0, 0));
	check_zero_page(&m, &bi, "");
	bp = m.base + BOOT_ZERO_PAGE_ADDR;
	CHECK_EQ(get_le16(bp + 0x206), 0x020f);
	CHECK(get_le32(bp + 0x230) != 0);
	free(img);

	/* A virtual e_entry is translated through its segment. */
	o.entry = 0xffffffff81000010ULL;
	img = fx_elf(&o, &len);
	if (!img)
		goto out;
	CHECK_EQ(kernel_load_buf(&m, &cfg, img, len, NULL, 0, &bi, &err),
		 0);
	CHECK_EQ(bi.entry, 0x1000010);
	free(img);

	/* Entry nowhere: refused. */
	o.entry = 0x12345;
	img = fx_elf(&o, &len);
	if (!img)
		goto out;
	CHECK_EQ(kernel_load_buf(&m, &cfg, img, len, NULL, 0, &bi, &err),
		 -ENOEXEC);
	CHECK(strstr(err.msg, "entry") != NULL);
	free(img);
out:
	fx_mem_free(&m);
}

/*
 * The CPU policy's words go to Linux only: a bzImage and an ELF with
 * Linux's notes get them, another PVH guest's command line stays its own.
 */
/* Load @img and return the command line the guest finds (NULL on error). */
static const char *load_cmdline(struct guest_mem *m,
				const struct boot_config *cfg,
				const uint8_t *img, size_t len,
				struct boot_info *bi)
{
	struct err err = {0};

	if (kernel_load_buf(m, cfg, img, len, NULL, 0, bi, &err)) {
		CHECK(!err.msg[0]); /* fails, showing the message */
		return NULL;
	}
	return guest_mem_ptr(m, bi->cmdline_gpa, 1);
}

/*
 * The CPU policy's words go to Linux only: a bzImage and an ELF with
 * Linux's notes get them, another PVH guest's command line stays its own.
 */
static void test_linux_extra(void)
{
	struct guest_mem m;
	struct fx_bz_opts bo = fx_bz_default();
	struct fx_elf_opts eo = fx_vmlinux_opts(true);
	struct boot_config cfg = {.ncpus = 1,
				  .cmdline = "tests=all",
				  .linux_extra = "noxsave nosmap",
				  .flags = BOOT_F_NO_UNPACK};
	struct boot_info bi;
	const char *cl;
	size_t len;
	uint8_t *img;

	if (fx_mem(&m, MEM))
		return;
	img = make_bz(&bo, &len);
	cl = img ? load_cmdline(&m, &cfg, img, len, &bi) : NULL;
	CHECK(cl && !strcmp(cl, "tests=all noxsave nosmap"));
	CHECK(bi.is_linux && bi.cmdline_appended);
	CHECK_EQ(bi.cmdline_len, strlen("tests=all noxsave nosmap"));
	free(img);

	/* A PVH ELF without Linux's notes (the project's test guest). */
	img = fx_elf(&eo, &len);
	cl = img ? load_cmdline(&m, &cfg, img, len, &bi) : NULL;
	CHECK(cl && !strcmp(cl, "tests=all"));
	CHECK_EQ(bi.mode, BOOT_MODE_PVH);
	CHECK(!bi.is_linux && !bi.cmdline_appended);
	free(img);

	/* The same ELF with Linux's build-salt note: a Linux vmlinux. */
	eo.linux_note = true;
	img = fx_elf(&eo, &len);
	cl = img ? load_cmdline(&m, &cfg, img, len, &bi) : NULL;
	CHECK(cl && !strcmp(cl, "tests=all noxsave nosmap"));
	CHECK(bi.is_linux && bi.cmdline_appended);

	/* No command line of the user's: the words alone, no leading space. */
	cfg.cmdline = NULL;
	cl = img ? load_cmdline(&m, &cfg, img, len, &bi) : NULL;
	CHECK(cl && !strcmp(cl, "noxsave nosmap"));
	free(img);
	fx_mem_free(&m);
}

/* Error paths: each must fail cleanly with a message naming the problem. */
static void expect_err(const struct guest_mem *m, const struct boot_config *c,
		       const uint8_t *k, size_t klen, const uint8_t *ird,
		       size_t ilen, int want, const char *msg)
{
	struct boot_info bi;
	struct err err = {0};
	int ret = kernel_load_buf(m, c, k, klen, ird, ilen, &bi, &err);

	CHECK_EQ(ret, want);
	if (!strstr(err.msg, msg)) {
		fprintf(stderr, "  got error \"%s\", want \"%s\"\n", err.msg, msg);
		CHECK(0);
	}
}

static void test_bad_inputs(void)
{
	struct guest_mem m, small;
	struct fx_bz_opts o = fx_bz_default();
	struct boot_config cfg = {.ncpus = 1};
	uint8_t garbage[4096];
	char longcmd[3000];
	size_t len;
	uint8_t *bz, *big;

	if (fx_mem(&m, MEM))
		return;
	memset(garbage, 0x90, sizeof(garbage));
	expect_err(&m, &cfg, garbage, sizeof(garbage), NULL, 0, -ENOEXEC,
		   "not a kernel (no bzImage header, no ELF)");
	expect_err(&m, &cfg, garbage, 0, NULL, 0, -ENOEXEC, "not a kernel");

	bz = make_bz(&o, &len);
	if (!bz)
		goto out;
	/* Truncated at many points: never a crash, always an error. */
	for (size_t l = 0; l < len - 16; l += 97) {
		struct boot_info bi;
		struct err err = {0};

		CHECK(kernel_load_buf(&m, &cfg, bz, l, NULL, 0, &bi, &err) < 0);
		CHECK(err.msg[0] != 0);
	}
	expect_err(&m, &cfg, bz, len - 100, NULL, 0, -ENOEXEC,
		   "truncated bzImage");

	memset(longcmd, 'a', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = 0;
	cfg.cmdline = longcmd;
	expect_err(&m, &cfg, bz, len, NULL, 0, -E2BIG,
		   "command line too long (2999 bytes, kernel accepts 2047)");
	cfg.cmdline = NULL;

	big = malloc(MEM);
	if (big) {
		expect_err(&m, &cfg, bz, len, big, MEM - 4 * MiB, -EFBIG,
			   "initrd too big for guest memory");
		free(big);
	}
	cfg.ncpus = 0;
	expect_err(&m, &cfg, bz, len, NULL, 0, -EINVAL, "vCPU count");
	cfg.ncpus = 1;
	free(bz);

	o.version = 0x020a;
	bz = make_bz(&o, &len);
	if (bz)
		expect_err(&m, &cfg, bz, len, NULL, 0, -ENOEXEC,
			   "unsupported boot protocol version 2.10");
	free(bz);
	o = fx_bz_default();
	o.xloadflags = 0;
	bz = make_bz(&o, &len);
	if (bz)
		expect_err(&m, &cfg, bz, len, NULL, 0, -ENOEXEC,
			   "no 64-bit entry point");
	free(bz);

	/* Kernel bigger than RAM: classic bzImage and ELF segment. */
	o = fx_bz_default();
	o.init_size = 0x8000000;
	bz = make_bz(&o, &len);
	if (bz) {
		cfg.flags = BOOT_F_NO_UNPACK;
		expect_err(&m, &cfg, bz, len, NULL, 0, -EFBIG,
			   "kernel too big for guest memory");
		cfg.flags = 0;
	}
	free(bz);
	if (!fx_mem(&small, 8 * MiB)) {
		struct fx_elf_opts eo = fx_vmlinux_opts(false);
		uint8_t *img = fx_elf(&eo, &len);

		if (img)
			expect_err(&small, &cfg, img, len, NULL, 0, -EFBIG,
				   "kernel too big for guest memory");
		free(img);
		fx_mem_free(&small);
	}
	/* An ELF that wants the boot area below 1 MiB. */
	{
		struct fx_elf_opts eo = fx_vmlinux_opts(false);
		uint8_t *img;

		eo.paddr = 0x8000;
		eo.entry = 0x8000;
		img = fx_elf(&eo, &len);
		if (img)
			expect_err(&m, &cfg, img, len, NULL, 0, -ENOEXEC,
				   "overlaps the boot area");
		free(img);
	}
out:
	fx_mem_free(&m);
}

static void test_files(void)
{
	struct guest_mem m;
	struct fx_bz_opts o = fx_bz_default();
	struct boot_info bi;
	char kpath[] = "/tmp/khyve-test-kernel-XXXXXX";
	char ipath[] = "/tmp/khyve-test-initrd-XXXXXX";
	struct err err = {0};
	int kfd, ifd;
	size_t len;
	uint8_t *bz;

	if (fx_mem(&m, MEM))
		return;
	bz = make_bz(&o, &len);
	kfd = mkstemp(kpath);
	ifd = mkstemp(ipath);
	CHECK(bz && kfd >= 0 && ifd >= 0);
	if (!bz || kfd < 0 || ifd < 0)
		goto out;
	CHECK_EQ(write(kfd, bz, len), len);
	CHECK_EQ(write(ifd, "initrd!", 7), 7);
	CHECK_EQ(load_file(&m, kpath, ipath, "root=/dev/vda", 2, &bi, &err),
		 0);
	CHECK_EQ(bi.format, KERNEL_FMT_BZIMAGE_UNPACKED);
	CHECK_EQ(bi.initrd_size, 7);
	CHECK(!memcmp(m.base + bi.initrd_gpa, "initrd!", 7));
	CHECK_EQ(bi.rsdp_gpa, 0xe0000);
	CHECK_EQ(bi.mptable_gpa, 0xf0000);

	CHECK_EQ(load_file(&m, "/nonexistent/vmlinuz", NULL, NULL, 1, &bi,
			     &err),
		 -ENOENT);
	CHECK(strstr(err.msg, "cannot open kernel /nonexistent/vmlinuz") != NULL);
	CHECK_EQ(load_file(&m, kpath, "/nonexistent/initrd", NULL, 1, &bi,
			     &err),
		 -ENOENT);
	CHECK(strstr(err.msg, "initrd") != NULL);
	CHECK_EQ(load_file(&m, "/tmp", NULL, NULL, 1, &bi, &err),
		 -EINVAL);
	CHECK(strstr(err.msg, "not a regular file") != NULL);
out:
	free(bz);
	if (kfd >= 0) {
		close(kfd);
		unlink(kpath);
	}
	if (ifd >= 0) {
		close(ifd);
		unlink(ipath);
	}
	fx_mem_free(&m);
}

static void test_file_bigger_than_ram(void)
{
	struct guest_mem m;
	struct boot_info bi;
	char path[] = "/tmp/khyve-test-big-XXXXXX";
	struct err err = {0};
	int fd;

	if (fx_mem(&m, 4 * MiB))
		return;
	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		goto out;
	/* Sparse file: costs no disk. */
	CHECK_EQ(ftruncate(fd, 5 * MiB), 0);
	CHECK_EQ(load_file(&m, path, NULL, NULL, 1, &bi, &err),
		 -EFBIG);
	CHECK(strstr(err.msg, "too big for guest memory") != NULL);
	close(fd);
	unlink(path);
out:
	fx_mem_free(&m);
}

static void test_page_tables(void)
{
	struct guest_mem m;
	uint64_t cr3 = 0, pml4e, pdpte, pde;

	if (fx_mem(&m, 2 * MiB))
		return;
	CHECK_EQ(boot_build_page_tables(&m, &cr3), 0);
	CHECK_EQ(cr3, BOOT_PML4_ADDR);
	/* Walk a few addresses through the tables like the MMU would. */
	static const uint64_t va[] = {0,	  0x1234567,  0x7fffffff,
				      0xc0001000, 0xfee00000, 0xffffffff};
	for (unsigned i = 0; i < ARRAY_SIZE(va); i++) {
		pml4e = get_le64(m.base + cr3 + 8 * ((va[i] >> 39) & 511));
		CHECK_EQ(pml4e & 3, 3);
		pdpte = get_le64(m.base + (pml4e & ~0xfffULL) +
				 8 * ((va[i] >> 30) & 511));
		CHECK_EQ(pdpte & 0x83, 3);
		pde = get_le64(m.base + (pdpte & ~0xfffULL) +
			       8 * ((va[i] >> 21) & 511));
		CHECK_EQ(pde & 0x83, 0x83);
		CHECK_EQ((pde & ~0x1fffffULL & 0xfffffffffULL) |
				 (va[i] & 0x1fffff),
			 va[i]);
	}
	/* Nothing mapped above 4 GiB. */
	CHECK_EQ(get_le64(m.base + BOOT_PDPT_ADDR + 8 * 4), 0);
	CHECK_EQ(get_le64(m.base + BOOT_PML4_ADDR + 8), 0);
	fx_mem_free(&m);
}

static void test_gdt(void)
{
	struct guest_mem m;
	struct boot_segment s;
	uint64_t base = 0;
	uint16_t limit = 0;

	if (fx_mem(&m, 2 * MiB))
		return;
	CHECK_EQ(boot_build_gdt(&m, &base, &limit), 0);
	CHECK_EQ(base, BOOT_GDT_ADDR);
	CHECK_EQ(limit, BOOT_GDT_ENTRIES * 8 - 1);
	CHECK_EQ(get_le64(m.base + base), 0);
	CHECK_EQ(get_le64(m.base + base + BOOT_SEL_CODE64),
		 boot_gdt_entry(BOOT_SEL_CODE64));

	boot_segment_from_gdt(BOOT_SEL_CODE64, &s);
	CHECK_EQ(s.selector, 0x10);
	CHECK_EQ(s.base, 0);
	CHECK_EQ(s.limit, 0xffffffff);
	CHECK_EQ(s.type, 0xb);
	CHECK(s.present && s.s && s.l && !s.db && s.g && s.dpl == 0);
	boot_segment_from_gdt(BOOT_SEL_CODE32, &s);
	CHECK(s.db && !s.l && s.type == 0xb && s.limit == 0xffffffff);
	boot_segment_from_gdt(BOOT_SEL_DATA, &s);
	CHECK_EQ(s.selector, 0x18);
	CHECK(s.type == 0x3 && s.db && s.g && s.present && s.s);
	boot_segment_from_gdt(BOOT_SEL_TSS, &s);
	CHECK(s.type == 0xb && !s.s && s.present && s.limit == 0x67);
	fx_mem_free(&m);
}

static void test_reset_vector(void)
{
	struct guest_mem m;
	const uint8_t *p;

	if (fx_mem(&m, 2 * MiB))
		return;
	CHECK_EQ(boot_write_reset_vector(&m), 0);
	/* f000:fff0 = physical 0xffff0, inside the reserved firmware area,
	 * after the MP table's room. */
	CHECK(BOOT_RESET_VECTOR == 0xffff0);
	CHECK(MPTABLE_END <= BOOT_RESET_VECTOR);
	CHECK(BOOT_RESET_VECTOR >= BOOT_FW_AREA_START &&
	      BOOT_RESET_VECTOR + 16 <= BOOT_FW_AREA_END);
	p = m.base + BOOT_RESET_VECTOR;
	/* mov al, 6 (RST_CPU | SYS_RST); mov dx, 0xcf9; out dx, al */
	CHECK(p[0] == 0xb0 && p[1] == 0x06);
	CHECK(p[2] == 0xba && p[3] == 0xf9 && p[4] == 0x0c);
	CHECK_EQ(p[5], 0xee);
	CHECK_EQ(p[6], 0xf4); /* hlt */
	fx_mem_free(&m);
	/* Too little memory for the vector: refused, nothing written. */
	if (fx_mem(&m, 512 * 1024))
		return;
	CHECK(boot_write_reset_vector(&m) < 0);
	fx_mem_free(&m);
}

int main(void)
{
	log_set_level(LOG_ERR);
	RUN(test_bzimage_classic);
	RUN(test_elf_linux64);
	RUN(test_linux_extra);
	RUN(test_bad_inputs);
	RUN(test_files);
	RUN(test_file_bigger_than_ram);
	RUN(test_page_tables);
	RUN(test_gdt);
	RUN(test_reset_vector);
	return unit_done();
}
