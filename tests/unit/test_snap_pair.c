/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A save commits its state and RAM files as one pair or not at all
 * (snap_ram_pair_commit, docs/snapshot-format.md "Integrity and
 * atomicity"), and a reader refuses two files that were not written
 * together, or any snapshot path that is not a regular file.
 *
 * Every step of a save is made to fail (snap_fault) after a good save to
 * the same path: the previous pair must be byte for byte what it was, load
 * and verify, and nothing else may be left in the directory.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "guest_mem.h"
#include "snap.h"
#include "snap_fault.h"
#include "snap_ram.h"
#include "snap_ram_live.h"
#include "snap_ram_restore.h"
#include "unit.h"
#include "unit_tmp.h"

#define RAM (16 * MiB)

/* A few recognisable pages that differ per @seed. */
static void mem_fill(struct guest_mem *m, uint8_t seed)
{
	for (uint64_t pg = 0; pg < m->ram_size / PAGE_SIZE; pg += 97)
		memset(m->base + pg * PAGE_SIZE, seed, 64);
}

/*
 * One whole save of @m to @state, as vm_snapshot_save does it; @give_up:
 * the caller aborts after writing everything (as on a device error).
 */
static int save(const struct guest_mem *m, const char *state, uint8_t seed,
		bool give_up, struct err *err)
{
	char ram_path[200];
	uint8_t id[SNAP_SAVE_ID_LEN];
	struct snap_host_info host;
	struct snap_ram_live *lv = NULL;
	struct snap_ram_info info = {.hashes = NULL};
	struct snap_writer *w = NULL;
	int rc;

	snap_fault_begin_save();
	snprintf(ram_path, sizeof(ram_path), "%s.ram", state);
	snap_host_info_probe(&host, "unit");
	rc = snap_save_id_new(id);
	if (!rc)
		rc = snap_ram_live_open(m, ram_path, id, &lv);
	if (!rc)
		rc = snap_ram_live_copy(lv, NULL, NULL);
	if (!rc)
		rc = snap_ram_live_info(lv, &info);
	if (!rc)
		rc = snap_writer_open(&w, state, &host, id);
	if (!rc)
		rc = snap_write_blob(w, "config", 0, 1, 0, &seed, 1);
	if (!rc)
		rc = snap_ram_write_section(w, &info);
	snap_ram_info_free(&info);
	if (rc || give_up) {
		snprintf(err->msg, sizeof(err->msg), "%s",
			 w && snap_writer_error(w)[0] ? snap_writer_error(w)
						      : "given up");
		snap_writer_abort(w);
		snap_ram_live_abort(lv);
		return rc ? rc : -ECANCELED;
	}
	return snap_ram_pair_commit(lv, w, SNAP_RAM_FSYNC, err);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	*len = 0;
	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	b = malloc((size_t)st.st_size + 1);
	if (b && pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*len = b ? (size_t)st.st_size : 0;
	return b;
}

/* Names in the directory, sorted, space separated. */
static void listing(char *out, size_t len)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	size_t used = 0;

	out[0] = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") &&
		    strcmp(names[i]->d_name, ".."))
			used += (size_t)snprintf(out + used, len - used, "%s%s",
						 used ? " " : "",
						 names[i]->d_name);
		free(names[i]);
	}
	free(names);
}

/* The pair at @state loads: every checksum, the RAM file's id, hashes. */
static int pair_ok(const char *state, struct err *err)
{
	struct snap_reader *r = NULL;
	struct snap_ram_info info = {.hashes = NULL};
	char ram[256];
	int rc = snap_reader_open(&r, state, err);

	if (!rc)
		rc = snap_ram_read_section(r, &info, err);
	if (!rc)
		rc = snap_ram_resolve(state, info.file, ram, sizeof(ram));
	if (!rc)
		rc = snap_ram_check_file(ram, &info, err);
	if (!rc)
		rc = snap_ram_verify(ram, &info, err);
	snap_ram_info_free(&info);
	snap_reader_close(r);
	return rc;
}

static const struct {
	enum snap_fault_step step;
	int rc;
} steps[] = {
	{SNAP_FAULT_RAM_WRITE, -ENOSPC},
	{SNAP_FAULT_RAM_COMMIT, -EIO},
	{SNAP_FAULT_STATE_WRITE, -ENOSPC},
	{SNAP_FAULT_STATE_COMMIT, -EIO},
};

static void test_failed_save_keeps_previous_pair(void)
{
	struct guest_mem m;
	struct err err = {0};
	char state[160], ram[160];
	uint8_t *st0, *ram0, *st1, *ram1;
	size_t st0n, ram0n, st1n, ram1n;
	char ls[512];

	snprintf(state, sizeof(state), "%s", tpath("s.snap"));
	snprintf(ram, sizeof(ram), "%s", tpath("s.snap.ram"));
	CHECK_EQ(mem_new(&m, RAM), 0);
	mem_fill(&m, 1);
	CHECK_EQ(save(&m, state, 1, false, &err), 0);
	CHECK_EQ(pair_ok(state, &err), 0);
	st0 = slurp(state, &st0n);
	ram0 = slurp(ram, &ram0n);
	CHECK(st0 && ram0 && ram0n == RAM + SNAP_RAM_TRAILER);
	mem_fill(&m, 2); /* the next save would differ */
	for (unsigned i = 0; i <= ARRAY_SIZE(steps); i++) {
		bool give_up = i == ARRAY_SIZE(steps); /* a device refuses */

		snap_fault_arm(give_up ? SNAP_FAULT_NONE : steps[i].step, 1);
		memset(&err, 0, sizeof(err));
		CHECK_EQ(save(&m, state, 2, give_up, &err),
			 give_up ? -ECANCELED : steps[i].rc);
		/* The commit says what failed (writes: the code alone). */
		if (!give_up && (steps[i].step == SNAP_FAULT_RAM_COMMIT ||
				 steps[i].step == SNAP_FAULT_STATE_COMMIT))
			CHECK(strstr(err.msg, "injected fault"));
		snap_fault_arm(SNAP_FAULT_NONE, 1);
		/* Exactly the previous pair, and nothing else. */
		listing(ls, sizeof(ls));
		CHECK(!strcmp(ls, "s.snap s.snap.ram"));
		if (strcmp(ls, "s.snap s.snap.ram"))
			fprintf(stderr, "  step %s left: %s\n",
				snap_fault_name(give_up ? SNAP_FAULT_NONE
							: steps[i].step),
				ls);
		st1 = slurp(state, &st1n);
		ram1 = slurp(ram, &ram1n);
		CHECK(st1 && st1n == st0n && !memcmp(st1, st0, st0n));
		CHECK(ram1 && ram1n == ram0n && !memcmp(ram1, ram0, ram0n));
		free(st1);
		free(ram1);
		CHECK_EQ(pair_ok(state, &err), 0);
	}
	/* A failure at a new path leaves nothing at all. */
	for (unsigned i = 0; i < ARRAY_SIZE(steps); i++) {
		snap_fault_arm(steps[i].step, 1);
		CHECK_EQ(save(&m, tpath("new.snap"), 3, false, &err),
			 steps[i].rc);
		snap_fault_arm(SNAP_FAULT_NONE, 1);
		listing(ls, sizeof(ls));
		CHECK(!strcmp(ls, "s.snap s.snap.ram"));
	}
	/* Disarmed, the same save succeeds and replaces the pair. */
	CHECK_EQ(save(&m, state, 2, false, &err), 0);
	CHECK_EQ(pair_ok(state, &err), 0);
	listing(ls, sizeof(ls));
	CHECK(!strcmp(ls, "s.snap s.snap.ram"));
	if (strcmp(ls, "s.snap s.snap.ram"))
		fprintf(stderr, "  after a good save: %s\n", ls);
	st1 = slurp(state, &st1n);
	CHECK(st1 && (st1n != st0n || memcmp(st1, st0, st0n)));
	free(st1);
	free(st0);
	free(ram0);
	unlink(state);
	unlink(ram);
	munmap(m.base, m.ram_size);
}

/*
 * The rename of the state file fails and so does putting the old RAM file
 * back: the two names now hold different saves, which a reader refuses,
 * and the previous RAM file is kept (its name in the message).
 */
static void test_failed_rollback_is_refused(void)
{
	struct guest_mem m;
	struct err err = {0};
	char state[160], ram[160], ls[512], *old;

	snprintf(state, sizeof(state), "%s", tpath("s.snap"));
	snprintf(ram, sizeof(ram), "%s", tpath("s.snap.ram"));
	CHECK_EQ(mem_new(&m, RAM), 0);
	mem_fill(&m, 1);
	CHECK_EQ(save(&m, state, 1, false, &err), 0);
	snap_fault_arm(SNAP_FAULT_ROLLBACK, 1);
	CHECK_EQ(save(&m, state, 2, false, &err), -EIO);
	snap_fault_arm(SNAP_FAULT_NONE, 1);
	CHECK(strstr(err.msg, "different saves"));
	old = strstr(err.msg, "the previous RAM file is ");
	CHECK(old != NULL);
	CHECK_EQ(pair_ok(state, &err), -EINVAL);
	CHECK(strstr(err.msg, "s.snap.ram: written by save "));
	CHECK(strstr(err.msg, "come from different saves"));
	listing(ls, sizeof(ls));
	CHECK(!strncmp(ls, ".s.snap.ram.old-", 16));
	/* Putting the kept file back by hand restores the pair. */
	if (old) {
		old += strlen("the previous RAM file is ");
		CHECK_EQ(rename(old, ram), 0);
		CHECK_EQ(pair_ok(state, &err), 0);
	}
	listing(ls, sizeof(ls));
	CHECK(!strcmp(ls, "s.snap s.snap.ram"));
	unlink(state);
	unlink(ram);
	munmap(m.base, m.ram_size);
}

/* Two complete saves; one's RAM file beside the other's state file. */
static void test_mismatched_pair_refused(void)
{
	struct guest_mem m;
	struct err err = {0};
	struct snap_ram_info info = {.hashes = NULL};
	uint8_t *b, *t;
	size_t n;
	int fd;

	CHECK_EQ(mem_new(&m, RAM), 0);
	mem_fill(&m, 1);
	CHECK_EQ(save(&m, tpath("a.snap"), 1, false, &err), 0);
	CHECK_EQ(save(&m, tpath("b.snap"), 1, false, &err), 0);
	CHECK_EQ(pair_ok(tpath("a.snap"), &err), 0);
	/* Same guest memory, so same chunk hashes: only the id tells. */
	CHECK_EQ(rename(tpath("b.snap.ram"), tpath("a.snap.ram")), 0);
	CHECK_EQ(pair_ok(tpath("a.snap"), &err), -EINVAL);
	CHECK(strstr(err.msg, "come from different saves"));
	/* The mapped restore refuses it the same way, cheaply. */
	{
		struct snap_reader *r = NULL;

		CHECK_EQ(snap_reader_open(&r, tpath("a.snap"), &err), 0);
		CHECK_EQ(snap_ram_read_section(r, &info, &err), 0);
		CHECK(info.has_id);
		CHECK_EQ(snap_ram_map(&m, tpath("a.snap.ram"), &info,
					   NULL, &err),
			 -EINVAL);
		CHECK(strstr(err.msg, "different saves"));
		snap_reader_close(r);
	}
	/* No trailer at all (a RAM file without an id). */
	b = slurp(tpath("a.snap.ram"), &n);
	CHECK(b && n == RAM + SNAP_RAM_TRAILER);
	fd = open(tpath("a.snap.ram"), O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, b, RAM) == (ssize_t)RAM);
	close(fd);
	CHECK_EQ(snap_ram_check_file(tpath("a.snap.ram"), &info, &err),
		 -EINVAL);
	CHECK(strstr(err.msg, "has no save id"));
	/* A damaged trailer. */
	t = b + RAM;
	t[40] ^= 1;
	fd = open(tpath("a.snap.ram"), O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, b, n) == (ssize_t)n);
	close(fd);
	CHECK_EQ(snap_ram_check_file(tpath("a.snap.ram"), &info, &err),
		 -EINVAL);
	CHECK(strstr(err.msg, "damaged RAM file trailer"));
	/* A RAM file that is too short (truncated). */
	CHECK_EQ(truncate(tpath("a.snap.ram"), RAM - PAGE_SIZE), 0);
	CHECK_EQ(snap_ram_check_file(tpath("a.snap.ram"), &info, &err),
		 -EINVAL);
	CHECK(strstr(err.msg, "size"));
	free(b);
	snap_ram_info_free(&info);
	unlink(tpath("a.snap"));
	unlink(tpath("a.snap.ram"));
	unlink(tpath("b.snap"));
	munmap(m.base, m.ram_size);
}

/* A state file without an id (format 1.0, or a NULL save id) still
 * pairs with a bare RAM file, checked by size as before. */
static void test_pair_without_id(void)
{
	struct guest_mem m;
	struct err err = {0};
	struct snap_host_info host;
	struct snap_ram_info info = {.hashes = NULL};
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;

	CHECK_EQ(mem_new(&m, RAM), 0);
	mem_fill(&m, 5);
	CHECK_EQ(snap_ram_save(&m, tpath("o.snap.ram"), 0, &info, NULL), 0);
	CHECK(!info.has_id);
	snap_host_info_probe(&host, NULL);
	CHECK_EQ(snap_writer_open(&w, tpath("o.snap"), &host, NULL), 0);
	CHECK_EQ(snap_ram_write_section(w, &info), 0);
	CHECK_EQ(snap_writer_commit(w), 0);
	snap_ram_info_free(&info);
	CHECK_EQ(pair_ok(tpath("o.snap"), &err), 0);
	CHECK_EQ(snap_reader_open(&r, tpath("o.snap"), &err), 0);
	CHECK(r && !snap_reader_header(r)->has_save_id);
	CHECK_EQ(snap_ram_read_section(r, &info, &err), 0);
	CHECK_EQ(snap_ram_map(&m, tpath("o.snap.ram"), &info, NULL,
				   &err),
		 0);
	snap_ram_info_free(&info);
	snap_reader_close(r);
	unlink(tpath("o.snap"));
	unlink(tpath("o.snap.ram"));
	munmap(m.base, m.ram_size);
}

/*
 * FIFOs, devices and symlinks at the snapshot paths: refused at once
 * (an open of a FIFO without O_NONBLOCK would wait for a writer forever).
 */
static void test_not_regular_files(void)
{
	struct guest_mem m;
	struct err err = {0};
	struct snap_reader *r = NULL;
	struct snap_ram_info info = {.hashes = NULL};
	char ram[160];
	uint64_t t0;

	snprintf(ram, sizeof(ram), "%s", tpath("f.snap.ram"));
	CHECK_EQ(mem_new(&m, RAM), 0);
	CHECK_EQ(save(&m, tpath("f.snap"), 1, false, &err), 0);
	CHECK_EQ(snap_reader_open(&r, tpath("f.snap"), &err), 0);
	CHECK_EQ(snap_ram_read_section(r, &info, &err), 0);
	snap_reader_close(r);
	r = NULL;
	t0 = unit_now_ms();
	CHECK_EQ(unlink(ram), 0);
	CHECK_EQ(mkfifo(ram, 0600), 0);
	CHECK_EQ(snap_ram_check_file(ram, &info, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a regular file (a FIFO)"));
	CHECK_EQ(snap_ram_map(&m, ram, &info, NULL, &err), -EINVAL);
	CHECK_EQ(snap_ram_verify(ram, &info, &err), -EINVAL);
	CHECK_EQ(unlink(ram), 0);
	CHECK_EQ(symlink("/dev/null", ram), 0);
	CHECK_EQ(snap_ram_check_file(ram, &info, &err), -ELOOP);
	CHECK(strstr(err.msg, "symbolic link"));
	CHECK_EQ(unlink(ram), 0);
	/* The state file itself. */
	CHECK_EQ(rename(tpath("f.snap"), tpath("g.snap")), 0);
	CHECK_EQ(mkfifo(tpath("f.snap"), 0600), 0);
	CHECK_EQ(snap_reader_open(&r, tpath("f.snap"), &err), -EINVAL);
	CHECK(strstr(err.msg, "a FIFO"));
	CHECK_EQ(unlink(tpath("f.snap")), 0);
	CHECK_EQ(symlink(tpath("g.snap"), tpath("f.snap")), 0);
	CHECK_EQ(snap_reader_open(&r, tpath("f.snap"), &err), -ELOOP);
	CHECK_EQ(unlink(tpath("f.snap")), 0);
	CHECK_EQ(symlink("/dev/null", tpath("f.snap")), 0);
	CHECK_EQ(snap_reader_open(&r, tpath("f.snap"), &err), -ELOOP);
	CHECK_EQ(unlink(tpath("f.snap")), 0);
	CHECK(r == NULL);
	/* None of that waited. */
	CHECK(unit_now_ms() - t0 < 10000);
	unlink(tpath("g.snap"));
	snap_ram_info_free(&info);
	munmap(m.base, m.ram_size);
}

/* A "ram" section naming anything but a bare name beside it. */
static void test_ram_name_must_be_bare(void)
{
	static const char *const bad[] = {"/etc/passwd", "../x.ram",
					  "sub/x.ram", "..", "."};
	struct err err = {0};
	struct snap_ram_info info = {.hashes = NULL};

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		size_t nlen = strlen(bad[i]);
		uint8_t blob[24 + 16 + 8];

		memset(blob, 0, sizeof(blob));
		put_le64(blob, 2 * MiB);
		put_le64(blob + 8, 2 * MiB);
		put_le32(blob + 16, 1);
		put_le16(blob + 20, (uint16_t)nlen);
		memcpy(blob + 24, bad[i], nlen);
		CHECK_EQ(snap_ram_decode(blob, 24 + nlen + 8, &info, "h.snap",
					 &err),
			 -EPROTO);
		CHECK(strstr(err.msg, "not a bare file name"));
		snap_ram_info_free(&info);
	}
}

int main(void)
{
	if (tdir_make("pair"))
		return 1;
	RUN(test_failed_save_keeps_previous_pair);
	RUN(test_failed_rollback_is_refused);
	RUN(test_mismatched_pair_refused);
	RUN(test_pair_without_id);
	RUN(test_not_regular_files);
	RUN(test_ram_name_must_be_bare);
	tdir_remove();
	return unit_done();
}
