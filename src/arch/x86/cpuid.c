/* SPDX-License-Identifier: BSD-2-Clause */
#include "cpuid.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Leaf 1 ECX. */
#define F1_ECX_MONITOR	  (1u << 3)
#define F1_ECX_FMA	  (1u << 12)
#define F1_ECX_CX16	  (1u << 13)
#define F1_ECX_X2APIC	  (1u << 21)
#define F1_ECX_POPCNT	  (1u << 23)
#define F1_ECX_XSAVE	  (1u << 26)
#define F1_ECX_OSXSAVE	  (1u << 27)
#define F1_ECX_AVX	  (1u << 28)
#define F1_ECX_F16C	  (1u << 29)
#define F1_ECX_HYPERVISOR (1u << 31)
/* Leaf 1 EDX. */
#define F1_EDX_HTT (1u << 28)
/* Leaf 7.0 EBX. */
#define F7_EBX_FSGSBASE (1u << 0)
#define F7_EBX_AVX2	(1u << 5)
#define F7_EBX_SMAP	(1u << 20)
/* AVX-512 F, DQ, IFMA, PF, ER, CD, BW, VL. */
#define F7_EBX_AVX512                                                          \
	((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) |      \
	 (1u << 28) | (1u << 30) | (1u << 31))
/*
 * Leaf 7.0 ECX: AVX512_VBMI, VBMI2, GFNI? no; VAES, VPCLMULQDQ, VNNI, BITALG,
 * VPOPCNTDQ.
 */
#define F7_ECX_AVXISH                                                          \
	((1u << 1) | (1u << 6) | (1u << 9) | (1u << 10) | (1u << 11) |         \
	 (1u << 12) | (1u << 14))
/* Leaf 0x80000001 ECX: ABM (LZCNT; POPCNT on AMD is reported here too). */
#define F81_ECX_ABM (1u << 5)

const char *cpuid_kvm_pv_name(uint32_t bit)
{
	switch (bit) {
	case KVM_PV_ASYNC_PF:
		return "pv_async_pf";
	case KVM_PV_UNHALT:
		return "pv_unhalt";
	case KVM_PV_TLB_FLUSH:
		return "pv_tlb_flush";
	case KVM_PV_ASYNC_PF_VMEXIT:
		return "pv_async_pf_vmexit";
	case KVM_PV_SEND_IPI:
		return "pv_send_ipi";
	case KVM_PV_SCHED_YIELD:
		return "pv_sched_yield";
	case KVM_PV_ASYNC_PF_INT:
		return "pv_async_pf_int";
	default:
		return NULL;
	}
}

bool cpuid_backend_is_software(void)
{
	const char *env = getenv("KHYVE_BACKEND");

	if (env && !strcmp(env, "hw"))
		return false;
	if (env && !strcmp(env, "pvm"))
		return true;
	/* kvm_pvm is the software backend these machines use. */
	return access("/sys/module/kvm_pvm", F_OK) == 0 &&
	       access("/sys/module/kvm_intel", F_OK) != 0 &&
	       access("/sys/module/kvm_amd", F_OK) != 0;
}

enum cpu_policy cpuid_resolve_policy(enum cpu_policy p, bool sw_backend)
{
	if (p != CPU_POLICY_AUTO)
		return p;
	return sw_backend ? CPU_POLICY_SAFE : CPU_POLICY_HOST;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
				    uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != fn)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
		    e->index != idx)
			continue;
		return e;
	}
	return NULL;
}

static void cpuid_remove_leaf(struct kvm_cpuid2 *c, uint32_t fn)
{
	uint32_t o = 0;

	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function != fn)
			c->entries[o++] = c->entries[i];
	c->nent = o;
}

/* Leaf 1: this vCPU's APIC id and count, and the safe policy's removals. */
static void policy_leaf1(struct kvm_cpuid_entry2 *e, bool safe, unsigned index,
			 unsigned ncpus, struct cpuid_hidden *hidden)
{
	/* Initial APIC id and logical processor count. */
	e->ebx = (e->ebx & 0x0000ffff) | (index << 24) | ((ncpus & 0xff) << 16);
	e->ecx |= F1_ECX_HYPERVISOR;
	/* KVM sets OSXSAVE from the guest's CR4; never force it. */
	e->ecx &= ~(F1_ECX_MONITOR | F1_ECX_OSXSAVE);
	if (ncpus > 1)
		e->edx |= F1_EDX_HTT;
	if (safe) {
		if (hidden) {
			hidden->xsave = e->ecx & F1_ECX_XSAVE;
			hidden->popcnt = e->ecx & F1_ECX_POPCNT;
			hidden->cx16 = e->ecx & F1_ECX_CX16;
		}
		e->ecx &= ~(F1_ECX_XSAVE | F1_ECX_POPCNT | F1_ECX_CX16 |
			    F1_ECX_AVX | F1_ECX_FMA | F1_ECX_F16C);
	}
}

/*
 * Leaf 0x40000001, KVM's paravirtual features. On kvm_pvm a 2-vCPU
 * Linux hangs for good in the PV_SEND_IPI hypercall during SMP bring-up
 * (measured). PV_SCHED_YIELD and PV_UNHALT (KVM_HC_KICK_CPU) are
 * hypercalls on the same path, and PV_TLB_FLUSH leans on the host
 * writing steal-time "preempted" flags a software backend may never
 * set: hidden, not measured. Async page faults inject #PF/interrupts
 * that the snapshot does not carry and that a software backend has no
 * use for. kvmclock, steal time and PV EOI stay: Linux needs the clock,
 * the others are plain MSRs.
 */
static void policy_kvm_pv(struct kvm_cpuid_entry2 *e, bool safe,
			  struct cpuid_hidden *hidden)
{
	if (!safe)
		return;
	if (hidden)
		hidden->kvm_pv = e->eax & KVM_PV_SAFE_HIDE;
	e->eax &= ~KVM_PV_SAFE_HIDE;
}

void cpuid_apply_policy(struct kvm_cpuid2 *c, enum cpu_policy policy,
			unsigned index, unsigned ncpus,
			struct cpuid_hidden *hidden)
{
	struct kvm_cpuid_entry2 *e;
	bool safe = policy == CPU_POLICY_SAFE;

	if (hidden)
		memset(hidden, 0, sizeof(*hidden));
	for (uint32_t i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		switch (e->function) {
		case 1:
			policy_leaf1(e, safe, index, ncpus, hidden);
			break;
		case 4:
			/* Cores per package - 1 in EAX[31:26]. */
			e->eax = (e->eax & 0x03ffffff) |
				 (((ncpus - 1) & 0x3f) << 26);
			break;
		case 7:
			if (safe && e->index == 0) {
				if (hidden) {
					hidden->smap = e->ebx & F7_EBX_SMAP;
					hidden->fsgsbase =
						e->ebx & F7_EBX_FSGSBASE;
				}
				e->ebx &= ~(F7_EBX_SMAP | F7_EBX_FSGSBASE |
					    F7_EBX_AVX2 | F7_EBX_AVX512);
				e->ecx &= ~F7_ECX_AVXISH;
			}
			break;
		case 0xb:
		case 0x1f:
			/* x2APIC id of this vCPU. */
			e->edx = index;
			break;
		case 0x80000001:
			if (safe)
				e->ecx &= ~F81_ECX_ABM;
			break;
		case 0x40000001:
			policy_kvm_pv(e, safe, hidden);
			break;
		default:
			break;
		}
	}
	/* Without XSAVE the guest must not see the XSAVE state leaf. */
	if (safe)
		cpuid_remove_leaf(c, 0xd);
}

const char *cpuid_policy_cmdline(enum cpu_policy policy)
{
	/*
	 * kvm_pvm may pass the host's CPUID through to guest kernel code, so
	 * say it again on Linux's command line: 151 is X86_FEATURE_POPCNT,
	 * 141 X86_FEATURE_CX16 and 308 X86_FEATURE_SMAP (6.1 takes bit
	 * numbers only). 308 because 6.1 no longer knows `nosmap` ("Unknown
	 * kernel command line parameters") and still saw SMAP in leaf 7:
	 * every kernel entry then ran CLAC, an emulation failure here (khyve
	 * completes it; QEMU stops the guest at the first). nofsgsbase:
	 * with FSGSBASE, user processes on kvm_pvm died at random of a %fs
	 * read that returned 0 (busybox, 4 Linux test runs under load), and
	 * the NMI entry's LSL is not emulated (the VM died on an RCU-stall
	 * NMI); 2 runs with nofsgsbase had neither (the random deaths were
	 * not FSGSBASE's, see below). GLIBC_TUNABLES: guest user mode runs
	 * natively on the host's CPU, whose CPUID and XCR0 offer AVX and
	 * AVX-512, so glibc picks its AVX-512 string functions (ymm16-31),
	 * and kvm_pvm does not keep that state (a guest probe's ymm16 and
	 * upper ymm8 came back stale 8 times in 300, its xmm8 never): a
	 * fresh busybox's TLS copy (through ymm16, into a new brk page whose
	 * first store faults) wrote stale bytes, and it died at its first
	 * %fs read (`segfault at 0 ip 4a4d02`). With SSE2 functions only,
	 * none died (docs/software-kvm.md). Linux passes a word with '='
	 * and no '.' in its name to init's environment, so to every process.
	 * Linux words only: vm_boot hands them to the loader, which appends
	 * them to a Linux kernel's command line and to no other guest's.
	 */
	if (policy == CPU_POLICY_SAFE)
		return "noxsave nosmap nofsgsbase clearcpuid=151,141,308 "
		       "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,"
		       "-AVX2,-AVX,-AVX_Fast_Unaligned_Load";
	return "";
}
