/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The complete architectural state of one x86 vCPU as khyve saves it, in
 * named fields (so `khyvectl snapshot info --all` shows registers by name),
 * plus the KVM calls that move it in and out of a vCPU.
 *
 * Restore order (KVM requires it; the same order Firecracker documents):
 *   1. KVM_SET_CPUID2 (at vCPU creation, before anything else)
 *   2. KVM_SET_MP_STATE
 *   3. KVM_SET_REGS
 *   4. KVM_SET_SREGS      before MSRs: EFER and APIC base live here
 *   5. KVM_SET_XSAVE (or KVM_SET_FPU), KVM_SET_XCRS
 *   6. KVM_SET_DEBUGREGS
 *   7. KVM_SET_LAPIC      after SREGS: the APIC base MSR picks the mode
 *   8. KVM_SET_MSRS       after LAPIC: TSC_DEADLINE needs the LAPIC
 *   9. KVM_SET_VCPU_EVENTS last: pending exceptions/NMIs/SIPIs refer to
 *      all of the above
 * The VM-wide clock (KVM_SET_CLOCK) is set before any vCPU runs.
 */
#ifndef KHYVE_VCPU_STATE_H
#define KHYVE_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "snap_desc.h"

#define VCPU_MAX_MSRS	256
#define VCPU_XSAVE_SIZE 4096
#define VCPU_LAPIC_SIZE 1024
#define VCPU_FPU_SIZE	512

enum {
	SEG_CS,
	SEG_DS,
	SEG_ES,
	SEG_FS,
	SEG_GS,
	SEG_SS,
	SEG_TR,
	SEG_LDT,
	SEG_NR
};

struct vcpu_state {
	/* General registers. */
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
	/* Segments, in SEG_* order; attr packs
	 * type/s/dpl/p/avl/l/db/g/unusable. */
	uint64_t seg_base[SEG_NR];
	uint32_t seg_limit[SEG_NR];
	uint16_t seg_selector[SEG_NR];
	uint16_t seg_attr[SEG_NR];
	uint64_t gdt_base, idt_base;
	uint16_t gdt_limit, idt_limit;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
	uint64_t interrupt_bitmap[4];
	/* FPU/SSE/AVX state: XSAVE area if the host has it, else FXSAVE image.
	 */
	uint8_t has_xsave;
	uint8_t xsave[VCPU_XSAVE_SIZE];
	uint8_t fpu[VCPU_FPU_SIZE];
	uint64_t xcr0;
	/* Debug registers. */
	uint64_t db[4];
	uint64_t dr6, dr7;
	/* LAPIC register page (struct kvm_lapic_state). */
	uint8_t lapic[VCPU_LAPIC_SIZE];
	/* Every MSR KVM reports as saveable that could be read. */
	uint32_t nmsrs;
	uint32_t msr_index[VCPU_MAX_MSRS];
	uint64_t msr_data[VCPU_MAX_MSRS];
	/* Pending and injected events. */
	uint8_t exc_injected, exc_nr, exc_has_error_code, exc_pending;
	uint32_t exc_error_code;
	uint8_t irq_injected, irq_nr, irq_soft, irq_shadow;
	uint8_t nmi_injected, nmi_pending, nmi_masked;
	uint32_t sipi_vector;
	uint32_t events_flags;
	uint8_t smi_smm, smi_pending, smi_inside_nmi, smi_latched_init;
	uint32_t mp_state;
};

extern const struct snap_desc vcpu_state_snap;

struct vcpu_msr_list {
	uint32_t n;
	uint32_t index[VCPU_MAX_MSRS];
};

/* The MSRs to save: KVM_GET_MSR_INDEX_LIST filtered to readable ones. */
/* Hyper-V's synthetic MSR range: never guest state under khyve. */
bool vcpu_msr_is_hyperv(uint32_t index);
int vcpu_msr_list_probe(int kvm_fd, int vcpu_fd, struct vcpu_msr_list *l);
/* Read everything from the vCPU (it must be out of KVM_RUN). */
int vcpu_state_save(int vcpu_fd, const struct vcpu_msr_list *msrs,
		    struct vcpu_state *s, struct err *err);
/* Load everything, in the order above. */
int vcpu_state_restore(int vcpu_fd, const struct vcpu_state *s,
		       struct err *err);
/* Conversions between KVM structs and vcpu_state (pure). */
void vcpu_state_from_kvm(struct vcpu_state *s, const struct kvm_regs *r,
			 const struct kvm_sregs *sr);
void vcpu_state_to_kvm(const struct vcpu_state *s, struct kvm_regs *r,
		       struct kvm_sregs *sr);
/* Names of the XSAVE components in @mask ("x87 SSE AVX"); returns length. */
size_t vcpu_xfeature_names(uint64_t mask, char *buf, size_t len);
/* The XSAVE components KVM lets a vCPU with this CPUID hold. */
uint64_t vcpu_xsave_allowed(const struct kvm_cpuid_entry2 *e, unsigned n);
/*
 * Fit a standard-format XSAVE image to a CPU allowing @allowed: clear the
 * XSTATE_BV bit of each component outside it that is in its initial
 * (all-zero) state and not enabled in @xcr0. Returns the bits cleared.
 */
uint64_t vcpu_xsave_fit(uint8_t *region, uint64_t xcr0, uint64_t allowed);
uint16_t vcpu_seg_pack(const struct kvm_segment *k);
void vcpu_seg_unpack(uint16_t attr, struct kvm_segment *k);

#endif
