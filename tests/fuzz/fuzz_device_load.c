/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness: restoring a device from checksum-valid section
 * payloads. Each device model is created as a restore creates it (paused,
 * from a snapshot) and loaded the way src/vm_devices.c loads it: its
 * sections through their own snapshot descriptions (the bounds
 * validation), then its post_load (or, for the legacy devices, their
 * state_apply). The PCI functions are the real -s devices through their
 * struct dev_ops: virtio-blk on a temporary image, virtio-net on a socket
 * pair standing in for the TAP (virtio_net_init takes an fd), virtio-
 * console on the null back-end, virtio-rng; their pci_dev, virtio_pci and
 * virtq sections come with them. The legacy devices are COM1's uart8250,
 * the rtc, the i8042, pm and the PCI bus (its 0xCF8 latch). The platform
 * device is the VM generation ID (its struct dev_ops, instance 0, as
 * src/vm_devices.c makes it): restored (a new ID written into guest RAM
 * at its saved address), or, "brought up", a migration's destination
 * (the ID kept); its ops resume it (the GED interrupt) and build its AML
 * from the loaded address and GSI.
 *
 * The snapshot is a real one: a freshly created device (optionally
 * brought up by a driver first) is saved with snap_writer, the input
 * replaces, overwrites, splices or edits fields of each section's
 * payload, and the file is rebuilt with every checksum, the section
 * lengths and the end marker resealed, then opened with
 * snap_reader_open_mem.
 *
 * Checked (abort on failure, besides ASan/UBSan/LSan):
 * - a refused load says why: the reader's message, or for a PCI device
 *   the error post_load returns; the refused device is destroyed;
 * - a load that succeeds: the device is resumed, takes up to MAX_OPS
 *   guest register accesses, RAM writes and queue kicks, is paused, and
 *   saved: that save must succeed (a restore must never make a later
 *   checkpoint fail), load into a fresh device (sections and post_load),
 *   and that device must save the same bytes again (a platform device
 *   loaded as a migration's destination: that second load is a restore).
 *
 * Input:
 *   byte 0   model (MODELS[], modulo)
 *   byte 1   bit 0: the saved device was brought up by a driver (queues
 *            live, requests pending in RAM; vmgenid: restored as a
 *            migration's destination); bit 1: with MSI-X; bit 2:
 *            restored with --keep-clock (the rtc)
 *   then one record per section, in the device's save order:
 *     op 0: keep; op 1: u16 len, payload (replaces it);
 *     op 2: u16 off, u8 len, bytes (overwrite at off);
 *     op 3: u16 off, u8 del, u8 len, bytes (splice);
 *     op 4: edge values into described fields (set_fields())
 *   then up to MAX_OPS ops on the loaded device (pci_op(), legacy_op()).
 * Seeds: every model and mode with its payloads unchanged, and one with
 * edge values (FUZZ_DL_DUMP=DIR, make -C tests/fuzz seed-fuzz_device_load).
 * FUZZ_DL_VERBOSE=1 says what became of each input.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "bus.h"
#include "common.h"
#include "dev_ops.h"
#include "guest_mem.h"
#include "i8042.h"
#include "iothread.h"
#include "log.h"
#include "pci.h"
#include "pm.h"
#include "rtc.h"
#include "snap.h"
#include "uart8250.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtio_rng.h"
#include "virtqueue.h"
#include "vmgenid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE  (1024 * 1024)
#define IMG_SIZE  (64 * 1024)
#define SLOT	  3
#define INSTANCE  (SLOT * 8)
#define MAX_SECS  8
#define MAX_OPS	  64
#define SEC_HDR	  40
#define END_LEN	  24
#define QSIZE	  16
#define RING_BASE 0x10000
#define BUF_BASE  0x80000

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_device_load: %s: %s\n", what,
		detail ? detail : "");
	abort();
}

/* ---- the world the devices live in ---- */

static struct guest_mem mem;
static uint8_t *ram;
static struct iothread *io;
static char img_path[64], snap_path[64];
static int img_fd = -1;
static struct snap_host_info host;
static unsigned msis;

static int msi_send(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque, (void)addr, (void)data;
	msis++;
	return 0;
}

static const struct msi_sink msi = {msi_send, NULL};

static int line_set(void *opaque, unsigned gsi, int level)
{
	(void)opaque, (void)gsi, (void)level;
	return 0;
}

static const struct irq_line line = {line_set, NULL, 5};

static void event_cb(void *opaque)
{
	(void)opaque;
}

static int64_t fixed_clock(void *opaque)
{
	/* Saves compare byte for byte: the rtc's clock must stand still. */
	(void)opaque;
	return 1700000000LL * 1000000000LL;
}

/* Let the I/O thread serve what was kicked so far (twice: one pass of
 * epoll may have picked up our kick before an earlier device's). */
static pthread_mutex_t bar_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bar_cond = PTHREAD_COND_INITIALIZER;
static unsigned bar_seen;
static struct iothread_kick *bar_kick;

static void barrier_cb(void *opaque, uint32_t ev)
{
	(void)opaque, (void)ev;
	pthread_mutex_lock(&bar_lock);
	bar_seen++;
	pthread_cond_broadcast(&bar_cond);
	pthread_mutex_unlock(&bar_lock);
}

static void io_barrier(void)
{
	for (int i = 0; i < 2; i++) {
		unsigned want;

		pthread_mutex_lock(&bar_lock);
		want = bar_seen + 1;
		pthread_mutex_unlock(&bar_lock);
		iothread_kick(bar_kick);
		pthread_mutex_lock(&bar_lock);
		while (bar_seen < want)
			pthread_cond_wait(&bar_cond, &bar_lock);
		pthread_mutex_unlock(&bar_lock);
	}
}

/* ---- device models ---- */

struct inst;

struct model {
	const char *name;
	const struct dev_ops *ops; /* PCI functions and platform devices */
	bool platform;		   /* ops of a platform device (no PCI) */
	int (*create)(struct inst *in);
	void (*destroy)(struct inst *in);
	/* Legacy devices: state out of / into the device. */
	void (*save)(struct inst *in);
	int (*apply)(struct inst *in);
	const struct snap_desc *desc;
	void (*bringup)(struct inst *in);
	/* A port access of @size bytes (the legacy ones take 1). */
	int (*io)(struct inst *in, unsigned port, uint8_t *v, unsigned size,
		  bool write);
	unsigned nports;
};

struct inst {
	const struct model *m;
	void *dev;
	struct virtio_pci *vp;
	struct bus pio, mmio;
	struct pci_bus pci;
	bool buses, on_bus;
	int sock[2]; /* virtio-net: [0] is its "TAP", [1] the wire */
	union {
		struct uart8250 u;
		struct rtc r;
		struct i8042 k;
		struct pm p;
	} leg;
	union {
		struct uart8250_state u;
		struct rtc_state r;
		struct i8042_state k;
		struct pm_state p;
		struct pci_bus_state b;
	} stage;
};

static int pci_env_create(struct inst *in, const char *conf)
{
	const struct dev_env env = {.mem = &mem,
				    .io = io,
				    .msi = &msi,
				    .slot = SLOT,
				    .from_snapshot = true,
				    .start_paused = true};
	struct dev_instance di = {0};
	struct err err = {0};
	int ret;

	ret = in->m->ops->create(conf, &env, &di, &err);
	if (ret) {
		if (!err.msg[0])
			die("create refused without a message", in->m->name);
		return ret;
	}
	in->dev = di.dev;
	in->vp = di.vp;
	return 0;
}

static int blk_create(struct inst *in)
{
	char conf[128];

	snprintf(conf, sizeof(conf), "%s,workers=0", img_path);
	return pci_env_create(in, conf);
}

static int con_create(struct inst *in)
{
	return pci_env_create(in, "null");
}

static int rng_create(struct inst *in)
{
	return pci_env_create(in, "");
}

/* No TAP here: the device's own init with a socket as its fd. */
static int net_create(struct inst *in)
{
	static const uint8_t mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
	struct virtio_net_opts o = {
		.mac = mac, .start_paused = true};
	struct virtio_net *net;
	int ret;

	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       in->sock))
		return -errno;
	o.tap_fd = in->sock[0];
	net = calloc(1, sizeof(*net));
	if (!net)
		return -ENOMEM;
	ret = virtio_net_init(net, &o, &mem, io, &msi, NULL);
	if (ret) {
		free(net);
		return ret;
	}
	in->dev = net;
	in->vp = &net->vp;
	return 0;
}

static void pci_destroy(struct inst *in)
{
	in->m->ops->destroy(in->dev);
	if (in->sock[0] >= 0) {
		close(in->sock[0]);
		close(in->sock[1]);
	}
}

/*
 * vmgenid as vm_devices.c's platform_dev_create makes it for a restore
 * (or, with @in's mode bit 0, for --incoming: the ID is not renewed).
 */
static unsigned platform_mode;

static int genid_create(struct inst *in)
{
	static struct vm_config restore_cfg = {.restore = "fuzz.snap"};
	static struct vm_config incoming_cfg = {.incoming = "fd:0"};
	const struct dev_env env = {
		.mem = &mem,
		.io = io,
		.msi = &msi,
		.irq = line,
		.cfg = platform_mode & 1 ? &incoming_cfg : &restore_cfg,
		.from_snapshot = true,
		.start_paused = true};
	struct dev_instance di = {0};
	struct err err = {0};
	int ret = in->m->ops->create(NULL, &env, &di, &err);

	if (ret && !err.msg[0])
		die("create refused without a message", in->m->name);
	in->dev = di.dev;
	return ret;
}

static int uart_create(struct inst *in)
{
	return uart8250_init(&in->leg.u, &line, NULL);
}

static void uart_destroy(struct inst *in)
{
	uart8250_destroy(&in->leg.u);
}

static void uart_save(struct inst *in)
{
	uart8250_state_save(&in->leg.u, &in->stage.u);
}

static int uart_apply(struct inst *in)
{
	return uart8250_state_apply(&in->leg.u, &in->stage.u);
}

static int uart_io(struct inst *in, unsigned port, uint8_t *v,
		   unsigned size, bool write)
{
	(void)size;
	return uart8250_io(&in->leg.u, port, v, 1, write);
}

static void uart_bringup(struct inst *in)
{
	static const uint8_t w[][2] = {{3, 0x03}, {2, 0xc7}, {1, 0x0f},
				       {4, 0x0b}, {7, 0x5a}};
	uint8_t v;

	for (unsigned i = 0; i < ARRAY_SIZE(w); i++) {
		v = w[i][1];
		uart_io(in, w[i][0], &v, 1, true);
	}
	uart8250_receive(&in->leg.u, (const uint8_t *)"restore", 7);
}

static int rtc_create(struct inst *in)
{
	int ret = rtc_init(&in->leg.r, &line, RAM_SIZE, 0);

	if (!ret)
		rtc_set_clock(&in->leg.r, fixed_clock, NULL);
	return ret;
}

static void rtc_destroy_(struct inst *in)
{
	rtc_destroy(&in->leg.r);
}

static void rtc_save(struct inst *in)
{
	rtc_state_save(&in->leg.r, &in->stage.r);
}

/* khyve -r --keep-clock: the guest clock goes on from its saved time. */
static bool keep_clock;

static int rtc_apply(struct inst *in)
{
	int ret = rtc_state_apply(&in->leg.r, &in->stage.r);

	/* What vm_devices_rtc_resync() does at the end of a restore. */
	if (!ret && keep_clock)
		rtc_clock_continue(&in->leg.r);
	return ret;
}

static int rtc_io_(struct inst *in, unsigned port, uint8_t *v,
		   unsigned size, bool write)
{
	(void)size;
	return rtc_io(&in->leg.r, port, v, 1, write);
}

static void rtc_bringup(struct inst *in)
{
	uint8_t v = 0x0b;

	rtc_io_(in, 0, &v, 1, true);
	v = 0x06; /* binary, 24 h */
	rtc_io_(in, 1, &v, 1, true);
	v = 0x34;
	rtc_io_(in, 0, &v, 1, true);
}

static void reset_cb(void *opaque)
{
	(void)opaque;
}

static int kbd_create(struct inst *in)
{
	return i8042_init(&in->leg.k, &line, &line, reset_cb, NULL);
}

static void kbd_destroy(struct inst *in)
{
	i8042_destroy(&in->leg.k);
}

static void kbd_save(struct inst *in)
{
	i8042_state_save(&in->leg.k, &in->stage.k);
}

static int kbd_apply(struct inst *in)
{
	return i8042_state_apply(&in->leg.k, &in->stage.k);
}

/* Port 0: data (0x60), port 1: command/status (0x64). */
static int kbd_io(struct inst *in, unsigned port, uint8_t *v, unsigned size,
		  bool write)
{
	(void)size;
	return port ? i8042_cmd_io(&in->leg.k, 0, v, 1, write)
		    : i8042_data_io(&in->leg.k, 0, v, 1, write);
}

static void kbd_bringup(struct inst *in)
{
	uint8_t v = 0x60; /* write the command byte ... */

	kbd_io(in, 1, &v, 1, true);
	v = 0x47;
	kbd_io(in, 0, &v, 1, true);
	v = 0xf2; /* keyboard: identify (answers stay queued) */
	kbd_io(in, 0, &v, 1, true);
	v = 0xed; /* set LEDs: the next byte is pending */
	kbd_io(in, 0, &v, 1, true);
}

static int pm_create(struct inst *in)
{
	return pm_init(&in->leg.p, event_cb, event_cb, NULL);
}

static void pm_destroy_(struct inst *in)
{
	pm_destroy(&in->leg.p);
}

static void pm_save(struct inst *in)
{
	pm_state_save(&in->leg.p, &in->stage.p);
}

static int pm_apply(struct inst *in)
{
	return pm_state_apply(&in->leg.p, &in->stage.p);
}

/* Ports 0-1: sleep control/status, port 2: the reset register. */
static int pm_io(struct inst *in, unsigned port, uint8_t *v, unsigned size,
		 bool write)
{
	(void)size;
	if (port == 2)
		return pm_reset_io(&in->leg.p, 0, v, 1, write);
	return pm_sleep_io(&in->leg.p, port, v, 1, write);
}

static void pm_bringup(struct inst *in)
{
	uint8_t v = 0x02; /* reset register: SYS_RST armed, no reset */

	pm_io(in, 2, &v, 1, true);
}

/* The PCI bus's own state: the 0xCF8 latch; ports 0-7 are 0xCF8-0xCFF. */
static int bus_create(struct inst *in)
{
	if (bus_init(&in->pio, "pio") || bus_init(&in->mmio, "mmio"))
		die("bus_init", NULL);
	in->buses = true;
	return pci_bus_init(&in->pci, NULL, &in->mmio, 0xC0000000ULL,
			    0x10000000ULL);
}

static void bus_destroy_(struct inst *in)
{
	(void)in; /* inst_destroy takes the buses down */
}

static void bus_save(struct inst *in)
{
	pci_bus_state_save(&in->pci, &in->stage.b);
}

static int bus_apply(struct inst *in)
{
	pci_bus_state_apply(&in->pci, &in->stage.b);
	return 0;
}

static int bus_io(struct inst *in, unsigned port, uint8_t *v, unsigned size,
		  bool write)
{
	return pci_config_io(&in->pci, port, v, size, write);
}

static void bus_bringup(struct inst *in)
{
	uint8_t v[4];

	/* Between the two halves of a config read of the host bridge. */
	put_le32(v, 0x80000000u | PCI_COMMAND);
	bus_io(in, 0, v, 4, true);
}

static const struct model MODELS[] = {
	{.name = "virtio-blk", .ops = &virtio_blk_dev_ops,
	 .create = blk_create, .destroy = pci_destroy},
	{.name = "virtio-net", .ops = &virtio_net_dev_ops,
	 .create = net_create, .destroy = pci_destroy},
	{.name = "virtio-console", .ops = &virtio_console_dev_ops,
	 .create = con_create, .destroy = pci_destroy},
	{.name = "virtio-rng", .ops = &virtio_rng_dev_ops,
	 .create = rng_create, .destroy = pci_destroy},
	{.name = "uart8250", .create = uart_create, .destroy = uart_destroy,
	 .save = uart_save, .apply = uart_apply, .desc = &uart8250_snap_desc,
	 .bringup = uart_bringup, .io = uart_io, .nports = 8},
	{.name = "rtc", .create = rtc_create, .destroy = rtc_destroy_,
	 .save = rtc_save, .apply = rtc_apply, .desc = &rtc_snap_desc,
	 .bringup = rtc_bringup, .io = rtc_io_, .nports = 2},
	{.name = "i8042", .create = kbd_create, .destroy = kbd_destroy,
	 .save = kbd_save, .apply = kbd_apply, .desc = &i8042_snap_desc,
	 .bringup = kbd_bringup, .io = kbd_io, .nports = 2},
	{.name = "pm", .create = pm_create, .destroy = pm_destroy_,
	 .save = pm_save, .apply = pm_apply, .desc = &pm_snap_desc,
	 .bringup = pm_bringup, .io = pm_io, .nports = 3},
	{.name = "pci-bus", .create = bus_create, .destroy = bus_destroy_,
	 .save = bus_save, .apply = bus_apply, .desc = &pci_bus_snap,
	 .bringup = bus_bringup, .io = bus_io, .nports = 8},
	{.name = "vmgenid", .ops = &vmgenid_dev_ops, .platform = true,
	 .create = genid_create, .destroy = pci_destroy},
};

#define NMODELS ARRAY_SIZE(MODELS)

/* A device as a restore makes it: created paused, on its own PCI bus. */
static int inst_create(struct inst *in, const struct model *m)
{
	int ret;

	memset(in, 0, sizeof(*in));
	in->m = m;
	in->sock[0] = in->sock[1] = -1;
	ret = m->create(in);
	if (ret || !m->ops || m->platform)
		return ret;
	if (bus_init(&in->pio, "pio") || bus_init(&in->mmio, "mmio"))
		die("bus_init", NULL);
	if (pci_bus_init(&in->pci, &in->pio, &in->mmio, 0xC0000000ULL,
			 0x10000000ULL))
		die("pci_bus_init", NULL);
	in->buses = true;
	if (pci_add_device(&in->pci, SLOT, 0, &in->vp->pci))
		die("pci_add_device", m->name);
	pci_dev_set_intx(&in->vp->pci, &line);
	return 0;
}

static void inst_destroy(struct inst *in)
{
	in->m->destroy(in);
	if (in->buses) {
		pci_bus_destroy(&in->pci);
		bus_destroy(&in->pio);
		bus_destroy(&in->mmio);
	}
}

/* Every section of @in in save order (the legacy ones: its stage). */
static int inst_foreach(struct inst *in, virtio_snap_fn fn, void *ctx)
{
	if (in->m->ops)
		return in->m->ops->snap_foreach(
			in->dev, in->m->platform ? 0 : INSTANCE, fn, ctx);
	return fn(ctx, in->m->desc, 0, &in->stage);
}

/* ---- guest side ---- */

static uint64_t get(const uint8_t **p, const uint8_t *end, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n && *p < end; i++, (*p)++)
		v |= (uint64_t)**p << (8 * i);
	return v;
}

static void bar_io(struct inst *in, unsigned bar, uint64_t off, void *buf,
		   unsigned size, bool write)
{
	struct pci_bar *b = &in->vp->pci.bars[bar];

	if (!write)
		memset(buf, 0, size);
	b->fn(b->opaque, off, buf, size, write);
}

static void common_w(struct inst *in, unsigned off, uint64_t v, unsigned size)
{
	bar_io(in, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_OFF + off, &v, size, true);
}

static uint32_t common_r(struct inst *in, unsigned off, unsigned size)
{
	uint32_t v = 0;

	bar_io(in, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_OFF + off, &v, size,
	       false);
	return v;
}

static uint64_t ring_addr(unsigned q, unsigned which)
{
	return RING_BASE + q * 0x4000 + which * 0x1000;
}

/* What a Linux driver does: features, queues at ring_addr(), DRIVER_OK. */
static void pci_bringup(struct inst *in, bool msix)
{
	struct virtio_pci *vp = in->vp;
	uint16_t cmd = (uint16_t)pci_cfg_read(&vp->pci, PCI_COMMAND, 2);
	uint32_t f[2];

	pci_cfg_write(&vp->pci, PCI_COMMAND,
		      cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	if (msix)
		pci_cfg_write(&vp->pci, vp->pci.msix_cap + PCI_MSIX_FLAGS,
			      PCI_MSIX_FLAGS_ENABLE, 2);
	common_w(in, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	common_w(in, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	common_w(in, VIRTIO_PCI_COMMON_STATUS,
		 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	for (unsigned i = 0; i < 2; i++) {
		common_w(in, VIRTIO_PCI_COMMON_DFSELECT, i, 4);
		f[i] = common_r(in, VIRTIO_PCI_COMMON_DF, 4);
		common_w(in, VIRTIO_PCI_COMMON_GFSELECT, i, 4);
		common_w(in, VIRTIO_PCI_COMMON_GF, f[i], 4);
	}
	common_w(in, VIRTIO_PCI_COMMON_STATUS,
		 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK,
		 1);
	if (msix) {
		/* Every vector unmasked, as a driver that requests them. */
		for (unsigned v = 0; v < vp->pci.msix_nvec; v++) {
			uint32_t e[4] = {0xfee00000u, 0, v, 0};

			bar_io(in, VIRTIO_PCI_MSIX_BAR, v * 16, e, 16, true);
		}
		common_w(in, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	}
	for (unsigned q = 0; q < vp->ops->num_queues; q++) {
		common_w(in, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		common_w(in, VIRTIO_PCI_COMMON_Q_SIZE, QSIZE, 2);
		if (msix)
			common_w(in, VIRTIO_PCI_COMMON_Q_MSIX, q + 1, 2);
		common_w(in, VIRTIO_PCI_COMMON_Q_DESCLO, ring_addr(q, 0), 8);
		common_w(in, VIRTIO_PCI_COMMON_Q_AVAILLO, ring_addr(q, 1), 8);
		common_w(in, VIRTIO_PCI_COMMON_Q_USEDLO, ring_addr(q, 2), 8);
		common_w(in, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	}
	common_w(in, VIRTIO_PCI_COMMON_STATUS,
		 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK,
		 1);
}

static void put_desc(uint64_t gpa, uint64_t addr, uint32_t len, uint16_t fl,
		     uint16_t next)
{
	put_le64(ram + gpa, addr);
	put_le32(ram + gpa + 8, len);
	put_le16(ram + gpa + 12, fl);
	put_le16(ram + gpa + 14, next);
}

/*
 * One request pending on each of @nq queues at ring_addr(): a 16-byte
 * readable header (a virtio-blk read of sector 0), 512 writable bytes and
 * a status byte. What the guest had queued when the snapshot was taken.
 */
static void ram_requests(unsigned nq)
{
	for (unsigned q = 0; q < nq; q++) {
		uint64_t d = ring_addr(q, 0), a = ring_addr(q, 1);
		uint64_t buf = BUF_BASE + q * 0x2000;

		put_desc(d, buf, 16, VIRTQ_DESC_F_NEXT, 1);
		put_desc(d + 16, buf + 0x100, 512,
			 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
		put_desc(d + 32, buf + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
		memcpy(ram + buf, "hello, restore!\n", 16);
		put_le32(ram + buf, VIRTIO_BLK_T_IN);
		put_le16(ram + a, 0);
		put_le16(ram + a + 2, 1); /* idx: one chain */
		put_le16(ram + a + 4, 0); /* ring[0] = head 0 */
	}
}

static const unsigned sizes[4] = {1, 2, 4, 8};

/*
 * One guest (or host) action on a loaded PCI device: op bits 0-2 the
 * kind, bits 3-4 the size, bit 7 write.
 */
static void pci_op(struct inst *in, const uint8_t **p, const uint8_t *end)
{
	unsigned op = (unsigned)get(p, end, 1);
	unsigned sz = sizes[(op >> 3) & 3];
	bool wr = op & 0x80;
	uint8_t buf[8];
	uint64_t v;

	switch (op & 7) {
	case 0: { /* the virtio BAR: common, ISR, device config, notify */
		uint64_t off = get(p, end, 2) % VIRTIO_PCI_BAR_SIZE;

		if (off + sz > VIRTIO_PCI_BAR_SIZE)
			off = VIRTIO_PCI_BAR_SIZE - sz;
		v = get(p, end, sz);
		memcpy(buf, &v, sizeof(buf));
		bar_io(in, VIRTIO_PCI_BAR, off, buf, sz, wr);
		break;
	}
	case 1: { /* a queue kick (one past the last too) */
		unsigned q = (unsigned)get(p, end, 1) % (in->vp->ops->num_queues + 1u);

		v = q;
		bar_io(in, VIRTIO_PCI_BAR,
		       VIRTIO_PCI_NOTIFY_OFF + q * VIRTIO_PCI_NOTIFY_MULT, &v, 2,
		       true);
		break;
	}
	case 2: { /* config space */
		unsigned off = (unsigned)get(p, end, 1);

		if (sz > 4)
			sz = 4;
		if (off + sz > PCI_CFG_SIZE)
			off = PCI_CFG_SIZE - sz;
		v = get(p, end, sz);
		if (wr)
			pci_cfg_write(&in->vp->pci, off, (uint32_t)v, sz);
		else
			pci_cfg_read(&in->vp->pci, off, sz);
		break;
	}
	case 3: { /* MSI-X table and PBA */
		uint64_t off = get(p, end, 2) % (0x1000 - 8);

		v = get(p, end, sz);
		memcpy(buf, &v, sizeof(buf));
		bar_io(in, VIRTIO_PCI_MSIX_BAR, off, buf, sz, wr);
		break;
	}
	case 4: { /* guest RAM: rings, descriptors, buffers */
		uint64_t gpa = get(p, end, 3) % (RAM_SIZE - 8);

		v = get(p, end, 8);
		memcpy(ram + gpa, &v, 8);
		break;
	}
	case 5: { /* through the MMIO bus, at wherever the BAR decodes */
		uint64_t a = pci_bar_addr(&in->vp->pci, VIRTIO_PCI_BAR);

		v = get(p, end, sz);
		memcpy(buf, &v, sizeof(buf));
		bus_dispatch(&in->mmio, a + get(p, end, 2) % VIRTIO_PCI_BAR_SIZE,
			     buf, sz, wr);
		break;
	}
	case 6: /* the wire: a frame for virtio-net */
		if (in->sock[1] >= 0) {
			uint8_t frame[64] = {0};

			v = get(p, end, 1) % sizeof(frame) + 1;
			if (send(in->sock[1], frame, v, MSG_DONTWAIT) < 0) {
				/* full: the device has not read yet */
			}
		}
		break;
	default: /* let the I/O thread catch up */
		io_barrier();
		break;
	}
}

/* op bits 0-4 the port, 5-6 the size (1, 2, 4, 4), bit 7 write. */
/*
 * A loaded platform device: resumed again (vmgenid: the GED interrupt
 * only once per new ID), its AML built from the loaded state, its stats,
 * or the guest writing over its RAM (where the ID lives).
 */
static void platform_op(struct inst *in, const uint8_t **p,
			const uint8_t *end)
{
	unsigned op = (unsigned)get(p, end, 1);
	uint8_t aml[512];
	struct dev_stat st[DEV_MAX_STATS];

	switch (op & 3) {
	case 0:
		if (in->m->ops->resume)
			in->m->ops->resume(in->dev);
		break;
	case 1:
		if (in->m->ops->dsdt_aml &&
		    in->m->ops->dsdt_aml(in->dev, aml, (op & 4) ? 8 : 512) <
			    -4095)
			die("dsdt_aml", in->m->name);
		break;
	case 2:
		if (in->m->ops->stats &&
		    in->m->ops->stats(in->dev, st) > DEV_MAX_STATS)
			die("stats", in->m->name);
		break;
	default: {
		uint64_t gpa = get(p, end, 3) % (RAM_SIZE - 8);

		put_le64(ram + gpa, get(p, end, 8));
		break;
	}
	}
}

static void legacy_op(struct inst *in, const uint8_t **p, const uint8_t *end)
{
	unsigned op = (unsigned)get(p, end, 1);
	unsigned sz = sizes[(op >> 5) & 3] > 4 ? 4 : sizes[(op >> 5) & 3];
	uint8_t v[4];

	put_le32(v, (uint32_t)get(p, end, sz));
	in->m->io(in, (op & 0x1f) % in->m->nports, v, sz, op & 0x80);
}

/* ---- snapshot bytes ---- */

struct snapbuf {
	uint8_t *b;
	size_t len;
	unsigned nsec;
	size_t hlen;
	size_t off[MAX_SECS]; /* of each section header */
};

static void snapbuf_free(struct snapbuf *s)
{
	free(s->b);
	memset(s, 0, sizeof(*s));
}

static int write_cb(void *ctx, const struct snap_desc *d, uint32_t inst,
		    void *state)
{
	return snap_write_section(ctx, d, inst, state);
}

/* Index the sections of a file we wrote ourselves. */
static void snapbuf_index(struct snapbuf *s)
{
	size_t off;

	s->hlen = get_le32(s->b + 12);
	off = s->hlen;
	s->nsec = 0;
	while (off + SEC_HDR <= s->len - END_LEN) {
		if (s->nsec == MAX_SECS)
			die("index", "too many sections");
		s->off[s->nsec++] = off;
		off += SEC_HDR + get_le16(s->b + off + 6) +
		       get_le64(s->b + off + 24);
	}
	if (off != s->len - END_LEN)
		die("index", "sections do not add up");
}

/* Save @in (paused) into @s as a checkpoint would; any refusal dies. */
static void save(struct inst *in, struct snapbuf *s, const char *what)
{
	struct snap_writer *w;
	FILE *f;
	long n = 0;
	int rc;

	if (snap_writer_open(&w, snap_path, &host, NULL))
		die("writer_open", snap_path);
	if (in->m->save)
		in->m->save(in);
	rc = inst_foreach(in, write_cb, w);
	if (rc) {
		fprintf(stderr, "fuzz_device_load: %s: %s\n", in->m->name,
			snap_writer_error(w));
		die(what, strerror(-rc));
	}
	if ((rc = snap_writer_commit(w)))
		die("commit", strerror(-rc));
	f = fopen(snap_path, "rb");
	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) <= 0)
		die("reading back", snap_path);
	rewind(f);
	s->len = (size_t)n;
	s->b = malloc(s->len);
	if (!s->b || fread(s->b, 1, s->len, f) != s->len)
		die("reading back", snap_path);
	fclose(f);
	unlink(snap_path);
	snapbuf_index(s);
}

/* Bytes of section @i, header included. */
static size_t sec_len(const struct snapbuf *s, unsigned i)
{
	return (i + 1 < s->nsec ? s->off[i + 1] : s->len - END_LEN) - s->off[i];
}

/* Section checksums, then the end marker (count, length, file hash). */
static void reseal(uint8_t *b, size_t len, size_t hlen, unsigned nsec)
{
	size_t off = hlen;

	for (unsigned i = 0; i < nsec; i++) {
		uint64_t nlen = get_le16(b + off + 6), plen = get_le64(b + off + 24);
		XXH3_state_t *h = XXH3_createState();

		if (!h)
			die("reseal", "out of memory");
		XXH3_64bits_reset(h);
		XXH3_64bits_update(h, b + off, 32);
		XXH3_64bits_update(h, b + off + SEC_HDR, nlen + plen);
		put_le64(b + off + 32, XXH3_64bits_digest(h));
		XXH3_freeState(h);
		off += SEC_HDR + nlen + plen;
	}
	memcpy(b + off, "KEND", 4);
	put_le32(b + off + 4, nsec);
	put_le64(b + off + 8, len);
	put_le64(b + len - 8, XXH3_64bits(b, len - 8));
}

struct payload {
	const uint8_t *p;
	size_t len;
	uint8_t *own; /* allocated for overwrite/splice */
};

/* Where element @elem of field @k starts in a described payload, and its
 * size; NULL if the payload is not that well formed. */
static uint8_t *field_elem(uint8_t *pl, size_t len, unsigned k, unsigned elem,
			  unsigned *sz)
{
	size_t o = 4;
	uint32_t n;

	if (len < 4 || !(n = get_le32(pl)))
		return NULL;
	k %= n;
	for (unsigned i = 0; i < n && o + 8 <= len; i++) {
		unsigned nl = pl[o], t = snap_type_size(pl[o + 1]);
		uint32_t cnt = get_le32(pl + o + 4);
		size_t data = o + 8 + nl;

		if (!t || data > len || cnt > (len - data) / t)
			return NULL;
		if (i == k) {
			if (!cnt)
				return NULL;
			*sz = t;
			return pl + data + (size_t)(elem % cnt) * t;
		}
		o = data + (size_t)cnt * t;
	}
	return NULL;
}

/*
 * Set field elements to edge values: u8 how many, then each u8 field,
 * u16 element, u8 how (0: 8 bytes from the input, 1: all ones, 2: zero,
 * 3: largest signed, 4: smallest signed, 5: one, 6: plus one, 7: minus
 * one, 8: 16 * (1 + u8 from the input) below the end of guest RAM, 9: the
 * end of guest RAM, 10: u16 from the input), each truncated to the
 * element's size.
 */
static void set_fields(uint8_t *pl, size_t len, const uint8_t **p,
		       const uint8_t *end)
{
	unsigned n = (unsigned)get(p, end, 1) % 8 + 1;

	while (n--) {
		unsigned k = (unsigned)get(p, end, 1);
		unsigned elem = (unsigned)get(p, end, 2);
		unsigned how = (unsigned)get(p, end, 1) % 11, sz = 0;
		uint8_t *e = field_elem(pl, len, k, elem, &sz);
		uint64_t v = 0, top;

		if (how == 0)
			v = get(p, end, 8);
		else if (how == 8)
			v = RAM_SIZE - 16 * (1 + get(p, end, 1));
		else if (how == 9)
			v = RAM_SIZE;
		else if (how == 10)
			v = get(p, end, 2);
		if (!e)
			continue;
		top = 1ULL << (8 * sz - 1);
		for (unsigned i = 0; i < sz; i++)
			v = how == 6 || how == 7 ? v | (uint64_t)e[i] << (8 * i)
						 : v;
		switch (how) {
		case 1: v = ~0ULL; break;
		case 2: v = 0; break;
		case 3: v = top - 1; break;
		case 4: v = top; break;
		case 5: v = 1; break;
		case 6: v++; break;
		case 7: v--; break;
		}
		for (unsigned i = 0; i < sz; i++)
			e[i] = (uint8_t)(v >> (8 * i));
	}
}

/*
 * Section @base's payload as the input's record at *@p makes it: op 0
 * keep, 1 replace, 2 overwrite, 3 splice, 4 edge values into fields
 * (set_fields), 5-7 keep.
 */
static void next_payload(const struct snapbuf *base, unsigned i,
			 const uint8_t **p, const uint8_t *end,
			 struct payload *out)
{
	size_t so = base->off[i];
	const uint8_t *orig = base->b + so + SEC_HDR + get_le16(base->b + so + 6);
	size_t olen = get_le64(base->b + so + 24);
	unsigned op = *p < end ? (unsigned)get(p, end, 1) & 7 : 0;

	out->p = orig;
	out->len = olen;
	out->own = NULL;
	if (op == 1) {
		size_t n = (size_t)get(p, end, 2);

		n = MIN(n, (size_t)(end - *p));
		out->p = *p;
		out->len = n;
		*p += n;
	} else if (op == 2 || op == 3) {
		size_t off = (size_t)get(p, end, 2);
		size_t del = op == 3 ? (size_t)get(p, end, 1) : 0;
		size_t n = (size_t)get(p, end, 1);

		n = MIN(n, (size_t)(end - *p));
		off = olen ? off % (olen + 1) : 0;
		if (op == 2) {
			del = MIN(n, olen - off);
		} else {
			del = MIN(del, olen - off);
		}
		out->len = olen - del + n;
		out->own = malloc(out->len ? out->len : 1);
		if (!out->own)
			die("payload", "out of memory");
		memcpy(out->own, orig, off);
		memcpy(out->own + off, *p, n);
		memcpy(out->own + off + n, orig + off + del, olen - off - del);
		out->p = out->own;
		*p += n;
	} else if (op == 4) {
		out->own = malloc(olen ? olen : 1);
		if (!out->own)
			die("payload", "out of memory");
		memcpy(out->own, orig, olen);
		set_fields(out->own, olen, p, end);
		out->p = out->own;
	}
}

/* The file @base with each section's payload from the input. */
static void mutate(const struct snapbuf *base, const uint8_t **p,
		   const uint8_t *end, struct snapbuf *out)
{
	struct payload pl[MAX_SECS];
	size_t len = base->hlen + END_LEN, o;

	for (unsigned i = 0; i < base->nsec; i++) {
		next_payload(base, i, p, end, &pl[i]);
		len += SEC_HDR + get_le16(base->b + base->off[i] + 6) + pl[i].len;
	}
	out->b = malloc(len);
	if (!out->b)
		die("mutate", "out of memory");
	out->len = len;
	memcpy(out->b, base->b, base->hlen);
	o = base->hlen;
	for (unsigned i = 0; i < base->nsec; i++) {
		size_t nlen = get_le16(base->b + base->off[i] + 6);

		memcpy(out->b + o, base->b + base->off[i], SEC_HDR + nlen);
		put_le64(out->b + o + 24, pl[i].len);
		memcpy(out->b + o + SEC_HDR + nlen, pl[i].p, pl[i].len);
		o += SEC_HDR + nlen + pl[i].len;
		free(pl[i].own);
	}
	reseal(out->b, len, base->hlen, base->nsec);
	snapbuf_index(out);
}

/* ---- loading, as src/vm_devices.c does ---- */

struct load_ctx {
	struct snap_reader *r;
	struct err se;
};

static int read_cb(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	struct load_ctx *c = ctx;

	return snap_read_section(c->r, d, inst, state, &c->se);
}

/* post_load with its error (and anything logged): a refusal must say why. */
static int post_load(struct inst *in, bool *said)
{
	FILE *saved = stderr, *cap;
	struct err err = {0};
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!in->m->ops) {
		*said = true; /* vm_devices.c names the legacy device */
		return in->m->apply(in);
	}
	/* Parked, the I/O thread cannot log into the capture. */
	iothread_pause(io);
	cap = open_memstream(&text, &len);
	if (cap)
		stderr = cap;
	rc = in->m->ops->post_load(in->dev, &err);
	if (cap) {
		stderr = saved;
		fclose(cap);
		if (getenv("FUZZ_DL_VERBOSE"))
			fputs(text, stderr);
	}
	iothread_resume(io);
	*said = !cap || len > 0 || err.msg[0];
	free(text);
	return rc;
}

/* Load @s into @in: 0, or -errno having checked the refusal says why. */
static int load(struct inst *in, const struct snapbuf *s)
{
	struct load_ctx c = {0};
	bool said;
	int rc;

	if (snap_reader_open_mem(&c.r, "fuzz.snap", s->b, s->len, &c.se)) {
		if (!c.se.msg[0])
			die("reader refused without a message", in->m->name);
		return -EPROTO;
	}
	if (in->m->save)
		in->m->save(in); /* preload: what the file lacks keeps it */
	rc = inst_foreach(in, read_cb, &c);
	if (rc && !c.se.msg[0])
		die("section refused without a message", in->m->name);
	if (!rc && snap_reader_check_consumed(c.r, &c.se))
		die("sections left unread", c.se.msg);
	snap_reader_close(c.r);
	if (rc)
		return rc;
	rc = post_load(in, &said);
	if (rc > 0)
		die("post_load returned a positive value", in->m->name);
	if (rc && !said)
		die("post_load refused without a message", in->m->name);
	return rc;
}

/* ---- the base snapshots: one per model and mode, made once ---- */

static struct snapbuf bases[NMODELS][4];

static void ram_reset(const struct model *m, unsigned mode)
{
	memset(ram, 0, RAM_SIZE);
	if (m->ops && !m->platform && (mode & 1))
		ram_requests(VIRTIO_PCI_MAX_QUEUES);
	if (ftruncate(img_fd, 0) || ftruncate(img_fd, IMG_SIZE))
		die("image", strerror(errno));
}

static const struct snapbuf *base_for(const struct model *m, unsigned mode)
{
	struct snapbuf *s = &bases[m - MODELS][mode];
	struct inst in;

	if (s->b)
		return s;
	ram_reset(m, mode);
	platform_mode = mode;
	if (inst_create(&in, m))
		die("creating the base device", m->name);
	if ((mode & 1) && !m->platform) {
		if (m->ops)
			pci_bringup(&in, mode & 2);
		else
			m->bringup(&in);
	}
	save(&in, s, "saving the base device");
	inst_destroy(&in);
	return s;
}

/* FUZZ_DL_DUMP=DIR: the seeds (every model and mode, payloads as is). */
static void dump_seeds(const char *dir)
{
	for (unsigned m = 0; m < NMODELS; m++)
		for (unsigned mode = 0; mode < 8; mode++) {
			const struct snapbuf *s;
			char path[512];
			FILE *f;

			/* MSI-X is a driver's choice: only with one. */
			if ((!MODELS[m].ops || MODELS[m].platform) &&
			    (mode & 2))
				continue;
			if ((mode & 3) == 2)
				continue;
			/* --keep-clock: the rtc's, once. */
			if ((mode & 4) &&
			    (MODELS[m].apply != rtc_apply || mode != 5))
				continue;
			s = base_for(&MODELS[m], mode & 3);
			snprintf(path, sizeof(path), "%s/%s-%s%s%s", dir,
				 MODELS[m].name, mode & 1 ? "up" : "fresh",
				 mode & 2 ? "-msix" : "",
				 mode & 4 ? "-keep-clock" : "");
			f = fopen(path, "wb");
			if (!f)
				die("dump", path);
			fputc((int)m, f);
			fputc((int)mode, f);
			for (unsigned i = 0; i < s->nsec; i++) {
				size_t so = s->off[i];
				size_t plen = get_le64(s->b + so + 24);

				fputc(1, f);
				fputc((int)(plen & 0xff), f);
				fputc((int)(plen >> 8), f);
				fwrite(s->b + so + SEC_HDR + get_le16(s->b + so + 6),
				       1, plen, f);
			}
			/* A kick on every queue, then a barrier. */
			for (unsigned q = 0; q < 4; q++) {
				fputc(MODELS[m].platform ? (int)q
				      : MODELS[m].ops	 ? 0x01
							 : 0x80,
				      f);
				fputc((int)q, f);
			}
			fputc(0x07, f);
			fclose(f);
			if (mode != 1)
				continue;
			/* The same, each section's first field one higher. */
			snprintf(path, sizeof(path), "%s/%s-edges", dir,
				 MODELS[m].name);
			f = fopen(path, "wb");
			if (!f)
				die("dump", path);
			fputc((int)m, f);
			fputc((int)mode, f);
			for (unsigned i = 0; i < s->nsec; i++)
				fwrite("\x04\x00\x00\x00\x00\x06", 1, 6, f);
			fclose(f);
		}
}

static void setup(void)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	log_set_level(LOG_ERR);
	snap_host_info_probe(&host, "fuzz");
	ram = calloc(1, RAM_SIZE);
	if (!ram || guest_mem_layout(&mem, RAM_SIZE))
		die("guest RAM", NULL);
	mem.r[0].hva = ram;
	snprintf(snap_path, sizeof(snap_path), "%s/khyve-fuzz-dl-%d.snap", dir,
		 (int)getpid());
	/* A memfd: a crash leaves no image behind; virtio-blk opens it by
	 * path like any other. */
	img_fd = memfd_create("fuzz-dl.img", MFD_CLOEXEC);
	if (img_fd < 0 || ftruncate(img_fd, IMG_SIZE))
		die("image", strerror(errno));
	snprintf(img_path, sizeof(img_path), "/proc/self/fd/%d", img_fd);
	if (iothread_create(&io, "fuzz-io") ||
	    iothread_kick_new(io, barrier_cb, NULL, &bar_kick))
		die("iothread", NULL);
	if (getenv("FUZZ_DL_DUMP")) {
		dump_seeds(getenv("FUZZ_DL_DUMP"));
		/* Not exit(): libFuzzer takes that for a crash. */
		_exit(0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 2, *end = data + size;
	const struct model *m;
	const struct snapbuf *base;
	struct snapbuf file = {0}, again = {0}, third = {0};
	struct inst a, b;
	unsigned mode, ops = 0;

	if (!ram)
		setup();
	if (size < 2)
		return 0;
	m = &MODELS[data[0] % NMODELS];
	mode = data[1] & (m->ops && !m->platform ? 3 : 1);
	keep_clock = data[1] & 4;
	if (mode == 2)
		mode = 0; /* MSI-X without a driver: fresh */
	base = base_for(m, mode);
	mutate(base, &p, end, &file);
	ram_reset(m, mode);
	platform_mode = mode;

	if (inst_create(&a, m))
		die("creating the device to restore", m->name);
	if (load(&a, &file)) {
		if (getenv("FUZZ_DL_VERBOSE"))
			fprintf(stderr, "%s mode %u: refused\n", m->name, mode);
		/* Refused, with a message: the restore destroys it. */
		inst_destroy(&a);
		snapbuf_free(&file);
		return 0;
	}
	if (m->ops && m->ops->resume)
		m->ops->resume(a.dev);
	while (p < end && ops++ < MAX_OPS) {
		if (m->platform)
			platform_op(&a, &p, end);
		else if (m->ops)
			pci_op(&a, &p, end);
		else
			legacy_op(&a, &p, end);
	}
	if (m->ops) {
		io_barrier();
		if (m->ops->pause && m->ops->pause(a.dev))
			die("pause failed", m->name);
	}
	/* A checkpoint of the restored device, restored again (vmgenid: by
	 * a restore, also after a migration: the ID is renewed then). */
	save(&a, &again, "a restored device cannot be saved");
	platform_mode = 0;
	if (inst_create(&b, m))
		die("creating the second device", m->name);
	if (load(&b, &again))
		die("its checkpoint cannot be restored", m->name);
	save(&b, &third, "a twice restored device cannot be saved");
	for (unsigned i = 0; i < again.nsec; i++) {
		size_t la = sec_len(&again, i);

		if (third.nsec != again.nsec || sec_len(&third, i) != la ||
		    memcmp(again.b + again.off[i] + SEC_HDR,
			   third.b + third.off[i] + SEC_HDR, la - SEC_HDR)) {
			fprintf(stderr, "fuzz_device_load: %s: section %.*s\n",
				m->name, (int)get_le16(again.b + again.off[i] + 6),
				(const char *)again.b + again.off[i] + SEC_HDR);
			die("restored, the checkpoint of a restored device "
			    "saves something else", NULL);
		}
	}
	if (getenv("FUZZ_DL_VERBOSE"))
		fprintf(stderr, "%s mode %u: loaded, %u ops, %u MSIs, used "
				"idx %u/%u, restored again\n", m->name, mode,
			ops, msis, get_le16(ram + ring_addr(0, 2) + 2),
			get_le16(ram + ring_addr(1, 2) + 2));
	inst_destroy(&b);
	inst_destroy(&a);
	snapbuf_free(&file);
	snapbuf_free(&again);
	snapbuf_free(&third);
	return 0;
}
