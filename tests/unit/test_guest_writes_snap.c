/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Property: whatever a guest writes to a device register, the device can
 * still be checkpointed and restored. A guest-reachable state that the
 * snapshot description refuses makes every later checkpoint fail; one
 * the restore path refuses makes the snapshot useless.
 *
 * Every value (a dense sample for registers wider than a byte) goes to
 * every guest-writable register of every device model: virtio-pci common
 * config, PCI configuration space, the MSI-X table, UART 8250, i8042,
 * RTC and PM. After each write the device's state is saved through the
 * real snapshot engine against the component's own description (the
 * bounds a checkpoint enforces, not the device's validator), read back,
 * compared field by field and handed to the restore path (state_apply,
 * virtio_pci_post_load) of a second device, which must accept it.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "bus.h"
#include "common.h"
#include "i8042.h"
#include "log.h"
#include "pci.h"
#include "pm.h"
#include "rtc.h"
#include "snap.h"
#include "uart8250.h"
#include "unit.h"
#include "virtio_pci.h"

#define RAM_SIZE (1 * MiB)
#define MAX_SECS 8
/* Moments per state file: bounds the file (pci_dev is ~1.4 KiB). */
#define BATCH 1024
/* Failure lines printed per device; all are counted. */
#define MAX_REPORTS 8

static struct guest_mem mem;
static uint8_t *ram;

/* ---- the harness: moments saved in batches, then loaded and applied ---- */

struct moment {
	unsigned n;
	const struct snap_desc *d[MAX_SECS];
	void *copy[MAX_SECS];
	char what[128];
};

struct prop {
	const char *dev;
	/* The restore path; 0 if it takes the loaded states. */
	int (*apply)(void *const *states, unsigned n);
	struct snap_writer *w;
	char path[64];
	struct moment m[BATCH];
	unsigned nm;
	unsigned moments, failures;
	/* States already tried (their hashes): the same bytes, the same
	 * outcome, so writes that change nothing cost nothing. */
	uint64_t *seen;
	size_t nseen, seen_cap;
	unsigned distinct;
};

/* True if @h was seen before; remembers it otherwise. */
static bool seen_before(struct prop *p, uint64_t h)
{
	size_t mask, i;

	if (!h)
		h = 1; /* 0 marks a free slot */
	if (2 * (p->nseen + 1) > p->seen_cap) {
		size_t cap = p->seen_cap ? 2 * p->seen_cap : 4096;
		uint64_t *t = calloc(cap, sizeof(*t)), *old = p->seen;

		for (size_t k = 0; k < p->seen_cap; k++) {
			if (!old[k])
				continue;
			for (i = old[k] & (cap - 1); t[i];
			     i = (i + 1) & (cap - 1))
				;
			t[i] = old[k];
		}
		free(old);
		p->seen = t;
		p->seen_cap = cap;
	}
	mask = p->seen_cap - 1;
	for (i = h & mask; p->seen[i]; i = (i + 1) & mask)
		if (p->seen[i] == h)
			return true;
	p->seen[i] = h;
	p->nseen++;
	return false;
}

static void fail(struct prop *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail(struct prop *p, const char *fmt, ...)
{
	va_list ap;

	if (p->failures++ >= MAX_REPORTS)
		return;
	fprintf(stderr, "%s: ", p->dev);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

static int writer_open(struct prop *p)
{
	struct snap_host_info h;

	/* tmpfs if there is one: the writer syncs every file it commits. */
	snprintf(p->path, sizeof(p->path), "%s/khyve-gw-%d.snap",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
		 (int)getpid());
	snap_host_info_probe(&h, "unit");
	return snap_writer_open(&p->w, p->path, &h, NULL);
}

static int write_moment(struct prop *p, unsigned idx, const struct moment *m,
			void *const *state)
{
	for (unsigned j = 0; j < m->n; j++) {
		int rc = snap_write_section(p->w, m->d[j], idx * MAX_SECS + j,
					    state[j]);

		if (rc)
			return rc;
	}
	return 0;
}

/* Every described byte of @a and @b equal; else the field's name. */
static const char *differs(const struct snap_desc *d, const void *a,
			   const void *b)
{
	static const unsigned esz[] = {0, 1, 2, 4, 8, 8, 1, 1};

	for (unsigned i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];

		/* (No variable arrays here: their dead slots load as 0.) */
		if (memcmp((const uint8_t *)a + f->offset,
			   (const uint8_t *)b + f->offset,
			   (size_t)esz[f->type] * f->count))
			return f->name;
	}
	return NULL;
}

static void prop_flush(struct prop *p)
{
	struct snap_reader *r = NULL;
	struct err err = {0};
	int rc;

	if (!p->w)
		return;
	rc = snap_writer_commit(p->w);
	p->w = NULL;
	if (rc) {
		fail(p, "commit: %s", strerror(-rc));
		goto out;
	}
	rc = snap_reader_open(&r, p->path, &err);
	if (rc) {
		fail(p, "reading back: %s", err.msg);
		goto out;
	}
	for (unsigned i = 0; i < p->nm; i++) {
		struct moment *m = &p->m[i];
		void *out[MAX_SECS] = {0};
		bool loaded = true;

		for (unsigned j = 0; j < m->n && loaded; j++) {
			const char *bad;

			out[j] = malloc(m->d[j]->state_size);
			/* Undescribed bytes differ: a load must set them all.
			 */
			for (size_t b = 0; b < m->d[j]->state_size; b++)
				((uint8_t *)out[j])[b] =
					(uint8_t) ~((uint8_t *)m->copy[j])[b];
			rc = snap_read_section(r, m->d[j], i * MAX_SECS + j,
					       out[j], &err);
			if (rc) {
				fail(p, "%s: load: %s", m->what, err.msg);
				loaded = false;
			} else if ((bad = differs(m->d[j], m->copy[j],
						  out[j]))) {
				fail(p,
				     "%s: section '%s' field '%s' changed "
				     "on the way through the snapshot",
				     m->what, m->d[j]->name, bad);
				loaded = false;
			}
		}
		if (loaded && p->apply && (rc = p->apply(out, m->n)))
			fail(p, "%s: restore refused the loaded state: %s",
			     m->what, strerror(-rc));
		for (unsigned j = 0; j < m->n; j++)
			free(out[j]);
	}
	if (snap_reader_check_consumed(r, &err))
		fail(p, "not all sections loaded: %s", err.msg);
	snap_reader_close(r);
out:
	for (unsigned i = 0; i < p->nm; i++)
		for (unsigned j = 0; j < p->m[i].n; j++)
			free(p->m[i].copy[j]);
	p->nm = 0;
	unlink(p->path);
}

/*
 * Save the device's state now. A section the description refuses is a
 * failure; the moments before it in the batch are written again into a
 * fresh file (a writer stops at its first error).
 */
static void prop_take(struct prop *p, unsigned n,
		      const struct snap_desc *const *d, void *const *state,
		      const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void prop_take(struct prop *p, unsigned n,
		      const struct snap_desc *const *d, void *const *state,
		      const char *fmt, ...)
{
	XXH3_state_t *hs = XXH3_createState();
	struct moment *m;
	va_list ap;
	bool dup;
	int rc;

	p->moments++;
	XXH3_64bits_reset(hs);
	for (unsigned j = 0; j < n; j++)
		XXH3_64bits_update(hs, state[j], d[j]->state_size);
	dup = seen_before(p, XXH3_64bits_digest(hs));
	XXH3_freeState(hs);
	if (dup)
		return;
	p->distinct++;
	if (!p->w && writer_open(p)) {
		fail(p, "cannot open %s", p->path);
		return;
	}
	m = &p->m[p->nm];
	memset(m, 0, sizeof(*m));
	m->n = n;
	va_start(ap, fmt);
	vsnprintf(m->what, sizeof(m->what), fmt, ap);
	va_end(ap);
	for (unsigned j = 0; j < n; j++)
		m->d[j] = d[j];
	rc = write_moment(p, p->nm, m, state);
	if (rc) {
		fail(p, "%s: checkpoint refused the state: %s", m->what,
		     snap_writer_error(p->w));
		snap_writer_abort(p->w);
		p->w = NULL;
		if (writer_open(p))
			return;
		for (unsigned i = 0; i < p->nm; i++)
			write_moment(p, i, &p->m[i], p->m[i].copy);
		return;
	}
	for (unsigned j = 0; j < n; j++) {
		m->copy[j] = malloc(d[j]->state_size);
		memcpy(m->copy[j], state[j], d[j]->state_size);
	}
	if (++p->nm == BATCH)
		prop_flush(p);
}

static void prop_done(struct prop *p, unsigned min_moments)
{
	prop_flush(p);
	printf("%s: %u writes, %u distinct states saved and restored\n", p->dev,
	       p->moments, p->distinct);
	if (p->failures > MAX_REPORTS)
		fprintf(stderr, "%s: %u failures in all\n", p->dev,
			p->failures);
	CHECK_EQ(p->failures, 0);
	CHECK(p->moments >= min_moments);
	free(p->seen);
}

/*
 * Values for a register of @bits: all of them up to 8 bits, else a dense
 * sample: every power of two and its neighbours, the top, patterns,
 * pseudo-random ones and the small values. At most @max (evenly thinned,
 * first and last kept). Returns how many.
 */
static unsigned sample(unsigned bits, uint64_t *v, unsigned max)
{
	uint64_t top = bits == 64 ? ~0ULL : (1ULL << bits) - 1, x = 0x9e3779b9;
	uint64_t all[1024];
	unsigned n = 0, out = 0;

	if (bits <= 8) {
		for (uint64_t i = 0; i <= top && n < max; i++)
			v[n++] = i;
		return n;
	}
	for (unsigned k = 8; k < bits; k++) {
		all[n++] = (1ULL << k) - 1;
		all[n++] = 1ULL << k;
		all[n++] = ((1ULL << k) + 1) & top;
	}
	all[n++] = top;
	all[n++] = top - 1;
	all[n++] = 0x5555555555555555ULL & top;
	all[n++] = 0xaaaaaaaaaaaaaaaaULL & top;
	for (unsigned i = 0; i < 128; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		all[n++] = x & top;
	}
	for (uint64_t i = 0; i < 256; i++)
		all[n++] = i;
	for (unsigned i = 0; i < n && out < max; i++)
		if (n <= max ||
		    (uint64_t)i * max / n != (uint64_t)(i + 1) * max / n ||
		    i == n - 1)
			v[out++] = all[i];
	return out;
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* ---- virtio-pci: a toy device with two queues and MSI-X ---- */

#define SLOT 5
#define QSZ  16

static unsigned toy_kicks;

static void toy_notify(void *o, unsigned q)
{
	toy_kicks++;
}

static const struct virtio_dev_ops toy_ops = {
	.device_id = VIRTIO_ID_RNG,
	.class_code = 0x00ff00,
	.num_queues = 2,
	.queue_max_size = 64,
	.queue_notify = toy_notify,
};

static int msi_send(void *opaque, uint64_t addr, uint32_t data)
{
	return 0;
}

struct vdev {
	struct bus pio, mmio;
	struct pci_bus pci;
	struct virtio_pci vp;
};

/* The device being written to, and the one restores are tried on. */
static struct vdev vd, vs;

static void vdev_bar(struct vdev *v, unsigned bar, uint64_t off, uint64_t val,
		     unsigned size)
{
	struct pci_bar *b = &v->vp.pci.bars[bar];

	/* Straight to the handler: config writes may have moved the BAR. */
	b->fn(b->opaque, off, &val, size, true);
}

static void common_wr(struct vdev *v, unsigned off, uint64_t val, unsigned size)
{
	vdev_bar(v, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_OFF + off, val, size);
}

/* Phase 0: as built. Phase 1: as Linux leaves it (queues live, MSI-X). */
static void vdev_build(struct vdev *v, unsigned phase)
{
	struct msi_sink sink = {msi_send, NULL};

	bus_init(&v->pio, "pio");
	bus_init(&v->mmio, "mmio");
	CHECK_EQ(pci_bus_init(&v->pci, &v->pio, &v->mmio, 0xC0000000ULL,
			      0x10000000ULL),
		 0);
	CHECK_EQ(virtio_pci_init(&v->vp, "toy", &mem, &toy_ops, NULL, 1ULL << 3,
				 &sink),
		 0);
	CHECK_EQ(pci_add_device(&v->pci, SLOT, 0, &v->vp.pci), 0);
	pci_cfg_write(&v->vp.pci, PCI_COMMAND,
		      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	if (phase == 0)
		return;
	pci_cfg_write(&v->vp.pci, v->vp.pci.msix_cap + PCI_MSIX_FLAGS,
		      PCI_MSIX_FLAGS_ENABLE, 2);
	common_wr(v, VIRTIO_PCI_COMMON_STATUS, 3, 1);
	common_wr(v, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	common_wr(v, VIRTIO_PCI_COMMON_GF,
		  (1u << 3) | (1u << VIRTIO_RING_F_EVENT_IDX), 4);
	common_wr(v, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	common_wr(v, VIRTIO_PCI_COMMON_GF, 1, 4);
	common_wr(v, VIRTIO_PCI_COMMON_STATUS, 0xb, 1);
	for (unsigned q = 0; q < 2; q++) {
		common_wr(v, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		common_wr(v, VIRTIO_PCI_COMMON_Q_SIZE, QSZ, 2);
		common_wr(v, VIRTIO_PCI_COMMON_Q_MSIX, q + 1, 2);
		common_wr(v, VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000 + 0x1000 * q,
			  8);
		common_wr(v, VIRTIO_PCI_COMMON_Q_AVAILLO, 0x8000 + 0x1000 * q,
			  8);
		common_wr(v, VIRTIO_PCI_COMMON_Q_USEDLO, 0x10000 + 0x1000 * q,
			  8);
		common_wr(v, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	}
	common_wr(v, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	common_wr(v, VIRTIO_PCI_COMMON_STATUS, 0xf, 1);
	CHECK(v->vp.vqs[1].st.ready);
}

static void vdev_destroy(struct vdev *v)
{
	virtio_pci_destroy(&v->vp);
	pci_bus_destroy(&v->pci);
	bus_destroy(&v->pio);
	bus_destroy(&v->mmio);
}

struct collect {
	unsigned n;
	const struct snap_desc *d[MAX_SECS];
	void *s[MAX_SECS];
};

static int collect_one(void *ctx, const struct snap_desc *d, uint32_t inst,
		       void *state)
{
	struct collect *c = ctx;

	if (c->n == MAX_SECS)
		return -ENOSPC;
	c->d[c->n] = d;
	c->s[c->n++] = state;
	return 0;
}

/* As vm_devices_load: the sections into a device, then post_load. */
static int vdev_apply(void *const *st, unsigned n)
{
	struct collect c = {0};

	virtio_pci_snap_foreach(&vs.vp, 0, collect_one, &c);
	if (c.n != n)
		return -EINVAL;
	for (unsigned j = 0; j < n; j++)
		memcpy(c.s[j], st[j], c.d[j]->state_size);
	return virtio_pci_post_load(&vs.vp, NULL);
}

static void vdev_take(struct prop *p, const char *what, unsigned phase,
		      unsigned off, unsigned size, uint64_t val)
{
	struct collect c = {0};

	if (virtio_pci_snap_foreach(&vd.vp, 0, collect_one, &c)) {
		fail(p, "cannot collect the sections");
		return;
	}
	prop_take(p, c.n, c.d, c.s, "phase %u: %s 0x%x (%u bytes) = 0x%llx",
		  phase, what, off, size, (unsigned long long)val);
}

/* Common config registers: offset and width. */
static const struct {
	unsigned off, size;
} common_regs[] = {
	{VIRTIO_PCI_COMMON_DFSELECT, 4},  {VIRTIO_PCI_COMMON_DF, 4},
	{VIRTIO_PCI_COMMON_GFSELECT, 4},  {VIRTIO_PCI_COMMON_GF, 4},
	{VIRTIO_PCI_COMMON_MSIX, 2},	  {VIRTIO_PCI_COMMON_NUMQ, 2},
	{VIRTIO_PCI_COMMON_STATUS, 1},	  {VIRTIO_PCI_COMMON_CFGGENERATION, 1},
	{VIRTIO_PCI_COMMON_Q_SELECT, 2},  {VIRTIO_PCI_COMMON_Q_SIZE, 2},
	{VIRTIO_PCI_COMMON_Q_MSIX, 2},	  {VIRTIO_PCI_COMMON_Q_ENABLE, 2},
	{VIRTIO_PCI_COMMON_Q_NOFF, 2},	  {VIRTIO_PCI_COMMON_Q_DESCLO, 8},
	{VIRTIO_PCI_COMMON_Q_DESCLO, 4},  {VIRTIO_PCI_COMMON_Q_DESCHI, 4},
	{VIRTIO_PCI_COMMON_Q_AVAILLO, 8}, {VIRTIO_PCI_COMMON_Q_AVAILLO, 4},
	{VIRTIO_PCI_COMMON_Q_AVAILHI, 4}, {VIRTIO_PCI_COMMON_Q_USEDLO, 8},
	{VIRTIO_PCI_COMMON_Q_USEDLO, 4},  {VIRTIO_PCI_COMMON_Q_USEDHI, 4},
};

static uint64_t vals[1024];

static void test_virtio_common(void)
{
	struct prop *p = calloc(1, sizeof(*p));

	p->dev = "virtio-pci common config";
	p->apply = vdev_apply;
	vdev_build(&vs, 0);
	for (unsigned phase = 0; phase < 2; phase++) {
		/* Every byte of the structure, every value, any alignment. */
		for (unsigned off = 0; off < VIRTIO_PCI_COMMON_SIZE; off++) {
			vdev_build(&vd, phase);
			for (unsigned v = 0; v < 256; v++) {
				common_wr(&vd, off, v, 1);
				vdev_take(p, "common byte", phase, off, 1, v);
			}
			vdev_destroy(&vd);
		}
		/* Each register at its width, values sampled densely. */
		for (unsigned i = 0; i < ARRAY_SIZE(common_regs); i++) {
			unsigned off = common_regs[i].off,
				 size = common_regs[i].size;
			unsigned n = sample(8 * size, vals, ARRAY_SIZE(vals));

			vdev_build(&vd, phase);
			for (unsigned k = 0; k < n; k++) {
				common_wr(&vd, off, vals[k], size);
				vdev_take(p, "common", phase, off, size,
					  vals[k]);
			}
			vdev_destroy(&vd);
		}
	}
	vdev_destroy(&vs);
	prop_done(p, 2 * 256 * VIRTIO_PCI_COMMON_SIZE);
	free(p);
}

static void test_pci_config(void)
{
	struct prop *p = calloc(1, sizeof(*p));

	p->dev = "PCI configuration space";
	p->apply = vdev_apply;
	vdev_build(&vs, 0);
	for (unsigned phase = 0; phase < 2; phase++) {
		vdev_build(&vd, phase);
		for (unsigned off = 0; off < PCI_CFG_SIZE; off++) {
			for (unsigned v = 0; v < 256; v++) {
				pci_cfg_write(&vd.vp.pci, off, v, 1);
				vdev_take(p, "config byte", phase, off, 1, v);
			}
		}
		vdev_destroy(&vd);
		/* Dwords, and words, at each aligned offset. */
		vdev_build(&vd, phase);
		for (unsigned size = 2; size <= 4; size += 2) {
			unsigned n = sample(8 * size, vals, 64);

			for (unsigned off = 0; off < PCI_CFG_SIZE;
			     off += size) {
				for (unsigned k = 0; k < n; k++) {
					pci_cfg_write(&vd.vp.pci, off,
						      (uint32_t)vals[k], size);
					vdev_take(p, "config", phase, off, size,
						  vals[k]);
				}
			}
		}
		vdev_destroy(&vd);
	}
	vdev_destroy(&vs);
	prop_done(p, 2 * 256 * PCI_CFG_SIZE);
	free(p);
}

static void test_msix_table(void)
{
	struct prop *p = calloc(1, sizeof(*p));
	unsigned tlen;

	p->dev = "MSI-X table";
	p->apply = vdev_apply;
	vdev_build(&vs, 0);
	for (unsigned phase = 0; phase < 2; phase++) {
		vdev_build(&vd, phase);
		tlen = vd.vp.pci.msix_nvec * PCI_MSIX_ENTRY_SIZE;
		/* The table, bytes past it, and the (read-only) PBA. */
		for (unsigned off = 0; off < tlen + 16; off++)
			for (unsigned v = 0; v < 256; v++) {
				vdev_bar(&vd, VIRTIO_PCI_MSIX_BAR, off, v, 1);
				vdev_take(p, "table byte", phase, off, 1, v);
			}
		for (unsigned off = 0x800; off < 0x808; off++)
			for (unsigned v = 0; v < 256; v += 15) {
				vdev_bar(&vd, VIRTIO_PCI_MSIX_BAR, off, v, 1);
				vdev_take(p, "PBA byte", phase, off, 1, v);
			}
		for (unsigned size = 4; size <= 8; size += 4) {
			unsigned n = sample(8 * size, vals, 64);

			for (unsigned off = 0; off < tlen; off += size)
				for (unsigned k = 0; k < n; k++) {
					vdev_bar(&vd, VIRTIO_PCI_MSIX_BAR, off,
						 vals[k], size);
					vdev_take(p, "table", phase, off, size,
						  vals[k]);
				}
		}
		vdev_destroy(&vd);
	}
	vdev_destroy(&vs);
	prop_done(p, 2 * 256 * 48);
	free(p);
}

/* ---- UART 8250 ---- */

static struct uart8250 uart, uart_scratch;

static int uart_apply(void *const *st, unsigned n)
{
	return uart8250_state_apply(&uart_scratch, st[0]);
}

static void uart_io(unsigned port, uint8_t v, bool write)
{
	uart8250_io(&uart, port, &v, 1, write);
}

static void uart_take(struct prop *p, const char *fmt, unsigned a, unsigned b,
		      unsigned c)
{
	static const struct snap_desc *const d[] = {&uart8250_snap_desc};
	struct uart8250_state st;
	void *s[] = {&st};

	uart8250_state_save(&uart, &st);
	prop_take(p, 1, d, s, fmt, a, b, c);
}

/* 0 reset, 1 DLAB, 2 FIFO + loopback, 10 bytes in, 3 FIFO full + overrun,
 * 4 no FIFO, loopback, one byte held. */
static void uart_phase(unsigned phase)
{
	uart8250_destroy(&uart);
	uart8250_init(&uart, NULL, NULL);
	switch (phase) {
	case 1:
		uart_io(3, 0x80, true);
		break;
	case 2:
	case 3:
		uart_io(2, 0xc1, true);
		uart_io(4, 0x1f, true);
		for (unsigned i = 0; i < (phase == 2 ? 10u : 17u); i++)
			uart_io(0, (uint8_t)i, true);
		uart_io(1, 0x0f, true);
		break;
	case 4:
		uart_io(4, 0x10, true);
		uart_io(0, 0x41, true);
		uart_io(0, 0x42, true);
		break;
	}
}

static void test_uart(void)
{
	struct prop *p = calloc(1, sizeof(*p));

	p->dev = "uart8250";
	p->apply = uart_apply;
	uart8250_init(&uart, NULL, NULL);
	uart8250_init(&uart_scratch, NULL, NULL);
	for (unsigned phase = 0; phase < 5; phase++)
		for (unsigned port = 0; port < UART8250_NR_PORTS; port++)
			for (unsigned v = 0; v < 256; v++) {
				uart_phase(phase);
				uart_io(port, (uint8_t)v, true);
				uart_take(p, "phase %u: port %u = 0x%x", phase,
					  port, v);
			}
	/* A random walk of reads and writes reaches deeper states. */
	uart_phase(0);
	for (unsigned i = 0; i < 5000; i++) {
		uint64_t r = rnd();
		unsigned port = r % UART8250_NR_PORTS;

		uart_io(port, (uint8_t)(r >> 8), (r >> 16) & 1);
		if ((r >> 20) % 64 == 0)
			uart8250_receive(&uart, (const uint8_t *)"xyz", 3);
		uart_take(p, "walk step %u: port %u, 0x%x", i, port,
			  (unsigned)(r >> 8) & 0xff);
	}
	uart8250_destroy(&uart);
	uart8250_destroy(&uart_scratch);
	prop_done(p, 5 * 8 * 256);
	free(p);
}

/* ---- i8042 ---- */

static struct i8042 kbd, kbd_scratch;

static int kbd_apply(void *const *st, unsigned n)
{
	return i8042_state_apply(&kbd_scratch, st[0]);
}

static void kbd_io(unsigned port, uint8_t v, bool write)
{
	if (port == 0)
		i8042_data_io(&kbd, 0, &v, 1, write);
	else
		i8042_cmd_io(&kbd, 0, &v, 1, write);
}

static void kbd_take(struct prop *p, const char *fmt, unsigned a, unsigned b,
		     unsigned c)
{
	static const struct snap_desc *const d[] = {&i8042_snap_desc};
	struct i8042_state st;
	void *s[] = {&st};

	i8042_state_save(&kbd, &st);
	prop_take(p, 1, d, s, fmt, a, b, c);
}

/* Commands waiting for a data byte, keyboard commands waiting for a
 * parameter, a full queue, a queue that wrapped. */
static const uint8_t kbd_cmds[] = {0x60, 0x61, 0x7f, 0xd1, 0xd2, 0xd3, 0xd4};
static const uint8_t kbd_params[] = {0xed, 0xf0, 0xf3};
#define KBD_PHASES (1 + ARRAY_SIZE(kbd_cmds) + ARRAY_SIZE(kbd_params) + 2)

static void kbd_phase(unsigned phase)
{
	i8042_destroy(&kbd);
	i8042_init(&kbd, NULL, NULL, NULL, NULL);
	if (phase == 0)
		return;
	if (phase <= ARRAY_SIZE(kbd_cmds)) {
		kbd_io(4, kbd_cmds[phase - 1], true);
		return;
	}
	phase -= 1 + ARRAY_SIZE(kbd_cmds);
	if (phase < ARRAY_SIZE(kbd_params)) {
		kbd_io(0, kbd_params[phase], true);
		return;
	}
	for (unsigned i = 0; i < 20; i++)
		kbd_io(0, 0xee, true);
	if (phase == ARRAY_SIZE(kbd_params) + 1)
		for (unsigned i = 0; i < 11; i++)
			kbd_io(0, 0, false);
}

static void test_i8042(void)
{
	struct prop *p = calloc(1, sizeof(*p));

	p->dev = "i8042";
	p->apply = kbd_apply;
	i8042_init(&kbd, NULL, NULL, NULL, NULL);
	i8042_init(&kbd_scratch, NULL, NULL, NULL, NULL);
	for (unsigned phase = 0; phase < KBD_PHASES; phase++)
		for (unsigned port = 0; port <= 4; port += 4)
			for (unsigned v = 0; v < 256; v++) {
				kbd_phase(phase);
				kbd_io(port, (uint8_t)v, true);
				kbd_take(p, "phase %u: port 0x6%u = 0x%x",
					 phase, port, v);
			}
	kbd_phase(0);
	for (unsigned i = 0; i < 5000; i++) {
		uint64_t r = rnd();
		unsigned port = (r & 1) * 4;

		kbd_io(port, (uint8_t)(r >> 8), (r >> 16) & 3);
		kbd_take(p, "walk step %u: port 0x6%u, 0x%x", i, port,
			 (unsigned)(r >> 8) & 0xff);
	}
	i8042_destroy(&kbd);
	i8042_destroy(&kbd_scratch);
	prop_done(p, KBD_PHASES * 2 * 256);
	free(p);
}

/* ---- RTC ---- */

static struct rtc rtc, rtc_scratch;

/* A clock that stands still: equal writes give equal states. */
static int64_t fixed_clock(void *opaque)
{
	return 1700000000LL * 1000000000LL;
}

static int rtc_apply(void *const *st, unsigned n)
{
	return rtc_state_apply(&rtc_scratch, st[0]);
}

static void rtc_io8(unsigned port, uint8_t v, bool write)
{
	rtc_io(&rtc, port, &v, 1, write);
}

static void rtc_take(struct prop *p, const char *fmt, unsigned a, unsigned b,
		     unsigned c)
{
	static const struct snap_desc *const d[] = {&rtc_snap_desc};
	struct rtc_state st;
	void *s[] = {&st};

	rtc_state_save(&rtc, &st);
	prop_take(p, 1, d, s, fmt, a, b, c);
}

/* 0 as booted (BCD, 24 h), 1 SET mode, 2 binary 12 h. */
static void rtc_phase(unsigned phase)
{
	rtc_destroy(&rtc);
	rtc_init(&rtc, NULL, 512 * MiB, 0);
	rtc_set_clock(&rtc, fixed_clock, NULL);
	rtc_io8(0, RTC_REG_B, true);
	if (phase == 1)
		rtc_io8(1, RTC_B_SET | RTC_B_24H, true);
	else if (phase == 2)
		rtc_io8(1, RTC_B_DM, true);
}

static void test_rtc(void)
{
	struct prop *p = calloc(1, sizeof(*p));

	p->dev = "rtc";
	p->apply = rtc_apply;
	rtc_init(&rtc, NULL, 512 * MiB, 0);
	rtc_init(&rtc_scratch, NULL, 512 * MiB, 0);
	rtc_set_clock(&rtc_scratch, fixed_clock, NULL);
	for (unsigned phase = 0; phase < 3; phase++) {
		for (unsigned v = 0; v < 256; v++) {
			rtc_phase(phase);
			rtc_io8(0, (uint8_t)v, true);
			rtc_take(p, "phase %u: index port 0x7%u = 0x%x", phase,
				 0, v);
		}
		/* Every value into every CMOS byte. */
		for (unsigned idx = 0; idx < RTC_CMOS_SIZE; idx++) {
			rtc_phase(phase);
			for (unsigned v = 0; v < 256; v++) {
				rtc_io8(0, (uint8_t)idx, true);
				rtc_io8(1, (uint8_t)v, true);
				rtc_take(p, "phase %u: CMOS 0x%x = 0x%x", phase,
					 idx, v);
			}
		}
	}
	rtc_phase(0);
	for (unsigned i = 0; i < 5000; i++) {
		uint64_t r = rnd();

		rtc_io8(r & 1, (uint8_t)(r >> 8), (r >> 16) & 1);
		rtc_take(p, "walk step %u: port 0x7%u, 0x%x", i,
			 (unsigned)(r & 1), (unsigned)(r >> 8) & 0xff);
	}
	rtc_destroy(&rtc);
	rtc_destroy(&rtc_scratch);
	prop_done(p, 3 * 256 * (RTC_CMOS_SIZE + 1));
	free(p);
}

/* ---- PM ---- */

static struct pm pm, pm_scratch;

static int pm_apply(void *const *st, unsigned n)
{
	return pm_state_apply(&pm_scratch, st[0]);
}

static void test_pm(void)
{
	static const struct snap_desc *const d[] = {&pm_snap_desc};
	struct prop *p = calloc(1, sizeof(*p));
	struct pm_state st;
	void *s[] = {&st};

	p->dev = "pm";
	p->apply = pm_apply;
	pm_init(&pm, NULL, NULL, NULL);
	pm_init(&pm_scratch, NULL, NULL, NULL);
	for (unsigned port = 0; port < 3; port++)
		for (unsigned v = 0; v < 256; v++) {
			uint8_t b = (uint8_t)v;

			if (port < 2)
				pm_sleep_io(&pm, port, &b, 1, true);
			else
				pm_reset_io(&pm, 0, &b, 1, true);
			pm_state_save(&pm, &st);
			prop_take(p, 1, d, s, "%s = 0x%x",
				  port == 0   ? "SLEEP_CONTROL"
				  : port == 1 ? "SLEEP_STATUS"
					      : "0xcf9",
				  v);
		}
	pm_destroy(&pm);
	pm_destroy(&pm_scratch);
	prop_done(p, 3 * 256);
	free(p);
}

int main(void)
{
	/* Hostile writes make devices complain; the checks say enough. */
	log_set_level(LOG_ERR);
	ram = calloc(1, RAM_SIZE);
	guest_mem_layout(&mem, RAM_SIZE);
	mem.r[0].hva = ram;
	RUN(test_virtio_common);
	RUN(test_pci_config);
	RUN(test_msix_table);
	RUN(test_uart);
	RUN(test_i8042);
	RUN(test_rtc);
	RUN(test_pm);
	free(ram);
	return unit_done();
}
