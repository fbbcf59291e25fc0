/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Confinement of the khyve process (docs/security.md, "Confinement"): what
 * it inherits, what it may become, what a crash may leave behind.
 *
 * main calls confine_start() first thing after the command line is parsed
 * (nothing opened yet): it closes inherited descriptors (but one handed
 * over on purpose), sets no-new-privs,
 * the resource limits and - unless --allow-core-dump - makes the process
 * non-dumpable, so no core file ever holds guest memory. It resolves
 * --user/--group while /etc is still reachable. Once every host resource
 * is open (/dev/kvm, images, TAPs, console, control socket) and before a
 * vCPU runs, confine_drop() enters --chroot and drops to --user/--group.
 */
#ifndef KHYVE_CONFINE_H
#define KHYVE_CONFINE_H

#include <stdbool.h>
#include <sys/types.h>

#include "err.h"

#define CONFINE_NAME_MAX 64
#define CONFINE_PATH_MAX 256
/* RLIMIT_NOFILE set at start (or the hard limit, if lower). */
#define CONFINE_NOFILE 4096

/* The command line's part (host-side: never saved in a snapshot). */
struct confine_opts {
	char user[CONFINE_NAME_MAX];   /* --user: "" keeps the starting user */
	char group[CONFINE_NAME_MAX];  /* --group: "" is the user's own */
	char chroot[CONFINE_PATH_MAX]; /* --chroot: "" none */
	bool allow_core_dump;	       /* --allow-core-dump */
	char seccomp[8]; /* --seccomp: "" is $KHYVE_SECCOMP, else kill */
};

/* What confine_start() resolved for confine_drop(), and the options. */
struct confine {
	struct confine_opts o;
	bool drop;
	uid_t uid;
	gid_t gid;
};

/*
 * @keep_fd: the one descriptor the command line hands over on purpose
 * (--incoming fd:N), or -1. Any new option that takes an inherited
 * descriptor must be added to main's inherited_fd().
 */
int confine_start(const struct confine_opts *o, int keep_fd, struct confine *c,
		  struct err *e);
int confine_drop(const struct confine *c, struct err *e);
/* Close every descriptor from 3 up but @keep (-1: none). */
int confine_close_inherited(int keep, struct err *e);

#endif
