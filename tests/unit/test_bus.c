/* SPDX-License-Identifier: BSD-2-Clause */
#include <string.h>

#include "bus.h"
#include "unit.h"

struct rec {
	uint64_t off;
	unsigned size;
	bool write;
	int calls;
};

static int rec_io(void *opaque, uint64_t offset, void *data, unsigned size,
		  bool is_write)
{
	struct rec *r = opaque;

	r->off = offset;
	r->size = size;
	r->write = is_write;
	r->calls++;
	if (!is_write)
		memset(data, 0x5a, size);
	return 0;
}

static void test_register_dispatch(void)
{
	struct bus b;
	struct rec a = { 0 }, c = { 0 };
	uint32_t v = 0;

	CHECK_EQ(bus_init(&b, "pio"), 0);
	CHECK_EQ(bus_register(&b, 0x3f8, 8, rec_io, &a, "com1"), 0);
	CHECK_EQ(bus_register(&b, 0x70, 2, rec_io, &c, "rtc"), 0);
	CHECK_EQ(bus_dispatch(&b, 0x3fd, &v, 1, false), 0);
	CHECK_EQ(a.off, 5);
	CHECK_EQ(v & 0xff, 0x5a);
	CHECK_EQ(bus_dispatch(&b, 0x71, &v, 1, true), 0);
	CHECK_EQ(c.off, 1);
	CHECK(c.write);
	/* Unmapped reads see all-ones. */
	v = 0;
	CHECK_EQ(bus_dispatch(&b, 0x80, &v, 4, false), -ENOENT);
	CHECK_EQ(v, 0xffffffff);
	/* An access straddling the end of a range is not the device's. */
	CHECK_EQ(bus_dispatch(&b, 0x3ff, &v, 2, false), -ENOENT);
	CHECK_EQ(b.unhandled, 2);
	bus_destroy(&b);
}

static void test_overlap_and_unregister(void)
{
	struct bus b;
	struct rec a = { 0 };
	uint8_t v;

	bus_init(&b, "mmio");
	CHECK_EQ(bus_register(&b, 0x1000, 0x1000, rec_io, &a, "x"), 0);
	CHECK_EQ(bus_register(&b, 0x1800, 0x100, rec_io, &a, "y"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x0f00, 0x101, rec_io, &a, "y"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x0f00, 0x100, rec_io, &a, "y"), 0);
	CHECK_EQ(bus_register(&b, 0x2000, 0, rec_io, &a, "z"), -EINVAL);
	CHECK_EQ(bus_register(&b, UINT64_MAX, 2, rec_io, &a, "z"), -EINVAL);
	CHECK_EQ(b.nr, 2);
	CHECK_EQ(bus_unregister(&b, 0x1000), 0);
	CHECK_EQ(bus_unregister(&b, 0x1000), -ENOENT);
	CHECK_EQ(bus_dispatch(&b, 0x1000, &v, 1, false), -ENOENT);
	CHECK_EQ(bus_dispatch(&b, 0x0fff, &v, 1, false), 0);
	/* Many ranges stay sorted and findable. */
	for (unsigned i = 0; i < 100; i++)
		CHECK_EQ(bus_register(&b, 0x100000 + (99 - i) * 0x10, 0x10,
				      rec_io, &a, "n"),
			 0);
	a.calls = 0;
	for (unsigned i = 0; i < 100; i++)
		bus_dispatch(&b, 0x100000 + i * 0x10 + 3, &v, 1, false);
	CHECK_EQ(a.calls, 100);
	bus_destroy(&b);
}

int main(void)
{
	RUN(test_register_dispatch);
	RUN(test_overlap_and_unregister);
	return unit_done();
}
