/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Control plane: the server runs in-process with a fake VM (a small
 * running/paused state machine) in a temporary run directory; clients
 * are plain sockets, the client library, and the khyvectl binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common.h"
#include "ctl.h"
#include "ctl_client.h"
#include "unit.h"

/* ---- fake VM ---- */

struct tvm {
	pthread_mutex_t lock;
	bool paused, off;
	int pauses, resumes, resets, poweroffs, checkpoints;
	bool last_force;
	char last_file[PATH_MAX];
	struct checkpoint_opts last_ckpt; /* .file not kept */
};

static struct tvm vm1 = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int t_status(void *opaque, json_t **reply, struct err *e)
{
	struct tvm *v = opaque;

	pthread_mutex_lock(&v->lock);
	*reply = json_pack("{s:s, s:i, s:i}", "state",
			   v->off      ? "off"
			   : v->paused ? "paused"
				       : "running",
			   "vcpus", 2, "pauses", v->pauses);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int t_pause(void *opaque, struct err *e)
{
	struct tvm *v = opaque;
	int rc = 0;

	pthread_mutex_lock(&v->lock);
	if (v->paused) {
		rc = err_set(e, -EALREADY, "already paused");
	} else {
		v->paused = true;
		v->pauses++;
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

static int t_resume(void *opaque, struct err *e)
{
	struct tvm *v = opaque;
	int rc = 0;

	pthread_mutex_lock(&v->lock);
	if (!v->paused) {
		rc = err_set(e, -EALREADY, "not paused");
	} else {
		v->paused = false;
		v->resumes++;
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

static int t_poweroff(void *opaque, bool force, struct err *e)
{
	struct tvm *v = opaque;

	pthread_mutex_lock(&v->lock);
	v->poweroffs++;
	v->last_force = force;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int t_reset(void *opaque, struct err *e)
{
	struct tvm *v = opaque;

	pthread_mutex_lock(&v->lock);
	v->resets++;
	pthread_mutex_unlock(&v->lock);
	/* no message: the server must fall back to strerror */
	return 0;
}

static int t_regs(void *opaque, int vcpu, bool msrs, json_t **reply,
		  struct err *e)
{
	struct tvm *v = opaque;
	bool paused;

	pthread_mutex_lock(&v->lock);
	paused = v->paused;
	pthread_mutex_unlock(&v->lock);
	if (!paused)
		return err_set(e, -EBUSY, "pause first");
	if (vcpu >= 2)
		return err_set(e, -EINVAL, "no vCPU %d", vcpu);
	*reply = json_pack("{s:i, s:{s:I, s:I}}", "vcpu", vcpu, "regs", "rip",
			   (json_int_t)(0xfff0 + vcpu), "rax", (json_int_t)-1);
	if (msrs)
		json_object_set_new(
			*reply, "msrs",
			json_pack("{s:I}", "0xc0000080", (json_int_t)0x500));
	return 0;
}

static int t_stats(void *opaque, json_t **reply, struct err *e)
{
	*reply = json_pack("{s:i, s:{s:i}}", "exits", 42, "uart", "tx", 7);
	return 0;
}

/*
 * Set by /progress: its first two progress calls were 100 ms or more
 * apart (the test was descheduled between them), so the second may have
 * been sent. Within 100 ms it must have been dropped.
 */
static bool progress_pair_late;

static int t_checkpoint(void *opaque, const struct checkpoint_opts *o,
			json_t **reply, struct err *e)
{
	const char *f = o->file;
	struct tvm *v = opaque;

	if (!strcmp(f, "/fail"))
		return err_set(e, -ENOSPC, "disk full");
	if (!strcmp(f, "/silent"))
		return -EIO;
	if (!strcmp(f, "/guest-state")) {
		/* what the snapshot engine says about a device state */
		return err_set(e, -ERANGE,
			       "section 'virtio_pci' #3: field "
			       "'device_feature_select': value 7 exceeds "
			       "maximum 1");
	}
	if (!strcmp(f, "/einval"))
		return -EINVAL;
	if (!strcmp(f, "/progress")) {
		struct timespec a, b;

		/* the second comes within 100 ms: dropped */
		clock_gettime(CLOCK_MONOTONIC, &a);
		ctl_progress(1, 4);
		ctl_progress(2, 4);
		clock_gettime(CLOCK_MONOTONIC, &b);
		__atomic_store_n(&progress_pair_late,
				 (b.tv_sec - a.tv_sec) * 1000000000LL +
						 (b.tv_nsec - a.tv_nsec) >=
					 100000000LL,
				 __ATOMIC_RELEASE);
		/* at least 100 ms after either: sent */
		usleep(120 * 1000);
		ctl_progress(4, 4);
	}
	pthread_mutex_lock(&v->lock);
	v->checkpoints++;
	snprintf(v->last_file, sizeof(v->last_file), "%s", f);
	v->last_ckpt = *o;
	v->last_ckpt.file = NULL;
	if (o->suspend)
		v->off = true;
	pthread_mutex_unlock(&v->lock);
	*reply = json_pack("{s:s, s:i}", "file", f, "bytes", 4096);
	return 0;
}

static const struct ctl_ops t_ops = {
	.status = t_status,
	.pause = t_pause,
	.resume = t_resume,
	.poweroff = t_poweroff,
	.reset = t_reset,
	.regs = t_regs,
	.stats = t_stats,
	.checkpoint = t_checkpoint,
	/* migrate left NULL: must answer not_implemented */
};

static char tmpdir[PATH_MAX], rundir[PATH_MAX + 8], sock1[PATH_MAX + 32];
static struct ctl_server *srv1;

/* ---- raw socket client ---- */

struct tc {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static int connect_path(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 10};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	/* A hung server fails the test instead of hanging it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static struct tc *tc_open(const char *path)
{
	struct tc *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = connect_path(path);
	if (c->fd < 0) {
		free(c);
		return NULL;
	}
	return c;
}

static void tc_close(struct tc *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

/* Next line parsed; NULL on EOF, error or timeout. */
static json_t *tc_line(struct tc *c)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		ssize_t n;

		if (nl) {
			size_t ll = (size_t)(nl - c->buf);
			json_t *j = json_loadb(c->buf, ll, 0, NULL);

			memmove(c->buf, nl + 1, c->len - ll - 1);
			c->len -= ll + 1;
			return j;
		}
		if (c->len == sizeof(c->buf))
			return NULL;
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

/* True if the server closed the connection (EOF) with nothing more. */
static bool tc_eof(struct tc *c)
{
	char b;

	return c->len == 0 && recv(c->fd, &b, 1, 0) <= 0;
}

static bool tc_send(struct tc *c, const char *s)
{
	size_t len = strlen(s);

	return send(c->fd, s, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Send one request line and read one reply. */
static json_t *tc_req(struct tc *c, const char *line)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s\n", line);
	if (!tc_send(c, buf))
		return NULL;
	return tc_line(c);
}

static bool is_ok(const json_t *r)
{
	return json_is_true(json_object_get(r, "ok")) &&
	       json_is_object(json_object_get(r, "result")) &&
	       !json_object_get(r, "error");
}

static const char *err_code(const json_t *r)
{
	const json_t *e = json_object_get(r, "error");
	const char *code = json_string_value(json_object_get(e, "code"));

	/* every error carries a message too */
	if (code && !json_is_string(json_object_get(e, "message")))
		return "no-message";
	return code ? code : "";
}

static const char *reply_msg(const json_t *r)
{
	const json_t *e = json_object_get(r, "error");
	const char *m = json_string_value(json_object_get(e, "message"));

	return m ? m : "";
}

static const json_t *res_get(const json_t *r, const char *key)
{
	return json_object_get(json_object_get(r, "result"), key);
}

/* A client that read the greeting; checks it on the way. */
static struct tc *tc_ready(void)
{
	struct tc *c = tc_open(sock1);
	json_t *g;

	if (!c)
		return NULL;
	g = tc_line(c);
	if (!json_is_object(json_object_get(g, "khyve"))) {
		json_decref(g);
		tc_close(c);
		return NULL;
	}
	json_decref(g);
	return c;
}

static void vm_reset_state(void)
{
	pthread_mutex_lock(&vm1.lock);
	vm1.paused = vm1.off = false;
	pthread_mutex_unlock(&vm1.lock);
}

/* ---- tests ---- */

static void test_names(void)
{
	char n64[65], n65[66];

	memset(n64, 'a', 64);
	n64[64] = '\0';
	memset(n65, 'a', 65);
	n65[65] = '\0';
	CHECK(ctl_vmname_valid("vm1"));
	CHECK(ctl_vmname_valid("a.b_c-D9"));
	CHECK(ctl_vmname_valid(n64));
	CHECK(!ctl_vmname_valid(n65));
	CHECK(!ctl_vmname_valid(""));
	CHECK(!ctl_vmname_valid(".hidden"));
	CHECK(!ctl_vmname_valid("a/b"));
	CHECK(!ctl_vmname_valid("a b"));
	CHECK(!ctl_vmname_valid(".."));
	CHECK(!ctl_vmname_valid(NULL));

	setenv("KHYVE_RUNDIR", "/tmp/elsewhere", 1);
	CHECK(!strcmp(ctl_default_rundir(), "/tmp/elsewhere"));
	unsetenv("KHYVE_RUNDIR");
	CHECK(!strcmp(ctl_default_rundir(), "/run/khyve"));

	CHECK_EQ(ctl_errno_code(-EBUSY)[0], 'i');
	CHECK(!strcmp(ctl_errno_code(-EINVAL), "bad_request"));
	CHECK(!strcmp(ctl_errno_code(-ENOSYS), "not_implemented"));
	CHECK(!strcmp(ctl_errno_code(-EACCES), "permission_denied"));
	CHECK(!strcmp(ctl_errno_code(-EIO), "failed"));
}

/* A server for @vmname in @dir with the default limits. */
static int start_server(struct ctl_server **s, const char *dir,
			const char *vmname, const struct ctl_ops *ops,
			void *opaque, struct err *e)
{
	struct ctl_params p = {.rundir = dir, .vmname = vmname};

	return ctl_server_start(s, &p, ops, opaque, e);
}

static void test_start_invalid(void)
{
	struct ctl_server *s = NULL;
	struct err err = {0};

	CHECK_EQ(start_server(&s, rundir, ".x", &t_ops, &vm1, &err), -EINVAL);
	CHECK(s == NULL);
	CHECK(strstr(err.msg, "invalid VM name") != NULL);
	CHECK_EQ(start_server(&s, rundir, "a/b", &t_ops, &vm1, &err), -EINVAL);
}

static void test_files_and_modes(void)
{
	char lock[PATH_MAX + 32], buf[32] = "";
	struct stat st;
	int fd;

	CHECK(stat(rundir, &st) == 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0700);
	CHECK(lstat(sock1, &st) == 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK(!strcmp(ctl_server_socket_path(srv1), sock1));
	snprintf(lock, sizeof(lock), "%s/vm1.lock", rundir);
	fd = open(lock, O_RDONLY);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(read(fd, buf, sizeof(buf) - 1) > 0);
		CHECK_EQ(strtol(buf, NULL, 10), getpid());
		close(fd);
	}
}

static void test_greeting_hello(void)
{
	struct tc *c = tc_open(sock1);
	json_t *g, *r;
	const json_t *k;

	CHECK(c != NULL);
	if (!c)
		return;
	g = tc_line(c);
	k = json_object_get(g, "khyve");
	CHECK(json_is_object(k));
	CHECK_EQ(json_integer_value(json_object_get(k, "protocol")), 1);
	CHECK(!strcmp(json_string_value(json_object_get(k, "vm")), "vm1"));
	CHECK(!strcmp(json_string_value(json_object_get(k, "version")),
		      KHYVE_VERSION));
	CHECK_EQ(json_integer_value(json_object_get(k, "pid")), getpid());
	json_decref(g);

	r = tc_req(c, "{\"id\":1,\"cmd\":\"hello\",\"args\":{\"protocol\":1}}");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 1);
	CHECK_EQ(json_integer_value(res_get(r, "protocol")), 1);
	json_decref(r);
	r = tc_req(c, "{\"id\":2,\"cmd\":\"hello\",\"args\":{\"protocol\":2}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "protocol 2") != NULL);
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 2);
	json_decref(r);
	r = tc_req(c, "{\"id\":3,\"cmd\":\"hello\"}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	tc_close(c);
}

static void test_commands(void)
{
	struct tc *c = tc_ready();
	const json_t *cmds, *e;
	int pauses, resets, pos;
	size_t i;
	json_t *r;

	CHECK(c != NULL);
	if (!c)
		return;
	vm_reset_state();
	pauses = vm1.pauses;
	resets = vm1.resets;
	pos = vm1.poweroffs;

	/* ids of any type come back verbatim; no id gives null */
	r = tc_req(c, "{\"id\":\"abc\",\"cmd\":\"status\"}");
	CHECK(is_ok(r));
	CHECK(!strcmp(json_string_value(json_object_get(r, "id")), "abc"));
	CHECK(!strcmp(json_string_value(res_get(r, "state")), "running"));
	CHECK(!strcmp(json_string_value(res_get(r, "vm")), "vm1"));
	json_decref(r);
	r = tc_req(c, "{\"id\":{\"n\":[1,2]},\"cmd\":\"status\",\"args\":{}}");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(json_array_get(
			 json_object_get(json_object_get(r, "id"), "n"), 1)),
		 2);
	json_decref(r);
	r = tc_req(c, "{\"cmd\":\"status\",\"args\":null}");
	CHECK(is_ok(r));
	CHECK(json_is_null(json_object_get(r, "id")));
	json_decref(r);

	/* regs needs a paused VM, which the fake VM enforces */
	r = tc_req(c, "{\"id\":4,\"cmd\":\"regs\"}");
	CHECK(!strcmp(err_code(r), "invalid_state"));
	CHECK(!strcmp(reply_msg(r), "pause first"));
	json_decref(r);
	r = tc_req(c, "{\"id\":5,\"cmd\":\"pause\"}");
	CHECK(is_ok(r));
	CHECK_EQ(json_object_size(json_object_get(r, "result")), 0);
	json_decref(r);
	CHECK_EQ(vm1.pauses, pauses + 1);
	r = tc_req(c, "{\"id\":6,\"cmd\":\"pause\"}");
	CHECK(!strcmp(err_code(r), "invalid_state"));
	CHECK(!strcmp(reply_msg(r), "already paused"));
	json_decref(r);
	CHECK_EQ(vm1.pauses, pauses + 1);
	r = tc_req(c, "{\"id\":7,\"cmd\":\"regs\"}");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(res_get(r, "vcpu")), 0);
	CHECK_EQ(json_integer_value(json_object_get(res_get(r, "regs"), "rip")),
		 0xfff0);
	CHECK(res_get(r, "msrs") == NULL);
	json_decref(r);
	r = tc_req(c, "{\"id\":8,\"cmd\":\"regs\",\"args\":{\"vcpu\":1,"
		      "\"msrs\":true}}");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(json_object_get(res_get(r, "regs"), "rip")),
		 0xfff1);
	CHECK(json_is_object(res_get(r, "msrs")));
	json_decref(r);
	r = tc_req(c, "{\"id\":9,\"cmd\":\"regs\",\"args\":{\"vcpu\":7}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(!strcmp(reply_msg(r), "no vCPU 7"));
	json_decref(r);
	r = tc_req(c, "{\"id\":10,\"cmd\":\"regs\",\"args\":{\"vcpu\":-1}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":11,\"cmd\":\"regs\",\"args\":{\"msrs\":1}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":12,\"cmd\":\"status\"}");
	CHECK(!strcmp(json_string_value(res_get(r, "state")), "paused"));
	json_decref(r);
	r = tc_req(c, "{\"id\":13,\"cmd\":\"resume\"}");
	CHECK(is_ok(r));
	json_decref(r);
	r = tc_req(c, "{\"id\":14,\"cmd\":\"resume\"}");
	CHECK(!strcmp(err_code(r), "invalid_state"));
	json_decref(r);

	r = tc_req(c, "{\"id\":15,\"cmd\":\"stats\"}");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(res_get(r, "exits")), 42);
	json_decref(r);

	r = tc_req(c, "{\"id\":16,\"cmd\":\"reset\"}");
	CHECK(is_ok(r));
	json_decref(r);
	CHECK_EQ(vm1.resets, resets + 1);
	r = tc_req(c, "{\"id\":17,\"cmd\":\"poweroff\",\"args\":{\"force\":"
		      "true}}");
	CHECK(is_ok(r));
	json_decref(r);
	CHECK_EQ(vm1.poweroffs, pos + 1);
	CHECK(vm1.last_force);
	r = tc_req(c, "{\"id\":18,\"cmd\":\"poweroff\"}");
	CHECK(is_ok(r));
	json_decref(r);
	CHECK(!vm1.last_force);
	r = tc_req(c, "{\"id\":19,\"cmd\":\"poweroff\",\"args\":{\"force\":"
		      "\"yes\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	CHECK_EQ(vm1.poweroffs, pos + 2);

	r = tc_req(c, "{\"id\":20,\"cmd\":\"checkpoint\"}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	/* every key and type is checked before the VMM sees the request */
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/a.snap\",\"compress\":\"zstd\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'compress'") != NULL);
	json_decref(r);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"suspend\",\"args\":{\"file\":"
		      "\"/tmp/a.snap\",\"fsync\":\"no\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'fsync'") != NULL);
	json_decref(r);
	CHECK(!vm1.off);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/a.snap\",\"live\":0}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'live'") != NULL);
	json_decref(r);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/a.snap\",\"fsync\":null}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/a.snap\",\"incremental\":\"yes\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'incremental'") != NULL);
	json_decref(r);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/b.snap\",\"incremental\":true}}");
	CHECK(is_ok(r));
	json_decref(r);
	CHECK(vm1.last_ckpt.incremental);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/a.snap\",\"live\":false,\"fsync\":false,"
		      "\"progress\":false}}");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(res_get(r, "bytes")), 4096);
	json_decref(r);
	CHECK(!strcmp(vm1.last_file, "/tmp/a.snap"));
	/* parsed at the edge: what was given, typed */
	CHECK(!vm1.last_ckpt.live && !vm1.last_ckpt.fsync);
	CHECK(!vm1.last_ckpt.progress && !vm1.last_ckpt.suspend);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/tmp/c.snap\",\"progress\":true}}");
	CHECK(is_ok(r));
	json_decref(r);
	/* and the defaults: live, fsync; progress goes to ctl_progress */
	CHECK(vm1.last_ckpt.live && vm1.last_ckpt.fsync);
	CHECK(!vm1.last_ckpt.incremental);
	CHECK(vm1.last_ckpt.progress == ctl_progress);
	CHECK(!vm1.last_ckpt.suspend);
	/* an error from the state being saved is not the client's fault */
	r = tc_req(c, "{\"id\":21,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/guest-state\"}}");
	CHECK(!strcmp(err_code(r), "failed"));
	CHECK(strstr(reply_msg(r), "internal error") != NULL);
	CHECK(strstr(reply_msg(r), "device_feature_select") != NULL);
	json_decref(r);
	r = tc_req(c, "{\"id\":21,\"cmd\":\"suspend\",\"args\":{\"file\":"
		      "\"/einval\"}}");
	CHECK(!strcmp(err_code(r), "failed"));
	CHECK(!strcmp(reply_msg(r), "internal error: Invalid argument"));
	json_decref(r);
	r = tc_req(c, "{\"id\":22,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/fail\"}}");
	CHECK(!strcmp(err_code(r), "failed"));
	CHECK(!strcmp(reply_msg(r), "disk full"));
	json_decref(r);
	r = tc_req(c, "{\"id\":23,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/silent\"}}");
	CHECK(!strcmp(err_code(r), "failed"));
	CHECK(!strcmp(reply_msg(r), strerror(EIO)));
	json_decref(r);
	r = tc_req(c, "{\"id\":24,\"cmd\":\"suspend\",\"args\":{\"file\":"
		      "\"/tmp/b.snap\"}}");
	CHECK(is_ok(r));
	json_decref(r);
	CHECK(vm1.off);
	CHECK(vm1.last_ckpt.suspend);
	vm_reset_state();

	r = tc_req(c,
		   "{\"id\":25,\"cmd\":\"migrate\",\"args\":{\"to\":\"x\"}}");
	CHECK(!strcmp(err_code(r), "not_implemented"));
	json_decref(r);
	/* Checked before the VMM is asked: a bad knob is a bad_request. */
	r = tc_req(c, "{\"id\":251,\"cmd\":\"migrate\",\"args\":{\"to\":"
		      "\"x\",\"on_deadline\":\"wait\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":252,\"cmd\":\"migrate\",\"args\":{\"to\":"
		      "\"x\",\"max_downtime_ms\":-1}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":253,\"cmd\":\"migrate\",\"args\":{}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);

	r = tc_req(c, "{\"id\":26,\"cmd\":\"help\"}");
	CHECK(is_ok(r));
	cmds = res_get(r, "commands");
	CHECK_EQ(json_array_size(cmds), 12);
	{
		static const char *const want[] = {
			"hello",  "help",	"status",  "pause",
			"resume", "poweroff",	"reset",   "regs",
			"stats",  "checkpoint", "suspend", "migrate"};
		unsigned found = 0, j;

		json_array_foreach(cmds, i, e) for (
			j = 0; j < ARRAY_SIZE(want);
			j++) if (!strcmp(json_string_value(json_object_get(e,
									   "nam"
									   "e")),
					 want[j])) found |= 1u << j;
		CHECK_EQ(found, 0xfff);
	}
	json_decref(r);

	/* malformed requests */
	r = tc_req(c, "{\"id\":27,\"cmd\":\"frobnicate\"}");
	CHECK(!strcmp(err_code(r), "unknown_command"));
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 27);
	json_decref(r);
	r = tc_req(c, "{\"id\":28}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":29,\"cmd\":5}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "[1,2,3]");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":30,\"cmd\":\"status\",\"args\":[1]}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	r = tc_req(c, "{\"id\":31,\"cmd\":\"pause\",\"args\":{\"bogus\":1}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "bogus") != NULL);
	json_decref(r);
	CHECK_EQ(vm1.paused, false);
	/* a misspelt "args" would drop the arguments: refused, named */
	r = tc_req(c, "{\"id\":32,\"cmd\":\"poweroff\",\"arg\":{\"force\":"
		      "true}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'arg'") != NULL);
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 32);
	json_decref(r);
	CHECK_EQ(vm1.poweroffs, pos + 2);
	r = tc_req(c, "{\"id\":33,\"cmd\":\"regs\",\"args\":{\"vcpu\":\"1\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'vcpu'") != NULL);
	json_decref(r);
	r = tc_req(c, "{\"id\":34,\"cmd\":\"poweroff\",\"args\":{\"force\":"
		      "1}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	CHECK(strstr(reply_msg(r), "'force'") != NULL);
	json_decref(r);
	tc_close(c);
}

static void test_parse_error(void)
{
	struct tc *c = tc_ready();
	json_t *r;

	CHECK(c != NULL);
	if (!c)
		return;
	r = tc_req(c, "{\"id\":1,\"cmd\":");
	CHECK(!strcmp(err_code(r), "parse_error"));
	CHECK(json_is_null(json_object_get(r, "id")));
	json_decref(r);
	r = tc_req(c, "\x01\xff garbage");
	CHECK(!strcmp(err_code(r), "parse_error"));
	json_decref(r);
	/* nesting deep enough to overflow a recursive parser's stack */
	{
		size_t n = 200000;
		char *deep = malloc(n + 2);

		CHECK(deep != NULL);
		if (deep) {
			memset(deep, '[', n);
			deep[n] = '\n';
			deep[n + 1] = '\0';
			CHECK(tc_send(c, deep));
			r = tc_line(c);
			CHECK(!strcmp(err_code(r), "parse_error"));
			json_decref(r);
			free(deep);
		}
	}
	/* blank lines are skipped, CRLF is accepted, connection still works */
	CHECK(tc_send(c, "\n  \n\r\n"));
	r = tc_req(c, "{\"id\":2,\"cmd\":\"status\"}\r");
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 2);
	json_decref(r);
	/* two requests in one write, answered in order */
	CHECK(tc_send(c, "{\"id\":3,\"cmd\":\"status\"}\n{\"id\":4,\"cmd\":"
			 "\"stats\"}\n"));
	r = tc_line(c);
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 3);
	json_decref(r);
	r = tc_line(c);
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 4);
	CHECK(res_get(r, "exits") != NULL);
	json_decref(r);
	tc_close(c);
}

struct flood {
	int fd;
	size_t bytes;
	size_t sent;
	int err;
};

static void *flood_thread(void *arg)
{
	struct flood *f = arg;
	char *buf = malloc(f->bytes);

	if (!buf) {
		f->err = ENOMEM;
		return NULL;
	}
	memset(buf, ' ', f->bytes);
	buf[0] = '"';
	while (f->sent < f->bytes) {
		ssize_t n = send(f->fd, buf + f->sent, f->bytes - f->sent,
				 MSG_NOSIGNAL);

		if (n < 0) {
			f->err = errno;
			break;
		}
		f->sent += (size_t)n;
	}
	free(buf);
	return NULL;
}

static void test_too_large(void)
{
	struct tc *big = tc_ready(), *other = tc_ready();
	struct flood f = {.bytes = 2 * 1024 * 1024};
	pthread_t t;
	json_t *r;

	CHECK(big && other);
	if (!big || !other)
		goto out;
	f.fd = big->fd;
	CHECK_EQ(pthread_create(&t, NULL, flood_thread, &f), 0);
	r = tc_line(big);
	CHECK(!strcmp(err_code(r), "too_large"));
	json_decref(r);
	CHECK(tc_eof(big));
	pthread_join(t, NULL);
	/* the server stopped reading: the 2 MiB never all went through */
	CHECK(f.sent < f.bytes);
	CHECK(f.err == EPIPE || f.err == ECONNRESET);
	r = tc_req(other, "{\"id\":1,\"cmd\":\"status\"}");
	CHECK(is_ok(r));
	json_decref(r);
out:
	tc_close(big);
	tc_close(other);
}

static void test_disconnects(void)
{
	struct tc *c;
	json_t *r;
	int i;

	/* half a request, then gone */
	c = tc_ready();
	CHECK(c && tc_send(c, "{\"id\":1,\"cmd\":\"sta"));
	tc_close(c);
	/* a request whose reply nobody reads */
	for (i = 0; i < 20; i++) {
		c = tc_ready();
		CHECK(c && tc_send(c, "{\"id\":1,\"cmd\":\"help\"}\n"));
		tc_close(c);
	}
	/* connect and vanish before the greeting is read */
	for (i = 0; i < 20; i++) {
		int fd = connect_path(sock1);

		CHECK(fd >= 0);
		close(fd);
	}
	/* a last request without newline is answered at EOF (socat) */
	c = tc_ready();
	CHECK(c && tc_send(c, "{\"id\":9,\"cmd\":\"status\"}"));
	if (c) {
		shutdown(c->fd, SHUT_WR);
		r = tc_line(c);
		CHECK(is_ok(r));
		CHECK_EQ(json_integer_value(json_object_get(r, "id")), 9);
		json_decref(r);
		CHECK(tc_eof(c));
	}
	tc_close(c);
	c = tc_ready();
	r = c ? tc_req(c, "{\"id\":2,\"cmd\":\"status\"}") : NULL;
	CHECK(is_ok(r));
	json_decref(r);
	tc_close(c);
}

/* Send status requests without reading, until @deadline_ms or @max bytes. */
static int flood_requests(int fd, int deadline_ms, size_t max, size_t *sent)
{
	static const char req[] = "{\"id\":1,\"cmd\":\"status\"}\n";
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
				    (t.tv_nsec - t0.tv_nsec) / 1000000 >
			    deadline_ms ||
		    *sent >= max)
			return 0;
		if (poll(&p, 1, 100) < 0)
			return -errno;
		n = send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN)
			return -errno;
		if (n > 0)
			*sent += (size_t)n;
	}
}

static void test_never_reads(void)
{
	struct ctl_params p = {
		.rundir = rundir, .vmname = "tiny", .max_output = 64 * 1024};
	char path[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	struct tc *lazy, *other;
	size_t sent = 0;
	json_t *r;
	int rc;

	/* default limits: a lazy reader stays connected, others are served */
	lazy = tc_ready();
	CHECK(lazy != NULL);
	if (lazy)
		CHECK_EQ(flood_requests(lazy->fd, 2000, 5000 * 25, &sent), 0);
	CHECK(sent > 0);
	other = tc_ready();
	r = other ? tc_req(other, "{\"id\":1,\"cmd\":\"status\"}") : NULL;
	CHECK(is_ok(r));
	json_decref(r);
	tc_close(other);
	tc_close(lazy);

	/* small output cap: the lazy reader gets dropped */
	CHECK_EQ(ctl_server_start(&s, &p, &t_ops, &vm1, &err), 0);
	if (!s)
		return;
	snprintf(path, sizeof(path), "%s/tiny.sock", rundir);
	lazy = tc_open(path);
	CHECK(lazy != NULL);
	sent = 0;
	rc = lazy ? flood_requests(lazy->fd, 10000, SIZE_MAX, &sent) : 0;
	CHECK(rc == -EPIPE || rc == -ECONNRESET);
	other = tc_open(path);
	if (other)
		json_decref(tc_line(other));
	r = other ? tc_req(other, "{\"id\":1,\"cmd\":\"status\"}") : NULL;
	CHECK(is_ok(r));
	json_decref(r);
	tc_close(other);
	tc_close(lazy);
	ctl_server_stop(s);
}

static void test_many_clients(void)
{
	struct tc *c[100];
	unsigned i, ok = 0;

	for (i = 0; i < ARRAY_SIZE(c); i++)
		c[i] = tc_ready();
	/* all requests first, so all 100 are in flight together */
	for (i = 0; i < ARRAY_SIZE(c); i++) {
		char line[64];

		snprintf(line, sizeof(line), "{\"id\":%u,\"cmd\":\"status\"}\n",
			 i);
		if (c[i])
			tc_send(c[i], line);
	}
	for (i = 0; i < ARRAY_SIZE(c); i++) {
		json_t *r = c[i] ? tc_line(c[i]) : NULL;

		if (is_ok(r) &&
		    json_integer_value(json_object_get(r, "id")) == i)
			ok++;
		json_decref(r);
		tc_close(c[i]);
	}
	CHECK_EQ(ok, 100);
}

static void test_client_limit(void)
{
	struct ctl_params p = {
		.rundir = rundir, .vmname = "small", .max_clients = 3};
	char path[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	struct tc *c[4];
	json_t *r;
	unsigned i;

	CHECK_EQ(ctl_server_start(&s, &p, &t_ops, &vm1, &err), 0);
	if (!s)
		return;
	snprintf(path, sizeof(path), "%s/small.sock", rundir);
	for (i = 0; i < 4; i++) {
		c[i] = tc_open(path);
		r = c[i] ? tc_line(c[i]) : NULL;
		if (i < 3) {
			CHECK(json_object_get(r, "khyve") != NULL);
		} else {
			CHECK(!strcmp(err_code(r), "failed"));
			CHECK(strstr(reply_msg(r), "too many clients") != NULL);
			CHECK(c[i] && tc_eof(c[i]));
		}
		json_decref(r);
	}
	/* a freed slot is reusable */
	tc_close(c[0]);
	tc_close(c[3]);
	usleep(50 * 1000);
	c[0] = tc_open(path);
	r = c[0] ? tc_line(c[0]) : NULL;
	CHECK(json_object_get(r, "khyve") != NULL);
	json_decref(r);
	for (i = 0; i < 3; i++)
		tc_close(c[i]);
	ctl_server_stop(s);
}

static void test_second_server(void)
{
	struct ctl_server *s = NULL;
	char want[64];
	struct err err = {0};
	struct tc *c;
	json_t *r;

	CHECK_EQ(start_server(&s, rundir, "vm1", &t_ops, &vm1, &err),
		 -EADDRINUSE);
	CHECK(s == NULL);
	CHECK(strstr(err.msg, "VM 'vm1' is already running") != NULL);
	snprintf(want, sizeof(want), "(pid %d, socket", (int)getpid());
	CHECK(strstr(err.msg, want) != NULL);
	CHECK(strstr(err.msg, sock1) != NULL);
	/* the refused start left the live socket alone */
	c = tc_ready();
	r = c ? tc_req(c, "{\"id\":1,\"cmd\":\"status\"}") : NULL;
	CHECK(is_ok(r));
	json_decref(r);
	tc_close(c);
}

static void test_stale_socket(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char path[PATH_MAX + 32], lock[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	struct stat st;
	int fd;

	/* what a crashed khyve leaves: a bound socket file, no listener */
	snprintf(path, sizeof(path), "%s/vm2.sock", rundir);
	snprintf(lock, sizeof(lock), "%s/vm2.lock", rundir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	CHECK(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	CHECK(listen(fd, 1) == 0);
	close(fd);
	CHECK_EQ(connect_path(path), -ECONNREFUSED);

	CHECK_EQ(start_server(&s, rundir, "vm2", &t_ops, &vm1, &err), 0);
	fd = connect_path(path);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	ctl_server_stop(s);
	/* stop removes socket and lock file */
	CHECK(lstat(path, &st) < 0 && errno == ENOENT);
	CHECK(lstat(lock, &st) < 0 && errno == ENOENT);

	/* a non-socket file in the way is never deleted */
	snprintf(path, sizeof(path), "%s/vm3.sock", rundir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	s = NULL;
	CHECK_EQ(start_server(&s, rundir, "vm3", &t_ops, &vm1, &err), -EEXIST);
	CHECK(strstr(err.msg, "not a socket") != NULL);
	CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
	unlink(path);
}

/* Another user's run directory, or one others may write to: refused. */
static void test_rundir_trust(void)
{
	char dir[PATH_MAX + 16], f[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/open-run", tmpdir);
	CHECK(mkdir(dir, 0700) == 0);
	CHECK(chmod(dir, 0777) == 0);
	CHECK_EQ(start_server(&s, dir, "t1", &t_ops, &vm1, &err), -EPERM);
	CHECK(s == NULL);
	CHECK(strstr(err.msg, dir) != NULL);
	CHECK(strstr(err.msg, "writable by group or others") != NULL);
	CHECK(chmod(dir, 0730) == 0);
	CHECK_EQ(start_server(&s, dir, "t1", &t_ops, &vm1, &err), -EPERM);
	/* nothing was created or followed in there */
	snprintf(f, sizeof(f), "%s/t1.lock", dir);
	CHECK(lstat(f, &st) < 0 && errno == ENOENT);
	snprintf(f, sizeof(f), "%s/t1.sock", dir);
	CHECK(lstat(f, &st) < 0 && errno == ENOENT);
	/* not writable by others: fine, and it keeps its mode */
	CHECK(chmod(dir, 0755) == 0);
	CHECK_EQ(start_server(&s, dir, "t1", &t_ops, &vm1, &err), 0);
	ctl_server_stop(s);
	s = NULL;
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0755);

	/* owned by another user */
	if (geteuid() == 0) {
		CHECK(chmod(dir, 0700) == 0);
		CHECK(chown(dir, 65534, 65534) == 0);
		CHECK_EQ(start_server(&s, dir, "t1", &t_ops, &vm1, &err),
			 -EPERM);
		CHECK(strstr(err.msg, "owned by uid 65534") != NULL);
		CHECK(strstr(err.msg, dir) != NULL);
	} else {
		CHECK_EQ(start_server(&s, "/", "t1", &t_ops, &vm1, &err),
			 -EPERM);
		CHECK(strstr(err.msg, "owned by uid 0") != NULL);
	}
	CHECK(s == NULL);
}

static bool file_is(const char *path, const char *want)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	return n >= 0 && !strcmp(buf, want);
}

/* A planted lock file is never followed, truncated or written. */
static void test_lock_file_trust(void)
{
	char dir[PATH_MAX + 16], lock[PATH_MAX + 32], victim[PATH_MAX + 32];
	char absent[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	struct stat st;
	int fd;

	snprintf(dir, sizeof(dir), "%s/lockrun", tmpdir);
	snprintf(lock, sizeof(lock), "%s/t2.lock", dir);
	snprintf(victim, sizeof(victim), "%s/victim", tmpdir);
	snprintf(absent, sizeof(absent), "%s/absent", tmpdir);
	CHECK(mkdir(dir, 0700) == 0);
	fd = open(victim, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "precious\n", 9) == 9);
	close(fd);

	CHECK(symlink(victim, lock) == 0);
	CHECK_EQ(start_server(&s, dir, "t2", &t_ops, &vm1, &err), -EPERM);
	CHECK(strstr(err.msg, "symbolic link") != NULL);
	CHECK(strstr(err.msg, lock) != NULL);
	CHECK(file_is(victim, "precious\n"));
	unlink(lock);
	/* a dangling one creates nothing */
	CHECK(symlink(absent, lock) == 0);
	CHECK_EQ(start_server(&s, dir, "t2", &t_ops, &vm1, &err), -EPERM);
	CHECK(lstat(absent, &st) < 0 && errno == ENOENT);
	unlink(lock);
	/* a hard link to someone's file */
	CHECK(link(victim, lock) == 0);
	CHECK_EQ(start_server(&s, dir, "t2", &t_ops, &vm1, &err), -EPERM);
	CHECK(strstr(err.msg, lock) != NULL);
	CHECK(file_is(victim, "precious\n"));
	unlink(lock);
	/* a FIFO neither blocks nor passes */
	CHECK(mkfifo(lock, 0600) == 0);
	CHECK_EQ(start_server(&s, dir, "t2", &t_ops, &vm1, &err), -EPERM);
	unlink(lock);
	CHECK(s == NULL);
	/* and the leftover of a crashed khyve is still taken over */
	fd = open(lock, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0 && write(fd, "999999\n", 7) == 7);
	close(fd);
	CHECK_EQ(start_server(&s, dir, "t2", &t_ops, &vm1, &err), 0);
	{
		char want[32];

		snprintf(want, sizeof(want), "%d\n", (int)getpid());
		CHECK(file_is(lock, want));
	}
	ctl_server_stop(s);
}

/* Idle connections are closed, so they cannot hold every slot. */
static void test_idle_clients(void)
{
	struct ctl_params p = {.rundir = rundir,
			       .vmname = "idle",
			       .max_clients = 2,
			       .idle_ms = 1000};
	char path[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	struct tc *busy, *idle, *c;
	json_t *r;

	CHECK_EQ(ctl_server_start(&s, &p, &t_ops, &vm1, &err), 0);
	if (!s)
		return;
	snprintf(path, sizeof(path), "%s/idle.sock", rundir);
	busy = tc_open(path);
	idle = tc_open(path);
	CHECK(busy && idle);
	if (!busy || !idle)
		goto out_stop;
	json_decref(tc_line(busy));
	json_decref(tc_line(idle));
	/* both slots taken */
	c = tc_open(path);
	r = c ? tc_line(c) : NULL;
	CHECK(strstr(reply_msg(r), "too many clients") != NULL);
	json_decref(r);
	tc_close(c);
	/* a client that keeps asking stays; the silent one goes */
	for (unsigned i = 0; i < 15; i++) {
		usleep(100 * 1000);
		r = tc_req(busy, "{\"id\":1,\"cmd\":\"status\"}");
		CHECK(is_ok(r));
		json_decref(r);
	}
	r = tc_line(idle);
	CHECK(!strcmp(err_code(r), "failed"));
	CHECK(strstr(reply_msg(r), "no request for 1000 ms") != NULL);
	CHECK(json_is_null(json_object_get(r, "id")));
	json_decref(r);
	CHECK(tc_eof(idle));
	/* its slot is free again */
	c = tc_open(path);
	r = c ? tc_line(c) : NULL;
	CHECK(json_object_get(r, "khyve") != NULL);
	json_decref(r);
	/* half a request is no request */
	CHECK(c && tc_send(c, "{\"id\":1,\"cmd\""));
	r = c ? tc_line(c) : NULL;
	CHECK(strstr(reply_msg(r), "no request") != NULL);
	json_decref(r);
	CHECK(c && tc_eof(c));
	tc_close(c);
	/* meanwhile the busy one fell silent for as long, and went too */
	r = tc_line(busy);
	CHECK(strstr(reply_msg(r), "no request") != NULL);
	json_decref(r);
	CHECK(tc_eof(busy));
	/*
	 * One that stops reading its replies is just as idle: after idle_ms
	 * and the 2 s linger its slot is free, and both slots serve again.
	 */
	{
		struct tc *lazy = tc_open(path), *c2;
		size_t sent = 0;

		CHECK(lazy != NULL);
		if (lazy)
			CHECK_EQ(flood_requests(lazy->fd, 500, 120 * 1024,
						&sent),
				 0);
		usleep(3500 * 1000);
		c = tc_open(path);
		c2 = tc_open(path);
		r = c ? tc_line(c) : NULL;
		CHECK(json_object_get(r, "khyve") != NULL);
		json_decref(r);
		r = c2 ? tc_line(c2) : NULL;
		CHECK(json_object_get(r, "khyve") != NULL);
		json_decref(r);
		tc_close(c);
		tc_close(c2);
		tc_close(lazy);
	}
out_stop:
	tc_close(busy);
	tc_close(idle);
	ctl_server_stop(s);
}

static void test_peercred(void)
{
	char dir[PATH_MAX + 16], path[PATH_MAX + 32];
	struct err err = {0};
	struct ctl_server *s = NULL;
	int status = -1;
	pid_t pid;

	if (geteuid() != 0) {
		SKIP("needs root");
		return;
	}
	/* reachable dir and socket, so only SO_PEERCRED can refuse */
	snprintf(dir, sizeof(dir), "%s/open", tmpdir);
	CHECK(mkdir(dir, 0755) == 0);
	chmod(tmpdir, 0755);
	CHECK_EQ(start_server(&s, dir, "pc", &t_ops, &vm1, &err), 0);
	if (!s)
		return;
	snprintf(path, sizeof(path), "%s/pc.sock", dir);
	CHECK(chmod(path, 0666) == 0);
	CHECK(ctl_vmname_valid("pc"));
	pid = fork();
	if (pid == 0) {
		char buf[512] = "";
		size_t len = 0;
		ssize_t n;
		int fd;

		if (setgid(65534) || setuid(65534))
			_exit(10);
		fd = connect_path(path);
		if (fd < 0)
			_exit(11);
		while ((n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
			len += (size_t)n;
		buf[len] = '\0';
		/* an error line, then EOF (n == 0), and no greeting */
		if (n == 0 && strstr(buf, "\"permission_denied\"") &&
		    !strstr(buf, "khyve"))
			_exit(0);
		_exit(12);
	}
	CHECK(pid > 0);
	if (pid > 0) {
		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status));
		CHECK_EQ(WEXITSTATUS(status), 0);
	}
	ctl_server_stop(s);
	chmod(tmpdir, 0700);
}

static void note_progress(void *opaque, uint64_t done, uint64_t total)
{
	unsigned *n = opaque;

	CHECK(done <= total && total == 4);
	(*n)++;
}

static void test_client_lib(void)
{
	struct err err = {0};
	char code[32] = "", want[PATH_MAX + 64];
	struct ctl_conn *c = NULL;
	json_t *res = NULL, *args;
	int rc;

	rc = ctl_client_open(&c, rundir, "nope", 2000, &err);
	CHECK_EQ(rc, -ENOENT);
	snprintf(want, sizeof(want), "no VM 'nope' (looked for %s/nope.sock)",
		 rundir);
	CHECK(!strcmp(err.msg, want));
	CHECK_EQ(ctl_client_open(&c, rundir, "../x", 2000, &err), -EINVAL);

	rc = ctl_client_open(&c, rundir, "vm1", 2000, &err);
	CHECK_EQ(rc, 0);
	if (rc)
		return;
	CHECK_EQ(json_integer_value(
			 json_object_get(ctl_client_greeting(c), "protocol")),
		 1);
	vm_reset_state();
	rc = ctl_client_call(c, "status", NULL, &res, code, sizeof(code), &err);
	CHECK_EQ(rc, 0);
	CHECK(!strcmp(json_string_value(json_object_get(res, "state")),
		      "running"));
	json_decref(res);
	args = json_pack("{s:i}", "vcpu", 1);
	rc = ctl_client_call(c, "regs", args, &res, code, sizeof(code), &err);
	CHECK_EQ(rc, -EPROTO);
	CHECK(res == NULL);
	CHECK(!strcmp(code, "invalid_state"));
	CHECK(!strcmp(err.msg, "pause first"));
	json_decref(args);
	rc = ctl_client_call(c, "nosuch", NULL, &res, code, sizeof(code), &err);
	CHECK_EQ(rc, -EPROTO);
	CHECK(!strcmp(code, "unknown_command"));
	ctl_client_close(c);

	/* stale socket: refused, told apart from a missing one */
	{
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		CHECK(snprintf(sun.sun_path, sizeof(sun.sun_path),
			       "%s/dead.sock",
			       rundir) < (int)sizeof(sun.sun_path));
		CHECK(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
		close(fd);
		CHECK_EQ(ctl_client_open(&c, rundir, "dead", 2000, &err),
			 -ECONNREFUSED);
		CHECK(strstr(err.msg, "stale socket") != NULL);
	}
}

/* Progress lines come before the reply, only to a client that asked. */
static void test_progress(void)
{
	struct tc *c = tc_ready();
	json_t *r, *pg;
	struct ctl_conn *cc = NULL;
	struct err err = {0};
	char code[32] = "";
	json_t *res = NULL, *args;
	unsigned nseen = 0;

	CHECK(c != NULL);
	if (!c)
		return;
	r = tc_req(c, "{\"id\":1,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/progress\",\"progress\":true}}");
	pg = json_object_get(r, "progress");
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 1);
	CHECK(!json_object_get(r, "ok") && !json_object_get(r, "result"));
	CHECK_EQ(json_integer_value(json_object_get(pg, "done")), 1);
	CHECK_EQ(json_integer_value(json_object_get(pg, "total")), 4);
	json_decref(r);
	r = tc_line(c);
	pg = json_object_get(r, "progress");
	if (json_integer_value(json_object_get(pg, "done")) == 2) {
		/* sent only if the pair was not within 100 ms */
		CHECK(__atomic_load_n(&progress_pair_late, __ATOMIC_ACQUIRE));
		json_decref(r);
		r = tc_line(c);
		pg = json_object_get(r, "progress");
	}
	CHECK_EQ(json_integer_value(json_object_get(pg, "done")), 4);
	json_decref(r);
	r = tc_line(c);
	CHECK(is_ok(r));
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);
	/* not asked (or false): the reply alone, as before */
	r = tc_req(c, "{\"id\":2,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/progress\"}}");
	CHECK(is_ok(r));
	json_decref(r);
	r = tc_req(c, "{\"id\":3,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/progress\",\"progress\":false}}");
	CHECK(is_ok(r));
	json_decref(r);
	r = tc_req(c, "{\"id\":4,\"cmd\":\"checkpoint\",\"args\":{\"file\":"
		      "\"/progress\",\"progress\":\"yes\"}}");
	CHECK(!strcmp(err_code(r), "bad_request"));
	json_decref(r);
	tc_close(c);
	/* outside a request: a no-op */
	ctl_progress(1, 2);

	/* the client library hands progress lines to its callback */
	CHECK_EQ(ctl_client_open(&cc, rundir, "vm1", 5000, &err), 0);
	if (!cc)
		return;
	args = json_pack("{s:s, s:b}", "file", "/progress", "progress", 1);
	CHECK_EQ(ctl_client_call_progress(cc, "checkpoint", args, note_progress,
					  &nseen, &res, code, sizeof(code),
					  &err),
		 0);
	CHECK(nseen == 2 || (nseen == 3 && __atomic_load_n(&progress_pair_late,
							   __ATOMIC_ACQUIRE)));
	CHECK_EQ(json_integer_value(json_object_get(res, "bytes")), 4096);
	json_decref(res);
	json_decref(args);
	ctl_client_close(cc);
	vm_reset_state();
}

/* ---- khyvectl end to end ---- */

static char khyvectl[PATH_MAX];
static bool find_khyvectl(void);

/*
 * khyvectl checkpoint with stderr on a terminal: the server's progress
 * lines are drawn there and erased; stdout carries the result as ever.
 */
static void test_khyvectl_progress(void)
{
	char tty[4096] = "", out[4096] = "";
	int m, s, po[2], status = -1;
	size_t lt = 0, lo = 0;
	pid_t pid;

	if (!find_khyvectl()) {
		SKIP("no khyvectl binary (run make first)");
		return;
	}
	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) {
		SKIP("no pty: %s", strerror(errno));
		return;
	}
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	CHECK(s >= 0 && !pipe2(po, O_CLOEXEC));
	pid = fork();
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(s, 2);
		setenv("KHYVE_PROGRESS_DELAY_MS", "0", 1);
		execl(khyvectl, khyvectl, "--rundir", rundir, "--json",
		      "checkpoint", "vm1", "/progress", (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(s);
	for (ssize_t n; (n = read(po[0], out + lo, sizeof(out) - 1 - lo)) > 0;)
		lo += (size_t)n;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the child is gone: read what it left on the terminal */
	fcntl(m, F_SETFL, O_NONBLOCK);
	for (ssize_t n; (n = read(m, tty + lt, sizeof(tty) - 1 - lt)) > 0;)
		lt += (size_t)n;
	close(m);
	close(po[0]);
	CHECK(!strncmp(tty, "\rsaving vm1: 0/0 MiB  25%", 25));
	CHECK(lt >= 4 && !memcmp(tty + lt - 4, "\r\033[K", 4));
	CHECK(strstr(out, "\"bytes\": 4096") != NULL);
	CHECK(!strstr(out, "\"done\"") && !strchr(out, '\r'));
	vm_reset_state();
}

static bool find_khyvectl(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *p;

	/* BUILD/tests/unit/test_ctl -> BUILD/khyvectl */
	if (n > 0) {
		self[n] = '\0';
		p = strstr(self, "/tests/unit/");
		if (p) {
			*p = '\0';
			if (snprintf(khyvectl, sizeof(khyvectl), "%s/khyvectl",
				     self) < (int)sizeof(khyvectl) &&
			    access(khyvectl, X_OK) == 0)
				return true;
		}
	}
	snprintf(khyvectl, sizeof(khyvectl), "build/khyvectl");
	return access(khyvectl, X_OK) == 0;
}

/* Run khyvectl with @argv (NULL-terminated, no argv[0]); capture output. */
static int run_ctl(char *out, size_t outlen, char *errout, size_t errlen,
		   const char *const *argv)
{
	const char *av[32];
	int po[2], pe[2], status;
	size_t i, lo = 0, le = 0;
	pid_t pid;

	av[0] = khyvectl;
	for (i = 0; argv[i] && i < ARRAY_SIZE(av) - 2; i++)
		av[i + 1] = argv[i];
	av[i + 1] = NULL;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		unsetenv("KHYVE_RUNDIR");
		execv(khyvectl, (char *const *)av);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	/* outputs are small: drain stdout, then stderr */
	for (;;) {
		ssize_t n = read(po[0], out + lo, outlen - 1 - lo);

		if (n <= 0)
			break;
		lo += (size_t)n;
	}
	for (;;) {
		ssize_t n = read(pe[0], errout + le, errlen - 1 - le);

		if (n <= 0)
			break;
		le += (size_t)n;
	}
	out[lo] = errout[le] = '\0';
	close(po[0]);
	close(pe[0]);
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void test_khyvectl(void)
{
	char out[8192], err[4096], want[PATH_MAX + 64], cwd[PATH_MAX];
	json_t *j;
	int rc;

	if (!find_khyvectl()) {
		SKIP("no khyvectl binary (run make first)");
		return;
	}
	vm_reset_state();
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "status", "vm1",
					   "--json", NULL});
	CHECK_EQ(rc, 0);
	j = json_loads(out, 0, NULL);
	CHECK(!strcmp(json_string_value(json_object_get(j, "state")),
		      "running"));
	json_decref(j);

	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "status", "vm1",
					   NULL});
	CHECK_EQ(rc, 0);
	CHECK(strstr(out, "state:  running\n") != NULL);
	CHECK(strstr(out, "vcpus:  2\n") != NULL);

	/* regs while running: error reply -> exit 1 with the reason */
	rc = run_ctl(
		out, sizeof(out), err, sizeof(err),
		(const char *const[]){"--rundir", rundir, "regs", "vm1", NULL});
	CHECK_EQ(rc, 1);
	CHECK(strstr(err, "pause first (invalid_state)") != NULL);

	/* bhyvectl style: pause, then rip of vCPU 1 */
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "--vm=vm1",
					   "--pause", "--get-rip", "--cpu=1",
					   NULL});
	CHECK_EQ(rc, 0);
	CHECK(strstr(out, "rip[1]\t0x000000000000fff1\n") != NULL);
	CHECK(vm1.paused);
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "regs", "vm1",
					   "--msrs", NULL});
	CHECK_EQ(rc, 0);
	CHECK(strstr(out, "regs.rax:        0xffffffffffffffff\n") != NULL);
	CHECK(strstr(out, "msrs.0xc0000080: 0x0000000000000500\n") != NULL);
	CHECK(strstr(out, "vcpu:            0\n") != NULL);

	/* a relative checkpoint path reaches the VMM made absolute */
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "snapshot",
					   "create", "vm1", "rel.snap", NULL});
	CHECK_EQ(rc, 0);
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	snprintf(want, sizeof(want), "%s/rel.snap", cwd);
	CHECK(!strcmp(vm1.last_file, want));
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "--vm=vm1",
					   "--resume", NULL});
	CHECK_EQ(rc, 0);
	CHECK(!vm1.paused);

	/* list: live VM with state, stale socket marked */
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "list", "--json",
					   NULL});
	CHECK_EQ(rc, 0);
	j = json_loads(out, 0, NULL);
	CHECK(json_is_array(j));
	{
		bool live = false, stale = false;
		size_t i;
		json_t *e;

		json_array_foreach(j, i, e)
		{
			const char *n =
				json_string_value(json_object_get(e, "vm"));
			const char *st =
				json_string_value(json_object_get(e, "state"));

			if (!strcmp(n, "vm1") && !strcmp(st, "running") &&
			    json_integer_value(json_object_get(e, "pid")) ==
				    getpid())
				live = true;
			if (!strcmp(n, "dead") && !strcmp(st, "stale"))
				stale = true;
		}
		CHECK(live);
		CHECK(stale);
	}
	json_decref(j);

	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "status", "nope",
					   NULL});
	CHECK_EQ(rc, 1);
	snprintf(want, sizeof(want), "no VM 'nope' (looked for %s/nope.sock)",
		 rundir);
	CHECK(strstr(err, want) != NULL);

	/* usage errors exit 2 */
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--rundir", rundir, "status", NULL});
	CHECK_EQ(rc, 2);
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"stats", "vm1", "--force", NULL});
	CHECK_EQ(rc, 2);
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--no-such-option", NULL});
	CHECK_EQ(rc, 2);
	/* offline commands fail cleanly on a missing file */
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"snapshot", "verify",
					   "/nonexistent/x.snap", NULL});
	CHECK_EQ(rc, 1);
	CHECK(strstr(err, "/nonexistent/x.snap") != NULL);
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"snapshot", "info", NULL});
	CHECK_EQ(rc, 2);
	rc = run_ctl(out, sizeof(out), err, sizeof(err),
		     (const char *const[]){"--version", NULL});
	CHECK_EQ(rc, 0);
	CHECK(strstr(out, KHYVE_VERSION) != NULL);
}

int main(void)
{
	struct err err = {0};
	int rc;

	/* a dropped client must not kill the test with SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/khyve-ctl-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	/* a run dir that does not exist yet: the server creates it */
	snprintf(rundir, sizeof(rundir), "%s/run", tmpdir);
	snprintf(sock1, sizeof(sock1), "%s/vm1.sock", rundir);
	RUN(test_names);
	RUN(test_start_invalid);
	rc = start_server(&srv1, rundir, "vm1", &t_ops, &vm1, &err);
	CHECK_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "server start: %s\n", err.msg);
		return unit_done();
	}
	RUN(test_files_and_modes);
	RUN(test_greeting_hello);
	RUN(test_commands);
	RUN(test_parse_error);
	RUN(test_too_large);
	RUN(test_disconnects);
	RUN(test_never_reads);
	RUN(test_many_clients);
	RUN(test_client_limit);
	RUN(test_second_server);
	RUN(test_stale_socket);
	RUN(test_rundir_trust);
	RUN(test_lock_file_trust);
	RUN(test_idle_clients);
	RUN(test_peercred);
	RUN(test_client_lib);
	RUN(test_progress);
	RUN(test_khyvectl_progress);
	RUN(test_khyvectl);
	ctl_server_stop(srv1);
	{
		struct stat st;

		CHECK(lstat(sock1, &st) < 0 && errno == ENOENT);
	}
	{
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
	return unit_done();
}
