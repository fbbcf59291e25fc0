// SPDX-License-Identifier: BSD-2-Clause
/*
 * Small virtio 1.x PCI drivers for the test guest (tests=vblk, tests=vrng).
 * They run in user mode and poll: PCI configuration mechanism #1 finds the
 * function, the vendor capability walk finds the common, notify and device
 * areas in a memory BAR, one split queue is set up with interrupts
 * suppressed, and completions are found by watching the used ring. The
 * same code drives khyve's devices and QEMU's virtio-*-pci, so the
 * benchmark compares device models, not drivers.
 */
#include "guest.h"
#include "hw.h"
#include "snapmodes.h"

#define VQ_SIZE	    128
#define VQ_MAX_REQ  (VQ_SIZE / 3) /* three descriptors per blk request */
#define VIO_TIMEOUT 10000	  /* ms a request may take */
#define VIO_NOBAR   (1ULL << 32)  /* BARs must sit in the mapped 3-4 GiB */

#define VIRTIO_VENDOR	    0x1af4
#define VIRTIO_F_VERSION_1  (1ULL << 32)
#define VIRTIO_BLK_F_RO	    (1ULL << 5)
#define VIRTIO_BLK_F_FLUSH  (1ULL << 9)
#define VIRTIO_BLK_T_IN	    0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_S_IOERR  1
#define VIO_TIMED_OUT	    (-1)

/* Common configuration (virtio 1.x, 4.1.4.3). */
#define CC_DFSELECT 0x00
#define CC_DF	    0x04
#define CC_GFSELECT 0x08
#define CC_GF	    0x0c
#define CC_STATUS   0x14
#define CC_QSELECT  0x16
#define CC_QSIZE    0x18
#define CC_QMSIX    0x1a
#define CC_QENABLE  0x1c
#define CC_QNOFF    0x1e
#define CC_QDESC    0x20
#define CC_QAVAIL   0x28
#define CC_QUSED    0x30

#define ST_ACK	       1
#define ST_DRIVER      2
#define ST_DRIVER_OK   4
#define ST_FEATURES_OK 8

#define VQ_DESC_F_NEXT	     1
#define VQ_DESC_F_WRITE	     2
#define VQ_AVAIL_F_NO_INTERRUPT 1

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vq_avail {
	uint16_t flags, idx;
	uint16_t ring[VQ_SIZE];
	uint16_t used_event;
};

struct vq_used {
	uint16_t flags, idx;
	struct {
		uint32_t id, len;
	} ring[VQ_SIZE];
	uint16_t avail_event;
};

struct vdev {
	unsigned bdf;
	uint16_t pci_id;
	uint64_t common, notify, device, notify_addr;
	uint32_t notify_mult;
	uint64_t features; /* offered by the device */
	uint16_t qsize, avail_idx;
};

/* One device at a time uses the ring; it is reset before the next. */
static struct vq_desc vq_desc[VQ_SIZE] __attribute__((aligned(4096)));
static struct vq_avail vq_avail __attribute__((aligned(4096)));
static struct vq_used vq_used __attribute__((aligned(4096)));

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};
static struct blk_hdr blk_hdr[VQ_MAX_REQ];
static volatile uint8_t blk_status[VQ_MAX_REQ];
static uint8_t rng_buf[2][64];

static uint32_t pci_rd32(unsigned bdf, unsigned off)
{
	outl(0xcf8, 0x80000000u | bdf << 8 | (off & 0xfc));
	return inl(0xcfc);
}

static void pci_wr32(unsigned bdf, unsigned off, uint32_t v)
{
	outl(0xcf8, 0x80000000u | bdf << 8 | (off & 0xfc));
	outl(0xcfc, v);
}

static uint8_t pci_rd8(unsigned bdf, unsigned off)
{
	return (uint8_t)(pci_rd32(bdf, off) >> ((off & 3) * 8));
}

static uint64_t pci_bar(unsigned bdf, unsigned bar)
{
	uint32_t lo;
	uint64_t a;

	if (bar > 5)
		return 0;
	lo = pci_rd32(bdf, 0x10 + 4 * bar);
	if (lo & 1)
		return 0; /* an I/O BAR: the modern areas are in memory */
	a = lo & ~0xfULL;
	if ((lo & 6) == 4 && bar < 5)
		a |= (uint64_t)pci_rd32(bdf, 0x14 + 4 * bar) << 32;
	return a;
}

/* The first virtio function with device id @modern or @legacy (-1 if none). */
static int pci_find(uint16_t modern, uint16_t legacy, struct vdev *v)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		for (unsigned fn = 0; fn < 8; fn++) {
			unsigned bdf = dev << 3 | fn;
			uint32_t id = pci_rd32(bdf, 0);

			if ((id & 0xffff) == 0xffff) {
				if (fn == 0)
					break;
				continue;
			}
			if ((id & 0xffff) == VIRTIO_VENDOR &&
			    ((id >> 16) == modern || (id >> 16) == legacy)) {
				v->bdf = bdf;
				v->pci_id = (uint16_t)(id >> 16);
				return 0;
			}
			/* Not multi-function: functions 1-7 do not exist. */
			if (fn == 0 && !(pci_rd8(bdf, 0x0e) & 0x80))
				break;
		}
	}
	return -1;
}

/* Vendor capabilities (cap id 9) locate the modern transport's areas. */
static int pci_caps(struct vdev *v)
{
	unsigned p, n = 0;

	if (!(pci_rd32(v->bdf, 4) >> 16 & 0x10))
		return -1;
	for (p = pci_rd8(v->bdf, 0x34) & 0xfc; p && n < 48;
	     p = pci_rd8(v->bdf, p + 1) & 0xfc, n++) {
		uint8_t type = pci_rd8(v->bdf, p + 3);
		uint64_t base, a;

		if (pci_rd8(v->bdf, p) != 0x09)
			continue;
		base = pci_bar(v->bdf, pci_rd8(v->bdf, p + 4));
		if (!base || base >= VIO_NOBAR)
			continue;
		a = base + pci_rd32(v->bdf, p + 8);
		if (type == 1 && !v->common)
			v->common = a;
		else if (type == 2 && !v->notify) {
			v->notify = a;
			v->notify_mult = pci_rd32(v->bdf, p + 16);
		} else if (type == 4 && !v->device)
			v->device = a;
	}
	return v->common && v->notify ? 0 : -1;
}

static uint64_t now_ms(uint64_t t0)
{
	return (rdtsc() - t0) / (G.tsc_khz ? G.tsc_khz : 1000000);
}

/*
 * Reset and negotiate (VERSION_1 plus @want where offered), up to
 * FEATURES_OK. Returns 0, or -1 with @why set.
 */
static int vdev_start(struct vdev *v, uint64_t want, const char **why)
{
	uint64_t c, drv, t0 = rdtsc();

	if (pci_caps(v)) {
		*why = "no-modern-caps";
		return -1;
	}
	c = v->common;
	/* Memory decoding and bus mastering (the device reads our ring). */
	pci_wr32(v->bdf, 4, (pci_rd32(v->bdf, 4) & 0xffff) | 0x6);
	mmio_write8(c + CC_STATUS, 0);
	while (mmio_read8(c + CC_STATUS)) {
		if (now_ms(t0) > VIO_TIMEOUT) {
			*why = "reset-timeout";
			return -1;
		}
		cpu_relax();
	}
	mmio_write8(c + CC_STATUS, ST_ACK);
	mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER);
	mmio_write32(c + CC_DFSELECT, 0);
	v->features = mmio_read32(c + CC_DF);
	mmio_write32(c + CC_DFSELECT, 1);
	v->features |= (uint64_t)mmio_read32(c + CC_DF) << 32;
	if (!(v->features & VIRTIO_F_VERSION_1)) {
		*why = "no-version-1";
		return -1;
	}
	drv = VIRTIO_F_VERSION_1 | (v->features & want);
	mmio_write32(c + CC_GFSELECT, 0);
	mmio_write32(c + CC_GF, (uint32_t)drv);
	mmio_write32(c + CC_GFSELECT, 1);
	mmio_write32(c + CC_GF, (uint32_t)(drv >> 32));
	mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	if (!(mmio_read8(c + CC_STATUS) & ST_FEATURES_OK)) {
		*why = "features-refused";
		return -1;
	}
	return 0;
}

/* vdev_start(), then queue 0 on the shared ring and DRIVER_OK. */
static int vdev_init(struct vdev *v, uint64_t want, const char **why)
{
	uint64_t c;
	uint16_t qs;

	if (vdev_start(v, want, why))
		return -1;
	c = v->common;
	mmio_write16(c + CC_QSELECT, 0);
	qs = mmio_read16(c + CC_QSIZE);
	if (!qs) {
		*why = "no-queue-0";
		return -1;
	}
	v->qsize = qs < VQ_SIZE ? qs : VQ_SIZE;
	mmio_write16(c + CC_QSIZE, v->qsize);
	mmio_write16(c + CC_QMSIX, 0xffff); /* no vector: we poll */
	memset(vq_desc, 0, sizeof(vq_desc));
	memset(&vq_avail, 0, sizeof(vq_avail));
	memset(&vq_used, 0, sizeof(vq_used));
	vq_avail.flags = VQ_AVAIL_F_NO_INTERRUPT;
	v->avail_idx = 0;
	mmio_write32(c + CC_QDESC, (uint32_t)(uint64_t)vq_desc);
	mmio_write32(c + CC_QDESC + 4, (uint32_t)((uint64_t)vq_desc >> 32));
	mmio_write32(c + CC_QAVAIL, (uint32_t)(uint64_t)&vq_avail);
	mmio_write32(c + CC_QAVAIL + 4, (uint32_t)((uint64_t)&vq_avail >> 32));
	mmio_write32(c + CC_QUSED, (uint32_t)(uint64_t)&vq_used);
	mmio_write32(c + CC_QUSED + 4, (uint32_t)((uint64_t)&vq_used >> 32));
	v->notify_addr = v->notify +
			 (uint64_t)mmio_read16(c + CC_QNOFF) * v->notify_mult;
	mmio_write16(c + CC_QENABLE, 1);
	mmio_write8(c + CC_STATUS,
		    ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	return 0;
}

static void vdev_reset(struct vdev *v)
{
	if (v->common)
		mmio_write8(v->common + CC_STATUS, 0);
}

static void vq_push(struct vdev *v, uint16_t head)
{
	vq_avail.ring[v->avail_idx % v->qsize] = head;
	v->avail_idx++;
}

/* Publish what was pushed, kick, and poll until the device used it all. */
static int vq_run(struct vdev *v)
{
	uint64_t t0 = rdtsc();

	/* x86 keeps stores in order: ring entries before idx before kick. */
	__atomic_store_n(&vq_avail.idx, v->avail_idx, __ATOMIC_RELEASE);
	mmio_write16(v->notify_addr, 0);
	while (__atomic_load_n(&vq_used.idx, __ATOMIC_ACQUIRE) != v->avail_idx) {
		if (now_ms(t0) > VIO_TIMEOUT)
			return VIO_TIMED_OUT;
		cpu_relax();
	}
	return 0;
}

static void desc_set(unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	vq_desc[i] = (struct vq_desc){addr, len, flags, next};
}

/* Request slot @s: descriptors 3s (header), 3s+1 (data), 3s+2 (status). */
static void blk_prep(struct vdev *v, unsigned s, uint32_t type,
		     uint64_t sector, uint64_t buf, uint32_t len)
{
	unsigned d = 3 * s;

	blk_hdr[s] = (struct blk_hdr){type, 0, sector};
	blk_status[s] = 0xff;
	if (len) {
		desc_set(d, (uint64_t)&blk_hdr[s], sizeof(blk_hdr[s]),
			 VQ_DESC_F_NEXT, (uint16_t)(d + 1));
		desc_set(d + 1, buf, len,
			 VQ_DESC_F_NEXT |
				 (type == VIRTIO_BLK_T_IN ? VQ_DESC_F_WRITE : 0),
			 (uint16_t)(d + 2));
	} else {
		desc_set(d, (uint64_t)&blk_hdr[s], sizeof(blk_hdr[s]),
			 VQ_DESC_F_NEXT, (uint16_t)(d + 2));
	}
	desc_set(d + 2, (uint64_t)&blk_status[s], 1, VQ_DESC_F_WRITE, 0);
	vq_push(v, (uint16_t)d);
}

/* Run @n prepared requests: 0, the first non-OK status, or timed out. */
static int blk_batch(struct vdev *v, unsigned n)
{
	int ret = vq_run(v);

	for (unsigned s = 0; !ret && s < n; s++)
		if (blk_status[s])
			ret = blk_status[s];
	return ret;
}

/* @nsect sectors from @sector to/from @buf, in requests of 64 KiB. */
static int blk_rw(struct vdev *v, uint32_t type, uint64_t sector, uint64_t buf,
		  uint64_t nsect)
{
	while (nsect) {
		uint64_t k = nsect < 128 ? nsect : 128;
		int ret;

		blk_prep(v, 0, type, sector, buf, (uint32_t)(k * 512));
		ret = blk_batch(v, 1);
		if (ret)
			return ret;
		sector += k;
		buf += k * 512;
		nsect -= k;
	}
	return 0;
}

static uint64_t us_since(uint64_t t0)
{
	uint64_t khz = G.tsc_khz ? G.tsc_khz : 1000000;

	return (rdtsc() - t0) * 1000 / khz;
}

static void bench_line(const char *what, uint64_t bytes, uint64_t ios,
		       uint64_t us, int status)
{
	uint64_t mbps10 = us ? bytes * 10 / us : 0; /* 10 x 10^6 B/s */
	uint64_t iops = us ? ios * 1000000 / us : 0;

	con_printf("KHYVE-BENCH vblk %s bytes=%lu ios=%lu us=%lu "
		   "MBps=%lu.%lu iops=%lu status=%d\n",
		   what, bytes, ios, us, mbps10 / 10, mbps10 % 10, iops, status);
}

/*
 * Sequential write and read of vblk_bench_mb MiB in vblk_bs_kb requests,
 * then 4 KiB random reads for vblk_rand_ms; vblk_qd requests are queued
 * per kick (batches: all complete before the next batch goes out).
 */
static void vblk_bench(struct vdev *v, uint64_t buf, uint64_t cap)
{
	uint64_t total = (uint64_t)G.cfg.vblk_bench_mb << 20;
	uint64_t bs = (uint64_t)G.cfg.vblk_bs_kb * 1024, off, t0, us, ios;
	unsigned qd = G.cfg.vblk_qd, k;
	uint64_t rnd = G.cfg.seed;
	int ret = 0;

	if (qd < 1)
		qd = 1;
	if (qd > VQ_MAX_REQ)
		qd = VQ_MAX_REQ;
	if (!bs || bs % 512 || total % bs || total / 512 > cap ||
	    !gmm_is_ram(G.mm, G.mm_n, buf, qd * bs)) {
		report("vblk-bench", 0, "bad-parameters mb=%u bs_kb=%u qd=%u "
			"capacity=%lu", G.cfg.vblk_bench_mb, G.cfg.vblk_bs_kb,
			qd, cap);
		return;
	}
	for (uint64_t a = buf; a < buf + qd * bs; a += 8)
		*(volatile uint64_t *)a = g_pattern(a, rnd);
	con_printf("KHYVE-INFO vblk-bench mb=%u bs=%lu qd=%u rand_ms=%u\n",
		   G.cfg.vblk_bench_mb, bs, qd, G.cfg.vblk_rand_ms);
	for (int pass = 0; pass < 2; pass++) {
		uint32_t type = pass ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;

		t0 = rdtsc();
		for (off = 0; off < total && !ret;) {
			for (k = 0; k < qd && off < total; k++, off += bs)
				blk_prep(v, k, type, off / 512, buf + k * bs,
					 (uint32_t)bs);
			ret = blk_batch(v, k);
		}
		us = us_since(t0);
		bench_line(pass ? "seq-read" : "seq-write", off, off / bs, us,
			   ret);
		if (!pass && (v->features & VIRTIO_BLK_F_FLUSH)) {
			blk_prep(v, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
			ret = ret ? ret : blk_batch(v, 1);
		}
	}
	t0 = rdtsc();
	for (ios = 0; !ret && us_since(t0) < G.cfg.vblk_rand_ms * 1000ULL;) {
		for (k = 0; k < qd; k++, ios++) {
			rnd = g_pattern(rnd, 0x9e3779b97f4a7c15ULL);
			blk_prep(v, k, VIRTIO_BLK_T_IN,
				 (rnd % (total / 4096)) * 8, buf + k * 4096,
				 4096);
		}
		ret = blk_batch(v, k);
	}
	us = us_since(t0);
	bench_line("rand-read-4k", ios * 4096, ios, us, ret);
	report("vblk-bench", !ret, "status=%d", ret);
}

/*
 * tests=vstream: vstream_n 4 KiB writes, vstream_qd of them always in
 * flight (a new one goes out as soon as one completes). Request k writes
 * disk sectors [VS_BASE + 8k, +8), each stamped (magic, k, sector index,
 * then k ^ qword index << 48), so the host can read back exactly which
 * requests reached the disk. Requests may complete in any order (virtio
 * promises submission order only with VIRTIO_F_IN_ORDER, and khyve runs
 * them on several threads): completions ahead of the oldest request in
 * flight are counted (order) but are no error. A used entry for a slot
 * not in flight is a duplicate (dup), a non-zero status or length other
 * than 1 is bad, and a request not completed within 10 s is lost.
 * Progress: KHYVE-VSTREAM done=<completed> sent=<submitted> every 100.
 *
 * Progress lines carry dup and bad so far too.
 *
 * vstream_read=1 reads the same blocks instead (the host stamped them):
 * request k reads block b = k (k % vstream_span with a span) into its
 * slot's page, and each completion's page must hold exactly block b's
 * stamp (else bad; length 4097). The guest never writes those pages, so
 * after a restore from a live checkpoint they are right only if the VMM
 * tracked its own writes.
 */
#define VS_BASE	 2048 /* sectors: the first MiB stays for tests=vblk */
#define VS_MAGIC 0x4d52545356594b48ULL /* "HKYVSTRM" */

static uint64_t vs_inflight[VQ_MAX_REQ]; /* seq + 1, 0 = free */

/* Does @buf hold request @seq's stamp (as vs_fill writes it)? */
static int vs_check(uint64_t buf, uint64_t seq)
{
	for (unsigned sec = 0; sec < 8; sec++) {
		volatile uint64_t *q = (volatile uint64_t *)(buf + sec * 512);

		if (q[0] != VS_MAGIC || q[1] != seq ||
		    q[2] != VS_BASE + seq * 8 + sec)
			return 0;
		for (unsigned i = 3; i < 64; i++)
			if (q[i] != (seq ^ ((uint64_t)i << 48)))
				return 0;
	}
	return 1;
}

static void vs_fill(uint64_t buf, uint64_t seq)
{
	for (unsigned sec = 0; sec < 8; sec++) {
		volatile uint64_t *q = (volatile uint64_t *)(buf + sec * 512);

		q[0] = VS_MAGIC;
		q[1] = seq;
		q[2] = VS_BASE + seq * 8 + sec;
		for (unsigned i = 3; i < 64; i++)
			q[i] = seq ^ ((uint64_t)i << 48);
	}
}

void vstream_test(void)
{
	struct vdev v = {0};
	const char *why = "";
	uint64_t n = G.cfg.vstream_n, sent = 0, done = 0, dup = 0, order = 0;
	uint64_t bad = 0, lost = 0, buf, cap, t_last;
	unsigned qd = G.cfg.vstream_qd, inflight = 0;
	uint16_t used_seen = 0;
	int rd = G.cfg.vstream_read != 0;
	uint64_t span = rd && G.cfg.vstream_span ? G.cfg.vstream_span : n;

	buf = (G.usable_lo + 4095) & ~4095ULL;
	if (qd < 1 || qd > VQ_MAX_REQ || !n) {
		report("vstream", 0, "op=setup qd=%u (1..%u) n=%lu", qd,
		       VQ_MAX_REQ, n);
		return;
	}
	if (pci_find(0x1042, 0x1001, &v) ||
	    vdev_init(&v, VIRTIO_BLK_F_FLUSH, &why)) {
		report("vstream", 0, "op=init %s", why);
		vdev_reset(&v);
		return;
	}
	cap = (uint64_t)mmio_read32(v.device) |
	      (uint64_t)mmio_read32(v.device + 4) << 32;
	if (cap < VS_BASE + (span < n ? span : n) * 8 ||
	    (!rd && (v.features & VIRTIO_BLK_F_RO)) ||
	    !gmm_is_ram(G.mm, G.mm_n, buf, qd * 4096ULL)) {
		report("vstream", 0, "op=setup capacity=%lu need=%lu", cap,
		       VS_BASE + n * 8);
		vdev_reset(&v);
		return;
	}
	for (unsigned s = 0; s < qd; s++)
		vs_inflight[s] = 0;
	con_printf("KHYVE-INFO vstream n=%lu qd=%u base=%u qsize=%u read=%d\n",
		   n, qd, VS_BASE, v.qsize, rd);
	t_last = rdtsc();
	while (done < n) {
		uint16_t used;
		int kick = 0;

		/* Refill every free slot. */
		for (unsigned s = 0; s < qd && sent < n; s++) {
			if (vs_inflight[s])
				continue;
			if (!rd)
				vs_fill(buf + s * 4096ULL, sent);
			blk_prep(&v, s, rd ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT,
				 VS_BASE + sent % span * 8, buf + s * 4096ULL,
				 4096);
			vs_inflight[s] = ++sent;
			inflight++;
			kick = 1;
		}
		if (kick) {
			__atomic_store_n(&vq_avail.idx, v.avail_idx,
					 __ATOMIC_RELEASE);
			mmio_write16(v.notify_addr, 0);
		}
		used = __atomic_load_n(&vq_used.idx, __ATOMIC_ACQUIRE);
		if (used == used_seen) {
			if (now_ms(t_last) > VIO_TIMEOUT) {
				lost = inflight;
				break;
			}
			cpu_relax();
			continue;
		}
		if ((uint16_t)(used - used_seen) > inflight) {
			/* More completions than requests out: repeats. */
			dup += (uint16_t)(used - used_seen) - inflight;
			used = (uint16_t)(used_seen + inflight);
		}
		for (; used_seen != used; used_seen++) {
			uint32_t id = vq_used.ring[used_seen % v.qsize].id;
			uint32_t len = vq_used.ring[used_seen % v.qsize].len;
			unsigned s = id / 3;
			uint64_t oldest = ~0ULL;

			if (id % 3 || s >= qd || !vs_inflight[s]) {
				dup++;
				continue;
			}
			for (unsigned o = 0; o < qd; o++)
				if (vs_inflight[o] && vs_inflight[o] < oldest)
					oldest = vs_inflight[o];
			order += vs_inflight[s] != oldest;
			bad += blk_status[s] != 0 || len != (rd ? 4097u : 1u) ||
			       (rd && !vs_check(buf + s * 4096ULL,
						(vs_inflight[s] - 1) % span));
			vs_inflight[s] = 0;
			inflight--;
			done++;
			if (done % 100 == 0 || done == n)
				con_printf("KHYVE-VSTREAM done=%lu sent=%lu "
					   "dup=%lu bad=%lu\n",
					   done, sent, dup, bad);
		}
		t_last = rdtsc();
	}
	if (!lost && !rd && (v.features & VIRTIO_BLK_F_FLUSH)) {
		blk_prep(&v, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
		bad += blk_batch(&v, 1) != 0;
	}
	report("vstream", done == n && !dup && !bad && !lost,
	       "done=%lu sent=%lu dup=%lu order=%lu bad=%lu lost=%lu qd=%u "
	       "read=%d",
	       done, sent, dup, order, bad, lost, qd, rd);
	vdev_reset(&v);
}

void vblk_test(void)
{
	struct vdev v = {0};
	const char *why = "";
	uint64_t n = G.cfg.vblk_sectors, cap, buf, bytes, sum = 0, bad = 0;
	uint64_t base = G.cfg.vblk_sectors * 512ULL; /* disk offset written */
	int ro, st;

	buf = (G.usable_lo + 4095) & ~4095ULL;
	bytes = n * 512;
	if (pci_find(0x1042, 0x1001, &v)) {
		report("vblk", 0, "op=find no virtio-blk PCI function");
		return;
	}
	if (vdev_init(&v, VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH, &why)) {
		report("vblk", 0, "op=init pci=%x:%x.%x %s", v.bdf >> 8,
		       v.bdf >> 3 & 31, v.bdf & 7, why);
		vdev_reset(&v);
		return;
	}
	cap = (uint64_t)mmio_read32(v.device) |
	      (uint64_t)mmio_read32(v.device + 4) << 32;
	ro = !!(v.features & VIRTIO_BLK_F_RO);
	con_printf("KHYVE-INFO vblk pci=00:%02x.%x id=0x%x capacity=%lu ro=%d "
		   "qsize=%u common=0x%lx\n",
		   v.bdf >> 3, v.bdf & 7, v.pci_id, cap, ro, v.qsize, v.common);
	if (!n || cap < 2 * n || !gmm_is_ram(G.mm, G.mm_n, buf, bytes)) {
		report("vblk", 0, "op=setup sectors=%lu capacity=%lu", n, cap);
		vdev_reset(&v);
		return;
	}
	/* 1. What the host put in sectors [0, n): the host compares sums. */
	memset((void *)buf, 0, bytes);
	st = blk_rw(&v, VIRTIO_BLK_T_IN, 0, buf, n);
	for (uint64_t a = buf; a < buf + bytes; a += 8)
		sum += *(volatile uint64_t *)a;
	report("vblk", st == 0, "op=read sectors=%lu sum=0x%lx status=%d", n,
	       sum, st);
	/* 2. A pattern (of the disk offset) into [n, 2n). */
	for (uint64_t i = 0; i < bytes; i += 8)
		*(volatile uint64_t *)(buf + i) = g_pattern(base + i, G.cfg.seed);
	st = blk_rw(&v, VIRTIO_BLK_T_OUT, n, buf, n);
	if (ro) {
		/* A read-only disk must refuse the write, not drop it. */
		report("vblk", st == VIRTIO_BLK_S_IOERR,
		       "op=ro-write sectors=%lu status=%d", n, st);
		vdev_reset(&v);
		return;
	}
	report("vblk", st == 0, "op=write sectors=%lu status=%d", n, st);
	if (v.features & VIRTIO_BLK_F_FLUSH) {
		blk_prep(&v, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
		st = blk_batch(&v, 1);
		report("vblk", st == 0, "op=flush status=%d", st);
	}
	/* 3. Read it back. */
	memset((void *)buf, 0, bytes);
	st = blk_rw(&v, VIRTIO_BLK_T_IN, n, buf, n);
	for (uint64_t i = 0; i < bytes; i += 8)
		bad += *(volatile uint64_t *)(buf + i) !=
		       g_pattern(base + i, G.cfg.seed);
	report("vblk", st == 0 && !bad, "op=verify sectors=%lu bad=%lu status=%d",
	       n, bad, st);
	if (G.cfg.vblk_bench_mb)
		vblk_bench(&v, buf, cap);
	vdev_reset(&v);
}

void vrng_test(void)
{
	struct vdev v = {0};
	const char *why = "";
	unsigned zero = 0, same = 0;
	uint32_t len0, len1;
	int st;

	if (pci_find(0x1044, 0x1005, &v)) {
		report("vrng", 0, "op=find no virtio-rng PCI function");
		return;
	}
	if (vdev_init(&v, 0, &why)) {
		report("vrng", 0, "op=init %s", why);
		vdev_reset(&v);
		return;
	}
	memset(rng_buf, 0, sizeof(rng_buf));
	desc_set(0, (uint64_t)rng_buf[0], sizeof(rng_buf[0]), VQ_DESC_F_WRITE,
		 0);
	desc_set(1, (uint64_t)rng_buf[1], sizeof(rng_buf[1]), VQ_DESC_F_WRITE,
		 0);
	vq_push(&v, 0);
	vq_push(&v, 1);
	st = vq_run(&v);
	len0 = vq_used.ring[0].len;
	len1 = vq_used.ring[1].len;
	for (unsigned i = 0; i < sizeof(rng_buf[0]); i++) {
		zero += !rng_buf[0][i];
		same += rng_buf[0][i] == rng_buf[1][i];
	}
	/* 64 random bytes: a handful of zeros or matches at most. */
	report("vrng", !st && len0 == 64 && len1 == 64 && zero < 8 && same < 8,
	       "pci=00:%02x.%x bytes=%u+%u zero=%u same=%u status=%d",
	       v.bdf >> 3, v.bdf & 7, len0, len1, zero, same, st);
	vdev_reset(&v);
}

/*
 * tests=vcon: virtio-console port 0 (no MULTIPORT). The receiveq (0) uses
 * the shared ring with VCON_NRX writable buffers, the transmitq (1) a small
 * ring of its own. The guest says "KHYVE-VCON hello cols=C rows=R" on the
 * port, waits (VCON_TIMEOUT ms) for one line from the host and sends it
 * back upper-cased as "KHYVE-VCON echo <LINE>".
 */
#define VCON_TXQ_SIZE 16
#define VCON_NRX      4
#define VCON_RXBUF    64
#define VCON_LINE     128
#define VCON_TIMEOUT  60000
#define VIRTIO_CONSOLE_F_SIZE (1ULL << 0)

static struct vq_desc vtx_desc[VCON_TXQ_SIZE] __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx;
	uint16_t ring[VCON_TXQ_SIZE];
	uint16_t used_event;
} vtx_avail __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx;
	struct {
		uint32_t id, len;
	} ring[VCON_TXQ_SIZE];
	uint16_t avail_event;
} vtx_used __attribute__((aligned(4096)));
static char vcon_rx[VCON_NRX][VCON_RXBUF];
static char vcon_tx[VCON_LINE + 32];

static void vcon_queue(struct vdev *v, unsigned q, uint16_t size, uint64_t desc,
		       uint64_t avail, uint64_t used, uint64_t *notify_addr)
{
	uint64_t c = v->common;

	mmio_write16(c + CC_QSELECT, (uint16_t)q);
	mmio_write16(c + CC_QSIZE, size);
	mmio_write16(c + CC_QMSIX, 0xffff); /* no vector: we poll */
	mmio_write32(c + CC_QDESC, (uint32_t)desc);
	mmio_write32(c + CC_QDESC + 4, (uint32_t)(desc >> 32));
	mmio_write32(c + CC_QAVAIL, (uint32_t)avail);
	mmio_write32(c + CC_QAVAIL + 4, (uint32_t)(avail >> 32));
	mmio_write32(c + CC_QUSED, (uint32_t)used);
	mmio_write32(c + CC_QUSED + 4, (uint32_t)(used >> 32));
	*notify_addr =
		v->notify + (uint64_t)mmio_read16(c + CC_QNOFF) * v->notify_mult;
	mmio_write16(c + CC_QENABLE, 1);
}

/* vdev_init() for two queues: both are live before DRIVER_OK. */
static int vcon_init(struct vdev *v, uint64_t *rx_notify, uint64_t *tx_notify,
		     const char **why)
{
	uint64_t c, drv, t0 = rdtsc();
	uint16_t rq, tq;

	if (pci_caps(v)) {
		*why = "no-modern-caps";
		return -1;
	}
	c = v->common;
	pci_wr32(v->bdf, 4, (pci_rd32(v->bdf, 4) & 0xffff) | 0x6);
	mmio_write8(c + CC_STATUS, 0);
	while (mmio_read8(c + CC_STATUS)) {
		if (now_ms(t0) > VIO_TIMEOUT) {
			*why = "reset-timeout";
			return -1;
		}
		cpu_relax();
	}
	mmio_write8(c + CC_STATUS, ST_ACK);
	mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER);
	mmio_write32(c + CC_DFSELECT, 0);
	v->features = mmio_read32(c + CC_DF);
	mmio_write32(c + CC_DFSELECT, 1);
	v->features |= (uint64_t)mmio_read32(c + CC_DF) << 32;
	if (!(v->features & VIRTIO_F_VERSION_1)) {
		*why = "no-version-1";
		return -1;
	}
	drv = VIRTIO_F_VERSION_1 | (v->features & VIRTIO_CONSOLE_F_SIZE);
	mmio_write32(c + CC_GFSELECT, 0);
	mmio_write32(c + CC_GF, (uint32_t)drv);
	mmio_write32(c + CC_GFSELECT, 1);
	mmio_write32(c + CC_GF, (uint32_t)(drv >> 32));
	mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	if (!(mmio_read8(c + CC_STATUS) & ST_FEATURES_OK)) {
		*why = "features-refused";
		return -1;
	}
	mmio_write16(c + CC_QSELECT, 0);
	rq = mmio_read16(c + CC_QSIZE);
	mmio_write16(c + CC_QSELECT, 1);
	tq = mmio_read16(c + CC_QSIZE);
	if (rq < VCON_NRX || tq < VCON_TXQ_SIZE) {
		*why = "queues-too-small";
		return -1;
	}
	v->qsize = rq < VQ_SIZE ? rq : VQ_SIZE;
	v->avail_idx = 0;
	memset(vq_desc, 0, sizeof(vq_desc));
	memset(&vq_avail, 0, sizeof(vq_avail));
	memset(&vq_used, 0, sizeof(vq_used));
	memset(vtx_desc, 0, sizeof(vtx_desc));
	memset(&vtx_avail, 0, sizeof(vtx_avail));
	memset(&vtx_used, 0, sizeof(vtx_used));
	vq_avail.flags = VQ_AVAIL_F_NO_INTERRUPT;
	vtx_avail.flags = VQ_AVAIL_F_NO_INTERRUPT;
	vcon_queue(v, 0, v->qsize, (uint64_t)vq_desc, (uint64_t)&vq_avail,
		   (uint64_t)&vq_used, rx_notify);
	vcon_queue(v, 1, VCON_TXQ_SIZE, (uint64_t)vtx_desc,
		   (uint64_t)&vtx_avail, (uint64_t)&vtx_used, tx_notify);
	mmio_write8(c + CC_STATUS,
		    ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	return 0;
}

/* One buffer out on the transmitq; 0 once the device has used it. */
static int vcon_send(uint64_t tx_notify, const char *s, uint32_t len)
{
	uint16_t idx = vtx_avail.idx;
	uint64_t t0 = rdtsc();

	vtx_desc[idx % VCON_TXQ_SIZE] =
		(struct vq_desc){(uint64_t)s, len, 0, 0};
	vtx_avail.ring[idx % VCON_TXQ_SIZE] = (uint16_t)(idx % VCON_TXQ_SIZE);
	__atomic_store_n(&vtx_avail.idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
	mmio_write16(tx_notify, 1);
	while (__atomic_load_n(&vtx_used.idx, __ATOMIC_ACQUIRE) !=
	       (uint16_t)(idx + 1)) {
		if (now_ms(t0) > VIO_TIMEOUT)
			return VIO_TIMED_OUT;
		cpu_relax();
	}
	return 0;
}

/* Hand receive buffer @d (back) to the device. */
static void vcon_post_rx(struct vdev *v, uint64_t rx_notify, unsigned d)
{
	desc_set(d, (uint64_t)vcon_rx[d], VCON_RXBUF, VQ_DESC_F_WRITE, 0);
	vq_push(v, (uint16_t)d);
	__atomic_store_n(&vq_avail.idx, v->avail_idx, __ATOMIC_RELEASE);
	mmio_write16(rx_notify, 0);
}

/* The next line from the host (without its end), or -1 on timeout. */
static int vcon_getline(struct vdev *v, uint64_t rx_notify, char *line,
			unsigned max, uint64_t *got)
{
	uint16_t seen = 0;
	uint64_t t0 = rdtsc();
	unsigned n = 0;

	while (now_ms(t0) <= VCON_TIMEOUT) {
		uint32_t id, len;

		if (__atomic_load_n(&vq_used.idx, __ATOMIC_ACQUIRE) == seen) {
			cpu_relax();
			continue;
		}
		id = vq_used.ring[seen % v->qsize].id;
		len = vq_used.ring[seen % v->qsize].len;
		seen++;
		if (id >= VCON_NRX || len > VCON_RXBUF)
			return -2; /* the device broke the protocol */
		*got += len;
		for (uint32_t i = 0; i < len; i++) {
			char ch = vcon_rx[id][i];

			if (ch == '\n' || ch == '\r') {
				if (n) {
					line[n] = 0;
					return (int)n;
				}
			} else if (n + 1 < max) {
				line[n++] = ch;
			}
		}
		vcon_post_rx(v, rx_notify, id);
	}
	return -1;
}

void vcon_test(void)
{
	struct vdev v = {0};
	const char *why = "";
	uint64_t rx_notify, tx_notify, got = 0;
	unsigned cols = 0, rows = 0;
	char line[VCON_LINE];
	int n, st, len;

	if (pci_find(0x1043, 0x1003, &v)) {
		report("vcon", 0, "op=find no virtio-console PCI function");
		return;
	}
	if (vcon_init(&v, &rx_notify, &tx_notify, &why)) {
		report("vcon", 0, "op=init %s", why);
		vdev_reset(&v);
		return;
	}
	if ((v.features & VIRTIO_CONSOLE_F_SIZE) && v.device) {
		cols = mmio_read16(v.device);
		rows = mmio_read16(v.device + 2);
	}
	con_printf("KHYVE-INFO vcon pci=00:%02x.%x id=0x%x cols=%u rows=%u\n",
		   v.bdf >> 3, v.bdf & 7, v.pci_id, cols, rows);
	for (unsigned d = 0; d < VCON_NRX; d++)
		vcon_post_rx(&v, rx_notify, d);
	len = g_snprintf(vcon_tx, sizeof(vcon_tx),
			 "KHYVE-VCON hello cols=%u rows=%u\n", cols, rows);
	st = vcon_send(tx_notify, vcon_tx, (uint32_t)len);
	if (st) {
		report("vcon", 0, "op=hello status=%d", st);
		vdev_reset(&v);
		return;
	}
	n = vcon_getline(&v, rx_notify, line, sizeof(line), &got);
	if (n < 0) {
		report("vcon", 0, "op=read status=%d got=%lu", n, got);
		vdev_reset(&v);
		return;
	}
	for (int i = 0; i < n; i++)
		if (line[i] >= 'a' && line[i] <= 'z')
			line[i] = (char)(line[i] - 'a' + 'A');
	len = g_snprintf(vcon_tx, sizeof(vcon_tx), "KHYVE-VCON echo %s\n",
			 line);
	st = vcon_send(tx_notify, vcon_tx, (uint32_t)len);
	report("vcon", !st, "pci=00:%02x.%x line=%d got=%lu status=%d",
	       v.bdf >> 3, v.bdf & 7, n, got, st);
	vdev_reset(&v);
}

/*
 * tests=vnet: virtio-net (device 0x1041, transitional 0x1000), receiveq 0
 * and transmitq 1 on rings of their own. VERSION_1 (+MAC, STATUS when
 * offered), no offloads and no MRG_RXBUF, so every buffer starts with the
 * 12-byte virtio_net_hdr, all zero on transmit. The guest is a tiny IPv4
 * host at vnet_src: it answers ARP for itself, resolves vnet_dst by ARP,
 * sends a sequenced UDP burst there, optionally a throughput run, then
 * optionally echoes UDP datagrams (to vnet_port) and ICMP echo requests
 * until the host sends "KHYVE-VNET-QUIT". Transmit buffers are recycled
 * from the used ring, up to vnet_qd frames in flight per kick.
 */
#define VN_RXQ		    64
#define VN_TXQ		    256
#define VN_SLOT		    2048 /* header + the largest frame fits */
#define VN_HDR		    12
#define VN_ETH		    14
#define VN_UDP_OFF	    (VN_ETH + 20 + 8) /* payload offset in a frame */
#define VN_MAX_PAYLOAD	    1472
#define VN_BENCH_LEN	    1400
#define VN_ARP_MS	    5000
#define VN_QUIT		    "KHYVE-VNET-QUIT"
#define VIRTIO_NET_F_MAC    (1ULL << 5)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define VQ_USED_F_NO_NOTIFY 1

#define VN_RING(n)                                                             \
	struct {                                                               \
		struct vq_desc desc[n];                                        \
		struct {                                                       \
			uint16_t flags, idx;                                   \
			uint16_t ring[n];                                      \
			uint16_t used_event;                                   \
		} avail __attribute__((aligned(4096)));                        \
		struct {                                                       \
			uint16_t flags, idx;                                   \
			struct {                                               \
				uint32_t id, len;                              \
			} ring[n];                                             \
			uint16_t avail_event;                                  \
		} used __attribute__((aligned(4096)));                         \
	} __attribute__((aligned(4096)))

static VN_RING(VN_RXQ) vn_rx;
static VN_RING(VN_TXQ) vn_tx;

static struct {
	struct vdev v;
	uint64_t rx_notify, tx_notify, rxbuf, txbuf;
	uint16_t rxqs, txqs;
	uint16_t rx_avail, rx_seen, tx_avail, tx_seen;
	uint16_t tx_free[VN_TXQ];
	unsigned nfree;
	uint16_t ip_id;
	uint8_t mac[6], peer[6];
	int have_peer, quit;
	uint64_t tx_sent, tx_done, tx_bad, burst;
	uint64_t rx_frames, rx_bad, arp_in, arp_out, icmp, udp, other;
} VN;

static const uint8_t vn_bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Internet checksum (RFC 1071) of @n bytes, ready to store. */
static uint16_t inet_csum(const uint8_t *p, unsigned n)
{
	uint32_t sum = 0;

	for (unsigned i = 0; i + 1 < n; i += 2)
		sum += get16(p + i);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void vn_fmt_ip(char *b, size_t n, uint32_t ip)
{
	g_snprintf(b, n, "%u.%u.%u.%u", ip >> 24, ip >> 16 & 255, ip >> 8 & 255,
		   ip & 255);
}

static void vn_fmt_mac(char *b, size_t n, const uint8_t *m)
{
	g_snprintf(b, n, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2],
		   m[3], m[4], m[5]);
}

/* Kick a queue unless the device said it is polling it already. */
static void vn_kick(uint64_t notify, volatile uint16_t *used_flags, uint16_t q)
{
	/* Our avail idx store must be visible before we read its flag. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(*used_flags & VQ_USED_F_NO_NOTIFY))
		mmio_write16(notify, q);
}

/* Take back transmit buffers the device is done with. */
static void vn_tx_reclaim(void)
{
	uint16_t used = __atomic_load_n(&vn_tx.used.idx, __ATOMIC_ACQUIRE);

	for (; VN.tx_seen != used; VN.tx_seen++) {
		uint32_t id = vn_tx.used.ring[VN.tx_seen % VN.txqs].id;

		if (id >= VN.txqs || VN.nfree >= VN.txqs ||
		    VN.tx_sent == VN.tx_done) {
			VN.tx_bad++; /* not a buffer we had out */
			continue;
		}
		VN.tx_free[VN.nfree++] = (uint16_t)id;
		VN.tx_done++;
	}
}

/* A free transmit slot (frame at the returned pointer), or NULL. */
static uint8_t *vn_tx_slot(uint16_t *id)
{
	if (!VN.nfree)
		vn_tx_reclaim();
	if (!VN.nfree)
		return 0;
	*id = VN.tx_free[--VN.nfree];
	return (uint8_t *)(VN.txbuf + (uint64_t)*id * VN_SLOT + VN_HDR);
}

/* Put slot @id with a @len byte frame on the ring (published later). */
static void vn_tx_queue(uint16_t id, uint32_t len)
{
	uint64_t a = VN.txbuf + (uint64_t)id * VN_SLOT;

	memset((void *)a, 0, VN_HDR);
	vn_tx.desc[id] = (struct vq_desc){a, VN_HDR + len, 0, 0};
	vn_tx.avail.ring[VN.tx_avail % VN.txqs] = id;
	VN.tx_avail++;
	VN.tx_sent++;
}

static void vn_tx_publish(void)
{
	__atomic_store_n(&vn_tx.avail.idx, VN.tx_avail, __ATOMIC_RELEASE);
	vn_kick(VN.tx_notify, &vn_tx.used.flags, 1);
}

/* A slot, waiting up to VIO_TIMEOUT for one; NULL if none came back. */
static uint8_t *vn_tx_wait_slot(uint16_t *id)
{
	uint64_t t0 = rdtsc();
	uint8_t *f;

	while (!(f = vn_tx_slot(id))) {
		if (now_ms(t0) > VIO_TIMEOUT)
			return 0;
		cpu_relax();
	}
	return f;
}

/* Ethernet + IPv4 + UDP headers for a @plen byte payload at f + 42. */
static uint32_t vn_udp_hdr(uint8_t *f, const uint8_t *dmac, uint32_t dip,
			   uint16_t sport, uint16_t dport, uint32_t plen)
{
	uint8_t *ip = f + VN_ETH, *u = ip + 20;

	memcpy(f, dmac, 6);
	memcpy(f + 6, VN.mac, 6);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, 20 + 8 + plen);
	put16(ip + 4, VN.ip_id++);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = 17;
	put16(ip + 10, 0);
	put32(ip + 12, G.cfg.vnet_src);
	put32(ip + 16, dip);
	put16(ip + 10, inet_csum(ip, 20));
	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, 8 + plen);
	put16(u + 6, 0); /* no UDP checksum (allowed on IPv4) */
	return VN_UDP_OFF + plen;
}

static int vn_send_arp(uint16_t op, const uint8_t *tha, uint32_t tpa)
{
	uint16_t id;
	uint8_t *f = vn_tx_wait_slot(&id);

	if (!f)
		return -1;
	memset(f, 0, 60);
	memcpy(f, op == 1 ? vn_bcast : tha, 6);
	memcpy(f + 6, VN.mac, 6);
	put16(f + 12, 0x0806);
	put16(f + 14, 1);      /* Ethernet */
	put16(f + 16, 0x0800); /* IPv4 */
	f[18] = 6;
	f[19] = 4;
	put16(f + 20, op);
	memcpy(f + 22, VN.mac, 6);
	put32(f + 28, G.cfg.vnet_src);
	if (op == 2)
		memcpy(f + 32, tha, 6);
	put32(f + 38, tpa);
	vn_tx_queue(id, 60); /* padded to the Ethernet minimum */
	vn_tx_publish();
	VN.arp_out++;
	return 0;
}

static void vn_arp_in(const uint8_t *f, uint32_t n)
{
	uint16_t op;
	uint32_t spa, tpa;

	if (n < 42 || get16(f + 14) != 1 || get16(f + 16) != 0x0800 ||
	    f[18] != 6 || f[19] != 4) {
		VN.other++;
		return;
	}
	op = get16(f + 20);
	spa = get32(f + 28);
	tpa = get32(f + 38);
	VN.arp_in++;
	if (spa == G.cfg.vnet_dst && (op == 2 || tpa == G.cfg.vnet_src)) {
		memcpy(VN.peer, f + 22, 6);
		VN.have_peer = 1;
	}
	if (op == 1 && tpa == G.cfg.vnet_src)
		vn_send_arp(2, f + 22, spa);
}

/* An ICMP echo request to us: the same frame back as a reply. */
static void vn_icmp_in(const uint8_t *f, uint32_t ihl, uint32_t tot)
{
	uint8_t *r, *ip, *ic;
	uint16_t id;

	if (tot < ihl + 8 || f[VN_ETH + ihl] != 8) {
		VN.other++;
		return;
	}
	r = vn_tx_wait_slot(&id);
	if (!r)
		return;
	memcpy(r, f, VN_ETH + tot);
	memcpy(r, f + 6, 6);
	memcpy(r + 6, VN.mac, 6);
	ip = r + VN_ETH;
	memcpy(ip + 16, f + VN_ETH + 12, 4);
	put32(ip + 12, G.cfg.vnet_src);
	ip[8] = 64;
	put16(ip + 10, 0);
	put16(ip + 10, inet_csum(ip, ihl));
	ic = ip + ihl;
	ic[0] = 0; /* echo reply */
	put16(ic + 2, 0);
	put16(ic + 2, inet_csum(ic, tot - ihl));
	vn_tx_queue(id, VN_ETH + tot);
	vn_tx_publish();
	VN.icmp++;
}

/* A UDP datagram to vnet_port: sent back to where it came from. */
static void vn_udp_in(const uint8_t *f, uint32_t ihl, uint32_t tot)
{
	const uint8_t *u = f + VN_ETH + ihl;
	uint32_t ulen, plen;
	uint8_t *r;
	uint16_t id;

	if (tot < ihl + 8 || get16(u + 2) != G.cfg.vnet_port) {
		VN.other++;
		return;
	}
	ulen = get16(u + 4);
	if (ulen < 8 || ulen > tot - ihl || ulen - 8 > VN_MAX_PAYLOAD) {
		VN.rx_bad++;
		return;
	}
	plen = ulen - 8;
	if (plen >= sizeof(VN_QUIT) - 1 &&
	    !g_strncmp((const char *)u + 8, VN_QUIT, sizeof(VN_QUIT) - 1))
		VN.quit = 1;
	r = vn_tx_wait_slot(&id);
	if (!r)
		return;
	memcpy(r + VN_UDP_OFF, u + 8, plen);
	vn_tx_queue(id, vn_udp_hdr(r, f + 6, get32(f + VN_ETH + 12),
				   (uint16_t)G.cfg.vnet_port, get16(u), plen));
	vn_tx_publish();
	VN.udp++;
}

static void vn_frame(const uint8_t *f, uint32_t n)
{
	uint32_t ihl, tot;

	VN.rx_frames++;
	if (n < VN_ETH) {
		VN.rx_bad++;
		return;
	}
	if (get16(f + 12) == 0x0806) {
		vn_arp_in(f, n);
		return;
	}
	if (get16(f + 12) != 0x0800 || n < VN_ETH + 20 || f[VN_ETH] >> 4 != 4) {
		VN.other++; /* IPv6 neighbour discovery and the like */
		return;
	}
	ihl = (f[VN_ETH] & 15) * 4u;
	tot = get16(f + VN_ETH + 2);
	if (ihl < 20 || tot < ihl || tot > n - VN_ETH) {
		VN.rx_bad++;
		return;
	}
	/* Ours, and not a fragment. */
	if (get32(f + VN_ETH + 16) != G.cfg.vnet_src ||
	    (get16(f + VN_ETH + 6) & 0x3fff)) {
		VN.other++;
		return;
	}
	if (f[VN_ETH + 9] == 1)
		vn_icmp_in(f, ihl, tot);
	else if (f[VN_ETH + 9] == 17)
		vn_udp_in(f, ihl, tot);
	else
		VN.other++;
}

/* Handle every received frame, give the buffers back and kick. */
static void vn_poll_rx(void)
{
	uint16_t used = __atomic_load_n(&vn_rx.used.idx, __ATOMIC_ACQUIRE);

	if (used == VN.rx_seen)
		return;
	for (; VN.rx_seen != used; VN.rx_seen++) {
		uint32_t id = vn_rx.used.ring[VN.rx_seen % VN.rxqs].id;
		uint32_t len = vn_rx.used.ring[VN.rx_seen % VN.rxqs].len;

		if (id >= VN.rxqs) {
			VN.rx_bad++; /* never ours: nothing to give back */
			continue;
		}
		if (len < VN_HDR || len > VN_SLOT)
			VN.rx_bad++;
		else
			vn_frame((const uint8_t *)(VN.rxbuf +
						   (uint64_t)id * VN_SLOT +
						   VN_HDR),
				 len - VN_HDR);
		vn_rx.avail.ring[VN.rx_avail % VN.rxqs] = (uint16_t)id;
		VN.rx_avail++;
	}
	__atomic_store_n(&vn_rx.avail.idx, VN.rx_avail, __ATOMIC_RELEASE);
	vn_kick(VN.rx_notify, &vn_rx.used.flags, 0);
}

/* Serve the receive side for @us microseconds. */
static void vn_wait_us(uint64_t us)
{
	uint64_t t0 = rdtsc();

	while (us_since(t0) < us) {
		vn_poll_rx();
		cpu_relax();
	}
}

/* Until every frame sent was used, or VIO_TIMEOUT; 0 if all were. */
static int vn_tx_drain(void)
{
	uint64_t t0 = rdtsc();

	for (;;) {
		vn_tx_reclaim();
		if (VN.tx_done == VN.tx_sent)
			return 0;
		if (now_ms(t0) > VIO_TIMEOUT)
			return VIO_TIMED_OUT;
		vn_poll_rx();
		cpu_relax();
	}
}

static int vn_init(const char **why)
{
	struct vdev *v = &VN.v;
	uint64_t c;
	uint16_t rq, tq;

	if (vdev_start(v, VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS, why))
		return -1;
	c = v->common;
	mmio_write16(c + CC_QSELECT, 0);
	rq = mmio_read16(c + CC_QSIZE);
	mmio_write16(c + CC_QSELECT, 1);
	tq = mmio_read16(c + CC_QSIZE);
	if (rq < 2 || tq < 2) {
		*why = "queues-too-small";
		return -1;
	}
	VN.rxqs = rq < VN_RXQ ? rq : VN_RXQ;
	VN.txqs = tq < VN_TXQ ? tq : VN_TXQ;
	memset(&vn_rx, 0, sizeof(vn_rx));
	memset(&vn_tx, 0, sizeof(vn_tx));
	vn_rx.avail.flags = VQ_AVAIL_F_NO_INTERRUPT;
	vn_tx.avail.flags = VQ_AVAIL_F_NO_INTERRUPT;
	vcon_queue(v, 0, VN.rxqs, (uint64_t)vn_rx.desc, (uint64_t)&vn_rx.avail,
		   (uint64_t)&vn_rx.used, &VN.rx_notify);
	vcon_queue(v, 1, VN.txqs, (uint64_t)vn_tx.desc, (uint64_t)&vn_tx.avail,
		   (uint64_t)&vn_tx.used, &VN.tx_notify);
	/* Every receive buffer is posted before the device may use them. */
	for (uint16_t i = 0; i < VN.rxqs; i++) {
		vn_rx.desc[i] =
			(struct vq_desc){VN.rxbuf + (uint64_t)i * VN_SLOT,
					 VN_SLOT, VQ_DESC_F_WRITE, 0};
		vn_rx.avail.ring[i] = i;
	}
	VN.rx_avail = VN.rxqs;
	vn_rx.avail.idx = VN.rxqs;
	for (uint16_t i = 0; i < VN.txqs; i++)
		VN.tx_free[i] = (uint16_t)(VN.txqs - 1 - i);
	VN.nfree = VN.txqs;
	mmio_write8(c + CC_STATUS,
		    ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	mmio_write16(VN.rx_notify, 0);
	return 0;
}

/* Resolve vnet_dst; 0, or -1 (then frames go to the broadcast MAC). */
static int vn_arp_resolve(uint64_t *ms)
{
	uint64_t t0 = rdtsc();

	while (!VN.have_peer && now_ms(t0) < VN_ARP_MS) {
		if (vn_send_arp(1, vn_bcast, G.cfg.vnet_dst))
			break;
		for (uint64_t t1 = rdtsc();
		     !VN.have_peer && now_ms(t1) < 250;) {
			vn_poll_rx();
			cpu_relax();
		}
	}
	*ms = now_ms(t0);
	if (!VN.have_peer)
		memcpy(VN.peer, vn_bcast, 6);
	return VN.have_peer ? 0 : -1;
}

/* Payload: magic, sequence, count, then (seq * 7 + i) & 0xff at byte i. */
static void vn_payload(uint8_t *p, const char *magic, uint64_t seq, uint64_t n,
		       uint32_t len, int fill)
{
	memcpy(p, magic, 8);
	put_le64(p + 8, seq);
	put_le64(p + 16, n);
	for (uint32_t i = 24; fill && i < len; i++)
		p[i] = (uint8_t)(seq * 7 + i);
}

/*
 * vnet_n frames of vnet_len payload bytes, sequence 0..n-1, one kick
 * each, vnet_gap_us apart (answering ARP meanwhile).
 */
static int vn_burst(void)
{
	uint32_t n = G.cfg.vnet_n, len = G.cfg.vnet_len;

	for (uint32_t seq = 0; seq < n; seq++) {
		uint16_t id;
		uint8_t *f = vn_tx_wait_slot(&id);

		if (!f)
			return VIO_TIMED_OUT;
		vn_payload(f + VN_UDP_OFF, "KHYVNET1", seq, n, len, 1);
		vn_tx_queue(id, vn_udp_hdr(f, VN.peer, G.cfg.vnet_dst,
					   (uint16_t)G.cfg.vnet_port,
					   (uint16_t)G.cfg.vnet_dport, len));
		vn_tx_publish();
		VN.burst++;
		if ((seq + 1) % 100 == 0 || seq + 1 == n)
			con_printf("KHYVE-VNET sent=%u\n", seq + 1);
		if (G.cfg.vnet_gap_us)
			vn_wait_us(G.cfg.vnet_gap_us);
		else
			vn_poll_rx();
	}
	return vn_tx_drain();
}

/*
 * vnet_bench_mb MiB of 1400-byte UDP payloads: refill to vnet_qd frames
 * in flight whenever half of them came back, one kick per refill. The
 * payload bytes are written once per slot; each frame gets new headers
 * and sequence number only (magic "KHYVBNCH").
 */
static void vn_bench(void)
{
	uint64_t total = (uint64_t)G.cfg.vnet_bench_mb << 20;
	uint64_t npk = (total + VN_BENCH_LEN - 1) / VN_BENCH_LEN;
	uint64_t sent0, done0, t0, t_prog, us, seq = 0, last_done;
	unsigned qd = G.cfg.vnet_qd;
	int ret;

	/* Earlier frames (ARP) must not count as benchmark completions. */
	ret = vn_tx_drain();
	sent0 = VN.tx_sent;
	done0 = last_done = VN.tx_done;

	if (qd < 1)
		qd = 1;
	if (qd > VN.txqs)
		qd = VN.txqs;
	for (unsigned i = 0; i < VN.txqs; i++)
		vn_payload((uint8_t *)(VN.txbuf + (uint64_t)i * VN_SLOT +
				       VN_HDR + VN_UDP_OFF),
			   "KHYVBNCH", 0, npk, VN_BENCH_LEN, 1);
	con_printf("KHYVE-INFO vnet-bench mb=%u len=%u pkts=%lu qd=%u\n",
		   G.cfg.vnet_bench_mb, VN_BENCH_LEN, npk, qd);
	t0 = t_prog = rdtsc();
	while (!ret && VN.tx_done - done0 < npk) {
		uint64_t inflight;

		vn_tx_reclaim();
		inflight = VN.tx_sent - VN.tx_done;
		if (seq < npk && inflight <= qd / 2) {
			while (seq < npk && inflight < qd) {
				uint16_t id;
				uint8_t *f = vn_tx_slot(&id);

				if (!f)
					break;
				put_le64(f + VN_UDP_OFF + 8, seq++);
				vn_tx_queue(
					id,
					vn_udp_hdr(f, VN.peer, G.cfg.vnet_dst,
						   (uint16_t)G.cfg.vnet_port,
						   (uint16_t)G.cfg.vnet_dport,
						   VN_BENCH_LEN));
				inflight++;
			}
			vn_tx_publish();
		}
		if (VN.tx_done != last_done) {
			last_done = VN.tx_done;
			t_prog = rdtsc();
		} else if (now_ms(t_prog) > VIO_TIMEOUT) {
			ret = VIO_TIMED_OUT;
			break;
		} else {
			cpu_relax();
		}
	}
	us = us_since(t0);
	{
		uint64_t pk = VN.tx_done - done0, bytes = pk * VN_BENCH_LEN;
		uint64_t mbps10 = us ? bytes * 10 / us : 0;

		con_printf("KHYVE-BENCH vnet tx bytes=%lu pkts=%lu us=%lu "
			   "MBps=%lu.%lu pps=%lu qd=%u status=%d\n",
			   bytes, pk, us, mbps10 / 10, mbps10 % 10,
			   us ? pk * 1000000 / us : 0, qd, ret);
	}
	report("vnet-bench", !ret && VN.tx_sent - sent0 == npk,
	       "pkts=%lu status=%d", VN.tx_done - done0, ret);
}

void vnet_test(void)
{
	struct vdev *v = &VN.v;
	const char *why = "";
	char mac[20], src[16], dst[16], peer[20];
	uint64_t need = (uint64_t)(VN_RXQ + VN_TXQ) * VN_SLOT, ms;
	unsigned link = 1;
	int st;

	memset(&VN, 0, sizeof(VN));
	VN.rxbuf = (G.usable_lo + 4095) & ~4095ULL;
	VN.txbuf = VN.rxbuf + (uint64_t)VN_RXQ * VN_SLOT;
	if (!gmm_is_ram(G.mm, G.mm_n, VN.rxbuf, need) || G.cfg.vnet_len < 24 ||
	    G.cfg.vnet_len > VN_MAX_PAYLOAD || !G.cfg.vnet_port ||
	    G.cfg.vnet_port > 65535) {
		report("vnet", 0, "op=setup len=%u (24..%u) port=%u",
		       G.cfg.vnet_len, VN_MAX_PAYLOAD, G.cfg.vnet_port);
		return;
	}
	if (pci_find(0x1041, 0x1000, v)) {
		report("vnet", 0, "op=find no virtio-net PCI function");
		return;
	}
	if (vn_init(&why)) {
		report("vnet", 0, "op=init %s", why);
		vdev_reset(v);
		return;
	}
	if ((v->features & VIRTIO_NET_F_MAC) && v->device) {
		for (int i = 0; i < 6; i++)
			VN.mac[i] = mmio_read8(v->device + (uint64_t)i);
	} else {
		/* No MAC offered: ours, locally administered. */
		static const uint8_t own[6] = {0x02, 0, 0, 0x6b, 0x68, 0x79};

		memcpy(VN.mac, own, 6);
	}
	if ((v->features & VIRTIO_NET_F_STATUS) && v->device)
		link = mmio_read16(v->device + 6) & 1;
	vn_fmt_mac(mac, sizeof(mac), VN.mac);
	vn_fmt_ip(src, sizeof(src), G.cfg.vnet_src);
	vn_fmt_ip(dst, sizeof(dst), G.cfg.vnet_dst);
	con_printf("KHYVE-INFO vnet pci=00:%02x.%x id=0x%x mac=%s "
		   "mac_feature=%d link=%u rxq=%u txq=%u src=%s dst=%s:%u\n",
		   v->bdf >> 3, v->bdf & 7, v->pci_id, mac,
		   !!(v->features & VIRTIO_NET_F_MAC), link, VN.rxqs, VN.txqs,
		   src, dst, G.cfg.vnet_dport);
	report("vnet", link == 1, "op=init mac=%s link=%u", mac, link);
	st = vn_arp_resolve(&ms);
	vn_fmt_mac(peer, sizeof(peer), VN.peer);
	report("vnet", !st, "op=arp peer=%s ms=%lu requests=%lu", peer, ms,
	       VN.arp_out);
	if (G.cfg.vnet_n) {
		st = vn_burst();
		report("vnet", !st && !VN.tx_bad && VN.burst == G.cfg.vnet_n,
		       "op=tx sent=%lu len=%u gap_us=%u bad=%lu status=%d",
		       VN.burst, G.cfg.vnet_len, G.cfg.vnet_gap_us, VN.tx_bad,
		       st);
	}
	if (G.cfg.vnet_bench_mb)
		vn_bench();
	if (G.cfg.vnet_echo_ms) {
		uint64_t t0 = rdtsc();

		con_printf("KHYVE-VNET echo-ready ip=%s port=%u ms=%u\n", src,
			   G.cfg.vnet_port, G.cfg.vnet_echo_ms);
		while (!VN.quit && now_ms(t0) < G.cfg.vnet_echo_ms) {
			vn_poll_rx();
			cpu_relax();
		}
		st = vn_tx_drain();
		report("vnet", VN.quit && !st && !VN.rx_bad,
		       "op=echo quit=%d udp=%lu icmp=%lu arp_in=%lu "
		       "rx=%lu rx_bad=%lu other=%lu status=%d",
		       VN.quit, VN.udp, VN.icmp, VN.arp_in, VN.rx_frames,
		       VN.rx_bad, VN.other, st);
	}
	vdev_reset(v);
}

/*
 * "genid" (with counter): a virtio-rng kept set up on the shared ring for
 * the counter's identity lines, and the virtio-net MAC read straight from
 * its device configuration (no driver set-up: it is what the device
 * reports now, e.g. after a restore that gave the clone a new MAC).
 */
static struct vdev genid_rng;
static int genid_rng_on;

int genid_rng_start(void)
{
	const char *why = "";

	memset(&genid_rng, 0, sizeof(genid_rng));
	if (pci_find(0x1044, 0x1005, &genid_rng) ||
	    vdev_init(&genid_rng, 0, &why))
		return -1;
	genid_rng_on = 1;
	return 0;
}

int genid_rng_read(uint8_t *out, uint32_t len)
{
	uint32_t got;

	if (!genid_rng_on || len > sizeof(rng_buf[0]))
		return -1;
	memset(rng_buf[0], 0, sizeof(rng_buf[0]));
	desc_set(0, (uint64_t)rng_buf[0], len, VQ_DESC_F_WRITE, 0);
	vq_push(&genid_rng, 0);
	if (vq_run(&genid_rng))
		return -1;
	got = vq_used.ring[(uint16_t)(genid_rng.avail_idx - 1) %
			   genid_rng.qsize]
		      .len;
	memcpy(out, rng_buf[0], len);
	return (int)got;
}

int genid_mac_read(uint8_t mac[6])
{
	struct vdev v = {0};

	if (pci_find(0x1041, 0x1000, &v) || pci_caps(&v) || !v.device)
		return -1;
	pci_wr32(v.bdf, 4, (pci_rd32(v.bdf, 4) & 0xffff) | 0x2);
	for (int i = 0; i < 6; i++)
		mac[i] = mmio_read8(v.device + (uint64_t)i);
	return 0;
}

/*
 * "disk_blocks=N" (with counter): the counter's disk workload. Tick n
 * writes 4 KiB block n mod N (from sector CDISK_SECTOR) stamped with n;
 * each memcheck tick flushes and reads every block written so far back,
 * each of which must hold the stamp of the tick that last wrote it. What
 * was written is recorded in guest RAM, so a restored guest checks that
 * the disk holds exactly what its RAM says it wrote: a snapshot and its
 * disk must agree. The device stays set up on the shared ring (not with
 * genid, which keeps a virtio-rng there).
 */
#define CDISK_SECTOR 4096 /* 2 MiB into the disk */
#define CDISK_MAX    1024
#define CDISK_MAGIC  0x4b53494456594b48ULL /* "HKYVDISK" */

static struct vdev cdisk;
static uint32_t cdisk_gen[CDISK_MAX]; /* tick that last wrote a block */
static uint64_t cdisk_buf[512] __attribute__((aligned(4096)));

static uint64_t cdisk_word(unsigned slot, uint32_t gen, unsigned i)
{
	if (i == 0)
		return CDISK_MAGIC;
	if (i == 1)
		return gen;
	if (i == 2)
		return slot;
	return g_pattern((uint64_t)slot * 4096 + i * 8,
			 G.cfg.seed ^ ((uint64_t)gen << 20));
}

int cdisk_start(void)
{
	const char *why = "";
	uint64_t cap, need = CDISK_SECTOR + (uint64_t)G.cfg.disk_blocks * 8;

	if (G.cfg.disk_blocks > CDISK_MAX || G.cfg.genid) {
		report("counter-disk", 0, "op=setup blocks=%u max=%u genid=%d",
		       G.cfg.disk_blocks, CDISK_MAX, G.cfg.genid);
		return -1;
	}
	memset(&cdisk, 0, sizeof(cdisk));
	if (pci_find(0x1042, 0x1001, &cdisk) ||
	    vdev_init(&cdisk, VIRTIO_BLK_F_FLUSH, &why)) {
		report("counter-disk", 0, "op=init %s", why);
		return -1;
	}
	cap = (uint64_t)mmio_read32(cdisk.device) |
	      (uint64_t)mmio_read32(cdisk.device + 4) << 32;
	if (cap < need) {
		report("counter-disk", 0, "op=setup capacity=%lu need=%lu", cap,
		       need);
		return -1;
	}
	con_printf("KHYVE-INFO counter-disk pci=00:%02x.%x blocks=%u "
		   "sector=%u flush=%d\n",
		   cdisk.bdf >> 3, cdisk.bdf & 7, G.cfg.disk_blocks,
		   CDISK_SECTOR, !!(cdisk.features & VIRTIO_BLK_F_FLUSH));
	return 0;
}

/* Tick @n writes its block: 0, or -1 after a KHYVE-DISKCHECK bad line. */
int cdisk_tick(uint64_t n)
{
	unsigned slot = (unsigned)(n % G.cfg.disk_blocks);
	int st;

	for (unsigned i = 0; i < 512; i++)
		cdisk_buf[i] = cdisk_word(slot, (uint32_t)n, i);
	st = blk_rw(&cdisk, VIRTIO_BLK_T_OUT, CDISK_SECTOR + slot * 8ULL,
		    (uint64_t)cdisk_buf, 8);
	if (st) {
		con_printf("KHYVE-DISKCHECK bad %lu op=write slot=%u "
			   "status=%d\n",
			   n, slot, st);
		return -1;
	}
	cdisk_gen[slot] = (uint32_t)n;
	return 0;
}

/* Flush, then read every written block back and compare its stamp. */
int cdisk_check(uint64_t n)
{
	unsigned blocks = 0, bad = 0, bad_slot = 0;
	uint64_t got = 0;
	int st = 0;

	if (cdisk.features & VIRTIO_BLK_F_FLUSH) {
		blk_prep(&cdisk, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
		st = blk_batch(&cdisk, 1);
	}
	for (unsigned s = 0; !st && s < G.cfg.disk_blocks; s++) {
		unsigned wrong = 0;

		if (!cdisk_gen[s])
			continue;
		memset(cdisk_buf, 0, sizeof(cdisk_buf));
		st = blk_rw(&cdisk, VIRTIO_BLK_T_IN, CDISK_SECTOR + s * 8ULL,
			    (uint64_t)cdisk_buf, 8);
		for (unsigned i = 0; !st && i < 512; i++)
			wrong += cdisk_buf[i] != cdisk_word(s, cdisk_gen[s], i);
		if (wrong && !bad++) {
			bad_slot = s;
			got = cdisk_buf[1];
		}
		blocks++;
	}
	if (!st && !bad) {
		con_printf("KHYVE-DISKCHECK ok %lu blocks=%u\n", n, blocks);
		return 0;
	}
	con_printf("KHYVE-DISKCHECK bad %lu blocks=%u slot=%u gen=%u got=%lu "
		   "status=%d\n",
		   n, bad, bad_slot, cdisk_gen[bad_slot], got, st);
	return -1;
}
