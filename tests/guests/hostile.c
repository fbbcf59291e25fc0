// SPDX-License-Identifier: BSD-2-Clause
/*
 * "hostile_ms=N" (with tests=smp and counter): the first AP writes random
 * values to every device the VMM emulates for N ms while the BSP counts.
 * The point is the VMM: it must stay up, keep the counting vCPU running
 * and still checkpoint and restore the wreck afterwards.
 *
 * Targets (each burst picks one): COM1's registers, the i8042, the CMOS
 * RTC, the ACPI sleep and reset registers, other ports, PCI configuration
 * space through 0xcf8/0xcfc (every function, BARs and capabilities
 * included), the virtio-pci memory BARs (common, ISR, device and notify
 * areas), the MSI-X table and PBA, the split virtqueues (descriptors,
 * avail and used rings, indirect tables, then a kick) and the firmware
 * area with the ACPI tables and the VM generation ID.
 *
 * Writes that would legitimately end or break the guest itself are not
 * made, because a guest that powers itself off (or tells a device to DMA
 * over its own code) is not the VMM failing:
 *  - ACPI sleep control (0x600) with SLP_EN and SLP_TYP=5 (power-off);
 *  - 0xcf9 with RST_CPU (reset); i8042 command 0xf0-0xff with bit 0 clear
 *    (pulse the reset line) and the output-port byte after 0xd1 with
 *    bit 0 clear (reset): 0xd1 is always followed by a byte with bit 0 set;
 *  - MSI-X message data with delivery mode SMI, NMI, INIT, SIPI, ExtINT or
 *    the reserved 3 (only fixed and lowest priority): an NMI would enter
 *    the guest's exception path, an INIT would stop the counting vCPU;
 *  - virtqueue addresses (common configuration 0x20-0x37, and those same
 *    fields through the PCI_CFG window capability) that point into RAM
 *    the guest uses: they point into the fuzzer's 4 MiB arena at the top
 *    of RAM or outside RAM. Before a queue is enabled its addresses are
 *    made non-zero (a reset leaves them 0, low memory). Descriptors the
 *    fuzzer writes point into the arena, across the end of RAM, into the
 *    holes, the PCI window or above 4 GiB, never at the guest's own RAM;
 *  - the in-kernel (KVM) devices: the PICs, the PIT, port 0x61, the ELCR,
 *    the IOAPIC and the LAPIC (not the VMM's code; an IPI could INIT the
 *    counting vCPU);
 *  - COM1 is written only while the console lock is held, and put back
 *    (8N1, no loopback, no interrupts) before the counter prints again.
 */
#include "guest.h"
#include "hw.h"

#define HV_MAX_FNS  16
#define HV_MAX_Q    4
#define HV_QSZ	    64
#define HV_ARENA    (4ULL << 20)
#define HV_RINGS    ((uint64_t)HV_MAX_FNS * HV_MAX_Q * 4096)
#define HV_INDIRECT (HV_RINGS + (256ULL << 10)) /* indirect tables end */
#define HV_HOLE	    0xc0000000ULL		/* PCI window: BARs live here */
#define HV_HOLE_END 0xfec00000ULL /* IOAPIC, LAPIC: in-kernel, skipped */
#define COM1	    0x3f8

/* virtio common configuration (virtio 1.x, 4.1.4.3) */
#define CC_DFSEL  0x00
#define CC_DF	  0x04
#define CC_GFSEL  0x08
#define CC_GF	  0x0c
#define CC_MSIX	  0x10
#define CC_NUMQ	  0x12
#define CC_STATUS 0x14
#define CC_QSEL	  0x16
#define CC_QSIZE  0x18
#define CC_QMSIX  0x1a
#define CC_QEN	  0x1c
#define CC_QNOFF  0x1e
#define CC_QDESC  0x20
#define CC_QEND	  0x38

struct hv_fn {
	unsigned bdf;
	uint32_t id;
	uint16_t cmd;
	uint32_t bar_reg[6];
	uint64_t bar_addr[6], bar_size[6];
	unsigned msix_cap, msix_nvec;
	uint64_t msix_base; /* table BAR address + table offset */
	unsigned win_cap;   /* virtio PCI_CFG window capability, 0: none */
	unsigned common_bar;
	uint32_t common_off;
	uint64_t common, notify;
	uint32_t notify_mult;
	unsigned nq, idx;
	uint16_t qnoff[HV_MAX_Q], qsz[HV_MAX_Q];
};

enum {
	HC_UART,
	HC_I8042,
	HC_RTC,
	HC_PM,
	HC_PORTS,
	HC_PCICFG,
	HC_MMIO,
	HC_MSIX,
	HC_VQ,
	HC_FW,
	HC_N
};
static const char *const hv_names[HC_N] = {"uart",  "i8042",  "rtc",  "pm",
					   "ports", "pcicfg", "mmio", "msix",
					   "vq",    "fw"};

static struct hv_fn hv_fns[HV_MAX_FNS];
static unsigned hv_nfns, hv_nvirtio;
static uint64_t hv_arena, hv_top, hv_rng, hv_seed;
static volatile uint64_t hv_ops[HC_N], hv_bursts, hv_kicks, hv_reinits;
static volatile uint64_t hv_t0, hv_t1;
static volatile uint32_t hv_state; /* 0 setup, 1 fuzzing, 2 done, 3 off */
static int hv_done_printed;

/* xorshift64*: small, and the seed alone replays one vCPU's writes. */
static uint64_t rnd(void)
{
	uint64_t x = hv_rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	hv_rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static uint32_t rndn(uint32_t n)
{
	return (uint32_t)((rnd() >> 32) % n);
}

static uint32_t cf8(unsigned bdf, unsigned off)
{
	return 0x80000000u | bdf << 8 | (off & 0xfc);
}

static uint32_t cfg_rd32(unsigned bdf, unsigned off)
{
	outl(0xcf8, cf8(bdf, off));
	return inl(0xcfc);
}

static void cfg_wr32(unsigned bdf, unsigned off, uint32_t v)
{
	outl(0xcf8, cf8(bdf, off));
	outl(0xcfc, v);
}

static uint8_t cfg_rd8(unsigned bdf, unsigned off)
{
	return (uint8_t)(cfg_rd32(bdf, off) >> ((off & 3) * 8));
}

/* ---- addresses and lengths a device may be handed ---- */

/* The low half of a queue address: in the arena, or above RAM. */
static uint32_t safe_lo(void)
{
	if (rndn(2))
		return (uint32_t)(hv_arena + rndn((uint32_t)HV_ARENA));
	return (uint32_t)(hv_top + rnd() % ((1ULL << 32) - hv_top));
}

static uint32_t safe_hi(void)
{
	return rndn(2) ? 0 : (uint32_t)rnd();
}

/* A buffer address that is never RAM the guest uses (see the top). */
static uint64_t safe_addr(void)
{
	switch (rndn(10)) {
	case 0:
	case 1:
	case 2:
	case 3:
		return hv_arena + rndn((uint32_t)HV_ARENA);
	case 4:
		return hv_top - rndn(8192); /* across the end of RAM */
	case 5:
		return hv_top + rnd() % (HV_HOLE - hv_top);
	case 6:
		return HV_HOLE + rnd() % ((1ULL << 32) - HV_HOLE);
	case 7: {
		const struct hv_fn *f = &hv_fns[rndn(hv_nfns)];
		unsigned b = rndn(6);

		if (f->bar_size[b]) /* a device's own registers */
			return f->bar_addr[b] + rndn(0x5000);
		return HV_HOLE + rndn(1 << 24);
	}
	case 8:
		return rnd() | 1ULL << 32;
	default:
		return (uint64_t)0 - rndn(1 << 16); /* wraps */
	}
}

static uint32_t rnd_len(void)
{
	switch (rndn(8)) {
	case 0:
		return 0;
	case 1:
		return 1 + rndn(16);
	case 2:
		return 1 + rndn(4096);
	case 3:
		return 0xffffffffu;
	case 4:
		return 0x80000000u + rndn(4096);
	case 5:
		return (uint32_t)rnd();
	case 6:
		return 512 * (1 + rndn(128));
	default:
		return 4096 * (1 + rndn(64));
	}
}

/* ---- discovery (BSP, before the fuzzing starts) ---- */

static void bar_probe(struct hv_fn *f, unsigned i)
{
	unsigned off = 0x10 + 4 * i;
	uint32_t lo = cfg_rd32(f->bdf, off), mlo, hi = 0, mhi = 0xffffffffu;
	uint64_t mask;

	f->bar_reg[i] = lo;
	if (!lo || (lo & 1))
		return; /* unassigned or I/O: khyve's devices have none */
	cfg_wr32(f->bdf, off, 0xffffffffu);
	mlo = cfg_rd32(f->bdf, off);
	cfg_wr32(f->bdf, off, lo);
	if ((lo & 6) == 4 && i < 5) {
		hi = cfg_rd32(f->bdf, off + 4);
		f->bar_reg[i + 1] = hi;
		cfg_wr32(f->bdf, off + 4, 0xffffffffu);
		mhi = cfg_rd32(f->bdf, off + 4);
		cfg_wr32(f->bdf, off + 4, hi);
	}
	mask = ((uint64_t)mhi << 32 | (mlo & ~0xfu));
	f->bar_addr[i] = ((uint64_t)hi << 32) | (lo & ~0xfu);
	f->bar_size[i] = ~mask + 1;
	/* Only what the guest's identity map covers, uncached: 3-4 GiB. */
	if (f->bar_addr[i] < HV_HOLE ||
	    f->bar_addr[i] + f->bar_size[i] > HV_HOLE_END ||
	    f->bar_size[i] > (16u << 20))
		f->bar_size[i] = 0;
}

static void caps_probe(struct hv_fn *f)
{
	unsigned n = 0;

	if (!(cfg_rd32(f->bdf, 4) >> 16 & 0x10))
		return;
	for (unsigned p = cfg_rd8(f->bdf, 0x34) & 0xfc; p && n < 48;
	     p = cfg_rd8(f->bdf, p + 1) & 0xfc, n++) {
		uint8_t id = cfg_rd8(f->bdf, p), type = cfg_rd8(f->bdf, p + 3);
		unsigned bar = cfg_rd8(f->bdf, p + 4);
		uint32_t off = cfg_rd32(f->bdf, p + 8);

		if (id == 0x11) {
			uint32_t t = cfg_rd32(f->bdf, p + 4);

			f->msix_cap = p;
			f->msix_nvec = (cfg_rd32(f->bdf, p) >> 16 & 0x7ff) + 1;
			if (f->bar_size[t & 7])
				f->msix_base = f->bar_addr[t & 7] + (t & ~7u);
			continue;
		}
		if (id != 0x09)
			continue;
		if (type == 5) {
			f->win_cap = p;
			continue;
		}
		if (bar > 5 || !f->bar_size[bar])
			continue;
		if (type == 1) {
			f->common = f->bar_addr[bar] + off;
			f->common_bar = bar;
			f->common_off = off;
		} else if (type == 2) {
			f->notify = f->bar_addr[bar] + off;
			f->notify_mult = cfg_rd32(f->bdf, p + 16);
		}
	}
}

static void fn_add(unsigned bdf, uint32_t id)
{
	struct hv_fn *f = &hv_fns[hv_nfns];

	memset(f, 0, sizeof(*f));
	f->bdf = bdf;
	f->id = id;
	f->cmd = (uint16_t)cfg_rd32(bdf, 4);
	for (unsigned i = 0; i < 6; i++) {
		bar_probe(f, i);
		if ((f->bar_reg[i] & 7) == 4)
			i++; /* the upper half of a 64-bit BAR */
	}
	caps_probe(f);
	f->idx = hv_nfns++;
}

static void pci_scan(void)
{
	for (unsigned dev = 0; dev < 32 && hv_nfns < HV_MAX_FNS; dev++) {
		for (unsigned fn = 0; fn < 8 && hv_nfns < HV_MAX_FNS; fn++) {
			unsigned bdf = dev << 3 | fn;
			uint32_t id = cfg_rd32(bdf, 0);

			if ((id & 0xffff) == 0xffff) {
				if (fn == 0)
					break;
				continue;
			}
			fn_add(bdf, id);
			if (fn == 0 && !(cfg_rd8(bdf, 0x0e) & 0x80))
				break;
		}
	}
}

/* ---- virtio: a working set-up that the fuzzing then takes apart ---- */

static uint64_t ring_base(const struct hv_fn *f, unsigned q)
{
	return hv_arena + ((uint64_t)f->idx * HV_MAX_Q + q) * 4096;
}

/* Queue @q's three addresses, if the device has them at 0 (after a
 * reset): somewhere harmless, before the queue is enabled. */
static void queue_addrs_safe(uint64_t c)
{
	for (unsigned o = CC_QDESC; o < CC_QEND; o += 8) {
		if (mmio_read32(c + o) || mmio_read32(c + o + 4))
			continue;
		mmio_write32(c + o, safe_lo());
		mmio_write32(c + o + 4, safe_hi());
	}
}

static void msix_setup(struct hv_fn *f)
{
	if (!f->msix_cap || !f->msix_base)
		return;
	for (unsigned v = 0; v < f->msix_nvec && v < 64; v++) {
		uint64_t e = f->msix_base + 16 * v;

		/* Fixed, to the BSP, which runs with IF=0: never taken. */
		mmio_write32(e, 0xfee00000u | G.bsp_apic_id << 12);
		mmio_write32(e + 4, 0);
		mmio_write32(e + 8, 0x40 + v);
		mmio_write32(e + 12, 0);
	}
	cfg_wr32(f->bdf, f->msix_cap,
		 (cfg_rd32(f->bdf, f->msix_cap) & 0xffff) | 0x80000000u);
}

static void vq_setup(struct hv_fn *f, unsigned q)
{
	uint64_t c = f->common, r = ring_base(f, q);
	uint16_t qs;

	mmio_write16(c + CC_QSEL, (uint16_t)q);
	qs = mmio_read16(c + CC_QSIZE);
	if (!qs)
		return;
	f->qsz[q] = qs < HV_QSZ ? qs : HV_QSZ;
	mmio_write16(c + CC_QSIZE, f->qsz[q]);
	mmio_write16(c + CC_QMSIX, (uint16_t)(q + 1));
	memset((void *)r, 0, 4096);
	mmio_write32(c + CC_QDESC, (uint32_t)r);
	mmio_write32(c + CC_QDESC + 4, 0);
	mmio_write32(c + CC_QDESC + 8, (uint32_t)(r + 1024));
	mmio_write32(c + CC_QDESC + 12, 0);
	mmio_write32(c + CC_QDESC + 16, (uint32_t)(r + 2048));
	mmio_write32(c + CC_QDESC + 20, 0);
	f->qnoff[q] = mmio_read16(c + CC_QNOFF);
	mmio_write16(c + CC_QEN, 1);
}

/* Reset, negotiate (VERSION_1 plus a random pick), set the queues up. */
static void vinit(struct hv_fn *f)
{
	uint64_t c = f->common, feat;
	unsigned nq;

	cfg_wr32(f->bdf, 4, (cfg_rd32(f->bdf, 4) & 0xffff) | 0x6);
	mmio_write8(c + CC_STATUS, 0);
	/* Bounded in time: every read is an exit, and a BAR left dark by
	 * the fuzzing reads 0xff. */
	for (uint64_t t = rdtsc();
	     mmio_read8(c + CC_STATUS) && rdtsc() - t < 20 * G.tsc_khz;)
		cpu_relax();
	mmio_write8(c + CC_STATUS, 3);
	mmio_write32(c + CC_DFSEL, 0);
	feat = mmio_read32(c + CC_DF);
	mmio_write32(c + CC_DFSEL, 1);
	feat |= (uint64_t)mmio_read32(c + CC_DF) << 32;
	feat = (feat & rnd()) | 1ULL << 32;
	mmio_write32(c + CC_GFSEL, 0);
	mmio_write32(c + CC_GF, (uint32_t)feat);
	mmio_write32(c + CC_GFSEL, 1);
	mmio_write32(c + CC_GF, (uint32_t)(feat >> 32));
	mmio_write8(c + CC_STATUS, 3 | 8);
	mmio_write16(c + CC_MSIX, 0);
	nq = mmio_read16(c + CC_NUMQ);
	f->nq = nq < HV_MAX_Q ? nq : HV_MAX_Q;
	for (unsigned q = 0; q < f->nq; q++)
		vq_setup(f, q);
	mmio_write8(c + CC_STATUS, 3 | 8 | 4);
	hv_reinits++;
}

void hostile_setup(void)
{
	uint64_t cnt_end = ((G.usable_lo + 4095) & ~4095ULL) +
			   (uint64_t)G.cfg.mem_kb * 1024;

	hv_top = gmm_ram_top(G.mm, G.mm_n);
	hv_arena = (hv_top - HV_ARENA) & ~4095ULL;
	hv_seed = G.cfg.hostile_seed ? G.cfg.hostile_seed : rdtsc();
	hv_rng = hv_seed ? hv_seed : 0x6b68797665ULL;
	if (!G.aps_started || !ap_alive || hv_top > HV_HOLE ||
	    hv_arena < cnt_end ||
	    !gmm_is_ram(G.mm, G.mm_n, hv_arena, hv_top - hv_arena)) {
		report("hostile", 0,
		       "needs tests=smp (2+ vCPUs), RAM below 3 GiB and room "
		       "for the arena: aps=%u top=0x%lx arena=0x%lx",
		       ap_alive, hv_top, hv_arena);
		hv_state = 3;
		return;
	}
	pci_scan();
	/* Payload for the devices: random, so are headers and commands. */
	for (uint64_t a = hv_arena + HV_RINGS; a < hv_top; a += 8)
		*(volatile uint64_t *)a = rnd();
	for (unsigned i = 0; i < hv_nfns; i++) {
		struct hv_fn *f = &hv_fns[i];

		con_printf("KHYVE-INFO hostile fn %02x.%u id=0x%08x msix=%u "
			   "common=0x%lx notify=0x%lx\n",
			   f->bdf >> 3, f->bdf & 7, f->id,
			   f->msix_cap ? f->msix_nvec : 0, f->common,
			   f->notify);
		msix_setup(f);
		if (f->common && f->notify) {
			vinit(f);
			hv_nvirtio++;
		}
	}
	con_printf("KHYVE-INFO hostile seed=0x%lx ms=%u arena=0x%lx-0x%lx "
		   "fns=%u virtio=%u\n",
		   hv_seed, G.cfg.hostile_ms, hv_arena, hv_top, hv_nfns,
		   hv_nvirtio);
	__atomic_store_n(&hv_state, 1, __ATOMIC_RELEASE);
}

/* ---- the bursts (AP) ---- */

static void burst_uart(unsigned n)
{
	con_lock();
	for (unsigned i = 0; i < n; i++) {
		uint16_t p = (uint16_t)(COM1 + rndn(8));

		if (rndn(3))
			outb(p, (uint8_t)rnd());
		else
			(void)inb(p);
	}
	/* Back to what the console needs: 8N1, no interrupts, no loop. */
	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 4, 0x03);
	con_putc('\n'); /* end whatever the random bytes printed */
	con_unlock();
}

static void burst_i8042(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t v = (uint8_t)rnd();

		switch (rndn(4)) {
		case 0:
			if (v >= 0xf0)
				v |= 1; /* bit 0 low would pulse reset */
			outb(0x64, v);
			if (v ==
			    0xd1) /* the output port: reset bit kept high */
				outb(0x60, (uint8_t)(rnd() | 1));
			break;
		case 1:
			outb(0x60, v);
			break;
		case 2:
			(void)inb(0x60);
			break;
		default:
			(void)inb(0x64);
			break;
		}
	}
}

static void burst_rtc(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		outb(0x70, (uint8_t)rnd());
		if (rndn(2))
			outb(0x71, (uint8_t)rnd());
		else
			(void)inb(0x71);
	}
}

/* Sleep-control byte without SLP_EN + S5 (that is a power-off). */
static uint8_t sleep_safe(uint8_t v)
{
	if ((v & 0x20) && ((v >> 2) & 7) == 5)
		v &= (uint8_t)~0x20;
	return v;
}

static void burst_pm(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint32_t v = (uint32_t)rnd();

		switch (rndn(7)) {
		case 0:
			outb(0x600, sleep_safe((uint8_t)v));
			break;
		case 1:
			outb(0x601, (uint8_t)v);
			break;
		case 2:
			outw(0x600,
			     (uint16_t)((v & 0xff00) | sleep_safe((uint8_t)v)));
			break;
		case 3:
			outl(0x600, (v & ~0xffu) | sleep_safe((uint8_t)v));
			break;
		case 4:
			outb(0xcf9, (uint8_t)(v & ~0x04u)); /* no RST_CPU */
			break;
		case 5:
			(void)inb((uint16_t)(0x600 + rndn(2)));
			break;
		default:
			(void)inb(0xcf9);
			(void)inl(0x600);
			break;
		}
	}
}

/* Ports khyve may see; the PICs, PIT, 0x61 and ELCR are KVM's. */
static int port_ok(uint16_t p, unsigned size)
{
	static const uint16_t skip[][2] = {
		{0x20, 0x21},	{0xa0, 0xa1},	{0x40, 0x43},
		{0x61, 0x61},	{0x4d0, 0x4d1}, {0x60, 0x64},
		{0x3f8, 0x3ff}, {0x600, 0x601}, {0xcf8, 0xcff},
	};

	for (unsigned i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (p <= skip[i][1] && p + size - 1 >= skip[i][0])
			return 0;
	return p + size - 1 <= 0xffff;
}

static void burst_ports(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned size = 1u << rndn(3);
		/* Mostly the legacy range, where the devices are. */
		uint16_t p = (uint16_t)(rndn(4) ? rndn(0x1000) : rnd());

		if (!port_ok(p, size))
			continue;
		if (rndn(2)) {
			if (size == 1)
				outb(p, (uint8_t)rnd());
			else if (size == 2)
				outw(p, (uint16_t)rnd());
			else
				outl(p, (uint32_t)rnd());
		} else if (size == 1) {
			(void)inb(p);
		} else if (size == 2) {
			(void)inw(p);
		} else {
			(void)inl(p);
		}
	}
}

/* Would writing config byte range [off, off+size) of @f through the
 * PCI_CFG window land on the queue enable or address fields? */
static int window_unsafe(const struct hv_fn *f, unsigned off, unsigned size)
{
	unsigned d = f->win_cap + 16;
	uint32_t boff, blen;

	if (!f->win_cap || off >= d + 4 || off + size <= d)
		return 0;
	if (cfg_rd8(f->bdf, f->win_cap + 4) != f->common_bar)
		return 0;
	boff = cfg_rd32(f->bdf, f->win_cap + 8);
	blen = cfg_rd32(f->bdf, f->win_cap + 12);
	return (uint64_t)boff < (uint64_t)f->common_off + CC_QEND &&
	       (uint64_t)boff + blen > (uint64_t)f->common_off + CC_QEN;
}

static unsigned cfg_off(const struct hv_fn *f)
{
	switch (rndn(6)) {
	case 0:
	case 1:
		return rndn(256);
	case 2:
		return 0x10 + rndn(24); /* BARs */
	case 3:
		return 4 + rndn(4); /* command, status */
	case 4:
		if (f && f->msix_cap)
			return f->msix_cap + rndn(12);
		return rndn(256);
	default:
		if (f && f->win_cap)
			return f->win_cap + rndn(20);
		return 0x40 + rndn(192);
	}
}

static void cfg_write_one(void)
{
	const struct hv_fn *f = rndn(5) ? &hv_fns[rndn(hv_nfns)] : NULL;
	unsigned bdf = f ? f->bdf : rndn(256), off = cfg_off(f);
	unsigned size = 1u << rndn(3), port = 0xcfc + (off & 3);
	uint32_t v = (uint32_t)rnd();

	if (!rndn(16)) { /* a latch that is not a type-1 bus 0 address */
		outl(0xcf8, (uint32_t)rnd());
	} else {
		outl(0xcf8, cf8(bdf, off) | (rndn(8) ? 0 : rndn(256) << 16));
	}
	if (f && window_unsafe(f, off, size))
		return;
	if (rndn(4) == 0) {
		if (size == 1)
			(void)inb((uint16_t)port);
		else if (size == 2)
			(void)inw((uint16_t)port);
		else
			(void)inl((uint16_t)port);
		return;
	}
	/* 0xcf9 is the reset register, not config data. */
	if (size == 1 && port == 0xcf9)
		return;
	if (size == 1)
		outb((uint16_t)port, (uint8_t)v);
	else if (size == 2)
		outw((uint16_t)port, (uint16_t)v);
	else
		outl((uint16_t)port, v);
}

/*
 * BARs and decoding back, so the MMIO bursts find the devices again.
 * Decoding off everywhere first: a BAR put back where another device's
 * moved BAR still sits would overlap it, and khyve leaves such a BAR
 * dark until its function's config space is written again.
 */
static void cfg_restore(void)
{
	for (unsigned i = 0; i < hv_nfns; i++)
		cfg_wr32(hv_fns[i].bdf, 4, 0);
	for (unsigned i = 0; i < hv_nfns; i++) {
		const struct hv_fn *f = &hv_fns[i];

		for (unsigned b = 0; b < 6; b++)
			if (f->bar_reg[b])
				cfg_wr32(f->bdf, 0x10 + 4 * b, f->bar_reg[b]);
	}
	for (unsigned i = 0; i < hv_nfns; i++)
		cfg_wr32(hv_fns[i].bdf, 4, (uint32_t)hv_fns[i].cmd | 0x6);
}

static void burst_pcicfg(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		cfg_write_one();
	cfg_restore();
}

/* A queue field write in @f's common configuration at @off: addresses
 * stay harmless, enabling makes sure they are set. */
static void common_write(const struct hv_fn *f, unsigned off)
{
	uint64_t c = f->common;

	if (off >= CC_QDESC) {
		off &= ~3u;
		mmio_write32(c + off, (off & 4) ? safe_hi() : safe_lo());
		return;
	}
	if (off >= CC_QNOFF) {
		mmio_write16(c + CC_QNOFF, (uint16_t)rnd()); /* read-only */
		return;
	}
	if (rndn(2)) {
		mmio_write16(c + CC_QEN, 0);
		return;
	}
	queue_addrs_safe(c);
	mmio_write16(c + CC_QEN, (uint16_t)(rndn(2) ? 1 : rnd()));
}

static void mmio_access(uint64_t a, unsigned size, uint64_t v, int write)
{
	if (!write) {
		if (size == 1)
			(void)mmio_read8(a);
		else if (size == 2)
			(void)mmio_read16(a);
		else if (size == 4)
			(void)mmio_read32(a);
		else
			(void)mmio_read64(a);
		return;
	}
	if (size == 1)
		mmio_write8(a, (uint8_t)v);
	else if (size == 2)
		mmio_write16(a, (uint16_t)v);
	else if (size == 4)
		mmio_write32(a, (uint32_t)v);
	else
		mmio_write64(a, v);
}

/* MSI-X message data: delivery mode (bits 8-10) fixed or lowest. */
static uint64_t msix_sanitize(const struct hv_fn *f, uint64_t a, unsigned size,
			      uint64_t v)
{
	if (!f->msix_base || a + size <= f->msix_base ||
	    a >= f->msix_base + 16ULL * f->msix_nvec)
		return v;
	for (unsigned i = 0; i < size; i++)
		if ((a + i - f->msix_base) % 16 == 9)
			v &= ~(0x06ULL << (8 * i));
	return v;
}

static void mmio_one(const struct hv_fn *f, uint64_t base, uint64_t len)
{
	unsigned size = 1u << rndn(4);
	uint64_t off = rndn(8) ? rnd() % len : len - 8 + rndn(16);
	uint64_t a = base + off, v = rnd();
	int write = rndn(4) != 0;

	if (a < HV_HOLE || a + size > HV_HOLE_END)
		return;
	if (write && f->common && a < f->common + CC_QEND &&
	    a + size > f->common + CC_QEN) {
		common_write(f, (unsigned)(a < f->common + CC_QEN
						   ? CC_QEN
						   : a - f->common));
		return;
	}
	mmio_access(a, size, msix_sanitize(f, a, size, v), write);
}

static void burst_mmio(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const struct hv_fn *f = &hv_fns[rndn(hv_nfns)];
		unsigned b = rndn(6);

		if (!f->bar_size[b])
			continue;
		/* Half the time the first 64 bytes of a 4 KiB page: the
		 * virtio areas' registers are there. */
		if (rndn(2))
			mmio_one(f,
				 f->bar_addr[b] +
					 ((rnd() % f->bar_size[b]) & ~0xfffULL),
				 64);
		else
			mmio_one(f, f->bar_addr[b], f->bar_size[b]);
	}
}

static void burst_msix(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const struct hv_fn *f = &hv_fns[rndn(hv_nfns)];

		if (!f->msix_base)
			continue;
		/* Table (and PBA at 0x800, and what is past both). */
		if (rndn(4))
			mmio_one(f, f->msix_base, 16ULL * f->msix_nvec);
		else
			mmio_one(f, f->msix_base, 4096);
		if (!rndn(8))
			cfg_wr32(f->bdf, f->msix_cap,
				 (cfg_rd32(f->bdf, f->msix_cap) & 0xffff) |
					 (uint32_t)(rndn(4) << 30));
	}
}

static void desc_write(uint64_t d)
{
	uint16_t fl = (uint16_t)rndn(8); /* NEXT, WRITE, INDIRECT */

	if (!rndn(8))
		fl = (uint16_t)rnd();
	mmio_write64(d, safe_addr());
	mmio_write32(d + 8, rnd_len());
	mmio_write16(d + 12, fl);
	mmio_write16(d + 14, (uint16_t)(rndn(4) ? rndn(HV_QSZ + 8) : rnd()));
}

/*
 * A request that looks right to a device: a readable header (a
 * virtio-blk one: IN, OUT, FLUSH or GET_ID, a sector in or just past the
 * disk; or a 10/12-byte virtio-net header), data buffers (in the arena
 * or anywhere harmless, readable or writable), a small writable status
 * last; then published in the avail ring. It gets past the first checks,
 * so the I/O paths behind them see odd buffers too.
 */
static void chain_write(const struct hv_fn *f, unsigned q, uint64_t r)
{
	static const uint32_t types[] = {0, 1, 4, 8};
	unsigned qs = f->qsz[q] ? f->qsz[q] : HV_QSZ;
	unsigned head = rndn(qs), d = head, len = 1 + rndn(5);
	uint64_t hdr = hv_arena + HV_INDIRECT +
		       ((rnd() % (HV_ARENA - HV_INDIRECT - 8192)) & ~15ULL);
	uint16_t idx;

	mmio_write32(hdr, rndn(4) ? types[rndn(4)] : (uint32_t)rnd());
	mmio_write32(hdr + 4, 0);
	mmio_write64(hdr + 8, rndn(4) ? rndn(8192 + 64) : rnd());
	for (unsigned k = 0; k < len; k++) {
		unsigned next = (d + 1 + rndn(2)) % qs;
		uint64_t a = hdr + 64 + rndn(4096);
		uint32_t l = 512 * (1 + rndn(8));
		uint16_t fl = rndn(2) ? 2 : 0;

		if (k == 0) {
			a = hdr;
			l = rndn(2) ? 16 : 10 + 2 * rndn(2);
			fl = 0;
		} else if (k == len - 1) {
			a = hdr + 16 + rndn(32);
			l = 1 + rndn(16);
			fl = 2;
		} else if (!rndn(4)) {
			a = safe_addr();
			l = rnd_len();
		}
		if (k + 1 < len)
			fl |= 1;
		mmio_write64(r + 16 * d, a);
		mmio_write32(r + 16 * d + 8, l);
		mmio_write16(r + 16 * d + 12, fl);
		mmio_write16(r + 16 * d + 14, (uint16_t)next);
		d = next;
	}
	idx = mmio_read16(r + 1026);
	mmio_write16(r + 1024 + 4 + 2 * (idx % qs), (uint16_t)head);
	mmio_write16(r + 1026, (uint16_t)(idx + 1));
}

static void burst_vq(unsigned n)
{
	struct hv_fn *f = &hv_fns[rndn(hv_nfns)];
	uint64_t r;
	unsigned q;

	if (!f->common || !f->notify)
		return;
	if (!f->nq || !rndn(16))
		vinit(f);
	if (!f->nq)
		return;
	q = rndn(f->nq);
	r = ring_base(f, q);
	for (unsigned i = 0; i < n; i++) {
		switch (rndn(8)) {
		case 6:
		case 7:
			chain_write(f, q, r);
			break;
		case 0:
		case 1: /* a descriptor, a loop now and then */
			desc_write(r + 16 * rndn(HV_QSZ));
			break;
		case 2: /* an avail ring entry */
			mmio_write16(r + 1024 + 4 + 2 * rndn(HV_QSZ),
				     (uint16_t)rndn(HV_QSZ + 16));
			break;
		case 3: /* an indirect table in the arena */
			desc_write(hv_arena + HV_RINGS + 16 * rndn(16384));
			break;
		case 4: /* the device's own used ring */
			mmio_write32(r + 2048 + 4 * rndn(130), (uint32_t)rnd());
			break;
		default: /* the avail index: a step or a leap */
			mmio_write16(
				r + 1024 + 2,
				(uint16_t)(rndn(8) ? mmio_read16(r + 1026) + 1 +
							     rndn(8)
						   : rnd()));
			break;
		}
	}
	if (!rndn(8))
		mmio_write16(r + 1024, (uint16_t)rnd()); /* avail flags */
	mmio_write16(f->notify + (uint64_t)f->qnoff[q] * f->notify_mult,
		     (uint16_t)(rndn(8) ? q : rnd()));
	hv_kicks++;
}

static void burst_fw(unsigned n)
{
	/* ACPI tables, the VM generation ID page (0xef000), MP table. */
	for (unsigned i = 0; i < n; i++) {
		uint64_t a = 0xe0000 + (rndn(0x20000) & ~7u);

		if (rndn(2))
			*(volatile uint64_t *)a = rnd();
		else
			(void)*(volatile uint64_t *)a;
	}
}

static void burst(void)
{
	unsigned cls = rndn(HC_N), n = 1 + rndn(32);

	if (G.cfg.hostile_mask && !(G.cfg.hostile_mask >> cls & 1))
		return;

	switch (cls) {
	case HC_UART:
		burst_uart(n);
		break;
	case HC_I8042:
		burst_i8042(n);
		break;
	case HC_RTC:
		burst_rtc(n);
		break;
	case HC_PM:
		burst_pm(n);
		break;
	case HC_PORTS:
		burst_ports(n);
		break;
	case HC_PCICFG:
		burst_pcicfg(n);
		break;
	case HC_MMIO:
		burst_mmio(n);
		break;
	case HC_MSIX:
		burst_msix(n);
		break;
	case HC_VQ:
		burst_vq(n);
		break;
	default:
		burst_fw(n);
		break;
	}
	hv_ops[cls] += n;
	hv_bursts++;
}

/*
 * Fuzzing time is counted between bursts, a gap of more than a second
 * (the VM paused, checkpointed, restored: the TSC runs on) as a second,
 * so a copy restored from a checkpoint taken mid-attack goes on attacking.
 */
void hostile_ap(unsigned idx)
{
	uint64_t budget, spent = 0, last, now, gap;

	if (idx != 0 || !G.cfg.hostile_ms)
		return;
	while (!__atomic_load_n(&hv_state, __ATOMIC_ACQUIRE))
		cpu_relax();
	if (hv_state != 1)
		return;
	budget = (uint64_t)G.cfg.hostile_ms * G.tsc_khz;
	gap = 1000 * G.tsc_khz;
	hv_t0 = last = rdtsc();
	while (spent < budget) {
		burst();
		now = rdtsc();
		if (now > last)
			spent += now - last < gap ? now - last : gap;
		last = now;
	}
	hv_t1 = hv_t0 + spent;
	__atomic_store_n(&hv_state, 2, __ATOMIC_RELEASE);
}

static uint64_t ops_total(void)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < HC_N; i++)
		t += hv_ops[i];
	return t;
}

void hostile_line(uint64_t n)
{
	uint32_t st = __atomic_load_n(&hv_state, __ATOMIC_ACQUIRE);
	uint64_t ops = ops_total(), ms;
	char buf[200];
	int len = 0;

	if (st == 1) {
		con_printf("KHYVE-HOSTILE %lu state=fuzzing ops=%lu bursts=%lu "
			   "kicks=%lu reinits=%lu\n",
			   n, ops, hv_bursts, hv_kicks, hv_reinits);
		return;
	}
	if (st != 2 || hv_done_printed)
		return;
	hv_done_printed = 1;
	ms = (hv_t1 - hv_t0) / (G.tsc_khz ? G.tsc_khz : 1);
	for (unsigned i = 0; i < HC_N; i++)
		len += g_snprintf(buf + len, sizeof(buf) - (size_t)len,
				  " %s=%lu", hv_names[i], hv_ops[i]);
	con_printf("KHYVE-INFO hostile ops%s\n", buf);
	report("hostile", ops > 0,
	       "seed=0x%lx ms=%lu/%u ops=%lu ops_per_s=%lu bursts=%lu "
	       "kicks=%lu reinits=%lu",
	       hv_seed, ms, G.cfg.hostile_ms, ops, ms ? ops * 1000 / ms : 0,
	       hv_bursts, hv_kicks, hv_reinits);
}
