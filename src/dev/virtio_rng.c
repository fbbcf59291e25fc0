/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio_rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"
#include "log.h"

/* Fill up to @want bytes of @e's writable segments; returns how many. */
static size_t fill_chain(const struct virtq_elem *e, size_t want)
{
	size_t done = 0;

	/* Readable segments carry nothing for us; fill the rest. */
	for (unsigned i = e->n_out; i < e->n_out + e->n_in && done < want;
	     i++) {
		uint8_t *p = e->iov[i].iov_base;
		size_t left = MIN(e->iov[i].iov_len, want - done);

		while (left) {
			ssize_t r = getrandom(p, left, 0);

			if (r < 0) {
				if (errno == EINTR)
					continue;
				log_warn("virtio-rng: getrandom: %s",
					 strerror(errno));
				return done;
			}
			p += r;
			left -= (size_t)r;
			done += (size_t)r;
		}
	}
	return done;
}

/*
 * Runs on the vCPU thread that kicked, so it is bounded: a chain may span
 * all of guest RAM (64 segments of it took 10 s and its 32-bit length
 * wrapped to 0). A request gets at most VIRTIO_RNG_REQ_MAX bytes, a kick
 * VIRTIO_RNG_KICK_MAX, then each further request VIRTIO_RNG_REQ_MIN;
 * virtio lets the device use less than the whole buffer.
 */
static void rng_fill(struct virtio_rng *rng)
{
	struct virtq *vq = &rng->vp.vqs[0];
	struct virtq_elem *e = rng->elem;
	size_t budget = VIRTIO_RNG_KICK_MAX;
	unsigned chains = 0;
	bool pushed = false;

	if (!(virtio_pci_status(&rng->vp) & VIRTIO_STATUS_DRIVER_OK))
		return;
	for (;;) {
		size_t want, done;

		/*
		 * At most a ring's worth per kick: more means the driver
		 * refills as we go. Asking for a kick at its current index
		 * makes its next addition bring us back for the rest.
		 */
		if (chains++ == vq->st.size) {
			virtq_set_notify(vq, true);
			break;
		}
		if (virtq_pop(vq, e) != 1)
			break;
		want = MIN((size_t)e->in_len, (size_t)VIRTIO_RNG_REQ_MAX);
		want = MIN(want, MAX(budget, (size_t)VIRTIO_RNG_REQ_MIN));
		done = fill_chain(e, want);
		budget -= MIN(budget, done);
		if (virtq_push(vq, e, (uint32_t)done))
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
	if (rng->paused)
		rng->pending = true;
	else
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

/* ---- the device's life cycle (dev_ops.h) ---- */

static int rng_create(const char *conf, const struct dev_env *env,
		      struct dev_instance *out, struct err *err)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int ret;

	(void)conf; /* no options */
	ret = rng ? virtio_rng_init(rng, env->mem, env->msi) : -ENOMEM;
	if (ret) {
		err_set(err, ret, "-s %u,virtio-rng: %s", env->slot,
			strerror(-ret));
		free(rng);
		return ret;
	}
	rng->paused = env->start_paused;
	out->dev = rng;
	out->vp = &rng->vp;
	return 0;
}

/*
 * Kicks normally come from the vCPU that is then busy serving them, so
 * parked vCPUs already stop the device; the pause is for the one kick
 * that comes from elsewhere: a restore's post_load re-kicks every ready
 * queue, and serving that before the vCPUs' LAPIC state is loaded would
 * raise an interrupt that KVM_SET_LAPIC then wipes (a guest that queued
 * a request just before the snapshot would wait for it forever).
 */
static int rng_pause(void *dev)
{
	struct virtio_rng *rng = dev;

	pthread_mutex_lock(&rng->lock);
	rng->paused = true;
	pthread_mutex_unlock(&rng->lock);
	return 0;
}

static void rng_resume(void *dev)
{
	struct virtio_rng *rng = dev;

	pthread_mutex_lock(&rng->lock);
	rng->paused = false;
	if (rng->pending) {
		rng->pending = false;
		rng_fill(rng);
	}
	pthread_mutex_unlock(&rng->lock);
}

static void rng_destroy(void *dev)
{
	virtio_rng_destroy(dev);
	free(dev);
}

static unsigned rng_stats(void *dev, struct dev_stat *out)
{
	struct virtio_rng *rng = dev;

	pthread_mutex_lock(&rng->lock);
	out[0] = (struct dev_stat){"bytes", rng->bytes};
	pthread_mutex_unlock(&rng->lock);
	return 1;
}

static int rng_snap_foreach(void *dev, uint32_t instance, virtio_snap_fn fn,
			    void *ctx)
{
	return virtio_pci_snap_foreach(&((struct virtio_rng *)dev)->vp,
				       instance, fn, ctx);
}

static int rng_post_load(void *dev, struct err *err)
{
	return virtio_pci_post_load(&((struct virtio_rng *)dev)->vp, err);
}

/* No kick eventfd: requests are served within the vCPU exit that kicked. */
const struct dev_ops virtio_rng_dev_ops = {
	.name = "virtio-rng",
	.help = "virtio-rng: entropy from the host's getrandom()",
	.create = rng_create,
	.destroy = rng_destroy,
	.pause = rng_pause,
	.resume = rng_resume,
	.stats = rng_stats,
	.snap_foreach = rng_snap_foreach,
	.post_load = rng_post_load,
};
