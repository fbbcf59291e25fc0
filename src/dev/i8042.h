/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * i8042 keyboard controller with an AT keyboard behind it and an empty
 * aux (mouse) port: enough for Linux's i8042/atkbd probe to find a keyboard
 * quickly (psmouse gets NAKs and gives up at once) and for reboot through
 * command 0xFE (or an output-port write with bit 0 clear), which calls the
 * VMM's reset callback.
 *
 * Ports: data 0x60 and status/command 0x64. 0x61 belongs to another device
 * (port B / PIT gate), so register the two single ports separately with
 * i8042_data_io() and i8042_cmd_io(). i8042_io() serves a 5-port range at
 * 0x60 (offsets 0 and 4) for buses where that is free.
 */
#ifndef KHYVE_I8042_H
#define KHYVE_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irq.h"
#include "snap_desc.h"

#define I8042_DATA_PORT	 0x60
#define I8042_CMD_PORT	 0x64
#define I8042_KBD_IRQ	 1
#define I8042_AUX_IRQ	 12
#define I8042_QUEUE_SIZE 16

/* Status register bits */
#define I8042_STR_OBF	  0x01
#define I8042_STR_IBF	  0x02
#define I8042_STR_SYS	  0x04
#define I8042_STR_CMD	  0x08 /* last write went to the command port */
#define I8042_STR_UNLOCK  0x10
#define I8042_STR_AUXDATA 0x20
#define I8042_STR_TIMEOUT 0x40

/* Command byte (CTR) bits */
#define I8042_CTR_KBDINT 0x01
#define I8042_CTR_AUXINT 0x02
#define I8042_CTR_SYS	 0x04
#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20
#define I8042_CTR_XLATE	 0x40

/* Saveable state; every byte described. */
struct i8042_state {
	uint8_t outq[I8042_QUEUE_SIZE];	    /* bytes waiting for the guest */
	uint8_t outq_aux[I8042_QUEUE_SIZE]; /* 1 if that byte is aux data */
	uint8_t outq_head;
	uint8_t outq_len;
	uint8_t ctr;	     /* controller command byte */
	uint8_t status;	     /* SYS and CMD bits; the rest is derived */
	uint8_t pending_cmd; /* command waiting for its data byte, or 0 */
	uint8_t outport;
	uint8_t kbd_pending; /* keyboard command waiting for a parameter */
	uint8_t kbd_scanning;
	uint8_t kbd_scanset;
	uint8_t kbd_leds;
	uint8_t kbd_typematic;
	uint8_t last_out; /* data port value when the queue is empty */
};

extern const struct snap_desc i8042_snap_desc;

typedef void (*i8042_reset_fn)(void *opaque);

struct i8042 {
	pthread_mutex_t lock;
	struct i8042_state st;
	struct irq_line kbd_irq, aux_irq;
	i8042_reset_fn reset;
	void *reset_opaque;
	/* Runtime only. */
	int kbd_level, aux_level;
	uint64_t resets, dropped;
	bool warned;
};

/*
 * @reset is called (without the device lock held, from the vCPU thread)
 * when the guest pulses the CPU reset line. Lines and callback may be NULL.
 */
int i8042_init(struct i8042 *k, const struct irq_line *kbd_irq,
	       const struct irq_line *aux_irq, i8042_reset_fn reset,
	       void *opaque);
void i8042_destroy(struct i8042 *k);
/* Back to power-on state (the VMM's reboot path); lowers both lines. */
void i8042_reset(struct i8042 *k);
int i8042_data_io(void *opaque, uint64_t offset, void *data, unsigned size,
		  bool is_write);
int i8042_cmd_io(void *opaque, uint64_t offset, void *data, unsigned size,
		 bool is_write);
int i8042_io(void *opaque, uint64_t offset, void *data, unsigned size,
	     bool is_write);
/*
 * Queue keyboard scancodes from the host (e.g. a Ctrl-Alt-Del sequence);
 * dropped while the guest disabled scanning. Returns bytes queued.
 */
size_t i8042_kbd_inject(struct i8042 *k, const uint8_t *codes, size_t len);

/*
 * Type Ctrl+Alt+Del (make, then break codes) in the scan code set the
 * guest reads (see i8042.c). 0; -ENODEV if the guest disabled the
 * keyboard, -EOPNOTSUPP in untranslated set 3, -ENOBUFS if the output
 * buffer lacks room (nothing is queued then).
 */
int i8042_kbd_ctrl_alt_del(struct i8042 *k);

void i8042_state_save(struct i8042 *k, struct i8042_state *st);
int i8042_state_check(const struct i8042_state *st);
/* Validate, install and re-drive both IRQ lines; -EINVAL leaves @k alone. */
int i8042_state_apply(struct i8042 *k, const struct i8042_state *st);

#endif
