/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Modern (virtio 1.x, spec section 4.1) PCI transport. One 64-bit memory
 * BAR (4) holds the common config, ISR, device config and notify areas;
 * BAR 1 holds the MSI-X table and PBA. A device model supplies a struct
 * virtio_dev_ops and gets virtqueues, feature negotiation, reset and
 * interrupt delivery (MSI-X, else INTx) from here.
 */
#ifndef KHYVE_VIRTIO_PCI_H
#define KHYVE_VIRTIO_PCI_H

#include <pthread.h>
#include <stdint.h>

#include "err.h"
#include "guest_mem.h"
#include "log.h"
#include "pci.h"
#include "snap_desc.h"
#include "virtqueue.h"

#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_MAX_QUEUES  16

#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG	  4

/* device_status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER	  2
#define VIRTIO_STATUS_DRIVER_OK	  4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

/* Vendor capability cfg_type values. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG	  3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG	  5

/* Layout of the virtio BAR. */
#define VIRTIO_PCI_BAR	       4
#define VIRTIO_PCI_MSIX_BAR    1
#define VIRTIO_PCI_COMMON_OFF  0x0000
#define VIRTIO_PCI_ISR_OFF     0x1000
#define VIRTIO_PCI_DEVICE_OFF  0x2000
#define VIRTIO_PCI_NOTIFY_OFF  0x3000
#define VIRTIO_PCI_BAR_SIZE    0x4000
#define VIRTIO_PCI_NOTIFY_MULT 4

/* Common configuration structure offsets. */
#define VIRTIO_PCI_COMMON_DFSELECT	0x00
#define VIRTIO_PCI_COMMON_DF		0x04
#define VIRTIO_PCI_COMMON_GFSELECT	0x08
#define VIRTIO_PCI_COMMON_GF		0x0c
#define VIRTIO_PCI_COMMON_MSIX		0x10
#define VIRTIO_PCI_COMMON_NUMQ		0x12
#define VIRTIO_PCI_COMMON_STATUS	0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT	0x16
#define VIRTIO_PCI_COMMON_Q_SIZE	0x18
#define VIRTIO_PCI_COMMON_Q_MSIX	0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE	0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF	0x1e
#define VIRTIO_PCI_COMMON_Q_DESCLO	0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI	0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO	0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI	0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO	0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI	0x34
#define VIRTIO_PCI_COMMON_SIZE		0x38

#define VIRTIO_PCI_ISR_QUEUE  1
#define VIRTIO_PCI_ISR_CONFIG 2

struct virtio_dev_ops {
	uint16_t device_id;  /* VIRTIO_ID_* */
	uint32_t class_code; /* PCI class << 8 | prog-if, e.g. 0x010000 */
	uint16_t num_queues;
	uint16_t queue_max_size;
	uint32_t config_size; /* bytes of device-specific config */
	/* Device config space; @off + @size <= config_size. */
	void (*config_read)(void *opaque, uint32_t off, void *data,
			    unsigned size);
	void (*config_write)(void *opaque, uint32_t off, const void *data,
			     unsigned size);
	/* FEATURES_OK: return 0 to accept @features, -errno to refuse. */
	int (*set_features)(void *opaque, uint64_t features);
	/* Driver kicked queue @q (from a vCPU thread; keep it short). */
	void (*queue_notify)(void *opaque, unsigned q);
	/* Stop using the queues and return to power-on state. */
	void (*reset)(void *opaque);
	/* Snapshot hooks, all optional (saved paused: dev_ops.h). */
	const struct snap_desc *snap;	   /* device-specific state ... */
	void *(*snap_state)(void *opaque); /* ... living here */
	int (*post_load)(void *opaque, struct err *err); /* why in @err */
};

/* Saveable transport state (queues are saved as "virtq" sections). */
struct virtio_pci_state {
	uint64_t driver_features;
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint16_t msix_config;
	uint16_t queue_select;
	uint16_t num_queues; /* checked on load */
	uint8_t status;
	uint8_t isr;
	uint8_t config_generation;
	uint8_t needs_reset;
};

extern const struct snap_desc virtio_pci_snap;

struct virtio_pci {
	struct pci_dev pci;
	struct virtio_pci_state st;
	struct virtq vqs[VIRTIO_PCI_MAX_QUEUES];
	const struct virtio_dev_ops *ops;
	void *opaque;
	uint64_t device_features; /* offered, transport bits included */
	const struct guest_mem *mem;
	uint8_t pci_cfg_cap;	   /* offset of VIRTIO_PCI_CAP_PCI_CFG */
	pthread_mutex_t lock;	   /* common config */
	pthread_mutex_t irq_lock;  /* ISR + INTx level */
	struct log_rl features_rl; /* "features refused" lines (lock) */
};

/*
 * Set up the PCI function (ids, caps, BARs, MSI-X with num_queues + 1
 * vectors delivered to @msi). @features are the device-specific bits;
 * VERSION_1, INDIRECT_DESC and EVENT_IDX are added here. Then place it
 * with pci_add_device(bus, slot, 0, &vp->pci).
 */
int virtio_pci_init(struct virtio_pci *vp, const char *name,
		    const struct guest_mem *mem,
		    const struct virtio_dev_ops *ops, void *opaque,
		    uint64_t features, const struct msi_sink *msi);
void virtio_pci_destroy(struct virtio_pci *vp);

/* Guest address the driver writes to kick @queue (for an ioeventfd). */
int virtio_pci_notify_addr(struct virtio_pci *vp, unsigned queue,
			   uint64_t *gpa);
/* Used buffers were added to @queue: interrupt if the driver wants one. */
int virtio_pci_notify_queue(struct virtio_pci *vp, unsigned queue);
/* Device config changed: bump the generation, config interrupt. */
int virtio_pci_config_changed(struct virtio_pci *vp);
/* Device-detected fatal error: DEVICE_NEEDS_RESET + config interrupt. */
void virtio_pci_set_needs_reset(struct virtio_pci *vp);
/* Negotiated feature bits (valid once FEATURES_OK is set). */
uint64_t virtio_pci_features(struct virtio_pci *vp);
uint8_t virtio_pci_status(struct virtio_pci *vp);

/*
 * Snapshot: visit every section of this device (pci_dev, virtio_pci,
 * each virtq, the device's own). Instances: @instance for all but the
 * queues, which use @instance * VIRTIO_PCI_MAX_QUEUES + queue.
 */
typedef int (*virtio_snap_fn)(void *ctx, const struct snap_desc *d,
			      uint32_t instance, void *state);
int virtio_pci_snap_foreach(struct virtio_pci *vp, uint32_t instance,
			    virtio_snap_fn fn, void *ctx);
/*
 * After loading all sections: re-map BARs and rings, kick queues. A
 * refusal says why in @err.
 */
int virtio_pci_post_load(struct virtio_pci *vp, struct err *err);

#endif
