/* SPDX-License-Identifier: BSD-2-Clause */
#include "vcpu_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common.h"
#include "log.h"

#define S struct vcpu_state
static const struct snap_field vcpu_fields[] = {
	SNAP_U64(S, rax, 1),
	SNAP_U64(S, rbx, 1),
	SNAP_U64(S, rcx, 1),
	SNAP_U64(S, rdx, 1),
	SNAP_U64(S, rsi, 1),
	SNAP_U64(S, rdi, 1),
	SNAP_U64(S, rsp, 1),
	SNAP_U64(S, rbp, 1),
	SNAP_U64(S, r8, 1),
	SNAP_U64(S, r9, 1),
	SNAP_U64(S, r10, 1),
	SNAP_U64(S, r11, 1),
	SNAP_U64(S, r12, 1),
	SNAP_U64(S, r13, 1),
	SNAP_U64(S, r14, 1),
	SNAP_U64(S, r15, 1),
	SNAP_U64(S, rip, 1),
	SNAP_U64(S, rflags, 1),
	SNAP_U64_ARRAY(S, seg_base, SEG_NR, 1),
	SNAP_U32_ARRAY(S, seg_limit, SEG_NR, 1),
	SNAP_U16_ARRAY(S, seg_selector, SEG_NR, 1),
	SNAP_U16_ARRAY(S, seg_attr, SEG_NR, 1),
	SNAP_U64(S, gdt_base, 1),
	SNAP_U64(S, idt_base, 1),
	SNAP_U16(S, gdt_limit, 1),
	SNAP_U16(S, idt_limit, 1),
	SNAP_U64(S, cr0, 1),
	SNAP_U64(S, cr2, 1),
	SNAP_U64(S, cr3, 1),
	SNAP_U64(S, cr4, 1),
	SNAP_U64(S, cr8, 1),
	SNAP_U64(S, efer, 1),
	SNAP_U64(S, apic_base, 1),
	SNAP_U64_ARRAY(S, interrupt_bitmap, 4, 1),
	SNAP_BOOL(S, has_xsave, 1),
	SNAP_BYTES(S, xsave, VCPU_XSAVE_SIZE, 1),
	SNAP_BYTES(S, fpu, VCPU_FPU_SIZE, 1),
	SNAP_U64(S, xcr0, 1),
	SNAP_U64_ARRAY(S, db, 4, 1),
	SNAP_U64(S, dr6, 1),
	SNAP_U64(S, dr7, 1),
	SNAP_BYTES(S, lapic, VCPU_LAPIC_SIZE, 1),
	SNAP_U32_MAX(S, nmsrs, VCPU_MAX_MSRS, 1),
	SNAP_U32_VARRAY(S, msr_index, VCPU_MAX_MSRS, nmsrs, 1),
	SNAP_U64_VARRAY(S, msr_data, VCPU_MAX_MSRS, nmsrs, 1),
	SNAP_BOOL(S, exc_injected, 1),
	SNAP_U8_MAX(S, exc_nr, 31, 1),
	SNAP_BOOL(S, exc_has_error_code, 1),
	SNAP_BOOL(S, exc_pending, 1),
	SNAP_U32(S, exc_error_code, 1),
	SNAP_BOOL(S, irq_injected, 1),
	SNAP_U8(S, irq_nr, 1),
	SNAP_BOOL(S, irq_soft, 1),
	SNAP_U8(S, irq_shadow, 1),
	SNAP_BOOL(S, nmi_injected, 1),
	SNAP_BOOL(S, nmi_pending, 1),
	SNAP_BOOL(S, nmi_masked, 1),
	SNAP_U32(S, sipi_vector, 1),
	SNAP_U32(S, events_flags, 1),
	SNAP_BOOL(S, smi_smm, 1),
	SNAP_BOOL(S, smi_pending, 1),
	SNAP_BOOL(S, smi_inside_nmi, 1),
	SNAP_BOOL(S, smi_latched_init, 1),
	SNAP_U32_MAX(S, mp_state, KVM_MP_STATE_AP_RESET_HOLD, 1),
};
#undef S

const struct snap_desc vcpu_state_snap =
	SNAP_DESC("x86-vcpu", 1, 1, struct vcpu_state, vcpu_fields);

uint16_t vcpu_seg_pack(const struct kvm_segment *k)
{
	return (uint16_t)((k->type & 0xf) | (k->s & 1) << 4 |
			  (k->dpl & 3) << 5 | (k->present & 1) << 7 |
			  (k->avl & 1) << 8 | (k->l & 1) << 9 |
			  (k->db & 1) << 10 | (k->g & 1) << 11 |
			  (k->unusable & 1) << 12);
}

void vcpu_seg_unpack(uint16_t a, struct kvm_segment *k)
{
	k->type = a & 0xf;
	k->s = (a >> 4) & 1;
	k->dpl = (a >> 5) & 3;
	k->present = (a >> 7) & 1;
	k->avl = (a >> 8) & 1;
	k->l = (a >> 9) & 1;
	k->db = (a >> 10) & 1;
	k->g = (a >> 11) & 1;
	k->unusable = (a >> 12) & 1;
}

static struct kvm_segment *sreg_seg(struct kvm_sregs *sr, int i)
{
	struct kvm_segment *tab[SEG_NR] = {&sr->cs, &sr->ds, &sr->es, &sr->fs,
					   &sr->gs, &sr->ss, &sr->tr, &sr->ldt};
	return tab[i];
}

void vcpu_state_from_kvm(struct vcpu_state *s, const struct kvm_regs *r,
			 const struct kvm_sregs *csr)
{
	struct kvm_sregs sr = *csr;

	s->rax = r->rax, s->rbx = r->rbx, s->rcx = r->rcx, s->rdx = r->rdx;
	s->rsi = r->rsi, s->rdi = r->rdi, s->rsp = r->rsp, s->rbp = r->rbp;
	s->r8 = r->r8, s->r9 = r->r9, s->r10 = r->r10, s->r11 = r->r11;
	s->r12 = r->r12, s->r13 = r->r13, s->r14 = r->r14, s->r15 = r->r15;
	s->rip = r->rip, s->rflags = r->rflags;
	for (int i = 0; i < SEG_NR; i++) {
		struct kvm_segment *k = sreg_seg(&sr, i);

		s->seg_base[i] = k->base;
		s->seg_limit[i] = k->limit;
		s->seg_selector[i] = k->selector;
		s->seg_attr[i] = vcpu_seg_pack(k);
	}
	s->gdt_base = sr.gdt.base, s->gdt_limit = sr.gdt.limit;
	s->idt_base = sr.idt.base, s->idt_limit = sr.idt.limit;
	s->cr0 = sr.cr0, s->cr2 = sr.cr2, s->cr3 = sr.cr3, s->cr4 = sr.cr4;
	s->cr8 = sr.cr8, s->efer = sr.efer, s->apic_base = sr.apic_base;
	memcpy(s->interrupt_bitmap, sr.interrupt_bitmap,
	       sizeof(s->interrupt_bitmap));
}

void vcpu_state_to_kvm(const struct vcpu_state *s, struct kvm_regs *r,
		       struct kvm_sregs *sr)
{
	memset(r, 0, sizeof(*r));
	memset(sr, 0, sizeof(*sr));
	r->rax = s->rax, r->rbx = s->rbx, r->rcx = s->rcx, r->rdx = s->rdx;
	r->rsi = s->rsi, r->rdi = s->rdi, r->rsp = s->rsp, r->rbp = s->rbp;
	r->r8 = s->r8, r->r9 = s->r9, r->r10 = s->r10, r->r11 = s->r11;
	r->r12 = s->r12, r->r13 = s->r13, r->r14 = s->r14, r->r15 = s->r15;
	r->rip = s->rip, r->rflags = s->rflags;
	for (int i = 0; i < SEG_NR; i++) {
		struct kvm_segment *k = sreg_seg(sr, i);

		k->base = s->seg_base[i];
		k->limit = s->seg_limit[i];
		k->selector = s->seg_selector[i];
		vcpu_seg_unpack(s->seg_attr[i], k);
	}
	sr->gdt.base = s->gdt_base, sr->gdt.limit = s->gdt_limit;
	sr->idt.base = s->idt_base, sr->idt.limit = s->idt_limit;
	sr->cr0 = s->cr0, sr->cr2 = s->cr2, sr->cr3 = s->cr3, sr->cr4 = s->cr4;
	sr->cr8 = s->cr8, sr->efer = s->efer, sr->apic_base = s->apic_base;
	memcpy(sr->interrupt_bitmap, s->interrupt_bitmap,
	       sizeof(sr->interrupt_bitmap));
}

struct msrs_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[VCPU_MAX_MSRS];
};

/*
 * Hyper-V's synthetic MSRs: a guest reaches them only through Hyper-V's
 * CPUID interface (KVM_GET_SUPPORTED_HV_CPUID), which khyve never sets,
 * so they are not guest state. KVM lists them where it was built with
 * Hyper-V emulation (kvm_amd/kvm_intel), kvm_pvm does not.
 */
bool vcpu_msr_is_hyperv(uint32_t index)
{
	return index >= 0x40000000 && index <= 0x400001ff;
}

int vcpu_msr_list_probe(int kvm_fd, int vcpu_fd, struct vcpu_msr_list *l)
{
	struct {
		struct kvm_msr_list hdr;
		uint32_t idx[1024];
	} list = {.hdr.nmsrs = 1024};
	struct msrs_buf *b;

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0)
		return -errno;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	l->n = 0;
	/* Keep only MSRs this vCPU can actually read, one at a time. */
	for (uint32_t i = 0; i < list.hdr.nmsrs && l->n < VCPU_MAX_MSRS; i++) {
		if (vcpu_msr_is_hyperv(list.idx[i]))
			continue;
		b->hdr.nmsrs = 1;
		b->e[0].index = list.idx[i];
		if (ioctl(vcpu_fd, KVM_GET_MSRS, b) == 1)
			l->index[l->n++] = list.idx[i];
	}
	free(b);
	return 0;
}

/* The extended (or legacy) FPU state, XCR0 and the debug registers. */
static int save_fpu(int vcpu_fd, struct vcpu_state *s, const char **what)
{
	struct kvm_xsave *xs = calloc(1, sizeof(*xs));
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	int ret = 0;

	*what = "allocation";
	if (!xs)
		return -ENOMEM;
	if (ioctl(vcpu_fd, KVM_GET_XSAVE, xs) == 0) {
		s->has_xsave = 1;
		memcpy(s->xsave, xs->region, VCPU_XSAVE_SIZE);
	}
	free(xs);
	*what = "KVM_GET_FPU";
	if (ioctl(vcpu_fd, KVM_GET_FPU, &fpu) < 0)
		return -errno;
	memcpy(s->fpu, &fpu, MIN(sizeof(fpu), sizeof(s->fpu)));
	memset(&xcrs, 0, sizeof(xcrs));
	if (ioctl(vcpu_fd, KVM_GET_XCRS, &xcrs) == 0 && xcrs.nr_xcrs > 0)
		s->xcr0 = xcrs.xcrs[0].value;
	*what = "KVM_GET_DEBUGREGS";
	if (ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &dbg) < 0)
		return -errno;
	memcpy(s->db, dbg.db, sizeof(s->db));
	s->dr6 = dbg.dr6;
	s->dr7 = dbg.dr7;
	return ret;
}

static int save_msrs(int vcpu_fd, const struct vcpu_msr_list *msrs,
		     struct vcpu_state *s, struct err *err)
{
	struct msrs_buf *mb = calloc(1, sizeof(*mb));
	int ret;

	if (!mb)
		return err_set(err, -ENOMEM, "allocation: %s",
			       strerror(ENOMEM));
	mb->hdr.nmsrs = msrs->n;
	for (uint32_t i = 0; i < msrs->n; i++)
		mb->e[i].index = msrs->index[i];
	ret = ioctl(vcpu_fd, KVM_GET_MSRS, mb);
	if (ret < 0 || (uint32_t)ret != msrs->n) {
		err_set(err, -EIO,
			"KVM_GET_MSRS: read %d of %u MSRs (stopped at 0x%x)",
			ret, msrs->n,
			ret >= 0 && (uint32_t)ret < msrs->n ? msrs->index[ret]
							    : 0);
		free(mb);
		return -EIO;
	}
	s->nmsrs = msrs->n;
	for (uint32_t i = 0; i < msrs->n; i++) {
		s->msr_index[i] = mb->e[i].index;
		s->msr_data[i] = mb->e[i].data;
	}
	free(mb);
	return 0;
}

static void events_from_kvm(struct vcpu_state *s,
			    const struct kvm_vcpu_events *ev)
{
	s->exc_injected = ev->exception.injected;
	s->exc_nr = ev->exception.nr & 31;
	s->exc_has_error_code = ev->exception.has_error_code;
	s->exc_pending = ev->exception.pending;
	s->exc_error_code = ev->exception.error_code;
	s->irq_injected = ev->interrupt.injected;
	s->irq_nr = ev->interrupt.nr;
	s->irq_soft = ev->interrupt.soft;
	s->irq_shadow = ev->interrupt.shadow;
	s->nmi_injected = ev->nmi.injected;
	s->nmi_pending = ev->nmi.pending;
	s->nmi_masked = ev->nmi.masked;
	s->sipi_vector = ev->sipi_vector;
	s->events_flags = ev->flags;
	s->smi_smm = ev->smi.smm;
	s->smi_pending = ev->smi.pending;
	s->smi_inside_nmi = ev->smi.smm_inside_nmi;
	s->smi_latched_init = ev->smi.latched_init;
}

static void events_to_kvm(const struct vcpu_state *s,
			  struct kvm_vcpu_events *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->exception.injected = s->exc_injected;
	ev->exception.nr = s->exc_nr;
	ev->exception.has_error_code = s->exc_has_error_code;
	ev->exception.pending = s->exc_pending;
	ev->exception.error_code = s->exc_error_code;
	ev->interrupt.injected = s->irq_injected;
	ev->interrupt.nr = s->irq_nr;
	ev->interrupt.soft = s->irq_soft;
	ev->interrupt.shadow = s->irq_shadow;
	ev->nmi.injected = s->nmi_injected;
	ev->nmi.pending = s->nmi_pending;
	ev->nmi.masked = s->nmi_masked;
	ev->sipi_vector = s->sipi_vector;
	ev->smi.smm = s->smi_smm;
	ev->smi.pending = s->smi_pending;
	ev->smi.smm_inside_nmi = s->smi_inside_nmi;
	ev->smi.latched_init = s->smi_latched_init;
	/* Only the flags that say which of the above is valid. */
	ev->flags =
		s->events_flags &
		(KVM_VCPUEVENT_VALID_NMI_PENDING |
		 KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW |
		 KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD);
}

int vcpu_state_save(int vcpu_fd, const struct vcpu_msr_list *msrs,
		    struct vcpu_state *s, struct err *err)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	const char *what;
	int ret;

	memset(s, 0, sizeof(*s));
	what = "KVM_GET_REGS";
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0)
		goto fail;
	what = "KVM_GET_SREGS";
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		goto fail;
	vcpu_state_from_kvm(s, &regs, &sregs);
	ret = save_fpu(vcpu_fd, s, &what);
	if (ret) {
		errno = -ret;
		goto fail;
	}
	what = "KVM_GET_LAPIC";
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, (struct kvm_lapic_state *)s->lapic) <
	    0)
		goto fail;
	ret = save_msrs(vcpu_fd, msrs, s, err);
	if (ret)
		return ret;
	what = "KVM_GET_VCPU_EVENTS";
	if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		goto fail;
	events_from_kvm(s, &ev);
	what = "KVM_GET_MP_STATE";
	if (ioctl(vcpu_fd, KVM_GET_MP_STATE, &mp) < 0)
		goto fail;
	s->mp_state = mp.mp_state;
	return 0;
fail:
	return err_sys(err, "%s", what);
}

/* XSAVE state components by bit number (SDM vol. 1, 13.1). */
static const char *const xfeature_name[] = {
	[0] = "x87",
	[1] = "SSE",
	[2] = "AVX",
	[3] = "MPX-BNDREGS",
	[4] = "MPX-BNDCSR",
	[5] = "AVX-512-opmask",
	[6] = "AVX-512-ZMM_Hi256",
	[7] = "AVX-512-Hi16_ZMM",
	[8] = "PT",
	[9] = "PKRU",
	[11] = "CET_U",
	[12] = "CET_S",
	[17] = "AMX-TILECFG",
	[18] = "AMX-TILEDATA",
};

/*
 * Where the user components sit in the standard (non-compacted) XSAVE
 * layout that KVM_GET_XSAVE returns: fixed by the architecture on Intel
 * and AMD alike (CPUID 0xD sub-leaf i reports the same numbers).
 */
static const struct {
	uint16_t off, size;
} xfeature_std[] = {
	[2] = {576, 256}, [3] = {960, 64},   [4] = {1024, 64},
	[5] = {1088, 64}, [6] = {1152, 512}, [7] = {1664, 1024},
	[9] = {2688, 8},
};

size_t vcpu_xfeature_names(uint64_t mask, char *buf, size_t len)
{
	size_t n = 0;

	if (len)
		buf[0] = '\0';
	for (unsigned b = 0; b < 64 && n < len; b++) {
		if (!(mask & (1ull << b)))
			continue;
		if (b < ARRAY_SIZE(xfeature_name) && xfeature_name[b])
			n += (size_t)snprintf(buf + n, len - n, "%s%s",
					      n ? " " : "", xfeature_name[b]);
		else
			n += (size_t)snprintf(buf + n, len - n, "%sbit%u",
					      n ? " " : "", b);
	}
	return MIN(n, len ? len - 1 : 0);
}

/*
 * The components a vCPU may hold, as KVM decides them from the CPUID the
 * VMM set: x87 and SSE always; the rest only with XSAVE in leaf 1 and then
 * what leaf 0xD sub-leaf 0 lists. KVM refuses KVM_SET_XSAVE (EINVAL) when
 * the saved XSTATE_BV has a component outside that set.
 */
uint64_t vcpu_xsave_allowed(const struct kvm_cpuid_entry2 *e, unsigned n)
{
	uint64_t allowed = 3; /* x87 | SSE */
	bool xsave = false;

	for (unsigned i = 0; i < n; i++)
		if (e[i].function == 1)
			xsave = e[i].ecx & (1u << 26);
	if (!xsave)
		return allowed;
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == 0xd && e[i].index == 0)
			allowed |= e[i].eax | (uint64_t)e[i].edx << 32;
	return allowed;
}

uint64_t vcpu_xsave_fit(uint8_t *region, uint64_t xcr0, uint64_t allowed)
{
	uint64_t bv, dropped = 0;

	memcpy(&bv, region + 512, sizeof(bv)); /* XSTATE_BV */
	for (unsigned b = 2; b < ARRAY_SIZE(xfeature_std); b++) {
		const uint8_t *p = region + xfeature_std[b].off;
		bool init = xfeature_std[b].size != 0;

		if (!(bv & ~allowed & (1ull << b)) || (xcr0 & (1ull << b)))
			continue;
		for (unsigned i = 0; init && i < xfeature_std[b].size; i++)
			init = p[i] == 0;
		if (init)
			dropped |= 1ull << b;
	}
	bv &= ~dropped;
	memcpy(region + 512, &bv, sizeof(bv));
	return dropped;
}

/*
 * What this vCPU can hold, read back with KVM_GET_CPUID2: kvm_pvm
 * reports (and uses) its own CPUID there, not the one khyve set. All
 * components if it cannot say (KVM then judges alone).
 */
static uint64_t xsave_allowed_here(int vcpu_fd)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} *c = calloc(1, sizeof(*c));
	uint64_t allowed = ~0ull;

	if (!c)
		return allowed;
	c->hdr.nent = ARRAY_SIZE(c->e);
	if (ioctl(vcpu_fd, KVM_GET_CPUID2, c) == 0)
		allowed = vcpu_xsave_allowed(c->e, c->hdr.nent);
	free(c);
	return allowed;
}

/*
 * KVM refuses (EINVAL) an XSAVE image holding a component this vCPU's CPU
 * lacks: a snapshot from a host with more features (the golden
 * counter-64m, saved on nested kvm_amd with PKRU, on a kvm_pvm host
 * without it). A component the guest has not enabled in XCR0 and that is
 * in its initial state (all zero) carries nothing: its XSTATE_BV bit is
 * cleared, which means the same thing to the CPU. Anything else is
 * refused with both sets named.
 */
static int restore_xsave(int vcpu_fd, const struct vcpu_state *s,
			 struct err *err)
{
	struct kvm_xsave *xs = calloc(1, sizeof(*xs));
	uint64_t allowed = xsave_allowed_here(vcpu_fd), saved, dropped;
	char have[256], can[256];
	int ret = 0;

	if (!xs)
		return err_set(err, -ENOMEM, "KVM_SET_XSAVE: %s",
			       strerror(ENOMEM));
	memcpy(xs->region, s->xsave, VCPU_XSAVE_SIZE);
	memcpy(&saved, s->xsave + 512, sizeof(saved));
	dropped = vcpu_xsave_fit((uint8_t *)xs->region, s->xcr0, allowed);
	if (dropped) {
		vcpu_xfeature_names(dropped, have, sizeof(have));
		log_info(
			"vCPU state: XSAVE components %s left out: this host's "
			"CPU lacks them and the guest had them unused",
			have);
	}
	if (ioctl(vcpu_fd, KVM_SET_XSAVE, xs) < 0) {
		ret = err_sys(err, "KVM_SET_XSAVE");
		if (ret == -EINVAL && (saved & ~allowed)) {
			vcpu_xfeature_names(saved, have, sizeof(have));
			vcpu_xfeature_names(allowed, can, sizeof(can));
			err_set(err, ret,
				"KVM_SET_XSAVE: %s: the snapshot's FPU state "
				"uses XSAVE components 0x%llx (%s) but this "
				"VM's CPU offers only 0x%llx (%s): it was "
				"taken on a host or CPU policy with more CPU "
				"features than this one (docs/software-kvm.md)",
				strerror(EINVAL), (unsigned long long)saved,
				have, (unsigned long long)allowed, can);
		}
	}
	free(xs);
	return ret;
}

static int restore_fpu(int vcpu_fd, const struct vcpu_state *s, struct err *err)
{
	struct kvm_xcrs xcrs;
	struct kvm_fpu fpu;
	int ret;

	if (!s->has_xsave) {
		memcpy(&fpu, s->fpu, MIN(sizeof(fpu), sizeof(s->fpu)));
		if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) == 0)
			return 0;
		return err_sys(err, "KVM_SET_FPU");
	}
	ret = restore_xsave(vcpu_fd, s, err);
	if (ret || !s->xcr0)
		return ret;
	memset(&xcrs, 0, sizeof(xcrs));
	xcrs.nr_xcrs = 1;
	xcrs.xcrs[0].xcr = 0;
	xcrs.xcrs[0].value = s->xcr0;
	if (ioctl(vcpu_fd, KVM_SET_XCRS, &xcrs) == 0)
		return 0;
	return err_sys(err, "KVM_SET_XCRS");
}

/*
 * KVM_SET_MSRS stops at the first MSR it refuses and says how many it
 * set. One this host's KVM lacks is left out only when the guest cannot
 * have used it: a Hyper-V MSR (older snapshots from kvm_amd hosts hold
 * them). Anything else is an error naming the MSR - also one holding 0:
 * leaving out the LBR MSRs (0x1db-0x1de) a kvm_pvm vCPU saves let a
 * kvm_pvm snapshot through to nested kvm_amd, where its guest then powered
 * off at once without a word; the refusal says why instead.
 */
static int restore_msrs(int vcpu_fd, const struct vcpu_state *s,
			struct err *err)
{
	struct msrs_buf *mb = calloc(1, sizeof(*mb));
	uint32_t at = 0, left, nout = 0;
	char out[256] = "";
	size_t olen = 0;
	int ret;

	if (!mb)
		return err_set(err, -ENOMEM, "KVM_SET_MSRS: %s",
			       strerror(ENOMEM));
	for (; at < s->nmsrs; at++) {
		left = s->nmsrs - at;
		mb->hdr.nmsrs = left;
		for (uint32_t i = 0; i < left; i++) {
			mb->e[i].index = s->msr_index[at + i];
			mb->e[i].data = s->msr_data[at + i];
		}
		ret = ioctl(vcpu_fd, KVM_SET_MSRS, mb);
		if (ret >= 0 && (uint32_t)ret == left)
			break;
		if (ret < 0 ||
		    !vcpu_msr_is_hyperv(s->msr_index[at + (uint32_t)ret])) {
			err_set(err, -EIO,
				"KVM_SET_MSRS: set %d of %u MSRs; MSR 0x%x "
				"was refused (this host's KVM lacks it)",
				ret < 0 ? ret : (int)(at + (uint32_t)ret),
				s->nmsrs,
				ret >= 0 ? s->msr_index[at + (uint32_t)ret]
					 : 0);
			free(mb);
			return -EIO;
		}
		at += (uint32_t)ret;
		if (olen < sizeof(out))
			olen += (size_t)snprintf(out + olen, sizeof(out) - olen,
						 " 0x%x", s->msr_index[at]);
		nout++;
	}
	if (nout)
		log_info("vCPU state: %u Hyper-V MSRs this host's KVM lacks "
			 "left out:%s",
			 nout, out);
	free(mb);
	return 0;
}

int vcpu_state_restore(int vcpu_fd, const struct vcpu_state *s, struct err *err)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_debugregs dbg;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp = {.mp_state = s->mp_state};
	const char *what;
	int ret;

	what = "KVM_SET_MP_STATE";
	if (ioctl(vcpu_fd, KVM_SET_MP_STATE, &mp) < 0)
		goto fail;
	vcpu_state_to_kvm(s, &regs, &sregs);
	what = "KVM_SET_REGS";
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		goto fail;
	what = "KVM_SET_SREGS";
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		goto fail;
	ret = restore_fpu(vcpu_fd, s, err);
	if (ret)
		return ret;
	memset(&dbg, 0, sizeof(dbg));
	memcpy(dbg.db, s->db, sizeof(dbg.db));
	dbg.dr6 = s->dr6;
	dbg.dr7 = s->dr7;
	what = "KVM_SET_DEBUGREGS";
	if (ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &dbg) < 0)
		goto fail;
	what = "KVM_SET_LAPIC";
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, (struct kvm_lapic_state *)s->lapic) <
	    0)
		goto fail;
	ret = restore_msrs(vcpu_fd, s, err);
	if (ret)
		return ret;
	events_to_kvm(s, &ev);
	what = "KVM_SET_VCPU_EVENTS";
	if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		goto fail;
	return 0;
fail:
	return err_sys(err, "%s", what);
}
