/* SPDX-License-Identifier: BSD-2-Clause */
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chardev.h"
#include "common.h"
#include "uart8250.h"
#include "snap.h"
#include "unit.h"
#include "unit_snap.h"

struct rec {
	int level;
	unsigned raises, lowers, calls;
	unsigned gsi;
};

static int rec_set(void *opaque, unsigned gsi, int level)
{
	struct rec *r = opaque;

	r->calls++;
	r->gsi = gsi;
	if (level && !r->level)
		r->raises++;
	if (!level && r->level)
		r->lowers++;
	r->level = level;
	return 0;
}

static void setup(struct uart8250 *u, struct rec *r, struct chardev *out)
{
	struct irq_line line = {
		.set_level = rec_set, .opaque = r, .gsi = UART8250_COM1_IRQ};

	memset(r, 0, sizeof(*r));
	CHECK_EQ(uart8250_init(u, &line, out), 0);
}

static void outb(struct uart8250 *u, unsigned off, uint8_t v)
{
	CHECK_EQ(uart8250_io(u, off, &v, 1, true), 0);
}

static uint8_t inb(struct uart8250 *u, unsigned off)
{
	uint8_t v = 0;

	CHECK_EQ(uart8250_io(u, off, &v, 1, false), 0);
	return v;
}

static void test_linux_probe(void)
{
	struct uart8250 u;
	struct rec r;

	setup(&u, &r, NULL);
	/* Scratch register. */
	outb(&u, 7, 0xa5);
	CHECK_EQ(inb(&u, 7), 0xa5);
	outb(&u, 7, 0x5a);
	CHECK_EQ(inb(&u, 7), 0x5a);
	/* IER: reserved bits read back zero. */
	outb(&u, 1, 0);
	CHECK_EQ(inb(&u, 1) & 0x0f, 0);
	outb(&u, 1, 0xff);
	CHECK_EQ(inb(&u, 1), 0x0f);
	outb(&u, 1, 0);
	/* Loopback checks as in autoconfig(). */
	outb(&u, 4, 0x10 | 0x0a);
	CHECK_EQ(inb(&u, 6) & 0xf0, 0x90);
	outb(&u, 4, 0x1f);
	CHECK_EQ(inb(&u, 6) & 0xf0, 0xf0);
	outb(&u, 4, 0x10);
	CHECK_EQ(inb(&u, 6) & 0xf0, 0x00);
	/* Loopback data path. */
	outb(&u, 0, 0x42);
	CHECK_EQ(inb(&u, 5) & 0x01, 0x01);
	CHECK_EQ(inb(&u, 0), 0x42);
	CHECK_EQ(inb(&u, 5) & 0x01, 0);
	outb(&u, 4, 0);
	CHECK_EQ(inb(&u, 6) & 0xf0, 0xb0);
	/* 16550A detection: FIFO enabled shows 11b in IIR[7:6]. */
	outb(&u, 2, 0xe7);
	CHECK_EQ(inb(&u, 2) & 0xc0, 0xc0);
	outb(&u, 2, 0);
	CHECK_EQ(inb(&u, 2) & 0xc0, 0);
	CHECK_EQ(inb(&u, 2), 0x01);
	/* THR empty and transmitter empty. */
	CHECK_EQ(inb(&u, 5) & 0x60, 0x60);
	CHECK_EQ(r.raises, 0);
	uart8250_destroy(&u);
}

static void test_baud_divisor(void)
{
	struct uart8250 u;
	struct rec r;

	setup(&u, &r, NULL);
	outb(&u, 1, 0x05);
	outb(&u, 3, 0x80);
	outb(&u, 0, 0x01);
	outb(&u, 1, 0x00);
	CHECK_EQ(inb(&u, 0), 0x01);
	CHECK_EQ(inb(&u, 1), 0x00);
	outb(&u, 3, 0x03);
	CHECK_EQ(inb(&u, 3), 0x03);
	CHECK_EQ(uart8250_baud(&u), 115200);
	/* IER untouched by the divisor writes. */
	CHECK_EQ(inb(&u, 1), 0x05);
	outb(&u, 3, 0x83);
	outb(&u, 0, 0x0c);
	outb(&u, 3, 0x03);
	CHECK_EQ(uart8250_baud(&u), 9600);
	uart8250_destroy(&u);
}

static void test_fifo_overrun(void)
{
	struct uart8250 u;
	struct rec r;

	setup(&u, &r, NULL);
	outb(&u, 2, 0x01);
	outb(&u, 4, 0x10);
	for (unsigned i = 0; i < 17; i++)
		outb(&u, 0, (uint8_t)(0x30 + i));
	CHECK_EQ(inb(&u, 5) & 0x03, 0x03); /* DR | OE */
	CHECK_EQ(inb(&u, 5) & 0x03, 0x01); /* OE cleared by the read */
	for (unsigned i = 0; i < 16; i++)
		CHECK_EQ(inb(&u, 0), 0x30 + i);
	CHECK_EQ(inb(&u, 5) & 0x01, 0);
	/* Clearing the RX FIFO through FCR. */
	outb(&u, 0, 1);
	outb(&u, 0, 2);
	outb(&u, 2, 0x03);
	CHECK_EQ(inb(&u, 5) & 0x01, 0);
	/* Without FIFOs only one byte fits. */
	outb(&u, 2, 0x00);
	outb(&u, 0, 0x11);
	outb(&u, 0, 0x22);
	CHECK_EQ(inb(&u, 5) & 0x03, 0x03);
	CHECK_EQ(inb(&u, 0), 0x11);
	outb(&u, 4, 0x00);
	{
		uint8_t b[4] = {1, 2, 3, 4};

		CHECK_EQ(uart8250_receive(&u, b, 4), 1);
	}
	uart8250_destroy(&u);
}

static void test_iir_priorities(void)
{
	struct uart8250 u;
	struct rec r;
	uint8_t data[20];

	setup(&u, &r, NULL);
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	outb(&u, 2, 0xc1); /* FIFO, trigger 14 */
	outb(&u, 4, 0x08); /* OUT2 */
	outb(&u, 1, 0x0f);
	CHECK_EQ(r.raises, 1);
	CHECK_EQ(inb(&u, 2), 0xc2); /* THRE, acknowledged by this read */
	CHECK_EQ(r.level, 0);
	CHECK_EQ(inb(&u, 2), 0xc1);

	CHECK_EQ(uart8250_receive(&u, data, 5), 5);
	CHECK_EQ(r.level, 1);
	CHECK_EQ(inb(&u, 2), 0xcc); /* below trigger: character timeout */
	CHECK_EQ(uart8250_receive(&u, data + 5, 9), 9);
	CHECK_EQ(inb(&u, 2), 0xc4); /* at trigger: data available */
	/* Overrun via loopback outranks received data. */
	outb(&u, 4, 0x18);
	outb(&u, 0, 0xee);
	outb(&u, 0, 0xef);
	outb(&u, 0, 0xf0);
	CHECK_EQ(inb(&u, 2), 0xc6);
	CHECK_EQ(inb(&u, 5) & 0x02, 0x02);
	CHECK_EQ(inb(&u, 2), 0xc4);
	outb(&u, 4, 0x08);
	for (unsigned i = 0; i < 16; i++)
		inb(&u, 0);
	/* The THR writes above re-armed THRE. */
	CHECK_EQ(inb(&u, 2), 0xc2);
	/* Leaving loopback changed the modem lines: modem status last. */
	CHECK_EQ(inb(&u, 2), 0xc0);
	CHECK_EQ(inb(&u, 6) & 0x0f, 0x03); /* DCTS | DDSR */
	CHECK_EQ(inb(&u, 2), 0xc1);
	CHECK_EQ(r.level, 0);
	uart8250_destroy(&u);
}

static void test_irq_line(void)
{
	struct uart8250 u;
	struct rec r;
	uint8_t b = 'x';

	setup(&u, &r, NULL);
	outb(&u, 1, 0x01); /* RX data interrupt only */
	CHECK_EQ(uart8250_receive(&u, &b, 1), 1);
	/* OUT2 clear: the PC routes no interrupt. */
	CHECK_EQ(r.calls, 0);
	outb(&u, 4, 0x08);
	CHECK_EQ(r.raises, 1);
	CHECK_EQ(r.gsi, 4);
	CHECK_EQ(r.level, 1);
	CHECK_EQ(inb(&u, 0), 'x');
	CHECK_EQ(r.lowers, 1);
	CHECK_EQ(r.level, 0);
	/* THRE: raised on enable, lowered by the IIR read, re-raised by THR. */
	outb(&u, 1, 0x02);
	CHECK_EQ(r.raises, 2);
	CHECK_EQ(inb(&u, 2) & 0x0f, 0x02);
	CHECK_EQ(r.lowers, 2);
	outb(&u, 0, 'a');
	CHECK_EQ(r.raises, 3);
	outb(&u, 1, 0x00);
	CHECK_EQ(r.lowers, 3);
	/* Loopback gates the pin even with OUT2 set. */
	outb(&u, 1, 0x01);
	outb(&u, 4, 0x18);
	outb(&u, 0, 'l');
	CHECK_EQ(r.level, 0);
	CHECK_EQ(inb(&u, 2) & 0x0f, 0x04);
	outb(&u, 4, 0x08);
	CHECK_EQ(r.level, 1);
	CHECK_EQ(r.raises, 4);
	uart8250_destroy(&u);
}

static void test_tx_to_chardev(void)
{
	struct uart8250 u;
	struct rec r;
	struct chardev *c;
	struct chardev_stats st;
	int fds[2];
	char buf[32];
	const char *msg = "hello, guest\r\n";

	CHECK_EQ(pipe2(fds, O_NONBLOCK), 0);
	CHECK_EQ(chardev_open_fds(&c, -1, fds[1], false), 0);
	setup(&u, &r, c);
	for (const char *p = msg; *p; p++) {
		CHECK(inb(&u, 5) & 0x20);
		outb(&u, 0, (uint8_t)*p);
	}
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(read(fds[0], buf, sizeof(buf)), strlen(msg));
	CHECK(!strcmp(buf, msg));
	/* Loopback bytes do not leave the UART. */
	outb(&u, 4, 0x10);
	outb(&u, 0, 'z');
	CHECK_EQ(read(fds[0], buf, sizeof(buf)), -1);
	chardev_get_stats(c, &st);
	CHECK_EQ(st.written, strlen(msg));
	CHECK_EQ(st.dropped, 0);
	uart8250_destroy(&u);
	chardev_close(c);
	close(fds[0]);
	close(fds[1]);
}

static unsigned ready_calls;
static void on_ready(void *opaque)
{
	(void)opaque;
	ready_calls++;
}

static void test_rx_flow_control(void)
{
	struct uart8250 u;
	struct rec r;
	uint8_t data[40];

	setup(&u, &r, NULL);
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(0x80 + i);
	uart8250_set_rx_ready_cb(&u, on_ready, NULL);
	ready_calls = 0;
	/* FIFO off: one byte. */
	CHECK_EQ(uart8250_rx_room(&u), 1);
	outb(&u, 2, 0x01);
	CHECK_EQ(uart8250_rx_room(&u), 16);
	CHECK_EQ(uart8250_receive(&u, data, 40), 16);
	CHECK_EQ(uart8250_rx_room(&u), 0);
	CHECK_EQ(uart8250_receive(&u, data + 16, 24), 0);
	CHECK_EQ(inb(&u, 5) & 0x02, 0); /* flow control, not overrun */
	CHECK_EQ(ready_calls, 0);
	CHECK_EQ(inb(&u, 0), 0x80);
	CHECK_EQ(ready_calls, 1);
	CHECK_EQ(uart8250_rx_room(&u), 1);
	CHECK_EQ(inb(&u, 0), 0x81);
	CHECK_EQ(ready_calls, 1); /* only once per blocked receive */
	CHECK_EQ(uart8250_receive(&u, data + 16, 24), 2);
	for (unsigned i = 2; i < 18; i++)
		CHECK_EQ(inb(&u, 0), 0x80 + i);
	CHECK_EQ(ready_calls, 2);
	/* Asking for room and finding none also arms the callback. */
	CHECK_EQ(uart8250_receive(&u, data, 16), 16);
	CHECK_EQ(ready_calls, 2);
	CHECK_EQ(uart8250_rx_room(&u), 0);
	CHECK_EQ(inb(&u, 5) & 0x01, 0x01);
	CHECK_EQ(ready_calls, 2);
	CHECK_EQ(inb(&u, 0), 0x80);
	CHECK_EQ(ready_calls, 3);
	uart8250_destroy(&u);
}

static void test_snapshot_restore(void)
{
	struct uart8250 a, b;
	struct rec ra, rb;
	struct uart8250_state st, bad;
	uint8_t data[8] = {'h', 'a', 'l', 'f', ' ', 'f', 'u', 'l'};

	check_desc_exact(&uart8250_snap_desc, struct uart8250_state, NULL, 0);
	CHECK_EQ(uart8250_snap_desc.state_size, sizeof(struct uart8250_state));
	setup(&a, &ra, NULL);
	outb(&a, 3, 0x83);
	outb(&a, 0, 0x01);
	outb(&a, 3, 0x03);
	outb(&a, 2, 0x81); /* trigger 8 */
	outb(&a, 7, 0x77);
	outb(&a, 4, 0x0b);
	outb(&a, 1, 0x01);
	CHECK_EQ(inb(&a, 0), 0); /* empty FIFO reads 0 */
	CHECK_EQ(uart8250_receive(&a, data, 3), 3);
	CHECK_EQ(inb(&a, 0), 'h');
	CHECK_EQ(uart8250_receive(&a, data + 3, 5), 5);
	CHECK_EQ(ra.level, 1);
	uart8250_state_save(&a, &st);
	CHECK_EQ(st.rx_len, 7);
	{
		struct uart8250_state back;

		memset(&back, 0, sizeof(back));
		CHECK_EQ(snap_roundtrip(&uart8250_snap_desc, &st, &back), 0);
		CHECK(!memcmp(&back, &st, sizeof(st)));
		st = back;
	}

	setup(&b, &rb, NULL);
	CHECK_EQ(uart8250_state_apply(&b, &st), 0);
	CHECK_EQ(rb.level, 1); /* re-derived from the restored FIFO */
	CHECK_EQ(rb.raises, 1);
	CHECK_EQ(uart8250_baud(&b), 115200);
	CHECK_EQ(inb(&b, 7), 0x77);
	CHECK_EQ(inb(&b, 2), 0xcc); /* 7 bytes < trigger 8 */
	for (unsigned i = 1; i < 8; i++)
		CHECK_EQ(inb(&b, 0), data[i]);
	CHECK_EQ(rb.level, 0);

	/* Corrupt states are refused and leave the device alone. */
	bad = st;
	bad.rx_len = 17;
	CHECK_EQ(uart8250_state_apply(&b, &bad), -EINVAL);
	bad = st;
	bad.rx_head = 16;
	CHECK_EQ(uart8250_state_apply(&b, &bad), -EINVAL);
	bad = st;
	bad.fcr = 0;
	bad.rx_len = 2;
	CHECK_EQ(uart8250_state_apply(&b, &bad), -EINVAL);
	CHECK_EQ(inb(&b, 5) & 0x01, 0);
	uart8250_destroy(&a);
	uart8250_destroy(&b);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_fuzz(void)
{
	struct uart8250 u;
	struct rec r;
	struct uart8250_state st;
	struct chardev *c;
	unsigned bad = 0;

	CHECK_EQ(chardev_open(&c, "null", 0, NULL), 0);
	setup(&u, &r, c);
	for (unsigned i = 0; i < 100000; i++) {
		uint64_t x = next_rand(), y = next_rand();
		uint8_t buf[8];
		unsigned size = 1u << (x & 3);
		unsigned off = (unsigned)(x >> 2) % 10;

		memcpy(buf, &y, sizeof(buf));
		if ((x >> 8) % 16 == 0) {
			uart8250_receive(&u, buf, (x >> 16) % 8);
			continue;
		}
		uart8250_io(&u, off, buf, size, (x >> 40) & 1);
		uart8250_state_save(&u, &st);
		if (uart8250_state_check(&st) < 0)
			bad++;
		/* The recorder saw every change; OUT2 and loop gate it. */
		if (r.level != u.irq_level ||
		    (r.level && (st.mcr & 0x18) != 0x08))
			bad++;
	}
	CHECK_EQ(bad, 0);
	uart8250_destroy(&u);
	chardev_close(c);
}

#define STREAM_LEN 50000

static sem_t room_sem;
static unsigned feeder_timeouts;
static bool feeder_done; /* atomic: the feeder sent all, or gave up */

static void post_room(void *opaque)
{
	(void)opaque;
	sem_post(&room_sem);
}

/*
 * The I/O thread side: push a byte stream; when the FIFO is full, sleep
 * until the rx-ready callback says the guest made room. A lost wake-up
 * shows as a timeout: UNIT_WAIT_S, far more than a loaded machine needs
 * to schedule the reader, after which the feeder gives up.
 */
static void *feeder(void *arg)
{
	struct uart8250 *u = arg;
	uint8_t chunk[7];
	size_t sent = 0;

	while (sent < STREAM_LEN) {
		size_t n = MIN(sizeof(chunk), (size_t)(STREAM_LEN - sent));
		size_t took;

		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)((sent + i) * 31);
		took = uart8250_receive(u, chunk, n);
		sent += took;
		if (took < n) {
			struct timespec ts;
			int rc;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += UNIT_WAIT_S;
			do
				rc = sem_timedwait(&room_sem, &ts) < 0 ? errno : 0;
			while (rc == EINTR);
			if (rc) {
				feeder_timeouts++;
				break;
			}
		}
	}
	__atomic_store_n(&feeder_done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void test_threaded_stream(void)
{
	struct uart8250 u;
	struct rec r;
	pthread_t th;
	size_t got = 0;
	unsigned wrong = 0, spins = 0;
	uint64_t end = unit_now_ms() + 2 * UNIT_WAIT_S * 1000;

	setup(&u, &r, NULL);
	outb(&u, 2, 0xc7);
	CHECK_EQ(sem_init(&room_sem, 0, 0), 0);
	uart8250_set_rx_ready_cb(&u, post_room, NULL);
	CHECK_EQ(pthread_create(&th, NULL, feeder, &u), 0);
	/*
	 * The vCPU side: a polling driver that must see every byte in order.
	 * It stops when all came, or when the feeder is done and nothing is
	 * left, or at a deadline (a wall-clock bound, not a spin count: how
	 * many polls fit in a time slice depends on the machine's load).
	 */
	while (got < STREAM_LEN) {
		uint8_t lsr = 0, b = 0;

		/* Raw accesses: one CHECK per poll would swamp the count. */
		uart8250_io(&u, 5, &lsr, 1, false);
		if (!(lsr & 0x01)) {
			bool done = __atomic_load_n(&feeder_done,
						    __ATOMIC_ACQUIRE);

			if (done) {
				/* Nothing more can come: one last look. */
				uart8250_io(&u, 5, &lsr, 1, false);
				if (!(lsr & 0x01))
					break;
				continue;
			}
			if (++spins % 4096 == 0 && unit_now_ms() > end)
				break;
			continue;
		}
		uart8250_io(&u, 0, &b, 1, false);
		if (b != (uint8_t)(got * 31))
			wrong++;
		got++;
	}
	pthread_join(th, NULL);
	CHECK_EQ(got, STREAM_LEN);
	CHECK_EQ(wrong, 0);
	CHECK_EQ(inb(&u, 5) & 0x03, 0); /* never overran */
	CHECK_EQ(u.rx_bytes, STREAM_LEN);
	CHECK_EQ(feeder_timeouts, 0);
	sem_destroy(&room_sem);
	uart8250_destroy(&u);
}

int main(void)
{
	RUN(test_linux_probe);
	RUN(test_baud_divisor);
	RUN(test_fifo_overrun);
	RUN(test_iir_priorities);
	RUN(test_irq_line);
	RUN(test_tx_to_chardev);
	RUN(test_rx_flow_control);
	RUN(test_snapshot_restore);
	RUN(test_threaded_stream);
	RUN(test_fuzz);
	return unit_done();
}
