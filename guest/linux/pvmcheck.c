/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pvmcheck: user-space checks of the system-call path, run by the test
 * rootfs's init (guest/linux/make-rootfs.py). On kvm_pvm every system
 * call of this program goes through guest/linux/patches/0003 (SYSCALL
 * faults at entry_SYSCALL_64 and the page-fault handler runs the call).
 *
 * Once, the bad input and faults:
 *   errno       a failing call returns -ENOENT, not garbage;
 *   enosys      an unknown system call number returns -ENOSYS;
 *   segv-kernel a jump to a kernel address is SIGSEGV, not a system call;
 *   segv-entry  a jump to entry_SYSCALL_64 itself with RCX not after a
 *               SYSCALL instruction is SIGSEGV too (the address comes from
 *               pvmcheck.entry=0x... on the kernel command line);
 *   kill-read, kill-sleep  a child blocked in read() on a pipe / in
 *               nanosleep() is killed by SIGKILL: the parent sees it die
 *               of SIGKILL and the pipe has no reader left (EPIPE).
 * Then pvmcheck.rounds=N rounds (default 1) of the areas, in this order
 * but "blocked" first, each printing
 * "KHYVE-PVMCHECK round R area NAME PASS|FAIL|SKIP detail":
 *   fork     four children at once, copy-on-write memory, exit codes;
 *   exec     execve of busybox and of this program (argv, environment),
 *            and of a missing file (ENOENT);
 *   signals  a handler runs and rt_sigreturn (itself a SYSCALL) returns
 *            with registers intact; SIGALRM interrupts a read (EINTR); a
 *            signal wakes a child in sigsuspend;
 *   pipes    64 KiB through a pipe from a forked child, compared;
 *   file     a file on the root disk (virtio-blk) written, fsync'd, read;
 *   sockets  a TCP connection to pvmcheck.server=IP:PORT (the test's
 *            server on the host side of the TAP): lines sent, their
 *            reversed echo and the server's line count checked (SKIP
 *            without pvmcheck.server);
 *   blocked  16 children parked in read, nanosleep and write of a full
 *            pipe (checked in /proc/PID/syscall), held pvmcheck.hold_ms
 *            (default 200; a snapshot test suspends then), released (a
 *            token, SIGUSR1, the pipe drained): all must finish with the
 *            right data.
 * Ends with "KHYVE-PVMCHECK done rounds=N fail=F". Lines go to the kernel
 * log with printk.devkmsg=on (whole on the console), else to stdout.
 * KHYVE_CMDLINE in the environment stands in for /proc/cmdline.
 *
 * "pvmcheck end" (run by init after the rounds) stops pvmload and, with
 * pvmcheck.poweroff=1, waits for khyve_test's "all tests done" and powers
 * the machine off through init, whose shutdown remounts / read-only.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NBLOCKED 16
/* Bounds on what waits on another process, so a hang is a FAIL line. */
#define WAIT_S 60

static volatile sig_atomic_t got_usr1, got_alrm;
static int fails;
static char cmdline[4096];

/*
 * Lines go to the kernel log (so the console prints them whole, never
 * cut by a kernel message the way two writers to the UART can be) when
 * printk.devkmsg=on lets every line through, else to stdout.
 */
static int kmsg_fd = -1;

static void say_init(void)
{
	char buf[16] = "";
	int fd = open("/proc/sys/kernel/printk_devkmsg", O_RDONLY);

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = 0;
		close(fd);
	}
	if (!strncmp(buf, "on", 2))
		kmsg_fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
}

static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	char line[512] = "<6>";
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line + 3, sizeof(line) - 3, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 4)
		n = (int)sizeof(line) - 4;
	if (kmsg_fd < 0 || write(kmsg_fd, line, (size_t)n + 3) < 0) {
		fputs(line + 3, stdout);
		fflush(stdout);
	}
}

static void report(const char *name, int ok, const char *detail)
{
	say("KHYVE-PVMCHECK %s %s%s%s\n", name, ok ? "ok" : "FAIL",
	       detail ? " " : "", detail ? detail : "");
	if (!ok)
		fails++;
}

/* ok: 1 PASS, 0 FAIL, -1 SKIP. */
static void report_area(int round, const char *name, int ok,
			const char *detail)
{
	say("KHYVE-PVMCHECK round %d area %s %s %s\n", round, name,
	       ok > 0 ? "PASS" : ok == 0 ? "FAIL" : "SKIP", detail);
	if (!ok)
		fails++;
}

static const char *param(const char *name)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "%s=", name);
	for (p = strstr(cmdline, key); p; p = strstr(p + 1, key))
		if (p == cmdline || p[-1] == ' ')
			return p + strlen(key);
	return NULL;
}

static long param_long(const char *name, long dflt)
{
	const char *p = param(name);

	return p ? strtol(p, NULL, 0) : dflt;
}

static void read_cmdline(void)
{
	/* KHYVE_CMDLINE stands in for the kernel's, to try it on a host. */
	FILE *f = getenv("KHYVE_CMDLINE") ? NULL : fopen("/proc/cmdline", "r");

	if (getenv("KHYVE_CMDLINE"))
		snprintf(cmdline, sizeof(cmdline), "%s", getenv("KHYVE_CMDLINE"));
	if (f) {
		if (!fgets(cmdline, sizeof(cmdline), f))
			cmdline[0] = 0;
		fclose(f);
	}
	cmdline[strcspn(cmdline, "\n")] = 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

static void on_alrm(int sig)
{
	(void)sig;
	got_alrm++;
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

/* waitpid with a bound: a child that never ends is killed, status -1. */
static int wait_child(pid_t p, int secs)
{
	uint64_t end = now_ms() + (uint64_t)secs * 1000;
	int st;

	if (p <= 0)
		return -1;
	while (now_ms() < end) {
		pid_t r = waitpid(p, &st, WNOHANG);

		if (r == p)
			return st;
		if (r < 0)
			return -1;
		sleep_ms(10);
	}
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	return -1;
}

static int exited_with(int st, int code)
{
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == code;
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

/* write() all of @n bytes, or -1. */
static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads up to @n bytes until EOF; returns the count. */
static size_t read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/*
 * The system call @pid is blocked in, from /proc/PID/syscall ("NR args..."
 * while blocked, "running" or "-1 ..." otherwise), -2 if unreadable.
 */
static long blocked_syscall(pid_t pid)
{
	char path[64], buf[256] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -2;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || buf[0] < '0' || buf[0] > '9')
		return -1;
	return strtol(buf, NULL, 10);
}

/* Waits until @pid sits in system call @nr or @end_ms passes; 0 or -1. */
static int wait_in_syscall_until(pid_t pid, long nr, uint64_t end_ms)
{
	do {
		if (blocked_syscall(pid) == nr)
			return 0;
		sleep_ms(5);
	} while (now_ms() < end_ms);
	return -1;
}

static int wait_in_syscall(pid_t pid, long nr)
{
	return wait_in_syscall_until(pid, nr, now_ms() + WAIT_S * 1000);
}

/* ---- once: bad input and faults ---- */

static void check_errno(void)
{
	int fd = open("/nonexistent/pvmcheck", O_RDONLY);
	char d[64];

	snprintf(d, sizeof(d), "ret=%d errno=%d", fd, errno);
	report("errno", fd == -1 && errno == ENOENT, d);
}

static void check_enosys(void)
{
	long r = syscall(999999);
	char d[64];

	snprintf(d, sizeof(d), "ret=%ld errno=%d", r, errno);
	report("enosys", r == -1 && errno == ENOSYS, d);
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
	int st;
	pid_t p;

	snprintf(env, sizeof(env), "%#llx", (unsigned long long)addr);
	setenv("PVMCHECK_ADDR", env, 1);
	p = fork();
	if (p == 0) {
		sigaction(SIGSEGV, &sa, NULL);
		jump_to(addr);
		_exit(98); /* came back: the jump was taken as something else */
	}
	st = wait_child(p, WAIT_S);
	snprintf(d, sizeof(d), "addr=%s status=0x%x", env, st);
	report(name, exited_with(st, 42), d);
}

/*
 * A child parked in read() on an empty pipe (@sleep: in nanosleep) is
 * killed by SIGKILL inside that call: it must die of SIGKILL, and the
 * pipe's read end must be gone with it (a write gets EPIPE).
 */
static void check_kill_blocked(const char *name, int sleep)
{
	long nr = sleep ? SYS_nanosleep : SYS_read;
	int fds[2], st = -1, in_call = -1, epipe = 0;
	char d[96], c = 0;
	pid_t p;

	if (pipe(fds)) {
		report(name, 0, "pipe() failed");
		return;
	}
	p = fork();
	if (p == 0) {
		struct timespec ts = {600, 0};

		close(fds[1]);
		if (sleep)
			syscall(SYS_nanosleep, &ts, NULL);
		else
			(void)!read(fds[0], &c, 1);
		_exit(97); /* woke up: the kill did not land in the call */
	}
	close(fds[0]);
	if (p > 0) {
		in_call = wait_in_syscall(p, nr);
		kill(p, SIGKILL);
		st = wait_child(p, WAIT_S);
		/* SIGPIPE is ignored in main(): the write fails instead. */
		epipe = write(fds[1], "x", 1) == -1 && errno == EPIPE;
	}
	close(fds[1]);
	snprintf(d, sizeof(d), "in_syscall=%ld status=0x%x epipe=%d",
		 in_call ? -1L : nr, st, epipe);
	report(name, in_call == 0 && st != -1 && WIFSIGNALED(st) &&
			     WTERMSIG(st) == SIGKILL && epipe,
	       d);
}

/* ---- the areas, once per round ---- */

static int area_fork(int round, char *d, size_t dn)
{
	static volatile long shared;
	pid_t kids[4];
	int ok = 1, codes[4];

	shared = round * 1000L;
	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			/* The parent changes it after the fork: copy-on-write. */
			sleep_ms(20);
			_exit(shared == round * 1000L && getppid() > 1 ? 10 + i
								       : 99);
		}
	}
	shared = -1;
	for (int i = 0; i < 4; i++) {
		int st = wait_child(kids[i], WAIT_S);

		codes[i] = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		ok &= codes[i] == 10 + i;
	}
	snprintf(d, dn, "exits=%d,%d,%d,%d", codes[0], codes[1], codes[2],
		 codes[3]);
	return ok;
}

static pid_t spawn(const char *path, char *const argv[], char *const env[])
{
	pid_t p = fork();

	if (p == 0) {
		execve(path, argv, env);
		_exit(errno == ENOENT ? 3 : 4);
	}
	return p;
}

static int area_exec(int round, char *d, size_t dn)
{
	char arg[16], tok[32];
	char *sh[] = {"busybox", "sh", "-c", "exit 7", NULL};
	char *self[] = {"pvmcheck", "exec-child", arg, NULL};
	char *env[] = {tok, NULL};
	char *none[] = {"nothing", NULL};
	int a, b, c;

	snprintf(arg, sizeof(arg), "%d", round);
	snprintf(tok, sizeof(tok), "PVMCHECK_TOKEN=%d", round);
	a = wait_child(spawn("/bin/busybox", sh, env), WAIT_S);
	b = wait_child(spawn("/bin/pvmcheck", self, env), WAIT_S);
	c = wait_child(spawn("/bin/pvmcheck-missing", none, env), WAIT_S);
	snprintf(d, dn, "busybox=0x%x self=0x%x missing=0x%x", a, b, c);
	return exited_with(a, 7) && exited_with(b, 20 + round % 100) &&
	       exited_with(c, 3);
}

static int exec_child(int argc, char **argv)
{
	const char *t = getenv("PVMCHECK_TOKEN");

	if (argc < 3 || !t || strcmp(t, argv[2]))
		return 1;
	return 20 + atoi(argv[2]) % 100;
}

static int area_signals(int round, char *d, size_t dn)
{
	struct sigaction usr1 = {.sa_handler = on_usr1};
	struct sigaction alrm = {.sa_handler = on_alrm}; /* no SA_RESTART */
	struct itimerval it = {.it_value = {0, 100000}};
	volatile uint64_t a = 0x1234567890abcdefULL ^ (uint64_t)round, b = 0;
	int self_ok, eintr_ok, child_ok, fds[2], rdy[2], st = -1;
	sigset_t block, old;
	ssize_t r = 0;
	char c;
	pid_t p;

	got_usr1 = 0;
	sigaction(SIGUSR1, &usr1, NULL);
	kill(getpid(), SIGUSR1);
	b = a ^ 0xffff;
	self_ok = got_usr1 == 1 && b == ((0x1234567890abcdefULL ^
					  (uint64_t)round) ^ 0xffff);

	/* SIGALRM in the middle of a read that nothing will satisfy. */
	got_alrm = 0;
	sigaction(SIGALRM, &alrm, NULL);
	eintr_ok = 0;
	if (!pipe(fds)) {
		setitimer(ITIMER_REAL, &it, NULL);
		r = read(fds[0], &c, 1);
		eintr_ok = r == -1 && errno == EINTR && got_alrm == 1;
		close(fds[0]);
		close(fds[1]);
	}

	/* A child waiting in sigsuspend is woken by the parent's SIGUSR1. */
	child_ok = 0;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	if (!pipe(rdy)) {
		p = fork();
		if (p == 0) {
			sigset_t none;

			got_usr1 = 0;
			sigemptyset(&none);
			(void)!write(rdy[1], "r", 1);
			sigsuspend(&none);
			_exit(got_usr1 == 1 ? 0 : 1);
		}
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (p > 0 && read(rdy[0], &c, 1) == 1) {
			kill(p, SIGUSR1);
			st = wait_child(p, WAIT_S);
			child_ok = exited_with(st, 0);
		} else if (p > 0) {
			wait_child(p, 0);
		}
		close(rdy[0]);
		close(rdy[1]);
	} else {
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
	snprintf(d, dn, "handler=%d eintr=%d(read=%zd) child=0x%x", self_ok,
		 eintr_ok, r, st);
	return self_ok && eintr_ok && child_ok;
}

static int area_pipes(int round, char *d, size_t dn)
{
	static unsigned char out[65536], in[65536];
	int fds[2], st;
	size_t got;
	pid_t p;

	fill(out, sizeof(out), 7 + (unsigned)round);
	if (pipe(fds)) {
		snprintf(d, dn, "pipe() failed");
		return 0;
	}
	p = fork();
	if (p == 0) {
		close(fds[0]);
		_exit(write_all(fds[1], out, sizeof(out)) ? 1 : 0);
	}
	close(fds[1]);
	got = read_all(fds[0], in, sizeof(in));
	close(fds[0]);
	st = wait_child(p, WAIT_S);
	snprintf(d, dn, "bytes=%zu sum=%08x", got, fold(2166136261u, in, got));
	return got == sizeof(in) && !memcmp(in, out, got) && exited_with(st, 0);
}

static int area_file(int round, char *d, size_t dn)
{
	static unsigned char out[100000], in[100000];
	char path[64];
	ssize_t w = -1, r = -1;
	int fd;

	snprintf(path, sizeof(path), "/khyve/pvmcheck-%d.bin", round);
	fill(out, sizeof(out), 11 + (unsigned)round);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		w = write_all(fd, out, sizeof(out)) ? -1 : (ssize_t)sizeof(out);
		if (fsync(fd))
			w = -1;
		close(fd);
	}
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		r = (ssize_t)read_all(fd, in, sizeof(in));
		close(fd);
	}
	unlink(path);
	snprintf(d, dn, "wrote=%zd read=%zd sum=%08x", w, r,
		 fold(2166136261u, in, r > 0 ? (size_t)r : 0));
	return w == (ssize_t)sizeof(out) && r == w &&
	       !memcmp(in, out, sizeof(out));
}

/* Connects to "IP:PORT" (30 s bound); the socket or -1. */
static int tcp_connect(const char *spec)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char ip[32];
	const char *colon = strchr(spec, ':');
	int fd;

	if (!colon || colon - spec >= (long)sizeof(ip))
		return -1;
	memcpy(ip, spec, (size_t)(colon - spec));
	ip[colon - spec] = 0;
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return -1;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	for (int i = 0; i < 30; i++) {
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		if (errno != ECONNREFUSED && errno != ENETUNREACH &&
		    errno != EHOSTUNREACH)
			break;
		sleep_ms(1000);
	}
	close(fd);
	return -1;
}

/*
 * One line from @fd into @buf (no newline), within @ms; its length or -1.
 * Reads what has arrived at once, not a byte per call: each system call
 * is emulated kernel code on kvm_pvm. The server answers one line at a
 * time, so nothing past the newline is read.
 */
static int read_line(int fd, char *buf, size_t n, int ms)
{
	size_t len = 0;
	uint64_t end = now_ms() + (uint64_t)ms;

	while (len + 1 < n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(end - now_ms());
		char *nl;
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return -1;
		r = read(fd, buf + len, n - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		nl = memchr(buf, '\n', len);
		if (nl) {
			*nl = 0;
			return (int)(nl - buf);
		}
	}
	return -1;
}

static int area_sockets(int round, char *d, size_t dn)
{
	const char *srv = param("pvmcheck.server");
	char spec[64], line[1100], reply[1200], want[1200];
	int fd, lines = 0, ok = 1;

	if (!srv) {
		snprintf(d, dn, "no pvmcheck.server on the command line");
		return -1;
	}
	snprintf(spec, sizeof(spec), "%.*s", (int)strcspn(srv, " "), srv);
	fd = tcp_connect(spec);
	if (fd < 0) {
		snprintf(d, dn, "cannot connect to %s (errno %d)", spec, errno);
		return 0;
	}
	for (int i = 1; i <= 16 && ok; i++) {
		int n = snprintf(line, sizeof(line), "pvmcheck %d %d ", round,
				 i);
		int len;

		for (; n < 1000; n++)
			line[n] = (char)('a' + (n * 7 + i) % 26);
		line[n] = 0;
		/* The server's answer: its line count, the line reversed. */
		len = snprintf(want, sizeof(want), "ECHO %d ", i);
		for (int k = n - 1; k >= 0; k--)
			want[len++] = line[k];
		want[len] = 0;
		line[n++] = '\n';
		ok = !write_all(fd, line, (size_t)n) &&
		     read_line(fd, reply, sizeof(reply), 30000) >= 0 &&
		     !strcmp(reply, want);
		lines += ok;
	}
	close(fd);
	snprintf(d, dn, "server=%s lines=%d/16", spec, lines);
	return ok;
}

/*
 * NBLOCKED children, each parked in a system call: read() of a pipe
 * until the parent sends its token, nanosleep() of 600 s until the
 * parent's SIGUSR1 interrupts it (EINTR, time left reported), or write()
 * of 256 KiB into a pipe nobody reads yet. Once all are inside their
 * calls the parent says so, holds them there hold_ms, then feeds, wakes
 * and drains them; every child must end with the right data.
 */
static int area_blocked(int round, char *d, size_t dn)
{
	static unsigned char wbuf[256 << 10], rbuf[256 << 10];
	long hold = param_long("pvmcheck.hold_ms", 200);
	struct sigaction usr1 = {.sa_handler = on_usr1}; /* no SA_RESTART */
	int pipes[NBLOCKED][2], good = 0, parked = 0;
	pid_t kids[NBLOCKED];
	uint64_t t0, end;

	fill(wbuf, sizeof(wbuf), 23 + (unsigned)round);
	for (int i = 0; i < NBLOCKED; i++) {
		pipes[i][0] = pipes[i][1] = -1;
		kids[i] = -1;
		if (pipe(pipes[i]))
			continue;
		kids[i] = fork();
		if (kids[i] == 0) {
			int kind = i % 3;
			unsigned char tok = 0;

			if (kind == 0) {
				close(pipes[i][1]);
				if (read(pipes[i][0], &tok, 1) != 1)
					_exit(1);
				_exit(tok == (unsigned char)(i * 7 + round) ? 0
									  : 2);
			} else if (kind == 1) {
				struct timespec ts = {600, 0}, rem = {0, 0};
				long r;

				got_usr1 = 0;
				sigaction(SIGUSR1, &usr1, NULL);
				r = syscall(SYS_nanosleep, &ts, &rem);
				_exit(r == -1 && errno == EINTR && got_usr1 == 1 &&
					      rem.tv_sec < 600 && rem.tv_sec > 0
					      ? 0
					      : 3);
			}
			close(pipes[i][0]);
			_exit(write_all(pipes[i][1], wbuf, sizeof(wbuf)) ? 4 : 0);
		}
	}
	end = now_ms() + WAIT_S * 1000;
	for (int i = 0; i < NBLOCKED; i++) {
		long nr = i % 3 == 0 ? SYS_read
			  : i % 3 == 1 ? SYS_nanosleep
				       : SYS_write;

		if (kids[i] > 0 && !wait_in_syscall_until(kids[i], nr, end))
			parked++;
	}
	say("KHYVE-PVMCHECK round %d blocked %d/%d children in system "
	    "calls\n", round, parked, NBLOCKED);
	t0 = now_ms();
	sleep_ms(hold);
	say("KHYVE-PVMCHECK round %d released after %llu ms\n", round,
	    (unsigned long long)(now_ms() - t0));
	for (int i = 0; i < NBLOCKED; i++) {
		int ok = 1, st;

		if (kids[i] <= 0)
			continue;
		if (i % 3 == 0) {
			unsigned char tok = (unsigned char)(i * 7 + round);

			ok = write(pipes[i][1], &tok, 1) == 1;
		} else if (i % 3 == 1) {
			ok = !kill(kids[i], SIGUSR1);
		} else {
			close(pipes[i][1]);
			pipes[i][1] = -1;
			ok = read_all(pipes[i][0], rbuf, sizeof(rbuf)) ==
				     sizeof(rbuf) &&
			     !memcmp(rbuf, wbuf, sizeof(rbuf));
		}
		st = wait_child(kids[i], WAIT_S);
		good += ok && exited_with(st, 0);
	}
	for (int i = 0; i < NBLOCKED; i++) {
		if (pipes[i][0] >= 0)
			close(pipes[i][0]);
		if (pipes[i][1] >= 0)
			close(pipes[i][1]);
	}
	snprintf(d, dn, "parked=%d finished=%d/%d", parked, good, NBLOCKED);
	return parked == NBLOCKED && good == NBLOCKED;
}

/*
 * "blocked" first: a snapshot test suspends while its children are
 * parked, and every other area of that round then runs after the restore.
 */
static const struct {
	const char *name;
	int (*fn)(int round, char *d, size_t dn);
} areas[] = {
	{"blocked", area_blocked}, {"fork", area_fork},
	{"exec", area_exec},	   {"signals", area_signals},
	{"pipes", area_pipes},	   {"file", area_file},
	{"sockets", area_sockets},
};

/* ---- "pvmcheck end" ---- */

static int procs_named(const char *comm)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	int n = 0;

	while (dir && (e = readdir(dir))) {
		char path[300], buf[64] = "";
		FILE *f;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) &&
		    !strncmp(buf, comm, strlen(comm)) &&
		    buf[strlen(comm)] == '\n') {
			n++;
			kill(atoi(e->d_name), SIGTERM);
		}
		fclose(f);
	}
	if (dir)
		closedir(dir);
	return n;
}

static int kernel_log_has(const char *what)
{
	static char buf[1 << 17];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf) - 1);

	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, what) != NULL;
}

static int end_mode(void)
{
	uint64_t end = now_ms() + 600 * 1000;

	/* pvmload ends its last tick on SIGTERM (procs_named sends it). */
	while (procs_named("pvmload") && now_ms() < end)
		sleep_ms(200);
	if (param_long("pvmcheck.poweroff", 0) != 1)
		return 0;
	if (param("khyve_test.runtime"))
		while (!kernel_log_has("khyve_test: all tests done") &&
		       now_ms() < end)
			sleep_ms(1000);
	say("KHYVE-PVMCHECK end: powering off\n");
	sync();
	/* busybox init: SIGUSR2 = poweroff (shutdown actions, then off). */
	return kill(1, SIGUSR2) ? 1 : 0;
}

int main(int argc, char **argv)
{
	uint64_t entry;
	const char *e;
	int rounds;

	if (argc >= 2 && !strcmp(argv[1], "exec-child"))
		return exec_child(argc, argv);
	read_cmdline();
	say_init();
	if (argc >= 2 && !strcmp(argv[1], "end"))
		return end_mode();
	signal(SIGPIPE, SIG_IGN);
	e = param("pvmcheck.entry");
	entry = e ? strtoull(e, NULL, 0) : 0;
	rounds = (int)param_long("pvmcheck.rounds", 1);

	check_errno();
	check_enosys();
	check_segv("segv-kernel", 0xffffffff81000000ULL);
	if (entry)
		check_segv("segv-entry", entry);
	else
		say("KHYVE-PVMCHECK segv-entry skipped (no pvmcheck.entry)\n");
	check_kill_blocked("kill-read", 0);
	check_kill_blocked("kill-sleep", 1);
	for (int r = 1; r <= rounds; r++) {
		uint64_t t0 = now_ms();

		say("KHYVE-PVMCHECK round %d begin\n", r);
		for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
			char d[160] = "";

			report_area(r, areas[i].name, areas[i].fn(r, d, sizeof(d)),
				    d);
		}
		say("KHYVE-PVMCHECK round %d end %llu ms\n", r,
		       (unsigned long long)(now_ms() - t0));
	}
	say("KHYVE-PVMCHECK done rounds=%d fail=%d\n", rounds, fails);
	return fails ? 1 : 0;
}
