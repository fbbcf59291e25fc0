/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The machine configuration: what the command line asked for, and what a
 * snapshot embeds so that `khyve -r FILE` needs no other option.
 *
 * Guest-visible settings (vCPUs, memory, devices and their slots, MACs)
 * must match on restore; host-side bindings (disk path, TAP name, console
 * target, control socket directory, VM name) may be rebound.
 */
#ifndef KHYVE_CONFIG_H
#define KHYVE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "confine.h"
#include "err.h"

#define CONFIG_MAX_CPUS 64
#define CONFIG_MIN_MEM	(16ULL << 20)
#define CONFIG_MAX_DEVS 32
#define CONFIG_NAME_MAX 64

/* khyve(8) exit statuses, after bhyve(8). */
enum khyve_exit {
	KHYVE_EXIT_REBOOT = 0,
	KHYVE_EXIT_POWEROFF = 1,
	KHYVE_EXIT_HALT = 2,
	KHYVE_EXIT_TRIPLEFAULT = 3,
	KHYVE_EXIT_ERROR = 4,
	KHYVE_EXIT_SUSPENDED = 5,
	KHYVE_EXIT_MIGRATED = 6, /* the guest runs on at a migration's
				    destination */
	/* a post-copy destination lost its source: the guest cannot go on */
	KHYVE_EXIT_POSTCOPY_LOST = 7,
};

/* One -s slot[:func],emulation[,conf] device. */
struct dev_config {
	unsigned slot, func;
	char emul[32];
	char conf[512]; /* the rest of the option, unparsed (device's own) */
	/* Restore: the host binding comes from the snapshot, not from -s
	 * (docs/security.md: nothing it names is created). */
	bool from_snapshot;
};

enum cpu_policy {
	CPU_POLICY_AUTO =
		0,	 /* full features on hardware KVM, safe set on pvm */
	CPU_POLICY_HOST, /* everything KVM supports */
	CPU_POLICY_SAFE, /* hide what software backends cannot emulate */
};

struct vm_config {
	char name[CONFIG_NAME_MAX + 1];
	unsigned ncpus;
	uint64_t mem_size;
	char *kernel;
	char *initrd;
	char *cmdline;
	char *console;	/* COM1 back-end spec: stdio, file:P, socket:P, null */
	char *rundir;	/* control socket directory */
	char *restore;	/* -r FILE */
	char *incoming; /* --incoming ADDR: a migration's destination */
	/* What the incoming stream is called in messages (-r - or -r FILE
	 * of a stream: "standard input", the file), or NULL: the address. */
	char *incoming_label;
	/* The incoming stream is a recorded one (-r -, -r FILE of a stream):
	 * a restore of a snapshot, not a live migration (vmgenid.c). */
	bool incoming_recorded;
	char *api_sock; /* --api-sock PATH: configured through fc_api.h */
	bool restore_eager;
	bool keep_clock; /* restore: keep the saved wall clock (frozen time) */
	bool strict_bindings; /* restore: no host binding from the snapshot */
	bool no_unpack;	      /* let a bzImage decompress itself in the guest */
	bool no_vmgenid;      /* no VM generation ID device (ACPI VMGENCTR) */
	enum cpu_policy cpu_policy;
	struct confine_opts confine; /* --user, --chroot...: never saved */
	int verbose;
	unsigned ndevs;
	struct dev_config devs[CONFIG_MAX_DEVS];
	/* Which options were given on the command line (restore rebinding). */
	bool set_ncpus, set_mem, set_console;
	bool console_from_snapshot; /* restore without -l (see from_snapshot) */
};

enum config_parse_result {
	CONFIG_OK = 0,
	CONFIG_HELP = 1,      /* --help given: print usage, exit 0 */
	CONFIG_VERSION = 2,   /* --version given */
	CONFIG_LIST_DEVS = 3, /* -s help */
	CONFIG_PROBE_KVM = 4, /* --probe-kvm */
};

/*
 * Parse khyve's command line. Returns a CONFIG_* value, or -EINVAL with a
 * one-line message in @err. Pure: touches no files.
 */
int config_parse(struct vm_config *c, int argc, char **argv, struct err *err);
void config_free(struct vm_config *c);
/* A deep copy (@dst is overwritten); -ENOMEM leaves @dst empty. */
int config_copy(struct vm_config *dst, const struct vm_config *src);
/* "512M", "2G", "1048576" -> bytes; -EINVAL on junk or overflow. */
int config_parse_size(const char *s, uint64_t *out);
/* A VM name usable as a socket file name: [A-Za-z0-9._-], 1-64, no '.' lead. */
bool config_name_valid(const char *name);
/* Parse "slot[:func],emul[,conf]". */
int config_parse_dev(const char *arg, struct dev_config *d, struct err *err);
/* Value of key "k" in a "a,k=v,b" option string; copies into @out. */
bool config_opt_get(const char *conf, const char *key, char *out, size_t len);
/* The first element of an option string (a device's host binding). */
void config_opt_first(const char *conf, char *out, size_t len);
/*
 * A console spec as (kind, target): "file:/x" -> ("file", "/x"), also
 * virtio-console's "unix=P" (socket) and "file=P"; stdio and null name
 * nothing: (spec, ""). Both point into @spec.
 */
void config_console_binding(const char *spec, const char **kind,
			    const char **target);

/* To/from the JSON embedded in a snapshot. */
json_t *config_to_json(const struct vm_config *c);
int config_from_json(struct vm_config *c, const json_t *j, struct err *err);
/*
 * Merge a restore: @saved comes from the snapshot, @cmd from the command
 * line. Host-side bindings in @cmd win; any guest-visible difference is an
 * error naming it. Bindings left to the snapshot are marked as such
 * (console_from_snapshot, dev_config.from_snapshot).
 */
int config_merge_restore(struct vm_config *saved, const struct vm_config *cmd,
			 struct err *err);

/*
 * With --strict-bindings: -EPERM naming the first host binding (a console
 * file or socket, a disk image, a TAP name) left to the snapshot.
 */
int config_check_strict_bindings(const struct vm_config *c, struct err *err);
/*
 * The host resources a configuration binds (what a restore of it opens),
 * for `khyvectl snapshot info`: one line each into @fn, e.g. ("com1",
 * "file", "/var/log/vm1.console") or ("virtio-blk@4:0", "disk",
 * "/images/vm1.img"). A -s device's comes from its dev_ops.host_binding;
 * a device without one binds nothing and is not listed.
 */
void config_host_bindings(const struct vm_config *c,
			  void (*fn)(void *opaque, const char *what,
				     const char *kind, const char *target),
			  void *opaque);

extern const char config_usage[];

#endif
