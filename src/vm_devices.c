/* SPDX-License-Identifier: BSD-2-Clause */
#include "vm_devices.h"

#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "chardev.h"
#include "common.h"
#include "config.h"
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
#include "vm.h"

#define PCI_MMIO_BASE GUEST_PCI_HOLE_START
#define PCI_MMIO_SIZE (BOOT_IOAPIC_ADDR - GUEST_PCI_HOLE_START)

struct pci_slot_dev {
	const struct dev_config *cfg;
	struct virtio_blk *blk;
	struct virtio_rng *rng;
	struct virtio_net *net;
	struct virtio_console *con;
	struct virtio_pci *vp; /* the transport, whatever the device */
	/* Queue kicks bound to KVM ioeventfds while the notify BAR is mapped. */
	struct vm *vm;
	pthread_mutex_t ioev_lock;
	unsigned nioev;
	int ioev_fd[2];
	uint64_t ioev_addr[2];
	bool ioev_on[2];
};

struct vm_devices {
	struct uart8250 com1;
	struct rtc rtc;
	struct i8042 kbd;
	struct pm pm;
	struct irq_line irq_kbd, irq_aux;
	struct pci_bus pci;
	struct iothread *io;
	struct msi_sink msi;
	struct irq_line irq_com1, irq_rtc;
	unsigned npci;
	struct pci_slot_dev pcidevs[CONFIG_MAX_DEVS];
	bool uart_full; /* stop polling console input until there is room */
};

static const struct {
	const char *name;
	const char *help;
} emulations[] = {
	{ "hostbridge", "PCI host bridge (always at 0:0)" },
	{ "virtio-blk", "virtio-blk,PATH[,ro][,direct][,serial=ID][,workers=N]: raw disk image" },
	{ "virtio-net",
	  "virtio-net,TAPNAME[,mac=xx:xx:xx:xx:xx:xx]: TAP device (created "
	  "if it does not exist)" },
	{ "virtio-rng", "virtio-rng: entropy from the host's getrandom()" },
	{ "virtio-console",
	  "virtio-console,BACKEND[,cols=N,rows=N]: one console port; BACKEND "
	  "is stdio, null, unix=PATH (listening socket) or file=PATH" },
};

void vm_devices_list(FILE *out)
{
	fprintf(out, "PCI emulations for -s slot[:func],EMULATION[,conf]:\n");
	for (unsigned i = 0; i < ARRAY_SIZE(emulations); i++)
		fprintf(out, "  %-15s %s\n", emulations[i].name,
			emulations[i].help);
}

static int kvm_irq_line(void *opaque, unsigned gsi, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level l = { .irq = gsi, .level = (uint32_t)level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static int kvm_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct vm *vm = opaque;
	struct kvm_msi m = { .address_lo = (uint32_t)addr,
			     .address_hi = (uint32_t)(addr >> 32),
			     .data = data };

	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m) < 0 ? -errno : 0;
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
static void vm_poweroff_cb(void *opaque)
{
	vm_request_stop(opaque, KHYVE_EXIT_POWEROFF);
}

static int pc_cf8_io(void *opaque, uint64_t off, void *data, unsigned size,
		     bool is_write)
{
	struct vm *vm = opaque;

	if (off == PM_RESET_PORT - 0xcf8 && size == 1)
		return pm_reset_io(&vm->devs->pm, 0, data, size, is_write);
	return pci_config_io(&vm->devs->pci, off, data, size, is_write);
}

/* The guest asked for a reset (i8042 pulse, 0xcf9): bhyve exits 0. */
static void vm_reset_cb(void *opaque)
{
	vm_request_stop(opaque, KHYVE_EXIT_REBOOT);
}

static void uart_rx_ready(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;

	vm->devs->uart_full = false;
	if (write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* main loop already awake */
	}
}

static int add_virtio_blk(struct vm *vm, struct pci_slot_dev *d, char *err,
			  size_t errlen)
{
	struct virtio_blk_opts o = { .workers = -1 };
	char path[512], serial[32], workers[16];
	const char *comma;
	size_t pl;
	int ret;

	comma = strchr(d->cfg->conf, ',');
	pl = comma ? (size_t)(comma - d->cfg->conf) : strlen(d->cfg->conf);
	if (pl == 0 || pl >= sizeof(path)) {
		snprintf(err, errlen, "-s %u,virtio-blk: missing image path",
			 d->cfg->slot);
		return -EINVAL;
	}
	memcpy(path, d->cfg->conf, pl);
	path[pl] = 0;
	o.path = path;
	o.readonly = config_opt_get(d->cfg->conf, "ro", NULL, 0);
	o.direct = config_opt_get(d->cfg->conf, "direct", NULL, 0);
	if (config_opt_get(d->cfg->conf, "serial", serial, sizeof(serial)))
		o.serial = serial;
	if (config_opt_get(d->cfg->conf, "workers", workers, sizeof(workers))) {
		char *end;
		long n = strtol(workers, &end, 10);

		if (!*workers || *end || n < 0 || n > VIRTIO_BLK_MAX_WORKERS) {
			snprintf(err, errlen,
				 "-s %u,virtio-blk: workers=%s: want 0 to %d",
				 d->cfg->slot, workers, VIRTIO_BLK_MAX_WORKERS);
			return -EINVAL;
		}
		o.workers = (int)n;
	}
	d->blk = calloc(1, sizeof(*d->blk));
	if (!d->blk)
		return -ENOMEM;
	ret = virtio_blk_init(d->blk, &o, &vm->mem, vm->devs->io, &vm->devs->msi);
	if (ret) {
		snprintf(err, errlen, "-s %u,virtio-blk,%s: %s", d->cfg->slot,
			 path, strerror(-ret));
		free(d->blk);
		d->blk = NULL;
		return ret;
	}
	d->vp = &d->blk->vp;
	return 0;
}

/* "52:54:00:12:34:56" -> 6 bytes; a unicast address only. */
static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &tail) != 6 || strlen(s) != 17)
		return -EINVAL;
	for (unsigned i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return (mac[0] & 1) ? -EINVAL : 0; /* multicast bit */
}

static int add_virtio_net(struct vm *vm, struct pci_slot_dev *d, char *err,
			  size_t errlen)
{
	struct virtio_net_opts o = { .tap_fd = -1 };
	char ifname[IFNAMSIZ], macs[32];
	uint8_t mac[6];
	const char *conf = d->cfg->conf;
	const char *comma = strchr(conf, ',');
	size_t nl = comma ? (size_t)(comma - conf) : strlen(conf);
	int ret;

	/* The first word is the TAP name unless it is an option. */
	if (nl && !memchr(conf, '=', nl)) {
		if (nl >= sizeof(ifname)) {
			snprintf(err, errlen,
				 "-s %u,virtio-net: TAP name longer than %d",
				 d->cfg->slot, IFNAMSIZ - 1);
			return -EINVAL;
		}
		memcpy(ifname, conf, nl);
		ifname[nl] = 0;
		o.ifname = ifname;
		/*
		 * TUNSETIFF would create a TAP that does not exist: not one
		 * a snapshot names (docs/security.md). A nameless one is
		 * new anyway and takes over nothing.
		 */
		if (d->cfg->from_snapshot && !if_nametoindex(ifname)) {
			snprintf(err, errlen,
				 "-s %u,virtio-net: TAP %s (named by the "
				 "snapshot) does not exist; khyve creates no "
				 "interface a snapshot names: create it, or "
				 "give -s %u,virtio-net,TAP",
				 d->cfg->slot, ifname, d->cfg->slot);
			return -ENODEV;
		}
	}
	if (config_opt_get(conf, "mac", macs, sizeof(macs))) {
		if (parse_mac(macs, mac)) {
			snprintf(err, errlen,
				 "-s %u,virtio-net: bad MAC \"%s\" (want a "
				 "unicast xx:xx:xx:xx:xx:xx)",
				 d->cfg->slot, macs);
			return -EINVAL;
		}
		o.mac = mac;
	}
	d->net = calloc(1, sizeof(*d->net));
	if (!d->net)
		return -ENOMEM;
	ret = virtio_net_init(d->net, &o, &vm->mem, vm->devs->io,
			      &vm->devs->msi);
	if (ret) {
		snprintf(err, errlen, "-s %u,virtio-net,%s: TAP: %s",
			 d->cfg->slot, o.ifname ? o.ifname : "(new)",
			 strerror(-ret));
		free(d->net);
		d->net = NULL;
		return ret;
	}
	d->vp = &d->net->vp;
	return 0;
}

/* "unix=P" / "file=P" (the -s spelling) -> chardev's "socket:P" / "file:P". */
static int console_backend(const char *conf, char *spec, size_t len)
{
	const char *comma = strchr(conf, ',');
	size_t bl = comma ? (size_t)(comma - conf) : strlen(conf);
	const char *pfx = "";
	size_t skip = 0;

	if (bl >= 5 && !strncmp(conf, "unix=", 5)) {
		pfx = "socket:";
		skip = 5;
	} else if (bl >= 5 && !strncmp(conf, "file=", 5)) {
		pfx = "file:";
		skip = 5;
	}
	if (bl == 0 || strlen(pfx) + bl - skip >= len)
		return -EINVAL;
	snprintf(spec, len, "%s%.*s", pfx, (int)(bl - skip), conf + skip);
	return 0;
}

static int add_virtio_console(struct vm *vm, struct pci_slot_dev *d,
			      char *err, size_t errlen)
{
	struct virtio_console_opts o = { 0 };
	char spec[600], cerr[256], num[16];
	unsigned long cols = 0, rows = 0;
	int ret;

	if (console_backend(d->cfg->conf, spec, sizeof(spec))) {
		snprintf(err, errlen,
			 "-s %u,virtio-console: expected a back-end first "
			 "(stdio, null, unix=PATH or file=PATH)",
			 d->cfg->slot);
		return -EINVAL;
	}
	if (config_opt_get(d->cfg->conf, "cols", num, sizeof(num)))
		cols = strtoul(num, NULL, 10);
	if (config_opt_get(d->cfg->conf, "rows", num, sizeof(num)))
		rows = strtoul(num, NULL, 10);
	if ((cols || rows) && (!cols || !rows || cols > 0xffff ||
			       rows > 0xffff)) {
		snprintf(err, errlen,
			 "-s %u,virtio-console: cols= and rows= go together, "
			 "1-65535 each",
			 d->cfg->slot);
		return -EINVAL;
	}
	o.cols = (uint16_t)cols;
	o.rows = (uint16_t)rows;
	/* Input read before the snapshot's buffers load would be lost. */
	o.start_paused = vm->cfg->restore != NULL;
	ret = chardev_open_ex(&o.cd, spec,
			      d->cfg->from_snapshot ? CHARDEV_NO_CREATE : 0,
			      cerr, sizeof(cerr));
	if (ret) {
		snprintf(err, errlen, "-s %u,virtio-console: %s", d->cfg->slot,
			 cerr);
		return ret;
	}
	d->con = calloc(1, sizeof(*d->con));
	if (!d->con) {
		chardev_close(o.cd);
		return -ENOMEM;
	}
	/* The device owns the chardev from here, failure included. */
	ret = virtio_console_init(d->con, &o, &vm->mem, vm->devs->io,
				  &vm->devs->msi);
	if (ret) {
		snprintf(err, errlen, "-s %u,virtio-console: %s", d->cfg->slot,
			 strerror(-ret));
		free(d->con);
		d->con = NULL;
		return ret;
	}
	d->vp = &d->con->vp;
	return 0;
}

/*
 * KVM_IOEVENTFD: a guest write to a queue's notify address signals the
 * device's kick eventfd inside KVM, without an exit to khyve. 2-byte
 * writes (virtio drivers write the queue index); each queue has its own
 * address, so no data match.
 */
static int kvm_ioeventfd(struct vm *vm, uint64_t addr, int fd, bool assign)
{
	struct kvm_ioeventfd e = {
		.addr = addr,
		.len = 2,
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

/* Follow the notify BAR wherever the guest puts it (pci.c calls us). */
static void pci_bars_changed(void *opaque, struct pci_dev *dev)
{
	struct pci_slot_dev *pd = opaque;

	pthread_mutex_lock(&pd->ioev_lock);
	for (unsigned q = 0; q < pd->nioev; q++) {
		uint64_t gpa = 0;
		bool want = pci_bar_mapped(dev, VIRTIO_PCI_BAR) &&
			    virtio_pci_notify_addr(pd->vp, q, &gpa) == 0;

		if (pd->ioev_on[q] && (!want || gpa != pd->ioev_addr[q])) {
			kvm_ioeventfd(pd->vm, pd->ioev_addr[q], pd->ioev_fd[q],
				      false);
			pd->ioev_on[q] = false;
		}
		if (want && !pd->ioev_on[q]) {
			int ret = kvm_ioeventfd(pd->vm, gpa, pd->ioev_fd[q], true);

			if (ret) {
				/* Still correct: the MMIO exit path kicks too. */
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

static void pci_slot_bind_kicks(struct vm *vm, struct pci_slot_dev *pd)
{
	pd->vm = vm;
	pthread_mutex_init(&pd->ioev_lock, NULL);
	if (pd->blk) {
		pd->ioev_fd[0] = virtio_blk_kick_fd(pd->blk);
		pd->nioev = 1;
	} else if (pd->net) {
		pd->ioev_fd[0] = virtio_net_kick_fd(pd->net, 0);
		pd->ioev_fd[1] = virtio_net_kick_fd(pd->net, 1);
		pd->nioev = 2;
	} else if (pd->con) {
		pd->ioev_fd[0] = virtio_console_kick_fd(pd->con, 0);
		pd->ioev_fd[1] = virtio_console_kick_fd(pd->con, 1);
		pd->nioev = 2;
	}
	for (unsigned q = 0; q < pd->nioev; q++)
		if (pd->ioev_fd[q] < 0)
			pd->nioev = 0;
	pd->vp->pci.bars_changed = pci_bars_changed;
	pd->vp->pci.bars_changed_opaque = pd;
}

int vm_devices_create(struct vm *vm, char *err, size_t errlen)
{
	struct vm_devices *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return -ENOMEM;
	vm->devs = d;
	d->msi = (struct msi_sink){ kvm_send_msi, vm };
	d->irq_com1 = (struct irq_line){ kvm_irq_line, vm, UART8250_COM1_IRQ };
	d->irq_rtc = (struct irq_line){ kvm_irq_line, vm, 8 };

	ret = chardev_open_ex(&vm->console, vm->cfg->console,
			      vm->cfg->console_from_snapshot ? CHARDEV_NO_CREATE
							     : 0,
			      err, errlen);
	if (ret)
		return ret;
	ret = uart8250_init(&d->com1, &d->irq_com1, vm->console);
	if (ret)
		goto fail;
	uart8250_set_rx_ready_cb(&d->com1, uart_rx_ready, vm);
	ret = bus_register(&vm->pio, UART8250_COM1_BASE, UART8250_NR_PORTS,
			   uart8250_io, &d->com1, "com1");
	if (ret)
		goto fail;
	ret = rtc_init(&d->rtc, &d->irq_rtc, vm->mem.r[0].size,
		       vm->mem.nr > 1 ? vm->mem.r[1].size : 0);
	if (ret)
		goto fail;
	ret = bus_register(&vm->pio, 0x70, 2, rtc_io, &d->rtc, "rtc");
	if (ret)
		goto fail;
	/* POST code port and the DMA page registers: accept silently. */
	bus_register(&vm->pio, 0x80, 1, ignore_io, NULL, "post");
	bus_register(&vm->pio, 0x81, 0xf, ignore_io, NULL, "dma-page");
	d->irq_kbd = (struct irq_line){ kvm_irq_line, vm, 1 };
	d->irq_aux = (struct irq_line){ kvm_irq_line, vm, 12 };
	ret = i8042_init(&d->kbd, &d->irq_kbd, &d->irq_aux, vm_reset_cb, vm);
	if (ret)
		goto fail;
	ret = bus_register(&vm->pio, 0x60, 1, i8042_data_io, &d->kbd, "i8042");
	if (!ret)
		ret = bus_register(&vm->pio, 0x64, 1, i8042_cmd_io, &d->kbd,
				   "i8042");
	if (ret)
		goto fail;
	ret = pm_init(&d->pm, vm_poweroff_cb, vm_reset_cb, vm);
	if (!ret)
		ret = bus_register(&vm->pio, PM_SLEEP_CTL_PORT, PM_SLEEP_NR_PORTS,
				   pm_sleep_io, &d->pm, "acpi-sleep");
	if (ret)
		goto fail;
	/* 0xcf8-0xcff: PCI config, except the byte at 0xcf9 (reset). */
	ret = pci_bus_init(&d->pci, NULL, &vm->mmio, PCI_MMIO_BASE,
			   PCI_MMIO_SIZE);
	if (!ret)
		ret = bus_register(&vm->pio, 0xcf8, 8, pc_cf8_io, vm, "pci-config");
	if (ret) {
		snprintf(err, errlen, "PCI bus: %s", strerror(-ret));
		goto fail;
	}
	ret = iothread_create(&d->io, "khyve-io");
	if (ret) {
		snprintf(err, errlen, "I/O thread: %s", strerror(-ret));
		goto fail;
	}
	for (unsigned i = 0; i < vm->cfg->ndevs; i++) {
		const struct dev_config *dc = &vm->cfg->devs[i];
		struct pci_slot_dev *pd = &d->pcidevs[d->npci];

		pd->cfg = dc;
		if (dc->slot == 0 && dc->func == 0) {
			snprintf(err, errlen,
				 "-s 0,%s: slot 0 is the host bridge", dc->emul);
			ret = -EINVAL;
			goto fail;
		}
		if (!strcmp(dc->emul, "virtio-blk")) {
			ret = add_virtio_blk(vm, pd, err, errlen);
		} else if (!strcmp(dc->emul, "virtio-net")) {
			ret = add_virtio_net(vm, pd, err, errlen);
		} else if (!strcmp(dc->emul, "virtio-console")) {
			ret = add_virtio_console(vm, pd, err, errlen);
		} else if (!strcmp(dc->emul, "virtio-rng")) {
			pd->rng = calloc(1, sizeof(*pd->rng));
			ret = pd->rng ? virtio_rng_init(pd->rng, &vm->mem, &d->msi) :
					-ENOMEM;
			if (ret) {
				snprintf(err, errlen, "-s %u,virtio-rng: %s",
					 dc->slot, strerror(-ret));
				free(pd->rng);
				pd->rng = NULL;
				goto fail;
			}
			pd->vp = &pd->rng->vp;
		} else if (!strcmp(dc->emul, "hostbridge")) {
			continue;
		} else {
			snprintf(err, errlen,
				 "-s %u,%s: unknown emulation (see -s help)",
				 dc->slot, dc->emul);
			ret = -EINVAL;
		}
		if (ret)
			goto fail;
		pci_slot_bind_kicks(vm, pd);
		ret = pci_add_device(&d->pci, dc->slot, dc->func, &pd->vp->pci);
		if (ret) {
			snprintf(err, errlen, "-s %u:%u,%s: %s", dc->slot,
				 dc->func, dc->emul, strerror(-ret));
			d->npci++;
			goto fail;
		}
		d->npci++;
	}
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "device set-up: %s", strerror(-ret));
	return ret;
}

void vm_devices_destroy(struct vm *vm)
{
	struct vm_devices *d = vm->devs;

	if (!d)
		return;
	/* Devices first: they still have handlers on the I/O thread. */
	for (unsigned i = 0; i < d->npci; i++) {
		if (d->pcidevs[i].blk) {
			virtio_blk_destroy(d->pcidevs[i].blk);
			free(d->pcidevs[i].blk);
		}
		if (d->pcidevs[i].rng) {
			virtio_rng_destroy(d->pcidevs[i].rng);
			free(d->pcidevs[i].rng);
		}
		if (d->pcidevs[i].net) {
			virtio_net_destroy(d->pcidevs[i].net);
			free(d->pcidevs[i].net);
		}
		if (d->pcidevs[i].con) {
			virtio_console_destroy(d->pcidevs[i].con);
			free(d->pcidevs[i].con);
		}
	}
	if (d->io)
		iothread_destroy(d->io);
	if (vm->console)
		chardev_close(vm->console);
	vm->console = NULL;
	free(d);
	vm->devs = NULL;
}

int vm_devices_console_wait_fd(struct vm *vm)
{
	if (!vm->console || vm->devs->uart_full)
		return -1;
	return chardev_input_fd(vm->console);
}

void vm_devices_console_input(struct vm *vm)
{
	struct vm_devices *d = vm->devs;
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
	n = chardev_read(vm->console, buf, MIN(room, sizeof(buf)));
	if (n > 0)
		uart8250_receive(&d->com1, buf, (size_t)n);
}

int vm_devices_quiesce(struct vm *vm)
{
	struct vm_devices *d = vm->devs;

	for (unsigned i = 0; i < d->npci; i++)
	{
		if (d->pcidevs[i].blk)
			virtio_blk_pause(d->pcidevs[i].blk);
		if (d->pcidevs[i].net)
			virtio_net_pause(d->pcidevs[i].net);
		if (d->pcidevs[i].con)
			virtio_console_pause(d->pcidevs[i].con);
	}
	return 0;
}

void vm_devices_unquiesce(struct vm *vm)
{
	struct vm_devices *d = vm->devs;

	for (unsigned i = 0; i < d->npci; i++)
	{
		if (d->pcidevs[i].blk)
			virtio_blk_resume(d->pcidevs[i].blk);
		if (d->pcidevs[i].net)
			virtio_net_resume(d->pcidevs[i].net);
		if (d->pcidevs[i].con)
			virtio_console_resume(d->pcidevs[i].con);
	}
}

json_t *vm_devices_stats(struct vm *vm)
{
	struct vm_devices *d = vm->devs;
	json_t *j = json_object();

	json_object_set_new(j, "com1",
			    json_pack("{s:I, s:I, s:I}", "tx_bytes",
				      (json_int_t)d->com1.tx_bytes, "rx_bytes",
				      (json_int_t)d->com1.rx_bytes, "overruns",
				      (json_int_t)d->com1.overruns));
	for (unsigned i = 0; i < d->npci; i++) {
		char key[48];

		snprintf(key, sizeof(key), "%s@%u:%u", d->pcidevs[i].cfg->emul,
			 d->pcidevs[i].cfg->slot, d->pcidevs[i].cfg->func);
		if (d->pcidevs[i].blk) {
			struct virtio_blk_stats s;

			virtio_blk_get_stats(d->pcidevs[i].blk, &s);
			json_object_set_new(
				j, key,
				json_pack("{s:I, s:I, s:I, s:I, s:I}", "requests",
					  (json_int_t)s.requests, "read_bytes",
					  (json_int_t)s.read_bytes, "write_bytes",
					  (json_int_t)s.write_bytes, "flushes",
					  (json_int_t)s.flushes, "errors",
					  (json_int_t)s.errors));
		}
		if (d->pcidevs[i].net) {
			struct virtio_net_stats s;

			virtio_net_get_stats(d->pcidevs[i].net, &s);
			json_object_set_new(
				j, key,
				json_pack("{s:I, s:I, s:I, s:I, s:I}",
					  "rx_packets", (json_int_t)s.rx_packets,
					  "rx_bytes", (json_int_t)s.rx_bytes,
					  "tx_packets", (json_int_t)s.tx_packets,
					  "tx_bytes", (json_int_t)s.tx_bytes,
					  "tx_errors", (json_int_t)s.tx_errors));
		}
		if (d->pcidevs[i].rng) {
			struct virtio_rng *rng = d->pcidevs[i].rng;
			uint64_t bytes;

			pthread_mutex_lock(&rng->lock);
			bytes = rng->bytes;
			pthread_mutex_unlock(&rng->lock);
			json_object_set_new(j, key,
					    json_pack("{s:I}", "bytes",
						      (json_int_t)bytes));
		}
		if (d->pcidevs[i].con) {
			struct virtio_console_stats s;
			struct chardev_stats cs;

			virtio_console_get_stats(d->pcidevs[i].con, &s);
			chardev_get_stats(d->pcidevs[i].con->cd, &cs);
			/* dropped: no room to hold it, or the back-end's own. */
			json_object_set_new(
				j, key,
				json_pack("{s:I, s:I, s:I, s:I, s:I}",
					  "rx_bytes", (json_int_t)s.rx_bytes,
					  "tx_bytes", (json_int_t)s.tx_bytes,
					  "tx_held", (json_int_t)s.tx_held,
					  "dropped",
					  (json_int_t)(s.tx_dropped + cs.dropped),
					  "clients", (json_int_t)cs.clients));
		}
	}
	return j;
}

int vm_devices_drain(struct vm *vm, char *err, size_t errlen)
{
	struct vm_devices *d = vm->devs;

	for (unsigned i = 0; i < d->npci; i++) {
		int ret;

		if (!d->pcidevs[i].blk)
			continue;
		ret = virtio_blk_drain(d->pcidevs[i].blk);
		if (ret) {
			snprintf(err, errlen, "draining %s@%u: %s",
				 d->pcidevs[i].cfg->emul, d->pcidevs[i].cfg->slot,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int snap_write_cb(void *ctx, const struct snap_desc *desc,
			 uint32_t instance, void *state)
{
	return snap_write_section(ctx, desc, instance, state);
}

int vm_devices_save(struct vm *vm, struct snap_writer *w, char *err,
		    size_t errlen)
{
	struct vm_devices *d = vm->devs;
	struct uart8250_state us;
	struct rtc_state rs;
	struct i8042_state ks;
	struct pm_state ps;
	int ret;

	uart8250_state_save(&d->com1, &us);
	rtc_state_save(&d->rtc, &rs);
	i8042_state_save(&d->kbd, &ks);
	pm_state_save(&d->pm, &ps);
	ret = snap_write_section(w, &uart8250_snap_desc, 0, &us);
	if (!ret)
		ret = snap_write_section(w, &rtc_snap_desc, 0, &rs);
	if (!ret)
		ret = snap_write_section(w, &i8042_snap_desc, 0, &ks);
	if (!ret)
		ret = snap_write_section(w, &pm_snap_desc, 0, &ps);
	/* PCI devices by their slot.func, so a config with gaps still maps. */
	for (unsigned i = 0; !ret && i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];
		uint32_t inst = pd->cfg->slot * 8 + pd->cfg->func;

		ret = virtio_pci_pre_save(pd->vp);
		if (!ret)
			ret = virtio_pci_snap_foreach(pd->vp, inst, snap_write_cb, w);
	}
	if (ret)
		snprintf(err, errlen, "saving device state: %s",
			 snap_writer_error(w)[0] ? snap_writer_error(w) :
						   strerror(-ret));
	return ret;
}

struct load_ctx {
	struct snap_reader *r;
	struct snap_err se;
};

static int snap_read_cb(void *ctx, const struct snap_desc *desc,
			uint32_t instance, void *state)
{
	struct load_ctx *c = ctx;

	return snap_read_section(c->r, desc, instance, state, &c->se);
}

int vm_devices_load(struct vm *vm, struct snap_reader *r, char *err,
		    size_t errlen)
{
	struct vm_devices *d = vm->devs;
	struct load_ctx c = { .r = r };
	struct uart8250_state us;
	struct rtc_state rs;
	struct i8042_state ks;
	struct pm_state ps;
	int ret;

	uart8250_state_save(&d->com1, &us);
	rtc_state_save(&d->rtc, &rs);
	i8042_state_save(&d->kbd, &ks);
	pm_state_save(&d->pm, &ps);
	ret = snap_read_section(r, &uart8250_snap_desc, 0, &us, &c.se);
	if (!ret)
		ret = snap_read_section(r, &rtc_snap_desc, 0, &rs, &c.se);
	if (!ret)
		ret = snap_read_section(r, &i8042_snap_desc, 0, &ks, &c.se);
	if (!ret)
		ret = snap_read_section(r, &pm_snap_desc, 0, &ps, &c.se);
	if (ret)
		goto fail_se;
	ret = uart8250_state_apply(&d->com1, &us);
	if (!ret)
		ret = rtc_state_apply(&d->rtc, &rs);
	if (!ret)
		ret = i8042_state_apply(&d->kbd, &ks);
	if (!ret)
		ret = pm_state_apply(&d->pm, &ps);
	if (ret) {
		snprintf(err, errlen, "%s: legacy device state out of range",
			 snap_reader_path(r));
		return ret;
	}
	for (unsigned i = 0; i < d->npci; i++) {
		struct pci_slot_dev *pd = &d->pcidevs[i];
		uint32_t inst = pd->cfg->slot * 8 + pd->cfg->func;
		bool loaded;

		/*
		 * Devices stay paused until the vCPUs' state is in KVM
		 * (vm_devices_unquiesce() at the end of the restore): an MSI
		 * raised before KVM_SET_LAPIC lands in the LAPIC's reset
		 * state and is overwritten, so the guest would never see it.
		 * The console's iothread must not fill its buffers meanwhile
		 * either.
		 */
		if (pd->blk)
			virtio_blk_pause(pd->blk);
		if (pd->net)
			virtio_net_pause(pd->net);
		if (pd->con)
			virtio_console_pause(pd->con);
		ret = virtio_pci_snap_foreach(pd->vp, inst, snap_read_cb, &c);
		loaded = !ret;
		if (loaded)
			ret = virtio_pci_post_load(pd->vp);
		if (!loaded)
			goto fail_se;
		if (ret) {
			snprintf(err, errlen, "%s: %s@%u: state rejected: %s",
				 snap_reader_path(r), pd->cfg->emul,
				 pd->cfg->slot, strerror(-ret));
			return ret;
		}
	}
	return 0;
fail_se:
	snprintf(err, errlen, "%s", c.se.msg[0] ? c.se.msg : strerror(-ret));
	return ret;
}

void vm_devices_rtc_resync(struct vm *vm, bool keep_clock)
{
	/* By default the RTC follows the host again; else it continues. */
	if (keep_clock)
		rtc_clock_continue(&vm->devs->rtc);
}
