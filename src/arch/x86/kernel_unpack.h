/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Host-side bzImage unpacking: extract the compressed payload a bzImage
 * carries (setup header payload_offset/payload_length) and decompress it
 * into the ELF vmlinux, so the guest never runs the decompressor.
 */
#ifndef KHYVE_X86_KERNEL_UNPACK_H
#define KHYVE_X86_KERNEL_UNPACK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Output cap: no vmlinux comes close. */
#define KERNEL_UNPACK_MAX (512ULL << 20)

enum kernel_comp {
	KCOMP_UNKNOWN = 0,
	KCOMP_GZIP,
	KCOMP_XZ,
	KCOMP_LZMA,
	KCOMP_BZIP2,
	KCOMP_ZSTD,
	KCOMP_LZ4_LEGACY, /* what the kernel build emits (lz4 -l) */
	KCOMP_LZ4_FRAME,
	KCOMP_LZO, /* recognised, not supported (no Debian library used) */
};

/* Detect the compression format from its magic bytes. */
enum kernel_comp kernel_comp_detect(const uint8_t *p, size_t len);
const char *kernel_comp_name(enum kernel_comp c);

/*
 * Decompress one stream of format @c from @in. Trailing bytes after the end
 * of the stream are ignored (Linux appends the le32 output size). The
 * result, at most @max bytes, is malloc'ed in @out. Returns 0, -EFBIG if it
 * exceeds @max, -EINVAL for corrupt data, -ENOTSUP, -ENOMEM.
 */
int kernel_decompress(enum kernel_comp c, const uint8_t *in, size_t inlen,
		      size_t max, uint8_t **out, size_t *outlen);

/*
 * Find and decompress the payload of bzImage @bz (needs boot protocol
 * >= 2.08). On success *@elf is the malloc'ed vmlinux (callers check it is
 * ELF). @comp (may be NULL) receives the format. Errors as above plus
 * -ENOEXEC if @bz has no usable payload; @err gets one line.
 */
int kernel_unpack_bzimage(const uint8_t *bz, size_t len, uint8_t **elf,
			  size_t *elflen, enum kernel_comp *comp,
			  struct err *err);

#endif
