/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Offline snapshot inspection for khyvectl: everything is decoded from the
 * file's own field tags, no device code involved.
 */
#ifndef KHYVE_SNAP_INSPECT_H
#define KHYVE_SNAP_INSPECT_H

#include <stdbool.h>
#include <stdio.h>

#include "snap.h"

/*
 * Print version, creation time, host, sections and sizes, plus vCPU count,
 * memory size and devices from the embedded "config" section. @all adds
 * every field of every described section; @json prints one JSON document.
 */
int snap_inspect_info(const char *path, bool json, bool all, FILE *out,
		      struct err *err);
/*
 * Check every section checksum (by opening the file) and the RAM file's
 * chunk hashes. Prints one line per check; 0 if all pass.
 */
int snap_inspect_verify(const char *path, FILE *out, struct err *err);

#endif
