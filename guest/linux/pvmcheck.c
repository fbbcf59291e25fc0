/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pvmcheck: user-space checks of the system-call path, run by the test
 * rootfs's init (guest/linux/make-rootfs.py). On kvm_pvm every system
 * call of this program goes through guest/linux/patches/0003 (SYSCALL
 * faults at entry_SYSCALL_64 and the page-fault handler runs the call),
 * so it checks what that patch must get right:
 *   signal      a handler runs and rt_sigreturn (itself a SYSCALL) returns
 *               to the interrupted code with its registers intact;
 *   errno       a failing call returns -ENOENT, not garbage;
 *   fork-exec   fork, execve of busybox, exit status through wait4;
 *   segv-kernel a jump to a kernel address is SIGSEGV, not a system call;
 *   segv-entry  a jump to entry_SYSCALL_64 itself with RCX not after a
 *               SYSCALL instruction is SIGSEGV too (the address comes from
 *               pvmcheck.entry=0x... on the kernel command line).
 * Prints "KHYVE-PVMCHECK NAME ok|FAIL ..." per check, then
 * "KHYVE-PVMCHECK done fail=N".
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1;
static int fails;

static void report(const char *name, int ok, const char *detail)
{
	printf("KHYVE-PVMCHECK %s %s%s%s\n", name, ok ? "ok" : "FAIL",
	       detail ? " " : "", detail ? detail : "");
	fflush(stdout);
	if (!ok)
		fails++;
}

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	/* 42 + a bit that says whether the fault address was the target. */
	_exit(si->si_addr == (void *)(uintptr_t)strtoull(
					     getenv("PVMCHECK_ADDR"), NULL, 0)
		      ? 42
		      : 43);
}

static void check_signal(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	volatile uint64_t a = 0x1234567890abcdefULL, b = 0;

	sigaction(SIGUSR1, &sa, NULL);
	kill(getpid(), SIGUSR1);
	b = a ^ 0xffff;
	report("signal", got_usr1 == 1 && b == (0x1234567890abcdefULL ^ 0xffff),
	       NULL);
}

static void check_errno(void)
{
	int fd = open("/nonexistent/pvmcheck", O_RDONLY);
	char d[64];

	snprintf(d, sizeof(d), "ret=%d errno=%d", fd, errno);
	report("errno", fd == -1 && errno == ENOENT, d);
}

static void check_fork_exec(void)
{
	int st = -1;
	pid_t p = fork();
	char d[64];

	if (p == 0) {
		execl("/bin/busybox", "busybox", "sh", "-c", "exit 7", NULL);
		_exit(99);
	}
	if (p > 0)
		waitpid(p, &st, 0);
	snprintf(d, sizeof(d), "pid=%d status=0x%x", (int)p, st);
	report("fork-exec", p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 7, d);
}

/* Jump to @addr with RCX at two NOPs (not after a SYSCALL instruction). */
static void jump_to(uint64_t addr)
{
	static const unsigned char nops[4] = {0x90, 0x90, 0x90, 0x90};

	__asm__ volatile("jmp *%0" : : "r"(addr), "c"(nops + 2) : "memory");
}

static void check_segv(const char *name, uint64_t addr)
{
	struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
	char d[80], env[32];
	int st = -1;
	pid_t p;

	snprintf(env, sizeof(env), "%#llx", (unsigned long long)addr);
	setenv("PVMCHECK_ADDR", env, 1);
	p = fork();
	if (p == 0) {
		sigaction(SIGSEGV, &sa, NULL);
		jump_to(addr);
		_exit(98); /* came back: the jump was taken as something else */
	}
	if (p > 0)
		waitpid(p, &st, 0);
	snprintf(d, sizeof(d), "addr=%s status=0x%x", env, st);
	report(name, p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 42, d);
}

static uint64_t entry_from_cmdline(void)
{
	char buf[4096] = "";
	const char *p;
	FILE *f = fopen("/proc/cmdline", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	p = strstr(buf, "pvmcheck.entry=");
	return p ? strtoull(p + strlen("pvmcheck.entry="), NULL, 0) : 0;
}

int main(void)
{
	uint64_t entry = entry_from_cmdline();

	check_signal();
	check_errno();
	check_fork_exec();
	check_segv("segv-kernel", 0xffffffff81000000ULL);
	if (entry)
		check_segv("segv-entry", entry);
	else
		printf("KHYVE-PVMCHECK segv-entry skipped (no pvmcheck.entry)\n");
	printf("KHYVE-PVMCHECK done fail=%d\n", fails);
	return fails ? 1 : 0;
}
