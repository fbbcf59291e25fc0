/* SPDX-License-Identifier: BSD-2-Clause */
#include "snap_fault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	int err; /* what the step fails with, as the real failure would */
} steps[SNAP_FAULT_NSTEPS] = {
	[SNAP_FAULT_RAM_WRITE] = {"ram-write", -ENOSPC},
	[SNAP_FAULT_RAM_COMMIT] = {"ram-commit", -EIO},
	[SNAP_FAULT_STATE_WRITE] = {"state-write", -ENOSPC},
	[SNAP_FAULT_STATE_COMMIT] = {"state-commit", -EIO},
	[SNAP_FAULT_DEVICE_SAVE] = {"device-save", -ERANGE},
	[SNAP_FAULT_ROLLBACK] = {"rollback", -EIO},
};

/* Written before any save runs; the copy threads only read them. */
static int armed;	 /* enum snap_fault_step */
static unsigned at_save; /* which save fails */
static int and_later;	 /* ... and every one after it */
static unsigned saves;	 /* saves begun */

void snap_fault_arm(enum snap_fault_step step, unsigned nth)
{
	snap_fault_arm_from(step, nth, false);
}

void snap_fault_arm_from(enum snap_fault_step step, unsigned nth, bool later)
{
	__atomic_store_n(&saves, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&and_later, later, __ATOMIC_RELAXED);
	__atomic_store_n(&at_save, nth ? nth : 1, __ATOMIC_RELAXED);
	__atomic_store_n(&armed, (int)step, __ATOMIC_RELEASE);
}

const char *snap_fault_name(enum snap_fault_step step)
{
	return step > SNAP_FAULT_NONE && step < SNAP_FAULT_NSTEPS
		       ? steps[step].name
		       : "none";
}

int snap_fault_arm_spec(const char *spec, struct err *e)
{
	const char *at;
	size_t len;
	unsigned long n = 1;
	bool later = false;

	if (!spec || !*spec) {
		snap_fault_arm(SNAP_FAULT_NONE, 1);
		return 0;
	}
	at = strchr(spec, '@');
	len = at ? (size_t)(at - spec) : strlen(spec);
	if (at) {
		char *end;

		errno = 0;
		n = strtoul(at + 1, &end, 10);
		later = *end == '+';
		if (errno || end[later] || end == at + 1 || n < 1 ||
		    n > 1000000)
			goto bad;
	}
	for (int s = SNAP_FAULT_NONE + 1; s < SNAP_FAULT_NSTEPS; s++)
		if (strlen(steps[s].name) == len &&
		    !strncmp(spec, steps[s].name, len)) {
			snap_fault_arm_from((enum snap_fault_step)s,
					    (unsigned)n, later);
			return 0;
		}
bad:
	return err_set(e, -EINVAL,
		       "'%s': expected STEP[@N[+]] with STEP one of ram-write, "
		       "ram-commit, state-write, state-commit, device-save, "
		       "rollback",
		       spec);
}

void snap_fault_begin_save(void)
{
	if (__atomic_load_n(&armed, __ATOMIC_ACQUIRE))
		__atomic_add_fetch(&saves, 1, __ATOMIC_RELAXED);
}

int snap_fault(enum snap_fault_step step)
{
	int a = __atomic_load_n(&armed, __ATOMIC_ACQUIRE);
	unsigned n, want;

	/* "rollback" fails the state commit too: there is nothing to roll
	 * back otherwise. */
	if (a == SNAP_FAULT_ROLLBACK && step == SNAP_FAULT_STATE_COMMIT)
		a = SNAP_FAULT_STATE_COMMIT;
	if (!a || a != (int)step)
		return 0;
	n = __atomic_load_n(&saves, __ATOMIC_RELAXED);
	want = __atomic_load_n(&at_save, __ATOMIC_RELAXED);
	if (n != want &&
	    !(n > want && __atomic_load_n(&and_later, __ATOMIC_RELAXED)))
		return 0;
	return steps[step].err;
}
