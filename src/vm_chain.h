/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What a running guest needs for incremental snapshots (snap_chain.h is
 * the format): the pages it changed since its previous snapshot, and
 * which snapshot that is.
 *
 * From its first snapshot (saved, or restored from) on, a guest's writes
 * stay tracked: KVM's dirty log on the memory slots and khyve's own
 * bitmap (guest_mem_dirty_*), the two trackers of the live pre-copy
 * (vm_snapshot.c), which no longer stop after a save. Every collect of
 * them, by a save's pre-copy or by an incremental save in a pause, is
 * also ORed into @since here; a successful save (or a restore) makes its
 * snapshot the base and empties @since, with the guest paused at that
 * point, so @since is always "changed since the base's pause".
 */
#ifndef KHYVE_VM_CHAIN_H
#define KHYVE_VM_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "err.h"
#include "snap_chain.h"

struct vm;
struct snap_reader;

/* Tracking since a base: is it on? (the trackers then stay on) */
bool vm_chain_tracking(const struct vm *vm);
/* The trackers were just turned on (vm_snapshot.c did it). */
int vm_chain_track_started(struct vm *vm);
/* Pages a collect of the trackers found: ORed into @since. */
void vm_chain_note(struct vm *vm, const uint64_t *bm);
/* Pages changed since the base (NULL when not tracking). */
const uint64_t *vm_chain_since(const struct vm *vm);
/*
 * The snapshot at @file (save id @id, state file hash @hash) is the new
 * base; @since empties. @hash_known false: read the file for its hash.
 */
void vm_chain_set_base(struct vm *vm, const char *file, const uint8_t *id,
		       bool hash_known, uint64_t hash);
void vm_chain_free(struct vm *vm);

/* An incremental save, from its checks to its "parent" section. */
struct vm_chain_save {
	struct snap_chain_parent par;
	uint64_t *hashes; /* the parent's chunk hashes */
	uint32_t nchunks;
};

/*
 * Before anything is written: this guest has a base, @file goes beside
 * it, neither @file nor its RAM file @ram is one of its chain's links, and
 * the chain is intact (every link checked, the base is what this guest
 * saved or restored).
 */
int vm_chain_save_prepare(struct vm *vm, const char *file, const char *ram,
			  struct vm_chain_save *cs, struct err *err);
/*
 * In the pause, every page of @since copied: the increment holds @since;
 * chunks without a held page keep the parent's hash in @ram.
 */
int vm_chain_save_finish(struct vm *vm, struct vm_chain_save *cs,
			 struct snap_ram_info *ram);
void vm_chain_save_free(struct vm_chain_save *cs);

/*
 * Restore: guest RAM from the chain ending at @o->file, whose state file
 * @r is (its "parent" section is read here). Mapped (the base's fd in
 * *@base_fd, its path in @base_ram, to watch) or eager, with the RAM then
 * checked against the tip's chunk hashes; a mapped restore that would
 * need too many mappings is eager, and says so in the log.
 */
int vm_chain_restore_ram(struct vm *vm, const struct restore_opts *o,
			 struct snap_reader *r, int *base_fd, char *base_ram,
			 size_t base_ram_len, struct err *err);
/* The files a mapped chain restore maps, still there in full? */
int vm_chain_check_files(struct vm *vm, struct err *err);

#endif
