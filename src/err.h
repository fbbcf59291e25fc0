/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One error path (docs/architecture.md, "Errors"): whoever fails fills a
 * struct err with -errno and a precise message, callers on the way up may
 * prefix context, and only the edge (main, the control layer) prints it or
 * turns it into a protocol error.
 */
#ifndef KHYVE_ERR_H
#define KHYVE_ERR_H

#include <stddef.h>

#define ERR_MSG_MAX 512

struct err {
	int code; /* -errno; 0: none */
	char msg[ERR_MSG_MAX];
};

/* Clear @e (no error, empty message); NULL is allowed. */
void err_clear(struct err *e);

/*
 * Store @code and the formatted message in @e (truncated to fit) and
 * return @code, so `return err_set(e, -EINVAL, "...")` works. @e may be
 * NULL: then only @code is returned.
 */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * err_set with the code from errno and ": strerror(errno)" appended;
 * returns -errno (-EIO if errno was 0).
 */
int err_sys(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Put context in front of the message ("vCPU 0: " + msg), keeping the
 * code; the end is cut if the whole no longer fits. On an empty message
 * the context alone remains.
 */
void err_prefix(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The message, or strerror(-@e->code) if none was set. */
const char *err_msg(const struct err *e);

#endif
