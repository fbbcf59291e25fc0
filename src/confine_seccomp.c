/* SPDX-License-Identifier: BSD-2-Clause */
/* Seccomp filters per thread role: see confine_seccomp.h. */
#include "confine_seccomp.h"

#include <errno.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

/*
 * What every thread needs: memory, locks, time, signals (vCPU kicks, the
 * setxid broadcast glibc sends every thread when main drops to --user),
 * I/O on descriptors it was handed, and ioctl with the requests below.
 */
static const char *const base_calls[] = {
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"pwrite64",
	"preadv",
	"pwritev",
	"close",
	"futex",
	"rt_sigreturn",
	"rt_sigprocmask",
	"rt_sigaction",
	"sigaltstack",
	"clock_gettime",
	"clock_nanosleep",
	"nanosleep",
	"gettimeofday",
	"gettid",
	"getpid",
	"tgkill",
	"madvise",
	"mmap",
	"munmap",
	"mprotect",
	"mremap",
	"brk",
	"exit",
	"exit_group",
	"sched_yield",
	"getrandom",
	"restart_syscall",
	"set_robust_list",
	"rseq",
	"poll",
	"ppoll",
	"epoll_wait",
	"epoll_pwait",
	"epoll_ctl",
	"fstat",
	"newfstatat",
	"lseek",
	"fcntl",
	"dup",
	"eventfd2",
	"sched_getaffinity",
	"setresuid",
	"setresgid",
	"setgroups",
	"getuid",
	"geteuid",
	"getgid",
	"getegid",
	"fsync",
	"fdatasync",
	"sendto",
	"recvfrom",
	"sendmsg",
	"recvmsg",
	"ioctl",
	NULL,
};

/* The iothread: sockets of console back ends, TAP, discards, the disks'
 * io_uring (submitting and reaping; set up by main). */
static const char *const io_calls[] = {
	"accept4",    "shutdown",	"fallocate",
	"getsockopt", "io_uring_enter", NULL,
};

/*
 * Control and main: saving snapshots (files, directories, copy threads),
 * the control and API sockets, migration, console sockets, exit.
 */
static const char *const control_calls[] = {
	"openat",
	"open",
	"unlink",
	"unlinkat",
	"rename",
	"renameat",
	"renameat2",
	"link",
	"linkat",
	"mkdir",
	"mkdirat",
	"fchmod",
	"chmod",
	"ftruncate",
	"fallocate",
	"flock",
	"getdents64",
	"readlink",
	"readlinkat",
	"access",
	"faccessat",
	"faccessat2",
	"statfs",
	"fstatfs",
	"statx",
	"socket",
	"connect",
	"bind",
	"listen",
	"accept",
	"accept4",
	"getsockopt",
	"setsockopt",
	"getsockname",
	"getpeername",
	"shutdown",
	"clone",
	"clone3",
	"getcwd",
	"uname",
	"sysinfo",
	"prctl",
	"getrusage",
	"times",
	"pipe2",
	"dup2",
	"dup3",
	"sendfile",
	"splice",
	"copy_file_range",
	"fadvise64",
	"sync_file_range",
	"umask",
	"rt_sigtimedwait",
	"signalfd4",
	"timerfd_create",
	"timerfd_settime",
	"epoll_create1",
	"mincore",
	"sched_setaffinity",
	"getpriority",
	"setpriority",
	"sched_getparam",
	"sched_getscheduler",
	"set_tid_address",
	"fchown",
	"kill",
	/* Disks' io_uring: set up with the devices (the API's InstanceStart
	 * too), drained when they are destroyed. */
	"io_uring_setup",
	"io_uring_register",
	"io_uring_enter",
	NULL,
};

/*
 * ioctl requests after set-up: vCPU state (run, get/set for snapshots),
 * interrupts, ioeventfds and MSI routing (a guest enabling a device),
 * dirty log, clock, TAP offloads, the console's terminal. Not: creating
 * VMs or vCPUs, TUNSETIFF, TIOCSTI, anything else.
 */
static const unsigned long ioctl_reqs[] = {
	KVM_RUN,
	KVM_GET_REGS,
	KVM_SET_REGS,
	KVM_GET_SREGS,
	KVM_SET_SREGS,
	KVM_GET_MSRS,
	KVM_SET_MSRS,
	KVM_GET_FPU,
	KVM_SET_FPU,
	KVM_GET_LAPIC,
	KVM_SET_LAPIC,
	KVM_GET_XSAVE,
	KVM_SET_XSAVE,
	KVM_GET_XCRS,
	KVM_SET_XCRS,
	KVM_GET_VCPU_EVENTS,
	KVM_SET_VCPU_EVENTS,
	KVM_GET_DEBUGREGS,
	KVM_SET_DEBUGREGS,
	KVM_GET_MP_STATE,
	KVM_SET_MP_STATE,
	KVM_GET_CPUID2,
	KVM_TRANSLATE,
	KVM_IRQ_LINE,
	KVM_SIGNAL_MSI,
	KVM_IOEVENTFD,
	KVM_IRQFD,
	KVM_SET_GSI_ROUTING,
	KVM_GET_DIRTY_LOG,
	KVM_SET_USER_MEMORY_REGION,
	KVM_GET_CLOCK,
	KVM_SET_CLOCK,
	KVM_GET_IRQCHIP,
	KVM_SET_IRQCHIP,
	KVM_GET_PIT2,
	KVM_SET_PIT2,
	KVM_CHECK_EXTENSION,
	TUNSETOFFLOAD,
	TUNSETVNETHDRSZ,
	TCGETS,
	TCSETS,
	TCSETSW,
	TCSETSF,
	FIONREAD,
};

static const char *const role_names[CONFINE_NROLES] = {
	[CONFINE_ROLE_MAIN] = "main",
	[CONFINE_ROLE_VCPU] = "vcpu",
	[CONFINE_ROLE_IOTHREAD] = "iothread",
	[CONFINE_ROLE_BLK_WORKER] = "blk-worker",
	[CONFINE_ROLE_CONTROL] = "control",
};

static enum confine_seccomp_mode mode;
static __thread int my_role = -1;
#define NAMES_MAX 512
static char *names[NAMES_MAX]; /* resolved before any filter: no malloc in
				  the SIGSYS handler */

int confine_seccomp_parse(const char *s, enum confine_seccomp_mode *m)
{
	static const char *const modes[] = {"off", "log", "kill"};

	for (unsigned i = 0; i < ARRAY_SIZE(modes); i++)
		if (!strcmp(s, modes[i])) {
			*m = (enum confine_seccomp_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *confine_role_name(enum confine_role role)
{
	return role < CONFINE_NROLES ? role_names[role] : "?";
}

/* Allow the calls of @list in @ctx; count the new ones in *@n. */
static int add_calls(scmp_filter_ctx ctx, const char *const *list, unsigned *n)
{
	for (; *list; list++) {
		int nr = seccomp_syscall_resolve_name(*list), rc = 0;

		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		if (!strcmp(*list, "ioctl")) {
			for (unsigned i = 0; i < ARRAY_SIZE(ioctl_reqs) && !rc;
			     i++)
				rc = seccomp_rule_add(
					ctx, SCMP_ACT_ALLOW, nr, 1,
					SCMP_A1_32(SCMP_CMP_EQ,
						   (uint32_t)ioctl_reqs[i]));
		} else {
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		}
		if (rc == -EEXIST)
			continue; /* in an earlier list too */
		if (rc)
			return rc;
		(*n)++;
	}
	return 0;
}

/* @role's filter, forbidden calls trapped or logged per @m. */
static int build(enum confine_role role, enum confine_seccomp_mode m,
		 scmp_filter_ctx *out, unsigned *n)
{
	const char *const *extra = NULL;
	scmp_filter_ctx ctx;
	int rc;

	*n = 0;
	ctx = seccomp_init(m == CONFINE_SECCOMP_LOG ? SCMP_ACT_LOG
						    : SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	if (role == CONFINE_ROLE_IOTHREAD || role == CONFINE_ROLE_BLK_WORKER)
		extra = io_calls;
	else if (role == CONFINE_ROLE_CONTROL || role == CONFINE_ROLE_MAIN)
		extra = control_calls;
	rc = add_calls(ctx, base_calls, n);
	if (!rc && extra)
		rc = add_calls(ctx, extra, n);
	if (rc) {
		seccomp_release(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

/* Append @s at *@p (async-signal-safe), up to @end. */
static void put(char **p, const char *end, const char *s)
{
	while (*s && *p < end)
		*(*p)++ = *s++;
}

static void put_num(char **p, const char *end, long v)
{
	char d[24];
	int i = (int)sizeof(d) - 1;

	d[i] = 0;
	if (v < 0)
		v = -v;
	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	put(p, end, d + i);
}

/* A forbidden call in kill mode: say which, then die of SIGSYS. */
static void sigsys_handler(int sig, siginfo_t *si, void *uc)
{
	char buf[256], *p = buf;
	const char *end = buf + sizeof(buf) - 1;
	int nr = si->si_syscall;
	struct sigaction dfl = {.sa_handler = SIG_DFL};

	(void)uc;
	put(&p, end, "khyve: seccomp: the ");
	put(&p, end, my_role >= 0 ? role_names[my_role] : "?");
	put(&p, end, " thread made system call ");
	put(&p, end, nr >= 0 && nr < NAMES_MAX && names[nr] ? names[nr] : "?");
	put(&p, end, " (");
	put_num(&p, end, nr);
	put(&p, end, "), which its role is not allowed: killing khyve\n");
	if (write(STDERR_FILENO, buf, (size_t)(p - buf)) < 0) {
		/* nowhere to say it */
	}
	sigaction(sig, &dfl, NULL);
	raise(sig);
}

int confine_seccomp_setup(enum confine_seccomp_mode m, struct err *e)
{
	struct sigaction sa = {.sa_sigaction = sigsys_handler,
			       .sa_flags = SA_SIGINFO};
	scmp_filter_ctx ctx;
	unsigned n;
	int rc;

	mode = m;
	if (m == CONFINE_SECCOMP_OFF)
		return 0;
	/* glibc reads /etc/localtime at the first gmtime_r (the RTC, on a
	 * vCPU thread): now, while files may be opened. */
	tzset();
	for (int i = 0; i < NAMES_MAX; i++)
		names[i] =
			seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, i);
	for (int r = 0; r < CONFINE_NROLES; r++) {
		rc = build((enum confine_role)r, m, &ctx, &n);
		if (rc)
			return err_set(e, rc, "seccomp: %s filter: %s",
				       role_names[r], strerror(-rc));
		seccomp_release(ctx);
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return err_sys(e, "seccomp: sigaction(SIGSYS)");
	return 0;
}

void confine_seccomp_enter(enum confine_role role)
{
	scmp_filter_ctx ctx;
	unsigned n;
	int rc;

	if (mode == CONFINE_SECCOMP_OFF)
		return;
	rc = build(role, mode, &ctx, &n);
	if (!rc) {
		my_role = (int)role;
		rc = seccomp_load(ctx);
		seccomp_release(ctx);
	}
	if (rc)
		log_err("seccomp: cannot install the %s thread's filter: %s "
			"(it runs unfiltered)",
			role_names[role], strerror(-rc));
}

unsigned confine_role_nsyscalls(enum confine_role role)
{
	scmp_filter_ctx ctx;
	unsigned n = 0;

	if (build(role, CONFINE_SECCOMP_KILL, &ctx, &n))
		return 0;
	seccomp_release(ctx);
	return n;
}

void confine_seccomp_list(FILE *out)
{
	for (int r = 0; r < CONFINE_NROLES; r++)
		fprintf(out, "%s: %u system calls (ioctl: %zu requests)\n",
			role_names[r],
			confine_role_nsyscalls((enum confine_role)r),
			ARRAY_SIZE(ioctl_reqs));
}
