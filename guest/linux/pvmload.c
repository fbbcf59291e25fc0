/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pvmload: a user-space workload for snapshot tests that judges itself,
 * started by the test rootfs's init ("pvmload spawn" forks it into the
 * background). It runs only when the kernel command line has
 * pvmload.server=IP:PORT (the test's line-echo server on the host side
 * of the TAP); otherwise it exits at once.
 *
 * It holds, for its whole life:
 *   memory  pvmload.mem_mb MiB (default 4) filled once with splitmix64 of
 *           each word's index; every tick all of it is compared with the
 *           pattern regenerated, and its checksum printed (constant);
 *   a file  /khyve/pvmload.log (or pvmload.file=PATH), opened once, one
 *           64-byte record appended and fdatasync'd per tick; every tick
 *           the whole file is read back through a second descriptor and
 *           every record checked (its sequence number in place, its own
 *           checksum right);
 *   a TCP   connection to the server, opened once: per tick one line
 *           "pvmload SEQ ..." whose answer must be "ECHO SEQ+1 <the line
 *           reversed>" (the server numbers the lines of a connection, so
 *           a new connection or a lost line shows).
 * Each tick (about pvmload.interval_ms, default 1000) prints (to the
 * kernel log with printk.devkmsg=on, else stdout)
 *   KHYVE-LOAD tick=N mem=ok|BAD sum=HEX file=ok|BAD fseq=N tcp=ok|BAD tseq=N
 * On SIGTERM ("pvmcheck end") it finishes the tick it is in, closes the
 * connection and the file and prints "KHYVE-LOAD done ticks=N bad=B".
 * A failure is reported, never repaired: a broken connection stays
 * broken (tcp=BAD every tick after).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOG_PATH_DEFAULT "/khyve/pvmload.log"
#define REC_LEN 64

static volatile sig_atomic_t stop;
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

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
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

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Every word against the pattern; the FNV-style sum of all words. */
static int mem_check(const uint64_t *w, size_t n, uint64_t *sum)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	int ok = 1;

	for (size_t i = 0; i < n; i++) {
		ok &= w[i] == splitmix64(i);
		h = (h ^ w[i]) * 0x100000001b3ULL;
	}
	*sum = h;
	return ok;
}

static uint32_t rec_sum(uint32_t seq)
{
	return (uint32_t)splitmix64(0x6b687976ULL ^ seq);
}

static void make_record(char *rec, uint32_t seq)
{
	int n = snprintf(rec, REC_LEN, "seq %010u sum %08x ", seq,
			 rec_sum(seq));

	memset(rec + n, '.', (size_t)(REC_LEN - 1 - n));
	rec[REC_LEN - 1] = '\n';
}

/* Appends record @seq, syncs, then checks records 0..seq from disk. */
static int file_tick(int wfd, const char *path, uint32_t seq)
{
	static char buf[1 << 20];
	char rec[REC_LEN];
	size_t want = (size_t)(seq + 1) * REC_LEN;
	ssize_t got = 0;
	int rfd, ok;

	make_record(rec, seq);
	if (write(wfd, rec, REC_LEN) != REC_LEN || fdatasync(wfd))
		return 0;
	if (want > sizeof(buf))
		return 0;
	rfd = open(path, O_RDONLY);
	if (rfd < 0)
		return 0;
	while ((size_t)got < want) {
		ssize_t r = pread(rfd, buf + got, want - (size_t)got, got);

		if (r <= 0)
			break;
		got += r;
	}
	ok = (size_t)got == want && lseek(rfd, 0, SEEK_END) == (off_t)want;
	close(rfd);
	for (uint32_t i = 0; ok && i <= seq; i++) {
		make_record(rec, i);
		ok = !memcmp(buf + (size_t)i * REC_LEN, rec, REC_LEN);
	}
	return ok;
}

static int tcp_connect(const char *spec)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	size_t iplen = strcspn(spec, ":");
	char ip[32];
	int fd;

	if (spec[iplen] != ':' || iplen >= sizeof(ip))
		return -1;
	memcpy(ip, spec, iplen);
	ip[iplen] = 0;
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return -1;
	sa.sin_port = htons((uint16_t)atoi(spec + iplen + 1));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	/* The link may still be coming up: 30 tries, a second apart. */
	for (int i = 0; i < 30; i++) {
		struct timespec ts = {1, 0};

		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		if (errno != ECONNREFUSED && errno != ENETUNREACH &&
		    errno != EHOSTUNREACH && errno != ETIMEDOUT)
			break;
		nanosleep(&ts, NULL);
	}
	close(fd);
	return -1;
}

/* One exchange: line @seq out, its reversed echo numbered seq+1 back. */
static int tcp_tick(int fd, uint32_t seq)
{
	char line[128], want[160], got[160];
	size_t len = 0;
	int n, w;
	uint64_t end = now_ms() + 30000;

	if (fd < 0)
		return 0;
	n = snprintf(line, sizeof(line), "pvmload %u %016llx", seq,
		     (unsigned long long)splitmix64(seq));
	w = snprintf(want, sizeof(want), "ECHO %u ", seq + 1);
	for (int k = n - 1; k >= 0; k--)
		want[w++] = line[k];
	want[w] = 0;
	line[n++] = '\n';
	if (write(fd, line, (size_t)n) != n)
		return 0;
	/*
	 * 30 s: the connection must survive a suspend, not a long outage.
	 * Whatever has arrived is read at once (a system call per byte is
	 * slow on kvm_pvm); the server answers one line per line sent.
	 */
	while (len + 1 < sizeof(got)) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(end - now_ms());
		ssize_t r;
		char *nl;

		if (left <= 0)
			return 0;
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		r = read(fd, got + len, sizeof(got) - 1 - len);
		if (r <= 0)
			return 0;
		len += (size_t)r;
		nl = memchr(got, '\n', len);
		if (nl) {
			*nl = 0;
			return !strcmp(got, want);
		}
	}
	return 0;
}

static int run(void)
{
	const char *srv = param("pvmload.server");
	size_t mb = (size_t)param_long("pvmload.mem_mb", 4);
	long interval = param_long("pvmload.interval_ms", 1000);
	size_t nwords = (mb << 20) / sizeof(uint64_t);
	struct sigaction sa = {.sa_handler = on_term, .sa_flags = SA_RESTART};
	const char *file = param("pvmload.file");
	char spec[64], path[256];
	uint64_t *mem, sum0 = 0, sum;
	uint32_t tick = 0, bad = 0, tseq = 0;
	int wfd, sfd, tcp_ok = 1;

	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	snprintf(spec, sizeof(spec), "%.*s", (int)strcspn(srv, " "), srv);
	if (file)
		snprintf(path, sizeof(path), "%.*s", (int)strcspn(file, " "), file);
	else
		snprintf(path, sizeof(path), "%s", LOG_PATH_DEFAULT);
	mem = mmap(NULL, mb << 20, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		say("KHYVE-LOAD BAD cannot map %zu MiB\n", mb);
		return 1;
	}
	for (size_t i = 0; i < nwords; i++)
		mem[i] = splitmix64(i);
	mem_check(mem, nwords, &sum0);
	wfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	sfd = tcp_connect(spec);
	say("KHYVE-LOAD start mem_mb=%zu sum=%016llx file=%s server=%s "
	       "connected=%d\n", mb, (unsigned long long)sum0,
	       wfd >= 0 ? "open" : "BAD", spec, sfd >= 0);
	while (1) {
		int last = stop, mem_ok, file_ok;
		struct timespec ts = {interval / 1000,
				      interval % 1000 * 1000000};

		mem_ok = mem_check(mem, nwords, &sum) && sum == sum0;
		file_ok = wfd >= 0 && file_tick(wfd, path, tick);
		/* Once broken, stays broken: no silent reconnect. */
		tcp_ok = tcp_ok && tcp_tick(sfd, tseq);
		if (tcp_ok)
			tseq++;
		bad += !mem_ok + !file_ok + !tcp_ok;
		say("KHYVE-LOAD tick=%u mem=%s sum=%016llx file=%s "
		       "fseq=%u tcp=%s tseq=%u\n", tick, mem_ok ? "ok" : "BAD",
		       (unsigned long long)sum, file_ok ? "ok" : "BAD", tick,
		       tcp_ok ? "ok" : "BAD", tseq);
		tick++;
		if (last || stop)
			break;
		nanosleep(&ts, NULL); /* SIGTERM cuts it short: one more tick */
	}
	if (sfd >= 0)
		close(sfd);
	if (wfd >= 0)
		close(wfd);
	say("KHYVE-LOAD done ticks=%u bad=%u\n", tick, bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	/* KHYVE_CMDLINE stands in for the kernel's, to try it on a host. */
	FILE *f = getenv("KHYVE_CMDLINE") ? NULL : fopen("/proc/cmdline", "r");
	pid_t p;

	if (getenv("KHYVE_CMDLINE"))
		snprintf(cmdline, sizeof(cmdline), "%s", getenv("KHYVE_CMDLINE"));
	if (f) {
		if (!fgets(cmdline, sizeof(cmdline), f))
			cmdline[0] = 0;
		fclose(f);
	}
	cmdline[strcspn(cmdline, "\n")] = 0;
	if (!param("pvmload.server"))
		return 0;
	say_init();
	if (argc < 2 || strcmp(argv[1], "spawn"))
		return run();
	/* init waits for this process; the workload goes on without it. */
	p = fork();
	if (p == 0) {
		setsid();
		return run();
	}
	return p > 0 ? 0 : 1;
}
