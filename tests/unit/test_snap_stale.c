/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Leftovers of killed saves (snap_stale.h): the next save to a path
 * removes the temporaries and RAM file second names nobody holds, and
 * never one a live save holds, nor anything else.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snap_file.h"
#include "snap_stale.h"
#include "unit.h"
#include "unit_tmp.h"

static void touch(const char *name)
{
	int fd = open(tpath(name), O_CREAT | O_WRONLY | O_TRUNC, 0600);

	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
}

static bool exists(const char *name)
{
	struct stat st;

	return !lstat(tpath(name), &st);
}

static void test_sweep_dead_only(void)
{
	struct snap_tmpfile live;
	char tmp[160] = "";
	int fd;

	touch(".s.snap.tmp-AbC123");	     /* dead: swept */
	touch(".s.snap.tmp-AbC12");	     /* not mkostemp's length */
	touch(".s.snap.tmp-AbC1234");	     /* nor this */
	touch(".s.snap.ram.tmp-xyz789");     /* another file's: kept */
	touch(".other.tmp-AbC123");	     /* another file's: kept */
	touch("s.snap");		     /* the destination: kept */
	CHECK(!symlink("s.snap", tpath(".s.snap.tmp-LiNk00"))); /* no */
	/* one a live save holds */
	touch(".s.snap.tmp-HeLd00");
	fd = open(tpath(".s.snap.tmp-HeLd00"), O_RDONLY);
	CHECK(fd >= 0 && !flock(fd, LOCK_EX));

	CHECK_EQ(snap_tmpfile_open(&live, tpath("s.snap")), 0);
	/* a copy: live.tmp is freed by snap_tmpfile_discard below */
	if (live.tmp)
		snprintf(tmp, sizeof(tmp), "%s", strrchr(live.tmp, '/') + 1);
	CHECK(!exists(".s.snap.tmp-AbC123"));
	CHECK(exists(".s.snap.tmp-AbC12") && exists(".s.snap.tmp-AbC1234"));
	CHECK(exists(".s.snap.ram.tmp-xyz789") && exists(".other.tmp-AbC123"));
	CHECK(exists("s.snap") && exists(".s.snap.tmp-LiNk00"));
	CHECK(exists(".s.snap.tmp-HeLd00"));
	CHECK(exists(tmp));
	/* a second save while the first is live leaves it alone */
	CHECK_EQ(snap_stale_sweep(dir, ".s.snap.tmp-", 6), 0u);
	CHECK(exists(tmp));
	close(fd); /* its holder died: now it goes */
	CHECK_EQ(snap_stale_sweep(dir, ".s.snap.tmp-", 6), 1u);
	CHECK(!exists(".s.snap.tmp-HeLd00"));
	snap_tmpfile_discard(&live);
	CHECK(!exists(tmp));
}

int main(void)
{
	if (tdir_make("stale"))
		return 1;
	RUN(test_sweep_dead_only);
	tdir_remove();
	return unit_done();
}
