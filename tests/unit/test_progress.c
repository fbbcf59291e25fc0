/* SPDX-License-Identifier: BSD-2-Clause */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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

/* On a terminal: drawn after the delay, at most every 100 ms, erased. */
static void test_terminal(void)
{
	struct progress p;
	char b[512] = "";
	ssize_t n;
	int m = posix_openpt(O_RDWR | O_NOCTTY), s;

	CHECK(m >= 0);
	if (m < 0)
		return;
	CHECK_EQ(grantpt(m) | unlockpt(m), 0);
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	CHECK(s >= 0);
	setenv("KHYVE_PROGRESS_DELAY_MS", "60000", 1);
	progress_start(&p, s, "saving");
	progress_update(&p, MIB, 2 * MIB); /* before the delay: nothing */
	CHECK(!p.shown);
	setenv("KHYVE_PROGRESS_DELAY_MS", "0", 1);
	progress_start(&p, s, "saving");
	CHECK_EQ(p.fd, s);
	progress_update(&p, MIB, 2 * MIB);
	CHECK(p.shown);
	progress_update(&p, 2 * MIB, 2 * MIB); /* within 100 ms: skipped */
	progress_end(&p);
	CHECK(!p.shown);
	usleep(20000);
	n = read(m, b, sizeof(b) - 1);
	CHECK(n > 0);
	b[n > 0 ? n : 0] = '\0';
	CHECK(!strncmp(b, "\rsaving: 1/2 MiB  50%", 21));
	CHECK(strstr(b, "\033[K\r\033[K") != NULL);
	CHECK(!strstr(b, "2/2"));
	unsetenv("KHYVE_PROGRESS_DELAY_MS");
	close(s);
	close(m);
}

int main(void)
{
	RUN(test_format);
	RUN(test_not_a_terminal);
	RUN(test_terminal);
	return unit_done();
}
