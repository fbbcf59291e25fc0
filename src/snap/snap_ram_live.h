/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Writing a RAM file (format: snap_ram.h), incrementally, so a save can
 * copy guest RAM while the guest runs (live pre-copy, vm_snapshot.c):
 *
 *   snap_ram_live_open(m, path, id, &lv); temporary file, full size
 *   snap_ram_live_copy(lv, NULL, pg);      every page that may hold data
 *   snap_ram_live_copy(lv, dirty, NULL);   pages written since, again (as
 *                                          many rounds as wanted)
 *   ... guest paused, writers stopped ...
 *   snap_ram_live_copy(lv, dirty, NULL);   pages written since, a last time
 *   snap_ram_live_commit(lv, flags, info); fsync, rename, hashes (frees lv)
 *                 or snap_ram_pair_commit  with the state file
 *
 * @dirty is a bitmap of flat RAM pages (bit i = bytes [i*4096, +4096) of
 * the flat RAM). A chunk that holds a dirty page is re-hashed whole, so
 * the hashes always describe the file as committed. Pages that were
 * neither present nor swapped in an anonymous mapping are never read:
 * they are zero (snap_ram_pages.h). A pass spreads its chunks over a few
 * threads.
 */
#ifndef KHYVE_SNAP_RAM_LIVE_H
#define KHYVE_SNAP_RAM_LIVE_H

#include <stdint.h>

#include "guest_mem.h"
#include "snap.h"
#include "snap_ram.h"

/* _commit, _pair_commit and snap_ram_save() flags */
#define SNAP_RAM_FSYNC 0x1 /* fsync the file(s) and the directory */

struct snap_ram_live;
/*
 * A temporary file beside @path, of the full RAM size; with @save_id
 * (NULL: none, a bare 1.0 RAM file) it ends in the trailer carrying it.
 */
int snap_ram_live_open(const struct guest_mem *m, const char *path,
		       const uint8_t *save_id, struct snap_ram_live **lv);
int snap_ram_live_copy(struct snap_ram_live *lv, const uint64_t *dirty,
		       const struct snap_ram_progress *pg);
/* fdatasync what is written so far (so the commit's fsync is short). */
int snap_ram_live_flush(struct snap_ram_live *lv);
/* Bytes of page data written so far (rewrites counted again). */
uint64_t snap_ram_live_written(const struct snap_ram_live *lv);
/* Bytes of whole chunks hashed so far (a chunk with one dirty page is
 * hashed again in full). */
uint64_t snap_ram_live_hashed(const struct snap_ram_live *lv);
/*
 * What _commit will report, without committing (hashes copied): a live
 * checkpoint writes the state file with it while the guest is paused and
 * commits both files once it runs again. The RAM must not change in
 * between (no more _copy).
 */
int snap_ram_live_info(const struct snap_ram_live *lv,
		       struct snap_ram_info *info);
int snap_ram_live_commit(struct snap_ram_live *lv, unsigned flags,
			 struct snap_ram_info *info);
void snap_ram_live_abort(struct snap_ram_live *lv);
/*
 * Commit a RAM file (written with a save id, content final) and the state
 * file naming it (@w: every section written) as one pair: fsync both
 * (SNAP_RAM_FSYNC), rename the RAM file into place, then the state file.
 * The previous RAM file keeps a temporary second name until the state
 * file is in place and goes back if that rename fails, so on any error
 * the previous pair is left exactly as it was and no temporary file
 * remains. Frees @lv and @w whatever the outcome; @err says why.
 */
int snap_ram_pair_commit(struct snap_ram_live *lv, struct snap_writer *w,
			 unsigned flags, struct err *err);

/*
 * Write @m's RAM to @path at once (temporary name + rename), no save id,
 * reporting progress to @pg (NULL: none). Fills @info's sizes and
 * hashes; info->file is set to @path's last component.
 */
int snap_ram_save(const struct guest_mem *m, const char *path, unsigned flags,
		  struct snap_ram_info *info,
		  const struct snap_ram_progress *pg);

#endif
