// SPDX-License-Identifier: BSD-2-Clause
/*
 * Readers for the guest's clocks, for the save/restore time tests: the
 * host compares them with its own clock after a restore. kvmclock is the
 * clock KVM_SET_CLOCK moves on restore; the RTC is khyve's CMOS model.
 */
#include "snapmodes.h"
#include "guest.h"
#include "hw.h"

#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

struct pvclock_vcpu_time_info {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
} __attribute__((packed));

struct pvclock_wall_clock {
	uint32_t version, sec, nsec;
} __attribute__((packed));

volatile uint64_t ap_spins[GUEST_MAX_CPUS];
int kvmclock_on;
/* BSP only: the clock lines are printed by the BSP. */
static volatile struct pvclock_vcpu_time_info pvti
	__attribute__((aligned(64)));
static volatile struct pvclock_wall_clock wallclk __attribute__((aligned(64)));
static uint64_t last_kvm_ns, backwards;
static void wall_read_once(void);

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v),
			 "d"((uint32_t)(v >> 32))
			 : "memory");
}

void kvmclock_enable(void)
{
	uint32_t a, b, c, d;

	cpuid(0x40000000, 0, &a, &b, &c, &d);
	/* "KVMKVMKVM\0\0\0" */
	if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d || a < 0x40000001)
		return;
	cpuid(0x40000001, 0, &a, &b, &c, &d);
	if (!(a & KVM_FEATURE_CLOCKSOURCE2))
		return;
	/* The wall clock is written once, now: boot wall time. */
	wrmsr(MSR_KVM_WALL_CLOCK_NEW, (uint64_t)&wallclk);
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)&pvti | 1);
	kvmclock_on = 1;
	wall_read_once();
}

uint64_t kvmclock_ns(void)
{
	uint32_t ver, mul;
	uint64_t ts, sys, delta;
	int8_t shift;

	if (!kvmclock_on)
		return 0;
	do {
		ver = __atomic_load_n(&pvti.version, __ATOMIC_ACQUIRE);
		ts = pvti.tsc_timestamp;
		sys = pvti.system_time;
		mul = pvti.tsc_to_system_mul;
		shift = pvti.tsc_shift;
		delta = rdtsc() - ts;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while ((ver & 1) || ver != pvti.version);
	if ((int64_t)delta < 0)
		delta = 0;
	if (shift < 0)
		delta >>= -shift;
	else
		delta <<= shift;
	return sys + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/*
 * Like Linux: the wall clock page is read once, at boot, and wall time is
 * then that plus kvmclock. (Re-reading the page would say little: KVM
 * rewrites it with the host's time whenever the MSR is written, and a
 * restore writes it.)
 */
static uint64_t boot_wall_ns;

static void wall_read_once(void)
{
	uint32_t ver, sec, nsec;

	do {
		ver = __atomic_load_n(&wallclk.version, __ATOMIC_ACQUIRE);
		sec = wallclk.sec;
		nsec = wallclk.nsec;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while ((ver & 1) || ver != wallclk.version);
	boot_wall_ns = (uint64_t)sec * 1000000000ULL + nsec;
}

uint64_t kvmclock_wall_ns(void)
{
	return kvmclock_on ? boot_wall_ns + kvmclock_ns() : 0;
}

static uint8_t cmos_read(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static unsigned bcd(uint8_t v, int binary)
{
	return binary ? v : (unsigned)(v >> 4) * 10 + (v & 15);
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

uint64_t rtc_epoch(void)
{
	uint8_t r[8], again[8], b;
	int bin, h24;
	unsigned hour;

	/* Read twice outside an update until two reads agree. */
	for (int tries = 0; tries < 1000; tries++) {
		while (cmos_read(0x0a) & 0x80)
			cpu_relax();
		for (int pass = 0; pass < 2; pass++) {
			uint8_t *p = pass ? again : r;

			p[0] = cmos_read(0x00);
			p[1] = cmos_read(0x02);
			p[2] = cmos_read(0x04);
			p[3] = cmos_read(0x07);
			p[4] = cmos_read(0x08);
			p[5] = cmos_read(0x09);
			p[6] = cmos_read(0x32);
			p[7] = 0;
		}
		int same = 1;

		for (unsigned i = 0; i < sizeof(r); i++)
			same &= r[i] == again[i];
		if (same)
			break;
	}
	b = cmos_read(0x0b);
	bin = b & 4;
	h24 = b & 2;
	hour = bcd(r[2] & 0x7f, bin);
	if (!h24) {
		hour %= 12;
		if (r[2] & 0x80)
			hour += 12;
	}
	if (bcd(r[4], bin) < 1 || bcd(r[4], bin) > 12 || bcd(r[3], bin) < 1)
		return 0;
	return (uint64_t)(days_from_civil(bcd(r[6], bin) * 100 + bcd(r[5], bin),
					  bcd(r[4], bin), bcd(r[3], bin)) *
			  86400) +
	       hour * 3600 + bcd(r[1], bin) * 60 + bcd(r[0], bin);
}

/*
 * KHYVE-CLOCK <n> kvm_ns=<kvmclock> wall_ms=<kvmclock wall> rtc=<epoch s>
 * back=<times kvmclock went backwards so far>. wall_ms is 0 without
 * kvmclock.
 */
void clock_line(uint64_t n)
{
	uint64_t k = kvmclock_ns(), w = kvmclock_wall_ns(), rtc = rtc_epoch();

	if (kvmclock_on && k < last_kvm_ns)
		backwards++;
	last_kvm_ns = k;
	con_printf("KHYVE-CLOCK %lu kvm_ns=%lu wall_ms=%lu rtc=%lu back=%lu\n",
		   n, k, w / 1000000, rtc, backwards);
}

/* ---- "genid": who this guest is, after every restore ---- */

static uint64_t genid_pa; /* 0: no VMGENCTR device in the DSDT */
static int genid_err, ged_gsi = -1;

#define GED_VECTOR 0x50
#define IOAPIC_DEFAULT 0xfec00000ULL
#define LAPIC_DEFAULT  0xfee00000ULL

static const void *ident_phys(uint64_t pa, uint64_t len, void *ctx)
{
	(void)ctx;
	return pa + len <= 0x100000000ULL ? (const void *)pa : NULL;
}

static void hex(char *out, const uint8_t *b, unsigned n)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
}

/*
 * The GED's interrupt, routed to vector GED_VECTOR on this CPU. User mode
 * runs with IF=0, so it is never taken: it stays pending in the LAPIC's
 * IRR, where genid_line() sees that khyve raised it (after a restore).
 */
static void ged_route(uint32_t gsi)
{
	uint64_t io = G.madt.ioapic_addr ? G.madt.ioapic_addr : IOAPIC_DEFAULT;
	uint32_t pin = gsi - G.madt.ioapic_gsi_base;

	mmio_write32(io, 0x11 + 2 * pin);
	mmio_write32(io + 0x10, G.bsp_apic_id << 24);
	mmio_write32(io, 0x10 + 2 * pin);
	mmio_write32(io + 0x10, GED_VECTOR); /* fixed, edge, high, unmasked */
}

static int ged_pending(void)
{
	uint64_t irr = LAPIC_DEFAULT + 0x200 + 0x10 * (GED_VECTOR / 32);

	return ged_gsi >= 0 && (mmio_read32(irr) >> (GED_VECTOR % 32) & 1);
}

void genid_setup(void)
{
	const uint8_t *dsdt;
	uint32_t len;

	genid_err = gacpi_find_dsdt(G.rsdp_pa, ident_phys, 0, &dsdt, &len);
	if (!genid_err)
		genid_err = gaml_vmgenid_addr(dsdt, len, &genid_pa);
	if (genid_err)
		genid_pa = 0;
	else
		ged_gsi = gaml_ged_gsi(dsdt, len);
	if (ged_gsi >= 0)
		ged_route((uint32_t)ged_gsi);
	con_printf("KHYVE-INFO genid addr=0x%lx err=%d rng=%s ged_gsi=%d\n",
		   genid_pa, genid_err, genid_rng_start() ? "none" : "virtio",
		   ged_gsi);
}

/*
 * One "KHYVE-GENID" line for counter tick @n: the 16-byte generation ID
 * as the guest reads it now, 16 fresh bytes from the virtio-rng and the
 * virtio-net MAC its configuration space reports.
 */
void genid_line(uint64_t n)
{
	uint8_t id[16], rnd[16], mac[6];
	char idh[33] = "none", rh[33] = "none", mh[13] = "none";
	int got;

	if (genid_pa) {
		for (unsigned i = 0; i < 16; i++)
			id[i] = *(volatile uint8_t *)(genid_pa + i);
		hex(idh, id, 16);
	}
	got = genid_rng_read(rnd, sizeof(rnd));
	if (got == (int)sizeof(rnd))
		hex(rh, rnd, 16);
	if (!genid_mac_read(mac))
		hex(mh, mac, 6);
	con_printf("KHYVE-GENID %lu id=%s rng=%s mac=%s notified=%d\n", n, idh,
		   rh, mh, ged_pending());
}
