/* SPDX-License-Identifier: BSD-2-Clause */
/* Shared by the device unit tests: a state through the real snapshot engine. */
#ifndef KHYVE_UNIT_SNAP_H
#define KHYVE_UNIT_SNAP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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

#endif
