/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A snapshot file written in place of another only when complete: the
 * data goes to a temporary name in the destination's directory, is synced
 * and closed (_seal), then renamed over the destination and the directory
 * synced (_publish). A crash or an error before the rename leaves the
 * previous file as it was. The state file writer (snap.c) and the RAM file
 * (snap_ram_live.c) both write through it; the pair commit seals both
 * before it publishes either (snap_ram_pair_commit).
 *
 *   snap_tmpfile_open(&t, "dir/x.snap");      dir/.x.snap.tmp-XXXXXX
 *   ... write to t.fd ...
 *   snap_tmpfile_commit(&t, true, &err);       or _seal, then _publish
 *   snap_tmpfile_discard(&t);                  always: closes, unlinks the
 *                                              temporary file if it was
 *                                              not published, frees
 */
#ifndef KHYVE_SNAP_FILE_H
#define KHYVE_SNAP_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snap.h"

struct snap_tmpfile {
	char *path; /* the destination */
	char *dir;  /* its directory, synced after the rename */
	char *tmp;  /* the temporary name; NULL once renamed over @path */
	int fd;	    /* -1 once closed */
	int hold;   /* its flock while @tmp is ours (snap_stale.h), or -1 */
};

/*
 * Create the temporary file beside @path, first removing those a killed
 * save to @path left (snap_stale.h). -EISDIR when @path names no file
 * (ends in '/'). On failure @t needs no _discard (but may have one).
 */
int snap_tmpfile_open(struct snap_tmpfile *t, const char *path);
/*
 * fsync (@sync) and close the temporary file. On failure @err (NULL-able)
 * names the temporary file and the call that failed.
 */
int snap_tmpfile_seal(struct snap_tmpfile *t, bool sync, struct err *err);
/* Rename the sealed file over the destination, then fsync the directory
 * (@sync_dir). */
int snap_tmpfile_publish(struct snap_tmpfile *t, bool sync_dir,
			 struct err *err);
/* _seal, then _publish, syncing both when @sync. */
int snap_tmpfile_commit(struct snap_tmpfile *t, bool sync, struct err *err);
void snap_tmpfile_discard(struct snap_tmpfile *t);

/* fsync a directory; file systems that cannot (EINVAL) need not. */
int snap_fsync_dir(const char *dir);

/* Whole-buffer I/O, retried on EINTR and short counts: 0 or -errno
 * (-EIO at end of file). */
int snap_write_full(int fd, const void *buf, size_t len);
int snap_pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off);
int snap_pread_full(int fd, void *buf, size_t len, off_t off);

#endif
