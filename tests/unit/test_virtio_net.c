/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio-net with a SOCK_SEQPACKET socketpair standing in for the TAP
 * (same framing: one read/write per frame, vnet header included), plus
 * a real TAP when this host allows creating one.
 */
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "common.h"
#include "unit.h"
#include "virtio_net.h"

#define RAM_SIZE (1 * MiB)
#define SLOT	 7
#define QSZ	 8
#define DESC(q)	 (0x1000 + 0x4000 * (q))
#define AVAIL(q) (0x2000 + 0x4000 * (q))
#define USED(q)	 (0x3000 + 0x4000 * (q))
#define RXBUF	 0x20000
#define TXBUF	 0x30000

static struct bus pio, mmio;
static struct pci_bus pci;
static struct guest_mem mem;
static uint8_t *ram;
static struct virtio_net net;
static uint64_t common, notify, devc;
static int peer;

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

static bool wait_used(unsigned q, uint16_t want)
{
	struct timespec ts = {0, 1000000};

	for (unsigned i = 0; i < 3000; i++) {
		if (__atomic_load_n((uint16_t *)(ram + USED(q) + 2),
				    __ATOMIC_ACQUIRE) == want)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

/* The device with @o's tx options; EVENT_IDX negotiated if @event_idx. */
static void setup_with(const struct virtio_net_opts *t, bool event_idx)
{
	uint32_t a = 0x80000000u | SLOT << 11 | PCI_COMMAND, cmd = 2;
	struct virtio_net_opts o = {.mac = mac,
				    .queue_size = 64,
				    .poll_us = t->poll_us,
				    .tx_vcpu = t->tx_vcpu};
	int sv[2];
	uint64_t base;

	memset(ram, 0, RAM_SIZE);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	o.tap_fd = sv[0];
	peer = sv[1];
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(pci_bus_init(&pci, &pio, &mmio, 0xC0000000ULL, 0x1000000), 0);
	CHECK_EQ(virtio_net_init(&net, &o, &mem, NULL, NULL, NULL), 0);
	CHECK_EQ(pci_add_device(&pci, SLOT, 0, &net.vp.pci), 0);
	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	bus_dispatch(&pio, 0xCFC, &cmd, 2, true);
	base = pci_bar_addr(&net.vp.pci, VIRTIO_PCI_BAR);
	common = base + VIRTIO_PCI_COMMON_OFF;
	notify = base + VIRTIO_PCI_NOTIFY_OFF;
	devc = base + VIRTIO_PCI_DEVICE_OFF;
	wr(common + VIRTIO_PCI_COMMON_STATUS, 3, 1);
	wr(common + VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(common + VIRTIO_PCI_COMMON_GF,
	   (1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_STATUS) |
		   (event_idx ? 1u << VIRTIO_RING_F_EVENT_IDX : 0),
	   4);
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

static void setup(void)
{
	struct virtio_net_opts t = {0};

	setup_with(&t, false);
}

static void teardown(void)
{
	int fd = net.fd;

	virtio_net_destroy(&net);
	close(fd); /* adopted fds stay the caller's */
	close(peer);
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static void post(unsigned q, uint16_t idx, uint16_t head)
{
	put_le16(ram + AVAIL(q) + 4 + 2 * (idx % QSZ), head);
	__atomic_store_n((uint16_t *)(ram + AVAIL(q) + 2), (uint16_t)(idx + 1),
			 __ATOMIC_RELEASE);
	wr(notify + q * VIRTIO_PCI_NOTIFY_MULT, q, 2);
}

static unsigned nsec;
static const char *last_sec;
static int count_sec(void *ctx, const struct snap_desc *d, uint32_t inst,
		     void *state)
{
	nsec++;
	last_sec = d->name;
	if (!strcmp(d->name, "virtio_net"))
		CHECK(!memcmp(state, mac, 6));
	return 0;
}

static void test_config(void)
{
	setup();
	for (unsigned i = 0; i < 6; i++)
		CHECK_EQ(rd(devc + i, 1), mac[i]);
	CHECK_EQ(rd(devc + 6, 2), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(virtio_pci_features(&net.vp),
		 (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS) |
			 (1ULL << VIRTIO_F_VERSION_1));
	/* pci_dev, virtio_pci, rx, tx, virtio_net (the MAC) */
	CHECK_EQ(virtio_pci_snap_foreach(&net.vp, 0, count_sec, NULL), 0);
	CHECK_EQ(nsec, 5);
	CHECK(last_sec && !strcmp(last_sec, "virtio_net"));
	teardown();
}

static void test_tx(void)
{
	uint8_t got[256];
	struct virtio_net_stats st;
	ssize_t n;

	setup();
	/* Header and frame in separate descriptors, as Linux may. */
	memset(ram + TXBUF, 0, VIRTIO_NET_HDR_LEN);
	for (unsigned i = 0; i < 60; i++)
		ram[TXBUF + 0x100 + i] = (uint8_t)(i + 1);
	put_le64(ram + DESC(1), TXBUF);
	put_le32(ram + DESC(1) + 8, VIRTIO_NET_HDR_LEN);
	put_le16(ram + DESC(1) + 12, VIRTQ_DESC_F_NEXT);
	put_le16(ram + DESC(1) + 14, 1);
	put_le64(ram + DESC(1) + 16, TXBUF + 0x100);
	put_le32(ram + DESC(1) + 24, 60);
	post(1, 0, 0);
	CHECK(wait_used(1, 1));
	n = recv(peer, got, sizeof(got), 0);
	CHECK_EQ(n, VIRTIO_NET_HDR_LEN + 60);
	CHECK(!memcmp(got + VIRTIO_NET_HDR_LEN, ram + TXBUF + 0x100, 60));
	virtio_net_get_stats(&net, &st);
	CHECK_EQ(st.tx_packets, 1);
	CHECK_EQ(st.tx_bytes, 60);
	teardown();
}

static void test_rx(void)
{
	uint8_t frame[VIRTIO_NET_HDR_LEN + 64] = {0};
	struct virtio_net_stats st;

	setup();
	for (unsigned i = 0; i < 64; i++)
		frame[VIRTIO_NET_HDR_LEN + i] = (uint8_t)(0xff - i);
	/* A frame arrives before the driver posted any buffer: kept. */
	CHECK_EQ(send(peer, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	nanosleep(&(struct timespec){0, 50000000}, NULL);
	CHECK_EQ(get_le16(ram + USED(0) + 2), 0);
	/* The driver posts a 1526-byte buffer and kicks rx. */
	put_le64(ram + DESC(0), RXBUF);
	put_le32(ram + DESC(0) + 8, 1526);
	put_le16(ram + DESC(0) + 12, VIRTQ_DESC_F_WRITE);
	post(0, 0, 0);
	CHECK(wait_used(0, 1));
	CHECK_EQ(get_le32(ram + USED(0) + 8), sizeof(frame));
	CHECK(!memcmp(ram + RXBUF, frame, sizeof(frame)));
	/* With a buffer waiting, the next frame goes straight in. */
	put_le64(ram + DESC(0) + 16, RXBUF + 0x1000);
	put_le32(ram + DESC(0) + 24, 1526);
	put_le16(ram + DESC(0) + 28, VIRTQ_DESC_F_WRITE);
	post(0, 1, 1);
	frame[VIRTIO_NET_HDR_LEN] = 0x42;
	CHECK_EQ(send(peer, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	CHECK(wait_used(0, 2));
	CHECK_EQ(ram[RXBUF + 0x1000 + VIRTIO_NET_HDR_LEN], 0x42);
	virtio_net_get_stats(&net, &st);
	CHECK_EQ(st.rx_packets, 2);
	CHECK_EQ(st.rx_bytes, 128);
	teardown();
}

static void publish(unsigned q, uint16_t idx);

static bool wait_rx_flag(uint16_t want)
{
	for (unsigned i = 0; i < 3000; i++) {
		if ((get_le16(ram + USED(0)) & VIRTQ_USED_F_NO_NOTIFY) == want)
			return true;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	return false;
}

/*
 * Receive kicks are asked for only while the device waits for buffers:
 * off while buffers are posted and the TAP is empty, on once a frame
 * found none, and then the kick brings the frame in.
 */
static void test_rx_kicks_only_when_out_of_buffers(void)
{
	uint8_t frame[VIRTIO_NET_HDR_LEN + 64] = {0};

	setup();
	for (unsigned i = 0; i < 2; i++) {
		put_le64(ram + DESC(0) + 16 * i, RXBUF + 0x1000 * i);
		put_le32(ram + DESC(0) + 16 * i + 8, 1526);
		put_le16(ram + DESC(0) + 16 * i + 12, VIRTQ_DESC_F_WRITE);
		put_le16(ram + AVAIL(0) + 4 + 2 * i, (uint16_t)i);
	}
	publish(0, 2);
	wr(notify, 0, 2);
	CHECK(wait_rx_flag(VIRTQ_USED_F_NO_NOTIFY));
	/* Two frames fill both buffers; a third finds none. */
	for (unsigned i = 0; i < 3; i++) {
		frame[VIRTIO_NET_HDR_LEN] = (uint8_t)(0x10 + i);
		CHECK_EQ(send(peer, frame, sizeof(frame), 0),
			 (ssize_t)sizeof(frame));
	}
	CHECK(wait_used(0, 2));
	CHECK(wait_rx_flag(0));
	CHECK_EQ(ram[RXBUF + VIRTIO_NET_HDR_LEN], 0x10);
	CHECK_EQ(ram[RXBUF + 0x1000 + VIRTIO_NET_HDR_LEN], 0x11);
	/* The driver gives both back and kicks: the third comes in, and
	 * with a buffer still posted kicks are off again. */
	put_le16(ram + AVAIL(0) + 4 + 2 * 2, 0);
	put_le16(ram + AVAIL(0) + 4 + 2 * 3, 1);
	publish(0, 4);
	wr(notify, 0, 2);
	CHECK(wait_used(0, 3));
	CHECK_EQ(ram[RXBUF + VIRTIO_NET_HDR_LEN], 0x12);
	CHECK(wait_rx_flag(VIRTQ_USED_F_NO_NOTIFY));
	teardown();
}

/* Frame i (60 bytes of i + 1) in descriptor i of the tx queue. */
static void tx_frames(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *f = ram + TXBUF + 0x100 * i;

		memset(f, 0, VIRTIO_NET_HDR_LEN);
		memset(f + VIRTIO_NET_HDR_LEN, (int)(i + 1), 60);
		put_le64(ram + DESC(1) + 16 * i, TXBUF + 0x100 * i);
		put_le32(ram + DESC(1) + 16 * i + 8, VIRTIO_NET_HDR_LEN + 60);
		put_le16(ram + DESC(1) + 16 * i + 12, 0);
		put_le16(ram + AVAIL(1) + 4 + 2 * i, (uint16_t)i);
	}
}

static void test_tx_batch_notify(void)
{
	uint8_t got[256];

	setup();
	/* Five frames published with one kick all go out, in order. */
	tx_frames(5);
	__atomic_store_n((uint16_t *)(ram + AVAIL(1) + 2), 5, __ATOMIC_RELEASE);
	wr(notify + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
	CHECK(wait_used(1, 5));
	for (unsigned i = 0; i < 5; i++) {
		CHECK_EQ(recv(peer, got, sizeof(got), 0),
			 VIRTIO_NET_HDR_LEN + 60);
		CHECK_EQ(got[VIRTIO_NET_HDR_LEN], i + 1);
		CHECK_EQ(get_le32(ram + USED(1) + 4 + 8 * i), i);
	}
	CHECK_EQ(get_le16(ram + USED(1)) & VIRTQ_USED_F_NO_NOTIFY, 0);
	teardown();
}

static uint16_t used_idx(unsigned q)
{
	return __atomic_load_n((uint16_t *)(ram + USED(q) + 2),
			       __ATOMIC_ACQUIRE);
}

static void publish(unsigned q, uint16_t idx)
{
	__atomic_store_n((uint16_t *)(ram + AVAIL(q) + 2), idx,
			 __ATOMIC_RELEASE);
}

/* As wait_used, but spinning (a driver polling its used ring). */
static bool spin_used(unsigned q, uint16_t want)
{
	for (unsigned long i = 0; i < 10000000UL; i++) {
		if (used_idx(q) == want)
			return true;
		/* Leave the CPU to the device on a busy host. */
		if (i % 64 == 63)
			sched_yield();
		__builtin_ia32_pause();
	}
	return wait_used(q, want);
}

/* Spin (yielding) until tx used idx is @want or @ns passed. */
static void spin_until(uint16_t want, uint64_t ns)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (unsigned i = 0; i < 64 && used_idx(1) != want; i++)
			__builtin_ia32_pause();
		if (used_idx(1) == want)
			return;
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000ULL +
			 (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec <
		 ns);
}

/* Frame @i's first byte (frames of tx_frames(QSZ), slot i % QSZ). */
static void expect_frames(unsigned from, unsigned to)
{
	uint8_t got[256];

	for (unsigned i = from; i < to; i++) {
		CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT),
			 VIRTIO_NET_HDR_LEN + 60);
		CHECK_EQ(got[VIRTIO_NET_HDR_LEN], i % QSZ + 1);
	}
	CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), -1);
}

/* tx=vcpu: the notify write itself sends; the queue has no ioeventfd. */
static void test_tx_vcpu_inline(void)
{
	struct virtio_net_opts t = {.tx_vcpu = true};
	struct virtio_net_stats st;

	setup_with(&t, false);
	CHECK(virtio_net_kick_fd(&net, VIRTIO_NET_TXQ) < 0);
	CHECK(virtio_net_kick_fd(&net, VIRTIO_NET_RXQ) >= 0);
	tx_frames(3);
	publish(1, 3);
	wr(notify + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
	/* Done when the write returns: no waiting for another thread. */
	CHECK_EQ(used_idx(1), 3);
	expect_frames(0, 3);
	virtio_net_get_stats(&net, &st);
	CHECK_EQ(st.tx_inline, 1);
	CHECK_EQ(st.tx_kicks, 1);
	CHECK_EQ(st.tx_packets, 3);
	teardown();
}

/* A chain that loops breaks the queue on the kicking thread, no hang. */
static void test_tx_bad_chain(void)
{
	for (unsigned mode = 0; mode < 2; mode++) {
		struct virtio_net_opts t = {.tx_vcpu = mode == 0,
					    .poll_us = 1000};
		uint8_t got[256];

		setup_with(&t, mode == 1);
		tx_frames(2);
		/* Descriptor 0: NEXT to itself. */
		put_le16(ram + DESC(1) + 12, VIRTQ_DESC_F_NEXT);
		put_le16(ram + DESC(1) + 14, 0);
		publish(1, 2);
		wr(notify + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
		for (unsigned i = 0; i < 3000 &&
				     !(rd(common + VIRTIO_PCI_COMMON_STATUS, 1) &
				       VIRTIO_STATUS_NEEDS_RESET);
		     i++)
			nanosleep(&(struct timespec){0, 1000000}, NULL);
		CHECK(rd(common + VIRTIO_PCI_COMMON_STATUS, 1) &
		      VIRTIO_STATUS_NEEDS_RESET);
		CHECK_EQ(used_idx(1), 0);
		CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), -1);
		/* Kicks are not left off for the next driver. */
		CHECK_EQ(get_le16(ram + USED(1)) & VIRTQ_USED_F_NO_NOTIFY, 0);
		teardown();
	}
}

/*
 * tx=iothread, frames one at a time as each comes back (one frame per
 * kick): once kicks come densely, the device polls the ring and finds
 * a frame published without a kick. Retried: a loaded host may stall
 * either thread past the window (the frame then needs its kick).
 */
static void test_tx_poll(void)
{
	struct virtio_net_opts t = {.poll_us = 1000};
	struct virtio_net_stats st = {0};
	uint16_t idx = 0;
	bool polled = false;

	setup_with(&t, false);
	/* A window far past poll_us's bound, so a loaded host's scheduling
	 * delays (ms) rarely close it: the same code, more time. */
	net.poll_ns = 20000000;
	tx_frames(QSZ);
	for (unsigned attempt = 0; attempt < 1000 && !polled; attempt++) {
		uint64_t before;

		/* Two kicked frames: the second comes soon after the first. */
		for (unsigned k = 0; k < 2; k++) {
			publish(1, ++idx);
			wr(notify + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
			CHECK(spin_used(1, idx));
		}
		virtio_net_get_stats(&net, &st);
		before = st.tx_polled;
		publish(1, ++idx); /* no kick */
		spin_until(idx, 40000000);
		virtio_net_get_stats(&net, &st);
		/* Sent without its kick, found by the poll. */
		polled = used_idx(1) == idx && st.tx_polled > before;
		if (used_idx(1) != idx) {
			/* The window closed: kicks must be back on. */
			wr(notify + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
			CHECK(wait_used(1, idx));
		}
		/* Every frame once, in order (and the socket kept short). */
		expect_frames((unsigned)idx - 3, idx);
	}
	CHECK(polled);
	virtio_net_get_stats(&net, &st);
	CHECK_EQ(st.tx_packets, idx);
	CHECK_EQ(st.tx_errors, 0);
	CHECK(st.tx_kicks < idx);
	/* Once the window passes, the device sleeps with kicks on. */
	for (unsigned i = 0; i < 5000 && (get_le16(ram + USED(1)) &
					  VIRTQ_USED_F_NO_NOTIFY);
	     i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	CHECK_EQ(get_le16(ram + USED(1)) & VIRTQ_USED_F_NO_NOTIFY, 0);
	teardown();
}

/*
 * EVENT_IDX (what Linux negotiates): after a drain the device asks for
 * a kick at the next frame (avail_event = avail idx), and frames sent
 * one kick at a time and as a batch all go out once, in order.
 */
static void test_tx_event_idx(void)
{
	for (unsigned mode = 0; mode < 2; mode++) {
		struct virtio_net_opts t = {.tx_vcpu = mode == 0,
					    .poll_us = 50};
		uint8_t *avail_event = ram + USED(1) + 4 + 8 * QSZ;
		uint16_t idx = 0;

		setup_with(&t, true);
		tx_frames(QSZ);
		for (unsigned i = 0; i < 20; i++) {
			idx = (uint16_t)(idx + 1 + (i % 3 == 0 ? 2 : 0));
			publish(1, idx);
			wr(notify + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
			CHECK(wait_used(1, idx));
			for (unsigned w = 0;
			     w < 3000 && get_le16(avail_event) != idx; w++)
				nanosleep(&(struct timespec){0, 1000000}, NULL);
			CHECK_EQ(get_le16(avail_event), idx);
		}
		expect_frames(0, idx);
		teardown();
	}
}

static void test_pause_resume(void)
{
	uint8_t frame[VIRTIO_NET_HDR_LEN + 64] = {0}, got[256];
	struct timespec ts = {0, 50000000};

	setup();
	virtio_net_pause(&net);
	/* Paused: a kicked tx frame and an incoming frame both wait. */
	tx_frames(1);
	post(1, 0, 0);
	put_le64(ram + DESC(0), RXBUF);
	put_le32(ram + DESC(0) + 8, 1526);
	put_le16(ram + DESC(0) + 12, VIRTQ_DESC_F_WRITE);
	post(0, 0, 0);
	frame[VIRTIO_NET_HDR_LEN] = 0x5a;
	CHECK_EQ(send(peer, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	nanosleep(&ts, NULL);
	CHECK_EQ(get_le16(ram + USED(0) + 2), 0);
	CHECK_EQ(get_le16(ram + USED(1) + 2), 0);
	CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), -1);
	/* Resume serves both without a new kick or a new frame. */
	virtio_net_resume(&net);
	CHECK(wait_used(1, 1));
	CHECK(wait_used(0, 1));
	CHECK_EQ(ram[RXBUF + VIRTIO_NET_HDR_LEN], 0x5a);
	CHECK_EQ(recv(peer, got, sizeof(got), 0), VIRTIO_NET_HDR_LEN + 60);
	teardown();
}

static void test_real_tap(void)
{
	struct virtio_net_opts o = {.tap_fd = -1};
	struct virtio_net n2;
	int fd, ret;

	/*
	 * Needs /dev/net/tun and CAP_NET_ADMIN: only their absence is a
	 * skip; any other failure to make a TAP is a bug.
	 */
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		SKIP("cannot open /dev/net/tun: %s", strerror(errno));
		return;
	}
	close(fd);
	ret = virtio_net_init(&n2, &o, &mem, NULL, NULL, NULL);
	if (ret == -EPERM || ret == -EACCES) {
		SKIP("creating a TAP refused (needs CAP_NET_ADMIN): %s",
		     strerror(-ret));
		return;
	}
	CHECK_EQ(ret, 0);
	if (ret)
		return;
	CHECK(n2.ifname[0] != 0);
	CHECK_EQ(n2.st.mac[0] & 3, 2); /* random, locally administered */
	virtio_net_destroy(&n2);
}

int main(void)
{
	ram = calloc(1, RAM_SIZE);
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	RUN(test_config);
	RUN(test_tx);
	RUN(test_rx);
	RUN(test_tx_batch_notify);
	RUN(test_rx_kicks_only_when_out_of_buffers);
	RUN(test_tx_vcpu_inline);
	RUN(test_tx_bad_chain);
	RUN(test_tx_poll);
	RUN(test_tx_event_idx);
	RUN(test_pause_resume);
	RUN(test_real_tap);
	free(ram);
	return unit_done();
}
