/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio_rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"
#include "log.h"

static void rng_fill(struct virtio_rng *rng)
{
	struct virtq *vq = &rng->vp.vqs[0];
	struct virtq_elem *e = rng->elem;
	bool pushed = false;

	if (!(virtio_pci_status(&rng->vp) & VIRTIO_STATUS_DRIVER_OK))
		return;
	while (virtq_pop(vq, e) == 1) {
		uint32_t done = 0;

		/* Readable segments carry nothing for us; fill the rest. */
		for (unsigned i = e->n_out; i < e->n_out + e->n_in; i++) {
			uint8_t *p = e->iov[i].iov_base;
			size_t left = e->iov[i].iov_len;

			while (left) {
				ssize_t r = getrandom(p, left, 0);

				if (r < 0) {
					if (errno == EINTR)
						continue;
					log_warn("virtio-rng: getrandom: %s",
						 strerror(errno));
					goto push;
				}
				p += r;
				left -= (size_t)r;
				done += (uint32_t)r;
			}
		}
	push:
		if (virtq_push(vq, e, done))
			break;
		rng->bytes += done;
		pushed = true;
	}
	if (pushed)
		virtio_pci_notify_queue(&rng->vp, 0);
}

static void rng_queue_notify(void *opaque, unsigned q)
{
	struct virtio_rng *rng = opaque;

	pthread_mutex_lock(&rng->lock);
	rng_fill(rng);
	pthread_mutex_unlock(&rng->lock);
}

static void rng_reset(void *opaque)
{
	struct virtio_rng *rng = opaque;

	/* Wait out a fill running on another vCPU. */
	pthread_mutex_lock(&rng->lock);
	pthread_mutex_unlock(&rng->lock);
}

static const struct virtio_dev_ops rng_ops = {
	.device_id = VIRTIO_ID_RNG,
	.class_code = 0x00ff00, /* unclassified, as QEMU */
	.num_queues = 1,
	.queue_max_size = 64,
	.config_size = 0,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
};

int virtio_rng_init(struct virtio_rng *rng, const struct guest_mem *mem,
		    const struct msi_sink *msi)
{
	int ret;

	memset(rng, 0, sizeof(*rng));
	rng->elem = malloc(sizeof(*rng->elem));
	if (!rng->elem)
		return -ENOMEM;
	ret = -pthread_mutex_init(&rng->lock, NULL);
	if (ret)
		goto err_elem;
	ret = virtio_pci_init(&rng->vp, "virtio-rng", mem, &rng_ops, rng, 0,
			      msi);
	if (ret)
		goto err_lock;
	return 0;
err_lock:
	pthread_mutex_destroy(&rng->lock);
err_elem:
	free(rng->elem);
	rng->elem = NULL;
	return ret;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	virtio_pci_destroy(&rng->vp);
	pthread_mutex_destroy(&rng->lock);
	free(rng->elem);
	rng->elem = NULL;
}
