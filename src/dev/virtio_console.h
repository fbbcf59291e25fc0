/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-console with a single port (no VIRTIO_CONSOLE_F_MULTIPORT):
 * receiveq 0 carries host input to the guest, transmitq 1 guest output to
 * a chardev back-end (stdio, file, listening UNIX socket, null). Served on
 * an iothread, never on a vCPU.
 *
 * Host input is read only while it fits in a bounded buffer and waits
 * there until the driver posts receive buffers; the rest stays in the
 * back-end (socket buffer, pipe). Guest output goes straight to the
 * back-end; while a socket back-end has no client it is held (bounded)
 * for the next one, beyond that it is dropped and counted. Both buffers
 * are part of the snapshot.
 */
#ifndef KHYVE_VIRTIO_CONSOLE_H
#define KHYVE_VIRTIO_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "chardev.h"
#include "dev_ops.h"
#include "iothread.h"
#include "snap_desc.h"
#include "virtio_pci.h"

#define VIRTIO_CONSOLE_F_SIZE	     0
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2
#define VIRTIO_CONSOLE_CONFIG_SIZE   12 /* cols, rows, max_nr_ports, emerg_wr */
#define VIRTIO_CONSOLE_RXQ	     0
#define VIRTIO_CONSOLE_TXQ	     1
#define VIRTIO_CONSOLE_IN_MAX	     4096 /* host input held for the guest */
#define VIRTIO_CONSOLE_OUT_MAX	     4096 /* output held for a socket client */
/* Guest output taken from one transmit chain (Linux sends <= 1 MiB). */
#define VIRTIO_CONSOLE_TX_CHAIN_MAX (1024 * 1024)
/* Output per iothread run; past it the transmitq is kicked again. */
#define VIRTIO_CONSOLE_TX_KICK_MAX (4 * 1024 * 1024)

struct virtio_console_opts {
	struct chardev *cd;  /* back-end; the device owns it from init on */
	uint16_t cols, rows; /* both non-zero: offer VIRTIO_CONSOLE_F_SIZE */
	uint16_t queue_size; /* 0 = 64 */
	/*
	 * Start paused, input not read: for a restore, where bytes read
	 * before the snapshot's state is loaded would be overwritten by it.
	 * virtio_console_resume() starts it.
	 */
	bool start_paused;
};

struct virtio_console_stats {
	uint64_t rx_bytes;   /* host input delivered into guest buffers */
	uint64_t tx_bytes;   /* guest output taken from the transmitq */
	uint64_t tx_held;    /* of those, queued for a socket client */
	uint64_t tx_dropped; /* lost: hold buffer full or past a chain's
				VIRTIO_CONSOLE_TX_CHAIN_MAX (back-end adds
				its own) */
};

/* Saveable: bytes in flight between the guest and the back-end. */
struct virtio_console_state {
	uint32_t in_len;  /* host input not yet in a receive buffer */
	uint32_t out_len; /* guest output not yet written (no client) */
	uint8_t in_buf[VIRTIO_CONSOLE_IN_MAX];
	uint8_t out_buf[VIRTIO_CONSOLE_OUT_MAX];
};

extern const struct snap_desc virtio_console_snap;

struct virtio_console {
	struct virtio_pci vp;
	struct virtio_dev_ops ops; /* vp.ops points here */
	struct chardev *cd;
	int in_fd; /* chardev_input_fd(), -1 if none */
	uint16_t cols, rows;
	struct virtio_console_state st; /* under lock */
	struct iothread *iot;
	bool own_iot;
	struct iothread_kick *rx_kick, *tx_kick;
	/* Input watch state; changed only on the iothread (or while parked). */
	bool in_watched, in_eof;
	bool paused; /* snapshot in progress: touch neither queues nor st */
	struct virtq_elem *elem; /* scratch, under lock */
	pthread_mutex_t lock;	 /* queues and st vs reset, pause, config */
	struct virtio_console_stats stats;
};

/*
 * Set up the PCI function around @o->cd (closed on failure too); @iot may
 * be NULL (own thread). Place it with pci_add_device().
 */
int virtio_console_init(struct virtio_console *con,
			const struct virtio_console_opts *o,
			const struct guest_mem *mem, struct iothread *iot,
			const struct msi_sink *msi);
void virtio_console_destroy(struct virtio_console *con);
void virtio_console_get_stats(struct virtio_console *con,
			      struct virtio_console_stats *s);
/* Eventfd kicking queue @q (for a KVM ioeventfd), or -EINVAL. */
int virtio_console_kick_fd(struct virtio_console *con, unsigned q);
/*
 * Snapshot bracket: after pause returns no handler touches the queues or
 * st (save or load them); resume picks up whatever arrived meanwhile.
 */
void virtio_console_pause(struct virtio_console *con);
void virtio_console_resume(struct virtio_console *con);

/* -s SLOT,virtio-console,BACKEND[,cols=N,rows=N] */
extern const struct dev_ops virtio_console_dev_ops;

#endif
