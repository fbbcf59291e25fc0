/* SPDX-License-Identifier: BSD-2-Clause */
/* Console back-ends: stdio, file, UNIX socket, null, raw fds. */
#include "chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "common.h"
#include "log.h"

enum chardev_type { CD_NULL, CD_STDIO, CD_FILE, CD_SOCKET, CD_FD };

struct chardev {
	enum chardev_type type;
	pthread_mutex_t lock; /* client fd, stall flag and stats */
	int in_fd, out_fd;
	bool owns_fds;
	bool stalled; /* stdout did not drain in time: stop waiting on it */
	bool in_eof;
	bool claimed_stdio; /* owns the process-wide stdio slot */
	int listen_fd, client_fd, epoll_fd;
	char *path; /* socket path, unlinked on close if still ours */
	dev_t sock_dev;
	ino_t sock_ino;
	int tty_slot;
	struct chardev_stats st;
};

/*
 * Terminal state to put back on exit or from a fatal signal handler. A
 * fixed table written before the tty goes raw, so the restore path needs
 * neither locks nor allocation.
 */
#define CHARDEV_MAX_TTYS 4
static struct {
	int fd;
	struct termios tio;
	volatile sig_atomic_t active;
} tty_saved[CHARDEV_MAX_TTYS];
static pthread_mutex_t tty_lock = PTHREAD_MUTEX_INITIALIZER;
static bool tty_atexit_done;
static bool stdio_in_use;

void chardev_restore_all(void)
{
	for (unsigned i = 0; i < CHARDEV_MAX_TTYS; i++) {
		if (tty_saved[i].active) {
			tcsetattr(tty_saved[i].fd, TCSANOW, &tty_saved[i].tio);
			tty_saved[i].active = 0;
		}
	}
}

static void chardev_atexit(void)
{
	chardev_restore_all();
}

static void fatal_handler(int sig)
{
	int saved = errno;

	chardev_restore_all();
	errno = saved;
	/* SA_RESETHAND restored the default action: let it happen. */
	raise(sig);
}

int chardev_install_fatal_handlers(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fatal_handler;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < ARRAY_SIZE(sigs); i++) {
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	}
	return 0;
}

/* Save @fd's termios and switch it to raw mode; -1 slot if not a tty. */
static int tty_make_raw(int fd, int *slot)
{
	struct termios raw;
	int ret = 0, i;

	*slot = -1;
	if (!isatty(fd))
		return 0;
	pthread_mutex_lock(&tty_lock);
	for (i = 0; i < CHARDEV_MAX_TTYS; i++) {
		if (!tty_saved[i].active)
			break;
	}
	if (i == CHARDEV_MAX_TTYS) {
		ret = -ENOSPC;
		goto out;
	}
	if (tcgetattr(fd, &tty_saved[i].tio) < 0) {
		ret = -errno;
		goto out;
	}
	tty_saved[i].fd = fd;
	tty_saved[i].active = 1;
	if (!tty_atexit_done) {
		atexit(chardev_atexit);
		tty_atexit_done = true;
	}
	raw = tty_saved[i].tio;
	/* The guest does its own echo, line editing and CR/LF handling. */
	cfmakeraw(&raw);
	if (tcsetattr(fd, TCSANOW, &raw) < 0) {
		ret = -errno;
		tty_saved[i].active = 0;
		goto out;
	}
	*slot = i;
out:
	pthread_mutex_unlock(&tty_lock);
	return ret;
}

static void tty_restore(int slot)
{
	if (slot < 0)
		return;
	pthread_mutex_lock(&tty_lock);
	if (tty_saved[slot].active) {
		tcsetattr(tty_saved[slot].fd, TCSANOW, &tty_saved[slot].tio);
		tty_saved[slot].active = 0;
	}
	pthread_mutex_unlock(&tty_lock);
}

static struct chardev *chardev_alloc(enum chardev_type type)
{
	struct chardev *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->type = type;
	pthread_mutex_init(&c->lock, NULL);
	c->in_fd = c->out_fd = -1;
	c->listen_fd = c->client_fd = c->epoll_fd = -1;
	c->tty_slot = -1;
	return c;
}

/*
 * A socket file already at @path: a live one (something accepts
 * connections there) is refused, a stale one (left by a process that
 * died: ECONNREFUSED) is removed, as the control socket does.
 */
static int clear_stale_socket(const struct sockaddr_un *sun, struct err *err)
{
	const char *path = sun->sun_path;
	struct stat sb;
	int fd, rc, e;

	if (lstat(path, &sb) < 0) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		return err_set(err, rc, "cannot stat %s: %s", path,
			       strerror(errno));
	}
	if (!S_ISSOCK(sb.st_mode))
		return err_set(
			err, -EEXIST,
			"%s exists and is not a socket; not replacing it",
			path);
	/* Non-blocking: a live listener with a full backlog says EAGAIN. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		return err_set(err, rc, "socket: %s", strerror(errno));
	}
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	e = errno;
	close(fd);
	if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
		return err_set(err, -EADDRINUSE,
			       "console socket %s is in use (something accepts "
			       "connections there); not replacing it",
			       path);
	if (e != ECONNREFUSED && e != ENOENT)
		return err_set(err, -e, "cannot probe console socket %s: %s",
			       path, strerror(e));
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		return err_set(err, rc, "cannot remove stale socket %s: %s",
			       path, strerror(errno));
	}
	return 0;
}

static int open_socket(struct chardev *c, const char *path, struct err *err)
{
	struct sockaddr_un sun;
	struct epoll_event ev;
	struct stat sb;
	int ret;

	if (strlen(path) >= sizeof(sun.sun_path))
		return err_set(err, -ENAMETOOLONG,
			       "socket path too long (max %zu bytes): %s",
			       sizeof(sun.sun_path) - 1, path);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));

	/* A stale socket from a previous run would make bind() fail. */
	ret = clear_stale_socket(&sun, err);
	if (ret < 0)
		return ret;
	c->listen_fd =
		socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->listen_fd < 0) {
		ret = -errno;
		return err_set(err, ret, "socket: %s", strerror(errno));
	}
	if (bind(c->listen_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(c->listen_fd, 1) < 0) {
		ret = -errno;
		return err_set(err, ret, "cannot listen on %s: %s", path,
			       strerror(errno));
	}
	if (stat(path, &sb) == 0) {
		c->sock_dev = sb.st_dev;
		c->sock_ino = sb.st_ino;
	}
	c->path = strdup(path);
	if (!c->path) {
		unlink(path);
		return err_set(err, -ENOMEM, "out of memory");
	}
	c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epoll_fd < 0) {
		ret = -errno;
		return err_set(err, ret, "epoll_create1: %s", strerror(errno));
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = c->listen_fd;
	if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->listen_fd, &ev) < 0) {
		ret = -errno;
		return err_set(err, ret, "epoll_ctl: %s", strerror(errno));
	}
	return 0;
}

/* A file back-end a snapshot named: existing, appended to, not waited on. */
static int open_existing(const char *path, const char *spec, struct err *err)
{
	int fd = open(path,
		      O_WRONLY | O_APPEND | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	int rc, fl;

	if (fd < 0) {
		rc = -errno;
		return err_set(
			err, rc,
			"console %s (named by the snapshot): %s; khyve creates "
			"or truncates no file a snapshot names: give the "
			"console on the command line to do that",
			spec, strerror(-rc));
	}
	/* As the command line's file back-end from here on. */
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/*
 * The back-end type a spec names, its path (NULL for stdio and null) and
 * the open flags a file back-end adds.
 */
static int parse_spec(const char *spec, enum chardev_type *type,
		      const char **path, int *oflags, struct err *err)
{
	*path = NULL;
	*oflags = 0;
	if (!strcmp(spec, "null")) {
		*type = CD_NULL;
	} else if (!strcmp(spec, "stdio")) {
		*type = CD_STDIO;
	} else if (!strncmp(spec, "file:", 5)) {
		*type = CD_FILE;
		*path = spec + 5;
		*oflags = O_TRUNC;
	} else if (!strncmp(spec, "append:", 7)) {
		*type = CD_FILE;
		*path = spec + 7;
		*oflags = O_APPEND;
	} else if (!strncmp(spec, "socket:", 7)) {
		*type = CD_SOCKET;
		*path = spec + 7;
	} else {
		/* Not `return err_set()`: gcc then thinks *type may be unset.
		 */
		err_set(err, -EINVAL,
			"unknown console back-end '%s' (expected stdio, null, "
			"file:PATH, append:PATH or socket:PATH)",
			spec);
		return -EINVAL;
	}
	return 0;
}

/* The process has one stdin/stdout, so only one console may claim them. */
static int open_stdio(struct chardev *c, struct err *err)
{
	int ret;

	pthread_mutex_lock(&tty_lock);
	if (stdio_in_use) {
		pthread_mutex_unlock(&tty_lock);
		return err_set(err, -EBUSY,
			       "stdio is already used by another console");
	}
	stdio_in_use = true;
	c->claimed_stdio = true;
	pthread_mutex_unlock(&tty_lock);
	c->in_fd = STDIN_FILENO;
	c->out_fd = STDOUT_FILENO;
	ret = tty_make_raw(STDIN_FILENO, &c->tty_slot);
	if (ret < 0)
		return err_set(err, ret, "cannot put stdin in raw mode: %s",
			       strerror(-ret));
	return 0;
}

/* file: and append:; a snapshot's file is only ever appended to. */
static int open_file(struct chardev *c, const char *spec, const char *path,
		     int oflags, unsigned flags, struct err *err)
{
	if (flags & CHARDEV_NO_CREATE) {
		c->out_fd = open_existing(path, spec, err);
		if (c->out_fd < 0)
			return c->out_fd;
		c->owns_fds = true;
		return 0;
	}
	c->out_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | oflags, 0644);
	if (c->out_fd < 0) {
		int ret = -errno;

		return err_set(err, ret, "cannot open console file %s: %s",
			       path, strerror(errno));
	}
	c->owns_fds = true;
	return 0;
}

int chardev_open(struct chardev **cp, const char *spec, unsigned flags,
		 struct err *err)
{
	enum chardev_type type;
	struct chardev *c;
	const char *path;
	int ret, oflags;

	*cp = NULL;
	err_clear(err);
	if (!spec)
		return err_set(err, -EINVAL, "missing console back-end");
	ret = parse_spec(spec, &type, &path, &oflags, err);
	if (ret)
		return ret;
	c = chardev_alloc(type);
	if (!c)
		return err_set(err, -ENOMEM, "out of memory");
	if (path && !*path) {
		ret = err_set(err, -EINVAL,
			      "console back-end '%s' needs a path", spec);
		goto fail;
	}

	switch (type) {
	case CD_STDIO:
		ret = open_stdio(c, err);
		break;
	case CD_FILE:
		ret = open_file(c, spec, path, oflags, flags, err);
		break;
	case CD_SOCKET:
		if (flags & CHARDEV_NO_CREATE) {
			ret = err_set(
				err, -EPERM,
				"console %s (named by the snapshot): a "
				"listening socket creates its path, and khyve "
				"creates no file a snapshot names: give the "
				"console on the command line",
				spec);
			goto fail;
		}
		ret = open_socket(c, path, err);
		break;
	default:
		break;
	}
	if (ret < 0)
		goto fail;
	*cp = c;
	return 0;
fail:
	chardev_close(c);
	return ret;
}

int chardev_open_fds(struct chardev **cp, int in_fd, int out_fd, bool owns_fds)
{
	struct chardev *c = chardev_alloc(CD_FD);

	*cp = NULL;
	if (!c)
		return -ENOMEM;
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	c->owns_fds = owns_fds;
	*cp = c;
	return 0;
}

/*
 * Write to an fd that may be a pipe or tty: wait at most
 * CHARDEV_STDIO_WAIT_MS for room, then drop. Chunks of PIPE_BUF never
 * block once poll() reported POLLOUT. Caller holds c->lock.
 */
static void write_bounded(struct chardev *c, const uint8_t *p, size_t len)
{
	while (len) {
		struct pollfd pfd = {.fd = c->out_fd, .events = POLLOUT};
		size_t chunk = MIN(len, (size_t)PIPE_BUF);
		ssize_t n;
		int r;

		r = poll(&pfd, 1, c->stalled ? 0 : CHARDEV_STDIO_WAIT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (pfd.revents & (POLLERR | POLLNVAL))) {
			c->stalled = true;
			break;
		}
		c->stalled = false;
		n = write(c->out_fd, p, chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		c->st.written += (uint64_t)n;
		p += n;
		len -= (size_t)n;
	}
	c->st.dropped += len;
}

/* Regular files: plain blocking writes (a disk is slow, not stuck). */
static void write_file(struct chardev *c, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(c->out_fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		c->st.written += (uint64_t)n;
		p += n;
		len -= (size_t)n;
	}
	c->st.dropped += len;
}

/* Caller holds c->lock. */
static void drop_client(struct chardev *c)
{
	if (c->client_fd < 0)
		return;
	epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, c->client_fd, NULL);
	close(c->client_fd);
	c->client_fd = -1;
}

static void write_socket(struct chardev *c, const uint8_t *p, size_t len)
{
	while (len && c->client_fd >= 0) {
		ssize_t n =
			send(c->client_fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* Full socket buffer: the client is slow; drop. */
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				drop_client(c);
			break;
		}
		c->st.written += (uint64_t)n;
		p += n;
		len -= (size_t)n;
	}
	c->st.dropped += len;
}

ssize_t chardev_write(struct chardev *c, const void *buf, size_t len)
{
	if (!c)
		return -EINVAL;
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	pthread_mutex_lock(&c->lock);
	switch (c->type) {
	case CD_STDIO:
	case CD_FD:
		if (c->out_fd >= 0)
			write_bounded(c, buf, len);
		else
			c->st.dropped += len;
		break;
	case CD_FILE:
		write_file(c, buf, len);
		break;
	case CD_SOCKET:
		write_socket(c, buf, len);
		break;
	default:
		c->st.dropped += len;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return (ssize_t)len;
}

int chardev_input_fd(const struct chardev *c)
{
	if (!c)
		return -1;
	if (c->type == CD_SOCKET)
		return c->epoll_fd;
	/* After EOF the fd stays readable forever: polling it would spin
	 * the event loop (stdin from /dev/null, a closed pipe). */
	if ((c->type == CD_STDIO || c->type == CD_FD) &&
	    !__atomic_load_n(&c->in_eof, __ATOMIC_ACQUIRE))
		return c->in_fd;
	return -1;
}

/* Accept pending connections; extra clients are turned away. */
static void accept_clients(struct chardev *c)
{
	for (;;) {
		struct epoll_event ev;
		int fd = accept4(c->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (c->client_fd >= 0) {
			close(fd);
			continue;
		}
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		c->client_fd = fd;
		c->st.clients++;
	}
}

static ssize_t read_socket(struct chardev *c, void *buf, size_t len)
{
	ssize_t n;

	accept_clients(c);
	if (c->client_fd < 0)
		return 0;
	n = recv(c->client_fd, buf, len, MSG_DONTWAIT);
	if (n > 0)
		return n;
	if (n == 0 ||
	    (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		/* The client left; wait for the next one. */
		drop_client(c);
	}
	return 0;
}

static ssize_t read_fd(struct chardev *c, void *buf, size_t len)
{
	struct pollfd pfd = {.fd = c->in_fd, .events = POLLIN};
	ssize_t n;

	if (c->in_eof)
		return -EPIPE;
	/* poll first: stdin is shared and must not be made O_NONBLOCK. */
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	n = read(c->in_fd, buf, len);
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
	if (n == 0) {
		__atomic_store_n(&c->in_eof, true, __ATOMIC_RELEASE);
		return -EPIPE;
	}
	return n;
}

ssize_t chardev_read(struct chardev *c, void *buf, size_t len)
{
	ssize_t n;

	if (!c || (!buf && len))
		return -EINVAL;
	if (!len)
		return 0;
	pthread_mutex_lock(&c->lock);
	if (c->type == CD_SOCKET)
		n = read_socket(c, buf, len);
	else if ((c->type == CD_STDIO || c->type == CD_FD) && c->in_fd >= 0)
		n = read_fd(c, buf, len);
	else
		n = -EPIPE;
	if (n > 0)
		c->st.read += (uint64_t)n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void chardev_get_stats(struct chardev *c, struct chardev_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	pthread_mutex_unlock(&c->lock);
}

bool chardev_connected(struct chardev *c)
{
	bool ret;

	if (!c || c->type != CD_SOCKET)
		return c != NULL;
	pthread_mutex_lock(&c->lock);
	ret = c->client_fd >= 0;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

const char *chardev_kind(const struct chardev *c)
{
	static const char *const names[] = {
		[CD_NULL] = "null", [CD_STDIO] = "stdio",
		[CD_FILE] = "file", [CD_SOCKET] = "socket",
		[CD_FD] = "fd",
	};

	return c ? names[c->type] : "none";
}

void chardev_close(struct chardev *c)
{
	struct stat sb;

	if (!c)
		return;
	if (c->claimed_stdio) {
		tty_restore(c->tty_slot);
		pthread_mutex_lock(&tty_lock);
		stdio_in_use = false;
		pthread_mutex_unlock(&tty_lock);
	}
	if (c->client_fd >= 0)
		close(c->client_fd);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->epoll_fd >= 0)
		close(c->epoll_fd);
	/* Only our own socket: another process may have replaced it. */
	if (c->path && lstat(c->path, &sb) == 0 && sb.st_dev == c->sock_dev &&
	    sb.st_ino == c->sock_ino)
		unlink(c->path);
	if (c->owns_fds) {
		if (c->in_fd >= 0)
			close(c->in_fd);
		if (c->out_fd >= 0 && c->out_fd != c->in_fd)
			close(c->out_fd);
	}
	free(c->path);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
