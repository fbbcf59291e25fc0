/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Incremental snapshot chains (src/snap/snap_chain.c), without KVM: a fake
 * guest RAM is saved full, changed five times (pages written, pages that
 * become zero, pages left as holes) with an increment after each change,
 * and the chain must give back exactly that RAM - eager, mapped and merged
 * (byte for byte the RAM file of a full save of the same RAM) - and must
 * refuse a missing, changed, reordered or truncated link.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "guest_mem.h"
#include "snap.h"
#include "snap_chain.h"
#include "snap_inspect.h"
#include "snap_ram.h"
#include "snap_ram_live.h"
#include "unit.h"
#include "unit_tmp.h"

#define RAM    (64 * MiB)
#define NPAGES (RAM / PAGE_SIZE)
#define WORDS  (NPAGES / 64)

/* What a save records of the snapshot it wrote, for its child. */
struct saved {
	uint8_t id[SNAP_SAVE_ID_LEN];
	uint64_t hash;
	uint32_t depth;
	uint64_t *hashes;
};

/*
 * Save @m to @name as vm_snapshot.c does: the full RAM, or (@parent) only
 * the pages of @changed with the parent's hashes for untouched chunks and
 * a "parent" section naming it.
 */
static int save(const struct guest_mem *m, const char *name,
		const char *parent_name, const struct saved *parent,
		const uint64_t *changed, struct saved *out)
{
	struct snap_host_info host;
	struct snap_ram_live *lv = NULL;
	struct snap_writer *w = NULL;
	struct snap_ram_info info = {0};
	struct snap_chain_parent par = {0};
	char ram[256];
	struct err e = {0};
	int rc;

	snap_host_info_probe(&host, "unit");
	rc = snap_save_id_new(out->id);
	if (!rc)
		rc = snap_ram_default_path(tpath(name), ram, sizeof(ram));
	if (!rc)
		rc = snap_ram_live_open(m, ram, out->id, &lv);
	if (!rc)
		rc = snap_ram_live_copy(lv, parent ? changed : NULL, NULL);
	if (!rc)
		rc = snap_ram_live_info(lv, &info);
	if (!rc && parent)
		snap_chain_keep_hashes(&info, parent->hashes, changed);
	if (!rc)
		rc = snap_writer_open(&w, tpath(name), &host, out->id);
	if (!rc)
		rc = snap_write_blob(w, "config", 0, 1, 0, "{}", 2);
	if (!rc)
		rc = snap_ram_write_section(w, &info);
	if (!rc && parent) {
		memcpy(par.id, parent->id, SNAP_SAVE_ID_LEN);
		par.state_hash = parent->hash;
		par.depth = parent->depth + 1;
		snprintf(par.file, sizeof(par.file), "%s", parent_name);
		par.npages = NPAGES;
		par.pages = (uint64_t *)changed;
		for (uint64_t i = 0; i < WORDS; i++)
			par.held += (uint64_t)__builtin_popcountll(changed[i]);
		rc = snap_chain_write_section(w, &par);
	}
	if (rc) {
		snap_writer_abort(w);
		snap_ram_live_abort(lv);
		snap_ram_info_free(&info);
		return rc;
	}
	rc = snap_ram_pair_commit(lv, w, 0, &e);
	if (!rc)
		rc = snap_state_hash(tpath(name), &out->hash, &e);
	out->depth = parent ? parent->depth + 1 : 0;
	free(out->hashes);
	out->hashes = info.hashes;
	return rc;
}

/* Page @pg of @m set to a pattern (@seed) or zero; noted in @changed. */
static void page_set(struct guest_mem *m, uint64_t pg, unsigned seed,
		     uint64_t *changed)
{
	uint8_t *p = m->base + pg * PAGE_SIZE;

	if (seed)
		for (unsigned i = 0; i < PAGE_SIZE; i += 8)
			p[i] = (uint8_t)(pg * 13 + i + seed) | 1;
	else
		memset(p, 0, PAGE_SIZE);
	changed[pg / 64] |= 1ULL << (pg % 64);
}

/* Round @r of changes: new data, rewrites, and pages that become zero. */
static void change(struct guest_mem *m, unsigned r, uint64_t *changed)
{
	memset(changed, 0, WORDS * 8);
	for (uint64_t pg = r * 7; pg < NPAGES; pg += 101)
		page_set(m, pg, r + 1, changed);
	/* A run across a chunk boundary. */
	for (uint64_t pg = 510; pg < 516; pg++)
		page_set(m, pg, r + 40, changed);
	/* Pages that held data become zero (some written again later). */
	for (uint64_t pg = (r - 1) * 7; pg < NPAGES; pg += 303)
		page_set(m, pg, 0, changed);
	page_set(m, NPAGES - 1, r % 2 ? 0 : r + 3, changed);
}

static bool file_prefix_equal(const char *a, const char *b, uint64_t len)
{
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	uint8_t *pa = NULL, *pb = NULL;
	bool eq = false;

	if (fa >= 0 && fb >= 0) {
		pa = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fa, 0);
		pb = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fb, 0);
		eq = pa != MAP_FAILED && pb != MAP_FAILED && !memcmp(pa, pb, len);
	}
	if (pa && pa != MAP_FAILED)
		munmap(pa, len);
	if (pb && pb != MAP_FAILED)
		munmap(pb, len);
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return eq;
}

static struct saved links[6];
static struct guest_mem live;

/* s0 full, s1..s5 increments, "full" a full save of the same RAM. */
static void build_chain(void)
{
	uint64_t *changed = calloc(WORDS, 8);
	char name[16], prev[16];

	CHECK(changed != NULL);
	CHECK_EQ(mem_new(&live, RAM), 0);
	for (uint64_t pg = 0; pg < NPAGES; pg += 3)
		page_set(&live, pg, 200, changed);
	CHECK_EQ(save(&live, "s0", NULL, NULL, NULL, &links[0]), 0);
	for (unsigned r = 1; r <= 5; r++) {
		change(&live, r, changed);
		snprintf(prev, sizeof(prev), "s%u", r - 1);
		snprintf(name, sizeof(name), "s%u", r);
		CHECK_EQ(save(&live, name, prev, &links[r - 1], changed,
			      &links[r]),
			 0);
	}
	free(changed);
}

static void test_chain_restores_like_full(void)
{
	struct saved full = {0};
	struct snap_chain c;
	struct guest_mem m;
	struct err e = {0};
	uint64_t runs;
	int fd;

	CHECK_EQ(save(&live, "full", NULL, NULL, NULL, &full), 0);
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), 0);
	CHECK_EQ(c.n, 6u);
	CHECK(!strcmp(c.l[0].path, tpath("s0")));
	/* The tip's hashes are the guest's: those of a full save. */
	CHECK(!memcmp(c.l[5].ram.hashes, full.hashes,
		      c.l[5].ram.nchunks * sizeof(uint64_t)));
	CHECK_EQ(c.l[5].par.depth, 5u);

	/* Eager: base, then each increment. */
	CHECK_EQ(mem_new(&m, RAM), 0);
	CHECK_EQ(snap_chain_load_eager(&m, &c, NULL, &e), 0);
	CHECK(!memcmp(m.base, live.base, RAM));
	CHECK_EQ(snap_chain_check_hashes(&m, &c, &e), 0);
	mem_free(&m);

	/* Mapped: the base with the increments' runs over it. */
	CHECK_EQ(mem_new(&m, RAM), 0);
	CHECK_EQ(snap_chain_map(&m, &c, &fd, &runs, &e), 0);
	CHECK(fd >= 0);
	CHECK(runs > 0 && runs == snap_chain_map_runs(&c));
	CHECK(!memcmp(m.base, live.base, RAM));
	close(fd);
	mem_free(&m);

	/* Every link checks out, each against its own hashes. */
	{
		FILE *devnull = fopen("/dev/null", "w");

		CHECK_EQ(snap_chain_verify(&c, devnull, &e), 0);
		fclose(devnull);
	}
	snap_chain_close(&c);

	/* Merged: the RAM file of the full save, byte for byte. */
	CHECK_EQ(snap_chain_merge(tpath("s5"), tpath("merged"), false, &e), 0);
	CHECK(file_prefix_equal(tpath("merged.ram"), tpath("full.ram"), RAM));
	CHECK_EQ(snap_chain_open(tpath("merged"), &c, &e), 0);
	CHECK_EQ(c.n, 1u);
	CHECK(!memcmp(c.l[0].ram.hashes, full.hashes,
		      c.l[0].ram.nchunks * sizeof(uint64_t)));
	snap_chain_close(&c);
	/* In place over the tip is allowed, over another link not. */
	CHECK_EQ(snap_chain_merge(tpath("s5"), tpath("s3"), false, &e),
		 -EBUSY);
	free(full.hashes);
}

/* Copy file @from to @to (cp). */
static int copy(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", from, to);
	return system(cmd) ? -1 : 0;
}

static int rename_pair(const char *a, const char *b)
{
	char ra[256], rb[256];

	snprintf(ra, sizeof(ra), "%s.ram", a);
	snprintf(rb, sizeof(rb), "%s.ram", b);
	return rename(a, b) || rename(ra, rb) ? -1 : 0;
}

static void test_chain_refuses_bad_links(void)
{
	struct snap_chain c;
	struct err e = {0};
	struct saved other = {0};

	/* Missing parent. */
	CHECK_EQ(rename_pair(tpath("s2"), tpath("s2.away")), 0);
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), -ENOENT);
	CHECK(strstr(e.msg, "parent of") && strstr(e.msg, "/s3"));
	CHECK(strstr(e.msg, "/s2"));
	/* Changed parent: another save under its name. */
	CHECK_EQ(save(&live, "s2", NULL, NULL, NULL, &other), 0);
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), -ESTALE);
	CHECK(strstr(e.msg, "not its parent"));
	CHECK_EQ(rename_pair(tpath("s2.away"), tpath("s2")), 0);
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), 0);
	snap_chain_close(&c);
	/* Reordered: s2 and s3 swapped. */
	CHECK_EQ(rename_pair(tpath("s2"), tpath("tmp")), 0);
	CHECK_EQ(rename_pair(tpath("s3"), tpath("s2")), 0);
	CHECK_EQ(rename_pair(tpath("tmp"), tpath("s3")), 0);
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), -ESTALE);
	CHECK(strstr(e.msg, "parent of"));
	CHECK_EQ(rename_pair(tpath("s3"), tpath("tmp")), 0);
	CHECK_EQ(rename_pair(tpath("s2"), tpath("s3")), 0);
	CHECK_EQ(rename_pair(tpath("tmp"), tpath("s2")), 0);
	/* The same state file with one byte changed (hash, not id). */
	CHECK_EQ(copy(tpath("s1"), tpath("s1.orig")), 0);
	{
		struct snap_reader *r = NULL;
		struct snap_host_info host;
		struct snap_writer *w = NULL;

		/* Same sections and id, another host string: the file
		 * hash differs. */
		CHECK_EQ(snap_reader_open(&r, tpath("s1"), &e), 0);
		snap_host_info_probe(&host, "unit, rewritten");
		CHECK_EQ(snap_writer_open(&w, tpath("s1"), &host,
					  snap_reader_header(r)->save_id),
			 0);
		for (unsigned i = 0; i < snap_reader_nsections(r); i++)
			CHECK_EQ(snap_write_copy(w, r, i), 0);
		CHECK_EQ(snap_writer_commit(w), 0);
		snap_reader_close(r);
	}
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), -ESTALE);
	CHECK(strstr(e.msg, "changed since its child"));
	CHECK_EQ(rename(tpath("s1.orig"), tpath("s1")), 0);
	/* A truncated increment RAM file. */
	CHECK_EQ(copy(tpath("s4.ram"), tpath("s4.ram.orig")), 0);
	CHECK_EQ(truncate(tpath("s4.ram"), RAM / 2), 0);
	CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), -EINVAL);
	CHECK(strstr(e.msg, "s4.ram: size"));
	CHECK_EQ(rename(tpath("s4.ram.orig"), tpath("s4.ram")), 0);
	/* A flipped data byte in an increment: verify names it. */
	{
		int fd = open(tpath("s3.ram"), O_RDWR);
		uint8_t b;
		FILE *devnull = fopen("/dev/null", "w");

		CHECK(fd >= 0);
		CHECK_EQ(pread(fd, &b, 1, 510 * PAGE_SIZE), 1);
		b ^= 0x80;
		CHECK_EQ(pwrite(fd, &b, 1, 510 * PAGE_SIZE), 1);
		CHECK_EQ(snap_chain_open(tpath("s5"), &c, &e), 0);
		CHECK_EQ(snap_chain_verify(&c, devnull, &e), -EBADMSG);
		CHECK(strstr(e.msg, "s3.ram: chunk 0"));
		b ^= 0x80;
		CHECK_EQ(pwrite(fd, &b, 1, 510 * PAGE_SIZE), 1);
		CHECK_EQ(snap_chain_verify(&c, devnull, &e), 0);
		snap_chain_close(&c);
		fclose(devnull);
		close(fd);
	}
	free(other.hashes);
}

static void test_parent_section_decode(void)
{
	uint64_t pages[WORDS] = {0};
	struct snap_chain_parent p = {.depth = 1, .npages = NPAGES,
				      .pages = pages};
	struct snap_host_info host;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct snap_chain_parent q;
	struct err e = {0};
	const void *data;
	size_t len;
	uint8_t *bad;

	snprintf(p.file, sizeof(p.file), "x.snap");
	pages[3] = 0x5;
	p.held = 2;
	snap_host_info_probe(&host, NULL);
	CHECK_EQ(snap_writer_open(&w, tpath("dec"), &host, NULL), 0);
	CHECK_EQ(snap_chain_write_section(w, &p), 0);
	CHECK_EQ(snap_writer_commit(w), 0);
	CHECK_EQ(snap_reader_open(&r, tpath("dec"), &e), 0);
	CHECK_EQ(snap_read_blob(r, SNAP_CHAIN_SECTION, 0, &data, &len, NULL,
				&e),
		 0);
	CHECK_EQ(snap_chain_decode(data, len, RAM, &q, "d", &e), 0);
	CHECK(!strcmp(q.file, "x.snap") && q.held == 2 && q.pages[3] == 5);
	snap_chain_parent_free(&q);
	/* Wrong RAM size, count, name with a slash, truncation. */
	CHECK_EQ(snap_chain_decode(data, len, RAM * 2, &q, "d", &e), -EPROTO);
	bad = malloc(len);
	CHECK(bad != NULL);
	memcpy(bad, data, len);
	bad[40] = 3; /* held */
	CHECK_EQ(snap_chain_decode(bad, len, RAM, &q, "d", &e), -EPROTO);
	CHECK(strstr(e.msg, "does not match its count"));
	memcpy(bad, data, len);
	bad[48] = '/';
	CHECK_EQ(snap_chain_decode(bad, len, RAM, &q, "d", &e), -EPROTO);
	CHECK(strstr(e.msg, "bare file name"));
	CHECK_EQ(snap_chain_decode(data, len - 1, RAM, &q, "d", &e), -EPROTO);
	memcpy(bad, data, len);
	bad[24] = 0; /* depth */
	CHECK_EQ(snap_chain_decode(bad, len, RAM, &q, "d", &e), -EPROTO);
	free(bad);
	snap_reader_close(r);
	/* A name with a slash is never written either. */
	snprintf(p.file, sizeof(p.file), "../x.snap");
	CHECK_EQ(snap_writer_open(&w, tpath("dec2"), &host, NULL), 0);
	CHECK_EQ(snap_chain_write_section(w, &p), -EINVAL);
	snap_writer_abort(w);
}

/*
 * A reader that does not know increments (khyve 1.1 loads "config" and
 * "ram" and then checks nothing is left) refuses one, never restoring its
 * sparse RAM file as if it were the whole RAM. And info lists the chain's
 * files among what a restore opens.
 */
static void test_old_reader_refuses(void)
{
	struct snap_reader *r = NULL;
	struct snap_ram_info ri = {0};
	struct err e = {0};
	const void *data;
	size_t len;
	char *buf = NULL;
	size_t blen = 0;
	FILE *f;

	CHECK_EQ(snap_reader_open(&r, tpath("s5"), &e), 0);
	CHECK_EQ(snap_read_blob(r, "config", 0, &data, &len, NULL, &e), 0);
	CHECK_EQ(snap_ram_read_section(r, &ri, &e), 0);
	CHECK_EQ(snap_reader_check_consumed(r, &e), -EPROTO);
	CHECK(strstr(e.msg, "section 'parent' #0 is required"));
	snap_ram_info_free(&ri);
	snap_reader_close(r);
	f = open_memstream(&buf, &blen);
	CHECK(f != NULL);
	CHECK_EQ(snap_inspect_info(tpath("s5"), false, false, f, &e), 0);
	fclose(f);
	CHECK(buf && strstr(buf, "chain:     6 snapshots"));
	CHECK(buf && strstr(buf, "parent 5 ram"));
	CHECK(buf && strstr(buf, tpath("s0.ram")));
	free(buf);
}

/* Too many runs for a mapped restore: refused before anything is mapped. */
static void test_map_too_many_runs(void)
{
	uint64_t *a = calloc(WORDS, 8), *b = calloc(WORDS, 8);
	struct saved s[3];
	struct snap_chain c;
	struct guest_mem m;
	struct err e = {0};
	uint64_t runs;
	int fd;

	CHECK(a && b);
	memset(s, 0, sizeof(s));
	/* Owners 1, 2, 1, base, ...: three runs per four pages. */
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		if (pg % 4 != 3)
			page_set(&live, pg, 9, a);
		if (pg % 4 == 1)
			page_set(&live, pg, 10, b);
	}
	CHECK_EQ(save(&live, "r0", NULL, NULL, NULL, &s[0]), 0);
	CHECK_EQ(save(&live, "r1", "r0", &s[0], a, &s[1]), 0);
	CHECK_EQ(save(&live, "r2", "r1", &s[1], b, &s[2]), 0);
	CHECK_EQ(snap_chain_open(tpath("r2"), &c, &e), 0);
	CHECK_EQ(snap_chain_map_runs(&c), NPAGES / 4 * 3);
	CHECK_EQ(mem_new(&m, RAM), 0);
	CHECK_EQ(snap_chain_map(&m, &c, &fd, &runs, &e), -E2BIG);
	CHECK_EQ(fd, -1);
	CHECK(strstr(e.msg, "mappings"));
	/* Still untouched, and eager works. */
	CHECK(m.base[PAGE_SIZE] == 0);
	CHECK_EQ(snap_chain_load_eager(&m, &c, NULL, &e), 0);
	CHECK(!memcmp(m.base, live.base, RAM));
	mem_free(&m);
	snap_chain_close(&c);
	for (unsigned i = 0; i < 3; i++)
		free(s[i].hashes);
	free(a);
	free(b);
}

int main(void)
{
	if (tdir_make("chain"))
		return 1;
	build_chain();
	RUN(test_chain_restores_like_full);
	RUN(test_chain_refuses_bad_links);
	RUN(test_parent_section_decode);
	RUN(test_old_reader_refuses);
	RUN(test_map_too_many_runs);
	mem_free(&live);
	for (unsigned i = 0; i < 6; i++)
		free(links[i].hashes);
	tdir_remove();
	return unit_done();
}
