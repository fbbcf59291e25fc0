/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Firecracker's REST API (HTTP/1.1, JSON bodies, a UNIX socket), for
 * `khyve --api-sock PATH`: orchestrators built on Firecracker configure,
 * start, pause, snapshot and restore khyve through it
 * (docs/firecracker-api.md).
 *
 * The API only builds what the command line builds: a struct vm_config
 * (pre-boot calls), and for a snapshot load the same `-r` configuration.
 * The VM itself is set up by main.c's one path, on the main thread: an
 * InstanceStart or snapshot/load hands main a configuration
 * (fc_api_wait_boot), main reports how the boot went (fc_api_booted) and
 * the HTTP request is answered only then. Post-boot calls (pause,
 * resume, snapshot/create) run on the HTTP thread, on the running VM.
 */
#ifndef KHYVE_FC_API_H
#define KHYVE_FC_API_H

#include <signal.h>
#include <stdbool.h>

#include "config.h"
#include "err.h"

struct fc_api;
struct vm;

/*
 * Listen on base->api_sock (created; an existing socket file is
 * replaced) and serve requests on a thread of the HTTP library. @base
 * (the command line: console, rundir, id, verbosity) is copied: the
 * pre-boot configuration starts from it.
 */
int fc_api_start(struct fc_api **out, const struct vm_config *base,
		 struct err *e);
/*
 * Main thread: wait for InstanceStart or snapshot/load. 0 with the
 * configuration to run in @cfg (the caller's, to free; cfg->restore set
 * for a load) and whether the VM starts paused; -EINTR if a signal of
 * @sigs (blocked) came first.
 */
int fc_api_wait_boot(struct fc_api *a, const sigset_t *sigs,
		     struct vm_config *cfg, bool *paused);
/*
 * Main thread: the VM asked for runs (@vm, @ret 0) or could not be
 * started (@ret, @e: the request's 400, and the API is pre-boot again).
 */
void fc_api_booted(struct fc_api *a, struct vm *vm, int ret,
		   const struct err *e);
/* The VM is going away: post-boot calls are refused from now on. */
void fc_api_detach(struct fc_api *a);
/* Stop serving, remove the socket file, free. */
void fc_api_stop(struct fc_api *a);

#endif
