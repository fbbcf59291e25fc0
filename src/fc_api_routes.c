/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Firecracker API's endpoints: each checks its body against its
 * field list (Firecracker's OpenAPI names, types and required markers),
 * then either edits the pre-boot vm_config - the struct the command line
 * builds - or acts on the running VM. What khyve does not do yet is
 * refused by name, never accepted silently (docs/firecracker-api.md).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "fc_api_int.h"
#include "snap.h"
#include "snap_ram.h"
#include "log.h"
#include "vm.h"
#include "vm_ctl.h"
#include "vm_devices.h"
#include "vm_snapshot.h"

/* The pre-boot / post-boot rule of an endpoint. */
enum fc_when { FC_ANY, FC_PRE, FC_POST };

struct fc_route {
	const char *method;
	const char *path; /* "/drives/" with @with_id: an id follows */
	bool with_id;
	enum fc_when when;
	enum fc_counter counter; /* Firecracker's metric for it */
	int (*fn)(struct fc_api *a, const char *id, json_t *body, json_t **out,
		  struct err *e);
};

static const char *const type_names[] = {
	[FC_STR] = "a string",	 [FC_BOOL] = "a boolean",
	[FC_INT] = "an integer", [FC_OBJ] = "an object",
	[FC_ARR] = "an array",
};

static bool type_ok(const json_t *v, enum fc_type t)
{
	switch (t) {
	case FC_STR:
		return json_is_string(v);
	case FC_BOOL:
		return json_is_boolean(v);
	case FC_INT:
		return json_is_integer(v);
	case FC_OBJ:
		return json_is_object(v);
	case FC_ARR:
		return json_is_array(v);
	}
	return false;
}

int fc_fields_check(const json_t *body, const struct fc_field *f, size_t n,
		    struct err *e)
{
	const char *key;
	json_t *v;

	if (!json_is_object(body))
		return err_set(e, -EINVAL, "the body must be a JSON object");
	json_object_foreach((json_t *)body, key, v)
	{
		size_t i;

		for (i = 0; i < n && strcmp(f[i].name, key); i++)
			;
		if (i == n)
			return err_set(e, -EINVAL, "unknown field `%s`", key);
		if (!type_ok(v, f[i].type))
			return err_set(e, -EINVAL, "field `%s`: expected %s",
				       key, type_names[f[i].type]);
		if (f[i].refused)
			return err_set(e, -EOPNOTSUPP, "field `%s`: %s", key,
				       f[i].refused);
	}
	for (size_t i = 0; i < n; i++)
		if (f[i].required && !json_object_get(body, f[i].name))
			return err_set(e, -EINVAL, "missing field `%s`",
				       f[i].name);
	return 0;
}

static const char *str_of(json_t *body, const char *key, const char *dflt)
{
	json_t *v = json_object_get(body, key);

	return v ? json_string_value(v) : dflt;
}

static bool bool_of(json_t *body, const char *key, bool dflt)
{
	json_t *v = json_object_get(body, key);

	return v ? json_is_true(v) : dflt;
}

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t since_us(uint64_t t0)
{
	return mono_us() - t0;
}

#define NOT_YET	    "not supported by khyve yet"
#define RATE_LIMITS "rate limiters are " NOT_YET

/* GET / */
static int get_info(struct fc_api *a, const char *id, json_t *body,
		    json_t **out, struct err *e)
{
	const char *st = "Not started";

	(void)id, (void)body, (void)e;
	if (a->phase == FC_BOOTED && a->vm) {
		pthread_mutex_lock(&a->vm->lock);
		st = a->vm->state == VM_PAUSED ? "Paused" : "Running";
		pthread_mutex_unlock(&a->vm->lock);
	}
	*out = json_pack("{s:s, s:s, s:s, s:s}", "id", a->cfg.name, "state", st,
			 "vmm_version", KHYVE_VERSION, "app_name", "khyve");
	return *out ? 0 : -ENOMEM;
}

/* GET /machine-config */
static int get_machine(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	(void)id, (void)body, (void)e;
	*out = fc_machine_config(a);
	return *out ? 0 : -ENOMEM;
}

/* GET /vm/config */
static int get_vm_config(struct fc_api *a, const char *id, json_t *body,
			 json_t **out, struct err *e)
{
	(void)id, (void)body, (void)e;
	*out = fc_vm_config(a);
	return *out ? 0 : -ENOMEM;
}

/* GET /version: the Firecracker API version khyve follows. */
static int get_version(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	(void)a, (void)id, (void)body, (void)e;
	*out = json_pack("{s:s}", "firecracker_version", FC_API_VERSION);
	return *out ? 0 : -ENOMEM;
}

/*
 * PUT /machine-config (@patch false: every field not given takes its
 * default) and PATCH /machine-config (@patch: only the fields given
 * change; none is required).
 */
static int machine_apply(struct fc_api *a, json_t *body, bool patch,
			 struct err *e)
{
	static const struct fc_field put[] = {
		{"vcpu_count", FC_INT, true, NULL},
		{"mem_size_mib", FC_INT, true, NULL},
		{"smt", FC_BOOL, false, NULL},
		{"track_dirty_pages", FC_BOOL, false, NULL},
		{"cpu_template", FC_STR, false, NULL},
		{"huge_pages", FC_STR, false, NULL},
	};
	static const struct fc_field opt[] = {
		{"vcpu_count", FC_INT, false, NULL},
		{"mem_size_mib", FC_INT, false, NULL},
		{"smt", FC_BOOL, false, NULL},
		{"track_dirty_pages", FC_BOOL, false, NULL},
		{"cpu_template", FC_STR, false, NULL},
		{"huge_pages", FC_STR, false, NULL},
	};
	json_t *jn = json_object_get(body, "vcpu_count"),
	       *jm = json_object_get(body, "mem_size_mib");
	json_int_t n, mib;
	int ret = fc_fields_check(body, patch ? opt : put, ARRAY_SIZE(put), e);

	if (ret)
		return ret;
	n = jn ? json_integer_value(jn) : (json_int_t)a->cfg.ncpus;
	mib = jm ? json_integer_value(jm) : (json_int_t)(a->cfg.mem_size >> 20);
	if (n < 1 || n > 32)
		return err_set(e, -EINVAL,
			       "vcpu_count: %lld is out of range 1-32",
			       (long long)n);
	if (mib < (json_int_t)(CONFIG_MIN_MEM >> 20) || mib > (1 << 20))
		return err_set(e, -EINVAL,
			       "mem_size_mib: %lld is out of range 16-1048576",
			       (long long)mib);
	if (bool_of(body, "smt", false))
		return err_set(e, -EOPNOTSUPP, "smt: SMT topology is " NOT_YET);
	if (strcmp(str_of(body, "cpu_template", "None"), "None"))
		return err_set(e, -EOPNOTSUPP,
			       "cpu_template: CPU templates are " NOT_YET
			       " (khyve has --cpu-policy)");
	if (strcmp(str_of(body, "huge_pages", "None"), "None"))
		return err_set(e, -EOPNOTSUPP, "huge_pages: " NOT_YET);
	a->cfg.ncpus = (unsigned)n;
	a->cfg.mem_size = ALIGN_UP((uint64_t)mib << 20, 2 * MiB);
	a->configured = true;
	return 0;
}

/* PUT /machine-config */
static int put_machine(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	(void)id, (void)out;
	return machine_apply(a, body, false, e);
}

/* PATCH /machine-config (pre-boot, as Firecracker's) */
static int patch_machine(struct fc_api *a, const char *id, json_t *body,
			 json_t **out, struct err *e)
{
	(void)id, (void)out;
	return machine_apply(a, body, true, e);
}

/* A string for a device option: no ',' (khyve's option separator). */
static int opt_safe(const char *field, const char *v, size_t max, struct err *e)
{
	if (!*v || strlen(v) >= max)
		return err_set(e, -EINVAL, "%s: empty or too long", field);
	if (strchr(v, ','))
		return err_set(e, -EINVAL,
			       "%s: khyve cannot pass a path with ',' yet",
			       field);
	return 0;
}

static int set_str(char **dst, const char *v)
{
	char *n = v ? strdup(v) : NULL;

	if (v && !n)
		return -ENOMEM;
	free(*dst);
	*dst = n;
	return 0;
}

/* PUT /boot-source */
static int put_boot(struct fc_api *a, const char *id, json_t *body,
		    json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"kernel_image_path", FC_STR, true, NULL},
		{"boot_args", FC_STR, false, NULL},
		{"initrd_path", FC_STR, false, NULL},
	};
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	if (!*str_of(body, "kernel_image_path", ""))
		return err_set(e, -EINVAL, "kernel_image_path: empty");
	if (set_str(&a->cfg.kernel, str_of(body, "kernel_image_path", NULL)) ||
	    set_str(&a->cfg.initrd, str_of(body, "initrd_path", NULL)) ||
	    set_str(&a->cfg.cmdline, str_of(body, "boot_args", NULL)))
		return err_set(e, -ENOMEM, "out of memory");
	a->have_kernel = true;
	a->configured = true;
	return 0;
}

/* The path's id: Firecracker's ids are [A-Za-z0-9_], and the body's. */
static int check_id(const char *id, json_t *body, const char *key,
		    struct err *e)
{
	const char *bid = str_of(body, key, "");

	if (!*id || strlen(id) > FC_ID_MAX)
		return err_set(e, -EINVAL, "invalid id `%s`", id);
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return err_set(e, -EINVAL,
				       "invalid id `%s`: use A-Z a-z 0-9 _",
				       id);
	if (strcmp(id, bid))
		return err_set(e, -EINVAL,
			       "the id in the path (%s) does not match %s "
			       "in the body (%s)",
			       id, key, bid);
	return 0;
}

static int drive_fill(struct fc_drive *d, const char *id, json_t *body,
		      struct err *e)
{
	const char *path = str_of(body, "path_on_host", "");
	int ret = opt_safe("path_on_host", path, sizeof(d->path), e);

	if (ret)
		return ret;
	if (strlen(str_of(body, "partuuid", "")) >= sizeof(d->partuuid))
		return err_set(e, -EINVAL, "partuuid: too long");
	if (strcmp(str_of(body, "cache_type", "Unsafe"), "Unsafe") &&
	    strcmp(str_of(body, "cache_type", "Unsafe"), "Writeback"))
		return err_set(e, -EINVAL,
			       "cache_type: expected Unsafe or Writeback");
	if (strcmp(str_of(body, "io_engine", "Sync"), "Sync") &&
	    strcmp(str_of(body, "io_engine", "Sync"), "Async"))
		return err_set(e, -EINVAL, "io_engine: expected Sync or Async");
	memset(d, 0, sizeof(*d));
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->path, sizeof(d->path), "%s", path);
	snprintf(d->partuuid, sizeof(d->partuuid), "%s",
		 str_of(body, "partuuid", ""));
	snprintf(d->cache_type, sizeof(d->cache_type), "%s",
		 str_of(body, "cache_type", ""));
	snprintf(d->io_engine, sizeof(d->io_engine), "%s",
		 str_of(body, "io_engine", ""));
	d->root = bool_of(body, "is_root_device", false);
	d->ro = bool_of(body, "is_read_only", false);
	return 0;
}

/* PUT /drives/{drive_id} */
static int put_drive(struct fc_api *a, const char *id, json_t *body,
		     json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"drive_id", FC_STR, true, NULL},
		{"is_root_device", FC_BOOL, true, NULL},
		{"path_on_host", FC_STR, true, NULL},
		{"is_read_only", FC_BOOL, false, NULL},
		{"partuuid", FC_STR, false, NULL},
		{"cache_type", FC_STR, false, NULL},
		{"io_engine", FC_STR, false, NULL},
		{"rate_limiter", FC_OBJ, false, RATE_LIMITS},
		{"socket", FC_STR, false, "vhost-user-block is " NOT_YET},
	};
	struct fc_drive d;
	unsigned i;
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)out;
	if (!ret)
		ret = check_id(id, body, "drive_id", e);
	if (!ret)
		ret = drive_fill(&d, id, body, e);
	if (ret)
		return ret;
	for (i = 0; i < a->ndrives && strcmp(a->drives[i].id, id); i++)
		;
	for (unsigned k = 0; k < a->ndrives; k++)
		if (k != i && d.root && a->drives[k].root)
			return err_set(e, -EINVAL,
				       "a root block device already exists "
				       "(%s)",
				       a->drives[k].id);
	if (i == FC_MAX_DRIVES)
		return err_set(e, -ENOSPC, "too many drives (max %d)",
			       FC_MAX_DRIVES);
	a->drives[i] = d;
	if (i == a->ndrives)
		a->ndrives++;
	a->configured = true;
	return 0;
}

static bool mac_ok(const char *m)
{
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? m[i] != ':' : !isxdigit((unsigned char)m[i]))
			return false;
	}
	return m[17] == 0;
}

/* PUT /network-interfaces/{iface_id} */
static int put_net(struct fc_api *a, const char *id, json_t *body, json_t **out,
		   struct err *e)
{
	static const struct fc_field f[] = {
		{"iface_id", FC_STR, true, NULL},
		{"host_dev_name", FC_STR, true, NULL},
		{"guest_mac", FC_STR, false, NULL},
		{"mtu", FC_INT, false, "mtu: " NOT_YET},
		{"rx_rate_limiter", FC_OBJ, false, RATE_LIMITS},
		{"tx_rate_limiter", FC_OBJ, false, RATE_LIMITS},
	};
	const char *tap = str_of(body, "host_dev_name", ""),
		   *mac = str_of(body, "guest_mac", NULL);
	struct fc_net n = {0};
	unsigned i;
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)out;
	if (!ret)
		ret = check_id(id, body, "iface_id", e);
	if (!ret)
		ret = opt_safe("host_dev_name", tap, sizeof(n.tap), e);
	if (ret)
		return ret;
	if (mac && !mac_ok(mac))
		return err_set(e, -EINVAL,
			       "guest_mac: `%s` is not a MAC address", mac);
	for (i = 0; i < a->nnets && strcmp(a->nets[i].id, id); i++)
		;
	if (i == FC_MAX_NETS)
		return err_set(e, -ENOSPC,
			       "too many network interfaces (max %d)",
			       FC_MAX_NETS);
	snprintf(n.id, sizeof(n.id), "%s", id);
	snprintf(n.tap, sizeof(n.tap), "%s", tap);
	snprintf(n.mac, sizeof(n.mac), "%s", mac ? mac : "");
	a->nets[i] = n;
	if (i == a->nnets)
		a->nnets++;
	a->configured = true;
	return 0;
}

/*
 * PATCH /drives/{drive_id} (post-boot): Firecracker swaps the backing
 * file (or re-reads its size) and updates rate limiters. khyve's
 * virtio-blk cannot change its file under a running guest yet, so a
 * path_on_host is refused by name; a body with only the id changes
 * nothing.
 */
static int patch_drive(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"drive_id", FC_STR, true, NULL},
		{"path_on_host", FC_STR, false,
		 "changing a drive's backing file after the start is " NOT_YET},
		{"rate_limiter", FC_OBJ, false, RATE_LIMITS},
	};
	unsigned i;
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)out;
	if (!ret)
		ret = check_id(id, body, "drive_id", e);
	if (ret)
		return ret;
	for (i = 0; i < a->ndrives && strcmp(a->drives[i].id, id); i++)
		;
	if (i == a->ndrives)
		return err_set(e, -ENOENT, "no drive `%s`%s", id,
			       a->loaded ? " (a loaded snapshot's drives have "
					   "no API ids)"
					 : "");
	return 0;
}

/* PATCH /network-interfaces/{iface_id} (post-boot): rate limiters. */
static int patch_net(struct fc_api *a, const char *id, json_t *body,
		     json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"iface_id", FC_STR, true, NULL},
		{"rx_rate_limiter", FC_OBJ, false, RATE_LIMITS},
		{"tx_rate_limiter", FC_OBJ, false, RATE_LIMITS},
	};
	unsigned i;
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)out;
	if (!ret)
		ret = check_id(id, body, "iface_id", e);
	if (ret)
		return ret;
	for (i = 0; i < a->nnets && strcmp(a->nets[i].id, id); i++)
		;
	if (i == a->nnets)
		return err_set(e, -ENOENT, "no network interface `%s`%s", id,
			       a->loaded ? " (a loaded snapshot's interfaces "
					   "have no API ids)"
					 : "");
	return 0;
}

/* PUT /entropy */
static int put_entropy(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"rate_limiter", FC_OBJ, false, RATE_LIMITS},
	};
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	a->entropy = true;
	a->configured = true;
	return 0;
}

/* One -s device, as the command line would give it. */
static int add_dev(struct vm_config *c, struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int add_dev(struct vm_config *c, struct err *e, const char *fmt, ...)
{
	char arg[640];
	va_list ap;

	if (c->ndevs == CONFIG_MAX_DEVS)
		return err_set(e, -ENOSPC, "too many devices (max %d)",
			       CONFIG_MAX_DEVS);
	va_start(ap, fmt);
	vsnprintf(arg, sizeof(arg), fmt, ap);
	va_end(ap);
	if (config_parse_dev(arg, &c->devs[c->ndevs], e))
		return e ? e->code : -EINVAL;
	c->ndevs++;
	return 0;
}

/*
 * Firecracker's boot arguments for khyve's machine: without "pci=off"
 * (khyve's devices are PCI), with the root device Firecracker adds.
 */
static int build_cmdline(struct vm_config *c, const struct fc_drive *root)
{
	const char *in = c->cmdline ? c->cmdline : "";
	size_t len = strlen(in) + 128;
	char *out = malloc(len), *p = out;
	const char *s = in;

	if (!out)
		return -ENOMEM;
	*p = 0;
	while (*s) {
		size_t w;

		while (*s == ' ')
			s++;
		w = strcspn(s, " ");
		if (w && !(w == 7 && !strncmp(s, "pci=off", 7)))
			p += sprintf(p, "%s%.*s", p == out ? "" : " ", (int)w,
				     s);
		s += w;
	}
	if (root && root->partuuid[0])
		snprintf(p, len - (size_t)(p - out), " root=PARTUUID=%s %s",
			 root->partuuid, root->ro ? "ro" : "rw");
	else if (root)
		snprintf(p, len - (size_t)(p - out), " root=/dev/vda %s",
			 root->ro ? "ro" : "rw");
	free(c->cmdline);
	c->cmdline = out;
	return 0;
}

/* Which API id the device in @slot has (the per-device metrics). */
static void devmap_add(struct fc_api *a, unsigned slot, char kind,
		       const char *id)
{
	struct fc_devmap *m = &a->devmap[a->ndevmap];
	size_t n;

	if (a->ndevmap == ARRAY_SIZE(a->devmap))
		return;
	m->slot = slot;
	m->kind = kind;
	n = strnlen(id, FC_ID_MAX);
	memmove(m->id, id, n); /* (id is in *a: GCC suspects an overlap) */
	m->id[n] = 0;
	a->ndevmap++;
}

/*
 * The pre-boot state as -s devices: the root drive first (so it is
 * /dev/vda), the other drives, the network interfaces, the entropy device.
 */
static int build_devices(struct fc_api *a, struct vm_config *c, struct err *e)
{
	const struct fc_drive *root = NULL;
	unsigned slot = 1;
	int ret = 0;

	a->ndevmap = 0;
	for (unsigned i = 0; i < a->ndrives; i++)
		if (a->drives[i].root)
			root = &a->drives[i];
	if (root) {
		devmap_add(a, slot, 'b', root->id);
		ret = add_dev(c, e, "%u,virtio-blk,%s%s", slot++, root->path,
			      root->ro ? ",ro" : "");
	}
	for (unsigned i = 0; !ret && i < a->ndrives; i++)
		if (&a->drives[i] != root) {
			devmap_add(a, slot, 'b', a->drives[i].id);
			ret = add_dev(c, e, "%u,virtio-blk,%s%s", slot++,
				      a->drives[i].path,
				      a->drives[i].ro ? ",ro" : "");
		}
	for (unsigned i = 0; !ret && i < a->nnets; i++) {
		devmap_add(a, slot, 'n', a->nets[i].id);
		ret = add_dev(c, e, "%u,virtio-net,%s%s%s", slot++,
			      a->nets[i].tap, a->nets[i].mac[0] ? ",mac=" : "",
			      a->nets[i].mac);
	}
	if (!ret && a->entropy) {
		devmap_add(a, slot, 'e', "entropy");
		ret = add_dev(c, e, "%u,virtio-rng", slot++);
	}
	if (!ret && build_cmdline(c, root))
		ret = err_set(e, -ENOMEM, "out of memory");
	return ret;
}

static int instance_start(struct fc_api *a, struct err *e)
{
	int ret;

	if (a->phase != FC_PREBOOT)
		return err_set(e, -EINVAL,
			       "InstanceStart: the microVM is already "
			       "running");
	if (!a->have_kernel)
		return err_set(e, -EINVAL,
			       "InstanceStart: cannot start the microVM "
			       "without a kernel: PUT /boot-source first");
	if (config_copy(&a->req, &a->cfg))
		return err_set(e, -ENOMEM, "out of memory");
	ret = build_devices(a, &a->req, e);
	if (ret) {
		config_free(&a->req);
		return ret;
	}
	a->req_paused = false;
	ret = fc_boot_request(a, e);
	if (ret)
		err_prefix(e, "InstanceStart: ");
	return ret;
}

/* Firecracker's log levels, case-insensitive, as khyve's. */
static int log_level_of(const char *name, enum log_level *lvl)
{
	static const struct {
		const char *name;
		enum log_level lvl;
	} m[] = {{"error", LOG_ERR},   {"warning", LOG_WARN},
		 {"info", LOG_INFO},   {"debug", LOG_DEBUG},
		 {"trace", LOG_DEBUG}, {"off", LOG_ERR}};

	for (size_t i = 0; i < ARRAY_SIZE(m); i++)
		if (!strcasecmp(name, m[i].name)) {
			*lvl = m[i].lvl;
			return 0;
		}
	return -EINVAL;
}

/* PUT /logger: khyve's log lines to log_path, at level. */
static int put_logger(struct fc_api *a, const char *id, json_t *body,
		      json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"log_path", FC_STR, false, NULL},
		{"level", FC_STR, false, NULL},
		{"show_level", FC_BOOL, false, NULL},
		{"show_log_origin", FC_BOOL, false, NULL},
		{"module", FC_STR, false, "filtering by module is " NOT_YET},
	};
	const char *path = str_of(body, "log_path", NULL);
	enum log_level lvl = LOG_INFO;
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	if (log_level_of(str_of(body, "level", "Info"), &lvl))
		return err_set(e, -EINVAL,
			       "level: unknown variant `%s`, expected one of "
			       "Error, Warning, Info, Debug, Trace, Off",
			       str_of(body, "level", ""));
	if (path && (ret = log_set_file(path)))
		return err_set(e, ret, "log_path %s: %s", path, strerror(-ret));
	log_set_level(lvl);
	json_decref(a->logger);
	a->logger = json_deep_copy(body); /* for GET /vm/config */
	return 0;
}

/* PUT /metrics: where FlushMetrics writes its JSON lines. */
static int put_metrics(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"metrics_path", FC_STR, true, NULL},
	};
	const char *path = str_of(body, "metrics_path", "");
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	if (a->metrics_fd >= 0)
		return err_set(e, -EEXIST,
			       "Reinitialization of metrics not allowed.");
	a->metrics_fd = open(
		path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC,
		0600);
	if (a->metrics_fd < 0)
		return err_sys(e, "metrics_path %s", path);
	a->metrics_path = strdup(path);
	ret = a->metrics_path ? fc_metrics_start(a, e)
			      : err_set(e, -ENOMEM, "out of memory");
	if (ret) {
		close(a->metrics_fd);
		a->metrics_fd = -1;
		free(a->metrics_path);
		a->metrics_path = NULL;
	}
	return ret;
}

/*
 * SendCtrlAltDel: the keys on the i8042 keyboard, as Firecracker types
 * them; a Linux guest reboots, and khyve exits when the guest resets.
 */
static int ctrl_alt_del(struct fc_api *a, struct err *e)
{
	int ret;

	if (a->phase != FC_BOOTED || !a->vm)
		return err_set(e, -EINVAL,
			       "SendCtrlAltDel: The requested operation is "
			       "not supported before starting the microVM.");
	ret = vm_devices_ctrl_alt_del(a->vm->devs, e);
	if (ret)
		err_prefix(e, "SendCtrlAltDel: ");
	return ret;
}

/* PUT /actions */
static int put_actions(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"action_type", FC_STR, true, NULL},
	};
	const char *t;
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	t = str_of(body, "action_type", "");
	if (!strcmp(t, "InstanceStart"))
		return instance_start(a, e);
	if (!strcmp(t, "FlushMetrics"))
		return fc_metrics_flush(a, e);
	if (!strcmp(t, "SendCtrlAltDel"))
		return ctrl_alt_del(a, e);
	return err_set(e, -EINVAL,
		       "action_type: unknown variant `%s`, expected one of "
		       "`FlushMetrics`, `InstanceStart`, `SendCtrlAltDel`",
		       t);
}

/* PATCH /vm */
static int patch_vm(struct fc_api *a, const char *id, json_t *body,
		    json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"state", FC_STR, true, NULL},
	};
	const char *st;
	uint64_t t0 = mono_us();
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	st = str_of(body, "state", "");
	if (!strcmp(st, "Paused")) {
		ret = vm_pause(a->vm, NULL, e);
		if (ret)
			err_prefix(e, "cannot pause: ");
		else
			a->lat_us[FC_L_PAUSE] = since_us(t0);
		return ret;
	}
	if (!strcmp(st, "Resumed")) {
		ret = vm_resume(a->vm);
		if (!ret)
			a->lat_us[FC_L_RESUME] = since_us(t0);
		return ret ? err_set(e, ret, "cannot resume: %s",
				     strerror(-ret))
			   : 0;
	}
	return err_set(e, -EINVAL,
		       "state: unknown variant `%s`, expected `Paused` or "
		       "`Resumed`",
		       st);
}

/* PUT /snapshot/create */
static int snap_create(struct fc_api *a, const char *id, json_t *body,
		       json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"snapshot_path", FC_STR, true, NULL},
		{"mem_file_path", FC_STR, true, NULL},
		{"snapshot_type", FC_STR, false, NULL},
		{"khyve_live", FC_BOOL, false, NULL},
	};
	struct checkpoint_opts o = {.live = true, .fsync = true};
	struct checkpoint_result res;
	const char *type;
	bool paused;
	uint64_t t0 = mono_us();
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (ret)
		return ret;
	type = str_of(body, "snapshot_type", "Full");
	if (strcmp(type, "Full") && strcmp(type, "Diff"))
		return err_set(e, -EINVAL,
			       "snapshot_type: unknown variant `%s`, expected "
			       "`Full` or `Diff`",
			       type);
	pthread_mutex_lock(&a->vm->lock);
	paused = a->vm->state == VM_PAUSED;
	pthread_mutex_unlock(&a->vm->lock);
	if (!paused && !bool_of(body, "khyve_live", false))
		return err_set(e, -EINVAL,
			       "Cannot create a snapshot of a running microVM: "
			       "pause it first (PATCH /vm), or ask khyve for "
			       "a live one with \"khyve_live\": true");
	o.file = str_of(body, "snapshot_path", "");
	o.ram_file = str_of(body, "mem_file_path", "");
	o.incremental = !strcmp(type, "Diff");
	ret = vm_snapshot_save(a->vm, &o, &res, e);
	if (!ret)
		a->lat_us[o.incremental ? FC_L_DIFF_CREATE : FC_L_FULL_CREATE] =
			since_us(t0);
	return ret;
}

/* @mem must be the memory file @state names (beside it, by bare name). */
static int check_mem_file(const char *state, const char *mem, struct err *e)
{
	struct snap_reader *r = NULL;
	struct snap_ram_info ram = {0};
	char named[4096], r1[PATH_MAX], r2[PATH_MAX];
	int ret = snap_reader_open(&r, state, e);

	if (!ret)
		ret = snap_ram_read_section(r, &ram, e);
	if (!ret && snap_ram_resolve(state, ram.file, named, sizeof(named)))
		ret = err_set(e, -EINVAL, "%s: bad memory file name", state);
	snap_ram_info_free(&ram);
	snap_reader_close(r);
	if (ret)
		return ret;
	if (!realpath(named, r1))
		return err_sys(e, "memory file %s", named);
	if (!realpath(mem, r2))
		return err_sys(e, "memory file %s", mem);
	if (strcmp(r1, r2))
		return err_set(e, -EINVAL,
			       "memory file %s: %s was saved with %s (khyve's "
			       "state file names its memory file)",
			       mem, state, named);
	return 0;
}

/* The memory file a load names: mem_backend (File) or mem_file_path. */
static int load_mem_path(json_t *body, const char **mem, struct err *e)
{
	static const struct fc_field f[] = {
		{"backend_type", FC_STR, true, NULL},
		{"backend_path", FC_STR, true, NULL},
	};
	json_t *mb = json_object_get(body, "mem_backend");
	int ret;

	if (!!mb == !!json_object_get(body, "mem_file_path"))
		return err_set(e, -EINVAL,
			       "exactly one of mem_backend and mem_file_path "
			       "must be given");
	if (!mb) {
		*mem = str_of(body, "mem_file_path", "");
		return 0;
	}
	ret = fc_fields_check(mb, f, ARRAY_SIZE(f), e);
	if (ret) {
		err_prefix(e, "mem_backend: ");
		return ret;
	}
	if (!strcmp(str_of(mb, "backend_type", ""), "Uffd"))
		return err_set(e, -EOPNOTSUPP,
			       "mem_backend: backend_type Uffd is " NOT_YET);
	if (strcmp(str_of(mb, "backend_type", ""), "File"))
		return err_set(e, -EINVAL,
			       "mem_backend: backend_type: expected `File` or "
			       "`Uffd`");
	*mem = str_of(mb, "backend_path", "");
	return 0;
}

/* PUT /snapshot/load */
static int snap_load(struct fc_api *a, const char *id, json_t *body,
		     json_t **out, struct err *e)
{
	static const struct fc_field f[] = {
		{"snapshot_path", FC_STR, true, NULL},
		{"mem_file_path", FC_STR, false, NULL},
		{"mem_backend", FC_OBJ, false, NULL},
		{"enable_diff_snapshots", FC_BOOL, false, NULL},
		{"track_dirty_pages", FC_BOOL, false, NULL},
		{"resume_vm", FC_BOOL, false, NULL},
		{"clock_realtime", FC_BOOL, false, NULL},
		{"network_overrides", FC_ARR, false, NOT_YET},
		{"vsock_override", FC_OBJ, false, "vsock is " NOT_YET},
	};
	const char *mem = NULL, *state;
	uint64_t t0 = mono_us();
	int ret = fc_fields_check(body, f, ARRAY_SIZE(f), e);

	(void)id, (void)out;
	if (!ret)
		ret = load_mem_path(body, &mem, e);
	if (ret)
		return ret;
	if (a->configured)
		return err_set(e, -EINVAL,
			       "Loading a microVM snapshot not allowed after "
			       "configuring boot-specific resources.");
	state = str_of(body, "snapshot_path", "");
	ret = check_mem_file(state, mem, e);
	if (ret)
		return ret;
	if (config_copy(&a->req, &a->cfg))
		return err_set(e, -ENOMEM, "out of memory");
	a->req.restore = strdup(state);
	if (!a->req.restore) {
		config_free(&a->req);
		return err_set(e, -ENOMEM, "out of memory");
	}
	/* Firecracker's default: kvmclock goes on from the saved time. */
	a->req.keep_clock = !bool_of(body, "clock_realtime", false);
	a->req_paused = !bool_of(body, "resume_vm", false);
	ret = fc_boot_request(a, e);
	if (!ret) {
		a->loaded = true;
		a->lat_us[FC_L_LOAD] = since_us(t0);
	}
	return ret;
}

static int refuse(struct fc_api *a, const char *id, json_t *body, json_t **out,
		  struct err *e)
{
	(void)a, (void)id, (void)body, (void)out;
	return err_set(e, -EOPNOTSUPP, NOT_YET);
}

static const struct fc_route routes[] = {
	{"GET", "/", false, FC_ANY, FC_M_GET_INFO, get_info},
	{"GET", "/machine-config", false, FC_ANY, FC_M_GET_MACHINE,
	 get_machine},
	{"GET", "/vm/config", false, FC_ANY, FC_M_NONE, get_vm_config},
	{"GET", "/version", false, FC_ANY, FC_M_GET_VERSION, get_version},
	{"PUT", "/machine-config", false, FC_PRE, FC_M_PUT_MACHINE,
	 put_machine},
	{"PATCH", "/machine-config", false, FC_PRE, FC_M_PATCH_MACHINE,
	 patch_machine},
	{"PUT", "/boot-source", false, FC_PRE, FC_M_PUT_BOOT, put_boot},
	{"PUT", "/drives/", true, FC_PRE, FC_M_PUT_DRIVE, put_drive},
	{"PATCH", "/drives/", true, FC_POST, FC_M_PATCH_DRIVE, patch_drive},
	{"PUT", "/network-interfaces/", true, FC_PRE, FC_M_PUT_NET, put_net},
	{"PATCH", "/network-interfaces/", true, FC_POST, FC_M_PATCH_NET,
	 patch_net},
	{"PUT", "/entropy", false, FC_PRE, FC_M_NONE, put_entropy},
	{"PUT", "/actions", false, FC_ANY, FC_M_PUT_ACTIONS, put_actions},
	{"PATCH", "/vm", false, FC_POST, FC_M_NONE, patch_vm},
	{"PUT", "/snapshot/create", false, FC_POST, FC_M_NONE, snap_create},
	{"PUT", "/snapshot/load", false, FC_PRE, FC_M_NONE, snap_load},
	{"PUT", "/logger", false, FC_PRE, FC_M_PUT_LOGGER, put_logger},
	{"PUT", "/metrics", false, FC_PRE, FC_M_PUT_METRICS, put_metrics},
	/* Firecracker's, refused by name (docs/firecracker-api.md). */
	{"*", "/balloon", false, FC_ANY, FC_M_NONE, refuse},
	{"*", "/balloon/statistics", false, FC_ANY, FC_M_NONE, refuse},
	{"*", "/balloon/hinting/start", false, FC_ANY, FC_M_NONE, refuse},
	{"*", "/balloon/hinting/status", false, FC_ANY, FC_M_NONE, refuse},
	{"*", "/balloon/hinting/stop", false, FC_ANY, FC_M_NONE, refuse},
	{"PUT", "/vsock", false, FC_ANY, FC_M_PUT_VSOCK, refuse},
	{"GET", "/mmds", false, FC_ANY, FC_M_GET_MMDS, refuse},
	{"PUT", "/mmds", false, FC_ANY, FC_M_PUT_MMDS, refuse},
	{"PATCH", "/mmds", false, FC_ANY, FC_M_PATCH_MMDS, refuse},
	{"PUT", "/mmds/config", false, FC_ANY, FC_M_PUT_MMDS, refuse},
	{"PUT", "/cpu-config", false, FC_ANY, FC_M_PUT_CPU, refuse},
	{"*", "/pmem/", true, FC_ANY, FC_M_NONE, refuse},
	{"PUT", "/serial", false, FC_ANY, FC_M_NONE, refuse},
	{"PUT", "/hotplug/memory", false, FC_ANY, FC_M_PUT_HOTPLUG, refuse},
	{"*", "/hotplug/memory", false, FC_ANY, FC_M_NONE, refuse},
};

static const struct fc_route *route_find(const char *method, const char *url,
					 const char **id)
{
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		const struct fc_route *r = &routes[i];
		size_t n = strlen(r->path);

		if (strcmp(r->method, "*") && strcmp(r->method, method))
			continue;
		if (r->with_id ? strncmp(url, r->path, n) || !url[n] ||
					 strchr(url + n, '/')
			       : strcmp(url, r->path))
			continue;
		*id = url + n;
		return r;
	}
	return NULL;
}

/* The body of a PUT or PATCH, parsed; NULL after filling @e. */
static json_t *parse_body(const char *body, size_t len, struct err *e)
{
	json_error_t je;
	json_t *j;

	if (!body || !len) {
		err_set(e, -EINVAL, "the request needs a JSON body");
		return NULL;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		err_set(e, -EINVAL,
			"malformed JSON body: %s at line %d column %d", je.text,
			je.line, je.column);
	return j;
}

/* The endpoint's pre-boot / post-boot rule, then the endpoint. */
static int route_call(struct fc_api *a, const struct fc_route *r,
		      const char *id, json_t *body, json_t **out, struct err *e)
{
	bool booted = a->phase == FC_BOOTED && a->vm;

	if (a->phase == FC_GONE)
		return err_set(e, -ESHUTDOWN, "the microVM has stopped");
	if (r->when == FC_PRE && a->phase != FC_PREBOOT)
		return err_set(e, -EINVAL,
			       "The requested operation is not supported "
			       "after starting the microVM.");
	if (r->when == FC_POST && !booted)
		return err_set(e, -EINVAL,
			       "The requested operation is not supported "
			       "before starting the microVM.");
	return r->fn(a, id, body, out, e);
}

void fc_route(struct fc_api *a, const char *method, const char *url,
	      const char *body, size_t len, struct fc_reply *r)
{
	const struct fc_route *rt;
	const char *id = "";
	struct err e = {0};
	json_t *j = NULL, *out = NULL;
	int ret;

	rt = route_find(method, url, &id);
	/* Counted as it arrives, as Firecracker does (a FlushMetrics too). */
	if (rt && rt->counter) {
		pthread_mutex_lock(&a->lock);
		a->req_count[rt->counter]++;
		pthread_mutex_unlock(&a->lock);
	}
	if (!rt) {
		ret = err_set(&e, -EINVAL,
			      "Invalid request method and/or path: %s %s.",
			      method, url);
	} else if (rt->fn == refuse) {
		ret = err_set(&e, -EOPNOTSUPP, "%s %s: %s", method, url,
			      NOT_YET);
	} else {
		bool has_body = strcmp(method, "GET") != 0;

		j = has_body ? parse_body(body, len, &e) : NULL;
		pthread_mutex_lock(&a->lock);
		ret = has_body && !j ? e.code
				     : route_call(a, rt, id, j, &out, &e);
		pthread_mutex_unlock(&a->lock);
		if (ret && rt->fn != get_info)
			err_prefix(&e, "%s %s: ", method, url);
	}
	json_decref(j);
	if (rt && rt->counter && ret) {
		pthread_mutex_lock(&a->lock);
		a->req_fails[rt->counter]++;
		pthread_mutex_unlock(&a->lock);
	}
	if (ret) {
		json_decref(out);
		r->status = 400;
		r->body = json_pack("{s:s}", "fault_message", err_msg(&e));
	} else {
		r->status = out ? 200 : 204;
		r->body = out;
	}
}
