/* SPDX-License-Identifier: BSD-2-Clause */
#include <stdlib.h>
#include <string.h>

#include "vcpu_state.h"
#include "unit.h"
#include "unit_snap.h"

static void test_seg_pack(void)
{
	struct kvm_segment k = { .type = 0xb, .s = 1, .dpl = 3, .present = 1,
				 .avl = 1, .l = 1, .db = 0, .g = 1, .unusable = 0 };
	struct kvm_segment back;

	memset(&back, 0, sizeof(back));
	vcpu_seg_unpack(vcpu_seg_pack(&k), &back);
	CHECK_EQ(back.type, 0xb);
	CHECK_EQ(back.s, 1);
	CHECK_EQ(back.dpl, 3);
	CHECK_EQ(back.present, 1);
	CHECK_EQ(back.avl, 1);
	CHECK_EQ(back.l, 1);
	CHECK_EQ(back.db, 0);
	CHECK_EQ(back.g, 1);
	k.unusable = 1;
	k.l = 0;
	k.db = 1;
	vcpu_seg_unpack(vcpu_seg_pack(&k), &back);
	CHECK_EQ(back.unusable, 1);
	CHECK_EQ(back.l, 0);
	CHECK_EQ(back.db, 1);
}

static void test_kvm_roundtrip(void)
{
	struct kvm_regs r, r2;
	struct kvm_sregs sr, sr2;
	struct vcpu_state *s = calloc(1, sizeof(*s));
	uint64_t *p = (uint64_t *)&r;

	for (unsigned i = 0; i < sizeof(r) / 8; i++)
		p[i] = 0x1111111111111111ULL * (i + 1);
	memset(&sr, 0, sizeof(sr));
	sr.cs = (struct kvm_segment){ .base = 0, .limit = 0xffffffff,
				      .selector = 0x10, .type = 0xb,
				      .present = 1, .s = 1, .l = 1, .g = 1 };
	sr.tr = (struct kvm_segment){ .base = 0x1000, .limit = 0x67,
				      .selector = 0x28, .type = 0xb,
				      .present = 1 };
	sr.gdt.base = 0x500;
	sr.gdt.limit = 0x2f;
	sr.cr0 = 0x80050033;
	sr.cr3 = 0x9000;
	sr.cr4 = 0x20;
	sr.efer = 0x500;
	sr.apic_base = 0xfee00900;
	sr.interrupt_bitmap[2] = 0x40;
	vcpu_state_from_kvm(s, &r, &sr);
	CHECK_EQ(s->rip, r.rip);
	CHECK_EQ(s->r15, r.r15);
	CHECK_EQ(s->seg_selector[SEG_CS], 0x10);
	CHECK_EQ(s->seg_base[SEG_TR], 0x1000);
	vcpu_state_to_kvm(s, &r2, &sr2);
	CHECK(memcmp(&r, &r2, sizeof(r)) == 0);
	CHECK_EQ(sr2.cs.l, 1);
	CHECK_EQ(sr2.cs.limit, 0xffffffff);
	CHECK_EQ(sr2.tr.limit, 0x67);
	CHECK_EQ(sr2.efer, 0x500);
	CHECK_EQ(sr2.apic_base, 0xfee00900);
	CHECK_EQ(sr2.interrupt_bitmap[2], 0x40);
	CHECK_EQ(sr2.gdt.limit, 0x2f);
	free(s);
}

/*
 * Every byte of struct vcpu_state is a field of the description or the
 * compiler's padding (16 bytes, before cr0, xcr0, msr_data and mp_state);
 * nothing is deliberately left unsaved.
 */
static void test_desc_covers_state(void)
{
	check_desc_exact(&vcpu_state_snap, struct vcpu_state, NULL, 0);
}

/*
 * The restore's explanation of a KVM_SET_XSAVE refusal names what the
 * snapshot holds and what this VM's CPUID allows: leaf 1's XSAVE bit
 * gates leaf 0xD, and x87/SSE are always allowed.
 */
static void test_xsave_allowed_and_names(void)
{
	struct kvm_cpuid_entry2 e[3] = {
		{ .function = 1, .ecx = 1u << 26 },
		{ .function = 0xd, .index = 0, .eax = 0x207, .edx = 0 },
		{ .function = 0xd, .index = 1, .eax = 0xf },
	};
	char buf[128];

	CHECK_EQ(vcpu_xsave_allowed(e, 3), 0x207);
	e[0].ecx = 0; /* XSAVE hidden: leaf 0xD no longer counts */
	CHECK_EQ(vcpu_xsave_allowed(e, 3), 3);
	CHECK_EQ(vcpu_xsave_allowed(e, 0), 3);
	vcpu_xfeature_names(0x207, buf, sizeof(buf));
	CHECK(!strcmp(buf, "x87 SSE AVX PKRU"));
	vcpu_xfeature_names(1ull << 40 | 4, buf, sizeof(buf));
	CHECK(!strcmp(buf, "AVX bit40"));
	CHECK_EQ(vcpu_xfeature_names(0x207, buf, 8), 7); /* truncated */
	CHECK(!strcmp(buf, "x87 SSE"));
	CHECK_EQ(vcpu_xfeature_names(0, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, ""));
}

/*
 * A component this CPU lacks is dropped from XSTATE_BV only when it
 * carries nothing: initial (all-zero) data and off in the guest's XCR0.
 */
static void test_xsave_fit(void)
{
	uint8_t *x = calloc(1, VCPU_XSAVE_SIZE);
	uint64_t bv = 0x207, got;

	if (!x)
		return;
	memcpy(x + 512, &bv, 8);
	/* PKRU (bit 9) zero, not in XCR0: dropped; AVX allowed: kept. */
	CHECK_EQ(vcpu_xsave_fit(x, 0x7, 0xe7), 0x200);
	memcpy(&got, x + 512, 8);
	CHECK_EQ(got, 0x7);
	/* PKRU holding a value: kept, so KVM refuses and says why. */
	memcpy(x + 512, &bv, 8);
	x[2688] = 0x55;
	CHECK_EQ(vcpu_xsave_fit(x, 0x7, 0xe7), 0);
	memcpy(&got, x + 512, 8);
	CHECK_EQ(got, 0x207);
	/* AVX zero but enabled in XCR0 on a CPU without it: kept. */
	memset(x + 2688, 0, 8);
	bv = 0x7;
	memcpy(x + 512, &bv, 8);
	CHECK_EQ(vcpu_xsave_fit(x, 0x7, 0x3), 0);
	/* ... and off in XCR0 with data in it: kept too. */
	x[600] = 1;
	CHECK_EQ(vcpu_xsave_fit(x, 0x3, 0x3), 0);
	x[600] = 0;
	CHECK_EQ(vcpu_xsave_fit(x, 0x3, 0x3), 0x4);
	/* x87/SSE are never touched. */
	bv = 0x3;
	memcpy(x + 512, &bv, 8);
	CHECK_EQ(vcpu_xsave_fit(x, 0x1, 0x0), 0);
	free(x);
	CHECK(vcpu_msr_is_hyperv(0x40000020) && vcpu_msr_is_hyperv(0x40000000));
	CHECK(!vcpu_msr_is_hyperv(0x4b564d00) && !vcpu_msr_is_hyperv(0x10a));
	CHECK(!vcpu_msr_is_hyperv(0x3fffffff) && !vcpu_msr_is_hyperv(0x40000200));
}

int main(void)
{
	RUN(test_seg_pack);
	RUN(test_kvm_roundtrip);
	RUN(test_desc_covers_state);
	RUN(test_xsave_allowed_and_names);
	RUN(test_xsave_fit);
	return unit_done();
}
