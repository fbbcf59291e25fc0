/* SPDX-License-Identifier: BSD-2-Clause */
#include "kernel_unpack.h"

#include <bzlib.h>
#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <lz4frame.h>
#include <lzma.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "common.h"
#include "log.h"

#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_FRAME_MAGIC	 0x184d2204u
/* lz4 legacy blocks decompress to at most 8 MiB each. */
#define LZ4_LEGACY_BLOCK (8u << 20)

enum kernel_comp kernel_comp_detect(const uint8_t *p, size_t len)
{
	if (len >= 2 && p[0] == 0x1f && (p[1] == 0x8b || p[1] == 0x9e))
		return KCOMP_GZIP;
	if (len >= 6 && !memcmp(p,
				"\xfd"
				"7zXZ\0",
				6))
		return KCOMP_XZ;
	if (len >= 3 && !memcmp(p, "BZh", 3))
		return KCOMP_BZIP2;
	if (len >= 4 && get_le32(p) == 0xfd2fb528u)
		return KCOMP_ZSTD;
	if (len >= 4 && get_le32(p) == LZ4_LEGACY_MAGIC)
		return KCOMP_LZ4_LEGACY;
	if (len >= 4 && get_le32(p) == LZ4_FRAME_MAGIC)
		return KCOMP_LZ4_FRAME;
	if (len >= 4 && !memcmp(p, "\x89LZO", 4))
		return KCOMP_LZO;
	/* lzma-alone: properties byte 0x5d (lc=3 lp=0 pb=2), then a 32-bit
	 * dictionary size; no real magic, so this test comes last. */
	if (len >= 13 && p[0] == 0x5d && p[1] == 0 && p[2] == 0)
		return KCOMP_LZMA;
	return KCOMP_UNKNOWN;
}

const char *kernel_comp_name(enum kernel_comp c)
{
	switch (c) {
	case KCOMP_GZIP:
		return "gzip";
	case KCOMP_XZ:
		return "xz";
	case KCOMP_LZMA:
		return "lzma";
	case KCOMP_BZIP2:
		return "bzip2";
	case KCOMP_ZSTD:
		return "zstd";
	case KCOMP_LZ4_LEGACY:
		return "lz4 (legacy)";
	case KCOMP_LZ4_FRAME:
		return "lz4 (frame)";
	case KCOMP_LZO:
		return "lzo";
	default:
		return "unknown";
	}
}

/* A growable output buffer capped at @max bytes. */
struct obuf {
	uint8_t *p;
	size_t len, cap, max;
};

/* Make room for at least @want more bytes (fewer if the cap is near). */
static int obuf_grow(struct obuf *o, size_t want)
{
	size_t ncap;
	uint8_t *np;

	if (o->cap - o->len >= want)
		return 0;
	if (o->cap >= o->max)
		return -EFBIG;
	ncap = MAX(o->cap * 2, o->len + want);
	ncap = MIN(ncap, o->max);
	np = realloc(o->p, ncap);
	if (!np)
		return -ENOMEM;
	o->p = np;
	o->cap = ncap;
	return 0;
}

static int dec_gzip(const uint8_t *in, size_t inlen, struct obuf *o)
{
	z_stream zs = {0};
	int zr, ret = 0;

	if (inlen > UINT_MAX)
		return -EFBIG;
	/* 16 + MAX_WBITS: expect a gzip wrapper, not zlib. */
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)inlen;
	for (;;) {
		ret = obuf_grow(o, 1 << 20);
		if (ret)
			break;
		zs.next_out = o->p + o->len;
		zs.avail_out = (uInt)MIN(o->cap - o->len, UINT_MAX);
		zr = inflate(&zs, Z_NO_FLUSH);
		o->len = (size_t)(zs.next_out - o->p);
		if (zr == Z_STREAM_END)
			break;
		if (zr == Z_OK)
			continue;
		/* Z_BUF_ERROR with input left would mean no output room. */
		ret = (zr == Z_MEM_ERROR) ? -ENOMEM : -EINVAL;
		break;
	}
	inflateEnd(&zs);
	return ret;
}

static int dec_lzma(const uint8_t *in, size_t inlen, struct obuf *o, bool alone)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_ret lr;
	int ret = 0;

	/* No LZMA_CONCATENATED: decoding stops at the end of the first
	 * stream, ignoring the size Linux appends. */
	lr = alone ? lzma_alone_decoder(&s, UINT64_MAX)
		   : lzma_stream_decoder(&s, UINT64_MAX, 0);
	if (lr != LZMA_OK)
		return -ENOMEM;
	s.next_in = in;
	s.avail_in = inlen;
	for (;;) {
		ret = obuf_grow(o, 1 << 20);
		if (ret)
			break;
		s.next_out = o->p + o->len;
		s.avail_out = o->cap - o->len;
		lr = lzma_code(&s, LZMA_FINISH);
		o->len = (size_t)(s.next_out - o->p);
		if (lr == LZMA_STREAM_END)
			break;
		if (lr == LZMA_OK)
			continue;
		ret = (lr == LZMA_MEM_ERROR) ? -ENOMEM : -EINVAL;
		break;
	}
	lzma_end(&s);
	return ret;
}

static int dec_bzip2(const uint8_t *in, size_t inlen, struct obuf *o)
{
	bz_stream bs = {0};
	int br, ret = 0;

	if (inlen > UINT_MAX)
		return -EFBIG;
	if (BZ2_bzDecompressInit(&bs, 0, 0) != BZ_OK)
		return -ENOMEM;
	bs.next_in = (char *)in;
	bs.avail_in = (unsigned)inlen;
	for (;;) {
		ret = obuf_grow(o, 1 << 20);
		if (ret)
			break;
		bs.next_out = (char *)(o->p + o->len);
		bs.avail_out = (unsigned)MIN(o->cap - o->len, UINT_MAX);
		br = BZ2_bzDecompress(&bs);
		o->len = (size_t)((uint8_t *)bs.next_out - o->p);
		if (br == BZ_STREAM_END)
			break;
		/* BZ_OK with no input left and room to spare: truncated. */
		if (br == BZ_OK && (bs.avail_in || !bs.avail_out))
			continue;
		ret = (br == BZ_MEM_ERROR) ? -ENOMEM : -EINVAL;
		break;
	}
	BZ2_bzDecompressEnd(&bs);
	return ret;
}

static int dec_zstd(const uint8_t *in, size_t inlen, struct obuf *o)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	ZSTD_inBuffer ib = {in, inlen, 0};
	size_t zr;
	int ret = 0;

	if (!dc)
		return -ENOMEM;
	/* zstd -22 --ultra (the kernel's choice) may use a 128 MiB window. */
	ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, 27);
	for (;;) {
		ZSTD_outBuffer ob;

		ret = obuf_grow(o, 1 << 20);
		if (ret)
			break;
		ob = (ZSTD_outBuffer){o->p + o->len, o->cap - o->len, 0};
		zr = ZSTD_decompressStream(dc, &ob, &ib);
		o->len += ob.pos;
		if (ZSTD_isError(zr)) {
			ret = -EINVAL;
			break;
		}
		if (zr == 0) /* frame complete */
			break;
		if (ib.pos == ib.size && ob.pos < ob.size) {
			ret = -EINVAL; /* truncated */
			break;
		}
	}
	ZSTD_freeDCtx(dc);
	return ret;
}

static int dec_lz4_frame(const uint8_t *in, size_t inlen, struct obuf *o)
{
	LZ4F_dctx *dc;
	size_t pos = 0, lr;
	int ret = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dc, LZ4F_VERSION)))
		return -ENOMEM;
	for (;;) {
		size_t dst, src = inlen - pos;

		ret = obuf_grow(o, 1 << 20);
		if (ret)
			break;
		dst = o->cap - o->len;
		lr = LZ4F_decompress(dc, o->p + o->len, &dst, in + pos, &src,
				     NULL);
		o->len += dst;
		pos += src;
		if (LZ4F_isError(lr)) {
			ret = -EINVAL;
			break;
		}
		if (lr == 0) /* frame complete */
			break;
		if (pos == inlen && dst == 0) {
			ret = -EINVAL;
			break;
		}
	}
	LZ4F_freeDecompressionContext(dc);
	return ret;
}

/*
 * Legacy lz4 (lz4 -l): magic, then blocks of le32 compressed size + data,
 * each at most 8 MiB decompressed. There is no end marker: the stream ends
 * at end of input, or, in a bzImage, at the appended le32 output size,
 * which never fits as a block size in the few bytes left after it.
 */
static int dec_lz4_legacy(const uint8_t *in, size_t inlen, struct obuf *o)
{
	size_t pos = 4;
	int ret;

	while (inlen - pos >= 4) {
		uint32_t csz = get_le32(in + pos);
		int n;

		if (csz == LZ4_LEGACY_MAGIC) { /* concatenated streams */
			pos += 4;
			continue;
		}
		if (csz == 0 || csz > inlen - pos - 4 || csz > INT_MAX)
			break;
		pos += 4;
		ret = obuf_grow(o, LZ4_LEGACY_BLOCK);
		if (ret == -EFBIG && o->cap > o->len)
			ret = 0; /* decode what fits; overflow is caught below
				  */
		if (ret)
			return ret;
		n = LZ4_decompress_safe(
			(const char *)in + pos, (char *)o->p + o->len, (int)csz,
			(int)MIN(o->cap - o->len, (size_t)LZ4_LEGACY_BLOCK));
		if (n < 0)
			return o->cap == o->max ? -EFBIG : -EINVAL;
		o->len += (size_t)n;
		pos += csz;
	}
	return o->len ? 0 : -EINVAL;
}

int kernel_decompress(enum kernel_comp c, const uint8_t *in, size_t inlen,
		      size_t max, uint8_t **out, size_t *outlen)
{
	struct obuf o = {.max = max};
	int ret;

	*out = NULL;
	*outlen = 0;
	if (!max)
		return -EINVAL;
	switch (c) {
	case KCOMP_GZIP:
		ret = dec_gzip(in, inlen, &o);
		break;
	case KCOMP_XZ:
		ret = dec_lzma(in, inlen, &o, false);
		break;
	case KCOMP_LZMA:
		ret = dec_lzma(in, inlen, &o, true);
		break;
	case KCOMP_BZIP2:
		ret = dec_bzip2(in, inlen, &o);
		break;
	case KCOMP_ZSTD:
		ret = dec_zstd(in, inlen, &o);
		break;
	case KCOMP_LZ4_FRAME:
		ret = dec_lz4_frame(in, inlen, &o);
		break;
	case KCOMP_LZ4_LEGACY:
		ret = dec_lz4_legacy(in, inlen, &o);
		break;
	default:
		ret = -ENOTSUP;
		break;
	}
	if (ret) {
		free(o.p);
		return ret;
	}
	*out = o.p;
	*outlen = o.len;
	return 0;
}

int kernel_unpack_bzimage(const uint8_t *bz, size_t len, uint8_t **elf,
			  size_t *elflen, enum kernel_comp *comp,
			  struct err *err)
{
	uint64_t pm_off, off, plen;
	enum kernel_comp c;
	unsigned setup_sects;
	int ret;

	*elf = NULL;
	*elflen = 0;
	if (len < 0x250 || get_le32(bz + 0x202) != 0x53726448)
		return err_set(err, -ENOEXEC, "no bzImage setup header");
	if (get_le16(bz + 0x206) < 0x208)
		return err_set(
			err, -ENOEXEC,
			"boot protocol %#x has no payload fields (need 2.08)",
			get_le16(bz + 0x206));
	/* setup_sects == 0 means 4, for compatibility with ancient kernels. */
	setup_sects = bz[0x1f1] ? bz[0x1f1] : 4;
	pm_off = (setup_sects + 1) * 512ULL;
	/* payload_offset is relative to the protected-mode code. */
	off = pm_off + get_le32(bz + 0x248);
	plen = get_le32(bz + 0x24c);
	if (plen < 8 || off > len || plen > len - off)
		return err_set(err, -ENOEXEC, "bzImage payload out of bounds");
	c = kernel_comp_detect(bz + off, plen);
	if (comp)
		*comp = c;
	if (c == KCOMP_UNKNOWN || c == KCOMP_LZO)
		return err_set(err, -ENOTSUP,
			       "unsupported kernel compression (%s)",
			       kernel_comp_name(c));
	ret = kernel_decompress(c, bz + off, plen, KERNEL_UNPACK_MAX, elf,
				elflen);
	if (ret)
		return err_set(err, ret,
			       "cannot decompress %s kernel payload: %s",
			       kernel_comp_name(c), strerror(-ret));
	if (*elflen < 4 || memcmp(*elf,
				  "\x7f"
				  "ELF",
				  4)) {
		err_set(err, -ENOEXEC,
			"decompressed kernel is not an ELF image");
		free(*elf);
		*elf = NULL;
		*elflen = 0;
		return -ENOEXEC;
	}
	return 0;
}
