/* SPDX-License-Identifier: BSD-2-Clause */
/* i8042 keyboard controller + AT keyboard, no mouse. */
#include "i8042.h"

#include <errno.h>
#include <string.h>

#include "common.h"
#include "log.h"

/* Controller commands */
#define CMD_READ_CTR	0x20
#define CMD_WRITE_CTR	0x60
#define CMD_AUX_DISABLE 0xa7
#define CMD_AUX_ENABLE	0xa8
#define CMD_AUX_TEST	0xa9
#define CMD_SELF_TEST	0xaa
#define CMD_KBD_TEST	0xab
#define CMD_KBD_DISABLE 0xad
#define CMD_KBD_ENABLE	0xae
#define CMD_READ_INPUT	0xc0
#define CMD_READ_OUTP	0xd0
#define CMD_WRITE_OUTP	0xd1
#define CMD_WRITE_KBD	0xd2
#define CMD_WRITE_AUX	0xd3
#define CMD_AUX_SEND	0xd4
#define CMD_READ_TEST	0xe0
#define CMD_PULSE	0xf0 /* 0xf0-0xff: pulse output bits low */

/* Keyboard commands and replies */
#define KBD_SET_LEDS  0xed
#define KBD_ECHO      0xee
#define KBD_SCANSET   0xf0
#define KBD_GET_ID    0xf2
#define KBD_TYPEMATIC 0xf3
#define KBD_ENABLE    0xf4
#define KBD_DISABLE   0xf5
#define KBD_DEFAULTS  0xf6
#define KBD_RESEND    0xfe
#define KBD_RESET     0xff
#define KBD_ACK	      0xfa
#define KBD_NAK	      0xfe
#define KBD_BAT_OK    0xaa

#define OUTP_RESET  0x01 /* active low */
#define OUTP_A20    0x02
#define OUTP_OBF    0x10
#define OUTP_AUXOBF 0x20

static const struct snap_field i8042_fields[] = {
	SNAP_U8_ARRAY(struct i8042_state, outq, I8042_QUEUE_SIZE, 1),
	SNAP_U8_ARRAY(struct i8042_state, outq_aux, I8042_QUEUE_SIZE, 1),
	SNAP_U8_MAX(struct i8042_state, outq_head, I8042_QUEUE_SIZE - 1, 1),
	SNAP_U8_MAX(struct i8042_state, outq_len, I8042_QUEUE_SIZE, 1),
	SNAP_U8(struct i8042_state, ctr, 1),
	SNAP_U8_MAX(struct i8042_state, status, I8042_STR_SYS | I8042_STR_CMD,
		    1),
	SNAP_U8(struct i8042_state, pending_cmd, 1),
	SNAP_U8(struct i8042_state, outport, 1),
	SNAP_U8(struct i8042_state, kbd_pending, 1),
	SNAP_BOOL(struct i8042_state, kbd_scanning, 1),
	SNAP_U8_MAX(struct i8042_state, kbd_scanset, 3, 1),
	SNAP_U8_MAX(struct i8042_state, kbd_leds, 7, 1),
	SNAP_U8_MAX(struct i8042_state, kbd_typematic, 0x7f, 1),
	SNAP_U8(struct i8042_state, last_out, 1),
};

const struct snap_desc i8042_snap_desc =
	SNAP_DESC("i8042", 1, 1, struct i8042_state, i8042_fields);

static void warn_once(struct i8042 *k, const char *what, unsigned v)
{
	if (k->warned)
		return;
	k->warned = true;
	log_warn("i8042: %s %#x ignored (further oddities not logged)", what,
		 v);
}

/*
 * Drive the lines from the byte at the head of the queue. @pulse lowers a
 * line that stays high so the next byte is a fresh edge (ISA IRQs are
 * edge-triggered on the PIC).
 */
static void update_irq(struct i8042 *k, bool pulse, bool force)
{
	const struct i8042_state *s = &k->st;
	bool aux = s->outq_len && s->outq_aux[s->outq_head];
	int kbd = s->outq_len && !aux && (s->ctr & I8042_CTR_KBDINT);
	int auxl = s->outq_len && aux && (s->ctr & I8042_CTR_AUXINT);

	if (pulse && kbd && k->kbd_level) {
		irq_line_set(&k->kbd_irq, 0);
		k->kbd_level = 0;
	}
	if (pulse && auxl && k->aux_level) {
		irq_line_set(&k->aux_irq, 0);
		k->aux_level = 0;
	}
	if (force || kbd != k->kbd_level) {
		k->kbd_level = kbd;
		irq_line_set(&k->kbd_irq, kbd);
	}
	if (force || auxl != k->aux_level) {
		k->aux_level = auxl;
		irq_line_set(&k->aux_irq, auxl);
	}
}

static void queue_byte(struct i8042 *k, uint8_t v, bool aux)
{
	struct i8042_state *s = &k->st;
	unsigned pos;

	if (s->outq_len >= I8042_QUEUE_SIZE) {
		k->dropped++;
		return;
	}
	pos = (s->outq_head + s->outq_len) % I8042_QUEUE_SIZE;
	s->outq[pos] = v;
	s->outq_aux[pos] = aux;
	s->outq_len++;
}

static uint8_t read_data(struct i8042 *k, bool *pulse)
{
	struct i8042_state *s = &k->st;

	if (!s->outq_len)
		return s->last_out; /* an empty buffer reads stale */
	s->last_out = s->outq[s->outq_head];
	s->outq_head = (s->outq_head + 1) % I8042_QUEUE_SIZE;
	s->outq_len--;
	*pulse = true;
	return s->last_out;
}

static uint8_t read_status(struct i8042 *k)
{
	const struct i8042_state *s = &k->st;
	uint8_t v = (s->status & (I8042_STR_SYS | I8042_STR_CMD)) |
		    I8042_STR_UNLOCK;

	if (s->outq_len) {
		v |= I8042_STR_OBF;
		if (s->outq_aux[s->outq_head])
			v |= I8042_STR_AUXDATA;
	}
	return v;
}

static void kbd_defaults(struct i8042_state *s)
{
	s->kbd_scanning = 1;
	s->kbd_scanset = 2;
	s->kbd_leds = 0;
	s->kbd_typematic = 0x2b; /* 10.9 cps, 500 ms: the AT default */
	s->kbd_pending = 0;
}

/* A byte the guest sent to the keyboard. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	struct i8042_state *s = &k->st;
	uint8_t cmd = s->kbd_pending;

	if (cmd) {
		s->kbd_pending = 0;
		switch (cmd) {
		case KBD_SET_LEDS:
			s->kbd_leds = v & 7;
			queue_byte(k, KBD_ACK, false);
			return;
		case KBD_TYPEMATIC:
			s->kbd_typematic = v & 0x7f;
			queue_byte(k, KBD_ACK, false);
			return;
		case KBD_SCANSET:
			if (v > 3) {
				queue_byte(k, KBD_NAK, false);
				return;
			}
			queue_byte(k, KBD_ACK, false);
			if (v == 0)
				queue_byte(k, s->kbd_scanset, false);
			else
				s->kbd_scanset = v;
			return;
		}
	}
	switch (v) {
	case KBD_SET_LEDS:
	case KBD_TYPEMATIC:
	case KBD_SCANSET:
		s->kbd_pending = v;
		queue_byte(k, KBD_ACK, false);
		break;
	case KBD_ECHO:
		queue_byte(k, KBD_ECHO, false);
		break;
	case KBD_GET_ID:
		queue_byte(k, KBD_ACK, false);
		queue_byte(k, 0xab, false);
		queue_byte(k, 0x83, false);
		break;
	case KBD_ENABLE:
		s->kbd_scanning = 1;
		queue_byte(k, KBD_ACK, false);
		break;
	case KBD_DISABLE:
		kbd_defaults(s);
		s->kbd_scanning = 0;
		queue_byte(k, KBD_ACK, false);
		break;
	case KBD_DEFAULTS:
		kbd_defaults(s);
		queue_byte(k, KBD_ACK, false);
		break;
	case KBD_RESET:
		kbd_defaults(s);
		queue_byte(k, KBD_ACK, false);
		queue_byte(k, KBD_BAT_OK, false);
		break;
	case 0xf7 ... 0xfd:
	case KBD_RESEND:
		/* Set-3 key modes and resend: accepted, nothing to do. */
		queue_byte(k, KBD_ACK, false);
		break;
	default:
		queue_byte(k, KBD_NAK, false);
		break;
	}
}

/* Returns true if the guest asked for a CPU reset. */
static bool write_outport(struct i8042 *k, uint8_t v)
{
	if (!(v & OUTP_A20))
		warn_once(k, "A20 disable (A20 stays enabled)", v);
	k->st.outport = v | OUTP_A20;
	return !(v & OUTP_RESET);
}

static bool write_data(struct i8042 *k, uint8_t v)
{
	struct i8042_state *s = &k->st;
	uint8_t cmd = s->pending_cmd;

	s->status &= (uint8_t)~I8042_STR_CMD;
	if (!cmd) {
		kbd_write(k, v);
		return false;
	}
	s->pending_cmd = 0;
	switch (cmd) {
	case CMD_WRITE_CTR:
		s->ctr = v;
		s->status = (s->status & (uint8_t)~I8042_STR_SYS) |
			    (v & I8042_CTR_SYS ? I8042_STR_SYS : 0);
		break;
	case CMD_WRITE_OUTP:
		return write_outport(k, v);
	case CMD_WRITE_KBD:
		queue_byte(k, v, false);
		break;
	case CMD_WRITE_AUX:
		queue_byte(k, v, true);
		break;
	case CMD_AUX_SEND:
		/* No mouse: NAK so psmouse gives up without waiting. */
		queue_byte(k, KBD_NAK, true);
		break;
	default:
		break; /* 0x61-0x7f: internal RAM we do not keep */
	}
	return false;
}

static bool write_cmd(struct i8042 *k, uint8_t v)
{
	struct i8042_state *s = &k->st;

	s->status |= I8042_STR_CMD;
	s->pending_cmd = 0;
	if (v >= CMD_PULSE)
		return !(v & OUTP_RESET); /* bit 0 low pulses reset */
	if (v >= CMD_READ_CTR && v < CMD_WRITE_CTR) {
		queue_byte(k, v == CMD_READ_CTR ? s->ctr : 0, false);
		return false;
	}
	if (v >= CMD_WRITE_CTR && v < 0x80) {
		s->pending_cmd = v;
		return false;
	}
	switch (v) {
	case CMD_AUX_DISABLE:
		s->ctr |= I8042_CTR_AUXDIS;
		break;
	case CMD_AUX_ENABLE:
		s->ctr &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case CMD_AUX_TEST:
	case CMD_KBD_TEST:
		queue_byte(k, 0x00, false); /* no line faults */
		break;
	case CMD_SELF_TEST:
		s->status |= I8042_STR_SYS;
		queue_byte(k, 0x55, false);
		break;
	case CMD_KBD_DISABLE:
		s->ctr |= I8042_CTR_KBDDIS;
		break;
	case CMD_KBD_ENABLE:
		s->ctr &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case CMD_READ_INPUT:
		queue_byte(k, 0x80, false); /* keyboard not inhibited */
		break;
	case CMD_READ_OUTP: {
		uint8_t o = s->outport & (uint8_t) ~(OUTP_OBF | OUTP_AUXOBF);

		if (s->outq_len)
			o |= s->outq_aux[s->outq_head] ? OUTP_AUXOBF : OUTP_OBF;
		queue_byte(k, o, false);
		break;
	}
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD:
	case CMD_WRITE_AUX:
	case CMD_AUX_SEND:
		s->pending_cmd = v;
		break;
	case CMD_READ_TEST:
		queue_byte(k, 0x00, false);
		break;
	default:
		warn_once(k, "unknown command", v);
		break;
	}
	return false;
}

/* One byte access at @port (0 = data, 4 = status/command). */
static int i8042_access(struct i8042 *k, unsigned port, uint8_t *p,
			unsigned size, bool is_write)
{
	bool reset = false, pulse = false;
	i8042_reset_fn cb;
	void *cb_opaque;

	if (!p || !size || size > 8)
		return -EINVAL;
	pthread_mutex_lock(&k->lock);
	/* Only the first byte reaches the port; wider reads float high. */
	if (is_write) {
		if (port == 0)
			reset = write_data(k, p[0]);
		else
			reset = write_cmd(k, p[0]);
	} else {
		p[0] = port == 0 ? read_data(k, &pulse) : read_status(k);
		memset(p + 1, 0xff, size - 1);
	}
	if (size > 1)
		warn_once(k, "access of size", size);
	update_irq(k, pulse, false);
	if (reset)
		k->resets++;
	cb = k->reset;
	cb_opaque = k->reset_opaque;
	pthread_mutex_unlock(&k->lock);
	/* Outside the lock: the VMM's reset path may touch this device. */
	if (reset && cb)
		cb(cb_opaque);
	return 0;
}

int i8042_data_io(void *opaque, uint64_t offset, void *data, unsigned size,
		  bool is_write)
{
	if (!opaque)
		return -EINVAL;
	return i8042_access(opaque, 0, data, size, is_write);
}

int i8042_cmd_io(void *opaque, uint64_t offset, void *data, unsigned size,
		 bool is_write)
{
	if (!opaque)
		return -EINVAL;
	return i8042_access(opaque, 4, data, size, is_write);
}

int i8042_io(void *opaque, uint64_t offset, void *data, unsigned size,
	     bool is_write)
{
	if (!opaque)
		return -EINVAL;
	if (offset == 0 || offset == 4)
		return i8042_access(opaque, (unsigned)offset, data, size,
				    is_write);
	if (!is_write && data && size && size <= 8)
		memset(data, 0xff, size);
	return 0;
}

size_t i8042_kbd_inject(struct i8042 *k, const uint8_t *codes, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&k->lock);
	if (k->st.kbd_scanning && !(k->st.ctr & I8042_CTR_KBDDIS)) {
		n = MIN(len, (size_t)(I8042_QUEUE_SIZE - k->st.outq_len));
		for (size_t i = 0; i < n; i++)
			queue_byte(k, codes[i], false);
	}
	update_irq(k, false, false);
	pthread_mutex_unlock(&k->lock);
	return n;
}

/*
 * Ctrl+Alt+Del as a keyboard types it: left Ctrl, left Alt, Delete made,
 * then broken in reverse order, in the codes the guest reads from port
 * 0x60: set 1 when the controller translates (or the keyboard is in set
 * 1), set 2 otherwise. Set 3 has no codes here (Linux never picks it).
 */
int i8042_kbd_ctrl_alt_del(struct i8042 *k)
{
	static const uint8_t set1[] = {0x1d, 0x38, 0xe0, 0x53,
				       0xe0, 0xd3, 0xb8, 0x9d};
	static const uint8_t set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
				       0x71, 0xf0, 0x11, 0xf0, 0x14};
	const uint8_t *codes;
	size_t n;
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	if (k->st.ctr & I8042_CTR_XLATE || k->st.kbd_scanset == 1) {
		codes = set1;
		n = sizeof(set1);
	} else {
		codes = set2;
		n = sizeof(set2);
	}
	if (!k->st.kbd_scanning || k->st.ctr & I8042_CTR_KBDDIS)
		ret = -ENODEV;
	else if (k->st.kbd_scanset == 3 && !(k->st.ctr & I8042_CTR_XLATE))
		ret = -EOPNOTSUPP;
	else if ((size_t)(I8042_QUEUE_SIZE - k->st.outq_len) < n)
		ret = -ENOBUFS;
	for (size_t i = 0; !ret && i < n; i++)
		queue_byte(k, codes[i], false);
	update_irq(k, false, false);
	pthread_mutex_unlock(&k->lock);
	return ret;
}

static void power_on_state(struct i8042_state *s)
{
	memset(s, 0, sizeof(*s));
	/* What firmware leaves behind: interrupts on, translation on. */
	s->ctr = I8042_CTR_KBDINT | I8042_CTR_AUXINT | I8042_CTR_SYS |
		 I8042_CTR_XLATE;
	s->status = I8042_STR_SYS;
	s->outport = OUTP_RESET | OUTP_A20;
	kbd_defaults(s);
}

int i8042_init(struct i8042 *k, const struct irq_line *kbd_irq,
	       const struct irq_line *aux_irq, i8042_reset_fn reset,
	       void *opaque)
{
	int ret;

	if (!k)
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	ret = pthread_mutex_init(&k->lock, NULL);
	if (ret)
		return -ret;
	if (kbd_irq)
		k->kbd_irq = *kbd_irq;
	if (aux_irq)
		k->aux_irq = *aux_irq;
	k->reset = reset;
	k->reset_opaque = opaque;
	power_on_state(&k->st);
	return 0;
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

void i8042_reset(struct i8042 *k)
{
	pthread_mutex_lock(&k->lock);
	power_on_state(&k->st);
	update_irq(k, false, false);
	pthread_mutex_unlock(&k->lock);
}

void i8042_state_save(struct i8042 *k, struct i8042_state *st)
{
	pthread_mutex_lock(&k->lock);
	*st = k->st;
	pthread_mutex_unlock(&k->lock);
}

int i8042_state_check(const struct i8042_state *st)
{
	if (st->outq_head >= I8042_QUEUE_SIZE ||
	    st->outq_len > I8042_QUEUE_SIZE)
		return -EINVAL;
	for (unsigned i = 0; i < I8042_QUEUE_SIZE; i++) {
		if (st->outq_aux[i] > 1)
			return -EINVAL;
	}
	if (st->status & ~(I8042_STR_SYS | I8042_STR_CMD))
		return -EINVAL;
	if (st->pending_cmd &&
	    !(st->pending_cmd >= CMD_WRITE_CTR && st->pending_cmd < 0x80) &&
	    !(st->pending_cmd >= CMD_WRITE_OUTP &&
	      st->pending_cmd <= CMD_AUX_SEND))
		return -EINVAL;
	if (st->kbd_pending && st->kbd_pending != KBD_SET_LEDS &&
	    st->kbd_pending != KBD_SCANSET && st->kbd_pending != KBD_TYPEMATIC)
		return -EINVAL;
	if (st->kbd_scanning > 1 || st->kbd_scanset < 1 ||
	    st->kbd_scanset > 3 || st->kbd_leds > 7 || st->kbd_typematic > 0x7f)
		return -EINVAL;
	return 0;
}

int i8042_state_apply(struct i8042 *k, const struct i8042_state *st)
{
	int ret = i8042_state_check(st);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&k->lock);
	k->st = *st;
	update_irq(k, false, true);
	pthread_mutex_unlock(&k->lock);
	return 0;
}
