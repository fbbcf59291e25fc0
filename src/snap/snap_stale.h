/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What a save killed mid-way (SIGKILL, a crash, power loss) leaves beside
 * its destination: temporaries `.FILE.tmp-XXXXXX` (snap_file.c) and the
 * previous RAM file's second name `.FILE.ram.old-XXXXXXXXXXXX`
 * (snap_ram_live.c). A live save holds an flock on each of its own
 * (snap_stale_hold), so the next save to that path can tell the dead ones
 * - nobody holds their lock - and removes them (snap_stale_sweep).
 */
#ifndef KHYVE_SNAP_STALE_H
#define KHYVE_SNAP_STALE_H

#include <stddef.h>

/*
 * Remove every regular file of ours in @dir named @prefix plus exactly
 * @suffix_len letters and digits that no process holds an flock on.
 * Best effort (a save never fails for it); returns how many went.
 */
unsigned snap_stale_sweep(const char *dir, const char *prefix,
			  size_t suffix_len);
/*
 * Hold the lock that tells a live save's file from a dead one: a
 * descriptor of @fd's file (-1 if locks are not possible: the file is
 * then never swept). Close it once the name is gone or published.
 */
int snap_stale_hold(int fd);

#endif
