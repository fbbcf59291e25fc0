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
	struct snap_err err;
	int fd, ret;

	ret = snap_desc_check(d, &err);
	if (ret < 0)
		return ret;
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	snap_host_info_probe(&host, NULL);
	ret = snap_writer_open(&w, path, &host);
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

/* Every byte of the state struct is covered by exactly one field. */
static inline void check_desc_covers(const struct snap_desc *d, size_t tail_slack)
{
	static const unsigned esz[] = {0, 1, 2, 4, 8, 8, 1, 1};
	/* Sized by the state: device buffers make some states large. */
	unsigned char *cover = calloc(1, d->state_size + 1);
	size_t end = 0;

	CHECK(cover != NULL);
	if (!cover)
		return;
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		size_t len = (size_t)esz[f->type] * f->count;

		CHECK(f->type >= SNAP_T_U8 && f->type <= SNAP_T_BYTES);
		CHECK(f->offset + len <= d->state_size);
		for (size_t b = f->offset;
		     b < f->offset + len && b < d->state_size; b++)
			cover[b]++;
		end = MAX(end, f->offset + len);
	}
	for (size_t b = 0; b < end && b < d->state_size; b++)
		CHECK_EQ(cover[b], 1);
	CHECK(d->state_size - end <= tail_slack);
	free(cover);
}

#endif
