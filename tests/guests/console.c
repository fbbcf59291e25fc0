// SPDX-License-Identifier: BSD-2-Clause
/*
 * COM1 (8250, polled) console and the KHYVE-TEST reporting helpers. Runs
 * in kernel and user mode alike: user mode has IOPL=3.
 */
#include <stdarg.h>
#include "guest.h"
#include "hw.h"

#define COM1	 0x3f8
#define UART_LSR (COM1 + 5)
#define LSR_DR	 0x01
#define LSR_THRE 0x20

volatile uint64_t n_pass, n_fail;
static volatile uint32_t con_lk;

/*
 * One line at a time on COM1: the hostile mode's fuzzing vCPU scribbles
 * on the UART's registers between lines (hostile.c) while the counter
 * prints on the other one. An AP that never prints costs nothing here.
 */
void con_lock(void)
{
	while (__atomic_exchange_n(&con_lk, 1, __ATOMIC_ACQUIRE))
		cpu_relax();
}

void con_unlock(void)
{
	__atomic_store_n(&con_lk, 0, __ATOMIC_RELEASE);
}

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;

	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

void con_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts: everything polls */
	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	/* FCR untouched: toggling the FIFOs would drop early input. */
	outb(COM1 + 4, 0x03); /* DTR, RTS; OUT2 off, no IRQ */
}

void con_putc(char c)
{
	/* Bounded: a missing UART reads 0xff, a stuck one must not hang us. */
	for (unsigned i = 0; i < 1000000; i++) {
		if (inb(UART_LSR) & LSR_THRE)
			break;
		cpu_relax();
	}
	outb(COM1, (uint8_t)c);
}

int con_getc_nonblock(void)
{
	uint8_t lsr = inb(UART_LSR);

	if (lsr == 0xff || !(lsr & LSR_DR))
		return -1;
	return inb(COM1);
}

static void con_vprintf(const char *fmt, va_list ap)
{
	char buf[256];
	int n = g_vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	/* Plain "\n" line ends: the parsers need not strip "\r". */
	for (int i = 0; i < n; i++)
		con_putc(buf[i]);
}

void con_printf(const char *fmt, ...)
{
	va_list ap;

	con_lock();
	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	con_unlock();
}

static void con_nolock(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
}

void report(const char *test, int ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		n_pass++;
	else
		n_fail++;
	con_lock();
	con_nolock("KHYVE-TEST %s %s ", test, ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	con_putc('\n');
	con_unlock();
}

void delay_us(uint64_t us)
{
	uint64_t khz = G.tsc_khz ? G.tsc_khz : 1000000;
	uint64_t end = rdtsc() + us * khz / 1000;

	while ((int64_t)(rdtsc() - end) < 0)
		cpu_relax();
}

void sys_poweroff(int qemu_code)
{
	outb(0x600, 0x34); /* khyve: ACPI sleep control, SLP_TYP=5, SLP_EN */
	delay_us(20000);
	/* QEMU isa-debug-exit (validation only): exit status code*2+1. */
	outb(0xf4, (uint8_t)qemu_code);
	delay_us(20000);
}

void sys_reboot(void)
{
	outb(0xcf9, 0x06); /* reset control register: hard reset */
	delay_us(20000);
	outb(0x64, 0xfe); /* i8042 pulse reset line */
	delay_us(20000);
}
