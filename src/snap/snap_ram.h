/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest RAM file: the flat guest RAM (every region at its .offset) stored
 * at the same offsets in a sparse file beside the state file. All-zero
 * pages are holes. Per-chunk XXH3-64 hashes go into the state file's
 * "ram" blob section so the pair can be verified offline.
 *
 * Save (a pair: docs/snapshot-format.md, "Integrity and atomicity"):
 *          snap_save_id_new(id);
 *          snap_ram_live_open_id(m, "STATE.ram", id, &lv);
 *          snap_ram_live_copy(lv, NULL, pg); snap_ram_live_info(lv, &info);
 *          snap_writer_open_id(&w, "STATE", &host, id);
 *          snap_ram_write_section(w, &info); ... (every section)
 *          snap_ram_pair_commit(lv, w, SNAP_RAM_FSYNC, &err);
 * Restore: snap_ram_read_section(r, &info, &err);   (id from the header)
 *          snap_ram_resolve(state_path, info.file, path, sizeof(path));
 *          snap_ram_map_pair(m, path, &info, NULL, &err);
 *                               or snap_ram_load_eager_pair(...)
 *          snap_ram_info_free(&info);
 * snap_ram_save() and friends write a lone RAM file without a save id.
 */
#ifndef KHYVE_SNAP_RAM_H
#define KHYVE_SNAP_RAM_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"
#include "snap.h"

#define SNAP_RAM_CHUNK_SIZE (2ULL * 1024 * 1024)
#define SNAP_RAM_SECTION    "ram" /* blob section name in the state file */
#define SNAP_RAM_VERSION    1
#define SNAP_RAM_MAX_NAME   255
/* Bytes after the RAM in a RAM file with a save id (format 1.1). */
#define SNAP_RAM_TRAILER    64

/* snap_ram_save() flags */
#define SNAP_RAM_FSYNC 0x1 /* fsync the file and its directory */

struct snap_ram_info {
	char file[SNAP_RAM_MAX_NAME + 1]; /* as recorded; relative names are
					     against the state file's dir */
	uint64_t ram_size;
	uint64_t chunk_size;
	uint32_t nchunks;
	uint64_t *hashes; /* nchunks XXH3-64 values, owned (see _free) */
	/* The save id the RAM file must carry (from the state file's
	 * header); without one the file is the bare RAM (1.0). */
	uint8_t save_id[SNAP_SAVE_ID_LEN];
	bool has_id;
};

/*
 * Progress of a long save or eager load, called on the caller's thread
 * after each chunk with bytes of guest RAM done so far and the RAM size.
 */
struct snap_ram_progress {
	void (*fn)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

/*
 * Write @m's RAM to @path (temporary name + rename). Fills @info's sizes
 * and hashes; info->file is set to @path's last component.
 */
int snap_ram_save(const struct guest_mem *m, const char *path, unsigned flags,
		  struct snap_ram_info *info);
/* The same to the default name "STATE.ram" beside @state_path. */
int snap_ram_save_beside(const struct guest_mem *m, const char *state_path,
			 unsigned flags, struct snap_ram_info *info);
/* The same, reporting progress to @pg (NULL: none). */
int snap_ram_save_beside_progress(const struct guest_mem *m,
				  const char *state_path, unsigned flags,
				  struct snap_ram_info *info,
				  const struct snap_ram_progress *pg);
void snap_ram_info_free(struct snap_ram_info *info);

/*
 * Incremental save, for a save while the guest runs (live pre-copy):
 *
 *   snap_ram_live_open(m, path, &lv);      temporary file, full size
 *   snap_ram_live_copy(lv, NULL, pg);      every page that may hold data
 *   snap_ram_live_copy(lv, dirty, NULL);   pages written since, again (as
 *                                          many rounds as wanted)
 *   ... guest paused, writers stopped ...
 *   snap_ram_live_copy(lv, dirty, NULL);   pages written since, a last time
 *   snap_ram_live_commit(lv, flags, info); fsync, rename, hashes (frees lv)
 *
 * @dirty is a bitmap of flat RAM pages (bit i = bytes [i*4096, +4096) of
 * the flat RAM). A chunk that holds a dirty page is re-hashed whole, so
 * the hashes always describe the file as committed. Pages that were
 * neither present nor swapped in an anonymous mapping are never read:
 * they are zero (see /proc/self/pagemap in snap_ram.c).
 */
struct snap_ram_live;
int snap_ram_live_open(const struct guest_mem *m, const char *path,
		       struct snap_ram_live **lv);
/* The same with a save id: the file gets the trailer carrying it. */
int snap_ram_live_open_id(const struct guest_mem *m, const char *path,
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
 * Commit a RAM file (written with snap_ram_live_open_id, content final)
 * and the state file naming it (@w: every section written) as one pair:
 * fsync both (SNAP_RAM_FSYNC), rename the RAM file into place, then the
 * state file. The previous RAM file keeps a temporary second name until
 * the state file is in place and goes back if that rename fails, so on
 * any error the previous pair is left exactly as it was and no temporary
 * file remains. Frees @lv and @w whatever the outcome; @err says why.
 */
int snap_ram_pair_commit(struct snap_ram_live *lv, struct snap_writer *w,
			 unsigned flags, struct snap_err *err);

/* "STATE.ram" for @state_path. */
int snap_ram_default_path(const char *state_path, char *out, size_t outlen);
/* A RAM file name a state file may record: bare, not "." or "..". */
bool snap_ram_name_ok(const char *name);
/*
 * Path of the RAM file named @recorded in the state file at @state_path:
 * beside it. -EINVAL for a name that is not bare (snap_ram_name_ok).
 */
int snap_ram_resolve(const char *state_path, const char *recorded, char *out,
		     size_t outlen);

/*
 * Map @path MAP_PRIVATE|MAP_FIXED over m->base (m->ram_size bytes): pages
 * load on first touch and clones share the page cache. The file must be
 * exactly m->ram_size bytes (no save id).
 */
int snap_ram_map(const struct guest_mem *m, const char *path,
		 struct snap_err *err);
/*
 * The same for the RAM file of a pair: with info->has_id the file must
 * carry that save id in its trailer. With @keep_fd the file stays open
 * there (the caller watches it, see vm_snapshot.c), else it is closed.
 */
int snap_ram_map_pair(const struct guest_mem *m, const char *path,
		      const struct snap_ram_info *info, int *keep_fd,
		      struct snap_err *err);
/*
 * What snap_ram_map_pair checks before it maps, alone: a regular file
 * (never a symlink, FIFO or device) of the right size with the right save
 * id. Reads 64 bytes, whatever the RAM size.
 */
int snap_ram_check_file(const char *path, const struct snap_ram_info *info,
			struct snap_err *err);
/* Read the whole file into @m's RAM now (holes become zero pages). */
int snap_ram_load_eager(const struct guest_mem *m, const char *path,
			struct snap_err *err);
int snap_ram_load_eager_progress(const struct guest_mem *m, const char *path,
				 struct snap_err *err,
				 const struct snap_ram_progress *pg);
int snap_ram_load_eager_pair(const struct guest_mem *m, const char *path,
			     const struct snap_ram_info *info,
			     struct snap_err *err,
			     const struct snap_ram_progress *pg);
/*
 * Recompute the chunk hashes of @path (and check the save id when @info
 * has one); -EBADMSG naming the first bad chunk.
 */
int snap_ram_verify(const char *path, const struct snap_ram_info *info,
		    struct snap_err *err);

/* The "ram" blob section: name, sizes and the hash array. */
int snap_ram_write_section(struct snap_writer *w,
			   const struct snap_ram_info *info);
int snap_ram_read_section(struct snap_reader *r, struct snap_ram_info *info,
			  struct snap_err *err);
/* Decode a "ram" blob payload (exposed for tools and fuzzing). */
int snap_ram_decode(const void *data, size_t len, struct snap_ram_info *info,
		    const char *what, struct snap_err *err);

#endif
