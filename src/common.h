/* SPDX-License-Identifier: BSD-2-Clause */
/* Small helpers shared by every khyve component. */
#ifndef KHYVE_COMMON_H
#define KHYVE_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef KHYVE_VERSION
#define KHYVE_VERSION "0.1.0"
#endif

#define ARRAY_SIZE(a)	 (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)	 ((a) < (b) ? (a) : (b))
#define MAX(a, b)	 ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a)	 (((x) + ((a)-1)) & ~((uint64_t)(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a)-1))
#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr)-offsetof(type, member)))

#define KiB	  (1024ULL)
#define MiB	  (1024ULL * KiB)
#define GiB	  (1024ULL * MiB)
#define PAGE_SIZE 4096ULL

/* Little-endian accessors for byte buffers (guest tables, file formats). */
static inline void put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void put_le32(void *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16((uint8_t *)p + 2, (uint16_t)(v >> 16));
}
static inline void put_le64(void *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t get_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t get_le32(const void *p)
{
	return get_le16(p) | ((uint32_t)get_le16((const uint8_t *)p + 2) << 16);
}
static inline uint64_t get_le64(const void *p)
{
	return get_le32(p) | ((uint64_t)get_le32((const uint8_t *)p + 4) << 32);
}

#endif
