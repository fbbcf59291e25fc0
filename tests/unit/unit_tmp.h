/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shared by the snapshot unit tests: a temporary directory with paths in
 * it, and flat guest RAM in one anonymous mapping. Include after unit.h.
 */
#ifndef KHYVE_UNIT_TMP_H
#define KHYVE_UNIT_TMP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common.h"
#include "guest_mem.h"

/* The test's directory, made by tdir_make. */
static char dir[64] __attribute__((unused));

/* @name in dir; the last 8 results stay valid. */
static inline const char *tpath(const char *name)
{
	static char buf[8][160];
	static unsigned n;
	char *p = buf[n++ % 8];

	snprintf(p, 160, "%s/%s", dir, name);
	return p;
}

/* dir = /tmp/khyve-test-@tag-XXXXXX, made; 0 or -1. */
static inline int tdir_make(const char *tag)
{
	snprintf(dir, sizeof(dir), "/tmp/khyve-test-%s-XXXXXX", tag);
	return mkdtemp(dir) ? 0 : -1;
}

/* dir and everything in it. */
static inline void tdir_remove(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* Flat guest RAM in one anonymous mapping, regions pointing into it. */
static inline int mem_new(struct guest_mem *m, uint64_t size)
{
	void *p;

	if (guest_mem_layout(m, size))
		return -1;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	m->base = p;
	for (unsigned i = 0; i < m->nr; i++)
		m->r[i].hva = m->base + m->r[i].offset;
	return 0;
}

static inline void mem_free(struct guest_mem *m)
{
	munmap(m->base, m->ram_size);
}

#endif
