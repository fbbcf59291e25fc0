/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Firecracker API's metrics: after PUT /metrics, one JSON line to the
 * metrics file every FC_METRICS_PERIOD_MS and on each FlushMetrics. The
 * line has Firecracker's layout where khyve has the same counter
 * (docs/firecracker-api.md lists which): the API request counters, the
 * snapshot and pause latencies, block, net and entropy device counters.
 * Firecracker's counters are the increase since the previous line; so
 * are these. Everything else khyve counts is under "khyve" (the
 * cumulative `khyvectl stats`).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fc_api_int.h"
#include "log.h"
#include "vm.h"
#include "vm_ctl.h"

/* Firecracker's names of the request counters, and of their failures. */
static const struct {
	const char *group, *count, *fails;
} counter_names[FC_M_NCOUNTERS] = {
	[FC_M_GET_INFO] = {"get_api_requests", "instance_info_count", NULL},
	[FC_M_GET_MACHINE] = {"get_api_requests", "machine_cfg_count", NULL},
	[FC_M_GET_MMDS] = {"get_api_requests", "mmds_count", NULL},
	[FC_M_GET_VERSION] = {"get_api_requests", "vmm_version_count", NULL},
	[FC_M_PUT_ACTIONS] = {"put_api_requests", "actions_count",
			      "actions_fails"},
	[FC_M_PUT_BOOT] = {"put_api_requests", "boot_source_count",
			   "boot_source_fails"},
	[FC_M_PUT_DRIVE] = {"put_api_requests", "drive_count", "drive_fails"},
	[FC_M_PUT_LOGGER] = {"put_api_requests", "logger_count",
			     "logger_fails"},
	[FC_M_PUT_MACHINE] = {"put_api_requests", "machine_cfg_count",
			      "machine_cfg_fails"},
	[FC_M_PUT_CPU] = {"put_api_requests", "cpu_cfg_count", "cpu_cfg_fails"},
	[FC_M_PUT_METRICS] = {"put_api_requests", "metrics_count",
			      "metrics_fails"},
	[FC_M_PUT_NET] = {"put_api_requests", "network_count", "network_fails"},
	[FC_M_PUT_MMDS] = {"put_api_requests", "mmds_count", "mmds_fails"},
	[FC_M_PUT_VSOCK] = {"put_api_requests", "vsock_count", "vsock_fails"},
	[FC_M_PUT_HOTPLUG] = {"put_api_requests", "hotplug", "hotplug_fails"},
	[FC_M_PATCH_DRIVE] = {"patch_api_requests", "drive_count",
			      "drive_fails"},
	[FC_M_PATCH_NET] = {"patch_api_requests", "network_count",
			    "network_fails"},
	[FC_M_PATCH_MACHINE] = {"patch_api_requests", "machine_cfg_count",
				"machine_cfg_fails"},
	[FC_M_PATCH_MMDS] = {"patch_api_requests", "mmds_count", "mmds_fails"},
};

static const char *const latency_names[FC_L_N] = {
	[FC_L_FULL_CREATE] = "full_create_snapshot",
	[FC_L_DIFF_CREATE] = "diff_create_snapshot",
	[FC_L_LOAD] = "load_snapshot",
	[FC_L_PAUSE] = "pause_vm",
	[FC_L_RESUME] = "resume_vm",
};

/* @o[@group][@key] += @v, creating what is missing. */
static void add_to(json_t *o, const char *group, const char *key, uint64_t v)
{
	json_t *g = json_object_get(o, group), *old;

	if (!g) {
		g = json_object();
		json_object_set_new(o, group, g);
	}
	old = json_object_get(g, key);
	json_object_set_new(
		g, key,
		json_integer((json_int_t)v +
			     (old ? json_integer_value(old) : (json_int_t)0)));
}

static uint64_t stat_of(json_t *dev, const char *name)
{
	return (uint64_t)json_integer_value(json_object_get(dev, name));
}

/* The API's id of the device in @slot, or NULL (a loaded snapshot's). */
static const char *dev_id(struct fc_api *a, unsigned slot)
{
	for (unsigned i = 0; i < a->ndevmap; i++)
		if (a->devmap[i].slot == slot)
			return a->devmap[i].id;
	return NULL;
}

/* One device's counters: the aggregate and, with an id, its own. */
static void device_counters(struct fc_api *a, json_t *o, const char *key,
			    json_t *dev)
{
	static const struct {
		const char *emul, *group, *fc, *khyve;
	} map[] = {
		{"virtio-blk", "block", "read_bytes", "read_bytes"},
		{"virtio-blk", "block", "write_bytes", "write_bytes"},
		{"virtio-blk", "block", "flush_count", "flushes"},
		{"virtio-net", "net", "rx_bytes_count", "rx_bytes"},
		{"virtio-net", "net", "rx_packets_count", "rx_packets"},
		{"virtio-net", "net", "tx_bytes_count", "tx_bytes"},
		{"virtio-net", "net", "tx_packets_count", "tx_packets"},
		{"virtio-rng", "entropy", "entropy_bytes", "bytes"},
	};
	unsigned slot = 0;
	const char *at = strchr(key, '@'), *id;
	char own[FC_ID_MAX + 16];

	if (!at || sscanf(at + 1, "%u", &slot) != 1)
		return;
	id = dev_id(a, slot);
	for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
		if (strncmp(key, map[i].emul, (size_t)(at - key)) ||
		    strlen(map[i].emul) != (size_t)(at - key))
			continue;
		add_to(o, map[i].group, map[i].fc, stat_of(dev, map[i].khyve));
		/* Firecracker: block_<drive_id>, net_<iface_id>. */
		if (id && strcmp(map[i].group, "entropy")) {
			snprintf(own, sizeof(own), "%s_%s", map[i].group, id);
			add_to(o, own, map[i].fc, stat_of(dev, map[i].khyve));
		}
	}
}

/* The cumulative counters in Firecracker's layout. */
static json_t *fc_counters(struct fc_api *a, json_t *stats)
{
	json_t *o = json_object(), *devs = json_object_get(stats, "devices"),
	       *dev;
	const char *key;

	for (unsigned c = 1; c < FC_M_NCOUNTERS; c++) {
		add_to(o, counter_names[c].group, counter_names[c].count,
		       a->req_count[c]);
		if (counter_names[c].fails)
			add_to(o, counter_names[c].group,
			       counter_names[c].fails, a->req_fails[c]);
	}
	json_object_foreach(devs, key, dev)
	{
		device_counters(a, o, key, dev);
	}
	return o;
}

/* @cur less @prev, key by key (objects of integers, two levels). */
static json_t *delta(json_t *cur, json_t *prev)
{
	json_t *o = json_object(), *v;
	const char *key;

	json_object_foreach(cur, key, v)
	{
		json_t *p = json_object_get(prev, key);

		if (json_is_object(v))
			json_object_set_new(o, key, delta(v, p));
		else
			json_object_set_new(
				o, key,
				json_integer(json_integer_value(v) -
					     (p ? json_integer_value(p) : 0)));
	}
	return o;
}

static json_t *latencies(struct fc_api *a)
{
	json_t *o = json_object();

	for (unsigned i = 0; i < FC_L_N; i++)
		json_object_set_new(o, latency_names[i],
				    json_integer((json_int_t)a->lat_us[i]));
	return o;
}

int fc_metrics_flush(struct fc_api *a, struct err *e)
{
	struct timespec ts;
	json_t *j, *stats = NULL, *cum;
	char *text;
	ssize_t n;
	int ret = 0;

	if (a->metrics_fd < 0)
		return err_set(e, -EINVAL,
			       "FlushMetrics: no metrics path (PUT /metrics "
			       "first)");
	clock_gettime(CLOCK_REALTIME, &ts);
	if (a->phase == FC_BOOTED && a->vm)
		ret = vm_ctl_ops.stats(a->vm, &stats, e);
	if (ret)
		return ret;
	cum = fc_counters(a, stats);
	j = delta(cum, a->metrics_prev);
	json_decref(a->metrics_prev);
	a->metrics_prev = cum;
	json_object_set_new(j, "utc_timestamp_ms",
			    json_integer((json_int_t)ts.tv_sec * 1000 +
					 ts.tv_nsec / 1000000));
	json_object_set_new(j, "latencies_us", latencies(a));
	json_object_set_new(
		j, "khyve",
		json_pack("{s:s, s:o*}", "state",
			  a->phase == FC_BOOTED ? "started" : "not started",
			  "stats", stats));
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (!text)
		return err_set(e, -ENOMEM, "out of memory");
	n = dprintf(a->metrics_fd, "%s\n", text);
	free(text);
	if (n < 0)
		return err_sys(e, "writing the metrics to %s", a->metrics_path);
	return 0;
}

static unsigned period_ms(void)
{
	/* For tests only (docs/firecracker-api.md): a shorter period. */
	const char *s = getenv("KHYVE_FC_METRICS_PERIOD_MS");
	unsigned long v = s && *s ? strtoul(s, NULL, 10) : 0;

	return v >= 10 && v <= FC_METRICS_PERIOD_MS ? (unsigned)v
						    : FC_METRICS_PERIOD_MS;
}

static void *metrics_thread(void *opaque)
{
	struct fc_api *a = opaque;
	unsigned ms = period_ms();
	struct timespec next;

	pthread_mutex_lock(&a->lock);
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!a->stopping) {
		struct err e = {0};

		next.tv_sec += ms / 1000;
		next.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		while (!a->stopping &&
		       pthread_cond_timedwait(&a->metrics_cond, &a->lock,
					      &next) != ETIMEDOUT)
			;
		if (!a->stopping && fc_metrics_flush(a, &e))
			log_warn("api: metrics: %s", err_msg(&e));
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int fc_metrics_start(struct fc_api *a, struct err *e)
{
	pthread_condattr_t ca;
	int ret;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	ret = pthread_cond_init(&a->metrics_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (ret)
		return err_set(e, -ret, "metrics: %s", strerror(ret));
	ret = pthread_create(&a->metrics_thread, NULL, metrics_thread, a);
	if (ret) {
		pthread_cond_destroy(&a->metrics_cond);
		return err_set(e, -ret, "metrics: cannot start a thread: %s",
			       strerror(ret));
	}
	a->metrics_thread_on = true;
	return 0;
}

void fc_metrics_stop(struct fc_api *a)
{
	if (!a->metrics_thread_on)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->metrics_cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->metrics_thread, NULL);
	pthread_cond_destroy(&a->metrics_cond);
	a->metrics_thread_on = false;
	json_decref(a->metrics_prev);
	a->metrics_prev = NULL;
}
