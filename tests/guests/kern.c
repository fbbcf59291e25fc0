// SPDX-License-Identifier: BSD-2-Clause
/*
 * Kernel-mode (CPL0) half of the test guest: start-info copy, IDT/TSS,
 * high-RAM mapping, TSC calibration, the interrupt-driven timer test and
 * AP bring-up. On kvm_pvm every instruction here is emulated (~1 us), so
 * it does only what needs CPL0 and leaves bulk work to user.c.
 */
#include "guest.h"
#include "hw.h"
#include "snapmodes.h"

#define LAPIC_ID    0x20
#define LAPIC_TPR   0x80
#define LAPIC_EOI   0xb0
#define LAPIC_SVR   0xf0
#define LAPIC_ICRLO 0x300
#define LAPIC_ICRHI 0x310
#define LAPIC_LVTT  0x320
#define LAPIC_TICR  0x380
#define LAPIC_TDCR  0x3e0

#define PIT_HZ 1193182ULL

struct gstate G;
struct ap_result ap_res[GUEST_MAX_CPUS];
volatile uint32_t ap_alive, ap_ticket;
volatile uint64_t pit_ticks, lapic_ticks, other_irqs, lapic_eoi_ptr;

struct tss64 {
	uint32_t rsvd0;
	uint64_t rsp[3];
	uint64_t rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3;
	uint16_t iomap_base;
} __attribute__((packed));

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, attr;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

struct dtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

/*
 * A TSS with an I/O permission bitmap that allows every port (all zero
 * bits, then the 0xff terminator the CPU may read past the last port).
 * User-mode port I/O must not depend on IOPL alone: kvm_pvm's emulator
 * checks the bitmap instead of IOPL, so a TSS without one faults there.
 */
struct tss_io {
	struct tss64 t;
	uint8_t iomap[65536 / 8];
	uint8_t iomap_end;
} __attribute__((packed));

static struct tss_io tss[GUEST_MAX_CPUS] __attribute__((aligned(16)));
static uint8_t tss_stacks[GUEST_MAX_CPUS][2048] __attribute__((aligned(16)));
static struct idt_entry idt[256];
static struct dtr idtr;
static uint64_t pd_pool[(MAX_MAP_GIB - 4) * 512] __attribute__((aligned(4096)));
static uint8_t user_stack[65536] __attribute__((aligned(16)));
static uint8_t ap_ustacks[GUEST_MAX_CPUS][AP_USTACK_SZ]
	__attribute__((aligned(16)));
static uint64_t lapic_base = 0xfee00000;

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(lapic_base + reg);
}

static void lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(lapic_base + reg, v);
}

static void idt_set(unsigned vec, uint64_t fn)
{
	idt[vec] = (struct idt_entry){
		.off_lo = (uint16_t)fn,
		.sel = KCODE64,
		.attr = 0x8e, /* present, DPL0, 64-bit interrupt gate */
		.off_mid = (uint16_t)(fn >> 16),
		.off_hi = (uint32_t)(fn >> 32),
	};
}

static void idt_init(void)
{
	for (unsigned v = 0; v < 256; v++)
		idt_set(v, v < 32 ? exc_vectors[v] : (uint64_t)irq_other);
	idt_set(VEC_PIT, (uint64_t)irq_pit);
	idt_set(VEC_LAPIC, (uint64_t)irq_lapic);
	idt_set(VEC_SPURIOUS, (uint64_t)irq_spurious);
	idtr.limit = sizeof(idt) - 1;
	idtr.base = (uint64_t)idt;
}

/* Load the IDT and this CPU's TSS (its RSP0 catches user-mode faults). */
static void cpu_tables_load(unsigned cpu)
{
	uint64_t base = (uint64_t)&tss[cpu];
	uint64_t lim = sizeof(struct tss_io) - 1;

	tss[cpu].t.rsp[0] = (uint64_t)tss_stacks[cpu] + sizeof(tss_stacks[cpu]);
	tss[cpu].t.iomap_base = sizeof(struct tss64); /* bitmap: all ports */
	tss[cpu].iomap_end = 0xff;
	gdt[6 + 2 * cpu] = (lim & 0xffff) | (base & 0xffffff) << 16 |
			   0x89ULL << 40 | ((lim >> 16) & 0xf) << 48 |
			   ((base >> 24) & 0xff) << 56;
	gdt[7 + 2 * cpu] = base >> 32;
	__asm__ volatile("lidt %0" : : "m"(idtr));
	__asm__ volatile("ltr %w0" : : "r"(TSS_SEL(cpu)));
}

void exc_handler(struct exc_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	con_unlock(); /* this CPU may have held it: print anyway */
	n_fail++;
	con_printf("KHYVE-GUEST exception vec=%lu err=0x%lx rip=0x%lx cs=0x%lx "
		   "rsp=0x%lx cr2=0x%lx\n",
		   f->vec, f->err, f->rip, f->cs, f->rsp, cr2);
	con_printf("KHYVE-GUEST done pass=%lu fail=%lu\n", n_pass, n_fail);
	sys_poweroff(1);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void copy_start_info(uint32_t pa)
{
	const struct hvm_start_info *si = (const void *)(uintptr_t)pa;
	const struct mm_entry *mm;
	const char *cl;
	unsigned i;

	if (!pa)
		return;
	G.start_magic = si->magic;
	G.start_version = si->version;
	if (si->magic != HVM_START_MAGIC)
		return;
	G.rsdp_pa = si->rsdp_paddr;
	/* Only the low 4 GiB is mapped yet; a loader puts these low. */
	if (si->cmdline_paddr && si->cmdline_paddr < 0xffffff00ULL) {
		cl = (const char *)(uintptr_t)si->cmdline_paddr;
		for (i = 0; i + 1 < sizeof(G.cmdline) && cl[i]; i++)
			G.cmdline[i] = cl[i];
		G.cmdline[i] = '\0';
	}
	if (si->version >= 1 && si->memmap_paddr &&
	    si->memmap_paddr < 0xfff00000ULL) {
		mm = (const struct mm_entry *)(uintptr_t)si->memmap_paddr;
		for (i = 0; i < si->memmap_entries && i < MAX_MEMMAP; i++)
			G.mm[i] = mm[i];
		G.mm_n = i;
	}
}

/* Map RAM above 4 GiB: 1 GiB pages if the CPU has them, else 2 MiB. */
static void map_high(void)
{
	uint64_t top = gmm_ram_top(G.mm, G.mm_n);
	uint32_t a, b, c, d;
	unsigned gib, g1 = 0;

	G.map_top = 4ULL << 30;
	if (top <= G.map_top)
		return;
	gib = (unsigned)((top + (1ULL << 30) - 1) >> 30);
	if (gib > MAX_MAP_GIB)
		gib = MAX_MAP_GIB;
	cpuid(0x80000000, 0, &a, &b, &c, &d);
	if (a >= 0x80000001) {
		cpuid(0x80000001, 0, &a, &b, &c, &d);
		g1 = (d >> 26) & 1;
	}
	for (unsigned g = 4; g < gib; g++) {
		uint64_t *pd = &pd_pool[(g - 4) * 512];

		if (g1) {
			pdpt[g] = ((uint64_t)g << 30) | 0x87;
			continue;
		}
		for (unsigned j = 0; j < 512; j++)
			pd[j] = ((uint64_t)g << 30) + ((uint64_t)j << 21) +
				0x87;
		pdpt[g] = (uint64_t)pd | 0x7;
	}
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::
				 : "rax", "memory");
	G.map_top = (uint64_t)gib << 30;
}

static void pic_init(void)
{
	/* Remap the 8259s away from exception vectors, then mask them. */
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 0xe0);
	outb(0xa1, 0xe8);
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

static uint16_t pit0_read(void)
{
	uint8_t lo, hi;

	outb(0x43, 0x00); /* latch channel 0 */
	lo = inb(0x40);
	hi = inb(0x40);
	return (uint16_t)(lo | hi << 8);
}

/*
 * Count TSC ticks over ~20 ms of PIT channel 0 (free-running, mode 2).
 * Channel 0 rather than the usual channel 2 because it needs no port 0x61
 * gate, which some machines (QEMU microvm) lack.
 */
static uint64_t pit_calibrate(void)
{
	uint64_t t0, t1, elapsed = 0;
	uint16_t prev, cur;
	unsigned same = 0;

	outb(0x43, 0x34);
	outb(0x40, 0);
	outb(0x40, 0);
	prev = pit0_read();
	t0 = rdtsc();
	while (elapsed < PIT_HZ / 50) {
		cur = pit0_read();
		if (cur != prev)
			same = 0;
		else if (++same > 1000000)
			break; /* stuck: no PIT */
		elapsed += (uint16_t)(prev - cur);
		prev = cur;
	}
	t1 = rdtsc();
	outb(0x43, 0x30); /* mode 0 without a count: stops channel 0 */
	if (elapsed < PIT_HZ / 50 || t1 <= t0)
		return 0;
	return (t1 - t0) * PIT_HZ / (elapsed * 1000);
}

/*
 * TSC frequency, most trusted source first: cmdline tsc_khz=, hypervisor
 * leaf 0x40000010 (kHz, set by the VMM), CPUID 0x15 crystal ratio, a PIT
 * measurement, CPUID 0x16 nominal MHz, and a 1 GHz guess.
 */
static void tsc_calibrate(void)
{
	uint32_t a, b, c, d, max;

	if (G.cfg.tsc_khz) {
		G.tsc_khz = G.cfg.tsc_khz;
		G.tsc_src = "cmdline";
		return;
	}
	cpuid(0x40000000, 0, &max, &b, &c, &d);
	if (max >= 0x40000010 && max < 0x40010000) {
		cpuid(0x40000010, 0, &a, &b, &c, &d);
		if (a) {
			G.tsc_khz = a;
			G.tsc_src = "cpuid-40000010";
			return;
		}
	}
	cpuid(0, 0, &max, &b, &c, &d);
	if (max >= 0x15) {
		cpuid(0x15, 0, &a, &b, &c, &d);
		if (a && b && c) {
			G.tsc_khz = (uint64_t)c * b / a / 1000;
			G.tsc_src = "cpuid-15";
			return;
		}
	}
	G.tsc_khz = pit_calibrate();
	G.tsc_src = "pit";
	if (G.tsc_khz)
		return;
	if (max >= 0x16) {
		cpuid(0x16, 0, &a, &b, &c, &d);
		if (a & 0xffff) {
			G.tsc_khz = (a & 0xffff) * 1000ULL;
			G.tsc_src = "cpuid-16";
			return;
		}
	}
	G.tsc_khz = 1000000;
	G.tsc_src = "guess";
}

static const void *phys_identity(uint64_t pa, uint64_t len, void *ctx)
{
	(void)ctx;
	if (!pa || pa + len < pa || pa + len > G.map_top)
		return NULL;
	return (const void *)(uintptr_t)pa;
}

static void ioapic_write(uint64_t base, uint32_t reg, uint32_t v)
{
	mmio_write32(base, reg);
	mmio_write32(base + 0x10, v);
}

/*
 * Within a factor of 16 below (a loaded or emulating host coalesces timer
 * ticks; seen on nested KVM under TCG) and 4 above the expected count.
 */
static int plausible(uint64_t count, uint64_t expect)
{
	return count > 0 && count * 16 >= expect && count <= expect * 4 + 4;
}

static uint64_t timer_ioapic(void)
{
	return G.madt.ioapic_addr ? G.madt.ioapic_addr : 0xfec00000;
}

static uint32_t timer_pin(void)
{
	int gsi = G.madt.irq0_gsi >= 0 ? G.madt.irq0_gsi : 2;

	/* no MADT: KVM routes IRQ0 to IOAPIC pin 2 */
	return G.madt_err ? 2 : (uint32_t)gsi - G.madt.ioapic_gsi_base;
}

/* LAPIC timer (periodic) and PIT channel 0 via the IOAPIC, both 1 kHz. */
static void timers_start(void)
{
	uint32_t pin = timer_pin();
	uint16_t div = (uint16_t)((PIT_HZ + 500) / 1000);

	ioapic_write(timer_ioapic(), 0x11 + 2 * pin, G.bsp_apic_id << 24);
	/* edge, high, fixed */
	ioapic_write(timer_ioapic(), 0x10 + 2 * pin, VEC_PIT);
	outb(0x43, 0x34);
	outb(0x40, (uint8_t)div);
	outb(0x40, (uint8_t)(div >> 8));
	/* KVM and QEMU clock the LAPIC timer at 1 GHz: /16 * 62500 = 1 ms. */
	lapic_write(LAPIC_TDCR, 0x3);
	lapic_write(LAPIC_LVTT, 0x20000 | VEC_LAPIC);
	lapic_write(LAPIC_TICR, 62500);
}

static void timers_stop(void)
{
	lapic_write(LAPIC_LVTT, 0x10000);
	lapic_write(LAPIC_TICR, 0);
	ioapic_write(timer_ioapic(), 0x10 + 2 * timer_pin(), 0x10000);
	outb(0x43, 0x30);
}

/* LAPIC timer and PIT (via IOAPIC) both at ~1 kHz for timer_ms. */
static void timer_test(void)
{
	uint32_t pin = timer_pin();
	uint64_t t0, t1, ms, lt, pt;
	int ok;

	timers_start();
	pit_ticks = 0;
	lapic_ticks = 0;
	t0 = rdtsc();
	__asm__ volatile("sti" ::: "memory");
	/*
	 * HLT only once the periodic LAPIC timer has fired, so it is sure to
	 * wake us; before that, poll so a dead timer cannot hang the guest.
	 * Halting keeps an emulating or busy host from starving the timers.
	 */
	while ((rdtsc() - t0) < G.cfg.timer_ms * G.tsc_khz) {
		if (lapic_ticks)
			__asm__ volatile("hlt" ::: "memory");
		else
			cpu_relax();
	}
	__asm__ volatile("cli" ::: "memory");
	t1 = rdtsc();
	lt = lapic_ticks;
	pt = pit_ticks;
	timers_stop();
	ms = (t1 - t0) / G.tsc_khz;
	ok = plausible(lt, ms) && plausible(pt, ms);
	report("timer", ok, "lapic=%lu pit=%lu ms=%lu pin=%u other=%lu", lt, pt,
	       ms, pin, other_irqs);
}

static void icr_send(uint32_t apic_id, uint32_t lo)
{
	lapic_write(LAPIC_ICRHI, apic_id << 24);
	lapic_write(LAPIC_ICRLO, lo);
	for (unsigned i = 0; i < 100000 && (lapic_read(LAPIC_ICRLO) & 0x1000);
	     i++)
		cpu_relax();
}

static void smp_start(void)
{
	uint32_t ids[GUEST_MAX_CPUS];
	uint64_t tsz = (uint64_t)(tramp_end - tramp_start), t0, n_slices;
	unsigned n = 0, ncpus, i;
	char list[GUEST_MAX_CPUS * 11 + 1];
	int len = 0;

	if (G.madt_err) {
		report("smp", 0, "no MADT (err=%d)", G.madt_err);
		return;
	}
	if (!gmm_is_ram(G.mm, G.mm_n, TRAMP_BASE, tsz)) {
		report("smp", 0, "trampoline 0x%x not in RAM", TRAMP_BASE);
		return;
	}
	memcpy((void *)TRAMP_BASE, tramp_start, tsz);
	ncpus = G.madt.ncpus < GUEST_MAX_CPUS ? G.madt.ncpus : GUEST_MAX_CPUS;
	for (i = 0; i < ncpus; i++)
		if (G.madt.apic_ids[i] != G.bsp_apic_id)
			ids[n++] = G.madt.apic_ids[i];
	/* Reserve the APs' user-mode pattern slices before the mem test. */
	G.slice_size = ((uint64_t)G.cfg.smp_slice_kb * 1024) & ~4095ULL;
	n_slices = G.slice_size * n;
	G.slice_base = G.usable_lo;
	G.slices_ok = n && G.slice_size &&
		      gmm_is_ram(G.mm, G.mm_n, G.slice_base, n_slices);
	if (G.slices_ok)
		G.usable_lo +=
			(n_slices + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
	G.aps_started = n;
	/* INIT all, wait, then SIPI twice (the second is ignored if late). */
	for (i = 0; i < n; i++)
		icr_send(ids[i], 0x4500);
	delay_us(10000);
	for (i = 0; i < n; i++)
		icr_send(ids[i], 0x4600 | (TRAMP_BASE >> 12));
	delay_us(200);
	for (i = 0; i < n; i++)
		icr_send(ids[i], 0x4600 | (TRAMP_BASE >> 12));
	t0 = rdtsc();
	while (ap_alive < n && rdtsc() - t0 < G.cfg.smp_timeout_ms * G.tsc_khz)
		cpu_relax();
	list[0] = '\0';
	len = g_snprintf(list, sizeof(list), "%u", G.bsp_apic_id);
	for (i = 0; i < ap_alive && i < n; i++)
		len += g_snprintf(list + len, sizeof(list) - (size_t)len, ",%u",
				  ap_res[i].apic_id);
	report("smp", ap_alive == n, "cpus=%u expected=%u apic_ids=%s",
	       ap_alive + 1, n + 1, list);
}

/*
 * "busy": every AP spins on work (ap_spins) in user mode while the BSP
 * stays in kernel mode with both timers running and interrupts on, and
 * every interval_ms prints what moved since its previous line:
 *   KHYVE-BUSY <n> lapic=<total> pit=<total> aps=<n> progress=ok|stalled:..
 * A snapshot taken meanwhile must restore to lines that say "ok" again.
 * With count=N it ends after N lines (PASS when the last line was ok).
 */
static void busy_run(void)
{
	uint64_t interval = G.cfg.interval_ms * G.tsc_khz, now, last, next;
	uint64_t n = 0, lt0 = 0, pt0 = 0, stalls = 0;
	static uint64_t spins0[GUEST_MAX_CPUS];
	unsigned naps = ap_alive;
	char why[GUEST_MAX_CPUS * 6 + 16];
	int len;

	timers_start();
	con_printf("KHYVE-INFO busy aps=%u interval_ms=%u\n", naps,
		   G.cfg.interval_ms);
	__asm__ volatile("sti" ::: "memory");
	last = rdtsc();
	next = last + interval;
	for (;;) {
		now = rdtsc();
		if (now < last) /* TSC went back (another host) */
			next = now + interval;
		last = now;
		if ((int64_t)(now - next) < 0) {
			cpu_relax();
			continue;
		}
		n++;
		next = now + interval;
		uint64_t lt = lapic_ticks, pt = pit_ticks;

		len = 0;
		why[0] = '\0';
		if (lt == lt0)
			len += g_snprintf(why + len, sizeof(why) - (size_t)len,
					  ",lapic");
		if (pt == pt0)
			len += g_snprintf(why + len, sizeof(why) - (size_t)len,
					  ",pit");
		for (unsigned i = 0; i < naps; i++) {
			uint64_t sp = ap_spins[i];

			if (sp == spins0[i])
				len += g_snprintf(why + len,
						  sizeof(why) - (size_t)len,
						  ",ap%u", i + 1);
			spins0[i] = sp;
		}
		lt0 = lt;
		pt0 = pt;
		stalls += len > 0;
		con_printf("KHYVE-BUSY %lu lapic=%lu pit=%lu aps=%u "
			   "progress=%s%s tsc=%lu\n",
			   n, lt, pt, naps, len ? "stalled:" : "ok",
			   len ? why + 1 : "", now);
		if (G.cfg.count && n >= G.cfg.count)
			break;
	}
	__asm__ volatile("cli" ::: "memory");
	timers_stop();
	report("busy", !len && naps > 0, "lines=%lu stalls=%lu aps=%u", n,
	       stalls, naps);
	guest_exit(G.cfg.exit_mode);
}

void ap_main(uint32_t idx)
{
	cpu_tables_load(idx + 1);
	ap_res[idx].apic_id = lapic_read(LAPIC_ID) >> 24;
	__atomic_add_fetch(&ap_alive, 1, __ATOMIC_SEQ_CST);
	enter_user(ap_user, ap_ustacks[idx] + AP_USTACK_SZ, idx);
}

void kmain(uint32_t start_info_pa)
{
	con_init();
	con_printf("KHYVE-GUEST " GUEST_NAME " start\n");
	copy_start_info(start_info_pa);
	gcfg_defaults(&G.cfg);
	G.cfg_err = gcfg_parse(&G.cfg, G.cmdline);
	con_printf("KHYVE-INFO cmdline \"%s\" start_info=0x%x version=%u "
		   "memmap=%u\n",
		   G.cmdline, start_info_pa, G.start_version, G.mm_n);
	if (G.start_magic != HVM_START_MAGIC)
		report("start-info", 0, "magic=0x%x", G.start_magic);
	if (G.cfg_err)
		report("cmdline", 0, "bad=%s count=%d", G.cfg.bad, G.cfg.nbad);
	pic_init();
	idt_init();
	cpu_tables_load(0);
	map_high();
	G.usable_lo =
		((uint64_t)_image_end + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
	lapic_base = rdmsr(0x1b) & 0xffffff000ULL;
	lapic_eoi_ptr = lapic_base + LAPIC_EOI;
	G.bsp_apic_id = lapic_read(LAPIC_ID) >> 24;
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS); /* software-enable */
	lapic_write(LAPIC_TPR, 0);
	tsc_calibrate();
	con_printf("KHYVE-INFO tsc_khz=%lu tsc_src=%s map_top=0x%lx\n",
		   G.tsc_khz, G.tsc_src, G.map_top);
	if (G.cfg.clock)
		kvmclock_enable();
	G.madt_err = -G_ENOENT;
	if ((G.cfg.tests & (T_TIMER | T_SMP)) || G.cfg.busy)
		G.madt_err = gacpi_find_madt(G.rsdp_pa, phys_identity, NULL,
					     &G.madt);
	if (G.cfg.tests & T_TIMER)
		timer_test();
	if (G.cfg.tests & T_SMP)
		smp_start();
	if (G.cfg.busy)
		busy_run();
	if (G.cfg.exit_mode == EXIT_TRIPLEFAULT) {
		/* Needs CPL0, so it happens before the user-mode tests. */
		con_printf("KHYVE-GUEST done pass=%lu fail=%lu\n", n_pass,
			   n_fail);
		con_printf("KHYVE-INFO exit triplefault\n");
		triple_fault();
	}
	enter_user(umain, user_stack + sizeof(user_stack), 0);
}
