/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Incremental snapshot chains (format 1.2, docs/snapshot-format.md,
 * "Incremental snapshots"). An increment is an ordinary pair whose state
 * file has a required "parent" section: the parent's save id, the
 * XXH3-64 of the parent's whole state file, the parent's bare file name
 * (beside it) and a bitmap of the pages its RAM file holds. Its RAM file
 * has the usual layout and trailer, but only those pages count (a held
 * page that is zero is a hole, like any zero page); every other page is
 * the parent's. The "ram" section's chunk hashes are those of the guest
 * RAM the whole chain gives, so the tip's hashes describe the guest.
 *
 *   snap_chain_open(tip, &c, &err);     every link read and checked
 *   snap_chain_load_eager(m, &c, ...);  base, then each increment
 *     or snap_chain_map(m, &c, ...);    base mapped, increments overlaid
 *   snap_chain_verify(&c, out, &err);   every link's chunk hashes
 *   snap_chain_merge(tip, out, ...);    one full snapshot
 *   snap_chain_close(&c);
 */
#ifndef KHYVE_SNAP_CHAIN_H
#define KHYVE_SNAP_CHAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "guest_mem.h"
#include "snap.h"
#include "snap_ram.h"

#define SNAP_CHAIN_SECTION "parent"
#define SNAP_CHAIN_VERSION 1
/* Links in a chain, base included: bounds the work a hostile chain makes. */
#define SNAP_CHAIN_MAX 64
/*
 * A mapped restore of a chain maps every run of pages an increment holds
 * over the base's mapping; beyond this many runs it copies instead (see
 * docs/snapshot-format.md: each run is a mapping, and a process has
 * vm.max_map_count, 65530 by default, of them).
 */
#define SNAP_CHAIN_MAP_MAX 8192

/* The "parent" section of an increment. */
struct snap_chain_parent {
	uint8_t id[SNAP_SAVE_ID_LEN];	  /* the parent's save id */
	uint64_t state_hash;		  /* XXH3-64 of its whole state file */
	uint32_t depth;			  /* links below this one (>= 1) */
	char file[SNAP_RAM_MAX_NAME + 1]; /* bare name, beside this file */
	uint64_t npages;		  /* RAM size / 4096 */
	uint64_t held;			  /* pages set in @pages */
	uint64_t *pages; /* bit i: this RAM file holds page i (owned) */
};

void snap_chain_parent_free(struct snap_chain_parent *p);
int snap_chain_write_section(struct snap_writer *w,
			     const struct snap_chain_parent *p);
/* -ENOENT (no message) when @r has no parent section: a full snapshot. */
int snap_chain_read_section(struct snap_reader *r, struct snap_chain_parent *p,
			    struct err *err);
int snap_chain_decode(const void *data, size_t len, uint64_t ram_size,
		      struct snap_chain_parent *p, const char *what,
		      struct err *err);

/*
 * An increment's chunk hashes: a chunk without a page of @pages was never
 * hashed by its copy passes and is the parent's (@parent_hashes).
 */
void snap_chain_keep_hashes(struct snap_ram_info *ram,
			    const uint64_t *parent_hashes,
			    const uint64_t *pages);

/* XXH3-64 of the whole file at @path (a regular file, not followed). */
int snap_state_hash(const char *path, uint64_t *hash, struct err *err);

struct snap_chain_link {
	char path[4096];     /* its state file */
	char ram_path[4096]; /* its RAM file */
	struct snap_ram_info ram;
	struct snap_chain_parent par; /* pages == NULL for the base */
	uint64_t state_hash;
	struct snap_header_info hdr;
};

/* l[0] is the base (a full snapshot), l[n - 1] the tip. */
struct snap_chain {
	unsigned n;
	struct snap_chain_link *l;
};

/*
 * Read the snapshot at @tip and every parent down to a full snapshot,
 * checking each link before anything is used: state files valid, each
 * parent where its child says (a bare name beside it), with the save id
 * and state file hash the child recorded, the same RAM size, depths
 * counting down, at most SNAP_CHAIN_MAX links, and every RAM file of its
 * pair (size and save id). A full snapshot is a chain of one.
 */
int snap_chain_open(const char *tip, struct snap_chain *c, struct err *err);
void snap_chain_close(struct snap_chain *c);

/*
 * Guest RAM @m (fresh, zero) from the chain: the base read eagerly, then
 * each increment's pages over it, oldest first. Chunk hashes are not
 * checked here (the caller checks the tip's: snap_chain_check_hashes).
 */
int snap_chain_load_eager(const struct guest_mem *m, const struct snap_chain *c,
			  const struct snap_ram_progress *pg, struct err *err);
/* @m's RAM against the tip's chunk hashes; -EBADMSG naming the chunk. */
int snap_chain_check_hashes(const struct guest_mem *m,
			    const struct snap_chain *c, struct err *err);
/*
 * Map the base over @m (MAP_PRIVATE, its fd in *@base_fd) and each
 * increment's runs of held pages over it. -E2BIG, before anything is
 * mapped, when that takes more than SNAP_CHAIN_MAP_MAX mappings (*@runs
 * says how many): the caller copies instead.
 */
int snap_chain_map(const struct guest_mem *m, const struct snap_chain *c,
		   int *base_fd, uint64_t *runs, struct err *err);
/* Mappings snap_chain_map() would make. */
uint64_t snap_chain_map_runs(const struct snap_chain *c);

/*
 * Every link's RAM against its own chunk hashes (the chain's RAM up to
 * that link), one line per link on @out; -EBADMSG naming link and chunk.
 */
int snap_chain_verify(const struct snap_chain *c, FILE *out, struct err *err);

/*
 * A scratch guest RAM of @size bytes for a tool (merge, convert):
 * anonymous, its untouched pages cost nothing and read as zero.
 */
int snap_scratch_mem(struct guest_mem *m, uint64_t size, struct err *err);
void snap_scratch_free(struct guest_mem *m);

/*
 * Flatten the chain ending at @tip into a full snapshot at @out (state
 * file and @out.ram, committed as a pair): its RAM file is byte for byte
 * the one a full checkpoint at the tip's point writes (its trailer has
 * the new save id). @out may be the tip itself, not another link.
 */
int snap_chain_merge(const char *tip, const char *out, bool fsync,
		     struct err *err);

#endif
