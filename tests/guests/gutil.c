// SPDX-License-Identifier: BSD-2-Clause
/* Pure helpers shared by the guest and its host unit test; see gutil.h. */
#include "gutil.h"

size_t g_strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int g_strncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i])
			return (unsigned char)a[i] - (unsigned char)b[i];
		if (!a[i])
			return 0;
	}
	return 0;
}

struct outbuf {
	char *buf;
	size_t n, len;
};

static void ob_putc(struct outbuf *o, char c)
{
	if (o->len + 1 < o->n)
		o->buf[o->len] = c;
	o->len++;
}

static void ob_num(struct outbuf *o, uint64_t v, unsigned base, int neg,
		   unsigned width, char pad)
{
	char tmp[24];
	unsigned i = 0;

	do {
		unsigned d = (unsigned)(v % base);

		tmp[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	if (neg)
		tmp[i++] = '-';
	while (width > i) {
		ob_putc(o, pad);
		width--;
	}
	while (i)
		ob_putc(o, tmp[--i]);
}

/* Enough of printf for the console protocol: %s %c %d %u %x %p, l/ll/z. */
int g_vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
	struct outbuf o = {buf, n, 0};

	for (; *fmt; fmt++) {
		unsigned width = 0, lng = 0;
		char pad = ' ';

		if (*fmt != '%') {
			ob_putc(&o, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);

			if (!s)
				s = "(null)";
			for (size_t l = g_strlen(s); width > l; width--)
				ob_putc(&o, ' ');
			while (*s)
				ob_putc(&o, *s++);
			break;
		}
		case 'c':
			ob_putc(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);

			ob_num(&o, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 10,
			       v < 0, width, pad);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = lng ? va_arg(ap, uint64_t)
					 : va_arg(ap, unsigned);

			ob_num(&o, v, *fmt == 'u' ? 10 : 16, 0, width, pad);
			break;
		}
		case 'p':
			ob_putc(&o, '0');
			ob_putc(&o, 'x');
			ob_num(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), 16,
			       0, width, pad);
			break;
		case '%':
			ob_putc(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			ob_putc(&o, '%');
			ob_putc(&o, *fmt);
			break;
		}
	}
	if (n)
		buf[o.len < n ? o.len : n - 1] = '\0';
	return (int)o.len;
}

int g_snprintf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = g_vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r;
}

uint64_t g_pattern(uint64_t addr, uint64_t seed)
{
	uint64_t x = addr ^ seed;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void gcfg_defaults(struct gcfg *c)
{
	*c = (struct gcfg){
		.tests = 0,
		.exit_mode = EXIT_POWEROFF,
		.interval_ms = 100,
		.check_every = 10,
		.kbd_xlate = 1,
		.mem_kb = 4096,
		.dirty_pages = 16,
		.seed = 0x6b68797665ULL, /* "khyve" */
		.timer_ms = 100,
		/* A bound for a broken bring-up, not a time it may take: 4
		 * vCPUs on 2 loaded host CPUs can need seconds. */
		.smp_timeout_ms = 30000,
		.smp_slice_kb = 1024,
		.vblk_sectors = 64,
		.vblk_qd = 1,
		.vblk_bs_kb = 64,
		.vblk_rand_ms = 1000,
		.vstream_n = 2000,
		.vstream_qd = 16,
		.vnet_src = 0x0a00020f, /* 10.0.2.15 */
		.vnet_dst = 0x0a000201, /* 10.0.2.1 */
		.vnet_dport = 5555,
		.vnet_port = 5556,
		.vnet_n = 64,
		.vnet_len = 64,
		.vnet_qd = 64,
	};
}

static int tok_eq(const char *s, size_t len, const char *word)
{
	size_t wl = g_strlen(word);

	return len == wl && !g_strncmp(s, word, len);
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		len -= 2;
	}
	if (!len)
		return -G_EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d;
		char ch = s[i];

		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (base == 16 && ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else if (base == 16 && ch >= 'A' && ch <= 'F')
			d = (unsigned)(ch - 'A' + 10);
		else
			return -G_EINVAL;
		if (v > (UINT64_MAX - d) / base)
			return -G_ERANGE;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

int g_parse_ipv4(const char *s, size_t len, uint32_t *out)
{
	uint32_t ip = 0;
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t j = i;
		uint64_t v;

		while (j < len && s[j] != '.')
			j++;
		/* Decimal only: "0x" or a leading-zero octet is an error. */
		if (j == i || j - i > 3 || (j - i > 1 && s[i] == '0') ||
		    parse_u64(s + i, j - i, &v) < 0 || v > 255)
			return -G_EINVAL;
		if ((part < 3) != (j < len))
			return -G_EINVAL;
		ip = ip << 8 | (uint32_t)v;
		i = j + 1;
	}
	*out = ip;
	return 0;
}

static int parse_tests(struct gcfg *c, const char *s, size_t len)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} names[] = {
		{"serial", T_SERIAL}, {"mem", T_MEM},	{"timer", T_TIMER},
		{"smp", T_SMP},	      {"echo", T_ECHO}, {"all", T_ALL},
		{"vblk", T_VBLK},     {"vrng", T_VRNG},
		{"vstream", T_VSTREAM},
		{"vcon", T_VCON},     {"vnet", T_VNET},
	};
	size_t i = 0;

	while (i < len) {
		size_t j = i, k;

		while (j < len && s[j] != ',')
			j++;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			if (tok_eq(s + i, j - i, names[k].name)) {
				c->tests |= names[k].bit;
				break;
			}
		}
		if (k == sizeof(names) / sizeof(names[0]) && j > i)
			return -G_EINVAL;
		i = j + 1;
	}
	return 0;
}

static void note_bad(struct gcfg *c, const char *s, size_t len)
{
	size_t i;

	if (!c->nbad++) {
		for (i = 0; i < len && i + 1 < sizeof(c->bad); i++)
			c->bad[i] = s[i];
		c->bad[i] = '\0';
	}
}

static int parse_token(struct gcfg *c, const char *s, size_t len)
{
	static const struct {
		const char *key;
		size_t off;
		int is32;
	} nums[] = {
#define NUM(f, w) {#f, offsetof(struct gcfg, f), w}
		NUM(interval_ms, 1),	NUM(check_every, 1),
		NUM(count, 0),		NUM(mem_kb, 1),
		NUM(dirty_pages, 1),	NUM(mem_limit_mb, 0),
		NUM(seed, 0),		NUM(timer_ms, 1),
		NUM(smp_timeout_ms, 1), NUM(smp_slice_kb, 1),
		NUM(tsc_khz, 1),	NUM(vblk_sectors, 1),
		NUM(vblk_bench_mb, 1),	NUM(vblk_qd, 1),
		NUM(vblk_bs_kb, 1),	NUM(vblk_rand_ms, 1),
		NUM(vstream_n, 1),	NUM(vstream_qd, 1),
		NUM(vstream_read, 1),	NUM(vstream_span, 1),
		NUM(touch_mb, 0),	NUM(vnet_port, 1),
		NUM(vnet_n, 1),		NUM(vnet_len, 1),
		NUM(vnet_gap_us, 1),	NUM(vnet_echo_ms, 1),
		NUM(vnet_bench_mb, 1),	NUM(vnet_qd, 1),
		NUM(counter_high, 1),	NUM(zero_every, 1),
		NUM(disk_blocks, 1),
		NUM(kbd_xlate, 1),
		NUM(hostile_ms, 1),	NUM(hostile_seed, 0),
		NUM(hostile_mask, 1),
#undef NUM
	};
	size_t eq = 0;
	const char *val;
	size_t vlen;
	uint64_t v;

	while (eq < len && s[eq] != '=')
		eq++;
	if (eq == len) {
		if (tok_eq(s, len, "counter")) {
			c->counter = 1;
			c->explicit = 1;
			return 0;
		}
		if (tok_eq(s, len, "busy")) {
			c->busy = 1;
			c->explicit = 1;
			return 0;
		}
		if (tok_eq(s, len, "clock")) {
			c->clock = 1;
			return 0;
		}
		if (tok_eq(s, len, "gaps")) {
			c->gaps = 1;
			return 0;
		}
		if (tok_eq(s, len, "touch_zip")) {
			c->touch_zip = 1;
			return 0;
		}
		if (tok_eq(s, len, "genid")) {
			c->genid = 1;
			return 0;
		}
		if (tok_eq(s, len, "kbd")) {
			c->kbd = 1;
			c->explicit = 1;
			return 0;
		}
		return -G_EINVAL;
	}
	val = s + eq + 1;
	vlen = len - eq - 1;
	if (tok_eq(s, eq, "tests")) {
		c->explicit = 1;
		return parse_tests(c, val, vlen);
	}
	if (tok_eq(s, eq, "exit")) {
		c->explicit = 1;
		if (tok_eq(val, vlen, "poweroff"))
			c->exit_mode = EXIT_POWEROFF;
		else if (tok_eq(val, vlen, "reboot"))
			c->exit_mode = EXIT_REBOOT;
		else if (tok_eq(val, vlen, "triplefault"))
			c->exit_mode = EXIT_TRIPLEFAULT;
		else
			return -G_EINVAL;
		return 0;
	}
	if (tok_eq(s, eq, "vnet_src"))
		return g_parse_ipv4(val, vlen, &c->vnet_src);
	if (tok_eq(s, eq, "vnet_dst")) {
		/* a.b.c.d[:port] */
		size_t colon = 0;
		uint32_t ip;

		while (colon < vlen && val[colon] != ':')
			colon++;
		if (g_parse_ipv4(val, colon, &ip) < 0)
			return -G_EINVAL;
		if (colon < vlen) {
			if (parse_u64(val + colon + 1, vlen - colon - 1, &v) < 0 ||
			    !v || v > 65535)
				return -G_EINVAL;
			c->vnet_dport = (uint32_t)v;
		}
		c->vnet_dst = ip;
		return 0;
	}
	for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++) {
		if (!tok_eq(s, eq, nums[k].key))
			continue;
		if (parse_u64(val, vlen, &v) < 0)
			return -G_EINVAL;
		if (nums[k].is32) {
			if (v > UINT32_MAX)
				return -G_ERANGE;
			*(uint32_t *)((char *)c + nums[k].off) = (uint32_t)v;
		} else {
			*(uint64_t *)((char *)c + nums[k].off) = v;
		}
		return 0;
	}
	return -G_EINVAL;
}

int gcfg_parse(struct gcfg *c, const char *cmdline)
{
	const char *p = cmdline ? cmdline : "";
	int ret = 0;

	while (*p) {
		const char *s;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		s = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		if (p == s)
			continue;
		if (parse_token(c, s, (size_t)(p - s)) < 0) {
			note_bad(c, s, (size_t)(p - s));
			ret = -G_EINVAL;
		}
	}
	/* Nothing asked for: the quick self-test that needs no input. */
	if (!c->explicit)
		c->tests = T_ALL;
	if (!c->interval_ms)
		c->interval_ms = 1;
	if (!c->check_every)
		c->check_every = 1;
	return ret;
}

/* RAM entries that wrap past 2^64 are garbage and ignored everywhere. */
static int mm_valid_ram(const struct mm_entry *e)
{
	return e->type == MM_RAM && e->addr + e->size >= e->addr;
}

uint64_t gmm_ram_total(const struct mm_entry *e, unsigned n)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < n; i++)
		if (mm_valid_ram(&e[i]))
			sum += e[i].size;
	return sum;
}

uint64_t gmm_ram_top(const struct mm_entry *e, unsigned n)
{
	uint64_t top = 0;

	for (unsigned i = 0; i < n; i++)
		if (mm_valid_ram(&e[i]) && e[i].addr + e[i].size > top)
			top = e[i].addr + e[i].size;
	return top;
}

int gmm_is_ram(const struct mm_entry *e, unsigned n, uint64_t addr,
	       uint64_t len)
{
	for (unsigned i = 0; i < n; i++) {
		if (!mm_valid_ram(&e[i]) || addr < e[i].addr)
			continue;
		if (len <= e[i].size && addr - e[i].addr <= e[i].size - len)
			return 1;
	}
	return 0;
}

int gmm_clip(const struct mm_entry *e, unsigned i, uint64_t lo, uint64_t hi,
	     uint64_t *start, uint64_t *end)
{
	uint64_t s, t;

	if (!mm_valid_ram(&e[i]))
		return 0;
	s = e[i].addr > lo ? e[i].addr : lo;
	t = e[i].addr + e[i].size < hi ? e[i].addr + e[i].size : hi;
	s = (s + 7) & ~7ULL;
	t &= ~7ULL;
	if (s >= t)
		return 0;
	*start = s;
	*end = t;
	return 1;
}

int gacpi_checksum_ok(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return sum == 0;
}

static uint32_t rd32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

int gacpi_parse_madt(const uint8_t *madt, uint32_t len, struct madt_info *out)
{
	uint32_t off = 44;

	*out = (struct madt_info){.irq0_gsi = -1};
	if (len < 44 || g_strncmp((const char *)madt, "APIC", 4) ||
	    rd32(madt + 4) != len || !gacpi_checksum_ok(madt, len))
		return -G_EINVAL;
	out->lapic_addr = rd32(madt + 36);
	while (off + 2 <= len) {
		const uint8_t *s = madt + off;
		uint8_t type = s[0], slen = s[1];

		if (slen < 2 || off + slen > len)
			return -G_EINVAL;
		if (type == 0 && slen >= 8 && (rd32(s + 4) & 1)) {
			/* Processor Local APIC, enabled */
			if (out->ncpus < GUEST_MAX_CPUS)
				out->apic_ids[out->ncpus] = s[3];
			out->ncpus++;
		} else if (type == 9 && slen >= 16 && (rd32(s + 8) & 1)) {
			/* Processor Local x2APIC, enabled */
			if (out->ncpus < GUEST_MAX_CPUS)
				out->apic_ids[out->ncpus] = rd32(s + 4);
			out->ncpus++;
		} else if (type == 1 && slen >= 12 && !out->ioapic_addr) {
			out->ioapic_addr = rd32(s + 4);
			out->ioapic_gsi_base = rd32(s + 8);
		} else if (type == 2 && slen >= 10 && s[2] == 0 && s[3] == 0) {
			/* Interrupt Source Override for ISA IRQ0 */
			out->irq0_gsi = (int)rd32(s + 4);
		}
		off += slen;
	}
	return out->ncpus ? 0 : -G_ENOENT;
}

static const uint8_t *find_rsdp(uint64_t rsdp_pa, phys_fn phys, void *ctx)
{
	const uint8_t *p;

	if (rsdp_pa) {
		p = phys(rsdp_pa, 20, ctx);
		if (p && !g_strncmp((const char *)p, "RSD PTR ", 8) &&
		    gacpi_checksum_ok(p, 20))
			return p;
	}
	p = phys(0xe0000, 0x20000, ctx);
	if (!p)
		return NULL;
	for (uint32_t off = 0; off + 20 <= 0x20000; off += 16)
		if (!g_strncmp((const char *)p + off, "RSD PTR ", 8) &&
		    gacpi_checksum_ok(p + off, 20))
			return p + off;
	return NULL;
}

/* Table @sig through the XSDT (or RSDT): its address and length. */
static int gacpi_find_table(uint64_t rsdp_pa, phys_fn phys, void *ctx,
			    const char *sig, uint64_t *pa, uint32_t *tlen)
{
	const uint8_t *rsdp = find_rsdp(rsdp_pa, phys, ctx);
	const uint8_t *sdt, *hdr;
	uint64_t sdt_pa;
	uint32_t len, esz = 8;

	if (!rsdp)
		return -G_ENOENT;
	sdt_pa = rsdp[15] >= 2 ? rd64(rsdp + 24) : 0;
	if (!sdt_pa) {
		sdt_pa = rd32(rsdp + 16);
		esz = 4;
	}
	hdr = phys(sdt_pa, 36, ctx);
	if (!hdr)
		return -G_EINVAL;
	len = rd32(hdr + 4);
	sdt = len >= 36 ? phys(sdt_pa, len, ctx) : NULL;
	if (!sdt || !gacpi_checksum_ok(sdt, len))
		return -G_EINVAL;
	for (uint32_t off = 36; off + esz <= len; off += esz) {
		uint64_t a = esz == 8 ? rd64(sdt + off) : rd32(sdt + off);
		const uint8_t *t = phys(a, 36, ctx);

		if (t && !g_strncmp((const char *)t, sig, 4)) {
			*pa = a;
			*tlen = rd32(t + 4);
			return 0;
		}
	}
	return -G_ENOENT;
}

int gacpi_find_madt(uint64_t rsdp_pa, phys_fn phys, void *ctx,
		    struct madt_info *out)
{
	const uint8_t *t;
	uint64_t pa;
	uint32_t tlen;
	int ret = gacpi_find_table(rsdp_pa, phys, ctx, "APIC", &pa, &tlen);

	if (ret)
		return ret;
	t = phys(pa, tlen, ctx);
	if (!t)
		return -G_EINVAL;
	return gacpi_parse_madt(t, tlen, out);
}

/* An AML integer (ZeroOp, OneOp, Byte..QWordPrefix): its size, 0 if none. */
static unsigned aml_int(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	static const unsigned size[] = {1, 2, 4, 8}; /* 0x0a..0x0d, 0x0e */

	if (p >= end)
		return 0;
	if (p[0] == 0x00 || p[0] == 0x01) {
		*v = p[0];
		return 1;
	}
	if ((p[0] >= 0x0a && p[0] <= 0x0c) || p[0] == 0x0e) {
		unsigned n = size[p[0] == 0x0e ? 3 : p[0] - 0x0a];

		if (end - p < (long)(1 + n))
			return 0;
		*v = 0;
		for (unsigned i = 0; i < n; i++)
			*v |= (uint64_t)p[1 + i] << (8 * i);
		return 1 + n;
	}
	return 0;
}

int gaml_vmgenid_addr(const uint8_t *dsdt, uint32_t len, uint64_t *addr)
{
	static const char hid[] = "\x0dVMGENCTR"; /* StringPrefix, then NUL */
	const uint8_t *end = dsdt + len, *p = NULL, *q, *lim;
	uint64_t lo, hi;
	unsigned n;

	for (uint32_t off = 36; off + sizeof(hid) <= len && !p; off++)
		if (!g_strncmp((const char *)dsdt + off, hid, sizeof(hid)))
			p = dsdt + off + sizeof(hid);
	if (!p)
		return -G_ENOENT;
	/* The device's ADDR (a Name or a Method) within the next bytes. */
	lim = end - p > 256 ? p + 256 : end;
	for (q = NULL; p + 4 <= lim && !q; p++)
		if (!g_strncmp((const char *)p, "ADDR", 4))
			q = p + 4;
	if (!q)
		return -G_ENOENT;
	/* Method flags and ReturnOp come before the PackageOp, if any. */
	for (n = 0; q < end && *q != 0x12 && n < 8; q++, n++)
		;
	if (q + 2 > end || *q != 0x12)
		return -G_EINVAL;
	q += 2 + (q[1] >> 6); /* PackageOp, PkgLength (1 + extra bytes) */
	if (q >= end || *q++ != 2)
		return -G_EINVAL;
	n = aml_int(q, end, &lo);
	if (!n || !(n = aml_int(q + n, end, &hi)))
		return -G_EINVAL;
	*addr = (lo & 0xffffffffULL) | hi << 32;
	return 0;
}

int gaml_ged_gsi(const uint8_t *dsdt, uint32_t len)
{
	static const char hid[] = "\x0d" "ACPI0013";

	for (uint32_t off = 36; off + sizeof(hid) <= len; off++) {
		if (g_strncmp((const char *)dsdt + off, hid, sizeof(hid)))
			continue;
		/* Its _CRS: the first Extended Interrupt Descriptor after. */
		for (uint32_t p = off; p + 9 <= len && p < off + 64; p++)
			if (dsdt[p] == 0x89 && dsdt[p + 1] >= 6 && dsdt[p + 4])
				return (int)rd32(dsdt + p + 5);
		return -G_EINVAL;
	}
	return -G_ENOENT;
}

int gacpi_find_dsdt(uint64_t rsdp_pa, phys_fn phys, void *ctx,
		    const uint8_t **out, uint32_t *out_len)
{
	const uint8_t *fadt, *dsdt;
	uint64_t fadt_pa, dsdt_pa = 0;
	uint32_t flen, dlen;
	int ret;

	ret = gacpi_find_table(rsdp_pa, phys, ctx, "FACP", &fadt_pa, &flen);
	if (ret)
		return ret;
	fadt = flen >= 44 ? phys(fadt_pa, flen, ctx) : NULL;
	if (!fadt || !gacpi_checksum_ok(fadt, flen))
		return -G_EINVAL;
	if (flen >= 148)
		dsdt_pa = rd64(fadt + 140); /* X_DSDT */
	if (!dsdt_pa)
		dsdt_pa = rd32(fadt + 40);
	dsdt = phys(dsdt_pa, 36, ctx);
	if (!dsdt || g_strncmp((const char *)dsdt, "DSDT", 4))
		return -G_EINVAL;
	dlen = rd32(dsdt + 4);
	dsdt = dlen >= 36 ? phys(dsdt_pa, dlen, ctx) : NULL;
	if (!dsdt || !gacpi_checksum_ok(dsdt, dlen))
		return -G_EINVAL;
	*out = dsdt;
	*out_len = dlen;
	return 0;
}

int gacpi_find_vmgenid(uint64_t rsdp_pa, phys_fn phys, void *ctx,
		       uint64_t *addr)
{
	const uint8_t *dsdt;
	uint32_t len;
	int ret = gacpi_find_dsdt(rsdp_pa, phys, ctx, &dsdt, &len);

	return ret ? ret : gaml_vmgenid_addr(dsdt, len, addr);
}
