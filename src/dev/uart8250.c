/* SPDX-License-Identifier: BSD-2-Clause */
/* 16550A UART model. Register semantics follow the TI/NS PC16550D sheet. */
#include "uart8250.h"

#include <string.h>

#include "chardev.h"
#include "common.h"
#include "log.h"

/* Register offsets */
#define UART_RBR 0 /* DLAB=0 read */
#define UART_THR 0 /* DLAB=0 write */
#define UART_DLL 0 /* DLAB=1 */
#define UART_IER 1 /* DLAB=0 */
#define UART_DLM 1 /* DLAB=1 */
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI	 0x01 /* received data available */
#define IER_THRI 0x02 /* THR empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MSI	 0x08 /* modem status */
#define IER_MASK 0x0f

#define IIR_NO_INT  0x01
#define IIR_MSI	    0x00
#define IIR_THRI    0x02
#define IIR_RDI	    0x04
#define IIR_RLSI    0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE    0x01
#define FCR_CLEAR_RX  0x02
#define FCR_CLEAR_TX  0x04
#define FCR_DMA	      0x08
#define FCR_TRIG_MASK 0xc0
#define FCR_KEEP      (FCR_ENABLE | FCR_DMA | FCR_TRIG_MASK)

#define LCR_DLAB 0x80

#define MCR_DTR	 0x01
#define MCR_RTS	 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR	     0x01
#define LSR_OE	     0x02
#define LSR_PE	     0x04
#define LSR_FE	     0x08
#define LSR_BI	     0x10
#define LSR_THRE     0x20
#define LSR_TEMT     0x40
#define LSR_ERR_MASK (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS  0x01
#define MSR_DDSR  0x02
#define MSR_TERI  0x04
#define MSR_DDCD  0x08
#define MSR_DELTA 0x0f
#define MSR_CTS	  0x10
#define MSR_DSR	  0x20
#define MSR_RI	  0x40
#define MSR_DCD	  0x80

/* A host console looks like a connected modem. */
#define MSR_IDLE (MSR_DCD | MSR_DSR | MSR_CTS)

static const struct snap_field uart8250_fields[] = {
	SNAP_U8_ARRAY(struct uart8250_state, rx_fifo, UART8250_FIFO_SIZE, 1),
	SNAP_U8_MAX(struct uart8250_state, rx_head, UART8250_FIFO_SIZE - 1, 1),
	SNAP_U8_MAX(struct uart8250_state, rx_len, UART8250_FIFO_SIZE, 1),
	SNAP_U8_MAX(struct uart8250_state, ier, IER_MASK, 1),
	SNAP_U8_MAX(struct uart8250_state, fcr, FCR_KEEP, 1),
	SNAP_U8(struct uart8250_state, lcr, 1),
	SNAP_U8_MAX(struct uart8250_state, mcr, MCR_MASK, 1),
	SNAP_U8_MAX(struct uart8250_state, lsr_err, LSR_ERR_MASK, 1),
	SNAP_U8(struct uart8250_state, msr, 1),
	SNAP_U8(struct uart8250_state, scr, 1),
	SNAP_U8(struct uart8250_state, dll, 1),
	SNAP_U8(struct uart8250_state, dlm, 1),
	SNAP_BOOL(struct uart8250_state, thr_ipending, 1),
};

const struct snap_desc uart8250_snap_desc =
	SNAP_DESC("uart8250", 1, 1, struct uart8250_state, uart8250_fields);

static bool fifo_on(const struct uart8250_state *s)
{
	return s->fcr & FCR_ENABLE;
}

static unsigned rx_capacity(const struct uart8250_state *s)
{
	return fifo_on(s) ? UART8250_FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct uart8250_state *s)
{
	static const uint8_t levels[4] = {1, 4, 8, 14};

	return fifo_on(s) ? levels[s->fcr >> 6] : 1;
}

/* Highest-priority pending source, as IIR bits 0-3. */
static uint8_t pending_iir(const struct uart8250_state *s)
{
	if ((s->ier & IER_RLSI) && (s->lsr_err & LSR_ERR_MASK))
		return IIR_RLSI;
	if ((s->ier & IER_RDI) && s->rx_len)
		return s->rx_len >= rx_trigger(s) ? IIR_RDI : IIR_TIMEOUT;
	if ((s->ier & IER_THRI) && s->thr_ipending)
		return IIR_THRI;
	if ((s->ier & IER_MSI) && (s->msr & MSR_DELTA))
		return IIR_MSI;
	return IIR_NO_INT;
}

/*
 * On PCs the IRQ pin goes through OUT2; in loopback the external OUT2 pin
 * is forced inactive, so no interrupt reaches the PIC then either.
 */
static void update_irq(struct uart8250 *u, bool force)
{
	const struct uart8250_state *s = &u->st;
	int level = pending_iir(s) != IIR_NO_INT && (s->mcr & MCR_OUT2) &&
		    !(s->mcr & MCR_LOOP);

	if (force || level != u->irq_level) {
		u->irq_level = level;
		irq_line_set(&u->irq, level);
	}
}

static void rx_clear(struct uart8250_state *s)
{
	s->rx_head = 0;
	s->rx_len = 0;
}

static bool rx_push(struct uart8250 *u, uint8_t b)
{
	struct uart8250_state *s = &u->st;

	if (s->rx_len >= rx_capacity(s)) {
		/* The shift register overwrites: byte lost, OE latched. */
		s->lsr_err |= LSR_OE;
		u->overruns++;
		return false;
	}
	s->rx_fifo[(s->rx_head + s->rx_len) % UART8250_FIFO_SIZE] = b;
	s->rx_len++;
	return true;
}

static uint8_t rx_pop(struct uart8250_state *s)
{
	uint8_t b;

	if (!s->rx_len)
		return 0;
	b = s->rx_fifo[s->rx_head];
	s->rx_head = (s->rx_head + 1) % UART8250_FIFO_SIZE;
	s->rx_len--;
	return b;
}

static size_t rx_room_locked(const struct uart8250_state *s)
{
	if (s->mcr & MCR_LOOP)
		return 0;
	return rx_capacity(s) - MIN(s->rx_len, rx_capacity(s));
}

/* Modem inputs implied by MCR, with delta bits for what changed. */
static void update_msr(struct uart8250_state *s)
{
	uint8_t old = s->msr, now;

	if (s->mcr & MCR_LOOP) {
		now = ((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
		      ((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
		      ((s->mcr & MCR_OUT1) ? MSR_RI : 0) |
		      ((s->mcr & MCR_OUT2) ? MSR_DCD : 0);
	} else {
		now = MSR_IDLE;
	}
	s->msr = now | (old & MSR_DELTA);
	if ((old ^ now) & MSR_CTS)
		s->msr |= MSR_DCTS;
	if ((old ^ now) & MSR_DSR)
		s->msr |= MSR_DDSR;
	if ((old & MSR_RI) && !(now & MSR_RI))
		s->msr |= MSR_TERI;
	if ((old ^ now) & MSR_DCD)
		s->msr |= MSR_DDCD;
}

static void transmit(struct uart8250 *u, uint8_t b)
{
	struct uart8250_state *s = &u->st;

	s->thr_ipending = 0;
	if (s->mcr & MCR_LOOP) {
		rx_push(u, b);
	} else {
		if (u->out)
			chardev_write(u->out, &b, 1);
		u->tx_bytes++;
	}
	/* Sent at once: THR is empty again and THRE re-arms. */
	s->thr_ipending = 1;
}

static uint8_t uart_read(struct uart8250 *u, unsigned off)
{
	struct uart8250_state *s = &u->st;
	uint8_t v;

	switch (off) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		return rx_pop(s);
	case UART_IER:
		if (s->lcr & LCR_DLAB)
			return s->dlm;
		return s->ier;
	case UART_IIR:
		v = pending_iir(s);
		/* Reading IIR while it reports THRE acknowledges it. */
		if (v == IIR_THRI)
			s->thr_ipending = 0;
		return v | (fifo_on(s) ? IIR_FIFO_ON : 0);
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		v = (s->lsr_err & LSR_ERR_MASK) | LSR_THRE | LSR_TEMT;
		if (s->rx_len)
			v |= LSR_DR;
		s->lsr_err = 0;
		return v;
	case UART_MSR:
		v = s->msr;
		s->msr &= (uint8_t)~MSR_DELTA;
		return v;
	case UART_SCR:
		return s->scr;
	}
	return 0xff;
}

static void uart_write(struct uart8250 *u, unsigned off, uint8_t v)
{
	struct uart8250_state *s = &u->st;

	switch (off) {
	case UART_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			transmit(u, v);
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* Enabling THRI with THR empty raises it, as on a 16550. */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thr_ipending = 1;
		s->ier = v & IER_MASK;
		break;
	case UART_FCR:
		/* Toggling the enable bit resets both FIFOs. */
		if ((v ^ s->fcr) & FCR_ENABLE)
			rx_clear(s);
		if (!(v & FCR_ENABLE)) {
			s->fcr = 0;
			break;
		}
		if (v & FCR_CLEAR_RX)
			rx_clear(s);
		/* The TX FIFO is always empty; nothing to reset there. */
		s->fcr = v & FCR_KEEP;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & MCR_MASK;
		update_msr(s);
		break;
	case UART_LSR:
	case UART_MSR:
		/* Factory-test writes on real parts; ignored. */
		break;
	case UART_SCR:
		s->scr = v;
		break;
	}
}

int uart8250_io(void *opaque, uint64_t offset, void *data, unsigned size,
		bool is_write)
{
	struct uart8250 *u = opaque;
	uint8_t *p = data;
	bool notify = false;
	uart8250_rx_ready_fn cb;
	void *cb_opaque;

	if (!u || !data || !size || size > 8)
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	/* Wider accesses act like consecutive byte accesses, as on ISA. */
	for (unsigned i = 0; i < size; i++) {
		uint64_t off = offset + i;

		if (off >= UART8250_NR_PORTS) {
			if (!u->warned) {
				log_warn("uart8250: access beyond the 8 ports "
					 "(offset %#llx); ignored",
					 (unsigned long long)off);
				u->warned = true;
			}
			if (!is_write)
				p[i] = 0xff;
			continue;
		}
		if (is_write)
			uart_write(u, (unsigned)off, p[i]);
		else
			p[i] = uart_read(u, (unsigned)off);
	}
	update_irq(u, false);
	if (u->rx_blocked && rx_room_locked(&u->st)) {
		u->rx_blocked = false;
		notify = true;
	}
	cb = u->rx_ready;
	cb_opaque = u->rx_ready_opaque;
	pthread_mutex_unlock(&u->lock);
	/* Outside the lock: the callback may call uart8250_receive(). */
	if (notify && cb)
		cb(cb_opaque);
	return 0;
}

size_t uart8250_receive(struct uart8250 *u, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&u->lock);
	n = MIN(len, rx_room_locked(&u->st));
	for (size_t i = 0; i < n; i++)
		rx_push(u, buf[i]);
	if (n < len)
		u->rx_blocked = true;
	u->rx_bytes += n;
	update_irq(u, false);
	pthread_mutex_unlock(&u->lock);
	return n;
}

size_t uart8250_rx_room(struct uart8250 *u)
{
	size_t n;

	pthread_mutex_lock(&u->lock);
	n = rx_room_locked(&u->st);
	/* A caller that found no room will want to hear when there is. */
	if (!n)
		u->rx_blocked = true;
	pthread_mutex_unlock(&u->lock);
	return n;
}

void uart8250_set_rx_ready_cb(struct uart8250 *u, uart8250_rx_ready_fn fn,
			      void *opaque)
{
	pthread_mutex_lock(&u->lock);
	u->rx_ready = fn;
	u->rx_ready_opaque = opaque;
	pthread_mutex_unlock(&u->lock);
}

unsigned uart8250_baud(struct uart8250 *u)
{
	unsigned div;

	pthread_mutex_lock(&u->lock);
	div = u->st.dll | (unsigned)u->st.dlm << 8;
	pthread_mutex_unlock(&u->lock);
	return div ? 115200 / div : 0;
}

int uart8250_init(struct uart8250 *u, const struct irq_line *irq,
		  struct chardev *out)
{
	int ret;

	if (!u)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	ret = pthread_mutex_init(&u->lock, NULL);
	if (ret)
		return -ret;
	if (irq)
		u->irq = *irq;
	u->out = out;
	u->st.msr = MSR_IDLE;
	u->st.dll = 12; /* 9600 baud, the usual firmware default */
	/* The line is low at power-on; only changes are driven. */
	u->irq_level = 0;
	return 0;
}

void uart8250_destroy(struct uart8250 *u)
{
	pthread_mutex_destroy(&u->lock);
}

void uart8250_state_save(struct uart8250 *u, struct uart8250_state *st)
{
	pthread_mutex_lock(&u->lock);
	*st = u->st;
	pthread_mutex_unlock(&u->lock);
}

int uart8250_state_check(const struct uart8250_state *st)
{
	if (st->rx_head >= UART8250_FIFO_SIZE ||
	    st->rx_len > UART8250_FIFO_SIZE)
		return -EINVAL;
	if (st->ier & ~IER_MASK || st->mcr & ~MCR_MASK || st->fcr & ~FCR_KEEP ||
	    st->lsr_err & ~LSR_ERR_MASK || st->thr_ipending > 1)
		return -EINVAL;
	/* With FIFOs off only the holding register exists. */
	if (!(st->fcr & FCR_ENABLE) && st->rx_len > 1)
		return -EINVAL;
	return 0;
}

int uart8250_state_apply(struct uart8250 *u, const struct uart8250_state *st)
{
	int ret = uart8250_state_check(st);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&u->lock);
	u->st = *st;
	/* The I/O thread may have been holding input back: let it retry. */
	u->rx_blocked = true;
	update_irq(u, true);
	pthread_mutex_unlock(&u->lock);
	return 0;
}
