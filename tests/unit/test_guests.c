// SPDX-License-Identifier: BSD-2-Clause
/*
 * Host-side tests of the test guest's pure helpers (tests/guests/gutil.c):
 * formatting, the memory pattern, command line, PVH memory map and ACPI
 * MADT discovery. The guest itself is exercised by tests/guests/check.sh.
 */
#include <string.h>
#include "unit.h"
#include "../guests/gutil.c"

/* No format attribute: lets the test feed odd formats and NULL. */
static int fmt_raw(char *b, size_t n, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = g_vsnprintf(b, n, fmt, ap);
	va_end(ap);
	return r;
}

static void test_format(void)
{
	char b[96];
	int n;

	n = g_snprintf(b, sizeof(b), "a%sb%uc%dd%xe%lu|%lx|%ld", "XY", 42u, -7,
		       0xbeefu, (unsigned long)UINT64_MAX, 0x123456789abUL,
		       (long)INT64_MIN);
	CHECK(!strcmp(b, "aXYb42c-7dbeefe18446744073709551615|123456789ab|"
			 "-9223372036854775808"));
	CHECK_EQ(n, strlen(b));
	g_snprintf(b, sizeof(b), "%08x|%5u|%3s|%c|%%|%p", 0xabu, 7u, "z", 'q',
		   (void *)0x1000);
	CHECK(!strcmp(b, "000000ab|    7|  z|q|%|0x1000"));
	/* Truncation keeps a NUL and reports the full length. */
	n = g_snprintf(b, 5, "hello world");
	CHECK_EQ(n, 11);
	CHECK(!strcmp(b, "hell"));
	n = fmt_raw(b, sizeof(b), "%s", (char *)NULL);
	CHECK(!strcmp(b, "(null)"));
	fmt_raw(b, sizeof(b), "100%");
	CHECK(!strcmp(b, "100"));
}

static void test_pattern(void)
{
	uint64_t a = g_pattern(0x100000, 1), b = g_pattern(0x100008, 1);
	unsigned diff = (unsigned)__builtin_popcountll(a ^ b);

	CHECK_EQ(a, g_pattern(0x100000, 1));
	CHECK(a != b);
	CHECK(a != g_pattern(0x100000, 2));
	CHECK(diff > 16 && diff < 48); /* neighbours look unrelated */
	CHECK(g_pattern(0, 0) == 0);   /* splitmix finaliser fixes 0 */
	CHECK(g_pattern(8, 0) != 0);
}

static void test_cmdline(void)
{
	struct gcfg c;

	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, ""), 0);
	CHECK_EQ(c.tests, T_ALL);
	CHECK_EQ(c.exit_mode, EXIT_POWEROFF);
	CHECK_EQ(c.interval_ms, 100);

	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, NULL), 0);
	CHECK_EQ(c.tests, T_ALL);

	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "  tests=serial,mem,timer,smp,echo\n"), 0);
	CHECK_EQ(c.tests, T_ALL | T_ECHO);
	CHECK(!c.counter);

	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "counter interval_ms=250 count=0x10 "
				"mem_kb=8192 seed=0xFFFFFFFFFFFFFFFF touch_mb=800"),
		 0);
	CHECK(c.counter);
	CHECK(!c.gaps);
	CHECK_EQ(c.touch_mb, 800);
	CHECK_EQ(c.tests, 0);
	CHECK_EQ(c.interval_ms, 250);
	CHECK_EQ(c.count, 16);
	CHECK_EQ(c.mem_kb, 8192);
	CHECK_EQ(c.seed, UINT64_MAX);

	gcfg_defaults(&c);
	CHECK_EQ(c.hostile_ms, 0);
	CHECK_EQ(gcfg_parse(&c, "tests=smp counter hostile_ms=60000 "
				"hostile_seed=0x8000000000000001 "
				"hostile_mask=0x300"),
		 0);
	CHECK_EQ(c.hostile_ms, 60000);
	CHECK_EQ(c.hostile_seed, 0x8000000000000001ULL);
	CHECK_EQ(c.hostile_mask, 0x300);

	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "counter gaps"), 0);
	CHECK(c.counter && c.gaps);
	CHECK_EQ(c.smp_timeout_ms, 30000);

	gcfg_defaults(&c);
	CHECK_EQ(c.kbd_xlate, 1);
	CHECK_EQ(gcfg_parse(&c, "kbd kbd_xlate=0"), 0);
	CHECK(c.kbd && !c.counter && c.explicit);
	CHECK_EQ(c.kbd_xlate, 0);
	CHECK_EQ(c.tests, 0); /* kbd alone: no default tests */

	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "exit=reboot"), 0);
	CHECK_EQ(c.tests, 0); /* only an exit: run nothing */
	CHECK_EQ(c.exit_mode, EXIT_REBOOT);
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "tests=smp exit=triplefault"), 0);
	CHECK_EQ(c.exit_mode, EXIT_TRIPLEFAULT);
	CHECK_EQ(c.tests, T_SMP);

	/* Errors: first bad token kept, good ones still applied. */
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "timer_ms=5 bogus tests=mem,nope exit=halt"),
		 -G_EINVAL);
	CHECK_EQ(c.nbad, 3);
	CHECK(!strcmp(c.bad, "bogus"));
	CHECK_EQ(c.timer_ms, 5);
	CHECK(c.tests & T_MEM);
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "interval_ms=4294967296"), -G_EINVAL);
	CHECK_EQ(c.interval_ms, 100);
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "count=99999999999999999999"), -G_EINVAL);
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "count= seed=0x timer_ms=1x"), -G_EINVAL);
	CHECK_EQ(c.nbad, 3);
	/* Zero intervals would divide by zero or spin: clamped to 1. */
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "counter interval_ms=0 check_every=0"), 0);
	CHECK_EQ(c.interval_ms, 1);
	CHECK_EQ(c.check_every, 1);

	/* vstream reads, with a span. */
	gcfg_defaults(&c);
	CHECK_EQ(c.vstream_read, 0);
	CHECK_EQ(c.vstream_span, 0);
	CHECK_EQ(gcfg_parse(&c, "tests=vstream vstream_read=1 "
				"vstream_span=4096"),
		 0);
	CHECK_EQ(c.tests, T_VSTREAM);
	CHECK_EQ(c.vstream_read, 1);
	CHECK_EQ(c.vstream_span, 4096);

	/* The counter's disk workload. */
	gcfg_defaults(&c);
	CHECK_EQ(c.disk_blocks, 0);
	CHECK_EQ(gcfg_parse(&c, "counter disk_blocks=64"), 0);
	CHECK_EQ(c.disk_blocks, 64);

	/* tests=vnet addresses: a.b.c.d[:port], decimal octets only. */
	gcfg_defaults(&c);
	CHECK_EQ(c.vnet_dst, 0x0a000201u);
	CHECK_EQ(c.vnet_dport, 5555);
	CHECK_EQ(gcfg_parse(&c, "tests=vnet vnet_dst=192.168.7.254:9 "
				"vnet_src=10.0.2.16 vnet_bench_mb=8 vnet_qd=128"),
		 0);
	CHECK_EQ(c.tests, T_VNET);
	CHECK_EQ(c.vnet_dst, 0xc0a807feu);
	CHECK_EQ(c.vnet_dport, 9);
	CHECK_EQ(c.vnet_src, 0x0a000210u);
	CHECK_EQ(c.vnet_bench_mb, 8);
	CHECK_EQ(c.vnet_qd, 128);
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "vnet_dst=10.0.2.3"), 0);
	CHECK_EQ(c.vnet_dst, 0x0a000203u);
	CHECK_EQ(c.vnet_dport, 5555);
	gcfg_defaults(&c);
	CHECK_EQ(gcfg_parse(&c, "vnet_dst=10.0.2.1:0 vnet_dst=10.0.2.1:65536 "
				"vnet_src=1.2.3 vnet_src=1.2.3.4.5 "
				"vnet_src=256.1.1.1 vnet_src=01.1.1.1 "
				"vnet_src=1..1.1 vnet_dst=:5"),
		 -G_EINVAL);
	CHECK_EQ(c.nbad, 8);
	CHECK_EQ(c.vnet_src, 0x0a00020fu);
	CHECK_EQ(c.vnet_dst, 0x0a000201u);
	CHECK_EQ(c.vnet_dport, 5555);
}

static void test_memmap(void)
{
	static const struct mm_entry m[] = {
		{0, 0x9fc00, MM_RAM, 0},
		{0x9fc00, 0x400, 2, 0},
		{0x100000, 0xbff00000, MM_RAM, 0},
		{0xfeffc000, 0x4000, 2, 0},
		{0x100000000ULL, 0x40000000ULL, MM_RAM, 0},
	};
	static const struct mm_entry wrap[] = {
		{UINT64_MAX - 0xfff, 0x2000, MM_RAM, 0},
	};
	uint64_t s, e;

	CHECK_EQ(gmm_ram_total(m, 5), 0x9fc00 + 0xbff00000 + 0x40000000ULL);
	CHECK_EQ(gmm_ram_top(m, 5), 0x140000000ULL);
	CHECK_EQ(gmm_ram_total(m, 0), 0);
	CHECK(gmm_is_ram(m, 5, 0x8000, 0x1000));
	CHECK(gmm_is_ram(m, 5, 0x100000, 0xbff00000));
	CHECK(!gmm_is_ram(m, 5, 0x9f000, 0x1000)); /* runs into reserved */
	CHECK(!gmm_is_ram(m, 5, 0xc0000000, 8));   /* PCI hole */
	CHECK(!gmm_is_ram(m, 5, 0x13fffffffULL, 2));
	CHECK(!gmm_is_ram(m, 5, 0x100000, UINT64_MAX));
	CHECK(!gmm_is_ram(wrap, 1, UINT64_MAX - 0xfff, 8));
	CHECK_EQ(gmm_ram_total(wrap, 1), 0);
	CHECK_EQ(gmm_ram_top(wrap, 1), 0);

	CHECK(gmm_clip(m, 2, 0x400003, 0x100000000ULL, &s, &e));
	CHECK_EQ(s, 0x400008);
	CHECK_EQ(e, 0xc0000000);
	CHECK(!gmm_clip(m, 1, 0, UINT64_MAX, &s, &e)); /* not RAM */
	CHECK(!gmm_clip(m, 0, 0x200000, UINT64_MAX, &s, &e));
	CHECK(gmm_clip(m, 4, 0x200000, 0x120000004ULL, &s, &e));
	CHECK_EQ(s, 0x100000000ULL);
	CHECK_EQ(e, 0x120000000ULL);
	CHECK(!gmm_clip(wrap, 0, 0, UINT64_MAX, &s, &e));
}

/* A fake guest-physical space: 1 MiB of "low memory" plus tables. */
struct fakemem {
	uint8_t low[0x100000];
};

static const void *fake_phys(uint64_t pa, uint64_t len, void *ctx)
{
	struct fakemem *f = ctx;

	if (pa >= sizeof(f->low) || len > sizeof(f->low) - pa)
		return NULL;
	return f->low + pa;
}

static void fix_sum(uint8_t *p, size_t len, size_t sum_off)
{
	uint8_t s = 0;

	p[sum_off] = 0;
	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	p[sum_off] = (uint8_t)(0 - s);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* MADT: LAPIC 0, LAPIC 2 (disabled), LAPIC 5, x2APIC 300, IOAPIC, ISO. */
static uint32_t build_madt(uint8_t *t)
{
	uint32_t off = 44;

	memset(t, 0, 256);
	memcpy(t, "APIC", 4);
	t[8] = 4;
	put32(t + 36, 0xfee00000);
	const uint8_t lapics[3][2] = {{0, 1}, {2, 0}, {5, 1}};
	for (int i = 0; i < 3; i++, off += 8) {
		t[off] = 0;
		t[off + 1] = 8;
		t[off + 2] = (uint8_t)i;
		t[off + 3] = lapics[i][0];
		put32(t + off + 4, lapics[i][1]);
	}
	t[off] = 9; /* x2APIC */
	t[off + 1] = 16;
	put32(t + off + 4, 300);
	put32(t + off + 8, 1);
	off += 16;
	t[off] = 1; /* IOAPIC */
	t[off + 1] = 12;
	put32(t + off + 4, 0xfec00000);
	put32(t + off + 8, 0);
	off += 12;
	t[off] = 2; /* ISO: ISA IRQ0 -> GSI 2 */
	t[off + 1] = 10;
	put32(t + off + 4, 2);
	off += 10;
	put32(t + 4, off);
	fix_sum(t, off, 9);
	return off;
}

static void build_acpi(struct fakemem *f, uint64_t rsdp_pa, int rev2)
{
	uint8_t *rsdp = f->low + rsdp_pa, *sdt = f->low + 0x7000;
	uint32_t mlen = build_madt(f->low + 0x7800);

	memset(rsdp, 0, 36);
	memcpy(rsdp, "RSD PTR ", 8);
	rsdp[15] = rev2 ? 2 : 0;
	memset(sdt, 0, 64);
	if (rev2) {
		put64(rsdp + 24, 0x7000);
		memcpy(sdt, "XSDT", 4);
		put64(sdt + 36, 0x7400); /* some other table first */
		put64(sdt + 44, 0x7800);
		put32(sdt + 4, 52);
		fix_sum(sdt, 52, 9);
	} else {
		put32(rsdp + 16, 0x7000);
		memcpy(sdt, "RSDT", 4);
		put32(sdt + 36, 0x7400);
		put32(sdt + 40, 0x7800);
		put32(sdt + 4, 44);
		fix_sum(sdt, 44, 9);
	}
	memcpy(f->low + 0x7400, "FACP", 4);
	put32(f->low + 0x7404, 36);
	fix_sum(rsdp, 20, 8);
	(void)mlen;
}

static void test_acpi(void)
{
	static struct fakemem f;
	struct madt_info mi;
	uint8_t t[256];
	uint32_t len;

	len = build_madt(t);
	CHECK_EQ(gacpi_parse_madt(t, len, &mi), 0);
	CHECK_EQ(mi.ncpus, 3);
	CHECK_EQ(mi.apic_ids[0], 0);
	CHECK_EQ(mi.apic_ids[1], 5);
	CHECK_EQ(mi.apic_ids[2], 300);
	CHECK_EQ(mi.lapic_addr, 0xfee00000);
	CHECK_EQ(mi.ioapic_addr, 0xfec00000);
	CHECK_EQ(mi.irq0_gsi, 2);
	/* Corruptions are refused. */
	t[50] ^= 1;
	CHECK_EQ(gacpi_parse_madt(t, len, &mi), -G_EINVAL);
	t[50] ^= 1;
	CHECK_EQ(gacpi_parse_madt(t, len - 1, &mi), -G_EINVAL);
	t[45] = 1; /* entry length < 2 */
	fix_sum(t, len, 9);
	CHECK_EQ(gacpi_parse_madt(t, len, &mi), -G_EINVAL);

	/* Given RSDP address, XSDT path. */
	memset(&f, 0, sizeof(f));
	build_acpi(&f, 0x9000, 1);
	CHECK_EQ(gacpi_find_madt(0x9000, fake_phys, &f, &mi), 0);
	CHECK_EQ(mi.ncpus, 3);
	/* No address: found by scanning 0xe0000-0xfffff; RSDT path. */
	memset(&f, 0, sizeof(f));
	build_acpi(&f, 0xf0010, 0);
	CHECK_EQ(gacpi_find_madt(0, fake_phys, &f, &mi), 0);
	CHECK_EQ(mi.apic_ids[1], 5);
	/* A wrong hint falls back to the scan. */
	CHECK_EQ(gacpi_find_madt(0x1234, fake_phys, &f, &mi), 0);
	/* Bad RSDP checksum: not found. */
	f.low[0xf0010 + 9] ^= 0xff;
	CHECK_EQ(gacpi_find_madt(0, fake_phys, &f, &mi), -G_ENOENT);
	f.low[0xf0010 + 9] ^= 0xff;
	/* RSDT pointing outside memory. */
	put32(f.low + 0xf0010 + 16, 0xfffff000);
	fix_sum(f.low + 0xf0010, 20, 8);
	CHECK_EQ(gacpi_find_madt(0, fake_phys, &f, &mi), -G_EINVAL);
	/* Nothing there at all. */
	memset(&f, 0, sizeof(f));
	CHECK_EQ(gacpi_find_madt(0, fake_phys, &f, &mi), -G_ENOENT);
}

int main(void)
{
	RUN(test_format);
	RUN(test_pattern);
	RUN(test_cmdline);
	RUN(test_memmap);
	RUN(test_acpi);
	return unit_done();
}
