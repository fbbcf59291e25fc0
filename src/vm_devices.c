/* SPDX-License-Identifier: BSD-2-Clause */
#include "vm_devices.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chardev.h"
#include "common.h"
#include "dev_ops.h"
#include "i8042.h"
#include "iothread.h"
#include "layout.h"
#include "log.h"
#include "pci.h"
#include "pm.h"
#include "rtc.h"
#include "uart8250.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_rng.h"
#include "vmgenid.h"

#define PCI_MMIO_BASE GUEST_PCI_HOLE_START
#define PCI_MMIO_SIZE (BOOT_IOAPIC_ADDR - GUEST_PCI_HOLE_START)

/* The host bridge is implied at 0:0; -s NN,hostbridge adds nothing. */
static const struct dev_ops hostbridge_dev_ops = {
	.name = "hostbridge",
	.help = "PCI host bridge (always at 0:0)",
};

/*
 * Every -s emulation: a new device is its own file exporting a struct
 * dev_ops, plus one line here (docs/architecture.md). The order is the
 * `-s help` order.
 */
static const struct dev_ops *const dev_table[] = {
	&hostbridge_dev_ops, &virtio_blk_dev_ops,     &virtio_net_dev_ops,
	&virtio_rng_dev_ops, &virtio_console_dev_ops, &vmgenid_dev_ops,
};

struct pci_slot_dev {
	const struct dev_config *cfg;
	const struct dev_ops *ops;
	void *dev;
	struct virtio_pci *vp; /* the transport, whatever the device */
	/* Queue kicks bound to KVM ioeventfds while the notify BAR is mapped.
	 */
	const struct vm_devices_host *host;
	pthread_mutex_t ioev_lock;
	unsigned nioev;
	int ioev_fd[DEV_MAX_KICKS];
	uint64_t ioev_addr[DEV_MAX_KICKS];
	bool ioev_on[DEV_MAX_KICKS];
};

struct vm_devices {
	struct vm_devices_host host;
	struct chardev *console; /* COM1's back-end */
	struct uart8250 com1;
	struct rtc rtc;
	struct i8042 kbd;
	struct pm pm;
	struct irq_line irq_kbd, irq_aux;
	struct pci_bus pci;
	struct iothread *io;
	struct msi_sink msi;
	struct irq_line irq_com1, irq_rtc;
	unsigned npci; /* the -s devices, then the platform devices */
	struct pci_slot_dev pcidevs[CONFIG_MAX_DEVS + ARRAY_SIZE(dev_table)];
	struct dev_config platcfg[ARRAY_SIZE(dev_table)]; /* their names */
	bool uart_full; /* stop polling console input until there is room */
	pthread_mutex_t pause_lock;
	bool paused; /* under pause_lock: every device's I/O stopped */
};

void vm_devices_list(FILE *out)
{
	fprintf(out, "PCI emulations for -s slot[:func],EMULATION[,conf]:\n");
	for (unsigned i = 0; i < ARRAY_SIZE(dev_table); i++)
		if (!dev_table[i]->platform)
			fprintf(out, "  %-15s %s\n", dev_table[i]->name,
				dev_table[i]->help);
	fprintf(out, "Platform devices (no -s):\n");
	for (unsigned i = 0; i < ARRAY_SIZE(dev_table); i++)
		if (dev_table[i]->platform)
			fprintf(out, "  %-15s %s\n", dev_table[i]->name,
				dev_table[i]->help);
}

const struct dev_ops *dev_ops_find(const char *name)
{
	for (unsigned i = 0; i < ARRAY_SIZE(dev_table); i++)
		if (!dev_table[i]->platform &&
		    !strcmp(dev_table[i]->name, name))
			return dev_table[i];
	return NULL;
}

/* Unclaimed legacy ports Linux pokes at (POST codes, the DMA page). */
static int ignore_io(void *opaque, uint64_t off, void *data, unsigned size,
		     bool is_write)
{
	if (!is_write)
		memset(data, 0xff, size);
	return 0;
}

/* ACPI sleep register S5. */
static void poweroff_cb(void *opaque)
{
	struct vm_devices *d = opaque;

	d->host.request_stop(d->host.opaque, KHYVE_EXIT_POWEROFF);
}

/* The guest asked for a reset (i8042 pulse, 0xcf9): bhyve exits 0. */
static void reset_cb(void *opaque)
{
	struct vm_devices *d = opaque;

	d->host.request_stop(d->host.opaque, KHYVE_EXIT_REBOOT);
}

static int pc_cf8_io(void *opaque, uint64_t off, void *data, unsigned size,
		     bool is_write)
{
	struct vm_devices *d = opaque;

	if (off == PM_RESET_PORT - 0xcf8 && size == 1)
		return pm_reset_io(&d->pm, 0, data, size, is_write);
	return pci_config_io(&d->pci, off, data, size, is_write);
}

static void uart_rx_ready(void *opaque)
{
	struct vm_devices *d = opaque;

	d->uart_full = false;
	d->host.wake(d->host.opaque);
}

/* Follow the notify BAR wherever the guest puts it (pci.c calls us). */
static void pci_bars_changed(void *opaque, struct pci_dev *dev)
{
	struct pci_slot_dev *pd = opaque;
	const struct vm_devices_host *h = pd->host;

	pthread_mutex_lock(&pd->ioev_lock);
	for (unsigned q = 0; q < pd->nioev; q++) {
		uint64_t gpa = 0;
		bool want = pci_bar_mapped(dev, VIRTIO_PCI_BAR) &&
			    virtio_pci_notify_addr(pd->vp, q, &gpa) == 0;

		if (pd->ioev_on[q] && (!want || gpa != pd->ioev_addr[q])) {
			h->ioeventfd(h->opaque, pd->ioev_addr[q],
				     pd->ioev_fd[q], false);
			pd->ioev_on[q] = false;
		}
		if (want && !pd->ioev_on[q]) {
			int ret = h->ioeventfd(h->opaque, gpa, pd->ioev_fd[q],
					       true);

			if (ret) {
				/* Still correct: the MMIO exit path kicks too.
				 */
				log_debug("%s: ioeventfd for queue %u: %s",
					  pd->cfg->emul, q, strerror(-ret));
				continue;
			}
			pd->ioev_on[q] = true;
			pd->ioev_addr[q] = gpa;
			log_debug("%s: queue %u kicks by ioeventfd at 0x%llx",
				  pd->cfg->emul, q, (unsigned long long)gpa);
		}
	}
	pthread_mutex_unlock(&pd->ioev_lock);
}

static void pci_slot_bind_kicks(struct vm_devices *d, struct pci_slot_dev *pd)
{
	pd->host = &d->host;
	pthread_mutex_init(&pd->ioev_lock, NULL);
	while (pd->ops->kick_fd && pd->nioev < DEV_MAX_KICKS) {
		int fd = pd->ops->kick_fd(pd->dev, pd->nioev);

		if (fd < 0)
			break;
		pd->ioev_fd[pd->nioev++] = fd;
	}
	pd->vp->pci.bars_changed = pci_bars_changed;
	pd->vp->pci.bars_changed_opaque = pd;
}

/* COM1, the RTC, i8042, ACPI sleep/reset and the PCI bus's ports. */
static int legacy_create(struct vm_devices *d, struct err *err)
{
	const struct vm_devices_host *h = &d->host;
	int ret;

	ret = uart8250_init(&d->com1, &d->irq_com1, d->console);
	if (ret)
		return ret;
	uart8250_set_rx_ready_cb(&d->com1, uart_rx_ready, d);
	ret = bus_register(h->pio, UART8250_COM1_BASE, UART8250_NR_PORTS,
			   uart8250_io, &d->com1, "com1");
	if (!ret)
		ret = rtc_init(&d->rtc, &d->irq_rtc, h->mem->r[0].size,
			       h->mem->nr > 1 ? h->mem->r[1].size : 0);
	if (!ret)
		ret = bus_register(h->pio, 0x70, 2, rtc_io, &d->rtc, "rtc");
	if (ret)
		return ret;
	/* POST code port and the DMA page registers: accept silently. */
	bus_register(h->pio, 0x80, 1, ignore_io, NULL, "post");
	bus_register(h->pio, 0x81, 0xf, ignore_io, NULL, "dma-page");
	ret = i8042_init(&d->kbd, &d->irq_kbd, &d->irq_aux, reset_cb, d);
	if (!ret)
		ret = bus_register(h->pio, 0x60, 1, i8042_data_io, &d->kbd,
				   "i8042");
	if (!ret)
		ret = bus_register(h->pio, 0x64, 1, i8042_cmd_io, &d->kbd,
				   "i8042");
	if (!ret)
		ret = pm_init(&d->pm, poweroff_cb, reset_cb, d);
	if (!ret)
		ret = bus_register(h->pio, PM_SLEEP_CTL_PORT, PM_SLEEP_NR_PORTS,
				   pm_sleep_io, &d->pm, "acpi-sleep");
	if (ret)
		return ret;
	/* 0xcf8-0xcff: PCI config, except the byte at 0xcf9 (reset). */
	ret = pci_bus_init(&d->pci, NULL, h->mmio, PCI_MMIO_BASE,
			   PCI_MMIO_SIZE);
	if (!ret)
		ret = bus_register(h->pio, 0xcf8, 8, pc_cf8_io, d,
				   "pci-config");
	if (ret)
		err_set(err, ret, "PCI bus: %s", strerror(-ret));
	return ret;
}

/* One -s device: created by its dev_ops, then placed on the bus. */
static int pci_dev_create(struct vm_devices *d, const struct dev_config *dc,
			  struct err *err)
{
	struct pci_slot_dev *pd = &d->pcidevs[d->npci];
	const struct dev_env env = {
		.mem = d->host.mem,
		.io = d->io,
		.msi = &d->msi,
		.slot = dc->slot,
		.func = dc->func,
		.cfg = d->host.cfg,
		.from_snapshot = dc->from_snapshot,
		.start_paused = d->paused,
	};
	struct dev_instance inst = {0};
	int ret;

	pd->cfg = dc;
	if (dc->slot == 0 && dc->func == 0)
		return err_set(err, -EINVAL,
			       "-s 0,%s: slot 0 is the host bridge", dc->emul);
	pd->ops = dev_ops_find(dc->emul);
	if (!pd->ops)
		return err_set(err, -EINVAL,
			       "-s %u,%s: unknown emulation (see -s help)",
			       dc->slot, dc->emul);
	if (!pd->ops->create)
		return 0;
	/* The device's message goes up unchanged: it names the -s option. */
	ret = pd->ops->create(dc->conf, &env, &inst, err);
	if (ret)
		return ret;
	pd->dev = inst.dev;
	pd->vp = inst.vp;
	pci_slot_bind_kicks(d, pd);
	d->npci++; /* destroyed from here on, added or not */
	ret = pci_add_device(&d->pci, dc->slot, dc->func, &pd->vp->pci);
	if (ret == -ENOSPC)
		err_set(err, ret,
			"-s %u:%u,%s: no room for its BARs in the PCI MMIO "
			"window",
			dc->slot, dc->func, dc->emul);
	else if (ret)
		err_set(err, ret, "-s %u:%u,%s: %s", dc->slot, dc->func,
			dc->emul, strerror(-ret));
	return ret;
}

/* A platform device: no slot, no transport; its state is instance 0. */
static int platform_dev_create(struct vm_devices *d, unsigned i,
			       struct err *err)
{
	const struct dev_ops *ops = dev_table[i];
	struct pci_slot_dev *pd = &d->pcidevs[d->npci];
	struct dev_config *dc = &d->platcfg[i]; /* one per table entry */
	const struct dev_env env = {
		.mem = d->host.mem,
		.io = d->io,
		.msi = &d->msi,
		.irq = {d->host.irq_line, d->host.opaque, 0},
		.cfg = d->host.cfg,
		.start_paused = d->paused,
	};
	struct dev_instance inst = {0};
	int ret;

	snprintf(dc->emul, sizeof(dc->emul), "%s", ops->name);
	pd->cfg = dc;
	pd->ops = ops;
	ret = ops->create("", &env, &inst, err);
	if (ret)
		return ret;
	pd->dev = inst.dev;
	d->npci++;
	return 0;
}

int vm_devices_dsdt_aml(struct vm_devices *d, uint8_t *buf, size_t len,
			struct err *err)
{
	size_t n = 0;

	for (unsigned i = 0; i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];
		int ret = pd->ops->dsdt_aml
				  ? pd->ops->dsdt_aml(pd->dev, buf + n, len - n)
				  : 0;

		if (ret < 0)
			return err_set(err, ret, "%s: no room for its ACPI AML",
				       pd->cfg->emul);
		n += (size_t)ret;
	}
	return (int)n;
}

int vm_devices_create(struct vm_devices **devs,
		      const struct vm_devices_host *host, struct err *err)
{
	const struct vm_config *cfg = host->cfg;
	struct vm_devices *d = calloc(1, sizeof(*d));
	int ret;

	err_clear(err);
	*devs = d;
	if (!d)
		return err_set(err, -ENOMEM, "device set-up: %s",
			       strerror(ENOMEM));
	d->host = *host;
	pthread_mutex_init(&d->pause_lock, NULL);
	/* Input read or requests served before the state loads would be
	 * lost: a restore resumes the devices once it is in. */
	d->paused = cfg->restore || cfg->incoming;
	d->msi = (struct msi_sink){host->send_msi, host->opaque};
	d->irq_com1 = (struct irq_line){host->irq_line, host->opaque,
					UART8250_COM1_IRQ};
	d->irq_rtc = (struct irq_line){host->irq_line, host->opaque, 8};
	d->irq_kbd = (struct irq_line){host->irq_line, host->opaque, 1};
	d->irq_aux = (struct irq_line){host->irq_line, host->opaque, 12};

	ret = chardev_open(&d->console, cfg->console,
			   cfg->console_from_snapshot ? CHARDEV_NO_CREATE : 0,
			   err);
	if (ret)
		return ret;
	ret = legacy_create(d, err);
	if (ret)
		goto fail;
	ret = iothread_create(&d->io, "khyve-io");
	if (ret) {
		err_set(err, ret, "I/O thread: %s", strerror(-ret));
		goto fail;
	}
	for (unsigned i = 0; i < cfg->ndevs; i++) {
		ret = pci_dev_create(d, &cfg->devs[i], err);
		if (ret)
			goto fail;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(dev_table); i++) {
		ret = dev_table[i]->platform ? platform_dev_create(d, i, err)
					     : 0;
		if (ret)
			goto fail;
	}
	return 0;
fail:
	if (err && !err->msg[0])
		err_set(err, ret, "device set-up: %s", strerror(-ret));
	return ret;
}

void vm_devices_destroy(struct vm_devices *d)
{
	if (!d)
		return;
	/* Devices first: they still have handlers on the I/O thread. */
	for (unsigned i = 0; i < d->npci; i++)
		d->pcidevs[i].ops->destroy(d->pcidevs[i].dev);
	if (d->io)
		iothread_destroy(d->io);
	if (d->console)
		chardev_close(d->console);
	pthread_mutex_destroy(&d->pause_lock);
	free(d);
}

int vm_devices_console_wait_fd(struct vm_devices *d)
{
	if (!d->console || d->uart_full)
		return -1;
	return chardev_input_fd(d->console);
}

int vm_devices_ctrl_alt_del(struct vm_devices *d, struct err *err)
{
	int ret = i8042_kbd_ctrl_alt_del(&d->kbd);

	switch (ret) {
	case 0:
		return 0;
	case -ENODEV:
		return err_set(err, ret,
			       "the guest has disabled its i8042 keyboard");
	case -ENOBUFS:
		return err_set(err, ret,
			       "the i8042 output buffer is full (the guest "
			       "does not read its keyboard)");
	case -EOPNOTSUPP:
		return err_set(err, ret,
			       "the guest's keyboard is in scan code set 3, "
			       "which khyve does not type in");
	default:
		return err_set(err, ret, "i8042: %s", strerror(-ret));
	}
}

void vm_devices_console_input(struct vm_devices *d)
{
	uint8_t buf[64];
	size_t room = uart8250_rx_room(&d->com1);
	ssize_t n;

	if (room == 0) {
		d->uart_full = true;
		/* Re-check: the guest may have drained it meanwhile. */
		if (uart8250_rx_room(&d->com1))
			d->uart_full = false;
		return;
	}
	n = chardev_read(d->console, buf, MIN(room, sizeof(buf)));
	if (n > 0)
		uart8250_receive(&d->com1, buf, (size_t)n);
}

static void resume_first(struct vm_devices *d, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (d->pcidevs[i].ops->resume)
			d->pcidevs[i].ops->resume(d->pcidevs[i].dev);
}

int vm_devices_pause(struct vm_devices *d, struct err *err)
{
	int ret = 0;

	pthread_mutex_lock(&d->pause_lock);
	for (unsigned i = 0; !d->paused && i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];

		if (!pd->ops->pause)
			continue;
		ret = pd->ops->pause(pd->dev);
		if (ret) {
			err_set(err, ret, "pausing %s@%u: %s", pd->cfg->emul,
				pd->cfg->slot, strerror(-ret));
			resume_first(d, i + 1);
			break;
		}
	}
	if (!ret)
		d->paused = true;
	pthread_mutex_unlock(&d->pause_lock);
	return ret;
}

void vm_devices_resume(struct vm_devices *d)
{
	pthread_mutex_lock(&d->pause_lock);
	if (d->paused)
		resume_first(d, d->npci);
	d->paused = false;
	pthread_mutex_unlock(&d->pause_lock);
}

/* A device's words (dev_ops texts) into its stats object @o. */
static void add_texts(struct pci_slot_dev *pd, json_t *o)
{
	struct dev_text t[DEV_MAX_TEXTS];
	unsigned n;

	if (!pd->ops->texts)
		return;
	n = pd->ops->texts(pd->dev, t);
	for (unsigned k = 0; k < n && k < DEV_MAX_TEXTS; k++)
		json_object_set_new(o, t[k].name, json_string(t[k].value));
}

json_t *vm_devices_stats(struct vm_devices *d)
{
	json_t *j = json_object();

	json_object_set_new(j, "com1",
			    json_pack("{s:I, s:I, s:I}", "tx_bytes",
				      (json_int_t)d->com1.tx_bytes, "rx_bytes",
				      (json_int_t)d->com1.rx_bytes, "overruns",
				      (json_int_t)d->com1.overruns));
	for (unsigned i = 0; i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];
		struct dev_stat st[DEV_MAX_STATS];
		unsigned n;
		json_t *o;
		char key[48];

		if (!pd->ops->stats)
			continue;
		n = pd->ops->stats(pd->dev, st);
		o = json_object();
		for (unsigned k = 0; k < n && k < DEV_MAX_STATS; k++)
			json_object_set_new(
				o, st[k].name,
				json_integer((json_int_t)st[k].value));
		add_texts(pd, o);
		snprintf(key, sizeof(key), "%s@%u:%u", pd->cfg->emul,
			 pd->cfg->slot, pd->cfg->func);
		json_object_set_new(j, key, o);
	}
	return j;
}

static int snap_write_cb(void *ctx, const struct snap_desc *desc,
			 uint32_t instance, void *state)
{
	return snap_write_section(ctx, desc, instance, state);
}

/* Only a paused device set may be saved or loaded (the pause contract). */
static bool devices_paused(struct vm_devices *d)
{
	bool paused;

	pthread_mutex_lock(&d->pause_lock);
	paused = d->paused;
	pthread_mutex_unlock(&d->pause_lock);
	return paused;
}

int vm_devices_save(struct vm_devices *d, struct snap_writer *w,
		    struct err *err)
{
	struct uart8250_state us;
	struct rtc_state rs;
	struct i8042_state ks;
	struct pm_state ps;
	struct pci_bus_state bs;
	int ret;

	if (!devices_paused(d))
		return err_set(err, -EBUSY,
			       "saving device state: devices not paused");
	uart8250_state_save(&d->com1, &us);
	rtc_state_save(&d->rtc, &rs);
	i8042_state_save(&d->kbd, &ks);
	pm_state_save(&d->pm, &ps);
	pci_bus_state_save(&d->pci, &bs);
	ret = snap_write_section(w, &uart8250_snap_desc, 0, &us);
	if (!ret)
		ret = snap_write_section(w, &rtc_snap_desc, 0, &rs);
	if (!ret)
		ret = snap_write_section(w, &i8042_snap_desc, 0, &ks);
	if (!ret)
		ret = snap_write_section(w, &pm_snap_desc, 0, &ps);
	if (!ret)
		ret = snap_write_section(w, &pci_bus_snap, 0, &bs);
	/* PCI devices by their slot.func, so a config with gaps still maps. */
	for (unsigned i = 0; !ret && i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];
		uint32_t inst = pd->cfg->slot * 8 + pd->cfg->func;

		if (pd->ops->snap_foreach)
			ret = pd->ops->snap_foreach(pd->dev, inst,
						    snap_write_cb, w);
	}
	if (ret)
		err_set(err, ret, "saving device state: %s",
			snap_writer_why(w, ret));
	return ret;
}

struct load_ctx {
	struct snap_reader *r;
	struct err se;
};

static int snap_read_cb(void *ctx, const struct snap_desc *desc,
			uint32_t instance, void *state)
{
	struct load_ctx *c = ctx;

	return snap_read_section(c->r, desc, instance, state, &c->se);
}

/* COM1, RTC, i8042, PM: read all four, then apply them. */
static int legacy_load(struct vm_devices *d, struct load_ctx *c,
		       struct err *err)
{
	struct snap_reader *r = c->r;
	struct uart8250_state us;
	struct rtc_state rs;
	struct i8042_state ks;
	struct pm_state ps;
	struct pci_bus_state bs;
	int ret;

	uart8250_state_save(&d->com1, &us);
	rtc_state_save(&d->rtc, &rs);
	i8042_state_save(&d->kbd, &ks);
	pm_state_save(&d->pm, &ps);
	pci_bus_state_save(&d->pci, &bs);
	ret = snap_read_section(r, &uart8250_snap_desc, 0, &us, &c->se);
	if (!ret)
		ret = snap_read_section(r, &rtc_snap_desc, 0, &rs, &c->se);
	if (!ret)
		ret = snap_read_section(r, &i8042_snap_desc, 0, &ks, &c->se);
	if (!ret)
		ret = snap_read_section(r, &pm_snap_desc, 0, &ps, &c->se);
	/* Absent from snapshots before 2026-12-03: the latch stays 0. */
	if (!ret) {
		ret = snap_read_section(r, &pci_bus_snap, 0, &bs, &c->se);
		if (!ret)
			pci_bus_state_apply(&d->pci, &bs);
		else if (ret == -ENOENT)
			ret = 0;
	}
	if (ret)
		return err_set(err, ret, "%s",
			       c->se.msg[0] ? c->se.msg : strerror(-ret));
	ret = uart8250_state_apply(&d->com1, &us);
	if (!ret)
		ret = rtc_state_apply(&d->rtc, &rs);
	if (!ret)
		ret = i8042_state_apply(&d->kbd, &ks);
	if (!ret)
		ret = pm_state_apply(&d->pm, &ps);
	if (ret)
		err_set(err, ret, "%s: legacy device state out of range",
			snap_reader_path(r));
	return ret;
}

int vm_devices_load(struct vm_devices *d, struct snap_reader *r,
		    struct err *err)
{
	struct load_ctx c = {.r = r};
	int ret;

	/*
	 * Devices stay paused until the vCPUs' state is in KVM
	 * (vm_devices_resume() at the end of the restore): an MSI raised
	 * before KVM_SET_LAPIC lands in the LAPIC's reset state and is
	 * overwritten, so the guest would never see it. The console's
	 * iothread must not fill its buffers meanwhile either. A restore
	 * creates them paused.
	 */
	if (!devices_paused(d))
		return err_set(err, -EBUSY,
			       "loading device state: devices not paused");
	ret = legacy_load(d, &c, err);
	if (ret)
		return ret;
	for (unsigned i = 0; i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];
		uint32_t inst = pd->cfg->slot * 8 + pd->cfg->func;

		if (!pd->ops->snap_foreach)
			continue;
		ret = pd->ops->snap_foreach(pd->dev, inst, snap_read_cb, &c);
		if (ret)
			return err_set(err, ret, "%s",
				       c.se.msg[0] ? c.se.msg : strerror(-ret));
		err_clear(&c.se);
		ret = pd->ops->post_load ? pd->ops->post_load(pd->dev, &c.se)
					 : 0;
		if (ret) {
			err_set(err, ret, "%s: %s@%u: state rejected: %s",
				snap_reader_path(r), pd->cfg->emul,
				pd->cfg->slot,
				c.se.msg[0] ? c.se.msg : strerror(-ret));
			return ret;
		}
	}
	return 0;
}

void vm_devices_rtc_resync(struct vm_devices *d, bool keep_clock)
{
	/* By default the RTC follows the host again; else it continues. */
	if (keep_clock)
		rtc_clock_continue(&d->rtc);
}
