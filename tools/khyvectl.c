/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * khyvectl: operator tool for running khyve instances (over their control
 * sockets) and for snapshot files (offline). See man/khyvectl.8.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "common.h"
#include "ctl.h"
#include "ctl_client.h"
#include "progress.h"
#include "snap_chain.h"
#include "snap_convert.h"
#include "snap_inspect.h"

#define EXIT_FAIL	   1
#define EXIT_USAGE	   2
#define DEFAULT_TIMEOUT_MS 10000
#define LIST_TIMEOUT_MS	   2000

struct opts {
	const char *rundir;
	bool json;
	int timeout_ms; /* -1: per-command default */
	/* subcommand options */
	long vcpu;
	bool vcpu_set, msrs, force, all, incremental;
	/* bhyvectl-style actions, run in the order of this struct */
	const char *vm;
	bool status, pause, get_all, get_rip, get_stats;
	const char *checkpoint, *suspend, *migrate;
	bool resume, force_reset, force_poweroff;
	/* migrate's knobs (NULL: the VMM's defaults) */
	const char *max_downtime, *deadline, *on_deadline, *bandwidth;
	bool compress;
	bool postcopy;		    /* --postcopy (or --postcopy-after) */
	const char *postcopy_after; /* rounds before the switch-over */
};

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
	va_list ap;

	fputs("khyvectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- human-friendly output ---- */

static void fmt_scalar(char *buf, size_t len, const json_t *v, bool hex)
{
	switch (json_typeof(v)) {
	case JSON_INTEGER:
		if (hex)
			snprintf(buf, len, "0x%016llx",
				 (unsigned long long)json_integer_value(v));
		else
			snprintf(buf, len, "%lld",
				 (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(buf, len, "%g", json_real_value(v));
		break;
	case JSON_STRING:
		snprintf(buf, len, "%s", json_string_value(v));
		break;
	case JSON_TRUE:
		snprintf(buf, len, "true");
		break;
	case JSON_FALSE:
		snprintf(buf, len, "false");
		break;
	default:
		snprintf(buf, len, "null");
		break;
	}
}

/*
 * Print nested objects as aligned "a.b.c: value" lines. With @out NULL
 * only measure the widest key into *width.
 */
static void walk(FILE *out, const char *prefix, const json_t *v, bool hex,
		 int *width)
{
	char key[256], val[1024];
	const char *k;
	const json_t *e;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, e)
		{
			snprintf(key, sizeof(key), "%s%s%s", prefix,
				 *prefix ? "." : "", k);
			/* counts and indices stay decimal among registers */
			walk(out, key, e, hex && strcmp(k, "vcpu"), width);
		}
		return;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, e)
		{
			snprintf(key, sizeof(key), "%s[%zu]", prefix, i);
			walk(out, key, e, hex, width);
		}
		return;
	}
	snprintf(key, sizeof(key), "%s:", prefix[0] ? prefix : "value");
	if (!out) {
		*width = MAX(*width, (int)strlen(key));
		return;
	}
	fmt_scalar(val, sizeof(val), v, hex);
	fprintf(out, "%-*s %s\n", *width, key, val);
}

static void print_kv(const json_t *v, bool hex)
{
	int width = 0;

	walk(NULL, "", v, hex, &width);
	walk(stdout, "", v, hex, &width);
}

static void print_json(const json_t *v)
{
	char *txt = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (txt)
		printf("%s\n", txt);
	free(txt);
}

/* ---- talking to a VM ---- */

static int timeout_for(const struct opts *o, const char *cmd)
{
	if (o->timeout_ms >= 0)
		return o->timeout_ms;
	/* Saving guest RAM takes as long as it takes. */
	if (!strcmp(cmd, "checkpoint") || !strcmp(cmd, "suspend") ||
	    !strcmp(cmd, "migrate"))
		return 0;
	return DEFAULT_TIMEOUT_MS;
}

static int vm_open(const struct opts *o, const char *vm, const char *cmd,
		   struct ctl_conn **c)
{
	struct err e = {0};
	int rc;

	rc = ctl_client_open(c, o->rundir, vm, timeout_for(o, cmd), &e);
	if (rc < 0) {
		errmsg("%s", err_msg(&e));
		return rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
	}
	return 0;
}

static void draw_progress(void *opaque, uint64_t done, uint64_t total)
{
	progress_update(opaque, done, total);
}

/* One request; on success *result holds the reply's result. */
static int vm_call(struct ctl_conn *c, const char *vm, const char *cmd,
		   const json_t *args, json_t **result, struct progress *pl)
{
	struct err e = {0};
	char code[32];
	int rc;

	rc = ctl_client_call_progress(c, cmd, args, pl ? draw_progress : NULL,
				      pl, result, code, sizeof(code), &e);
	if (rc == -EPROTO && code[0]) {
		errmsg("%s on VM '%s' failed: %s (%s)", cmd, vm, err_msg(&e),
		       code);
		return EXIT_FAIL;
	}
	if (rc < 0) {
		errmsg("%s", err_msg(&e));
		return EXIT_FAIL;
	}
	return 0;
}

enum out_kind { OUT_KV, OUT_HEX, OUT_RIP, OUT_DONE };

/* Connect, run @cmd and print its result; returns the exit status. */
static int run_cmd(const struct opts *o, const char *vm, const char *cmd,
		   const json_t *args, enum out_kind kind, const char *done,
		   struct progress *pl)
{
	struct ctl_conn *c;
	json_t *res = NULL;
	int rc;

	rc = vm_open(o, vm, cmd, &c);
	if (rc)
		return rc;
	rc = vm_call(c, vm, cmd, args, &res, pl);
	ctl_client_close(c);
	if (pl)
		progress_end(pl);
	if (rc)
		return rc;
	if (o->json) {
		print_json(res);
	} else if (kind == OUT_RIP) {
		const json_t *r = json_object_get(res, "regs");
		const json_t *rip = json_object_get(r ? r : res, "rip");
		char val[64];

		if (!rip) {
			errmsg("VM '%s' reported no rip", vm);
			json_decref(res);
			return EXIT_FAIL;
		}
		fmt_scalar(val, sizeof(val), rip, true);
		printf("rip[%ld]\t%s\n", o->vcpu_set ? o->vcpu : 0L, val);
	} else if (kind == OUT_DONE) {
		printf("VM '%s' %s\n", vm, done);
		if (json_object_size(res))
			print_kv(res, false);
	} else {
		print_kv(res, kind == OUT_HEX);
	}
	json_decref(res);
	return 0;
}

static json_t *regs_args(const struct opts *o, bool msrs)
{
	return json_pack("{s:I, s:b}", "vcpu",
			 (json_int_t)(o->vcpu_set ? o->vcpu : 0), "msrs", msrs);
}

/* The VMM resolves paths in its own cwd, so send an absolute one. */
static json_t *file_args(const char *file)
{
	char cwd[PATH_MAX], path[PATH_MAX * 2];

	if (file[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(path, sizeof(path), "%s", file);
	else
		snprintf(path, sizeof(path), "%s/%s", cwd, file);
	return json_pack("{s:s}", "file", path);
}

/* --checkpoint=-: the one connection khyve makes, copied to stdout. */
struct relay {
	int lfd;
	int rc; /* 0, or -errno of the first failure */
	uint64_t bytes;
};

static void *relay_thread(void *arg)
{
	struct relay *r = arg;
	int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
	char *buf = malloc(1 << 20);
	ssize_t n;

	if (c < 0 || !buf) {
		r->rc = c < 0 ? -errno : -ENOMEM;
		goto out;
	}
	while ((n = read(c, buf, 1 << 20)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r->rc = -errno;
			break;
		}
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(STDOUT_FILENO, buf + done,
					  (size_t)(n - done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				/* khyve's next write fails: its guest runs on
				 */
				r->rc = -errno;
				goto out;
			}
			done += w;
		}
		r->bytes += (uint64_t)n;
	}
out:
	if (c >= 0)
		close(c);
	free(buf);
	return NULL;
}

/*
 * --checkpoint=-: a snapshot as a stream on stdout (`khyve -r -` reads
 * it): khyve sends a recorded migration stream to a socket of ours and
 * keeps its guest running; the result goes to stderr.
 */
static int run_checkpoint_stream(const struct opts *o, const char *vm)
{
	char dir[] = "/tmp/khyvectl-XXXXXX", to[160];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct relay r = {.lfd = -1};
	struct ctl_conn *c = NULL;
	json_t *args = NULL, *res = NULL;
	struct progress pl;
	pthread_t t;
	bool started = false;
	int rc = EXIT_FAIL;

	signal(SIGPIPE, SIG_IGN);
	if (isatty(STDOUT_FILENO)) {
		errmsg("--checkpoint=-: standard output is a terminal; "
		       "redirect it to a file or a pipe");
		return EXIT_USAGE;
	}
	if (!mkdtemp(dir)) {
		errmsg("mkdtemp: %s", strerror(errno));
		return EXIT_FAIL;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stream", dir);
	r.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r.lfd < 0 || bind(r.lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(r.lfd, 1)) {
		errmsg("%s: %s", sa.sun_path, strerror(errno));
		goto out;
	}
	if (pthread_create(&t, NULL, relay_thread, &r)) {
		errmsg("cannot start a thread");
		goto out;
	}
	started = true;
	snprintf(to, sizeof(to), "unix:%s", sa.sun_path);
	args = json_pack("{s:s, s:b}", "to", to, "record", 1);
	progress_start(&pl, STDERR_FILENO, "saving to stdout");
	if (pl.fd >= 0)
		json_object_set_new(args, "progress", json_true());
	rc = vm_open(o, vm, "migrate", &c);
	if (!rc)
		rc = vm_call(c, vm, "migrate", args, &res, &pl);
	progress_end(&pl);
out:
	if (c)
		ctl_client_close(c);
	if (r.lfd >= 0)
		shutdown(r.lfd, SHUT_RDWR); /* an accept still waiting ends */
	if (started)
		pthread_join(t, NULL);
	if (!rc && r.rc) {
		errmsg("writing the snapshot to standard output: %s",
		       strerror(-r.rc));
		rc = EXIT_FAIL;
	}
	if (!rc) {
		fprintf(stderr,
			"VM '%s' checkpointed to standard output "
			"(%" PRIu64 " bytes)\n",
			vm, r.bytes);
		if (o->json)
			json_dumpf(res, stderr, JSON_INDENT(2));
	}
	json_decref(res);
	json_decref(args);
	if (r.lfd >= 0)
		close(r.lfd);
	unlink(sa.sun_path);
	rmdir(dir);
	return rc;
}

static int run_checkpoint(const struct opts *o, const char *vm,
			  const char *file, bool suspend)
{
	json_t *args;
	struct progress pl;
	char what[96];
	int rc;

	if (!strcmp(file, "-") && !suspend && !o->incremental)
		return run_checkpoint_stream(o, vm);
	args = file_args(file);
	/*
	 * Progress lines only for a person at a terminal (stderr): scripts
	 * and pipes get exactly the output they got before.
	 */
	snprintf(what, sizeof(what), "saving %s", vm);
	if (o->incremental)
		json_object_set_new(args, "incremental", json_true());
	progress_start(&pl, STDERR_FILENO, what);
	if (pl.fd >= 0)
		json_object_set_new(args, "progress", json_true());
	rc = run_cmd(o, vm, suspend ? "suspend" : "checkpoint", args, OUT_DONE,
		     suspend ? "suspended" : "checkpointed", &pl);
	json_decref(args);
	return rc;
}

/* A number option of migrate into @args; false after saying why. */
static bool num_arg(json_t *args, const char *key, const char *opt,
		    const char *val, double scale)
{
	char *end;
	double v;

	if (!val)
		return true;
	errno = 0;
	v = strtod(val, &end);
	if (errno || end == val || *end || v < 0) {
		errmsg("--%s=%s: expected a non-negative number", opt, val);
		return false;
	}
	json_object_set_new(args, key, json_real(v * scale));
	return true;
}

/* Live migration: the final report, or why the guest stayed here. */
static int run_migrate(const struct opts *o, const char *vm, const char *to)
{
	json_t *args = json_pack("{s:s}", "to", to);
	struct progress pl;
	char what[96];
	int rc;

	if (!num_arg(args, "max_downtime_ms", "max-downtime", o->max_downtime,
		     1) ||
	    !num_arg(args, "deadline_s", "deadline", o->deadline, 1) ||
	    !num_arg(args, "bandwidth", "bandwidth", o->bandwidth,
		     1024 * 1024) ||
	    !num_arg(args, "postcopy_after", "postcopy-after",
		     o->postcopy_after, 1)) {
		json_decref(args);
		return EXIT_USAGE;
	}
	if (o->on_deadline)
		json_object_set_new(args, "on_deadline",
				    json_string(o->on_deadline));
	if (o->compress)
		json_object_set_new(args, "compress", json_true());
	if (o->postcopy || o->postcopy_after)
		json_object_set_new(args, "postcopy", json_true());
	snprintf(what, sizeof(what), "migrating %s", vm);
	progress_start(&pl, STDERR_FILENO, what);
	if (pl.fd >= 0)
		json_object_set_new(args, "progress", json_true());
	rc = run_cmd(o, vm, "migrate", args, OUT_DONE, "migrated", &pl);
	json_decref(args);
	return rc;
}

/* ---- list ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The names of the VMs with a socket in @rundir, sorted; @namew grows to
 * the longest. A missing run directory just means no VMs.
 */
static int scan_rundir(const char *rundir, char ***names, size_t *n, int *namew)
{
	size_t cap = 0;
	struct dirent *de;
	DIR *d;

	d = opendir(rundir);
	if (!d && errno != ENOENT)
		return -errno;
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char *name;

		if (len <= 5 || strcmp(de->d_name + len - 5, ".sock"))
			continue;
		name = strndup(de->d_name, len - 5);
		if (!name || !ctl_vmname_valid(name)) {
			free(name);
			continue;
		}
		if (*n == cap) {
			char **p = realloc(*names, (cap = cap * 2 + 8) *
							   sizeof(**names));

			if (!p) {
				free(name);
				break;
			}
			*names = p;
		}
		(*names)[(*n)++] = name;
		*namew = MAX(*namew, (int)len - 5);
	}
	if (d)
		closedir(d);
	if (*n)
		qsort(*names, *n, sizeof(**names), cmp_str);
	return 0;
}

/*
 * Ask one VM for its state: {"vm", "state", "pid"} plus "error" when it
 * could not be asked (a stale socket is an answer, not an error).
 */
static json_t *probe_vm(const struct opts *o, const char *name)
{
	int tmo = o->timeout_ms >= 0 ? o->timeout_ms : LIST_TIMEOUT_MS;
	const char *state = "unknown";
	struct err e = {0};
	json_t *res = NULL, *ent;
	char code[32];
	struct ctl_conn *c;
	json_int_t pid = 0;
	int rc;

	rc = ctl_client_open(&c, o->rundir, name, tmo, &e);
	if (rc == -ECONNREFUSED) {
		state = "stale";
	} else if (rc < 0) {
		state = "unreachable";
	} else {
		pid = json_integer_value(
			json_object_get(ctl_client_greeting(c), "pid"));
		rc = ctl_client_call(c, "status", NULL, &res, code,
				     sizeof(code), &e);
		if (rc == 0 && json_is_string(json_object_get(res, "state")))
			state = json_string_value(
				json_object_get(res, "state"));
		else if (rc < 0)
			state = "unreachable";
		ctl_client_close(c);
	}
	ent = json_pack("{s:s, s:s, s:I}", "vm", name, "state", state, "pid",
			pid);
	if (rc < 0 && strcmp(state, "stale"))
		json_object_set_new(ent, "error", json_string(err_msg(&e)));
	json_decref(res);
	return ent;
}

static void print_list_text(json_t *all, int namew)
{
	size_t k;
	json_t *e;

	printf("%-*s  %-12s %s\n", namew, "NAME", "STATE", "PID");
	json_array_foreach(all, k, e)
	{
		json_int_t pid = json_integer_value(json_object_get(e, "pid"));
		char pids[32] = "-";

		if (pid)
			snprintf(pids, sizeof(pids), "%lld", (long long)pid);
		printf("%-*s  %-12s %s\n", namew,
		       json_string_value(json_object_get(e, "vm")),
		       json_string_value(json_object_get(e, "state")), pids);
	}
}

static int cmd_list(const struct opts *o)
{
	char **names = NULL;
	size_t n = 0, i;
	json_t *all;
	int namew = 4, rc;

	rc = scan_rundir(o->rundir, &names, &n, &namew);
	if (rc < 0) {
		errmsg("cannot read run directory %s: %s", o->rundir,
		       strerror(-rc));
		return EXIT_FAIL;
	}
	all = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(all, probe_vm(o, names[i]));
	if (o->json)
		print_json(all);
	else
		print_list_text(all, namew);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	json_decref(all);
	return 0;
}

/* ---- snapshot files, offline ---- */

static int cmd_snapshot_offline(const struct opts *o, bool verify,
				const char *file)
{
	struct err err = {0};
	int rc;

	if (verify)
		rc = snap_inspect_verify(file, stdout, &err);
	else
		rc = snap_inspect_info(file, o->json, o->all, stdout, &err);
	if (rc < 0) {
		/* the snapshot engine's messages already name the file */
		if (err.msg[0])
			errmsg("%s", err.msg);
		else
			errmsg("%s: %s", file, strerror(-rc));
		return EXIT_FAIL;
	}
	return 0;
}

/* ---- subcommands: one handler each, @av = positional arguments ---- */

static int sub_list(const struct opts *o, char **av)
{
	return cmd_list(o);
}

static int sub_status(const struct opts *o, char **av)
{
	return run_cmd(o, av[0], "status", NULL, OUT_KV, NULL, NULL);
}

static int sub_pause(const struct opts *o, char **av)
{
	return run_cmd(o, av[0], "pause", NULL, OUT_DONE, "paused", NULL);
}

static int sub_resume(const struct opts *o, char **av)
{
	return run_cmd(o, av[0], "resume", NULL, OUT_DONE, "resumed", NULL);
}

static int sub_regs(const struct opts *o, char **av)
{
	json_t *args = regs_args(o, o->msrs);
	int rc;

	rc = run_cmd(o, av[0], "regs", args, OUT_HEX, NULL, NULL);
	json_decref(args);
	return rc;
}

static int sub_stats(const struct opts *o, char **av)
{
	return run_cmd(o, av[0], "stats", NULL, OUT_KV, NULL, NULL);
}

static int sub_poweroff(const struct opts *o, char **av)
{
	json_t *args = json_pack("{s:b}", "force", o->force);
	int rc;

	rc = run_cmd(o, av[0], "poweroff", args, OUT_DONE,
		     o->force ? "powered off" : "sent power button", NULL);
	json_decref(args);
	return rc;
}

static int sub_reset(const struct opts *o, char **av)
{
	return run_cmd(o, av[0], "reset", NULL, OUT_DONE, "reset", NULL);
}

static int sub_migrate(const struct opts *o, char **av)
{
	return run_migrate(o, av[0], av[1]);
}

static int sub_checkpoint(const struct opts *o, char **av)
{
	return run_checkpoint(o, av[0], av[1], false);
}

static int sub_suspend(const struct opts *o, char **av)
{
	return run_checkpoint(o, av[0], av[1], true);
}

static int sub_snapshot_info(const struct opts *o, char **av)
{
	return cmd_snapshot_offline(o, false, av[0]);
}

static int sub_snapshot_verify(const struct opts *o, char **av)
{
	return cmd_snapshot_offline(o, true, av[0]);
}

/* A chain of incremental snapshots flattened into one full snapshot. */
static int sub_snapshot_merge(const struct opts *o, char **av)
{
	struct err err = {0};
	int rc = snap_chain_merge(av[0], av[1], true, &err);

	if (rc < 0) {
		errmsg("%s", err.msg[0] ? err.msg : strerror(-rc));
		return EXIT_FAIL;
	}
	printf("merged %s into %s\n", av[0], av[1]);
	return 0;
}

static const char *form_name(enum snap_form f)
{
	return f == SNAP_FORM_PAIR ? "mapped pair" : "stream";
}

/* A snapshot in the other form: mapped pair <-> zstd-compressed stream. */
static int sub_snapshot_convert(const struct opts *o, char **av)
{
	struct snap_convert_result res;
	struct err err = {0};
	int rc = snap_convert(av[0], av[1], &res, &err);

	if (rc < 0) {
		errmsg("%s", err.msg[0] ? err.msg : strerror(-rc));
		return EXIT_FAIL;
	}
	printf("converted %s (%s%s) to %s (%s): %" PRIu64 " MiB of RAM, "
	       "%" PRIu64 " MiB of data, %" PRIu64 " bytes read, %" PRIu64
	       " written\n",
	       av[0], form_name(res.from),
	       res.links > 1 ? ", a chain, flattened" : "", av[1],
	       form_name(res.to), res.ram_size >> 20,
	       (res.data_pages * 4096) >> 20, res.in_bytes, res.out_bytes);
	return 0;
}

/* Subcommand options a command accepts (besides the global ones). */
#define SUB_VCPU  1u /* --vcpu/--cpu, --msrs */
#define SUB_FORCE 2u
#define SUB_ALL	  4u
#define SUB_INCR  8u /* --incremental */

/*
 * Every subcommand, in the order --help lists them. @group names a
 * command with words (snapshot create/info/verify); @takes_vm: av[0] is a
 * VM name, checked before anything is sent.
 */
static const struct subcommand {
	const char *group, *name;
	int nargs;
	unsigned opts;
	bool takes_vm, offline;
	int (*run)(const struct opts *o, char **av);
	const char *help; /* NULL: listed in another command's line */
} subcommands[] = {
	{NULL, "list", 0, 0, false, false, sub_list,
	 "list                       every VM in the run directory"},
	{NULL, "status", 1, 0, true, false, sub_status,
	 "status VM                  state and summary"},
	{NULL, "pause", 1, 0, true, false, sub_pause,
	 "pause VM | resume VM       stop / restart the vCPUs"},
	{NULL, "resume", 1, 0, true, false, sub_resume, NULL},
	{NULL, "regs", 1, SUB_VCPU, true, false, sub_regs,
	 "regs VM [--vcpu N] [--msrs] registers (VM paused)"},
	{NULL, "stats", 1, 0, true, false, sub_stats,
	 "stats VM                   counters"},
	{NULL, "poweroff", 1, SUB_FORCE, true, false, sub_poweroff,
	 "poweroff VM [--force]      power the VM off"},
	{NULL, "reset", 1, 0, true, false, sub_reset,
	 "reset VM                   reset the VM"},
	{NULL, "migrate", 2, 0, true, false, sub_migrate,
	 "migrate VM ADDR            live migration to tcp:H:P, unix:P, fd:N"},
	{NULL, "checkpoint", 2, SUB_INCR, true, false, sub_checkpoint,
	 "checkpoint VM FILE         save a snapshot, keep running\n"
	 "    [--incremental]          only what changed since the previous "
	 "one"},
	{"snapshot", "create", 2, SUB_INCR, true, false, sub_checkpoint,
	 "snapshot create VM FILE    same as checkpoint"},
	{NULL, "suspend", 2, SUB_INCR, true, false, sub_suspend,
	 "suspend VM FILE            save a snapshot, then power off"},
	{"snapshot", "info", 1, SUB_ALL, false, true, sub_snapshot_info,
	 "snapshot info FILE [--all] [--json]"},
	{"snapshot", "verify", 1, 0, false, true, sub_snapshot_verify,
	 "snapshot verify FILE       (every link of a chain)"},
	{"snapshot", "merge", 2, 0, false, true, sub_snapshot_merge,
	 "snapshot merge TIP OUT     a chain as one full snapshot"},
	{"snapshot", "convert", 2, 0, false, true, sub_snapshot_convert,
	 "snapshot convert IN OUT    mapped pair <-> compressed stream"},
};

static void usage(FILE *f)
{
	size_t i;

	fputs("usage: khyvectl [--rundir DIR] [--json] [--timeout SEC] "
	      "COMMAND [ARGS]\n"
	      "\n"
	      "commands talking to a running VM:\n",
	      f);
	for (i = 0; i < ARRAY_SIZE(subcommands); i++)
		if (!subcommands[i].offline && subcommands[i].help)
			fprintf(f, "  %s\n", subcommands[i].help);
	fputs("offline:\n", f);
	for (i = 0; i < ARRAY_SIZE(subcommands); i++)
		if (subcommands[i].offline && subcommands[i].help)
			fprintf(f, "  %s\n", subcommands[i].help);
	fputs("bhyvectl style:\n"
	      "  khyvectl --vm=NAME [--status] [--pause] [--get-all] "
	      "[--get-rip]\n"
	      "           [--get-stats] [--checkpoint=FILE] "
	      "[--suspend=FILE] [--incremental]\n"
	      "           [--resume] [--force-reset] [--force-poweroff] "
	      "[--cpu=N]\n"
	      "           [--migrate=ADDR [--max-downtime=MS] "
	      "[--deadline=S]\n"
	      "            [--on-deadline=abort|throttle] "
	      "[--bandwidth=MIB_S] [--compress]\n"
	      "            [--postcopy] [--postcopy-after=ROUNDS]]\n"
	      "\n"
	      "Default run directory: $KHYVE_RUNDIR or /run/khyve.\n"
	      "Exit status: 0 success, 1 failure, 2 usage error.\n",
	      f);
}

/* ---- command line ---- */

enum {
	OPT_RUNDIR = 256,
	OPT_JSON,
	OPT_TIMEOUT,
	OPT_VCPU,
	OPT_MSRS,
	OPT_FORCE,
	OPT_ALL,
	OPT_VM,
	OPT_STATUS,
	OPT_PAUSE,
	OPT_RESUME,
	OPT_GET_ALL,
	OPT_GET_RIP,
	OPT_GET_STATS,
	OPT_CHECKPOINT,
	OPT_SUSPEND,
	OPT_FORCE_RESET,
	OPT_FORCE_POWEROFF,
	OPT_INCREMENTAL,
	OPT_MIGRATE,
	OPT_MAX_DOWNTIME,
	OPT_DEADLINE,
	OPT_ON_DEADLINE,
	OPT_BANDWIDTH,
	OPT_COMPRESS,
	OPT_POSTCOPY,
	OPT_POSTCOPY_AFTER,
};

static const struct option long_opts[] = {
	{"rundir", required_argument, NULL, OPT_RUNDIR},
	{"json", no_argument, NULL, OPT_JSON},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"vcpu", required_argument, NULL, OPT_VCPU},
	{"cpu", required_argument, NULL, OPT_VCPU},
	{"msrs", no_argument, NULL, OPT_MSRS},
	{"force", no_argument, NULL, OPT_FORCE},
	{"all", no_argument, NULL, OPT_ALL},
	{"vm", required_argument, NULL, OPT_VM},
	{"status", no_argument, NULL, OPT_STATUS},
	{"pause", no_argument, NULL, OPT_PAUSE},
	{"resume", no_argument, NULL, OPT_RESUME},
	{"get-all", no_argument, NULL, OPT_GET_ALL},
	{"get-rip", no_argument, NULL, OPT_GET_RIP},
	{"get-stats", no_argument, NULL, OPT_GET_STATS},
	{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
	{"suspend", required_argument, NULL, OPT_SUSPEND},
	{"force-reset", no_argument, NULL, OPT_FORCE_RESET},
	{"force-poweroff", no_argument, NULL, OPT_FORCE_POWEROFF},
	{"incremental", no_argument, NULL, OPT_INCREMENTAL},
	{"migrate", required_argument, NULL, OPT_MIGRATE},
	{"max-downtime", required_argument, NULL, OPT_MAX_DOWNTIME},
	{"deadline", required_argument, NULL, OPT_DEADLINE},
	{"on-deadline", required_argument, NULL, OPT_ON_DEADLINE},
	{"bandwidth", required_argument, NULL, OPT_BANDWIDTH},
	{"compress", no_argument, NULL, OPT_COMPRESS},
	{"postcopy", no_argument, NULL, OPT_POSTCOPY},
	{"postcopy-after", required_argument, NULL, OPT_POSTCOPY_AFTER},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool any_action(const struct opts *o)
{
	return o->status || o->pause || o->get_all || o->get_rip ||
	       o->get_stats || o->checkpoint || o->suspend || o->resume ||
	       o->force_reset || o->force_poweroff || o->migrate;
}

/* bhyvectl style: every requested action, in a fixed order. */
static int run_actions(const struct opts *o)
{
	const char *vm = o->vm;
	json_t *args;
	int rc = 0;

	if (!rc && o->status)
		rc = run_cmd(o, vm, "status", NULL, OUT_KV, NULL, NULL);
	if (!rc && o->pause)
		rc = run_cmd(o, vm, "pause", NULL, OUT_DONE, "paused", NULL);
	if (!rc && (o->get_all || o->get_rip)) {
		args = regs_args(o, o->get_all);
		rc = run_cmd(o, vm, "regs", args,
			     o->get_all ? OUT_HEX : OUT_RIP, NULL, NULL);
		json_decref(args);
	}
	if (!rc && o->get_stats)
		rc = run_cmd(o, vm, "stats", NULL, OUT_KV, NULL, NULL);
	if (!rc && o->checkpoint)
		rc = run_checkpoint(o, vm, o->checkpoint, false);
	if (!rc && o->suspend)
		rc = run_checkpoint(o, vm, o->suspend, true);
	if (!rc && o->resume)
		rc = run_cmd(o, vm, "resume", NULL, OUT_DONE, "resumed", NULL);
	/* Last but for the power ones: the VM is gone once it succeeded. */
	if (!rc && o->migrate)
		rc = run_migrate(o, vm, o->migrate);
	if (!rc && o->force_reset)
		rc = run_cmd(o, vm, "reset", NULL, OUT_DONE, "reset", NULL);
	if (!rc && o->force_poweroff) {
		args = json_pack("{s:b}", "force", 1);
		rc = run_cmd(o, vm, "poweroff", args, OUT_DONE, "powered off",
			     NULL);
		json_decref(args);
	}
	return rc;
}

/* "unknown snapshot command 'x' (create, info, verify)" */
static void unknown_in_group(const char *group, const char *sub)
{
	char names[128] = "";
	size_t i, len = 0;

	for (i = 0; i < ARRAY_SIZE(subcommands); i++) {
		const struct subcommand *t = &subcommands[i];

		if (!t->group || strcmp(t->group, group))
			continue;
		snprintf(names + len, sizeof(names) - len, "%s%s",
			 len ? ", " : "", t->name);
		len = strlen(names);
	}
	errmsg("unknown %s command '%s' (%s)", group, sub, names);
}

/* Subcommand @cmd with its @n positional arguments. */
static int run_subcommand(const struct opts *o, const char *cmd, int n,
			  char **av)
{
	const struct subcommand *sc = NULL;
	bool in_group = false;
	unsigned used;
	size_t i;

	used = (o->vcpu_set || o->msrs ? SUB_VCPU : 0) |
	       (o->force ? SUB_FORCE : 0) | (o->all ? SUB_ALL : 0) |
	       (o->incremental ? SUB_INCR : 0);
	for (i = 0; i < ARRAY_SIZE(subcommands) && !sc; i++) {
		const struct subcommand *t = &subcommands[i];

		if (!t->group) {
			if (!strcmp(t->name, cmd))
				sc = t;
		} else if (!strcmp(t->group, cmd)) {
			in_group = true;
			if (n > 0 && !strcmp(t->name, av[0]))
				sc = t;
		}
	}
	if (!sc && in_group) {
		unknown_in_group(cmd, n > 0 ? av[0] : "");
		return EXIT_USAGE;
	}
	if (!sc) {
		errmsg("unknown command '%s' (see khyvectl --help)", cmd);
		return EXIT_USAGE;
	}
	if (sc->group) {
		n--;
		av++;
	}
	if (n != sc->nargs || (used & ~sc->opts)) {
		errmsg("wrong arguments or options for '%s' (see khyvectl "
		       "--help)",
		       cmd);
		return EXIT_USAGE;
	}
	if (sc->takes_vm && !ctl_vmname_valid(av[0])) {
		errmsg("invalid VM name '%s'", av[0]);
		return EXIT_USAGE;
	}
	return sc->run(o, av);
}

/* A bhyvectl-style action flag: records it and returns true, else false. */
static bool set_action(struct opts *o, int c)
{
	switch (c) {
	case OPT_STATUS:
		o->status = true;
		break;
	case OPT_PAUSE:
		o->pause = true;
		break;
	case OPT_RESUME:
		o->resume = true;
		break;
	case OPT_GET_ALL:
		o->get_all = true;
		break;
	case OPT_GET_RIP:
		o->get_rip = true;
		break;
	case OPT_GET_STATS:
		o->get_stats = true;
		break;
	case OPT_CHECKPOINT:
		o->checkpoint = optarg;
		break;
	case OPT_SUSPEND:
		o->suspend = optarg;
		break;
	case OPT_FORCE_RESET:
		o->force_reset = true;
		break;
	case OPT_FORCE_POWEROFF:
		o->force_poweroff = true;
		break;
	case OPT_MIGRATE:
		o->migrate = optarg;
		break;
	case OPT_MAX_DOWNTIME:
		o->max_downtime = optarg;
		break;
	case OPT_DEADLINE:
		o->deadline = optarg;
		break;
	case OPT_ON_DEADLINE:
		o->on_deadline = optarg;
		break;
	case OPT_BANDWIDTH:
		o->bandwidth = optarg;
		break;
	case OPT_COMPRESS:
		o->compress = true;
		break;
	case OPT_POSTCOPY:
		o->postcopy = true;
		break;
	case OPT_POSTCOPY_AFTER:
		o->postcopy_after = optarg;
		break;
	default:
		return false;
	}
	return true;
}

/*
 * Parse the options into @o. Sets *@stop when khyvectl is done (help,
 * version, usage error) and returns its exit status then.
 */
static int parse_opts(struct opts *o, int argc, char **argv, bool *stop)
{
	long v;
	int c;

	*stop = true;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_RUNDIR:
			o->rundir = optarg;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_TIMEOUT:
			if (!parse_long(optarg, 0, INT_MAX / 1000, &v)) {
				errmsg("invalid --timeout '%s' (seconds)",
				       optarg);
				return EXIT_USAGE;
			}
			o->timeout_ms = (int)v * 1000;
			break;
		case OPT_VCPU:
			if (!parse_long(optarg, 0, INT_MAX, &o->vcpu)) {
				errmsg("invalid vCPU number '%s'", optarg);
				return EXIT_USAGE;
			}
			o->vcpu_set = true;
			break;
		case OPT_MSRS:
			o->msrs = true;
			break;
		case OPT_FORCE:
			o->force = true;
			break;
		case OPT_ALL:
			o->all = true;
			break;
		case OPT_INCREMENTAL:
			o->incremental = true;
			break;
		case OPT_VM:
			o->vm = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("khyvectl %s (control protocol %d)\n",
			       KHYVE_VERSION, CTL_PROTOCOL);
			return 0;
		default:
			if (set_action(o, c))
				break;
			if (optopt)
				errmsg("option '%s' %s", argv[optind - 1],
				       "is missing its argument or takes none");
			else
				errmsg("unknown option '%s'", argv[optind - 1]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	*stop = false;
	return 0;
}

/* khyvectl --vm=NAME --action...: actions only, no command. */
static int run_vm_options(const struct opts *o, bool have_command)
{
	if (!o->vm) {
		errmsg("bhyvectl-style options need --vm=NAME");
		return EXIT_USAGE;
	}
	if (!ctl_vmname_valid(o->vm)) {
		errmsg("invalid VM name '%s'", o->vm);
		return EXIT_USAGE;
	}
	if (have_command || !any_action(o) || o->msrs || o->force || o->all ||
	    (o->incremental && !o->checkpoint && !o->suspend)) {
		errmsg("--vm=NAME takes action options (--status, "
		       "--get-all, ...) and no command");
		return EXIT_USAGE;
	}
	return run_actions(o);
}

int main(int argc, char **argv)
{
	struct opts o = {.timeout_ms = -1};
	bool stop;
	int rc;

	o.rundir = ctl_default_rundir();
	rc = parse_opts(&o, argc, argv, &stop);
	if (stop)
		return rc;
	if (o.vm || any_action(&o))
		return run_vm_options(&o, optind < argc);
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return run_subcommand(&o, argv[optind], argc - optind - 1,
			      argv + optind + 1);
}
