/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "confine_seccomp.h"
#include "log.h"

static const struct snap_field virtio_blk_fields[] = {
	SNAP_U64(struct virtio_blk_state, capacity, 1),
	SNAP_BOOL(struct virtio_blk_state, readonly, 1),
};

const struct snap_desc virtio_blk_snap = SNAP_DESC(
	"virtio_blk", 1, 1, struct virtio_blk_state, virtio_blk_fields);

#define REQ_HDR	   16
#define BOUNCE_MAX (4 * MiB)

static void stat_add(uint64_t *c, uint64_t v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

/*
 * A failed request, said at most once a second per disk: a guest that
 * reads past an image cut short fails every request, and a flood of
 * lines (on a stderr nobody drains, a blocked write) must not stall the
 * thread serving the disk. Any thread may call it.
 */
static void __attribute__((format(printf, 2, 3)))
io_warn(struct virtio_blk *blk, const char *fmt, ...)
{
	struct timespec ts;
	uint64_t t,
		last = __atomic_load_n(&blk->warn_last_ns, __ATOMIC_RELAXED);
	char msg[160];
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec + 1;
	if ((last && t - last < 1000000000ULL) ||
	    !__atomic_compare_exchange_n(&blk->warn_last_ns, &last, t, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&blk->warn_suppressed, 1, __ATOMIC_RELAXED);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("virtio-blk: %s (%u similar suppressed)", msg,
		 __atomic_exchange_n(&blk->warn_suppressed, 0,
				     __ATOMIC_RELAXED));
}

/* Full positioned read/write over an iovec list, retrying short I/O. */
static int rw_full(int fd, struct iovec *iov, unsigned n, off_t off, bool write)
{
	while (n) {
		ssize_t r = write ? pwritev(fd, iov, (int)n, off)
				  : preadv(fd, iov, (int)n, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* beyond EOF: the image shrank */
		off += r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* O_DIRECT wants aligned memory; guest buffers need not be. */
static int rw_bounce(struct virtio_blk *blk, void **bounce, struct iovec *iov,
		     unsigned n, off_t off, size_t len, bool write)
{
	size_t done = 0;

	/* One per thread that runs requests, made on first use. */
	if (!*bounce && posix_memalign(bounce, 4096, BOUNCE_MAX)) {
		*bounce = NULL;
		return -ENOMEM;
	}
	while (done < len) {
		size_t l = MIN(len - done, (size_t)BOUNCE_MAX);
		struct iovec b = {*bounce, l};
		int ret;

		if (write)
			iov_to_buf(iov, n, done, *bounce, l);
		ret = rw_full(blk->fd, &b, 1, off + (off_t)done, write);
		if (ret)
			return ret;
		if (!write)
			buf_to_iov(iov, n, done, *bounce, l);
		done += l;
	}
	return 0;
}

/* Is [sector, sector + nsec) inside the disk? (overflow-safe) */
static bool in_range(const struct virtio_blk *blk, uint64_t sector,
		     uint64_t nsec)
{
	return sector <= blk->st.capacity && nsec <= blk->st.capacity - sector;
}

static uint8_t do_rw(struct virtio_blk *blk, void **bounce,
		     struct virtq_elem *e, uint64_t sector, bool write)
{
	struct iovec iov[VIRTQ_MAX_SEGS];
	unsigned n = 0;
	size_t skip, len;
	int ret;

	/* Data is out[16..] for writes, in[0..in_len-1) for reads. */
	if (write) {
		len = e->out_len - REQ_HDR;
		skip = REQ_HDR;
		for (unsigned i = 0; i < e->n_out; i++) {
			size_t l = e->iov[i].iov_len;

			if (skip >= l) {
				skip -= l;
				continue;
			}
			iov[n].iov_base = (uint8_t *)e->iov[i].iov_base + skip;
			iov[n++].iov_len = l - skip;
			skip = 0;
		}
	} else {
		size_t left;

		len = e->in_len - 1;
		left = len;
		for (unsigned i = 0; i < e->n_in && left; i++) {
			const struct iovec *s = &e->iov[e->n_out + i];
			size_t l = MIN(s->iov_len, left);

			iov[n].iov_base = s->iov_base;
			iov[n++].iov_len = l;
			left -= l;
		}
	}
	if (len % VIRTIO_BLK_SECTOR ||
	    !in_range(blk, sector, len / VIRTIO_BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	if (write && blk->st.readonly)
		return VIRTIO_BLK_S_IOERR;
	if (len == 0)
		return VIRTIO_BLK_S_OK;
	if (blk->direct)
		ret = rw_bounce(blk, bounce, iov, n,
				(off_t)(sector * VIRTIO_BLK_SECTOR), len,
				write);
	else
		ret = rw_full(blk->fd, iov, n,
			      (off_t)(sector * VIRTIO_BLK_SECTOR), write);
	if (ret) {
		io_warn(blk, "%s at sector %llu: %s", write ? "write" : "read",
			(unsigned long long)sector, strerror(-ret));
		return VIRTIO_BLK_S_IOERR;
	}
	stat_add(write ? &blk->stats.write_bytes : &blk->stats.read_bytes, len);
	return VIRTIO_BLK_S_OK;
}

static int zero_range(struct virtio_blk *blk, off_t off, off_t len, bool unmap)
{
	static const uint8_t zeros[64 * 1024];

	if (unmap &&
	    fallocate(blk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
		      len) == 0)
		return 0;
	if (fallocate(blk->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
		      len) == 0)
		return 0;
	/* Filesystems without ZERO_RANGE (tmpfs): plain zero writes. */
	while (len > 0) {
		size_t l = (size_t)MIN((off_t)sizeof(zeros), len);
		ssize_t r = pwrite(blk->fd, zeros, l, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += r;
		len -= r;
	}
	return 0;
}

static uint8_t do_discard(struct virtio_blk *blk, struct virtq_elem *e, bool wz)
{
	size_t plen = e->out_len - REQ_HDR;
	unsigned nseg = (unsigned)(plen / 16);

	if (blk->st.readonly)
		return VIRTIO_BLK_S_IOERR;
	if (plen % 16 || nseg == 0 || nseg > VIRTIO_BLK_MAX_DISCARD_SEG)
		return VIRTIO_BLK_S_UNSUPP;
	for (unsigned i = 0; i < nseg; i++) {
		uint8_t s[16];
		uint64_t sector;
		uint32_t num, flags;
		int ret;

		iov_to_buf(e->iov, e->n_out, REQ_HDR + 16 * i, s, sizeof(s));
		sector = get_le64(s);
		num = get_le32(s + 8);
		flags = get_le32(s + 12);
		/* Bit 0 is "unmap", meaningful for write-zeroes only. */
		if (flags & ~(wz ? 1u : 0u))
			return VIRTIO_BLK_S_UNSUPP;
		if (num > VIRTIO_BLK_MAX_DISCARD_SECTORS ||
		    !in_range(blk, sector, num))
			return VIRTIO_BLK_S_IOERR;
		if (wz) {
			ret = zero_range(
				blk, (off_t)(sector * VIRTIO_BLK_SECTOR),
				(off_t)num * VIRTIO_BLK_SECTOR, flags & 1);
			if (ret)
				return VIRTIO_BLK_S_IOERR;
		} else {
			/* Discard is a hint; unsupported punching is fine. */
			fallocate(blk->fd,
				  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)(sector * VIRTIO_BLK_SECTOR),
				  (off_t)num * VIRTIO_BLK_SECTOR);
		}
	}
	stat_add(wz ? &blk->stats.write_zeroes : &blk->stats.discards, 1);
	return VIRTIO_BLK_S_OK;
}

/*
 * Serve one request; returns the bytes written to its writable part
 * (64-bit: a read may fill more than 4 GiB of buffers).
 * Runs without proc_lock, on any thread: it only reads the guest's
 * buffers of @e, the image and immutable device fields.
 */
static uint64_t handle_req(struct virtio_blk *blk, void **bounce,
			   struct virtq_elem *e)
{
	uint8_t hdr[REQ_HDR], status = VIRTIO_BLK_S_OK;
	uint64_t written = 0;
	uint32_t type;
	uint64_t sector;

	if (e->out_len < REQ_HDR) {
		status = VIRTIO_BLK_S_IOERR;
		goto out;
	}
	iov_to_buf(e->iov, e->n_out, 0, hdr, sizeof(hdr));
	type = get_le32(hdr);
	sector = get_le64(hdr + 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
		status = do_rw(blk, bounce, e, sector, false);
		if (status == VIRTIO_BLK_S_OK)
			written = e->in_len - 1;
		break;
	case VIRTIO_BLK_T_OUT:
		status = do_rw(blk, bounce, e, sector, true);
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (fdatasync(blk->fd) < 0)
			status = VIRTIO_BLK_S_IOERR;
		stat_add(&blk->stats.flushes, 1);
		break;
	case VIRTIO_BLK_T_GET_ID: {
		size_t l = MIN((size_t)VIRTIO_BLK_ID_BYTES, e->in_len - 1);

		written = buf_to_iov(e->iov + e->n_out, e->n_in, 0, blk->serial,
				     l);
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
		status = do_discard(blk, e, false);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = do_discard(blk, e, true);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
out:
	/* The status byte is the very last writable byte. */
	buf_to_iov(e->iov + e->n_out, e->n_in, e->in_len - 1, &status, 1);
	stat_add(&blk->stats.requests, 1);
	if (status != VIRTIO_BLK_S_OK)
		stat_add(&blk->stats.errors, 1);
	return written + 1;
}

/*
 * Requests run in parallel: the iothread pops every available chain,
 * hands all but the last to the worker threads and runs the last one
 * itself (so a lone request costs no thread hand-off); whoever finishes
 * a request pushes it to the used ring, in completion order. Everything
 * but the I/O itself happens under proc_lock, so pops and pushes of the
 * queue never overlap. "inflight" counts popped, not yet pushed
 * requests: pause, drain and reset wait for it to reach zero, which is
 * what keeps a snapshot from seeing half a request.
 */
static struct blk_req *req_get(struct virtio_blk *blk)
{
	struct blk_req *r = blk->free_reqs;

	if (r) {
		blk->free_reqs = r->next;
		return r;
	}
	return malloc(sizeof(*r));
}

static void req_put(struct virtio_blk *blk, struct blk_req *r)
{
	r->next = blk->free_reqs;
	blk->free_reqs = r;
}

/*
 * Pop one request the guest made available; NULL when paused, not
 * running, at the in-flight limit (BLK_MAX_INFLIGHT: whoever pushes the
 * next completion pops again), out of memory or nothing there. Caller
 * holds proc_lock.
 */
static struct blk_req *pop_req(struct virtio_blk *blk)
{
	struct virtq *vq = &blk->vp.vqs[0];
	uint8_t status = virtio_pci_status(&blk->vp);
	struct blk_req *r;
	int ret;

	/* Nothing is consumed before DRIVER_OK or after NEEDS_RESET. */
	if (blk->paused || !(status & VIRTIO_STATUS_DRIVER_OK) ||
	    (status & VIRTIO_STATUS_NEEDS_RESET) ||
	    blk->inflight >= BLK_MAX_INFLIGHT)
		return NULL;
	r = req_get(blk);
	if (!r) {
		log_warn("virtio-blk: out of memory for a request");
		return NULL;
	}
	ret = virtq_pop(vq, &r->elem);
	if (ret == 1 && r->elem.in_len < 1) {
		/* No status byte: nothing sane to complete. */
		virtq_fail(vq, "virtio-blk request without status");
		ret = -EIO;
	}
	if (ret != 1) {
		req_put(blk, r);
		return NULL;
	}
	blk->inflight++;
	return r;
}

/*
 * Pop what the guest made available; queue it for the workers except
 * the last, which is returned for the caller to run. Caller holds
 * proc_lock.
 */
static struct blk_req *dispatch(struct virtio_blk *blk)
{
	struct blk_req *own = NULL, *r;

	while ((r = pop_req(blk))) {
		if (blk->nworkers == 0)
			return r; /* served one at a time by the caller */
		if (own) {
			/* The previous one goes to a worker. */
			own->next = NULL;
			if (blk->q_tail)
				blk->q_tail->next = own;
			else
				blk->q_head = own;
			blk->q_tail = own;
			pthread_cond_signal(&blk->work_cond);
		}
		own = r;
	}
	return own;
}

/* Push a finished request to the used ring. Caller holds proc_lock. */
static void push_req(struct virtio_blk *blk, struct blk_req *r, uint64_t len)
{
	/* The used length is 32-bit: past 4 GiB say as much as it holds
	 * rather than wrap to a small number. */
	virtq_push(&blk->vp.vqs[0], &r->elem,
		   (uint32_t)MIN(len, (uint64_t)UINT32_MAX));
	req_put(blk, r);
	blk->inflight--;
	if (blk->inflight == 0)
		pthread_cond_broadcast(&blk->idle_cond);
}

/* Push a finished request (threads, sync). Caller holds proc_lock. */
static void complete(struct virtio_blk *blk, struct blk_req *r, uint64_t len)
{
	push_req(blk, r, len);
	/* One interrupt for requests that finish together: the last
	 * worker waiting to push sends it. */
	if (__atomic_sub_fetch(&blk->completing, 1, __ATOMIC_ACQ_REL) == 0)
		virtio_pci_notify_queue(&blk->vp, 0);
}

/* Run @r without the lock, then push it; returns with proc_lock held. */
static void run_req(struct virtio_blk *blk, void **bounce, struct blk_req *r)
{
	uint64_t len;

	pthread_mutex_unlock(&blk->proc_lock);
	len = handle_req(blk, bounce, &r->elem);
	__atomic_add_fetch(&blk->completing, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&blk->proc_lock);
	complete(blk, r, len);
}

/* Caller holds proc_lock; returns with it held. */
static void process_queue(struct virtio_blk *blk, void **bounce)
{
	struct blk_req *own;

	while ((own = dispatch(blk)))
		run_req(blk, bounce, own);
}

static void *blk_worker(void *arg)
{
	struct blk_worker *w = arg;
	struct virtio_blk *blk = w->blk;

	confine_seccomp_enter(CONFINE_ROLE_BLK_WORKER);
	pthread_mutex_lock(&blk->proc_lock);
	for (;;) {
		struct blk_req *r;

		while (!blk->q_head && !blk->stop)
			pthread_cond_wait(&blk->work_cond, &blk->proc_lock);
		if (blk->stop)
			break;
		r = blk->q_head;
		blk->q_head = r->next;
		if (!blk->q_head)
			blk->q_tail = NULL;
		run_req(blk, &w->bounce, r);
		/* Take what the guest queued meanwhile, without waiting for
		 * the iothread (it may be busy with a request of its own). */
		process_queue(blk, &w->bounce);
	}
	pthread_mutex_unlock(&blk->proc_lock);
	return NULL;
}

/* ---- aio=io_uring ----
 *
 * All on the iothread, under proc_lock (which pause, reset and destroy
 * take to look at "inflight"): requests popped in one go are prepared as
 * SQEs on the registered image file and submitted with one
 * io_uring_enter; what completed inline (the page cache) is reaped right
 * after, the rest when the ring's eventfd wakes the iothread. No thread
 * hand-off per request. Flush is an fsync with IOSQE_IO_DRAIN: it starts
 * after every request submitted before it has completed, and nothing
 * submitted after it starts before it is done, so a write the guest saw
 * complete before it sent the flush is durable when the flush completes.
 * Anything else (discard, write-zeroes, GET_ID, a malformed or refused
 * request, an unusual chain layout, O_DIRECT with unaligned buffers) is
 * served synchronously by handle_req on the iothread.
 */

/* The data segments of a read or write, where they are in the chain: the
 * usual layout (header, data..., status in descriptors of their own),
 * without copying. false for any other layout. */
static bool req_data(struct blk_req *r)
{
	struct virtq_elem *e = &r->elem;

	if (r->type == VIRTIO_BLK_T_OUT) {
		if (e->n_out < 2 || e->iov[0].iov_len != REQ_HDR)
			return false;
		r->data = &e->iov[1];
		r->ndata = e->n_out - 1;
		r->len = e->out_len - REQ_HDR;
		return true;
	}
	if (e->n_in < 2 || e->iov[e->n_out + e->n_in - 1].iov_len != 1)
		return false;
	r->data = &e->iov[e->n_out];
	r->ndata = e->n_in - 1;
	r->len = e->in_len - 1;
	return true;
}

/* O_DIRECT takes the guest's buffers as they are only when aligned. */
static bool iov_aligned(const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) %
		    VIRTIO_BLK_SECTOR)
			return false;
	return true;
}

static void ring_submit(struct virtio_blk *blk)
{
	int ret;

	do
		ret = io_uring_submit(blk->ring);
	while (ret == -EINTR);
	/* What was not taken stays in the SQ for the next submission
	 * (the next kick or completion). */
	if (ret < 0)
		log_warn("virtio-blk: io_uring submit: %s", strerror(-ret));
}

static struct io_uring_sqe *ring_sqe(struct virtio_blk *blk)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(blk->ring);

	if (!sqe) {
		/* SQ full (it holds BLK_MAX_INFLIGHT): send what is there. */
		ring_submit(blk);
		sqe = io_uring_get_sqe(blk->ring);
	}
	return sqe;
}

/* Is @r a read or write the ring can take as it is? Sets type/data/len. */
static bool ring_takes_rw(struct virtio_blk *blk, struct blk_req *r,
			  uint64_t sector)
{
	if (!req_data(r) || r->len == 0 || r->len % VIRTIO_BLK_SECTOR ||
	    r->ndata > IOV_MAX ||
	    !in_range(blk, sector, r->len / VIRTIO_BLK_SECTOR) ||
	    (r->type == VIRTIO_BLK_T_OUT && blk->st.readonly) ||
	    (blk->direct && !iov_aligned(r->data, r->ndata)))
		return false;
	r->off = sector * VIRTIO_BLK_SECTOR;
	return true;
}

/* Queue @r as an SQE; false if it is to be served synchronously. */
static bool ring_prep(struct virtio_blk *blk, struct blk_req *r)
{
	struct virtq_elem *e = &r->elem;
	struct io_uring_sqe *sqe;
	uint8_t hdr[REQ_HDR];
	uint64_t sector;

	if (e->out_len < REQ_HDR)
		return false;
	iov_to_buf(e->iov, e->n_out, 0, hdr, sizeof(hdr));
	r->type = get_le32(hdr);
	sector = get_le64(hdr + 8);
	if (r->type != VIRTIO_BLK_T_FLUSH &&
	    ((r->type != VIRTIO_BLK_T_IN && r->type != VIRTIO_BLK_T_OUT) ||
	     !ring_takes_rw(blk, r, sector)))
		return false;
	sqe = ring_sqe(blk);
	if (!sqe)
		return false;
	if (r->type == VIRTIO_BLK_T_FLUSH) {
		io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
		sqe->flags |= IOSQE_IO_DRAIN;
	} else if (r->type == VIRTIO_BLK_T_OUT) {
		io_uring_prep_writev(sqe, 0, r->data, r->ndata, r->off);
	} else {
		io_uring_prep_readv(sqe, 0, r->data, r->ndata, r->off);
	}
	sqe->flags |= IOSQE_FIXED_FILE; /* file index 0: the image */
	io_uring_sqe_set_data(sqe, r);
	blk->ring_busy++;
	return true;
}

/* Finish a read or write the ring did @done bytes of, synchronously. */
static int ring_rw_rest(struct virtio_blk *blk, struct blk_req *r,
			uint64_t done)
{
	struct iovec iov[VIRTQ_MAX_SEGS], *v = iov;
	unsigned n = r->ndata;
	bool write = r->type == VIRTIO_BLK_T_OUT;

	memcpy(iov, r->data, n * sizeof(*iov));
	if (blk->direct)
		return rw_bounce(blk, &blk->bounce, iov, n, (off_t)r->off,
				 r->len, write);
	for (uint64_t skip = done; skip;) {
		if (skip >= v->iov_len) {
			skip -= v->iov_len;
			v++;
			n--;
			continue;
		}
		v->iov_base = (uint8_t *)v->iov_base + skip;
		v->iov_len -= skip;
		skip = 0;
	}
	return rw_full(blk->fd, v, n, (off_t)(r->off + done), write);
}

/* The status of @r from its completion @res; returns the used length. */
static uint64_t ring_finish(struct virtio_blk *blk, struct blk_req *r, int res)
{
	struct virtq_elem *e = &r->elem;
	uint8_t status = VIRTIO_BLK_S_OK;
	bool write = r->type == VIRTIO_BLK_T_OUT;
	int ret = res < 0 ? res : 0;

	if (r->type == VIRTIO_BLK_T_FLUSH) {
		stat_add(&blk->stats.flushes, 1);
	} else if (res >= 0 && (uint64_t)res < r->len) {
		ret = ring_rw_rest(blk, r, (uint64_t)res); /* short */
	} else if (res == -EAGAIN || res == -EINTR ||
		   (res == -EINVAL && blk->direct)) {
		ret = ring_rw_rest(blk, r, 0);
	}
	if (ret) {
		io_warn(blk, "%s at byte %llu: %s",
			r->type == VIRTIO_BLK_T_FLUSH ? "flush"
			: write			      ? "write"
						      : "read",
			(unsigned long long)r->off, strerror(-ret));
		status = VIRTIO_BLK_S_IOERR;
		stat_add(&blk->stats.errors, 1);
	} else if (r->type != VIRTIO_BLK_T_FLUSH) {
		stat_add(write ? &blk->stats.write_bytes
			       : &blk->stats.read_bytes,
			 r->len);
	}
	buf_to_iov(e->iov + e->n_out, e->n_in, e->in_len - 1, &status, 1);
	stat_add(&blk->stats.requests, 1);
	return (status == VIRTIO_BLK_S_OK && r->type == VIRTIO_BLK_T_IN ? r->len
									: 0) +
	       1;
}

/* Push every request the ring completed; true if any. */
static bool ring_reap(struct virtio_blk *blk)
{
	struct io_uring_cqe *cqe;
	bool any = false;

	while (io_uring_peek_cqe(blk->ring, &cqe) == 0) {
		struct blk_req *r = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(blk->ring, cqe);
		blk->ring_busy--;
		push_req(blk, r, ring_finish(blk, r, res));
		any = true;
	}
	return any;
}

/*
 * Pop, submit, reap until neither the guest nor the ring has anything
 * (a completion frees room under the in-flight limit). Paused, it only
 * reaps: that is what lets virtio_blk_pause() see the ring drained.
 * Caller holds proc_lock.
 */
static void ring_service(struct virtio_blk *blk)
{
	for (;;) {
		bool prepared = false, pushed = false;
		struct blk_req *r;

		while ((r = pop_req(blk))) {
			if (ring_prep(blk, r)) {
				prepared = true;
				continue;
			}
			push_req(blk, r,
				 handle_req(blk, &blk->bounce, &r->elem));
			pushed = true;
		}
		if (prepared)
			ring_submit(blk);
		if (ring_reap(blk))
			pushed = true;
		else if (!pushed)
			break;
		virtio_pci_notify_queue(&blk->vp, 0);
	}
}

/* The ring's eventfd: completions that did not come inline. */
static void ring_completed(void *opaque, uint32_t events)
{
	struct virtio_blk *blk = opaque;
	uint64_t v;

	if (read(blk->ring_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("virtio-blk: ring eventfd: %s", strerror(errno));
	pthread_mutex_lock(&blk->proc_lock);
	ring_service(blk);
	pthread_mutex_unlock(&blk->proc_lock);
}

/* Wait for what the kernel still does with guest memory, then close. */
static void ring_teardown(struct virtio_blk *blk)
{
	struct io_uring_cqe *cqe;

	if (!blk->ring)
		return;
	while (blk->ring_busy) {
		int ret = io_uring_submit_and_wait(blk->ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN) {
			log_warn("virtio-blk: io_uring wait: %s",
				 strerror(-ret));
			break; /* the ring's exit cancels the rest */
		}
		while (io_uring_peek_cqe(blk->ring, &cqe) == 0) {
			req_put(blk, io_uring_cqe_get_data(cqe));
			io_uring_cqe_seen(blk->ring, cqe);
			blk->ring_busy--;
		}
	}
	io_uring_queue_exit(blk->ring);
	free(blk->ring);
	blk->ring = NULL;
	if (blk->ring_efd >= 0)
		close(blk->ring_efd);
	blk->ring_efd = -1;
}

static bool ring_has_ops(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool ok = p && io_uring_opcode_supported(p, IORING_OP_READV) &&
		  io_uring_opcode_supported(p, IORING_OP_WRITEV) &&
		  io_uring_opcode_supported(p, IORING_OP_FSYNC);

	if (p)
		io_uring_free_probe(p);
	return ok;
}

/*
 * A ring for the image (registered as file 0) with an eventfd for its
 * completions; -errno when the kernel lacks io_uring or refuses it
 * (ENOSYS, EPERM from a seccomp profile or io_uring_disabled): the
 * caller falls back to threads.
 */
static int ring_setup(struct virtio_blk *blk)
{
	int ret;

	blk->ring = calloc(1, sizeof(*blk->ring));
	if (!blk->ring)
		return -ENOMEM;
	/* Never more SQEs at once than requests in flight. */
	ret = io_uring_queue_init(BLK_MAX_INFLIGHT, blk->ring, 0);
	if (ret) {
		free(blk->ring);
		blk->ring = NULL;
		return ret;
	}
	if (!ring_has_ops(blk->ring))
		ret = -EOPNOTSUPP;
	if (!ret)
		ret = io_uring_register_files(blk->ring, &blk->fd, 1);
	if (!ret) {
		blk->ring_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ret = blk->ring_efd < 0 ? -errno : 0;
	}
	if (!ret)
		ret = io_uring_register_eventfd(blk->ring, blk->ring_efd);
	if (ret)
		ring_teardown(blk);
	return ret;
}

static void blk_kicked(void *opaque, uint32_t events)
{
	struct virtio_blk *blk = opaque;

	/* While paused nothing is popped; resume kicks again. */
	pthread_mutex_lock(&blk->proc_lock);
	if (blk->ring)
		ring_service(blk);
	else
		process_queue(blk, &blk->bounce);
	pthread_mutex_unlock(&blk->proc_lock);
}

/* Caller holds proc_lock. */
static void wait_idle(struct virtio_blk *blk)
{
	while (blk->inflight)
		pthread_cond_wait(&blk->idle_cond, &blk->proc_lock);
}

static void blk_queue_notify(void *opaque, unsigned q)
{
	struct virtio_blk *blk = opaque;

	if (q == 0)
		iothread_kick(blk->kick);
}

static void blk_reset(void *opaque)
{
	struct virtio_blk *blk = opaque;

	/* The transport already cleared DRIVER_OK, so nothing new is
	 * popped; requests in flight still finish (and are pushed) before
	 * the transport resets the queues. */
	pthread_mutex_lock(&blk->proc_lock);
	wait_idle(blk);
	pthread_mutex_unlock(&blk->proc_lock);
}

static void blk_config_read(void *opaque, uint32_t off, void *data,
			    unsigned size)
{
	struct virtio_blk *blk = opaque;
	uint8_t c[VIRTIO_BLK_CONFIG_SIZE] = {0};
	uint16_t qs = blk->vp.ops->queue_max_size;

	put_le64(c + VIRTIO_BLK_CFG_CAPACITY, blk->st.capacity);
	/* Two descriptors go to the header and the status byte. */
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, MIN(qs, VIRTQ_MAX_SEGS) - 2u);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, VIRTIO_BLK_SECTOR);
	put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1);
	put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS,
		 VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG,
		 VIRTIO_BLK_MAX_DISCARD_SEG);
	put_le32(c + VIRTIO_BLK_CFG_DISCARD_ALIGN, 8);
	put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS,
		 VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
	c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
	memcpy(data, c + off, size);
}

static void *blk_snap_state(void *opaque)
{
	return &((struct virtio_blk *)opaque)->st;
}

static int blk_post_load(void *opaque, struct err *err)
{
	struct virtio_blk *blk = opaque;
	struct stat sb;

	if (fstat(blk->fd, &sb) < 0)
		return err_sys(err, "virtio-blk: image");
	if (blk->st.capacity != (uint64_t)sb.st_size / VIRTIO_BLK_SECTOR)
		return err_set(
			err, -EINVAL,
			"virtio-blk: image has %llu sectors, snapshot expects "
			"%llu",
			(unsigned long long)sb.st_size / VIRTIO_BLK_SECTOR,
			(unsigned long long)blk->st.capacity);
	return 0;
}

static const struct virtio_dev_ops blk_ops_template = {
	.device_id = VIRTIO_ID_BLOCK,
	.class_code = 0x010000, /* mass storage, SCSI (as QEMU) */
	.num_queues = 1,
	.config_size = VIRTIO_BLK_CONFIG_SIZE,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.snap = &virtio_blk_snap,
	.snap_state = blk_snap_state,
	.post_load = blk_post_load,
};

static void stop_workers(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->proc_lock);
	blk->stop = true;
	pthread_cond_broadcast(&blk->work_cond);
	pthread_mutex_unlock(&blk->proc_lock);
	for (unsigned i = 0; i < blk->nworkers; i++) {
		pthread_join(blk->workers[i].tid, NULL);
		free(blk->workers[i].bounce);
	}
	free(blk->workers);
	blk->workers = NULL;
	blk->nworkers = 0;
}

static int start_workers(struct virtio_blk *blk, unsigned n)
{
	int ret;

	blk->workers = calloc(n, sizeof(*blk->workers));
	if (!blk->workers)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		blk->workers[i].blk = blk;
		ret = -pthread_create(&blk->workers[i].tid, NULL, blk_worker,
				      &blk->workers[i]);
		if (ret) {
			stop_workers(blk);
			return ret;
		}
		pthread_setname_np(blk->workers[i].tid, "virtio-blk-io");
		blk->nworkers = i + 1;
	}
	return 0;
}

/*
 * The threads back-end's default pool. Measured on 2-CPU kvm_pvm hosts
 * with bench/vblk.py (the fast test guest, 64 KiB sequential and 4 KiB
 * random reads at queue depth 16, page cache): issue 18's idle-host run
 * had 8 workers lose to none at all (writes 3934 against 5274 MB/s, 4 KiB
 * reads 225k against 332k IOPS); the 2026-12-03 run (docs/benchmarks.md,
 * median of 5 at load ~52) had, for 0/1/2/8 workers, writes 732/560/666/
 * 476 MB/s, reads 495/996/1554/925 MB/s, 4 KiB reads 48k/37k/29k/22k
 * IOPS: 8 worst on all three, more workers than CPUs never paid, and one
 * or two won only sequential reads on a host so loaded that a process's
 * share of the CPUs grows with its runnable threads. Every request handed
 * to a worker costs a wake-up and a lock round trip, and the iothread and
 * the vCPU already want both CPUs. So: no pool on 2 CPUs or fewer, then
 * one per CPU beyond those two, no more than the queue holds requests
 * (two descriptors each at least) and at most 8 (the pool's old size).
 * io_uring, the default back-end, needs no pool at all.
 */
unsigned virtio_blk_default_workers(long ncpus, unsigned queue_size)
{
	unsigned long n;

	if (ncpus <= 2)
		return 0;
	n = (unsigned long)ncpus - 2;
	n = MIN(n, (unsigned long)queue_size / 2);
	return (unsigned)MIN(n, 8ul);
}

static const char *const aio_names[] = {
	[VIRTIO_BLK_AIO_AUTO] = "auto",
	[VIRTIO_BLK_AIO_IO_URING] = "io_uring",
	[VIRTIO_BLK_AIO_THREADS] = "threads",
	[VIRTIO_BLK_AIO_SYNC] = "sync",
};

const char *virtio_blk_aio_name(enum virtio_blk_aio aio)
{
	return (unsigned)aio < ARRAY_SIZE(aio_names) ? aio_names[aio] : "?";
}

int virtio_blk_aio_parse(const char *s, enum virtio_blk_aio *aio)
{
	for (unsigned i = VIRTIO_BLK_AIO_IO_URING; i < ARRAY_SIZE(aio_names);
	     i++)
		if (!strcmp(s, aio_names[i])) {
			*aio = (enum virtio_blk_aio)i;
			return 0;
		}
	return -EINVAL;
}

/* Pick and start the back-end (blk->aio): io_uring unless asked
 * otherwise or refused, then threads (sync when that means no thread). */
static int start_backend(struct virtio_blk *blk,
			 const struct virtio_blk_opts *o, uint16_t qs)
{
	enum virtio_blk_aio aio = o->aio;
	long ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nw;
	int ret;

	if (aio == VIRTIO_BLK_AIO_AUTO)
		aio = o->workers < 0   ? VIRTIO_BLK_AIO_IO_URING
		      : o->workers > 0 ? VIRTIO_BLK_AIO_THREADS
				       : VIRTIO_BLK_AIO_SYNC;
	if (aio == VIRTIO_BLK_AIO_IO_URING) {
		ret = ring_setup(blk);
		if (!ret) {
			blk->aio = aio;
			return 0;
		}
		/* Not an error: the threads serve the same requests. */
		if (o->aio == VIRTIO_BLK_AIO_IO_URING)
			log_warn("virtio-blk %s: no io_uring (%s): threads",
				 o->path, strerror(-ret));
		else
			log_info("virtio-blk %s: no io_uring (%s): threads",
				 o->path, strerror(-ret));
		aio = VIRTIO_BLK_AIO_THREADS;
	}
	nw = o->workers >= 0 ? (unsigned)o->workers
			     : virtio_blk_default_workers(ncpus, qs);
	/* Asked for by name, threads means at least one. */
	if (o->aio == VIRTIO_BLK_AIO_THREADS && o->workers < 0)
		nw = MAX(nw, 1u);
	blk->aio = aio == VIRTIO_BLK_AIO_SYNC || nw == 0
			   ? VIRTIO_BLK_AIO_SYNC
			   : VIRTIO_BLK_AIO_THREADS;
	return blk->aio == VIRTIO_BLK_AIO_SYNC ? 0 : start_workers(blk, nw);
}

/* Open the image into blk->fd and size the disk from it. */
static int blk_open_image(struct virtio_blk *blk,
			  const struct virtio_blk_opts *o, struct err *err)
{
	int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat sb;
	int ret;

	if (o->direct)
		flags |= O_DIRECT;
	/* Not waited on if it is a FIFO (refused below), e.g. named by a
	 * hostile snapshot; cleared again for the image itself. */
	blk->fd = open(o->path, flags | O_NONBLOCK);
	if (blk->fd < 0)
		return err_sys(err, "cannot open %s", o->path);
	if (fstat(blk->fd, &sb) < 0)
		goto err_errno;
	if (!S_ISREG(sb.st_mode) || sb.st_size % VIRTIO_BLK_SECTOR) {
		ret = err_set(err, -EINVAL,
			      "%s is not a regular file of whole 512-byte "
			      "sectors",
			      o->path);
		goto err_fd;
	}
	if (fcntl(blk->fd, F_SETFL, fcntl(blk->fd, F_GETFL) & ~O_NONBLOCK))
		goto err_errno;
	blk->st.capacity = (uint64_t)sb.st_size / VIRTIO_BLK_SECTOR;
	return 0;
err_errno:
	ret = err_sys(err, "%s", o->path);
err_fd:
	close(blk->fd);
	blk->fd = -1;
	return ret;
}

/* The iothread watches the queue's kick and the ring's completions. */
static int blk_watch(struct virtio_blk *blk)
{
	int ret = iothread_kick_new(blk->iot, blk_kicked, blk, &blk->kick);

	if (ret || !blk->ring)
		return ret;
	ret = iothread_add_fd(blk->iot, blk->ring_efd, EPOLLIN, ring_completed,
			      blk);
	if (ret) {
		iothread_kick_free(blk->kick);
		blk->kick = NULL;
	}
	return ret;
}

int virtio_blk_init(struct virtio_blk *blk, const struct virtio_blk_opts *o,
		    const struct guest_mem *mem, struct iothread *iot,
		    const struct msi_sink *msi, struct err *err)
{
	uint16_t qs = o->queue_size ? o->queue_size : 256;
	uint64_t features;
	int ret;

	memset(blk, 0, sizeof(*blk));
	blk->fd = blk->ring_efd = -1;
	blk->paused = o->start_paused;
	if (!o->path || (qs & (qs - 1)) || qs < 4 || qs > VIRTQ_MAX_SIZE ||
	    o->workers > VIRTIO_BLK_MAX_WORKERS)
		return -EINVAL;
	blk->ops = blk_ops_template;
	blk->ops.queue_max_size = qs;
	ret = blk_open_image(blk, o, err);
	if (ret)
		return ret;
	blk->st.readonly = o->readonly;
	blk->direct = o->direct;
	if (o->serial)
		/* Not NUL-terminated when exactly 20 bytes (as the spec). */
		memcpy(blk->serial, o->serial,
		       MIN(strlen(o->serial), sizeof(blk->serial)));
	ret = -pthread_mutex_init(&blk->proc_lock, NULL);
	if (ret)
		goto err_fd;
	pthread_cond_init(&blk->work_cond, NULL);
	pthread_cond_init(&blk->idle_cond, NULL);
	ret = start_backend(blk, o, qs);
	if (ret)
		goto err_lock;
	if (!iot) {
		ret = iothread_create(&iot, "virtio-blk");
		if (ret)
			goto err_workers;
		blk->own_iot = true;
	}
	blk->iot = iot;
	features = (1ULL << VIRTIO_BLK_F_SEG_MAX) |
		   (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		   (1ULL << VIRTIO_BLK_F_FLUSH);
	if (o->readonly)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) |
			    (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	ret = virtio_pci_init(&blk->vp, "virtio-blk", mem, &blk->ops, blk,
			      features, msi);
	if (ret)
		goto err_iot;
	ret = blk_watch(blk);
	if (ret)
		goto err_vp;
	return 0;
err_vp:
	virtio_pci_destroy(&blk->vp);
err_iot:
	if (blk->own_iot)
		iothread_destroy(blk->iot);
err_workers:
	stop_workers(blk);
	ring_teardown(blk);
err_lock:
	pthread_cond_destroy(&blk->idle_cond);
	pthread_cond_destroy(&blk->work_cond);
	pthread_mutex_destroy(&blk->proc_lock);
err_fd:
	close(blk->fd);
	blk->fd = -1;
	return ret;
}

static void free_reqs(struct blk_req *r)
{
	while (r) {
		struct blk_req *nx = r->next;

		free(r);
		r = nx;
	}
}

void virtio_blk_destroy(struct virtio_blk *blk)
{
	/* Kick handler first: after this nothing dispatches. */
	iothread_kick_free(blk->kick);
	blk->kick = NULL;
	if (blk->ring)
		iothread_del_fd(blk->iot, blk->ring_efd);
	if (blk->own_iot)
		iothread_destroy(blk->iot);
	stop_workers(blk);
	ring_teardown(blk);
	virtio_pci_destroy(&blk->vp);
	/* Requests still queued belong to a guest that is gone. */
	free_reqs(blk->q_head);
	free_reqs(blk->free_reqs);
	blk->q_head = blk->q_tail = blk->free_reqs = NULL;
	pthread_cond_destroy(&blk->idle_cond);
	pthread_cond_destroy(&blk->work_cond);
	pthread_mutex_destroy(&blk->proc_lock);
	free(blk->bounce);
	blk->bounce = NULL;
	if (blk->fd >= 0)
		close(blk->fd);
	blk->fd = -1;
}

int virtio_blk_pause(struct virtio_blk *blk)
{
	int ret = 0;

	pthread_mutex_lock(&blk->proc_lock);
	blk->paused = true;
	wait_idle(blk);
	/* What the guest was told is written is on the disk (a snapshot
	 * pairs this image with the guest's memory). */
	if (!blk->st.readonly && fdatasync(blk->fd) < 0)
		ret = -errno;
	pthread_mutex_unlock(&blk->proc_lock);
	return ret;
}

void virtio_blk_resume(struct virtio_blk *blk)
{
	pthread_mutex_lock(&blk->proc_lock);
	blk->paused = false;
	pthread_mutex_unlock(&blk->proc_lock);
	/* Always look at the ring: besides kicks that came while paused,
	 * a pop loop stopped at the in-flight limit may have had its
	 * completions land during the pause, and those do not pop. */
	iothread_kick(blk->kick);
}

void virtio_blk_get_stats(struct virtio_blk *blk, struct virtio_blk_stats *s)
{
	s->requests = __atomic_load_n(&blk->stats.requests, __ATOMIC_RELAXED);
	s->read_bytes =
		__atomic_load_n(&blk->stats.read_bytes, __ATOMIC_RELAXED);
	s->write_bytes =
		__atomic_load_n(&blk->stats.write_bytes, __ATOMIC_RELAXED);
	s->flushes = __atomic_load_n(&blk->stats.flushes, __ATOMIC_RELAXED);
	s->discards = __atomic_load_n(&blk->stats.discards, __ATOMIC_RELAXED);
	s->write_zeroes =
		__atomic_load_n(&blk->stats.write_zeroes, __ATOMIC_RELAXED);
	s->errors = __atomic_load_n(&blk->stats.errors, __ATOMIC_RELAXED);
}

int virtio_blk_kick_fd(struct virtio_blk *blk)
{
	return iothread_kick_fd(blk->kick);
}

/* ---- the device's life cycle (dev_ops.h) ---- */

/* "PATH[,ro][,direct][,serial=ID][,workers=N][,aio=KIND]" -> @o (its
 * strings in @path and @serial). */
static int blk_parse_aio(const char *conf, const struct dev_env *env,
			 struct virtio_blk_opts *o, struct err *err)
{
	char aio[16];

	if (!config_opt_get(conf, "aio", aio, sizeof(aio)))
		return 0;
	if (virtio_blk_aio_parse(aio, &o->aio))
		return err_set(err, -EINVAL,
			       "-s %u,virtio-blk: aio=%s: want io_uring, "
			       "threads or sync",
			       env->slot, aio);
	if (o->aio == VIRTIO_BLK_AIO_SYNC && o->workers > 0)
		return err_set(err, -EINVAL,
			       "-s %u,virtio-blk: aio=sync runs no workers "
			       "(workers=%d)",
			       env->slot, o->workers);
	return 0;
}

static int blk_parse(const char *conf, const struct dev_env *env,
		     struct virtio_blk_opts *o, char path[512], char serial[32],
		     struct err *err)
{
	const char *comma = strchr(conf, ',');
	size_t pl = comma ? (size_t)(comma - conf) : strlen(conf);
	char workers[16];

	if (pl == 0 || pl >= 512)
		return err_set(err, -EINVAL,
			       "-s %u,virtio-blk: missing image path",
			       env->slot);
	memcpy(path, conf, pl);
	path[pl] = 0;
	o->path = path;
	o->readonly = config_opt_get(conf, "ro", NULL, 0);
	o->direct = config_opt_get(conf, "direct", NULL, 0);
	if (config_opt_get(conf, "serial", serial, 32))
		o->serial = serial;
	if (config_opt_get(conf, "workers", workers, sizeof(workers))) {
		char *end;
		long n = strtol(workers, &end, 10);

		if (!*workers || *end || n < 0 || n > VIRTIO_BLK_MAX_WORKERS)
			return err_set(err, -EINVAL,
				       "-s %u,virtio-blk: workers=%s: want 0 "
				       "to %d",
				       env->slot, workers,
				       VIRTIO_BLK_MAX_WORKERS);
		o->workers = (int)n;
	}
	return blk_parse_aio(conf, env, o, err);
}

static int blk_create(const char *conf, const struct dev_env *env,
		      struct dev_instance *out, struct err *err)
{
	struct virtio_blk_opts o = {.workers = -1,
				    .start_paused = env->start_paused};
	char path[512], serial[32];
	struct virtio_blk *blk;
	int ret;

	ret = blk_parse(conf, env, &o, path, serial, err);
	if (ret)
		return ret;
	blk = calloc(1, sizeof(*blk));
	if (!blk)
		return -ENOMEM;
	err_clear(err);
	ret = virtio_blk_init(blk, &o, env->mem, env->io, env->msi, err);
	if (ret) {
		/* The image's own message names it; else name it here. */
		if (err && err->msg[0])
			err_prefix(err, "-s %u,virtio-blk: ", env->slot);
		else
			err_set(err, ret, "-s %u,virtio-blk,%s: %s", env->slot,
				path, strerror(-ret));
		free(blk);
		return ret;
	}
	out->dev = blk;
	out->vp = &blk->vp;
	return 0;
}

static void blk_destroy(void *dev)
{
	virtio_blk_destroy(dev);
	free(dev);
}

static int blk_pause(void *dev)
{
	return virtio_blk_pause(dev);
}

static void blk_resume(void *dev)
{
	virtio_blk_resume(dev);
}

static unsigned blk_stats(void *dev, struct dev_stat *out)
{
	struct virtio_blk_stats s;
	unsigned n = 0;

	virtio_blk_get_stats(dev, &s);
	out[n++] = (struct dev_stat){"requests", s.requests};
	out[n++] = (struct dev_stat){"read_bytes", s.read_bytes};
	out[n++] = (struct dev_stat){"write_bytes", s.write_bytes};
	out[n++] = (struct dev_stat){"flushes", s.flushes};
	out[n++] = (struct dev_stat){"errors", s.errors};
	return n;
}

static unsigned blk_texts(void *dev, struct dev_text *out)
{
	out[0] = (struct dev_text){
		"aio", virtio_blk_aio_name(((struct virtio_blk *)dev)->aio)};
	return 1;
}

static int blk_kick_fd(void *dev, unsigned q)
{
	return q == 0 ? virtio_blk_kick_fd(dev) : -EINVAL;
}

static int blk_snap_foreach(void *dev, uint32_t instance, virtio_snap_fn fn,
			    void *ctx)
{
	return virtio_pci_snap_foreach(&((struct virtio_blk *)dev)->vp,
				       instance, fn, ctx);
}

static int blk_post_load_dev(void *dev, struct err *err)
{
	return virtio_pci_post_load(&((struct virtio_blk *)dev)->vp, err);
}

/* The disk image, the option string's first element. */
static void blk_host_binding(const char *conf, struct dev_binding *b)
{
	snprintf(b->kind, sizeof(b->kind), "disk");
	config_opt_first(conf, b->target, sizeof(b->target));
}

const struct dev_ops virtio_blk_dev_ops = {
	.name = "virtio-blk",
	.help = "virtio-blk,PATH[,ro][,direct][,serial=ID][,workers=N]"
		"[,aio=io_uring|threads|sync]: raw disk image",
	.create = blk_create,
	.destroy = blk_destroy,
	.pause = blk_pause,
	.resume = blk_resume,
	.stats = blk_stats,
	.texts = blk_texts,
	.kick_fd = blk_kick_fd,
	.snap_foreach = blk_snap_foreach,
	.post_load = blk_post_load_dev,
	.host_binding = blk_host_binding,
};
