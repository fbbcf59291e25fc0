/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * PCI bus 0: configuration mechanism #1 (0xCF8/0xCFC), a host bridge at
 * 00:00.0, 256-byte config space per function with write masks, memory
 * BARs allocated in the 32-bit PCI hole and (un)mapped on the MMIO bus as
 * the guest programs them, INTx through a struct irq_line and MSI-X with
 * its table and PBA in a BAR of their own.
 *
 * VMM usage:
 *   pci_bus_init(&pci, &pio, &mmio, 0xC0000000, 0x3EC00000);
 *   pci_dev_init(&d, "virtio-blk", vendor, device, class);
 *   pci_dev_add_bar(&d, 4, 0x4000, PCI_BAR_MEM64, fn, opaque);
 *   pci_msix_init(&d, 1, nvec, &sink);
 *   pci_add_device(&pci, 3, 0, &d);        (allocates the BARs)
 *   pci_dev_set_intx(&d, &line);
 */
#ifndef KHYVE_PCI_H
#define KHYVE_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "log.h"
#include "irq.h"
#include "snap_desc.h"

#define PCI_CFG_SIZE	     256
#define PCI_MAX_SLOTS	     32
#define PCI_MAX_FUNCS	     8
#define PCI_NUM_BARS	     6
#define PCI_MSIX_MAX_VECTORS 64

#define PCI_CONFIG_ADDR_PORT 0xCF8
#define PCI_CONFIG_DATA_PORT 0xCFC

/* Config space offsets (PCI Local Bus 3.0, type 0 header). */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_REVISION_ID		0x08
#define PCI_CLASS_PROG		0x09
#define PCI_CLASS_DEVICE	0x0a
#define PCI_HEADER_TYPE		0x0e
#define PCI_BAR0		0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID	0x2e
#define PCI_CAPABILITY_LIST	0x34
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d

#define PCI_COMMAND_IO		 0x1
#define PCI_COMMAND_MEMORY	 0x2
#define PCI_COMMAND_MASTER	 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_INTERRUPT	 0x08
#define PCI_STATUS_CAP_LIST	 0x10

#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09

#define PCI_MSIX_FLAGS		    2 /* offset of Message Control in the capability */
#define PCI_MSIX_FLAGS_QSIZE	    0x07ff
#define PCI_MSIX_FLAGS_MASKALL	    0x4000
#define PCI_MSIX_FLAGS_ENABLE	    0x8000
#define PCI_MSIX_ENTRY_SIZE	    16
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1

/* BAR flags for pci_dev_add_bar(). */
#define PCI_BAR_MEM32	 0x0
#define PCI_BAR_MEM64	 0x4
#define PCI_BAR_PREFETCH 0x8

#define PCI_HOST_BRIDGE_VENDOR 0x8086
#define PCI_HOST_BRIDGE_DEVICE 0x29c0 /* Q35 MCH: Linux takes it as is */
#define PCI_CLASS_BRIDGE_HOST  0x0600

/* Where MSI messages go; the VMM ends it in KVM_SIGNAL_MSI or irqfd. */
struct msi_sink {
	int (*send)(void *opaque, uint64_t addr, uint32_t data);
	void *opaque;
};

/* Saveable state of one function. */
struct pci_dev_state {
	uint8_t cfg[PCI_CFG_SIZE];
	uint64_t bar_addr[PCI_NUM_BARS]; /* as programmed (mirrors cfg) */
	uint8_t msix_table[PCI_MSIX_MAX_VECTORS * PCI_MSIX_ENTRY_SIZE];
	uint8_t msix_pba[PCI_MSIX_MAX_VECTORS / 8];
	uint8_t msix_enabled; /* Message Control enable bit */
	uint8_t msix_masked;  /* Message Control function mask */
	uint8_t intx_level;   /* device's INTx input (before disable bit) */
};

extern const struct snap_desc pci_dev_snap;

struct pci_bar {
	uint64_t size; /* power of two, 0 = not implemented */
	uint32_t flags;
	bus_io_fn fn;
	void *opaque;
	bool mapped;	      /* currently registered on the MMIO bus ... */
	uint64_t mapped_base; /* ... at this address */
	bool dark;	      /* decoding at dark_base, but that overlapped */
	uint64_t dark_base;   /* another BAR: mapped once it is free */
};

struct pci_bus;

struct pci_dev {
	const char *name;
	struct pci_dev_state st;
	uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may change */
	uint8_t w1cmask[PCI_CFG_SIZE]; /* bits cleared by writing 1 */
	struct pci_bar bars[PCI_NUM_BARS];
	struct pci_bus *bus;
	uint8_t slot, func;
	uint8_t cap_next; /* offset for the next capability */
	uint8_t cap_last; /* offset of the last one, 0 if none */

	/* MSI-X, when pci_msix_init() was called. */
	uint8_t msix_cap; /* config offset of the capability, 0 if none */
	uint8_t msix_bar;
	uint16_t msix_nvec;
	uint32_t msix_table_off, msix_pba_off;
	struct msi_sink msi;

	struct irq_line intx;

	/* Optional device hooks on config accesses (after generic handling). */
	void (*cfg_read_hook)(void *opaque, unsigned off, uint8_t *cfg,
			      unsigned size);
	void (*cfg_write_hook)(void *opaque, unsigned off, unsigned size);
	void *hook_opaque;
	/*
	 * Called (without any device lock held) after BARs were mapped,
	 * moved or unmapped, e.g. to re-bind KVM ioeventfds.
	 */
	void (*bars_changed)(void *opaque, struct pci_dev *dev);
	void *bars_changed_opaque;

	pthread_mutex_t lock;	  /* st, config space, MSI-X */
	pthread_mutex_t map_lock; /* serialises BAR (un)mapping */
	struct log_rl map_rl;	  /* "BAR not mapped" lines (map_lock) */
};

/*
 * The bus's own guest state: the config-address latch. A guest writes
 * 0xCF8 and then reads or writes 0xCFC, two exits a checkpoint can fall
 * between (Linux holds a spinlock there, which does not stop the vCPU
 * being parked); restored without it, the access after the restore
 * would reach the host bridge's register 0 instead.
 */
struct pci_bus_state {
	uint32_t config_addr;
};

extern const struct snap_desc pci_bus_snap;

struct pci_bus {
	struct bus *pio, *mmio;
	uint32_t config_addr; /* last value written to 0xCF8 */
	struct pci_dev *devs[PCI_MAX_SLOTS][PCI_MAX_FUNCS];
	struct pci_dev host_bridge;
	uint64_t mmio_base, mmio_end, mmio_next; /* BAR allocator window */
	pthread_mutex_t lock;
	bool pio_registered;
};

/*
 * Register 0xCF8-0xCFF on @pio and add the host bridge. BARs are
 * allocated in [mmio_base, mmio_base + mmio_size) and mapped on @mmio.
 */
int pci_bus_init(struct pci_bus *bus, struct bus *pio, struct bus *mmio,
		 uint64_t mmio_base, uint64_t mmio_size);
void pci_bus_destroy(struct pci_bus *bus);
void pci_bus_state_save(struct pci_bus *bus, struct pci_bus_state *st);
void pci_bus_state_apply(struct pci_bus *bus, const struct pci_bus_state *st);
/*
 * Config mechanism #1 at 0xcf8-0xcff. pci_bus_init() registers it when
 * given a PIO bus; a VMM that shares the range (0xcf9 is the PC reset
 * control register) passes NULL and dispatches here itself.
 */
int pci_config_io(void *opaque, uint64_t off, void *data, unsigned size,
		  bool is_write);

/* Identity and a type 0 header with write masks; no BARs, no caps. */
int pci_dev_init(struct pci_dev *dev, const char *name, uint16_t vendor,
		 uint16_t device, uint32_t class_rev, uint16_t subsys_vendor,
		 uint16_t subsys_id);
void pci_dev_destroy(struct pci_dev *dev);
/* Declare memory BAR @idx (a 64-bit one also takes @idx + 1). */
int pci_dev_add_bar(struct pci_dev *dev, unsigned idx, uint64_t size,
		    uint32_t flags, bus_io_fn fn, void *opaque);
/*
 * Append a capability of @len bytes (id and next are filled in) and
 * return its config offset, or -ENOSPC. Bytes after the header are
 * read-only unless the caller opens them up in dev->wmask.
 */
int pci_dev_add_cap(struct pci_dev *dev, uint8_t id, const void *body,
		    unsigned len);
/* MSI-X with @nvec vectors, table at 0 and PBA at 2 KiB of BAR @bar. */
int pci_msix_init(struct pci_dev *dev, unsigned bar, unsigned nvec,
		  const struct msi_sink *sink);
/*
 * Place @dev at 00:@slot.@func and allocate its BARs. -EEXIST if taken,
 * -ENOSPC if the MMIO window is full.
 */
int pci_add_device(struct pci_bus *bus, unsigned slot, unsigned func,
		   struct pci_dev *dev);
/* Route INTA to @line; the line register shows its GSI. */
void pci_dev_set_intx(struct pci_dev *dev, const struct irq_line *line);

/* Config space access as the guest sees it (@off + @size <= 256). */
uint32_t pci_cfg_read(struct pci_dev *dev, unsigned off, unsigned size);
void pci_cfg_write(struct pci_dev *dev, unsigned off, uint32_t val,
		   unsigned size);

/* Guest-visible address of BAR @idx, 0 if not programmed. */
uint64_t pci_bar_addr(struct pci_dev *dev, unsigned idx);
bool pci_bar_mapped(struct pci_dev *dev, unsigned idx);

/* INTx level from the device (gated by the command register). */
int pci_set_irq(struct pci_dev *dev, int level);
bool pci_msix_enabled(struct pci_dev *dev);
/*
 * Signal MSI-X @vector: sent now, or its pending bit set while masked.
 * -EINVAL for a vector out of range, -ENOTSUP if MSI-X is disabled.
 */
int pci_msix_notify(struct pci_dev *dev, unsigned vector);

/* After loading dev->st from a snapshot: re-map BARs, re-drive INTx. */
int pci_dev_post_load(struct pci_dev *dev);

#endif
