/* SPDX-License-Identifier: BSD-2-Clause */
/* Constants shared by boot.S and the C code (keep it assembler-safe). */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define KCODE64	     0x08
#define KDATA	     0x10
#define KCODE32	     0x18
#define UDATA	     0x23 /* 0x20 | RPL 3 */
#define UCODE64	     0x2b /* 0x28 | RPL 3 */
#define TSS_SEL(cpu) (0x30 + 16 * (cpu))

#define GUEST_MAX_CPUS	32
#define TRAMP_BASE	0x8000
#define AP_KSTACK_SHIFT 12
#define AP_KSTACK_SZ	(1 << AP_KSTACK_SHIFT)

#define VEC_PIT	     0x20
#define VEC_LAPIC    0x30
#define VEC_SPURIOUS 0xff

#endif
