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

#include "config.h"

/* The features the safe policy hides, for documentation and statistics. */
struct cpuid_hidden {
	bool xsave, popcnt, cx16, smap;
};

/* Is /dev/kvm a software backend? ($KHYVE_BACKEND=hw|pvm overrides.) */
bool cpuid_backend_is_software(void);
/* Resolve CPU_POLICY_AUTO for this backend. */
enum cpu_policy cpuid_resolve_policy(enum cpu_policy p, bool sw_backend);
/*
 * Rewrite @c (a copy of the supported CPUID) in place for vCPU @index of
 * @ncpus under @policy. Pure.
 */
void cpuid_apply_policy(struct kvm_cpuid2 *c, enum cpu_policy policy,
			unsigned index, unsigned ncpus, struct cpuid_hidden *hidden);
/* Find an entry, NULL if absent. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
				    uint32_t idx);
/*
 * Linux command-line options that back the safe policy up where the
 * backend does not honour CPUID for the guest kernel ("" otherwise).
 */
const char *cpuid_policy_cmdline(enum cpu_policy policy);

#endif
