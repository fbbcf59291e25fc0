/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-rng (entropy device): fills the driver's writable buffers with
 * getrandom() bytes. Requests are tiny (Linux asks for 64 bytes or so),
 * so they are served directly in the queue_notify op, on the vCPU thread
 * that kicked; the limits below keep a hostile chain from holding it.
 */
#ifndef KHYVE_VIRTIO_RNG_H
#define KHYVE_VIRTIO_RNG_H

#include <pthread.h>
#include <stdint.h>

#include "dev_ops.h"
#include "virtio_pci.h"

/* Bytes served per request (the used length may be short: virtio 5.4). */
#define VIRTIO_RNG_REQ_MAX (64 * 1024)
/* Bytes served per kick; past them each request gets VIRTIO_RNG_REQ_MIN. */
#define VIRTIO_RNG_KICK_MAX (256 * 1024)
#define VIRTIO_RNG_REQ_MIN  16

struct virtio_rng {
	struct virtio_pci vp;
	struct virtq_elem *elem; /* scratch, under lock */
	pthread_mutex_t lock;	 /* one vCPU at a time walks the queue */
	uint64_t bytes;		 /* handed to the guest so far */
	bool paused;		 /* kicks wait for resume (under lock) */
	bool pending;		 /* a kick arrived while paused */
};

int virtio_rng_init(struct virtio_rng *rng, const struct guest_mem *mem,
		    const struct msi_sink *msi);
void virtio_rng_destroy(struct virtio_rng *rng);

/* -s SLOT,virtio-rng */
extern const struct dev_ops virtio_rng_dev_ops;

#endif
