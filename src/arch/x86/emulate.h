/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The emulation-failure layer. A software KVM backend (kvm_pvm) runs guest
 * kernel code in KVM's instruction emulator, which gives up on a few
 * instructions with KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION.
 * Rather than die as QEMU does, khyve completes the instruction as the CPU
 * would and resumes the guest:
 *
 *   INT3               raise #BP (the guest's own handler runs)
 *   FWAIT              no-op (no unmasked x87 exception is pending)
 *   FNCLEX             clear the x87 exception flags
 *   FNINIT             reset the x87 control/status/tag words
 *   EMMS               mark every x87 register empty
 *   POPCNT r, r/m      count bits, set ZF, clear the other flags
 *   CLAC / STAC        clear / set RFLAGS.AC
 *   CMPXCHG16B m128    compare-exchange (vCPUs are stopped in KVM_RUN's
 *                      exit, but another vCPU may race: see emulate.c)
 *   LDMXCSR / STMXCSR  load / store MXCSR (Debian's kernel runs LDMXCSR in
 *                      kernel_fpu_begin; measured on kvm_pvm)
 *
 * This file is pure: it decodes bytes and updates a register snapshot;
 * the vCPU code moves state in and out of KVM.
 */
#ifndef KHYVE_EMULATE_H
#define KHYVE_EMULATE_H

#include <stdbool.h>
#include <stdint.h>

enum emul_kind {
	EMUL_INT3 = 0,
	EMUL_FWAIT,
	EMUL_FNCLEX,
	EMUL_FNINIT,
	EMUL_EMMS,
	EMUL_POPCNT,
	EMUL_CLAC,
	EMUL_STAC,
	EMUL_CMPXCHG16B,
	EMUL_LDMXCSR,
	EMUL_STMXCSR,
	EMUL_NR_KINDS,
};

extern const char *const emul_kind_names[EMUL_NR_KINDS];

/* GPR indexes in x86 encoding order. */
enum { R_AX, R_CX, R_DX, R_BX, R_SP, R_BP, R_SI, R_DI };

struct emul_ctx {
	/* In/out: the vCPU's state. */
	uint64_t gpr[16];
	uint64_t rip, rflags;
	uint64_t fs_base, gs_base;
	uint16_t fcw, fsw;
	uint8_t ftwx; /* abridged tag word, as in struct kvm_fpu */
	uint32_t mxcsr;
	bool long_mode; /* CS.L: 64-bit code */
	/* Guest virtual memory access (translated by the caller). */
	int (*read)(void *opaque, uint64_t gva, void *buf, unsigned len);
	int (*write)(void *opaque, uint64_t gva, const void *buf, unsigned len);
	void *opaque;
	/* Out. */
	bool inject_bp; /* deliver #BP after updating RIP */
	bool fpu_dirty; /* fcw/fsw/ftwx/mxcsr changed */
	bool gpr_dirty; /* gpr/rflags changed */
	enum emul_kind kind;
	unsigned len; /* decoded instruction length */
};

/*
 * Complete the instruction in @insn (@len bytes available). Returns 0 when
 * done (RIP advanced, state updated), -ENOTSUP for an instruction this
 * layer does not handle, -EFAULT if a memory operand could not be accessed,
 * -EINVAL for truncated bytes.
 */
int emul_complete(struct emul_ctx *c, const uint8_t *insn, unsigned len);

#endif
