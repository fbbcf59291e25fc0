/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The -s devices' life-cycle records (struct dev_ops): each parses its
 * own option string with the messages `khyve -s` has always given,
 * starts paused when asked (a restore), names its counters and queue
 * kicks, and pauses/resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "unit.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_rng.h"
#include "vm_devices.h"

#define RAM_SIZE (4 * MiB)

static struct guest_mem mem;
static char img[64];
static struct err err;

static struct dev_env env(bool start_paused)
{
	return (struct dev_env){ .mem = &mem, .slot = 3,
				 .start_paused = start_paused };
}

static int create(const struct dev_ops *ops, const char *conf,
		  const struct dev_env *e, struct dev_instance *out)
{
	memset(out, 0, sizeof(*out));
	err_clear(&err);
	return ops->create(conf, e, out, &err);
}

/* The counters' names, in order, "a,b,c". */
static void stat_names(const struct dev_ops *ops, void *dev, char *out,
		       size_t len)
{
	struct dev_stat st[DEV_MAX_STATS];
	unsigned n = ops->stats(dev, st);

	out[0] = 0;
	CHECK(n <= DEV_MAX_STATS);
	for (unsigned i = 0; i < n && i < DEV_MAX_STATS; i++)
		snprintf(out + strlen(out), len - strlen(out), "%s%s",
			 i ? "," : "", st[i].name);
}

static unsigned kicks(const struct dev_ops *ops, void *dev)
{
	unsigned n = 0;

	while (ops->kick_fd && n < DEV_MAX_KICKS && ops->kick_fd(dev, n) >= 0)
		n++;
	return n;
}

static void test_help(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	vm_devices_list(f);
	fclose(f);
	CHECK(strstr(buf, "  hostbridge      PCI host bridge (always at 0:0)\n"));
	CHECK(strstr(buf, "  virtio-blk      virtio-blk,PATH[,ro][,direct]"
			  "[,serial=ID][,workers=N][,aio=io_uring|threads|"
			  "sync]: raw disk image\n"));
	CHECK(strstr(buf, "  virtio-net      virtio-net,TAPNAME"));
	CHECK(strstr(buf, "  virtio-rng      virtio-rng: entropy"));
	CHECK(strstr(buf, "  virtio-console  virtio-console,BACKEND"));
	/* Not an -s emulation: on every guest unless --no-vmgenid. */
	CHECK(strstr(buf, "Platform devices (no -s):\n  vmgenid         VM "
			  "generation ID"));
	free(buf);
}

static void test_blk(void)
{
	const struct dev_ops *ops = &virtio_blk_dev_ops;
	struct dev_env e = env(true);
	struct dev_instance in;
	struct virtio_blk *blk;
	char conf[128], names[128];

	CHECK_EQ(create(ops, "", &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-blk: missing image path"));
	snprintf(conf, sizeof(conf), "%s,workers=65", img);
	CHECK_EQ(create(ops, conf, &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-blk: workers=65: want 0 to 64"));
	CHECK_EQ(create(ops, "/nonexistent/disk.img", &e, &in), -ENOENT);
	/* One message, from the device, naming the option and the file. */
	CHECK(!strcmp(err.msg, "-s 3,virtio-blk: cannot open "
			       "/nonexistent/disk.img: No such file or "
			       "directory"));
	CHECK_EQ(err.code, -ENOENT);
	CHECK(!in.dev);
	CHECK_EQ(create(ops, "/dev/null", &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-blk: /dev/null is not a regular file of "
			       "whole 512-byte sectors"));
	CHECK_EQ(err.code, -EINVAL);
	CHECK(!in.dev);

	snprintf(conf, sizeof(conf), "%s,serial=d0,workers=2", img);
	CHECK_EQ(create(ops, conf, &e, &in), 0);
	if (!in.dev)
		return;
	blk = in.dev;
	CHECK(in.vp == &blk->vp);
	CHECK(blk->paused); /* a restore's device waits for resume */
	CHECK_EQ(blk->nworkers, 2);
	CHECK(!memcmp(blk->serial, "d0", 3));
	CHECK_EQ(kicks(ops, in.dev), 1);
	stat_names(ops, in.dev, names, sizeof(names));
	CHECK(!strcmp(names, "requests,read_bytes,write_bytes,flushes,errors"));
	ops->resume(in.dev);
	CHECK(!blk->paused);
	CHECK_EQ(ops->pause(in.dev), 0);
	CHECK(blk->paused);
	CHECK_EQ(blk->inflight, 0);
	ops->resume(in.dev);
	ops->destroy(in.dev);

	e = env(false);
	snprintf(conf, sizeof(conf), "%s,ro", img);
	CHECK_EQ(create(ops, conf, &e, &in), 0);
	if (!in.dev)
		return;
	blk = in.dev;
	CHECK(!blk->paused);
	CHECK(blk->st.readonly);
	CHECK_EQ(ops->pause(in.dev), 0); /* nothing to flush read-only */
	ops->destroy(in.dev);
}

/* Only the errors found before a TAP is opened (no root, no tun here). */
static void test_net_options(void)
{
	const struct dev_ops *ops = &virtio_net_dev_ops;
	struct dev_env e = env(false);
	struct dev_instance in;

	CHECK_EQ(create(ops, "tap0,mac=01:00:5e:00:00:01", &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-net: bad MAC \"01:00:5e:00:00:01\" "
			   "(want a unicast xx:xx:xx:xx:xx:xx)"));
	CHECK_EQ(create(ops, "tap0,mac=52:54:00:12:34", &e, &in), -EINVAL);
	CHECK(strstr(err.msg, "bad MAC"));
	CHECK_EQ(create(ops, "a-tap-name-of-16", &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-net: TAP name longer than 15"));
	e.from_snapshot = true;
	CHECK_EQ(create(ops, "khyvenotap9", &e, &in), -ENODEV);
	CHECK(strstr(err.msg, "TAP khyvenotap9 (named by the snapshot) does not "
			  "exist; khyve creates no interface"));
	CHECK(!in.dev);
}

static void test_console(void)
{
	const struct dev_ops *ops = &virtio_console_dev_ops;
	struct dev_env e = env(true);
	struct dev_instance in;
	struct virtio_console *con;
	char names[128];

	CHECK_EQ(create(ops, "", &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-console: expected a back-end first "
			   "(stdio, null, unix=PATH or file=PATH)"));
	CHECK_EQ(create(ops, "null,cols=80", &e, &in), -EINVAL);
	CHECK(!strcmp(err.msg, "-s 3,virtio-console: cols= and rows= go "
			   "together, 1-65535 each"));
	CHECK_EQ(create(ops, "null,cols=80,rows=70000", &e, &in), -EINVAL);

	CHECK_EQ(create(ops, "null,cols=80,rows=25", &e, &in), 0);
	if (!in.dev)
		return;
	con = in.dev;
	CHECK(in.vp == &con->vp);
	CHECK(con->paused);
	CHECK_EQ(con->cols, 80);
	CHECK_EQ(con->rows, 25);
	CHECK_EQ(kicks(ops, in.dev), 2);
	stat_names(ops, in.dev, names, sizeof(names));
	CHECK(!strcmp(names, "rx_bytes,tx_bytes,tx_held,dropped,clients"));
	ops->resume(in.dev);
	CHECK(!con->paused);
	CHECK_EQ(ops->pause(in.dev), 0);
	CHECK(con->paused);
	ops->destroy(in.dev);
}

static void test_rng(void)
{
	const struct dev_ops *ops = &virtio_rng_dev_ops;
	struct dev_env e = env(false);
	struct dev_instance in;
	char names[64];

	/* Served on the kicking vCPU: no kick fd; paused for a restore. */
	CHECK(ops->pause && ops->resume && !ops->kick_fd);
	CHECK_EQ(create(ops, "", &e, &in), 0);
	if (!in.dev)
		return;
	CHECK(in.vp == &((struct virtio_rng *)in.dev)->vp);
	CHECK(!((struct virtio_rng *)in.dev)->paused);
	stat_names(ops, in.dev, names, sizeof(names));
	CHECK(!strcmp(names, "bytes"));
	ops->destroy(in.dev);
	e = env(true);
	CHECK_EQ(create(ops, "", &e, &in), 0);
	if (!in.dev)
		return;
	CHECK(((struct virtio_rng *)in.dev)->paused);
	ops->resume(in.dev);
	CHECK(!((struct virtio_rng *)in.dev)->paused);
	ops->destroy(in.dev);
}

int main(void)
{
	uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd;

	if (ram == MAP_FAILED)
		return 1;
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	snprintf(img, sizeof(img), "/tmp/khyve-test-devops-XXXXXX");
	fd = mkstemp(img);
	if (fd < 0 || ftruncate(fd, 1 * MiB))
		return 1;
	close(fd);
	RUN(test_help);
	RUN(test_blk);
	RUN(test_net_options);
	RUN(test_console);
	RUN(test_rng);
	unlink(img);
	munmap(ram, RAM_SIZE);
	return unit_done();
}
