/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Pure helpers of the test guest: formatting, the memory pattern, command
 * line, PVH memory map and ACPI MADT parsing. No hardware access, so the
 * same file is built into the guest and into a host unit test
 * (tests/unit/test_guests.c).
 */
#ifndef GUEST_GUTIL_H
#define GUEST_GUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define G_EINVAL 22
#define G_ENOENT 2
#define G_ERANGE 34

#define GUEST_MAX_CPUS 32

/* Test selection bits for "tests=". */
#define T_SERIAL 0x01u
#define T_MEM	 0x02u
#define T_TIMER	 0x04u
#define T_SMP	 0x08u
#define T_ECHO	 0x10u
#define T_VBLK	 0x20u /* virtio-blk driver test (and benchmark) */
#define T_VRNG	 0x40u /* virtio-rng driver test */
#define T_VSTREAM 0x80u /* virtio-blk write stream, many requests in flight */
#define T_VCON	 0x100u /* virtio-console driver test */
#define T_VNET	 0x200u /* virtio-net driver test (and benchmark) */
#define T_ALL	 (T_SERIAL | T_MEM | T_TIMER | T_SMP)

enum exit_mode {
	EXIT_POWEROFF = 0,
	EXIT_REBOOT = 1,
	EXIT_TRIPLEFAULT = 2,
};

struct gcfg {
	uint32_t tests;		 /* T_* bits */
	int counter;		 /* "counter" word seen */
	int busy;		 /* "busy": BSP timer loop, APs spin on work */
	int clock;		 /* "clock": kvmclock + RTC lines with the counter */
	int gaps;		 /* "gaps": counter ticks say how long it was stopped */
	int genid;		 /* "genid": counter ticks report identity lines */
	int kbd;		 /* "kbd": print i8042 keyboard bytes */
	int exit_mode;		 /* enum exit_mode */
	int explicit;		 /* tests=, counter or exit= given */
	uint32_t interval_ms;	 /* counter tick */
	uint32_t check_every;	 /* counter ticks between memchecks */
	uint64_t count;		 /* counter ticks before exit, 0 = never */
	uint32_t mem_kb;	 /* counter memcheck region */
	uint32_t dirty_pages;	 /* counter pages rewritten per tick */
	uint32_t counter_high;	 /* counter region at the top of RAM */
	uint32_t zero_every;	 /* counter gens that zero their pages */
	uint32_t disk_blocks;	 /* counter: 4 KiB disk blocks written, checked */
	uint32_t kbd_xlate;	 /* kbd: controller translation (1) or set 2 */
	uint64_t mem_limit_mb;	 /* mem test cap, 0 = all RAM */
	uint64_t touch_mb;	 /* MiB to fill before the counter, 0 = none */
	uint32_t touch_zip;	 /* touch with a compressible fill */
	uint64_t seed;		 /* pattern seed */
	uint32_t timer_ms;	 /* timer test interval */
	uint32_t smp_timeout_ms; /* AP bring-up / slice timeout */
	uint32_t smp_slice_kb;	 /* per-AP user-mode pattern slice */
	uint32_t tsc_khz;	 /* override TSC frequency, 0 = detect */
	uint32_t vblk_sectors;	 /* vblk: sectors read, then written */
	uint32_t vblk_bench_mb;	 /* vblk: sequential benchmark size, 0 = none */
	uint32_t vblk_qd;	 /* vblk benchmark: requests in flight */
	uint32_t vblk_bs_kb;	 /* vblk benchmark: sequential request size */
	uint32_t vblk_rand_ms;	 /* vblk benchmark: 4K random-read duration */
	uint32_t vstream_n;	 /* vstream: 4 KiB writes in all */
	uint32_t vstream_qd;	 /* vstream: requests kept in flight */
	uint32_t vstream_read;	 /* vstream: read the stamps back instead */
	uint32_t vstream_span;	 /* vstream reads: blocks, k reads k % span */
	uint32_t vnet_src;	 /* vnet: guest IPv4 address (host order) */
	uint32_t vnet_dst;	 /* vnet: host IPv4 address frames go to */
	uint32_t vnet_dport;	 /* vnet: host UDP port */
	uint32_t vnet_port;	 /* vnet: guest UDP port (source, echo) */
	uint32_t vnet_n;	 /* vnet: frames in the sequenced burst */
	uint32_t vnet_len;	 /* vnet: burst UDP payload bytes */
	uint32_t vnet_gap_us;	 /* vnet: pause between burst frames */
	uint32_t vnet_echo_ms;	 /* vnet: echo service time, 0 = none */
	uint32_t vnet_bench_mb;	 /* vnet: MiB sent by the benchmark, 0 = none */
	uint32_t vnet_qd;	 /* vnet: tx frames kept in flight */
	uint32_t hostile_ms;	 /* AP 1 fuzzes the devices this long, 0 = off */
	uint64_t hostile_seed;	 /* its PRNG seed, 0 = from the TSC */
	uint32_t hostile_mask;	 /* targets fuzzed (bit per class), 0 = all */
	int nbad;		 /* unknown or malformed tokens */
	char bad[40];		 /* the first of them */
};

/* PVH (xen/include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

#define MM_RAM 1
struct mm_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

struct madt_info {
	unsigned ncpus; /* enabled local APICs */
	uint32_t apic_ids[GUEST_MAX_CPUS];
	uint32_t lapic_addr;
	uint32_t ioapic_addr; /* first I/O APIC, 0 if none */
	uint32_t ioapic_gsi_base;
	int irq0_gsi; /* from an interrupt source override, -1 if none */
};

/*
 * Translate a guest-physical range to a pointer, or NULL when it is not
 * readable. The guest identity-maps; the unit test maps into a buffer.
 */
typedef const void *(*phys_fn)(uint64_t pa, uint64_t len, void *ctx);

int g_vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
int g_snprintf(char *buf, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
size_t g_strlen(const char *s);
int g_strncmp(const char *a, const char *b, size_t n);

/* Address-derived 64-bit pattern (a splitmix64 finaliser of addr ^ seed). */
uint64_t g_pattern(uint64_t addr, uint64_t seed);

void gcfg_defaults(struct gcfg *c);
/* Parse "tests=serial,mem counter interval_ms=100 exit=reboot ...". */
int gcfg_parse(struct gcfg *c, const char *cmdline);
/* "a.b.c.d" to a host-order address; 0 or -G_EINVAL. */
int g_parse_ipv4(const char *s, size_t len, uint32_t *out);

uint64_t gmm_ram_total(const struct mm_entry *e, unsigned n);
uint64_t gmm_ram_top(const struct mm_entry *e, unsigned n);
/* 1 if [addr, addr+len) lies inside one RAM entry. */
int gmm_is_ram(const struct mm_entry *e, unsigned n, uint64_t addr,
	       uint64_t len);
/*
 * Clip RAM entry @i to [lo, hi) and 8-byte alignment; returns 1 and sets
 * start and end when something is left.
 */
int gmm_clip(const struct mm_entry *e, unsigned i, uint64_t lo, uint64_t hi,
	     uint64_t *start, uint64_t *end);

int gacpi_checksum_ok(const void *p, size_t len);
int gacpi_parse_madt(const uint8_t *madt, uint32_t len, struct madt_info *out);
/* rsdp_pa 0: scan 0xe0000-0xfffff for "RSD PTR ". */
int gacpi_find_madt(uint64_t rsdp_pa, phys_fn phys, void *ctx,
		    struct madt_info *out);
/*
 * The VM generation ID's address: the DSDT (through the FADT) holds a
 * device with _HID "VMGENCTR" whose ADDR (a Name or a Method returning a
 * Package of two integers, low and high 32 bits) gives it.
 */
int gacpi_find_vmgenid(uint64_t rsdp_pa, phys_fn phys, void *ctx,
		       uint64_t *addr);
/* The same within a DSDT already in hand (@len bytes, header included). */
int gaml_vmgenid_addr(const uint8_t *dsdt, uint32_t len, uint64_t *addr);
/* The DSDT, through the FADT, checksum checked. */
int gacpi_find_dsdt(uint64_t rsdp_pa, phys_fn phys, void *ctx,
		    const uint8_t **dsdt, uint32_t *len);
/* The GSI of the DSDT's Generic Event Device (ACPI0013), or -errno. */
int gaml_ged_gsi(const uint8_t *dsdt, uint32_t len);

#endif
