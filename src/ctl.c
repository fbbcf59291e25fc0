/* SPDX-License-Identifier: BSD-2-Clause */
/* Control socket server: see ctl.h and docs/control-protocol.md. */
#include "ctl.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "confine_seccomp.h"
#include "log.h"

#define CTL_READ_CHUNK (64 * 1024)
/* Bytes read from one client per poll round, so a flood cannot starve. */
#define CTL_READ_BUDGET (256 * 1024)
/* How long a client being closed gets to take its last replies. */
#define CTL_LINGER_MS 2000

struct ctl_client {
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap;
	bool closing; /* no more input; close once output is flushed */
	struct timespec deadline;
	struct timespec idle; /* closed if no request came by then */
};

struct ctl_server {
	char name[CTL_VMNAME_MAX + 1];
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char lock_path[PATH_MAX];
	int listen_fd, lock_fd, stop_fd;
	dev_t sock_dev;
	ino_t sock_ino;
	pthread_t thread;
	bool thread_started;
	const struct ctl_ops *ops;
	void *opaque;
	unsigned max_clients, idle_ms;
	size_t max_line, max_output;
	struct ctl_client *clients; /* max_clients slots, fd -1 when free */
	struct pollfd *pfds;	    /* 2 + max_clients */
	unsigned *pfd_client;	    /* pfds index -> client slot */
};

const char *ctl_default_rundir(void)
{
	const char *d = getenv("KHYVE_RUNDIR");

	return d && *d ? d : CTL_DEFAULT_RUNDIR;
}

bool ctl_vmname_valid(const char *name)
{
	size_t i, n;

	if (!name)
		return false;
	n = strlen(name);
	if (n < 1 || n > CTL_VMNAME_MAX || name[0] == '.')
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

int ctl_socket_path(char *buf, size_t len, const char *rundir,
		    const char *vmname)
{
	struct sockaddr_un sun;
	int n;

	n = snprintf(buf, len, "%s/%s.sock", rundir, vmname);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

const char *ctl_errno_code(int rc)
{
	switch (-rc) {
	case EINVAL:
	case ERANGE:
		return "bad_request";
	case EBUSY:
	case EALREADY:
		return "invalid_state";
	case ENOSYS:
	case EOPNOTSUPP:
		return "not_implemented";
	case EPERM:
	case EACCES:
		return "permission_denied";
	default:
		return "failed";
	}
}

const char *ctl_server_socket_path(const struct ctl_server *s)
{
	return s->sock_path;
}

/* mkdir -p with 0700 for every directory we create. */
static int make_rundir(const char *dir, struct err *e)
{
	char path[PATH_MAX];
	struct stat st;
	size_t i, n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return err_set(e, -EINVAL, "invalid run directory '%s'", dir);
	memcpy(path, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) == 0) {
			/* umask must not widen or narrow what we promise */
			chmod(path, 0700);
		} else if (errno != EEXIST) {
			return err_sys(e, "cannot create %s", path);
		}
		path[i] = dir[i];
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return err_set(e, -ENOTDIR,
			       "run directory %s is not a directory", dir);
	/*
	 * Whoever else can write there can plant the lock file or the
	 * socket (a symlink to a file of ours, a socket of theirs).
	 */
	if (st.st_uid != geteuid())
		return err_set(e, -EPERM,
			       "run directory %s is owned by uid %u, not by us "
			       "(uid %u): refusing it (use another --rundir or "
			       "KHYVE_RUNDIR)",
			       dir, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return err_set(
			e, -EPERM,
			"run directory %s is writable by group or "
			"others (mode %04o): refusing it (chmod go-w %s)",
			dir, (unsigned)(st.st_mode & 07777), dir);
	return 0;
}

static pid_t read_lock_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return (pid_t)strtol(buf, NULL, 10);
}

#define LOCK_OPEN_FLAGS (O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

/*
 * Take RUNDIR/VMNAME.lock. The holder unlinks it on stop, so after
 * locking we check the path still names the file we locked; otherwise
 * we locked an orphan and must retry on the new file.
 */
static int take_lock(struct ctl_server *s, struct err *e)
{
	struct stat a, b;
	int fd, tries;

	for (tries = 0; tries < 16; tries++) {
		/* A planted symlink must not make us truncate its target. */
		fd = open(s->lock_path, LOCK_OPEN_FLAGS, 0600);
		if (fd < 0 && errno == ELOOP)
			return err_set(e, -EPERM,
				       "%s is a symbolic link: refusing to use "
				       "it as the lock file (remove it)",
				       s->lock_path);
		if (fd < 0)
			return err_sys(e, "cannot open %s", s->lock_path);
		if (fstat(fd, &a) == 0 && a.st_nlink == 0) {
			close(fd); /* its khyve just stopped and removed it */
			continue;
		}
		if (fstat(fd, &a) < 0 || !S_ISREG(a.st_mode) ||
		    a.st_uid != geteuid() || a.st_nlink != 1) {
			/* Not a file we made: it is truncated later. */
			close(fd);
			return err_set(e, -EPERM,
				       "%s is not a regular file of ours with "
				       "one link: refusing to use it as the "
				       "lock file (remove it)",
				       s->lock_path);
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int en = errno;
			pid_t pid = read_lock_pid(fd);

			close(fd);
			if (en == EWOULDBLOCK)
				return err_set(
					e, -EADDRINUSE,
					"VM '%s' is already running (pid "
					"%d, socket %s)",
					s->name, (int)pid, s->sock_path);
			return err_set(e, -en, "cannot lock %s: %s",
				       s->lock_path, strerror(en));
		}
		if (fstat(fd, &a) == 0 && stat(s->lock_path, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			s->lock_fd = fd;
			return 0;
		}
		close(fd);
	}
	return err_set(e, -EAGAIN, "cannot lock %s: keeps changing",
		       s->lock_path);
}

/* With the lock held: a socket file left behind is either live or stale. */
static int clear_stale_socket(struct ctl_server *s, struct err *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	if (lstat(s->sock_path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return err_sys(e, "cannot stat %s", s->sock_path);
	}
	if (!S_ISSOCK(st.st_mode))
		return err_set(e, -EEXIST, "%s exists and is not a socket",
			       s->sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_sys(e, "socket");
	memcpy(sun.sun_path, s->sock_path, strlen(s->sock_path) + 1);
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (rc == 0) {
		/* Someone serves it without holding the lock: leave it be. */
		return err_set(e, -EADDRINUSE,
			       "VM '%s' is already running (pid unknown, "
			       "socket %s)",
			       s->name, s->sock_path);
	}
	if (errno != ECONNREFUSED && errno != ENOENT)
		return err_sys(e, "cannot probe %s", s->sock_path);
	log_info("removing stale control socket %s", s->sock_path);
	if (unlink(s->sock_path) < 0 && errno != ENOENT)
		return err_sys(e, "cannot remove stale %s", s->sock_path);
	return 0;
}

static int open_listener(struct ctl_server *s, struct err *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_sys(e, "socket");
	memcpy(sun.sun_path, s->sock_path, strlen(s->sock_path) + 1);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = err_sys(e, "cannot bind %s", s->sock_path);
		goto fail;
	}
	/* Nobody can connect before listen(), so the chmod is not racy. */
	if (chmod(s->sock_path, 0600) < 0 || stat(s->sock_path, &st) < 0) {
		rc = err_sys(e, "cannot chmod %s", s->sock_path);
		goto fail_unlink;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	if (listen(fd, 128) < 0) {
		rc = err_sys(e, "listen %s", s->sock_path);
		goto fail_unlink;
	}
	s->listen_fd = fd;
	return 0;

fail_unlink:
	unlink(s->sock_path);
fail:
	close(fd);
	return rc;
}

/* ---- per-client buffers ---- */

static void client_free(struct ctl_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void client_close_later(struct ctl_client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	deadline_in(&c->deadline, CTL_LINGER_MS);
}

/* Queue one line; false if the client exceeded its output cap. */
static bool client_queue(struct ctl_server *s, struct ctl_client *c,
			 const char *line, size_t len)
{
	size_t pending = c->out_len - c->out_off;

	if (pending + len + 1 > s->max_output)
		return false;
	if (c->out_off && c->out_len + len + 1 > c->out_cap) {
		memmove(c->out, c->out + c->out_off, pending);
		c->out_len = pending;
		c->out_off = 0;
	}
	if (c->out_len + len + 1 > c->out_cap) {
		size_t cap = MAX(c->out_cap * 2, c->out_len + len + 1);
		char *p;

		cap = MAX(cap, (size_t)4096);
		p = realloc(c->out, cap);
		if (!p)
			return false;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out[c->out_len + len] = '\n';
	c->out_len += len + 1;
	return true;
}

/* Returns -errno when the client is gone. */
static int client_flush(struct ctl_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* ---- replies ---- */

static bool send_json(struct ctl_server *s, struct ctl_client *c, json_t *msg)
{
	char *txt = json_dumps(msg, JSON_COMPACT);
	bool ok;

	json_decref(msg);
	if (!txt) {
		/* The result held something JSON cannot carry (NaN, ...). */
		txt = strdup("{\"id\":null,\"error\":{\"code\":\"failed\","
			     "\"message\":\"reply could not be encoded\"}}");
		if (!txt)
			return false;
	}
	ok = client_queue(s, c, txt, strlen(txt));
	free(txt);
	return ok;
}

static json_t *error_reply(json_t *id, const char *code, const char *msg)
{
	return json_pack("{s:O?, s:{s:s, s:s}}", "id", id, "error", "code",
			 code, "message", msg);
}

static json_t *ok_reply(json_t *id, json_t *result)
{
	if (!result)
		result = json_object();
	return json_pack("{s:O?, s:b, s:o}", "id", id, "ok", 1, "result",
			 result);
}

static bool send_error(struct ctl_server *s, struct ctl_client *c, json_t *id,
		       const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static bool send_error(struct ctl_server *s, struct ctl_client *c, json_t *id,
		       const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return send_json(s, c, error_reply(id, code, msg));
}

/* ---- progress of a long command ---- */

#define CTL_PROGRESS_EVERY_MS 100
/* Progress is dropped, never queued, past this much unsent output. */
#define CTL_PROGRESS_MAX_PENDING (64 * 1024)

/*
 * The request being handled (server thread only): ctl_progress() needs
 * no handle, so the VMM's save code can call it from deep inside.
 */
static __thread struct {
	struct ctl_server *s;
	struct ctl_client *c;
	json_t *id;
	bool wanted; /* the request asked for progress lines */
	bool sent;
	struct timespec last;
} cur_req;

void ctl_progress(uint64_t done, uint64_t total)
{
	struct ctl_client *c = cur_req.c;
	struct timespec now;
	long ms;

	if (!cur_req.wanted || !c || c->closing)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - cur_req.last.tv_sec) * 1000 +
	     (now.tv_nsec - cur_req.last.tv_nsec) / 1000000;
	if ((cur_req.sent && ms < CTL_PROGRESS_EVERY_MS) ||
	    c->out_len - c->out_off > CTL_PROGRESS_MAX_PENDING)
		return;
	cur_req.sent = true;
	cur_req.last = now;
	/* Best effort: a client that does not read just misses lines. */
	if (send_json(cur_req.s, c,
		      json_pack("{s:O?, s:{s:I, s:I}}", "id", cur_req.id,
				"progress", "done", (json_int_t)done, "total",
				(json_int_t)total)))
		(void)client_flush(c);
}

/* ---- commands ---- */

struct ctl_req {
	struct ctl_server *s;
	json_t *args; /* always an object */
	json_t *result;
	char code[32]; /* error code; empty on success */
	char msg[512];
};

struct ctl_cmd {
	const char *name;
	const char *args; /* for help */
	const char *help;
	/* NULL-terminated list of accepted keys; NULL list: any */
	const char *const *keys;
	void (*fn)(struct ctl_req *r);
};

static void req_fail(struct ctl_req *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void req_fail(struct ctl_req *r, const char *code, const char *fmt, ...)
{
	va_list ap;

	snprintf(r->code, sizeof(r->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

/* Turn a callback's return into the request outcome. */
static void req_rc(struct ctl_req *r, const char *what, int rc,
		   const struct err *e, json_t *result)
{
	if (rc == 0) {
		if (result && !json_is_object(result)) {
			json_decref(result);
			req_fail(r, "failed", "%s: result is not an object",
				 what);
			return;
		}
		r->result = result;
		return;
	}
	json_decref(result);
	if (rc > 0)
		rc = -EIO;
	req_fail(r, ctl_errno_code(rc), "%s",
		 e->msg[0] ? e->msg : strerror(-rc));
}

#define NO_OP(r, fn, name)                                                     \
	do {                                                                   \
		if (!(r)->s->ops->fn) {                                        \
			req_fail(r, "not_implemented",                         \
				 "%s is not implemented", name);               \
			return;                                                \
		}                                                              \
	} while (0)

static void cmd_help(struct ctl_req *r);

static void cmd_hello(struct ctl_req *r)
{
	json_t *p = json_object_get(r->args, "protocol");
	json_int_t v;

	if (!json_is_integer(p)) {
		req_fail(r, "bad_request", "hello needs an integer protocol");
		return;
	}
	v = json_integer_value(p);
	if (v != CTL_PROTOCOL) {
		req_fail(r, "bad_request",
			 "protocol %lld not supported (server speaks %d)",
			 (long long)v, CTL_PROTOCOL);
		return;
	}
	r->result = json_pack("{s:i, s:s, s:s, s:I}", "protocol", CTL_PROTOCOL,
			      "version", KHYVE_VERSION, "vm", r->s->name, "pid",
			      (json_int_t)getpid());
}

static void cmd_status(struct ctl_req *r)
{
	struct err e = {0};
	json_t *res = NULL;
	int rc;

	NO_OP(r, status, "status");
	rc = r->s->ops->status(r->s->opaque, &res, &e);
	req_rc(r, "status", rc, &e, res);
	/* Every status names its VM so `khyvectl list` need not guess. */
	if (r->result && !json_object_get(r->result, "vm"))
		json_object_set_new(r->result, "vm", json_string(r->s->name));
}

static void cmd_pause(struct ctl_req *r)
{
	struct err e = {0};

	NO_OP(r, pause, "pause");
	req_rc(r, "pause", r->s->ops->pause(r->s->opaque, &e), &e, NULL);
}

static void cmd_resume(struct ctl_req *r)
{
	struct err e = {0};

	NO_OP(r, resume, "resume");
	req_rc(r, "resume", r->s->ops->resume(r->s->opaque, &e), &e, NULL);
}

static bool get_bool_arg(struct ctl_req *r, const char *key, bool *out)
{
	json_t *v = json_object_get(r->args, key);

	*out = false;
	if (!v)
		return true;
	if (!json_is_boolean(v)) {
		req_fail(r, "bad_request", "'%s' must be true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

static void cmd_poweroff(struct ctl_req *r)
{
	struct err e = {0};
	bool force;

	if (!get_bool_arg(r, "force", &force))
		return;
	NO_OP(r, poweroff, "poweroff");
	req_rc(r, "poweroff", r->s->ops->poweroff(r->s->opaque, force, &e), &e,
	       NULL);
}

static void cmd_reset(struct ctl_req *r)
{
	struct err e = {0};

	NO_OP(r, reset, "reset");
	req_rc(r, "reset", r->s->ops->reset(r->s->opaque, &e), &e, NULL);
}

static void cmd_regs(struct ctl_req *r)
{
	json_t *v = json_object_get(r->args, "vcpu");
	struct err e = {0};
	json_t *res = NULL;
	json_int_t vcpu = 0;
	bool msrs;
	int rc;

	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > INT_MAX) {
			req_fail(r, "bad_request",
				 "'vcpu' must be a non-negative integer");
			return;
		}
		vcpu = json_integer_value(v);
	}
	if (!get_bool_arg(r, "msrs", &msrs))
		return;
	NO_OP(r, regs, "regs");
	rc = r->s->ops->regs(r->s->opaque, (int)vcpu, msrs, &res, &e);
	req_rc(r, "regs", rc, &e, res);
}

static void cmd_stats(struct ctl_req *r)
{
	struct err e = {0};
	json_t *res = NULL;
	int rc;

	NO_OP(r, stats, "stats");
	rc = r->s->ops->stats(r->s->opaque, &res, &e);
	req_rc(r, "stats", rc, &e, res);
}

/* An optional boolean argument, @def when absent. */
static bool get_bool_default(struct ctl_req *r, const char *key, bool def,
			     bool *out)
{
	bool given = json_object_get(r->args, key) != NULL;

	if (!get_bool_arg(r, key, out))
		return false;
	if (!given)
		*out = def;
	return true;
}

/*
 * The request as typed options, every argument checked here (in this
 * order, so the first bad one is named), so the VMM never guesses
 * ("fsync": "no"). false: @r holds the error.
 */
static bool checkpoint_parse(struct ctl_req *r, bool suspend,
			     struct checkpoint_opts *o)
{
	json_t *f = json_object_get(r->args, "file");
	bool progress;

	if (!json_is_string(f) || !json_string_length(f) ||
	    strlen(json_string_value(f)) != json_string_length(f)) {
		req_fail(r, "bad_request", "%s needs a 'file' string",
			 suspend ? "suspend" : "checkpoint");
		return false;
	}
	*o = (struct checkpoint_opts){
		.file = json_string_value(f),
		.suspend = suspend,
	};
	if (!get_bool_arg(r, "progress", &progress) ||
	    !get_bool_default(r, "live", true, &o->live) ||
	    !get_bool_default(r, "fsync", true, &o->fsync) ||
	    !get_bool_default(r, "incremental", false, &o->incremental))
		return false;
	o->progress = progress ? ctl_progress : NULL;
	return true;
}

static void do_checkpoint(struct ctl_req *r, bool suspend)
{
	const char *what = suspend ? "suspend" : "checkpoint";
	struct checkpoint_opts o;
	struct err e = {0};
	json_t *res = NULL;
	int rc;

	if (!checkpoint_parse(r, suspend, &o))
		return;
	NO_OP(r, checkpoint, what);
	cur_req.wanted = o.progress != NULL;
	rc = r->s->ops->checkpoint(r->s->opaque, &o, &res, &e);
	if (rc == -EINVAL || rc == -ERANGE) {
		/*
		 * The request was checked in full above, so this is about
		 * the state being saved (e.g. a device state its snapshot
		 * description refuses): not the client's bad_request.
		 */
		json_decref(res);
		req_fail(r, "failed", "internal error: %s",
			 e.msg[0] ? e.msg : strerror(-rc));
		return;
	}
	req_rc(r, what, rc, &e, res);
}

static void cmd_checkpoint(struct ctl_req *r)
{
	do_checkpoint(r, false);
}

static void cmd_suspend(struct ctl_req *r)
{
	do_checkpoint(r, true);
}

/* An optional number >= @min into @out (left as is when absent). */
static bool get_num_arg(struct ctl_req *r, const char *key, double min,
			double *out)
{
	json_t *v = json_object_get(r->args, key);

	if (!v)
		return true;
	if (!json_is_number(v) || json_number_value(v) < min) {
		req_fail(r, "bad_request", "'%s' must be a number >= %g", key,
			 min);
		return false;
	}
	*out = json_number_value(v);
	return true;
}

/* The migrate request as typed options (docs/control-protocol.md). */
static bool migrate_parse(struct ctl_req *r, struct migrate_opts *o)
{
	json_t *to = json_object_get(r->args, "to");
	json_t *od = json_object_get(r->args, "on_deadline");
	double bw = 0, after = 1;
	bool progress;

	if (!json_is_string(to) || !json_string_length(to) ||
	    strlen(json_string_value(to)) != json_string_length(to)) {
		req_fail(r, "bad_request",
			 "migrate needs a 'to' string (tcp:HOST:PORT, "
			 "unix:PATH or fd:N)");
		return false;
	}
	*o = (struct migrate_opts){
		.to = json_string_value(to),
		.max_downtime_ms = MIGRATE_MAX_DOWNTIME_MS,
		.deadline_s = MIGRATE_DEADLINE_S,
	};
	if (od && (!json_is_string(od) ||
		   (strcmp(json_string_value(od), "abort") &&
		    strcmp(json_string_value(od), "throttle")))) {
		req_fail(r, "bad_request",
			 "'on_deadline' must be \"abort\" or \"throttle\"");
		return false;
	}
	o->throttle = od && !strcmp(json_string_value(od), "throttle");
	if (!get_num_arg(r, "max_downtime_ms", 0, &o->max_downtime_ms) ||
	    !get_num_arg(r, "deadline_s", 0, &o->deadline_s) ||
	    !get_num_arg(r, "bandwidth", 0, &bw) ||
	    !get_bool_arg(r, "compress", &o->compress) ||
	    !get_bool_arg(r, "record", &o->record) ||
	    !get_bool_arg(r, "progress", &progress) ||
	    !get_bool_arg(r, "postcopy", &o->postcopy) ||
	    !get_num_arg(r, "postcopy_after", 0, &after))
		return false;
	if (after > 1000 || after != (double)(unsigned)after) {
		req_fail(r, "bad_request",
			 "'postcopy_after' must be a whole number of rounds "
			 "from 0 to 1000");
		return false;
	}
	o->postcopy_after = (unsigned)after;
	if (o->postcopy && o->record) {
		req_fail(r, "bad_request",
			 "'postcopy' needs a destination that answers, not a "
			 "recorded stream");
		return false;
	}
	o->bandwidth = (uint64_t)bw;
	o->progress = progress ? ctl_progress : NULL;
	return true;
}

static void cmd_migrate(struct ctl_req *r)
{
	struct migrate_opts o;
	struct err e = {0};
	json_t *res = NULL;
	int rc;

	if (!migrate_parse(r, &o))
		return;
	NO_OP(r, migrate, "migrate");
	cur_req.wanted = o.progress != NULL;
	rc = r->s->ops->migrate(r->s->opaque, &o, &res, &e);
	/* Checked in full above: an -EINVAL is about the migration. */
	if (rc == -EINVAL || rc == -ERANGE)
		rc = -EIO;
	req_rc(r, "migrate", rc, &e, res);
}

static const char *const no_keys[] = {NULL};
static const char *const hello_keys[] = {"protocol", NULL};
static const char *const poweroff_keys[] = {"force", NULL};
static const char *const regs_keys[] = {"vcpu", "msrs", NULL};
static const char *const checkpoint_keys[] = {"file",  "progress",    "live",
					      "fsync", "incremental", NULL};
static const char *const migrate_keys[] = {
	"to",	     "max_downtime_ms", "deadline_s", "on_deadline",
	"bandwidth", "compress",	"record",     "progress",
	"postcopy",  "postcopy_after",	NULL};

static const struct ctl_cmd ctl_cmds[] = {
	{"hello", "protocol", "check protocol compatibility", hello_keys,
	 cmd_hello},
	{"help", "", "list commands", no_keys, cmd_help},
	{"status", "", "VM state and summary", no_keys, cmd_status},
	{"pause", "", "stop all vCPUs", no_keys, cmd_pause},
	{"resume", "", "restart paused vCPUs", no_keys, cmd_resume},
	{"poweroff", "[force]", "ACPI power button, or immediate with force",
	 poweroff_keys, cmd_poweroff},
	{"reset", "", "reset the VM", no_keys, cmd_reset},
	{"regs", "[vcpu] [msrs]", "vCPU registers (VM paused)", regs_keys,
	 cmd_regs},
	{"stats", "", "VM and device counters", no_keys, cmd_stats},
	{"checkpoint", "file [progress] [live] [fsync] [incremental]",
	 "save a snapshot, keep running", checkpoint_keys, cmd_checkpoint},
	{"suspend", "file [progress] [live] [fsync] [incremental]",
	 "save a snapshot, then power off", checkpoint_keys, cmd_suspend},
	{"migrate",
	 "to [max_downtime_ms] [deadline_s] [on_deadline] [bandwidth] "
	 "[compress] [record] [progress] [postcopy] [postcopy_after]",
	 "live migration; the VM exits once moved", migrate_keys, cmd_migrate},
};

static void cmd_help(struct ctl_req *r)
{
	json_t *list = json_array();
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
		json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "name",
						      ctl_cmds[i].name, "args",
						      ctl_cmds[i].args, "help",
						      ctl_cmds[i].help));
	r->result = json_pack("{s:o}", "commands", list);
}

static const char *unknown_key(const struct ctl_cmd *cmd, json_t *args)
{
	const char *key;
	json_t *v;
	size_t i;

	if (!cmd->keys)
		return NULL;
	json_object_foreach(args, key, v)
	{
		bool found = false;

		for (i = 0; cmd->keys[i]; i++)
			found |= !strcmp(cmd->keys[i], key);
		if (!found)
			return key;
	}
	return NULL;
}

/* Run @cmd with @args (an object, null or absent) and send its reply. */
static bool run_cmd(struct ctl_server *s, struct ctl_client *c, json_t *id,
		    const struct ctl_cmd *cmd, json_t *args)
{
	struct ctl_req r = {.s = s};
	const char *bad;
	bool ok;

	r.args = json_is_object(args) ? json_incref(args) : json_object();
	bad = unknown_key(cmd, r.args);
	if (bad) {
		ok = send_error(s, c, id, "bad_request",
				"%s takes no argument '%.64s'", cmd->name, bad);
		json_decref(r.args);
		return ok;
	}
	cur_req.s = s;
	cur_req.c = c;
	cur_req.id = id;
	cur_req.wanted = cur_req.sent = false;
	cmd->fn(&r);
	memset(&cur_req, 0, sizeof(cur_req));
	json_decref(r.args);
	if (r.code[0]) {
		json_decref(r.result);
		return send_json(s, c, error_reply(id, r.code, r.msg));
	}
	return send_json(s, c, ok_reply(id, r.result));
}

/* One request line; false if the client must be dropped. */
static bool handle_line(struct ctl_server *s, struct ctl_client *c,
			const char *line, size_t len)
{
	const struct ctl_cmd *cmd = NULL;
	json_t *req, *id, *jcmd, *args, *v;
	json_error_t jerr;
	const char *name, *key;
	size_t i;
	bool ok;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
		       line[len - 1] == '\t'))
		len--;
	if (!len)
		return true; /* blank lines are harmless when typing by hand */
	req = json_loadb(line, len, 0, &jerr);
	/*
	 * A complete request: the client is not idle. Timed from the reply
	 * (see out:), as a checkpoint may take longer than idle_ms.
	 */
	deadline_in(&c->idle, s->idle_ms);
	if (!req)
		return send_error(s, c, NULL, "parse_error",
				  "invalid JSON at column %d: %s", jerr.column,
				  jerr.text);
	id = json_object_get(req, "id");
	if (!json_is_object(req)) {
		ok = send_error(s, c, NULL, "bad_request",
				"request must be a JSON object");
		goto out;
	}
	jcmd = json_object_get(req, "cmd");
	if (!json_is_string(jcmd)) {
		ok = send_error(s, c, id, "bad_request",
				"request needs a \"cmd\" string");
		goto out;
	}
	/* "arg" for "args" would otherwise drop the arguments silently. */
	json_object_foreach(req, key, v)
	{
		if (strcmp(key, "id") && strcmp(key, "cmd") &&
		    strcmp(key, "args")) {
			ok = send_error(
				s, c, id, "bad_request",
				"unknown request key '%.64s' (a request "
				"has id, cmd and args)",
				key);
			goto out;
		}
	}
	name = json_string_value(jcmd);
	args = json_object_get(req, "args");
	if (args && !json_is_object(args) && !json_is_null(args)) {
		ok = send_error(s, c, id, "bad_request",
				"\"args\" must be an object");
		goto out;
	}
	for (i = 0; i < ARRAY_SIZE(ctl_cmds); i++)
		if (!strcmp(ctl_cmds[i].name, name))
			cmd = &ctl_cmds[i];
	if (!cmd) {
		ok = send_error(s, c, id, "unknown_command",
				"unknown command '%.64s' (try help)", name);
		goto out;
	}
	ok = run_cmd(s, c, id, cmd, args);
out:
	deadline_in(&c->idle, s->idle_ms);
	json_decref(req);
	return ok;
}

/* Split complete lines off the input buffer and answer each. */
static bool process_input(struct ctl_server *s, struct ctl_client *c, bool eof)
{
	size_t start = 0;

	while (!c->closing && start < c->in_len) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;

		if (!nl) {
			len = c->in_len - start;
			if (len > s->max_line) {
				if (!send_error(s, c, NULL, "too_large",
						"request line longer than %zu "
						"bytes",
						s->max_line))
					return false;
				client_close_later(c);
				break;
			}
			if (!eof)
				break;
			/* A last request without newline before EOF. */
			if (!handle_line(s, c, c->in + start, len))
				return false;
			start = c->in_len;
			break;
		}
		len = (size_t)(nl - (c->in + start));
		if (len > s->max_line) {
			if (!send_error(s, c, NULL, "too_large",
					"request line longer than %zu bytes",
					s->max_line))
				return false;
			client_close_later(c);
			break;
		}
		if (!handle_line(s, c, c->in + start, len))
			return false;
		start += len + 1;
	}
	if (c->closing) {
		c->in_len = 0;
	} else if (start) {
		memmove(c->in, c->in + start, c->in_len - start);
		c->in_len -= start;
	}
	return true;
}

/* Read what is there (bounded); false if the client must be dropped. */
static bool client_read(struct ctl_server *s, struct ctl_client *c)
{
	size_t budget = CTL_READ_BUDGET;
	bool eof = false;

	while (budget && !c->closing) {
		ssize_t n;

		if (c->in_cap - c->in_len < CTL_READ_CHUNK) {
			size_t cap = c->in_len + CTL_READ_CHUNK;
			char *p = realloc(c->in, cap);

			if (!p)
				return false;
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, CTL_READ_CHUNK,
			 MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return false;
		}
		if (n == 0) {
			eof = true;
			break;
		}
		c->in_len += (size_t)n;
		budget -= MIN(budget, (size_t)n);
		/* Answer as we go: the buffer never holds much over a line. */
		if (!process_input(s, c, false))
			return false;
	}
	if (eof) {
		if (!process_input(s, c, true))
			return false;
		client_close_later(c);
	}
	return true;
}

static bool peer_allowed(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	return cr.uid == 0 || cr.uid == geteuid();
}

/* Best effort one-shot line for a client we will not keep. */
static void refuse(int fd, const char *code, const char *msg)
{
	json_t *j = error_reply(NULL, code, msg);
	char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (txt) {
		size_t n = strlen(txt);

		txt[n] = '\n'; /* replaces the NUL; length passed explicitly */
		if (send(fd, txt, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("control: refusal not delivered: %s",
				  strerror(errno));
	}
	free(txt);
	json_decref(j);
	close(fd);
}

static void accept_clients(struct ctl_server *s)
{
	for (;;) {
		struct ctl_client *c = NULL;
		json_t *greet;
		unsigned i;
		int fd;

		fd = accept4(s->listen_fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				log_warn("control: accept: %s",
					 strerror(errno));
			return;
		}
		if (!peer_allowed(fd)) {
			refuse(fd, "permission_denied",
			       "connection refused: peer uid differs");
			continue;
		}
		for (i = 0; i < s->max_clients && !c; i++)
			if (s->clients[i].fd < 0)
				c = &s->clients[i];
		if (!c) {
			char msg[64];

			snprintf(msg, sizeof(msg),
				 "too many clients (limit %u)", s->max_clients);
			refuse(fd, "failed", msg);
			continue;
		}
		c->fd = fd;
		deadline_in(&c->idle, s->idle_ms);
		greet = json_pack("{s:{s:s, s:i, s:s, s:I}}", "khyve",
				  "version", KHYVE_VERSION, "protocol",
				  CTL_PROTOCOL, "vm", s->name, "pid",
				  (json_int_t)getpid());
		if (!send_json(s, c, greet) || client_flush(c) < 0)
			client_free(c);
	}
}

static int ms_until(const struct timespec *t)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (t->tv_sec - now.tv_sec) * 1000LL +
	     (t->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : (int)MIN(ms, (long long)INT_MAX);
}

static bool passed(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec ||
	       (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/*
 * Close clients that sent no complete request (and took none of their
 * replies) for idle_ms: otherwise max_clients idle connections lock
 * everyone else out. Runs after the poll round read what was there, so a
 * request that arrived while a long command ran is answered, not dropped.
 */
static void expire_idle(struct ctl_server *s)
{
	for (unsigned i = 0; i < s->max_clients; i++) {
		struct ctl_client *c = &s->clients[i];

		if (c->fd < 0 || c->closing || !passed(&c->idle))
			continue;
		if (send_error(s, c, NULL, "failed",
			       "no request for %u ms: closing the connection",
			       s->idle_ms))
			(void)client_flush(c);
		client_close_later(c);
	}
}

/*
 * The poll set: the stop eventfd, the listener, then every client with
 * what it waits for. Returns its size; *@timeout the nearest client
 * deadline (-1: none). Clients done closing are freed here.
 */
static unsigned poll_set(struct ctl_server *s, int *timeout)
{
	unsigned n = 0;

	*timeout = -1;
	s->pfds[n++] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
	s->pfds[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
	for (unsigned i = 0; i < s->max_clients; i++) {
		struct ctl_client *c = &s->clients[i];
		short ev = 0;
		int t;

		if (c->fd < 0)
			continue;
		if (c->closing) {
			t = ms_until(&c->deadline);
			if (c->out_off == c->out_len || t == 0) {
				client_free(c);
				continue;
			}
		} else {
			t = ms_until(&c->idle);
			ev |= POLLIN;
			/* +1: ms_until rounds down; wake past it. */
			t = t < INT_MAX ? t + 1 : t;
		}
		*timeout = *timeout < 0 ? t : MIN(*timeout, t);
		if (c->out_off < c->out_len)
			ev |= POLLOUT;
		s->pfd_client[n] = i;
		s->pfds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
	}
	return n;
}

/* What poll reported for the clients (pfds[2..@n)). */
static void serve_clients(struct ctl_server *s, unsigned n)
{
	for (unsigned i = 2; i < n; i++) {
		struct ctl_client *c = &s->clients[s->pfd_client[i]];
		short re = s->pfds[i].revents;
		size_t unsent;

		if (!re)
			continue;
		if ((re & (POLLIN | POLLHUP)) && !c->closing &&
		    !client_read(s, c)) {
			client_free(c);
			continue;
		}
		unsent = c->out_len - c->out_off;
		if ((re & (POLLERR | POLLNVAL)) || client_flush(c) < 0) {
			client_free(c);
			continue;
		}
		/* Taking its replies is activity too. */
		if (c->out_len - c->out_off < unsent)
			deadline_in(&c->idle, s->idle_ms);
		/* After the close checks: a hung-up reader is gone. */
		if (c->closing && (re & POLLHUP) && c->out_off < c->out_len)
			client_free(c);
	}
}

static void *server_thread(void *arg)
{
	struct ctl_server *s = arg;

	confine_seccomp_enter(CONFINE_ROLE_CONTROL);
	for (;;) {
		int timeout, rc;
		unsigned n = poll_set(s, &timeout);

		rc = poll(s->pfds, n, timeout);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			log_err("control: poll: %s", strerror(errno));
			break;
		}
		if (s->pfds[0].revents)
			break;
		serve_clients(s, n);
		expire_idle(s);
		if (s->pfds[1].revents)
			accept_clients(s);
	}
	return NULL;
}

static void server_free(struct ctl_server *s)
{
	struct stat st;
	unsigned i;

	if (s->clients) {
		for (i = 0; i < s->max_clients; i++) {
			if (s->clients[i].fd >= 0)
				client_flush(&s->clients[i]);
			client_free(&s->clients[i]);
		}
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		/* Only remove the socket if it is still the one we bound. */
		if (lstat(s->sock_path, &st) == 0 && st.st_dev == s->sock_dev &&
		    st.st_ino == s->sock_ino)
			unlink(s->sock_path);
	}
	if (s->lock_fd >= 0) {
		/* Unlink while still locked, so no one locks an orphan. */
		unlink(s->lock_path);
		close(s->lock_fd);
	}
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s->clients);
	free(s->pfds);
	free(s->pfd_client);
	free(s);
}

/* @s's limits (defaults for zero @p fields), paths and client slots. */
static int server_setup(struct ctl_server *s, const struct ctl_params *p,
			const char *rundir, struct err *e)
{
	int rc, n;

	s->max_clients = p->max_clients ? p->max_clients : CTL_MAX_CLIENTS;
	s->max_line = p->max_line ? p->max_line : CTL_MAX_LINE;
	s->max_output = p->max_output ? p->max_output : CTL_MAX_OUTPUT;
	s->idle_ms = p->idle_ms ? p->idle_ms : CTL_IDLE_MS;
	snprintf(s->name, sizeof(s->name), "%s", p->vmname);
	rc = ctl_socket_path(s->sock_path, sizeof(s->sock_path), rundir,
			     p->vmname);
	n = snprintf(s->lock_path, sizeof(s->lock_path), "%s/%s.lock", rundir,
		     p->vmname);
	if (rc < 0 || n < 0 || (size_t)n >= sizeof(s->lock_path))
		return err_set(e, -ENAMETOOLONG,
			       "socket path %s/%s.sock is too long", rundir,
			       p->vmname);
	s->clients = calloc(s->max_clients, sizeof(*s->clients));
	s->pfds = calloc(s->max_clients + 2, sizeof(*s->pfds));
	s->pfd_client = calloc(s->max_clients + 2, sizeof(*s->pfd_client));
	if (!s->clients || !s->pfds || !s->pfd_client)
		return err_set(e, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < s->max_clients; i++)
		s->clients[i].fd = -1;
	return 0;
}

/* The lock file names its holder (for "already running (pid N)"). */
static void write_lock_pid(struct ctl_server *s)
{
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

	if (ftruncate(s->lock_fd, 0) < 0 ||
	    pwrite(s->lock_fd, pid, (size_t)len, 0) != len)
		log_warn("cannot write pid to %s: %s", s->lock_path,
			 strerror(errno));
}

int ctl_server_start(struct ctl_server **out, const struct ctl_params *p,
		     const struct ctl_ops *ops, void *opaque, struct err *e)
{
	const char *rundir = p->rundir ? p->rundir : ctl_default_rundir();
	sigset_t all, old;
	struct ctl_server *s;
	int rc;

	*out = NULL;
	if (!ctl_vmname_valid(p->vmname))
		return err_set(e, -EINVAL,
			       "invalid VM name '%.80s' (1-%d of "
			       "[A-Za-z0-9._-], not starting with '.')",
			       p->vmname ? p->vmname : "", CTL_VMNAME_MAX);
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(e, -ENOMEM, "out of memory");
	s->listen_fd = s->lock_fd = s->stop_fd = -1;
	s->ops = ops;
	s->opaque = opaque;
	rc = server_setup(s, p, rundir, e);
	if (rc < 0)
		goto fail;
	rc = make_rundir(rundir, e);
	if (rc < 0)
		goto fail;
	rc = take_lock(s, e);
	if (rc < 0)
		goto fail;
	rc = clear_stale_socket(s, e);
	if (rc < 0)
		goto fail;
	rc = open_listener(s, e);
	if (rc < 0)
		goto fail;
	write_lock_pid(s);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		rc = err_sys(e, "eventfd");
		goto fail;
	}
	/* The VMM's signals (vCPU kicks, SIGINT) are not for this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&s->thread, NULL, server_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		err_set(e, rc, "cannot start control thread: %s",
			strerror(-rc));
		goto fail;
	}
	s->thread_started = true;
	*out = s;
	return 0;

fail:
	server_free(s);
	return rc;
}

void ctl_server_stop(struct ctl_server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (s->thread_started) {
		if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("control: cannot signal stop: %s",
				 strerror(errno));
		pthread_join(s->thread, NULL);
	}
	server_free(s);
}
