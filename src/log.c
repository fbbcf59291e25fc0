/* SPDX-License-Identifier: BSD-2-Clause */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level = LOG_WARN;
static const char *log_prog = "khyve";
static int log_fd = 2; /* stderr, or log_set_file's */

void log_set_level(enum log_level lvl)
{
	log_level = lvl;
}

int log_set_file(const char *path)
{
	int fd = open(path,
		      O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC,
		      0600);
	int old;

	if (fd < 0)
		return -errno;
	old = __atomic_exchange_n(&log_fd, fd, __ATOMIC_SEQ_CST);
	/* A line being written to the old file may still need it: keep
	 * stderr, close only a previous log file. */
	if (old != 2)
		close(old);
	return 0;
}

void log_set_prog(const char *prog)
{
	log_prog = prog;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info",
					    "debug"};
	char buf[1024], line[1200];
	va_list ap;
	int n;

	if (lvl > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One write per line so lines from several threads never interleave. */
	n = snprintf(line, sizeof(line), "%s: %s: %s\n", log_prog, names[lvl],
		     buf);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (n > 0 && write(__atomic_load_n(&log_fd, __ATOMIC_SEQ_CST), line,
			   (size_t)n)) {
		/* nowhere to report a failed log write */
	}
}

bool log_rl_allow(struct log_rl *rl, unsigned *suppressed)
{
	struct timespec ts;
	uint64_t t;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (rl->last_ns && t - rl->last_ns < 1000000000ULL) {
		rl->suppressed++;
		return false;
	}
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	rl->last_ns = t;
	return true;
}
