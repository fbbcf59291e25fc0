/* SPDX-License-Identifier: BSD-2-Clause */
/* Terminal progress line: see progress.h. */
#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

size_t progress_format(char *buf, size_t len, const char *what, uint64_t done,
		       uint64_t total, double secs)
{
	const double mib = 1024.0 * 1024.0;
	size_t n = 0;
	int w;

	if (!len)
		return 0;
	if (total && done > total)
		done = total;
	w = total ? snprintf(buf, len, "%s: %.0f/%.0f MiB %3u%%", what,
			     done / mib, total / mib,
			     (unsigned)(done * 100 / total))
		  : snprintf(buf, len, "%s: %.0f MiB", what, done / mib);
	if (w > 0)
		n = MIN((size_t)w, len - 1);
	if (secs > 0 && n < len - 1) {
		w = snprintf(buf + n, len - n, " %.0f MiB/s",
			     done / mib / secs);
		if (w > 0)
			n += MIN((size_t)w, len - n - 1);
	}
	return n;
}

static void put(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* a progress line is not worth failing over */
		s += w;
		n -= (size_t)w;
	}
}

void progress_start(struct progress *p, int fd, const char *what)
{
	const char *env = getenv("KHYVE_PROGRESS_DELAY_MS");

	memset(p, 0, sizeof(*p));
	snprintf(p->what, sizeof(p->what), "%s", what);
	p->fd = fd >= 0 && isatty(fd) ? fd : -1;
	p->delay_ms = env && *env ? (unsigned)strtoul(env, NULL, 10)
				  : PROGRESS_DELAY_MS;
	p->t0_ns = now_ns();
}

void progress_update(struct progress *p, uint64_t done, uint64_t total)
{
	/* "\r" + line + erase to the end of line (ESC [ K) */
	char line[160];
	uint64_t t = now_ns();
	size_t n;

	if (p->fd < 0 || t - p->t0_ns < (uint64_t)p->delay_ms * 1000000ULL ||
	    (p->shown && t - p->last_ns < PROGRESS_EVERY_MS * 1000000ULL))
		return;
	line[0] = '\r';
	n = 1 + progress_format(line + 1, sizeof(line) - 4, p->what, done,
				total, (double)(t - p->t0_ns) / 1e9);
	memcpy(line + n, "\033[K", 3);
	put(p->fd, line, n + 3);
	p->shown = true;
	p->last_ns = t;
}

void progress_end(struct progress *p)
{
	if (p->fd >= 0 && p->shown)
		put(p->fd, "\r\033[K", 4);
	p->shown = false;
}
