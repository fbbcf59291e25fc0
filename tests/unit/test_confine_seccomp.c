/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Seccomp per thread role (confine_seccomp.h), in forked children: an
 * allowed call works, a forbidden one (a system call, an ioctl request
 * outside the role's list, an argument outside what the rule allows)
 * kills the process with SIGSYS after one stderr line naming the call and
 * the role; io_uring and clone3 fail with an error instead; log mode lets
 * everything through.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "confine_seccomp.h"
#include "unit.h"

enum what {
	ALLOWED,
	SOCKET_INET,
	SOCKET_NETLINK,
	TIOCSTI_IOCTL,
	DIRTY_LOG_IOCTL,
	KVM_RUN_IOCTL,
	OPEN_RDONLY,
	OPEN_WRITE,
	MMAP_EXEC,
	FORK,
	THREAD,
	EXECVE,
	TGKILL_OTHER,
	IO_URING,
};

static void *thread_fn(void *arg)
{
	return arg;
}

/* In the filtered child: 0 if @w went as it should when allowed. */
static int act(enum what w, int fd)
{
	char c = 'x';
	pthread_t t;
	void *p;

	switch (w) {
	case ALLOWED:
		return write(fd, "", 0) < 0;
	case SOCKET_INET:
		return socket(AF_INET, SOCK_STREAM, 0) < 0 &&
		       errno != EAFNOSUPPORT;
	case SOCKET_NETLINK:
		return socket(AF_NETLINK, SOCK_RAW, 0) < 0;
	case TIOCSTI_IOCTL:
		return ioctl(fd, TIOCSTI, &c) < 0 && errno != ENOTTY;
	case DIRTY_LOG_IOCTL:
		return ioctl(fd, KVM_GET_DIRTY_LOG, NULL) < 0 &&
		       errno != ENOTTY;
	case KVM_RUN_IOCTL: /* on a pipe: allowed, and refused by it */
		return !(ioctl(fd, KVM_RUN, 0) < 0 && errno == ENOTTY);
	case OPEN_RDONLY:
		return open("/proc/self/stat", O_RDONLY) < 0;
	case OPEN_WRITE:
		return open("/dev/null", O_WRONLY) < 0;
	case MMAP_EXEC:
		p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return p == MAP_FAILED;
	case FORK:
		return syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) < 0;
	case THREAD: /* clone3 refused with ENOSYS: glibc falls back */
		if (syscall(SYS_clone3, NULL, 0) >= 0 || errno != ENOSYS)
			return 1;
		return pthread_create(&t, NULL, thread_fn, NULL) ||
		       pthread_join(t, NULL);
	case EXECVE:
		return execl("/bin/true", "true", (char *)NULL);
	case TGKILL_OTHER: /* pid 1 is never ours */
		return syscall(SYS_tgkill, 1, 1, 0) < 0 && errno != EPERM;
	case IO_URING: /* refused, not trapped */
		return !(syscall(SYS_io_uring_setup, 1, NULL) < 0 &&
			 errno == EPERM);
	}
	return 1;
}

/* Run @w under @role's filter in a child: its wait status, its stderr. */
static int in_child(enum confine_seccomp_mode m, enum confine_role role,
		    enum what w, char *err, size_t len)
{
	int p[2], st = 0;
	ssize_t n;
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		if (confine_seccomp_setup(m, NULL))
			_exit(90);
		confine_seccomp_enter(role);
		_exit(act(w, p[1]) ? 91 : 0);
	}
	close(p[1]);
	n = read(p[0], err, len - 1);
	err[n > 0 ? n : 0] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	return st;
}

/* @w under @role: exits 0 (allowed) or dies of SIGSYS naming @call. */
static void expect(enum confine_role role, enum what w, const char *call)
{
	char err[512], want[128];
	int st = in_child(CONFINE_SECCOMP_KILL, role, w, err, sizeof(err));

	if (!call) {
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		CHECK_EQ(strlen(err), 0u);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fprintf(stderr, "role %s, case %d: status %#x: %s\n",
				confine_role_name(role), w, st, err);
		return;
	}
	snprintf(want, sizeof(want), "the %s thread made system call %s (",
		 confine_role_name(role), call);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	CHECK(strstr(err, want) != NULL);
	if (!strstr(err, want))
		fprintf(stderr, "role %s, case %d: want '%s', got '%s'\n",
			confine_role_name(role), w, want, err);
}

static void test_kill(void)
{
	char err[512];
	int st;

	expect(CONFINE_ROLE_VCPU, ALLOWED, NULL);
	st = in_child(CONFINE_SECCOMP_KILL, CONFINE_ROLE_VCPU, SOCKET_INET, err,
		      sizeof(err));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	/* the call, its number, its first arguments (AF_INET, SOCK_STREAM) */
	CHECK(strstr(err, "the vcpu thread made system call socket (41; "
			  "arguments 0x2, 0x1, 0x0), which its role is not "
			  "allowed: killing khyve\n"));
	expect(CONFINE_ROLE_CONTROL, TIOCSTI_IOCTL, "ioctl");
	/* the control role may open sockets (migration, consoles) */
	expect(CONFINE_ROLE_CONTROL, SOCKET_INET, NULL);
}

/* Arguments: ioctl requests per role, socket domains, open modes. */
static void test_arguments(void)
{
	char err[512];
	int st;

	expect(CONFINE_ROLE_VCPU, KVM_RUN_IOCTL, NULL);
	expect(CONFINE_ROLE_IOTHREAD, KVM_RUN_IOCTL, "ioctl");
	expect(CONFINE_ROLE_CONTROL, KVM_RUN_IOCTL, "ioctl");
	expect(CONFINE_ROLE_VCPU, DIRTY_LOG_IOCTL, "ioctl");
	expect(CONFINE_ROLE_CONTROL, SOCKET_NETLINK, "socket");
	expect(CONFINE_ROLE_MAIN, SOCKET_INET, "socket");
	expect(CONFINE_ROLE_MAIN, OPEN_RDONLY, NULL);
	expect(CONFINE_ROLE_CONTROL, OPEN_WRITE, NULL);
#ifndef __SANITIZE_ADDRESS__
	/* a sanitizer build lets every role open, to symbolize reports */
	expect(CONFINE_ROLE_MAIN, OPEN_WRITE, "openat");
	expect(CONFINE_ROLE_VCPU, OPEN_RDONLY, "openat");
	expect(CONFINE_ROLE_BLK_WORKER, OPEN_RDONLY, "openat");
	/* ... and main clone, for LeakSanitizer's tracer at exit */
	expect(CONFINE_ROLE_MAIN, FORK, "clone");
#endif
	for (int r = 0; r < CONFINE_NROLES; r++) {
		expect((enum confine_role)r, MMAP_EXEC, "mmap");
		expect((enum confine_role)r, EXECVE, "execve");
		expect((enum confine_role)r, TGKILL_OTHER, "tgkill");
	}
	/* io_uring_setup: main and control only (the disks' rings) */
	expect(CONFINE_ROLE_VCPU, IO_URING, NULL);
	expect(CONFINE_ROLE_IOTHREAD, IO_URING, NULL);
	expect(CONFINE_ROLE_BLK_WORKER, IO_URING, NULL);
	expect(CONFINE_ROLE_CONTROL, FORK, "clone");
	expect(CONFINE_ROLE_CONTROL, THREAD, NULL);
	/* no thread for a vCPU; pthread_create blocks every signal around
	 * clone, so the kernel kills without the handler's line */
	st = in_child(CONFINE_SECCOMP_KILL, CONFINE_ROLE_VCPU, THREAD, err,
		      sizeof(err));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
}

static void test_log_and_off(void)
{
	char err[512];
	int st;

	st = in_child(CONFINE_SECCOMP_LOG, CONFINE_ROLE_VCPU, SOCKET_INET, err,
		      sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = in_child(CONFINE_SECCOMP_LOG, CONFINE_ROLE_VCPU, MMAP_EXEC, err,
		      sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = in_child(CONFINE_SECCOMP_OFF, CONFINE_ROLE_VCPU, TIOCSTI_IOCTL,
		      err, sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_counts(void)
{
	unsigned v = confine_role_nsyscalls(CONFINE_ROLE_VCPU);
	unsigned c = confine_role_nsyscalls(CONFINE_ROLE_CONTROL);

	/* vCPUs and block workers get the fewest calls, control the most */
	CHECK(v > 30);
	CHECK(v < confine_role_nsyscalls(CONFINE_ROLE_IOTHREAD));
	CHECK(confine_role_nsyscalls(CONFINE_ROLE_BLK_WORKER) <
	      confine_role_nsyscalls(CONFINE_ROLE_IOTHREAD));
	CHECK(confine_role_nsyscalls(CONFINE_ROLE_IOTHREAD) < c);
	CHECK(confine_role_nsyscalls(CONFINE_ROLE_MAIN) < c);
	/* KVM_RUN for vCPUs only; the dirty log for control only */
	CHECK(confine_role_nioctls(CONFINE_ROLE_IOTHREAD) <
	      confine_role_nioctls(CONFINE_ROLE_VCPU));
	CHECK(confine_role_nioctls(CONFINE_ROLE_VCPU) <
	      confine_role_nioctls(CONFINE_ROLE_CONTROL));
}

int main(void)
{
	RUN(test_kill);
	RUN(test_arguments);
	RUN(test_log_and_off);
	RUN(test_counts);
	return unit_done();
}
