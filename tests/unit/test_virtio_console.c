/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-console with pipes (and a real listening socket) as the chardev
 * back-end, driven through crafted virtqueues in a fake guest RAM.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "common.h"
#include "unit.h"
#include "unit_snap.h"
#include "virtio_console.h"

#define RAM_SIZE (1 * MiB)
#define SLOT	 5
#define QSZ	 8
#define DESC(q)	 (0x1000 + 0x4000 * (q))
#define AVAIL(q) (0x2000 + 0x4000 * (q))
#define USED(q)	 (0x3000 + 0x4000 * (q))
#define RXBUF	 0x20000
#define TXBUF	 0x30000
#define RXQ	 VIRTIO_CONSOLE_RXQ
#define TXQ	 VIRTIO_CONSOLE_TXQ

static struct bus pio, mmio;
static struct pci_bus pci;
static struct guest_mem mem;
static uint8_t *ram;
static struct virtio_console con;
static uint64_t common, notify, devc;
static int host_in = -1;  /* we write: the device's input */
static int host_out = -1; /* we read: the device's output */
static uint16_t avail_idx[2];
static bool start_paused; /* next attach() is for a restore */

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

static void msleep(unsigned ms)
{
	nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000},
		  NULL);
}

static uint16_t used_idx(unsigned q)
{
	return __atomic_load_n((uint16_t *)(ram + USED(q) + 2),
			       __ATOMIC_ACQUIRE);
}

/* The device's threads push; wait for it (bounded, not a fixed sleep). */
static bool wait_used(unsigned q, uint16_t want)
{
	return WAIT_UNTIL(used_idx(q) == want, UNIT_WAIT_S);
}

/* The device holds @len bytes of input and watches the back-end or not. */
static bool input_is(uint32_t len, bool watched)
{
	bool ok;

	pthread_mutex_lock(&con.lock);
	ok = con.st.in_len == len && con.in_watched == watched;
	pthread_mutex_unlock(&con.lock);
	return ok;
}

static uint32_t in_len(void)
{
	uint32_t n;

	pthread_mutex_lock(&con.lock);
	n = con.st.in_len;
	pthread_mutex_unlock(&con.lock);
	return n;
}

static uint8_t status(void)
{
	return (uint8_t)rd(common + VIRTIO_PCI_COMMON_STATUS, 1);
}

/* Reset-to-running, as a driver does: features, both queues, DRIVER_OK. */
static void driver_init(uint64_t features)
{
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0, 1);
	memset(ram, 0, 0x10000);
	avail_idx[0] = avail_idx[1] = 0;
	wr(common + VIRTIO_PCI_COMMON_STATUS, 3, 1);
	wr(common + VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(common + VIRTIO_PCI_COMMON_GF, (uint32_t)features, 4);
	wr(common + VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	wr(common + VIRTIO_PCI_COMMON_GF, 1, 4);
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xb, 1);
	for (unsigned q = 0; q < 2; q++) {
		wr(common + VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		wr(common + VIRTIO_PCI_COMMON_Q_SIZE, QSZ, 2);
		wr(common + VIRTIO_PCI_COMMON_Q_DESCLO, DESC(q), 8);
		wr(common + VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL(q), 8);
		wr(common + VIRTIO_PCI_COMMON_Q_USEDLO, USED(q), 8);
		wr(common + VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	}
	wr(common + VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
}

static void attach(struct virtio_console *c, uint16_t cols, uint16_t rows,
		   struct chardev *cd)
{
	uint32_t a = 0x80000000u | SLOT << 11 | PCI_COMMAND, cmd = 2;
	struct virtio_console_opts o = {.cd = cd, .cols = cols, .rows = rows,
					.start_paused = start_paused};
	uint64_t base;

	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(pci_bus_init(&pci, &pio, &mmio, 0xC0000000ULL, 0x1000000), 0);
	CHECK_EQ(virtio_console_init(c, &o, &mem, NULL, NULL), 0);
	CHECK_EQ(pci_add_device(&pci, SLOT, 0, &c->vp.pci), 0);
	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	bus_dispatch(&pio, 0xCFC, &cmd, 2, true);
	base = pci_bar_addr(&c->vp.pci, VIRTIO_PCI_BAR);
	common = base + VIRTIO_PCI_COMMON_OFF;
	notify = base + VIRTIO_PCI_NOTIFY_OFF;
	devc = base + VIRTIO_PCI_DEVICE_OFF;
}

/* A device on two pipes; the driver is not set up yet. */
static void setup_pipes(uint16_t cols, uint16_t rows)
{
	struct chardev *cd;
	int in[2], out[2];

	memset(ram, 0, RAM_SIZE);
	CHECK_EQ(pipe2(in, O_CLOEXEC), 0);
	CHECK_EQ(pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
	CHECK_EQ(chardev_open_fds(&cd, in[0], out[1], true), 0);
	host_in = in[1];
	host_out = out[0];
	attach(&con, cols, rows, cd);
}

static void teardown(void)
{
	virtio_console_destroy(&con);
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	if (host_in >= 0)
		close(host_in);
	if (host_out >= 0)
		close(host_out);
	host_in = host_out = -1;
}

static void desc(unsigned q, unsigned i, uint64_t addr, uint32_t len,
		 uint16_t flags, uint16_t next)
{
	uint8_t *d = ram + DESC(q) + 16 * i;

	put_le64(d, addr);
	put_le32(d + 8, len);
	put_le16(d + 12, flags);
	put_le16(d + 14, next);
}

static void post(unsigned q, uint16_t head)
{
	uint16_t idx = avail_idx[q]++;

	put_le16(ram + AVAIL(q) + 4 + 2 * (idx % QSZ), head);
	__atomic_store_n((uint16_t *)(ram + AVAIL(q) + 2), avail_idx[q],
			 __ATOMIC_RELEASE);
	wr(notify + q * VIRTIO_PCI_NOTIFY_MULT, q, 2);
}

static uint32_t used_len(unsigned q, uint16_t n)
{
	return get_le32(ram + USED(q) + 8 + 8 * (n % QSZ));
}

/* Read exactly @len bytes from @fd, waiting up to UNIT_WAIT_S. */
static ssize_t read_all(int fd, void *buf, size_t len)
{
	uint64_t end = unit_now_ms() + UNIT_WAIT_S * 1000;
	size_t got = 0;

	while (got < len && unit_now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 10) != 1)
			continue;
		n = read(fd, (uint8_t *)buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static unsigned nsec;
static const char *last_sec;
static int count_sec(void *ctx, const struct snap_desc *d, uint32_t inst,
		     void *state)
{
	nsec++;
	last_sec = d->name;
	return 0;
}

static void test_config(void)
{
	setup_pipes(132, 43);
	CHECK_EQ(rd(devc, 2), 132);
	CHECK_EQ(rd(devc + 2, 2), 43);
	CHECK_EQ(rd(devc + 4, 4), 0); /* max_nr_ports: no MULTIPORT */
	wr(common + VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	CHECK_EQ(rd(common + VIRTIO_PCI_COMMON_DF, 4) & 0xffffff,
		 (1u << VIRTIO_CONSOLE_F_SIZE) |
			 (1u << VIRTIO_CONSOLE_F_EMERG_WRITE));
	CHECK_EQ(rd(common + VIRTIO_PCI_COMMON_NUMQ, 2), 2);
	CHECK_EQ(con.vp.pci.st.cfg[2] | con.vp.pci.st.cfg[3] << 8,
		 VIRTIO_PCI_DEVICE_BASE + VIRTIO_ID_CONSOLE);
	/* pci_dev, virtio_pci, rx, tx, virtio_console */
	CHECK_EQ(virtio_pci_snap_foreach(&con.vp, 0, count_sec, NULL), 0);
	CHECK_EQ(nsec, 5);
	CHECK(last_sec && !strcmp(last_sec, "virtio_console"));
	check_desc_exact(&virtio_console_snap, struct virtio_console_state, NULL,
			 0);
	teardown();

	/* Without a size, F_SIZE is not offered and cols/rows read 0. */
	setup_pipes(0, 0);
	CHECK_EQ(rd(devc, 4), 0);
	wr(common + VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	CHECK_EQ(rd(common + VIRTIO_PCI_COMMON_DF, 4) & 0xffffff,
		 1u << VIRTIO_CONSOLE_F_EMERG_WRITE);
	teardown();
}

static void test_tx(void)
{
	struct virtio_console_stats st;
	char got[64];

	setup_pipes(0, 0);
	driver_init(0);
	/* One chain, two readable segments. */
	memcpy(ram + TXBUF, "hello ", 6);
	memcpy(ram + TXBUF + 0x100, "world\n", 6);
	desc(TXQ, 0, TXBUF, 6, VIRTQ_DESC_F_NEXT, 1);
	desc(TXQ, 1, TXBUF + 0x100, 6, 0, 0);
	post(TXQ, 0);
	CHECK(wait_used(TXQ, 1));
	CHECK_EQ(used_len(TXQ, 0), 0);
	CHECK_EQ(read_all(host_out, got, 12), 12);
	CHECK(!memcmp(got, "hello world\n", 12));
	/* Emergency write: one byte through config space. */
	wr(devc + 8, 'Z', 4);
	CHECK_EQ(read_all(host_out, got, 1), 1);
	CHECK_EQ(got[0], 'Z');
	virtio_console_get_stats(&con, &st);
	CHECK_EQ(st.tx_bytes, 13);
	CHECK_EQ(st.tx_dropped, 0);
	teardown();
}

static off_t file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/*
 * A file: back-end used to get every byte of a chain that names guest RAM
 * over and over (1024 segments: 1024 x RAM per kick). A chain now yields
 * at most VIRTIO_CONSOLE_TX_CHAIN_MAX, the rest is counted as dropped, and
 * chains past a kick's budget are still all served.
 */
static void test_tx_bounded(void)
{
	struct virtio_console_stats st;
	struct chardev *cd;
	char path[64], spec[80];
	struct err err;
	const uint32_t seg = 768 * 1024;

	snprintf(path, sizeof(path), "/tmp/khyve-vcon-%d.out", (int)getpid());
	snprintf(spec, sizeof(spec), "file:%s", path);
	memset(ram, 0, RAM_SIZE);
	CHECK_EQ(chardev_open(&cd, spec, 0, &err), 0);
	attach(&con, 0, 0, cd);
	driver_init(0);
	memset(ram + 0x40000, 'x', seg);
	for (unsigned i = 0; i < QSZ; i++)
		desc(TXQ, i, 0x40000, seg, i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0,
		     (uint16_t)(i + 1));
	post(TXQ, 0);
	CHECK(wait_used(TXQ, 1));
	CHECK_EQ(file_size(path), VIRTIO_CONSOLE_TX_CHAIN_MAX);
	virtio_console_get_stats(&con, &st);
	CHECK_EQ(st.tx_bytes, VIRTIO_CONSOLE_TX_CHAIN_MAX);
	CHECK_EQ(st.tx_dropped, (uint64_t)QSZ * seg - VIRTIO_CONSOLE_TX_CHAIN_MAX);

	/* 8 chains of 768 KiB in one kick: over the budget, all served. */
	for (unsigned i = 0; i < QSZ; i++)
		desc(TXQ, i, 0x40000, seg, 0, 0);
	for (unsigned i = 0; i < QSZ; i++) {
		uint16_t idx = avail_idx[TXQ]++;

		put_le16(ram + AVAIL(TXQ) + 4 + 2 * (idx % QSZ), (uint16_t)i);
	}
	__atomic_store_n((uint16_t *)(ram + AVAIL(TXQ) + 2), avail_idx[TXQ],
			 __ATOMIC_RELEASE);
	wr(notify + TXQ * VIRTIO_PCI_NOTIFY_MULT, TXQ, 2);
	CHECK(wait_used(TXQ, 1 + QSZ));
	CHECK_EQ(file_size(path),
		 VIRTIO_CONSOLE_TX_CHAIN_MAX + (off_t)QSZ * seg);
	teardown();
	unlink(path);
}

static void test_rx(void)
{
	struct virtio_console_stats st;
	char big[6000];

	setup_pipes(0, 0);
	/* Input before any driver: held in the device, not lost. */
	CHECK_EQ(write(host_in, "early\n", 6), 6);
	msleep(50);
	driver_init(0);
	CHECK_EQ(used_idx(RXQ), 0);
	desc(RXQ, 0, RXBUF, 64, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 0);
	CHECK(wait_used(RXQ, 1));
	CHECK_EQ(used_len(RXQ, 0), 6);
	CHECK(!memcmp(ram + RXBUF, "early\n", 6));

	/* A buffer waiting: the next input goes straight in. */
	desc(RXQ, 1, RXBUF + 0x1000, 64, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 1);
	CHECK_EQ(write(host_in, "x", 1), 1);
	CHECK(wait_used(RXQ, 2));
	CHECK_EQ(used_len(RXQ, 1), 1);
	CHECK_EQ(ram[RXBUF + 0x1000], 'x');

	/*
	 * More than the device holds, with no buffer posted: it keeps
	 * VIRTIO_CONSOLE_IN_MAX and leaves the rest in the pipe; then
	 * 2 KiB buffers take all of it, in order.
	 */
	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	CHECK_EQ(write(host_in, big, sizeof(big)), (ssize_t)sizeof(big));
	CHECK(WAIT_UNTIL(input_is(VIRTIO_CONSOLE_IN_MAX, false), UNIT_WAIT_S));
	for (unsigned k = 0; k < 3; k++) {
		uint16_t d = (uint16_t)(2 + k);

		desc(RXQ, d, RXBUF + 0x2000 + 0x800 * k, 0x800,
		     VIRTQ_DESC_F_WRITE, 0);
		post(RXQ, d);
		CHECK(wait_used(RXQ, (uint16_t)(3 + k)));
	}
	CHECK_EQ(used_len(RXQ, 2), 0x800);
	CHECK_EQ(used_len(RXQ, 3), 0x800);
	CHECK_EQ(used_len(RXQ, 4), sizeof(big) - 0x1000);
	CHECK(!memcmp(ram + RXBUF + 0x2000, big, sizeof(big)));
	virtio_console_get_stats(&con, &st);
	CHECK_EQ(st.rx_bytes, 7 + sizeof(big));
	teardown();
}

static void test_hostile(void)
{
	uint8_t before[64];

	setup_pipes(0, 0);
	driver_init(0);
	/* A receive buffer the device may not write: NEEDS_RESET, untouched. */
	memset(ram + RXBUF, 0xee, 64);
	desc(RXQ, 0, RXBUF, 64, 0, 0);
	post(RXQ, 0);
	CHECK_EQ(write(host_in, "hi", 2), 2);
	CHECK(WAIT_UNTIL(status() & VIRTIO_STATUS_NEEDS_RESET, UNIT_WAIT_S));
	CHECK_EQ(used_idx(RXQ), 0);
	memset(before, 0xee, sizeof(before));
	CHECK(!memcmp(ram + RXBUF, before, 64));

	/* Reset clears it; the input held meanwhile reaches the new driver. */
	driver_init(0);
	CHECK(!(status() & VIRTIO_STATUS_NEEDS_RESET));
	desc(RXQ, 0, RXBUF, 64, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 0);
	CHECK(wait_used(RXQ, 1));
	CHECK_EQ(used_len(RXQ, 0), 2);
	CHECK(!memcmp(ram + RXBUF, "hi", 2));

	/* Transmit buffer past the end of guest RAM. */
	desc(TXQ, 0, RAM_SIZE - 8, 64, 0, 0);
	post(TXQ, 0);
	CHECK(WAIT_UNTIL(status() & VIRTIO_STATUS_NEEDS_RESET, UNIT_WAIT_S));
	CHECK_EQ(used_idx(TXQ), 0);

	/* A descriptor loop on the transmitq after another reset. */
	driver_init(0);
	desc(TXQ, 0, TXBUF, 4, VIRTQ_DESC_F_NEXT, 1);
	desc(TXQ, 1, TXBUF, 4, VIRTQ_DESC_F_NEXT, 0);
	post(TXQ, 0);
	CHECK(WAIT_UNTIL(status() & VIRTIO_STATUS_NEEDS_RESET, UNIT_WAIT_S));
	CHECK_EQ(used_idx(TXQ), 0);
	{
		struct virtio_console_stats st;

		virtio_console_get_stats(&con, &st);
		CHECK_EQ(st.tx_bytes, 0); /* nothing of the bad chains went out */
	}
	teardown();
}

/* Every section of @c into a snapshot file; then into @d from it. */
static int save_cb(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	return snap_write_section(ctx, d, inst, state);
}

struct rd_ctx {
	struct snap_reader *r;
	struct err err;
};

static int load_cb(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	struct rd_ctx *c = ctx;

	return snap_read_section(c->r, d, inst, state, &c->err);
}

static void test_snapshot(void)
{
	char path[] = "/tmp/khyve-unit-vcon-XXXXXX";
	struct snap_host_info host;
	struct snap_writer *w;
	struct rd_ctx rc = {0};
	struct chardev *cd;
	int fd, in2[2], out2[2];

	setup_pipes(80, 25);
	driver_init(0);
	/* Input the guest has not taken yet: no receive buffer posted. */
	CHECK_EQ(write(host_in, "pending input\n", 14), 14);
	CHECK(WAIT_UNTIL(in_len() == 14, UNIT_WAIT_S));
	virtio_console_pause(&con);
	/*
	 * Paused: new input stays in the back-end, not in the state. (Here
	 * and below a sleep only gives a bug the chance to show; the check
	 * cannot fail for want of time.)
	 */
	CHECK_EQ(write(host_in, "later", 5), 5);
	msleep(50);
	CHECK_EQ(con.st.in_len, 14);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	snap_host_info_probe(&host, NULL);
	CHECK_EQ(snap_writer_open(&w, path, &host, NULL), 0);
	CHECK_EQ(virtio_pci_snap_foreach(&con.vp, 3, save_cb, w), 0);
	CHECK_EQ(snap_writer_commit(w), 0);
	teardown();

	/*
	 * A new device on new pipes (the rebound back-end), same RAM, created
	 * for a restore: input that comes before the state is loaded must
	 * neither be overwritten by it nor overtake the saved input.
	 */
	CHECK_EQ(pipe2(in2, O_CLOEXEC), 0);
	CHECK_EQ(pipe2(out2, O_CLOEXEC | O_NONBLOCK), 0);
	CHECK_EQ(chardev_open_fds(&cd, in2[0], out2[1], true), 0);
	host_in = in2[1];
	host_out = out2[0];
	start_paused = true;
	attach(&con, 80, 25, cd);
	start_paused = false;
	CHECK_EQ(write(host_in, "fresh\n", 6), 6);
	msleep(50);
	CHECK_EQ(con.st.in_len, 0);
	CHECK_EQ(snap_reader_open(&rc.r, path, &rc.err), 0);
	virtio_console_pause(&con);
	CHECK_EQ(virtio_pci_snap_foreach(&con.vp, 3, load_cb, &rc), 0);
	CHECK_EQ(snap_reader_check_consumed(rc.r, &rc.err), 0);
	snap_reader_close(rc.r);
	CHECK_EQ(virtio_pci_post_load(&con.vp, NULL), 0);
	CHECK_EQ(con.st.in_len, 14); /* the saved input, not "fresh" */
	virtio_console_resume(&con);
	unlink(path);
	CHECK_EQ(status(), 0xf);
	/* Resumed, it reads the back-end: behind the saved bytes. */
	CHECK(WAIT_UNTIL(in_len() == 20, UNIT_WAIT_S));
	/* The driver (still set up, its rings in RAM) posts a buffer. */
	avail_idx[RXQ] = 0;
	desc(RXQ, 0, RXBUF, 64, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 0);
	CHECK(wait_used(RXQ, 1));
	CHECK_EQ(used_len(RXQ, 0), 20);
	CHECK(!memcmp(ram + RXBUF, "pending input\nfresh\n", 20));
	teardown();
}

/* Output before a socket client connects is held for it, then both ways. */
static void test_socket(void)
{
	char sock[] = "/tmp/khyve-unit-vcon-sock-XXXXXX", got[32];
	struct err err;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct virtio_console_stats st;
	struct chardev *cd;
	char spec[64];
	int cl, fd;

	fd = mkstemp(sock);
	CHECK(fd >= 0);
	close(fd);
	unlink(sock);
	snprintf(spec, sizeof(spec), "socket:%s", sock);
	CHECK_EQ(chardev_open(&cd, spec, 0, &err), 0);
	memset(ram, 0, RAM_SIZE);
	attach(&con, 0, 0, cd);
	driver_init(0);
	memcpy(ram + TXBUF, "boot line\n", 10);
	desc(TXQ, 0, TXBUF, 10, 0, 0);
	post(TXQ, 0);
	CHECK(wait_used(TXQ, 1));
	virtio_console_get_stats(&con, &st);
	CHECK_EQ(st.tx_held, 10);

	cl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(cl >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
	CHECK_EQ(connect(cl, (struct sockaddr *)&sun, sizeof(sun)), 0);
	CHECK_EQ(read_all(cl, got, 10), 10);
	CHECK(!memcmp(got, "boot line\n", 10));
	desc(RXQ, 0, RXBUF, 64, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 0);
	CHECK_EQ(write(cl, "typed\n", 6), 6);
	CHECK(wait_used(RXQ, 1));
	CHECK_EQ(used_len(RXQ, 0), 6);
	CHECK(!memcmp(ram + RXBUF, "typed\n", 6));
	memcpy(ram + TXBUF, "live\n", 5);
	desc(TXQ, 1, TXBUF, 5, 0, 0);
	post(TXQ, 1);
	CHECK_EQ(read_all(cl, got, 5), 5);
	CHECK(!memcmp(got, "live\n", 5));
	virtio_console_get_stats(&con, &st);
	CHECK_EQ(st.tx_bytes, 15);
	CHECK_EQ(st.tx_held, 10);
	close(cl);
	virtio_console_destroy(&con);
	CHECK(access(sock, F_OK) != 0); /* the socket file went with it */
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

int main(void)
{
	ram = calloc(1, RAM_SIZE);
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	RUN(test_config);
	RUN(test_tx);
	RUN(test_tx_bounded);
	RUN(test_rx);
	RUN(test_hostile);
	RUN(test_snapshot);
	RUN(test_socket);
	free(ram);
	return unit_done();
}
