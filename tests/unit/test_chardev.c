/* SPDX-License-Identifier: BSD-2-Clause */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "chardev.h"
#include "common.h"
#include "unit.h"

static char tmpdir[64];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, ms) == 1;
}

static void test_spec_errors(void)
{
	struct chardev *c = (struct chardev *)1;
	struct err err;

	CHECK_EQ(chardev_open(&c, "com1", 0, &err), -EINVAL);
	CHECK(c == NULL);
	CHECK(strstr(err.msg, "com1") != NULL);
	CHECK_EQ(chardev_open(&c, "file:", 0, &err), -EINVAL);
	CHECK(strstr(err.msg, "path") != NULL);
	CHECK_EQ(chardev_open(&c, "socket:", 0, &err), -EINVAL);
	CHECK_EQ(chardev_open(&c, "file:/nonexistent-dir/x", 0, &err),
		 -ENOENT);
	CHECK(strstr(err.msg, "/nonexistent-dir/x") != NULL);
	CHECK_EQ(chardev_open(&c, NULL, 0, NULL), -EINVAL);
}

static void test_null(void)
{
	struct chardev *c;
	struct chardev_stats st;
	char buf[4];

	CHECK_EQ(chardev_open(&c, "null", 0, NULL), 0);
	CHECK(!strcmp(chardev_kind(c), "null"));
	CHECK_EQ(chardev_write(c, "abc", 3), 3);
	CHECK_EQ(chardev_input_fd(c), -1);
	CHECK_EQ(chardev_read(c, buf, sizeof(buf)), -EPIPE);
	chardev_get_stats(c, &st);
	CHECK_EQ(st.dropped, 3);
	CHECK_EQ(st.written, 0);
	chardev_close(c);
}

static size_t slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

static void test_file(void)
{
	struct chardev *c;
	char spec[128], path[96], buf[64];

	snprintf(path, sizeof(path), "%s/console.log", tmpdir);
	snprintf(spec, sizeof(spec), "file:%s", path);
	CHECK_EQ(chardev_open(&c, spec, 0, NULL), 0);
	CHECK_EQ(chardev_write(c, "first\n", 6), 6);
	CHECK_EQ(chardev_input_fd(c), -1);
	chardev_close(c);
	CHECK_EQ(slurp(path, buf, sizeof(buf)), 6);
	/* file: truncates... */
	CHECK_EQ(chardev_open(&c, spec, 0, NULL), 0);
	CHECK_EQ(chardev_write(c, "second\n", 7), 7);
	chardev_close(c);
	CHECK_EQ(slurp(path, buf, sizeof(buf)), 7);
	CHECK(!strcmp(buf, "second\n"));
	/* ...append: does not. */
	snprintf(spec, sizeof(spec), "append:%s", path);
	CHECK_EQ(chardev_open(&c, spec, 0, NULL), 0);
	CHECK(!strcmp(chardev_kind(c), "file"));
	CHECK_EQ(chardev_write(c, "third\n", 6), 6);
	chardev_close(c);
	CHECK_EQ(slurp(path, buf, sizeof(buf)), 13);
	CHECK(!strcmp(buf, "second\nthird\n"));
	unlink(path);
}

static int connect_to(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Service the chardev the way the VMM's event loop would. */
static ssize_t pump(struct chardev *c, char *buf, size_t len)
{
	if (!readable(chardev_input_fd(c), 1000))
		return -ETIMEDOUT;
	return chardev_read(c, buf, len);
}

static void test_socket(void)
{
	struct chardev *c;
	struct chardev_stats st;
	char spec[128], path[96], buf[64];
	struct err err;
	struct stat sb;
	int cl, cl2, infd;
	static char big[1 << 20];
	int64_t t0;

	snprintf(path, sizeof(path), "%s/console.sock", tmpdir);
	snprintf(spec, sizeof(spec), "socket:%s", path);
	CHECK_EQ(chardev_open(&c, spec, 0, &err), 0);
	CHECK_EQ(stat(path, &sb), 0);
	CHECK(S_ISSOCK(sb.st_mode));
	infd = chardev_input_fd(c);
	CHECK(infd >= 0);
	/* Nobody connected: output is dropped, not queued. */
	CHECK_EQ(chardev_write(c, "lost", 4), 4);
	CHECK(!readable(infd, 0));

	cl = connect_to(path);
	CHECK(cl >= 0);
	CHECK_EQ(pump(c, buf, sizeof(buf)), 0); /* the accept */
	CHECK_EQ(chardev_input_fd(c), infd);
	CHECK_EQ(chardev_write(c, "hi", 2), 2);
	CHECK(readable(cl, 1000));
	CHECK_EQ(read(cl, buf, sizeof(buf)), 2);
	CHECK(!memcmp(buf, "hi", 2));
	CHECK_EQ(write(cl, "typed", 5), 5);
	CHECK_EQ(pump(c, buf, sizeof(buf)), 5);
	CHECK(!memcmp(buf, "typed", 5));

	/* A second client is turned away. */
	cl2 = connect_to(path);
	CHECK(cl2 >= 0);
	CHECK_EQ(pump(c, buf, sizeof(buf)), 0);
	CHECK(readable(cl2, 1000));
	CHECK_EQ(read(cl2, buf, sizeof(buf)), 0);
	close(cl2);

	/* A client that does not read: output never blocks the caller. */
	t0 = now_ms();
	for (int i = 0; i < 8; i++)
		CHECK_EQ(chardev_write(c, big, sizeof(big)), sizeof(big));
	CHECK(now_ms() - t0 < 2000);
	chardev_get_stats(c, &st);
	CHECK(st.dropped > 4);
	CHECK(st.written > 2);
	CHECK_EQ(st.read, 5);
	CHECK_EQ(st.clients, 1);

	/* The client leaves; the next one is served. */
	close(cl);
	CHECK_EQ(pump(c, buf, sizeof(buf)), 0);
	CHECK(!readable(infd, 0));
	cl = connect_to(path);
	CHECK(cl >= 0);
	CHECK_EQ(pump(c, buf, sizeof(buf)), 0);
	CHECK_EQ(chardev_write(c, "again", 5), 5);
	CHECK(readable(cl, 1000));
	CHECK_EQ(read(cl, buf, sizeof(buf)), 5);
	close(cl);
	chardev_close(c);
	CHECK(stat(path, &sb) < 0); /* path removed */

	/* Never replace something that is not a socket. */
	CHECK_EQ(close(open(path, O_CREAT | O_WRONLY, 0600)), 0);
	CHECK_EQ(chardev_open(&c, spec, 0, &err), -EEXIST);
	CHECK(strstr(err.msg, "not a socket") != NULL);
	unlink(path);
}

/* A bound, listening UNIX socket at @path (or just bound: stale). */
static int listen_at(const char *path, bool live)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(fd, 1) < 0) {
		close(fd);
		return -1;
	}
	if (!live) {
		close(fd); /* what a killed process leaves behind */
		return 0;
	}
	return fd;
}

/* Someone else's live socket is never taken over; a stale one is. */
static void test_socket_in_use(void)
{
	char spec[128], path[96];
	struct err err = {0};
	struct chardev *c = NULL;
	struct stat sb, mine;
	int srv, cl, i, fill[4];

	snprintf(path, sizeof(path), "%s/busy.sock", tmpdir);
	snprintf(spec, sizeof(spec), "socket:%s", path);
	srv = listen_at(path, true);
	CHECK(srv >= 0);
	CHECK(stat(path, &mine) == 0);
	CHECK_EQ(chardev_open(&c, spec, 0, &err), -EADDRINUSE);
	CHECK(c == NULL);
	CHECK(strstr(err.msg, "in use") != NULL);
	CHECK(strstr(err.msg, path) != NULL);
	/* still the other process's socket, still answering */
	CHECK(stat(path, &sb) == 0 && sb.st_ino == mine.st_ino);
	cl = connect_to(path);
	CHECK(cl >= 0);
	close(cl);
	/* with its backlog full it is just as live */
	for (i = 0; i < 4; i++) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		fill[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
		if (connect(fill[i], (struct sockaddr *)&sun, sizeof(sun)))
			CHECK(errno == EAGAIN);
	}
	CHECK_EQ(chardev_open(&c, spec, 0, &err), -EADDRINUSE);
	CHECK(stat(path, &sb) == 0 && sb.st_ino == mine.st_ino);
	for (i = 0; i < 4; i++)
		close(fill[i]);
	close(srv);

	/* now stale (nobody listens): replaced, and ours answers */
	CHECK_EQ(connect_to(path), -1);
	CHECK_EQ(chardev_open(&c, spec, 0, &err), 0);
	cl = connect_to(path);
	CHECK(cl >= 0);
	close(cl);
	/* replaced behind our back: close leaves the newcomer alone */
	unlink(path);
	srv = listen_at(path, true);
	CHECK(srv >= 0);
	chardev_close(c);
	cl = connect_to(path);
	CHECK(cl >= 0);
	close(cl);
	close(srv);
	unlink(path);
	/* a stale socket from a killed khyve */
	CHECK_EQ(listen_at(path, false), 0);
	CHECK_EQ(chardev_open(&c, spec, 0, &err), 0);
	chardev_close(c);
	CHECK(stat(path, &sb) < 0 && errno == ENOENT);
}

static void test_fd_pipe(void)
{
	struct chardev *c;
	struct chardev_stats st;
	int in[2], out[2];
	char buf[70000];
	int64_t t0, t1;

	CHECK_EQ(pipe(in), 0);
	CHECK_EQ(pipe(out), 0);
	CHECK_EQ(chardev_open_fds(&c, in[0], out[1], true), 0);
	CHECK(!strcmp(chardev_kind(c), "fd"));
	CHECK_EQ(chardev_input_fd(c), in[0]);
	CHECK_EQ(chardev_read(c, buf, sizeof(buf)), 0); /* nothing yet */
	CHECK_EQ(write(in[1], "key", 3), 3);
	CHECK_EQ(chardev_read(c, buf, sizeof(buf)), 3);
	close(in[1]);
	CHECK_EQ(chardev_read(c, buf, sizeof(buf)), -EPIPE); /* EOF */
	/* Nothing more to poll: a readable-at-EOF fd would spin the loop. */
	CHECK_EQ(chardev_input_fd(c), -1);

	/* Fill the pipe; the stalled reader costs one bounded wait. */
	memset(buf, 'x', sizeof(buf));
	t0 = now_ms();
	CHECK_EQ(chardev_write(c, buf, sizeof(buf)), sizeof(buf));
	t1 = now_ms();
	CHECK(t1 - t0 >= CHARDEV_STDIO_WAIT_MS / 2);
	CHECK(t1 - t0 < 20 * CHARDEV_STDIO_WAIT_MS);
	for (int i = 0; i < 50; i++)
		chardev_write(c, buf, 100);
	CHECK(now_ms() - t1 < CHARDEV_STDIO_WAIT_MS); /* no more waiting */
	chardev_get_stats(c, &st);
	CHECK_EQ(st.written + st.dropped, sizeof(buf) + 5000);
	CHECK(st.written >= 4096);
	/* Drained: output flows again. */
	while (readable(out[0], 0))
		(void)!read(out[0], buf, sizeof(buf));
	CHECK_EQ(chardev_write(c, "ok", 2), 2);
	chardev_get_stats(c, &st);
	CHECK_EQ(st.written + st.dropped, sizeof(buf) + 5002);
	CHECK_EQ(read(out[0], buf, sizeof(buf)), 2);
	chardev_close(c);
	close(out[0]);
}

static void test_stdio_raw_restore(void)
{
	struct chardev *c, *c2;
	struct termios tio;
	struct err err;
	int saved_in, m, s;

	m = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK(m >= 0);
	if (m < 0)
		return;
	CHECK_EQ(grantpt(m), 0);
	CHECK_EQ(unlockpt(m), 0);
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	CHECK(s >= 0);
	saved_in = dup(STDIN_FILENO);
	CHECK_EQ(dup2(s, STDIN_FILENO), STDIN_FILENO);

	CHECK_EQ(tcgetattr(s, &tio), 0);
	CHECK(tio.c_lflag & ICANON);
	CHECK_EQ(chardev_open(&c, "stdio", 0, &err), 0);
	CHECK_EQ(tcgetattr(s, &tio), 0);
	CHECK(!(tio.c_lflag & (ICANON | ECHO | ISIG)));
	CHECK_EQ(chardev_open(&c2, "stdio", 0, &err), -EBUSY);
	/* Typed input reaches the reader byte by byte (raw mode). */
	CHECK_EQ(write(m, "q", 1), 1);
	{
		char b[4];

		CHECK(readable(chardev_input_fd(c), 1000));
		CHECK_EQ(chardev_read(c, b, sizeof(b)), 1);
		CHECK_EQ(b[0], 'q');
	}
	/* The signal-path restore puts the terminal back... */
	chardev_restore_all();
	CHECK_EQ(tcgetattr(s, &tio), 0);
	CHECK(tio.c_lflag & ICANON);
	chardev_close(c);
	/* ...and so does close. */
	CHECK_EQ(chardev_open(&c, "stdio", 0, &err), 0);
	CHECK_EQ(tcgetattr(s, &tio), 0);
	CHECK(!(tio.c_lflag & ICANON));
	chardev_close(c);
	CHECK_EQ(tcgetattr(s, &tio), 0);
	CHECK(tio.c_lflag & ICANON);

	dup2(saved_in, STDIN_FILENO);
	close(saved_in);
	close(s);
	close(m);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/khyve-chardev-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_spec_errors);
	RUN(test_null);
	RUN(test_file);
	RUN(test_socket);
	RUN(test_socket_in_use);
	RUN(test_fd_pipe);
	RUN(test_stdio_raw_restore);
	rmdir(tmpdir);
	return unit_done();
}
