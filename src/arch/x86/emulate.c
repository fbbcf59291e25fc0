/* SPDX-License-Identifier: BSD-2-Clause */
#include "emulate.h"

#include <errno.h>
#include <string.h>

const char *const emul_kind_names[EMUL_NR_KINDS] = {
	"int3", "fwait", "fnclex",     "fninit",  "emms",    "popcnt",
	"clac", "stac",	 "cmpxchg16b", "ldmxcsr", "stmxcsr",
};

#define RFLAGS_CF (1u << 0)
#define RFLAGS_PF (1u << 2)
#define RFLAGS_AF (1u << 4)
#define RFLAGS_ZF (1u << 6)
#define RFLAGS_SF (1u << 7)
#define RFLAGS_OF (1u << 11)
#define RFLAGS_AC (1u << 18)

struct decoder {
	const uint8_t *p;
	unsigned len, pos;
	bool opsize16, rep, lock;
	int seg; /* -1, or 4 (FS) / 5 (GS): the only bases in long mode */
	uint8_t rex;
};

static int next(struct decoder *d, uint8_t *b)
{
	if (d->pos >= d->len || d->pos >= 15)
		return -EINVAL;
	*b = d->p[d->pos++];
	return 0;
}

static int next_n(struct decoder *d, void *out, unsigned n)
{
	uint8_t *o = out;

	for (unsigned i = 0; i < n; i++)
		if (next(d, &o[i]))
			return -EINVAL;
	return 0;
}

struct modrm {
	unsigned mod, reg, rm;
	bool is_mem;
	uint64_t ea;
	bool rip_rel;
	int32_t disp;
};

/* Decode ModRM (+SIB, displacement); the effective address of RIP-relative
 * operands is completed once the instruction length is known. */
static int decode_modrm(struct emul_ctx *c, struct decoder *d, struct modrm *m)
{
	uint8_t b, sib;
	int8_t d8;
	int32_t d32;

	if (next(d, &b))
		return -EINVAL;
	m->mod = b >> 6;
	m->reg = ((b >> 3) & 7) | ((d->rex & 4) ? 8 : 0);
	m->rm = (b & 7) | ((d->rex & 1) ? 8 : 0);
	m->is_mem = m->mod != 3;
	m->rip_rel = false;
	m->ea = 0;
	m->disp = 0;
	if (!m->is_mem)
		return 0;
	if ((b & 7) == 4) {
		unsigned scale, index, base;

		if (next(d, &sib))
			return -EINVAL;
		scale = sib >> 6;
		index = ((sib >> 3) & 7) | ((d->rex & 2) ? 8 : 0);
		base = (sib & 7) | ((d->rex & 1) ? 8 : 0);
		if (index != 4)
			m->ea += c->gpr[index] << scale;
		if ((sib & 7) == 5 && m->mod == 0) {
			if (next_n(d, &d32, 4))
				return -EINVAL;
			m->ea += (uint64_t)(int64_t)d32;
		} else {
			m->ea += c->gpr[base];
		}
	} else if ((b & 7) == 5 && m->mod == 0) {
		if (next_n(d, &d32, 4))
			return -EINVAL;
		if (c->long_mode) {
			m->rip_rel = true;
			m->disp = d32;
		} else {
			m->ea = (uint32_t)d32;
		}
	} else {
		m->ea = c->gpr[m->rm];
	}
	if (m->mod == 1) {
		if (next_n(d, &d8, 1))
			return -EINVAL;
		m->ea += (uint64_t)(int64_t)d8;
	} else if (m->mod == 2) {
		if (next_n(d, &d32, 4))
			return -EINVAL;
		m->ea += (uint64_t)(int64_t)d32;
	}
	return 0;
}

static uint64_t finish_ea(struct emul_ctx *c, struct decoder *d,
			  struct modrm *m)
{
	uint64_t ea = m->ea;

	if (m->rip_rel)
		ea = c->rip + d->pos + (int64_t)m->disp;
	if (d->seg == 4)
		ea += c->fs_base;
	else if (d->seg == 5)
		ea += c->gs_base;
	if (!c->long_mode)
		ea = (uint32_t)ea;
	return ea;
}

static void write_gpr(struct emul_ctx *c, unsigned reg, uint64_t v,
		      unsigned bytes)
{
	if (bytes == 8)
		c->gpr[reg] = v;
	else if (bytes == 4)
		c->gpr[reg] = (uint32_t)v; /* 32-bit writes zero-extend */
	else
		c->gpr[reg] = (c->gpr[reg] & ~0xffffULL) | (uint16_t)v;
}

static int do_popcnt(struct emul_ctx *c, struct decoder *d)
{
	struct modrm m;
	unsigned bytes = (d->rex & 8) ? 8 : d->opsize16 ? 2 : 4;
	uint64_t src = 0;
	int ret;

	ret = decode_modrm(c, d, &m);
	if (ret)
		return ret;
	if (m.is_mem) {
		if (!c->read ||
		    c->read(c->opaque, finish_ea(c, d, &m), &src, bytes))
			return -EFAULT;
	} else {
		src = c->gpr[m.rm];
	}
	if (bytes < 8)
		src &= (1ULL << (bytes * 8)) - 1;
	write_gpr(c, m.reg, (uint64_t)__builtin_popcountll(src), bytes);
	c->rflags &= ~(uint64_t)(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF |
				 RFLAGS_SF | RFLAGS_OF);
	if (!src)
		c->rflags |= RFLAGS_ZF;
	c->gpr_dirty = true;
	c->kind = EMUL_POPCNT;
	return 0;
}

/*
 * CMPXCHG16B. The caller has this vCPU out of KVM_RUN; other vCPUs may be
 * running. The read-compare-write below goes through the guest's memory
 * with a 16-byte atomic compare-exchange on the host mapping when the
 * caller's write op provides one; otherwise it is best effort.
 */
static int do_cmpxchg16b(struct emul_ctx *c, struct decoder *d)
{
	struct modrm m;
	uint64_t mem[2], ea;
	int ret;

	ret = decode_modrm(c, d, &m);
	if (ret)
		return ret;
	if (!m.is_mem || (m.reg & 7) != 1 || !(d->rex & 8))
		return -ENOTSUP;
	ea = finish_ea(c, d, &m);
	if (!c->read || !c->write || c->read(c->opaque, ea, mem, 16))
		return -EFAULT;
	if (mem[0] == c->gpr[R_AX] && mem[1] == c->gpr[R_DX]) {
		uint64_t nv[2] = {c->gpr[R_BX], c->gpr[R_CX]};

		if (c->write(c->opaque, ea, nv, 16))
			return -EFAULT;
		c->rflags |= RFLAGS_ZF;
	} else {
		c->gpr[R_AX] = mem[0];
		c->gpr[R_DX] = mem[1];
		c->rflags &= ~(uint64_t)RFLAGS_ZF;
	}
	c->gpr_dirty = true;
	c->kind = EMUL_CMPXCHG16B;
	return 0;
}

/* LDMXCSR m32 (0f ae /2) and STMXCSR m32 (0f ae /3). */
static int do_mxcsr(struct emul_ctx *c, struct decoder *d)
{
	struct modrm m;
	uint32_t v;
	uint64_t ea;
	int ret;

	ret = decode_modrm(c, d, &m);
	if (ret)
		return ret;
	/* Register forms are the fences, other /n are XSAVE and friends. */
	if (!m.is_mem || ((m.reg & 7) != 2 && (m.reg & 7) != 3))
		return -ENOTSUP;
	ea = finish_ea(c, d, &m);
	if ((m.reg & 7) == 2) {
		if (!c->read || c->read(c->opaque, ea, &v, 4))
			return -EFAULT;
		/* Reserved bits would raise #GP: leave that to the guest. */
		if (v & ~0xffffu)
			return -ENOTSUP;
		c->mxcsr = v;
		c->fpu_dirty = true;
		c->kind = EMUL_LDMXCSR;
	} else {
		v = c->mxcsr;
		if (!c->write || c->write(c->opaque, ea, &v, 4))
			return -EFAULT;
		c->kind = EMUL_STMXCSR;
	}
	return 0;
}

/*
 * Legacy prefixes, then REX (long mode only, must come last). Leaves the
 * opcode's first byte in @op.
 */
static int decode_prefixes(const struct emul_ctx *c, struct decoder *d,
			   uint8_t *op)
{
	uint8_t b;

	for (;;) {
		if (next(d, &b))
			return -EINVAL;
		if (b == 0x66)
			d->opsize16 = true;
		else if (b == 0xf3)
			d->rep = true;
		else if (b == 0xf0)
			d->lock = true;
		else if (b == 0x64)
			d->seg = 4;
		else if (b == 0x65)
			d->seg = 5;
		else if (b == 0x2e || b == 0x36 || b == 0x3e || b == 0x26 ||
			 b == 0xf2 || b == 0x67)
			continue; /* no effect on the instructions handled */
		else
			break;
	}
	if (c->long_mode && (b & 0xf0) == 0x40) {
		d->rex = b;
		if (next(d, &b))
			return -EINVAL;
	}
	*op = b;
	return 0;
}

/* DB E2 (FNCLEX) and DB E3 (FNINIT). */
static int do_x87_db(struct emul_ctx *c, struct decoder *d)
{
	uint8_t b2;

	if (next(d, &b2))
		return -EINVAL;
	if (b2 == 0xe2) { /* FNCLEX: clear PE..ES and busy */
		c->fsw &= 0x7f00;
		c->kind = EMUL_FNCLEX;
		c->fpu_dirty = true;
		return 0;
	}
	if (b2 == 0xe3) { /* FNINIT */
		c->fcw = 0x37f;
		c->fsw = 0;
		c->ftwx = 0;
		c->kind = EMUL_FNINIT;
		c->fpu_dirty = true;
		return 0;
	}
	return -ENOTSUP;
}

/* 0F 01 CA (CLAC) and 0F 01 CB (STAC). */
static int do_0f01(struct emul_ctx *c, struct decoder *d)
{
	uint8_t b3;

	if (next(d, &b3))
		return -EINVAL;
	if (b3 == 0xca) {
		c->rflags &= ~(uint64_t)RFLAGS_AC;
		c->kind = EMUL_CLAC;
		c->gpr_dirty = true;
		return 0;
	}
	if (b3 == 0xcb) {
		c->rflags |= RFLAGS_AC;
		c->kind = EMUL_STAC;
		c->gpr_dirty = true;
		return 0;
	}
	return -ENOTSUP;
}

/* The two-byte (0F xx) opcodes handled. */
static int do_0f(struct emul_ctx *c, struct decoder *d)
{
	uint8_t b2;

	if (next(d, &b2))
		return -EINVAL;
	if (b2 == 0x77) { /* EMMS */
		c->ftwx = 0;
		c->kind = EMUL_EMMS;
		c->fpu_dirty = true;
		return 0;
	}
	if (b2 == 0xb8 && d->rep)
		return do_popcnt(c, d);
	if (b2 == 0x01)
		return do_0f01(c, d);
	if (b2 == 0xc7)
		return do_cmpxchg16b(c, d);
	if (b2 == 0xae)
		return do_mxcsr(c, d);
	return -ENOTSUP;
}

int emul_complete(struct emul_ctx *c, const uint8_t *insn, unsigned len)
{
	struct decoder d = {.p = insn, .len = len, .seg = -1};
	uint8_t b;
	int ret;

	c->inject_bp = c->fpu_dirty = c->gpr_dirty = false;
	ret = decode_prefixes(c, &d, &b);
	if (ret)
		return ret;

	switch (b) {
	case 0xcc: /* INT3: a trap, so #BP is raised with RIP after it. */
		c->kind = EMUL_INT3;
		c->inject_bp = true;
		ret = 0;
		break;
	case 0x9b: /* FWAIT */
		c->kind = EMUL_FWAIT;
		ret = 0;
		break;
	case 0xdb:
		ret = do_x87_db(c, &d);
		break;
	case 0x0f:
		ret = do_0f(c, &d);
		break;
	default:
		ret = -ENOTSUP;
		break;
	}
	if (ret)
		return ret;
	c->len = d.pos;
	c->rip += d.pos;
	if (!c->long_mode)
		c->rip = (uint32_t)c->rip;
	return 0;
}
