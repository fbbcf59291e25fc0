/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * State and functions shared by the kernel-mode (kern.c) and user-mode
 * (user.c) halves of the test guest. Everything lives in identity-mapped,
 * user-accessible memory, so user code reads what kernel code recorded.
 */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include <stdint.h>
#include "gutil.h"
#include "layout.h"

#define GUEST_NAME "testguest"

#define MAX_MEMMAP   128
#define MAX_MAP_GIB  64 /* identity map covers [0, 64 GiB) at most */
#define AP_USTACK_SZ 8192

/* What the kernel phase found and did, for the user phase to report on. */
struct gstate {
	struct gcfg cfg;
	int cfg_err;
	uint32_t start_magic, start_version;
	char cmdline[512];
	struct mm_entry mm[MAX_MEMMAP];
	unsigned mm_n;
	uint64_t rsdp_pa;
	uint64_t map_top;   /* end of the identity map */
	uint64_t usable_lo; /* first byte the memory tests may overwrite */
	uint64_t tsc_khz;
	const char *tsc_src;
	struct madt_info madt;
	int madt_err;
	uint32_t bsp_apic_id;
	/* smp */
	unsigned aps_started; /* APs sent INIT-SIPI-SIPI */
	uint64_t slice_base, slice_size;
	int slices_ok; /* slice area is RAM */
};

struct ap_result {
	volatile uint32_t apic_id;
	volatile uint32_t done; /* 1: slice checked */
	volatile uint64_t sum;
	volatile uint64_t bad; /* mismatching qwords */
};

extern struct gstate G;
extern struct ap_result ap_res[GUEST_MAX_CPUS];
extern volatile uint32_t ap_alive;
extern volatile uint32_t ap_ticket;
extern volatile uint64_t n_pass, n_fail;

/* console.c (both modes) */
void con_init(void);
void con_putc(char c);
void con_lock(void); /* a whole line; con_printf and report take it */
void con_unlock(void);
int con_getc_nonblock(void);
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void report(const char *test, int ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void delay_us(uint64_t us);
/* Port writes that end the VM; they return only if nothing happened. */
void sys_poweroff(int qemu_code);
void sys_reboot(void);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

/* boot.S */
void enter_user(void (*fn)(unsigned long), void *ustack_top, unsigned long arg)
	__attribute__((noreturn));
void triple_fault(void) __attribute__((noreturn));
extern const uint8_t tramp_start[], tramp_end[];
extern uint64_t pdpt[512];
extern uint64_t gdt[];
extern const uint64_t exc_vectors[32];
extern void irq_pit(void), irq_lapic(void), irq_spurious(void), irq_other(void);
extern volatile uint64_t pit_ticks, lapic_ticks, other_irqs;
extern volatile uint64_t lapic_eoi_ptr;
extern uint8_t _image_end[];

/* kern.c */
void kmain(uint32_t start_info_pa) __attribute__((noreturn));
void ap_main(uint32_t idx) __attribute__((noreturn));
struct exc_frame;
void exc_handler(struct exc_frame *f) __attribute__((noreturn));

/* user.c */
void umain(unsigned long arg) __attribute__((noreturn));
void ap_user(unsigned long idx) __attribute__((noreturn));
void guest_exit(int mode) __attribute__((noreturn));

/* virtio.c (user mode) */
void vblk_test(void);
void vrng_test(void);
void vcon_test(void);
void vnet_test(void);

/* hostile.c (user mode): "hostile_ms=N", see README.md. */
void hostile_setup(void);      /* BSP, before the counter */
void hostile_ap(unsigned idx); /* AP 0: fuzz, then return */
void hostile_line(uint64_t n); /* BSP: a line per counter tick */

#endif
