/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Checkpoint, suspend and restore of a whole VM (format: snap/, spec:
 * docs/snapshot-format.md).
 */
#ifndef KHYVE_VM_SNAPSHOT_H
#define KHYVE_VM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "err.h"

struct snap_desc;
struct vm;
struct vm_config;

/* The VM-wide KVM state section (for the offline golden snapshot check). */
extern const struct snap_desc kvm_vm_snap;

/*
 * Pause, capture everything into o->file (+ .ram), resume (checkpoint) or
 * stop with KHYVE_EXIT_SUSPENDED (o->suspend), and say how it went in
 * @res. A failed save leaves the guest running and any earlier snapshot
 * at that path intact.
 */
int vm_snapshot_save(struct vm *vm, const struct checkpoint_opts *o,
		     struct checkpoint_result *res, struct err *err);
/* Load the machine state from o->file into a VM created from its config. */
int vm_snapshot_restore(struct vm *vm, const struct restore_opts *o,
			struct err *err);
/* Read just the embedded configuration (before the VM exists). */
int vm_snapshot_read_config(const char *path, struct vm_config *cfg,
			    struct err *err);
/*
 * Everything a restore checks without a VM, before any host binding named
 * in the snapshot is opened: the whole state file (every section through
 * this khyve's descriptions, none left over), the host, the RAM size
 * against @cfg, and the RAM file (a bare name beside @path, a regular
 * file of the right size carrying the state file's save id).
 */
int vm_snapshot_preflight(const char *path, const struct vm_config *cfg,
			  struct err *err);
/* SIGIO: the RAM file a mapped restore maps is being written (lease). */
void vm_snapshot_ram_file_event(struct vm *vm);
/* Close the mapped RAM file (vm_destroy, after guest RAM is unmapped). */
void vm_snapshot_release(struct vm *vm);

/*
 * A migration holds the VM for its whole run as a save does: a snapshot
 * asked for meanwhile (control socket or Firecracker API) is refused
 * with -EBUSY naming the migration, and a migration during a save names
 * the save. _begin: 0 or -EBUSY; _end after a successful _begin.
 */
int vm_snapshot_migration_begin(struct vm *vm, struct err *err);
void vm_snapshot_migration_end(struct vm *vm);

/*
 * Migration (src/migrate.c): the dirty tracking of a live checkpoint,
 * round by round. _start turns KVM's dirty log and khyve's own bitmap on
 * (-errno naming why not); _collect ORs the pages written since the last
 * call into @bm (flat RAM pages, @words long) and counts it in *@n.
 */
int vm_snapshot_dirty_start(struct vm *vm, struct err *err);
int vm_snapshot_dirty_collect(struct vm *vm, uint64_t *bm, uint64_t words,
			      uint64_t *n);
void vm_snapshot_dirty_stop(struct vm *vm);
/*
 * The paused VM's state file (config, KVM, vCPUs, devices; no "ram"
 * section: a migration sends RAM as pages) in memory, to be freed.
 */
int vm_snapshot_state_mem(struct vm *vm, uint8_t **data, size_t *len,
			  struct err *err);
/*
 * Load such a state file into a VM whose RAM is already in place, then
 * let the devices run: every section checked before KVM sees any.
 */
int vm_snapshot_load_state(struct vm *vm, const char *name, const void *data,
			   size_t len, struct err *err);

#endif
