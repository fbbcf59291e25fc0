/* SPDX-License-Identifier: BSD-2-Clause */
#include "pci.h"

#include <errno.h>
#include <string.h>

#include "common.h"
#include "log.h"

static const struct snap_field pci_dev_fields[] = {
	SNAP_BYTES(struct pci_dev_state, cfg, PCI_CFG_SIZE, 1),
	SNAP_U64_ARRAY(struct pci_dev_state, bar_addr, PCI_NUM_BARS, 1),
	SNAP_BYTES(struct pci_dev_state, msix_table,
		   PCI_MSIX_MAX_VECTORS *PCI_MSIX_ENTRY_SIZE, 1),
	SNAP_BYTES(struct pci_dev_state, msix_pba, PCI_MSIX_MAX_VECTORS / 8, 1),
	SNAP_BOOL(struct pci_dev_state, msix_enabled, 1),
	SNAP_BOOL(struct pci_dev_state, msix_masked, 1),
	SNAP_BOOL(struct pci_dev_state, intx_level, 1),
};

const struct snap_desc pci_dev_snap =
	SNAP_DESC("pci_dev", 1, 1, struct pci_dev_state, pci_dev_fields);

/* Any 32-bit value is a valid latch: the guest reads back what it wrote. */
static const struct snap_field pci_bus_fields[] = {
	SNAP_U32(struct pci_bus_state, config_addr, 1),
};

const struct snap_desc pci_bus_snap =
	SNAP_DESC("pci_bus", 1, 1, struct pci_bus_state, pci_bus_fields);

void pci_bus_state_save(struct pci_bus *bus, struct pci_bus_state *st)
{
	memset(st, 0, sizeof(*st));
	st->config_addr = __atomic_load_n(&bus->config_addr, __ATOMIC_RELAXED);
}

void pci_bus_state_apply(struct pci_bus *bus, const struct pci_bus_state *st)
{
	__atomic_store_n(&bus->config_addr, st->config_addr, __ATOMIC_RELAXED);
}

#define PCI_MSIX_PBA_OFFSET 0x800

static void set_wmask(struct pci_dev *dev, unsigned off, unsigned len,
		      uint32_t mask)
{
	for (unsigned i = 0; i < len; i++)
		dev->wmask[off + i] = (uint8_t)(mask >> (8 * i));
}

int pci_dev_init(struct pci_dev *dev, const char *name, uint16_t vendor,
		 uint16_t device, uint32_t class_rev, uint16_t subsys_vendor,
		 uint16_t subsys_id)
{
	uint8_t *c = dev->st.cfg;
	int ret;

	memset(dev, 0, sizeof(*dev));
	dev->name = name;
	put_le16(c + PCI_VENDOR_ID, vendor);
	put_le16(c + PCI_DEVICE_ID, device);
	put_le32(c + PCI_REVISION_ID, class_rev);
	put_le16(c + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	put_le16(c + PCI_SUBSYSTEM_ID, subsys_id);
	set_wmask(dev, PCI_COMMAND, 2,
		  PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
			  PCI_COMMAND_INTX_DISABLE);
	dev->wmask[0x0c] = 0xff; /* cache line size */
	dev->wmask[0x0d] = 0xff; /* latency timer */
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	dev->cap_next = 0x40;
	ret = pthread_mutex_init(&dev->lock, NULL);
	if (ret)
		return -ret;
	ret = pthread_mutex_init(&dev->map_lock, NULL);
	if (ret) {
		pthread_mutex_destroy(&dev->lock);
		return -ret;
	}
	return 0;
}

void pci_dev_destroy(struct pci_dev *dev)
{
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		if (dev->bars[i].mapped && dev->bus)
			bus_unregister(dev->bus->mmio,
				       dev->bars[i].mapped_base);
		dev->bars[i].mapped = false;
	}
	if (dev->bus)
		dev->bus->devs[dev->slot][dev->func] = NULL;
	dev->bus = NULL;
	pthread_mutex_destroy(&dev->map_lock);
	pthread_mutex_destroy(&dev->lock);
}

int pci_dev_add_bar(struct pci_dev *dev, unsigned idx, uint64_t size,
		    uint32_t flags, bus_io_fn fn, void *opaque)
{
	bool is64 = flags & PCI_BAR_MEM64;
	uint64_t mask;

	if (idx >= PCI_NUM_BARS || (is64 && idx + 1 >= PCI_NUM_BARS) || !fn)
		return -EINVAL;
	if (size < 16 || (size & (size - 1)) || (!is64 && size > 1ULL << 31))
		return -EINVAL;
	if (dev->bars[idx].size || (is64 && dev->bars[idx + 1].size))
		return -EEXIST;
	dev->bars[idx] = (struct pci_bar){
		.size = size, .flags = flags, .fn = fn, .opaque = opaque};
	mask = ~(size - 1);
	put_le32(dev->st.cfg + PCI_BAR0 + 4 * idx,
		 flags & (PCI_BAR_MEM64 | PCI_BAR_PREFETCH));
	/* Sizing works through the write mask: all-ones reads back ~(size-1).
	 */
	set_wmask(dev, PCI_BAR0 + 4 * idx, 4, (uint32_t)mask & ~0xfu);
	if (is64) {
		/* The upper half is marked with size 1 so it is not reused. */
		dev->bars[idx + 1].size = 1;
		set_wmask(dev, PCI_BAR0 + 4 * (idx + 1), 4,
			  (uint32_t)(mask >> 32));
	}
	return 0;
}

int pci_dev_add_cap(struct pci_dev *dev, uint8_t id, const void *body,
		    unsigned len)
{
	unsigned off = dev->cap_next;
	uint8_t *c = dev->st.cfg;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	memcpy(c + off, body, len);
	c[off] = id;
	c[off + 1] = 0;
	if (dev->cap_last)
		c[dev->cap_last + 1] = (uint8_t)off;
	else
		c[PCI_CAPABILITY_LIST] = (uint8_t)off;
	put_le16(c + PCI_STATUS,
		 get_le16(c + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	dev->cap_last = (uint8_t)off;
	dev->cap_next = (uint8_t)ALIGN_UP(off + len, 4);
	return (int)off;
}

/* Caller holds dev->lock. */
static void msix_deliver_pending(struct pci_dev *dev)
{
	if (!dev->st.msix_enabled || dev->st.msix_masked)
		return;
	for (unsigned v = 0; v < dev->msix_nvec; v++) {
		const uint8_t *e = dev->st.msix_table + v * PCI_MSIX_ENTRY_SIZE;
		uint8_t bit = (uint8_t)(1u << (v % 8));

		if (!(dev->st.msix_pba[v / 8] & bit))
			continue;
		if (get_le32(e + 12) & PCI_MSIX_ENTRY_CTRL_MASKBIT)
			continue;
		dev->st.msix_pba[v / 8] &= (uint8_t)~bit;
		if (dev->msi.send)
			dev->msi.send(dev->msi.opaque, get_le64(e),
				      get_le32(e + 8));
	}
}

static int msix_bar_io(void *opaque, uint64_t off, void *data, unsigned size,
		       bool is_write)
{
	struct pci_dev *dev = opaque;
	uint64_t tlen = (uint64_t)dev->msix_nvec * PCI_MSIX_ENTRY_SIZE;
	uint64_t plen = ALIGN_UP(dev->msix_nvec, 64) / 8;

	pthread_mutex_lock(&dev->lock);
	if (off + size <= tlen) {
		uint8_t *p = dev->st.msix_table + off;

		if (!is_write) {
			memcpy(data, p, size);
		} else {
			/* Only the vector-control mask bit is writable there.
			 */
			for (unsigned i = 0; i < size; i++) {
				unsigned o = (unsigned)(off + i) % 16;
				uint8_t v = ((uint8_t *)data)[i];

				if (o >= 12)
					v &= o == 12 ? PCI_MSIX_ENTRY_CTRL_MASKBIT
						     : 0;
				p[i] = v;
			}
			msix_deliver_pending(dev);
		}
	} else if (off >= PCI_MSIX_PBA_OFFSET &&
		   off + size <= PCI_MSIX_PBA_OFFSET + plen) {
		uint64_t po = off - PCI_MSIX_PBA_OFFSET;

		/* PBA is read-only; bytes past our vectors read as zero. */
		if (!is_write) {
			for (unsigned i = 0; i < size; i++)
				((uint8_t *)data)[i] =
					po + i < sizeof(dev->st.msix_pba)
						? dev->st.msix_pba[po + i]
						: 0;
		}
	} else if (!is_write) {
		memset(data, 0, size);
	}
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int pci_msix_init(struct pci_dev *dev, unsigned bar, unsigned nvec,
		  const struct msi_sink *sink)
{
	uint8_t cap[12] = {0};
	int off, ret;

	if (nvec == 0 || nvec > PCI_MSIX_MAX_VECTORS || dev->msix_cap)
		return -EINVAL;
	ret = pci_dev_add_bar(dev, bar, 0x1000, PCI_BAR_MEM32, msix_bar_io,
			      dev);
	if (ret)
		return ret;
	put_le16(cap + PCI_MSIX_FLAGS, (uint16_t)(nvec - 1));
	put_le32(cap + 4, 0 | bar);
	put_le32(cap + 8, PCI_MSIX_PBA_OFFSET | bar);
	off = pci_dev_add_cap(dev, PCI_CAP_ID_MSIX, cap, sizeof(cap));
	if (off < 0)
		return off;
	dev->msix_cap = (uint8_t)off;
	dev->msix_bar = (uint8_t)bar;
	dev->msix_nvec = (uint16_t)nvec;
	dev->msix_table_off = 0;
	dev->msix_pba_off = PCI_MSIX_PBA_OFFSET;
	set_wmask(dev, off + PCI_MSIX_FLAGS, 2,
		  PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	for (unsigned v = 0; v < nvec; v++)
		put_le32(dev->st.msix_table + v * PCI_MSIX_ENTRY_SIZE + 12,
			 PCI_MSIX_ENTRY_CTRL_MASKBIT);
	if (sink)
		dev->msi = *sink;
	return 0;
}

bool pci_msix_enabled(struct pci_dev *dev)
{
	return __atomic_load_n(&dev->st.msix_enabled, __ATOMIC_ACQUIRE);
}

int pci_msix_notify(struct pci_dev *dev, unsigned vector)
{
	const uint8_t *e;
	int ret = 0;

	if (vector >= dev->msix_nvec)
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	if (!dev->st.msix_enabled) {
		ret = -ENOTSUP;
		goto out;
	}
	e = dev->st.msix_table + vector * PCI_MSIX_ENTRY_SIZE;
	if (dev->st.msix_masked ||
	    (get_le32(e + 12) & PCI_MSIX_ENTRY_CTRL_MASKBIT)) {
		dev->st.msix_pba[vector / 8] |= (uint8_t)(1u << (vector % 8));
		goto out;
	}
	if (dev->msi.send)
		ret = dev->msi.send(dev->msi.opaque, get_le64(e),
				    get_le32(e + 8));
out:
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

/* Caller holds dev->lock: drive the line from level, command and status. */
static int intx_update(struct pci_dev *dev)
{
	uint8_t *c = dev->st.cfg;
	uint16_t status = get_le16(c + PCI_STATUS) & ~PCI_STATUS_INTERRUPT;
	bool disabled = get_le16(c + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;

	if (dev->st.intx_level)
		status |= PCI_STATUS_INTERRUPT;
	put_le16(c + PCI_STATUS, status);
	return irq_line_set(&dev->intx, dev->st.intx_level && !disabled);
}

int pci_set_irq(struct pci_dev *dev, int level)
{
	int ret;

	pthread_mutex_lock(&dev->lock);
	dev->st.intx_level = level ? 1 : 0;
	ret = intx_update(dev);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

void pci_dev_set_intx(struct pci_dev *dev, const struct irq_line *line)
{
	pthread_mutex_lock(&dev->lock);
	dev->intx = *line;
	dev->st.cfg[PCI_INTERRUPT_PIN] = 1; /* INTA# */
	dev->st.cfg[PCI_INTERRUPT_LINE] = (uint8_t)line->gsi;
	pthread_mutex_unlock(&dev->lock);
}

/* Caller holds dev->lock. Decode BAR @i from config space. */
static uint64_t bar_decode(const struct pci_dev *dev, unsigned i)
{
	const uint8_t *c = dev->st.cfg;
	uint64_t a = get_le32(c + PCI_BAR0 + 4 * i) & ~0xfULL;

	if (dev->bars[i].flags & PCI_BAR_MEM64)
		a |= (uint64_t)get_le32(c + PCI_BAR0 + 4 * (i + 1)) << 32;
	return a;
}

/*
 * Map @b at @base; on an overlap it stays dark (a guest error), but is
 * remembered so it lights up once the other range is gone, as a decoder
 * comparing addresses would. Caller holds dev->map_lock.
 */
static void bar_map(struct pci_dev *dev, unsigned i, uint64_t base)
{
	struct pci_bar *b = &dev->bars[i];
	unsigned dropped;
	int ret = bus_register(dev->bus->mmio, base, b->size, b->fn, b->opaque,
			       dev->name);

	b->dark = ret != 0;
	b->dark_base = base;
	if (!ret) {
		b->mapped = true;
		b->mapped_base = base;
		return;
	}
	/* A guest can do this in a loop: a line a second at most. */
	if (log_rl_allow(&dev->map_rl, &dropped))
		log_warn("pci %02x.%u %s: BAR%u at 0x%llx not mapped: %s (%u "
			 "similar suppressed)",
			 dev->slot, dev->func, dev->name, i,
			 (unsigned long long)base, strerror(-ret), dropped);
}

/* Caller holds no lock: map what another device's move left free. */
static void bars_relight(struct pci_bus *bus, struct pci_dev *self)
{
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		for (unsigned f = 0; f < PCI_MAX_FUNCS; f++) {
			struct pci_dev *d;
			bool lit = false;

			pthread_mutex_lock(&bus->lock);
			d = bus->devs[s][f];
			pthread_mutex_unlock(&bus->lock);
			if (!d || d == self)
				continue;
			pthread_mutex_lock(&d->map_lock);
			for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
				struct pci_bar *b = &d->bars[i];

				if (b->dark && !b->mapped) {
					bar_map(d, i, b->dark_base);
					lit |= b->mapped;
				}
			}
			pthread_mutex_unlock(&d->map_lock);
			if (lit && d->bars_changed)
				d->bars_changed(d->bars_changed_opaque, d);
		}
	}
}

/*
 * Bring the MMIO bus in line with config space. Runs without dev->lock held
 * while touching the bus so an MMIO handler of this device (MSI-X table)
 * can never wait on us while we wait on the bus.
 */
static void bars_sync(struct pci_dev *dev)
{
	struct {
		bool want;
		uint64_t base;
	} w[PCI_NUM_BARS];
	bool freed = false;

	if (!dev->bus)
		return;
	pthread_mutex_lock(&dev->map_lock);
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &dev->bars[i];
		bool mem = get_le16(dev->st.cfg + PCI_COMMAND) &
			   PCI_COMMAND_MEMORY;

		w[i].want = false;
		if (b->size < 16)
			continue;
		w[i].base = bar_decode(dev, i);
		dev->st.bar_addr[i] = w[i].base;
		/* 0 is "unassigned"; a wrapping range cannot be decoded. */
		w[i].want = mem && w[i].base && w[i].base + b->size > w[i].base;
	}
	pthread_mutex_unlock(&dev->lock);

	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &dev->bars[i];

		if (!w[i].want)
			b->dark = false;
		if (b->mapped && (!w[i].want || b->mapped_base != w[i].base)) {
			bus_unregister(dev->bus->mmio, b->mapped_base);
			b->mapped = false;
			freed = true;
		}
	}
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (w[i].want && !dev->bars[i].mapped)
			bar_map(dev, i, w[i].base);
	pthread_mutex_unlock(&dev->map_lock);
	if (dev->bars_changed)
		dev->bars_changed(dev->bars_changed_opaque, dev);
	if (freed)
		bars_relight(dev->bus, dev);
}

static bool overlaps(unsigned off, unsigned size, unsigned a, unsigned len)
{
	return off < a + len && a < off + size;
}

uint32_t pci_cfg_read(struct pci_dev *dev, unsigned off, unsigned size)
{
	uint8_t buf[4] = {0};

	if (size > 4 || off + size > PCI_CFG_SIZE)
		return 0xffffffffu;
	pthread_mutex_lock(&dev->lock);
	memcpy(buf, dev->st.cfg + off, size);
	pthread_mutex_unlock(&dev->lock);
	if (dev->cfg_read_hook)
		dev->cfg_read_hook(dev->hook_opaque, off, buf, size);
	return get_le32(buf);
}

void pci_cfg_write(struct pci_dev *dev, unsigned off, uint32_t val,
		   unsigned size)
{
	uint8_t *c = dev->st.cfg;
	bool remap = false;

	if (size > 4 || off + size > PCI_CFG_SIZE)
		return;
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < size; i++) {
		uint8_t v = (uint8_t)(val >> (8 * i));
		uint8_t wm = dev->wmask[off + i], w1c = dev->w1cmask[off + i];

		c[off + i] = (uint8_t)((c[off + i] & ~wm) | (v & wm));
		c[off + i] &= (uint8_t) ~(v & w1c);
	}
	if (overlaps(off, size, PCI_COMMAND, 2)) {
		intx_update(dev);
		remap = true;
	}
	if (overlaps(off, size, PCI_BAR0, 4 * PCI_NUM_BARS))
		remap = true;
	if (dev->msix_cap &&
	    overlaps(off, size, dev->msix_cap + PCI_MSIX_FLAGS, 2)) {
		uint16_t ctl = get_le16(c + dev->msix_cap + PCI_MSIX_FLAGS);

		__atomic_store_n(&dev->st.msix_enabled,
				 !!(ctl & PCI_MSIX_FLAGS_ENABLE),
				 __ATOMIC_RELEASE);
		dev->st.msix_masked = !!(ctl & PCI_MSIX_FLAGS_MASKALL);
		msix_deliver_pending(dev);
	}
	pthread_mutex_unlock(&dev->lock);
	if (remap)
		bars_sync(dev);
	if (dev->cfg_write_hook)
		dev->cfg_write_hook(dev->hook_opaque, off, size);
}

uint64_t pci_bar_addr(struct pci_dev *dev, unsigned idx)
{
	uint64_t a;

	if (idx >= PCI_NUM_BARS || dev->bars[idx].size < 16)
		return 0;
	pthread_mutex_lock(&dev->lock);
	a = bar_decode(dev, idx);
	pthread_mutex_unlock(&dev->lock);
	return a;
}

bool pci_bar_mapped(struct pci_dev *dev, unsigned idx)
{
	bool m;

	if (idx >= PCI_NUM_BARS)
		return false;
	pthread_mutex_lock(&dev->map_lock);
	m = dev->bars[idx].mapped;
	pthread_mutex_unlock(&dev->map_lock);
	return m;
}

int pci_dev_post_load(struct pci_dev *dev)
{
	uint8_t *c = dev->st.cfg;
	int ret;

	pthread_mutex_lock(&dev->lock);
	/* Derived fields follow config space, which is what the guest saw. */
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (dev->bars[i].size >= 16)
			dev->st.bar_addr[i] = bar_decode(dev, i);
	if (dev->msix_cap) {
		uint16_t ctl = get_le16(c + dev->msix_cap + PCI_MSIX_FLAGS);

		dev->st.msix_enabled = !!(ctl & PCI_MSIX_FLAGS_ENABLE);
		dev->st.msix_masked = !!(ctl & PCI_MSIX_FLAGS_MASKALL);
	}
	ret = intx_update(dev);
	pthread_mutex_unlock(&dev->lock);
	bars_sync(dev);
	return ret;
}

/* Allocate the BARs of @dev from the bus window, naturally aligned. */
static int bars_alloc(struct pci_bus *bus, struct pci_dev *dev)
{
	uint64_t next = bus->mmio_next;

	/* Largest first keeps the window dense; sizes are powers of two. */
	for (;;) {
		int best = -1;

		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &dev->bars[i];

			if (b->size < 16 || bar_decode(dev, i))
				continue;
			if (best < 0 || b->size > dev->bars[best].size)
				best = (int)i;
		}
		if (best < 0)
			break;
		{
			struct pci_bar *b = &dev->bars[best];
			uint64_t sz = MAX(b->size, PAGE_SIZE);
			uint64_t a = ALIGN_UP(next, sz);
			uint8_t *c = dev->st.cfg + PCI_BAR0 + 4 * best;

			if (a + sz > bus->mmio_end || a + sz < a)
				return -ENOSPC;
			put_le32(c, (uint32_t)a | (get_le32(c) & 0xf));
			if (b->flags & PCI_BAR_MEM64)
				put_le32(c + 4, (uint32_t)(a >> 32));
			dev->st.bar_addr[best] = a;
			next = a + sz;
		}
	}
	bus->mmio_next = next;
	return 0;
}

int pci_add_device(struct pci_bus *bus, unsigned slot, unsigned func,
		   struct pci_dev *dev)
{
	uint64_t saved_next;
	int ret;

	if (slot >= PCI_MAX_SLOTS || func >= PCI_MAX_FUNCS)
		return -EINVAL;
	pthread_mutex_lock(&bus->lock);
	if (bus->devs[slot][func]) {
		ret = -EEXIST;
		goto out;
	}
	saved_next = bus->mmio_next;
	pthread_mutex_lock(&dev->lock);
	ret = bars_alloc(bus, dev);
	pthread_mutex_unlock(&dev->lock);
	if (ret) {
		/* -ENOSPC: the caller says which device did not fit. */
		bus->mmio_next = saved_next;
		goto out;
	}
	dev->bus = bus;
	dev->slot = (uint8_t)slot;
	dev->func = (uint8_t)func;
	bus->devs[slot][func] = dev;
out:
	pthread_mutex_unlock(&bus->lock);
	return ret;
}

static struct pci_dev *bus_dev(struct pci_bus *bus, uint32_t addr,
			       unsigned *reg)
{
	unsigned busno = (addr >> 16) & 0xff, slot = (addr >> 11) & 0x1f;
	unsigned fn = (addr >> 8) & 7;

	if (!(addr & 0x80000000u) || busno != 0)
		return NULL;
	*reg = addr & 0xfc;
	return bus->devs[slot][fn];
}

int pci_config_io(void *opaque, uint64_t off, void *data, unsigned size,
		  bool is_write)
{
	struct pci_bus *bus = opaque;
	struct pci_dev *dev;
	uint32_t addr;
	unsigned reg = 0;

	if (off < 4) {
		/* Only dword accesses hit the address latch. */
		if (off != 0 || size != 4) {
			if (!is_write)
				memset(data, 0xff, size);
			return 0;
		}
		if (is_write)
			__atomic_store_n(&bus->config_addr, get_le32(data),
					 __ATOMIC_RELAXED);
		else
			put_le32(data, __atomic_load_n(&bus->config_addr,
						       __ATOMIC_RELAXED));
		return 0;
	}
	addr = __atomic_load_n(&bus->config_addr, __ATOMIC_RELAXED);
	off -= 4;
	pthread_mutex_lock(&bus->lock);
	dev = bus_dev(bus, addr, &reg);
	pthread_mutex_unlock(&bus->lock);
	if (size > 4 || off + size > 4)
		dev = NULL;
	if (!dev) {
		if (!is_write)
			memset(data, 0xff, size);
		return 0;
	}
	reg += (unsigned)off;
	if (is_write) {
		uint8_t b[4] = {0};

		memcpy(b, data, size);
		pci_cfg_write(dev, reg, get_le32(b), size);
	} else {
		uint32_t v = pci_cfg_read(dev, reg, size);

		/* Multi-function bit: func 0 advertises its siblings. */
		if (reg <= PCI_HEADER_TYPE && reg + size > PCI_HEADER_TYPE &&
		    (addr & 0x700) == 0) {
			pthread_mutex_lock(&bus->lock);
			for (unsigned f = 1; f < PCI_MAX_FUNCS; f++)
				if (bus->devs[(addr >> 11) & 0x1f][f])
					v |= 0x80u
					     << (8 * (PCI_HEADER_TYPE - reg));
			pthread_mutex_unlock(&bus->lock);
		}
		for (unsigned i = 0; i < size; i++)
			((uint8_t *)data)[i] = (uint8_t)(v >> (8 * i));
	}
	return 0;
}

int pci_bus_init(struct pci_bus *bus, struct bus *pio, struct bus *mmio,
		 uint64_t mmio_base, uint64_t mmio_size)
{
	int ret;

	memset(bus, 0, sizeof(*bus));
	if (mmio_base + mmio_size < mmio_base)
		return -EINVAL;
	bus->pio = pio;
	bus->mmio = mmio;
	bus->mmio_base = bus->mmio_next = mmio_base;
	bus->mmio_end = mmio_base + mmio_size;
	ret = -pthread_mutex_init(&bus->lock, NULL);
	if (ret)
		return ret;
	ret = pci_dev_init(&bus->host_bridge, "host-bridge",
			   PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE,
			   (uint32_t)PCI_CLASS_BRIDGE_HOST << 16, 0x1af4,
			   0x1100);
	if (ret)
		goto err_lock;
	ret = pci_add_device(bus, 0, 0, &bus->host_bridge);
	if (ret)
		goto err_hb;
	if (pio) {
		ret = bus_register(pio, PCI_CONFIG_ADDR_PORT, 8, pci_config_io,
				   bus, "pci-config");
		if (ret)
			goto err_hb;
		bus->pio_registered = true;
	}
	return 0;
err_hb:
	pci_dev_destroy(&bus->host_bridge);
err_lock:
	pthread_mutex_destroy(&bus->lock);
	return ret;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	if (bus->pio_registered)
		bus_unregister(bus->pio, PCI_CONFIG_ADDR_PORT);
	bus->pio_registered = false;
	pci_dev_destroy(&bus->host_bridge);
	pthread_mutex_destroy(&bus->lock);
}
