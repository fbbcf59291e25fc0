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
 *   enosys      an unknown system call number returns -ENOSYS;
 *   pipe        64 KiB through a pipe from a forked child, checksummed;
 *   file        a file on the root disk written, fsync'd, read back;
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
#include <sys/syscall.h>
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

static void check_enosys(void)
{
	long r = syscall(999999);
	char d[64];

	snprintf(d, sizeof(d), "ret=%ld errno=%d", r, errno);
	report("enosys", r == -1 && errno == ENOSYS, d);
}

static uint32_t fold(uint32_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 131 + seed) ^ (i >> 9));
}

static void check_pipe(void)
{
	static unsigned char out[65536], in[65536];
	int fds[2], st = -1;
	size_t got = 0;
	char d[80];
	pid_t p;

	fill(out, sizeof(out), 7);
	if (pipe(fds)) {
		report("pipe", 0, "pipe() failed");
		return;
	}
	p = fork();
	if (p == 0) {
		size_t off = 0;

		close(fds[0]);
		while (off < sizeof(out)) {
			ssize_t w = write(fds[1], out + off, sizeof(out) - off);

			if (w <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(fds[1]);
	while (got < sizeof(in)) {
		ssize_t r = read(fds[0], in + got, sizeof(in) - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fds[0]);
	if (p > 0)
		waitpid(p, &st, 0);
	snprintf(d, sizeof(d), "bytes=%zu sum=%08x", got,
		 fold(2166136261u, in, got));
	report("pipe", got == sizeof(in) && !memcmp(in, out, got) &&
			       WIFEXITED(st) && !WEXITSTATUS(st),
	       d);
}

static void check_file(void)
{
	static unsigned char out[100000], in[100000];
	const char *path = "/khyve/pvmcheck.bin";
	ssize_t w = -1, r = -1;
	char d[80];
	int fd;

	fill(out, sizeof(out), 11);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		w = write(fd, out, sizeof(out));
		if (fsync(fd))
			w = -1;
		close(fd);
	}
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		r = read(fd, in, sizeof(in));
		close(fd);
	}
	unlink(path);
	snprintf(d, sizeof(d), "wrote=%zd read=%zd sum=%08x", w, r,
		 fold(2166136261u, in, r > 0 ? (size_t)r : 0));
	report("file", w == (ssize_t)sizeof(out) && r == w &&
			       !memcmp(in, out, sizeof(out)),
	       d);
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
	check_enosys();
	check_pipe();
	check_file();
	check_segv("segv-kernel", 0xffffffff81000000ULL);
	if (entry)
		check_segv("segv-entry", entry);
	else
		printf("KHYVE-PVMCHECK segv-entry skipped (no pvmcheck.entry)\n");
	printf("KHYVE-PVMCHECK done fail=%d\n", fails);
	return fails ? 1 : 0;
}
