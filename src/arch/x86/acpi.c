/* SPDX-License-Identifier: BSD-2-Clause */
#include "acpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "layout.h"

#define ACPI_ALIGN     16
#define ACPI_MAX_EXTRA 16

/* MADT structure types and flags (ACPI 6.x, 5.2.12). */
#define MADT_LAPIC	   0
#define MADT_IOAPIC	   1
#define MADT_ISO	   2
#define MADT_LAPIC_NMI	   4
#define MADT_PCAT_COMPAT   1u
#define MADT_LAPIC_ENABLED 1u
/* MPS INTI flags: polarity bits 0-1 (1 = high), trigger bits 2-3 (3 = level) */
#define MPS_INTI_ACTIVE_HIGH 0x1
#define MPS_INTI_LEVEL	     0xc

/* Generic Address Structure: address space ids and access sizes. */
#define GAS_SYSTEM_IO	1
#define GAS_ACCESS_BYTE 1

uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (len--)
		s += *b++;
	return (uint8_t)-s;
}

static void acpi_header(uint8_t *t, const char sig[4], uint32_t len,
			uint8_t rev)
{
	memcpy(t, sig, 4);
	put_le32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put_le32(t + 24, 1);	   /* OEM revision */
	memcpy(t + 28, "KHYV", 4); /* creator id */
	put_le32(t + 32, 1);	   /* creator revision */
}

/* Checksum last: every other byte of the table must be final by then. */
static void acpi_finish(uint8_t *t)
{
	t[9] = 0;
	t[9] = acpi_checksum(t, get_le32(t + 4));
}

static void gas_io8(uint8_t *g, uint16_t port)
{
	g[0] = GAS_SYSTEM_IO;
	g[1] = 8; /* register bit width */
	g[2] = 0; /* bit offset */
	g[3] = GAS_ACCESS_BYTE;
	put_le64(g + 4, port);
}

/*
 * DSDT body: Name (_S5_, Package () { 5, 5, 0, 0 })
 *
 *   08              NameOp
 *   5F 53 35 5F     NameSeg "_S5_" (root scope)
 *   12              PackageOp
 *   08              PkgLength: 8 bytes follow, counting this byte itself
 *   04              NumElements
 *   0A 05           BytePrefix 5   SLP_TYPa, written to SLEEP_CONTROL_REG
 *   0A 05           BytePrefix 5   SLP_TYPb (unused without PM1b)
 *   00 00           ZeroOp, ZeroOp (reserved)
 */
static const uint8_t dsdt_s5[] = {0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08,
				  0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};

/*
 * The ISA devices every khyve guest has, in the DSDT under \_SB with their
 * resources. A hardware-reduced FADT makes Linux drop the legacy PIC and
 * with it the identity mapping of ISA IRQs 0-15, so without these _CRS
 * entries the 8250, i8042 and RTC drivers cannot get their interrupts
 * (request_irq fails with -EINVAL and the devices stay unprobed or polled).
 * Through PNP ACPI each IRQ below is registered as a GSI on the IOAPIC.
 */
struct aml_isa_dev {
	char name[5];
	char hid[8]; /* EISA id, e.g. "PNP0501" */
	uint16_t io[2], io_len[2];
	uint8_t irq;
};

static const struct aml_isa_dev aml_isa_devs[] = {
	{"COM1", "PNP0501", {0x3f8, 0}, {8, 0}, 4},
	{"PS2K", "PNP0303", {0x60, 0x64}, {1, 1}, 1},
	{"RTC_", "PNP0B00", {0x70, 0}, {2, 0}, 8},
};

/* PkgLength (ACPI 20.2.4) for @body bytes following it; returns its size. */
static size_t aml_pkglen(uint8_t *p, size_t body)
{
	size_t n = body + 1;

	if (n < 0x40) {
		p[0] = (uint8_t)n;
		return 1;
	}
	n = body + 2; /* two-byte form, enough for < 4 KiB */
	p[0] = (uint8_t)(0x40 | (n & 0xf));
	p[1] = (uint8_t)(n >> 4);
	return 2;
}

static unsigned hexval(char c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'A' + 10);
}

/* Name (_HID, EisaId ("XXXnnnn")): a DWordConst, bytes big-endian. */
static size_t aml_eisaid(uint8_t *p, const char *id)
{
	uint32_t v = ((uint32_t)(id[0] - 0x40) << 26) |
		     ((uint32_t)(id[1] - 0x40) << 21) |
		     ((uint32_t)(id[2] - 0x40) << 16) | (hexval(id[3]) << 12) |
		     (hexval(id[4]) << 8) | (hexval(id[5]) << 4) |
		     hexval(id[6]);

	p[0] = 0x08; /* NameOp */
	memcpy(p + 1, "_HID", 4);
	p[5] = 0x0c; /* DWordPrefix */
	p[6] = (uint8_t)(v >> 24);
	p[7] = (uint8_t)(v >> 16);
	p[8] = (uint8_t)(v >> 8);
	p[9] = (uint8_t)v;
	return 10;
}

/* Device (NAME) { Name (_HID, EisaId (HID)) Name (_CRS, Buffer () {RT}) } */
static size_t aml_device(uint8_t *out, const char *name, const char *hid,
			 const uint8_t *rt, size_t r)
{
	uint8_t body[128];
	size_t b, n = 0;

	b = aml_eisaid(body, hid);
	body[b++] = 0x08; /* NameOp */
	memcpy(body + b, "_CRS", 4);
	b += 4;
	body[b++] = 0x11; /* BufferOp */
	b += aml_pkglen(body + b, 2 + r);
	body[b++] = 0x0a; /* BytePrefix: buffer size */
	body[b++] = (uint8_t)r;
	memcpy(body + b, rt, r);
	b += r;

	out[n++] = 0x5b; /* DeviceOp */
	out[n++] = 0x82;
	n += aml_pkglen(out + n, 4 + b);
	memcpy(out + n, name, 4);
	n += 4;
	memcpy(out + n, body, b);
	return n + b;
}

static size_t aml_isa_device(uint8_t *out, const struct aml_isa_dev *d)
{
	uint8_t rt[40];
	size_t r = 0;

	for (unsigned i = 0; i < 2 && d->io_len[i]; i++) {
		/* IO (Decode16, base, base, 1, len) */
		rt[r++] = 0x47;
		rt[r++] = 0x01;
		put_le16(rt + r, d->io[i]);
		put_le16(rt + r + 2, d->io[i]);
		r += 4;
		rt[r++] = 1;
		rt[r++] = (uint8_t)d->io_len[i];
	}
	rt[r++] = 0x22; /* IRQNoFlags () {irq}: edge, active high */
	put_le16(rt + r, (uint16_t)(1u << d->irq));
	r += 2;
	rt[r++] = 0x79; /* EndTag, checksum 0 (none) */
	rt[r++] = 0;
	return aml_device(out, d->name, d->hid, rt, r);
}

/*
 * The PCI host bridge. An ACPI kernel only scans the root buses the DSDT
 * names (x86 pci_acpi_init replaces the legacy probe), so without it no
 * virtio device is found. Bus 0 only; the window is where khyve places
 * BARs, [GUEST_PCI_HOLE_START, IOAPIC). Config access stays type 1
 * (0xcf8/0xcfc). No _PRT: the virtio devices interrupt through MSI-X.
 */
static size_t aml_pci_host(uint8_t *out)
{
	uint8_t rt[64];
	size_t r = 0;

	/*
	 * WordBusNumber (ResourceProducer, MinFixed, MaxFixed,, 0, 0, 0, 0, 1)
	 */
	rt[r++] = 0x88;
	put_le16(rt + r, 13);
	r += 2;
	rt[r++] = 2;	/* bus number range */
	rt[r++] = 0x0c; /* producer, min and max fixed */
	rt[r++] = 0;
	put_le16(rt + r, 0);	 /* granularity */
	put_le16(rt + r + 2, 0); /* min */
	put_le16(rt + r + 4, 0); /* max */
	put_le16(rt + r + 6, 0); /* translation */
	put_le16(rt + r + 8, 1); /* length */
	r += 10;
	/*
	 * DWordMemory (ResourceProducer,, MinFixed, MaxFixed, NonCacheable, RW)
	 */
	rt[r++] = 0x87;
	put_le16(rt + r, 23);
	r += 2;
	rt[r++] = 0;	/* memory range */
	rt[r++] = 0x0c; /* producer, min and max fixed */
	rt[r++] = 0x01; /* read-write, non-cacheable */
	put_le32(rt + r, 0);
	put_le32(rt + r + 4, (uint32_t)GUEST_PCI_HOLE_START);
	put_le32(rt + r + 8, (uint32_t)(BOOT_IOAPIC_ADDR - 1));
	put_le32(rt + r + 12, 0);
	put_le32(rt + r + 16,
		 (uint32_t)(BOOT_IOAPIC_ADDR - GUEST_PCI_HOLE_START));
	r += 20;
	rt[r++] = 0x79;
	rt[r++] = 0;
	return aml_device(out, "PCI0", "PNP0A03", rt, r);
}

/* Scope (\_SB) { the ISA devices }; @out NULL only measures. */
static size_t aml_isa_scope(uint8_t *out)
{
	uint8_t body[512], hdr[8];
	size_t b = 0, h = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(aml_isa_devs); i++)
		b += aml_isa_device(body + b, &aml_isa_devs[i]);
	b += aml_pci_host(body + b);
	hdr[h++] = 0x10; /* ScopeOp */
	h += aml_pkglen(hdr + h, 5 + b);
	hdr[h++] = 0x5c; /* RootChar */
	memcpy(hdr + h, "_SB_", 4);
	h += 4;
	if (out) {
		memcpy(out, hdr, h);
		memcpy(out + h, body, b);
	}
	return h + b;
}

static size_t build_fadt(uint8_t *t, uint64_t dsdt)
{
	acpi_header(t, "FACP", ACPI_FADT_SIZE, 6);
	/* No FACS: a hardware-reduced platform has no firmware waking vector.
	 */
	put_le32(t + 40, (uint32_t)dsdt);
	t[45] = 0; /* preferred PM profile: unspecified */
	put_le16(t + 46, BOOT_ACPI_SCI_IRQ);
	/* Linux probes the i8042 only if firmware says it exists. */
	put_le16(t + 109,
		 ACPI_IAPC_LEGACY_DEVICES | ACPI_IAPC_8042 | ACPI_IAPC_NO_VGA);
	put_le32(t + 112, ACPI_FADT_F_HW_REDUCED | ACPI_FADT_F_RESET_REG_SUP |
				  ACPI_FADT_F_PWR_BUTTON |
				  ACPI_FADT_F_SLP_BUTTON);
	gas_io8(t + 116, BOOT_ACPI_RESET_PORT);
	t[128] = BOOT_ACPI_RESET_VALUE;
	t[131] = 0; /* FADT minor version (6.0) */
	put_le64(t + 140, dsdt);
	gas_io8(t + 244, BOOT_ACPI_SLEEP_CTL_PORT);
	gas_io8(t + 256, BOOT_ACPI_SLEEP_STS_PORT);
	memcpy(t + 268, "KHYVE\0\0\0", 8); /* hypervisor vendor identity */
	acpi_finish(t);
	return ACPI_FADT_SIZE;
}

static size_t build_madt(uint8_t *t, unsigned ncpus)
{
	uint8_t *p = t + ACPI_HDR_SIZE;
	size_t len;

	put_le32(p, (uint32_t)BOOT_LAPIC_ADDR);
	put_le32(p + 4, MADT_PCAT_COMPAT);
	p += 8;
	for (unsigned i = 0; i < ncpus; i++, p += 8) {
		p[0] = MADT_LAPIC;
		p[1] = 8;
		p[2] = (uint8_t)i; /* ACPI processor UID */
		p[3] = (uint8_t)i; /* APIC id */
		put_le32(p + 4, MADT_LAPIC_ENABLED);
	}
	p[0] = MADT_IOAPIC;
	p[1] = 12;
	p[2] = (uint8_t)ncpus;
	p[3] = 0;
	put_le32(p + 4, (uint32_t)BOOT_IOAPIC_ADDR);
	put_le32(p + 8, 0); /* GSI base */
	p += 12;
	/* ISA IRQ0 (PIT) is wired to GSI 2, as on every PC since the IOAPIC. */
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0; /* bus ISA */
	p[3] = 0;
	put_le32(p + 4, 2);
	put_le16(p + 8, 0);
	p += 10;
	/* The SCI (IRQ9) is level-triggered, active-high, as QEMU reports. */
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0;
	p[3] = BOOT_ACPI_SCI_IRQ;
	put_le32(p + 4, BOOT_ACPI_SCI_IRQ);
	put_le16(p + 8, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL);
	p += 10;
	p[0] = MADT_LAPIC_NMI;
	p[1] = 6;
	p[2] = 0xff; /* all processors */
	put_le16(p + 3, 0);
	p[5] = 1; /* LINT1 */
	p += 6;
	len = (size_t)(p - t);
	acpi_header(t, "APIC", (uint32_t)len, 5);
	acpi_finish(t);
	return len;
}

static size_t madt_size(unsigned ncpus)
{
	return ACPI_HDR_SIZE + 8 + 8 * ncpus + 12 + 2 * 10 + 6;
}

/* Where each table sits in the ACPI area, as offsets from its start. */
struct acpi_layout {
	size_t xsdt_off, xsdt_len;
	size_t fadt_off, madt_off;
	size_t dsdt_off, dsdt_len;
	size_t extra_off[ACPI_MAX_EXTRA];
	size_t total;
};

/* Reject a config whose tables could not be laid out or would be corrupt. */
static int acpi_check_config(const struct acpi_config *cfg, size_t area)
{
	if (!cfg || cfg->ncpus == 0 || cfg->ncpus > BOOT_MAX_CPUS ||
	    cfg->nextra > ACPI_MAX_EXTRA || (cfg->nextra && !cfg->extra) ||
	    (cfg->dsdt_aml_len && !cfg->dsdt_aml))
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nextra; i++) {
		const struct acpi_table_blob *b = &cfg->extra[i];

		if (!b->data || b->len < ACPI_HDR_SIZE ||
		    get_le32((const uint8_t *)b->data + 4) != b->len)
			return -EINVAL;
	}
	if (cfg->dsdt_aml_len > area)
		return -ENOSPC;
	return 0;
}

/* Lay the tables out first so each can point at the others. */
static int plan_layout(const struct acpi_config *cfg, size_t area,
		       struct acpi_layout *l)
{
	size_t off;
	unsigned nx = 2 + cfg->nextra;

	l->xsdt_len = ACPI_HDR_SIZE + 8 * nx;
	l->dsdt_len = ACPI_HDR_SIZE + sizeof(dsdt_s5) + cfg->dsdt_aml_len +
		      aml_isa_scope(NULL);
	off = ALIGN_UP(ACPI_RSDP_SIZE, ACPI_ALIGN);
	l->xsdt_off = off;
	off = ALIGN_UP(off + l->xsdt_len, ACPI_ALIGN);
	l->fadt_off = off;
	off = ALIGN_UP(off + ACPI_FADT_SIZE, ACPI_ALIGN);
	l->madt_off = off;
	off = ALIGN_UP(off + madt_size(cfg->ncpus), ACPI_ALIGN);
	for (unsigned i = 0; i < cfg->nextra; i++) {
		if (cfg->extra[i].len > area)
			return -ENOSPC;
		l->extra_off[i] = off;
		off = ALIGN_UP(off + cfg->extra[i].len, ACPI_ALIGN);
	}
	l->dsdt_off = off;
	off += l->dsdt_len;
	if (off > area)
		return -ENOSPC;
	l->total = off;
	return 0;
}

/* DSDT: the \_S5 package, the caller's AML, then the ISA device scope. */
static void build_dsdt(uint8_t *t, const struct acpi_config *cfg, size_t len)
{
	acpi_header(t, "DSDT", (uint32_t)len, 2);
	memcpy(t + ACPI_HDR_SIZE, dsdt_s5, sizeof(dsdt_s5));
	if (cfg->dsdt_aml_len)
		memcpy(t + ACPI_HDR_SIZE + sizeof(dsdt_s5), cfg->dsdt_aml,
		       cfg->dsdt_aml_len);
	aml_isa_scope(t + ACPI_HDR_SIZE + sizeof(dsdt_s5) + cfg->dsdt_aml_len);
	acpi_finish(t);
}

/* XSDT: 64-bit pointers to every table except the DSDT and FACS. */
static void build_xsdt(uint8_t *t, const struct acpi_config *cfg,
		       const struct acpi_layout *l)
{
	acpi_header(t, "XSDT", (uint32_t)l->xsdt_len, 1);
	put_le64(t + ACPI_HDR_SIZE, ACPI_AREA_START + l->fadt_off);
	put_le64(t + ACPI_HDR_SIZE + 8, ACPI_AREA_START + l->madt_off);
	for (unsigned i = 0; i < cfg->nextra; i++)
		put_le64(t + ACPI_HDR_SIZE + 16 + 8 * i,
			 ACPI_AREA_START + l->extra_off[i]);
	acpi_finish(t);
}

/*
 * RSDP v2. No RSDT (address 0): every OS that reads revision 2 uses
 * the XSDT. The first checksum covers the ACPI 1.0 part (20 bytes),
 * the extended one all 36.
 */
static void build_rsdp(uint8_t *t, size_t xsdt_off)
{
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, ACPI_OEM_ID, 6);
	t[15] = 2;
	put_le32(t + 16, 0);
	put_le32(t + 20, ACPI_RSDP_SIZE);
	put_le64(t + 24, ACPI_AREA_START + xsdt_off);
	t[8] = acpi_checksum(t, 20);
	t[32] = acpi_checksum(t, ACPI_RSDP_SIZE);
}

int acpi_build(const struct guest_mem *m, const struct acpi_config *cfg,
	       uint64_t *rsdp_gpa)
{
	const size_t area = ACPI_AREA_END - ACPI_AREA_START;
	struct acpi_layout l;
	uint8_t *buf;
	int ret;

	ret = acpi_check_config(cfg, area);
	if (ret)
		return ret;
	ret = plan_layout(cfg, area, &l);
	if (ret)
		return ret;

	buf = calloc(1, l.total);
	if (!buf)
		return -ENOMEM;

	build_dsdt(buf + l.dsdt_off, cfg, l.dsdt_len);
	build_fadt(buf + l.fadt_off, ACPI_AREA_START + l.dsdt_off);
	build_madt(buf + l.madt_off, cfg->ncpus);
	for (unsigned i = 0; i < cfg->nextra; i++) {
		memcpy(buf + l.extra_off[i], cfg->extra[i].data,
		       cfg->extra[i].len);
		acpi_finish(buf + l.extra_off[i]);
	}
	build_xsdt(buf + l.xsdt_off, cfg, &l);
	build_rsdp(buf, l.xsdt_off);

	ret = guest_mem_write(m, ACPI_AREA_START, buf, l.total);
	free(buf);
	if (!ret && rsdp_gpa)
		*rsdp_gpa = ACPI_RSDP_ADDR;
	return ret;
}
