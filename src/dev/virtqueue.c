/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtqueue.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "log.h"

static const struct snap_field virtq_fields[] = {
	SNAP_U64(struct virtq_state, desc, 1),
	SNAP_U64(struct virtq_state, avail, 1),
	SNAP_U64(struct virtq_state, used, 1),
	SNAP_U16_MAX(struct virtq_state, size, VIRTQ_MAX_SIZE, 1),
	SNAP_U16(struct virtq_state, msix_vector, 1),
	SNAP_U16(struct virtq_state, last_avail_idx, 1),
	SNAP_U16(struct virtq_state, used_idx, 1),
	SNAP_U16(struct virtq_state, signalled_used, 1),
	SNAP_BOOL(struct virtq_state, signalled_used_valid, 1),
	SNAP_BOOL(struct virtq_state, ready, 1),
	SNAP_BOOL(struct virtq_state, broken, 1),
};

const struct snap_desc virtq_snap =
	SNAP_DESC("virtq", 1, 1, struct virtq_state, virtq_fields);

#define DESC_SIZE 16

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One line per second per queue at most: a guest must not flood the log. */
static void __attribute__((format(printf, 2, 3)))
vq_guest_err(struct virtq *vq, const char *fmt, ...)
{
	uint64_t t = now_ns();
	char msg[160];
	va_list ap;

	if (vq->log_last_ns && t - vq->log_last_ns < 1000000000ULL) {
		vq->log_suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("virtq %u: guest error: %s (%u similar suppressed)", vq->index,
		 msg, vq->log_suppressed);
	vq->log_last_ns = t;
	vq->log_suppressed = 0;
}

void virtq_fail(struct virtq *vq, const char *why)
{
	if (vq->st.broken)
		return;
	vq_guest_err(vq, "%s", why);
	vq->st.broken = 1;
	if (vq->on_error)
		vq->on_error(vq->err_opaque, vq);
}

void virtq_init(struct virtq *vq, const struct guest_mem *mem, unsigned index,
		uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->index = index;
	vq->max_size = max_size;
	virtq_reset(vq);
}

void virtq_reset(struct virtq *vq)
{
	memset(&vq->st, 0, sizeof(vq->st));
	vq->st.size = vq->max_size;
	vq->st.msix_vector = VIRTIO_MSI_NO_VECTOR;
	vq->desc_hva = vq->avail_hva = vq->used_hva = NULL;
	vq->event_idx = vq->indirect = vq->notify_off = false;
}

void virtq_set_features(struct virtq *vq, uint64_t features)
{
	vq->event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vq->indirect = features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
}

static int map_rings(struct virtq *vq)
{
	uint64_t n = vq->st.size;

	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)) || n > vq->max_size)
		return -EINVAL;
	/* Alignment from the spec's split-ring table; also keeps u16/u32
	 * ring words naturally aligned for atomic access. */
	if ((vq->st.desc & 15) || (vq->st.avail & 1) || (vq->st.used & 3))
		return -EINVAL;
	vq->desc_hva = guest_mem_ptr(vq->mem, vq->st.desc, n * DESC_SIZE);
	vq->avail_hva = guest_mem_ptr(vq->mem, vq->st.avail, 6 + 2 * n);
	vq->used_hva = guest_mem_ptr(vq->mem, vq->st.used, 6 + 8 * n);
	if (!vq->desc_hva || !vq->avail_hva || !vq->used_hva) {
		vq->desc_hva = vq->avail_hva = vq->used_hva = NULL;
		return -EFAULT;
	}
	return 0;
}

int virtq_enable(struct virtq *vq)
{
	int ret = map_rings(vq);

	if (ret) {
		vq_guest_err(vq, "bad queue setup (size %u desc 0x%llx)",
			     vq->st.size, (unsigned long long)vq->st.desc);
		return -EINVAL;
	}
	vq->st.ready = 1;
	return 0;
}

int virtq_post_load(struct virtq *vq)
{
	vq->desc_hva = vq->avail_hva = vq->used_hva = NULL;
	if (!vq->st.ready)
		return 0;
	return map_rings(vq) ? -EINVAL : 0;
}

static uint16_t avail_idx(const struct virtq *vq)
{
	return __atomic_load_n((uint16_t *)(vq->avail_hva + 2),
			       __ATOMIC_ACQUIRE);
}

static uint16_t avail_flags(const struct virtq *vq)
{
	return __atomic_load_n((uint16_t *)vq->avail_hva, __ATOMIC_ACQUIRE);
}

static uint16_t used_event(const struct virtq *vq)
{
	return __atomic_load_n(
		(uint16_t *)(vq->avail_hva + 4 + 2 * vq->st.size),
		__ATOMIC_ACQUIRE);
}

/* Ring words the device writes are marked for a live checkpoint too. */
static void set_avail_event(struct virtq *vq, uint16_t v)
{
	__atomic_store_n((uint16_t *)(vq->used_hva + 4 + 8 * vq->st.size), v,
			 __ATOMIC_RELEASE);
	guest_mem_mark_dirty(vq->mem, vq->st.used + 4 + 8 * vq->st.size, 2);
}

bool virtq_has_work(struct virtq *vq)
{
	if (!vq->st.ready || vq->st.broken || !vq->avail_hva)
		return false;
	return avail_idx(vq) != vq->st.last_avail_idx;
}

static int add_seg(struct virtq *vq, struct virtq_elem *e, uint64_t addr,
		   uint32_t len, bool write)
{
	void *p;
	unsigned n = e->n_out + e->n_in;

	if (!write && e->n_in) {
		virtq_fail(vq, "readable descriptor after a writable one");
		return -EIO;
	}
	if (n >= VIRTQ_MAX_SEGS) {
		virtq_fail(vq, "descriptor chain has too many segments");
		return -EIO;
	}
	p = guest_mem_ptr(vq->mem, addr, len);
	if (!p) {
		virtq_fail(vq, "descriptor buffer outside guest RAM");
		return -EIO;
	}
	e->iov[n].iov_base = p;
	e->iov[n].iov_len = len;
	if (write) {
		e->n_in++;
		e->in_len += len;
	} else {
		e->n_out++;
		e->out_len += len;
	}
	return 0;
}

/* Walk the chain starting at descriptor @head of the ring's table. */
static int walk_chain(struct virtq *vq, uint16_t head, struct virtq_elem *e)
{
	const uint8_t *table = vq->desc_hva;
	unsigned max = vq->st.size, i = head, count = 0;
	bool indirect = false;

	for (;;) {
		const uint8_t *d = table + (size_t)i * DESC_SIZE;
		uint64_t addr = get_le64(d);
		uint32_t len = get_le32(d + 8);
		uint16_t flags = get_le16(d + 12), next = get_le16(d + 14);
		int ret;

		/* Counting every visit bounds loops and over-long chains. */
		if (++count > max) {
			virtq_fail(vq, "descriptor chain loops or is too long");
			return -EIO;
		}
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect) {
				virtq_fail(
					vq,
					"indirect descriptor not negotiated");
				return -EIO;
			}
			if (indirect) {
				virtq_fail(vq, "nested indirect descriptor");
				return -EIO;
			}
			if (flags & VIRTQ_DESC_F_NEXT) {
				virtq_fail(vq, "indirect descriptor with NEXT");
				return -EIO;
			}
			if (len == 0 || len % DESC_SIZE ||
			    len / DESC_SIZE > vq->st.size) {
				virtq_fail(vq,
					   "indirect table has a bad length");
				return -EIO;
			}
			table = guest_mem_ptr(vq->mem, addr, len);
			if (!table) {
				virtq_fail(vq,
					   "indirect table outside guest RAM");
				return -EIO;
			}
			indirect = true;
			max = len / DESC_SIZE;
			i = 0;
			count = 0;
			continue;
		}
		ret = add_seg(vq, e, addr, len, flags & VIRTQ_DESC_F_WRITE);
		if (ret)
			return ret;
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (next >= max) {
			virtq_fail(vq, "descriptor next index out of range");
			return -EIO;
		}
		i = next;
	}
}

int virtq_pop(struct virtq *vq, struct virtq_elem *e)
{
	uint16_t aidx, slot, head;
	int ret;

	if (!vq->st.ready || !vq->avail_hva)
		return -EINVAL;
	if (vq->st.broken)
		return -EIO;
	aidx = avail_idx(vq);
	if (aidx == vq->st.last_avail_idx) {
		if (!vq->event_idx || vq->notify_off)
			return 0;
		/*
		 * Publish where we stopped, then look again: without the full
		 * fence the x86 store->load reordering lets the driver read a
		 * stale avail_event (no kick) while we read a stale avail idx
		 * (nothing to do), and the request waits forever.
		 */
		set_avail_event(vq, vq->st.last_avail_idx);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		aidx = avail_idx(vq);
		if (aidx == vq->st.last_avail_idx)
			return 0;
	}
	if ((uint16_t)(aidx - vq->st.last_avail_idx) > vq->st.size) {
		virtq_fail(vq, "avail index moved further than the queue size");
		return -EIO;
	}
	slot = vq->st.last_avail_idx & (vq->st.size - 1);
	head = __atomic_load_n((uint16_t *)(vq->avail_hva + 4 + 2 * slot),
			       __ATOMIC_RELAXED);
	if (head >= vq->st.size) {
		virtq_fail(vq, "avail ring head out of range");
		return -EIO;
	}
	e->head = head;
	e->n_out = e->n_in = 0;
	e->out_len = e->in_len = 0;
	ret = walk_chain(vq, head, e);
	if (ret)
		return ret;
	vq->st.last_avail_idx++;
	/* Ask for a kick as soon as the driver adds past what we took. */
	if (vq->event_idx && !vq->notify_off)
		set_avail_event(vq, vq->st.last_avail_idx);
	return 1;
}

void virtq_unpop(struct virtq *vq)
{
	vq->st.last_avail_idx--;
}

/*
 * For a live checkpoint (guest_mem.h): a device writes guest memory only
 * into a chain's device-writable buffers and the used ring, and pushes
 * the chain once it is done with them. So marking here, after the push
 * wrote the used ring, covers every thread that wrote the buffers (and
 * O_DIRECT or any other I/O that completed before the push). The whole
 * writable part is marked, not just the used length: a failed request
 * may have written more than it reports.
 */
static void mark_pushed(struct virtq *vq, const struct virtq_elem *e, int slot)
{
	if (!guest_mem_dirty_active(vq->mem))
		return;
	for (unsigned i = e->n_out; i < e->n_out + e->n_in; i++)
		guest_mem_mark_dirty_hva(vq->mem, e->iov[i].iov_base,
					 e->iov[i].iov_len);
	if (slot >= 0) {
		guest_mem_mark_dirty(vq->mem, vq->st.used + 2, 2);
		guest_mem_mark_dirty(vq->mem,
				     vq->st.used + 4 + 8 * (uint64_t)slot, 8);
	}
}

int virtq_push(struct virtq *vq, const struct virtq_elem *e, uint32_t len)
{
	uint8_t *u;
	uint16_t slot;

	/* Not pushed, but the buffers may have been written all the same. */
	if (!vq->st.ready || !vq->used_hva) {
		mark_pushed(vq, e, -1);
		return -EINVAL;
	}
	if (vq->st.broken) {
		mark_pushed(vq, e, -1);
		return -EIO;
	}
	slot = vq->st.used_idx & (vq->st.size - 1);
	u = vq->used_hva + 4 + 8 * slot;
	put_le32(u, e->head);
	put_le32(u + 4, (uint32_t)MIN((uint64_t)len, e->in_len));
	vq->st.used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(vq->used_hva + 2), vq->st.used_idx,
			 __ATOMIC_RELEASE);
	mark_pushed(vq, e, slot);
	return 0;
}

/* virtio spec 2.7.10: has new_idx passed event_idx since old? */
static bool vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old, nw;
	bool valid;

	if (!vq->st.ready || !vq->avail_hva)
		return false;
	/* Order our used-idx store before reading the driver's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(avail_flags(vq) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = vq->st.signalled_used;
	valid = vq->st.signalled_used_valid;
	nw = vq->st.used_idx;
	vq->st.signalled_used = nw;
	vq->st.signalled_used_valid = 1;
	return !valid || vring_need_event(used_event(vq), nw, old);
}

void virtq_set_notify(struct virtq *vq, bool enable)
{
	uint16_t f;

	if (!vq->st.ready || !vq->used_hva)
		return;
	vq->notify_off = !enable;
	if (vq->event_idx) {
		if (enable)
			set_avail_event(vq, avail_idx(vq));
	} else {
		f = __atomic_load_n((uint16_t *)vq->used_hva, __ATOMIC_RELAXED);
		if (enable)
			f &= (uint16_t)~VIRTQ_USED_F_NO_NOTIFY;
		else
			f |= VIRTQ_USED_F_NO_NOTIFY;
		__atomic_store_n((uint16_t *)vq->used_hva, f, __ATOMIC_RELEASE);
		guest_mem_mark_dirty(vq->mem, vq->st.used, 2);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf,
		  size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		l = MIN(iov[i].iov_len - off, len - done);
		memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off,
		       l);
		done += l;
		off = 0;
	}
	return done;
}

size_t buf_to_iov(const struct iovec *iov, unsigned n, size_t off,
		  const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		l = MIN(iov[i].iov_len - off, len - done);
		memcpy((uint8_t *)iov[i].iov_base + off,
		       (const uint8_t *)buf + done, l);
		done += l;
		off = 0;
	}
	return done;
}
