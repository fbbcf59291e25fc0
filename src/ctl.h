/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Per-VM control socket server (see docs/control-protocol.md).
 *
 * khyve listens on RUNDIR/VMNAME.sock (AF_UNIX stream, mode 0600) and
 * speaks line-delimited JSON. The server owns one thread that polls the
 * listening socket and every client; it knows nothing about the VM and
 * calls back into the VMM core through struct ctl_ops. Every callback
 * runs on the server thread, one at a time, and may block (a checkpoint
 * does); other clients simply wait meanwhile.
 *
 * Callback contract: return 0 on success and, for those with @reply, set
 * *reply to a new jansson object (the server takes the reference; NULL
 * means an empty result). On failure return -errno and fill @e with a
 * one-line message (err_set; if left empty, strerror is used). The errno
 * picks the error code the client sees:
 *   -EINVAL, -ERANGE          bad_request       (bad argument value)
 *   -EBUSY, -EALREADY         invalid_state     ("pause first")
 *   -ENOSYS, -EOPNOTSUPP      not_implemented
 *   -EPERM, -EACCES           permission_denied
 *   anything else             failed
 * A NULL callback answers not_implemented.
 *
 * checkpoint is the exception: the server parses its arguments into a
 * struct checkpoint_opts first (every key and type checked), so a
 * -EINVAL/-ERANGE it returns is about the state being saved (a device's,
 * the guest's, KVM's), not the request, and answers "failed" ("internal
 * error: ..."), never bad_request.
 *
 * Callbacks must not call ctl_server_stop() (it joins the server thread);
 * poweroff should request the shutdown and return, and the VMM's main
 * thread stops the server afterwards.
 */
#ifndef KHYVE_CTL_H
#define KHYVE_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "err.h"

#define CTL_PROTOCOL	   1
#define CTL_DEFAULT_RUNDIR "/run/khyve"
#define CTL_VMNAME_MAX	   64
#define CTL_MAX_CLIENTS	   128		 /* connections served at once */
#define CTL_MAX_LINE	   (1024 * 1024) /* request line, without newline */
#define CTL_MAX_OUTPUT	   (4096 * 1024) /* unsent replies per client */
#define CTL_IDLE_MS	   10000 /* a client without a request: closed */

struct ctl_ops {
	/* result: {"state": "running"|"paused"|..., anything else} */
	int (*status)(void *opaque, json_t **reply, struct err *e);
	int (*pause)(void *opaque, struct err *e);
	int (*resume)(void *opaque, struct err *e);
	int (*poweroff)(void *opaque, bool force, struct err *e);
	int (*reset)(void *opaque, struct err *e);
	/* Registers of @vcpu; -EBUSY if the VM must be paused first. */
	int (*regs)(void *opaque, int vcpu, bool msrs, json_t **reply,
		    struct err *e);
	int (*stats)(void *opaque, json_t **reply, struct err *e);
	/*
	 * checkpoint and suspend (@o->suspend): the request parsed, "file"
	 * a non-empty string, "live" and "fsync" (default true) and
	 * "progress" (o->progress is ctl_progress if true, else NULL).
	 */
	int (*checkpoint)(void *opaque, const struct checkpoint_opts *o,
			  json_t **reply, struct err *e);
	/*
	 * migrate: the request parsed ("to" a non-empty string, the knobs
	 * checked, o->progress ctl_progress if asked). -EINVAL/-ERANGE
	 * answer "failed", as for checkpoint.
	 */
	int (*migrate)(void *opaque, const struct migrate_opts *o,
		       json_t **reply, struct err *e);
};

/* Where to listen (vmname is required) and optional knobs; zero fields
 * take the defaults above. */
struct ctl_params {
	const char *rundir; /* NULL: ctl_default_rundir() */
	const char *vmname;
	unsigned max_clients;
	size_t max_line;
	size_t max_output;
	unsigned idle_ms; /* without a complete request: closed */
};

struct ctl_server;

/*
 * Create RUNDIR (0700) if missing, take RUNDIR/VMNAME.lock (flock; it
 * holds our pid), replace a stale socket left by a crashed khyve, bind
 * and listen on RUNDIR/VMNAME.sock (0600) and start the server thread.
 * Fails with -EADDRINUSE and "VM 'x' is already running (pid N, socket
 * P)" if another khyve owns the name; -EINVAL for an invalid name;
 * -EPERM for a RUNDIR another user owns or others may write to, or a
 * lock file that is a symbolic link, not a regular file, has other
 * links or another owner (nothing in it is then followed or changed).
 */
int ctl_server_start(struct ctl_server **s, const struct ctl_params *p,
		     const struct ctl_ops *ops, void *opaque, struct err *e);
/*
 * Stop the thread (waiting for a callback in progress to return), close
 * clients, remove the socket and lock file. NULL is a no-op.
 */
void ctl_server_stop(struct ctl_server *s);
const char *ctl_server_socket_path(const struct ctl_server *s);

/* $KHYVE_RUNDIR if set and non-empty, else /run/khyve. */
const char *ctl_default_rundir(void);
/* [A-Za-z0-9._-], 1..64 characters, not starting with '.'. */
bool ctl_vmname_valid(const char *name);
/* RUNDIR/VMNAME.sock into @buf; -ENAMETOOLONG if it does not fit. */
int ctl_socket_path(char *buf, size_t len, const char *rundir,
		    const char *vmname);
/*
 * From inside a checkpoint/suspend callback: @done of @total bytes saved.
 * Sent as {"id":..,"progress":{"done":N,"total":M}} before the reply if
 * the request had "progress": true, at most every 100 ms, dropped when
 * the client is behind; a no-op anywhere else (any thread).
 */
void ctl_progress(uint64_t done, uint64_t total);
/* Map a callback's -errno to the protocol error code string. */
const char *ctl_errno_code(int rc);

#endif
