/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * GET /machine-config and GET /vm/config: the configuration as
 * Firecracker's FullVmConfiguration describes it, with khyve's values
 * (docs/firecracker-api.md). What is not configured is left out, as the
 * description allows; a VM loaded from a snapshot has its machine's
 * size from the snapshot, no boot source (as in Firecracker) and no
 * drive or interface ids (khyve's snapshots keep PCI slots, not the ids
 * of the API that made them).
 */
#include "fc_api_int.h"
#include "vm.h"

json_t *fc_machine_config(struct fc_api *a)
{
	const struct vm_config *c = a->loaded && a->vm ? a->vm->cfg : &a->cfg;

	return json_pack("{s:i, s:I, s:b, s:b, s:s}", "vcpu_count",
			 (int)c->ncpus, "mem_size_mib",
			 (json_int_t)(c->mem_size >> 20), "smt", 0,
			 "track_dirty_pages", 0, "huge_pages", "None");
}

static json_t *boot_source(const struct vm_config *c)
{
	json_t *o = json_pack("{s:s}", "kernel_image_path", c->kernel);

	if (o && c->cmdline)
		json_object_set_new(o, "boot_args", json_string(c->cmdline));
	if (o && c->initrd)
		json_object_set_new(o, "initrd_path", json_string(c->initrd));
	return o;
}

static json_t *drive(const struct fc_drive *d)
{
	json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "drive_id", d->id,
			      "path_on_host", d->path, "is_root_device",
			      d->root, "is_read_only", d->ro);

	if (o && d->partuuid[0])
		json_object_set_new(o, "partuuid", json_string(d->partuuid));
	if (o)
		json_object_set_new(o, "cache_type",
				    json_string(d->cache_type[0] ? d->cache_type
								 : "Unsafe"));
	if (o)
		json_object_set_new(
			o, "io_engine",
			json_string(d->io_engine[0] ? d->io_engine : "Sync"));
	return o;
}

static json_t *net(const struct fc_net *n)
{
	json_t *o = json_pack("{s:s, s:s}", "iface_id", n->id, "host_dev_name",
			      n->tap);

	if (o && n->mac[0])
		json_object_set_new(o, "guest_mac", json_string(n->mac));
	return o;
}

json_t *fc_vm_config(struct fc_api *a)
{
	json_t *o = json_object(), *drives = json_array(), *nets = json_array();

	if (!o || !drives || !nets) {
		json_decref(o);
		json_decref(drives);
		json_decref(nets);
		return NULL;
	}
	json_object_set_new(o, "machine-config", fc_machine_config(a));
	if (a->have_kernel && !a->loaded)
		json_object_set_new(o, "boot-source", boot_source(&a->cfg));
	for (unsigned i = 0; i < a->ndrives; i++)
		json_array_append_new(drives, drive(&a->drives[i]));
	for (unsigned i = 0; i < a->nnets; i++)
		json_array_append_new(nets, net(&a->nets[i]));
	json_object_set_new(o, "drives", drives);
	json_object_set_new(o, "network-interfaces", nets);
	if (a->entropy)
		json_object_set_new(o, "entropy", json_object());
	if (a->logger)
		json_object_set(o, "logger", a->logger);
	if (a->metrics_path)
		json_object_set_new(
			o, "metrics",
			json_pack("{s:s}", "metrics_path", a->metrics_path));
	return o;
}
