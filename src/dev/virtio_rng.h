/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-rng (entropy device): fills the driver's writable buffers with
 * getrandom() bytes. Requests are tiny, so they are served directly in
 * the queue_notify op.
 */
#ifndef KHYVE_VIRTIO_RNG_H
#define KHYVE_VIRTIO_RNG_H

#include <pthread.h>
#include <stdint.h>

#include "virtio_pci.h"

struct virtio_rng {
	struct virtio_pci vp;
	struct virtq_elem *elem; /* scratch, under lock */
	pthread_mutex_t lock;	 /* one vCPU at a time walks the queue */
	uint64_t bytes;		 /* handed to the guest so far */
};

int virtio_rng_init(struct virtio_rng *rng, const struct guest_mem *mem,
		    const struct msi_sink *msi);
void virtio_rng_destroy(struct virtio_rng *rng);

#endif
