/* SPDX-License-Identifier: BSD-2-Clause */
#include "vmgenid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"
#include "layout.h"
#include "log.h"

static const struct snap_field vmgenid_fields[] = {
	SNAP_U64(struct vmgenid_state, addr, 1),
	SNAP_U32_MAX(struct vmgenid_state, gsi, 255, 1),
};

const struct snap_desc vmgenid_snap =
	SNAP_DESC("vmgenid", 1, 1, struct vmgenid_state, vmgenid_fields);

/*
 * The DSDT objects, by hand (ACPI 6.4, 20.2; the ID's address and the GSI
 * patched in at the offsets below):
 *
 * Scope (\_SB) {
 *   Device (VGEN) {
 *     Name (_HID, "VMGENCTR")          Linux 6.1+ binds vmgenid to this
 *     Name (_CID, "VM_Gen_Counter")    the name Microsoft's spec asks for
 *     Name (_DDN, "VM_Gen_Counter")
 *     Method (ADDR, 0) { Return (Package (2) { LO, HI }) }
 *   }
 *   Device (GED0) {                    hardware-reduced ACPI has no GPE
 *     Name (_HID, "ACPI0013")          block: a Generic Event Device's
 *     Name (_CRS, ResourceTemplate () {    interrupt carries the event
 *       Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { GSI }
 *     })
 *     Method (_EVT, 1) {
 *       If (LEqual (Arg0, GSI)) { Notify (\_SB.VGEN, 0x80) }
 *     }
 *   }
 * }
 */
#define AML_ADDR_LO 85	/* DWordConst: low 32 bits of the ID's address */
#define AML_ADDR_HI 90	/* DWordConst: high 32 bits */
#define AML_CRS_GSI 131 /* the interrupt descriptor's GSI (u32) */
#define AML_EVT_GSI 149 /* the _EVT comparison's ByteConst */

/* One line per AML object, as decoded above. */
/* clang-format off */
static const uint8_t vmgenid_aml_tmpl[] = {
	/* 0: ScopeOp, PkgLength 162 (0x42 0x0a: 2 + 10 << 4), \_SB_ */
	0x10, 0x42, 0x0a, 0x5c, '_', 'S', 'B', '_',
	/* 8: DeviceOp (ExtOpPrefix 0x5b, 0x82), PkgLength 84, "VGEN" */
	0x5b, 0x82, 0x44, 0x05, 'V', 'G', 'E', 'N',
	/* 16: NameOp "_HID", StringPrefix "VMGENCTR" NUL */
	0x08, '_', 'H', 'I', 'D', 0x0d, 'V', 'M', 'G', 'E', 'N', 'C', 'T', 'R',
	0x00,
	/* 31: NameOp "_CID", StringPrefix "VM_Gen_Counter" NUL */
	0x08, '_', 'C', 'I', 'D', 0x0d, 'V', 'M', '_', 'G', 'e', 'n', '_', 'C',
	'o', 'u', 'n', 't', 'e', 'r', 0x00,
	/* 52: NameOp "_DDN", the same string */
	0x08, '_', 'D', 'D', 'N', 0x0d, 'V', 'M', '_', 'G', 'e', 'n', '_', 'C',
	'o', 'u', 'n', 't', 'e', 'r', 0x00,
	/* 73: MethodOp, PkgLength 20, "ADDR", flags 0 (no args, unserialized) */
	0x14, 0x14, 'A', 'D', 'D', 'R', 0x00,
	/* 80: ReturnOp, PackageOp, PkgLength 12, NumElements 2 */
	0xa4, 0x12, 0x0c, 0x02,
	/* 84: DWordPrefix LO, DWordPrefix HI */
	0x0c, 0, 0, 0, 0, 0x0c, 0, 0, 0, 0,
	/* 94: DeviceOp, PkgLength 67 (0x43 0x04), "GED0" */
	0x5b, 0x82, 0x43, 0x04, 'G', 'E', 'D', '0',
	/* 102: NameOp "_HID", StringPrefix "ACPI0013" NUL */
	0x08, '_', 'H', 'I', 'D', 0x0d, 'A', 'C', 'P', 'I', '0', '0', '1', '3',
	0x00,
	/* 117: NameOp "_CRS", BufferOp, PkgLength 14, BytePrefix size 11 */
	0x08, '_', 'C', 'R', 'S', 0x11, 0x0e, 0x0a, 0x0b,
	/*
	 * 126: Extended Interrupt Descriptor (large item 0x89, length 6),
	 * flags 0x03 (consumer, edge, active high, exclusive), one GSI;
	 * then the End Tag (0x79, checksum 0)
	 */
	0x89, 0x06, 0x00, 0x03, 0x01, 0, 0, 0, 0, 0x79, 0x00,
	/* 137: MethodOp, PkgLength 25, "_EVT", flags 1 (one argument) */
	0x14, 0x19, '_', 'E', 'V', 'T', 0x01,
	/* 144: IfOp, PkgLength 18, LEqualOp Arg0Op BytePrefix GSI */
	0xa0, 0x12, 0x93, 0x68, 0x0a, 0,
	/* 150: NotifyOp \ DualNamePrefix "_SB_" "VGEN", BytePrefix 0x80 */
	0x86, 0x5c, 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0a, 0x80,
};
/* clang-format on */

size_t vmgenid_aml(uint8_t *buf, size_t len, uint64_t addr, uint32_t gsi)
{
	if (len < sizeof(vmgenid_aml_tmpl))
		return 0;
	memcpy(buf, vmgenid_aml_tmpl, sizeof(vmgenid_aml_tmpl));
	put_le32(buf + AML_ADDR_LO, (uint32_t)addr);
	put_le32(buf + AML_ADDR_HI, (uint32_t)(addr >> 32));
	put_le32(buf + AML_CRS_GSI, gsi);
	buf[AML_EVT_GSI] = (uint8_t)gsi;
	return sizeof(vmgenid_aml_tmpl);
}

int vmgenid_new_id(struct vmgenid *g, struct err *err)
{
	uint8_t id[VMGENID_SIZE];
	int ret;

	if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
		return err_sys(err, "vmgenid: getrandom");
	/* guest_mem_write marks the page for a live checkpoint. */
	ret = guest_mem_write(g->mem, g->st.addr, id, sizeof(id));
	if (ret)
		return err_set(err, ret,
			       "vmgenid: address 0x%llx is not guest RAM",
			       (unsigned long long)g->st.addr);
	g->generations++;
	return 0;
}

/* ---- the device's life cycle (dev_ops.h) ---- */

static int vmgenid_create(const char *conf, const struct dev_env *env,
			  struct dev_instance *out, struct err *err)
{
	struct vmgenid *g = calloc(1, sizeof(*g));
	int ret;

	(void)conf; /* no options: --no-vmgenid is in the configuration */
	if (!g)
		return err_set(err, -ENOMEM, "vmgenid: %s", strerror(ENOMEM));
	g->mem = env->mem;
	g->irq = env->irq;
	g->st.addr = BOOT_VMGENID_ADDR;
	g->st.gsi = VMGENID_GED_GSI;
	/*
	 * A restore or a migration: the saved state says whether the guest
	 * has one (its section, read in snap_foreach). A boot: unless
	 * turned off. A recorded stream (-r -, -r FILE) is a restore: a
	 * new ID, like a restore of the pair.
	 */
	g->migrated = env->cfg->incoming && !env->cfg->incoming_recorded;
	g->present = env->cfg->restore || env->cfg->incoming ||
		     !env->cfg->no_vmgenid;
	if (g->present && !env->cfg->restore && !env->cfg->incoming) {
		ret = vmgenid_new_id(g, err);
		if (ret) {
			free(g);
			return ret;
		}
	}
	out->dev = g;
	return 0;
}

static void vmgenid_destroy(void *dev)
{
	free(dev);
}

/* After a restore: the guest must see the new ID now (Linux reseeds). */
static void vmgenid_resume(void *dev)
{
	struct vmgenid *g = dev;

	if (!g->notify)
		return;
	g->notify = false;
	g->irq.gsi = g->st.gsi;
	irq_line_set(&g->irq, 1);
	irq_line_set(&g->irq, 0);
}

static unsigned vmgenid_stats(void *dev, struct dev_stat *out)
{
	struct vmgenid *g = dev;

	out[0] = (struct dev_stat){"generations", g->generations};
	return 1;
}

/*
 * One section while the guest has one. Loading, a snapshot without it
 * (made with --no-vmgenid, or before khyve had the device) leaves the
 * guest without one: nothing in its ACPI names an ID to refresh.
 */
static int vmgenid_snap_foreach(void *dev, uint32_t instance, virtio_snap_fn fn,
				void *ctx)
{
	struct vmgenid *g = dev;
	int ret;

	if (!g->present)
		return 0;
	ret = fn(ctx, &vmgenid_snap, instance, &g->st);
	if (ret == -ENOENT) {
		g->present = false;
		ret = 0;
	}
	return ret;
}

/*
 * Every restore is a new generation: a fresh ID before any vCPU runs. A
 * live migration is not (Microsoft's spec: the ID stays; the source does
 * not run on), so the ID that came in guest RAM stays.
 */
static int vmgenid_post_load(void *dev, struct err *err)
{
	struct vmgenid *g = dev;
	int ret;

	if (!g->present)
		return 0;
	if (g->st.addr % 8 || g->st.gsi >= 24)
		return err_set(err, -EINVAL,
			       "vmgenid: address 0x%llx or GSI %u out of range",
			       (unsigned long long)g->st.addr, g->st.gsi);
	/*
	 * In guest RAM for a migration too, where the ID is not rewritten:
	 * else the next restore of this guest would refuse its own state
	 * (found by fuzz_device_load).
	 */
	if (g->migrated)
		return guest_mem_ptr(g->mem, g->st.addr, VMGENID_SIZE)
			       ? 0
			       : err_set(err, -EFAULT,
					 "vmgenid: address 0x%llx is not guest "
					 "RAM",
					 (unsigned long long)g->st.addr);
	ret = vmgenid_new_id(g, err);
	if (!ret)
		g->notify = true;
	return ret;
}

static int vmgenid_dsdt_aml(void *dev, uint8_t *buf, size_t len)
{
	struct vmgenid *g = dev;
	size_t n;

	if (!g->present)
		return 0;
	n = vmgenid_aml(buf, len, g->st.addr, g->st.gsi);
	return n ? (int)n : -ENOSPC;
}

const struct dev_ops vmgenid_dev_ops = {
	.name = "vmgenid",
	.help = "VM generation ID, new on every restore (on unless "
		"--no-vmgenid)",
	.platform = true,
	.create = vmgenid_create,
	.destroy = vmgenid_destroy,
	.resume = vmgenid_resume,
	.stats = vmgenid_stats,
	.snap_foreach = vmgenid_snap_foreach,
	.post_load = vmgenid_post_load,
	.dsdt_aml = vmgenid_dsdt_aml,
};
