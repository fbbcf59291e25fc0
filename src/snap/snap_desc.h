/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Declarative state descriptions: one table per component drives save,
 * load, validation and dump (in the spirit of QEMU's VMStateDescription).
 *
 * A component keeps its saveable state in a plain struct of fixed-width
 * fields and describes it with a table:
 *
 *   struct uart8250_state { uint8_t ier, lcr; uint8_t rx_fifo[16]; ... };
 *   static const struct snap_field uart_fields[] = {
 *           SNAP_U8(struct uart8250_state, ier, 1),
 *           SNAP_U8_ARRAY(struct uart8250_state, rx_fifo, 16, 1),
 *           SNAP_U8_MAX(struct uart8250_state, rx_len, 16, 1),
 *   };
 *   const struct snap_desc uart8250_snap = SNAP_DESC("uart8250", 1, 1,
 *           struct uart8250_state, uart_fields);
 *
 * The last argument of every field macro is the section version that
 * introduced the field ("since"): loading an older section leaves fields
 * newer than it at the value the caller initialised them to.
 */
#ifndef KHYVE_SNAP_DESC_H
#define KHYVE_SNAP_DESC_H

#include <stddef.h>
#include <stdint.h>

enum snap_type {
	SNAP_T_U8 = 1,
	SNAP_T_U16 = 2,
	SNAP_T_U32 = 3,
	SNAP_T_U64 = 4,
	SNAP_T_I64 = 5,
	SNAP_T_BOOL = 6,  /* one byte, 0 or 1 */
	SNAP_T_BYTES = 7, /* opaque bytes; count is the length */
};

struct snap_field {
	const char *name;
	uint8_t type;
	uint32_t offset; /* offsetof() in the state struct */
	uint32_t count;	 /* array elements (bytes for SNAP_T_BYTES) */
	uint16_t since;	 /* section version that introduced the field */
	uint64_t max;	 /* inclusive bound checked on load; 0 = none */
	/*
	 * Variable-length arrays: name of an integer field (earlier in the
	 * table) holding how many elements are live. Only those are saved;
	 * on load the count is checked against @count before use.
	 */
	const char *count_field;
};

/* Section flags. */
#define SNAP_F_OPTIONAL 0x1 /* a reader that lacks this section may skip it */

struct snap_desc {
	const char *name;     /* section name, e.g. "uart8250" */
	uint16_t version;     /* version this code writes */
	uint16_t min_version; /* oldest version this code can load */
	uint32_t flags;
	const struct snap_field *fields;
	unsigned nfields;
	size_t state_size; /* sizeof the state struct */
};

#define SNAP__F(st, m, t, n, s, mx, cf)                                        \
	{                                                                      \
		.name = #m, .type = (t), .offset = (uint32_t)offsetof(st, m),  \
		.count = (n), .since = (s), .max = (mx), .count_field = (cf)   \
	}

#define SNAP_U8(st, m, s)	    SNAP__F(st, m, SNAP_T_U8, 1, s, 0, NULL)
#define SNAP_U16(st, m, s)	    SNAP__F(st, m, SNAP_T_U16, 1, s, 0, NULL)
#define SNAP_U32(st, m, s)	    SNAP__F(st, m, SNAP_T_U32, 1, s, 0, NULL)
#define SNAP_U64(st, m, s)	    SNAP__F(st, m, SNAP_T_U64, 1, s, 0, NULL)
#define SNAP_I64(st, m, s)	    SNAP__F(st, m, SNAP_T_I64, 1, s, 0, NULL)
#define SNAP_BOOL(st, m, s)	    SNAP__F(st, m, SNAP_T_BOOL, 1, s, 1, NULL)
#define SNAP_U8_MAX(st, m, mx, s)   SNAP__F(st, m, SNAP_T_U8, 1, s, mx, NULL)
#define SNAP_U16_MAX(st, m, mx, s)  SNAP__F(st, m, SNAP_T_U16, 1, s, mx, NULL)
#define SNAP_U32_MAX(st, m, mx, s)  SNAP__F(st, m, SNAP_T_U32, 1, s, mx, NULL)
#define SNAP_U64_MAX(st, m, mx, s)  SNAP__F(st, m, SNAP_T_U64, 1, s, mx, NULL)
#define SNAP_U8_ARRAY(st, m, n, s)  SNAP__F(st, m, SNAP_T_U8, n, s, 0, NULL)
#define SNAP_U16_ARRAY(st, m, n, s) SNAP__F(st, m, SNAP_T_U16, n, s, 0, NULL)
#define SNAP_U32_ARRAY(st, m, n, s) SNAP__F(st, m, SNAP_T_U32, n, s, 0, NULL)
#define SNAP_U64_ARRAY(st, m, n, s) SNAP__F(st, m, SNAP_T_U64, n, s, 0, NULL)
#define SNAP_BYTES(st, m, n, s)	    SNAP__F(st, m, SNAP_T_BYTES, n, s, 0, NULL)
/* Variable-length arrays whose live length is in integer field @cf. */
#define SNAP_U32_VARRAY(st, m, n, cf, s)                                       \
	SNAP__F(st, m, SNAP_T_U32, n, s, 0, #cf)
#define SNAP_U64_VARRAY(st, m, n, cf, s)                                       \
	SNAP__F(st, m, SNAP_T_U64, n, s, 0, #cf)
#define SNAP_U8_VARRAY(st, m, n, cf, s) SNAP__F(st, m, SNAP_T_U8, n, s, 0, #cf)

#define SNAP_DESC(nm, ver, minver, st, fieldarr)                               \
	{                                                                      \
		.name = (nm), .version = (ver), .min_version = (minver),       \
		.flags = 0, .fields = (fieldarr),                              \
		.nfields =                                                     \
			(unsigned)(sizeof(fieldarr) / sizeof((fieldarr)[0])),  \
		.state_size = sizeof(st)                                       \
	}

#endif
