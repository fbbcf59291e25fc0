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
#include "err.h"

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
static int read_msg(struct ctl_conn *c, json_t **msg, struct err *e)
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
				return err_set(e, -EPROTO,
					       "VM '%s' sent invalid JSON: %s",
					       c->vm, jerr.text);
			}
			return 0;
		}
		if (c->len >= CTL_CLIENT_MAX_LINE)
			return err_set(e, -EMSGSIZE,
				       "VM '%s' sent an oversized reply",
				       c->vm);
		if (c->cap - c->len < 65536) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *p = realloc(c->buf, cap);

			if (!p)
				return err_set(e, -ENOMEM, "out of memory");
			c->buf = p;
			c->cap = cap;
		}
		rc = poll(&pfd, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(e, "poll");
		}
		if (rc == 0)
			return err_set(e, -ETIMEDOUT,
				       "timed out waiting for VM '%s' (%d ms)",
				       c->vm, c->timeout_ms);
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(e, "reading from VM '%s'", c->vm);
		}
		if (n == 0)
			return err_set(e, -ECONNRESET,
				       "VM '%s' closed the connection", c->vm);
		c->len += (size_t)n;
	}
}

static int send_all(struct ctl_conn *c, const char *p, size_t len,
		    struct err *e)
{
	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_sys(e, "writing to VM '%s'", c->vm);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Copy code and message out of an {"error": {...}} reply; returns
 * -EPROTO, @e's code.
 */
static int error_of(const json_t *msg, char *code, size_t codelen,
		    struct err *e)
{
	const json_t *er = json_object_get(msg, "error");
	const char *cs = json_string_value(json_object_get(er, "code"));
	const char *ms = json_string_value(json_object_get(er, "message"));

	if (code && codelen)
		snprintf(code, codelen, "%s", cs ? cs : "failed");
	return err_set(e, -EPROTO, "%s", ms ? ms : "unspecified error");
}

/* Connect to the VM's socket, naming the likely cause when that fails. */
static int connect_vm(struct ctl_conn *c, const char *rundir, const char *vm,
		      struct err *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int rc;

	rc = ctl_socket_path(c->path, sizeof(c->path), rundir, vm);
	if (rc < 0)
		return err_set(e, rc, "socket path %s/%s.sock is too long",
			       rundir, vm);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return err_sys(e, "socket");
	memcpy(sun.sun_path, c->path, strlen(c->path) + 1);
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT)
			return err_set(e, -ENOENT, "no VM '%s' (looked for %s)",
				       vm, c->path);
		if (errno == ECONNREFUSED)
			return err_set(e, -ECONNREFUSED,
				       "VM '%s' is not running (stale socket "
				       "%s)",
				       vm, c->path);
		return err_sys(e, "cannot connect to %s", c->path);
	}
	return 0;
}

/*
 * The server speaks first: a greeting with its protocol version, or an
 * error if it refuses this client (another one holds it, or permission).
 * Keeps the greeting's "khyve" object in @c.
 */
static int read_greeting(struct ctl_conn *c, struct err *e)
{
	json_t *msg = NULL;
	const json_t *k;
	int rc;

	rc = read_msg(c, &msg, e);
	if (rc == -ECONNRESET) {
		err_set(e, rc, "VM '%s' closed the connection at once", c->vm);
		goto out;
	}
	if (rc < 0)
		goto out;
	if (json_object_get(msg, "error")) {
		char code[32];

		error_of(msg, code, sizeof(code), e);
		rc = !strcmp(code, "permission_denied") ? -EACCES : -EBUSY;
		if (e)
			e->code = rc;
		goto out;
	}
	k = json_object_get(msg, "khyve");
	if (!json_is_object(k) || json_integer_value(json_object_get(
					  k, "protocol")) != CTL_PROTOCOL) {
		rc = err_set(e, -EPROTO,
			     "%s does not speak khyve control protocol %d",
			     c->path, CTL_PROTOCOL);
		goto out;
	}
	c->greeting = json_incref((json_t *)k);
	rc = 0;
out:
	json_decref(msg);
	return rc;
}

int ctl_client_open(struct ctl_conn **out, const char *rundir, const char *vm,
		    int timeout_ms, struct err *e)
{
	struct ctl_conn *c;
	int rc;

	*out = NULL;
	if (!ctl_vmname_valid(vm))
		return err_set(e, -EINVAL, "invalid VM name '%.80s'", vm);
	c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, -ENOMEM, "out of memory");
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	c->next_id = 1;
	snprintf(c->vm, sizeof(c->vm), "%s", vm);
	rc = connect_vm(c, rundir, vm, e);
	if (rc < 0)
		goto fail;
	rc = read_greeting(c, e);
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
		    json_t **result, char *code, size_t codelen, struct err *e)
{
	return ctl_client_call_progress(c, cmd, args, NULL, NULL, result, code,
					codelen, e);
}

int ctl_client_call_progress(
	struct ctl_conn *c, const char *cmd, const json_t *args,
	void (*fn)(void *opaque, uint64_t done, uint64_t total), void *opaque,
	json_t **result, char *code, size_t codelen, struct err *e)
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
	if (!txt)
		return err_set(e, -ENOMEM, "cannot encode request");
	rc = send_all(c, txt, strlen(txt), e);
	free(txt);
	if (!rc)
		rc = send_all(c, "\n", 1, e);
	if (rc)
		return rc;
	for (;;) {
		const json_t *rid;

		rc = read_msg(c, &msg, e);
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
		rc = error_of(msg, code, codelen, e);
	} else {
		*result = json_incref(json_object_get(msg, "result"));
		if (!*result)
			*result = json_object();
	}
	json_decref(msg);
	return rc;
}
