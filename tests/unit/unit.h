/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A minimal unit-test harness. Each test file:
 *
 *   #include "unit.h"
 *   static void test_foo(void) { CHECK(1 + 1 == 2); CHECK_EQ(x, 3); }
 *   int main(void) { RUN(test_foo); return unit_done(); }
 *
 * unit_done() prints "N passed, N failed, N skipped" (checks, not tests;
 * skips count tests or parts of tests) and returns the exit status.
 *
 * A test that cannot run here says why and returns:
 *
 *   if (no_tap) { SKIP("no /dev/net/tun: %s", strerror(errno)); return; }
 *
 * Only a missing prerequisite of the host is a reason to skip; anything
 * else that goes wrong is a failure. tests/run-unit.sh prints every SKIP
 * line and sums the counts.
 *
 * An event another thread delivers is waited for, never assumed to have
 * happened after a sleep (the machine may be loaded):
 *
 *   CHECK(WAIT_UNTIL(used_idx(q) == 1, UNIT_WAIT_S));
 */
#ifndef KHYVE_UNIT_H
#define KHYVE_UNIT_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

static unsigned unit_passed, unit_failed, unit_skipped;
static const char *unit_current;

#define CHECK(cond)                                                        \
	do {                                                               \
		if (cond) {                                                \
			unit_passed++;                                     \
		} else {                                                   \
			unit_failed++;                                     \
			fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n",   \
				__FILE__, __LINE__, unit_current, #cond);  \
		}                                                          \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		uint64_t unit_a_ = (uint64_t)(a), unit_b_ = (uint64_t)(b);   \
		if (unit_a_ == unit_b_) {                                    \
			unit_passed++;                                       \
		} else {                                                     \
			unit_failed++;                                       \
			fprintf(stderr,                                      \
				"%s:%d: %s: %s == %s failed: 0x%" PRIx64     \
				" != 0x%" PRIx64 "\n",                       \
				__FILE__, __LINE__, unit_current, #a, #b,    \
				unit_a_, unit_b_);                           \
		}                                                            \
	} while (0)

/* One line per skip, on stdout, so run-unit.sh can show it. */
#define SKIP(...)                                                   \
	do {                                                        \
		unit_skipped++;                                     \
		printf("SKIP: %s: ", unit_current);                 \
		printf(__VA_ARGS__);                                \
		printf("\n");                                       \
		fflush(stdout);                                     \
	} while (0)

/* Monotonic milliseconds, for deadlines. */
static inline uint64_t unit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A bound for waits that only a broken device (or a hung one) reaches. */
#define UNIT_WAIT_S 30

/*
 * WAIT_UNTIL(cond, secs): polls @cond every millisecond until it holds or
 * @secs seconds have passed; evaluates to its last value (1 or 0).
 */
#define WAIT_UNTIL(cond, secs)                                              \
	({                                                                  \
		uint64_t unit_end_ = unit_now_ms() + (uint64_t)(secs) * 1000; \
		int unit_ok_;                                               \
		while (!(unit_ok_ = !!(cond)) && unit_now_ms() < unit_end_) \
			nanosleep(&(struct timespec){0, 1000000}, NULL);    \
		unit_ok_;                                                   \
	})

#define RUN(fn)                     \
	do {                        \
		unit_current = #fn; \
		fn();               \
	} while (0)

static inline int unit_done(void)
{
	printf("%u passed, %u failed, %u skipped\n", unit_passed, unit_failed,
	       unit_skipped);
	/*
	 * Out now: LeakSanitizer's exit-time report ends the process with
	 * _exit(), which would drop a buffered summary and hide the leak
	 * behind "no summary line".
	 */
	fflush(stdout);
	return unit_failed ? 1 : 0;
}

#endif
