/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Seccomp filters per thread role (docs/security.md, "System calls"):
 * each thread of a role calls confine_seccomp_enter() once, at its start
 * (the main thread once the vCPUs run), and from then on may make only
 * the system calls its role needs - ioctl only with the request numbers
 * khyve issues after set-up. Threads a filtered thread creates inherit its
 * filter (a checkpoint's copy threads run under the control role's).
 *
 * --seccomp=kill (the default: a forbidden call kills the process, after
 * one line naming the call and the thread's role on stderr), log
 * (forbidden calls are allowed and logged by the kernel) or off.
 */
#ifndef KHYVE_CONFINE_SECCOMP_H
#define KHYVE_CONFINE_SECCOMP_H

#include <stdio.h>

#include "err.h"

enum confine_role {
	CONFINE_ROLE_MAIN,
	CONFINE_ROLE_VCPU,
	CONFINE_ROLE_IOTHREAD,
	CONFINE_ROLE_BLK_WORKER,
	CONFINE_ROLE_CONTROL,
	CONFINE_NROLES,
};

enum confine_seccomp_mode {
	CONFINE_SECCOMP_OFF,
	CONFINE_SECCOMP_LOG,
	CONFINE_SECCOMP_KILL,
};

/* "off", "log", "kill" -> mode; -EINVAL otherwise. */
int confine_seccomp_parse(const char *s, enum confine_seccomp_mode *mode);
/*
 * Set the mode for every later confine_seccomp_enter() (main, at start;
 * nothing is installed yet). With log or kill, checks that every role's
 * filter builds and installs the SIGSYS handler.
 */
int confine_seccomp_setup(enum confine_seccomp_mode mode, struct err *e);
/*
 * Install @role's filter on the calling thread (nothing when off, or if
 * the thread has a role already: the API server's thread calls it at
 * every request). A failure is logged and the thread goes on unfiltered.
 */
void confine_seccomp_enter(enum confine_role role);
/* Role name and how many system calls it allows (docs, tests). */
const char *confine_role_name(enum confine_role role);
unsigned confine_role_nsyscalls(enum confine_role role);
/* How many ioctl request numbers @role may issue. */
unsigned confine_role_nioctls(enum confine_role role);
/* Print each role's allowed system calls, one role a line. */
void confine_seccomp_list(FILE *out);

#endif
