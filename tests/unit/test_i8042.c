/* SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "i8042.h"
#include "snap.h"
#include "unit.h"
#include "unit_snap.h"

struct rec {
	int level;
	unsigned raises, lowers;
};

static int rec_set(void *opaque, unsigned gsi, int level)
{
	struct rec *r = opaque;

	if (level && !r->level)
		r->raises++;
	if (!level && r->level)
		r->lowers++;
	r->level = level;
	return 0;
}

static struct rec rk, ra;
static unsigned resets;

static void on_reset(void *opaque)
{
	struct i8042 *k = opaque;

	/* The lock is not held: the VMM may reset the device from here. */
	i8042_reset(k);
	resets++;
}

static void setup(struct i8042 *k)
{
	struct irq_line kl = {.set_level = rec_set, .opaque = &rk, .gsi = 1};
	struct irq_line al = {.set_level = rec_set, .opaque = &ra, .gsi = 12};

	memset(&rk, 0, sizeof(rk));
	memset(&ra, 0, sizeof(ra));
	resets = 0;
	CHECK_EQ(i8042_init(k, &kl, &al, on_reset, k), 0);
}

static void outb(struct i8042 *k, unsigned port, uint8_t v)
{
	if (port == I8042_DATA_PORT)
		CHECK_EQ(i8042_data_io(k, 0, &v, 1, true), 0);
	else
		CHECK_EQ(i8042_cmd_io(k, 0, &v, 1, true), 0);
}

static uint8_t inb(struct i8042 *k, unsigned port)
{
	uint8_t v = 0;

	if (port == I8042_DATA_PORT)
		CHECK_EQ(i8042_data_io(k, 0, &v, 1, false), 0);
	else
		CHECK_EQ(i8042_cmd_io(k, 0, &v, 1, false), 0);
	return v;
}

/* Read one reply byte the way Linux's i8042_wait_read() does. */
static int read_reply(struct i8042 *k, bool *aux)
{
	uint8_t st = inb(k, I8042_CMD_PORT);

	if (!(st & I8042_STR_OBF))
		return -1;
	if (aux)
		*aux = st & I8042_STR_AUXDATA;
	return inb(k, I8042_DATA_PORT);
}

static void test_controller_probe(void)
{
	struct i8042 k;
	uint8_t ctr;
	bool aux = true;

	setup(&k);
	/* i8042_controller_check(): a present controller, empty buffer. */
	CHECK(inb(&k, I8042_CMD_PORT) != 0xff);
	CHECK_EQ(read_reply(&k, NULL), -1);
	/* Self test. */
	outb(&k, I8042_CMD_PORT, 0xaa);
	CHECK_EQ(inb(&k, I8042_CMD_PORT) & I8042_STR_CMD, I8042_STR_CMD);
	CHECK_EQ(read_reply(&k, &aux), 0x55);
	CHECK(!aux);
	CHECK(inb(&k, I8042_CMD_PORT) & I8042_STR_SYS);
	/* Command byte read/write. */
	outb(&k, I8042_CMD_PORT, 0x20);
	ctr = (uint8_t)read_reply(&k, NULL);
	CHECK_EQ(ctr, 0x47);
	outb(&k, I8042_CMD_PORT, 0x60);
	outb(&k, I8042_DATA_PORT, 0x74);
	CHECK_EQ(inb(&k, I8042_CMD_PORT) & I8042_STR_CMD, 0);
	outb(&k, I8042_CMD_PORT, 0x20);
	CHECK_EQ(read_reply(&k, NULL), 0x74);
	/* Interface tests. */
	outb(&k, I8042_CMD_PORT, 0xab);
	CHECK_EQ(read_reply(&k, NULL), 0x00);
	outb(&k, I8042_CMD_PORT, 0xa9);
	CHECK_EQ(read_reply(&k, NULL), 0x00);
	/* i8042_check_aux(): loopback through the aux output buffer. */
	outb(&k, I8042_CMD_PORT, 0xd3);
	outb(&k, I8042_DATA_PORT, 0x5a);
	CHECK_EQ(read_reply(&k, &aux), 0x5a);
	CHECK(aux);
	/* Aux disable/enable is visible in the command byte. */
	outb(&k, I8042_CMD_PORT, 0xa8);
	outb(&k, I8042_CMD_PORT, 0x20);
	CHECK_EQ(read_reply(&k, NULL) & I8042_CTR_AUXDIS, 0);
	outb(&k, I8042_CMD_PORT, 0xa7);
	outb(&k, I8042_CMD_PORT, 0x20);
	CHECK_EQ(read_reply(&k, NULL) & I8042_CTR_AUXDIS, I8042_CTR_AUXDIS);
	/* Output port. */
	outb(&k, I8042_CMD_PORT, 0xd0);
	CHECK_EQ(read_reply(&k, NULL) & 0x03, 0x03);
	/* No mouse: commands to it get an aux NAK right away. */
	outb(&k, I8042_CMD_PORT, 0xd4);
	outb(&k, I8042_DATA_PORT, 0xf2);
	CHECK_EQ(read_reply(&k, &aux), 0xfe);
	CHECK(aux);
	CHECK_EQ(read_reply(&k, NULL), -1);
	/* Empty buffer reads the last byte again. */
	CHECK_EQ(inb(&k, I8042_DATA_PORT), 0xfe);
	CHECK_EQ(resets, 0);
	i8042_destroy(&k);
}

static void test_keyboard(void)
{
	struct i8042 k;
	struct i8042_state st;

	setup(&k);
	outb(&k, I8042_DATA_PORT, 0xff);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	CHECK_EQ(read_reply(&k, NULL), 0xaa);
	outb(&k, I8042_DATA_PORT, 0xf2);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	CHECK_EQ(read_reply(&k, NULL), 0xab);
	CHECK_EQ(read_reply(&k, NULL), 0x83);
	CHECK_EQ(read_reply(&k, NULL), -1);
	outb(&k, I8042_DATA_PORT, 0xed);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	outb(&k, I8042_DATA_PORT, 0x07);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	outb(&k, I8042_DATA_PORT, 0xf0);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	outb(&k, I8042_DATA_PORT, 0x00);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	CHECK_EQ(read_reply(&k, NULL), 0x02);
	outb(&k, I8042_DATA_PORT, 0xee);
	CHECK_EQ(read_reply(&k, NULL), 0xee);
	i8042_state_save(&k, &st);
	CHECK_EQ(st.kbd_leds, 7);
	/* Disable also restores defaults. */
	outb(&k, I8042_DATA_PORT, 0xf5);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	i8042_state_save(&k, &st);
	CHECK_EQ(st.kbd_leds, 0);
	CHECK_EQ(st.kbd_scanning, 0);
	CHECK_EQ(i8042_kbd_inject(&k, (const uint8_t *)"\x1d", 1), 0);
	outb(&k, I8042_DATA_PORT, 0xf4);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	CHECK_EQ(i8042_kbd_inject(&k, (const uint8_t *)"\x1d\x9d", 2), 2);
	CHECK_EQ(read_reply(&k, NULL), 0x1d);
	CHECK_EQ(read_reply(&k, NULL), 0x9d);
	outb(&k, I8042_DATA_PORT, 0x01);
	CHECK_EQ(read_reply(&k, NULL), 0xfe);
	i8042_destroy(&k);
}

static void test_irqs(void)
{
	struct i8042 k;

	setup(&k);
	outb(&k, I8042_DATA_PORT, 0xf2); /* three reply bytes */
	CHECK_EQ(rk.level, 1);
	CHECK_EQ(rk.raises, 1);
	inb(&k, I8042_DATA_PORT);
	CHECK_EQ(rk.raises, 2); /* a fresh edge per byte */
	inb(&k, I8042_DATA_PORT);
	CHECK_EQ(rk.raises, 3);
	CHECK_EQ(rk.level, 1);
	inb(&k, I8042_DATA_PORT);
	CHECK_EQ(rk.level, 0);
	CHECK_EQ(rk.raises, 3);
	CHECK_EQ(ra.raises, 0);
	/* Aux data goes to IRQ 12. */
	outb(&k, I8042_CMD_PORT, 0xd3);
	outb(&k, I8042_DATA_PORT, 0x11);
	CHECK_EQ(ra.level, 1);
	CHECK_EQ(rk.level, 0);
	inb(&k, I8042_DATA_PORT);
	CHECK_EQ(ra.level, 0);
	/* Interrupts off in the command byte: polled mode. */
	outb(&k, I8042_CMD_PORT, 0x60);
	outb(&k, I8042_DATA_PORT, 0x44);
	outb(&k, I8042_CMD_PORT, 0xaa);
	CHECK_EQ(rk.raises, 3);
	CHECK_EQ(rk.level, 0);
	/* Turning them on with a byte waiting raises the line. */
	outb(&k, I8042_CMD_PORT, 0x60);
	outb(&k, I8042_DATA_PORT, 0x45);
	CHECK_EQ(rk.level, 1);
	CHECK_EQ(inb(&k, I8042_DATA_PORT), 0x55);
	CHECK_EQ(rk.level, 0);
	i8042_destroy(&k);
}

/* Ctrl+Alt+Del in the set the guest reads, with IRQ 1. */
static void test_ctrl_alt_del(void)
{
	static const int set1[] = {0x1d, 0x38, 0xe0, 0x53,
				   0xe0, 0xd3, 0xb8, 0x9d};
	static const int set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
				   0x71, 0xf0, 0x11, 0xf0, 0x14};
	struct i8042 k;

	setup(&k);
	/* Power-on: translation on, so set 1. */
	CHECK_EQ(i8042_kbd_ctrl_alt_del(&k), 0);
	CHECK_EQ(rk.level, 1);
	CHECK_EQ(rk.raises, 1);
	for (size_t i = 0; i < ARRAY_SIZE(set1); i++)
		CHECK_EQ(read_reply(&k, NULL), set1[i]);
	CHECK_EQ(read_reply(&k, NULL), -1);
	CHECK_EQ(rk.level, 0);
	CHECK_EQ(rk.raises, 8); /* one edge per byte */
	/* Translation off, the keyboard in its set 2: set 2 codes. */
	outb(&k, I8042_CMD_PORT, 0x60);
	outb(&k, I8042_DATA_PORT, 0x05);
	CHECK_EQ(i8042_kbd_ctrl_alt_del(&k), 0);
	for (size_t i = 0; i < ARRAY_SIZE(set2); i++)
		CHECK_EQ(read_reply(&k, NULL), set2[i]);
	CHECK_EQ(read_reply(&k, NULL), -1);
	/* No room for the whole sequence: nothing queued. */
	CHECK_EQ(i8042_kbd_ctrl_alt_del(&k), 0);
	CHECK_EQ(i8042_kbd_ctrl_alt_del(&k), -ENOBUFS);
	for (size_t i = 0; i < ARRAY_SIZE(set2); i++)
		CHECK_EQ(read_reply(&k, NULL), set2[i]);
	CHECK_EQ(read_reply(&k, NULL), -1);
	/* Set 3 untranslated: refused. Keyboard disabled: refused. */
	outb(&k, I8042_DATA_PORT, 0xf0);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	outb(&k, I8042_DATA_PORT, 0x03);
	CHECK_EQ(read_reply(&k, NULL), 0xfa);
	CHECK_EQ(i8042_kbd_ctrl_alt_del(&k), -EOPNOTSUPP);
	outb(&k, I8042_CMD_PORT, 0xad);
	CHECK_EQ(i8042_kbd_ctrl_alt_del(&k), -ENODEV);
	CHECK_EQ(read_reply(&k, NULL), -1);
	i8042_destroy(&k);
}

static void test_reset(void)
{
	struct i8042 k;

	setup(&k);
	outb(&k, I8042_CMD_PORT, 0xfe);
	CHECK_EQ(resets, 1);
	CHECK_EQ(k.resets, 1);
	/* Pulses that leave bit 0 alone do not reset. */
	outb(&k, I8042_CMD_PORT, 0xff);
	outb(&k, I8042_CMD_PORT, 0xf1);
	CHECK_EQ(resets, 1);
	/* Output port write with the reset line low. */
	outb(&k, I8042_CMD_PORT, 0xd1);
	outb(&k, I8042_DATA_PORT, 0x03);
	CHECK_EQ(resets, 1);
	outb(&k, I8042_CMD_PORT, 0xd1);
	outb(&k, I8042_DATA_PORT, 0x02);
	CHECK_EQ(resets, 2);
	/* Without a callback nothing breaks. */
	k.reset = NULL;
	outb(&k, I8042_CMD_PORT, 0xfe);
	CHECK_EQ(k.resets, 3);
	i8042_destroy(&k);
}

static void test_snapshot(void)
{
	struct i8042 a, b;
	struct i8042_state st, bad;

	check_desc_exact(&i8042_snap_desc, struct i8042_state, NULL, 0);
	CHECK_EQ(i8042_snap_desc.state_size, sizeof(struct i8042_state));
	setup(&a);
	outb(&a, I8042_DATA_PORT, 0xed); /* waits for a parameter */
	inb(&a, I8042_DATA_PORT);
	outb(&a, I8042_DATA_PORT, 0x05);
	inb(&a, I8042_DATA_PORT);
	outb(&a, I8042_DATA_PORT, 0xf2);
	CHECK_EQ(inb(&a, I8042_DATA_PORT), 0xfa);
	outb(&a, I8042_DATA_PORT, 0xf0); /* param pending at save time */
	i8042_state_save(&a, &st);
	CHECK_EQ(st.outq_len, 3);
	{
		struct i8042_state back;

		memset(&back, 0, sizeof(back));
		CHECK_EQ(snap_roundtrip(&i8042_snap_desc, &st, &back), 0);
		CHECK(!memcmp(&back, &st, sizeof(st)));
		st = back;
	}

	setup(&b);
	CHECK_EQ(rk.level, 0);
	CHECK_EQ(i8042_state_apply(&b, &st), 0);
	CHECK_EQ(rk.level, 1); /* re-driven from the restored queue */
	CHECK_EQ(ra.level, 0);
	CHECK_EQ(read_reply(&b, NULL), 0xab);
	CHECK_EQ(read_reply(&b, NULL), 0x83);
	CHECK_EQ(read_reply(&b, NULL), 0xfa);
	CHECK_EQ(rk.level, 0);
	outb(&b, I8042_DATA_PORT, 0x00);
	CHECK_EQ(read_reply(&b, NULL), 0xfa);
	CHECK_EQ(read_reply(&b, NULL), 0x02);
	i8042_state_save(&b, &bad);
	CHECK_EQ(bad.kbd_leds, 5);

	bad = st;
	bad.outq_len = 17;
	CHECK_EQ(i8042_state_apply(&b, &bad), -EINVAL);
	bad = st;
	bad.pending_cmd = 0xaa;
	CHECK_EQ(i8042_state_apply(&b, &bad), -EINVAL);
	bad = st;
	bad.kbd_scanset = 0;
	CHECK_EQ(i8042_state_apply(&b, &bad), -EINVAL);
	i8042_destroy(&a);
	i8042_destroy(&b);
}

static uint64_t rng = 0x853c49e6748fea9bULL;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_fuzz(void)
{
	struct i8042 k;
	struct i8042_state st;
	unsigned bad = 0;

	setup(&k);
	for (unsigned i = 0; i < 100000; i++) {
		uint64_t x = next_rand(), y = next_rand();
		uint8_t buf[8];

		memcpy(buf, &y, sizeof(buf));
		i8042_io(&k, (x >> 1) % 6, buf, 1u << ((x >> 4) & 3), x & 1);
		if ((x >> 20) % 32 == 0)
			i8042_kbd_inject(&k, buf, (x >> 24) % 8);
		i8042_state_save(&k, &st);
		if (i8042_state_check(&st) < 0)
			bad++;
		if (rk.level && ra.level)
			bad++;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(resets, k.resets);
	CHECK(resets > 0);
	i8042_destroy(&k);
}

int main(void)
{
	RUN(test_controller_probe);
	RUN(test_keyboard);
	RUN(test_irqs);
	RUN(test_ctrl_alt_del);
	RUN(test_reset);
	RUN(test_snapshot);
	RUN(test_fuzz);
	return unit_done();
}
