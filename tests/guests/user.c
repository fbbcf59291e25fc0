// SPDX-License-Identifier: BSD-2-Clause
/*
 * User-mode (CPL3, IOPL=3) half of the test guest: the bulk work runs
 * here at native speed on kvm_pvm, polling devices with port I/O and never
 * needing interrupts (user mode cannot get back to kernel mode there).
 */
#include "guest.h"
#include "hw.h"
#include "snapmodes.h"

#define CNT_MAX_PAGES 16384 /* counter region cap: 64 MiB */
#define GEN_MUL	      0x9e3779b97f4a7c15ULL

static uint32_t cnt_gen[CNT_MAX_PAGES];

struct pat_result {
	uint64_t bytes, sum, bad, first_bad;
};

static void pat_fill(uint64_t s, uint64_t e, uint64_t seed)
{
	for (uint64_t a = s; a < e; a += 8)
		*(volatile uint64_t *)a = g_pattern(a, seed);
}

/*
 * touch_zip: one pattern byte in each 8, the rest constant - data that
 * compresses (about 4:1 with zstd -1) but is never a zero page.
 */
static void zip_fill(uint64_t s, uint64_t e, uint64_t seed)
{
	for (uint64_t a = s; a < e; a += 8)
		*(volatile uint64_t *)a =
			(g_pattern(a, seed) & 0xff) | 0x6b68797600000000ULL;
}

static void pat_check(uint64_t s, uint64_t e, uint64_t seed,
		      struct pat_result *r)
{
	for (uint64_t a = s; a < e; a += 8) {
		uint64_t v = *(volatile uint64_t *)a;

		r->sum += v;
		if (v != g_pattern(a, seed) && !r->bad++)
			r->first_bad = a;
	}
	r->bytes += e - s;
}

static void serial_test(void)
{
	char ascii[96];
	uint8_t lsr, scr_a, scr_b;

	for (int i = 0; i < 95; i++)
		ascii[i] = (char)(0x20 + i);
	ascii[95] = '\0';
	con_printf("KHYVE-SERIAL banner khyve test guest 0123456789 "
		   "The quick brown fox jumps over the lazy dog\n");
	con_printf("KHYVE-SERIAL ascii %s\n", ascii);
	/*
	 * A real 8250, not just something answering the port: the scratch
	 * register keeps what is written to it, and once the output above
	 * is sent the transmitter is idle (THRE and TEMT, 0x60) with no
	 * error bits. The host checks that both lines arrived intact.
	 */
	outb(0x3f8 + 7, 0x5a);
	scr_a = inb(0x3f8 + 7);
	outb(0x3f8 + 7, 0xa5);
	scr_b = inb(0x3f8 + 7);
	lsr = inb(0x3f8 + 5);
	report("serial", scr_a == 0x5a && scr_b == 0xa5 && (lsr & 0x60) == 0x60 &&
			 !(lsr & 0x9e),
	       "chars=95 lsr=0x%x scr=0x%x,0x%x", lsr, scr_a, scr_b);
}

/*
 * Pass 0 writes, pass 1 checks: same ranges, capped by @limit_mb (0: all)
 * and taken from the top of RAM down, so a capped run on a large guest
 * still covers the memory above 4 GiB.
 */
static void mem_walk(int pass, uint64_t limit_mb, uint64_t seed,
		     struct pat_result *r)
{
	uint64_t left = limit_mb ? limit_mb << 20 : ~0ULL;
	uint64_t s, e;

	for (unsigned k = G.mm_n; k-- > 0 && left;) {
		if (!gmm_clip(G.mm, k, G.usable_lo, G.map_top, &s, &e))
			continue;
		if (e - s > left)
			s = e - left;
		left -= e - s;
		if (pass != 1) /* 0: pattern, 2: compressible, 1: check */
			con_printf("KHYVE-INFO mem range 0x%lx-0x%lx\n", s, e);
		if (pass == 0) {
			pat_fill(s, e, seed);
		} else if (pass == 2) {
			zip_fill(s, e, seed);
		} else {
			pat_check(s, e, seed, r);
		}
	}
}

static void mem_test(void)
{
	struct pat_result r = {0};
	uint64_t total = gmm_ram_total(G.mm, G.mm_n);

	if (!G.mm_n) {
		report("mem-size", 0, "no memmap (start_info version %u)",
		       G.start_version);
		return;
	}
	report("mem-size", total > 0, "ram=%lu entries=%u top=0x%lx", total,
	       G.mm_n, gmm_ram_top(G.mm, G.mm_n));
	mem_walk(0, G.cfg.mem_limit_mb, G.cfg.seed, &r);
	mem_walk(1, G.cfg.mem_limit_mb, G.cfg.seed, &r);
	report("mem-pattern", r.bytes > 0 && !r.bad,
	       "bytes=%lu sum=0x%lx bad=%lu first_bad=0x%lx", r.bytes, r.sum,
	       r.bad, r.first_bad);
}

void ap_user(unsigned long idx)
{
	struct pat_result r = {0};

	if (G.slices_ok) {
		uint64_t s = G.slice_base + idx * G.slice_size;
		uint64_t seed = G.cfg.seed ^ (idx + 1);

		pat_fill(s, s + G.slice_size, seed);
		pat_check(s, s + G.slice_size, seed, &r);
	}
	ap_res[idx].sum = r.sum;
	ap_res[idx].bad = r.bad;
	__atomic_store_n(&ap_res[idx].done, 1, __ATOMIC_RELEASE);
	if (G.cfg.hostile_ms)
		hostile_ap((unsigned)idx); /* AP 0 fuzzes, then spins too */
	/* No way back to kernel mode (kvm_pvm): spin until power-off, with
	 * a progress count the busy mode watches (no PAUSE there: busy). */
	for (;;) {
		ap_spins[idx]++;
		if (!G.cfg.busy)
			cpu_relax();
	}
}

static void smp_mem_report(void)
{
	uint64_t t0 = rdtsc(), bad = 0;
	unsigned n = ap_alive, done = 0;

	if (!G.slices_ok) {
		report("smp-mem", 0, "no RAM for %u slices of %lu bytes", n,
		       G.slice_size);
		return;
	}
	while (rdtsc() - t0 < G.cfg.smp_timeout_ms * G.tsc_khz) {
		done = 0;
		for (unsigned i = 0; i < n; i++)
			done += __atomic_load_n(&ap_res[i].done,
						__ATOMIC_ACQUIRE);
		if (done == n)
			break;
		cpu_relax();
	}
	for (unsigned i = 0; i < n; i++)
		bad += ap_res[i].bad;
	report("smp-mem", done == n && n > 0 && !bad,
	       "aps=%u done=%u bytes_each=%lu bad=%lu", n, done, G.slice_size,
	       bad);
}

static void echo_test(void)
{
	char line[128];
	unsigned len = 0, lines = 0, bytes = 0;

	con_printf("KHYVE-ECHO ready\n");
	for (;;) {
		int c = con_getc_nonblock();

		if (c < 0) {
			cpu_relax();
			continue;
		}
		if (c != '\r' && c != '\n') {
			if (len + 1 < sizeof(line))
				line[len++] = (char)c;
			continue;
		}
		if (!len)
			continue; /* the other half of "\r\n" */
		line[len] = '\0';
		con_printf("KHYVE-ECHO got %s\n", line);
		if (!g_strncmp(line, "quit", 5))
			break;
		lines++;
		bytes += len;
		len = 0;
	}
	/* What arrived before "quit": the host knows what it typed. */
	report("echo", lines > 0, "lines=%u bytes=%u", lines, bytes);
}

/* zero_every=N: generations that are a multiple of N zero their pages. */
static int cnt_zero(uint32_t gen)
{
	return G.cfg.zero_every && gen && gen % G.cfg.zero_every == 0;
}

/*
 * Counter region page @p holds the pattern of generation cnt_gen[p], or
 * zeros (cnt_zero): pages that had data and become zero, for snapshots.
 */
static void cnt_fill(uint64_t base, unsigned p, uint32_t gen)
{
	uint64_t s = base + (uint64_t)p * 4096;

	cnt_gen[p] = gen;
	if (cnt_zero(gen))
		for (uint64_t a = s; a < s + 4096; a += 8)
			*(volatile uint64_t *)a = 0;
	else
		pat_fill(s, s + 4096, G.cfg.seed ^ (gen * GEN_MUL));
}

static void zero_check(uint64_t s, uint64_t e, struct pat_result *r)
{
	for (uint64_t a = s; a < e; a += 8)
		if (*(volatile uint64_t *)a && !r->bad++)
			r->first_bad = a;
	r->bytes += e - s;
}

static int cnt_check(uint64_t base, unsigned pages, uint64_t n)
{
	struct pat_result r = {0};
	unsigned bad_page = 0;

	for (unsigned p = 0; p < pages; p++) {
		uint64_t s = base + (uint64_t)p * 4096, before = r.bad;

		if (cnt_zero(cnt_gen[p]))
			zero_check(s, s + 4096, &r);
		else
			pat_check(s, s + 4096,
				  G.cfg.seed ^ (cnt_gen[p] * GEN_MUL), &r);
		if (r.bad && !before)
			bad_page = p;
	}
	if (!r.bad && G.cfg.zero_every) {
		/* The region's sum: the same at tick n in every copy. */
		con_printf("KHYVE-MEMCHECK ok %lu sum=0x%lx\n", n, r.sum);
		return 0;
	}
	if (!r.bad) {
		con_printf("KHYVE-MEMCHECK ok %lu\n", n);
		return 0;
	}
	con_printf("KHYVE-MEMCHECK bad %lu qwords=%lu addr=0x%lx page=%u "
		   "gen=%u\n",
		   n, r.bad, r.first_bad, bad_page, cnt_gen[bad_page]);
	return -1;
}

/*
 * Prints a tick every interval_ms of TSC time. All state is in guest RAM,
 * so after a snapshot restore it continues from the same n. A TSC that
 * jumps ahead (pause, restore) gives one tick, not a burst; one that goes
 * back (restore on another host) restarts the deadline instead of hanging.
 * With "gaps" each tick also says the longest time between two TSC reads
 * of the loop since the previous tick: at least as long as the guest was
 * stopped meanwhile (a pause of its vCPU, or the host not running it), and
 * at least as long as the previous tick's printing and memcheck took.
 */
static void counter_run(void)
{
	uint64_t base = (G.usable_lo + 4095) & ~4095ULL;
	uint64_t size = (uint64_t)G.cfg.mem_kb * 1024;
	uint64_t interval = G.cfg.interval_ms * G.tsc_khz;
	uint64_t n = 0, checks = 0, failures = 0, now, last, next, gap = 0;
	int disk;
	unsigned pages = (unsigned)(size / 4096);

	if (pages > CNT_MAX_PAGES)
		pages = CNT_MAX_PAGES;
	/* counter_high=1: the region ends at the top of RAM (above 4 GiB in
	 * a large guest), so snapshots are judged on high memory too. */
	if (G.cfg.counter_high && pages)
		base = (gmm_ram_top(G.mm, G.mm_n) - (uint64_t)pages * 4096) &
		       ~4095ULL;
	if (pages && !gmm_is_ram(G.mm, G.mm_n, base, (uint64_t)pages * 4096)) {
		report("counter-mem", 0, "no RAM for %u pages at 0x%lx", pages,
		       base);
		pages = 0;
	}
	for (unsigned p = 0; p < pages; p++)
		cnt_fill(base, p, 0);
	if (G.cfg.genid)
		genid_setup();
	if (G.cfg.disk_blocks && cdisk_start())
		failures++;
	disk = G.cfg.disk_blocks && !failures;
	con_printf("KHYVE-INFO counter interval_ms=%u tsc_khz=%lu tsc_src=%s "
		   "mem_pages=%u check_every=%u mem_base=0x%lx\n",
		   G.cfg.interval_ms, G.tsc_khz, G.tsc_src, pages,
		   G.cfg.check_every, base);
	last = rdtsc();
	next = last + interval;
	for (;;) {
		now = rdtsc();
		if (now < last)
			next = now + interval;
		else if (now - last > gap)
			gap = now - last;
		last = now;
		if ((int64_t)(now - next) < 0) {
			cpu_relax();
			continue;
		}
		n++;
		next += interval;
		if ((int64_t)(now - next) >= 0)
			next = now + interval;
		for (unsigned k = 0; k < G.cfg.dirty_pages && pages; k++)
			cnt_fill(
				base,
				(unsigned)((n * G.cfg.dirty_pages + k) % pages),
				(uint32_t)n);
		if (disk)
			failures += cdisk_tick(n) < 0;
		if (G.cfg.gaps)
			con_printf("KHYVE-COUNTER %lu tsc=%lu gap_us=%lu\n", n,
				   now, gap * 1000 / G.tsc_khz);
		else
			con_printf("KHYVE-COUNTER %lu tsc=%lu\n", n, now);
		gap = 0;
		if (G.cfg.clock)
			clock_line(n);
		if (G.cfg.genid)
			genid_line(n);
		if (G.cfg.hostile_ms)
			hostile_line(n);
		if (pages && n % G.cfg.check_every == 0) {
			checks++;
			failures += cnt_check(base, pages, n) < 0;
		}
		if (disk && n % G.cfg.check_every == 0)
			failures += cdisk_check(n) < 0;
		if (G.cfg.count && n >= G.cfg.count)
			break;
	}
	report("counter", !failures, "ticks=%lu memchecks=%lu bad=%lu", n,
	       checks, failures);
}

/*
 * touch_mb=N: fill the top N MiB of RAM with the (incompressible, never
 * zero) pattern and go on, so snapshot benchmarks have N MiB of real data
 * to save. Not checked: the mem test does that.
 */
static void touch_mem(void)
{
	uint64_t t0 = rdtsc(), ms;

	mem_walk(G.cfg.touch_zip ? 2 : 0, G.cfg.touch_mb,
		 G.cfg.seed ^ 0x746f756368ULL, NULL);
	ms = (rdtsc() - t0) / (G.tsc_khz ? G.tsc_khz : 1);
	con_printf("KHYVE-INFO touch mb=%lu ms=%lu\n", G.cfg.touch_mb, ms);
}

/* The master 8259's IRR bit 1 (IRQ 1 latched; the PIC is masked). */
static int pic_irr1(void)
{
	outb(0x20, 0x0a); /* OCW3: read IRR */
	return (inb(0x20) >> 1) & 1;
}

/*
 * Track Ctrl and Alt in scan code set @set (1, or 2 untranslated);
 * returns 1 when Delete is made with both held.
 */
static int kbd_decode(int set, uint8_t b, int *e0, int *brk, int *ctrl,
		      int *alt)
{
	int up, code, del = 0;

	if (b == 0xe0) {
		*e0 = 1;
		return 0;
	}
	if (set == 2 && b == 0xf0) {
		*brk = 1;
		return 0;
	}
	up = set == 1 ? b >> 7 : *brk;
	code = set == 1 ? b & 0x7f : b;
	if (code == (set == 1 ? 0x1d : 0x14))
		*ctrl = !up;
	else if (code == (set == 1 ? 0x38 : 0x11))
		*alt = !up;
	else if (code == (set == 1 ? 0x53 : 0x71) && !up)
		del = *ctrl && *alt;
	*e0 = 0;
	*brk = 0;
	return del;
}

/*
 * "kbd": the i8042 keyboard read as a driver reads it (status 0x64, data
 * 0x60), one "KHYVE-KBD byte=0x.. irq1=N" line a byte, N the 8259's IRQ 1
 * request bit seen with it. Ctrl+Alt+Del resets the machine through the
 * i8042, as Linux does with reboot=k. kbd_xlate=0: translation off first,
 * so the keyboard's set 2 arrives untranslated.
 */
static void kbd_run(void)
{
	int set = G.cfg.kbd_xlate ? 1 : 2, e0 = 0, brk = 0, ctrl = 0, alt = 0;

	if (!G.cfg.kbd_xlate) {
		outb(0x64, 0x60); /* write the command byte: */
		outb(0x60, 0x05); /* KBDINT and SYS, no translation */
	}
	while (inb(0x64) & 1)
		inb(0x60);
	con_printf("KHYVE-KBD ready set=%d irq1=%d\n", set, pic_irr1());
	for (;;) {
		uint8_t st = inb(0x64), b;
		int irq;

		if (!(st & 1)) {
			delay_us(1000);
			continue;
		}
		irq = pic_irr1();
		b = inb(0x60);
		if (st & 0x20)
			continue; /* aux (mouse) data: none is expected */
		con_printf("KHYVE-KBD byte=0x%02x irq1=%d\n", b, irq);
		if (kbd_decode(set, b, &e0, &brk, &ctrl, &alt)) {
			con_printf("KHYVE-KBD ctrl-alt-del: reset\n");
			outb(0x64, 0xfe);
			delay_us(100000);
			report("kbd-reset", 0, "still running after the reset");
			guest_exit(EXIT_POWEROFF);
		}
	}
}

void guest_exit(int mode)
{
	con_printf("KHYVE-GUEST done pass=%lu fail=%lu\n", n_pass, n_fail);
	if (mode == EXIT_REBOOT) {
		con_printf("KHYVE-INFO exit reboot\n");
		sys_reboot();
		sys_poweroff(7); /* QEMU without a reset device: status 15 */
	} else {
		sys_poweroff(n_fail ? 1 : 0);
	}
	for (;;)
		cpu_relax();
}

void umain(unsigned long arg)
{
	(void)arg;
	if (G.cfg.tests & T_SERIAL)
		serial_test();
	if (G.cfg.tests & T_MEM)
		mem_test();
	if ((G.cfg.tests & T_SMP) && G.aps_started)
		smp_mem_report();
	if (G.cfg.tests & T_VBLK)
		vblk_test();
	if (G.cfg.tests & T_VRNG)
		vrng_test();
	if (G.cfg.tests & T_VCON)
		vcon_test();
	if (G.cfg.tests & T_VSTREAM)
		vstream_test();
	if (G.cfg.tests & T_VNET)
		vnet_test();
	if (G.cfg.tests & T_ECHO)
		echo_test();
	if (G.cfg.touch_mb)
		touch_mem();
	if (G.cfg.hostile_ms)
		hostile_setup();
	if (G.cfg.counter)
		counter_run();
	if (G.cfg.kbd)
		kbd_run();
	guest_exit(G.cfg.exit_mode);
}
