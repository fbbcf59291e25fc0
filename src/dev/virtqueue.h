/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Split virtqueues (virtio 1.x section 2.7), device side. Rings are only
 * reached through guest_mem_ptr(); every index and descriptor the guest
 * controls is checked, and a malformed queue marks the device broken
 * (the transport turns that into DEVICE_NEEDS_RESET) instead of trusting
 * anything.
 *
 * One thread at a time walks a given queue (the device's worker).
 */
#ifndef KHYVE_VIRTQUEUE_H
#define KHYVE_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest_mem.h"
#include "snap_desc.h"

#define VIRTQ_MAX_SIZE 32768
/* Segments one chain may map (as QEMU's VIRTQUEUE_MAX_SIZE). */
#define VIRTQ_MAX_SEGS 1024

#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_USED_F_NO_NOTIFY	   1
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX	    29
#define VIRTIO_F_VERSION_1	    32

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* Saveable queue state. */
struct virtq_state {
	uint64_t desc, avail, used; /* guest physical ring addresses */
	uint16_t size;
	uint16_t msix_vector;
	uint16_t last_avail_idx; /* next avail entry the device will take */
	uint16_t used_idx;	 /* next used entry the device will write */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	uint8_t signalled_used_valid;
	uint8_t ready;
	uint8_t broken; /* a guest error was seen; no more processing */
};

extern const struct snap_desc virtq_snap;

struct virtq {
	struct virtq_state st;
	const struct guest_mem *mem;
	uint16_t max_size;
	bool event_idx, indirect; /* negotiated ring features */
	/*
	 * The device asked for no kicks (virtq_set_notify(false)): with
	 * EVENT_IDX, pops leave avail_event where it was. Not state: the
	 * device turns kicks back on before it stops processing.
	 */
	bool notify_off;
	unsigned index; /* for messages */
	/* Called once when the guest breaks the queue (NEEDS_RESET). */
	void (*on_error)(void *opaque, struct virtq *vq);
	void *err_opaque;
	/* Host mappings of the rings, set at enable/post-load. */
	uint8_t *desc_hva, *avail_hva, *used_hva;
	uint64_t log_last_ns; /* rate limit for guest-error messages */
	unsigned log_suppressed;
};

/* A popped chain: readable segments first (out), then writable (in). */
struct virtq_elem {
	uint16_t head;
	unsigned n_out, n_in;
	uint64_t out_len, in_len;
	struct iovec iov[VIRTQ_MAX_SEGS];
};

void virtq_init(struct virtq *vq, const struct guest_mem *mem, unsigned index,
		uint16_t max_size);
/* Back to the power-on state (size = max, not ready, vector none). */
void virtq_reset(struct virtq *vq);
/* Apply negotiated features (VIRTIO_RING_F_*) before enabling. */
void virtq_set_features(struct virtq *vq, uint64_t features);
/*
 * Driver wrote queue_enable = 1: check size and ring placement.
 * -EINVAL (and nothing enabled) if the guest's setup is invalid.
 */
int virtq_enable(struct virtq *vq);
/* Re-derive ring mappings after st was loaded from a snapshot. */
int virtq_post_load(struct virtq *vq);

/*
 * Take the next available chain into @elem. Returns 1 with a chain, 0
 * if the ring is empty, -EIO if the guest broke the queue (it is then
 * marked broken and on_error fired), -EINVAL if not ready.
 */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem);
/* Return @elem with @len bytes written into its writable segments. */
int virtq_push(struct virtq *vq, const struct virtq_elem *elem, uint32_t len);
/* Put @elem back so the next pop returns it again. */
void virtq_unpop(struct virtq *vq);
/* After pushes: does the driver want an interrupt now? */
bool virtq_should_notify(struct virtq *vq);
/*
 * Ask the driver for (or to stop) available-buffer notifications. After
 * turning them back on, look at the ring again (virtq_has_work): the
 * driver may have added a buffer without a kick just before.
 */
void virtq_set_notify(struct virtq *vq, bool enable);
/* Anything to pop? (false when broken or not ready) */
bool virtq_has_work(struct virtq *vq);
/* Mark broken (device-detected error) and fire on_error once. */
void virtq_fail(struct virtq *vq, const char *why);

/* Copy between an iovec list (from @off) and a flat buffer; bytes moved. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf,
		  size_t len);
size_t buf_to_iov(const struct iovec *iov, unsigned n, size_t off,
		  const void *buf, size_t len);

#endif
