/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "unit.h"

static struct err err;

#define PARSE(c, ...)                                                  \
	({                                                             \
		char *argv_[] = { "khyve", __VA_ARGS__, NULL };        \
		err_clear(&err);                                       \
		config_parse(c, (int)ARRAY_SIZE(argv_) - 1, argv_, &err); \
	})

static void test_sizes(void)
{
	uint64_t v;

	CHECK_EQ(config_parse_size("512M", &v), 0);
	CHECK_EQ(v, 512 * MiB);
	CHECK_EQ(config_parse_size("2G", &v), 0);
	CHECK_EQ(v, 2 * GiB);
	CHECK_EQ(config_parse_size("6GiB", &v), 0);
	CHECK_EQ(v, 6 * GiB);
	CHECK_EQ(config_parse_size("256", &v), 0); /* bare small = MiB */
	CHECK_EQ(v, 256 * MiB);
	CHECK_EQ(config_parse_size("4096k", &v), 0);
	CHECK_EQ(v, 4 * MiB);
	CHECK_EQ(config_parse_size("", &v), -EINVAL);
	CHECK_EQ(config_parse_size("12X", &v), -EINVAL);
	CHECK_EQ(config_parse_size("-1G", &v), -EINVAL);
	CHECK_EQ(config_parse_size("99999999999999999999G", &v), -EINVAL);
	CHECK_EQ(config_parse_size("9999999999T", &v), -EINVAL);
}

static void test_basic(void)
{
	struct vm_config c;

	CHECK_EQ(PARSE(&c, "-c", "2", "-m", "512M", "-k", "vmlinux", "-i",
		       "initrd", "-a", "console=ttyS0", "-l", "com1,stdio",
		       "vm1"),
		 CONFIG_OK);
	CHECK_EQ(c.ncpus, 2);
	CHECK_EQ(c.mem_size, 512 * MiB);
	CHECK(!strcmp(c.kernel, "vmlinux"));
	CHECK(!strcmp(c.initrd, "initrd"));
	CHECK(!strcmp(c.cmdline, "console=ttyS0"));
	CHECK(!strcmp(c.console, "stdio"));
	CHECK(!strcmp(c.name, "vm1"));
	config_free(&c);
	/* Long forms and defaults; parsing twice works (getopt reset). */
	CHECK_EQ(PARSE(&c, "--kernel=k", "--cpus=8", "--memory", "1G", "x"),
		 CONFIG_OK);
	CHECK_EQ(c.ncpus, 8);
	CHECK(!strcmp(c.console, "stdio"));
	config_free(&c);
}

static void test_bad(void)
{
	struct vm_config c;

	CHECK_EQ(PARSE(&c, "-c", "0", "-k", "k", "vm"), -EINVAL);
	CHECK(strstr(err.msg, "vCPUs") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-c", "65", "-k", "k", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-c", "2x", "-k", "k", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-m", "1M", "-k", "k", "vm"), -EINVAL);
	CHECK(strstr(err.msg, "at least") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-m", "lots", "-k", "k", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k"), -EINVAL);
	CHECK(strstr(err.msg, "VM name") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "vm"), -EINVAL);
	CHECK(strstr(err.msg, "kernel") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "--frobnicate", "-k", "k", "vm"), -EINVAL);
	CHECK(strstr(err.msg, "--frobnicate") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k"), -EINVAL);
	CHECK(strstr(err.msg, "argument") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k", "../evil"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k", "vm", "extra"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-l", "com2,stdio", "-k", "k", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-r", "snap", "-k", "k"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "--eager", "-k", "k", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "--cpu-policy", "fast", "-k", "k", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-h"), CONFIG_HELP);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-s", "help"), CONFIG_LIST_DEVS);
	config_free(&c);
}

static void test_devices(void)
{
	struct vm_config c;
	char v[64];

	CHECK_EQ(PARSE(&c, "-k", "k", "-s", "2,virtio-blk,/tmp/d.img,ro", "-s",
		       "3:1,virtio-net,tap0,mac=52:54:00:12:34:56", "vm"),
		 CONFIG_OK);
	CHECK_EQ(c.ndevs, 2);
	CHECK_EQ(c.devs[0].slot, 2);
	CHECK(!strcmp(c.devs[0].emul, "virtio-blk"));
	CHECK(!strcmp(c.devs[0].conf, "/tmp/d.img,ro"));
	CHECK_EQ(c.devs[1].func, 1);
	CHECK(config_opt_get(c.devs[1].conf, "mac", v, sizeof(v)));
	CHECK(!strcmp(v, "52:54:00:12:34:56"));
	CHECK(config_opt_get(c.devs[0].conf, "ro", v, sizeof(v)));
	CHECK(!config_opt_get(c.devs[0].conf, "r", v, sizeof(v)));
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k", "-s", "2,virtio-blk,a", "-s",
		       "2,virtio-rng", "vm"),
		 -EINVAL);
	CHECK(strstr(err.msg, "already taken") != NULL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k", "-s", "32,virtio-rng", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k", "-s", "x,virtio-rng", "vm"), -EINVAL);
	config_free(&c);
	CHECK_EQ(PARSE(&c, "-k", "k", "-s", "4", "vm"), -EINVAL);
	config_free(&c);
}

static void test_json_and_restore_merge(void)
{
	struct vm_config c, back, cmd;
	json_t *j;

	CHECK_EQ(PARSE(&c, "-c", "2", "-m", "1G", "-k", "k", "-a", "x=1", "-s",
		       "2,virtio-blk,/a.img,ro", "vm1"),
		 CONFIG_OK);
	j = config_to_json(&c);
	CHECK(j != NULL);
	CHECK_EQ(config_from_json(&back, j, &err), 0);
	CHECK_EQ(back.ncpus, 2);
	CHECK_EQ(back.mem_size, GiB);
	CHECK(!strcmp(back.cmdline, "x=1"));
	CHECK_EQ(back.ndevs, 1);
	CHECK(!strcmp(back.devs[0].conf, "/a.img,ro"));
	json_decref(j);

	/* Rebinding the disk path and the name is fine. */
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-s", "2,virtio-blk,/b.img,ro", "clone1"),
		 CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), 0);
	CHECK(!strcmp(back.devs[0].conf, "/b.img,ro"));
	CHECK(!strcmp(back.name, "clone1"));
	config_free(&cmd);
	/* Guest-visible differences are refused, naming them. */
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-s", "2,virtio-blk,/b.img"), CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), -EINVAL);
	CHECK(strstr(err.msg, "differ") != NULL);
	config_free(&cmd);
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-c", "4"), CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), -EINVAL);
	CHECK(strstr(err.msg, "vCPUs") != NULL);
	config_free(&cmd);
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-s", "5,virtio-rng"), CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), -EINVAL);
	config_free(&cmd);

	config_free(&back);
	/* Hostile configuration JSON. */
	j = json_loads("{\"name\":\"a\",\"cpus\":0,\"memory\":1073741824}", 0,
		       NULL);
	CHECK_EQ(config_from_json(&back, j, &err), -EINVAL);
	CHECK(strstr(err.msg, "cpus") != NULL);
	json_decref(j);
	j = json_loads("{\"name\":\"../x\",\"cpus\":1,\"memory\":1073741824}", 0,
		       NULL);
	CHECK_EQ(config_from_json(&back, j, &err), -EINVAL);
	json_decref(j);
	j = json_loads("{\"name\":\"a\",\"cpus\":1,\"memory\":1073741824,"
		       "\"devices\":[{\"slot\":99,\"func\":0,\"emulation\":\"x\",\"conf\":\"\"}]}",
		       0, NULL);
	CHECK_EQ(config_from_json(&back, j, &err), -EINVAL);
	json_decref(j);
	/* Two devices in one slot:func (found by fuzz_config). */
	j = json_loads("{\"name\":\"a\",\"cpus\":1,\"memory\":1073741824,"
		       "\"devices\":[{\"slot\":3,\"func\":0,\"emulation\":\"virtio-blk\",\"conf\":\"d\"},"
		       "{\"slot\":3,\"func\":0,\"emulation\":\"virtio-net\",\"conf\":\"\"}]}",
		       0, NULL);
	CHECK_EQ(config_from_json(&back, j, &err), -EINVAL);
	CHECK(strstr(err.msg, "slot 3:0 is already taken by virtio-blk") != NULL);
	json_decref(j);
	config_free(&back);
	config_free(&c);
}

/* config_host_bindings' callback: every binding as "what kind target;". */
static void note_binding(void *opaque, const char *what, const char *kind,
			 const char *target)
{
	char *out = opaque;
	size_t n = strlen(out);

	snprintf(out + n, 1024 - n, "%s %s %s;", what, kind, target);
}

/*
 * What a restore opens on the host and what --strict-bindings refuses to
 * take from a snapshot, for every device that binds something (the
 * device's own dev_ops answers) and for those that bind nothing.
 */
static void test_host_bindings(void)
{
	struct vm_config c;
	char seen[1024] = "";

	CHECK_EQ(PARSE(&c, "-k", "k", "-l", "com1,file:/c.log", "-s",
		       "2,virtio-blk,/a.img,ro", "-s",
		       "3,virtio-net,tap0,mac=02:00:00:00:00:01", "-s",
		       "4,virtio-net,mac=02:00:00:00:00:02", "-s",
		       "5,virtio-rng", "-s",
		       "6,virtio-console,unix=/s.sock,cols=80,rows=24", "-s",
		       "7,virtio-console,stdio", "-s",
		       "8,virtio-console,append:/x.log", "vm1"),
		 CONFIG_OK);
	config_host_bindings(&c, note_binding, seen);
	CHECK(!strcmp(seen, "com1 file /c.log;"
			    "virtio-blk@2:0 disk /a.img;"
			    "virtio-net@3:0 tap tap0;"
			    "virtio-net@4:0 tap ;"
			    "virtio-console@6:0 socket /s.sock;"
			    "virtio-console@7:0 stdio ;"
			    "virtio-console@8:0 append /x.log;"));

	/* Everything from the command line: nothing to refuse. */
	c.strict_bindings = true;
	CHECK_EQ(config_check_strict_bindings(&c, &err), 0);
	c.console_from_snapshot = true;
	CHECK_EQ(config_check_strict_bindings(&c, &err), -EPERM);
	CHECK(!strcmp(err.msg, "--strict-bindings: the snapshot's COM1 "
			       "console is file:/c.log; give one with -l "
			       "com1,BACKEND"));
	c.console_from_snapshot = false;
	/* One device at a time left to the snapshot. */
	for (unsigned i = 0; i < c.ndevs; i++) {
		static const char *const want[] = {
			"--strict-bindings: the snapshot's virtio-blk at 2:0 "
			"is bound to '/a.img'; give it with -s "
			"2:0,virtio-blk,BINDING,ro",
			"--strict-bindings: the snapshot's virtio-net at 3:0 "
			"is bound to 'tap0'; give it with -s "
			"3:0,virtio-net,BINDING,mac=02:00:00:00:00:01",
			NULL, /* a new TAP: nothing named */
			NULL, /* virtio-rng binds nothing */
			"--strict-bindings: the snapshot's virtio-console at "
			"6:0 is bound to 'unix=/s.sock'; give it with -s "
			"6:0,virtio-console,BINDING,cols=80,rows=24",
			NULL, /* stdio */
			"--strict-bindings: the snapshot's virtio-console at "
			"8:0 is bound to 'append:/x.log'; give it with -s "
			"8:0,virtio-console,BINDING",
		};

		CHECK_EQ(c.ndevs, ARRAY_SIZE(want));
		c.devs[i].from_snapshot = true;
		err_clear(&err);
		CHECK_EQ(config_check_strict_bindings(&c, &err),
			 want[i] ? -EPERM : 0);
		CHECK(!strcmp(err.msg, want[i] ? want[i] : ""));
		c.devs[i].from_snapshot = false;
	}
	config_free(&c);
}

/*
 * Clones (issue 15): a restore may give a NIC its own mac=, and the VM
 * its own name; every other option stays the snapshot's. --no-vmgenid
 * is for a boot only (the snapshot says whether the guest has one).
 */
static void test_restore_new_identity(void)
{
	struct vm_config boot, back, cmd;
	json_t *j;

	CHECK_EQ(PARSE(&boot, "-k", "k", "-s", "4,virtio-net,tap0", "-s",
		       "5,virtio-net,tap1,mac=02:00:00:00:00:01", "vm"),
		 CONFIG_OK);
	CHECK(!boot.no_vmgenid);
	j = config_to_json(&boot);
	CHECK_EQ(config_from_json(&back, j, &err), 0);
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-s",
		       "4,virtio-net,tapA,mac=02:00:00:00:00:0a", "-s",
		       "5,virtio-net,tapB,mac=02:00:00:00:00:0b", "clone"),
		 CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), 0);
	CHECK(!strcmp(back.devs[0].conf, "tapA,mac=02:00:00:00:00:0a"));
	CHECK(!strcmp(back.devs[1].conf, "tapB,mac=02:00:00:00:00:0b"));
	CHECK(!strcmp(back.name, "clone"));
	config_free(&cmd);
	config_free(&back);
	/* Dropping mac= keeps the snapshot's MAC; other options must match. */
	CHECK_EQ(config_from_json(&back, j, &err), 0);
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-s", "5,virtio-net,tapB"), CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), 0);
	config_free(&cmd);
	CHECK_EQ(PARSE(&cmd, "-r", "s", "-s",
		       "5,virtio-net,tapB,mac=02:00:00:00:00:0b,x=1"),
		 CONFIG_OK);
	CHECK_EQ(config_merge_restore(&back, &cmd, &err), -EINVAL);
	CHECK(strstr(err.msg, "and mac= may change") != NULL);
	config_free(&cmd);
	config_free(&back);
	json_decref(j);
	config_free(&boot);

	CHECK_EQ(PARSE(&boot, "-k", "k", "--no-vmgenid", "vm"), CONFIG_OK);
	CHECK(boot.no_vmgenid);
	config_free(&boot);
	CHECK_EQ(PARSE(&cmd, "-r", "s", "--no-vmgenid"), -EINVAL);
	CHECK(!strcmp(err.msg, "--no-vmgenid cannot be used with -r: the "
			       "snapshot says whether the guest has one"));
	config_free(&cmd);
	CHECK_EQ(PARSE(&cmd, "--incoming", "tcp::7000", "--no-vmgenid", "vm"),
		 -EINVAL);
	CHECK(!strcmp(err.msg, "--no-vmgenid cannot be used with --incoming: "
			       "the source says whether the guest has one"));
	config_free(&cmd);
}

int main(void)
{
	RUN(test_sizes);
	RUN(test_basic);
	RUN(test_bad);
	RUN(test_devices);
	RUN(test_json_and_restore_merge);
	RUN(test_host_bindings);
	RUN(test_restore_new_identity);
	return unit_done();
}
