/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A minimal unit-test harness. Each test file:
 *
 *   #include "unit.h"
 *   static void test_foo(void) { CHECK(1 + 1 == 2); CHECK_EQ(x, 3); }
 *   int main(void) { RUN(test_foo); return unit_done(); }
 *
 * unit_done() prints "N passed, N failed" (checks, not tests) and returns
 * the exit status.
 */
#ifndef KHYVE_UNIT_H
#define KHYVE_UNIT_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static unsigned unit_passed, unit_failed;
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

#define RUN(fn)                     \
	do {                        \
		unit_current = #fn; \
		fn();               \
	} while (0)

static inline int unit_done(void)
{
	printf("%u passed, %u failed\n", unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}

#endif
