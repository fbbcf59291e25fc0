/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Inside the Firecracker API: the server (fc_api.c) and the endpoints
 * (fc_api_routes.c) share this state, always under @lock.
 */
#ifndef KHYVE_FC_API_INT_H
#define KHYVE_FC_API_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

#define FC_MAX_DRIVES 16
#define FC_MAX_NETS   8
#define FC_ID_MAX     64
#define FC_BODY_MAX   (1024 * 1024) /* bigger bodies are refused */
/*
 * GET /version's firecracker_version: the version of Firecracker's API
 * description khyve follows (tests/integration/fc_openapi_excerpt.json).
 */
#define FC_API_VERSION "1.17.0-dev"
/* Firecracker writes its metrics every 60 s once they are configured. */
#define FC_METRICS_PERIOD_MS 60000

struct fc_drive {
	char id[FC_ID_MAX + 1];
	char path[400];
	char partuuid[64];
	char cache_type[16], io_engine[8]; /* as given, for GET /vm/config */
	bool root, ro;
};

struct fc_net {
	char id[FC_ID_MAX + 1];
	char tap[16];
	char mac[18];
};

/*
 * Firecracker's API request counters (its metrics' get_api_requests,
 * put_api_requests and patch_api_requests), one per endpoint khyve
 * knows; fc_api_metrics.c names them.
 */
enum fc_counter {
	FC_M_NONE,
	FC_M_GET_INFO,
	FC_M_GET_MACHINE,
	FC_M_GET_MMDS,
	FC_M_GET_VERSION,
	FC_M_PUT_ACTIONS,
	FC_M_PUT_BOOT,
	FC_M_PUT_DRIVE,
	FC_M_PUT_LOGGER,
	FC_M_PUT_MACHINE,
	FC_M_PUT_CPU,
	FC_M_PUT_METRICS,
	FC_M_PUT_NET,
	FC_M_PUT_MMDS,
	FC_M_PUT_VSOCK,
	FC_M_PUT_HOTPLUG,
	FC_M_PATCH_DRIVE,
	FC_M_PATCH_NET,
	FC_M_PATCH_MACHINE,
	FC_M_PATCH_MMDS,
	FC_M_NCOUNTERS,
};

/* Firecracker's latencies_us: the last duration of each, in us. */
enum fc_latency {
	FC_L_FULL_CREATE,
	FC_L_DIFF_CREATE,
	FC_L_LOAD,
	FC_L_PAUSE,
	FC_L_RESUME,
	FC_L_N,
};

/* A device the API built: its PCI slot, for the per-device metrics. */
struct fc_devmap {
	unsigned slot;
	char kind; /* 'b' drive, 'n' network interface, 'e' entropy */
	char id[FC_ID_MAX + 1];
};

enum fc_phase {
	FC_PREBOOT, /* configuring */
	FC_BOOTING, /* main is building the VM asked for */
	FC_BOOTED,  /* @vm runs or is paused */
	FC_GONE,    /* the VM stopped: post-boot calls are refused */
};

struct fc_api {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum fc_phase phase;
	/* Pre-boot: the command line's configuration, then the API's. */
	struct vm_config cfg;
	bool have_kernel; /* PUT /boot-source was made */
	bool configured;  /* any boot-specific resource: no snapshot/load */
	struct fc_drive drives[FC_MAX_DRIVES];
	unsigned ndrives;
	struct fc_net nets[FC_MAX_NETS];
	unsigned nnets;
	bool entropy;
	int metrics_fd; /* PUT /metrics: JSON lines go there; -1 */
	char *metrics_path;
	json_t *logger; /* PUT /logger's body as applied, or NULL */
	bool loaded;	/* the VM came from snapshot/load */
	struct fc_devmap devmap[FC_MAX_DRIVES + FC_MAX_NETS + 1];
	unsigned ndevmap;
	/* Metrics: request counters, latencies, the last line's values. */
	uint64_t req_count[FC_M_NCOUNTERS], req_fails[FC_M_NCOUNTERS];
	uint64_t lat_us[FC_L_N];
	json_t *metrics_prev;
	pthread_t metrics_thread;
	bool metrics_thread_on, stopping;
	pthread_cond_t metrics_cond;
	/* The boot request handed to main, and its outcome. */
	struct vm_config req;
	bool req_paused, req_done;
	int req_ret;
	struct err req_err;
	int boot_fd;	 /* eventfd: a request is waiting for main */
	uint64_t req_ns; /* when the boot request was received (monotonic) */
	struct vm *vm;
	/* The server. */
	struct MHD_Daemon *mhd;
	int lfd;
	char *path;
};

/* What a request gets: 204, 200 with @body, or 400 with @err's message. */
struct fc_reply {
	unsigned status;
	json_t *body;
};

/* Answer one complete request (@body: NULL or @len bytes). */
void fc_route(struct fc_api *a, const char *method, const char *url,
	      const char *body, size_t len, struct fc_reply *r);

/*
 * A JSON body's fields: every key known, every type right, the required
 * ones present; a field khyve does not support yet (@refused) is refused
 * by name when present.
 */
enum fc_type { FC_STR, FC_BOOL, FC_INT, FC_OBJ, FC_ARR };

struct fc_field {
	const char *name;
	enum fc_type type;
	bool required;
	const char *refused; /* NULL, or why khyve refuses it */
};

int fc_fields_check(const json_t *body, const struct fc_field *f, size_t n,
		    struct err *e);

/* fc_api_metrics.c (lock held): one metrics line now. */
int fc_metrics_flush(struct fc_api *a, struct err *e);
/* Start the periodic writer (lock held), stop it (lock not held). */
int fc_metrics_start(struct fc_api *a, struct err *e);
void fc_metrics_stop(struct fc_api *a);

/* fc_api_config.c (lock held): GET /vm/config's body. */
json_t *fc_vm_config(struct fc_api *a);
json_t *fc_machine_config(struct fc_api *a);

/*
 * Hand main the boot request in a->req (lock held) and wait for its
 * outcome: 0, or the error in @e and the API back to pre-boot.
 */
int fc_boot_request(struct fc_api *a, struct err *e);

#endif
