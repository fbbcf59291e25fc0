/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Client side of the control protocol (docs/control-protocol.md): connect
 * to RUNDIR/VMNAME.sock, read the greeting, send requests and wait for
 * the reply with the matching id. Used by khyvectl and the unit tests.
 */
#ifndef KHYVE_CTL_CLIENT_H
#define KHYVE_CTL_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ctl_conn;

/*
 * Connect and read the greeting. @timeout_ms bounds every wait for the
 * server (0: wait forever). Errors name the problem in @e:
 *   -EINVAL        invalid VM name
 *   -ENOENT        "no VM 'x' (looked for PATH)"
 *   -ECONNREFUSED  stale socket: "VM 'x' is not running (stale socket PATH)"
 *   -EACCES        refused by permissions or the server's peer check
 *   -EPROTO        the greeting is not a khyve protocol 1 greeting
 *   -ETIMEDOUT     no greeting in time
 */
int ctl_client_open(struct ctl_conn **c, const char *rundir, const char *vm,
		    int timeout_ms, struct err *e);
void ctl_client_close(struct ctl_conn *c);
/* The "khyve" object of the greeting (version, protocol, vm, pid). */
const json_t *ctl_client_greeting(const struct ctl_conn *c);

/*
 * Send {"id": N, "cmd": @cmd, "args": @args} (@args borrowed, may be
 * NULL) and wait for the reply. Returns 0 and a new reference in *result,
 * -EPROTO for an error reply (its code in @code, message in @e), or
 * another -errno when the connection failed (message in @e).
 */
int ctl_client_call(struct ctl_conn *c, const char *cmd, const json_t *args,
		    json_t **result, char *code, size_t codelen, struct err *e);
/*
 * The same; {"id": N, "progress": {"done": D, "total": T}} lines before
 * the reply (a checkpoint sent with "progress": true) go to @fn.
 */
int ctl_client_call_progress(
	struct ctl_conn *c, const char *cmd, const json_t *args,
	void (*fn)(void *opaque, uint64_t done, uint64_t total), void *opaque,
	json_t **result, char *code, size_t codelen, struct err *e);

#endif
