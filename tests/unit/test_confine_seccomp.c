/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Seccomp per thread role (confine_seccomp.h), in forked children: an
 * allowed call works, a forbidden one (a system call, or an ioctl request
 * outside the list) kills the process with SIGSYS after one stderr line
 * naming the call and the role; log mode lets it through.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "confine_seccomp.h"
#include "unit.h"

enum what { ALLOWED, SOCKET, TIOCSTI_IOCTL };

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
		char c = 'x';

		dup2(p[1], STDERR_FILENO);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		if (confine_seccomp_setup(m, NULL))
			_exit(90);
		confine_seccomp_enter(role);
		if (w == ALLOWED && write(p[1], "", 0) < 0)
			_exit(91);
		if (w == SOCKET && socket(AF_INET, SOCK_STREAM, 0) < 0 &&
		    errno != EAFNOSUPPORT)
			_exit(92);
		if (w == TIOCSTI_IOCTL)
			(void)!ioctl(p[0], TIOCSTI, &c);
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], err, len - 1);
	err[n > 0 ? n : 0] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	return st;
}

static void test_kill(void)
{
	char err[512];
	int st;

	st = in_child(CONFINE_SECCOMP_KILL, CONFINE_ROLE_VCPU, ALLOWED, err,
		      sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ(strlen(err), 0u);
	st = in_child(CONFINE_SECCOMP_KILL, CONFINE_ROLE_VCPU, SOCKET, err,
		      sizeof(err));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	CHECK(strstr(err, "the vcpu thread made system call socket (41)"));
	st = in_child(CONFINE_SECCOMP_KILL, CONFINE_ROLE_CONTROL,
		      TIOCSTI_IOCTL, err, sizeof(err));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	CHECK(strstr(err, "the control thread made system call ioctl"));
	/* the control role may open sockets (migration, consoles) */
	st = in_child(CONFINE_SECCOMP_KILL, CONFINE_ROLE_CONTROL, SOCKET, err,
		      sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_log_and_off(void)
{
	char err[512];
	int st;

	st = in_child(CONFINE_SECCOMP_LOG, CONFINE_ROLE_VCPU, SOCKET, err,
		      sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = in_child(CONFINE_SECCOMP_OFF, CONFINE_ROLE_VCPU, TIOCSTI_IOCTL,
		      err, sizeof(err));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_counts(void)
{
	/* vCPUs get the fewest calls, main and control the most */
	unsigned v = confine_role_nsyscalls(CONFINE_ROLE_VCPU);

	CHECK(v > 40);
	CHECK(v < confine_role_nsyscalls(CONFINE_ROLE_IOTHREAD));
	CHECK(confine_role_nsyscalls(CONFINE_ROLE_IOTHREAD) <
	      confine_role_nsyscalls(CONFINE_ROLE_CONTROL));
	CHECK_EQ(confine_role_nsyscalls(CONFINE_ROLE_CONTROL),
		 confine_role_nsyscalls(CONFINE_ROLE_MAIN));
}

int main(void)
{
	RUN(test_kill);
	RUN(test_log_and_off);
	RUN(test_counts);
	return unit_done();
}
