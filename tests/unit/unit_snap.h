/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shared by the device unit tests: a state through the real snapshot engine,
 * and a check that a description covers its state struct.
 * Include after unit.h.
 */
#ifndef KHYVE_UNIT_SNAP_H
#define KHYVE_UNIT_SNAP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "snap.h"

/* Through the real snapshot engine: write a file, read it back. */
static inline int snap_roundtrip(const struct snap_desc *d, const void *in, void *out)
{
	char path[] = "/tmp/khyve-unit-snap-XXXXXX";
	struct snap_host_info host;
	struct snap_writer *w;
	struct snap_reader *r;
	struct err err;
	int fd, ret;

	ret = snap_desc_check(d, &err);
	if (ret < 0)
		return ret;
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	snap_host_info_probe(&host, NULL);
	ret = snap_writer_open(&w, path, &host, NULL);
	if (ret < 0)
		goto out;
	ret = snap_write_section(w, d, 0, in);
	if (ret < 0) {
		snap_writer_abort(w);
		goto out;
	}
	ret = snap_writer_commit(w);
	if (ret < 0)
		goto out;
	ret = snap_reader_open(&r, path, &err);
	if (ret < 0)
		goto out;
	ret = snap_read_section(r, d, 0, out, &err);
	if (ret == 0)
		ret = snap_reader_check_consumed(r, &err);
	snap_reader_close(r);
out:
	if (ret < 0)
		fprintf(stderr, "snapshot round trip: %s\n", err.msg);
	unlink(path);
	return ret;
}

/*
 * A member of a saved state struct that its description deliberately
 * leaves out, and why (the reason is required).
 */
struct snap_unsaved {
	const char *name;
	size_t offset, size;
	const char *why;
};
#define SNAP_UNSAVED(st, m, why) \
	{ #m, offsetof(st, m), sizeof(((st *)0)->m), why }

/*
 * Exact coverage, against a map of which bytes of the struct belong to a
 * member (@member[b] != 0) and which are the compiler's padding: every
 * member byte is covered by exactly one field of @d or one @unsaved
 * entry, and nothing covers padding. So a member added without a field
 * (even into what was tail padding), a field dropped, two fields over one
 * member, or a field wider than its member all fail.
 */
static inline void check_desc_layout(const struct snap_desc *d,
				     const unsigned char *member, size_t size,
				     const struct snap_unsaved *unsaved,
				     unsigned nunsaved)
{
	static const unsigned esz[] = {0, 1, 2, 4, 8, 8, 1, 1};
	/* Sized by the state: device buffers make some states large. */
	unsigned char *cover = calloc(1, size + 1);
	const char **who = calloc(size + 1, sizeof(*who));
	unsigned bad = 0;

	CHECK(cover != NULL && who != NULL);
	if (!cover || !who) {
		free(cover);
		free(who);
		return;
	}
	CHECK_EQ(d->state_size, size);
	for (unsigned i = 0; i < d->nfields + nunsaved; i++) {
		const struct snap_field *f = i < d->nfields ? &d->fields[i] : NULL;
		const struct snap_unsaved *u = f ? NULL : &unsaved[i - d->nfields];
		size_t off = f ? f->offset : u->offset;
		size_t len = f ? (size_t)esz[f->type <= SNAP_T_BYTES ? f->type : 0] *
					 f->count
			       : u->size;

		if (f)
			CHECK(f->type >= SNAP_T_U8 && f->type <= SNAP_T_BYTES);
		else
			CHECK(u->why != NULL && u->why[0] != '\0');
		CHECK(len > 0 && off + len <= size);
		for (size_t b = off; b < off + len && b < size; b++) {
			cover[b]++;
			who[b] = f ? f->name : u->name;
		}
	}
	/* One line per run of wrong bytes, naming what is (not) there. */
	for (size_t b = 0; b < size;) {
		size_t e = b + 1;
		const char *what = NULL;

		if (member[b] && cover[b] == 0)
			what = "member bytes neither described nor listed as not saved";
		else if (member[b] && cover[b] > 1)
			what = "member bytes covered more than once";
		else if (!member[b] && cover[b])
			what = "padding covered by a field";
		if (!what) {
			b++;
			continue;
		}
		while (e < size && !!member[e] == !!member[b] &&
		       cover[e] == cover[b] && who[e] == who[b])
			e++;
		fprintf(stderr, "%s: section '%s': bytes %zu..%zu of %zu: %s%s%s\n",
			unit_current, d->name, b, e - 1, size, what,
			who[b] ? ", last by " : "", who[b] ? who[b] : "");
		bad++;
		b = e;
	}
	CHECK_EQ(bad, 0);
	free(cover);
	free(who);
}

/*
 * check_desc_exact(&desc, struct foo_state, unsaved, n): exact coverage of
 * the struct by its description (check_desc_layout), its padding found by
 * the compiler itself (__builtin_clear_padding zeroes exactly the padding
 * bits of an object; GCC 11 and later).
 */
#if defined(__has_builtin)
#if __has_builtin(__builtin_clear_padding)
#define UNIT_HAVE_CLEAR_PADDING 1
#endif
#endif
#ifdef UNIT_HAVE_CLEAR_PADDING
#define check_desc_exact(d, st, unsaved, nunsaved)                          \
	do {                                                                \
		st *probe_ = malloc(sizeof(st));                            \
		CHECK(probe_ != NULL);                                      \
		if (!probe_)                                                \
			break;                                              \
		memset(probe_, 0xff, sizeof(st));                           \
		__builtin_clear_padding(probe_);                            \
		check_desc_layout((d), (const unsigned char *)probe_,      \
				  sizeof(st), (unsaved), (nunsaved));       \
		free(probe_);                                               \
	} while (0)
#else
#define check_desc_exact(d, st, unsaved, nunsaved)                          \
	SKIP("exact coverage of %s: the compiler has no "                   \
	     "__builtin_clear_padding (GCC 11+) to find the padding",       \
	     (d)->name)
#endif

#endif
