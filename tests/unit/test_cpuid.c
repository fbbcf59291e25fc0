/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>

#include "cpuid.h"
#include "unit.h"

static struct kvm_cpuid2 *make_cpuid(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 8 * sizeof(c->entries[0]));
	struct kvm_cpuid_entry2 *e = c->entries;

	e[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd };
	e[1] = (struct kvm_cpuid_entry2){ .function = 1,
					  .ebx = 0xff00abcd,
					  .ecx = 0x0eb8a203 | (1u << 23) |
						 (1u << 26) | (1u << 13) |
						 (1u << 28) | (1u << 27),
					  .edx = 0x178bfbff };
	e[2] = (struct kvm_cpuid_entry2){ .function = 7,
					  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
					  .ebx = (1u << 20) | (1u << 5) |
						 (1u << 7) | (1u << 0) };
	e[3] = (struct kvm_cpuid_entry2){ .function = 0xd,
					  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
					  .eax = 7 };
	e[4] = (struct kvm_cpuid_entry2){ .function = 0xd,
					  .index = 1,
					  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX };
	e[5] = (struct kvm_cpuid_entry2){ .function = 0xb,
					  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX };
	e[6] = (struct kvm_cpuid_entry2){ .function = 0x80000001,
					  .ecx = 0x21 };
	/* kvmclock, clocksource2, async PF, steal time, PV EOI, unhalt,
	 * TLB flush, send-IPI, sched yield, async-PF-int. */
	e[7] = (struct kvm_cpuid_entry2){ .function = 0x40000001,
					  .eax = 0x1 | 0x8 | 0x10 | 0x20 |
						 0x40 | 0x80 | 0x200 | 0x800 |
						 0x2000 | 0x4000 };
	c->nent = 8;
	return c;
}

static void test_host_policy(void)
{
	struct kvm_cpuid2 *c = make_cpuid();
	struct kvm_cpuid_entry2 *e;

	cpuid_apply_policy(c, CPU_POLICY_HOST, 3, 4, NULL);
	e = cpuid_find(c, 1, 0);
	CHECK(e != NULL);
	CHECK_EQ(e->ebx >> 24, 3);
	CHECK_EQ((e->ebx >> 16) & 0xff, 4);
	CHECK_EQ(e->ebx & 0xffff, 0xabcd);
	CHECK(e->ecx & (1u << 31));
	CHECK(e->ecx & (1u << 26));
	CHECK(!(e->ecx & (1u << 27))); /* OSXSAVE is KVM's to set */
	CHECK(e->edx & (1u << 28));
	CHECK(cpuid_find(c, 0xd, 1) != NULL);
	CHECK_EQ(cpuid_find(c, 0xb, 0)->edx, 3);
	CHECK_EQ(cpuid_find(c, 0x40000001, 0)->eax,
		 0x1 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x200 | 0x800 |
			 0x2000 | 0x4000);
	CHECK(!strcmp(cpuid_policy_cmdline(CPU_POLICY_HOST), ""));
	free(c);
}

static void test_safe_policy(void)
{
	struct kvm_cpuid2 *c = make_cpuid();
	struct cpuid_hidden h;
	struct kvm_cpuid_entry2 *e;

	cpuid_apply_policy(c, CPU_POLICY_SAFE, 0, 1, &h);
	CHECK(h.xsave && h.popcnt && h.cx16 && h.smap && h.fsgsbase);
	e = cpuid_find(c, 1, 0);
	CHECK(!(e->ecx & ((1u << 23) | (1u << 26) | (1u << 13) | (1u << 28))));
	e = cpuid_find(c, 7, 0);
	CHECK(!(e->ebx & (1u << 20)));
	CHECK(!(e->ebx & (1u << 5)));
	CHECK(!(e->ebx & (1u << 0))); /* FSGSBASE */
	CHECK(e->ebx & (1u << 7)); /* SMEP stays */
	CHECK(cpuid_find(c, 0xd, 0) == NULL);
	CHECK(cpuid_find(c, 0xd, 1) == NULL);
	CHECK_EQ(c->nent, 6);
	CHECK(!(cpuid_find(c, 0x80000001, 0)->ecx & (1u << 5)));
	/* PV send-IPI hangs SMP bring-up on kvm_pvm; its kin go too. */
	e = cpuid_find(c, 0x40000001, 0);
	CHECK_EQ(e->eax, 0x1 | 0x8 | 0x20 | 0x40);
	CHECK_EQ(h.kvm_pv, KVM_PV_ASYNC_PF | KVM_PV_UNHALT | KVM_PV_TLB_FLUSH |
				   KVM_PV_SEND_IPI | KVM_PV_SCHED_YIELD |
				   KVM_PV_ASYNC_PF_INT);
	CHECK(!strcmp(cpuid_kvm_pv_name(KVM_PV_SEND_IPI), "pv_send_ipi"));
	CHECK(cpuid_kvm_pv_name(1u << 0) == NULL);
	CHECK(strstr(cpuid_policy_cmdline(CPU_POLICY_SAFE), "noxsave") != NULL);
	CHECK(strstr(cpuid_policy_cmdline(CPU_POLICY_SAFE), " nofsgsbase ") !=
	      NULL);
	/* 6.1 ignores `nosmap`; SMAP goes by its bit number (9*32+20). */
	CHECK(strstr(cpuid_policy_cmdline(CPU_POLICY_SAFE),
		     "clearcpuid=151,141,308") != NULL);
	/* glibc's AVX off, as an environment word Linux gives init: no '.'
	 * in the name before the '='. */
	const char *t = strstr(cpuid_policy_cmdline(CPU_POLICY_SAFE),
			       " GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,");
	CHECK(t != NULL);
	CHECK(t && strchr(t + 1, '.') > strchr(t + 1, '='));
	free(c);
}

static void test_resolve(void)
{
	CHECK_EQ(cpuid_resolve_policy(CPU_POLICY_AUTO, true), CPU_POLICY_SAFE);
	CHECK_EQ(cpuid_resolve_policy(CPU_POLICY_AUTO, false), CPU_POLICY_HOST);
	CHECK_EQ(cpuid_resolve_policy(CPU_POLICY_HOST, true), CPU_POLICY_HOST);
	setenv("KHYVE_BACKEND", "pvm", 1);
	CHECK(cpuid_backend_is_software());
	setenv("KHYVE_BACKEND", "hw", 1);
	CHECK(!cpuid_backend_is_software());
	unsetenv("KHYVE_BACKEND");
}

int main(void)
{
	RUN(test_host_policy);
	RUN(test_safe_policy);
	RUN(test_resolve);
	return unit_done();
}
