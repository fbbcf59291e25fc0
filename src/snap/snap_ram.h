/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest RAM file: the flat guest RAM (every region at its .offset) stored
 * at the same offsets in a sparse file beside the state file. All-zero
 * pages are holes. Per-chunk XXH3-64 hashes go into the state file's
 * "ram" blob section so the pair can be verified offline.
 *
 * This header is the file format: the "ram" section, the RAM file's name
 * and trailer, opening and verifying a RAM file. Writing one is
 * snap_ram_live.h, loading one into guest RAM snap_ram_restore.h.
 *
 * Save (a pair: docs/snapshot-format.md, "Integrity and atomicity"):
 *          snap_save_id_new(id);
 *          snap_ram_live_open(m, "STATE.ram", id, &lv);
 *          snap_ram_live_copy(lv, NULL, pg); snap_ram_live_info(lv, &info);
 *          snap_writer_open(&w, "STATE", &host, id);
 *          snap_ram_write_section(w, &info); ... (every section)
 *          snap_ram_pair_commit(lv, w, SNAP_RAM_FSYNC, &err);
 * Restore: snap_ram_read_section(r, &info, &err);   (id from the header)
 *          snap_ram_resolve(state_path, info.file, path, sizeof(path));
 *          snap_ram_map(m, path, &info, NULL, &err);
 *                               or snap_ram_load_eager(m, path, &info, ...)
 *          snap_ram_info_free(&info);
 * snap_ram_save() writes a lone RAM file without a save id.
 */
#ifndef KHYVE_SNAP_RAM_H
#define KHYVE_SNAP_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snap.h"

#define SNAP_RAM_CHUNK_SIZE (2ULL * 1024 * 1024)
#define SNAP_RAM_SECTION    "ram" /* blob section name in the state file */
#define SNAP_RAM_VERSION    1
#define SNAP_RAM_MAX_NAME   255
/* Bytes after the RAM in a RAM file with a save id (format 1.1). */
#define SNAP_RAM_TRAILER 64

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

void snap_ram_info_free(struct snap_ram_info *info);

/*
 * Progress of a long save or eager load, called on the caller's thread
 * after each chunk with bytes of guest RAM done so far and the RAM size.
 */
struct snap_ram_progress {
	void (*fn)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

/* Call @pg (NULL-able). */
static inline void snap_ram_report(const struct snap_ram_progress *pg,
				   uint64_t done, uint64_t total)
{
	if (pg && pg->fn)
		pg->fn(pg->opaque, done, total);
}

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

/* The trailer of a RAM file with save id @id for @ram_size bytes of RAM. */
void snap_ram_trailer_build(uint8_t t[SNAP_RAM_TRAILER], const uint8_t *id,
			    uint64_t ram_size);
/*
 * Open the RAM file at @path for reading: a regular file (never a
 * symlink, FIFO or device) of exactly @ram_size bytes, or, when @info
 * (NULL-able) has a save id, of @ram_size bytes plus a trailer carrying
 * that id. Reads 64 bytes, whatever the RAM size. The fd, or -errno.
 */
int snap_ram_open(const char *path, uint64_t ram_size,
		  const struct snap_ram_info *info, struct err *err);
/* snap_ram_open with @info's size, and close: the checks alone. */
int snap_ram_check_file(const char *path, const struct snap_ram_info *info,
			struct err *err);
/*
 * Recompute the chunk hashes of @path (and check the save id when @info
 * has one); -EBADMSG naming the first bad chunk.
 */
int snap_ram_verify(const char *path, const struct snap_ram_info *info,
		    struct err *err);

/* The "ram" blob section: name, sizes and the hash array. */
int snap_ram_write_section(struct snap_writer *w,
			   const struct snap_ram_info *info);
int snap_ram_read_section(struct snap_reader *r, struct snap_ram_info *info,
			  struct err *err);
/* Decode a "ram" blob payload (exposed for tools and fuzzing). */
int snap_ram_decode(const void *data, size_t len, struct snap_ram_info *info,
		    const char *what, struct err *err);

#endif
