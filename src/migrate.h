/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Live migration (docs/control-protocol.md "migrate", the stream in
 * docs/snapshot-format.md "Stream"). The source side (migrate.c) runs in
 * the control server's "migrate" request: pre-copy rounds while the guest
 * runs, then the guest paused, the last pages and the state sent, and,
 * once the destination has loaded them, the switch-over: the source exits
 * with KHYVE_EXIT_MIGRATED. Anything failing before it leaves the guest
 * running here. The destination side is migrate_incoming.c
 * (`khyve --incoming ADDR`).
 *
 * Addresses: tcp:HOST:PORT (HOST a name, an IPv4 address or [IPv6]),
 * unix:PATH, fd:N (a connected socket, or for --incoming a listening one,
 * handed over by a manager).
 */
#ifndef KHYVE_MIGRATE_H
#define KHYVE_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "err.h"

struct vm;

/*
 * Migrate @vm to o->to. On success the destination runs the guest and
 * this VM is stopping with KHYVE_EXIT_MIGRATED; on failure the guest runs
 * here as before (or stays paused if it was) and @err says why.
 */
int migrate_run(struct vm *vm, const struct migrate_opts *o,
		struct migrate_result *res, struct err *err);

/* A connected stream socket to @addr (tcp:, unix:, fd:). */
int migrate_connect(const char *addr, int *fd, struct err *err);
/*
 * A listening socket at @addr, or for fd:N that fd if it is a listening
 * socket (*@listener true) or else the connection itself (false). For
 * unix: the path is left in @unix_path (unlink it when done).
 */
int migrate_listen(const char *addr, int *fd, bool *listener, char *unix_path,
		   size_t pathlen, struct err *err);

#endif
