/* SPDX-License-Identifier: BSD-2-Clause */
/* virtio-rng: the driver posts writable buffers, the device fills them. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bus.h"
#include "common.h"
#include "unit.h"
#include "virtio_rng.h"

/* Big enough for 64 segments of 64 MiB (4 GiB in one chain); only the
 * pages a test writes are ever allocated. */
#define RAM_SIZE (72 * MiB)
#define LOW	 (1 * MiB) /* rings and small buffers */
#define SLOT	 6
#define QSZ	 64
#define DESC	 0x1000
#define AVAIL	 0x2000
#define USED	 0x3000
#define BUF	 0x10000

static struct bus pio, mmio;
static struct pci_bus pci;
static struct guest_mem mem;
static uint8_t *ram;
static struct virtio_rng rng;
static uint64_t common, notify;

static void wr(uint64_t addr, uint64_t v, unsigned size)
{
	bus_dispatch(&mmio, addr, &v, size, true);
}

static uint64_t rd(uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	bus_dispatch(&mmio, addr, &v, size, false);
	return v;
}

static void setup(void)
{
	uint32_t a = 0x80000000u | SLOT << 11 | PCI_COMMAND, cmd = 2;
	uint64_t base;

	memset(ram, 0, LOW);
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(pci_bus_init(&pci, &pio, &mmio, 0xC0000000ULL, 0x1000000), 0);
	CHECK_EQ(virtio_rng_init(&rng, &mem, NULL), 0);
	CHECK_EQ(pci_add_device(&pci, SLOT, 0, &rng.vp.pci), 0);
	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	bus_dispatch(&pio, 0xCFC, &cmd, 2, true);
	base = pci_bar_addr(&rng.vp.pci, VIRTIO_PCI_BAR);
	common = base + VIRTIO_PCI_COMMON_OFF;
	notify = base + VIRTIO_PCI_NOTIFY_OFF;
	wr(common + VIRTIO_PCI_COMMON_STATUS, 3, 1);
	wr(common + VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	wr(common + VIRTIO_PCI_COMMON_GF, 1, 4); /* VERSION_1 */
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xb, 1);
	wr(common + VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	wr(common + VIRTIO_PCI_COMMON_Q_SIZE, QSZ, 2);
	wr(common + VIRTIO_PCI_COMMON_Q_DESCLO, DESC, 8);
	wr(common + VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL, 8);
	wr(common + VIRTIO_PCI_COMMON_Q_USEDLO, USED, 8);
	wr(common + VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
}

static void teardown(void)
{
	virtio_rng_destroy(&rng);
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static void post(uint16_t idx, uint16_t head)
{
	put_le16(ram + AVAIL + 4 + 2 * (idx % QSZ), head);
	put_le16(ram + AVAIL + 2, (uint16_t)(idx + 1));
	wr(notify, 0, 2);
}

static unsigned nonzero(const uint8_t *p, size_t n)
{
	unsigned c = 0;

	for (size_t i = 0; i < n; i++)
		c += p[i] != 0;
	return c;
}

static void test_fill(void)
{
	uint8_t first[64];

	setup();
	put_le64(ram + DESC, BUF);
	put_le32(ram + DESC + 8, 64);
	put_le16(ram + DESC + 12, VIRTQ_DESC_F_WRITE);
	/* Not consumed before DRIVER_OK. */
	post(0, 0);
	CHECK_EQ(get_le16(ram + USED + 2), 0);
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	wr(notify, 0, 2);
	CHECK_EQ(get_le16(ram + USED + 2), 1);
	CHECK_EQ(get_le32(ram + USED + 4), 0);
	CHECK_EQ(get_le32(ram + USED + 8), 64);
	/* 64 random bytes are all zero with probability 2^-512. */
	CHECK(nonzero(ram + BUF, 64) > 32);
	memcpy(first, ram + BUF, 64);

	/* Two-segment chain: both parts filled, and fresh bytes. */
	put_le64(ram + DESC + 16, BUF + 0x1000);
	put_le32(ram + DESC + 24, 100);
	put_le16(ram + DESC + 28, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT);
	put_le16(ram + DESC + 30, 2);
	put_le64(ram + DESC + 32, BUF + 0x2000);
	put_le32(ram + DESC + 40, 28);
	put_le16(ram + DESC + 44, VIRTQ_DESC_F_WRITE);
	post(1, 1);
	CHECK_EQ(get_le16(ram + USED + 2), 2);
	CHECK_EQ(get_le32(ram + USED + 12), 1);
	CHECK_EQ(get_le32(ram + USED + 16), 128);
	CHECK(nonzero(ram + BUF + 0x1000, 100) > 50);
	CHECK(nonzero(ram + BUF + 0x2000, 28) > 10);
	CHECK(memcmp(first, ram + BUF + 0x1000, 64) != 0);
	CHECK_EQ(rng.bytes, 192);
	teardown();
}

/*
 * Paused (a restore, until the vCPUs' state is loaded), a kick is kept,
 * not served: nothing reaches guest memory until resume serves it.
 */
static void test_paused_kick_waits(void)
{
	const struct dev_ops *ops = &virtio_rng_dev_ops;

	setup();
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	put_le64(ram + DESC, BUF);
	put_le32(ram + DESC + 8, 64);
	put_le16(ram + DESC + 12, VIRTQ_DESC_F_WRITE);
	memset(ram + BUF, 0, 64);
	CHECK_EQ(ops->pause(&rng), 0);
	post(0, 0);
	CHECK_EQ(get_le16(ram + USED + 2), 0);
	CHECK_EQ(nonzero(ram + BUF, 64), 0);
	ops->resume(&rng);
	CHECK_EQ(get_le16(ram + USED + 2), 1);
	CHECK_EQ(get_le32(ram + USED + 8), 64);
	CHECK(nonzero(ram + BUF, 64) > 32);
	/* Nothing pending: a second resume serves nothing new. */
	ops->resume(&rng);
	CHECK_EQ(get_le16(ram + USED + 2), 1);
	teardown();
}

/* A stand-in for the snapshot file: each section's bytes, in order. */
static struct {
	const struct snap_desc *d;
	uint32_t inst;
	void *bytes;
} sect[8];
static unsigned nsect;

static int save_fn(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	if (nsect == ARRAY_SIZE(sect))
		return -ENOSPC;
	sect[nsect].d = d;
	sect[nsect].inst = inst;
	sect[nsect].bytes = malloc(d->state_size);
	if (!sect[nsect].bytes)
		return -ENOMEM;
	memcpy(sect[nsect++].bytes, state, d->state_size);
	return 0;
}

static int load_fn(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	for (unsigned i = 0; i < nsect; i++)
		if (sect[i].d == d && sect[i].inst == inst) {
			memcpy(state, sect[i].bytes, d->state_size);
			return 0;
		}
	return -ENOENT;
}

/*
 * A request the guest queued just before a snapshot is served after each
 * restore with bytes drawn then: never bytes the snapshot holds, and not
 * the same bytes in two clones of it (issue 15: clones share no entropy).
 */
static void test_restore_refills_fresh(void)
{
	const struct dev_ops *ops = &virtio_rng_dev_ops;
	uint8_t *saved_ram = malloc(LOW), got[2][64], marker[64];
	struct err e;

	CHECK(saved_ram != NULL);
	if (!saved_ram)
		return;
	setup();
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	put_le64(ram + DESC, BUF);
	put_le32(ram + DESC + 8, 64);
	put_le16(ram + DESC + 12, VIRTQ_DESC_F_WRITE);
	memset(marker, 0xa5, sizeof(marker));
	memcpy(ram + BUF, marker, 64); /* what the snapshot's RAM holds */
	CHECK_EQ(ops->pause(&rng), 0);
	post(0, 0); /* in flight: available, not yet served */
	nsect = 0;
	CHECK_EQ(ops->snap_foreach(&rng, SLOT * 8, save_fn, NULL), 0);
	CHECK(nsect > 0);
	memcpy(saved_ram, ram, LOW);
	teardown();
	for (int k = 0; k < 2; k++) {
		setup(); /* a restore creates the device paused */
		CHECK_EQ(ops->pause(&rng), 0);
		memcpy(ram, saved_ram, LOW);
		CHECK_EQ(ops->snap_foreach(&rng, SLOT * 8, load_fn, NULL), 0);
		err_clear(&e);
		CHECK_EQ(ops->post_load(&rng, &e), 0);
		/* Re-kicked, but nothing is served before resume. */
		CHECK_EQ(get_le16(ram + USED + 2), 0);
		CHECK(!memcmp(ram + BUF, marker, 64));
		ops->resume(&rng);
		CHECK_EQ(get_le16(ram + USED + 2), 1);
		CHECK_EQ(get_le32(ram + USED + 8), 64);
		memcpy(got[k], ram + BUF, 64);
		CHECK(memcmp(got[k], marker, 64) != 0);
		CHECK(nonzero(got[k], 64) > 32);
		teardown();
	}
	/* 64 bytes alike in two clones: probability 2^-512. */
	CHECK(memcmp(got[0], got[1], 64) != 0);
	for (unsigned i = 0; i < nsect; i++)
		free(sect[i].bytes);
	free(saved_ram);
}

static void test_hostile(void)
{
	setup();
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	put_le64(ram + DESC, RAM_SIZE - 8);
	put_le32(ram + DESC + 8, 64);
	put_le16(ram + DESC + 12, VIRTQ_DESC_F_WRITE);
	post(0, 0);
	CHECK_EQ(get_le16(ram + USED + 2), 0);
	CHECK(rd(common + VIRTIO_PCI_COMMON_STATUS, 1) &
	      VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ(rng.bytes, 0);
	teardown();
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One writable descriptor per entry i, chained to i+1 unless last. */
static void chain(unsigned first, unsigned n, uint64_t addr, uint32_t len)
{
	for (unsigned i = first; i < first + n; i++) {
		put_le64(ram + DESC + 16 * i, addr);
		put_le32(ram + DESC + 16 * i + 8, len);
		put_le16(ram + DESC + 16 * i + 12,
			 VIRTQ_DESC_F_WRITE |
				 (i + 1 < first + n ? VIRTQ_DESC_F_NEXT : 0));
		put_le16(ram + DESC + 16 * i + 14, (uint16_t)(i + 1));
	}
}

/*
 * One kick with a chain of 64 segments of 64 MiB each (4 GiB): it used to
 * keep the vCPU thread filling for seconds and report a used length of 0
 * (4 GiB in 32 bits). Now a request gets at most VIRTIO_RNG_REQ_MAX.
 */
static void test_huge_chain(void)
{
	double t0;

	setup();
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	chain(0, 64, LOW, 64 * MiB);
	t0 = now_s();
	post(0, 0);
	CHECK(now_s() - t0 < 1.0);
	CHECK_EQ(get_le16(ram + USED + 2), 1);
	CHECK_EQ(get_le32(ram + USED + 8), VIRTIO_RNG_REQ_MAX);
	CHECK_EQ(rng.bytes, VIRTIO_RNG_REQ_MAX);
	CHECK(nonzero(ram + LOW, VIRTIO_RNG_REQ_MAX) > VIRTIO_RNG_REQ_MAX / 2);
	/* nothing past what the used length says */
	CHECK_EQ(nonzero(ram + LOW + VIRTIO_RNG_REQ_MAX, 4096), 0);
	CHECK(!(rd(common + VIRTIO_PCI_COMMON_STATUS, 1) &
		VIRTIO_STATUS_NEEDS_RESET));
	teardown();
}

/* Many big requests in one kick: the kick is bounded, every one served. */
static void test_kick_budget(void)
{
	unsigned n = 16, total = 0;

	setup();
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	for (unsigned i = 0; i < n; i++) {
		chain(i, 1, LOW + (uint64_t)i * MiB, 1 * MiB);
		put_le16(ram + AVAIL + 4 + 2 * i, (uint16_t)i);
	}
	put_le16(ram + AVAIL + 2, (uint16_t)n);
	wr(notify, 0, 2);
	CHECK_EQ(get_le16(ram + USED + 2), n);
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = get_le32(ram + USED + 8 + 8 * i);

		CHECK(len >= VIRTIO_RNG_REQ_MIN); /* one or more bytes each */
		CHECK(len <= VIRTIO_RNG_REQ_MAX);
		total += len;
	}
	CHECK(total <= VIRTIO_RNG_KICK_MAX + n * VIRTIO_RNG_REQ_MIN);
	CHECK(total >= VIRTIO_RNG_KICK_MAX);
	CHECK_EQ(rng.bytes, total);
	teardown();
}

int main(void)
{
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		return 1;
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	RUN(test_fill);
	RUN(test_paused_kick_waits);
	RUN(test_restore_refills_fresh);
	RUN(test_hostile);
	RUN(test_huge_chain);
	RUN(test_kick_budget);
	munmap(ram, RAM_SIZE);
	return unit_done();
}
