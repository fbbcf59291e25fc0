/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Failure injection for the snapshot save path, for tests: a save must
 * either commit a matching state/RAM pair or leave the previous pair as it
 * was, whichever step fails (docs/snapshot-format.md, "Integrity and
 * atomicity"). Disarmed (the default) it costs one relaxed load per check.
 *
 * khyve arms it from $KHYVE_FAULT_INJECT=STEP[@N[+]] (the Nth save of the
 * process fails at STEP, default 1; "+": and every later one; khyve logs
 * a warning when armed); unit tests call snap_fault_arm().
 */
#ifndef KHYVE_SNAP_FAULT_H
#define KHYVE_SNAP_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum snap_fault_step {
	SNAP_FAULT_NONE = 0,
	SNAP_FAULT_RAM_WRITE,	 /* "ram-write": a write of RAM data: ENOSPC */
	SNAP_FAULT_RAM_COMMIT,	 /* "ram-commit": the RAM file's rename: EIO */
	SNAP_FAULT_STATE_WRITE,	 /* "state-write": a state file write: ENOSPC */
	SNAP_FAULT_STATE_COMMIT, /* "state-commit": the state file's rename,
				    after the RAM file's: EIO */
	SNAP_FAULT_DEVICE_SAVE,	 /* "device-save": a device refuses: ERANGE */
	SNAP_FAULT_ROLLBACK,	 /* "rollback": with state-commit's failure,
				    putting the old RAM file back fails too */
	SNAP_FAULT_NSTEPS,
};

/* Arm @step for the @nth save from now on (1: the next one). */
void snap_fault_arm(enum snap_fault_step step, unsigned nth);
/* The same; @later: and every save after the @nth. */
void snap_fault_arm_from(enum snap_fault_step step, unsigned nth, bool later);
/*
 * "STEP", "STEP@N" or "STEP@N+" (N >= 1). 0, or -EINVAL with the known
 * steps in @e. NULL or "" disarms.
 */
int snap_fault_arm_spec(const char *spec, struct err *e);
/* A save begins: counts saves for the @N. */
void snap_fault_begin_save(void);
/* 0, or the step's -errno when it is armed for the current save. */
int snap_fault(enum snap_fault_step step);
const char *snap_fault_name(enum snap_fault_step step);

#endif
