/* SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <string.h>

#include "err.h"
#include "unit.h"

static void test_set(void)
{
	struct err e = {0};

	CHECK_EQ(err_set(&e, -ENOENT, "disk %s: gone", "x.img"), -ENOENT);
	CHECK_EQ(e.code, -ENOENT);
	CHECK(!strcmp(e.msg, "disk x.img: gone"));
	err_clear(&e);
	CHECK_EQ(e.code, 0);
	CHECK(!strcmp(e.msg, ""));
}

static void test_null(void)
{
	CHECK_EQ(err_set(NULL, -EINVAL, "ignored %d", 1), -EINVAL);
	errno = EACCES;
	CHECK_EQ(err_sys(NULL, "ignored"), -EACCES);
	err_prefix(NULL, "vCPU %d: ", 0);
	err_clear(NULL);
}

static void test_sys(void)
{
	struct err e = {0};

	errno = ENOENT;
	CHECK_EQ(err_sys(&e, "cannot open %s", "x.img"), -ENOENT);
	CHECK_EQ(e.code, -ENOENT);
	CHECK(!strcmp(e.msg, "cannot open x.img: No such file or directory"));
	errno = 0;
	CHECK_EQ(err_sys(&e, "odd"), -EIO);
}

static void test_prefix(void)
{
	struct err e = {0};

	err_set(&e, -EINVAL, "bad MSR");
	err_prefix(&e, "vCPU %d: ", 0);
	CHECK(!strcmp(e.msg, "vCPU 0: bad MSR"));
	CHECK_EQ(e.code, -EINVAL);
	err_prefix(&e, "restore: ");
	CHECK(!strcmp(e.msg, "restore: vCPU 0: bad MSR"));
	CHECK_EQ(e.code, -EINVAL);

	/* On an empty message the prefix alone remains, code kept. */
	err_clear(&e);
	e.code = -EIO;
	err_prefix(&e, "vCPU %d", 1);
	CHECK(!strcmp(e.msg, "vCPU 1"));
	CHECK_EQ(e.code, -EIO);
}

static void test_truncation(void)
{
	struct err e = {0};
	char big[2 * ERR_MSG_MAX];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_EQ(err_set(&e, -E2BIG, "%s", big), -E2BIG);
	CHECK_EQ(strlen(e.msg), ERR_MSG_MAX - 1);
	CHECK_EQ(e.code, -E2BIG);

	/* A prefix on a full message keeps the prefix, cuts the tail. */
	err_prefix(&e, "ctx: ");
	CHECK_EQ(strlen(e.msg), ERR_MSG_MAX - 1);
	CHECK(!strncmp(e.msg, "ctx: aaa", 8));
	CHECK_EQ(e.code, -E2BIG);

	/* A prefix longer than the whole buffer. */
	err_prefix(&e, "%s", big);
	CHECK_EQ(strlen(e.msg), ERR_MSG_MAX - 1);
	CHECK(e.msg[0] == 'a');

	errno = EPERM;
	CHECK_EQ(err_sys(&e, "%s", big), -EPERM);
	CHECK_EQ(strlen(e.msg), ERR_MSG_MAX - 1);
}

static void test_msg(void)
{
	struct err e = {0};

	e.code = -ENOENT;
	CHECK(!strcmp(err_msg(&e), "No such file or directory"));
	err_set(&e, -ENOENT, "x");
	CHECK(!strcmp(err_msg(&e), "x"));
}

int main(void)
{
	RUN(test_set);
	RUN(test_null);
	RUN(test_sys);
	RUN(test_prefix);
	RUN(test_truncation);
	RUN(test_msg);
	return unit_done();
}
