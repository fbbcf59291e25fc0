/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Console back-ends a UART (or any byte-stream device) is attached to.
 *
 * Specs accepted by chardev_open() (bhyve's "-l com1,stdio" gives "stdio"):
 *   "stdio"          stdin in raw mode (if a tty) for input, stdout for output
 *   "file:PATH"      output truncates PATH; no input
 *   "append:PATH"    output appended to PATH; no input
 *   "socket:PATH"    listening UNIX stream socket, one client at a time;
 *                    output is dropped (and counted) while nobody is connected.
 *                    A socket already at PATH is replaced only if stale
 *                    (connect() refused); a live one fails with -EADDRINUSE
 *   "null"           output discarded, no input
 *
 * Output never blocks the caller (a vCPU) for long: stdio waits at most
 * CHARDEV_STDIO_WAIT_MS for stdout to become writable and then drops; the
 * socket client is non-blocking and what does not fit into its socket buffer
 * is dropped. Dropped bytes are counted (chardev_get_stats()).
 *
 * Threads: chardev_write() (vCPU threads) and chardev_read() (I/O thread) may
 * run concurrently; open/close must not race with either.
 */
#ifndef KHYVE_CHARDEV_H
#define KHYVE_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Longest stdio stall before output is dropped instead (see above). */
#define CHARDEV_STDIO_WAIT_MS 100

struct chardev;

struct chardev_stats {
	uint64_t written; /* bytes handed to the sink */
	uint64_t dropped; /* bytes discarded: no client, sink full/stalled */
	uint64_t read;	  /* bytes of input returned by chardev_read() */
	uint64_t clients; /* socket connections accepted */
};

/*
 * Parse @spec and open the back-end. On failure returns -errno, *c is NULL
 * and @err (if non-NULL) holds one line naming the problem.
 *
 * @flags is 0 for a back-end named by the command line. CHARDEV_NO_CREATE
 * is for one named by a snapshot (docs/security.md): a file: or append:
 * back-end must exist and is appended to (never created nor truncated,
 * never waited on if it is a FIFO without a reader), and a socket:
 * back-end is refused (binding it would create the path).
 */
#define CHARDEV_NO_CREATE 0x1
int chardev_open(struct chardev **c, const char *spec, unsigned flags,
		 struct err *err);
/*
 * Wrap existing descriptors (either may be -1). Used for pipes in tests and
 * by callers that set up their own plumbing; the fds are not closed by
 * chardev_close() unless @owns_fds.
 */
int chardev_open_fds(struct chardev **c, int in_fd, int out_fd, bool owns_fds);
/*
 * Send @len bytes of guest output. Returns @len (bytes written or dropped;
 * see stats) or -errno on a hard error. Never blocks for long.
 */
ssize_t chardev_write(struct chardev *c, const void *buf, size_t len);
/*
 * An fd to poll for POLLIN in the event loop, stable for the life of the
 * chardev (for sockets it covers both new connections and client data);
 * -1 if this back-end has no input, or no more (after EOF on stdio or an
 * fd: ask again after each read).
 */
int chardev_input_fd(const struct chardev *c);
/*
 * Read available input without blocking. Returns bytes read (> 0), 0 if
 * nothing is available right now (a client connected or left, spurious
 * wakeup), -EPIPE once input has ended for good (stdin EOF: stop polling),
 * or another -errno.
 */
ssize_t chardev_read(struct chardev *c, void *buf, size_t len);
void chardev_get_stats(struct chardev *c, struct chardev_stats *st);
/*
 * Would output reach someone now? False only for a socket with no client
 * (connections are accepted inside chardev_read()), so a device can hold
 * output back for the next client instead of dropping it.
 */
bool chardev_connected(struct chardev *c);
/* The spec's kind: "stdio", "file", "socket", "null" or "fd". */
const char *chardev_kind(const struct chardev *c);
/*
 * Restores the terminal (stdio), removes the socket path (if it is still
 * the socket we bound), frees @c.
 */
void chardev_close(struct chardev *c);

/*
 * Put every terminal a stdio chardev switched to raw mode back the way it
 * was. Async-signal-safe (only tcsetattr() on pre-saved state), so fatal
 * signal handlers may call it; it is also registered with atexit() when
 * the first stdio chardev opens.
 */
void chardev_restore_all(void);
/*
 * Optional: install handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT
 * that call chardev_restore_all() and re-raise with the default action.
 */
int chardev_install_fatal_handlers(void);

#endif
