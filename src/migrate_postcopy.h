/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Post-copy migration (docs/control-protocol.md "migrate", the records in
 * docs/snapshot-format.md "Post-copy").
 *
 * The source pauses the guest, sends POSTCOPY (the pages the destination
 * lacks), STATE and END, and from then on answers the destination's page
 * requests; after the destination's "ready" it sends GO, and the guest
 * runs there at once. The source then pushes every missing page in
 * order, a requested one first, ends with POSTCOPY_END and exits with
 * KHYVE_EXIT_MIGRATED once the destination says "complete".
 *
 * The destination drops the pages it holds stale copies of, registers
 * guest RAM with userfaultfd (missing pages) and runs a thread that owns
 * the stream: a fault on a missing page (from a vCPU in KVM, KVM's own
 * accesses, or a device thread) becomes a PAGE_REQ; page records are
 * placed with UFFDIO_COPY, waking the faulting threads; a fault on a page
 * the source never had to send (it was zero) gets a zero page.
 *
 * After GO the guest's memory is split between the hosts: if the stream
 * breaks, the destination cannot go on and exits with
 * KHYVE_EXIT_POSTCOPY_LOST; the source keeps its paused copy (complete as
 * at the switch-over) and refuses to resume it.
 */
#ifndef KHYVE_MIGRATE_POSTCOPY_H
#define KHYVE_MIGRATE_POSTCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "snap_stream.h"

struct vm;

/* ---- the source ---- */

struct postcopy_src {
	struct vm *vm;
	struct snap_stream *s;
	struct snap_stream_ram_stats *st;
	uint64_t *missing; /* pages not yet sent (cleared as they go) */
	uint64_t npages, left, total;
	uint64_t on_demand; /* pages sent because the destination asked */
	uint64_t cursor;    /* the push's position */
	void (*progress)(uint64_t done, uint64_t total);
	struct err *err;
};

/*
 * Paused, POSTCOPY, STATE and END sent: serve requests until the
 * destination says "ready", then send GO (0; *@tgo when). An error before
 * GO leaves the guest this side's to resume.
 */
int postcopy_src_switch(struct postcopy_src *p, uint64_t *tgo);
/* After GO: push the rest, requests first, until "complete". */
int postcopy_src_finish(struct postcopy_src *p);

/* ---- the destination ---- */

struct postcopy_in;

/* Does this host serve page faults to a process (userfaultfd)? */
int postcopy_in_probe(struct err *err);
/*
 * The POSTCOPY record @p: stale copies of the missing pages dropped,
 * guest RAM registered for missing-page faults (none served yet).
 */
int postcopy_in_create(struct postcopy_in **out, struct vm *vm,
		       const char *addr, const uint8_t *p, size_t len,
		       struct err *err);
/* The thread started; it owns the stream @s from now on (@s reset). */
int postcopy_in_start(struct postcopy_in *pc, struct snap_stream *s,
		      struct err *err);
/*
 * "ready" (@ret 0) or the error @why told to the source; then wait for
 * GO: 0 when the guest may run, else why not.
 */
int postcopy_in_ready(struct postcopy_in *pc, int ret, const struct err *why,
		      struct err *err);
/* Still pulling pages? (*@left, *@total: pages.) NULL-safe. */
bool postcopy_in_busy(struct postcopy_in *pc, uint64_t *left, uint64_t *total);
/* The thread stopped (the source told if pages were left), all freed. */
void postcopy_in_free(struct postcopy_in *pc);

#endif
