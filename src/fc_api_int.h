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

struct fc_drive {
	char id[FC_ID_MAX + 1];
	char path[400];
	char partuuid[64];
	bool root, ro;
};

struct fc_net {
	char id[FC_ID_MAX + 1];
	char tap[16];
	char mac[18];
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

/*
 * Hand main the boot request in a->req (lock held) and wait for its
 * outcome: 0, or the error in @e and the API back to pre-boot.
 */
int fc_boot_request(struct fc_api *a, struct err *e);

#endif
