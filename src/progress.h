/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A progress line on a terminal for long saves and restores: khyvectl
 * draws the checkpoint progress the VMM streams (docs/control-protocol.md),
 * khyve draws its own eager restore. Nothing is drawn unless the fd is a
 * terminal and the operation has already taken PROGRESS_DELAY_MS, so
 * short operations, pipes and files never see it.
 */
#ifndef KHYVE_PROGRESS_H
#define KHYVE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROGRESS_DELAY_MS 500 /* quiet before this: most saves are short */
#define PROGRESS_EVERY_MS 100 /* redraw at most this often */

struct progress {
	char what[96];	   /* "saving vm1.snap" */
	int fd;		   /* the terminal, -1: draw nothing */
	unsigned delay_ms; /* PROGRESS_DELAY_MS, or $KHYVE_PROGRESS_DELAY_MS */
	uint64_t t0_ns, last_ns;
	bool shown; /* a line is on the terminal (end erases it) */
};

/*
 * "WHAT: DONE/TOTAL MiB PCT% RATE MiB/s" in @buf (always terminated;
 * truncated to fit). @secs is the time so far (0: no rate yet); total 0
 * gives no percentage. Returns the length written.
 */
size_t progress_format(char *buf, size_t len, const char *what, uint64_t done,
		       uint64_t total, double secs);
/*
 * Start: draw on @fd only if it is a terminal. The delay can be set with
 * $KHYVE_PROGRESS_DELAY_MS (tests use 0).
 */
void progress_start(struct progress *p, int fd, const char *what);
/* Redraw if due (delay passed, not redrawn in the last 100 ms). */
void progress_update(struct progress *p, uint64_t done, uint64_t total);
/* Erase the line if one was drawn, so the next output starts clean. */
void progress_end(struct progress *p);

#endif
