/* SPDX-License-Identifier: BSD-2-Clause */
/* PCI bus 0 through 0xCF8/0xCFC as a guest kernel enumerates it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdio.h>

#include "bus.h"
#include "common.h"
#include "log.h"
#include "pci.h"
#include "snap.h"
#include "unit.h"

static struct bus pio, mmio;
static struct pci_bus pci;

static unsigned bar_hits;
static uint64_t bar_last_off;
static int bar_io(void *opaque, uint64_t off, void *data, unsigned size,
		  bool is_write)
{
	bar_hits++;
	bar_last_off = off;
	if (!is_write)
		memset(data, 0xab, size);
	return 0;
}

static unsigned msi_count;
static uint64_t msi_addr;
static uint32_t msi_data;
static int msi_send(void *opaque, uint64_t addr, uint32_t data)
{
	msi_count++;
	msi_addr = addr;
	msi_data = data;
	return 0;
}

static int irq_level = -1;
static unsigned irq_gsi;
static int irq_set(void *opaque, unsigned gsi, int level)
{
	irq_gsi = gsi;
	irq_level = level;
	return 0;
}

static uint32_t cfg_addr(unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(unsigned slot, unsigned fn, unsigned reg,
			 unsigned size)
{
	uint32_t a = cfg_addr(slot, fn, reg), v = 0;

	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	bus_dispatch(&pio, 0xCFC + (reg & 3), &v, size, false);
	return v;
}

static void cfg_write(unsigned slot, unsigned fn, unsigned reg, uint32_t v,
		      unsigned size)
{
	uint32_t a = cfg_addr(slot, fn, reg);

	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	bus_dispatch(&pio, 0xCFC + (reg & 3), &v, size, true);
}

static uint64_t mmio_read32(uint64_t addr)
{
	uint32_t v = 0;

	if (bus_dispatch(&mmio, addr, &v, 4, false))
		return ~0ULL;
	return v;
}

static void mmio_write32(uint64_t addr, uint32_t v)
{
	bus_dispatch(&mmio, addr, &v, 4, true);
}

static struct pci_dev dev, dev2;

static void setup(void)
{
	struct msi_sink sink = {msi_send, NULL};
	struct irq_line line = {irq_set, NULL, 11};

	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(pci_bus_init(&pci, &pio, &mmio, 0xC0000000ULL, 0x10000000ULL),
		 0);
	CHECK_EQ(pci_dev_init(&dev, "test", 0x1234, 0x5678, 0x02000001, 0x1af4,
			      0x0042),
		 0);
	CHECK_EQ(pci_dev_add_bar(&dev, 0, 0x1000, PCI_BAR_MEM32, bar_io, NULL),
		 0);
	CHECK_EQ(pci_dev_add_bar(&dev, 2, 0x100000,
				 PCI_BAR_MEM64 | PCI_BAR_PREFETCH, bar_io,
				 NULL),
		 0);
	CHECK_EQ(pci_dev_add_bar(&dev, 3, 0x1000, PCI_BAR_MEM32, bar_io, NULL),
		 -EEXIST);
	CHECK_EQ(pci_msix_init(&dev, 4, 4, &sink), 0);
	CHECK_EQ(pci_add_device(&pci, 3, 0, &dev), 0);
	pci_dev_set_intx(&dev, &line);
}

static void teardown(void)
{
	pci_dev_destroy(&dev);
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static void test_enumerate(void)
{
	unsigned found = 0;

	setup();
	/* Host bridge at 00:00.0, class 0x0600. */
	CHECK_EQ(cfg_read(0, 0, 0, 4), 0x29c08086);
	CHECK_EQ(cfg_read(0, 0, 0x0a, 2), 0x0600);
	/* Byte and word accesses through 0xCFD-0xCFF. */
	CHECK_EQ(cfg_read(3, 0, 0, 2), 0x1234);
	CHECK_EQ(cfg_read(3, 0, 2, 2), 0x5678);
	CHECK_EQ(cfg_read(3, 0, 1, 1), 0x12);
	CHECK_EQ(cfg_read(3, 0, 0x0b, 1), 0x02);
	CHECK_EQ(cfg_read(3, 0, 0x2e, 2), 0x0042);
	/* Empty slot, other function, other bus, disabled: all-ones. */
	CHECK_EQ(cfg_read(4, 0, 0, 4), 0xffffffff);
	CHECK_EQ(cfg_read(3, 1, 0, 4), 0xffffffff);
	{
		uint32_t a = 0x80010000u, v = 0;

		bus_dispatch(&pio, 0xCF8, &a, 4, true);
		bus_dispatch(&pio, 0xCFC, &v, 4, false);
		CHECK_EQ(v, 0xffffffff);
		a = 3 << 11;
		bus_dispatch(&pio, 0xCF8, &a, 4, true);
		bus_dispatch(&pio, 0xCFC, &v, 4, false);
		CHECK_EQ(v, 0xffffffff);
		/* The address latch reads back. */
		bus_dispatch(&pio, 0xCF8, &v, 4, false);
		CHECK_EQ(v, 3 << 11);
	}
	/* Single-function device: header type bit 7 clear. */
	CHECK_EQ(cfg_read(3, 0, PCI_HEADER_TYPE, 1), 0);
	CHECK_EQ(pci_dev_init(&dev2, "fn1", 0x1234, 0x9999, 0, 0, 0), 0);
	CHECK_EQ(pci_add_device(&pci, 3, 1, &dev2), 0);
	CHECK_EQ(cfg_read(3, 0, PCI_HEADER_TYPE, 1), 0x80);
	CHECK_EQ(cfg_read(3, 1, 0, 4), 0x99991234);
	CHECK_EQ(pci_add_device(&pci, 3, 1, &dev2), -EEXIST);
	CHECK_EQ(pci_add_device(&pci, 0, 0, &dev2), -EEXIST);
	CHECK_EQ(pci_add_device(&pci, 32, 0, &dev2), -EINVAL);
	pci_dev_destroy(&dev2);
	CHECK_EQ(cfg_read(3, 1, 0, 4), 0xffffffff);

	/* Read-only fields stay read-only. */
	cfg_write(3, 0, 0, 0, 4);
	cfg_write(3, 0, 8, 0, 4);
	CHECK_EQ(cfg_read(3, 0, 0, 4), 0x56781234);
	CHECK_EQ(cfg_read(3, 0, 8, 4), 0x02000001);
	cfg_write(3, 0, PCI_INTERRUPT_LINE, 5, 1);
	CHECK_EQ(cfg_read(3, 0, PCI_INTERRUPT_LINE, 1), 5);
	CHECK_EQ(cfg_read(3, 0, PCI_INTERRUPT_PIN, 1), 1);

	/* Capability list walk finds MSI-X with our table size. */
	CHECK(cfg_read(3, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (unsigned p = cfg_read(3, 0, PCI_CAPABILITY_LIST, 1), n = 0;
	     p && n < 48; p = cfg_read(3, 0, p + 1, 1), n++) {
		if (cfg_read(3, 0, p, 1) == PCI_CAP_ID_MSIX) {
			found++;
			CHECK_EQ(cfg_read(3, 0, p + 2, 2) & 0x7ff, 3);
			CHECK_EQ(cfg_read(3, 0, p + 4, 4), 4);
			CHECK_EQ(cfg_read(3, 0, p + 8, 4), 0x800 | 4);
		}
	}
	CHECK_EQ(found, 1);
	teardown();
}

static void test_bar_sizing_and_move(void)
{
	uint32_t b0, b2lo, b2hi;
	uint64_t a0;

	setup();
	b0 = cfg_read(3, 0, PCI_BAR0, 4);
	b2lo = cfg_read(3, 0, PCI_BAR0 + 8, 4);
	b2hi = cfg_read(3, 0, PCI_BAR0 + 12, 4);
	/* Allocated in the window, naturally aligned, flags preserved. */
	CHECK(b0 >= 0xC0000000u && b0 < 0xD0000000u);
	CHECK_EQ(b0 & 0xfff, 0);
	CHECK_EQ(b2lo & 0xf, PCI_BAR_MEM64 | PCI_BAR_PREFETCH);
	CHECK_EQ((b2lo & ~0xfu) % 0x100000, 0);
	CHECK_EQ(b2hi, 0);
	CHECK(pci_bar_addr(&dev, 0) != pci_bar_addr(&dev, 2));

	/* Sizing as Linux does it: memory decode off, all-ones, read. */
	cfg_write(3, 0, PCI_BAR0, 0xffffffff, 4);
	CHECK_EQ(cfg_read(3, 0, PCI_BAR0, 4), 0xfffff000);
	cfg_write(3, 0, PCI_BAR0 + 8, 0xffffffff, 4);
	cfg_write(3, 0, PCI_BAR0 + 12, 0xffffffff, 4);
	CHECK_EQ(cfg_read(3, 0, PCI_BAR0 + 8, 4), 0xfff0000c);
	CHECK_EQ(cfg_read(3, 0, PCI_BAR0 + 12, 4), 0xffffffff);
	/* Unimplemented BAR sizes to 0. */
	cfg_write(3, 0, PCI_BAR0 + 20, 0xffffffff, 4);
	CHECK_EQ(cfg_read(3, 0, PCI_BAR0 + 20, 4), 0);
	cfg_write(3, 0, PCI_BAR0, b0, 4);
	cfg_write(3, 0, PCI_BAR0 + 8, b2lo, 4);
	cfg_write(3, 0, PCI_BAR0 + 12, b2hi, 4);

	/* Not mapped until memory decode is enabled. */
	CHECK_EQ(mmio_read32(b0), ~0ULL);
	CHECK(!pci_bar_mapped(&dev, 0));
	cfg_write(3, 0, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	CHECK(pci_bar_mapped(&dev, 0));
	bar_hits = 0;
	CHECK_EQ(mmio_read32(b0 + 0x10), 0xabababab);
	CHECK_EQ(bar_last_off, 0x10);
	CHECK_EQ(mmio_read32((b2lo & ~0xfu) + 0xff000), 0xabababab);
	CHECK_EQ(bar_hits, 2);

	/* Guest moves BAR0: old address dark, new one decodes. */
	a0 = 0xC8000000u;
	cfg_write(3, 0, PCI_BAR0, (uint32_t)a0, 4);
	CHECK_EQ(pci_bar_addr(&dev, 0), a0);
	CHECK_EQ(mmio_read32(b0 + 0x10), ~0ULL);
	CHECK_EQ(mmio_read32(a0 + 0x20), 0xabababab);
	CHECK_EQ(bar_last_off, 0x20);
	/* 64-bit BAR moved above 4 GiB through its upper half. */
	cfg_write(3, 0, PCI_BAR0 + 12, 0x10, 4);
	CHECK_EQ(pci_bar_addr(&dev, 2), 0x1000000000ULL | (b2lo & ~0xfu));
	CHECK_EQ(mmio_read32(0x1000000000ULL | (b2lo & ~0xfu)), 0xabababab);
	CHECK_EQ(mmio_read32(b2lo & ~0xfu), ~0ULL);
	/* A BAR placed over another one stays dark (no overlap). */
	cfg_write(3, 0, PCI_BAR0 + 12, 0, 4);
	cfg_write(3, 0, PCI_BAR0, (b2lo & ~0xfu), 4);
	CHECK(!pci_bar_mapped(&dev, 0));
	CHECK(pci_bar_mapped(&dev, 2));
	cfg_write(3, 0, PCI_BAR0, (uint32_t)a0, 4);
	CHECK(pci_bar_mapped(&dev, 0));

	/* Memory decode off unmaps everything. */
	cfg_write(3, 0, PCI_COMMAND, 0, 2);
	CHECK(!pci_bar_mapped(&dev, 0));
	CHECK(!pci_bar_mapped(&dev, 2));
	CHECK_EQ(mmio_read32(a0), ~0ULL);
	teardown();
}

/* Lines in @path (a log file the test pointed khyve's log at). */
static unsigned log_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/*
 * Found by the hostile guest (tests/guests/hostile.c): a BAR the guest put
 * over another BAR stayed dark after that other BAR moved away, until its
 * own config space was written again (real decoders compare addresses:
 * it decodes again at once). And every such overlapping write logged a
 * line: a guest could fill the host's log in a loop.
 */
static void test_dark_bar_returns_and_no_log_flood(void)
{
	char path[] = "/tmp/khyve-test-pci-log-XXXXXX";
	uint64_t b2, d2, a0 = 0xC8000000u;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	close(fd);
	setup();
	CHECK_EQ(pci_dev_init(&dev2, "fn1", 0x1234, 0x9999, 0, 0, 0), 0);
	CHECK_EQ(pci_dev_add_bar(&dev2, 0, 0x1000, PCI_BAR_MEM32, bar_io,
				 NULL),
		 0);
	CHECK_EQ(pci_add_device(&pci, 4, 0, &dev2), 0);
	cfg_write(3, 0, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	cfg_write(4, 0, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	b2 = pci_bar_addr(&dev, 2);
	d2 = pci_bar_addr(&dev2, 0);
	CHECK(pci_bar_mapped(&dev2, 0));

	/* Over its own device's BAR2: dark, then lit when BAR2 moves. */
	cfg_write(3, 0, PCI_BAR0, (uint32_t)b2, 4);
	CHECK(!pci_bar_mapped(&dev, 0));
	cfg_write(3, 0, PCI_BAR0 + 8, (uint32_t)0xCC000000u, 4);
	CHECK(pci_bar_mapped(&dev, 2));
	CHECK(pci_bar_mapped(&dev, 0));
	CHECK_EQ(mmio_read32(b2 + 0x10), 0xabababab);

	/* Over another function's BAR: lit when that one moves away. */
	cfg_write(3, 0, PCI_BAR0, (uint32_t)d2, 4);
	CHECK(!pci_bar_mapped(&dev, 0));
	cfg_write(4, 0, PCI_BAR0, (uint32_t)a0, 4);
	CHECK(pci_bar_mapped(&dev2, 0));
	CHECK(pci_bar_mapped(&dev, 0));
	/* ... and when that one stops decoding. */
	cfg_write(3, 0, PCI_BAR0, (uint32_t)a0, 4);
	CHECK(!pci_bar_mapped(&dev, 0));
	cfg_write(4, 0, PCI_COMMAND, 0, 2);
	CHECK(pci_bar_mapped(&dev, 0));

	/* A thousand overlapping writes: two lines at most in the log. */
	CHECK_EQ(log_set_file(path), 0);
	cfg_write(4, 0, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	for (unsigned i = 0; i < 1000; i++)
		cfg_write(3, 0, PCI_BAR0, 0xCC000000u + 0x1000 * (i & 1), 4);
	CHECK(!pci_bar_mapped(&dev, 0));
	CHECK(log_lines(path) <= 2);
	CHECK_EQ(log_set_file("/dev/stderr"), 0);
	unlink(path);
	pci_dev_destroy(&dev2);
	teardown();
}

static void test_bar_window_full(void)
{
	struct pci_dev big;

	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(pci_bus_init(&pci, &pio, &mmio, 0xC0000000ULL, 0x100000), 0);
	pci_dev_init(&big, "big", 1, 2, 0, 0, 0);
	pci_dev_add_bar(&big, 0, 0x200000, PCI_BAR_MEM32, bar_io, NULL);
	CHECK_EQ(pci_add_device(&pci, 1, 0, &big), -ENOSPC);
	CHECK_EQ(cfg_read(1, 0, 0, 4), 0xffffffff);
	pci_dev_destroy(&big);
	pci_bus_destroy(&pci);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	/* Bad BAR declarations. */
	pci_dev_init(&big, "bad", 1, 2, 0, 0, 0);
	CHECK_EQ(pci_dev_add_bar(&big, 0, 0x3000, 0, bar_io, NULL), -EINVAL);
	CHECK_EQ(pci_dev_add_bar(&big, 5, 0x1000, PCI_BAR_MEM64, bar_io, NULL),
		 -EINVAL);
	CHECK_EQ(pci_dev_add_bar(&big, 6, 0x1000, 0, bar_io, NULL), -EINVAL);
	pci_dev_destroy(&big);
}

static unsigned msix_cap(void)
{
	return dev.msix_cap;
}

static void test_msix(void)
{
	uint64_t tbl;
	unsigned cap;

	setup();
	cap = msix_cap();
	cfg_write(3, 0, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER,
		  2);
	tbl = pci_bar_addr(&dev, 4);
	CHECK(tbl != 0);
	/* Vectors start masked. */
	CHECK_EQ(mmio_read32(tbl + 12), 1);
	CHECK_EQ(pci_msix_notify(&dev, 0), -ENOTSUP);
	CHECK_EQ(pci_msix_notify(&dev, 4), -EINVAL);

	/* Program vector 2 while masked, then enable MSI-X. */
	mmio_write32(tbl + 2 * 16, 0xfee01000);
	mmio_write32(tbl + 2 * 16 + 4, 0);
	mmio_write32(tbl + 2 * 16 + 8, 0x4041);
	CHECK_EQ(mmio_read32(tbl + 2 * 16 + 8), 0x4041);
	cfg_write(3, 0, cap + 2, PCI_MSIX_FLAGS_ENABLE, 2);
	CHECK(pci_msix_enabled(&dev));
	CHECK_EQ(cfg_read(3, 0, cap + 2, 2),
		 PCI_MSIX_FLAGS_ENABLE | 3); /* table size is read-only */

	/* Masked vector: pending bit, no message. */
	msi_count = 0;
	CHECK_EQ(pci_msix_notify(&dev, 2), 0);
	CHECK_EQ(msi_count, 0);
	CHECK_EQ(mmio_read32(tbl + 0x800), 1u << 2);
	/* PBA is read-only. */
	mmio_write32(tbl + 0x800, 0);
	CHECK_EQ(mmio_read32(tbl + 0x800), 1u << 2);
	/* Unmasking delivers the pending message and clears the bit. */
	mmio_write32(tbl + 2 * 16 + 12, 0);
	CHECK_EQ(msi_count, 1);
	CHECK_EQ(msi_addr, 0xfee01000);
	CHECK_EQ(msi_data, 0x4041);
	CHECK_EQ(mmio_read32(tbl + 0x800), 0);
	/* Unmasked: straight through. */
	CHECK_EQ(pci_msix_notify(&dev, 2), 0);
	CHECK_EQ(msi_count, 2);

	/* Function mask holds everything back until cleared. */
	cfg_write(3, 0, cap + 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL,
		  2);
	pci_msix_notify(&dev, 2);
	CHECK_EQ(msi_count, 2);
	CHECK_EQ(mmio_read32(tbl + 0x800), 1u << 2);
	cfg_write(3, 0, cap + 2, PCI_MSIX_FLAGS_ENABLE, 2);
	CHECK_EQ(msi_count, 3);
	CHECK_EQ(mmio_read32(tbl + 0x800), 0);
	/* Reserved vector-control bits do not stick. */
	mmio_write32(tbl + 12, 0xfffffffe);
	CHECK_EQ(mmio_read32(tbl + 12), 0);
	teardown();
}

static void test_intx(void)
{
	setup();
	irq_level = -1;
	CHECK_EQ(cfg_read(3, 0, PCI_INTERRUPT_LINE, 1), 11);
	pci_set_irq(&dev, 1);
	CHECK_EQ(irq_level, 1);
	CHECK_EQ(irq_gsi, 11);
	CHECK(cfg_read(3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* INTx disable gates the line but not the status bit. */
	cfg_write(3, 0, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
	CHECK_EQ(irq_level, 0);
	CHECK(cfg_read(3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_write(3, 0, PCI_COMMAND, 0, 2);
	CHECK_EQ(irq_level, 1);
	pci_set_irq(&dev, 0);
	CHECK_EQ(irq_level, 0);
	CHECK(!(cfg_read(3, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	teardown();
}

static void test_snapshot(void)
{
	char path[64];
	struct snap_host_info h;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct err err = {0};
	uint64_t tbl;

	snprintf(path, sizeof(path), "/tmp/khyve-pci-%d.snap", (int)getpid());
	setup();
	cfg_write(3, 0, PCI_BAR0, 0xC9000000u, 4);
	cfg_write(3, 0, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	tbl = pci_bar_addr(&dev, 4);
	mmio_write32(tbl + 16, 0xfee00000);
	mmio_write32(tbl + 24, 0x55);
	cfg_write(3, 0, dev.msix_cap + 2, PCI_MSIX_FLAGS_ENABLE, 2);
	pci_msix_notify(&dev, 1); /* masked: pending */

	CHECK_EQ(snap_host_info_probe(&h, "unit"), 0);
	CHECK_EQ(snap_writer_open(&w, path, &h, NULL), 0);
	if (!w)
		return;
	CHECK_EQ(snap_write_section(w, &pci_dev_snap, 3, &dev.st), 0);
	CHECK_EQ(snap_writer_commit(w), 0);
	teardown();

	/* A new VMM builds the same device, then loads the state. */
	setup();
	CHECK(!pci_bar_mapped(&dev, 0));
	CHECK_EQ(snap_reader_open(&r, path, &err), 0);
	if (!r)
		return;
	CHECK_EQ(snap_read_section(r, &pci_dev_snap, 3, &dev.st, &err), 0);
	snap_reader_close(r);
	CHECK_EQ(pci_dev_post_load(&dev), 0);
	CHECK(pci_bar_mapped(&dev, 0));
	CHECK_EQ(pci_bar_addr(&dev, 0), 0xC9000000u);
	CHECK_EQ(mmio_read32(0xC9000000u), 0xabababab);
	CHECK(pci_msix_enabled(&dev));
	CHECK_EQ(mmio_read32(tbl + 0x800), 2);
	msi_count = 0;
	mmio_write32(tbl + 16 + 12, 0);
	CHECK_EQ(msi_count, 1);
	CHECK_EQ(msi_data, 0x55);
	teardown();
	unlink(path);
}

/*
 * A checkpoint between the guest's 0xCF8 write and its 0xCFC access: the
 * restored bus must still hold the address, so the access reaches the
 * register the guest chose (without the pci_bus section it reached the
 * host bridge's register 0).
 */
static void test_snapshot_config_latch(void)
{
	char path[64];
	struct snap_host_info h;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct err err = {0};
	struct pci_bus_state st;
	uint32_t a = cfg_addr(3, 0, PCI_BAR0), v = 0, want;

	snprintf(path, sizeof(path), "/tmp/khyve-pcilatch-%d.snap",
		 (int)getpid());
	setup();
	cfg_write(3, 0, PCI_BAR0, 0xC9000000u, 4);
	want = cfg_read(3, 0, PCI_BAR0, 4);
	bus_dispatch(&pio, 0xCF8, &a, 4, true);
	pci_bus_state_save(&pci, &st);
	CHECK_EQ(st.config_addr, a);
	CHECK_EQ(snap_host_info_probe(&h, "unit"), 0);
	CHECK_EQ(snap_writer_open(&w, path, &h, NULL), 0);
	if (!w)
		return;
	CHECK_EQ(snap_write_section(w, &pci_dev_snap, 3, &dev.st), 0);
	CHECK_EQ(snap_write_section(w, &pci_bus_snap, 0, &st), 0);
	CHECK_EQ(snap_writer_commit(w), 0);
	teardown();

	setup();
	CHECK_EQ(snap_reader_open(&r, path, &err), 0);
	if (!r)
		return;
	memset(&st, 0, sizeof(st));
	CHECK_EQ(snap_read_section(r, &pci_dev_snap, 3, &dev.st, &err), 0);
	CHECK_EQ(snap_read_section(r, &pci_bus_snap, 0, &st, &err), 0);
	snap_reader_close(r);
	CHECK_EQ(pci_dev_post_load(&dev), 0);
	pci_bus_state_apply(&pci, &st);
	/* The guest's next step: read 0xCFC, without writing 0xCF8 again. */
	bus_dispatch(&pio, 0xCF8, &v, 4, false);
	CHECK_EQ(v, a);
	v = 0;
	bus_dispatch(&pio, 0xCFC, &v, 4, false);
	CHECK_EQ(v, want);
	CHECK_EQ(want, 0xC9000000u);
	teardown();
	unlink(path);
}

int main(void)
{
	RUN(test_enumerate);
	RUN(test_bar_sizing_and_move);
	RUN(test_dark_bar_returns_and_no_log_flood);
	RUN(test_bar_window_full);
	RUN(test_msix);
	RUN(test_intx);
	RUN(test_snapshot);
	RUN(test_snapshot_config_latch);
	return unit_done();
}
