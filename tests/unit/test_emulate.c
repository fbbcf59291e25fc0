/* SPDX-License-Identifier: BSD-2-Clause */
#include <string.h>

#include "emulate.h"
#include "unit.h"

static uint8_t mem[4096];

static int rd(void *o, uint64_t gva, void *buf, unsigned len)
{
	if (gva > sizeof(mem) || len > sizeof(mem) - gva)
		return -1;
	memcpy(buf, mem + gva, len);
	return 0;
}

static int wr(void *o, uint64_t gva, const void *buf, unsigned len)
{
	if (gva > sizeof(mem) || len > sizeof(mem) - gva)
		return -1;
	memcpy(mem + gva, buf, len);
	return 0;
}

static void ctx_init(struct emul_ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->rip = 0x1000;
	c->rflags = 0x2 | 0xfff;
	c->long_mode = true;
	c->read = rd;
	c->write = wr;
}

static void test_int3_fpu(void)
{
	struct emul_ctx c;

	ctx_init(&c);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xcc", 1), 0);
	CHECK(c.inject_bp);
	CHECK_EQ(c.rip, 0x1001);
	CHECK_EQ(c.kind, EMUL_INT3);

	ctx_init(&c);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x9b", 1), 0);
	CHECK_EQ(c.rip, 0x1001);
	CHECK(!c.inject_bp);

	ctx_init(&c);
	c.fsw = 0x80ff | 0x3800;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xdb\xe2", 2), 0);
	CHECK_EQ(c.fsw, 0x3800);
	CHECK(c.fpu_dirty);
	CHECK_EQ(c.rip, 0x1002);

	ctx_init(&c);
	c.ftwx = 0xff;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\x77", 2), 0);
	CHECK_EQ(c.ftwx, 0);

	ctx_init(&c);
	c.fcw = 0;
	c.fsw = 0xffff;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x9b\xdb\xe3", 3), 0);
	/* "finit" is FWAIT + FNINIT: this decodes the FWAIT alone. */
	CHECK_EQ(c.kind, EMUL_FWAIT);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xdb\xe3", 2), 0);
	CHECK_EQ(c.fcw, 0x37f);
	CHECK_EQ(c.fsw, 0);
}

static void test_popcnt(void)
{
	struct emul_ctx c;

	/* popcnt %rcx,%rax : f3 48 0f b8 c1 */
	ctx_init(&c);
	c.gpr[R_CX] = 0xf0f0f0f0f0f0f0f0ULL;
	c.gpr[R_AX] = 123;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf3\x48\x0f\xb8\xc1", 5), 0);
	CHECK_EQ(c.gpr[R_AX], 32);
	CHECK(!(c.rflags & (1u << 6)));
	CHECK(!(c.rflags & 1));
	CHECK_EQ(c.rip, 0x1005);
	/* popcnt %ecx,%eax zero-extends, ZF for zero source. */
	ctx_init(&c);
	c.gpr[R_CX] = 0xffffffff00000000ULL;
	c.gpr[R_AX] = ~0ULL;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf3\x0f\xb8\xc1", 4), 0);
	CHECK_EQ(c.gpr[R_AX], 0);
	CHECK(c.rflags & (1u << 6));
	/* popcnt %r9w,%r10w : 66 f3 45 0f b8 d1 keeps the upper bits. */
	ctx_init(&c);
	c.gpr[9] = 0x7;
	c.gpr[10] = 0xabcd0000ffffULL;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x66\xf3\x45\x0f\xb8\xd1", 6),
		 0);
	CHECK_EQ(c.gpr[10], 0xabcd00000003ULL);
	/* popcnt 0x10(%rbx),%rdx : f3 48 0f b8 53 10 */
	ctx_init(&c);
	c.gpr[R_BX] = 0x100;
	memset(mem + 0x110, 0xff, 8);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf3\x48\x0f\xb8\x53\x10", 6),
		 0);
	CHECK_EQ(c.gpr[R_DX], 64);
	/* RIP-relative: popcnt 0x20(%rip),%eax : f3 0f b8 05 20 00 00 00 */
	ctx_init(&c);
	c.rip = 0x200;
	mem[0x200 + 8 + 0x20] = 0x3;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf3\x0f\xb8\x05\x20\x00\x00\x00",
			       8),
		 0);
	CHECK_EQ(c.gpr[R_AX], 2);
	/* A fault on the memory operand is reported, state untouched. */
	ctx_init(&c);
	c.gpr[R_BX] = 0x100000;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf3\x48\x0f\xb8\x13", 5),
		 -EFAULT);
	CHECK_EQ(c.rip, 0x1000);
}

static void test_clac_cmpxchg16b(void)
{
	struct emul_ctx c;
	uint64_t v[2];

	ctx_init(&c);
	c.rflags |= 1u << 18;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\x01\xca", 3), 0);
	CHECK(!(c.rflags & (1u << 18)));
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\x01\xcb", 3), 0);
	CHECK(c.rflags & (1u << 18));
	CHECK_EQ(c.rip, 0x1006);

	/* lock cmpxchg16b (%rdi) : f0 48 0f c7 0f */
	ctx_init(&c);
	v[0] = 1;
	v[1] = 2;
	memcpy(mem + 0x300, v, 16);
	c.gpr[R_DI] = 0x300;
	c.gpr[R_AX] = 1;
	c.gpr[R_DX] = 2;
	c.gpr[R_BX] = 10;
	c.gpr[R_CX] = 20;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf0\x48\x0f\xc7\x0f", 5), 0);
	memcpy(v, mem + 0x300, 16);
	CHECK_EQ(v[0], 10);
	CHECK_EQ(v[1], 20);
	CHECK(c.rflags & (1u << 6));
	/* Mismatch loads the memory value into RDX:RAX and clears ZF. */
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf0\x48\x0f\xc7\x0f", 5), 0);
	CHECK_EQ(c.gpr[R_AX], 10);
	CHECK_EQ(c.gpr[R_DX], 20);
	CHECK(!(c.rflags & (1u << 6)));
}

static void test_mxcsr(void)
{
	struct emul_ctx c;
	uint32_t v = 0x1f80 | 0x8000;

	/* ldmxcsr 0x4(%rsp) : 0f ae 54 24 04, as Debian's kernel_fpu_begin. */
	ctx_init(&c);
	c.gpr[R_SP] = 0x400;
	c.mxcsr = 0x1f80;
	memcpy(mem + 0x404, &v, 4);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\xae\x54\x24\x04", 5),
		 0);
	CHECK_EQ(c.mxcsr, 0x9f80);
	CHECK(c.fpu_dirty);
	CHECK_EQ(c.kind, EMUL_LDMXCSR);
	CHECK_EQ(c.rip, 0x1005);
	/* stmxcsr (%rdi) : 0f ae 1f */
	c.gpr[R_DI] = 0x500;
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\xae\x1f", 3), 0);
	memcpy(&v, mem + 0x500, 4);
	CHECK_EQ(v, 0x9f80);
	CHECK_EQ(c.kind, EMUL_STMXCSR);
	/* Reserved bits: the guest's #GP, not ours. */
	v = 0x10000;
	memcpy(mem + 0x404, &v, 4);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\xae\x54\x24\x04", 5),
		 -ENOTSUP);
	/* lfence (register form) and xsave (/4) are not ours either. */
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\xae\xe8", 3), -ENOTSUP);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\xae\x27", 3), -ENOTSUP);
}

static void test_unknown_and_truncated(void)
{
	struct emul_ctx c;

	ctx_init(&c);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x0f\xae\x2f", 3), -ENOTSUP);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x90", 1), -ENOTSUP);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\xf3\x48\x0f", 3), -EINVAL);
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"", 0), -EINVAL);
	/* 15 prefixes and no opcode. */
	CHECK_EQ(emul_complete(&c, (const uint8_t *)"\x66\x66\x66\x66\x66\x66\x66"
						   "\x66\x66\x66\x66\x66\x66\x66"
						   "\x66\x66",
			       16),
		 -EINVAL);
	CHECK_EQ(c.rip, 0x1000);
}

int main(void)
{
	RUN(test_int3_fpu);
	RUN(test_popcnt);
	RUN(test_clac_cmpxchg16b);
	RUN(test_mxcsr);
	RUN(test_unknown_and_truncated);
	return unit_done();
}
