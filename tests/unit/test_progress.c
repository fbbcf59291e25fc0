/* SPDX-License-Identifier: BSD-2-Clause */
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"
#include "unit.h"

#define MIB (1024ULL * 1024)

static void test_format(void)
{
	char b[128];

	CHECK_EQ(progress_format(b, sizeof(b), "saving a.snap", 412 * MIB,
				 1024 * MIB, 2.0),
		 strlen(b));
	CHECK(!strcmp(b, "saving a.snap: 412/1024 MiB  40% 206 MiB/s"));
	/* no rate before any time has passed; done is capped at total */
	progress_format(b, sizeof(b), "x", 2048 * MIB, 1024 * MIB, 0);
	CHECK(!strcmp(b, "x: 1024/1024 MiB 100%"));
	/* unknown total: no percentage */
	progress_format(b, sizeof(b), "x", 3 * MIB, 0, 1.0);
	CHECK(!strcmp(b, "x: 3 MiB 3 MiB/s"));
	/* truncated to the buffer, always terminated */
	CHECK_EQ(progress_format(b, 8, "restoring", MIB, 2 * MIB, 1.0), 7);
	CHECK(!strcmp(b, "restori"));
	CHECK_EQ(progress_format(b, 0, "x", 1, 2, 1.0), 0);
}

/* Nothing at all on a pipe: the line is for terminals only. */
static void test_not_a_terminal(void)
{
	struct progress p;
	char b[64];
	int fds[2];

	CHECK_EQ(pipe(fds), 0);
	setenv("KHYVE_PROGRESS_DELAY_MS", "0", 1);
	progress_start(&p, fds[1], "saving");
	CHECK_EQ(p.fd, -1);
	progress_update(&p, MIB, 2 * MIB);
	progress_end(&p);
	close(fds[1]);
	CHECK_EQ(read(fds[0], b, sizeof(b)), 0);
	close(fds[0]);
}

/* A pseudo-terminal pair, or false. */
static bool pty_open(int *m, int *s)
{
	*m = posix_openpt(O_RDWR | O_NOCTTY);
	*s = -1;
	if (*m < 0)
		return false;
	if (grantpt(*m) | unlockpt(*m) ||
	    (*s = open(ptsname(*m), O_RDWR | O_NOCTTY)) < 0) {
		close(*m);
		return false;
	}
	return true;
}

/*
 * What reached the terminal, up to and including @until (the erase that
 * ends every test here). Output reaches the master side through a kernel
 * work item, not at once: wait for it, never sleep and hope.
 */
static size_t pty_read_until(int m, char *b, size_t len, const char *until)
{
	uint64_t end = unit_now_ms() + UNIT_WAIT_S * 1000;
	size_t got = 0;

	b[0] = '\0';
	while (got + 1 < len && unit_now_ms() < end) {
		struct pollfd pf = {.fd = m, .events = POLLIN};
		ssize_t n;

		if (got >= strlen(until) &&
		    !memcmp(b + got - strlen(until), until, strlen(until)))
			break;
		if (poll(&pf, 1, 10) != 1)
			continue;
		n = read(m, b + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		b[got] = '\0';
	}
	return got;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The lines drawn in @b ("\rsaving: ..."), and whether it ends erased. */
static unsigned lines_drawn(const char *b)
{
	unsigned n = 0;

	for (const char *q = strstr(b, "\rsaving: "); q;
	     q = strstr(q + 1, "\rsaving: "))
		n++;
	return n;
}

static bool ends_erased(const char *b)
{
	size_t l = strlen(b);

	return l >= 7 && !strcmp(b + l - 7, "\033[K\r\033[K");
}

#define EVERY_NS (PROGRESS_EVERY_MS * 1000000ULL)

/* On a terminal: drawn after the delay, then erased. */
static void test_terminal(void)
{
	struct progress p;
	char b[512];
	int m, s;

	if (!pty_open(&m, &s)) {
		SKIP("no pseudo-terminal: %s", strerror(errno));
		return;
	}
	setenv("KHYVE_PROGRESS_DELAY_MS", "60000", 1);
	progress_start(&p, s, "saving");
	progress_update(&p, MIB, 2 * MIB); /* before the delay: nothing */
	CHECK(!p.shown);
	setenv("KHYVE_PROGRESS_DELAY_MS", "0", 1);
	progress_start(&p, s, "saving");
	CHECK_EQ(p.fd, s);
	progress_update(&p, MIB, 2 * MIB);
	CHECK(p.shown);
	progress_end(&p);
	CHECK(!p.shown);
	pty_read_until(m, b, sizeof(b), "\r\033[K");
	CHECK(!strncmp(b, "\rsaving: 1/2 MiB  50%", 21));
	CHECK_EQ(lines_drawn(b), 1);
	CHECK(ends_erased(b));
	unsetenv("KHYVE_PROGRESS_DELAY_MS");
	close(s);
	close(m);
}

/*
 * At most one redraw every PROGRESS_EVERY_MS, judged against this test's
 * own reading of the clock progress.c uses (CLOCK_MONOTONIC), not against
 * a sleep assumed short or long enough: an update that came within the
 * interval of the last drawn one is skipped, one that came after it is
 * drawn. On a loaded machine the test may be descheduled between the two
 * updates; then the pair does not test the "within" case and is tried
 * again.
 */
static void test_throttle(void)
{
	struct progress p;
	char b[512];
	uint64_t t1 = 0, after = 0;
	unsigned tries = 0;
	int m = -1, s = -1;

	setenv("KHYVE_PROGRESS_DELAY_MS", "0", 1);
	do {
		if (m >= 0) {
			close(s);
			close(m);
		}
		if (!pty_open(&m, &s)) {
			SKIP("no pseudo-terminal: %s", strerror(errno));
			unsetenv("KHYVE_PROGRESS_DELAY_MS");
			return;
		}
		progress_start(&p, s, "saving");
		progress_update(&p, MIB, 2 * MIB);
		t1 = p.last_ns; /* when it was drawn */
		progress_update(&p, 2 * MIB, 2 * MIB);
		after = mono_ns();
	} while (after - t1 >= EVERY_NS && ++tries < 50);
	CHECK(after - t1 < EVERY_NS); /* not 50 times descheduled for 100 ms */
	CHECK_EQ(p.last_ns, t1);	 /* within the interval: not redrawn */
	progress_end(&p);
	pty_read_until(m, b, sizeof(b), "\r\033[K");
	CHECK(!strncmp(b, "\rsaving: 1/2 MiB  50%", 21));
	CHECK_EQ(lines_drawn(b), 1); /* no 2/2 */
	CHECK(ends_erased(b));
	close(s);
	close(m);

	/* After the interval (by this test's clock): drawn again. */
	CHECK(pty_open(&m, &s));
	progress_start(&p, s, "saving");
	progress_update(&p, MIB, 2 * MIB);
	t1 = p.last_ns;
	while (mono_ns() - t1 < EVERY_NS)
		usleep(10000);
	progress_update(&p, 2 * MIB, 2 * MIB);
	CHECK(p.last_ns - t1 >= EVERY_NS);
	progress_end(&p);
	pty_read_until(m, b, sizeof(b), "\033[K\r\033[K");
	CHECK(!strncmp(b, "\rsaving: 1/2 MiB  50%", 21));
	CHECK(strstr(b, "\033[K\rsaving: 2/2 MiB 100%") != NULL);
	CHECK_EQ(lines_drawn(b), 2);
	CHECK(ends_erased(b));
	unsetenv("KHYVE_PROGRESS_DELAY_MS");
	close(s);
	close(m);
}

int main(void)
{
	RUN(test_format);
	RUN(test_not_a_terminal);
	RUN(test_terminal);
	RUN(test_throttle);
	return unit_done();
}
