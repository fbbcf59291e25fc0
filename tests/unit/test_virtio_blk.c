/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-blk against a temporary raw image, driven like Linux's
 * virtio_blk: requests are chains in guest RAM, kicked through the
 * notify area, served on the iothread, completed in the used ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bus.h"
#include "common.h"
#include "unit.h"
#include "virtio_blk.h"

#define RAM_SIZE     (4 * MiB)
#define SLOT	     4
#define QSZ	     64
#define DISK_SECTORS 2048
#define DESC	     0x1000
#define AVAIL	     0x2000
#define USED	     0x3000
#define HDR	     0x10000  /* request headers */
#define STATUS	     0x11000  /* status bytes */
#define DATA	     0x100000 /* data buffers */

static struct bus pio, mmio;
static struct pci_bus pci;
static struct guest_mem mem;
static uint8_t *ram;
static struct virtio_blk blk;
static char img[64];
static uint64_t common, notify;
static uint16_t avail_idx, used_seen;
static int g_workers = -1; /* open_blk's worker threads (-1 = default) */
static bool g_direct;	   /* open_blk with O_DIRECT */
/* open_blk's back-end, and the one it must get (AUTO: whatever comes). */
static enum virtio_blk_aio g_aio, g_want_aio;

static int irq_set(void *opaque, unsigned gsi, int level)
{
	return 0;
}

static void cfg_write(unsigned reg, uint32_t v, unsigned size)
{
	uint32_t a = 0x80000000u | SLOT << 11 | (reg & 0xfc);

	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	bus_dispatch(&pio, 0xCFC + (reg & 3), &v, size, true);
}

static uint64_t rd(uint64_t addr, unsigned size)
{
	uint64_t v = 0;

	if (bus_dispatch(&mmio, addr, &v, size, false))
		return ~0ULL;
	return v;
}

static void wr(uint64_t addr, uint64_t v, unsigned size)
{
	bus_dispatch(&mmio, addr, &v, size, true);
}

static uint64_t dev_features;

static bool start_driver(uint64_t want)
{
	uint64_t base = pci_bar_addr(&blk.vp.pci, VIRTIO_PCI_BAR);

	common = base + VIRTIO_PCI_COMMON_OFF;
	notify = base + VIRTIO_PCI_NOTIFY_OFF;
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0, 1);
	wr(common + VIRTIO_PCI_COMMON_STATUS, 3, 1);
	wr(common + VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	dev_features = rd(common + VIRTIO_PCI_COMMON_DF, 4);
	wr(common + VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	dev_features |= rd(common + VIRTIO_PCI_COMMON_DF, 4) << 32;
	want &= dev_features;
	wr(common + VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(common + VIRTIO_PCI_COMMON_GF, (uint32_t)want, 4);
	wr(common + VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	wr(common + VIRTIO_PCI_COMMON_GF, (uint32_t)(want >> 32), 4);
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xb, 1);
	if (!(rd(common + VIRTIO_PCI_COMMON_STATUS, 1) & 8))
		return false;
	memset(ram, 0, 0x10000);
	avail_idx = used_seen = 0;
	wr(common + VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	wr(common + VIRTIO_PCI_COMMON_Q_SIZE, QSZ, 2);
	wr(common + VIRTIO_PCI_COMMON_Q_DESCLO, DESC, 8);
	wr(common + VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL, 8);
	wr(common + VIRTIO_PCI_COMMON_Q_USEDLO, USED, 8);
	wr(common + VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	return rd(common + VIRTIO_PCI_COMMON_STATUS, 1) == 0xf;
}

static int open_blk(bool ro)
{
	struct virtio_blk_opts o = {.path = img,
				    .readonly = ro,
				    .serial = "khyve-disk-0",
				    .queue_size = 64,
				    .workers = g_workers,
				    .direct = g_direct,
				    .aio = g_aio};
	struct irq_line line = {irq_set, NULL, 9};
	int ret;

	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	pci_bus_init(&pci, &pio, &mmio, 0xC0000000ULL, 0x10000000ULL);
	ret = virtio_blk_init(&blk, &o, &mem, NULL, NULL, NULL);
	if (ret)
		return ret;
	if (g_want_aio != VIRTIO_BLK_AIO_AUTO)
		CHECK_EQ(blk.aio, g_want_aio);
	CHECK_EQ(pci_add_device(&pci, SLOT, 0, &blk.vp.pci), 0);
	pci_dev_set_intx(&blk.vp.pci, &line);
	cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	return 0;
}

static void close_blk(void)
{
	virtio_blk_destroy(&blk);
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static void make_image(void)
{
	uint8_t *buf = malloc(DISK_SECTORS * 512);
	int fd;

	for (unsigned i = 0; i < DISK_SECTORS * 512; i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 9));
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, buf, DISK_SECTORS * 512), DISK_SECTORS * 512);
	close(fd);
	free(buf);
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDONLY);

	CHECK_EQ(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* Descriptor helper. */
static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	uint8_t *d = ram + DESC + 16 * i;

	put_le64(d, addr);
	put_le32(d + 8, len);
	put_le16(d + 12, flags);
	put_le16(d + 14, next);
}

/* Publish head 0 and kick; wait for the used ring (up to 5 s). */
static bool submit_and_wait(uint32_t *used_len)
{
	struct timespec ts = {0, 1000000};

	put_le16(ram + AVAIL + 4 + 2 * (avail_idx % QSZ), 0);
	avail_idx++;
	__atomic_store_n((uint16_t *)(ram + AVAIL + 2), avail_idx,
			 __ATOMIC_RELEASE);
	wr(notify, 0, 2);
	for (unsigned i = 0; i < 5000; i++) {
		uint16_t u = __atomic_load_n((uint16_t *)(ram + USED + 2),
					     __ATOMIC_ACQUIRE);

		if (u != used_seen) {
			if (used_len)
				*used_len = get_le32(ram + USED + 4 +
						     8 * (used_seen % QSZ) + 4);
			used_seen = u;
			return true;
		}
		nanosleep(&ts, NULL);
	}
	return false;
}

/* header + one data buffer + status; returns status byte or -1. */
static int request(uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		   bool data_writable, uint32_t *used_len)
{
	put_le32(ram + HDR, type);
	put_le32(ram + HDR + 4, 0);
	put_le64(ram + HDR + 8, sector);
	ram[STATUS] = 0xee;
	desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	if (len) {
		desc(1, data, len,
		     VIRTQ_DESC_F_NEXT |
			     (data_writable ? VIRTQ_DESC_F_WRITE : 0),
		     2);
		desc(2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	} else {
		desc(1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	}
	if (!submit_and_wait(used_len))
		return -1;
	return ram[STATUS];
}

static void test_config(void)
{
	uint64_t dc;

	make_image();
	CHECK_EQ(open_blk(false), 0);
	dc = pci_bar_addr(&blk.vp.pci, VIRTIO_PCI_BAR) + VIRTIO_PCI_DEVICE_OFF;
	CHECK(start_driver(~0ULL));
	CHECK_EQ(rd(dc + VIRTIO_BLK_CFG_CAPACITY, 4), DISK_SECTORS);
	CHECK_EQ(rd(dc + VIRTIO_BLK_CFG_CAPACITY + 4, 4), 0);
	CHECK_EQ(rd(dc + VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);
	CHECK_EQ(rd(dc + VIRTIO_BLK_CFG_SEG_MAX, 4), 62);
	CHECK_EQ(rd(dc + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4),
		 VIRTIO_BLK_MAX_DISCARD_SEG);
	CHECK(rd(dc + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, 4) > 0);
	CHECK_EQ(rd(dc + VIRTIO_BLK_CFG_WZ_MAY_UNMAP, 1), 1);
	CHECK(dev_features & (1ULL << VIRTIO_BLK_F_FLUSH));
	CHECK(dev_features & (1ULL << VIRTIO_BLK_F_DISCARD));
	CHECK(dev_features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));
	CHECK(dev_features & (1ULL << VIRTIO_BLK_F_SEG_MAX));
	CHECK(dev_features & (1ULL << VIRTIO_BLK_F_BLK_SIZE));
	CHECK(!(dev_features & (1ULL << VIRTIO_BLK_F_RO)));
	close_blk();
}

static void test_rw_flush_id(void)
{
	struct virtio_blk_stats s;
	uint8_t file[4096];
	uint32_t ul = 0;
	uint64_t h;

	make_image();
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	/* Write 8 sectors at sector 10. */
	for (unsigned i = 0; i < 4096; i++)
		ram[DATA + i] = (uint8_t)(i ^ 0x5a);
	h = XXH64(ram + DATA, 4096, 0);
	CHECK_EQ(request(VIRTIO_BLK_T_OUT, 10, DATA, 4096, false, &ul),
		 VIRTIO_BLK_S_OK);
	CHECK_EQ(ul, 1);
	file_read(10 * 512, file, 4096);
	CHECK_EQ(XXH64(file, 4096, 0), h);
	/* Neighbours untouched. */
	file_read(9 * 512, file, 512);
	CHECK_EQ(file[511], (uint8_t)((10 * 512 - 1) * 7 + 9));

	/* Read it back split over three descriptors of 1000/96/3000. */
	put_le32(ram + HDR, VIRTIO_BLK_T_IN);
	put_le64(ram + HDR + 8, 10);
	desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA + 0x10000, 1000, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
	     2);
	desc(2, DATA + 0x20000, 96, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3);
	desc(3, DATA + 0x30000, 3000, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
	     4);
	desc(4, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	CHECK(submit_and_wait(&ul));
	CHECK_EQ(ram[STATUS], VIRTIO_BLK_S_OK);
	CHECK_EQ(ul, 4097);
	memcpy(file, ram + DATA + 0x10000, 1000);
	memcpy(file + 1000, ram + DATA + 0x20000, 96);
	memcpy(file + 1096, ram + DATA + 0x30000, 3000);
	CHECK_EQ(XXH64(file, 4096, 0), h);

	/* Last sector of the disk is readable, one past is not. */
	CHECK_EQ(request(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA, 512, true,
			 NULL),
		 VIRTIO_BLK_S_OK);
	CHECK_EQ(request(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA, 1024, true,
			 NULL),
		 VIRTIO_BLK_S_IOERR);
	CHECK_EQ(
		request(VIRTIO_BLK_T_OUT, DISK_SECTORS, DATA, 512, false, NULL),
		VIRTIO_BLK_S_IOERR);
	CHECK_EQ(request(VIRTIO_BLK_T_OUT, UINT64_MAX - 1, DATA, 1024, false,
			 NULL),
		 VIRTIO_BLK_S_IOERR);
	/* Partial sectors are refused. */
	CHECK_EQ(request(VIRTIO_BLK_T_OUT, 0, DATA, 100, false, NULL),
		 VIRTIO_BLK_S_IOERR);
	{
		int fd = open(img, O_RDONLY);

		CHECK_EQ(lseek(fd, 0, SEEK_END), DISK_SECTORS * 512);
		close(fd);
	}

	CHECK_EQ(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, &ul),
		 VIRTIO_BLK_S_OK);
	CHECK_EQ(ul, 1);
	memset(ram + DATA, 0xff, 32);
	CHECK_EQ(request(VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true, &ul),
		 VIRTIO_BLK_S_OK);
	CHECK_EQ(ul, 21);
	CHECK(!memcmp(ram + DATA, "khyve-disk-0\0\0\0\0\0\0\0\0", 20));
	CHECK_EQ(request(99, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_UNSUPP);

	virtio_blk_get_stats(&blk, &s);
	CHECK_EQ(s.requests, 10);
	CHECK_EQ(s.write_bytes, 4096);
	CHECK_EQ(s.read_bytes, 4096 + 512);
	CHECK_EQ(s.flushes, 1);
	CHECK_EQ(s.errors, 5);
	CHECK_EQ(virtio_blk_pause(&blk), 0);
	close_blk();
}

static void test_discard_write_zeroes(void)
{
	uint8_t buf[2048], zero[2048] = {0};
	uint8_t *seg = ram + DATA;

	make_image();
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	/* Write zeroes: two segments, one with the unmap flag. */
	put_le64(seg, 100);
	put_le32(seg + 8, 4);
	put_le32(seg + 12, 0);
	put_le64(seg + 16, 200);
	put_le32(seg + 24, 4);
	put_le32(seg + 28, 1);
	CHECK_EQ(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA, 32, false, NULL),
		 VIRTIO_BLK_S_OK);
	file_read(100 * 512, buf, 2048);
	CHECK(!memcmp(buf, zero, 2048));
	file_read(200 * 512, buf, 2048);
	CHECK(!memcmp(buf, zero, 2048));
	file_read(104 * 512, buf, 1);
	CHECK(buf[0] != 0 || (uint8_t)(104 * 512 * 7 + 104) == 0);
	/* Discard succeeds (the data is then unspecified). */
	put_le64(seg, 300);
	put_le32(seg + 8, 8);
	put_le32(seg + 12, 0);
	CHECK_EQ(request(VIRTIO_BLK_T_DISCARD, 0, DATA, 16, false, NULL),
		 VIRTIO_BLK_S_OK);
	/* Out of range and malformed segments. */
	put_le64(seg, DISK_SECTORS - 2);
	put_le32(seg + 8, 4);
	CHECK_EQ(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA, 16, false, NULL),
		 VIRTIO_BLK_S_IOERR);
	CHECK_EQ(request(VIRTIO_BLK_T_DISCARD, 0, DATA, 15, false, NULL),
		 VIRTIO_BLK_S_UNSUPP);
	put_le64(seg, 0);
	put_le32(seg + 12, 1); /* unmap flag is not for discard */
	CHECK_EQ(request(VIRTIO_BLK_T_DISCARD, 0, DATA, 16, false, NULL),
		 VIRTIO_BLK_S_UNSUPP);
	close_blk();
}

static void test_readonly(void)
{
	uint8_t before[512], after[512];
	int fl;

	make_image();
	CHECK_EQ(open_blk(true), 0);
	fl = fcntl(blk.fd, F_GETFL);
	CHECK_EQ(fl & O_ACCMODE, O_RDONLY);
	CHECK(start_driver(~0ULL));
	CHECK(dev_features & (1ULL << VIRTIO_BLK_F_RO));
	CHECK(!(dev_features & (1ULL << VIRTIO_BLK_F_DISCARD)));
	file_read(0, before, 512);
	memset(ram + DATA, 0x11, 512);
	CHECK_EQ(request(VIRTIO_BLK_T_OUT, 0, DATA, 512, false, NULL),
		 VIRTIO_BLK_S_IOERR);
	put_le64(ram + DATA, 0);
	put_le32(ram + DATA + 8, 1);
	put_le32(ram + DATA + 12, 0);
	CHECK_EQ(request(VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA, 16, false, NULL),
		 VIRTIO_BLK_S_IOERR);
	file_read(0, after, 512);
	CHECK(!memcmp(before, after, 512));
	CHECK_EQ(request(VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL),
		 VIRTIO_BLK_S_OK);
	CHECK(!memcmp(ram + DATA, before, 512));
	close_blk();
}

static void test_pause_resume_reset(void)
{
	struct timespec ts = {0, 50000000};
	uint16_t u;

	make_image();
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	CHECK_EQ(virtio_blk_pause(&blk), 0);
	put_le32(ram + HDR, VIRTIO_BLK_T_FLUSH);
	desc(0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	put_le16(ram + AVAIL + 4, 0);
	avail_idx++;
	put_le16(ram + AVAIL + 2, avail_idx);
	wr(notify, 0, 2);
	nanosleep(&ts, NULL);
	u = get_le16(ram + USED + 2);
	CHECK_EQ(u, 0); /* nothing served while paused */
	virtio_blk_resume(&blk);
	for (unsigned i = 0; i < 500 && get_le16(ram + USED + 2) == 0; i++)
		nanosleep(&(struct timespec){0, 10000000}, NULL);
	CHECK_EQ(get_le16(ram + USED + 2), 1);
	used_seen = 1;

	/* Reset, then the driver starts over from scratch. */
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0, 1);
	CHECK_EQ(rd(common + VIRTIO_PCI_COMMON_STATUS, 1), 0);
	CHECK(!blk.vp.vqs[0].st.ready);
	CHECK_EQ(blk.vp.vqs[0].st.last_avail_idx, 0);
	CHECK(start_driver(~0ULL));
	CHECK_EQ(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL),
		 VIRTIO_BLK_S_OK);
	close_blk();
}

static void test_hostile(void)
{
	struct timespec ts = {0, 1000000};
	unsigned i;

	make_image();
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	/* A request with no writable status byte breaks the queue. */
	put_le32(ram + HDR, VIRTIO_BLK_T_IN);
	desc(0, HDR, 16, 0, 0);
	put_le16(ram + AVAIL + 4, 0);
	put_le16(ram + AVAIL + 2, 1);
	wr(notify, 0, 2);
	for (i = 0; i < 5000 &&
		    !(virtio_pci_status(&blk.vp) & VIRTIO_STATUS_NEEDS_RESET);
	     i++)
		nanosleep(&ts, NULL);
	CHECK(virtio_pci_status(&blk.vp) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ(get_le16(ram + USED + 2), 0);

	/* After reset, a data buffer outside RAM does the same. */
	CHECK(start_driver(~0ULL));
	CHECK(!(virtio_pci_status(&blk.vp) & VIRTIO_STATUS_NEEDS_RESET));
	CHECK_EQ(request(VIRTIO_BLK_T_IN, 0, RAM_SIZE - 256, 512, true, NULL),
		 -1);
	CHECK(virtio_pci_status(&blk.vp) & VIRTIO_STATUS_NEEDS_RESET);
	close_blk();
}

/* Slot @s of a batch: descriptors 3s..3s+2, header/status per slot. */
static void batch_req(unsigned s, uint32_t type, uint64_t sector, uint64_t data,
		      uint32_t len)
{
	put_le32(ram + HDR + 16 * s, type);
	put_le32(ram + HDR + 16 * s + 4, 0);
	put_le64(ram + HDR + 16 * s + 8, sector);
	ram[STATUS + s] = 0xee;
	desc(3 * s, HDR + 16 * s, 16, VIRTQ_DESC_F_NEXT, 3 * s + 1);
	desc(3 * s + 1, data, len,
	     VIRTQ_DESC_F_NEXT |
		     (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0),
	     3 * s + 2);
	desc(3 * s + 2, STATUS + s, 1, VIRTQ_DESC_F_WRITE, 0);
	put_le16(ram + AVAIL + 4 + 2 * (avail_idx % QSZ), (uint16_t)(3 * s));
	avail_idx++;
}

static void batch_kick(void)
{
	__atomic_store_n((uint16_t *)(ram + AVAIL + 2), avail_idx,
			 __ATOMIC_RELEASE);
	wr(notify, 0, 2);
}

/* Wait until the used ring reaches avail_idx; check each head once. */
static bool batch_wait(unsigned n)
{
	bool seen[QSZ] = {false};
	unsigned i;

	for (i = 0; i < 5000; i++) {
		if (__atomic_load_n((uint16_t *)(ram + USED + 2),
				    __ATOMIC_ACQUIRE) == avail_idx)
			break;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	if (i == 5000)
		return false;
	for (; used_seen != avail_idx; used_seen++) {
		uint32_t id = get_le32(ram + USED + 4 + 8 * (used_seen % QSZ));

		if (id % 3 || id / 3 >= n || seen[id / 3])
			return false;
		seen[id / 3] = true;
	}
	return true;
}

#define NPAR 20 /* requests per kick: 60 of the 64 descriptors */

/*
 * Many requests in one kick run on the worker pool and may complete in
 * any order: every one completes exactly once with the right data.
 */
static void test_parallel(void)
{
	struct virtio_blk_stats s;
	uint8_t file[4096];

	make_image();
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	for (unsigned k = 0; k < NPAR; k++) {
		memset(ram + DATA + 4096 * k, (int)(k + 1), 4096);
		batch_req(k, VIRTIO_BLK_T_OUT, 16 * k, DATA + 4096 * k, 4096);
	}
	batch_kick();
	CHECK(batch_wait(NPAR));
	for (unsigned k = 0; k < NPAR; k++) {
		CHECK_EQ(ram[STATUS + k], VIRTIO_BLK_S_OK);
		file_read(16 * 512 * k, file, 4096);
		CHECK(file[0] == k + 1 && file[4095] == k + 1);
	}
	/* Read them back into other buffers, in reverse disk order. */
	memset(ram + DATA, 0, 4096 * NPAR);
	for (unsigned k = 0; k < NPAR; k++)
		batch_req(k, VIRTIO_BLK_T_IN, 16 * (NPAR - 1 - k),
			  DATA + 4096 * k, 4096);
	batch_kick();
	CHECK(batch_wait(NPAR));
	for (unsigned k = 0; k < NPAR; k++) {
		CHECK_EQ(ram[STATUS + k], VIRTIO_BLK_S_OK);
		CHECK_EQ(ram[DATA + 4096 * k], NPAR - k);
		CHECK_EQ(ram[DATA + 4096 * k + 4095], NPAR - k);
	}
	virtio_blk_get_stats(&blk, &s);
	CHECK_EQ(s.requests, 2 * NPAR);
	CHECK_EQ(s.write_bytes, 4096 * NPAR);
	CHECK_EQ(s.read_bytes, 4096 * NPAR);
	CHECK_EQ(s.errors, 0);

	/* Pause returns only when no popped request is left unpushed. */
	for (unsigned k = 0; k < NPAR; k++)
		batch_req(k, VIRTIO_BLK_T_OUT, 16 * k, DATA + 4096 * k, 4096);
	batch_kick();
	CHECK_EQ(virtio_blk_pause(&blk), 0);
	CHECK_EQ(blk.vp.vqs[0].st.used_idx, blk.vp.vqs[0].st.last_avail_idx);
	CHECK_EQ(get_le16(ram + USED + 2), blk.vp.vqs[0].st.used_idx);
	CHECK_EQ(blk.inflight, 0);
	virtio_blk_resume(&blk);
	CHECK(batch_wait(NPAR));

	/* A reset with requests in flight waits for them, then the queue
	 * is clean and the driver can start over. */
	for (unsigned k = 0; k < NPAR; k++)
		batch_req(k, VIRTIO_BLK_T_IN, 16 * k, DATA + 4096 * k, 4096);
	batch_kick();
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0, 1);
	CHECK_EQ(blk.inflight, 0);
	CHECK_EQ(blk.vp.vqs[0].st.last_avail_idx, 0);
	CHECK(start_driver(~0ULL));
	CHECK_EQ(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL),
		 VIRTIO_BLK_S_OK);
	CHECK_EQ(virtio_blk_pause(&blk), 0);
	close_blk();
}

/*
 * O_DIRECT goes through a bounce buffer per thread: parallel requests on
 * unaligned guest buffers still land whole. Needs a file system with
 * O_DIRECT (not tmpfs): the image goes to /var/tmp for this test.
 */
static void test_direct(void)
{
	char saved[64];
	int fd;

	memcpy(saved, img, sizeof(saved));
	snprintf(img, sizeof(img), "/var/tmp/khyve-blk-%d.img", (int)getpid());
	make_image();
	fd = open(img, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		/* EINVAL: the file system refuses O_DIRECT (tmpfs); else a bug. */
		if (errno == EINVAL)
			SKIP("no O_DIRECT under /var/tmp: %s", strerror(errno));
		else
			CHECK(fd >= 0);
		unlink(img);
		memcpy(img, saved, sizeof(img));
		return;
	}
	close(fd);
	g_direct = true;
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	for (unsigned k = 0; k < NPAR; k++) {
		/* Odd addresses: O_DIRECT itself would refuse them. */
		memset(ram + DATA + 4097 * k + 1, (int)(k + 7), 4096);
		batch_req(k, VIRTIO_BLK_T_OUT, 16 * k, DATA + 4097 * k + 1,
			  4096);
	}
	batch_kick();
	CHECK(batch_wait(NPAR));
	memset(ram + DATA, 0, 4097 * NPAR + 1);
	for (unsigned k = 0; k < NPAR; k++)
		batch_req(k, VIRTIO_BLK_T_IN, 16 * k, DATA + 4097 * k + 1,
			  4096);
	batch_kick();
	CHECK(batch_wait(NPAR));
	for (unsigned k = 0; k < NPAR; k++) {
		CHECK_EQ(ram[STATUS + k], VIRTIO_BLK_S_OK);
		CHECK_EQ(ram[DATA + 4097 * k + 1], k + 7);
		CHECK_EQ(ram[DATA + 4097 * k + 4096], k + 7);
	}
	close_blk();
	g_direct = false;
	unlink(img);
	memcpy(img, saved, sizeof(img));
}

static void test_open_errors(void)
{
	struct virtio_blk_opts o = {.path = "/nonexistent/disk.img",
				    .workers = -1};
	struct err e = {0};
	int fd;

	/* Said in the error returned (the caller prints it), not logged. */
	CHECK_EQ(virtio_blk_init(&blk, &o, &mem, NULL, NULL, &e), -ENOENT);
	CHECK(!strcmp(e.msg, "cannot open /nonexistent/disk.img: No such file "
			     "or directory"));
	CHECK_EQ(e.code, -ENOENT);
	/* Not a whole number of sectors. */
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK_EQ(write(fd, "abc", 3), 3);
	close(fd);
	o.path = img;
	CHECK_EQ(virtio_blk_init(&blk, &o, &mem, NULL, NULL, &e), -EINVAL);
	CHECK(strstr(e.msg, "is not a regular file of whole 512-byte sectors"));
	make_image();
	o.workers = VIRTIO_BLK_MAX_WORKERS + 1;
	CHECK_EQ(virtio_blk_init(&blk, &o, &mem, NULL, NULL, NULL), -EINVAL);
}

/* O_DIRECT on aligned guest buffers: io_uring takes them as they are. */
static void test_direct_aligned(void)
{
	char saved[64];
	int fd;

	memcpy(saved, img, sizeof(saved));
	snprintf(img, sizeof(img), "/var/tmp/khyve-blka-%d.img", (int)getpid());
	make_image();
	fd = open(img, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		CHECK_EQ(errno, EINVAL);
		SKIP("no O_DIRECT under /var/tmp");
		unlink(img);
		memcpy(img, saved, sizeof(img));
		return;
	}
	close(fd);
	g_direct = true;
	CHECK_EQ(open_blk(false), 0);
	CHECK(start_driver(~0ULL));
	for (unsigned k = 0; k < NPAR; k++) {
		memset(ram + DATA + 4096 * k, (int)(k + 9), 4096);
		batch_req(k, VIRTIO_BLK_T_OUT, 8 * k, DATA + 4096 * k, 4096);
	}
	batch_kick();
	CHECK(batch_wait(NPAR));
	memset(ram + DATA, 0, 4096 * NPAR);
	for (unsigned k = 0; k < NPAR; k++)
		batch_req(k, VIRTIO_BLK_T_IN, 8 * k, DATA + 4096 * k, 4096);
	batch_kick();
	CHECK(batch_wait(NPAR));
	for (unsigned k = 0; k < NPAR; k++) {
		CHECK_EQ(ram[STATUS + k], VIRTIO_BLK_S_OK);
		CHECK_EQ(ram[DATA + 4096 * k], k + 9);
		CHECK_EQ(ram[DATA + 4096 * k + 4095], k + 9);
	}
	close_blk();
	g_direct = false;
	unlink(img);
	memcpy(img, saved, sizeof(img));
}

static void test_aio_names_and_defaults(void)
{
	enum virtio_blk_aio a = VIRTIO_BLK_AIO_AUTO;

	CHECK_EQ(virtio_blk_aio_parse("io_uring", &a), 0);
	CHECK_EQ(a, VIRTIO_BLK_AIO_IO_URING);
	CHECK_EQ(virtio_blk_aio_parse("threads", &a), 0);
	CHECK_EQ(a, VIRTIO_BLK_AIO_THREADS);
	CHECK_EQ(virtio_blk_aio_parse("sync", &a), 0);
	CHECK_EQ(a, VIRTIO_BLK_AIO_SYNC);
	CHECK_EQ(virtio_blk_aio_parse("auto", &a), -EINVAL);
	CHECK_EQ(virtio_blk_aio_parse("native", &a), -EINVAL);
	CHECK_EQ(virtio_blk_aio_parse("", &a), -EINVAL);
	CHECK(!strcmp(virtio_blk_aio_name(VIRTIO_BLK_AIO_IO_URING),
		      "io_uring"));
	CHECK(!strcmp(virtio_blk_aio_name((enum virtio_blk_aio)9), "?"));
	/* No pool where the iothread and the vCPU already fill the CPUs. */
	CHECK_EQ(virtio_blk_default_workers(1, 256), 0);
	CHECK_EQ(virtio_blk_default_workers(2, 256), 0);
	CHECK_EQ(virtio_blk_default_workers(-1, 256), 0); /* sysconf failed */
	CHECK_EQ(virtio_blk_default_workers(4, 256), 2);
	CHECK_EQ(virtio_blk_default_workers(64, 256), 8);
	/* Never more than the queue can hold requests. */
	CHECK_EQ(virtio_blk_default_workers(64, 4), 2);
}

/* Does this kernel give us an io_uring at all? */
static bool have_io_uring(void)
{
	struct io_uring r;

	if (io_uring_queue_init(4, &r, 0))
		return false;
	io_uring_queue_exit(&r);
	return true;
}

/*
 * A seccomp profile that refuses io_uring_setup with EPERM (as container
 * runtimes' do): the disk falls back to the threads back-end (sync when
 * the machine's default is no pool) and serves requests all the same.
 * In a child: the filter cannot be taken off again.
 */
static void test_io_uring_refused(void)
{
	pid_t pid = fork();
	int st = 0;

	CHECK(pid >= 0);
	if (pid == 0) {
		scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);

		if (!ctx ||
		    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
				     SCMP_SYS(io_uring_setup), 0) ||
		    seccomp_load(ctx))
			_exit(3);
		g_aio = VIRTIO_BLK_AIO_AUTO;
		g_want_aio = virtio_blk_default_workers(
				     sysconf(_SC_NPROCESSORS_ONLN), 64)
				     ? VIRTIO_BLK_AIO_THREADS
				     : VIRTIO_BLK_AIO_SYNC;
		test_rw_flush_id();
		/* Asked for by name: the same fallback (with a warning). */
		g_aio = VIRTIO_BLK_AIO_IO_URING;
		g_workers = 2;
		g_want_aio = VIRTIO_BLK_AIO_THREADS;
		test_parallel();
		/* Its CHECK lines are printed; the parent counts the rest. */
		fflush(stdout);
		_exit(unit_failed ? 1 : 0);
	}
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
}

int main(void)
{
	ram = calloc(1, RAM_SIZE);
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	snprintf(img, sizeof(img), "/tmp/khyve-blk-%d.img", (int)getpid());
	RUN(test_aio_names_and_defaults);
	/* Default: io_uring wherever the kernel has it. */
	if (have_io_uring())
		g_want_aio = VIRTIO_BLK_AIO_IO_URING;
	else
		SKIP("no io_uring here: the default falls back");
	RUN(test_config);
	RUN(test_rw_flush_id);
	RUN(test_discard_write_zeroes);
	RUN(test_readonly);
	RUN(test_pause_resume_reset);
	RUN(test_hostile);
	RUN(test_parallel);
	RUN(test_direct);
	RUN(test_direct_aligned);
	/* A pool of threads. */
	g_aio = g_want_aio = VIRTIO_BLK_AIO_THREADS;
	g_workers = 4;
	RUN(test_rw_flush_id);
	RUN(test_discard_write_zeroes);
	RUN(test_parallel);
	RUN(test_pause_resume_reset);
	/* (test_hostile: pop_req's checks, the same for every back-end;
	 * it waits out 5 s on purpose, so it runs for two of them.) */
	RUN(test_direct);
	RUN(test_direct_aligned);
	/* The same on the iothread alone (sync, workers=0). */
	g_aio = VIRTIO_BLK_AIO_AUTO;
	g_want_aio = VIRTIO_BLK_AIO_SYNC;
	g_workers = 0;
	RUN(test_rw_flush_id);
	RUN(test_parallel);
	RUN(test_pause_resume_reset);
	RUN(test_hostile);
	RUN(test_direct_aligned);
	g_workers = -1;
	g_want_aio = VIRTIO_BLK_AIO_AUTO;
	RUN(test_open_errors);
	RUN(test_io_uring_refused);
	unlink(img);
	free(ram);
	return unit_done();
}
