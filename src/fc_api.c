/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The Firecracker API's server: libmicrohttpd on a UNIX socket khyve
 * creates and hands it (MHD_OPTION_LISTEN_SOCKET), one internal polling
 * thread, so a slow client holds nobody up and requests run one at a
 * time. Bodies are gathered here (at most FC_BODY_MAX) and answered by
 * fc_route (fc_api_routes.c); the boot hand-off to main is here too.
 */
#include "fc_api.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "confine_seccomp.h"
#include "fc_api_int.h"
#include "log.h"

/* A client that sends nothing for this long is disconnected. */
#define FC_CONN_TIMEOUT_S 10

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One connection's request being received. */
struct fc_req {
	char *buf;
	size_t len;
	bool too_big;
	size_t declared; /* Content-Length, when there is one */
};

static enum MHD_Result send_reply(struct MHD_Connection *c,
				  const struct fc_reply *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text = r->body ? json_dumps(r->body, JSON_COMPACT) : NULL;

	if (r->body && !text)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(text ? strlen(text) : 0,
					       text ? text : (char *)"",
					       MHD_RESPMEM_MUST_COPY);
	free(text);
	if (!resp)
		return MHD_NO;
	if (r->body)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
					"application/json");
	ret = MHD_queue_response(c, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_fault(struct MHD_Connection *c, const char *msg)
{
	struct fc_reply r = {.status = 400,
			     .body = json_pack("{s:s}", "fault_message", msg)};
	enum MHD_Result ret = send_reply(c, &r);

	json_decref(r.body);
	return ret;
}

/* A new request: its state, or an early 400 if it declares a huge body. */
static enum MHD_Result req_begin(struct MHD_Connection *c, void **con_cls)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     "Content-Length");
	struct fc_req *q = calloc(1, sizeof(*q));
	char msg[128];

	if (!q)
		return MHD_NO;
	*con_cls = q;
	if (cl)
		q->declared = strtoull(cl, NULL, 10);
	if (q->declared > FC_BODY_MAX) {
		q->too_big = true;
		snprintf(msg, sizeof(msg),
			 "Request payload with size %zu is larger than the "
			 "limit of %d allowed by server.",
			 q->declared, FC_BODY_MAX);
		return send_fault(c, msg);
	}
	return MHD_YES;
}

static void req_append(struct fc_req *q, const char *data, size_t n)
{
	char *nb;

	if (q->too_big)
		return;
	if (q->len + n > FC_BODY_MAX) {
		q->too_big = true;
		return;
	}
	nb = realloc(q->buf, q->len + n + 1);
	if (!nb) {
		q->too_big = true;
		return;
	}
	memcpy(nb + q->len, data, n);
	q->len += n;
	nb[q->len] = 0;
	q->buf = nb;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *data,
				  size_t *data_size, void **con_cls)
{
	struct fc_api *a = cls;
	struct fc_req *q = *con_cls;
	struct fc_reply r = {0};
	enum MHD_Result ret;

	(void)version;
	/* libmicrohttpd's thread serves the API as the control thread does
	 * the control socket (snapshot/create, pause, ...): its role, from
	 * the first request on (no hook at the thread's start). */
	confine_seccomp_enter(CONFINE_ROLE_CONTROL);
	if (!q)
		return req_begin(c, con_cls);
	if (*data_size) {
		req_append(q, data, *data_size);
		*data_size = 0;
		return MHD_YES;
	}
	if (q->too_big)
		return send_fault(c, "Request payload is larger than the "
				     "limit of 1048576 allowed by server.");
	a->req_ns = mono_ns(); /* read by main only for a boot request */
	fc_route(a, method, url, q->buf, q->len, &r);
	ret = send_reply(c, &r);
	json_decref(r.body);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct fc_req *q = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (q) {
		free(q->buf);
		free(q);
		*con_cls = NULL;
	}
}

/*
 * The listening socket at @path (a stale socket file is replaced). It is
 * bound under a temporary name and renamed once listening, so a client
 * that waits for the file to appear (as orchestrators do) never finds it
 * refusing connections.
 */
static int listen_unix(const char *path, int *fd, struct err *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int n;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d.tmp", path,
		     (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return err_set(e, -ENAMETOOLONG, "--api-sock %s: path too long",
			       path);
	if (!lstat(path, &st) && !S_ISSOCK(st.st_mode))
		return err_set(e, -EEXIST,
			       "--api-sock %s: exists and is not a socket",
			       path);
	unlink(sa.sun_path);
	*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (*fd < 0)
		return err_sys(e, "--api-sock %s: socket", path);
	if (bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(*fd, 16) ||
	    rename(sa.sun_path, path)) {
		err_sys(e, "--api-sock %s", path);
		unlink(sa.sun_path);
		close(*fd);
		*fd = -1;
		return e ? e->code : -EIO;
	}
	return 0;
}

static int server_start(struct fc_api *a, struct err *e)
{
	int ret = listen_unix(a->path, &a->lfd, e);

	if (ret)
		return ret;
	a->mhd = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
		on_request, a, MHD_OPTION_LISTEN_SOCKET, a->lfd,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)FC_CONN_TIMEOUT_S,
		MHD_OPTION_END);
	if (!a->mhd) {
		unlink(a->path);
		close(a->lfd);
		a->lfd = -1;
		return err_set(e, -EIO,
			       "--api-sock %s: cannot start the "
			       "HTTP server",
			       a->path);
	}
	return 0;
}

int fc_api_start(struct fc_api **out, const struct vm_config *base,
		 struct err *e)
{
	struct fc_api *a = calloc(1, sizeof(*a));
	int ret = -ENOMEM;

	if (!a)
		return err_set(e, -ENOMEM, "out of memory");
	a->lfd = -1;
	a->metrics_fd = -1;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	a->boot_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	a->path = strdup(base->api_sock);
	if (a->boot_fd < 0 || !a->path || config_copy(&a->cfg, base)) {
		err_set(e, -ENOMEM, "out of memory");
		goto fail;
	}
	/* Firecracker's defaults: 1 vCPU, 128 MiB. */
	a->cfg.mem_size = 128ULL << 20;
	ret = server_start(a, e);
	if (ret)
		goto fail;
	*out = a;
	return 0;
fail:
	config_free(&a->cfg);
	if (a->boot_fd >= 0)
		close(a->boot_fd);
	free(a->path);
	free(a);
	return ret;
}

int fc_boot_request(struct fc_api *a, struct err *e)
{
	uint64_t one = 1;

	a->phase = FC_BOOTING;
	a->req_done = false;
	if (write(a->boot_fd, &one, sizeof(one)) != sizeof(one)) {
		/* cannot happen: the counter is far from its maximum */
	}
	while (!a->req_done)
		pthread_cond_wait(&a->cond, &a->lock);
	if (!a->req_ret) {
		a->phase = FC_BOOTED;
		return 0;
	}
	a->phase = FC_PREBOOT;
	return err_set(e, a->req_ret, "%s", err_msg(&a->req_err));
}

/* Block until @a has a boot request or a signal of @sigs is pending. */
static int wait_request(struct fc_api *a, const sigset_t *sigs)
{
	int sfd = signalfd(-1, sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	struct pollfd p[2] = {{.fd = a->boot_fd, .events = POLLIN},
			      {.fd = sfd, .events = POLLIN}};
	uint64_t v;
	int ret = 0;

	for (;;) {
		if (poll(p, sfd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (p[0].revents && read(a->boot_fd, &v, sizeof(v)) > 0)
			break;
		if (sfd >= 0 && p[1].revents) {
			ret = -EINTR;
			break;
		}
	}
	if (sfd >= 0)
		close(sfd);
	return ret;
}

int fc_api_wait_boot(struct fc_api *a, const sigset_t *sigs,
		     struct vm_config *cfg, bool *paused)
{
	int ret = wait_request(a, sigs);

	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	*cfg = a->req;
	memset(&a->req, 0, sizeof(a->req));
	*paused = a->req_paused;
	/* What the API adds before the VM path: -v shows it. */
	log_info("api: %s request handed to main %.3f ms after it arrived",
		 cfg->restore ? "snapshot/load" : "InstanceStart",
		 (double)(mono_ns() - a->req_ns) / 1e6);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void fc_api_booted(struct fc_api *a, struct vm *vm, int ret,
		   const struct err *e)
{
	pthread_mutex_lock(&a->lock);
	a->vm = ret ? NULL : vm;
	a->req_ret = ret;
	if (ret)
		err_set(&a->req_err, ret, "%s",
			e && e->msg[0] ? e->msg : strerror(-ret));
	a->req_done = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

void fc_api_detach(struct fc_api *a)
{
	pthread_mutex_lock(&a->lock);
	a->vm = NULL;
	a->phase = FC_GONE;
	pthread_mutex_unlock(&a->lock);
}

void fc_api_stop(struct fc_api *a)
{
	if (!a)
		return;
	if (a->mhd)
		MHD_stop_daemon(a->mhd);
	fc_metrics_stop(a);
	if (a->lfd >= 0)
		close(a->lfd);
	unlink(a->path);
	config_free(&a->cfg);
	config_free(&a->req);
	close(a->boot_fd);
	if (a->metrics_fd >= 0)
		close(a->metrics_fd);
	free(a->metrics_path);
	json_decref(a->logger);
	json_decref(a->metrics_prev);
	free(a->path);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a);
}
