/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The VM generation ID device: its AML is well formed (every PkgLength
 * ends where its object does) and, built into khyve's DSDT, leads a guest
 * (the test guest's own ACPI walk, tests/guests/gutil.c) from the RSDP to
 * the reserved address; the ID there is fresh at boot and on every
 * restore, a restore raises one edge on the GED's GSI, and a snapshot
 * without the section (--no-vmgenid, older khyve) restores without one.
 */
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "common.h"
#include "e820.h"
#include "layout.h"
#include "unit.h"
#include "vmgenid.h"

#include "../guests/gutil.c"

#define RAM (64 * MiB)

static struct guest_mem mem;
static struct err err;

static int fake_mem(void)
{
	if (guest_mem_layout(&mem, RAM))
		return -1;
	mem.base = calloc(1, RAM);
	if (!mem.base)
		return -1;
	for (unsigned i = 0; i < mem.nr; i++)
		mem.r[i].hva = mem.base + mem.r[i].offset;
	return 0;
}

/* PkgLength at @p (ACPI 20.2.4): the value, and its size in *n. */
static size_t pkglen(const uint8_t *p, size_t *n)
{
	size_t extra = p[0] >> 6, v = extra ? p[0] & 0xf : p[0] & 0x3f;

	for (size_t i = 0; i < extra; i++)
		v |= (size_t)p[1 + i] << (4 + 8 * i);
	*n = 1 + extra;
	return v;
}

static void test_aml_layout(void)
{
	uint8_t a[256];
	size_t len = vmgenid_aml(a, sizeof(a), 0x12345678abcdef00ULL, 16), n;
	uint8_t *dev2;

	CHECK_EQ(vmgenid_aml(a, 10, 0, 16), 0); /* too small: nothing */
	CHECK(len > 100);
	/* Scope (\_SB): its PkgLength covers the whole blob. */
	CHECK_EQ(a[0], 0x10);
	CHECK_EQ(1 + pkglen(a + 1, &n), len);
	CHECK(!memcmp(a + 1 + n, "\\_SB_", 5));
	/* Device (VGEN) then Device (GED0), back to back. */
	CHECK(a[8] == 0x5b && a[9] == 0x82);
	CHECK(!memcmp(a + 8 + 2 + 2, "VGEN", 4));
	dev2 = a + 8 + 2 + pkglen(a + 10, &n);
	CHECK(dev2[0] == 0x5b && dev2[1] == 0x82);
	CHECK(!memcmp(dev2 + 4, "GED0", 4));
	CHECK_EQ((size_t)(dev2 + 2 + pkglen(dev2 + 2, &n) - a), len);
	CHECK(memmem(a, len, "\x0dVMGENCTR", 10) != NULL);
	CHECK(memmem(a, len, "\x0dVM_Gen_Counter", 16) != NULL);
	CHECK(memmem(a, len,
		     "\x0d"
		     "ACPI0013",
		     10) != NULL);
	/* ADDR: Method, Return (Package (2) { lo, hi }), lengths exact. */
	{
		uint8_t *m = (uint8_t *)memmem(a, len, "ADDR", 4) - 2;

		CHECK_EQ(m[0], 0x14);
		CHECK_EQ(pkglen(m + 1, &n), 20);
		CHECK(m[6] == 0x00 && m[7] == 0xa4 && m[8] == 0x12);
		CHECK_EQ(pkglen(m + 9, &n), 12);
		CHECK(m[10] == 2 && m[11] == 0x0c && m[16] == 0x0c);
		CHECK_EQ(get_le32(m + 12), 0xabcdef00u);
		CHECK_EQ(get_le32(m + 17), 0x12345678u);
	}
	/* The GED's interrupt and the _EVT comparison name the GSI. */
	{
		uint8_t *crs = memmem(a, len, "\x89\x06\x00", 3);
		uint8_t *evt = memmem(a, len, "_EVT", 4);

		CHECK(crs && crs[3] == 0x03 && crs[4] == 1);
		CHECK_EQ(get_le32(crs + 5), 16);
		CHECK(crs[9] == 0x79 && crs[10] == 0);
		CHECK(evt && evt[4] == 1 && evt[5] == 0xa0);
		CHECK(evt[7] == 0x93 && evt[8] == 0x68 && evt[9] == 0x0a);
		CHECK_EQ(evt[10], 16);
		CHECK(!memcmp(evt + 11, "\x86\x5c\x2e_SB_VGEN\x0a\x80", 13));
	}
	/* The guest's parser reads the same address from the blob. */
	{
		uint8_t dsdt[36 + 256] = "DSDT";
		uint64_t addr = 0;

		memcpy(dsdt + 36, a, len);
		CHECK_EQ(gaml_vmgenid_addr(dsdt, (uint32_t)(36 + len), &addr),
			 0);
		CHECK_EQ(addr, 0x12345678abcdef00ULL);
	}
}

static const void *mem_phys(uint64_t pa, uint64_t len, void *ctx)
{
	return guest_mem_ptr(ctx, pa, len);
}

static bool recorded; /* the incoming stream is a recorded one */

static struct vmgenid *create_from(bool restore, bool incoming, bool off)
{
	struct vm_config cfg = {.no_vmgenid = off,
				.incoming_recorded = incoming && recorded};
	struct dev_env env = {.mem = &mem, .cfg = &cfg};
	struct dev_instance inst = {0};
	char file[] = "x.snap", addr[] = "tcp::7000";

	cfg.restore = restore ? file : NULL;
	cfg.incoming = incoming ? addr : NULL;
	err_clear(&err);
	CHECK_EQ(vmgenid_dev_ops.create("", &env, &inst, &err), 0);
	CHECK(inst.vp == NULL);
	return inst.dev;
}

static struct vmgenid *create(bool restore, bool off)
{
	return create_from(restore, false, off);
}

/* Boot: the DSDT leads to the reserved page, where a fresh ID is. */
static void test_boot_tables(void)
{
	uint8_t aml[512], zero[16] = {0};
	struct acpi_config ac = {.ncpus = 2, .dsdt_aml = aml};
	struct e820_entry e[16];
	struct vmgenid *g;
	uint64_t rsdp = 0, addr = 0;
	int n, k;

	memset(mem.base, 0, 2 * MiB);
	g = create(false, false);
	CHECK(g->present);
	CHECK(memcmp(mem.base + BOOT_VMGENID_ADDR, zero, 16) != 0);
	n = vmgenid_dev_ops.dsdt_aml(g, aml, sizeof(aml));
	CHECK(n > 0);
	CHECK_EQ(vmgenid_dev_ops.dsdt_aml(g, aml, 20), -ENOSPC);
	ac.dsdt_aml_len = (size_t)n;
	CHECK_EQ(acpi_build(&mem, &ac, &rsdp), 0);
	/* RSDP -> XSDT -> FADT -> DSDT, every checksum checked. */
	CHECK_EQ(gacpi_find_vmgenid(rsdp, mem_phys, &mem, &addr), 0);
	CHECK_EQ(addr, BOOT_VMGENID_ADDR);
	CHECK_EQ(gacpi_find_vmgenid(0, mem_phys, &mem, &addr), 0); /* scan */
	{
		const uint8_t *dsdt;
		uint32_t dlen;

		/* The GED's interrupt, as the guest finds it. */
		CHECK_EQ(gacpi_find_dsdt(rsdp, mem_phys, &mem, &dsdt, &dlen),
			 0);
		CHECK_EQ(gaml_ged_gsi(dsdt, dlen), VMGENID_GED_GSI);
	}
	/* Page aligned, outside the tables, e820-reserved. */
	CHECK_EQ(addr % 4096, 0);
	CHECK(addr >= ACPI_AREA_END);
	n = e820_build(&mem, e, ARRAY_SIZE(e));
	CHECK(n > 0);
	for (k = 0; k < n; k++)
		if (e[k].addr <= addr && addr + 16 <= e[k].addr + e[k].size)
			break;
	CHECK(k < n && e[k].type == E820_RESERVED);
	vmgenid_dev_ops.destroy(g);

	/* --no-vmgenid: nothing written, nothing in the DSDT. */
	memset(mem.base, 0, 2 * MiB);
	g = create(false, true);
	CHECK(!g->present);
	CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, zero, 16));
	CHECK_EQ(vmgenid_dev_ops.dsdt_aml(g, aml, sizeof(aml)), 0);
	ac.dsdt_aml_len = 0;
	CHECK_EQ(acpi_build(&mem, &ac, &rsdp), 0);
	CHECK_EQ(gacpi_find_vmgenid(rsdp, mem_phys, &mem, &addr), -G_ENOENT);
	vmgenid_dev_ops.destroy(g);
}

/* A stand-in for the snapshot file: one section, or none. */
static struct vmgenid_state saved;
static unsigned nsaved, nloaded;
static bool have_section;

static int save_fn(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	CHECK(d == &vmgenid_snap && inst == 0);
	memcpy(&saved, state, sizeof(saved));
	nsaved++;
	return 0;
}

static int load_fn(void *ctx, const struct snap_desc *d, uint32_t inst,
		   void *state)
{
	nloaded++;
	if (!have_section)
		return -ENOENT;
	memcpy(state, &saved, sizeof(saved));
	return 0;
}

static unsigned edges, level;

static int irq_rec(void *opaque, unsigned gsi, int lvl)
{
	CHECK_EQ(gsi, VMGENID_GED_GSI);
	if (lvl && !level)
		edges++;
	level = (unsigned)lvl;
	return 0;
}

static void test_restore_new_id(void)
{
	uint8_t boot_id[16], id1[16];
	struct vmgenid *g = create(false, false), *c;
	struct dev_stat st[DEV_MAX_STATS];

	memcpy(boot_id, mem.base + BOOT_VMGENID_ADDR, 16);
	nsaved = 0;
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(g, 0, save_fn, NULL), 0);
	CHECK_EQ(nsaved, 1);
	CHECK_EQ(saved.addr, BOOT_VMGENID_ADDR);
	CHECK_EQ(saved.gsi, VMGENID_GED_GSI);
	/* The original's resume after a checkpoint notifies nothing. */
	g->irq = (struct irq_line){irq_rec, NULL, 0};
	edges = 0;
	vmgenid_dev_ops.resume(g);
	CHECK_EQ(edges, 0);
	CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16));
	vmgenid_dev_ops.destroy(g);

	/* Two restores of it: each a new ID, one edge at resume. */
	for (int k = 0; k < 2; k++) {
		have_section = true;
		memcpy(mem.base + BOOT_VMGENID_ADDR, boot_id, 16);
		c = create(true, false);
		/* Nothing written before the state is loaded. */
		CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16));
		c->irq = (struct irq_line){irq_rec, NULL, 0};
		CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
		CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), 0);
		CHECK(memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16) != 0);
		if (k == 0)
			memcpy(id1, mem.base + BOOT_VMGENID_ADDR, 16);
		else
			CHECK(memcmp(mem.base + BOOT_VMGENID_ADDR, id1, 16));
		edges = level = 0;
		vmgenid_dev_ops.resume(c);
		CHECK_EQ(edges, 1);
		CHECK_EQ(level, 0);
		vmgenid_dev_ops.resume(c); /* a later pause/resume: no edge */
		CHECK_EQ(edges, 1);
		CHECK_EQ(vmgenid_dev_ops.stats(c, st), 1);
		CHECK(!strcmp(st[0].name, "generations") && st[0].value == 1);
		vmgenid_dev_ops.destroy(c);
	}

	/* A live migration's destination: the ID came with RAM and stays. */
	have_section = true;
	memcpy(mem.base + BOOT_VMGENID_ADDR, boot_id, 16);
	c = create_from(false, true, false);
	CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16));
	c->irq = (struct irq_line){irq_rec, NULL, 0};
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
	CHECK(c->present);
	CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), 0);
	CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16));
	edges = level = 0;
	vmgenid_dev_ops.resume(c);
	CHECK_EQ(edges, 0);
	vmgenid_dev_ops.destroy(c);

	/* A recorded stream (khyve -r -, -r FILE): a restore, a new ID. */
	have_section = true;
	recorded = true;
	memcpy(mem.base + BOOT_VMGENID_ADDR, boot_id, 16);
	c = create_from(false, true, false);
	CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16));
	c->irq = (struct irq_line){irq_rec, NULL, 0};
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
	CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), 0);
	CHECK(memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16) != 0);
	edges = level = 0;
	vmgenid_dev_ops.resume(c);
	CHECK_EQ(edges, 1);
	vmgenid_dev_ops.destroy(c);
	recorded = false;

	/* A snapshot without the section: no device, RAM left alone. */
	have_section = false;
	memcpy(mem.base + BOOT_VMGENID_ADDR, boot_id, 16);
	c = create(true, false);
	nloaded = 0;
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
	CHECK_EQ(nloaded, 1);
	CHECK(!c->present);
	CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), 0);
	CHECK(!memcmp(mem.base + BOOT_VMGENID_ADDR, boot_id, 16));
	nsaved = 0;
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, save_fn, NULL), 0);
	CHECK_EQ(nsaved, 0); /* and its own snapshots have none either */
	vmgenid_dev_ops.destroy(c);

	/* A section pointing outside guest RAM is refused, naming it. */
	have_section = true;
	saved.addr = RAM + 4096;
	c = create(true, false);
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
	err_clear(&err);
	CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), -EFAULT);
	CHECK(strstr(err.msg, "is not guest RAM") != NULL);
	saved.addr = BOOT_VMGENID_ADDR + 4;
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
	CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), -EINVAL);
	vmgenid_dev_ops.destroy(c);
	/* ... and by a migration's destination, which writes no new ID:
	 * accepted, its next restore would refuse it (fuzz_device_load). */
	saved.addr = RAM + 4096;
	c = create_from(false, true, false);
	CHECK_EQ(vmgenid_dev_ops.snap_foreach(c, 0, load_fn, NULL), 0);
	err_clear(&err);
	CHECK_EQ(vmgenid_dev_ops.post_load(c, &err), -EFAULT);
	CHECK(strstr(err.msg, "is not guest RAM") != NULL);
	vmgenid_dev_ops.destroy(c);
}

int main(void)
{
	if (fake_mem())
		return 1;
	RUN(test_aml_layout);
	RUN(test_boot_tables);
	RUN(test_restore_new_id);
	free(mem.base);
	return unit_done();
}
