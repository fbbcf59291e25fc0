/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * 16550A UART (COM1: ports 0x3f8-0x3ff, IRQ 4).
 *
 * The VMM registers uart8250_io() for UART8250_NR_PORTS ports. Guest output
 * goes to a chardev; guest input is pushed by the I/O thread with
 * uart8250_receive(), which takes only what fits (flow control): keep the
 * rest and retry when the rx-ready callback fires or uart8250_rx_room() > 0.
 *
 * Transmission is instantaneous: THR bytes go straight through the TX FIFO
 * to the chardev (which never blocks for long), so THRE/TEMT read back set
 * and the THRE interrupt re-arms after every write. The RX side has a real
 * 16-byte FIFO with trigger levels; the character-timeout interrupt is
 * approximated as "pending while the FIFO holds fewer bytes than the
 * trigger level", since input arrives in bursts and the line is idle in
 * between.
 */
#ifndef KHYVE_UART8250_H
#define KHYVE_UART8250_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irq.h"
#include "snap_desc.h"

struct chardev;

#define UART8250_COM1_BASE 0x3f8
#define UART8250_COM1_IRQ  4
#define UART8250_NR_PORTS  8
#define UART8250_FIFO_SIZE 16

/* Everything a snapshot needs; no padding (every byte is described). */
struct uart8250_state {
	uint8_t rx_fifo[UART8250_FIFO_SIZE];
	uint8_t rx_head; /* index of the oldest byte */
	uint8_t rx_len;	 /* bytes in the FIFO (1 max with FIFOs off) */
	uint8_t ier;
	uint8_t fcr; /* last FCR value (write-only register) minus reset bits */
	uint8_t lcr;
	uint8_t mcr;
	uint8_t lsr_err; /* latched OE/PE/FE/BI bits of LSR */
	uint8_t msr;	 /* status and delta bits */
	uint8_t scr;
	uint8_t dll;
	uint8_t dlm;
	uint8_t thr_ipending; /* THRE interrupt armed, cleared by IIR read */
};

extern const struct snap_desc uart8250_snap_desc;

typedef void (*uart8250_rx_ready_fn)(void *opaque);

struct uart8250 {
	pthread_mutex_t lock;
	struct uart8250_state st;
	struct irq_line irq;
	struct chardev *out; /* may be NULL: output discarded */
	/* Runtime only, re-derived on restore. */
	int irq_level;	 /* -1: not yet driven */
	bool rx_blocked; /* a receive() did not fit: notify on room */
	uart8250_rx_ready_fn rx_ready;
	void *rx_ready_opaque;
	uint64_t tx_bytes, rx_bytes, overruns;
	bool warned;
};

/* @irq is copied; @out may be NULL and is not owned. */
int uart8250_init(struct uart8250 *u, const struct irq_line *irq,
		  struct chardev *out);
void uart8250_destroy(struct uart8250 *u);
/* Bus handler: @opaque is the struct uart8250, @offset 0..7. */
int uart8250_io(void *opaque, uint64_t offset, void *data, unsigned size,
		bool is_write);
/*
 * Queue up to @len received bytes; returns how many were taken (0 when the
 * FIFO is full or the UART is in loopback mode).
 */
size_t uart8250_receive(struct uart8250 *u, const uint8_t *buf, size_t len);
/*
 * Bytes uart8250_receive() would accept right now. A 0 answer arms the
 * rx-ready callback just like a receive() that did not fit.
 */
size_t uart8250_rx_room(struct uart8250 *u);
/*
 * @fn is called (from the vCPU thread reading RBR, without the UART lock
 * held) once room appears after a receive() did not fit all its bytes or
 * uart8250_rx_room() returned 0. Typically it kicks the I/O thread.
 */
void uart8250_set_rx_ready_cb(struct uart8250 *u, uart8250_rx_ready_fn fn,
			      void *opaque);
/* Guest-programmed baud rate (115200 / divisor), 0 if the divisor is 0. */
unsigned uart8250_baud(struct uart8250 *u);

/* Copy the saveable state out (consistent under the lock). */
void uart8250_state_save(struct uart8250 *u, struct uart8250_state *st);
/*
 * Validate and install @st (e.g. just loaded from a snapshot), then drive
 * the IRQ line to the level the state implies. -EINVAL leaves @u unchanged.
 */
int uart8250_state_apply(struct uart8250 *u, const struct uart8250_state *st);
/* The validation alone (post-load hook for the snapshot engine). */
int uart8250_state_check(const struct uart8250_state *st);

#endif
