/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-net on a TAP device (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with a
 * 12-byte header, so guest frames pass through unchanged). One rx and one
 * tx queue, no offloads, no mergeable rx buffers; served on an iothread.
 */
#ifndef KHYVE_VIRTIO_NET_H
#define KHYVE_VIRTIO_NET_H

#include <net/if.h>
#include <pthread.h>
#include <stdint.h>

#include "dev_ops.h"
#include "iothread.h"
#include "snap_desc.h"
#include "virtio_pci.h"

#define VIRTIO_NET_F_MAC       5
#define VIRTIO_NET_F_STATUS    16
#define VIRTIO_NET_S_LINK_UP   1
#define VIRTIO_NET_HDR_LEN     12 /* virtio_net_hdr with num_buffers (1.x) */
#define VIRTIO_NET_CONFIG_SIZE 8
#define VIRTIO_NET_RXQ	       0
#define VIRTIO_NET_TXQ	       1

struct virtio_net_opts {
	const char *ifname;  /* TAP to attach/create; NULL = kernel picks */
	const uint8_t *mac;  /* 6 bytes; NULL = random, locally administered */
	int tap_fd;	     /* >= 0: use this fd instead (tests, fd passing) */
	uint16_t queue_size; /* 0 = 256 */
	bool start_paused;   /* restore: virtio_net_resume() starts it */
	/* How long tx waits for the next frame before it sleeps (and the
	 * driver must kick again); -1 = VIRTIO_NET_POLL_US, 0 = never. */
	int poll_us;
	bool tx_vcpu; /* send on the kicking vCPU's thread (tx=vcpu) */
};

#define VIRTIO_NET_POLL_US     50
#define VIRTIO_NET_POLL_US_MAX 1000

struct virtio_net_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t tx_errors;
	uint64_t tx_kicks, rx_kicks; /* notifications from the driver */
	uint64_t tx_polled;	     /* frames found by polling, no kick */
	uint64_t tx_self_kicks;	     /* a burst yielded to the loop */
	uint64_t tx_inline;	     /* kicks served on the vCPU thread */
};

/* Saveable: the MAC the guest saw (a random one must survive restore). */
struct virtio_net_state {
	uint8_t mac[6];
};

extern const struct snap_desc virtio_net_snap;

struct virtio_net {
	struct virtio_pci vp;
	struct virtio_dev_ops ops; /* vp.ops points here */
	int fd;
	bool own_fd, fd_registered;
	char ifname[IFNAMSIZ];
	struct virtio_net_state st;
	/* The MAC -s gave (mac=): a restore reports it, not the saved one. */
	bool mac_given;
	uint8_t mac_conf[6];
	struct iothread *iot;
	bool own_iot;
	struct iothread_kick *rx_kick, *tx_kick;
	struct virtq_elem *elem; /* scratch, under lock */
	pthread_mutex_t lock;	 /* queue processing vs reset */
	bool paused;		 /* under lock: no queue or TAP processing */
	uint64_t poll_ns;	 /* tx_poll's window; 0 = no polling */
	uint64_t tx_slept_ns;	 /* when tx last found the ring empty */
	bool tx_poll_on;	 /* frames come densely enough to poll */
	bool tx_vcpu;		 /* tx=vcpu: kicks served inline */
	struct virtio_net_stats stats;
};

/*
 * Open (or adopt) the TAP and set up the PCI function; @iot may be NULL.
 * Place it with pci_add_device(bus, slot, 0, &net->vp.pci). A TAP that
 * cannot be used is explained in @err (may be NULL), not logged.
 */
int virtio_net_init(struct virtio_net *net, const struct virtio_net_opts *o,
		    const struct guest_mem *mem, struct iothread *iot,
		    const struct msi_sink *msi, struct err *err);
void virtio_net_destroy(struct virtio_net *net);
void virtio_net_get_stats(struct virtio_net *net, struct virtio_net_stats *s);
/*
 * Stop touching guest memory and the TAP (a snapshot is being saved or
 * loaded); returns once a handler in flight has finished. Resume serves
 * whatever came meanwhile.
 */
void virtio_net_pause(struct virtio_net *net);
void virtio_net_resume(struct virtio_net *net);
/* Eventfd kicking queue @q (for a KVM ioeventfd), or -EINVAL. */
int virtio_net_kick_fd(struct virtio_net *net, unsigned q);

/* -s SLOT,virtio-net,TAPNAME[,mac=xx:xx:xx:xx:xx:xx][,poll_us=N] */
extern const struct dev_ops virtio_net_dev_ops;

#endif
