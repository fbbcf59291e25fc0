/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * CPU policy: turns KVM_GET_SUPPORTED_CPUID into the CPUID a vCPU sees.
 *
 * On hardware KVM the guest gets everything KVM supports (CPU_POLICY_HOST).
 * On a software backend such as kvm_pvm, guest kernel code runs in KVM's
 * instruction emulator, which cannot execute XSAVE/XRSTOR, POPCNT,
 * CMPXCHG16B or CLAC/STAC: the safe policy hides those features so a
 * guest kernel never picks code paths that use them (AVX and friends go
 * with XSAVE, since they need it for state management).
 */
#ifndef KHYVE_CPUID_H
#define KHYVE_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* KVM paravirtual features, CPUID 0x40000001 EAX (KVM_FEATURE_*). */
#define KVM_PV_ASYNC_PF	       (1u << 4)
#define KVM_PV_UNHALT	       (1u << 7)
#define KVM_PV_TLB_FLUSH       (1u << 9)
#define KVM_PV_ASYNC_PF_VMEXIT (1u << 10)
#define KVM_PV_SEND_IPI	       (1u << 11)
#define KVM_PV_SCHED_YIELD     (1u << 13)
#define KVM_PV_ASYNC_PF_INT    (1u << 14)
/* What the safe policy hides of them (cpuid.c says why, bit by bit). */
#define KVM_PV_SAFE_HIDE                                                       \
	(KVM_PV_ASYNC_PF | KVM_PV_UNHALT | KVM_PV_TLB_FLUSH |                  \
	 KVM_PV_ASYNC_PF_VMEXIT | KVM_PV_SEND_IPI | KVM_PV_SCHED_YIELD |       \
	 KVM_PV_ASYNC_PF_INT)

/* The features the safe policy hid, for documentation and statistics. */
struct cpuid_hidden {
	bool xsave, popcnt, cx16, smap, fsgsbase;
	uint32_t kvm_pv; /* KVM_PV_* bits the host offered and we hid */
};

/* Name of one KVM_PV_* bit ("pv_send_ipi"), NULL for an unknown one. */
const char *cpuid_kvm_pv_name(uint32_t bit);

/* Is /dev/kvm a software backend? ($KHYVE_BACKEND=hw|pvm overrides.) */
bool cpuid_backend_is_software(void);
/* Resolve CPU_POLICY_AUTO for this backend. */
enum cpu_policy cpuid_resolve_policy(enum cpu_policy p, bool sw_backend);
/*
 * Rewrite @c (a copy of the supported CPUID) in place for vCPU @index of
 * @ncpus under @policy. Pure.
 */
void cpuid_apply_policy(struct kvm_cpuid2 *c, enum cpu_policy policy,
			unsigned index, unsigned ncpus,
			struct cpuid_hidden *hidden);
/* Find an entry, NULL if absent. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
				    uint32_t idx);
/*
 * Linux command-line options that back the safe policy up where the
 * backend does not honour CPUID for the guest kernel ("" otherwise).
 */
const char *cpuid_policy_cmdline(enum cpu_policy policy);

#endif
