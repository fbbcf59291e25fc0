/* SPDX-License-Identifier: BSD-2-Clause */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot.h"
#include "common.h"
#include "data/x86boot_fixtures.h"
#include "kernel_unpack.h"
#include "layout.h"
#include "log.h"
#include "unit.h"

static const enum kernel_comp formats[] = {
	KCOMP_GZIP, KCOMP_XZ,	      KCOMP_LZMA,      KCOMP_BZIP2,
	KCOMP_ZSTD, KCOMP_LZ4_LEGACY, KCOMP_LZ4_FRAME,
};

/* Compressible but not trivial test data. */
static uint8_t *sample(size_t len)
{
	uint8_t *b = malloc(len);
	uint32_t x = 12345;

	for (size_t i = 0; b && i < len; i++) {
		x = x * 1103515245 + 12345;
		b[i] = (i % 64 < 48) ? (uint8_t)(i / 64) : (uint8_t)(x >> 24);
	}
	return b;
}

static void test_roundtrip(void)
{
	const size_t len = 300000;
	uint8_t *in = sample(len);

	if (!in)
		return;
	for (unsigned i = 0; i < ARRAY_SIZE(formats); i++) {
		size_t clen, olen = 0;
		uint8_t *c = fx_compress(formats[i], in, len, &clen), *out;
		int ret;

		CHECK(c != NULL);
		if (!c)
			continue;
		CHECK_EQ(kernel_comp_detect(c, clen), formats[i]);
		ret = kernel_decompress(formats[i], c, clen, 1 << 30, &out,
					&olen);
		CHECK_EQ(ret, 0);
		if (ret) {
			fprintf(stderr, "  format %s\n",
				kernel_comp_name(formats[i]));
			free(c);
			continue;
		}
		CHECK_EQ(olen, len);
		CHECK(!memcmp(out, in, len));
		free(out);

		/* Output cap enforced. */
		CHECK_EQ(kernel_decompress(formats[i], c, clen, len / 2, &out,
					   &olen),
			 -EFBIG);
		CHECK(out == NULL);
		/* Truncated stream: an error, never a crash. */
		ret = kernel_decompress(formats[i], c, clen / 2, 1 << 30, &out,
					&olen);
		CHECK(ret < 0);
		if (!ret)
			free(out);
		/* Corrupted middle. */
		memset(c + clen / 3, 0x5a, 64);
		ret = kernel_decompress(formats[i], c, clen, 1 << 30, &out,
					&olen);
		if (ret == 0) {
			/* Formats without a checksum may "succeed"; the
			 * output must then differ from the input. */
			CHECK(olen != len || memcmp(out, in, len));
			free(out);
		}
		free(c);
	}
	free(in);
}

static void test_detect(void)
{
	static const uint8_t lzo[] = {0x89, 'L', 'Z', 'O', 0, 0x0d};
	static const uint8_t junk[] = {1, 2, 3,	 4,  5,	 6, 7,
				       8, 9, 10, 11, 12, 13};
	uint8_t *out;
	size_t olen;

	CHECK_EQ(kernel_comp_detect(lzo, sizeof(lzo)), KCOMP_LZO);
	CHECK_EQ(kernel_comp_detect(junk, sizeof(junk)), KCOMP_UNKNOWN);
	CHECK_EQ(kernel_comp_detect(junk, 0), KCOMP_UNKNOWN);
	CHECK_EQ(kernel_decompress(KCOMP_LZO, lzo, sizeof(lzo), 100, &out,
				   &olen),
		 -ENOTSUP);
	CHECK(!strcmp(kernel_comp_name(KCOMP_ZSTD), "zstd"));
}

/* bzImage around each payload format: unpacked, loaded, right entry. */
static void test_bzimage_unpack_load(void)
{
	struct guest_mem m;
	struct fx_elf_opts eo = fx_vmlinux_opts(true);
	struct fx_bz_opts bo = fx_bz_default();
	struct boot_config cfg = {.ncpus = 2, .cmdline = "console=hvc0"};
	size_t elen;
	uint8_t *elf = fx_elf(&eo, &elen);

	if (!elf || fx_mem(&m, 64 * MiB)) {
		free(elf);
		CHECK(0);
		return;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(formats); i++) {
		struct boot_info bi;
		enum kernel_comp comp = KCOMP_UNKNOWN;
		struct err err = {0};
		size_t plen, blen, ulen;
		uint8_t *pl = fx_compress(formats[i], elf, elen, &plen), *bz,
			*un;
		uint8_t *p;

		bz = pl ? fx_bzimage(&bo, pl, plen, &blen) : NULL;
		free(pl);
		CHECK(bz != NULL);
		if (!bz)
			continue;
		CHECK_EQ(kernel_unpack_bzimage(bz, blen, &un, &ulen, &comp, &err),
			 0);
		CHECK_EQ(comp, formats[i]);
		if (un) {
			CHECK_EQ(ulen, elen);
			CHECK(!memcmp(un, elf, elen));
			free(un);
		}

		memset(m.base + 0x1000000, 0xee, 2 * MiB);
		CHECK_EQ(kernel_load_buf(&m, &cfg, bz, blen, NULL, 0, &bi, &err),
			 0);
		CHECK_EQ(bi.format, KERNEL_FMT_BZIMAGE_UNPACKED);
		CHECK_EQ(bi.mode, BOOT_MODE_LINUX64);
		CHECK_EQ(bi.entry, 0x1000000);
		CHECK(bi.has_pvh && bi.has_linux64);
		CHECK_EQ(bi.pvh_entry, 0x1000040);
		CHECK_EQ(bi.boot_params_gpa, BOOT_ZERO_PAGE_ADDR);
		CHECK_EQ(bi.start_info_gpa, PVH_START_INFO_ADDR);
		CHECK_EQ(bi.kernel_start, 0x1000000);
		CHECK_EQ(bi.kernel_end,
			 fx_elf_data_paddr(&eo) + eo.data + eo.bss);
		p = m.base + 0x1000000;
		CHECK(p[0] == fx_pat(0, 0) && p[2999] == fx_pat(0, 2999));
		p = m.base + fx_elf_data_paddr(&eo);
		CHECK(p[999] == fx_pat(1, 999));
		CHECK(p[1000] == 0 && p[1000 + 19999] == 0);
		/* Zero page from the bzImage's header. */
		p = m.base + BOOT_ZERO_PAGE_ADDR;
		CHECK_EQ(get_le16(p + 0x206), 0x020f);
		CHECK_EQ(get_le32(p + 0x248), FX_BZ_PAYLOAD_OFF);
		CHECK_EQ(p[0x210], 0xff);
		CHECK(!strcmp((char *)m.base + get_le32(p + 0x228),
			      "console=hvc0"));
		free(bz);
	}

	/* PVH on request, and the classic path on request. */
	{
		struct boot_info bi;
		struct err err = {0};
		size_t plen, blen;
		uint8_t *pl = fx_compress(KCOMP_ZSTD, elf, elen, &plen);
		uint8_t *bz = pl ? fx_bzimage(&bo, pl, plen, &blen) : NULL;

		free(pl);
		if (bz) {
			cfg.flags = BOOT_F_PREFER_PVH;
			CHECK_EQ(kernel_load_buf(&m, &cfg, bz, blen, NULL, 0,
						 &bi, &err),
				 0);
			CHECK_EQ(bi.mode, BOOT_MODE_PVH);
			CHECK_EQ(bi.entry, 0x1000040);
			cfg.flags = BOOT_F_NO_UNPACK;
			CHECK_EQ(kernel_load_buf(&m, &cfg, bz, blen, NULL, 0,
						 &bi, &err),
				 0);
			CHECK_EQ(bi.format, KERNEL_FMT_BZIMAGE);
			CHECK_EQ(bi.entry, 0x1000200);
			CHECK(!bi.has_pvh);
			/* A corrupt payload falls back to the guest's own
			 * decompressor rather than failing the boot. */
			cfg.flags = 0;
			memset(bz + FX_BZ_PM_OFF + FX_BZ_PAYLOAD_OFF, 0, 8);
			CHECK_EQ(kernel_load_buf(&m, &cfg, bz, blen, NULL, 0,
						 &bi, &err),
				 0);
			CHECK_EQ(bi.format, KERNEL_FMT_BZIMAGE);
			free(bz);
		}
	}
	free(elf);
	fx_mem_free(&m);
}

static void test_unpack_errors(void)
{
	static const uint8_t junk[64] = {0};
	struct fx_bz_opts bo = fx_bz_default();
	struct err err = {0};
	size_t blen, ulen;
	uint8_t *bz, *un;

	CHECK_EQ(kernel_unpack_bzimage(junk, sizeof(junk), &un, &ulen, NULL,
				       &err),
		 -ENOEXEC);
	/* A valid stream that is not an ELF. */
	{
		uint8_t text[100];
		size_t plen;
		uint8_t *pl;

		memset(text, 'x', sizeof(text));
		pl = fx_compress(KCOMP_GZIP, text, sizeof(text), &plen);
		bz = pl ? fx_bzimage(&bo, pl, plen, &blen) : NULL;
		free(pl);
		if (bz) {
			CHECK_EQ(kernel_unpack_bzimage(bz, blen, &un, &ulen,
						       NULL, &err),
				 -ENOEXEC);
			CHECK(strstr(err.msg, "not an ELF") != NULL);
			/* payload_length beyond the file. */
			put_le32(bz + 0x24c, (uint32_t)blen);
			CHECK_EQ(kernel_unpack_bzimage(bz, blen, &un, &ulen,
						       NULL, &err),
				 -ENOEXEC);
			CHECK(strstr(err.msg, "out of bounds") != NULL);
			free(bz);
		}
	}
}

/*
 * Optional: a real distribution kernel, from $KHYVE_TEST_VMLINUZ or
 * /boot/vmlinuz-* (e.g. extracted from `apt-get download linux-image-...`).
 * Skipped when there is none.
 */
static void test_real_kernel(void)
{
	const char *env = getenv("KHYVE_TEST_VMLINUZ");
	char path[512] = "";
	struct dirent *de;
	DIR *d;

	if (env && env[0]) {
		snprintf(path, sizeof(path), "%s", env);
	} else if ((d = opendir("/boot"))) {
		while ((de = readdir(d))) {
			if (!strncmp(de->d_name, "vmlinuz-", 8)) {
				snprintf(path, sizeof(path), "/boot/%s",
					 de->d_name);
				break;
			}
		}
		closedir(d);
	}
	if (!path[0]) {
		SKIP("no kernel found ($KHYVE_TEST_VMLINUZ, /boot/vmlinuz-*)");
		return;
	}
	{
		struct guest_mem m;
		struct boot_info bi;
		struct err err = {0};

		if (fx_mem(&m, 512 * MiB))
			return;
		CHECK_EQ(load_file(&m, path, NULL, "console=ttyS0", 2, &bi,
				     &err),
			 0);
		if (err.msg[0])
			fprintf(stderr, "  %s: %s\n", path, err.msg);
		CHECK_EQ(bi.format, KERNEL_FMT_BZIMAGE_UNPACKED);
		CHECK_EQ(bi.entry, 0x1000000);
		CHECK(bi.has_pvh);
		fx_mem_free(&m);
	}
}

int main(void)
{
	log_set_level(LOG_ERR);
	RUN(test_detect);
	RUN(test_roundtrip);
	RUN(test_bzimage_unpack_load);
	RUN(test_unpack_errors);
	RUN(test_real_kernel);
	return unit_done();
}
