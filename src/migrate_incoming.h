/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A migration's destination (`khyve --incoming ADDR`), driven by main.c:
 *
 *   migrate_in_open(&mi, cmd, &cfg, &err);  listen, accept one source,
 *                                           its HELLO checked, the machine
 *                                           config = its config rebound
 *                                           by the command line (as -r)
 *   vm_create(vm, &cfg);                    devices created paused
 *   migrate_in_accept(mi, ret, &err);       the answer: accept, or refuse
 *                                           with the creation's error
 *   migrate_in_receive(mi, vm, &err);       RAM, the state loaded
 *   ... the control socket started ...
 *   migrate_in_switch(mi, ret, &err);       "ready" (or the error), GO
 *   migrate_in_close(mi);
 *
 * Any error before GO: the source is told when it can be, and khyve
 * exits with KHYVE_EXIT_ERROR having run nothing. While one source is
 * being received, every other connection to the listener is refused with
 * a message.
 */
#ifndef KHYVE_MIGRATE_INCOMING_H
#define KHYVE_MIGRATE_INCOMING_H

#include "config.h"
#include "err.h"

struct migrate_in;
struct vm;

int migrate_in_open(struct migrate_in **mi, const struct vm_config *cmd,
		    struct vm_config *cfg, struct err *err);
/* @ret: the VM's creation (0, or -errno with @why). */
int migrate_in_accept(struct migrate_in *mi, int ret, const struct err *why,
		      struct err *err);
int migrate_in_receive(struct migrate_in *mi, struct vm *vm, struct err *err);
/* @ret: what came after the receive (0, or -errno with @why). */
int migrate_in_switch(struct migrate_in *mi, int ret, const struct err *why,
		      struct err *err);
void migrate_in_close(struct migrate_in *mi);

#endif
