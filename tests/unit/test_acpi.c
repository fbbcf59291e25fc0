/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "common.h"
#include "data/x86boot_fixtures.h"
#include "layout.h"
#include "unit.h"

/* A table at @gpa with a valid header; NULL (and a failed check) if not. */
static uint8_t *table(const struct guest_mem *m, uint64_t gpa, const char *sig)
{
	uint8_t *t = guest_mem_ptr(m, gpa, ACPI_HDR_SIZE);

	CHECK(t != NULL);
	if (!t)
		return NULL;
	CHECK(!memcmp(t, sig, 4));
	t = guest_mem_ptr(m, gpa, get_le32(t + 4));
	CHECK(t != NULL);
	if (!t)
		return NULL;
	CHECK_EQ(fx_sum(t, get_le32(t + 4)), 0);
	CHECK(!memcmp(t + 10, "KHYVE ", 6));
	CHECK(gpa + get_le32(t + 4) <= ACPI_AREA_END);
	return t;
}

/* The Linux legacy scan: "RSD PTR " on 16-byte boundaries, 0xe0000.. */
static uint64_t scan_rsdp(const struct guest_mem *m)
{
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
		uint8_t *p = guest_mem_ptr(m, a, 20);

		if (p && !memcmp(p, "RSD PTR ", 8) && fx_sum(p, 20) == 0)
			return a;
	}
	return 0;
}

static void check_gas_io(const uint8_t *g, uint64_t port)
{
	CHECK_EQ(g[0], 1); /* system I/O */
	CHECK_EQ(g[1], 8);
	CHECK_EQ(g[2], 0);
	CHECK_EQ(g[3], 1);
	CHECK_EQ(get_le64(g + 4), port);
}

struct found {
	uint8_t *fadt, *madt, *mcfg;
};

static struct found walk(const struct guest_mem *m, unsigned nexpect)
{
	struct found f = {0};
	uint64_t rsdp_gpa = scan_rsdp(m);
	uint8_t *r, *x;

	CHECK_EQ(rsdp_gpa, ACPI_RSDP_ADDR);
	r = guest_mem_ptr(m, rsdp_gpa, ACPI_RSDP_SIZE);
	if (!r)
		return f;
	CHECK_EQ(r[15], 2);
	CHECK_EQ(get_le32(r + 20), 36);
	CHECK_EQ(fx_sum(r, 36), 0);
	CHECK(!memcmp(r + 9, "KHYVE ", 6));
	x = table(m, get_le64(r + 24), "XSDT");
	if (!x)
		return f;
	CHECK_EQ((get_le32(x + 4) - ACPI_HDR_SIZE) / 8, nexpect);
	for (unsigned i = 0; i < (get_le32(x + 4) - ACPI_HDR_SIZE) / 8; i++) {
		uint64_t a = get_le64(x + ACPI_HDR_SIZE + 8 * i);
		uint8_t *t = guest_mem_ptr(m, a, 4);

		if (!t) {
			CHECK(0);
			continue;
		}
		if (!memcmp(t, "FACP", 4))
			f.fadt = table(m, a, "FACP");
		else if (!memcmp(t, "APIC", 4))
			f.madt = table(m, a, "APIC");
		else if (!memcmp(t, "MCFG", 4))
			f.mcfg = table(m, a, "MCFG");
		else
			CHECK(0);
	}
	return f;
}

static void check_fadt_dsdt(const struct guest_mem *m, const uint8_t *fadt)
{
	static const uint8_t s5[] = {0x08, '_',	 'S',  '5',  '_',  0x12, 0x08,
				     0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
	uint32_t flags = get_le32(fadt + 112);
	uint8_t *d;

	CHECK_EQ(get_le32(fadt + 4), 276);
	CHECK(fadt[8] >= 5);
	CHECK(flags & (1u << 20)); /* HW_REDUCED_ACPI */
	CHECK(flags & (1u << 10)); /* RESET_REG_SUP */
	check_gas_io(fadt + 116, 0xcf9);
	CHECK_EQ(fadt[128], 6);
	check_gas_io(fadt + 244, 0x600);
	check_gas_io(fadt + 256, 0x601);
	CHECK(get_le16(fadt + 109) & 2); /* 8042 present */
	CHECK_EQ(get_le64(fadt + 140), get_le32(fadt + 40));
	d = table(m, get_le64(fadt + 140), "DSDT");
	if (!d)
		return;
	CHECK(get_le32(d + 4) >= ACPI_HDR_SIZE + sizeof(s5));
	CHECK(!memcmp(d + ACPI_HDR_SIZE, s5, sizeof(s5)));
	/* The value a guest writes for S5 matches the package's SLP_TYPa. */
	CHECK_EQ((ACPI_SLEEP_CTL_S5 >> 2) & 7, s5[9]);
	CHECK_EQ(ACPI_SLEEP_CTL_S5 & 0x20, 0x20);
}

static void check_madt(const uint8_t *madt, unsigned ncpus)
{
	const uint8_t *p = madt + ACPI_HDR_SIZE + 8, *end;
	unsigned ncpu = 0, nioapic = 0, niso = 0, nnmi = 0;

	CHECK_EQ(get_le32(madt + ACPI_HDR_SIZE), 0xfee00000);
	CHECK_EQ(get_le32(madt + ACPI_HDR_SIZE + 4), 1); /* PCAT_COMPAT */
	end = madt + get_le32(madt + 4);
	while (p < end) {
		CHECK(p[1] >= 2 && p + p[1] <= end);
		if (p[1] < 2 || p + p[1] > end)
			return;
		switch (p[0]) {
		case 0:
			CHECK_EQ(p[1], 8);
			CHECK_EQ(p[2], ncpu);
			CHECK_EQ(p[3], ncpu);
			CHECK_EQ(get_le32(p + 4), 1);
			ncpu++;
			break;
		case 1:
			CHECK_EQ(p[1], 12);
			CHECK_EQ(p[2], ncpus);
			CHECK_EQ(get_le32(p + 4), 0xfec00000);
			CHECK_EQ(get_le32(p + 8), 0);
			nioapic++;
			break;
		case 2:
			CHECK_EQ(p[1], 10);
			CHECK_EQ(p[2], 0);
			if (p[3] == 0) {
				CHECK_EQ(get_le32(p + 4), 2);
			} else {
				CHECK_EQ(p[3], 9);
				CHECK_EQ(get_le32(p + 4), 9);
				CHECK_EQ(get_le16(p + 8), 0xd);
			}
			niso++;
			break;
		case 4:
			CHECK_EQ(p[1], 6);
			CHECK_EQ(p[2], 0xff);
			CHECK_EQ(p[5], 1);
			nnmi++;
			break;
		default:
			CHECK(0);
		}
		p += p[1];
	}
	CHECK_EQ(ncpu, ncpus);
	CHECK_EQ(nioapic, 1);
	CHECK_EQ(niso, 2);
	CHECK_EQ(nnmi, 1);
}

static void check_cpus(unsigned ncpus)
{
	struct guest_mem m;
	struct acpi_config cfg = {.ncpus = ncpus};
	uint64_t rsdp = 0;
	struct found f;

	if (fx_mem(&m, 2 * MiB))
		return;
	CHECK_EQ(acpi_build(&m, &cfg, &rsdp), 0);
	CHECK_EQ(rsdp, ACPI_RSDP_ADDR);
	f = walk(&m, 2);
	CHECK(f.fadt && f.madt);
	if (f.fadt)
		check_fadt_dsdt(&m, f.fadt);
	if (f.madt)
		check_madt(f.madt, ncpus);
	fx_mem_free(&m);
}

static void test_acpi_1(void)
{
	check_cpus(1);
}

static void test_acpi_2(void)
{
	check_cpus(2);
}

static void test_acpi_8(void)
{
	check_cpus(8);
}

static void test_acpi_64(void)
{
	check_cpus(64);
}

static void test_acpi_max(void)
{
	check_cpus(BOOT_MAX_CPUS);
}

static void test_acpi_extra(void)
{
	struct guest_mem m;
	uint8_t mcfg[60] = {0};
	/* Scope (\_SB) {}: ScopeOp, PkgLength 5, "_SB_" */
	static const uint8_t aml[] = {0x10, 0x05, '_', 'S', 'B', '_'};
	struct acpi_table_blob blob = {mcfg, sizeof(mcfg)};
	struct acpi_config cfg = {.ncpus = 4,
				  .extra = &blob,
				  .nextra = 1,
				  .dsdt_aml = aml,
				  .dsdt_aml_len = sizeof(aml)};
	struct found f;
	uint8_t *d;

	if (fx_mem(&m, 2 * MiB))
		return;
	memcpy(mcfg, "MCFG", 4);
	put_le32(mcfg + 4, sizeof(mcfg));
	mcfg[9] = 0x55; /* wrong on purpose: acpi_build must fix it */
	put_le64(mcfg + 44, 0xb0000000);
	memcpy(mcfg + 10, "KHYVE ", 6);
	CHECK_EQ(acpi_build(&m, &cfg, NULL), 0);
	f = walk(&m, 3);
	CHECK(f.mcfg != NULL);
	if (f.mcfg)
		CHECK_EQ(get_le64(f.mcfg + 44), 0xb0000000);
	if (f.fadt) {
		d = table(&m, get_le64(f.fadt + 140), "DSDT");
		if (d) {
			/* The caller's AML right after \_S5_, the ISA devices after it. */
			CHECK(get_le32(d + 4) > ACPI_HDR_SIZE + 14 + 6);
			CHECK(!memcmp(d + ACPI_HDR_SIZE + 14, aml, 6));
			CHECK_EQ(d[ACPI_HDR_SIZE + 14 + 6], 0x10); /* ScopeOp */
		}
	}

	/* Bad extras are refused before anything is written. */
	put_le32(mcfg + 4, 10);
	CHECK_EQ(acpi_build(&m, &cfg, NULL), -EINVAL);
	cfg.nextra = 0;
	cfg.ncpus = 0;
	CHECK_EQ(acpi_build(&m, &cfg, NULL), -EINVAL);
	cfg.ncpus = 1;
	cfg.dsdt_aml_len = 0x20000;
	CHECK_EQ(acpi_build(&m, &cfg, NULL), -ENOSPC);
	fx_mem_free(&m);
}

static void test_acpi_checksum(void)
{
	uint8_t b[5] = {1, 2, 3, 4, 0};

	b[4] = acpi_checksum(b, 4);
	CHECK_EQ(fx_sum(b, 5), 0);
	CHECK_EQ(b[4], 0xf6);
}

int main(void)
{
	RUN(test_acpi_1);
	RUN(test_acpi_2);
	RUN(test_acpi_8);
	RUN(test_acpi_64);
	RUN(test_acpi_max);
	RUN(test_acpi_extra);
	RUN(test_acpi_checksum);
	return unit_done();
}
