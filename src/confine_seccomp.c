/* SPDX-License-Identifier: BSD-2-Clause */
/* Seccomp filters per thread role: see confine_seccomp.h. */
#include "confine_seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

/* Roles as bits, to say who may make a call. */
#define R_MAIN (1u << CONFINE_ROLE_MAIN)
#define R_VCPU (1u << CONFINE_ROLE_VCPU)
#define R_IO   (1u << CONFINE_ROLE_IOTHREAD)
#define R_BLK  (1u << CONFINE_ROLE_BLK_WORKER)
#define R_CTL  (1u << CONFINE_ROLE_CONTROL)
#define R_ALL  (R_MAIN | R_VCPU | R_IO | R_BLK | R_CTL)
/* The threads alive when main drops to --user: glibc's setxid broadcast
 * makes them call setresuid & co. (vCPUs start after the drop). */
#define R_AT_DROP (R_IO | R_BLK | R_CTL)

struct call {
	const char *name;
	unsigned roles;
};

/*
 * Calls allowed without a look at their arguments. Every role: memory,
 * locks, time, signals (vCPU kicks, the SIGSYS handler's own re-raise)
 * and I/O on descriptors it was handed. The rest by what the role was
 * seen to call (docs/reliability.md, "System calls allowed per thread
 * role"): no role opens files or creates sockets but control (snapshots,
 * migration, the control socket) and, read-only, main; no role but
 * control creates threads; none runs a program or traces one.
 */
static const struct call calls[] = {
	{"read", R_ALL},
	{"write", R_ALL},
	{"readv", R_ALL},
	{"writev", R_ALL},
	{"pread64", R_ALL},
	{"pwrite64", R_ALL},
	{"preadv", R_ALL},
	{"pwritev", R_ALL},
	{"close", R_ALL},
	{"futex", R_ALL},
	{"rt_sigreturn", R_ALL},
	{"rt_sigprocmask", R_ALL},
	{"rt_sigaction", R_ALL},
	{"sigaltstack", R_ALL},
	{"clock_gettime", R_ALL},
	{"clock_nanosleep", R_ALL},
	{"nanosleep", R_ALL},
	{"gettimeofday", R_ALL},
	{"gettid", R_ALL},
	{"getpid", R_ALL},
	{"madvise", R_ALL},
	{"munmap", R_ALL},
	{"mremap", R_ALL},
	{"brk", R_ALL},
	{"exit", R_ALL},
	{"exit_group", R_ALL},
	{"sched_yield", R_ALL},
	{"getrandom", R_ALL},
	{"restart_syscall", R_ALL},
	{"poll", R_ALL},
	{"ppoll", R_ALL},
	{"fstat", R_ALL},
	{"newfstatat", R_ALL},
	{"lseek", R_ALL},
	{"fcntl", R_ALL},
	/* queues a guest enables: ioeventfds added to the iothread */
	{"eventfd2", R_VCPU | R_IO | R_CTL},
	{"epoll_ctl", R_MAIN | R_VCPU | R_IO | R_CTL},
	{"epoll_wait", R_IO},
	{"epoll_pwait", R_IO},
	/* console and TAP back ends, the control and API sockets */
	{"sendto", R_MAIN | R_VCPU | R_IO | R_CTL},
	{"recvfrom", R_MAIN | R_VCPU | R_IO | R_CTL},
	{"sendmsg", R_MAIN | R_VCPU | R_IO | R_CTL},
	{"recvmsg", R_MAIN | R_VCPU | R_IO | R_CTL},
	{"accept4", R_MAIN | R_IO | R_CTL},
	{"shutdown", R_MAIN | R_IO | R_CTL},
	{"getsockopt", R_MAIN | R_IO | R_CTL},
	/* disk flushes and discards, snapshot files */
	{"fsync", R_IO | R_BLK | R_CTL},
	{"fdatasync", R_IO | R_BLK | R_CTL},
	{"fallocate", R_IO | R_BLK | R_CTL},
	{"setresuid", R_AT_DROP},
	{"setresgid", R_AT_DROP},
	{"setgroups", R_AT_DROP},
	{"getuid", R_MAIN | R_CTL},
	{"geteuid", R_MAIN | R_CTL},
	{"getgid", R_MAIN | R_CTL},
	{"getegid", R_MAIN | R_CTL},
	/* main at exit: the control socket's and the rundir's files */
	{"unlink", R_MAIN | R_CTL},
	{"unlinkat", R_MAIN | R_CTL},
	/* the control thread (and the API server's): snapshots, migration */
	{"open", R_CTL},
	{"rename", R_CTL},
	{"renameat", R_CTL},
	{"renameat2", R_CTL},
	{"link", R_CTL},
	{"linkat", R_CTL},
	{"mkdir", R_CTL},
	{"mkdirat", R_CTL},
	{"fchmod", R_CTL},
	{"chmod", R_CTL},
	{"ftruncate", R_CTL},
	{"flock", R_CTL},
	{"getdents64", R_CTL},
	{"readlink", R_CTL},
	{"readlinkat", R_CTL},
	{"access", R_CTL},
	{"faccessat", R_CTL},
	{"faccessat2", R_CTL},
	{"statfs", R_CTL},
	{"fstatfs", R_CTL},
	{"statx", R_CTL},
	{"connect", R_CTL},
	{"bind", R_CTL},
	{"listen", R_CTL},
	{"accept", R_CTL},
	{"setsockopt", R_CTL},
	{"getsockname", R_CTL},
	{"getpeername", R_CTL},
	{"pipe2", R_CTL},
	{"umask", R_CTL},
	{"fadvise64", R_CTL},
	{"sched_getaffinity", R_CTL},
	{"getrusage", R_CTL},
	{"sysinfo", R_CTL},
	{"uname", R_CTL},
	/* the disks' io_uring back end: rings set up with the devices (the
	 * API's InstanceStart too) and drained when they go away by main or
	 * control, submitted to and reaped by the iothread and workers */
	{"io_uring_setup", R_MAIN | R_CTL},
	{"io_uring_register", R_MAIN | R_CTL},
	{"io_uring_enter", R_MAIN | R_IO | R_BLK | R_CTL},
	/* a new thread's first calls (copy threads of a checkpoint) */
	{"set_robust_list", R_CTL},
	{"rseq", R_CTL},
	{NULL, 0},
};

/* A request number and the roles that may issue it. */
struct ioctl_req {
	unsigned long req;
	unsigned roles;
};

/*
 * ioctl requests after set-up, per role (set-up itself - creating the VM
 * and vCPUs, a restore's state, TUNSETIFF and TAP offloads - is over).
 * vCPU threads: KVM_RUN, the registers the instruction completer reads
 * and writes, address translation, interrupts, ioeventfds (a guest
 * enabling or resetting a queue). The control thread (and the API
 * server's): every state a checkpoint reads, the dirty log and its
 * memory slots. Any thread may raise an interrupt (a device it emulates)
 * and ask whether a descriptor is a terminal (TCGETS); main restores the
 * console's terminal at exit. Not: TIOCSTI, anything else.
 */
static const struct ioctl_req ioctl_reqs[] = {
	{KVM_RUN, R_VCPU},
	{KVM_GET_REGS, R_VCPU | R_CTL},
	{KVM_SET_REGS, R_VCPU},
	{KVM_GET_SREGS, R_VCPU | R_CTL},
	{KVM_GET_FPU, R_VCPU | R_CTL},
	{KVM_SET_FPU, R_VCPU},
	{KVM_GET_VCPU_EVENTS, R_VCPU | R_CTL},
	{KVM_SET_VCPU_EVENTS, R_VCPU},
	{KVM_TRANSLATE, R_VCPU | R_CTL},
	{KVM_GET_MSRS, R_CTL},
	{KVM_GET_LAPIC, R_CTL},
	{KVM_GET_XSAVE, R_CTL},
	{KVM_GET_XCRS, R_CTL},
	{KVM_GET_DEBUGREGS, R_CTL},
	{KVM_GET_MP_STATE, R_CTL},
	{KVM_GET_CPUID2, R_CTL},
	{KVM_GET_CLOCK, R_CTL},
	{KVM_GET_IRQCHIP, R_CTL},
	{KVM_GET_PIT2, R_CTL},
	{KVM_GET_DIRTY_LOG, R_CTL},
	{KVM_SET_USER_MEMORY_REGION, R_CTL},
	{KVM_CHECK_EXTENSION, R_CTL},
	{KVM_IRQ_LINE, R_ALL},
	{KVM_SIGNAL_MSI, R_ALL},
	{KVM_IOEVENTFD, R_MAIN | R_VCPU | R_CTL},
	{TCGETS, R_ALL},
	{TCSETS, R_MAIN},
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

#if defined(__SANITIZE_ADDRESS__)
/*
 * A sanitizer build only (docs/security.md): an ASan/UBSan report reads
 * /proc/self/maps and the binary to symbolize, from any thread; at exit
 * (main) LeakSanitizer's StopTheWorld clones a tracer that ptraces every
 * thread and lists /proc/self/task.
 */
static const struct call san_calls[] = {
	/* a report, on any thread */
	{"open", R_ALL},
	{"openat", R_ALL},
	{"readlink", R_ALL},
	{"readlinkat", R_ALL},
	{"getdents64", R_ALL},
	{"getdents", R_ALL}, /* the runtime's own, for /proc/self/task */
	/* the leak check at exit */
	{"ptrace", R_MAIN},
	{"wait4", R_MAIN},
	{"waitid", R_MAIN},
	{"prctl", R_MAIN},
	{"clone", R_MAIN},
	{"getppid", R_MAIN},
	{NULL, 0},
};
#define SANITIZER_BUILD 1
#else
#define SANITIZER_BUILD 0
#endif

/* io_uring is refused with EPERM, not trapped, where no role allows it:
 * a back end that tries it falls back to its threads. */
static const char *const refused_calls[] = {
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
	NULL,
};

/* Add rule @nr to @ctx unless there is one already; count it in *@n. */
static int add_rule(scmp_filter_ctx ctx, uint32_t act, int nr, unsigned nargs,
		    const struct scmp_arg_cmp *a, unsigned *n)
{
	int rc = seccomp_rule_add_array(ctx, act, nr, nargs, a);

	if (rc == -EEXIST)
		return 0;
	if (!rc && act == SCMP_ACT_ALLOW)
		(*n)++;
	return rc;
}

/* Is @name allowed to @bit by @list? */
static bool in_list(const struct call *list, const char *name, unsigned bit)
{
	for (; list->name; list++)
		if ((list->roles & bit) && !strcmp(list->name, name))
			return true;
	return false;
}

/* The calls of @list allowed to @bit, with no argument checks. */
static int add_plain(scmp_filter_ctx ctx, const struct call *list, unsigned bit,
		     unsigned *n)
{
	for (; list->name; list++) {
		int nr = seccomp_syscall_resolve_name(list->name), rc;

		if (nr == __NR_SCMP_ERROR || !(list->roles & bit))
			continue; /* not on this architecture, not this role */
		rc = add_rule(ctx, SCMP_ACT_ALLOW, nr, 0, NULL, n);
		if (rc)
			return rc;
	}
	return 0;
}

/* ioctl with @bit's request numbers only: one call counted. */
static int add_ioctl(scmp_filter_ctx ctx, unsigned bit, unsigned *n)
{
	unsigned k = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(ioctl_reqs); i++) {
		struct scmp_arg_cmp a =
			SCMP_A1_32(SCMP_CMP_EQ, (uint32_t)ioctl_reqs[i].req);
		int rc;

		if (!(ioctl_reqs[i].roles & bit))
			continue;
		rc = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &a, &k);
		if (rc)
			return rc;
	}
	*n += k > 0;
	return 0;
}

/*
 * Calls allowed with an argument check:
 * - mmap, mprotect: never PROT_EXEC (no new code in the process);
 * - tgkill: only this process's threads (vCPU kicks, raise);
 * - clone: threads only (CLONE_THREAD; clone3's flags are out of a
 *   filter's reach, so it fails with ENOSYS and glibc falls back);
 * - socket: UNIX, IPv4 and IPv6 only (control: migration, consoles);
 * - openat: control anything, main read-only (glibc's malloc reads
 *   /proc/sys/vm/overcommit_memory once, at its first trim).
 */
static int add_checked(scmp_filter_ctx ctx, unsigned bit, unsigned *n)
{
	const struct scmp_arg_cmp noexec =
		SCMP_A2_64(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	const struct scmp_arg_cmp self =
		SCMP_A0_32(SCMP_CMP_EQ, (uint32_t)getpid());
	const struct scmp_arg_cmp thread =
		SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
	const struct scmp_arg_cmp rdonly = SCMP_A2_32(
		SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
	const int domains[] = {AF_UNIX, AF_INET, AF_INET6};
	int rc = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, &noexec, n);

	rc = rc
		     ?: add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				 &noexec, n);
	rc = rc ?: add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, &self, n);
	rc = rc
		     ?: add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3),
				 0, NULL, n);
	if (bit == R_CTL) {
		rc = rc
			     ?: add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone),
					 1, &thread, n);
		rc = rc
			     ?: add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat),
					 0, NULL, n);
		for (unsigned i = 0; i < ARRAY_SIZE(domains) && !rc; i++) {
			struct scmp_arg_cmp d =
				SCMP_A0_32(SCMP_CMP_EQ, (uint32_t)domains[i]);
			unsigned k = 0;

			rc = add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				      &d, &k);
			*n += k && i == 0;
		}
	} else if (bit == R_MAIN) {
		rc = rc
			     ?: add_rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat),
					 1, &rdonly, n);
	}
	return rc;
}

/* io_uring and the like: EPERM where not allowed. */
static int add_refused(scmp_filter_ctx ctx, unsigned bit)
{
	unsigned k = 0;

	for (const char *const *c = refused_calls; *c; c++) {
		int nr = seccomp_syscall_resolve_name(*c), rc;

		if (nr == __NR_SCMP_ERROR || in_list(calls, *c, bit))
			continue;
		rc = add_rule(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0, NULL, &k);
		if (rc)
			return rc;
	}
	return 0;
}

/* @role's filter, forbidden calls trapped or logged per @m. */
static int build(enum confine_role role, enum confine_seccomp_mode m,
		 scmp_filter_ctx *out, unsigned *n)
{
	unsigned bit = 1u << role;
	scmp_filter_ctx ctx;
	int rc;

	*n = 0;
	ctx = seccomp_init(m == CONFINE_SECCOMP_LOG ? SCMP_ACT_LOG
						    : SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
		/* Arguments first: a plain rule for the same call would win. */
#if SANITIZER_BUILD
	rc = add_plain(ctx, san_calls, bit, n);
#else
	rc = 0;
#endif
	rc = rc ?: add_checked(ctx, bit, n);
	rc = rc ?: add_plain(ctx, calls, bit, n);
	rc = rc ?: add_ioctl(ctx, bit, n);
	rc = rc ?: add_refused(ctx, bit);
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

/* @v in base @base (10 or 16, with 0x) at *@p. */
static void put_num(char **p, const char *end, unsigned long v, unsigned base)
{
	char d[24];
	int i = (int)sizeof(d) - 1;

	d[i] = 0;
	do {
		d[--i] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v && i > 2);
	if (base == 16) {
		d[--i] = 'x';
		d[--i] = '0';
	}
	put(p, end, d + i);
}

/* A forbidden call in kill mode: say which, then die of SIGSYS. */
static void sigsys_handler(int sig, siginfo_t *si, void *uc)
{
	char buf[256], *p = buf;
	const char *end = buf + sizeof(buf) - 1;
	int nr = si->si_syscall;
	struct sigaction dfl = {.sa_handler = SIG_DFL};

	put(&p, end, "khyve: seccomp: the ");
	put(&p, end, my_role >= 0 ? role_names[my_role] : "?");
	put(&p, end, " thread made system call ");
	put(&p, end, nr >= 0 && nr < NAMES_MAX && names[nr] ? names[nr] : "?");
	put(&p, end, " (");
	put_num(&p, end, (unsigned long)nr, 10);
#ifdef __x86_64__
	/* the first arguments: an ioctl's request, a socket's domain */
	put(&p, end, "; arguments ");
	for (int i = 0; i < 3; i++) {
		static const int reg[] = {REG_RDI, REG_RSI, REG_RDX};
		const ucontext_t *u = uc;

		put_num(&p, end, (unsigned long)u->uc_mcontext.gregs[reg[i]],
			16);
		put(&p, end, i < 2 ? ", " : "");
	}
#else
	(void)uc;
#endif
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

	if (mode == CONFINE_SECCOMP_OFF || my_role >= 0)
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

unsigned confine_role_nioctls(enum confine_role role)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(ioctl_reqs); i++)
		n += (ioctl_reqs[i].roles >> role) & 1;
	return n;
}

void confine_seccomp_list(FILE *out)
{
	for (int r = 0; r < CONFINE_NROLES; r++)
		fprintf(out, "%s: %u system calls (ioctl: %u requests)\n",
			role_names[r],
			confine_role_nsyscalls((enum confine_role)r),
			confine_role_nioctls((enum confine_role)r));
}
