/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest RAM from a RAM file (format: snap_ram.h): mapped, so pages load on
 * first touch and clones share the page cache, or copied at once (eager).
 * With @info (the state file's "ram" section) the file must be that
 * pair's: the size plus the trailer carrying its save id; NULL: a bare
 * RAM file of exactly the RAM size.
 */
#ifndef KHYVE_SNAP_RAM_RESTORE_H
#define KHYVE_SNAP_RAM_RESTORE_H

#include "guest_mem.h"
#include "snap.h"
#include "snap_ram.h"

/*
 * Map @path MAP_PRIVATE|MAP_FIXED over m->base (m->ram_size bytes). With
 * @keep_fd (NULL-able) the file stays open there (the caller watches it,
 * see vm_snapshot.c), else it is closed.
 */
int snap_ram_map(const struct guest_mem *m, const char *path,
		 const struct snap_ram_info *info, int *keep_fd,
		 struct err *err);
/* Read the whole file into @m's RAM now (holes become zero pages),
 * reporting to @pg (NULL-able). */
int snap_ram_load_eager(const struct guest_mem *m, const char *path,
			const struct snap_ram_info *info,
			const struct snap_ram_progress *pg, struct err *err);

#endif
