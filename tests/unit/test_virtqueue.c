/* SPDX-License-Identifier: BSD-2-Clause */
/* Split virtqueue walking against a driver played by hand in guest RAM. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guest_mem.h"
#include "snap.h"
#include "unit.h"
#include "virtqueue.h"

#define RAM_SIZE (1 * MiB)
#define DESC	 0x1000
#define AVAIL	 0x2000
#define USED	 0x3000
#define QSZ	 8

static uint8_t *ram;
static struct guest_mem mem;
static unsigned errors;
static uint16_t drv_avail_idx;

static void on_err(void *opaque, struct virtq *vq)
{
	errors++;
}

static void set_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = ram + table + 16 * i;

	put_le64(d, addr);
	put_le32(d + 8, len);
	put_le16(d + 12, flags);
	put_le16(d + 14, next);
}

static void avail_add(uint16_t head)
{
	put_le16(ram + AVAIL + 4 + 2 * (drv_avail_idx % QSZ), head);
	drv_avail_idx++;
	put_le16(ram + AVAIL + 2, drv_avail_idx);
}

static void setup(struct virtq *vq, bool indirect, bool event_idx)
{
	memset(ram, 0, RAM_SIZE);
	drv_avail_idx = 0;
	errors = 0;
	virtq_init(vq, &mem, 0, 256);
	vq->on_error = on_err;
	vq->st.size = QSZ;
	vq->st.desc = DESC;
	vq->st.avail = AVAIL;
	vq->st.used = USED;
	virtq_set_features(
		vq, (indirect ? 1ULL << VIRTIO_RING_F_INDIRECT_DESC : 0) |
			    (event_idx ? 1ULL << VIRTIO_RING_F_EVENT_IDX : 0));
	CHECK_EQ(virtq_enable(vq), 0);
}

static void test_basic_chain(void)
{
	struct virtq vq;
	static struct virtq_elem e;

	setup(&vq, false, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, 0x11000, 512, VIRTQ_DESC_F_NEXT, 5);
	set_desc(DESC, 5, 0x12000, 100, VIRTQ_DESC_F_WRITE, 0);
	CHECK(!virtq_has_work(&vq));
	CHECK_EQ(virtq_pop(&vq, &e), 0);
	avail_add(0);
	CHECK(virtq_has_work(&vq));
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	CHECK_EQ(e.head, 0);
	CHECK_EQ(e.n_out, 2);
	CHECK_EQ(e.n_in, 1);
	CHECK_EQ(e.out_len, 528);
	CHECK_EQ(e.in_len, 100);
	CHECK(e.iov[0].iov_base == ram + 0x10000);
	CHECK(e.iov[1].iov_base == ram + 0x11000);
	CHECK(e.iov[2].iov_base == ram + 0x12000);
	CHECK_EQ(virtq_pop(&vq, &e), 0);
	CHECK_EQ(virtq_push(&vq, &e, 42), 0);
	CHECK_EQ(get_le16(ram + USED + 2), 1);
	CHECK_EQ(get_le32(ram + USED + 4), 0);
	CHECK_EQ(get_le32(ram + USED + 8), 42);
	/* A used length beyond the writable bytes is clamped. */
	avail_add(5);
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	CHECK_EQ(e.head, 5);
	CHECK_EQ(virtq_push(&vq, &e, 5000), 0);
	CHECK_EQ(get_le32(ram + USED + 4 + 8 + 4), 100);
	/* Wrap the 16-bit index space and the ring several times. */
	for (unsigned i = 0; i < 70000; i++) {
		avail_add(5);
		if (virtq_pop(&vq, &e) != 1 || virtq_push(&vq, &e, 1))
			break;
	}
	CHECK_EQ(vq.st.last_avail_idx, (uint16_t)70002);
	CHECK_EQ(get_le16(ram + USED + 2), (uint16_t)70002);
	CHECK_EQ(errors, 0);
}

static void test_indirect(void)
{
	struct virtq vq;
	static struct virtq_elem e;

	setup(&vq, true, false);
	set_desc(0x4000, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(0x4000, 1, 0x11000, 64, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		 2);
	set_desc(0x4000, 2, 0x12000, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(DESC, 3, 0x4000, 48, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(3);
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	CHECK_EQ(e.head, 3);
	CHECK_EQ(e.n_out, 1);
	CHECK_EQ(e.n_in, 2);
	CHECK_EQ(e.in_len, 65);
	CHECK(e.iov[2].iov_base == ram + 0x12000);
	CHECK_EQ(errors, 0);

	/* The same chain without the feature negotiated is refused. */
	setup(&vq, false, false);
	set_desc(0x4000, 0, 0x10000, 16, 0, 0);
	set_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	CHECK_EQ(virtq_pop(&vq, &e), -EIO);
	CHECK_EQ(errors, 1);
}

/* One hostile layout per case: each must break the queue, exactly once. */
static void expect_broken(struct virtq *vq, const char *what)
{
	static struct virtq_elem e;

	unit_current = what;
	CHECK_EQ(virtq_pop(vq, &e), -EIO);
	CHECK(vq->st.broken);
	CHECK_EQ(errors, 1);
	/* Stays broken without firing again, and never hands out work. */
	CHECK_EQ(virtq_pop(vq, &e), -EIO);
	CHECK_EQ(errors, 1);
	CHECK(!virtq_has_work(vq));
	CHECK_EQ(virtq_push(vq, &e, 0), -EIO);
}

static void test_hostile(void)
{
	struct virtq vq;

	setup(&vq, true, false);
	set_desc(DESC, 0, RAM_SIZE - 8, 16, 0, 0);
	avail_add(0);
	expect_broken(&vq, "buffer past end of RAM");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0xC0000000ULL, 16, 0, 0);
	avail_add(0);
	expect_broken(&vq, "buffer in the PCI hole");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x10000, 0xffffffffu, 0, 0);
	avail_add(0);
	expect_broken(&vq, "huge length");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
	avail_add(0);
	expect_broken(&vq, "loop");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
	avail_add(0);
	expect_broken(&vq, "self loop");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, QSZ);
	avail_add(0);
	expect_broken(&vq, "next out of range");

	setup(&vq, true, false);
	avail_add(QSZ);
	expect_broken(&vq, "head out of range");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
		 1);
	set_desc(DESC, 1, 0x11000, 16, 0, 0);
	avail_add(0);
	expect_broken(&vq, "readable after writable");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x4000, 17, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	expect_broken(&vq, "indirect len not multiple of 16");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x4000, 16 * (QSZ + 1), VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	expect_broken(&vq, "indirect longer than queue");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x4000, 0, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	expect_broken(&vq, "indirect empty");

	setup(&vq, true, false);
	set_desc(DESC, 0, RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	expect_broken(&vq, "indirect table outside RAM");

	setup(&vq, true, false);
	set_desc(0x4000, 0, 0x5000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	expect_broken(&vq, "nested indirect");

	setup(&vq, true, false);
	set_desc(0x4000, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(0x4000, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
	set_desc(DESC, 0, 0x4000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_add(0);
	expect_broken(&vq, "loop inside indirect");

	setup(&vq, true, false);
	set_desc(0x4000, 0, 0x10000, 16, 0, 0);
	set_desc(DESC, 0, 0x4000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
		 1);
	avail_add(0);
	expect_broken(&vq, "indirect with next");

	setup(&vq, true, false);
	set_desc(DESC, 0, 0x10000, 16, 0, 0);
	put_le16(ram + AVAIL + 2, QSZ + 1);
	expect_broken(&vq, "avail idx jump");
	unit_current = "test_hostile";
}

static void test_enable_checks(void)
{
	struct virtq vq;
	static const struct {
		uint16_t size;
		uint64_t desc, avail, used;
	} bad[] = {
		{6, DESC, AVAIL, USED},		   /* not a power of two */
		{0, DESC, AVAIL, USED},		   /* empty */
		{512, DESC, AVAIL, USED},	   /* above the maximum */
		{QSZ, DESC + 8, AVAIL, USED},	   /* desc misaligned */
		{QSZ, DESC, AVAIL + 1, USED},	   /* avail misaligned */
		{QSZ, DESC, AVAIL, USED + 2},	   /* used misaligned */
		{QSZ, RAM_SIZE - 64, AVAIL, USED}, /* desc past RAM */
		{QSZ, DESC, AVAIL, RAM_SIZE - 16}, /* used past RAM */
		{QSZ, DESC, 0xfffffffffffffff0ULL, USED}, /* wraps */
	};

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		virtq_init(&vq, &mem, 0, 256);
		vq.st.size = bad[i].size;
		vq.st.desc = bad[i].desc;
		vq.st.avail = bad[i].avail;
		vq.st.used = bad[i].used;
		CHECK_EQ(virtq_enable(&vq), -EINVAL);
		CHECK(!vq.st.ready);
	}
	/* The spec maximum, 32768 entries, is accepted. */
	virtq_init(&vq, &mem, 0, 0xffff);
	vq.st.size = 0x8000;
	vq.st.desc = 0;
	vq.st.avail = 0x80000;
	vq.st.used = 0x90000;
	CHECK_EQ(virtq_enable(&vq), 0);
}

static void test_event_idx(void)
{
	struct virtq vq;
	static struct virtq_elem e;

	setup(&vq, false, true);
	set_desc(DESC, 0, 0x10000, 16, 0, 0);
	avail_add(0);
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	/* avail_event tells the driver to kick once it passes idx 1. */
	CHECK_EQ(get_le16(ram + USED + 4 + 8 * QSZ), 1);
	virtq_push(&vq, &e, 0);
	/* First interrupt always goes (no previous signal). */
	CHECK(virtq_should_notify(&vq));
	/* used_event = 0: driver wants one when used passes 0 -> done. */
	avail_add(0);
	virtq_pop(&vq, &e);
	virtq_push(&vq, &e, 0);
	CHECK(!virtq_should_notify(&vq));
	/* Driver moves used_event to 2 (it has seen 2): 3rd entry fires. */
	put_le16(ram + AVAIL + 4 + 2 * QSZ, 2);
	avail_add(0);
	virtq_pop(&vq, &e);
	virtq_push(&vq, &e, 0);
	CHECK(virtq_should_notify(&vq));
	/* Nothing new pushed: no second interrupt. */
	CHECK(!virtq_should_notify(&vq));

	/* Without EVENT_IDX the NO_INTERRUPT flag decides. */
	setup(&vq, false, false);
	CHECK(virtq_should_notify(&vq));
	put_le16(ram + AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	CHECK(!virtq_should_notify(&vq));
	virtq_set_notify(&vq, false);
	CHECK_EQ(get_le16(ram + USED), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notify(&vq, true);
	CHECK_EQ(get_le16(ram + USED), 0);
}

static char snap_path[64];

static void test_snapshot_mid_flight(void)
{
	struct virtq vq, vq2;
	static struct virtq_elem e1, e2, e3;
	struct snap_host_info h;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct err err = {0};

	setup(&vq, true, true);
	for (unsigned i = 0; i < 3; i++) {
		set_desc(DESC, i, 0x10000 + 0x100 * i, 16, VIRTQ_DESC_F_WRITE,
			 0);
		avail_add((uint16_t)i);
	}
	CHECK_EQ(virtq_pop(&vq, &e1), 1);
	CHECK_EQ(virtq_pop(&vq, &e2), 1);
	CHECK_EQ(virtq_push(&vq, &e1, 4), 0);
	CHECK(virtq_should_notify(&vq));

	CHECK_EQ(snap_host_info_probe(&h, "unit"), 0);
	CHECK_EQ(snap_writer_open(&w, snap_path, &h, NULL), 0);
	if (!w)
		return;
	CHECK_EQ(snap_write_section(w, &virtq_snap, 7, &vq.st), 0);
	CHECK_EQ(snap_writer_commit(w), 0);

	/* A fresh queue as a restoring VMM would build it. */
	virtq_init(&vq2, &mem, 0, 256);
	CHECK_EQ(snap_reader_open(&r, snap_path, &err), 0);
	if (!r) {
		fprintf(stderr, "%s\n", err.msg);
		return;
	}
	CHECK_EQ(snap_read_section(r, &virtq_snap, 7, &vq2.st, &err), 0);
	snap_reader_close(r);
	virtq_set_features(&vq2, (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
					 (1ULL << VIRTIO_RING_F_EVENT_IDX));
	CHECK_EQ(virtq_post_load(&vq2), 0);
	CHECK(!memcmp(&vq.st, &vq2.st, sizeof(vq.st)));
	/* The in-flight element completes, then the third is popped. */
	CHECK_EQ(virtq_push(&vq2, &e2, 8), 0);
	CHECK_EQ(virtq_pop(&vq2, &e3), 1);
	CHECK_EQ(e3.head, 2);
	CHECK_EQ(virtq_pop(&vq2, &e3), 0);
	CHECK_EQ(get_le16(ram + USED + 2), 2);
	CHECK_EQ(get_le32(ram + USED + 4 + 8), 1);
	CHECK_EQ(get_le32(ram + USED + 4 + 12), 8);

	/* A snapshot whose rings point outside RAM is refused on load. */
	vq2.st.used = RAM_SIZE;
	CHECK_EQ(virtq_post_load(&vq2), -EINVAL);
	unlink(snap_path);
}

/*
 * Restored queue state with values out of range (issue 6, bad input):
 * a queue size beyond what the device offers or not a power of two is
 * refused by post_load; a saved last_avail_idx more than the queue size
 * behind the guest's avail index breaks the queue on the first pop
 * instead of serving stale ring slots.
 */
static void test_restored_state_out_of_range(void)
{
	struct virtq vq, vq2;
	static struct virtq_elem e;

	setup(&vq, false, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_WRITE, 0);
	avail_add(0);
	virtq_init(&vq2, &mem, 0, 256);
	vq2.on_error = on_err;
	vq2.st = vq.st;
	vq2.st.size = 512; /* more than the device's 256 */
	CHECK_EQ(virtq_post_load(&vq2), -EINVAL);
	vq2.st.size = 96; /* not a power of two */
	CHECK_EQ(virtq_post_load(&vq2), -EINVAL);
	vq2.st.size = 0;
	CHECK_EQ(virtq_post_load(&vq2), -EINVAL);
	/* Saved index far behind the ring: nothing is served. */
	vq2.st = vq.st;
	CHECK_EQ(virtq_post_load(&vq2), 0);
	vq2.st.last_avail_idx = (uint16_t)(drv_avail_idx - QSZ - 1);
	expect_broken(&vq2, "restored last_avail_idx beyond the queue size");
	CHECK_EQ(get_le16(ram + USED + 2), 0);
	/* ... and one ahead of the guest's index wraps to the same refusal. */
	errors = 0;
	vq2.st = vq.st;
	vq2.st.broken = 0;
	CHECK_EQ(virtq_post_load(&vq2), 0);
	vq2.st.last_avail_idx = (uint16_t)(drv_avail_idx + 1);
	CHECK_EQ(virtq_pop(&vq2, &e), -EIO);
	CHECK_EQ(get_le16(ram + USED + 2), 0);
}

static void test_iov_copy(void)
{
	uint8_t a[3], b[5], out[8];
	struct iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};

	CHECK_EQ(buf_to_iov(iov, 2, 1, "ABCDEFGHIJ", 10), 7);
	CHECK_EQ(a[1], 'A');
	CHECK_EQ(a[2], 'B');
	CHECK_EQ(b[0], 'C');
	CHECK_EQ(b[4], 'G');
	CHECK_EQ(iov_to_buf(iov, 2, 2, out, sizeof(out)), 6);
	CHECK(!memcmp(out, "BCDEFG", 6));
	CHECK_EQ(iov_to_buf(iov, 2, 8, out, 1), 0);
}

/*
 * A live checkpoint learns what the device wrote from virtq_push: every
 * device-writable buffer of the chain (all of it, whatever the used
 * length), the used entry and index, and nothing the device only read.
 */
static bool page_dirty(const uint64_t *bm, uint64_t gpa)
{
	return bm[gpa / PAGE_SIZE / 64] >> (gpa / PAGE_SIZE % 64) & 1;
}

static unsigned dirty_pages(const uint64_t *bm)
{
	unsigned n = 0;

	for (unsigned w = 0; w < RAM_SIZE / PAGE_SIZE / 64; w++)
		n += (unsigned)__builtin_popcountll(bm[w]);
	return n;
}

static void test_push_marks_dirty(void)
{
	struct virtq vq;
	static struct virtq_elem e;
	uint64_t bm[RAM_SIZE / PAGE_SIZE / 64];

	/* Off: nothing is marked. */
	setup(&vq, false, false);
	set_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	/* Writable, pages 0x20-0x23. */
	set_desc(DESC, 1, 0x20800, 3 * 4096,
		 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(DESC, 2, 0x30000, 1, VIRTQ_DESC_F_WRITE, 0);
	avail_add(0);
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	CHECK_EQ(virtq_push(&vq, &e, 1), 0);
	CHECK_EQ(guest_mem_dirty_start(&mem), 0);
	memset(bm, 0, sizeof(bm));
	guest_mem_dirty_collect(&mem, bm);
	CHECK_EQ(dirty_pages(bm), 0);

	/* On: popped before, pushed after the start (a request in flight
	 * across it): its buffers count, though the used length is 1. */
	avail_add(0);
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	guest_mem_dirty_collect(&mem, bm);
	CHECK_EQ(dirty_pages(bm), 0); /* a pop writes nothing here */
	CHECK_EQ(virtq_push(&vq, &e, 1), 0);
	guest_mem_dirty_collect(&mem, bm);
	for (uint64_t a = 0x20000; a <= 0x23000; a += 0x1000)
		CHECK(page_dirty(bm, a));
	CHECK(page_dirty(bm, 0x30000));
	CHECK(page_dirty(bm, USED));
	CHECK(!page_dirty(bm, 0x10000)); /* only read */
	CHECK(!page_dirty(bm, DESC) && !page_dirty(bm, AVAIL));
	CHECK_EQ(dirty_pages(bm), 6);

	/* A push that fails (queue broken meanwhile) still marks the data
	 * the device wrote, but no used ring entry is written. */
	avail_add(0);
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	virtq_fail(&vq, "test");
	memset(bm, 0, sizeof(bm));
	CHECK_EQ(virtq_push(&vq, &e, 1), -EIO);
	CHECK_EQ(errors, 1);
	guest_mem_dirty_collect(&mem, bm);
	CHECK(page_dirty(bm, 0x20000) && page_dirty(bm, 0x30000));
	CHECK(!page_dirty(bm, USED));
	CHECK_EQ(dirty_pages(bm), 5);

	/* Event index: the avail_event word a pop writes, in the used ring
	 * (placed on its own page here), and the used flags. */
	setup(&vq, false, true);
	vq.st.used = 0x5ff0; /* 4 + 8 * QSZ = 68 bytes: event at 0x6034 */
	CHECK_EQ(virtq_enable(&vq), 0);
	set_desc(DESC, 0, 0x10000, 16, 0, 0);
	avail_add(0);
	memset(bm, 0, sizeof(bm));
	guest_mem_dirty_collect(&mem, bm);
	memset(bm, 0, sizeof(bm));
	CHECK_EQ(virtq_pop(&vq, &e), 1);
	guest_mem_dirty_collect(&mem, bm);
	CHECK(page_dirty(bm, 0x6000) && !page_dirty(bm, 0x5000));
	CHECK_EQ(dirty_pages(bm), 1);
	setup(&vq, false, false);
	memset(bm, 0, sizeof(bm));
	virtq_set_notify(&vq, false);
	guest_mem_dirty_collect(&mem, bm);
	CHECK(page_dirty(bm, USED));
	CHECK_EQ(dirty_pages(bm), 1);
	guest_mem_dirty_stop(&mem);
}

int main(void)
{
	ram = calloc(1, RAM_SIZE);
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	snprintf(snap_path, sizeof(snap_path), "/tmp/khyve-vq-%d.snap",
		 (int)getpid());
	RUN(test_basic_chain);
	RUN(test_indirect);
	RUN(test_hostile);
	RUN(test_enable_checks);
	RUN(test_event_idx);
	RUN(test_snapshot_mid_flight);
	RUN(test_restored_state_out_of_range);
	RUN(test_iov_copy);
	RUN(test_push_marks_dirty);
	guest_mem_dirty_free(&mem);
	free(ram);
	return unit_done();
}
