/* SPDX-License-Identifier: BSD-2-Clause */
/* Process confinement: see confine.h and docs/security.md. */
#include "confine.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common.h"
#include "confine_seccomp.h"
#include "snap_ram_pages.h"

/* Close [lo, hi] (nothing if lo > hi); false if close_range failed. */
static bool close_from(unsigned lo, unsigned hi)
{
	return lo > hi || !close_range(lo, hi, 0);
}

int confine_close_inherited(int keep, struct err *e)
{
	DIR *d;
	struct dirent *de;

	if (keep < 3 ? close_from(3, ~0U)
		     : close_from(3, (unsigned)keep - 1) &&
			       close_from((unsigned)keep + 1, ~0U))
		return 0;
	/* No close_range (kernel before 5.9): walk what is open. */
	d = opendir("/proc/self/fd");
	if (!d)
		return err_sys(e, "cannot list /proc/self/fd");
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (fd > 2 && fd != keep && fd != dirfd(d))
			close(fd);
	}
	closedir(d);
	return 0;
}

/* Digits only (a numeric id)? */
static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* --user and --group to ids, while /etc/passwd and /etc/group are here. */
static int resolve_ids(const struct confine_opts *o, struct confine *c,
		       struct err *e)
{
	struct passwd *pw;
	struct group *gr;

	errno = 0;
	pw = all_digits(o->user) ? getpwuid((uid_t)atol(o->user))
				 : getpwnam(o->user);
	if (!pw && !all_digits(o->user))
		return err_set(e, -ENOENT, "--user %s: no such user", o->user);
	c->uid = pw ? pw->pw_uid : (uid_t)atol(o->user);
	if (!o->group[0] && !pw)
		return err_set(e, -EINVAL,
			       "--user %s: no such user in the password "
			       "database: give --group too",
			       o->user);
	c->gid = pw ? pw->pw_gid : 0;
	if (o->group[0]) {
		gr = all_digits(o->group) ? NULL : getgrnam(o->group);
		if (!gr && !all_digits(o->group))
			return err_set(e, -ENOENT, "--group %s: no such group",
				       o->group);
		c->gid = gr ? gr->gr_gid : (gid_t)atol(o->group);
	}
	c->drop = true;
	return 0;
}

/*
 * Descriptors: enough for 64 vCPUs and 32 devices with their queues'
 * eventfds, workers and snapshot files, and a hard ceiling to a leak.
 * Core size: 0 unless asked (the dumpable flag is what really stops a
 * core, a pipe in core_pattern ignores the limit).
 */
static int set_limits(const struct confine_opts *o, struct err *e)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) < 0)
		return err_sys(e, "getrlimit(RLIMIT_NOFILE)");
	r.rlim_cur = r.rlim_max = MIN(r.rlim_max, (rlim_t)CONFINE_NOFILE);
	if (setrlimit(RLIMIT_NOFILE, &r) < 0)
		return err_sys(e, "setrlimit(RLIMIT_NOFILE, %llu)",
			       (unsigned long long)r.rlim_cur);
	if (o->allow_core_dump)
		return 0;
	r.rlim_cur = r.rlim_max = 0;
	if (setrlimit(RLIMIT_CORE, &r) < 0)
		return err_sys(e, "setrlimit(RLIMIT_CORE, 0)");
	return 0;
}

/* --seccomp, or $KHYVE_SECCOMP, or kill (docs/security.md). */
static int seccomp_mode(const struct confine_opts *o, struct err *e)
{
	const char *s = o->seccomp[0] ? o->seccomp : getenv("KHYVE_SECCOMP");
	enum confine_seccomp_mode m = CONFINE_SECCOMP_KILL;

	if (s && *s && confine_seccomp_parse(s, &m))
		return err_set(e, -EINVAL, "%s %s: expected off, log or kill",
			       o->seccomp[0] ? "--seccomp" : "KHYVE_SECCOMP",
			       s);
	return confine_seccomp_setup(m, e);
}

int confine_start(const struct confine_opts *o, int keep_fd, struct confine *c,
		  struct err *e)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->o = *o;
	ret = confine_close_inherited(keep_fd, e);
	if (!ret && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		ret = err_sys(e, "prctl(PR_SET_NO_NEW_PRIVS)");
	if (!ret)
		ret = set_limits(o, e);
	/* Not dumpable: no core file, and no ptrace by the same user. */
	if (!ret && !o->allow_core_dump &&
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		ret = err_sys(e, "prctl(PR_SET_DUMPABLE, 0)");
	if (!ret && o->group[0] && !o->user[0])
		ret = err_set(e, -EINVAL, "--group needs --user");
	if (!ret && o->user[0])
		ret = resolve_ids(o, c, e);
	if (!ret)
		ret = seccomp_mode(o, e);
	/*
	 * After the drop our own /proc files are root's (not dumpable). If
	 * this fails, a save reads every page: slower, not wrong.
	 */
	if (!ret && (c->drop || o->chroot[0]))
		(void)snap_ram_pages_keep_pagemap();
	return ret;
}

static int enter_chroot(const char *dir, struct err *e)
{
	if (chroot(dir) < 0)
		return err_sys(e, "--chroot %s", dir);
	if (chdir("/") < 0)
		return err_sys(e, "--chroot %s: chdir /", dir);
	return 0;
}

int confine_drop(const struct confine *c, struct err *e)
{
	const struct confine_opts *o = &c->o;
	int ret = o->chroot[0] ? enter_chroot(o->chroot, e) : 0;

	if (ret || !c->drop)
		return ret;
	/* Groups first: once the uid is gone, so is the right to. */
	if (setgroups(1, &c->gid) < 0)
		return err_sys(e, "--user %s: setgroups", o->user);
	if (setresgid(c->gid, c->gid, c->gid) < 0)
		return err_sys(e, "--group %u: setresgid", (unsigned)c->gid);
	if (setresuid(c->uid, c->uid, c->uid) < 0)
		return err_sys(e, "--user %s: setresuid", o->user);
	/* No way back: a uid 0 left anywhere would undo the drop. */
	if (c->uid && (setresuid(0, 0, 0) == 0 || geteuid() != c->uid))
		return err_set(e, -EPERM, "--user %s: could regain root",
			       o->user);
	/* Changing uid made us non-dumpable; --allow-core-dump undoes it. */
	if (o->allow_core_dump && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		return err_sys(e, "prctl(PR_SET_DUMPABLE, 1)");
	return 0;
}
