/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Test fixtures for the x86 boot tests, generated at run time: guest
 * memory, tiny ELF kernels (optionally with a PVH note), compressed
 * payloads made with the real libraries, and synthetic bzImages.
 */
#ifndef KHYVE_TEST_X86BOOT_FIXTURES_H
#define KHYVE_TEST_X86BOOT_FIXTURES_H

#include <bzlib.h>
#include <elf.h>
#include <lz4.h>
#include <lz4frame.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "boot.h"
#include "common.h"
#include "guest_mem.h"
#include "kernel_unpack.h"

static inline int fx_mem(struct guest_mem *m, uint64_t size)
{
	if (guest_mem_layout(m, size))
		return -1;
	m->base = calloc(1, size);
	if (!m->base)
		return -1;
	for (unsigned i = 0; i < m->nr; i++)
		m->r[i].hva = m->base + m->r[i].offset;
	return 0;
}

static inline void fx_mem_free(struct guest_mem *m)
{
	free(m->base);
	m->base = NULL;
}

static inline uint8_t fx_sum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (len--)
		s += *b++;
	return s;
}

/* Byte pattern of a loaded segment, so tests can verify what landed. */
static inline uint8_t fx_pat(unsigned seg, size_t i)
{
	return (uint8_t)(seg * 31 + i * 7 + 1);
}

struct fx_elf_opts {
	bool is64;
	uint64_t paddr;	   /* first segment's physical address */
	uint64_t vdelta;   /* vaddr = paddr + vdelta */
	uint64_t entry;	   /* e_entry as stored */
	uint64_t pvh;	   /* PVH entry, 0: no note */
	unsigned pvh_size; /* 4 or 8 */
	size_t text, data, bss;
	bool linux_note; /* Linux's build-salt note, as every vmlinux has */
};

/*
 * Layout: ehdr | phdrs (text, data, note) | note | text | data. The text
 * segment is at @paddr, data right after it (page-aligned) with @bss zero
 * bytes beyond its file size.
 */
static inline uint8_t *fx_elf(const struct fx_elf_opts *o, size_t *len)
{
	size_t ehsz = o->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t phsz = o->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	size_t note_off = ehsz + 3 * phsz, note_len = 0;
	size_t text_off, data_off, total;
	uint64_t data_paddr = ALIGN_UP(o->paddr + o->text, 4096);
	uint8_t note[128] = {0};
	uint8_t *b;

	/* Another note first, so the parser has to walk past it. */
	put_le32(note, 4);
	put_le32(note + 4, 4);
	put_le32(note + 8, 1);
	memcpy(note + 12, "GNU", 4);
	put_le32(note + 16, 0x12345678);
	note_len = 20;
	if (o->pvh) {
		put_le32(note + note_len, 4);
		put_le32(note + note_len + 4, o->pvh_size);
		put_le32(note + note_len + 8, 18);
		memcpy(note + note_len + 12, "Xen", 4);
		if (o->pvh_size == 8)
			put_le64(note + note_len + 16, o->pvh);
		else
			put_le32(note + note_len + 16, (uint32_t)o->pvh);
		note_len += 16 + o->pvh_size;
	}
	if (o->linux_note) {
		/* "Linux\0" padded to 8, a 4-byte descriptor (type 0x100). */
		put_le32(note + note_len, 6);
		put_le32(note + note_len + 4, 4);
		put_le32(note + note_len + 8, 0x100);
		memcpy(note + note_len + 12, "Linux", 6);
		note_len += 24;
	}
	text_off = ALIGN_UP(note_off + note_len, 16);
	data_off = text_off + o->text;
	total = data_off + o->data;
	b = calloc(1, total);
	if (!b)
		return NULL;
	memcpy(b, ELFMAG, SELFMAG);
	b[EI_CLASS] = o->is64 ? ELFCLASS64 : ELFCLASS32;
	b[EI_DATA] = ELFDATA2LSB;
	b[EI_VERSION] = EV_CURRENT;
	put_le16(b + 16, ET_EXEC);
	put_le16(b + 18, o->is64 ? EM_X86_64 : EM_386);
	put_le32(b + 20, EV_CURRENT);
	if (o->is64) {
		put_le64(b + 24, o->entry);
		put_le64(b + 32, ehsz);
		put_le16(b + 52, (uint16_t)ehsz);
		put_le16(b + 54, (uint16_t)phsz);
		put_le16(b + 56, 3);
	} else {
		put_le32(b + 24, (uint32_t)o->entry);
		put_le32(b + 28, (uint32_t)ehsz);
		put_le16(b + 40, (uint16_t)ehsz);
		put_le16(b + 42, (uint16_t)phsz);
		put_le16(b + 44, 3);
	}
	for (unsigned i = 0; i < 3; i++) {
		uint8_t *p = b + ehsz + i * phsz;
		uint32_t type = i == 2 ? PT_NOTE : PT_LOAD;
		uint64_t off = i == 0 ? text_off : i == 1 ? data_off : note_off;
		uint64_t pa = i == 0 ? o->paddr : i == 1 ? data_paddr : 0;
		uint64_t fsz = i == 0 ? o->text : i == 1 ? o->data : note_len;
		uint64_t msz = i == 1 ? o->data + o->bss : fsz;
		uint64_t va = i == 2 ? 0 : pa + o->vdelta;

		if (o->is64) {
			put_le32(p, type);
			put_le32(p + 4, 5);
			put_le64(p + 8, off);
			put_le64(p + 16, va);
			put_le64(p + 24, pa);
			put_le64(p + 32, fsz);
			put_le64(p + 40, msz);
			put_le64(p + 48, i == 2 ? 4 : 4096);
		} else {
			put_le32(p, type);
			put_le32(p + 4, (uint32_t)off);
			put_le32(p + 8, (uint32_t)va);
			put_le32(p + 12, (uint32_t)pa);
			put_le32(p + 16, (uint32_t)fsz);
			put_le32(p + 20, (uint32_t)msz);
			put_le32(p + 24, 5);
			put_le32(p + 28, i == 2 ? 4 : 4096);
		}
	}
	memcpy(b + note_off, note, note_len);
	for (size_t i = 0; i < o->text; i++)
		b[text_off + i] = fx_pat(0, i);
	for (size_t i = 0; i < o->data; i++)
		b[data_off + i] = fx_pat(1, i);
	*len = total;
	return b;
}

static inline uint64_t fx_elf_data_paddr(const struct fx_elf_opts *o)
{
	return ALIGN_UP(o->paddr + o->text, 4096);
}

/* A vmlinux-like ELF64: text at 16 MiB, linked high, physical e_entry. */
static inline struct fx_elf_opts fx_vmlinux_opts(bool pvh)
{
	return (struct fx_elf_opts){.is64 = true,
				    .paddr = 0x1000000,
				    .vdelta = 0xffffffff80000000ULL,
				    .entry = 0x1000000,
				    .pvh = pvh ? 0x1000040 : 0,
				    .pvh_size = 8,
				    .text = 3000,
				    .data = 1000,
				    .bss = 20000};
}

/* Compress @in as the kernel build does, appending the le32 size. */
static inline uint8_t *fx_compress(enum kernel_comp c, const uint8_t *in,
				   size_t len, size_t *outlen)
{
	size_t cap = len * 2 + 1024, n = 0;
	uint8_t *out = malloc(cap + 4);

	if (!out)
		return NULL;
	switch (c) {
	case KCOMP_GZIP: {
		z_stream zs = {0};

		if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			goto fail;
		zs.next_in = (Bytef *)in;
		zs.avail_in = (uInt)len;
		zs.next_out = out;
		zs.avail_out = (uInt)cap;
		if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
			deflateEnd(&zs);
			goto fail;
		}
		n = zs.total_out;
		deflateEnd(&zs);
		break;
	}
	case KCOMP_XZ:
		if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in, len,
					    out, &n, cap) != LZMA_OK)
			goto fail;
		break;
	case KCOMP_LZMA: {
		lzma_stream s = LZMA_STREAM_INIT;
		lzma_options_lzma opt;

		lzma_lzma_preset(&opt, 6);
		if (lzma_alone_encoder(&s, &opt) != LZMA_OK)
			goto fail;
		s.next_in = in;
		s.avail_in = len;
		s.next_out = out;
		s.avail_out = cap;
		if (lzma_code(&s, LZMA_FINISH) != LZMA_STREAM_END) {
			lzma_end(&s);
			goto fail;
		}
		n = s.total_out;
		lzma_end(&s);
		break;
	}
	case KCOMP_BZIP2: {
		unsigned int dl = (unsigned int)cap;

		if (BZ2_bzBuffToBuffCompress((char *)out, &dl, (char *)in,
					     (unsigned int)len, 9, 0,
					     0) != BZ_OK)
			goto fail;
		n = dl;
		break;
	}
	case KCOMP_ZSTD:
		n = ZSTD_compress(out, cap, in, len, 19);
		if (ZSTD_isError(n))
			goto fail;
		break;
	case KCOMP_LZ4_FRAME:
		n = LZ4F_compressFrame(out, cap, in, len, NULL);
		if (LZ4F_isError(n))
			goto fail;
		break;
	case KCOMP_LZ4_LEGACY: {
		/* magic, then blocks of (le32 size, data) per 8 MiB input. */
		int r;

		put_le32(out, 0x184c2102);
		r = LZ4_compress_default((const char *)in, (char *)out + 8,
					 (int)len, (int)cap - 8);
		if (r <= 0)
			goto fail;
		put_le32(out + 4, (uint32_t)r);
		n = 8 + (size_t)r;
		break;
	}
	default:
		goto fail;
	}
	put_le32(out + n, (uint32_t)len);
	*outlen = n + 4;
	return out;
fail:
	free(out);
	return NULL;
}

struct fx_bz_opts {
	uint16_t version;
	uint16_t xloadflags;
	uint8_t relocatable;
	uint32_t init_size;
	uint64_t pref_address;
	uint32_t cmdline_size;
	uint32_t initrd_addr_max;
};

static inline struct fx_bz_opts fx_bz_default(void)
{
	return (struct fx_bz_opts){.version = 0x020f,
				   .xloadflags = 0x3, /* KERNEL_64 | ABOVE_4G */
				   .relocatable = 1,
				   .init_size = 0x200000,
				   .pref_address = 0x1000000,
				   .cmdline_size = 2047,
				   .initrd_addr_max = 0x7fffffff};
}

#define FX_BZ_SETUP_SECTS 4
#define FX_BZ_PM_OFF	  ((FX_BZ_SETUP_SECTS + 1) * 512)
#define FX_BZ_PAYLOAD_OFF 0x400 /* relative to the protected-mode code */

/*
 * Setup sectors with the header, then protected-mode code: 0x400 bytes of
 * stand-in decompressor, then @payload.
 */
static inline uint8_t *fx_bzimage(const struct fx_bz_opts *o,
				  const uint8_t *payload, size_t plen,
				  size_t *len)
{
	size_t pm_len = ALIGN_UP(FX_BZ_PAYLOAD_OFF + plen, 16);
	size_t total = FX_BZ_PM_OFF + pm_len;
	uint8_t *b = calloc(1, total);

	if (!b)
		return NULL;
	b[0x1f1] = FX_BZ_SETUP_SECTS;
	put_le32(b + 0x1f4, (uint32_t)(pm_len / 16));
	put_le16(b + 0x1fe, 0xaa55);
	b[0x200] = 0xeb;
	b[0x201] = 0x6a; /* header ends at 0x26c */
	put_le32(b + 0x202, 0x53726448);
	put_le16(b + 0x206, o->version);
	b[0x211] = 0x01 | 0x02; /* LOADED_HIGH, and a stale KASLR_FLAG */
	put_le32(b + 0x214, 0x100000);
	put_le32(b + 0x22c, o->initrd_addr_max);
	put_le32(b + 0x230, 0x200000);
	b[0x234] = o->relocatable;
	b[0x235] = 21;
	put_le16(b + 0x236, o->xloadflags);
	put_le32(b + 0x238, o->cmdline_size);
	put_le32(b + 0x248, FX_BZ_PAYLOAD_OFF);
	put_le32(b + 0x24c, (uint32_t)plen);
	put_le64(b + 0x258, o->pref_address);
	put_le32(b + 0x260, o->init_size);
	/* A byte past the header that must not reach the zero page. */
	b[0x270] = 0xcc;
	for (size_t i = 0; i < FX_BZ_PAYLOAD_OFF; i++)
		b[FX_BZ_PM_OFF + i] = fx_pat(7, i);
	memcpy(b + FX_BZ_PM_OFF + FX_BZ_PAYLOAD_OFF, payload, plen);
	*len = total;
	return b;
}

/* A kernel file, initrd and command line with default flags (the loader
 * tests of test_boot and test_kernel_unpack). */
static inline int load_file(const struct guest_mem *m, const char *kpath,
		     const char *ipath, const char *cmdline, unsigned ncpus,
		     struct boot_info *bi, struct err *err)
{
	struct boot_config c = {.kernel_path = kpath,
				.initrd_path = ipath,
				.cmdline = cmdline,
				.ncpus = ncpus};

	return kernel_load(m, &c, bi, err);
}

#endif
