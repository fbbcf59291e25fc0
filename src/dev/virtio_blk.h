/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-blk on a raw image file. One request queue: the queue_notify op
 * only kicks an iothread (and the VMM may bind the kick eventfd to the
 * notify address as an ioeventfd), which pops requests and runs them
 * through one of three back-ends ("aio", as QEMU names them), completing
 * them in any order:
 *   io_uring  submitted in batches to an io_uring from the iothread,
 *             completions reaped on the same loop (the default where the
 *             kernel offers io_uring and a seccomp profile allows it);
 *   threads   a pool of worker threads, several requests at once;
 *   sync      one request after the other on the iothread.
 */
#ifndef KHYVE_VIRTIO_BLK_H
#define KHYVE_VIRTIO_BLK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dev_ops.h"
#include "iothread.h"
#include "snap_desc.h"
#include "virtio_pci.h"

#define VIRTIO_BLK_F_SIZE_MAX	  1
#define VIRTIO_BLK_F_SEG_MAX	  2
#define VIRTIO_BLK_F_RO		  5
#define VIRTIO_BLK_F_BLK_SIZE	  6
#define VIRTIO_BLK_F_FLUSH	  9
#define VIRTIO_BLK_F_DISCARD	  13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN		  0
#define VIRTIO_BLK_T_OUT	  1
#define VIRTIO_BLK_T_FLUSH	  4
#define VIRTIO_BLK_T_GET_ID	  8
#define VIRTIO_BLK_T_DISCARD	  11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES	       20
#define VIRTIO_BLK_SECTOR	       512
#define VIRTIO_BLK_CONFIG_SIZE	       0x3c
#define VIRTIO_BLK_MAX_DISCARD_SECTORS 0x3fffff
#define VIRTIO_BLK_MAX_DISCARD_SEG     16
/* Threads that run requests in parallel (QEMU's pool allows 64); the
 * default depends on the machine: virtio_blk_default_workers(). */
#define VIRTIO_BLK_MAX_WORKERS 64
/* Requests popped and not yet completed, at most (bounds memory). */
#define BLK_MAX_INFLIGHT 256

/* virtio_blk_config offsets */
#define VIRTIO_BLK_CFG_CAPACITY		   0x00
#define VIRTIO_BLK_CFG_SEG_MAX		   0x0c
#define VIRTIO_BLK_CFG_BLK_SIZE		   0x14
#define VIRTIO_BLK_CFG_NUM_QUEUES	   0x22
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 0x24
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG	   0x28
#define VIRTIO_BLK_CFG_DISCARD_ALIGN	   0x2c
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS	   0x30
#define VIRTIO_BLK_CFG_MAX_WZ_SEG	   0x34
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP	   0x38

enum virtio_blk_aio {
	VIRTIO_BLK_AIO_AUTO, /* io_uring if it works here, else threads */
	VIRTIO_BLK_AIO_IO_URING,
	VIRTIO_BLK_AIO_THREADS,
	VIRTIO_BLK_AIO_SYNC,
};

struct virtio_blk_opts {
	const char *path;
	bool readonly;
	bool direct;	     /* O_DIRECT (through an aligned bounce buffer) */
	const char *serial;  /* GET_ID, up to 20 bytes; NULL = none */
	uint16_t queue_size; /* 0 = 256 */
	/* Worker threads; -1 = default, 0 = every request on the iothread */
	int workers;
	/* AUTO: io_uring, or (when refused) threads; workers= alone picks
	 * threads (sync for 0). An io_uring that cannot be set up falls
	 * back to threads even when asked for by name (logged). */
	enum virtio_blk_aio aio;
	bool start_paused; /* restore: virtio_blk_resume() starts it */
};

struct virtio_blk_stats {
	uint64_t requests;
	uint64_t read_bytes, write_bytes;
	uint64_t flushes, discards, write_zeroes;
	uint64_t errors; /* requests completed with a non-OK status */
};

/* Saveable device state: what the guest was promised about the disk. */
struct virtio_blk_state {
	uint64_t capacity; /* sectors; must match the image on restore */
	uint8_t readonly;
};

extern const struct snap_desc virtio_blk_snap;

struct blk_req {
	struct blk_req *next;
	/* io_uring: what was submitted, to finish or redo it */
	uint32_t type;	    /* VIRTIO_BLK_T_IN, _OUT or _FLUSH */
	struct iovec *data; /* into elem.iov: the data segments */
	unsigned ndata;
	uint64_t off, len;
	struct virtq_elem elem;
};

struct virtio_blk;
struct blk_worker {
	pthread_t tid;
	struct virtio_blk *blk;
	void *bounce; /* O_DIRECT bounce buffer, made on first use */
};

struct virtio_blk {
	struct virtio_pci vp;
	struct virtio_dev_ops ops; /* vp.ops points here (queue size) */
	struct virtio_blk_state st;
	int fd;
	bool direct;
	char serial[VIRTIO_BLK_ID_BYTES];
	struct iothread *iot;
	bool own_iot;
	struct iothread_kick *kick;
	void *bounce;		 /* the iothread's O_DIRECT bounce buffer */
	enum virtio_blk_aio aio; /* in use: never AUTO */
	struct io_uring *ring;	 /* aio=io_uring */
	int ring_efd;		 /* the ring's completions wake the iothread */
	unsigned ring_busy;	 /* submitted, not reaped */
	/* Guards everything below except stats and completing. */
	pthread_mutex_t proc_lock;
	pthread_cond_t work_cond; /* q_head or stop changed */
	pthread_cond_t idle_cond; /* inflight reached 0 */
	struct blk_worker *workers;
	unsigned nworkers;
	struct blk_req *q_head, *q_tail; /* popped, waiting for a worker */
	struct blk_req *free_reqs;
	unsigned inflight;   /* popped, not yet pushed */
	unsigned completing; /* I/O done, about to push (atomic) */
	bool paused, stop;
	struct virtio_blk_stats stats;
	uint64_t warn_last_ns; /* io_warn(): atomics */
	unsigned warn_suppressed;
};

/*
 * Open the image and set up the PCI function; @iot may be NULL (a private
 * worker is started). Place it with pci_add_device(bus, slot, 0,
 * &blk->vp.pci). An image that cannot serve is explained in @err (may be
 * NULL), not logged.
 */
int virtio_blk_init(struct virtio_blk *blk, const struct virtio_blk_opts *o,
		    const struct guest_mem *mem, struct iothread *iot,
		    const struct msi_sink *msi, struct err *err);
void virtio_blk_destroy(struct virtio_blk *blk);
/*
 * Stop taking requests, wait until none is in flight, then fdatasync the
 * image (the pause contract, dev_ops.h); -errno if that failed, paused
 * anyway. Resume serves whatever was queued meanwhile.
 */
int virtio_blk_pause(struct virtio_blk *blk);
void virtio_blk_resume(struct virtio_blk *blk);
void virtio_blk_get_stats(struct virtio_blk *blk, struct virtio_blk_stats *s);
/* "io_uring", "threads", "sync" (AUTO: "auto"); parse: -EINVAL if none. */
const char *virtio_blk_aio_name(enum virtio_blk_aio aio);
int virtio_blk_aio_parse(const char *s, enum virtio_blk_aio *aio);
/* The threads back-end's default pool for @ncpus online CPUs and a queue
 * of @queue_size (pure: unit-tested). */
unsigned virtio_blk_default_workers(long ncpus, unsigned queue_size);
/* The eventfd that kicks the request queue (for a KVM ioeventfd). */
int virtio_blk_kick_fd(struct virtio_blk *blk);

/* -s SLOT,virtio-blk,PATH[,ro][,direct][,serial=ID][,workers=N]
 *    [,aio=io_uring|threads|sync] */
extern const struct dev_ops virtio_blk_dev_ops;

#endif
