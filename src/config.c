/* SPDX-License-Identifier: BSD-2-Clause */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "confine_seccomp.h"
#include "dev_ops.h"

/* One help line per source line. */
/* clang-format off */
const char config_usage[] =
	"usage: khyve [options] VMNAME\n"
	"       khyve -r SNAPSHOT [options] [VMNAME]\n"
	"       khyve --api-sock PATH [--id NAME] [options]\n"
	"\n"
	"  -c, --cpus N            number of vCPUs (default 1, max 64)\n"
	"  -m, --memory SIZE       guest memory, K/M/G suffix (default 256M)\n"
	"  -k, --kernel FILE       kernel: bzImage, or ELF vmlinux (PVH note)\n"
	"  -i, --initrd FILE       initial ramdisk\n"
	"  -a, --append CMDLINE    kernel command line\n"
	"  -l, --lpc com1,BACKEND  COM1 console: stdio, file:PATH, socket:PATH,\n"
	"                          null (default stdio)\n"
	"  -s, --slot S[:F],EMUL[,CONF]\n"
	"                          add a PCI device; '-s help' lists emulations\n"
	"  -r, --restore FILE      restore from a snapshot state file\n"
	"      --incoming ADDR     receive a migrating guest: tcp:HOST:PORT,\n"
	"                          unix:PATH or fd:N (bindings as with -r)\n"
	"      --eager             restore: copy guest RAM instead of mapping it\n"
	"      --keep-clock        restore: keep the saved wall clock\n"
	"      --strict-bindings   restore: every host binding (console file or\n"
	"                          socket, disk, TAP) from -l/-s, none from the\n"
	"                          snapshot\n"
	"      --no-unpack         let a bzImage decompress itself in the guest\n"
	"      --no-vmgenid        no VM generation ID (new on every restore)\n"
	"      --cpu-policy P      auto (default), host or safe\n"
	"      --rundir DIR        control socket directory (default /run/khyve,\n"
	"                          or $KHYVE_RUNDIR)\n"
	"      --user USER         run as USER once everything is open\n"
	"      --group GROUP       with --user: as GROUP (default USER's)\n"
	"      --chroot DIR        chroot to DIR once everything is open\n"
	"      --allow-core-dump   let a crash dump core (guest RAM excluded)\n"
	"      --seccomp MODE      system call filters per thread: kill\n"
	"                          (default), log or off\n"
	"      --api-sock PATH     no kernel: wait for configuration through\n"
	"                          Firecracker's REST API on the UNIX socket\n"
	"                          PATH (docs/firecracker-api.md)\n"
	"      --id NAME           with --api-sock: the instance id and VM\n"
	"                          name (default anonymous-instance)\n"
	"      --probe-kvm         check that /dev/kvm can run a guest, say\n"
	"                          which backend it is; exit 0, or 4 and why\n"
	"  -v, --verbose           more messages (repeat for debug)\n"
	"  -h, --help              this text\n"
	"  -V, --version           print the version\n"
	"\n"
	"Exit status: 0 rebooted, 1 powered off, 2 halted, 3 triple fault,\n"
	"4 error, 5 suspended to a snapshot, 6 migrated away. See khyve(8).\n";
/* clang-format on */

int config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 0:
		/* bhyve takes a bare number as MiB when small; be explicit. */
		mul = v < 1024 * 1024 ? MiB : 1;
		break;
	case 'K':
		mul = KiB;
		end++;
		break;
	case 'M':
		mul = MiB;
		end++;
		break;
	case 'G':
		mul = GiB;
		end++;
		break;
	case 'T':
		mul = 1024 * GiB;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

bool config_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > CONFIG_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!isalnum((unsigned char)ch) && ch != '.' && ch != '_' &&
		    ch != '-')
			return false;
	}
	return true;
}

bool config_opt_get(const char *conf, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);
	const char *p = conf;

	while (p && *p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l >= kl && !strncmp(p, key, kl) &&
		    (l == kl || p[kl] == '=')) {
			const char *v = l == kl ? "" : p + kl + 1;
			size_t vl = l == kl ? 0 : l - kl - 1;

			if (out && len) {
				vl = MIN(vl, len - 1);
				memcpy(out, v, vl);
				out[vl] = 0;
			}
			return true;
		}
		p = e ? e + 1 : NULL;
	}
	return false;
}

int config_parse_dev(const char *arg, struct dev_config *d, struct err *err)
{
	char *end;
	const char *comma;
	unsigned long slot, func = 0;
	size_t el;

	memset(d, 0, sizeof(*d));
	if (!isdigit((unsigned char)*arg))
		goto bad;
	slot = strtoul(arg, &end, 10);
	if (*end == ':') {
		if (!isdigit((unsigned char)end[1]))
			goto bad;
		func = strtoul(end + 1, &end, 10);
	}
	if (*end != ',')
		goto bad;
	if (slot > 31 || func > 7)
		return err_set(err, -EINVAL,
			       "-s %s: slot must be 0-31 and function 0-7",
			       arg);
	d->slot = (unsigned)slot;
	d->func = (unsigned)func;
	end++;
	comma = strchr(end, ',');
	el = comma ? (size_t)(comma - end) : strlen(end);
	if (el == 0 || el >= sizeof(d->emul))
		goto bad;
	memcpy(d->emul, end, el);
	if (comma) {
		if (strlen(comma + 1) >= sizeof(d->conf))
			return err_set(err, -EINVAL,
				       "-s %s: configuration too long", arg);
		strcpy(d->conf, comma + 1);
	}
	return 0;
bad:
	return err_set(
		err, -EINVAL,
		"-s %s: expected slot[:func],emulation[,conf] (see -s help)",
		arg);
}

static int set_str(char **dst, const char *src)
{
	char *n = strdup(src);

	if (!n)
		return -ENOMEM;
	free(*dst);
	*dst = n;
	return 0;
}

enum {
	OPT_EAGER = 256,
	OPT_STRICT_BINDINGS,
	OPT_KEEP_CLOCK,
	OPT_NO_UNPACK,
	OPT_NO_VMGENID,
	OPT_CPU_POLICY,
	OPT_RUNDIR,
	OPT_PROBE_KVM,
	OPT_INCOMING,
	OPT_USER,
	OPT_GROUP,
	OPT_CHROOT,
	OPT_ALLOW_CORE_DUMP,
	OPT_SECCOMP,
	OPT_API_SOCK,
	OPT_ID,
};

static const struct option longopts[] = {
	{"cpus", required_argument, NULL, 'c'},
	{"memory", required_argument, NULL, 'm'},
	{"kernel", required_argument, NULL, 'k'},
	{"initrd", required_argument, NULL, 'i'},
	{"append", required_argument, NULL, 'a'},
	{"lpc", required_argument, NULL, 'l'},
	{"slot", required_argument, NULL, 's'},
	{"restore", required_argument, NULL, 'r'},
	{"incoming", required_argument, NULL, OPT_INCOMING},
	{"eager", no_argument, NULL, OPT_EAGER},
	{"strict-bindings", no_argument, NULL, OPT_STRICT_BINDINGS},
	{"keep-clock", no_argument, NULL, OPT_KEEP_CLOCK},
	{"no-unpack", no_argument, NULL, OPT_NO_UNPACK},
	{"no-vmgenid", no_argument, NULL, OPT_NO_VMGENID},
	{"cpu-policy", required_argument, NULL, OPT_CPU_POLICY},
	{"rundir", required_argument, NULL, OPT_RUNDIR},
	{"probe-kvm", no_argument, NULL, OPT_PROBE_KVM},
	{"user", required_argument, NULL, OPT_USER},
	{"group", required_argument, NULL, OPT_GROUP},
	{"chroot", required_argument, NULL, OPT_CHROOT},
	{"allow-core-dump", no_argument, NULL, OPT_ALLOW_CORE_DUMP},
	{"seccomp", required_argument, NULL, OPT_SECCOMP},
	{"api-sock", required_argument, NULL, OPT_API_SOCK},
	{"id", required_argument, NULL, OPT_ID},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{0},
};

/* A string option; the copy's allocation is all that can fail. */
static int opt_str(char **dst, const char *arg, struct err *err)
{
	int ret = set_str(dst, arg);

	if (ret)
		err_set(err, ret, "out of memory");
	return ret;
}

/* --seccomp off|log|kill */
static int opt_seccomp(struct vm_config *c, const char *arg, struct err *err)
{
	enum confine_seccomp_mode m;

	if (confine_seccomp_parse(arg, &m))
		return err_set(err, -EINVAL,
			       "--seccomp %s: expected off, log or kill", arg);
	snprintf(c->confine.seccomp, sizeof(c->confine.seccomp), "%s", arg);
	return 0;
}

/* --user, --group, --chroot: into a fixed buffer of @len. */
static int opt_fixed(char *dst, size_t len, const char *opt, const char *arg,
		     struct err *err)
{
	if (!*arg || strlen(arg) >= len)
		return err_set(err, -EINVAL, "%s: must be 1-%zu characters",
			       opt, len - 1);
	strcpy(dst, arg);
	return 0;
}

/* -c N */
static int opt_cpus(struct vm_config *c, const char *arg, struct err *err)
{
	unsigned long n;
	char *end;

	errno = 0;
	n = strtoul(arg, &end, 10);
	if (errno || *end || !isdigit((unsigned char)*arg) || n == 0 ||
	    n > CONFIG_MAX_CPUS)
		return err_set(err, -EINVAL,
			       "-c %s: number of vCPUs must be 1-%d", arg,
			       CONFIG_MAX_CPUS);
	c->ncpus = (unsigned)n;
	c->set_ncpus = true;
	return 0;
}

/* -m SIZE, rounded up to the 2 MiB pages guest memory is mapped with. */
static int opt_memory(struct vm_config *c, const char *arg, struct err *err)
{
	if (config_parse_size(arg, &c->mem_size))
		return err_set(err, -EINVAL,
			       "-m %s: not a memory size (e.g. 512M, 2G)", arg);
	if (c->mem_size < CONFIG_MIN_MEM)
		return err_set(err, -EINVAL,
			       "-m %s: guest memory must be at least 16M", arg);
	c->mem_size = ALIGN_UP(c->mem_size, 2 * MiB);
	c->set_mem = true;
	return 0;
}

/* -l com1,BACKEND: the serial port is the only LPC device named. */
static int opt_console(struct vm_config *c, const char *arg, struct err *err)
{
	if (strncmp(arg, "com1,", 5) || !arg[5])
		return err_set(
			err, -EINVAL,
			"-l %s: expected com1,BACKEND (stdio, file:PATH, "
			"socket:PATH, null)",
			arg);
	c->set_console = true;
	return opt_str(&c->console, arg + 5, err);
}

/* -s SLOT[:FUNC],EMULATION[,CONF]: one device per slot:func. */
static int opt_slot(struct vm_config *c, const char *arg, struct err *err)
{
	int ret;

	if (c->ndevs == CONFIG_MAX_DEVS)
		return err_set(err, -EINVAL, "too many -s devices (max %d)",
			       CONFIG_MAX_DEVS);
	ret = config_parse_dev(arg, &c->devs[c->ndevs], err);
	if (ret)
		return ret;
	for (unsigned i = 0; i < c->ndevs; i++) {
		if (c->devs[i].slot == c->devs[c->ndevs].slot &&
		    c->devs[i].func == c->devs[c->ndevs].func)
			return err_set(
				err, -EINVAL,
				"-s %s: slot %u:%u is already taken by %s", arg,
				c->devs[i].slot, c->devs[i].func,
				c->devs[i].emul);
	}
	c->ndevs++;
	return 0;
}

/* --cpu-policy auto|host|safe */
static int opt_cpu_policy(struct vm_config *c, const char *arg, struct err *err)
{
	if (!strcmp(arg, "auto"))
		c->cpu_policy = CPU_POLICY_AUTO;
	else if (!strcmp(arg, "host"))
		c->cpu_policy = CPU_POLICY_HOST;
	else if (!strcmp(arg, "safe"))
		c->cpu_policy = CPU_POLICY_SAFE;
	else {
		return err_set(err, -EINVAL,
			       "--cpu-policy %s: expected auto, host or safe",
			       arg);
	}
	return 0;
}

/* --id NAME: the VM name, as the operand would be */
static int opt_id(struct vm_config *c, const char *arg, struct err *err)
{
	if (!config_name_valid(arg))
		return err_set(err, -EINVAL,
			       "--id %s: use 1-%d of A-Z a-z 0-9 . _ - (not "
			       "starting with '.')",
			       arg, CONFIG_NAME_MAX);
	strcpy(c->name, arg);
	return 0;
}

/*
 * --api-sock: the machine comes through the API (Firecracker's model),
 * so nothing that describes it may come from the command line.
 */
static int check_api_mode(struct vm_config *c, int argc, char **argv,
			  struct err *err)
{
	if (optind < argc)
		return err_set(err, -EINVAL,
			       "unexpected argument '%s': with --api-sock the "
			       "VM is named with --id",
			       argv[optind]);
	if (c->kernel || c->initrd || c->cmdline || c->restore || c->incoming ||
	    c->ndevs || c->set_ncpus || c->set_mem || c->restore_eager ||
	    c->keep_clock || c->strict_bindings)
		return err_set(err, -EINVAL,
			       "--api-sock: -c, -m, -k, -i, -a, -s, -r, "
			       "--incoming and the restore options come "
			       "through the API");
	if (!c->name[0])
		strcpy(c->name, "anonymous-instance");
	return 0;
}

/*
 * After the options: the VM name (optional with -r, which names the VM
 * from the snapshot), and the options that only make sense for a fresh
 * boot or only for a restore.
 */
static int check_operands(struct vm_config *c, int argc, char **argv,
			  struct err *err)
{
	if (c->api_sock)
		return check_api_mode(c, argc, argv, err);
	if (c->name[0])
		return err_set(err, -EINVAL, "--id needs --api-sock");
	/* -r -: a snapshot stream on stdin, read as a migration's would be */
	if (c->restore && !strcmp(c->restore, "-")) {
		free(c->restore);
		c->restore = NULL;
		if (c->incoming)
			return err_set(err, -EINVAL,
				       "-r and --incoming exclude each other");
		if (set_str(&c->incoming, "fd:0") ||
		    set_str(&c->incoming_label, "standard input"))
			return err_set(err, -ENOMEM, "out of memory");
	}
	if (optind < argc) {
		if (optind + 1 < argc)
			return err_set(
				err, -EINVAL,
				"unexpected argument '%s' after the VM name",
				argv[optind + 1]);
		if (!config_name_valid(argv[optind]))
			return err_set(
				err, -EINVAL,
				"invalid VM name '%s': use 1-%d of A-Z a-z "
				"0-9 . _ - (not starting with '.')",
				argv[optind], CONFIG_NAME_MAX);
		strcpy(c->name, argv[optind]);
	} else if (!c->restore && !c->incoming) {
		return err_set(err, -EINVAL, "missing VM name (see --help)");
	}
	if (c->restore && c->incoming)
		return err_set(err, -EINVAL,
			       "-r and --incoming exclude each other");
	if (c->incoming && (c->kernel || c->initrd || c->cmdline))
		return err_set(err, -EINVAL,
			       "-k, -i and -a cannot be used with --incoming: "
			       "the source sends the running kernel");
	if (c->incoming && (c->restore_eager || c->keep_clock))
		return err_set(err, -EINVAL,
			       "--eager and --keep-clock need -r");
	if (!c->restore && !c->incoming && !c->kernel)
		return err_set(err, -EINVAL,
			       "no kernel given: use -k FILE (or -r SNAPSHOT)");
	if (c->restore && (c->kernel || c->initrd || c->cmdline))
		return err_set(
			err, -EINVAL,
			"-k, -i and -a cannot be used with -r: the snapshot "
			"holds the running kernel");
	/* The saved guest says whether it has one (guest-visible). */
	if ((c->restore || c->incoming) && c->no_vmgenid)
		return err_set(err, -EINVAL,
			       "--no-vmgenid cannot be used with %s: the %s "
			       "says whether the guest has one",
			       c->restore ? "-r" : "--incoming",
			       c->restore ? "snapshot" : "source");
	if (!c->restore && !c->incoming &&
	    (c->restore_eager || c->keep_clock || c->strict_bindings))
		return err_set(
			err, -EINVAL,
			"--eager, --keep-clock and --strict-bindings need -r");
	return 0;
}

/*
 * A flat switch, one case per option: each option's checks live in its
 * opt_* helper, which writes @err itself.
 */
int config_parse(struct vm_config *c, int argc, char **argv, struct err *err)
{
	int opt, ret = 0;

	memset(c, 0, sizeof(*c));
	c->ncpus = 1;
	c->mem_size = 256 * MiB;
	optind = 0; /* reset getopt: config_parse may run more than once */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":c:m:k:i:a:l:s:r:vhV", longopts,
				  NULL)) != -1) {
		switch (opt) {
		case 'c':
			ret = opt_cpus(c, optarg, err);
			break;
		case 'm':
			ret = opt_memory(c, optarg, err);
			break;
		case 'k':
			ret = opt_str(&c->kernel, optarg, err);
			break;
		case 'i':
			ret = opt_str(&c->initrd, optarg, err);
			break;
		case 'a':
			ret = opt_str(&c->cmdline, optarg, err);
			break;
		case 'l':
			ret = opt_console(c, optarg, err);
			break;
		case 's':
			if (!strcmp(optarg, "help"))
				return CONFIG_LIST_DEVS;
			ret = opt_slot(c, optarg, err);
			break;
		case 'r':
			ret = opt_str(&c->restore, optarg, err);
			break;
		case OPT_INCOMING:
			ret = opt_str(&c->incoming, optarg, err);
			break;
		case OPT_EAGER:
			c->restore_eager = true;
			break;
		case OPT_STRICT_BINDINGS:
			c->strict_bindings = true;
			break;
		case OPT_KEEP_CLOCK:
			c->keep_clock = true;
			break;
		case OPT_NO_UNPACK:
			c->no_unpack = true;
			break;
		case OPT_NO_VMGENID:
			c->no_vmgenid = true;
			break;
		case OPT_CPU_POLICY:
			ret = opt_cpu_policy(c, optarg, err);
			break;
		case OPT_RUNDIR:
			ret = opt_str(&c->rundir, optarg, err);
			break;
		case OPT_USER:
			ret = opt_fixed(c->confine.user,
					sizeof(c->confine.user), "--user",
					optarg, err);
			break;
		case OPT_GROUP:
			ret = opt_fixed(c->confine.group,
					sizeof(c->confine.group), "--group",
					optarg, err);
			break;
		case OPT_CHROOT:
			ret = opt_fixed(c->confine.chroot,
					sizeof(c->confine.chroot), "--chroot",
					optarg, err);
			break;
		case OPT_ALLOW_CORE_DUMP:
			c->confine.allow_core_dump = true;
			break;
		case OPT_SECCOMP:
			ret = opt_seccomp(c, optarg, err);
			break;
		case 'v':
			c->verbose++;
			break;
		case OPT_PROBE_KVM:
			return CONFIG_PROBE_KVM;
		case OPT_API_SOCK:
			ret = opt_str(&c->api_sock, optarg, err);
			break;
		case OPT_ID:
			ret = opt_id(c, optarg, err);
			break;
		case 'h':
			return CONFIG_HELP;
		case 'V':
			return CONFIG_VERSION;
		case ':':
			return err_set(err, -EINVAL,
				       "option %s needs an argument",
				       argv[optind - 1]);
		default:
			return err_set(err, -EINVAL,
				       "unknown option %s (see --help)",
				       argv[optind - 1]);
		}
		if (ret)
			return ret;
	}
	ret = check_operands(c, argc, argv, err);
	if (ret)
		return ret;
	if (!c->console) {
		ret = set_str(&c->console, "stdio");
		if (ret)
			return ret;
	}
	return CONFIG_OK;
}

void config_free(struct vm_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->console);
	free(c->rundir);
	free(c->restore);
	free(c->incoming);
	free(c->incoming_label);
	free(c->api_sock);
	memset(c, 0, sizeof(*c));
}

/* Each string duplicated, the rest copied. */
int config_copy(struct vm_config *dst, const struct vm_config *src)
{
	char **s[] = {&dst->kernel,   &dst->initrd,   &dst->cmdline,
		      &dst->console,  &dst->rundir,   &dst->restore,
		      &dst->incoming, &dst->api_sock, &dst->incoming_label};

	*dst = *src;
	for (size_t i = 0; i < ARRAY_SIZE(s); i++) {
		if (*s[i] && !(*s[i] = strdup(*s[i]))) {
			for (size_t k = i; k < ARRAY_SIZE(s); k++)
				*s[k] = NULL;
			config_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

json_t *config_to_json(const struct vm_config *c)
{
	json_t *devs = json_array();
	json_t *j;

	for (unsigned i = 0; i < c->ndevs; i++)
		json_array_append_new(devs,
				      json_pack("{s:i, s:i, s:s, s:s}", "slot",
						(int)c->devs[i].slot, "func",
						(int)c->devs[i].func,
						"emulation", c->devs[i].emul,
						"conf", c->devs[i].conf));
	j = json_pack("{s:s, s:i, s:I, s:s?, s:s?, s:s?, s:s, s:s, s:o}",
		      "name", c->name, "cpus", (int)c->ncpus, "memory",
		      (json_int_t)c->mem_size, "kernel", c->kernel, "initrd",
		      c->initrd, "cmdline", c->cmdline, "console",
		      c->console ? c->console : "stdio", "cpu_policy",
		      c->cpu_policy == CPU_POLICY_HOST	 ? "host"
		      : c->cpu_policy == CPU_POLICY_SAFE ? "safe"
							 : "auto",
		      "devices", devs);
	return j;
}

static int json_str_dup(const json_t *j, const char *key, char **out)
{
	const json_t *v = json_object_get(j, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

/* The three fields every configuration has: name, cpus and memory. */
static int json_read_sizes(struct vm_config *c, const json_t *j,
			   struct err *err)
{
	const char *name;
	json_int_t cpus, mem;

	if (json_unpack((json_t *)j, "{s:s, s:I, s:I}", "name", &name, "cpus",
			&cpus, "memory", &mem))
		return err_set(
			err, -EINVAL,
			"configuration: missing or mistyped name, cpus or "
			"memory");
	if (!config_name_valid(name))
		return err_set(err, -EINVAL,
			       "configuration: field 'name': invalid VM name");
	if (cpus < 1 || cpus > CONFIG_MAX_CPUS)
		return err_set(
			err, -EINVAL,
			"configuration: field 'cpus': %lld out of range 1-%d",
			(long long)cpus, CONFIG_MAX_CPUS);
	if (mem < (json_int_t)CONFIG_MIN_MEM || mem % (2 * MiB))
		return err_set(
			err, -EINVAL,
			"configuration: field 'memory': %lld is not a valid "
			"guest memory size",
			(long long)mem);
	strcpy(c->name, name);
	c->ncpus = (unsigned)cpus;
	c->mem_size = (uint64_t)mem;
	return 0;
}

/* Devices entry @i; as on the command line, one device per slot:func. */
static int json_read_device(struct vm_config *c, const json_t *d, size_t i,
			    struct err *err)
{
	json_int_t slot, func;
	const char *emul, *conf;
	struct dev_config *dc;

	if (i >= CONFIG_MAX_DEVS ||
	    json_unpack((json_t *)d, "{s:I, s:I, s:s, s:s}", "slot", &slot,
			"func", &func, "emulation", &emul, "conf", &conf) ||
	    slot < 0 || slot > 31 || func < 0 || func > 7 ||
	    strlen(emul) >= sizeof(dc->emul) ||
	    strlen(conf) >= sizeof(dc->conf))
		return err_set(err, -EINVAL,
			       "configuration: device %zu is malformed", i);
	for (unsigned k = 0; k < c->ndevs; k++) {
		if (c->devs[k].slot == slot && c->devs[k].func == func)
			return err_set(
				err, -EINVAL,
				"configuration: device %zu: slot %u:%u is "
				"already taken by %s",
				i, c->devs[k].slot, c->devs[k].func,
				c->devs[k].emul);
	}
	dc = &c->devs[c->ndevs++];
	dc->slot = (unsigned)slot;
	dc->func = (unsigned)func;
	strcpy(dc->emul, emul);
	strcpy(dc->conf, conf);
	return 0;
}

int config_from_json(struct vm_config *c, const json_t *j, struct err *err)
{
	const json_t *v, *devs, *d;
	const char *pol;
	size_t i;

	memset(c, 0, sizeof(*c));
	if (json_read_sizes(c, j, err))
		return -EINVAL;
	if (json_str_dup(j, "kernel", &c->kernel) ||
	    json_str_dup(j, "initrd", &c->initrd) ||
	    json_str_dup(j, "cmdline", &c->cmdline) ||
	    json_str_dup(j, "console", &c->console)) {
		err_set(err, -EINVAL, "configuration: mistyped string field");
		goto fail;
	}
	v = json_object_get(j, "cpu_policy");
	pol = json_is_string(v) ? json_string_value(v) : "auto";
	c->cpu_policy = !strcmp(pol, "host")   ? CPU_POLICY_HOST
			: !strcmp(pol, "safe") ? CPU_POLICY_SAFE
					       : CPU_POLICY_AUTO;
	devs = json_object_get(j, "devices");
	if (devs && !json_is_array(devs)) {
		err_set(err, -EINVAL,
			"configuration: field 'devices' is not a list");
		goto fail;
	}
	json_array_foreach(devs, i, d)
	{
		if (json_read_device(c, d, i, err))
			goto fail;
	}
	return 0;
fail:
	config_free(c);
	return -EINVAL;
}

/* The part of a device's conf after its first element (host binding). */
static const char *conf_guest_part(const char *conf)
{
	const char *comma = strchr(conf, ',');

	return comma ? comma + 1 : "";
}

/*
 * The guest parts match, but for mac=: a clone may be given its own MAC
 * (issue 15; the device reports it, docs/architecture.md "Clones").
 */
static bool conf_guest_same(const char *a, const char *b)
{
	for (;;) {
		size_t la, lb;

		while (!strncmp(a, "mac=", 4))
			a += strcspn(a, ",") + (a[strcspn(a, ",")] == ',');
		while (!strncmp(b, "mac=", 4))
			b += strcspn(b, ",") + (b[strcspn(b, ",")] == ',');
		la = strcspn(a, ",");
		lb = strcspn(b, ",");
		if (la != lb || strncmp(a, b, la))
			return false;
		if (!a[la] || !b[lb])
			return !a[la] && !b[lb];
		a += la + 1;
		b += lb + 1;
	}
}

int config_merge_restore(struct vm_config *saved, const struct vm_config *cmd,
			 struct err *err)
{
	if (cmd->set_ncpus && cmd->ncpus != saved->ncpus)
		return err_set(err, -EINVAL,
			       "-c %u differs from the snapshot's %u vCPUs "
			       "(guest-visible; cannot change on restore)",
			       cmd->ncpus, saved->ncpus);
	if (cmd->set_mem && cmd->mem_size != saved->mem_size)
		return err_set(
			err, -EINVAL,
			"-m differs from the snapshot's memory size of %llu "
			"MiB (guest-visible; cannot change on restore)",
			(unsigned long long)(saved->mem_size / MiB));
	/* Until the command line names them, bindings are the snapshot's. */
	for (unsigned k = 0; k < saved->ndevs; k++)
		saved->devs[k].from_snapshot = true;
	saved->console_from_snapshot = !cmd->set_console;
	for (unsigned i = 0; i < cmd->ndevs; i++) {
		const struct dev_config *cd = &cmd->devs[i];
		struct dev_config *sd = NULL;

		for (unsigned k = 0; k < saved->ndevs; k++)
			if (saved->devs[k].slot == cd->slot &&
			    saved->devs[k].func == cd->func)
				sd = &saved->devs[k];
		if (!sd)
			return err_set(
				err, -EINVAL,
				"-s %u:%u,%s: the snapshot has no device in "
				"that slot (devices cannot be added on "
				"restore)",
				cd->slot, cd->func, cd->emul);
		if (strcmp(sd->emul, cd->emul))
			return err_set(
				err, -EINVAL,
				"-s %u:%u: snapshot has %s there, not %s",
				cd->slot, cd->func, sd->emul, cd->emul);
		if (!conf_guest_same(conf_guest_part(sd->conf),
				     conf_guest_part(cd->conf)))
			return err_set(
				err, -EINVAL,
				"-s %u:%u,%s: options '%s' differ from the "
				"snapshot's '%s' (only the backing path/name "
				"and mac= may change)",
				cd->slot, cd->func, cd->emul,
				conf_guest_part(cd->conf),
				conf_guest_part(sd->conf));
		strcpy(sd->conf, cd->conf); /* rebind the host side */
		sd->from_snapshot = false;
	}
	if (cmd->name[0])
		strcpy(saved->name, cmd->name);
	if (cmd->set_console) {
		free(saved->console);
		saved->console = strdup(cmd->console);
		if (!saved->console)
			return -ENOMEM;
	}
	if (cmd->rundir) {
		free(saved->rundir);
		saved->rundir = strdup(cmd->rundir);
		if (!saved->rundir)
			return -ENOMEM;
	}
	saved->restore_eager = cmd->restore_eager;
	saved->strict_bindings = cmd->strict_bindings;
	saved->keep_clock = cmd->keep_clock;
	saved->verbose = cmd->verbose;
	saved->confine = cmd->confine;
	return 0;
}

void config_opt_first(const char *conf, char *out, size_t len)
{
	const char *comma = strchr(conf, ',');
	size_t n = comma ? (size_t)(comma - conf) : strlen(conf);

	snprintf(out, len, "%.*s", (int)MIN(n, len - 1), conf);
}

void config_console_binding(const char *spec, const char **kind,
			    const char **target)
{
	static const char *const kinds[] = {
		"file:", "append:", "socket:", "unix=", "file="};
	static const char *const names[] = {"file", "append", "socket",
					    "socket", "file"};

	for (unsigned i = 0; i < ARRAY_SIZE(kinds); i++)
		if (!strncmp(spec, kinds[i], strlen(kinds[i]))) {
			*kind = names[i];
			*target = spec + strlen(kinds[i]);
			return;
		}
	*kind = spec; /* stdio, null: nothing on the host by name */
	*target = "";
}

/* @d's host binding as its device reports it; false: it binds nothing. */
static bool dev_host_binding(const struct dev_config *d, struct dev_binding *b)
{
	const struct dev_ops *ops = dev_ops_find(d->emul);

	if (!ops || !ops->host_binding)
		return false;
	ops->host_binding(d->conf, b);
	return true;
}

void config_host_bindings(const struct vm_config *c,
			  void (*fn)(void *opaque, const char *what,
				     const char *kind, const char *target),
			  void *opaque)
{
	const char *kind, *target;
	struct dev_binding b;
	char what[64];

	config_console_binding(c->console ? c->console : "stdio", &kind,
			       &target);
	fn(opaque, "com1", kind, target);
	for (unsigned i = 0; i < c->ndevs; i++) {
		const struct dev_config *d = &c->devs[i];

		snprintf(what, sizeof(what), "%s@%u:%u", d->emul, d->slot,
			 d->func);
		if (dev_host_binding(d, &b))
			fn(opaque, what, b.kind, b.target);
	}
}

/* What --strict-bindings refuses to take from a snapshot. */
int config_check_strict_bindings(const struct vm_config *c, struct err *err)
{
	const char *kind, *target;
	struct dev_binding b;
	char first[DEV_BINDING_MAX];

	if (!c->strict_bindings)
		return 0;
	config_console_binding(c->console ? c->console : "stdio", &kind,
			       &target);
	if (c->console_from_snapshot && *target)
		return err_set(
			err, -EPERM,
			"--strict-bindings: the snapshot's COM1 console is "
			"%s; give one with -l com1,BACKEND",
			c->console);
	for (unsigned i = 0; i < c->ndevs; i++) {
		const struct dev_config *d = &c->devs[i];

		if (!d->from_snapshot || !dev_host_binding(d, &b) ||
		    !b.target[0])
			continue;
		config_opt_first(d->conf, first, sizeof(first));
		return err_set(
			err, -EPERM,
			"--strict-bindings: the snapshot's %s at "
			"%u:%u is bound to '%s'; give it with -s "
			"%u:%u,%s,BINDING%s%s",
			d->emul, d->slot, d->func, first, d->slot, d->func,
			d->emul, strchr(d->conf, ',') ? "," : "",
			strchr(d->conf, ',') ? strchr(d->conf, ',') + 1 : "");
	}
	return 0;
}
