/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio_pci.h"

#include <errno.h>
#include <string.h>

#include "common.h"
#include "log.h"

static const struct snap_field virtio_pci_fields[] = {
	SNAP_U64(struct virtio_pci_state, driver_features, 1),
	/*
	 * No bound: the selects are kept as the driver wrote them (features
	 * beyond select 1 read as 0). A bound the guest can exceed would make
	 * every later checkpoint fail.
	 */
	SNAP_U32(struct virtio_pci_state, device_feature_select, 1),
	SNAP_U32(struct virtio_pci_state, driver_feature_select, 1),
	SNAP_U16(struct virtio_pci_state, msix_config, 1),
	SNAP_U16(struct virtio_pci_state, queue_select, 1),
	SNAP_U16_MAX(struct virtio_pci_state, num_queues, VIRTIO_PCI_MAX_QUEUES,
		     1),
	SNAP_U8(struct virtio_pci_state, status, 1),
	SNAP_U8_MAX(struct virtio_pci_state, isr, 3, 1),
	SNAP_U8(struct virtio_pci_state, config_generation, 1),
	SNAP_BOOL(struct virtio_pci_state, needs_reset, 1),
};

const struct snap_desc virtio_pci_snap = SNAP_DESC(
	"virtio_pci", 1, 1, struct virtio_pci_state, virtio_pci_fields);

/* Caller need not hold vp->lock: ISR and line change under irq_lock. */
static int raise_irq(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	int ret;

	if (pci_msix_enabled(&vp->pci)) {
		if (vector == VIRTIO_MSI_NO_VECTOR)
			return 0;
		return pci_msix_notify(&vp->pci, vector);
	}
	pthread_mutex_lock(&vp->irq_lock);
	vp->st.isr |= isr_bit;
	ret = pci_set_irq(&vp->pci, 1);
	pthread_mutex_unlock(&vp->irq_lock);
	return ret;
}

int virtio_pci_notify_queue(struct virtio_pci *vp, unsigned queue)
{
	struct virtq *vq;

	if (queue >= vp->st.num_queues)
		return -EINVAL;
	vq = &vp->vqs[queue];
	if (!virtq_should_notify(vq))
		return 0;
	return raise_irq(vp, vq->st.msix_vector, VIRTIO_PCI_ISR_QUEUE);
}

int virtio_pci_config_changed(struct virtio_pci *vp)
{
	__atomic_add_fetch(&vp->st.config_generation, 1, __ATOMIC_RELEASE);
	return raise_irq(vp,
			 __atomic_load_n(&vp->st.msix_config, __ATOMIC_RELAXED),
			 VIRTIO_PCI_ISR_CONFIG);
}

void virtio_pci_set_needs_reset(struct virtio_pci *vp)
{
	/* Lock-free: reached from device workers that must not wait on a
	 * vCPU holding vp->lock across ops->reset(). */
	if (__atomic_exchange_n(&vp->st.needs_reset, 1, __ATOMIC_ACQ_REL))
		return;
	if (__atomic_load_n(&vp->st.status, __ATOMIC_ACQUIRE) &
	    VIRTIO_STATUS_DRIVER_OK)
		virtio_pci_config_changed(vp);
}

static void vq_error(void *opaque, struct virtq *vq)
{
	virtio_pci_set_needs_reset(opaque);
}

uint64_t virtio_pci_features(struct virtio_pci *vp)
{
	uint64_t f;

	pthread_mutex_lock(&vp->lock);
	f = vp->st.driver_features;
	pthread_mutex_unlock(&vp->lock);
	return f;
}

uint8_t virtio_pci_status(struct virtio_pci *vp)
{
	uint8_t s = __atomic_load_n(&vp->st.status, __ATOMIC_ACQUIRE);

	if (__atomic_load_n(&vp->st.needs_reset, __ATOMIC_ACQUIRE))
		s |= VIRTIO_STATUS_NEEDS_RESET;
	return s;
}

/* Caller holds vp->lock. */
static void device_reset(struct virtio_pci *vp)
{
	/* Status first: a worker that looks at DRIVER_OK stops for good. */
	__atomic_store_n(&vp->st.status, 0, __ATOMIC_RELEASE);
	if (vp->ops->reset)
		vp->ops->reset(vp->opaque);
	for (unsigned i = 0; i < vp->st.num_queues; i++)
		virtq_reset(&vp->vqs[i]);
	vp->st.driver_features = 0;
	vp->st.device_feature_select = 0;
	vp->st.driver_feature_select = 0;
	vp->st.msix_config = VIRTIO_MSI_NO_VECTOR;
	vp->st.queue_select = 0;
	__atomic_store_n(&vp->st.status, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&vp->st.needs_reset, 0, __ATOMIC_RELEASE);
	pthread_mutex_lock(&vp->irq_lock);
	vp->st.isr = 0;
	pci_set_irq(&vp->pci, 0);
	pthread_mutex_unlock(&vp->irq_lock);
}

/* Caller holds vp->lock. Current register file, little-endian. */
static void common_snapshot(struct virtio_pci *vp, uint8_t *b)
{
	struct virtq *vq = vp->st.queue_select < vp->st.num_queues
				   ? &vp->vqs[vp->st.queue_select]
				   : NULL;

	memset(b, 0, VIRTIO_PCI_COMMON_SIZE);
	put_le32(b + VIRTIO_PCI_COMMON_DFSELECT, vp->st.device_feature_select);
	if (vp->st.device_feature_select < 2)
		put_le32(b + VIRTIO_PCI_COMMON_DF,
			 (uint32_t)(vp->device_features >>
				    (32 * vp->st.device_feature_select)));
	put_le32(b + VIRTIO_PCI_COMMON_GFSELECT, vp->st.driver_feature_select);
	if (vp->st.driver_feature_select < 2)
		put_le32(b + VIRTIO_PCI_COMMON_GF,
			 (uint32_t)(vp->st.driver_features >>
				    (32 * vp->st.driver_feature_select)));
	put_le16(b + VIRTIO_PCI_COMMON_MSIX, vp->st.msix_config);
	put_le16(b + VIRTIO_PCI_COMMON_NUMQ, vp->st.num_queues);
	b[VIRTIO_PCI_COMMON_STATUS] = virtio_pci_status(vp);
	b[VIRTIO_PCI_COMMON_CFGGENERATION] =
		__atomic_load_n(&vp->st.config_generation, __ATOMIC_ACQUIRE);
	put_le16(b + VIRTIO_PCI_COMMON_Q_SELECT, vp->st.queue_select);
	if (!vq)
		return; /* absent queue: size 0 tells the driver */
	put_le16(b + VIRTIO_PCI_COMMON_Q_SIZE, vq->st.size);
	put_le16(b + VIRTIO_PCI_COMMON_Q_MSIX, vq->st.msix_vector);
	put_le16(b + VIRTIO_PCI_COMMON_Q_ENABLE, vq->st.ready);
	put_le16(b + VIRTIO_PCI_COMMON_Q_NOFF, vp->st.queue_select);
	put_le64(b + VIRTIO_PCI_COMMON_Q_DESCLO, vq->st.desc);
	put_le64(b + VIRTIO_PCI_COMMON_Q_AVAILLO, vq->st.avail);
	put_le64(b + VIRTIO_PCI_COMMON_Q_USEDLO, vq->st.used);
}

/* Caller holds vp->lock. */
static void status_write(struct virtio_pci *vp, uint8_t val)
{
	uint8_t old = vp->st.status;
	uint64_t f = vp->st.driver_features;

	if (val == 0) {
		device_reset(vp);
		return;
	}
	val &= (uint8_t)~VIRTIO_STATUS_NEEDS_RESET;
	if ((val & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK)) {
		bool ok = !(f & ~vp->device_features) &&
			  (f & (1ULL << VIRTIO_F_VERSION_1));

		if (ok && vp->ops->set_features &&
		    vp->ops->set_features(vp->opaque, f))
			ok = false;
		if (!ok) {
			unsigned dropped;

			/* The driver reads FEATURES_OK back and gives up.
			 * A guest can retry in a loop: a line a second. */
			if (log_rl_allow(&vp->features_rl, &dropped))
				log_warn("%s: driver features 0x%llx refused "
					 "(%u similar suppressed)",
					 vp->pci.name, (unsigned long long)f,
					 dropped);
			val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		} else {
			for (unsigned i = 0; i < vp->st.num_queues; i++)
				virtq_set_features(&vp->vqs[i], f);
		}
	}
	__atomic_store_n(&vp->st.status, val, __ATOMIC_RELEASE);
}

static bool touches(unsigned off, unsigned size, unsigned reg, unsigned len)
{
	return off < reg + len && reg < off + size;
}

/* Caller holds vp->lock; @b is the register file with the write merged. */
static void common_apply(struct virtio_pci *vp, unsigned off, unsigned size,
			 const uint8_t *b)
{
	struct virtq *vq = NULL;
	bool features_open = !(vp->st.status & VIRTIO_STATUS_FEATURES_OK);

	/* Read back as written, as QEMU does; only 0 and 1 select bits. */
	if (touches(off, size, VIRTIO_PCI_COMMON_DFSELECT, 4))
		vp->st.device_feature_select =
			get_le32(b + VIRTIO_PCI_COMMON_DFSELECT);
	if (touches(off, size, VIRTIO_PCI_COMMON_GFSELECT, 4))
		vp->st.driver_feature_select =
			get_le32(b + VIRTIO_PCI_COMMON_GFSELECT);
	if (touches(off, size, VIRTIO_PCI_COMMON_GF, 4) && features_open &&
	    vp->st.driver_feature_select < 2) {
		unsigned sh = 32 * vp->st.driver_feature_select;

		vp->st.driver_features &= ~(0xffffffffULL << sh);
		vp->st.driver_features |=
			(uint64_t)get_le32(b + VIRTIO_PCI_COMMON_GF) << sh;
	}
	if (touches(off, size, VIRTIO_PCI_COMMON_MSIX, 2)) {
		uint16_t v = get_le16(b + VIRTIO_PCI_COMMON_MSIX);

		/* An unknown vector reads back as NO_VECTOR: Linux checks. */
		__atomic_store_n(&vp->st.msix_config,
				 v < vp->pci.msix_nvec ? v
						       : VIRTIO_MSI_NO_VECTOR,
				 __ATOMIC_RELAXED);
	}
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_SELECT, 2))
		vp->st.queue_select = get_le16(b + VIRTIO_PCI_COMMON_Q_SELECT);
	if (touches(off, size, VIRTIO_PCI_COMMON_STATUS, 1))
		status_write(vp, b[VIRTIO_PCI_COMMON_STATUS]);

	if (vp->st.queue_select < vp->st.num_queues)
		vq = &vp->vqs[vp->st.queue_select];
	if (!vq)
		return;
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
		uint16_t v = get_le16(b + VIRTIO_PCI_COMMON_Q_MSIX);

		vq->st.msix_vector =
			v < vp->pci.msix_nvec ? v : VIRTIO_MSI_NO_VECTOR;
	}
	/* Ring setup is frozen once the queue is live. */
	if (vq->st.ready)
		return;
	/*
	 * The driver may only shrink the queue (virtio 1.x 4.1.4.3); a larger
	 * size is ignored, as QEMU does, so a saved size always fits the
	 * device and the snapshot's bound (virtq_post_load checks it).
	 */
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_SIZE, 2) &&
	    get_le16(b + VIRTIO_PCI_COMMON_Q_SIZE) <= vq->max_size)
		vq->st.size = get_le16(b + VIRTIO_PCI_COMMON_Q_SIZE);
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_DESCLO, 8))
		vq->st.desc = get_le64(b + VIRTIO_PCI_COMMON_Q_DESCLO);
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_AVAILLO, 8))
		vq->st.avail = get_le64(b + VIRTIO_PCI_COMMON_Q_AVAILLO);
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_USEDLO, 8))
		vq->st.used = get_le64(b + VIRTIO_PCI_COMMON_Q_USEDLO);
	if (touches(off, size, VIRTIO_PCI_COMMON_Q_ENABLE, 2) &&
	    get_le16(b + VIRTIO_PCI_COMMON_Q_ENABLE) == 1) {
		if (virtq_enable(vq))
			virtio_pci_set_needs_reset(vp);
	}
}

static void common_io(struct virtio_pci *vp, unsigned off, void *data,
		      unsigned size, bool is_write)
{
	uint8_t b[VIRTIO_PCI_COMMON_SIZE];

	if (off >= VIRTIO_PCI_COMMON_SIZE ||
	    size > VIRTIO_PCI_COMMON_SIZE - off) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	common_snapshot(vp, b);
	if (!is_write) {
		memcpy(data, b + off, size);
	} else {
		memcpy(b + off, data, size);
		common_apply(vp, off, size, b);
	}
	pthread_mutex_unlock(&vp->lock);
}

static int virtio_bar_io(void *opaque, uint64_t off, void *data, unsigned size,
			 bool is_write)
{
	struct virtio_pci *vp = opaque;
	uint32_t o;

	if (off >= VIRTIO_PCI_BAR_SIZE || size > VIRTIO_PCI_BAR_SIZE - off)
		return -EINVAL;
	if (off < VIRTIO_PCI_ISR_OFF) {
		common_io(vp, (unsigned)off, data, size, is_write);
	} else if (off < VIRTIO_PCI_DEVICE_OFF) {
		if (is_write)
			return 0;
		memset(data, 0, size);
		if (off == VIRTIO_PCI_ISR_OFF) {
			/* Read-to-clear, and the line drops with it. */
			pthread_mutex_lock(&vp->irq_lock);
			*(uint8_t *)data = vp->st.isr;
			vp->st.isr = 0;
			pci_set_irq(&vp->pci, 0);
			pthread_mutex_unlock(&vp->irq_lock);
		}
	} else if (off < VIRTIO_PCI_NOTIFY_OFF) {
		o = (uint32_t)(off - VIRTIO_PCI_DEVICE_OFF);
		if (o >= vp->ops->config_size ||
		    size > vp->ops->config_size - o) {
			if (!is_write)
				memset(data, 0, size);
		} else if (is_write) {
			if (vp->ops->config_write)
				vp->ops->config_write(vp->opaque, o, data,
						      size);
		} else {
			memset(data, 0, size);
			if (vp->ops->config_read)
				vp->ops->config_read(vp->opaque, o, data, size);
		}
	} else {
		unsigned q = (unsigned)(off - VIRTIO_PCI_NOTIFY_OFF) /
			     VIRTIO_PCI_NOTIFY_MULT;

		if (!is_write) {
			memset(data, 0, size);
			return 0;
		}
		if (q < vp->st.num_queues && vp->vqs[q].st.ready &&
		    vp->ops->queue_notify)
			vp->ops->queue_notify(vp->opaque, q);
	}
	return 0;
}

/*
 * VIRTIO_PCI_CAP_PCI_CFG: a window through config space into the BARs
 * (for firmware without MMIO access). Layout: cap(16) + pci_cfg_data(4).
 */
static bool pcicfg_target(struct virtio_pci *vp, uint32_t *off, uint32_t *len)
{
	const uint8_t *c = vp->pci.st.cfg + vp->pci_cfg_cap;

	*off = get_le32(c + 8);
	*len = get_le32(c + 12);
	return c[4] == VIRTIO_PCI_BAR &&
	       (*len == 1 || *len == 2 || *len == 4) &&
	       *off < VIRTIO_PCI_BAR_SIZE && *len <= VIRTIO_PCI_BAR_SIZE - *off;
}

static void pcicfg_read_hook(void *opaque, unsigned off, uint8_t *buf,
			     unsigned size)
{
	struct virtio_pci *vp = opaque;
	unsigned data_off = vp->pci_cfg_cap + 16u;
	uint8_t win[4] = {0};
	uint32_t boff, blen;
	bool ok;

	if (!touches(off, size, data_off, 4))
		return;
	pthread_mutex_lock(&vp->pci.lock);
	ok = pcicfg_target(vp, &boff, &blen);
	pthread_mutex_unlock(&vp->pci.lock);
	if (ok)
		virtio_bar_io(vp, boff, win, blen, false);
	for (unsigned i = 0; i < size; i++)
		if (off + i >= data_off && off + i < data_off + 4)
			buf[i] = win[off + i - data_off];
}

static void pcicfg_write_hook(void *opaque, unsigned off, unsigned size)
{
	struct virtio_pci *vp = opaque;
	unsigned data_off = vp->pci_cfg_cap + 16u;
	uint8_t win[4];
	uint32_t boff, blen;
	bool ok;

	if (!touches(off, size, data_off, 4))
		return;
	pthread_mutex_lock(&vp->pci.lock);
	ok = pcicfg_target(vp, &boff, &blen);
	memcpy(win, vp->pci.st.cfg + data_off, 4);
	pthread_mutex_unlock(&vp->pci.lock);
	if (ok)
		virtio_bar_io(vp, boff, win, blen, true);
}

static int add_vndr_cap(struct virtio_pci *vp, uint8_t type, uint32_t off,
			uint32_t len, const uint8_t *extra, unsigned extra_len)
{
	uint8_t cap[20] = {0};
	unsigned cap_len = 16 + extra_len;

	cap[2] = (uint8_t)cap_len;
	cap[3] = type;
	cap[4] = VIRTIO_PCI_BAR;
	put_le32(cap + 8, off);
	put_le32(cap + 12, len);
	if (extra_len)
		memcpy(cap + 16, extra, extra_len);
	return pci_dev_add_cap(&vp->pci, PCI_CAP_ID_VNDR, cap, cap_len);
}

/*
 * The virtio vendor capabilities (common, ISR, device, notify and the
 * PCI_CFG access window), pointing into the BAR.
 */
static int add_vndr_caps(struct virtio_pci *vp)
{
	const struct virtio_dev_ops *ops = vp->ops;
	uint8_t mult[4];
	int off;

	put_le32(mult, VIRTIO_PCI_NOTIFY_MULT);
	if ((off = add_vndr_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG,
				VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_SIZE,
				NULL, 0)) < 0 ||
	    (off = add_vndr_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF,
				1, NULL, 0)) < 0 ||
	    (off = add_vndr_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG,
				VIRTIO_PCI_DEVICE_OFF,
				MAX(ops->config_size, 4u), NULL, 0)) < 0 ||
	    (off = add_vndr_cap(
		     vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
		     ops->num_queues * VIRTIO_PCI_NOTIFY_MULT, mult, 4)) < 0 ||
	    (off = add_vndr_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, mult, 4)) < 0)
		return off;
	/* PCI_CFG window: bar, offset, length and data are the driver's. */
	vp->pci_cfg_cap = (uint8_t)off;
	memset(vp->pci.st.cfg + off + 16, 0, 4);
	vp->pci.wmask[off + 4] = 0xff;
	memset(vp->pci.wmask + off + 8, 0xff, 12);
	vp->pci.cfg_read_hook = pcicfg_read_hook;
	vp->pci.cfg_write_hook = pcicfg_write_hook;
	vp->pci.hook_opaque = vp;
	return 0;
}

int virtio_pci_init(struct virtio_pci *vp, const char *name,
		    const struct guest_mem *mem,
		    const struct virtio_dev_ops *ops, void *opaque,
		    uint64_t features, const struct msi_sink *msi)
{
	int ret;

	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_PCI_MAX_QUEUES ||
	    ops->config_size > VIRTIO_PCI_NOTIFY_OFF - VIRTIO_PCI_DEVICE_OFF ||
	    ops->queue_max_size == 0 || ops->queue_max_size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	memset(vp, 0, sizeof(*vp));
	ret = pci_dev_init(&vp->pci, name, VIRTIO_PCI_VENDOR,
			   (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id),
			   ops->class_code << 8 | 1, VIRTIO_PCI_VENDOR, 0x1100);
	if (ret)
		return ret;
	vp->ops = ops;
	vp->opaque = opaque;
	vp->mem = mem;
	vp->device_features = features | (1ULL << VIRTIO_F_VERSION_1) |
			      (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
			      (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vp->st.num_queues = ops->num_queues;
	vp->st.msix_config = VIRTIO_MSI_NO_VECTOR;
	for (unsigned i = 0; i < ops->num_queues; i++) {
		virtq_init(&vp->vqs[i], mem, i, ops->queue_max_size);
		vp->vqs[i].on_error = vq_error;
		vp->vqs[i].err_opaque = vp;
	}
	ret = -pthread_mutex_init(&vp->lock, NULL);
	if (ret)
		goto err_pci;
	ret = -pthread_mutex_init(&vp->irq_lock, NULL);
	if (ret)
		goto err_lock;

	ret = pci_dev_add_bar(&vp->pci, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE,
			      PCI_BAR_MEM64 | PCI_BAR_PREFETCH, virtio_bar_io,
			      vp);
	if (ret)
		goto err_irq;
	ret = pci_msix_init(&vp->pci, VIRTIO_PCI_MSIX_BAR, ops->num_queues + 1u,
			    msi);
	if (ret)
		goto err_irq;
	ret = add_vndr_caps(vp);
	if (ret)
		goto err_irq;
	return 0;
err_irq:
	pthread_mutex_destroy(&vp->irq_lock);
err_lock:
	pthread_mutex_destroy(&vp->lock);
err_pci:
	pci_dev_destroy(&vp->pci);
	return ret;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	pci_dev_destroy(&vp->pci);
	pthread_mutex_destroy(&vp->irq_lock);
	pthread_mutex_destroy(&vp->lock);
}

int virtio_pci_notify_addr(struct virtio_pci *vp, unsigned queue, uint64_t *gpa)
{
	uint64_t base;

	if (queue >= vp->st.num_queues)
		return -EINVAL;
	base = pci_bar_addr(&vp->pci, VIRTIO_PCI_BAR);
	if (!base)
		return -ENOENT;
	*gpa = base + VIRTIO_PCI_NOTIFY_OFF + queue * VIRTIO_PCI_NOTIFY_MULT;
	return 0;
}

int virtio_pci_snap_foreach(struct virtio_pci *vp, uint32_t instance,
			    virtio_snap_fn fn, void *ctx)
{
	int ret;

	ret = fn(ctx, &pci_dev_snap, instance, &vp->pci.st);
	if (ret)
		return ret;
	ret = fn(ctx, &virtio_pci_snap, instance, &vp->st);
	if (ret)
		return ret;
	for (unsigned i = 0; i < vp->ops->num_queues; i++) {
		ret = fn(ctx, &virtq_snap, instance * VIRTIO_PCI_MAX_QUEUES + i,
			 &vp->vqs[i].st);
		if (ret)
			return ret;
	}
	if (vp->ops->snap && vp->ops->snap_state)
		ret = fn(ctx, vp->ops->snap, instance,
			 vp->ops->snap_state(vp->opaque));
	return ret;
}

int virtio_pci_post_load(struct virtio_pci *vp, struct err *err)
{
	int ret;

	if (vp->st.num_queues != vp->ops->num_queues)
		return err_set(err, -EINVAL,
			       "%s: snapshot has %u queues, device has %u",
			       vp->pci.name, vp->st.num_queues,
			       vp->ops->num_queues);
	ret = pci_dev_post_load(&vp->pci);
	if (ret)
		return err_set(err, ret, "%s: PCI state: %s", vp->pci.name,
			       strerror(-ret));
	for (unsigned i = 0; i < vp->st.num_queues; i++) {
		struct virtq *vq = &vp->vqs[i];

		if (vp->st.status & VIRTIO_STATUS_FEATURES_OK)
			virtq_set_features(vq, vp->st.driver_features);
		if (vq->st.size > vq->max_size || virtq_post_load(vq))
			return err_set(err, -EINVAL,
				       "%s: snapshot queue %u does not fit "
				       "guest RAM",
				       vp->pci.name, i);
	}
	if (vp->ops->post_load) {
		ret = vp->ops->post_load(vp->opaque, err);
		if (ret)
			return ret;
	}
	/* Requests the guest queued before the snapshot still need a kick. */
	for (unsigned i = 0; i < vp->st.num_queues; i++)
		if (vp->vqs[i].st.ready && vp->ops->queue_notify)
			vp->ops->queue_notify(vp->opaque, i);
	return 0;
}
