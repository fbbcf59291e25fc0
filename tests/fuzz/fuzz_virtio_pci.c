/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer harness: a guest's register accesses to a virtio-pci function
 * in any order - PCI configuration space through ports 0xCF8/0xCFC (BARs,
 * command register, capabilities, the VIRTIO_PCI_CAP_PCI_CFG window), the
 * virtio BAR (common config, ISR, device config, notify) and the MSI-X
 * table and PBA, each at the address the BAR is programmed to - mixed with
 * guest RAM writes and device-side events. No VM: the buses, the PCI bus
 * and a toy device with two queues are the real code.
 *
 * Checked after every input (and wherever a SAVE op asks):
 * - no crash or UB (ASan/UBSan);
 * - a read fills exactly the bytes asked for, never more;
 * - the device model keeps its own contracts (device config accesses in
 *   bounds, kicks only for live queues);
 * - a checkpoint of the device cannot fail: every section is saved
 *   through its snapshot description, read back unchanged, loaded into a
 *   fresh device whose post_load must accept it, and that device saves
 *   the same state again. A guest must never make a checkpoint fail.
 *
 * Input: up to MAX_OPS ops, each an op byte and its arguments (see the
 * switch): bits 0-3 the kind, bits 4-5 the access size (1, 2, 4, 8
 * bytes), bit 7 write (else read). tests/fuzz/seeds.py writes the seeds;
 * FUZZ_VP_VERBOSE=1 prints where each input left the device.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "common.h"
#include "guest_mem.h"
#include "log.h"
#include "pci.h"
#include "snap.h"
#include "virtio_pci.h"
#include "virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE   (256 * 1024)
#define SLOT	   3
#define NQUEUES	   2
#define CONFIG_LEN 10 /* odd on purpose: accesses straddle its end */
#define MAX_SECS   8
#define MAX_OPS	   512

/* The toy's own saveable state: its device config. */
struct toy_state {
	uint8_t config[CONFIG_LEN];
};

static const struct snap_field toy_fields[] = {
	SNAP_U8_ARRAY(struct toy_state, config, CONFIG_LEN, 1),
};
static const struct snap_desc toy_snap =
	SNAP_DESC("fuzz_toy", 1, 1, struct toy_state, toy_fields);

struct toy {
	struct bus pio, mmio;
	struct pci_bus pci;
	struct virtio_pci vp;
	struct toy_state st;
	int intx_level;
	bool ready;
};

static struct guest_mem mem;
static uint8_t *ram;
static char snap_path[64];
static struct snap_host_info host;

static void toy_config_read(void *o, uint32_t off, void *d, unsigned size)
{
	struct toy *t = o;

	/* The transport promises @off + @size <= config_size. */
	if (off > CONFIG_LEN || size > CONFIG_LEN - off)
		__builtin_trap();
	memcpy(d, t->st.config + off, size);
}

static void toy_config_write(void *o, uint32_t off, const void *d,
			     unsigned size)
{
	struct toy *t = o;

	if (off > CONFIG_LEN || size > CONFIG_LEN - off)
		__builtin_trap();
	/* Only the first 4 bytes are writable, as in a real device. */
	for (unsigned i = 0; i < size; i++)
		if (off + i < 4)
			t->st.config[off + i] = ((const uint8_t *)d)[i];
}

/* Completes every request at once with nothing written: the rings, used
 * index and interrupts move as a guest would see them. */
static void toy_notify(void *o, unsigned q)
{
	static struct virtq_elem e;
	struct toy *t = o;
	struct virtq *vq;

	if (q >= NQUEUES)
		__builtin_trap();
	vq = &t->vp.vqs[q];
	if (!vq->st.ready || !t->ready)
		return;
	for (unsigned n = 0; n < 64 && virtq_pop(vq, &e) == 1; n++)
		if (virtq_push(vq, &e, 0))
			break;
	virtio_pci_notify_queue(&t->vp, q);
}

static void toy_reset(void *o)
{
	struct toy *t = o;

	memset(t->st.config, 0, 4);
}

static void *toy_snap_state(void *o)
{
	return &((struct toy *)o)->st;
}

static const struct virtio_dev_ops toy_ops = {
	.device_id = VIRTIO_ID_CONSOLE,
	.class_code = 0x078000,
	.num_queues = NQUEUES,
	.queue_max_size = 64,
	.config_size = CONFIG_LEN,
	.config_read = toy_config_read,
	.config_write = toy_config_write,
	.queue_notify = toy_notify,
	.reset = toy_reset,
	.snap = &toy_snap,
	.snap_state = toy_snap_state,
};

static int msi_send(void *opaque, uint64_t addr, uint32_t data)
{
	return 0;
}

static int intx_set(void *opaque, unsigned gsi, int level)
{
	struct toy *t = opaque;

	t->intx_level = level;
	return 0;
}

static int toy_build(struct toy *t)
{
	struct msi_sink sink = {msi_send, NULL};
	struct irq_line line = {intx_set, t, 11};

	memset(t, 0, sizeof(*t));
	memcpy(t->st.config, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a",
	       CONFIG_LEN);
	if (bus_init(&t->pio, "pio") || bus_init(&t->mmio, "mmio"))
		return -1;
	if (pci_bus_init(&t->pci, &t->pio, &t->mmio, 0xC0000000ULL,
			 0x10000000ULL))
		return -1;
	if (virtio_pci_init(&t->vp, "toy", &mem, &toy_ops, t, 1ULL << 0,
			    &sink))
		return -1;
	if (pci_add_device(&t->pci, SLOT, 0, &t->vp.pci))
		return -1;
	pci_dev_set_intx(&t->vp.pci, &line);
	t->ready = true;
	return 0;
}

static void toy_destroy(struct toy *t)
{
	t->ready = false;
	virtio_pci_destroy(&t->vp);
	pci_bus_destroy(&t->pci);
	bus_destroy(&t->pio);
	bus_destroy(&t->mmio);
}

/* A guest access; a read must fill exactly @size bytes of the buffer. */
static void guest_io(struct bus *b, uint64_t addr, unsigned size, uint64_t val,
		   bool write)
{
	uint8_t buf[16];

	memset(buf, 0xa5, sizeof(buf));
	if (write)
		memcpy(buf, &val, size);
	bus_dispatch(b, addr, buf, size, write);
	for (unsigned i = size; i < sizeof(buf); i++)
		if (buf[i] != 0xa5) {
			fprintf(stderr,
				"fuzz_virtio_pci: a %u-byte %s at %s 0x%llx "
				"filled byte %u\n",
				size, write ? "write" : "read", b->name,
				(unsigned long long)addr, i);
			abort();
		}
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

/* Name of the first described field that differs between @a and @b. */
static const char *differs(const struct snap_desc *d, const void *a,
			   const void *b)
{
	for (unsigned i = 0; i < d->nfields; i++) {
		const struct snap_field *f = &d->fields[i];
		size_t len = (size_t)snap_type_size(f->type) * f->count;

		if (memcmp((const uint8_t *)a + f->offset,
			   (const uint8_t *)b + f->offset, len))
			return f->name;
	}
	return NULL;
}

static void die(const char *what, const char *sec, const char *detail)
{
	fprintf(stderr, "fuzz_virtio_pci: %s: section %s: %s\n", what,
		sec ? sec : "-", detail ? detail : "");
	abort();
}

/* A BAR's registers read through its handler (mapped or not). */
static void bar_read(struct toy *t, unsigned bar, uint64_t off, void *buf,
		     unsigned size)
{
	struct pci_bar *b = &t->vp.pci.bars[bar];

	memset(buf, 0, size);
	b->fn(b->opaque, off, buf, size, false);
}

/* A BAR that should decode (memory on, placed, not wrapping) is dark. */
static bool bars_collide(struct toy *t)
{
	struct pci_dev *d = &t->vp.pci;
	bool mem = pci_cfg_read(d, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY;

	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t base = pci_bar_addr(d, i), size = d->bars[i].size;

		if (size >= 16 && mem && base && base + size > base &&
		    !pci_bar_mapped(d, i))
			return true;
	}
	return false;
}

/*
 * What a guest could see of @a and @b must be the same: config space
 * (less the PCI_CFG window's data, whose read is an access through it),
 * common config, device config, MSI-X table and PBA, ISR, INTx line,
 * which BARs decode. Reads here have no side effects.
 */
static void same_guest_view(struct toy *a, struct toy *b)
{
	unsigned win = a->vp.pci_cfg_cap + 16u;
	uint8_t x[8], y[8];
	char what[64];

	for (unsigned off = 0; off < PCI_CFG_SIZE; off++) {
		if (off >= win && off < win + 4)
			continue;
		if (pci_cfg_read(&a->vp.pci, off, 1) !=
		    pci_cfg_read(&b->vp.pci, off, 1)) {
			snprintf(what, sizeof(what), "config space 0x%x", off);
			die("restored device looks different", NULL, what);
		}
	}
	struct {
		unsigned bar, from, to;
		const char *name;
	} regs[] = {
		{VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_SIZE,
		 "common config"},
		{VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF,
		 VIRTIO_PCI_DEVICE_OFF + CONFIG_LEN, "device config"},
		{VIRTIO_PCI_MSIX_BAR, 0, (NQUEUES + 1) * PCI_MSIX_ENTRY_SIZE,
		 "MSI-X table"},
		{VIRTIO_PCI_MSIX_BAR, 0x800, 0x808, "MSI-X PBA"},
	};
	for (unsigned i = 0; i < ARRAY_SIZE(regs); i++)
		for (unsigned off = regs[i].from; off < regs[i].to; off++) {
			bar_read(a, regs[i].bar, off, x, 1);
			bar_read(b, regs[i].bar, off, y, 1);
			if (x[0] != y[0]) {
				snprintf(what, sizeof(what), "%s 0x%x",
					 regs[i].name, off);
				die("restored device looks different", NULL,
				    what);
			}
		}
	if (a->vp.st.isr != b->vp.st.isr)
		die("restored device looks different", NULL, "ISR");
	if (a->intx_level != b->intx_level)
		die("restored device looks different", NULL, "INTx line");
	/* Two BARs the guest put on top of each other: the one mapped first
	 * decodes, and a restore maps in BAR order, not in the guest's; no
	 * saved state says which won (a known gap, guest error only). */
	if (bars_collide(a))
		return;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (pci_bar_mapped(&a->vp.pci, i) !=
		    pci_bar_mapped(&b->vp.pci, i)) {
			snprintf(what, sizeof(what), "BAR%u %s", i,
				 pci_bar_mapped(&a->vp.pci, i) ? "dark"
							       : "decoding");
			die("restored device looks different", NULL, what);
		}
}

/*
 * Save @t as a checkpoint does, read it back, restore it into a fresh
 * device and compare what that one saves. Any refusal is a finding.
 */
static void checkpoint(struct toy *t)
{
	static struct toy r;
	struct snap_writer *w;
	struct snap_reader *rd = NULL;
	struct err err = {0};
	struct collect c = {0}, cr = {0};
	const char *bad;
	int rc;

	if (virtio_pci_snap_foreach(&t->vp, 0, collect_one, &c))
		die("collect", NULL, "too many sections");
	if (snap_writer_open(&w, snap_path, &host, NULL))
		die("writer_open", NULL, snap_path);
	for (unsigned j = 0; j < c.n; j++)
		if (snap_write_section(w, c.d[j], j, c.s[j]))
			die("checkpoint refused the guest's state", c.d[j]->name,
			    snap_writer_error(w));
	if ((rc = snap_writer_commit(w)))
		die("commit", NULL, strerror(-rc));
	if (snap_reader_open(&rd, snap_path, &err))
		die("reading back", NULL, err.msg);
	if (toy_build(&r))
		die("building the restore target", NULL, NULL);
	if (virtio_pci_snap_foreach(&r.vp, 0, collect_one, &cr) || cr.n != c.n)
		die("restore target", NULL, "sections differ");
	for (unsigned j = 0; j < c.n; j++) {
		if (snap_read_section(rd, cr.d[j], j, cr.s[j], &err))
			die("load", cr.d[j]->name, err.msg);
		if ((bad = differs(c.d[j], c.s[j], cr.s[j])))
			die("changed through the snapshot", c.d[j]->name, bad);
	}
	if (snap_reader_check_consumed(rd, &err))
		die("not all loaded", NULL, err.msg);
	snap_reader_close(rd);
	unlink(snap_path);
	/* No kicks from the restore: requests still queued would move the
	 * restored rings on and the comparison below with them. */
	r.ready = false;
	if ((rc = virtio_pci_post_load(&r.vp, &err)))
		die("restore refused the loaded state", NULL,
		    err.msg[0] ? err.msg : strerror(-rc));
	/* What the restored device would save next is what was saved. */
	for (unsigned j = 0; j < c.n; j++)
		if ((bad = differs(c.d[j], c.s[j], cr.s[j])))
			die("restored device saves something else", c.d[j]->name,
			    bad);
	same_guest_view(t, &r);
	toy_destroy(&r);
}

static uint64_t get(const uint8_t **p, const uint8_t *end, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n && *p < end; i++, (*p)++)
		v |= (uint64_t)**p << (8 * i);
	return v;
}

static const unsigned sizes[4] = {1, 2, 4, 8};
static bool verbose;

/* FUZZ_VP_VERBOSE=1: where each input left the device (to review seeds). */
static void describe(struct toy *t, unsigned ops)
{
	struct virtio_pci *vp = &t->vp;

	fprintf(stderr,
		"%u ops: status 0x%x features 0x%llx isr %u intx %d msix %d "
		"bar4 0x%llx (%s) bar1 0x%llx (%s)",
		ops, virtio_pci_status(vp),
		(unsigned long long)vp->st.driver_features, vp->st.isr,
		t->intx_level, vp->pci.st.msix_enabled,
		(unsigned long long)pci_bar_addr(&vp->pci, VIRTIO_PCI_BAR),
		pci_bar_mapped(&vp->pci, VIRTIO_PCI_BAR) ? "mapped" : "dark",
		(unsigned long long)pci_bar_addr(&vp->pci, VIRTIO_PCI_MSIX_BAR),
		pci_bar_mapped(&vp->pci, VIRTIO_PCI_MSIX_BAR) ? "mapped"
							       : "dark");
	for (unsigned q = 0; q < NQUEUES; q++)
		fprintf(stderr, "; q%u ready %u size %u avail %u used %u", q,
			vp->vqs[q].st.ready, vp->vqs[q].st.size,
			vp->vqs[q].st.last_avail_idx, vp->vqs[q].st.used_idx);
	fprintf(stderr, "; pba 0x%02x\n", vp->pci.st.msix_pba[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct toy t;
	const uint8_t *p = data, *end = data + size;
	unsigned ops = 0;

	if (!ram) {
		log_set_level(LOG_ERR);
		verbose = getenv("FUZZ_VP_VERBOSE") != NULL;
		snap_host_info_probe(&host, "fuzz");
		ram = calloc(1, RAM_SIZE);
		if (!ram || guest_mem_layout(&mem, RAM_SIZE))
			abort();
		mem.r[0].hva = ram;
		snprintf(snap_path, sizeof(snap_path), "%s/khyve-fuzz-vp-%d.snap",
			 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
			 (int)getpid());
	}
	memset(ram, 0, RAM_SIZE);
	if (toy_build(&t))
		abort();

	while (p < end && ops++ < MAX_OPS) {
		unsigned op = *p++;
		unsigned sz = sizes[(op >> 4) & 3];
		bool wr = op & 0x80;

		switch (op & 0xf) {
		case 0: { /* config space of our function: reg, value */
			unsigned reg = (unsigned)get(&p, end, 1);
			uint32_t addr = 0x80000000u | SLOT << 11 | (reg & 0xfc);

			if (sz == 8)
				sz = 4;
			guest_io(&t.pio, PCI_CONFIG_ADDR_PORT, 4, addr, true);
			/* Any byte lane; one that straddles the dword is
			 * refused by the mechanism, as on hardware. */
			guest_io(&t.pio, PCI_CONFIG_DATA_PORT + (reg & 3), sz,
				 get(&p, end, sz), wr);
			break;
		}
		case 1: /* any port of the mechanism, any value */
			guest_io(&t.pio, PCI_CONFIG_ADDR_PORT + get(&p, end, 1) % 8,
			       sz == 8 ? 4 : sz, get(&p, end, 4), wr);
			break;
		case 2: /* the virtio BAR, wherever it is now */
		case 3: {
			uint64_t off = get(&p, end, 2) % (VIRTIO_PCI_BAR_SIZE + 16);
			uint64_t base = pci_bar_addr(&t.vp.pci, VIRTIO_PCI_BAR);

			guest_io(&t.mmio, base + off, sz, get(&p, end, sz), wr);
			break;
		}
		case 4: { /* the MSI-X BAR: table, PBA, past both */
			uint64_t off = get(&p, end, 2) % 0x1000;
			uint64_t base =
				pci_bar_addr(&t.vp.pci, VIRTIO_PCI_MSIX_BAR);

			guest_io(&t.mmio, base + off, sz, get(&p, end, sz), wr);
			break;
		}
		case 5: /* anywhere in the MMIO window */
			guest_io(&t.mmio, 0xC0000000ULL + get(&p, end, 4) % 0x10000000,
			       sz, get(&p, end, sz), wr);
			break;
		case 6: { /* guest RAM: rings and descriptors */
			uint64_t gpa = get(&p, end, 3) % (RAM_SIZE - 8);
			uint64_t v = get(&p, end, 8);

			memcpy(ram + gpa, &v, 8);
			break;
		}
		case 7: /* device side: used buffers on a queue */
			toy_notify(&t, get(&p, end, 1) % NQUEUES);
			break;
		case 8:
			virtio_pci_config_changed(&t.vp);
			break;
		case 9:
			virtio_pci_set_needs_reset(&t.vp);
			break;
		case 10:
			pci_msix_notify(&t.vp.pci, (unsigned)get(&p, end, 1));
			break;
		case 11:
			checkpoint(&t);
			break;
		default: /* the same access the guest's common sequence uses */
			guest_io(&t.mmio,
			       pci_bar_addr(&t.vp.pci, VIRTIO_PCI_BAR) +
				       get(&p, end, 1) % VIRTIO_PCI_COMMON_SIZE,
			       sz, get(&p, end, sz), true);
			break;
		}
	}
	checkpoint(&t);
	if (verbose)
		describe(&t, ops);
	toy_destroy(&t);
	return 0;
}
