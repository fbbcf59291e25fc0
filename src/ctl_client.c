/* SPDX-License-Identifier: BSD-2-Clause */
/* Control protocol client helpers: see ctl_client.h. */
#include "ctl_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "ctl.h"
#include "log.h"

/* Replies can be big (regs with MSRs) but not unbounded. */
#define CTL_CLIENT_MAX_LINE (64 * 1024 * 1024)

struct ctl_conn {
	int fd;
	int timeout_ms;
	char *buf;
	size_t len, cap;
	json_t *greeting;
	json_int_t next_id;
	char vm[CTL_VMNAME_MAX + 1];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Next line from the server, parsed. */
static int read_msg(struct ctl_conn *c, json_t **msg, char *err, size_t errlen)
{
	json_error_t jerr;

	*msg = NULL;
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		ssize_t n;
		int rc;

		if (nl) {
			size_t ll = (size_t)(nl - c->buf);

			*msg = json_loadb(c->buf, ll, 0, &jerr);
			memmove(c->buf, nl + 1, c->len - ll - 1);
			c->len -= ll + 1;
			if (!*msg) {
				set_err(err, errlen,
					"VM '%s' sent invalid JSON: %s", c->vm,
					jerr.text);
				return -EPROTO;
			}
			return 0;
		}
		if (c->len >= CTL_CLIENT_MAX_LINE) {
			set_err(err, errlen, "VM '%s' sent an oversized reply",
				c->vm);
			return -EMSGSIZE;
		}
		if (c->cap - c->len < 65536) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *p = realloc(c->buf, cap);

			if (!p) {
				set_err(err, errlen, "out of memory");
				return -ENOMEM;
			}
			c->buf = p;
			c->cap = cap;
		}
		rc = poll(&pfd, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			set_err(err, errlen, "poll: %s", strerror(errno));
			return -errno;
		}
		if (rc == 0) {
			set_err(err, errlen,
				"timed out waiting for VM '%s' (%d ms)", c->vm,
				c->timeout_ms);
			return -ETIMEDOUT;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			set_err(err, errlen, "reading from VM '%s': %s", c->vm,
				strerror(errno));
			return -errno;
		}
		if (n == 0) {
			set_err(err, errlen, "VM '%s' closed the connection",
				c->vm);
			return -ECONNRESET;
		}
		c->len += (size_t)n;
	}
}

static int send_all(struct ctl_conn *c, const char *p, size_t len, char *err,
		    size_t errlen)
{
	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			set_err(err, errlen, "writing to VM '%s': %s", c->vm,
				strerror(errno));
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Copy code and message out of an {"error": {...}} reply. */
static void error_of(const json_t *msg, char *code, size_t codelen, char *err,
		     size_t errlen)
{
	const json_t *e = json_object_get(msg, "error");
	const char *cs = json_string_value(json_object_get(e, "code"));
	const char *ms = json_string_value(json_object_get(e, "message"));

	if (code && codelen)
		snprintf(code, codelen, "%s", cs ? cs : "failed");
	set_err(err, errlen, "%s", ms ? ms : "unspecified error");
}

/* Connect to the VM's socket, naming the likely cause when that fails. */
static int connect_vm(struct ctl_conn *c, const char *rundir, const char *vm,
		      char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int rc;

	rc = ctl_socket_path(c->path, sizeof(c->path), rundir, vm);
	if (rc < 0) {
		set_err(err, errlen, "socket path %s/%s.sock is too long",
			rundir, vm);
		return rc;
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = -errno;
		set_err(err, errlen, "socket: %s", strerror(errno));
		return rc;
	}
	memcpy(sun.sun_path, c->path, strlen(c->path) + 1);
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = -errno;
		if (errno == ENOENT)
			set_err(err, errlen, "no VM '%s' (looked for %s)", vm,
				c->path);
		else if (errno == ECONNREFUSED)
			set_err(err, errlen,
				"VM '%s' is not running (stale socket %s)", vm,
				c->path);
		else
			set_err(err, errlen, "cannot connect to %s: %s",
				c->path, strerror(errno));
		return rc;
	}
	return 0;
}

/*
 * The server speaks first: a greeting with its protocol version, or an
 * error if it refuses this client (another one holds it, or permission).
 * Keeps the greeting's "khyve" object in @c.
 */
static int read_greeting(struct ctl_conn *c, char *err, size_t errlen)
{
	json_t *msg = NULL;
	const json_t *k;
	int rc;

	rc = read_msg(c, &msg, err, errlen);
	if (rc == -ECONNRESET) {
		set_err(err, errlen, "VM '%s' closed the connection at once",
			c->vm);
		goto out;
	}
	if (rc < 0)
		goto out;
	if (json_object_get(msg, "error")) {
		char code[32];

		error_of(msg, code, sizeof(code), err, errlen);
		rc = !strcmp(code, "permission_denied") ? -EACCES : -EBUSY;
		goto out;
	}
	k = json_object_get(msg, "khyve");
	if (!json_is_object(k) || json_integer_value(json_object_get(
					  k, "protocol")) != CTL_PROTOCOL) {
		set_err(err, errlen,
			"%s does not speak khyve control protocol %d", c->path,
			CTL_PROTOCOL);
		rc = -EPROTO;
		goto out;
	}
	c->greeting = json_incref((json_t *)k);
	rc = 0;
out:
	json_decref(msg);
	return rc;
}

int ctl_client_open(struct ctl_conn **out, const char *rundir, const char *vm,
		    int timeout_ms, char *err, size_t errlen)
{
	struct ctl_conn *c;
	int rc;

	*out = NULL;
	if (!ctl_vmname_valid(vm)) {
		set_err(err, errlen, "invalid VM name '%.80s'", vm);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	c->next_id = 1;
	snprintf(c->vm, sizeof(c->vm), "%s", vm);
	rc = connect_vm(c, rundir, vm, err, errlen);
	if (rc < 0)
		goto fail;
	rc = read_greeting(c, err, errlen);
	if (rc < 0)
		goto fail;
	*out = c;
	return 0;

fail:
	ctl_client_close(c);
	return rc;
}

void ctl_client_close(struct ctl_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	json_decref(c->greeting);
	free(c->buf);
	free(c);
}

const json_t *ctl_client_greeting(const struct ctl_conn *c)
{
	return c->greeting;
}

int ctl_client_call(struct ctl_conn *c, const char *cmd, const json_t *args,
		    json_t **result, char *code, size_t codelen, char *err,
		    size_t errlen)
{
	return ctl_client_call_progress(c, cmd, args, NULL, NULL, result, code,
					codelen, err, errlen);
}

int ctl_client_call_progress(
	struct ctl_conn *c, const char *cmd, const json_t *args,
	void (*fn)(void *opaque, uint64_t done, uint64_t total), void *opaque,
	json_t **result, char *code, size_t codelen, char *err, size_t errlen)
{
	json_int_t id = c->next_id++;
	json_t *req, *msg = NULL;
	char *txt;
	int rc;

	*result = NULL;
	if (code && codelen)
		code[0] = '\0';
	req = json_pack("{s:I, s:s}", "id", id, "cmd", cmd);
	if (req && args)
		json_object_set(req, "args", (json_t *)args);
	txt = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!txt) {
		set_err(err, errlen, "cannot encode request");
		return -ENOMEM;
	}
	rc = send_all(c, txt, strlen(txt), err, errlen);
	free(txt);
	if (!rc)
		rc = send_all(c, "\n", 1, err, errlen);
	if (rc)
		return rc;
	for (;;) {
		const json_t *rid;

		rc = read_msg(c, &msg, err, errlen);
		if (rc)
			return rc;
		rid = json_object_get(msg, "id");
		/* id null: the server could not tie the error to a request */
		if (json_is_integer(rid) && json_integer_value(rid) == id) {
			const json_t *pg = json_object_get(msg, "progress");

			if (!pg)
				break;
			if (fn)
				fn(opaque,
				   (uint64_t)json_integer_value(
					   json_object_get(pg, "done")),
				   (uint64_t)json_integer_value(
					   json_object_get(pg, "total")));
			json_decref(msg);
			continue;
		}
		if (json_is_null(rid) && json_object_get(msg, "error"))
			break;
		json_decref(msg);
	}
	if (json_object_get(msg, "error")) {
		error_of(msg, code, codelen, err, errlen);
		rc = -EPROTO;
	} else {
		*result = json_incref(json_object_get(msg, "result"));
		if (!*result)
			*result = json_object();
	}
	json_decref(msg);
	return rc;
}
