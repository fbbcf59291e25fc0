/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The golden snapshots (tests/golden), on every host, without KVM.
 *
 * tests/golden/PINNED lists every file there with its SHA-256 and, for a
 * state file, the format version it was written in. A golden file that
 * changed, or one that is not pinned, fails: regenerating a golden (with
 * today's khyve) would turn "an older khyve's file still loads" into a
 * round trip that proves nothing, so that must be a visible, reviewed
 * change of PINNED, never a side effect (see tests/golden/README.md).
 *
 * Then, per state file: the header's format is the pinned one;
 * `khyvectl snapshot verify` (every checksum, every RAM chunk hash) and
 * `snapshot info --all` (every field decoded) succeed; and every section
 * is loaded through this khyve's own description of it - the same
 * snap_read_section() calls a restore makes, with its version and bound
 * checks - and none is left over (snap_reader_check_consumed). That is
 * the whole restore except handing the state to KVM, so it runs whatever
 * CPU vendor wrote the file (restore itself refuses a foreign vendor).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "i8042.h"
#include "pci.h"
#include "pm.h"
#include "rtc.h"
#include "snap.h"
#include "snap_chain.h"
#include "snap_ram.h"
#include "uart8250.h"
#include "unit.h"
#include "vcpu_state.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"
#include "vm_snapshot.h"
#include "vmgenid.h"

#define MAX_PINS 64

struct pin {
	char sha[65];
	char format[16]; /* "1.0", or "-" for files that are not state files */
	char file[256];
};

static struct pin pins[MAX_PINS];
static unsigned npins;
static char root[PATH_MAX], golden[PATH_MAX + 16], khyvectl[PATH_MAX + 16];

/*
 * Every section a restore loads, by name (blobs "config", "ram" and an
 * increment's "parent" aside).
 */
static const struct snap_desc *const descs[] = {
	&kvm_vm_snap,	  &vcpu_state_snap,	&uart8250_snap_desc,
	&rtc_snap_desc,	  &i8042_snap_desc,	&pm_snap_desc,
	&pci_dev_snap,	  &pci_bus_snap,	&virtio_pci_snap,	&virtq_snap,
	&virtio_blk_snap, &virtio_net_snap,	&virtio_console_snap,
	&vmgenid_snap,
};

/* BUILD/tests/unit/test_golden -> BUILD/khyvectl, and BUILD/.. is the tree. */
static bool find_paths(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *p;

	if (n <= 0)
		return false;
	self[n] = '\0';
	p = strstr(self, "/tests/unit/");
	if (!p)
		return false;
	*p = '\0';
	snprintf(khyvectl, sizeof(khyvectl), "%s/khyvectl", self);
	p = strrchr(self, '/');
	if (!p)
		return false;
	*p = '\0';
	snprintf(root, sizeof(root), "%s", self);
	snprintf(golden, sizeof(golden), "%s/tests/golden", root);
	return true;
}

/* Run @argv, stdout and stderr into @out; its exit status, or -1. */
static int run(char *out, size_t len, const char *const *argv)
{
	size_t got = 0;
	int p[2], status;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t n = read(p[0], out + got, len - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == len - 1) { /* drain the rest, keep the start */
			char sink[4096];

			while (read(p[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	out[got] = '\0';
	close(p[0]);
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void read_pins(void)
{
	char path[PATH_MAX + 32], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/PINNED", golden);
	f = fopen(path, "r");
	CHECK(f != NULL);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		struct pin *p = &pins[npins];

		if (line[0] == '#' || line[0] == '\n')
			continue;
		CHECK(npins < MAX_PINS);
		if (npins >= MAX_PINS)
			break;
		if (sscanf(line, "%64s %15s %255s", p->sha, p->format,
			   p->file) != 3 ||
		    strlen(p->sha) != 64 || strchr(p->file, '/')) {
			fprintf(stderr, "PINNED: bad line: %s", line);
			CHECK(0);
			continue;
		}
		npins++;
	}
	fclose(f);
}

static const struct pin *pin_of(const char *file)
{
	for (unsigned i = 0; i < npins; i++)
		if (!strcmp(pins[i].file, file))
			return &pins[i];
	return NULL;
}

/* Every pinned file is there with its hash; every file there is pinned. */
static void test_pinned(void)
{
	struct dirent *de;
	unsigned nsnap = 0;
	DIR *d;

	read_pins();
	CHECK(npins > 0);
	for (unsigned i = 0; i < npins; i++) {
		char path[PATH_MAX + 300], out[512];

		snprintf(path, sizeof(path), "%s/%s", golden, pins[i].file);
		CHECK_EQ(run(out, sizeof(out),
			     (const char *const[]){"sha256sum", "--", path,
						   NULL}),
			 0);
		if (strncmp(out, pins[i].sha, 64)) {
			fprintf(stderr,
				"%s changed: sha256 %.64s, pinned %s (golden "
				"files are never regenerated: add a new one)\n",
				path, out, pins[i].sha);
			CHECK(0);
		}
		nsnap += strcmp(pins[i].format, "-") != 0;
	}
	CHECK(nsnap > 0);
	d = opendir(golden);
	CHECK(d != NULL);
	while (d && (de = readdir(d))) {
		const char *n = de->d_name;

		if (n[0] == '.' || !strcmp(n, "PINNED") ||
		    !strcmp(n, "README.md") || !strcmp(n, "make-golden.sh"))
			continue;
		if (!pin_of(n)) {
			fprintf(stderr, "%s/%s is not pinned in PINNED\n",
				golden, n);
			CHECK(0);
		}
	}
	if (d)
		closedir(d);
}

static const struct snap_desc *desc_of(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(descs); i++)
		if (!strcmp(descs[i]->name, name))
			return descs[i];
	return NULL;
}

/*
 * An increment (format 1.2): its "parent" section decodes as a restore
 * reads it, and the parent it names is a pinned golden state file too
 * (so the whole chain is committed and kept).
 */
static void load_parent(struct snap_reader *r, const char *path)
{
	struct snap_chain_parent par = {0};
	struct err se = {0};
	const struct pin *pp;
	int rc = snap_chain_read_section(r, &par, &se);

	if (rc == -ENOENT)
		return;
	CHECK_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "%s: %s\n", path, se.msg);
		return;
	}
	CHECK(par.depth >= 1 && par.held > 0);
	pp = pin_of(par.file);
	CHECK(pp != NULL && strcmp(pp->format, "-"));
	if (!pp)
		fprintf(stderr, "%s: parent %s is not pinned\n", path,
			par.file);
	snap_chain_parent_free(&par);
}

/* Every section through this khyve's loaders, as a restore does. */
static void load_all(const char *path, const struct pin *p)
{
	struct snap_reader *r = NULL;
	struct err se = {0};
	struct snap_ram_info ram = {0};
	struct vm_config cfg;
	const struct pin *rp;
	char fmt[16];
	unsigned nvcpu = 0;
	const void *data;
	size_t len;
	uint16_t ver;
	json_t *j;

	CHECK_EQ(snap_reader_open(&r, path, &se), 0);
	if (!r) {
		fprintf(stderr, "%s\n", se.msg);
		return;
	}
	snprintf(fmt, sizeof(fmt), "%u.%u", snap_reader_header(r)->major,
		 snap_reader_header(r)->minor);
	if (strcmp(fmt, p->format)) {
		fprintf(stderr, "%s: format %s, pinned as %s\n", path, fmt,
			p->format);
		CHECK(0);
	}
	/* The embedded config, as khyve -r reads it first. */
	CHECK_EQ(snap_read_blob(r, "config", 0, &data, &len, &ver, &se), 0);
	j = se.msg[0] ? NULL : json_loadb(data, len, 0, NULL);
	CHECK(j != NULL);
	memset(&cfg, 0, sizeof(cfg));
	if (j) {
		CHECK_EQ(config_from_json(&cfg, j, &se), 0);
		json_decref(j);
	}
	CHECK_EQ(snap_ram_read_section(r, &ram, &se), 0);
	CHECK_EQ(ram.ram_size, cfg.mem_size);
	/* Its RAM file is a golden file too, pinned. */
	rp = pin_of(ram.file);
	CHECK(rp != NULL && !strcmp(rp->format, "-"));
	if (!rp)
		fprintf(stderr, "%s: RAM file %s is not pinned\n", path,
			ram.file);
	load_parent(r, path);
	for (unsigned i = 0; i < snap_reader_nsections(r); i++) {
		struct snap_section_info si;
		const struct snap_desc *d;
		void *state;

		CHECK_EQ(snap_reader_section(r, i, &si), 0);
		if (si.kind == SNAP_KIND_BLOB)
			continue; /* config, ram: above */
		d = desc_of(si.name);
		if (!d) {
			fprintf(stderr, "%s: no loader for section '%s'\n",
				path, si.name);
			CHECK(0);
			continue;
		}
		state = calloc(1, d->state_size);
		CHECK(state != NULL);
		if (!state)
			continue;
		se.msg[0] = 0;
		CHECK_EQ(snap_read_section(r, d, si.instance, state, &se), 0);
		if (se.msg[0])
			fprintf(stderr, "%s\n", se.msg);
		nvcpu += d == &vcpu_state_snap;
		free(state);
	}
	/* What a restore of this config needs is all there. */
	CHECK_EQ(nvcpu, cfg.ncpus);
	for (unsigned i = 0; i < cfg.ncpus; i++)
		CHECK(snap_has_section(r, vcpu_state_snap.name, i));
	CHECK(snap_has_section(r, kvm_vm_snap.name, 0));
	for (unsigned i = 0; i < cfg.ndevs; i++)
		CHECK(snap_has_section(r, pci_dev_snap.name,
				       cfg.devs[i].slot * 8 + cfg.devs[i].func));
	se.msg[0] = 0;
	CHECK_EQ(snap_reader_check_consumed(r, &se), 0);
	if (se.msg[0])
		fprintf(stderr, "%s\n", se.msg);
	snap_ram_info_free(&ram);
	config_free(&cfg);
	snap_reader_close(r);
}

static void test_snapshots(void)
{
	static char out[1 << 20];
	unsigned n = 0;

	if (access(khyvectl, X_OK)) {
		/* `make unit` builds it first: its absence is a broken tree. */
		fprintf(stderr, "%s is not built\n", khyvectl);
		CHECK(0);
		return;
	}
	for (unsigned i = 0; i < npins; i++) {
		char path[PATH_MAX + 300], want[PATH_MAX + 320], line[64];
		const struct pin *p = &pins[i];

		if (!strcmp(p->format, "-"))
			continue;
		n++;
		snprintf(path, sizeof(path), "%s/%s", golden, p->file);
		/* Checksums of the header, each section, the file, RAM chunks. */
		CHECK_EQ(run(out, sizeof(out),
			     (const char *const[]){khyvectl, "snapshot",
						   "verify", path, NULL}),
			 0);
		snprintf(want, sizeof(want), "\n%s: ok\n", path);
		if (!strstr(out, want)) {
			fprintf(stderr, "verify %s:\n%s\n", path, out);
			CHECK(0);
		}
		/* Every field of every section decodes. */
		CHECK_EQ(run(out, sizeof(out),
			     (const char *const[]){khyvectl, "snapshot", "info",
						   "--all", path, NULL}),
			 0);
		snprintf(line, sizeof(line), "\nformat:    %s\n", p->format);
		if (!strstr(out, line)) {
			fprintf(stderr, "info --all %s: no '%s' line:\n%.2000s\n",
				path, line + 1, out);
			CHECK(0);
		}
		load_all(path, p);
	}
	CHECK(n > 0);
}

int main(void)
{
	if (!find_paths()) {
		fprintf(stderr, "cannot find the build tree from /proc/self/exe\n");
		return 1;
	}
	RUN(test_pinned);
	RUN(test_snapshots);
	return unit_done();
}
